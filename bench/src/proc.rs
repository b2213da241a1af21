//! Process figures from /proc: CPU seconds (user + sys, children included) and RSS.

use std::time::Duration;

/// Clock ticks per second for /proc/<pid>/stat (USER_HZ; 100 on Linux).
const TICKS: f64 = 100.0;

/// User + system CPU of `pid` and of its descendants still running.
pub fn cpu(pid: u32) -> Duration {
    let mut total = 0.0;
    for p in tree(pid) {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            // Fields after the command name (which is in parentheses and may hold spaces).
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                // utime, stime, cutime, cstime are fields 14-17; `rest` starts at field 3.
                total += num(11) + num(12) + num(13) + num(14);
            }
        }
    }
    Duration::from_secs_f64(total / TICKS)
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Resident set size now, in MiB, summed over the process tree.
pub fn rss_mib(pid: u32) -> f64 {
    tree(pid)
        .iter()
        .map(|p| status_kb(*p, "VmRSS:"))
        .sum::<u64>() as f64
        / 1024.0
}

/// Peak resident set size, in MiB (VmHWM), summed over the process tree.
pub fn peak_rss_mib(pid: u32) -> f64 {
    tree(pid)
        .iter()
        .map(|p| status_kb(*p, "VmHWM:"))
        .sum::<u64>() as f64
        / 1024.0
}

/// Context switches of every thread of `pid` (voluntary and not): each is a wake-up, a
/// thread that went to sleep and was woken, or was preempted.
pub fn context_switches(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    let mut total = 0;
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if line.starts_with("voluntary_ctxt_switches:")
                || line.starts_with("nonvoluntary_ctxt_switches:")
            {
                total += line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

/// `pid` and its descendants.
fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        // Children hang off whichever thread spawned them.
        let tasks = std::fs::read_dir(format!("/proc/{parent}/task"))
            .into_iter()
            .flatten();
        for task in tasks.flatten() {
            let path = task.path().join("children");
            if let Ok(children) = std::fs::read_to_string(path) {
                all.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
        i += 1;
    }
    all
}
