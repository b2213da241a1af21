//! `esmd-bench`: runs the release `esmd` binary as a separate process against moto server and
//! against an in-memory loopback backend, beside a raw-SDK baseline (and serverless-offline-sqs
//! on moto, when installed), and prints one table. See `bench/README.md`.

mod baseline;
mod failover;
mod fanout;
mod function;
mod lean;
mod loopback;
mod peer;
mod proc;
mod report;
mod workloads;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "esmd-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the benchmarks and prints the table.
    Run {
        /// The esmd binary to measure (build it with `cargo build --release`).
        #[arg(long, default_value = "target/release/esmd")]
        esmd: PathBuf,
        /// The moto server command.
        #[arg(long, default_value = "moto_server")]
        moto: String,
        /// A few hundred records, short idle: checks that the benchmark still works.
        #[arg(long)]
        smoke: bool,
        /// Backends (comma-separated): loopback; slow and slow-close, the loopback answering
        /// after 100 ms on kept-alive connections or closing each one; moto.
        #[arg(long, default_value = "loopback,slow,slow-close,moto")]
        backends: String,
        /// Where the JSON results go.
        #[arg(long, default_value = "bench/results/latest.json")]
        json: PathBuf,
        /// The serverless-offline-sqs project (with node_modules); skipped if missing.
        #[arg(long, default_value = "bench/peer")]
        peer: PathBuf,
        /// Seconds of idleness before "RSS after idle" is read.
        #[arg(long)]
        idle_seconds: Option<u64>,
        /// Runs only the workloads whose name contains this text ("peer" for the peer).
        #[arg(long)]
        only: Option<String>,
    },
    /// Lease-table failover: kill -9 and SIGTERM trials over two instances on moto.
    Failover {
        #[arg(long, default_value = "target/release/esmd")]
        esmd: PathBuf,
        #[arg(long, default_value = "moto_server")]
        moto: String,
        /// kill -9 trials.
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// SIGTERM trials.
        #[arg(long, default_value_t = 5)]
        handoffs: usize,
        /// lease_duration_seconds of the instances (esmd's default: 6).
        #[arg(long, default_value_t = 6)]
        lease_seconds: u64,
        #[arg(long, default_value_t = 4)]
        shards: usize,
    },
    /// Kinesis delivery latency: enhanced fan-out beside polling on one kinesis-local stream.
    Fanout {
        #[arg(long, default_value = "target/release/esmd")]
        esmd: PathBuf,
        /// loopback, kinesis-local (comma-separated).
        #[arg(long, default_value = "loopback,kinesis-local")]
        backends: String,
        /// kinesis-local's package directory.
        #[arg(long, default_value = ".ci/node/node_modules/kinesis-local")]
        kinesis_local: PathBuf,
        #[arg(long, default_value_t = 300)]
        records: usize,
        /// Milliseconds between two PutRecord calls.
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
    },
    /// Internal: the raw-SDK SQS loop (endpoints from the AWS environment variables).
    BaselineSqs {
        queue_url: String,
        function: String,
        batch: usize,
        loops: usize,
        /// The same calls without the SDK (`lean.rs`).
        #[arg(long)]
        lean: bool,
    },
    /// Internal: the raw-SDK Kinesis loop.
    BaselineKinesis {
        stream: String,
        function: String,
        batch: usize,
        count: usize,
        /// The same calls without the SDK (`lean.rs`).
        #[arg(long)]
        lean: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run {
                esmd,
                moto,
                smoke,
                backends,
                json,
                peer,
                idle_seconds,
                only,
            } => {
                let mut settings = workloads::Settings::new(smoke, esmd, moto, peer, idle_seconds)?;
                settings.only = only;
                let backends: Vec<String> = backends.split(',').map(str::to_string).collect();
                let results = workloads::run_all(&settings, &backends).await?;
                let table = report::table(&results);
                println!("{table}");
                // What one wake-up after a 100 ms wait costs on this host, with no work: the
                // floor under every row whose backend answers slowly (bench/README.md).
                let sleeps = if smoke { 5 } else { 30 };
                let wake = tokio::task::spawn_blocking(move || {
                    proc::wake_cost(std::time::Duration::from_millis(100), sleeps)
                })
                .await?;
                println!(
                    "a thread that only sleeps 100 ms and wakes costs {:.1} µs of CPU per wake on this host",
                    wake.as_secs_f64() * 1e6
                );
                report::write_json(&json, &settings, &results, wake)?;
                println!("results written to {}", json.display());
                let failed = results.iter().filter(|r| r.error.is_some()).count();
                anyhow::ensure!(failed == 0, "{failed} benchmark(s) failed");
                Ok(())
            }
            Command::Failover {
                esmd,
                moto,
                trials,
                handoffs,
                lease_seconds,
                shards,
            } => {
                failover::run(failover::Options {
                    esmd,
                    moto,
                    trials,
                    handoffs,
                    lease_seconds,
                    shards,
                })
                .await
            }
            Command::Fanout {
                esmd,
                backends,
                kinesis_local,
                records,
                interval_ms,
            } => {
                fanout::run(fanout::Options {
                    backends,
                    esmd,
                    kinesis_local,
                    records,
                    interval: std::time::Duration::from_millis(interval_ms),
                })
                .await
            }
            Command::BaselineSqs {
                queue_url,
                function,
                batch,
                loops,
                lean: false,
            } => baseline::sqs(queue_url, function, batch, loops).await,
            Command::BaselineSqs {
                queue_url,
                function,
                batch,
                loops,
                lean: true,
            } => lean::sqs(queue_url, function, batch, loops).await,
            Command::BaselineKinesis {
                stream,
                function,
                batch,
                count,
                lean: false,
            } => baseline::kinesis(stream, function, batch, count).await,
            Command::BaselineKinesis {
                stream,
                function,
                batch,
                count,
                lean: true,
            } => lean::kinesis(stream, function, batch, count).await,
        }
    })
}
