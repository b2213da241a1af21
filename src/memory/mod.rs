//! Handing memory freed after a burst back to the operating system, with no timer at rest.
//!
//! glibc keeps memory freed after a burst (a stream backlog read ahead, large batches) in its
//! arenas, so a daemon that once held 80 MB of records would stay there while idle with a
//! small heap. `malloc_trim` returns the free pages. It runs once a burst is over: every
//! invocation notes work ([`note_work`]); the trimmer sleeps on a notification while nothing
//! happens (no wake-ups at rest), checks every [`QUIET`] while work goes on, and trims once a
//! whole [`QUIET`] passed without any. A backlog followed by a trickle (a record every second)
//! never goes quiet, so while work goes on it also trims every [`WHILE_BUSY`]: the memory the
//! backlog left goes back within that time, at the cost of one trim per [`WHILE_BUSY`].
//!
//! Trimming only returns whole free pages, so the large transient buffers of a burst (a
//! GetRecords response of megabytes, a batch's rendered payload) must not land in the arenas
//! in the first place: glibc's dynamic mmap threshold rises to the size of each large block
//! freed, after which such blocks come from the arenas and fragment them (after a 30,000-record
//! Kinesis backlog, 12.9 MB of arena pages stayed resident around 4.6 MB in use).
//! [`configure_allocator`] fixes the threshold, so those blocks are mapped and unmapped. The
//! hot paths reuse theirs from a bounded pool ([`buffers`]) instead of mapping fresh pages
//! for each; the trimmer empties the pool before it trims.

mod buffers;

pub(crate) use buffers::{into_bytes, take, POOLED_MIN};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long without an invocation counts as the end of a burst.
pub(crate) const QUIET: Duration = Duration::from_secs(2);
/// How often memory is trimmed while work goes on without a quiet spell.
pub(crate) const WHILE_BUSY: Duration = Duration::from_secs(30);

/// Whether work happened since the trimmer last looked, and how to wake it.
#[derive(Default)]
pub(crate) struct BurstTrimmer {
    busy: AtomicBool,
    wake: Notify,
}

impl BurstTrimmer {
    /// Cheap (one atomic swap): called after every invocation.
    pub(crate) fn note_work(&self) {
        if !self.busy.swap(true, Ordering::AcqRel) {
            self.wake.notify_waiters();
        }
    }

    /// Waits for work, then for a quiet spell, then calls `trim`; until `shutdown`.
    pub(crate) async fn run(&self, shutdown: CancellationToken, trim: impl Fn()) {
        loop {
            // Registered before `busy` is read, so a note in between is not lost; no permit
            // is stored, so a note during a burst does not cause a second trim after it.
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.busy.load(Ordering::Acquire) {
                tokio::select! {
                    _ = notified => {}
                    _ = shutdown.cancelled() => return,
                }
            }
            let mut busy_since = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(QUIET) => {}
                    _ = shutdown.cancelled() => return,
                }
                if !self.busy.swap(false, Ordering::AcqRel) {
                    break;
                }
                if busy_since.elapsed() >= WHILE_BUSY {
                    trim();
                    busy_since = tokio::time::Instant::now();
                }
            }
            trim();
        }
    }
}

fn global() -> &'static BurstTrimmer {
    static TRIMMER: OnceLock<BurstTrimmer> = OnceLock::new();
    TRIMMER.get_or_init(BurstTrimmer::default)
}

/// Notes that records were handled: memory may be worth trimming once the burst is over.
pub(crate) fn note_work() {
    global().note_work();
}

/// The process's trimmer (spawned once by `esmd run`).
pub(crate) async fn release_after_bursts(shutdown: CancellationToken) {
    global()
        .run(shutdown, || {
            buffers::release();
            malloc_trim();
        })
        .await;
}

/// Blocks at least this large are mapped for themselves and returned to the OS when freed.
/// glibc's own starting value; fixing it turns off the dynamic threshold.
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Fixes glibc's mmap threshold (see the module's overview), before the runtime starts its
/// threads, unless the operator set one through `GLIBC_TUNABLES`.
pub(crate) fn configure_allocator() {
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("mmap_threshold")) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a glibc tunable; it takes no pointers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

