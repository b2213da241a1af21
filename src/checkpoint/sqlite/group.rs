//! Group commit of checkpoint writes.
//!
//! Every batch ends with a checkpoint, and with `synchronous = FULL` every commit is an
//! fsync: one per batch per shard, 8% of a four-shard Kinesis run's CPU in perf. Writes that
//! arrive while a commit is under way wait in a queue, and the next commit takes them all:
//! one transaction and one fsync, in which each write is checked and applied in turn as if
//! it were alone (one refused for moving backwards or for a lost lease changes nothing and
//! fails alone). A caller still returns only once its write is on disk, so the store's
//! promise is unchanged; under one writer at a time nothing waits longer than before.

use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::super::{CheckpointError, SequenceNumber, ShardLease, WindowState};
use super::rows::{apply_checkpoint, storage};

/// One checkpoint write.
pub(super) struct Write {
    pub(super) lease: ShardLease,
    pub(super) proposed: Option<SequenceNumber>,
    /// `Some` stores the window state too (`Some(None)` clears it).
    pub(super) window: Option<Option<WindowState>>,
}

type Done = oneshot::Sender<Result<(), CheckpointError>>;

/// The queue of writes and whether a committer is draining it.
#[derive(Default)]
pub(super) struct Writer {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    writes: Vec<(Write, Done)>,
    /// A committer runs (or is about to) on the blocking pool and will take what is queued.
    committing: bool,
    /// Transactions committed, for the tests.
    #[cfg(test)]
    groups: usize,
}

impl Writer {
    /// Queues `write` and waits until it is committed or refused.
    pub(super) async fn write(
        self: &Arc<Self>,
        conn: &Arc<Mutex<Connection>>,
        write: Write,
    ) -> Result<(), CheckpointError> {
        let (done, result) = oneshot::channel();
        let start = {
            let mut queue = self.lock();
            queue.writes.push((write, done));
            !std::mem::replace(&mut queue.committing, true)
        };
        if start {
            let committer = Committer {
                writer: Arc::clone(self),
                conn: Arc::clone(conn),
                finished: false,
            };
            tokio::task::spawn_blocking(move || committer.run());
        }
        result
            .await
            .unwrap_or_else(|_| Err(storage("the checkpoint writer stopped")))
    }

