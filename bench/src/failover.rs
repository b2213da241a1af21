//! `esmd-bench failover`: several esmd instances share a Kinesis stream through the DynamoDB
//! lease table on moto server. Each trial kills (`kill -9`) the instance holding the most
//! shards and times how long until the survivor holds every shard; handoff trials do the same
//! with SIGTERM. A counting proxy in front of moto's DynamoDB gives the lease table's requests
//! per second per shard held while nothing changes. Prints one table; asserts nothing.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::function::Function;
use crate::workloads::free_port;

pub struct Options {
    pub esmd: PathBuf,
    pub moto: String,
    pub trials: usize,
    pub handoffs: usize,
    pub lease_seconds: u64,
    pub shards: usize,
}

struct Instance {
    child: Child,
    admin: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Env {
    esmd: PathBuf,
    moto_url: String,
    dynamodb_url: String,
    function_url: String,
    dir: tempfile_dir::Dir,
    lease_seconds: u64,
    stream_arn: String,
}

mod tempfile_dir {
    /// A scratch directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Env {
    fn spawn(&self, name: &str) -> anyhow::Result<Instance> {
        let port = free_port()?;
        let config = format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n[state]\nbackend = \"dynamodb\"\ntable = \"leases\"\n\
             instance_id = \"{name}\"\nlease_duration_seconds = {}\n[[mapping]]\n\
             uuid = \"6a1f3b2c-0d4e-4f5a-9b8c-7d6e5f4a3b2c\"\nevent_source_arn = \"{}\"\n\
             function_name = \"bench\"\nstarting_position = \"TRIM_HORIZON\"\n",
            self.lease_seconds, self.stream_arn
        );
        let path = self.dir.0.join(format!("{name}.toml"));
        std::fs::write(&path, config)?;
        let log = std::fs::File::create(self.dir.0.join(format!("{name}.log")))?;
        let child = Command::new(&self.esmd)
            .args(["run", "--config"])
            .arg(&path)
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &self.moto_url)
            .env("AWS_ENDPOINT_URL_DYNAMODB", &self.dynamodb_url)
            .env("AWS_ENDPOINT_URL_LAMBDA", &self.function_url)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start esmd")?;
        Ok(Instance {
            child,
            admin: format!("127.0.0.1:{port}"),
        })
    }
}

/// Shards an instance reads now (0 when its admin endpoint does not answer).
async fn held(admin: &str) -> usize {
    let Ok(mut stream) = tokio::net::TcpStream::connect(admin).await else {
        return 0;
    };
    let request = format!("GET /mappings HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return 0;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let doc: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    doc["mappings"][0]["shards"].as_object().map_or(0, |s| {
        s.values().filter(|v| v["status"] == "reading").count()
    })
}