fn malloc_trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas and releases free pages; it takes no
    // pointers from us and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a 4 MiB block is freed, glibc's dynamic threshold would serve a 1 MiB block from
    /// an arena; with the fixed threshold it is mapped (counted in `hblkhd`). The threshold
    /// only applies when an arena must grow, and this test binary's arenas hold whatever
    /// other tests freed, so the check runs in a fresh process: this test binary again,
    /// running only this test, with `ESMD_MMAP_CHECK` set.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn large_blocks_are_mapped_after_a_larger_one_was_freed() {
        const NAME: &str = "memory::tests::large_blocks_are_mapped_after_a_larger_one_was_freed";
        if std::env::var_os("ESMD_MMAP_CHECK").is_some() {
            configure_allocator();
            // SAFETY: mallinfo2 only reads glibc's counters.
            let mapped = || unsafe { libc::mallinfo2() }.hblkhd;
            drop(std::hint::black_box(vec![1u8; 4 << 20]));
            let before = mapped();
            let block = std::hint::black_box(vec![1u8; 1 << 20]);
            let during = mapped();
            drop(block);
            assert!(
                during >= before + (1 << 20),
                "a 1 MiB block came from an arena"
            );
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([NAME, "--exact", "--test-threads=1", "--nocapture"])
            .env("ESMD_MMAP_CHECK", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// Lets `d` of paused time pass in 100 ms steps, so that each new sleep starts on time.
    async fn pass(d: Duration) {
        let mut left = d;
        while !left.is_zero() {
            let step = left.min(Duration::from_millis(100));
            tokio::time::advance(step).await;
            settle().await;
            left -= step;
        }
    }

    /// A trimmer whose trims are counted, running until `shutdown`.
    fn spawn_counting_trimmer() -> (
        Arc<BurstTrimmer>,
        Arc<AtomicUsize>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let trimmer = Arc::new(BurstTrimmer::default());
        let trims = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let (t, n, s) = (trimmer.clone(), trims.clone(), shutdown.clone());
        let task = tokio::spawn(async move {
            t.run(s, move || {
                n.fetch_add(1, Ordering::SeqCst);
            })
            .await
        });
        (trimmer, trims, shutdown, task)
    }

    #[tokio::test(start_paused = true)]
    async fn trims_once_after_a_burst_and_never_at_rest() {
        let (trimmer, trims, shutdown, task) = spawn_counting_trimmer();
        // At rest: nothing, however long.
        pass(Duration::from_secs(600)).await;
        assert_eq!(trims.load(Ordering::SeqCst), 0);

        // A burst of 5 s with work every 500 ms: no trim while it lasts.
        for _ in 0..10 {
            trimmer.note_work();
            pass(Duration::from_millis(500)).await;
        }
        assert_eq!(trims.load(Ordering::SeqCst), 0, "not during the burst");
        // Then quiet: one trim within two quiet spells, and none after.
        pass(QUIET * 2).await;
        assert_eq!(trims.load(Ordering::SeqCst), 1);
        pass(Duration::from_secs(600)).await;
        assert_eq!(trims.load(Ordering::SeqCst), 1);

        // The next burst trims again.
        trimmer.note_work();
        pass(QUIET * 3).await;
        assert_eq!(trims.load(Ordering::SeqCst), 2);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_after_a_burst_trims_every_while_busy_period() {
        let (trimmer, trims, shutdown, task) = spawn_counting_trimmer();
        // Work every second for 95 s: never quiet, so a trim every WHILE_BUSY (3 of them).
        for _ in 0..95 {
            trimmer.note_work();
            pass(Duration::from_secs(1)).await;
        }
        assert_eq!(trims.load(Ordering::SeqCst), 3);
        // Then quiet: the trim at the end of the burst, and nothing more at rest.
        pass(QUIET * 2).await;
        assert_eq!(trims.load(Ordering::SeqCst), 4);
        pass(Duration::from_secs(600)).await;
        assert_eq!(trims.load(Ordering::SeqCst), 4);
        shutdown.cancel();
        task.await.unwrap();
    }
}
