//! The contract every [`CheckpointStore`] passes: the in-memory twin, the SQLite store and the
//! DynamoDB lease table (on moto server). Each check takes a fresh, empty store. Stores that
//! several instances share also pass [`shared_contract`]: leases held, expired, taken, handed
//! off and fenced writes; and racing instances have one winner.

use std::sync::Arc;

use super::memory::MemoryStore;
use super::{
    CheckpointError, CheckpointStore, RestartAt, SequenceNumber, ShardStatus, SqliteStore,
    WindowState,
};

type Store = Arc<dyn CheckpointStore>;

fn seq(s: &str) -> SequenceNumber {
    SequenceNumber::parse(s).unwrap()
}

fn window(state: serde_json::Value) -> WindowState {
    WindowState {
        start: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        end: chrono::DateTime::from_timestamp(1_700_000_060, 0).unwrap(),
        state,
    }
}

/// Runs every check against stores made by `fresh`.
async fn contract(mut fresh: impl FnMut() -> Store) {
    a_new_shard_starts_reading_without_a_checkpoint(fresh()).await;
    checkpoints_move_forward_numerically_and_never_back(fresh()).await;
    a_stale_lease_cannot_write(fresh()).await;
    a_uuid_stays_bound_to_its_source(fresh()).await;
    window_state_and_checkpoint_are_written_together(fresh()).await;
    finishing_and_releasing_keep_the_checkpoint(fresh()).await;
    an_operator_position_replaces_the_checkpoint_until_the_next_one(fresh()).await;
    reset_forgets_a_mapping_only(fresh()).await;
}

async fn an_operator_position_replaces_the_checkpoint_until_the_next_one(store: Store) {
    let (lease, _) = store.acquire("m", "s").await.unwrap().unwrap();
    store.checkpoint(&lease, &seq("8")).await.unwrap();
    let at = RestartAt::AtSequenceNumber(seq("3"));
    store.set_position("m", "s", &at).await.unwrap();
    let refused = store.checkpoint(&lease, &seq("9")).await;
    assert!(
        matches!(refused, Err(CheckpointError::LeaseLost { .. })),
        "the holder is fenced off: {refused:?}"
    );
    let (lease, cp) = store.acquire("m", "s").await.unwrap().unwrap();
    assert_eq!((cp.sequence_number, cp.restart_at), (None, Some(at)));
    store.checkpoint(&lease, &seq("4")).await.unwrap();
    let cp = store.shards("m").await.unwrap().remove(0);
    assert_eq!((cp.sequence_number, cp.restart_at), (Some(seq("4")), None));
    // A shard never seen before can be positioned too.
    store
        .set_position("m", "new", &RestartAt::Latest)
        .await
        .unwrap();
    assert_eq!(store.shards("m").await.unwrap().len(), 2);
}

async fn reset_forgets_a_mapping_only(store: Store) {
    store.bind_mapping("m", "arn:a").await.unwrap();
    store.acquire("m", "s1").await.unwrap();
    store.acquire("m", "s2").await.unwrap();
    store.acquire("keep", "s1").await.unwrap();
    assert_eq!(store.reset("m").await.unwrap(), 2);
    assert!(store.shards("m").await.unwrap().is_empty());
    assert_eq!(store.shards("keep").await.unwrap().len(), 1);
    store.bind_mapping("m", "arn:b").await.unwrap();
}

async fn a_new_shard_starts_reading_without_a_checkpoint(store: Store) {
    let (lease, cp) = store.acquire("m", "shard-0").await.unwrap().unwrap();
    assert_eq!(
        (lease.mapping_uuid.as_str(), lease.shard_id.as_str()),
        ("m", "shard-0")
    );
    assert_eq!(cp.sequence_number, None);
    assert_eq!(cp.status, ShardStatus::Reading);
    assert_eq!(cp.window, None);
    assert_eq!(store.shards("m").await.unwrap().len(), 1);
    assert!(store.shards("other").await.unwrap().is_empty());
}

async fn checkpoints_move_forward_numerically_and_never_back(store: Store) {
    let (lease, _) = store.acquire("m", "s").await.unwrap().unwrap();
    store.checkpoint(&lease, &seq("9")).await.unwrap();
    // 10 > 9 numerically, although "10" < "9" as text.
    store.checkpoint(&lease, &seq("10")).await.unwrap();
    store.checkpoint(&lease, &seq("10")).await.unwrap();
    let err = store.checkpoint(&lease, &seq("9")).await.unwrap_err();
    assert!(matches!(err, CheckpointError::Backwards { .. }), "{err}");
    let huge = "49650979826396435289470498223419876537913232446512431106";
    store.checkpoint(&lease, &seq(huge)).await.unwrap();
    let shards = store.shards("m").await.unwrap();
    assert_eq!(shards[0].sequence_number, Some(seq(huge)));
}

