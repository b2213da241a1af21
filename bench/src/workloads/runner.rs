//! The processes a run measures: esmd, started from a generated configuration and pointed at
//! the backend and the function through the SDK's environment variables, and the baseline
//! loops.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{free_port, Backend, Settings, Source, Workload, REGION};
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

pub(super) fn mapping_toml(w: &Workload, arn: &str) -> String {
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

pub(super) fn start_esmd(
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

pub(super) fn start_baseline(
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