async fn wait_until(
    limit: Duration,
    mut fact: impl AsyncFnMut() -> bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while !fact().await {
        anyhow::ensure!(started.elapsed() < limit, "not reached within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(started.elapsed())
}

/// A TCP proxy to moto that counts DynamoDB requests (by their `X-Amz-Target` header).
async fn counting_proxy(upstream: String, count: Arc<AtomicU64>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (upstream, count) = (upstream.clone(), Arc::clone(&count));
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let up = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        let hits = chunk
                            .windows(b"DynamoDB_20120810.".len())
                            .filter(|w| w.eq_ignore_ascii_case(b"DynamoDB_20120810."))
                            .count();
                        count.fetch_add(hits as u64, Ordering::Relaxed);
                        if sw.write_all(chunk).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    Ok(url)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn run(o: Options) -> anyhow::Result<()> {
    let port = free_port()?;
    let mut moto = Command::new(&o.moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {} (pip install 'moto[server]')", o.moto))?;
    let moto_url = format!("http://127.0.0.1:{port}");
    let result = trials(&o, &moto_url).await;
    let _ = moto.kill();
    let _ = moto.wait();
    result
}

async fn trials(o: &Options, moto_url: &str) -> anyhow::Result<()> {
    wait_until(Duration::from_secs(30), async || {
        std::net::TcpStream::connect(moto_url.trim_start_matches("http://")).is_ok()
    })
    .await?;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto_url)
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "bench", "bench", None, None, "bench",
        ))
        .load()
        .await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    kinesis
        .create_stream()
        .stream_name("failover")
        .shard_count(o.shards as i32)
        .send()
        .await?;
    let function = Function::default();
    function.reset(0);
    let requests = Arc::new(AtomicU64::new(0));
    let dir = std::env::temp_dir().join(format!("esmd-failover-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let env = Env {
        esmd: o.esmd.clone(),
        moto_url: moto_url.to_string(),
        dynamodb_url: counting_proxy(
            moto_url.trim_start_matches("http://").to_string(),
            Arc::clone(&requests),
        )
        .await?,
        function_url: function.start().await?,
        dir: tempfile_dir::Dir(dir),
        lease_seconds: o.lease_seconds,
        stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/failover".to_string(),
    };
    let shards = o.shards;
    let mut next = 0;
    let mut spawn = |env: &Env| {
        next += 1;
        env.spawn(&format!("instance-{next}"))
    };
    let mut pair = [spawn(&env)?, spawn(&env)?];
    let balanced = async |pair: &[Instance; 2]| {
        let (a, b) = (held(&pair[0].admin).await, held(&pair[1].admin).await);
        a + b == shards && a > 0 && b > 0
    };
    wait_until(Duration::from_secs(60), async || balanced(&pair).await).await?;

    // DynamoDB requests per second per shard held, while nothing changes.
    let window = Duration::from_secs(if o.trials > 3 { 20 } else { 5 });
    let before = requests.load(Ordering::Relaxed);
    tokio::time::sleep(window).await;
    let per_shard =
        (requests.load(Ordering::Relaxed) - before) as f64 / window.as_secs_f64() / shards as f64;

    let mut failovers = Vec::new();
    let mut handoffs = Vec::new();
    for trial in 0..o.trials + o.handoffs {
        let kill = trial < o.trials;
        let victim = if held(&pair[0].admin).await >= held(&pair[1].admin).await {
            0
        } else {
            1
        };
        let survivor = pair[1 - victim].admin.clone();
        let pid = pair[victim].child.id().to_string();
        let signal = if kill { "-KILL" } else { "-TERM" };
        Command::new("kill").args([signal, &pid]).status()?;
        let taken = wait_until(Duration::from_secs(60), async || {
            held(&survivor).await == shards
        })
        .await?;
        let _ = pair[victim].child.wait();
        if kill {
            failovers.push(taken)
        } else {
            handoffs.push(taken)
        }
        eprintln!(
            "trial {}: {} -> every shard on the survivor in {taken:.2?}",
            trial + 1,
            if kill { "kill -9" } else { "SIGTERM" }
        );
        pair[victim] = spawn(&env)?;
        wait_until(Duration::from_secs(60), async || balanced(&pair).await).await?;
    }
    failovers.sort();
    handoffs.sort();
    println!("| figure | value |\n|---|---|");
    println!(
        "| shards, instances, lease | {shards}, 2, {} s |",
        o.lease_seconds
    );
    println!("| kill -9 trials | {} |", failovers.len());
    println!(
        "| failover p50 / p99 / max | {:.2?} / {:.2?} / {:.2?} |",
        percentile(&failovers, 0.5),
        percentile(&failovers, 0.99),
        failovers.last().copied().unwrap_or_default()
    );
    println!("| SIGTERM handoffs | {} |", handoffs.len());
    println!(
        "| handoff p50 / max | {:.2?} / {:.2?} |",
        percentile(&handoffs, 0.5),
        handoffs.last().copied().unwrap_or_default()
    );
    println!("| DynamoDB requests/s per shard held (steady) | {per_shard:.2} |");
    println!(
        "| records lost / backwards checkpoints | not measured here: tests/leases.rs checks them |"
    );
    Ok(())
}