async fn a_stale_lease_cannot_write(store: Store) {
    let (old, _) = store.acquire("m", "s").await.unwrap().unwrap();
    let (new, _) = store.acquire("m", "s").await.unwrap().unwrap();
    assert!(
        new.counter > old.counter,
        "a take-over raises the fencing counter"
    );
    for write in [
        store.checkpoint(&old, &seq("1")).await,
        store.save_window(&old, Some(&seq("1")), None).await,
    ] {
        assert!(
            matches!(write, Err(CheckpointError::LeaseLost { .. })),
            "{write:?}"
        );
    }
    store.checkpoint(&new, &seq("1")).await.unwrap();
    assert_eq!(
        store.shards("m").await.unwrap()[0].sequence_number,
        Some(seq("1"))
    );
}

async fn a_uuid_stays_bound_to_its_source(store: Store) {
    store.bind_mapping("m", "arn:a").await.unwrap();
    store.bind_mapping("m", "arn:a").await.unwrap();
    let err = store.bind_mapping("m", "arn:b").await.unwrap_err();
    assert!(
        matches!(err, CheckpointError::SourceChanged { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("arn:a") && text.contains("arn:b"), "{text}");
}

async fn window_state_and_checkpoint_are_written_together(store: Store) {
    let (lease, _) = store.acquire("m", "s").await.unwrap().unwrap();
    let open = window(serde_json::json!({"count": 3}));
    store
        .save_window(&lease, Some(&seq("5")), Some(&open))
        .await
        .unwrap();
    // A plain checkpoint leaves the window alone.
    store.checkpoint(&lease, &seq("6")).await.unwrap();
    // A backwards write changes neither the checkpoint nor the window.
    let err = store
        .save_window(&lease, Some(&seq("4")), None)
        .await
        .unwrap_err();
    assert!(matches!(err, CheckpointError::Backwards { .. }));
    let cp = store.shards("m").await.unwrap().remove(0);
    assert_eq!(
        (cp.sequence_number, cp.window),
        (Some(seq("6")), Some(open))
    );
    store.save_window(&lease, None, None).await.unwrap();
    let cp = store.shards("m").await.unwrap().remove(0);
    assert_eq!((cp.sequence_number, cp.window), (Some(seq("6")), None));
}

async fn finishing_and_releasing_keep_the_checkpoint(store: Store) {
    let (lease, _) = store.acquire("m", "parent").await.unwrap().unwrap();
    store.checkpoint(&lease, &seq("7")).await.unwrap();
    store.release(&lease).await.unwrap();
    let (lease, cp) = store.acquire("m", "parent").await.unwrap().unwrap();
    assert_eq!(cp.sequence_number, Some(seq("7")));
    store.finish(&lease, ShardStatus::Ended).await.unwrap();
    let cp = store.shards("m").await.unwrap().remove(0);
    assert_eq!(
        (cp.status, cp.sequence_number),
        (ShardStatus::Ended, Some(seq("7")))
    );
    assert!(cp.status.is_finished());
}

#[tokio::test]
async fn the_memory_store_keeps_the_contract() {
    contract(|| Arc::new(MemoryStore::new("test-host")) as Store).await;
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_contract() {
    contract(|| Arc::new(SqliteStore::in_memory().unwrap()) as Store).await;
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_contract_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    contract(|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Arc::new(SqliteStore::open(&dir.path().join(format!("{i}.db"))).unwrap()) as Store
    })
    .await;
}

/// The checks for a store that several instances share, given two instances (`a`, `b`, with
/// different owners) on one empty table whose leases last `lease`.
async fn shared_contract(a: Store, b: Store, lease: std::time::Duration) {
    // A held lease is not taken.
    let (held, _) = a.acquire("m", "s").await.unwrap().unwrap();
    a.checkpoint(&held, &seq("5")).await.unwrap();
    assert!(
        b.acquire("m", "s").await.unwrap().is_none(),
        "a live lease is not taken"
    );
    a.renew(&held).await.unwrap();

    // Once it expires, another instance takes it, and the old owner is fenced off.
    tokio::time::sleep(lease + lease / 2).await;
    let (taken, cp) = b
        .acquire("m", "s")
        .await
        .unwrap()
        .expect("an expired lease is taken");
    assert!(taken.counter > held.counter);
    assert_eq!(
        cp.sequence_number,
        Some(seq("5")),
        "the checkpoint comes with the lease"
    );
    for refused in [
        a.checkpoint(&held, &seq("7")).await,
        a.save_window(&held, Some(&seq("7")), None).await,
        a.renew(&held).await,
        a.finish(&held, ShardStatus::Ended).await,
    ] {
        assert!(
            matches!(refused, Err(CheckpointError::LeaseLost { .. })),
            "{refused:?}"
        );
    }
    a.release(&held).await.unwrap();
    b.renew(&taken)
        .await
        .expect("a stale release leaves the new owner alone");
    b.checkpoint(&taken, &seq("10")).await.unwrap();

    // A handoff: released leases are taken at once, without waiting for expiry, and the
    // checkpoint never moves backwards across instances.
    b.release(&taken).await.unwrap();
    let (back, cp) = a
        .acquire("m", "s")
        .await
        .unwrap()
        .expect("a released lease is free");
    assert_eq!(cp.sequence_number, Some(seq("10")));
    let err = a.checkpoint(&back, &seq("9")).await.unwrap_err();
    assert!(matches!(err, CheckpointError::Backwards { .. }), "{err}");

    // Children start only when every parent's lease records its end, whoever read it.
    a.finish(&back, ShardStatus::Ended).await.unwrap();
    let seen_by_b = b.shards("m").await.unwrap();
    let parent = seen_by_b.iter().find(|s| s.shard_id == "s").unwrap();
    assert_eq!(parent.status, ShardStatus::Ended);
}

/// The DynamoDB lease table on a moto server (`MOTO_SERVER`, or `moto_server` on the PATH).
mod on_moto {
    use std::time::Duration;

    use super::*;
    use crate::aws::moto::{moto, Moto};
    use crate::checkpoint::dynamodb::DynamoStore;
    use crate::config::LeaseSettings;

    async fn client(moto: &Moto) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&moto.sdk_config().await)
    }

    async fn store(moto: &Moto, table: &str, owner: &str, lease: Duration) -> Store {
        let settings = LeaseSettings {
            table: table.into(),
            instance_id: Some(owner.into()),
            lease_duration: lease,
        };
        Arc::new(
            DynamoStore::open(client(moto).await, &settings)
                .await
                .unwrap(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_dynamodb_store_keeps_the_contract() {
        let moto = moto();
        let mut stores = Vec::new();
        for i in 0..8 {
            stores.push(
                store(
                    &moto,
                    &format!("leases-{i}"),
                    "host-a",
                    Duration::from_secs(10),
                )
                .await,
            );
        }
        contract(move || stores.pop().unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_on_one_lease_table_keep_the_shared_contract() {
        let moto = moto();
        // Long enough that a loaded machine does not let a lease lapse between two calls
        // that expect it live.
        let lease = Duration::from_secs(4);
        let a = store(&moto, "shared", "host-a", lease).await;
        let b = store(&moto, "shared", "host-b", lease).await;
        shared_contract(a, b, lease).await;
    }

    /// Two instances racing for a shard: exactly one wins. (Leases long enough that the
    /// winner's cannot lapse while the loser retries, however loaded the machine.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_racing_for_a_shard_have_one_winner() {
        let moto = moto();
        let a = store(&moto, "race", "host-a", Duration::from_secs(60)).await;
        let b = store(&moto, "race", "host-b", Duration::from_secs(60)).await;
        for shard in ["s1", "s2", "s3", "s4", "s5"] {
            let (x, y) = tokio::join!(a.acquire("m", shard), b.acquire("m", shard));
            let winners = [x.unwrap(), y.unwrap()]
                .iter()
                .filter(|l| l.is_some())
                .count();
            assert_eq!(winners, 1, "one owner for {shard}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_megabyte_of_window_state_survives_a_handoff() {
        let moto = moto();
        let a = store(&moto, "windows", "host-a", Duration::from_secs(10)).await;
        let b = store(&moto, "windows", "host-b", Duration::from_secs(10)).await;
        let (lease, _) = a.acquire("m", "s").await.unwrap().unwrap();
        let window = window(serde_json::json!({ "keys": "k".repeat(1_000_000) }));
        a.save_window(&lease, Some(&seq("3")), Some(&window))
            .await
            .unwrap();
        a.release(&lease).await.unwrap();
        let (_, cp) = b.acquire("m", "s").await.unwrap().unwrap();
        assert_eq!(cp.window, Some(window));
        assert_eq!(cp.sequence_number, Some(seq("3")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_with_another_key_schema_is_refused() {
        let moto = moto();
        let client = client(&moto).await;
        use aws_sdk_dynamodb::types::*;
        client
            .create_table()
            .table_name("other")
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap();
        let settings = LeaseSettings {
            table: "other".into(),
            instance_id: None,
            lease_duration: Duration::from_secs(10),
        };
        let err = DynamoStore::open(client, &settings).await.unwrap_err();
        assert!(err.to_string().contains("key schema"), "{err}");
    }
}
