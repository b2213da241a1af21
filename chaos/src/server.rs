//! The emulator processes a worker shares between its runs: moto server, and kinesis-local
//! where a shard must end. Each writes its output to a log file under the campaign's output
//! directory, and a worker checks before every run that its emulators are still alive: one
//! that exited is named with its exit status and log, and started again on a new port, so an
//! emulator's death shows as what it is instead of as "connection refused" in a later seed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulator {
    Moto,
    KinesisLocal,
}

impl Emulator {
    fn name(self) -> &'static str {
        match self {
            Emulator::Moto => "moto server",
            Emulator::KinesisLocal => "kinesis-local",
        }
    }

    fn command(self, port: u16) -> Result<Command> {
        match self {
            Emulator::Moto => {
                let binary = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
                let mut c = Command::new(binary);
                c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                Ok(c)
            }
            Emulator::KinesisLocal => {
                let dir = std::env::var_os("KINESIS_LOCAL_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                            .join("../.ci/node/node_modules/kinesis-local")
                    });
                if !dir.join("main.js").exists() {
                    bail!(
                        "kinesis-local is not installed at {} (./scripts/test.sh installs it)",
                        dir.display()
                    );
                }
                let mut c = Command::new("node");
                c.arg("main.js")
                    .current_dir(&dir)
                    .env("KINESIS_MOCK_PLAIN_PORT", port.to_string())
                    .env("KINESIS_MOCK_TLS_PORT", free_port()?.to_string())
                    // Each run makes its own stream on a worker's kinesis-local.
                    .env("SHARD_LIMIT", "100000")
                    .env("CREATE_STREAM_DURATION", "100ms")
                    .env("SPLIT_SHARD_DURATION", "100ms");
                Ok(c)
            }
        }
    }
}

/// An emulator process on a free loopback port, killed on drop.
pub struct Server {
    kind: Emulator,
    child: Child,
    log: PathBuf,
    pub endpoint: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_listening(port: u16, what: &str, child: &mut Child, log: &Path) -> Result<()> {
    for _ in 0..300 {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{what} exited ({status}) before it listened; its log: {}",
                log.display()
            );
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "{what} did not listen on port {port} within 30 s; its log: {}",
        log.display()
    )
}

impl Server {
    /// Starts `kind` on a free port, its output appended to `log`, and waits until it listens.
    pub async fn start(kind: Emulator, log: &Path) -> Result<Server> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let port = free_port()?;
        let mut child = kind
            .command(port)?
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| match kind {
                Emulator::Moto => "start moto_server (pip install 'moto[server]')".to_string(),
                Emulator::KinesisLocal => "start kinesis-local (node)".to_string(),
            })?;
        if let Err(e) = wait_listening(port, kind.name(), &mut child, log).await {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(Server {
            kind,
            child,
            log: log.to_path_buf(),
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }

    /// `None` while the process runs and accepts connections; otherwise what happened to it,
    /// and it is started again (on a new port: read `endpoint` after this). A process that
    /// is alive but no longer listens (kinesis-local takes seconds to exit on SIGTERM) is
    /// killed first.
    pub async fn restart_if_gone(&mut self) -> Result<Option<String>> {
        let what = match self.child.try_wait()? {
            Some(status) => format!("had exited ({status})"),
            None if self.accepts().await => return Ok(None),
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                "no longer accepted connections (killed it)".to_string()
            }
        };
        let what = format!(
            "{} at {} {what}; its log: {}",
            self.kind.name(),
            self.endpoint,
            self.log.display()
        );
        *self = Server::start(self.kind, &self.log).await?;
        Ok(Some(what))
    }

    /// Whether a connection to the port succeeds within about 2 s.
    async fn accepts(&self) -> bool {
        let address = self.endpoint.trim_start_matches("http://");
        for _ in 0..20 {
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_emulator_that_exited_is_named_and_started_again() {
        let dir = std::env::temp_dir().join(format!("esmd-chaos-server-{}", std::process::id()));
        let mut moto = match Server::start(Emulator::Moto, &dir.join("moto.log")).await {
            Ok(s) => s,
            Err(e) => panic!("moto_server must be installed for this test: {e:#}"),
        };
        assert_eq!(moto.restart_if_gone().await.unwrap(), None);
        let before = moto.endpoint.clone();
        moto.child.kill().unwrap();
        moto.child.wait().unwrap();
        let what = moto.restart_if_gone().await.unwrap().expect("a restart");
        assert!(
            what.contains("moto server") && what.contains(&before),
            "{what}"
        );
        assert!(
            what.contains("exited") && what.contains("moto.log"),
            "{what}"
        );
        assert!(moto.accepts().await);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_emulator_that_stopped_listening_is_killed_and_started_again() {
        let dir = std::env::temp_dir().join(format!("esmd-chaos-stuck-{}", std::process::id()));
        let mut moto = Server::start(Emulator::Moto, &dir.join("moto.log"))
            .await
            .expect("moto_server must be installed for this test");
        // A live process that no longer listens: the server now names a closed port.
        let stuck = moto.endpoint.clone();
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        moto.endpoint = format!("http://{closed}");
        let what = moto.restart_if_gone().await.unwrap().expect("a restart");
        assert!(what.contains("no longer accepted connections"), "{what}");
        assert_ne!(moto.endpoint, stuck);
        assert!(moto.accepts().await);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
