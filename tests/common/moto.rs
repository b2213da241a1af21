//! moto server (or an external endpoint such as LocalStack) and SDK clients pointed at it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A moto server on a free loopback port, killed on drop.
///
/// With `ESMD_TEST_ENDPOINT` set (scripts/localstack-check.sh sets it to LocalStack), no moto is
/// started: the tests use that endpoint, after deleting every queue and stream left by the
/// previous test. Run such tests one at a time (`--test-threads=1`).
pub struct Moto {
    child: Option<Child>,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        if let Ok(endpoint) = std::env::var("ESMD_TEST_ENDPOINT") {
            let target = endpoint.clone();
            std::thread::spawn(move || {
                tokio::runtime::Runtime::new()
                    .expect("runtime")
                    .block_on(clear_external(&target))
            })
            .join()
            .expect("clear the external endpoint");
            return Moto {
                child: None,
                endpoint,
            };
        }
        let port = free_port();
        let binary = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let mut child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary} (pip install 'moto[server]'): {e}"));
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_get(&format!("{endpoint}/moto-api/")).is_ok() {
                return Moto {
                    child: Some(child),
                    endpoint,
                };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("moto server did not start on {endpoint}");
    }
}

/// Deletes every queue and stream on a shared endpoint, so that each test starts clean.
async fn clear_external(endpoint: &str) {
    let config = sdk_config(endpoint).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    if let Ok(out) = sqs.list_queues().send().await {
        for url in out.queue_urls() {
            let _ = sqs.delete_queue().queue_url(url).send().await;
        }
    }
    let kinesis = aws_sdk_kinesis::Client::new(&config);
    if let Ok(out) = kinesis.list_streams().send().await {
        for name in out.stream_names() {
            let _ = kinesis
                .delete_stream()
                .stream_name(name)
                .enforce_consumer_deletion(true)
                .send()
                .await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let left = kinesis
            .list_streams()
            .send()
            .await
            .map(|o| o.stream_names().len())
            .unwrap_or(0);
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("streams on {endpoint} were not deleted in time");
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn set_test_credentials() {
    // Set before any thread reads the environment (each test binary's tests share it).
    // A 12-digit key id is the account LocalStack files resources under; moto ignores it.
    std::env::set_var("AWS_ACCESS_KEY_ID", ACCOUNT);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_REGION", REGION);
}

pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    set_test_credentials();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            ACCOUNT, "testing", None, None, "test",
        ))
        .load()
        .await
}

pub async fn sqs_client(moto: &Moto) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&sdk_config(&moto.endpoint).await)
}
