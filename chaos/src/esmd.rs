//! The real esmd binary under test: its config, its environment (every AWS endpoint is a
//! proxy), signals, restarts, and what its checkpoint store says.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::backend::REGION;
use crate::log::{CheckpointSample, Exit};
use crate::scenario::{Scenario, Source};

pub struct Esmd {
    binary: PathBuf,
    pub dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
    /// The admin port: once it listens, esmd's signal handlers are installed.
    port: u16,
    child: Option<Child>,
    /// Where the previous processes' logs end, so each exit reports its own panics.
    log_offset: u64,
}

impl Drop for Esmd {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `[[mapping]]` of a scenario.
pub fn mapping(s: &Scenario, source_arn: &str, failure_arn: Option<&str>) -> String {
    let mut m = format!(
        "[[mapping]]\nevent_source_arn = \"{source_arn}\"\nfunction_name = \"chaos\"\nbatch_size = {}\n",
        s.batch_size
    );
    if s.partial {
        m.push_str("function_response_types = [\"ReportBatchItemFailures\"]\n");
    }
    if s.source.is_stream() {
        m.push_str("starting_position = \"TRIM_HORIZON\"\n");
        if let Source::Kinesis {
            parallelization, ..
        } = s.source
        {
            m.push_str(&format!("parallelization_factor = {parallelization}\n"));
        }
        if s.bisect {
            m.push_str("bisect_batch_on_function_error = true\n");
        }
        if let Some(arn) = failure_arn {
            m.push_str(&format!(
                "maximum_retry_attempts = 2\ndestination_config = {{ on_failure = {{ destination_arn = \"{arn}\" }} }}\n"
            ));
        }
    } else {
        // Failed messages come back after the queue's visibility timeout, as on AWS.
        m.push_str("scaling_config = { maximum_concurrency = 2 }\n");
    }
    m
}

impl Esmd {
    /// Writes the config (one mapping, a SQLite store in `dir`) and starts esmd with every
    /// service's endpoint pointed at `endpoints` (`AWS_ENDPOINT_URL_<SERVICE>`, URL).
    pub async fn start(
        binary: &Path,
        dir: &Path,
        mapping: &str,
        endpoints: &[(&str, String)],
    ) -> Result<Esmd> {
        let config = dir.join("esmd.toml");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:{port}\"\n[state]\npath = \"{}\"\n[daemon]\nshutdown_timeout_seconds = 10\n[aws]\nregion = \"{REGION}\"\n{mapping}",
                dir.join("state.db").display()
            ),
        )?;
        let mut env: Vec<(String, String)> = vec![
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("RUST_LOG".into(), "info".into()),
        ];
        for (service, url) in endpoints {
            env.push((format!("AWS_ENDPOINT_URL_{service}"), url.clone()));
        }
        let mut e = Esmd {
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            log: dir.join("esmd.log"),
            config,
            env,
            port,
            child: None,
            log_offset: 0,
        };
        e.spawn().await?;
        Ok(e)
    }

    pub async fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        self.log_offset = log.metadata()?.len();
        let child = Command::new(&self.binary)
            .args(["run", "--config"])
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.binary.display()))?;
        self.child = Some(child);
        // A SIGTERM before esmd's handlers exist would kill it with the default action: the
        // timeline starts once the admin endpoint (opened after the handlers) listens.
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                anyhow::bail!(
                    "esmd exited during startup ({status}); see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::bail!(
            "esmd did not open its admin port within 6 s; see {}",
            self.log.display()
        )
    }

    fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own child's pid; it has not been reaped (we hold it).
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// Sends `sig` (SIGKILL or SIGTERM), waits up to `within` for the exit, and reports it.
    pub async fn stop(&mut self, sig: i32, within: Duration) -> Exit {
        self.signal(sig);
        let deadline = Instant::now() + within;
        let mut status = None;
        while let Some(c) = self.child.as_mut() {
            if let Ok(Some(s)) = c.try_wait() {
                status = Some(s);
                break;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child = None;
        use std::os::unix::process::ExitStatusExt;
        let panics = self.panics();
        Exit {
            after: if sig == libc::SIGKILL {
                "kill".into()
            } else {
                "sigterm".into()
            },
            code: status.and_then(|s| s.code()),
            signal: status.and_then(|s| s.signal()),
            panics,
        }
    }

    /// Lines with `panicked` that this process wrote to the log.
    fn panics(&self) -> Vec<String> {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let from = (self.log_offset as usize).min(text.len());
        String::from_utf8_lossy(&text[from..])
            .lines()
            .filter(|l| l.contains("panicked"))
            .map(str::to_string)
            .collect()
    }

    /// The store's checkpoints, read-only, as they are now.
    pub fn checkpoints(&self, at_ms: u64, step: &str) -> Vec<CheckpointSample> {
        let path = self.dir.join("state.db");
        let Ok(conn) = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        ) else {
            return Vec::new();
        };
        let _ = conn.busy_timeout(Duration::from_secs(5));
        let Ok(mut stmt) = conn.prepare("SELECT shard_id, sequence_number FROM shards") else {
            return Vec::new();
        };
        let rows = stmt.query_map([], |r| {
            Ok(CheckpointSample {
                at_ms,
                step: step.to_string(),
                shard: r.get(0)?,
                sequence: r.get(1)?,
            })
        });
        match rows {
            Ok(rows) => rows.filter_map(|r| r.ok()).collect(),
            Err(_) => Vec::new(),
        }
    }
}
