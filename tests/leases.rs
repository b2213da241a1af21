//! Several esmd instances share a Kinesis stream through a DynamoDB lease table (all on moto
//! server): shards are balanced between instances, a killed instance's shards are taken over
//! after its leases expire, and a stopped one hands its shards over at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use serde_json::Value;

const SHARDS: i32 = 4;
const KEYS: usize = 8;

fn data_of(record: &Value) -> String {
    let b64 = record["kinesis"]["data"].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

fn delivered(function: &FunctionServer) -> Vec<String> {
    function
        .calls()
        .iter()
        .flat_map(|c| c.records().iter().map(data_of).collect::<Vec<_>>())
        .collect()
}

fn mapping() -> String {
    format!(
        "[[mapping]]\nuuid = \"3f0c7a52-1d44-4b8e-a2b5-0c9e6f1d2a10\"\nevent_source_arn = \"{}\"\n\
         function_name = \"consumer\"\nstarting_position = \"TRIM_HORIZON\"\nbatch_size = 10\n",
        stream_arn("shared")
    )
}

/// Records `k<key>-<n>` for n in `from..to`, spread over every key.
async fn produce(client: &aws_sdk_kinesis::Client, from: usize, to: usize) {
    for n in from..to {
        let key = format!("k{}", n % KEYS);
        put(client, "shared", &key, &format!("{key}-{n}")).await;
    }
}

/// Shards each instance reads now.
fn held(esmd: &Esmd) -> usize {
    esmd.mappings()["mappings"][0]["shards"]
        .as_object()
        .map_or(0, |s| {
            s.values().filter(|v| v["status"] == "reading").count()
        })
}

/// Every record produced was delivered, and per key the first deliveries are in order.
fn assert_complete_and_ordered(function: &FunctionServer, produced: usize) {
    let all = delivered(function);
    let mut first: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for d in &all {
        *seen.entry(d.clone()).or_default() += 1;
        if seen[d] == 1 {
            let (key, n) = d.split_once('-').unwrap();
            first
                .entry(key.to_string())
                .or_default()
                .push(n.parse().unwrap());
        }
    }
    assert_eq!(seen.len(), produced, "every record delivered at least once");
    for (key, ns) in first {
        assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "order per key {key}: {ns:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_then_three_instances_balance_and_survive_a_kill() {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "shared", 8).await;
    produce(&client, 0, 40).await;
    let function = FunctionServer::start(|_, _| Reply::ok("").after(Duration::from_millis(20)));
    let mut a = Esmd::start_leased(&moto, &function, "leases", "instance-a", &mapping());
    a.wait_for(Duration::from_secs(30), "a holds every shard", || {
        held(&a) == 8
    });

    // A balancing period is the 5 s discovery interval: each newcomer reaches its share in one.
    let b = Esmd::start_leased(&moto, &function, "leases", "instance-b", &mapping());
    let joined = Instant::now();
    b.wait_for(Duration::from_secs(20), "4 and 4", || {
        held(&a) == 4 && held(&b) == 4
    });
    let two = joined.elapsed();
    let c = Esmd::start_leased(&moto, &function, "leases", "instance-c", &mapping());
    let joined = Instant::now();
    c.wait_for(Duration::from_secs(20), "3, 3 and 2", || {
        let mut counts = [held(&a), held(&b), held(&c)];
        counts.sort();
        counts == [2, 3, 3]
    });
    let three = joined.elapsed();
    println!("balanced: two instances in {two:?}, three in {three:?}");
    assert!(
        two < Duration::from_secs(12) && three < Duration::from_secs(12),
        "{two:?} {three:?}"
    );
    produce(&client, 40, 80).await;
    eventually(Duration::from_secs(60), "80 records", Some(&b), || async {
        delivered(&function)
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
            >= 80
    })
    .await;

    // kill -9 one: the survivors take its shards once its leases expire.
    a.kill9();
    let killed = Instant::now();
    produce(&client, 80, 120).await;
    b.wait_for(
        Duration::from_secs(30),
        "the survivors hold every shard",
        || held(&b) + held(&c) == 8,
    );
    let takeover = killed.elapsed();
    eventually(Duration::from_secs(60), "120 records", Some(&b), || async {
        delivered(&function)
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
            >= 120
    })
    .await;
    assert_complete_and_ordered(&function, 120);
    // 3 s leases, 5 s discovery: every shard taken within about 8 s.
    println!("failover after kill -9: every shard taken in {takeover:?}");
    assert!(takeover < Duration::from_secs(15), "{takeover:?}");
    assert!(
        b.logs()
            .contains("took a shard from a more loaded instance"),
        "{}",
        b.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_the_shards_over_at_once_without_duplicates() {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "shared", SHARDS).await;
    produce(&client, 0, 40).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let mut a = Esmd::start_leased(&moto, &function, "leases", "instance-a", &mapping());
    a.wait_for(Duration::from_secs(30), "a holds every shard", || {
        held(&a) == SHARDS as usize
    });
    let b = Esmd::start_leased(&moto, &function, "leases", "instance-b", &mapping());
    b.wait_for(Duration::from_secs(30), "an even share", || {
        held(&a) == 2 && held(&b) == 2
    });
    eventually(Duration::from_secs(60), "40 records", Some(&b), || async {
        delivered(&function).len() >= 40
    })
    .await;
    a.wait_until_idle(Duration::from_secs(20));
    b.wait_until_idle(Duration::from_secs(20));

    assert!(
        a.terminate(Duration::from_secs(20)).success(),
        "exit 0 after the drain"
    );
    let stopped = Instant::now();
    b.wait_for(
        Duration::from_secs(20),
        "b takes the released shards",
        || held(&b) == SHARDS as usize,
    );
    let handoff = stopped.elapsed();
    produce(&client, 40, 80).await;
    eventually(Duration::from_secs(60), "80 records", Some(&b), || async {
        delivered(&function).len() >= 80
    })
    .await;
    b.wait_until_idle(Duration::from_secs(20));
    let all = delivered(&function);
    assert_eq!(all.len(), 80, "no duplicates after a clean handoff");
    assert_complete_and_ordered(&function, 80);
    // Released leases are free at once: the next discovery (every 5 s) takes them.
    println!("handoff after SIGTERM: every shard taken in {handoff:?}");
    assert!(handoff < Duration::from_secs(8), "{handoff:?}");
}

/// Every shard's stored checkpoint in the lease table, straight from DynamoDB.
async fn table_checkpoints(moto: &Moto) -> BTreeMap<String, u128> {
    let client = aws_sdk_dynamodb::Client::new(&sdk_config(&moto.endpoint).await);
    let out = client.scan().table_name("leases").send().await.unwrap();
    out.items()
        .iter()
        .filter_map(|item| {
            let sk = item.get("sk")?.as_s().ok()?;
            let cp = item.get("checkpoint")?.as_s().ok()?;
            Some((sk.clone(), cp.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_instance_writes_nothing_after_its_leases_were_taken() {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "shared", SHARDS).await;
    produce(&client, 0, 40).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let a = Esmd::start_leased(&moto, &function, "leases", "instance-a", &mapping());
    a.wait_for(Duration::from_secs(30), "a holds every shard", || {
        held(&a) == SHARDS as usize
    });
    let b = Esmd::start_leased(&moto, &function, "leases", "instance-b", &mapping());
    b.wait_for(Duration::from_secs(30), "an even share", || {
        held(&a) == 2 && held(&b) == 2
    });
    eventually(Duration::from_secs(60), "40 records", Some(&b), || async {
        delivered(&function).len() >= 40
    })
    .await;

    // SIGSTOP a past its leases: b takes its shards and moves on.
    a.signal("STOP");
    b.wait_for(
        Duration::from_secs(30),
        "b takes the paused instance's shards",
        || held(&b) == SHARDS as usize,
    );
    produce(&client, 40, 80).await;
    eventually(Duration::from_secs(60), "80 records", Some(&b), || async {
        delivered(&function)
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
            >= 80
    })
    .await;
    b.wait_until_idle(Duration::from_secs(20));
    let before = table_checkpoints(&moto).await;

    // SIGCONT: a finds its renewals refused and stops those shards without writing.
    a.signal("CONT");
    a.wait_for(Duration::from_secs(20), "a notices its lost leases", || {
        a.logs().matches("lease lost to another instance").count() >= 2
    });
    produce(&client, 80, 100).await;
    eventually(Duration::from_secs(60), "100 records", Some(&b), || async {
        delivered(&function)
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
            >= 100
    })
    .await;
    let after = table_checkpoints(&moto).await;
    for (shard, checkpoint) in &before {
        assert!(
            after[shard] >= *checkpoint,
            "{shard} moved backwards: {checkpoint} -> {}",
            after[shard]
        );
    }
    assert_complete_and_ordered(&function, 100);
    assert!(
        !a.logs().contains("refused a backwards checkpoint"),
        "{}",
        a.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_on_the_lease_table_refuse_a_held_shard_unless_forced() {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "shared", 1).await;
    produce(&client, 0, 5).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let a = Esmd::start_leased(&moto, &function, "leases", "instance-a", &mapping());
    eventually(Duration::from_secs(30), "5 records", Some(&a), || async {
        delivered(&function).len() >= 5
    })
    .await;
    a.wait_until_idle(Duration::from_secs(20));

    // No store lock on the lease table: the CLI works beside a running daemon.
    let (code, out, err) = a.cli(&["checkpoints", "list", "--json", "--config", "{config}"]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let shard = &doc["mappings"][0]["shards"][0];
    assert_eq!(shard["owner"], "instance-a");
    assert!(shard["sequence_number"].is_string(), "{shard}");

    let uuid = "3f0c7a52-1d44-4b8e-a2b5-0c9e6f1d2a10";
    let set = |force: bool| {
        let mut args = vec![
            "checkpoints",
            "set",
            "--mapping",
            uuid,
            "--shard",
            "shardId-000000000000",
            "--trim-horizon",
            "--config",
            "{config}",
        ];
        if force {
            args.push("--force");
        }
        a.cli(&args)
    };
    let (code, _, err) = set(false);
    assert_eq!(code, 1);
    assert!(err.contains("leased by instance-a"), "{err}");
    let (code, out, err) = set(true);
    assert_eq!(code, 0, "{out}{err}");
    // The running instance is fenced off, takes the shard again and replays from the start.
    eventually(Duration::from_secs(30), "the replay", Some(&a), || async {
        delivered(&function).len() >= 10
    })
    .await;
    assert_eq!(delivered(&function)[5..10], delivered(&function)[..5]);
    let (code, _, err) = a.cli(&[
        "checkpoints",
        "reset",
        "--mapping",
        uuid,
        "--config",
        "{config}",
    ]);
    assert_eq!(code, 1, "reset is refused while the shard is leased");
    assert!(err.contains("leased by"), "{err}");
}
