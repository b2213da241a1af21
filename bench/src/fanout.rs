//! `esmd-bench fanout`: delivery latency through enhanced fan-out beside polling, on the same
//! stream in the same run. One esmd process runs two mappings of one stream: one with the
//! stream's ARN (GetRecords, AWS's once-a-second cadence when caught up) and one with a
//! consumer's ARN (SubscribeToShard). Records are put at a steady rate; each record's latency
//! is from just before its PutRecord to its first arrival at the function. Two backends: the
//! loopback one, which pushes a subscription event as soon as records arrive (esmd's own
//! latency), and kinesis-local, whose subscriptions push on a fixed one-second tick. Prints
//! p50/p99 per backend and path; asserts only that every record arrived.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Path, State};
use base64::Engine;
use serde_json::Value;

use crate::workloads::free_port;

pub struct Options {
    /// `loopback`, `kinesis-local` (comma-separated).
    pub backends: String,
    pub esmd: PathBuf,
    /// kinesis-local's package directory (where its main.js is).
    pub kinesis_local: PathBuf,
    pub records: usize,
    pub interval: Duration,
}

/// First arrival per (function, record index).
type Arrivals = Arc<Mutex<HashMap<String, HashMap<usize, Instant>>>>;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn invoke(
    State(arrivals): State<Arrivals>,
    Path(name): Path<String>,
    body: Bytes,
) -> &'static str {
    let now = Instant::now();
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut all = arrivals.lock().unwrap_or_else(|e| e.into_inner());
    let seen = all.entry(name).or_default();
    for record in event["Records"].as_array().into_iter().flatten() {
        let data = record["kinesis"]["data"].as_str().unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        if let Some(i) = text.split('|').next().and_then(|s| s.parse().ok()) {
            seen.entry(i).or_insert(now);
        }
    }
    "{}"
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

