//! The workloads, the backends they run on, and the measurement of one run.
//!
//! A throughput run preloads N records, starts the runner (esmd or the baseline) as its own
//! process, and times the first to the last record reaching the function; CPU is read from
//! /proc between the first arrival and the end of the drain (SQS: the queue is empty, so the
//! deletes are counted too). An esmd run then measures latency on the caught-up source (one
//! record at a time, from the producer's acknowledged send to the invocation reaching the
//! function), idles, and reads RSS.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::function::Function;
use crate::loopback::Loopback;
use crate::proc;
use crate::report::Row;

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
const RECORD_BYTES: usize = 1024;
/// How long the slow backends take to answer each request: a slow service's pace, three
/// orders of magnitude above the plain loopback's.
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

/// Where the AWS side lives for a run.
pub struct Backend {
    pub name: &'static str,
    pub url: String,
    pub loopback: Option<Arc<Loopback>>,
    /// A loopback backend that answers slowly (the slow-backend rows only).
    paced: bool,
    moto: Option<Child>,
    sdk: aws_config::SdkConfig,
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(mut child) = self.moto.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Backend {
    async fn loopback() -> anyhow::Result<Backend> {
        let (state, url) = Loopback::start().await?;
        Ok(Backend {
            name: "loopback",
            sdk: sdk_config(&url).await,
            url,
            loopback: Some(state),
            paced: false,
            moto: None,
        })
    }

    /// The loopback backend answering each request after [`SLOW_ANSWER`], with kept-alive
    /// connections or (`close`) a new connection per request as moto makes its clients open.
    async fn slow(close: bool) -> anyhow::Result<Backend> {
        let pace = crate::loopback::Pace {
            delay: SLOW_ANSWER,
            close,
        };
        let (state, url) = Loopback::start_paced(Some(pace)).await?;
        Ok(Backend {
            name: if close {
                "loopback-100ms-close"
            } else {
                "loopback-100ms"
            },
            sdk: sdk_config(&url).await,
            url,
            loopback: Some(state),
            paced: true,
            moto: None,
        })
    }

    async fn moto(command: &str) -> anyhow::Result<Backend> {
        let port = free_port()?;
        let child = Command::new(command)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {command} (pip install 'moto[server]')"))?;
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "moto server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Backend {
            name: "moto",
            sdk: sdk_config(&url).await,
            url,
            loopback: None,
            paced: false,
            moto: Some(child),
        })
    }

    /// Where the lean loop runs beside the SDK loop: every SQS and Kinesis workload on the
    /// loopback backend, and the 600-message run on moto and the slow backends (moto's other
    /// runs take minutes).
    fn lean_measured(&self, w: &Workload) -> bool {
        match w {
            Workload::Sqs { concurrency, .. } => self.loopback.is_some() || concurrency.is_some(),
            Workload::Kinesis { .. } => self.loopback.is_some(),
            _ => false,
        }
    }

    fn supports(&self, w: &Workload) -> bool {
        match w {
            // A slow backend's cost per request: the 600-message run is for moto and the slow
            // backends, and the only one they run.
            Workload::Sqs {
                concurrency: Some(_),
                ..
            } => self.loopback.is_none() || self.paced,
            _ if self.paced => false,
            Workload::DynamoDb => self.loopback.is_none(),
            _ => true,
        }
    }

    /// Records for a throughput run of `w`.
    fn records(&self, settings: &Settings, w: &Workload) -> usize {
        match w {
            Workload::Sqs {
                concurrency: Some(_),
                ..
            } if settings.smoke => 100,
            Workload::Sqs {
                concurrency: Some(_),
                ..
            } => 600,
            _ if self.loopback.is_some() => settings.records_loopback,
            _ => settings.records_moto,
        }
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn sdk_config(url: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "bench", "bench", None, None, "bench",
        ))
        .load()
        .await
}

/// A record's payload: its index, then padding to 1 KiB.
fn payload(index: usize) -> String {
    let mut s = format!("{index}|");
    s.extend(std::iter::repeat_n('x', RECORD_BYTES - s.len()));
    s
}

