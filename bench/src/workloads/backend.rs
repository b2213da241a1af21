//! Where the AWS side lives for a run: the loopback server (instant or slow) or moto server.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{Settings, Workload, REGION, SLOW_ANSWER};
use crate::loopback::Loopback;
/// Where the AWS side lives for a run.
pub struct Backend {
    pub name: &'static str,
    pub url: String,
    pub loopback: Option<Arc<Loopback>>,
    /// A loopback backend that answers slowly (the slow-backend rows only).
    paced: bool,
    moto: Option<Child>,
    pub(super) sdk: aws_config::SdkConfig,
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
    pub(super) async fn loopback() -> anyhow::Result<Backend> {
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
    pub(super) async fn slow(close: bool) -> anyhow::Result<Backend> {
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

    pub(super) async fn moto(command: &str) -> anyhow::Result<Backend> {
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
    pub(super) fn lean_measured(&self, w: &Workload) -> bool {
        match w {
            Workload::Sqs { concurrency, .. } => self.loopback.is_some() || concurrency.is_some(),
            Workload::Kinesis { .. } => self.loopback.is_some(),
            _ => false,
        }
    }

    pub(super) fn supports(&self, w: &Workload) -> bool {
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
    pub(super) fn records(&self, settings: &Settings, w: &Workload) -> usize {
        match w {
            Workload::Sqs {
                concurrency: Some(_),
                ..
            } => {
                if settings.smoke {
                    100
                } else {
                    600
                }
            }
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
