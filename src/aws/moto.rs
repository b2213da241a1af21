//! Tests only: a moto server on loopback (`MOTO_SERVER`, or `moto_server` on the PATH) for
//! the contract suites that hold the SDK clients and their twins to the same behaviour.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Moto {
    child: Child,
    pub(crate) endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// An SDK configuration pointed at this server, with test credentials.
    pub(crate) async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .endpoint_url(&self.endpoint)
            .load()
            .await
    }
}

/// esmd's AWS context for a moto server at `endpoint`, with the client asked for.
pub(crate) async fn context(endpoint: &str, client: crate::config::AwsClient) -> super::AwsContext {
    let settings = crate::config::AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.into()),
        client,
        ..crate::config::AwsSettings::default()
    };
    super::AwsContext::with_credentials(&settings, "testing", "testing").await
}

/// A loopback port nothing listens on (yet).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

pub(crate) fn moto() -> Moto {
    let server = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let port = free_port();
    let child = Command::new(&server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {server} (pip install 'moto[server]'): {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}
