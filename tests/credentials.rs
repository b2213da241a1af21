//! esmd on temporary credentials that expire, as on ECS, EKS or EC2: the credentials come from
//! a test-owned container credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`), each
//! fetch a new generation. Messages keep flowing across the rotations, every Invoke is signed
//! with a generation that has not expired and carries its session token, with the SDK's
//! clients (their identity cache refreshes 5-10 s before expiry) and with the lean client (its
//! own cache refreshes five minutes before, and keeps signing with the current credentials
//! while the endpoint fails and they have more than a minute left).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_credentials_are_refreshed_by_the_sdk_clients() {
    // The SDK's identity cache takes credentials expiring within 5-10 s as expired.
    across_rotations("", Duration::from_secs(14)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_credentials_are_refreshed_by_the_lean_client() {
    // The lean client's cache takes credentials expiring within five minutes as expired.
    across_rotations(LEAN, Duration::from_secs(300 + 3)).await;
}

/// esmd with one SQS mapping (batch size 1, so each message is its own Invoke) whose
/// credentials come only from `credentials`.
fn start(
    moto: &Moto,
    function: &FunctionServer,
    queue: &Queue,
    credentials: &CredentialsServer,
    aws: &str,
) -> Esmd {
    Esmd::start_with_env(
        moto,
        function,
        &format!(
            "{aws}[[mapping]]\nevent_source_arn = \"{}\"\nfunction_name = \"rotating-fn\"\nbatch_size = 1\n",
            queue.arn
        ),
        &[
            // No static keys and no profile: the chain reaches the container endpoint.
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("AWS_CONFIG_FILE", "/nonexistent/esmd-test-config"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/esmd-test-credentials"),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &credentials.uri),
        ],
    )
}

/// Sends `count` messages named `{prefix}-{i}`, one every 400 ms, and waits until each was
/// invoked and the queue is empty.
async fn trickle(
    queue: &Queue,
    function: &FunctionServer,
    esmd: &Esmd,
    prefix: &str,
    count: usize,
) {
    let mut sent: HashSet<String> = function.bodies().into_iter().collect();
    for i in 0..count {
        let body = format!("{prefix}-{i}");
        queue.send(&body).await;
        sent.insert(body);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    eventually(
        Duration::from_secs(30),
        "every message invoked",
        Some(esmd),
        || async { function.bodies().into_iter().collect::<HashSet<_>>() == sent },
    )
    .await;
    eventually(Duration::from_secs(20), "queue empty", Some(esmd), || {
        queue.is_empty()
    })
    .await;
    assert_eq!(function.bodies().len(), sent.len(), "each message once");
}

/// Checks each Invoke was signed with a generation the endpoint issued, before it expired,
/// with its session token; returns the access keys used, in order of first use.
fn signed_with(function: &FunctionServer, credentials: &CredentialsServer) -> Vec<String> {
    let issued = credentials.issued();
    let by_key: HashMap<&str, &Issued> =
        issued.iter().map(|g| (g.access_key.as_str(), g)).collect();
    let mut used: Vec<String> = Vec::new();
    for call in function.calls() {
        let key = call.access_key.as_deref().expect("Invoke is signed");
        let generation = by_key
            .get(key)
            .unwrap_or_else(|| panic!("signed with {key}, which the endpoint never issued"));
        assert_eq!(
            call.security_token.as_deref(),
            Some(generation.token.as_str()),
            "{key}'s session token sent with it"
        );
        assert!(
            call.started < generation.expires,
            "{key} used {:?} after it expired",
            call.started - generation.expires
        );
        if !used.iter().any(|u| u == key) {
            used.push(key.to_string());
        }
    }
    used
}

async fn across_rotations(aws: &str, lifetime: Duration) {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "rotating", &[]).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let credentials = CredentialsServer::start(lifetime);
    let mut esmd = start(&moto, &function, &queue, &credentials, aws);
    // 12 s of messages: several generations' worth.
    trickle(&queue, &function, &esmd, "m", 30).await;
    let used = signed_with(&function, &credentials);
    assert!(
        used.len() >= 2,
        "invocations signed with {used:?} only ({} generations issued): credentials were not refreshed\n{}",
        credentials.issued().len(),
        esmd.logs()
    );
    if !aws.is_empty() {
        assert!(esmd.logs().contains("go through esmd's lean client"));
    }
    esmd.signal("TERM");
    assert!(esmd.wait_exit(Duration::from_secs(30)).success());
}

/// The endpoint starts failing while the lean client's credentials have five minutes left:
/// it keeps signing with them, says so in the log, and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lean_client_signs_with_valid_credentials_while_the_endpoint_fails() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "endpoint-down", &[]).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let credentials = CredentialsServer::start(Duration::from_secs(300 + 2));
    let mut esmd = start(&moto, &function, &queue, &credentials, LEAN);
    trickle(&queue, &function, &esmd, "before", 3).await;
    credentials.set_failing(true);
    // A fetch answered just before the switch may still be on its way to esmd.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let last = credentials.issued().last().map(|g| g.access_key.clone());
    let before = function.calls().len();
    // 8 s of messages: the refresh is due 2 s after each fetch and fails every time.
    trickle(&queue, &function, &esmd, "during", 20).await;
    signed_with(&function, &credentials);
    let during: HashSet<Option<String>> = function.calls()[before..]
        .iter()
        .map(|c| c.access_key.clone())
        .collect();
    assert_eq!(
        during,
        HashSet::from([last]),
        "the last generation signed on"
    );
    let logs = esmd.logs();
    assert!(
        logs.contains("refreshing credentials failed; signing with the current ones"),
        "{logs}"
    );
    let (_, metrics) = esmd.get("/metrics");
    let counted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("esmd_events_total{event=\"credentials_refresh_failed\"} "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(counted.is_some_and(|n| n > 0), "counted: {counted:?}");
    esmd.signal("TERM");
    assert!(esmd.wait_exit(Duration::from_secs(30)).success());
}
