//! The peer: serverless-offline-sqs (serverless 3, serverless-offline 13) draining the same
//! number of messages from a moto queue, its handler forwarding each event to the same
//! function endpoint over HTTP. Its process tree's CPU is read from /proc like esmd's.

use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::function::Function;
use crate::report::Row;
use crate::workloads::{aws_env, drain, free_port, Backend, Runner, Settings, Source, Workload};

pub const WORKLOAD: Workload = Workload::Sqs {
    fifo: false,
    batch: 10,
    window: 0,
    concurrency: None,
};

pub async fn run(
    settings: &Settings,
    backend: &Backend,
    function: &Function,
    function_url: &str,
    records: usize,
) -> anyhow::Result<Option<Row>> {
    let cli = settings
        .peer
        .join("node_modules/serverless/bin/serverless.js");
    if !cli.exists() {
        return Ok(None);
    }
    let source = Source::create(backend, &WORKLOAD, "peer").await?;
    source.preload(backend, 0..records).await?;
    function.reset(records);
    let mut cmd = Command::new("node");
    cmd.arg(&cli)
        .args(["offline", "start"])
        .current_dir(&settings.peer)
        .env("PEER_SQS_ENDPOINT", &backend.url)
        .env("PEER_QUEUE", source.name())
        .env(
            "PEER_FUNCTION_URL",
            format!("{function_url}/2015-03-31/functions/bench/invocations"),
        )
        .env("PEER_HTTP_PORT", free_port()?.to_string())
        .env("PEER_LAMBDA_PORT", free_port()?.to_string())
        .env("SLS_TELEMETRY_DISABLED", "1")
        .env("SLS_NOTIFICATIONS_MODE", "off")
        .env("SLS_DEPRECATION_DISABLE", "*");
    let log = settings.work_dir.join("peer.log");
    aws_env(&mut cmd, backend, function_url, &log)?;
    let mut runner = Runner {
        child: cmd.spawn().context("cannot start serverless offline")?,
        log,
        admin: None,
    };
    let timeout = Duration::from_secs(if settings.smoke { 180 } else { 900 });
    let d = drain(function, &source, backend, &mut runner, records, timeout).await;
    let peak = crate::proc::peak_rss_mib(runner.pid());
    runner.stop();
    let d = d?;
    let mut row = Row::new(backend.name, &WORKLOAD.name(), "serverless-offline-sqs");
    row.throughput(records, 1024, d.seconds, d.cpu);
    row.peak_rss_mib = Some(peak);
    Ok(Some(row))
}
