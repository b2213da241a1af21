//! Live reload (SIGHUP) end to end: the real esmd binary, moto server, a test-owned function.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const STEADY: &str = "5a0f3c2e-1b4d-4e6f-8a9b-0c1d2e3f4a5b";
const OLD: &str = "6b1f4d3e-2c5e-4f7a-9b0c-1d2e3f4a5b6c";
const NEW: &str = "7c2a5e4f-3d6f-4a8b-8c1d-2e3f4a5b6c7d";

fn mapping(uuid: &str, arn: &str, extra: &str) -> String {
    format!(
        "[[mapping]]\nuuid = \"{uuid}\"\nevent_source_arn = \"{arn}\"\nfunction_name = \"reloaded\"\n{extra}\n"
    )
}

/// esmd's log lines that contain `needle`.
fn log_lines(esmd: &Esmd, needle: &str) -> Vec<String> {
    esmd.logs()
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

/// Bodies the function received from `queue`, in arrival order, with their arrival times.
fn received_from(function: &FunctionServer, queue: &Queue) -> Vec<(String, std::time::Instant)> {
    function
        .calls()
        .iter()
        .flat_map(|call| {
            call.records()
                .iter()
                .filter(|r| r["eventSourceARN"] == queue.arn.as_str())
                .map(|r| {
                    (
                        r["body"].as_str().unwrap_or_default().to_string(),
                        call.started,
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_and_removes_mappings_while_another_keeps_processing_without_a_gap() {
    let moto = Moto::start();
    let steady = Queue::create(&moto, "steady", &[]).await;
    let old = Queue::create(&moto, "old", &[]).await;
    let new = Queue::create(&moto, "new", &[]).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let esmd = Esmd::start(
        &moto,
        &function,
        &format!(
            "{}{}",
            mapping(STEADY, &steady.arn, ""),
            mapping(OLD, &old.arn, "")
        ),
    );

    // A producer that keeps the steady mapping busy through the whole reload.
    let producing = Arc::new(AtomicBool::new(true));
    let producer = {
        let producing = Arc::clone(&producing);
        let queue = Queue::create(&moto, "steady", &[]).await;
        tokio::spawn(async move {
            let mut sent = Vec::new();
            while producing.load(Ordering::SeqCst) {
                let body = format!("s-{}", sent.len());
                queue.send(&body).await;
                sent.push(body);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            sent
        })
    };
    old.send("o-before").await;
    eventually(
        Duration::from_secs(30),
        "both mappings deliver",
        Some(&esmd),
        || async {
            received_from(&function, &old).len() == 1 && received_from(&function, &steady).len() > 5
        },
    )
    .await;

    // Reload: keep STEADY as it is, remove OLD, add NEW.
    esmd.rewrite_config(&format!(
        "{}{}",
        mapping(STEADY, &steady.arn, ""),
        mapping(NEW, &new.arn, "")
    ));
    esmd.signal("HUP");
    esmd.wait_for(Duration::from_secs(30), "the reload", || {
        esmd.logs().contains("config reloaded")
    });
    new.send("n-after").await;
    old.send("o-after").await;
    eventually(
        Duration::from_secs(30),
        "the added mapping delivers",
        Some(&esmd),
        || async { received_from(&function, &new).len() == 1 },
    )
    .await;
    let stopped = log_lines(&esmd, "mapping stopped");
    assert_eq!(
        stopped.len(),
        1,
        "only the removed mapping stops: {stopped:?}"
    );
    assert!(
        stopped[0].contains(OLD) && stopped[0].contains("drained=true"),
        "{}",
        stopped[0]
    );
    let uuids: HashSet<String> = esmd.mappings()["mappings"]
        .as_array()
        .expect("mappings")
        .iter()
        .filter_map(|m| m["uuid"].as_str().map(String::from))
        .collect();
    assert_eq!(uuids, HashSet::from([STEADY.to_string(), NEW.to_string()]));

    // A config that fails validation is rejected, named, and changes nothing.
    esmd.rewrite_config(&format!(
        "{}{}",
        mapping(STEADY, &steady.arn, "batch_size = 0"),
        mapping(NEW, &new.arn, "")
    ));
    esmd.signal("HUP");
    esmd.wait_for(Duration::from_secs(30), "the rejection", || {
        esmd.logs().contains("config reload rejected")
    });
    let rejected = log_lines(&esmd, "config reload rejected")
        .first()
        .cloned()
        .unwrap_or_default();
    assert!(rejected.contains("batch_size"), "{rejected}");
    new.send("n-after-rejection").await;

    tokio::time::sleep(Duration::from_secs(2)).await;
    producing.store(false, Ordering::SeqCst);
    let sent = producer.await.expect("producer");
    eventually(
        Duration::from_secs(30),
        "every steady message delivered",
        Some(&esmd),
        || async {
            received_from(&function, &steady).len() >= sent.len()
                && received_from(&function, &new).len() == 2
        },
    )
    .await;

    // The steady mapping was never restarted: every message arrived, its counters never reset
    // (a restarted mapping starts a new status at zero), and deliveries never paused.
    let steady_received = received_from(&function, &steady);
    let bodies: HashSet<&str> = steady_received.iter().map(|(b, _)| b.as_str()).collect();
    for body in &sent {
        assert!(bodies.contains(body.as_str()), "{body} never delivered");
    }
    assert_eq!(
        esmd.metric("esmd_polled_events_total", STEADY) as usize,
        steady_received.len(),
        "the steady mapping's counters survived both reloads"
    );
    let longest_pause = steady_received
        .windows(2)
        .map(|w| w[1].1.duration_since(w[0].1))
        .max()
        .unwrap_or_default();
    assert!(
        longest_pause < Duration::from_secs(3),
        "the steady mapping paused for {longest_pause:?}"
    );
    // The removed mapping no longer polls: its message stays in the queue. (It may be in
    // flight: a long poll cut short by the stop still receives on the server's side, as in
    // SQS, and the message comes back after its visibility timeout.)
    assert_eq!(received_from(&function, &old).len(), 1);
    let (visible, in_flight) = old.counts().await;
    assert_eq!(
        visible + in_flight,
        1,
        "o-after stays in the removed mapping's queue"
    );
}
