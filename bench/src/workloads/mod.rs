//! The workloads, the backends they run on, and the measurement of one run.
//!
//! A throughput run preloads N records, starts the runner (esmd or the baseline) as its own
//! process, and times the first to the last record reaching the function; CPU is read from
//! /proc between the first arrival and the end of the drain (SQS: the queue is empty, so the
//! deletes are counted too). An esmd run then measures latency on the caught-up source (one
//! record at a time, from the producer's acknowledged send to the invocation reaching the
//! function), idles, and reads RSS.
//!
//! Where the AWS side lives is [`backend`], what a run reads is [`source`], and the processes
//! measured (esmd and the baseline loops) are started by [`runner`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::function::Function;
use crate::proc;
use crate::report::Row;

mod backend;
mod runner;
mod source;

pub(crate) use backend::free_port;
pub use backend::Backend;
pub(crate) use runner::{aws_env, Runner};
use runner::{mapping_toml, start_baseline, start_esmd};
pub(crate) use source::Source;

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
const RECORD_BYTES: usize = 1024;
/// How long the slow backends take to answer each request: a slow service's pace, three
/// orders of magnitude above the plain loopback's. The slow backends' names (`loopback-100ms`)
/// say it: change both together.
const SLOW_ANSWER: Duration = Duration::from_millis(100);

pub struct Settings {
    pub smoke: bool,
    pub esmd: PathBuf,
    pub moto: String,
    pub peer: PathBuf,
    pub idle: Duration,
    pub records_loopback: usize,
    pub records_moto: usize,
    pub latency_samples: usize,
    pub self_exe: PathBuf,
    pub work_dir: PathBuf,
    pub only: Option<String>,
}

impl Settings {
    fn selected(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|only| name.contains(only))
    }
}

impl Settings {
    pub fn new(
        smoke: bool,
        esmd: PathBuf,
        moto: String,
        peer: PathBuf,
        idle_seconds: Option<u64>,
    ) -> anyhow::Result<Settings> {
        anyhow::ensure!(
            esmd.exists(),
            "{} not found: build it with `cargo build --release --bin esmd`",
            esmd.display()
        );
        let work_dir = std::env::temp_dir().join(format!("esmd-bench-{}", std::process::id()));
        std::fs::create_dir_all(&work_dir)?;
        Ok(Settings {
            smoke,
            esmd: std::fs::canonicalize(esmd)?,
            moto,
            peer: std::fs::canonicalize(&peer).unwrap_or(peer),
            idle: Duration::from_secs(idle_seconds.unwrap_or(if smoke { 2 } else { 60 })),
            records_loopback: if smoke { 500 } else { 30_000 },
            records_moto: if smoke { 200 } else { 1_000 },
            latency_samples: if smoke { 5 } else { 40 },
            self_exe: std::env::current_exe()?,
            work_dir,
            only: None,
        })
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Workload {
    Sqs {
        fifo: bool,
        batch: usize,
        window: u64,
        /// `scaling_config.maximum_concurrency`, with a 600 s visibility timeout on the queue
        /// (so that a slow backend cannot expire messages): the moto-only 600-message run.
        concurrency: Option<usize>,
    },
    Kinesis {
        shards: usize,
        parallelization: usize,
        /// `esmd_poll_interval_ms`, when not AWS's cadence.
        poll_ms: Option<u64>,
    },
    DynamoDb,
    Idle {
        mappings: usize,
    },
}

impl Workload {
    pub fn name(&self) -> String {
        match self {
            Workload::Sqs {
                fifo: false,
                batch,
                window,
                concurrency,
            } => match concurrency {
                None => format!("SQS standard, batch {batch}, window {window}s"),
                Some(c) => {
                    format!("SQS standard, batch {batch}, window {window}s, concurrency {c}")
                }
            },
            Workload::Sqs {
                fifo: true, batch, ..
            } => format!("SQS FIFO, batch {batch}"),
            Workload::Kinesis {
                shards,
                parallelization,
                poll_ms,
            } => match poll_ms {
                None => format!("Kinesis {shards} shards, batch 100, PF {parallelization}"),
                Some(ms) => format!(
                    "Kinesis {shards} shards, batch 100, PF {parallelization}, poll {ms} ms"
                ),
            },
            Workload::DynamoDb => "DynamoDB Streams, batch 100".into(),
            Workload::Idle { mappings } => format!("idle, {mappings} SQS mappings"),
        }
    }
}

pub const WORKLOADS: [Workload; 9] = [
    Workload::Sqs {
        fifo: false,
        batch: 10,
        window: 0,
        concurrency: None,
    },
    Workload::Sqs {
        fifo: false,
        batch: 100,
        window: 1,
        concurrency: None,
    },
    Workload::Sqs {
        fifo: true,
        batch: 10,
        window: 0,
        concurrency: None,
    },
    Workload::Sqs {
        fifo: false,
        batch: 10,
        window: 0,
        concurrency: Some(2),
    },
    Workload::Kinesis {
        shards: 4,
        parallelization: 1,
        poll_ms: None,
    },
    Workload::Kinesis {
        shards: 4,
        parallelization: 4,
        poll_ms: None,
    },
    Workload::Kinesis {
        shards: 4,
        parallelization: 1,
        poll_ms: Some(500),
    },
    Workload::DynamoDb,
    Workload::Idle { mappings: 10 },
];

/// One baseline run: the raw-SDK loop, or the same calls without the SDK (`lean.rs`).
struct Baseline<'a> {
    settings: &'a Settings,
    backend: &'a Backend,
    function: &'a Function,
    function_url: &'a str,
    w: &'a Workload,
    tag: &'a str,
    count: usize,
    timeout: Duration,
}

impl Baseline<'_> {
    async fn measure(&self, lean: bool) -> anyhow::Result<Option<Row>> {
        let (backend, count) = (self.backend, self.count);
        let suffix = if lean { "lean" } else { "base" };
        let source = Source::create(backend, self.w, &format!("{}-{suffix}", self.tag)).await?;
        source.preload(backend, 0..count).await?;
        self.function.reset(count);
        let Some(runner) = start_baseline(
            self.settings,
            backend,
            self.function_url,
            self.w,
            &source,
            count,
            lean,
        ) else {
            return Ok(None);
        };
        let mut runner = runner?;
        let d = drain(
            self.function,
            &source,
            backend,
            &mut runner,
            count,
            self.timeout,
        )
        .await;
        let peak = proc::peak_rss_mib(runner.pid());
        runner.stop();
        let d = d?;
        let name = if lean {
            "lean loop (same calls, no SDK)"
        } else {
            "baseline (raw SDK loop)"
        };
        let mut row = Row::new(backend.name, &self.w.name(), name);
        row.throughput(count, RECORD_BYTES, d.seconds, d.cpu);
        row.peak_rss_mib = Some(peak);
        Ok(Some(row))
    }
}

