//! Tumbling windows (`tumbling_window_in_seconds`): fixed, non-overlapping windows chosen by
//! each record's arrival time in the stream, with a state the function carries from one
//! invocation to the next within a window of the same shard.
//!
//! How a window runs here:
//! - a batch never spans two windows; the first record of a later window closes the open one;
//! - a window also closes once the reader has read past its end (a read sent after the end
//!   found the shard caught up), so an idle shard still gets its final invocation. AWS waits
//!   "up to 2 minutes" for Kinesis; esmd closes as soon as no record can still belong to it;
//! - closing makes one final invocation with no records and `isFinalInvokeForWindow: true`,
//!   retried until it succeeds (AWS halts the shard until then), and then drops the state;
//! - the end of a shard closes its window; children start with empty state;
//! - after every batch the state is written with the checkpoint in one store write, so a
//!   restart inside a window resumes the state the last confirmed batch returned;
//! - a state over 1 MB ends the window early: a final invocation with
//!   `isWindowTerminatedEarly: true`, then the same window continues with empty state.
//!
//! A window's state belongs to the whole shard, so a windowed mapping uses one lane per shard
//! whatever its `parallelization_factor`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::api::StreamRecord;
use super::context::ShardContext;
use super::lane::{gather, settled_prefix};
use super::progress::Progress;
use crate::checkpoint::WindowState;

/// The largest state AWS keeps per shard.
pub(crate) const MAX_STATE_BYTES: usize = 1024 * 1024;

/// How often an idle lane checks whether its open window can close.
const CLOSE_CHECK: Duration = Duration::from_millis(250);

/// The window `[start, end)` that holds `arrival`: windows are aligned to multiples of their
/// length since the Unix epoch.
pub(crate) fn bounds(arrival: DateTime<Utc>, length: Duration) -> (DateTime<Utc>, DateTime<Utc>) {
    let len = (length.as_millis() as i64).max(1000);
    let t = arrival.timestamp_millis();
    let start = t.div_euclid(len) * len;
    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(arrival);
    (at(start), at(start + len))
}

/// A fresh window around `arrival`, with empty state.
pub(crate) fn open_window(arrival: DateTime<Utc>, length: Duration) -> WindowState {
    let (start, end) = bounds(arrival, length);
    WindowState {
        start,
        end,
        state: serde_json::json!({}),
    }
}

/// Whether the open window can close now: the reader has read past its end.
pub(crate) fn can_close(window: &WindowState, horizon: Option<DateTime<Utc>>) -> bool {
    horizon.is_some_and(|h| h >= window.end)
}

fn state_too_large(window: &WindowState) -> bool {
    serde_json::to_vec(&window.state).is_ok_and(|v| v.len() > MAX_STATE_BYTES)
}

/// The one lane of a windowed shard. `open` is the window stored with the checkpoint, if a
/// previous run left one open.
pub(super) async fn run_window_lane(
    ctx: Arc<ShardContext>,
    shard_id: String,
    progress: Arc<Progress>,
    mut rx: mpsc::Receiver<Vec<StreamRecord>>,
    length: Duration,
    mut open: Option<WindowState>,
) {
    let stop = ctx.shutdown.stop_receiving.clone();
    let mut buffer: VecDeque<StreamRecord> = VecDeque::new();
    loop {
        if buffer.is_empty() {
            tokio::select! {
                got = rx.recv() => match got {
                    Some(records) => buffer.extend(records),
                    None => {
                        // The reader stopped. At the shard's end the window closes with it;
                        // on shutdown or a failure the stored state waits for the restart.
                        if progress.shard_ended() && !stop.is_cancelled() && progress.failure().is_none() {
                            if let Some(window) = open.take() {
                                close(&ctx, &shard_id, &progress, &window, false).await;
                            }
                        }
                        return;
                    }
                },
                _ = tokio::time::sleep(CLOSE_CHECK), if open.is_some() => {
                    if let Some(window) = open.as_ref().filter(|w| can_close(w, progress.horizon())) {
                        if !close(&ctx, &shard_id, &progress, window, false).await {
                            return;
                        }
                        open = None;
                    }
                    continue;
                }
                _ = stop.cancelled() => return,
            }
        }
        let Some(front) = buffer.front() else {
            continue;
        };
        let next = open_window(front.arrival, length);
        if let Some(window) = open.as_ref().filter(|w| next.start > w.start) {
            // The first record of a later window: the open one is complete.
            if !close(&ctx, &shard_id, &progress, window, false).await {
                return;
            }
            open = None;
        }
        let window = open.get_or_insert(next);
        let end = window.end;
        let Some(records) = gather(&ctx, &shard_id, &progress, &mut buffer, &mut rx, |r| {
            r.arrival < end
        })
        .await
        else {
            return;
        };
        if !records.is_empty() && !process(&ctx, &shard_id, &progress, &records, window).await {
            return;
        }
    }
}

