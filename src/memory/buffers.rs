//! Large buffers kept for reuse while work goes on.
//!
//! Blocks of at least [`super::MMAP_THRESHOLD`] are mapped for themselves and unmapped when
//! freed (see the module's overview), so without reuse every GetRecords answer (megabytes)
//! and every batch payload (100 Kinesis records are 200 KB) would be written into freshly
//! mapped pages: a page fault and a zeroed page per 4 KiB, 12% of a Kinesis run's CPU in
//! perf. The hot paths take such buffers from here ([`take`]) and hand them back when done
//! ([`into_bytes`]: as [`Bytes`], which go back when dropped). The pool holds at
//! most [`POOL_BYTES`], and the burst trimmer empties it ([`release`]) once work stops, so
//! at rest that memory is the operating system's again.

use std::sync::{Mutex, OnceLock};

use bytes::Bytes;

/// What the pool keeps at most, in capacity. Four shards' answers of 4 MiB (the read-ahead's
/// byte budget per read).
pub(crate) const POOL_BYTES: usize = 16 * 1024 * 1024;
/// Smaller buffers come from the allocator's arenas, where reuse is already cheap.
pub(crate) const POOLED_MIN: usize = super::MMAP_THRESHOLD as usize;
/// A pooled buffer serves a request of at least this fraction of its capacity: a 4 MiB
/// answer's buffer is not spent on a 200 KB payload (the next answer would then need a new
/// one).
const FIT: usize = 4;

/// Free buffers, each with a capacity of at least [`POOLED_MIN`].
#[derive(Default)]
pub(crate) struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// An empty buffer with room for `capacity` bytes: the smallest pooled one that fits, or
    /// a new one.
    pub(crate) fn take(&self, capacity: usize) -> Vec<u8> {
        if capacity >= POOLED_MIN {
            let mut free = self.lock();
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= capacity && b.capacity() / FIT <= capacity)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
            if let Some(i) = best {
                return free.swap_remove(i);
            }
        }
        Vec::with_capacity(capacity)
    }

    /// Keeps `buffer` for a later [`BufferPool::take`] if it is large and the pool has room;
    /// frees it otherwise.
    pub(crate) fn give(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() < POOLED_MIN {
            return;
        }
        buffer.clear();
        let mut free = self.lock();
        let held: usize = free.iter().map(Vec::capacity).sum();
        if held + buffer.capacity() <= POOL_BYTES {
            free.push(buffer);
        }
    }

    /// Frees every pooled buffer.
    pub(crate) fn release(&self) {
        let free = std::mem::take(&mut *self.lock());
        drop(free);
    }

    /// The capacity held.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().iter().map(Vec::capacity).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn global() -> &'static BufferPool {
    static POOL: OnceLock<BufferPool> = OnceLock::new();
    POOL.get_or_init(BufferPool::default)
}

/// [`BufferPool::take`] from the process's pool.
pub(crate) fn take(capacity: usize) -> Vec<u8> {
    global().take(capacity)
}

/// Empties the process's pool (the burst trimmer, once work stops).
pub(crate) fn release() {
    global().release()
}

/// `buffer` as [`Bytes`], given back to the process's pool when the last clone is dropped
/// (the payload of an invocation, after the request has been written and any retry made).
pub(crate) fn into_bytes(buffer: Vec<u8>) -> Bytes {
    global().bytes_of(buffer)
}

impl BufferPool {
    /// `buffer` as [`Bytes`], given back to this pool when the last clone is dropped.
    fn bytes_of(&'static self, buffer: Vec<u8>) -> Bytes {
        if buffer.capacity() < POOLED_MIN {
            return Bytes::from(buffer);
        }
        Bytes::from_owner(Pooled(buffer, self))
    }
}

/// A buffer that goes back to its pool when dropped.
struct Pooled(Vec<u8>, &'static BufferPool);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.1.give(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn a_large_buffer_is_reused_and_a_small_one_is_not_kept() {
        let pool = BufferPool::default();
        let mut a = pool.take(MIB);
        a.extend_from_slice(&[7; 100]);
        let at = a.as_ptr();
        pool.give(a);
        assert_eq!(pool.held(), MIB);
        let b = pool.take(MIB - 10);
        assert_eq!(b.as_ptr(), at, "the same allocation");
        assert!(b.is_empty(), "handed out empty");
        assert_eq!(pool.held(), 0);
        pool.give(Vec::with_capacity(POOLED_MIN - 1));
        assert_eq!(pool.held(), 0);
    }

    #[test]
    fn the_smallest_fitting_buffer_serves_and_a_much_larger_one_does_not() {
        let pool = BufferPool::default();
        for size in [4 * MIB, MIB, 2 * MIB] {
            pool.give(Vec::with_capacity(size));
        }
        assert_eq!(pool.take(MIB + 1).capacity(), 2 * MIB);
        // 300 KiB: the 1 MiB buffer is within the fit; the 4 MiB one would not be.
        assert_eq!(pool.take(300 * 1024).capacity(), MIB);
        assert_eq!(pool.take(300 * 1024).capacity(), 300 * 1024, "a new one");
        assert_eq!(pool.held(), 4 * MIB);
    }

    #[test]
    fn the_pool_is_bounded_and_released() {
        let pool = BufferPool::default();
        for _ in 0..(POOL_BYTES / (4 * MIB) + 3) {
            pool.give(Vec::with_capacity(4 * MIB));
        }
        assert_eq!(pool.held(), POOL_BYTES);
        pool.release();
        assert_eq!(pool.held(), 0);
    }

    #[test]
    fn bytes_go_back_to_the_pool_when_the_last_clone_drops() {
        let pool: &'static BufferPool = Box::leak(Box::default());
        let mut buffer = pool.take(POOLED_MIN);
        buffer.extend_from_slice(b"payload");
        let bytes = pool.bytes_of(buffer);
        let copy = bytes.clone();
        assert_eq!(&copy[..], b"payload");
        drop(bytes);
        assert_eq!(pool.held(), 0, "a clone is alive");
        drop(copy);
        assert_eq!(pool.held(), POOLED_MIN);
        // A small buffer is plain Bytes.
        assert_eq!(&pool.bytes_of(b"x".to_vec())[..], b"x");
        assert_eq!(pool.held(), POOLED_MIN);
    }
}