/// An esmd process left idling after its run, until its "RSS after idle" is read.
struct Idler {
    runner: Runner,
    row: Option<usize>,
    until: Instant,
}

/// Figures from one throughput run.
pub(crate) struct Drain {
    pub(crate) seconds: f64,
    pub(crate) cpu: Duration,
    /// Heap allocations over the same span as `cpu` (esmd only).
    pub(crate) allocations: Option<u64>,
}

/// `esmd_heap_allocations_total` from esmd's `/metrics`, when it counts.
fn allocations(runner: &Runner) -> Option<u64> {
    use std::io::{Read, Write};
    let admin = runner.admin.as_ref()?;
    let mut s = std::net::TcpStream::connect(admin).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {admin}\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("esmd_heap_allocations_total "))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until `count` records reached the function and the source is drained; CPU is read at
/// the first arrival and at the end, inside the two scrapes of esmd's allocation count.
pub(crate) async fn drain(
    function: &Function,
    source: &Source,
    backend: &Backend,
    runner: &mut Runner,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<Drain> {
    let started = Instant::now();
    let mut cpu_at_first = None;
    let mut allocations_at_first = None;
    loop {
        let delivered = function.delivered();
        if cpu_at_first.is_none() && delivered > 0 {
            // The scrape of /metrics first: its own CPU (about 0.3 ms, 0.5 CPU s per million
            // records of a 600-message run) is the bench's, not esmd's work on records.
            allocations_at_first = allocations(runner);
            cpu_at_first = Some(proc::cpu(runner.pid()));
        }
        if delivered >= count && source.remaining(backend).await == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "timed out: {delivered} of {count} records delivered"
        );
        if let Ok(Some(status)) = runner.child.try_wait() {
            if delivered < count {
                anyhow::bail!("the runner exited ({status}) after {delivered} of {count} records; its log is in {}", runner.log.display());
            }
        }
        tokio::time::sleep(Duration::from_millis(if delivered >= count {
            20
        } else {
            2
        }))
        .await;
    }
    let cpu_end = proc::cpu(runner.pid());
    let allocations_end = allocations(runner);
    let a = function.lock();
    let seconds = match (a.first_any, a.last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64().max(1e-3),
        _ => 0.0,
    };
    Ok(Drain {
        seconds,
        cpu: cpu_end.saturating_sub(cpu_at_first.unwrap_or_default()),
        allocations: allocations_end
            .zip(allocations_at_first)
            .map(|(end, first)| end.saturating_sub(first)),
    })
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

pub async fn run_all(settings: &Settings, backends: &[String]) -> anyhow::Result<Vec<Row>> {
    let function = Function::default();
    let function_url = function.start().await?;
    let mut rows = Vec::new();
    let mut idlers: Vec<Idler> = Vec::new();
    for name in backends {
        let backend = match name.as_str() {
            "loopback" => Backend::loopback().await?,
            "moto" => Backend::moto(&settings.moto).await?,
            "slow" => Backend::slow(false).await?,
            "slow-close" => Backend::slow(true).await?,
            other => anyhow::bail!("unknown backend {other} (loopback, slow, slow-close, moto)"),
        };
        for (n, w) in WORKLOADS.iter().enumerate() {
            if !backend.supports(w) || !settings.selected(&w.name()) {
                continue;
            }
            eprintln!("[{}] {} ...", backend.name, w.name());
            let tag = format!("{}-{n}", backend.name);
            match run_one(
                settings,
                &backend,
                &function,
                &function_url,
                w,
                &tag,
                &mut idlers,
            )
            .await
            {
                Ok(mut r) => {
                    rows.append(&mut r);
                    if let Some(idler) = idlers.last_mut().filter(|i| i.row.is_none()) {
                        idler.row = Some(rows.len() - 1);
                    }
                }
                Err(e) => {
                    eprintln!("[{}] {}: {e:#}", backend.name, w.name());
                    rows.push(Row::failed(
                        backend.name,
                        &w.name(),
                        "esmd",
                        &format!("{e:#}"),
                    ));
                }
            }
        }
        // Read each finished run's RSS after its idle time, before its backend goes away.
        for idler in idlers.drain(..) {
            tokio::time::sleep_until(idler.until.into()).await;
            if let Some(row) = idler.row.and_then(|i| rows.get_mut(i)) {
                row.idle_rss_mib = Some(proc::rss_mib(idler.runner.pid()));
            }
            idler.runner.stop();
        }
        if backend.name == "moto" && settings.selected("peer serverless-offline-sqs") {
            eprintln!("[moto] serverless-offline-sqs ...");
            let records = settings.records_moto;
            match crate::peer::run(settings, &backend, &function, &function_url, records).await {
                Ok(Some(row)) => rows.push(row),
                Ok(None) => eprintln!(
                    "[moto] peer skipped: {} has no node_modules (see bench/README.md)",
                    settings.peer.display()
                ),
                Err(e) => {
                    eprintln!("[moto] peer: {e:#}");
                    rows.push(Row::failed(
                        "moto",
                        &crate::peer::WORKLOAD.name(),
                        "serverless-offline-sqs",
                        &format!("{e:#}"),
                    ));
                }
            }
        }
    }
    Ok(rows)
}

async fn run_one(
    settings: &Settings,
    backend: &Backend,
    function: &Function,
    function_url: &str,
    w: &Workload,
    tag: &str,
    idlers: &mut Vec<Idler>,
) -> anyhow::Result<Vec<Row>> {
    if let Workload::Idle { mappings } = *w {
        return idle(settings, backend, function_url, mappings, tag)
            .await
            .map(|r| vec![r]);
    }
    let count = backend.records(settings, w);
    let timeout = Duration::from_secs(if settings.smoke { 300 } else { 900 });
    let mut rows = Vec::new();

    // Baselines first, each on a source of its own.
    let mut baseline_rps = None;
    let run = Baseline {
        settings,
        backend,
        function,
        function_url,
        w,
        tag,
        count,
        timeout,
    };
    if let Some(row) = run.measure(false).await? {
        baseline_rps = row.records_per_sec;
        rows.push(row);
    }
    if backend.lean_measured(w) {
        rows.extend(run.measure(true).await?);
    }

    let esmd = EsmdRun {
        settings,
        backend,
        function,
        function_url,
        w,
        count,
        timeout,
    };
    let ratio = |row: &mut Row| {
        if let (Some(b), Some(e)) = (baseline_rps, row.records_per_sec) {
            row.ratio_to_baseline = Some(e / b);
        }
    };
    // esmd in a sidecar's profile, where the lean loop ran: its own client for the per-batch
    // calls, and one runtime thread.
    if backend.lean_measured(w) {
        let lean = "[aws]\nclient = \"lean\"\n[daemon]\nworker_threads = 1\n";
        // Its own queue: the lean loop's source is `{tag}-lean`, and a long poll the killed
        // loop left on moto's side would take messages preloaded into a queue of that name.
        let (mut row, runner) = esmd.measure(&format!("{tag}-esmd-lean"), lean).await?;
        runner.stop();
        row.runner = "esmd, sidecar (lean client, 1 thread)".into();
        ratio(&mut row);
        rows.push(row);
    }
    let (mut row, runner) = esmd.measure(tag, "").await?;
    // Idles beside the next workloads; its RSS is read when its idle time is up.
    idlers.push(Idler {
        runner,
        row: None,
        until: Instant::now() + settings.idle,
    });
    ratio(&mut row);
    rows.push(row);
    Ok(rows)
}

/// One esmd run on a source of its own: its throughput row, and the process, still running.
struct EsmdRun<'a> {
    settings: &'a Settings,
    backend: &'a Backend,
    function: &'a Function,
    function_url: &'a str,
    w: &'a Workload,
    count: usize,
    timeout: Duration,
}