/// Processes one batch of the open window and stores the new state with the checkpoint; a
/// state past 1 MB ends the window early and it goes on empty. False when the lane must stop.
async fn process(
    ctx: &ShardContext,
    shard_id: &str,
    progress: &Progress,
    records: &[StreamRecord],
    window: &mut WindowState,
) -> bool {
    let processed = ctx
        .processor
        .process_in_window(shard_id, records, window)
        .await;
    let done = settled_prefix(records, processed.settled);
    progress
        .settle_window(ctx, shard_id, &done, Some(window))
        .await;
    if processed.interrupted || progress.failure().is_some() {
        return false;
    }
    if state_too_large(window) {
        tracing::warn!(mapping = %ctx.uuid, shard = %shard_id, "tumbling-window state passed 1 MB; ending the window early");
        if !ctx.processor.close_window(shard_id, window, true).await {
            return false;
        }
        window.state = serde_json::json!({});
        progress
            .settle_window(ctx, shard_id, &[], Some(window))
            .await;
    }
    true
}

/// Makes the window's final invocation and drops its stored state. False on shutdown.
async fn close(
    ctx: &ShardContext,
    shard_id: &str,
    progress: &Progress,
    window: &WindowState,
    terminated_early: bool,
) -> bool {
    if !ctx
        .processor
        .close_window(shard_id, window, terminated_early)
        .await
    {
        return false;
    }
    progress.settle_window(ctx, shard_id, &[], None).await;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[test]
    fn windows_are_aligned_to_their_length() {
        let t = Utc.with_ymd_and_hms(2024, 6, 10, 6, 15, 21).unwrap();
        let (start, end) = bounds(t, Duration::from_secs(120));
        assert_eq!(start, Utc.with_ymd_and_hms(2024, 6, 10, 6, 14, 0).unwrap());
        assert_eq!(end, Utc.with_ymd_and_hms(2024, 6, 10, 6, 16, 0).unwrap());
        // A record exactly at a boundary opens the next window.
        let (start, _) = bounds(end, Duration::from_secs(120));
        assert_eq!(start, end);
    }

    #[test]
    fn a_window_closes_only_once_the_reader_is_past_its_end() {
        let w = open_window(
            Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 5).unwrap(),
            Duration::from_secs(10),
        );
        assert!(!can_close(&w, None));
        assert!(!can_close(
            &w,
            Some(w.end - chrono::Duration::milliseconds(1))
        ));
        assert!(can_close(&w, Some(w.end)));
    }

    #[test]
    fn state_over_one_megabyte_is_too_large() {
        let mut w = open_window(Utc::now(), Duration::from_secs(60));
        assert!(!state_too_large(&w));
        w.state = serde_json::json!({ "big": "x".repeat(MAX_STATE_BYTES) });
        assert!(state_too_large(&w));
    }

    proptest! {
        #[test]
        fn every_arrival_falls_in_its_window(ms in 0i64..4_000_000_000_000, secs in 1u64..=900) {
            let t = DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
            let (start, end) = bounds(t, Duration::from_secs(secs));
            prop_assert!(start <= t && t < end);
            prop_assert_eq!((end - start).num_seconds() as u64, secs);
            prop_assert_eq!(start.timestamp() % secs as i64, 0);
        }
    }
}