async fn wait_active(client: &aws_sdk_kinesis::Client, stream: &str) -> anyhow::Result<String> {
    for _ in 0..100 {
        let d = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await?;
        if let Some(s) = d.stream_description_summary() {
            if s.stream_status().as_str() == "ACTIVE" {
                return Ok(s.stream_arn().to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("stream {stream} did not become active")
}

async fn register(client: &aws_sdk_kinesis::Client, stream_arn: &str) -> anyhow::Result<String> {
    let out = client
        .register_stream_consumer()
        .stream_arn(stream_arn)
        .consumer_name("bench")
        .send()
        .await?;
    let arn = out
        .consumer()
        .context("no consumer")?
        .consumer_arn()
        .to_string();
    for _ in 0..100 {
        let d = client
            .describe_stream_consumer()
            .consumer_arn(&arn)
            .send()
            .await?;
        if d.consumer_description()
            .map(|c| c.consumer_status().as_str())
            == Some("ACTIVE")
        {
            return Ok(arn);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("consumer did not become active")
}

/// One measured path: (backend, path, delivered, sorted latencies).
type Row = (&'static str, &'static str, usize, Vec<Duration>);

pub async fn run(o: Options) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for backend in o.backends.split(',') {
        match backend {
            "loopback" => rows.extend(on_loopback(&o).await?),
            "kinesis-local" => rows.extend(on_kinesis_local(&o).await?),
            other => anyhow::bail!("unknown backend {other} (loopback, kinesis-local)"),
        }
    }
    println!(
        "Kinesis delivery latency, PutRecord to the function, {} records at one per {} ms, one shard:",
        o.records,
        o.interval.as_millis()
    );
    println!("| backend | path | delivered | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    let ms = |d: Duration| format!("{} ms", d.as_millis());
    let mut missing = Vec::new();
    for (backend, path, delivered, latencies) in &rows {
        println!(
            "| {backend} | {path} | {delivered}/{} | {} | {} | {} |",
            o.records,
            ms(percentile(latencies, 0.5)),
            ms(percentile(latencies, 0.99)),
            ms(latencies.last().copied().unwrap_or_default()),
        );
        if *delivered < o.records {
            missing.push(format!("{backend} {path}"));
        }
    }
    anyhow::ensure!(missing.is_empty(), "records missing on {missing:?}");
    Ok(())
}

async fn kinesis_client(endpoint: &str) -> aws_sdk_kinesis::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "bench", "bench", None, None, "bench",
        ))
        .load()
        .await;
    aws_sdk_kinesis::Client::new(&config)
}

/// The loopback backend: subscription events are pushed as soon as records arrive.
async fn on_loopback(o: &Options) -> anyhow::Result<Vec<Row>> {
    let (backend, endpoint) = crate::loopback::Loopback::start().await?;
    backend.create_stream("fanout", 1);
    let stream_arn = "arn:aws:kinesis:us-east-1:123456789012:stream/fanout";
    let consumer_arn = format!("{stream_arn}/consumer/bench:1700000000");
    let client = kinesis_client(&endpoint).await;
    measure(o, "loopback", &endpoint, &client, stream_arn, &consumer_arn).await
}

async fn on_kinesis_local(o: &Options) -> anyhow::Result<Vec<Row>> {
    anyhow::ensure!(
        o.kinesis_local.join("main.js").exists(),
        "kinesis-local is not at {} (scripts/test.sh installs it into .ci/node)",
        o.kinesis_local.display()
    );
    let port = free_port()?;
    let _kinesis = Killed(
        Command::new("node")
            .arg("main.js")
            .current_dir(&o.kinesis_local)
            .env("KINESIS_MOCK_PLAIN_PORT", port.to_string())
            .env("KINESIS_MOCK_TLS_PORT", free_port()?.to_string())
            .env("CREATE_STREAM_DURATION", "100ms")
            .env("REGISTER_STREAM_CONSUMER_DURATION", "100ms")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting kinesis-local (node)")?,
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..150 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = kinesis_client(&endpoint).await;
    client
        .create_stream()
        .stream_name("fanout")
        .shard_count(1)
        .send()
        .await?;
    let stream_arn = wait_active(&client, "fanout").await?;
    let consumer_arn = register(&client, &stream_arn).await?;

    measure(
        o,
        "kinesis-local",
        &endpoint,
        &client,
        &stream_arn,
        &consumer_arn,
    )
    .await
}

/// Runs esmd with both mappings of the stream, puts the records and measures both paths.
async fn measure(
    o: &Options,
    backend: &'static str,
    endpoint: &str,
    client: &aws_sdk_kinesis::Client,
    stream_arn: &str,
    consumer_arn: &str,
) -> anyhow::Result<Vec<Row>> {
    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let function_url = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new()
        .route(
            "/2015-03-31/functions/{name}/invocations",
            axum::routing::post(invoke),
        )
        .with_state(Arc::clone(&arrivals));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = std::env::temp_dir().join(format!("esmd-bench-fanout-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let admin = free_port()?;
    let esmd_config = format!(
        "[http]\nlisten = \"127.0.0.1:{admin}\"\n[state]\npath = \"{}\"\n\
         [[mapping]]\nevent_source_arn = \"{stream_arn}\"\nfunction_name = \"polling\"\nstarting_position = \"LATEST\"\n\
         [[mapping]]\nevent_source_arn = \"{consumer_arn}\"\nfunction_name = \"fanout\"\nstarting_position = \"LATEST\"\n",
        dir.join("state.db").display()
    );
    let config_path = dir.join("esmd.toml");
    std::fs::write(&config_path, esmd_config)?;
    let _esmd = Killed(
        Command::new(&o.esmd)
            .args(["run", "--config"])
            .arg(&config_path)
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ENDPOINT_URL_LAMBDA", &function_url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("esmd.log"))?)
            .spawn()
            .context("starting esmd")?,
    );
    // Both mappings polling, and past their first reads (LATEST starts at the tip).
    let ready = format!("127.0.0.1:{admin}");
    for _ in 0..300 {
        if std::net::TcpStream::connect(&ready).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;

    let mut sent = Vec::with_capacity(o.records);
    for i in 0..o.records {
        let at = Instant::now();
        client
            .put_record()
            .stream_name("fanout")
            .partition_key(format!("k{}", i % 8))
            .data(aws_sdk_kinesis::primitives::Blob::new(
                format!("{i}|bench").into_bytes(),
            ))
            .send()
            .await?;
        sent.push(at);
        tokio::time::sleep(o.interval).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let complete = |name: &str| {
        arrivals
            .lock()
            .map(|a| a.get(name).map_or(0, HashMap::len) >= o.records)
            .unwrap_or(false)
    };
    while !(complete("polling") && complete("fanout")) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let mut rows = Vec::new();
    for (name, path) in [
        ("polling", "polling (GetRecords)"),
        ("fanout", "enhanced fan-out (SubscribeToShard)"),
    ] {
        let seen = all.get(name).cloned().unwrap_or_default();
        let mut latencies: Vec<Duration> = seen
            .iter()
            .filter_map(|(i, at)| sent.get(*i).map(|s| at.saturating_duration_since(*s)))
            .collect();
        latencies.sort();
        rows.push((backend, path, seen.len(), latencies));
    }
    Ok(rows)
}
