//! Process figures: CPU seconds (user + sys, children included) and RSS, from /proc and the
//! processes' CPU clocks.

use std::time::Duration;

/// Clock ticks per second for /proc/<pid>/stat (USER_HZ; 100 on Linux).
const TICKS: f64 = 100.0;

/// User + system CPU of `pid` and of its descendants still running, to the nanosecond: each
/// process's CPU clock (`clock_getcpuclockid`, every thread, exited ones included) plus the
/// children it reaped (/proc ticks). /proc's utime and stime alone count in 10 ms ticks, which
/// put a ±10 ms error on each reading: ±17% on a 600-message moto run that costs 0.1 s.
pub fn cpu(pid: u32) -> Duration {
    tree(pid)
        .into_iter()
        .map(|p| cpu_clock(p).map_or_else(|| ticks(p, 11..15), |c| c + ticks(p, 13..15)))
        .sum()
}

/// The CPU clock of process `pid`, if it is still there.
fn cpu_clock(pid: u32) -> Option<Duration> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: the call only writes to the local passed by pointer, which outlives it.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    read_clock(clock)
}

/// The time on `clock`, if it can be read.
fn read_clock(clock: libc::clockid_t) -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the call only writes to the local passed by pointer, which outlives it.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(now.tv_sec).ok()?,
        u32::try_from(now.tv_nsec).ok()?,
    ))
}

/// The sum of /proc/<pid>/stat's tick fields `fields`, counted from field 3 (utime, stime,
/// cutime, cstime are 11..15), or zero if the process is gone.
fn ticks(pid: u32, fields: std::ops::Range<usize>) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let total: f64 = fields
        .filter_map(|i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
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

/// The CPU a thread spends on one wake-up after sleeping `after`, doing nothing else: the
/// mean over `times` sleeps, from the thread's own CPU clock. It is the host's fixed price of
/// waiting for a slow backend, paid on each answer from one by whatever client reads it.
pub fn wake_cost(after: Duration, times: u32) -> Duration {
    let thread_cpu = || read_clock(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or_default();
    std::thread::spawn(move || {
        let start = thread_cpu();
        for _ in 0..times {
            std::thread::sleep(after);
        }
        thread_cpu().saturating_sub(start) / times.max(1)
    })
    .join()
    .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_costs_the_sleeping_threads_cpu_not_the_time_asleep() {
        // A wall clock would give at least the 20 ms slept; the thread's CPU clock a sliver.
        let wake = wake_cost(Duration::from_millis(20), 3);
        assert!(
            wake > Duration::ZERO && wake < Duration::from_millis(10),
            "{wake:?}"
        );
    }

    #[test]
    fn cpu_counts_finer_than_a_clock_tick() {
        let me = std::process::id();
        let start = cpu(me);
        let mut now = start;
        let mut spins = 0u64;
        while now == start {
            spins = std::hint::black_box(spins + 1);
            now = cpu(me);
        }
        // /proc's ticks move in steps of 10 ms; the CPU clock moves by what the loop spent.
        let step = now - start;
        assert!(step < Duration::from_millis(5), "a step of {step:?}");
    }

    #[test]
    fn a_process_that_is_gone_costs_nothing() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        assert_eq!(cpu(child.id()), Duration::ZERO);
    }
}
