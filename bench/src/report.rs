//! One row per (backend, workload, runner), printed as a table and written as JSON.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::workloads::Settings;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub backend: String,
    pub workload: String,
    pub runner: String,
    pub records: Option<usize>,
    pub seconds: Option<f64>,
    pub records_per_sec: Option<f64>,
    pub mb_per_sec: Option<f64>,
    pub cpu_s_per_million: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub idle_rss_mib: Option<f64>,
    pub idle_cpu_s_per_min: Option<f64>,
    /// Context switches of all esmd threads per minute at rest.
    pub idle_wakeups_per_min: Option<f64>,
    /// Heap allocations per record delivered (esmd built with `--features alloc-count`).
    pub allocations_per_record: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub get_records_per_sec_per_shard: Option<f64>,
    pub ratio_to_baseline: Option<f64>,
    pub error: Option<String>,
}

impl Row {
    pub fn new(backend: &str, workload: &str, runner: &str) -> Row {
        Row {
            backend: backend.into(),
            workload: workload.into(),
            runner: runner.into(),
            records: None,
            seconds: None,
            records_per_sec: None,
            mb_per_sec: None,
            cpu_s_per_million: None,
            peak_rss_mib: None,
            idle_rss_mib: None,
            idle_cpu_s_per_min: None,
            idle_wakeups_per_min: None,
            allocations_per_record: None,
            latency_p50_ms: None,
            latency_p99_ms: None,
            get_records_per_sec_per_shard: None,
            ratio_to_baseline: None,
            error: None,
        }
    }

    pub fn failed(backend: &str, workload: &str, runner: &str, error: &str) -> Row {
        let mut row = Row::new(backend, workload, runner);
        row.error = Some(error.to_string());
        row
    }

    /// Records delivered in `seconds` (first to last arrival), with `cpu` spent meanwhile.
    pub fn throughput(&mut self, records: usize, record_bytes: usize, seconds: f64, cpu: Duration) {
        self.records = Some(records);
        self.seconds = Some(seconds);
        self.records_per_sec = Some(records as f64 / seconds);
        self.mb_per_sec = Some((records * record_bytes) as f64 / seconds / 1e6);
        self.cpu_s_per_million = Some(cpu.as_secs_f64() / records as f64 * 1e6);
    }
}

fn f(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

pub fn table(rows: &[Row]) -> String {
    let header = [
        "backend",
        "workload",
        "runner",
        "records",
        "rec/s",
        "MB/s",
        "CPU s/M rec",
        "peak RSS MiB",
        "idle RSS MiB",
        "idle CPU s/min",
        "idle wake-ups/min",
        "allocs/rec",
        "p50 ms",
        "p99 ms",
        "GetRecords/s/shard",
        "x baseline",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        if let Some(e) = &r.error {
            lines.push(vec![
                r.backend.clone(),
                r.workload.clone(),
                r.runner.clone(),
                format!("FAILED: {}", e.lines().next().unwrap_or_default()),
            ]);
            continue;
        }
        lines.push(vec![
            r.backend.clone(),
            r.workload.clone(),
            r.runner.clone(),
            r.records
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            f(r.records_per_sec, 0),
            f(r.mb_per_sec, 2),
            f(r.cpu_s_per_million, 1),
            f(r.peak_rss_mib, 1),
            f(r.idle_rss_mib, 1),
            f(r.idle_cpu_s_per_min, 3),
            f(r.idle_wakeups_per_min, 0),
            f(r.allocations_per_record, 1),
            f(r.latency_p50_ms, 1),
            f(r.latency_p99_ms, 1),
            f(r.get_records_per_sec_per_shard, 2),
            f(r.ratio_to_baseline, 2),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            lines
                .iter()
                .filter(|l| l.len() > 3)
                .filter_map(|l| l.get(c))
                .map(|s| s.len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, line) in lines.iter().enumerate() {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(c, s)| {
                if line.len() > 4 {
                    format!("{s:<w$}", w = widths[c])
                } else {
                    s.clone()
                }
            })
            .collect();
        out += &format!("| {} |\n", cells.join(" | "));
        if n == 0 {
            out += &format!(
                "|{}|\n",
                widths
                    .iter()
                    .map(|w| "-".repeat(w + 2))
                    .collect::<Vec<_>>()
                    .join("|")
            );
        }
    }
    out
}

fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or_default()
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    serde_json::json!({"cpu": model, "cores": cores, "memory_gib": mem_kb / 1024 / 1024})
}

pub fn write_json(
    path: &Path,
    settings: &Settings,
    rows: &[Row],
    wake: std::time::Duration,
) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let doc = serde_json::json!({
        "machine": machine(),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "smoke": settings.smoke,
        "records": {"loopback": settings.records_loopback, "moto": settings.records_moto},
        "idle_seconds": settings.idle.as_secs(),
        "latency_samples": settings.latency_samples,
        "record_bytes": 1024,
        "wake_cpu_us_after_100ms": (wake.as_secs_f64() * 1e7).round() / 10.0,
        "results": rows,
    });
    std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    Ok(())
}
