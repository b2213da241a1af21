//! The real `esmd` binary as a child process, with its admin endpoints and log.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A sidecar's profile, to put before a config's mappings: `[aws] client = "lean"` (esmd's own
/// signed client for the per-batch calls: ReceiveMessage, DeleteMessageBatch, GetRecords,
/// Invoke) and one runtime thread (`worker_threads = 1`, tokio's current-thread scheduler).
pub const LEAN: &str = "[aws]\nclient = \"lean\"\n[daemon]\nworker_threads = 1\n";

/// The `esmd` binary running with a config, killed on drop.
pub struct Esmd {
    child: Option<Child>,
    pub admin: String,
    pub log: PathBuf,
    pub dir: tempfile::TempDir,
    config_path: PathBuf,
    /// The `[http]`, `[state]` and `[daemon]` sections written before each body.
    header: String,
    env: Vec<(String, String)>,
    /// `RLIMIT_FSIZE` for the next starts: a file esmd writes cannot grow past it (a full
    /// disk for that file), with SIGXFSZ ignored so that the write fails with EFBIG.
    file_size_limit: Option<u64>,
    /// The exit status of a process that ended during startup.
    exited: Option<ExitStatus>,
}

impl Esmd {
    /// Writes `[http]` and `[state]` for a free port and a temp dir, then `body`.
    pub fn start(moto: &Moto, function: &FunctionServer, body: &str) -> Esmd {
        Self::start_with_env(moto, function, body, &[])
    }

    pub fn start_with_env(
        moto: &Moto,
        function: &FunctionServer,
        body: &str,
        env: &[(&str, &str)],
    ) -> Esmd {
        Self::start_at(&moto.endpoint, function, body, env)
    }

    /// Like `start_with_env`, with any AWS endpoint (moto, kinesis-local).
    pub fn start_at(
        endpoint: &str,
        function: &FunctionServer,
        body: &str,
        env: &[(&str, &str)],
    ) -> Esmd {
        Self::start_with_state(endpoint, function, None, body, env)
    }

    /// One of several instances sharing the DynamoDB lease table `table` on moto, named
    /// `instance`, with 3 s leases.
    pub fn start_leased(
        moto: &Moto,
        function: &FunctionServer,
        table: &str,
        instance: &str,
        body: &str,
    ) -> Esmd {
        let state = format!(
            "[state]\nbackend = \"dynamodb\"\ntable = \"{table}\"\ninstance_id = \"{instance}\"\nlease_duration_seconds = 3\n"
        );
        Self::start_with_state(&moto.endpoint, function, Some(&state), body, &[])
    }

    /// Writes `[http]`, `[state]` (`state`, or a SQLite file in a temp dir) and `[daemon]`,
    /// then `body`, and starts esmd on it.
    pub fn start_with_state(
        endpoint: &str,
        function: &FunctionServer,
        state: Option<&str>,
        body: &str,
        env: &[(&str, &str)],
    ) -> Esmd {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let state = state.map(str::to_string).unwrap_or_else(|| {
            format!(
                "[state]\npath = \"{}\"\n",
                dir.path().join("state.db").display()
            )
        });
        // A body with its own `[daemon]` gets the shutdown timeout there.
        const DAEMON: &str = "[daemon]\nshutdown_timeout_seconds = 10\n";
        let daemon = if body.contains("[daemon]\n") {
            ""
        } else {
            DAEMON
        };
        let header = format!("[http]\nlisten = \"127.0.0.1:{port}\"\n{state}{daemon}");
        let body = body.replacen("[daemon]\n", DAEMON, 1);
        let config_path = dir.path().join("esmd.toml");
        std::fs::write(&config_path, format!("{header}{body}")).expect("write config");
        let log = dir.path().join("esmd.log");
        let mut all_env: Vec<(String, String)> = vec![
            ("AWS_ACCESS_KEY_ID".into(), ACCOUNT.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_ENDPOINT_URL".into(), endpoint.into()),
            ("AWS_ENDPOINT_URL_LAMBDA".into(), function.endpoint.clone()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            (
                "RUST_LOG".into(),
                std::env::var("ESMD_TEST_LOG").unwrap_or_else(|_| "info,esmd=debug".into()),
            ),
        ];
        all_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut esmd = Esmd {
            child: None,
            admin: format!("http://127.0.0.1:{port}"),
            log,
            dir,
            config_path,
            header,
            env: all_env,
            file_size_limit: None,
            exited: None,
        };
        esmd.spawn();
        esmd
    }

    fn spawn(&mut self) {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_esmd"));
        cmd.args(["run", "--config"])
            .arg(&self.config_path)
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(limit) = self.file_size_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec only async-signal-safe calls: setrlimit, signal.
            unsafe {
                cmd.pre_exec(move || {
                    let rl = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &rl) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    Ok(())
                });
            }
        }
        self.child = Some(cmd.spawn().expect("spawn esmd"));
        // Up when the admin endpoint answers; a process that exits during startup (a test of
        // a refused start) is left for `wait_exit` to report.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http_get(&format!("{}/healthz", self.admin)).is_ok() {
                return;
            }
            let child = self.child.as_mut().expect("spawned");
            if matches!(child.try_wait(), Ok(Some(_))) {
                // Keep the status for wait_exit: try_wait reaped it, so remember it.
                let status = child.wait().ok();
                self.exited = status;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for admin endpoint\n--- esmd log ---\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Replaces the mappings in the config file (same `[http]`, `[state]`, `[daemon]`); send
    /// SIGHUP to apply it.
    pub fn rewrite_config(&self, body: &str) {
        std::fs::write(&self.config_path, format!("{}{body}", self.header)).expect("write config");
    }

    /// Caps the size of every file the next esmd process writes (see `file_size_limit`).
    pub fn limit_file_size(&mut self, bytes: Option<u64>) {
        self.file_size_limit = bytes;
    }

    /// The SQLite state file (the default `[state]`).
    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    /// Starts esmd again with the same config and state (after it exited or was killed).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "esmd is still running");
        self.spawn();
    }

