//! esmd over `https`, as against AWS: moto and the test's function behind TLS-terminating
//! proxies whose certificate esmd trusts through `SSL_CERT_FILE`, with the SDK's client and
//! with the lean one (which has its own TLS connector); and a certificate esmd does not
//! trust, which must stop the mapping with an error naming the cause, not lose messages.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;

fn mapping(arn: &str) -> String {
    format!(
        "[[mapping]]\nevent_source_arn = \"{arn}\"\nfunction_name = \"tls-fn\"\nbatch_size = 10\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_to_lambda_over_https_with_the_sdk_client() {
    over_https("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_to_lambda_over_https_with_the_lean_client() {
    over_https(LEAN).await;
}

async fn over_https(aws: &str) {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "tls", &[]).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let ca = TestCa::new();
    let aws_proxy = TlsProxy::start(&ca, &moto.endpoint);
    let lambda_proxy = TlsProxy::start(&ca, &function.endpoint);
    let esmd = Esmd::start_at(
        &aws_proxy.endpoint,
        &function,
        &format!("{aws}{}", mapping(&queue.arn)),
        &[
            ("SSL_CERT_FILE", ca.path()),
            ("AWS_ENDPOINT_URL_LAMBDA", &lambda_proxy.endpoint),
        ],
    );
    let sent: HashSet<String> = (0..25).map(|i| format!("m-{i}")).collect();
    for body in &sent {
        queue.send(body).await;
    }
    eventually(
        Duration::from_secs(30),
        "every message invoked",
        Some(&esmd),
        || async { function.bodies().into_iter().collect::<HashSet<_>>() == sent },
    )
    .await;
    eventually(Duration::from_secs(20), "queue empty", Some(&esmd), || {
        queue.is_empty()
    })
    .await;
    assert!(aws_proxy.handshakes() > 0, "SQS went through TLS");
    assert!(lambda_proxy.handshakes() > 0, "Invoke went through TLS");
    let logs = esmd.logs();
    let lean = logs.contains("go through esmd's lean client");
    if aws.is_empty() {
        assert!(!lean, "the SDK's client by default:\n{logs}");
    } else {
        assert!(
            lean && logs.contains(&format!("endpoint={}", lambda_proxy.endpoint)),
            "the lean client on the https endpoints:\n{logs}"
        );
    }
}

/// Without `SSL_CERT_FILE`, the proxies' certificate is not trusted: the mapping reports the
/// certificate error, nothing reaches the function, and the messages stay in the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_reported_and_loses_nothing() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "untrusted", &[]).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let ca = TestCa::new();
    let lambda_proxy = TlsProxy::start(&ca, &function.endpoint);
    // SQS in plain HTTP, so messages are received; Invoke over TLS that fails.
    let mut esmd = Esmd::start_at(
        &moto.endpoint,
        &function,
        &format!("{LEAN}{}", mapping(&queue.arn)),
        &[("AWS_ENDPOINT_URL_LAMBDA", &lambda_proxy.endpoint)],
    );
    for i in 0..3 {
        queue.send(&format!("m-{i}")).await;
    }
    eventually(
        Duration::from_secs(30),
        "a certificate error in the log",
        Some(&esmd),
        || async { esmd.logs().contains("UnknownIssuer") },
    )
    .await;
    assert!(function.calls().is_empty(), "nothing got through");
    esmd.signal("TERM");
    assert!(esmd.wait_exit(Duration::from_secs(30)).success());
    // Released on shutdown (or still invisible, then back): all three are still there.
    eventually(
        Duration::from_secs(40),
        "every message back in the queue",
        None,
        || async { queue.counts().await.0 == 3 },
    )
    .await;
}