    /// Commits what is queued, a group at a time, until the queue is empty.
    fn commit_queued(&self, conn: &Mutex<Connection>) {
        loop {
            // The connection first: writes queued while another call holds it join this group.
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            let writes = {
                let mut queue = self.lock();
                if queue.writes.is_empty() {
                    queue.committing = false;
                    return;
                }
                #[cfg(test)]
                {
                    queue.groups += 1;
                }
                std::mem::take(&mut queue.writes)
            };
            let results = commit_group(&mut conn, writes.iter().map(|(w, _)| w));
            drop(conn);
            for ((_, done), result) in writes.into_iter().zip(results) {
                let _ = done.send(result);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    pub(super) fn groups(&self) -> usize {
        self.lock().groups
    }

    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.lock().writes.len()
    }
}

/// The blocking task that drains the queue. If it panics, or is dropped without running (a
/// runtime shutting down), the queued writers are told (their senders are dropped: "the
/// checkpoint writer stopped") and the next write starts a new committer.
struct Committer {
    writer: Arc<Writer>,
    conn: Arc<Mutex<Connection>>,
    finished: bool,
}

impl Committer {
    fn run(mut self) {
        self.writer.commit_queued(&self.conn);
        self.finished = true;
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        if !self.finished {
            let mut queue = self.writer.lock();
            queue.committing = false;
            queue.writes.clear();
        }
    }
}

/// One transaction for `writes`, each checked and applied in turn; one result per write. A
/// storage failure (a full disk) fails them all: nothing of the group is committed.
fn commit_group<'a>(
    conn: &mut Connection,
    writes: impl ExactSizeIterator<Item = &'a Write>,
) -> Vec<Result<(), CheckpointError>> {
    let count = writes.len();
    let all = |message: &str| (0..count).map(|_| Err(storage(message))).collect();
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => return all(&e.to_string()),
    };
    let mut results = Vec::with_capacity(count);
    for w in writes {
        let result = apply_checkpoint(
            &tx,
            &w.lease,
            w.proposed.as_ref(),
            w.window.as_ref().map(Option::as_ref),
        );
        if let Err(CheckpointError::Storage(message)) = &result {
            return all(message);
        }
        results.push(result);
    }
    match tx.commit() {
        Ok(()) => results,
        Err(e) => all(&e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;
    use super::{Committer, Write};
    use crate::checkpoint::{CheckpointError, CheckpointStore, SequenceNumber};

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber::parse(s).unwrap()
    }

    /// Writes that arrive while the connection is busy (a commit under way) are committed
    /// together, each checked on its own: four move forward, one that would move backwards
    /// is refused alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_waiting_for_a_commit_go_in_one_transaction() {
        let store = SqliteStore::in_memory().unwrap();
        store.bind_mapping("m", "arn:s").await.unwrap();
        let mut leases = Vec::new();
        for i in 0..4 {
            let shard = format!("shard-{i}");
            leases.push(store.acquire("m", &shard).await.unwrap().unwrap().0);
        }
        store.checkpoint(&leases[0], &seq("50")).await.unwrap();
        let groups = store.writer.groups();

        // Another call holds the connection until the five writes are queued.
        let (locked_tx, locked) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let conn = store.conn.clone();
        let holder = std::thread::spawn(move || {
            let _held = conn.lock().unwrap();
            locked_tx.send(()).unwrap();
            released.recv().unwrap();
        });
        locked.recv().unwrap();
        let mut writes = Vec::new();
        let proposals = [(0, "40"), (0, "60"), (1, "20"), (2, "30"), (3, "5")];
        for (shard, s) in proposals {
            let (writer, lease) = (store.clone(), leases[shard].clone());
            writes.push(tokio::spawn(async move {
                writer.checkpoint(&lease, &seq(s)).await
            }));
            // In this order: the backwards one before the one that moves shard 0 on.
            while store.writer.queued() < writes.len() {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        release.send(()).unwrap();
        holder.join().unwrap();
        let mut results = Vec::new();
        for w in writes {
            results.push(w.await.unwrap());
        }

        assert!(
            matches!(&results[0], Err(CheckpointError::Backwards { .. })),
            "{:?}",
            results[0]
        );
        assert!(results[1..].iter().all(Result::is_ok), "{results:?}");
        assert_eq!(store.writer.groups(), groups + 1, "one transaction");
        let stored: Vec<_> = store
            .shards("m")
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.sequence_number.map(|n| n.to_string()))
            .collect();
        let expected = ["60", "20", "30", "5"].map(|s| Some(s.to_string()));
        assert_eq!(stored, expected);
    }

    /// A committer dropped without running (a runtime shutting down) fails the writes it was
    /// to commit, and the next write starts another: nothing waits forever.
    #[tokio::test]
    async fn a_committer_that_never_runs_fails_its_writes_and_the_next_write_goes_on() {
        let store = SqliteStore::in_memory().unwrap();
        store.bind_mapping("m", "arn:s").await.unwrap();
        let (lease, _) = store.acquire("m", "shard-0").await.unwrap().unwrap();
        let (done, result) = tokio::sync::oneshot::channel();
        {
            let mut queue = store.writer.lock();
            let write = Write {
                lease: lease.clone(),
                proposed: Some(seq("1")),
                window: None,
            };
            queue.writes.push((write, done));
            queue.committing = true;
        }
        drop(Committer {
            writer: store.writer.clone(),
            conn: store.conn.clone(),
            finished: false,
        });
        let told = tokio::time::timeout(std::time::Duration::from_secs(10), result).await;
        assert!(matches!(told, Ok(Err(_))), "the writer is told");
        let two = seq("2");
        let next = store.checkpoint(&lease, &two);
        tokio::time::timeout(std::time::Duration::from_secs(10), next)
            .await
            .expect("the next write is committed")
            .unwrap();
    }
}