    /// Runs `esmd checkpoints --config <this config> <args…>`: (success, stdout, stderr).
    pub fn checkpoints(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_esmd"))
            .arg("checkpoints")
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .output()
            .expect("run esmd checkpoints");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs `esmd <args…>`, with this esmd's environment, where `{config}` in `args` stands
    /// for its config file: (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let config = self.config_path.display().to_string();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{config}", &config))
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_esmd"))
            .args(&args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run esmd");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `kill -9`: no drain, no final checkpoint.
    pub fn kill9(&mut self) {
        self.signal("KILL");
        self.wait_exit(Duration::from_secs(10));
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&format!("{}{}", self.admin, path)).unwrap_or((0, String::new()))
    }

    /// Waits until esmd is idle: every shard still being read has answered two more reads
    /// than when this was called, holds no record read but not settled, and no batch is in
    /// flight. A test that must show something did *not* happen waits for this instead of
    /// sleeping: a record still to come would have been read by then.
    pub fn wait_until_idle(&self, timeout: Duration) {
        // (mapping/shard, reads answered, still being read) for every shard listed.
        let shards = |m: &Value| -> Vec<(String, u64, bool)> {
            let mut out = Vec::new();
            for mapping in m["mappings"].as_array().into_iter().flatten() {
                for (shard, view) in mapping["shards"].as_object().into_iter().flatten() {
                    let id = format!("{}/{shard}", mapping["uuid"]);
                    let reads = view["reads"].as_u64().unwrap_or(0);
                    out.push((id, reads, view["status"] == "reading"));
                }
            }
            out
        };
        let listed = |m: &Value| {
            m["mappings"].as_array().into_iter().flatten().all(|m| {
                m["source"] == "sqs" || m["shards"].as_object().is_some_and(|s| !s.is_empty())
            })
        };
        self.wait_for(timeout, "every stream mapping's shards", || {
            listed(&self.mappings())
        });
        let before = shards(&self.mappings());
        self.wait_for(timeout, "esmd idle", || {
            let now = self.mappings();
            let current = shards(&now);
            // Every shard still being read answered two more reads (an ended one is done).
            let read_twice = before.iter().all(|(id, n, _)| {
                current
                    .iter()
                    .any(|(id2, m, reading)| id2 == id && (!reading || *m >= n + 2))
            });
            let mappings = now["mappings"].as_array().cloned().unwrap_or_default();
            let settled = mappings.iter().all(|m| {
                m["metrics"]["in_flight_batches"] == 0
                    && m["shards"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .all(|(_, v)| v["outstanding_records"] == 0 || v["status"] != "reading")
            });
            read_twice && settled && !mappings.is_empty()
        });
    }

    pub fn mappings(&self) -> Value {
        serde_json::from_str(&self.get("/mappings").1).unwrap_or(Value::Null)
    }

    /// The value of a metric line such as `esmd_deleted_events_total{mapping="…",…}`.
    pub fn metric(&self, name: &str, mapping: &str) -> u64 {
        let text = self.get("/metrics").1;
        text.lines()
            .filter(|l| {
                l.starts_with(&format!("{name}{{")) && l.contains(&format!("mapping=\"{mapping}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .next()
            .unwrap_or(0)
    }

    /// Polls `cond` until it holds, or panics with esmd's log.
    pub fn wait_for(&self, timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out waiting for {what}\n--- esmd log ---\n{}",
            self.logs()
        );
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(timeout)
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.exited.take() {
            self.child = None;
            return status;
        }
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "esmd did not exit in time\n--- esmd log ---\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Esmd {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- esmd log ---\n{}", self.logs());
        }
    }
}
