//! A checkpoint store that cannot be written ends esmd cleanly (#13 item 3), on real files:
//! a state file that is not a database, and a state file that cannot grow (a full disk, made
//! with `RLIMIT_FSIZE` on the esmd process). esmd names the file, exits non-zero so that a
//! supervisor restarts it, never invokes past what it could checkpoint, and leaves the store
//! intact: the next run resumes from the last checkpoint and loses nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;

fn mapping(stream: &str) -> String {
    format!(
        "[[mapping]]\nevent_source_arn = \"{}\"\nfunction_name = \"consumer\"\nstarting_position = \"TRIM_HORIZON\"\nbatch_size = 1\n",
        stream_arn(stream)
    )
}

fn delivered(function: &FunctionServer) -> Vec<String> {
    function
        .calls()
        .iter()
        .flat_map(|c| c.records().iter().map(kinesis_data).collect::<Vec<_>>())
        .collect()
}

fn integrity(path: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .unwrap()
}

fn checkpoint(path: &std::path::Path) -> Option<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT sequence_number FROM shards", [], |r| {
        r.get::<_, Option<String>>(0)
    })
    .ok()
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_esmd_with_the_path_and_the_next_run_loses_nothing() {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "full", 1).await;
    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(put(&client, "full", "k", &format!("r{i}")).await);
    }
    let function = FunctionServer::start(|_, _| Reply::ok("null"));
    let mut esmd = Esmd::start(&moto, &function, &mapping("full"));
    eventually(
        Duration::from_secs(30),
        "5 records",
        Some(&esmd),
        || async { delivered(&function).len() >= 5 },
    )
    .await;
    assert!(esmd.terminate(Duration::from_secs(20)).success());

    // The next process cannot grow any file much past the database's size now: its WAL
    // (4 KiB pages) fills after a few checkpoints.
    let db = esmd.state_path();
    let size = std::fs::metadata(&db).unwrap().len();
    esmd.limit_file_size(Some(size + 24 * 1024));
    esmd.restart();
    for i in 5..200 {
        seqs.push(put(&client, "full", "k", &format!("r{i}")).await);
    }
    let status = esmd.wait_exit(Duration::from_secs(90));
    let log = esmd.logs();
    assert!(!status.success(), "esmd must exit non-zero\n{log}");
    let path = db.display().to_string();
    assert!(
        log.lines()
            .any(|l| l.contains("fatal") && l.contains(&path) && l.contains("disk I/O error")),
        "the fatal stop names the state file and the cause\n{log}"
    );
    let before_restart = delivered(&function);
    assert!(
        before_restart.len() < 200,
        "the disk filled before all 200 records were read"
    );

    // The store is intact, and esmd never invoked past its checkpoint by more than the one
    // batch whose checkpoint failed.
    assert_eq!(integrity(&db), "ok");
    let saved = checkpoint(&db).expect("a checkpoint");
    let saved_index = seqs
        .iter()
        .position(|s| *s == saved)
        .expect("a known sequence");
    let beyond: Vec<&String> = before_restart
        .iter()
        .filter(|d| d[1..].parse::<usize>().unwrap() > saved_index)
        .collect();
    assert!(
        beyond.len() <= 1,
        "invoked past the checkpoint r{saved_index}: {beyond:?}"
    );

    // With room again, the next run resumes from the checkpoint: every record arrives.
    esmd.limit_file_size(None);
    esmd.restart();
    eventually(
        Duration::from_secs(60),
        "all 200 records",
        Some(&esmd),
        || async {
            let got: std::collections::HashSet<String> = delivered(&function).into_iter().collect();
            got.len() == 200
        },
    )
    .await;
    assert!(esmd.terminate(Duration::from_secs(20)).success());
    assert_eq!(integrity(&db), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_that_is_not_a_database_is_refused_by_path_and_left_alone() {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "corrupt", 1).await;
    put(&client, "corrupt", "k", "r0").await;
    let function = FunctionServer::start(|_, _| Reply::ok("null"));
    let mut esmd = Esmd::start(&moto, &function, &mapping("corrupt"));
    eventually(Duration::from_secs(30), "r0", Some(&esmd), || async {
        !delivered(&function).is_empty()
    })
    .await;
    assert!(esmd.terminate(Duration::from_secs(20)).success());

    let db = esmd.state_path();
    let garbage: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + 13) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    let calls = function.calls().len();
    esmd.restart();
    let status = esmd.wait_exit(Duration::from_secs(30));
    let log = esmd.logs();
    assert!(!status.success(), "{log}");
    assert!(log.contains(&db.display().to_string()), "{log}");
    assert!(log.contains("not a database"), "{log}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        garbage,
        "the file is left as it was"
    );
    assert_eq!(function.calls().len(), calls, "nothing was invoked");
}
