//! The contract every [`CheckpointStore`] passes: the in-memory twin and the SQLite store
//! today, the DynamoDB lease table next. Each check takes a fresh, empty store.

use std::sync::Arc;

use super::memory::MemoryStore;
use super::{
    CheckpointError, CheckpointStore, SequenceNumber, ShardStatus, SqliteStore, WindowState,
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
async fn contract(fresh: impl Fn() -> Store) {
    a_new_shard_starts_reading_without_a_checkpoint(fresh()).await;
    checkpoints_move_forward_numerically_and_never_back(fresh()).await;
    a_stale_lease_cannot_write(fresh()).await;
    a_uuid_stays_bound_to_its_source(fresh()).await;
    window_state_and_checkpoint_are_written_together(fresh()).await;
    finishing_and_releasing_keep_the_checkpoint(fresh()).await;
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