/// The source a run reads, created fresh for each run.
pub(crate) enum Source {
    Queue {
        name: String,
        url: String,
        fifo: bool,
    },
    Stream {
        name: String,
        shards: usize,
    },
    Table {
        name: String,
        stream_arn: String,
    },
}

impl Source {
    pub(crate) async fn create(
        backend: &Backend,
        w: &Workload,
        tag: &str,
    ) -> anyhow::Result<Source> {
        Ok(match *w {
            Workload::Sqs { .. } | Workload::Idle { .. } => {
                let fifo = matches!(w, Workload::Sqs { fifo: true, .. });
                let name = format!("bench-{tag}{}", if fifo { ".fifo" } else { "" });
                let client = aws_sdk_sqs::Client::new(&backend.sdk);
                let mut req = client.create_queue().queue_name(&name);
                if let Workload::Sqs {
                    concurrency: Some(_),
                    ..
                } = w
                {
                    req = req.attributes(
                        aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                        "600",
                    );
                }
                if fifo {
                    req = req
                        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
                        .attributes(
                            aws_sdk_sqs::types::QueueAttributeName::ContentBasedDeduplication,
                            "true",
                        );
                }
                let url = req.send().await?.queue_url.unwrap_or_default();
                Source::Queue { name, url, fifo }
            }
            Workload::Kinesis { shards, .. } => {
                let name = format!("bench-{tag}");
                match &backend.loopback {
                    Some(l) => l.create_stream(&name, shards),
                    None => {
                        let client = aws_sdk_kinesis::Client::new(&backend.sdk);
                        client
                            .create_stream()
                            .stream_name(&name)
                            .shard_count(shards as i32)
                            .send()
                            .await?;
                    }
                }
                Source::Stream { name, shards }
            }
            Workload::DynamoDb => {
                use aws_sdk_dynamodb::types::*;
                let name = format!("bench-{tag}");
                let client = aws_sdk_dynamodb::Client::new(&backend.sdk);
                let out = client
                    .create_table()
                    .table_name(&name)
                    .billing_mode(BillingMode::PayPerRequest)
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name("pk")
                            .attribute_type(ScalarAttributeType::S)
                            .build()?,
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name("pk")
                            .key_type(KeyType::Hash)
                            .build()?,
                    )
                    .stream_specification(
                        StreamSpecification::builder()
                            .stream_enabled(true)
                            .stream_view_type(StreamViewType::NewImage)
                            .build()?,
                    )
                    .send()
                    .await?;
                let stream_arn = out
                    .table_description()
                    .and_then(|t| t.latest_stream_arn())
                    .unwrap_or_default()
                    .to_string();
                Source::Table { name, stream_arn }
            }
        })
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Source::Queue { name, .. }
            | Source::Stream { name, .. }
            | Source::Table { name, .. } => name,
        }
    }

    fn arn(&self) -> String {
        match self {
            Source::Queue { name, .. } => format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"),
            Source::Stream { name, .. } => {
                format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}")
            }
            Source::Table { stream_arn, .. } => stream_arn.clone(),
        }
    }

    /// Loads records `range` before the runner starts.
    pub(crate) async fn preload(
        &self,
        backend: &Backend,
        range: std::ops::Range<usize>,
    ) -> anyhow::Result<()> {
        match (self, &backend.loopback) {
            (Source::Queue { name, fifo, .. }, Some(l)) => {
                l.preload(
                    name,
                    range.map(|i| (payload(i), fifo.then(|| format!("g{}", i % 50)))),
                );
            }
            (Source::Stream { name, .. }, Some(l)) => {
                l.preload_stream(
                    name,
                    range.map(|i| (i.to_string(), payload(i).into_bytes())),
                );
            }
            (Source::Queue { url, fifo, .. }, None) => {
                let client = aws_sdk_sqs::Client::new(&backend.sdk);
                let chunks: Vec<Vec<usize>> = range
                    .collect::<Vec<_>>()
                    .chunks(10)
                    .map(<[usize]>::to_vec)
                    .collect();
                let sends = chunks.into_iter().map(|chunk| {
                    let (client, url) = (client.clone(), url.clone());
                    async move {
                        let mut req = client.send_message_batch().queue_url(url);
                        for i in chunk {
                            let mut e = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                                .id(i.to_string())
                                .message_body(payload(i));
                            if *fifo {
                                e = e.message_group_id(format!("g{}", i % 50));
                            }
                            req = req.entries(e.build()?);
                        }
                        req.send().await?;
                        Ok::<_, anyhow::Error>(())
                    }
                });
                for r in futures::future::join_all(sends).await {
                    r?;
                }
            }
            (Source::Stream { name, .. }, None) => {
                let client = aws_sdk_kinesis::Client::new(&backend.sdk);
                let all: Vec<usize> = range.collect();
                for chunk in all.chunks(500) {
                    let mut req = client.put_records().stream_name(name);
                    for &i in chunk {
                        req = req.records(
                            aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                                .partition_key(i.to_string())
                                .data(aws_sdk_kinesis::primitives::Blob::new(payload(i)))
                                .build()?,
                        );
                    }
                    req.send().await?;
                }
            }
            (Source::Table { name, .. }, _) => {
                let client = aws_sdk_dynamodb::Client::new(&backend.sdk);
                let all: Vec<usize> = range.collect();
                for chunk in all.chunks(25) {
                    let writes = chunk
                        .iter()
                        .map(|&i| -> anyhow::Result<_> {
                            let put = aws_sdk_dynamodb::types::PutRequest::builder()
                                .set_item(Some(item(i)))
                                .build()?;
                            Ok(aws_sdk_dynamodb::types::WriteRequest::builder()
                                .put_request(put)
                                .build())
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    client
                        .batch_write_item()
                        .request_items(name, writes)
                        .send()
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Sends one record through the wire protocol; returns when the send was acknowledged.
    async fn send_one(&self, backend: &Backend, i: usize) -> anyhow::Result<Instant> {
        match self {
            Source::Queue { url, fifo, .. } => {
                let client = aws_sdk_sqs::Client::new(&backend.sdk);
                let mut req = client
                    .send_message()
                    .queue_url(url)
                    .message_body(payload(i));
                if *fifo {
                    req = req.message_group_id(format!("g{}", i % 50));
                }
                req.send().await?;
            }
            Source::Stream { name, .. } => {
                aws_sdk_kinesis::Client::new(&backend.sdk)
                    .put_record()
                    .stream_name(name)
                    .partition_key(i.to_string())
                    .data(aws_sdk_kinesis::primitives::Blob::new(payload(i)))
                    .send()
                    .await?;
            }
            Source::Table { name, .. } => {
                aws_sdk_dynamodb::Client::new(&backend.sdk)
                    .put_item()
                    .table_name(name)
                    .set_item(Some(item(i)))
                    .send()
                    .await?;
            }
        }
        Ok(Instant::now())
    }

    /// Messages still in the queue (visible or in flight); 0 for streams.
    async fn remaining(&self, backend: &Backend) -> usize {
        let Source::Queue { name, url, .. } = self else {
            return 0;
        };
        if let Some(l) = &backend.loopback {
            return l.queue_len(name);
        }
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let Ok(out) = aws_sdk_sqs::Client::new(&backend.sdk)
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
        else {
            return usize::MAX;
        };
        let attrs = out.attributes.unwrap_or_default();
        let get = |k: A| {
            attrs
                .get(&k)
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0)
        };
        get(A::ApproximateNumberOfMessages) + get(A::ApproximateNumberOfMessagesNotVisible)
    }
}

fn item(i: usize) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    let p = payload(i);
    let (id, pad) = p.split_at(p.find('|').map(|x| x + 1).unwrap_or(0));
    std::collections::HashMap::from([
        ("pk".to_string(), V::S(i.to_string())),
        ("id".to_string(), V::S(id.to_string())),
        ("pad".to_string(), V::S(pad.to_string())),
    ])
}

/// A runner process (esmd or the baseline) with its CPU and memory readings.
pub(crate) struct Runner {
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
    /// esmd's admin address, where `esmd_heap_allocations_total` is read.
    pub(crate) admin: Option<String>,
}

impl Runner {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The AWS environment of a runner process; its stderr goes to `log`.
pub(crate) fn aws_env(
    cmd: &mut Command,
    backend: &Backend,
    function_url: &str,
    log: &std::path::Path,
) -> anyhow::Result<()> {
    cmd.stderr(std::fs::File::create(log)?);
    cmd.env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_REGION", REGION)
        .env("AWS_ENDPOINT_URL", &backend.url)
        .env("AWS_ENDPOINT_URL_LAMBDA", function_url)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env(
            "RUST_LOG",
            std::env::var("ESMD_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null());
    Ok(())
}

fn mapping_toml(w: &Workload, arn: &str) -> String {
    let mut m = format!("[[mapping]]\nevent_source_arn = \"{arn}\"\nfunction_name = \"bench\"\n");
    match *w {
        Workload::Sqs {
            batch,
            window,
            concurrency,
            ..
        } => {
            m += &format!("batch_size = {batch}\nmaximum_batching_window_in_seconds = {window}\n");
            if let Some(c) = concurrency {
                m += &format!("scaling_config = {{ maximum_concurrency = {c} }}\n");
            }
        }
        Workload::Kinesis {
            parallelization,
            poll_ms,
            ..
        } => {
            m += &format!(
                "batch_size = 100\nstarting_position = \"TRIM_HORIZON\"\nparallelization_factor = {parallelization}\n"
            );
            if let Some(ms) = poll_ms {
                m += &format!("esmd_poll_interval_ms = {ms}\n");
            }
        }
        Workload::DynamoDb => m += "batch_size = 100\nstarting_position = \"TRIM_HORIZON\"\n",
        Workload::Idle { .. } => {}
    }
    m
}

fn start_esmd(
    settings: &Settings,
    backend: &Backend,
    function_url: &str,
    mappings: &str,
    tag: &str,
) -> anyhow::Result<Runner> {
    let dir = settings.work_dir.join(tag);
    std::fs::create_dir_all(&dir)?;
    let admin = format!("127.0.0.1:{}", free_port()?);
    let config = format!(
        "[http]\nlisten = \"{admin}\"\n[state]\npath = \"{}\"\n{mappings}",
        dir.join("state.db").display()
    );
    let path = dir.join("esmd.toml");
    std::fs::write(&path, config)?;
    let mut cmd = Command::new(&settings.esmd);
    cmd.arg("run").arg("--config").arg(&path);
    aws_env(&mut cmd, backend, function_url, &dir.join("esmd.log"))?;
    // Allocations per record: counted on per-thread stripes (telemetry::allocations).
    cmd.env("ESMD_COUNT_ALLOCATIONS", "1");
    Ok(Runner {
        child: cmd.spawn().context("cannot start esmd")?,
        log: dir.join("esmd.log"),
        admin: Some(admin),
    })
}

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

fn start_baseline(
    settings: &Settings,
    backend: &Backend,
    function_url: &str,
    w: &Workload,
    source: &Source,
    count: usize,
    lean: bool,
) -> Option<anyhow::Result<Runner>> {
    let mut cmd = Command::new(&settings.self_exe);
    match (w, source) {
        (
            Workload::Sqs {
                batch, concurrency, ..
            },
            Source::Queue { url, .. },
        ) => {
            // As many loops as esmd may run batches at once: 10 without a concurrency bound
            // (more pollers than the rows need), esmd's bound where the workload sets one.
            let loops = concurrency.unwrap_or(10).to_string();
            cmd.args(["baseline-sqs", url, "bench", &batch.to_string(), &loops]);
        }
        (Workload::Kinesis { .. }, Source::Stream { name, .. }) => {
            cmd.args(["baseline-kinesis", name, "bench", "100", &count.to_string()]);
        }
        _ => return None,
    }
    if lean {
        cmd.arg("--lean");
    }
    let log = settings
        .work_dir
        .join(format!("{}-baseline.log", source.name()));
    if let Err(e) = aws_env(&mut cmd, backend, function_url, &log) {
        return Some(Err(e));
    }
    Some(
        cmd.spawn()
            .context("cannot start the baseline")
            .map(|child| Runner {
                child,
                log,
                admin: None,
            }),
    )
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
/// the first arrival and at the end.
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
            cpu_at_first = Some(proc::cpu(runner.pid()));
            allocations_at_first = allocations(runner);
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