impl EsmdRun<'_> {
    /// `aws`: an `[aws]` section put before the mapping.
    async fn measure(&self, tag: &str, aws: &str) -> anyhow::Result<(Row, Runner)> {
        let (backend, w) = (self.backend, self.w);
        let source = Source::create(backend, w, tag).await?;
        source.preload(backend, 0..self.count).await?;
        self.function
            .reset(self.count + self.settings.latency_samples);
        let config = format!("{aws}{}", mapping_toml(w, &source.arn()));
        let mut runner = start_esmd(self.settings, backend, self.function_url, &config, tag)?;
        let result = measure_esmd(
            self.settings,
            backend,
            self.function,
            w,
            &source,
            &mut runner,
            self.count,
            self.timeout,
        )
        .await;
        match result {
            Ok(row) => Ok((row, runner)),
            Err(e) => {
                runner.stop();
                Err(e)
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn measure_esmd(
    settings: &Settings,
    backend: &Backend,
    function: &Function,
    w: &Workload,
    source: &Source,
    runner: &mut Runner,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<Row> {
    let d = drain(function, source, backend, runner, count, timeout).await?;
    let mut row = Row::new(backend.name, &w.name(), "esmd");
    row.throughput(count, RECORD_BYTES, d.seconds, d.cpu);
    row.allocations_per_record = d.allocations.map(|a| a as f64 / count as f64);

    // Latency on the caught-up source: one record at a time.
    let get_records_before = backend
        .loopback
        .as_ref()
        .map(|l| l.get_records_calls(source.name()));
    let phase = Instant::now();
    let mut acks = Vec::new();
    for i in count..count + settings.latency_samples {
        acks.push((i, source.send_one(backend, i).await?));
        let deadline = Instant::now() + Duration::from_secs(30);
        while function.lock().first[i].is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // A pseudo-random pause (0-1 s) so that sends fall anywhere in a poll cycle rather
        // than right after a poll.
        let jitter = (i as u64).wrapping_mul(2_654_435_761) % 1_000;
        tokio::time::sleep(Duration::from_millis(jitter)).await;
    }
    let elapsed = phase.elapsed().as_secs_f64();
    let mut latencies: Vec<f64> = {
        let a = function.lock();
        acks.iter()
            .filter_map(|(i, ack)| {
                Some(a.first[*i]?.saturating_duration_since(*ack).as_secs_f64() * 1e3)
            })
            .collect()
    };
    latencies.sort_by(f64::total_cmp);
    row.latency_p50_ms = percentile(&latencies, 50.0);
    row.latency_p99_ms = percentile(&latencies, 99.0);
    if let (Some(before), Some(l), Source::Stream { shards, .. }) =
        (get_records_before, &backend.loopback, source)
    {
        let calls = l.get_records_calls(source.name()) - before;
        row.get_records_per_sec_per_shard = Some(calls as f64 / elapsed / *shards as f64);
    }

    row.peak_rss_mib = Some(proc::peak_rss_mib(runner.pid()));
    Ok(row)
}

async fn idle(
    settings: &Settings,
    backend: &Backend,
    function_url: &str,
    mappings: usize,
    tag: &str,
) -> anyhow::Result<Row> {
    let w = Workload::Idle { mappings };
    let mut config = String::new();
    for m in 0..mappings {
        let source = Source::create(backend, &w, &format!("{tag}-{m}")).await?;
        config += &mapping_toml(&w, &source.arn());
    }
    let runner = start_esmd(settings, backend, function_url, &config, tag)?;
    // Let start-up finish (queue lookups, first polls) before the idle minute starts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = proc::cpu(runner.pid());
    let switches_before = proc::context_switches(runner.pid());
    tokio::time::sleep(settings.idle).await;
    let cpu = proc::cpu(runner.pid()).saturating_sub(before);
    let switches = proc::context_switches(runner.pid()).saturating_sub(switches_before);
    let mut row = Row::new(backend.name, &w.name(), "esmd");
    let per_minute = 60.0 / settings.idle.as_secs_f64();
    row.idle_cpu_s_per_min = Some(cpu.as_secs_f64() * per_minute);
    row.idle_wakeups_per_min = Some(switches as f64 * per_minute);
    row.idle_rss_mib = Some(proc::rss_mib(runner.pid()));
    row.peak_rss_mib = Some(proc::peak_rss_mib(runner.pid()));
    runner.stop();
    Ok(row)
}
