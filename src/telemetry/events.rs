//! Named log events. Each is a struct with an `emit` method, so the set of things esmd logs is
//! visible in one place and no call site can slip a payload or credential into a log line.

use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use super::MappingMetrics;

/// Every named event, for counting (`esmd_events_total{event=…}`) and for the test recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    MappingStarted,
    MappingErrored,
    BatchInvoked,
    InvokeRetrying,
    BatchFailed,
    BatchEntriesFailed,
    RecordTooLarge,
    BatchGivenUp,
    BatchBisected,
    ShardStarted,
    ShardEnded,
    ShardReadFailed,
    ConfigReloaded,
    ConfigReloadRejected,
    ConfigNeedsRestart,
    MappingStopped,
    RecordsPolled,
    RecordsFilteredOut,
    RecordsFailed,
    MessagesDeleted,
    DeleteFailed,
    MessagesReleased,
    DestinationDelivered,
}

const EVENTS: usize = 23;

/// The events' names in `esmd_events_total`, in [`Event`]'s order.
const NAMES: [&str; EVENTS] = [
    "mapping_started",
    "mapping_errored",
    "batch_invoked",
    "invoke_retrying",
    "batch_failed",
    "batch_entries_failed",
    "record_too_large",
    "batch_given_up",
    "batch_bisected",
    "shard_started",
    "shard_ended",
    "shard_read_failed",
    "config_reloaded",
    "config_reload_rejected",
    "config_needs_restart",
    "mapping_stopped",
    "records_polled",
    "records_filtered_out",
    "records_failed",
    "messages_deleted",
    "delete_failed",
    "messages_released",
    "destination_delivered",
];

static COUNTS: [AtomicU64; EVENTS] = [const { AtomicU64::new(0) }; EVENTS];

/// Counts one emitted event (and hands it to the test recorder, in tests).
fn counted(event: Event, mapping: Option<&str>) {
    COUNTS[event as usize].fetch_add(1, Ordering::Relaxed);
    #[cfg(test)]
    recorder::record(event, mapping);
    #[cfg(not(test))]
    let _ = mapping;
}

/// How often each event was emitted since the process started.
pub(crate) fn counts() -> impl Iterator<Item = (&'static str, u64)> {
    NAMES
        .iter()
        .zip(COUNTS.iter())
        .map(|(name, count)| (*name, count.load(Ordering::Relaxed)))
}

/// Lets a test assert on the events a scenario emitted instead of on log text. Recording is
/// per thread, which holds every task of a `#[tokio::test]` (a current-thread runtime).
#[cfg(test)]
pub(crate) mod recorder {
    use std::cell::RefCell;

    use super::Event;

    thread_local! {
        static RECORDED: RefCell<Option<Vec<(Event, Option<String>)>>> = const { RefCell::new(None) };
    }

    pub(super) fn record(event: Event, mapping: Option<&str>) {
        RECORDED.with(|r| {
            if let Some(events) = r.borrow_mut().as_mut() {
                events.push((event, mapping.map(str::to_string)));
            }
        });
    }

    /// Records the events emitted on this thread until dropped.
    pub(crate) struct Recorder(());

    impl Recorder {
        pub(crate) fn start() -> Self {
            RECORDED.with(|r| *r.borrow_mut() = Some(Vec::new()));
            Recorder(())
        }

        /// How many times `event` was emitted.
        pub(crate) fn count(&self, event: Event) -> usize {
            RECORDED.with(|r| {
                r.borrow().as_ref().map_or(0, |events| {
                    events.iter().filter(|(e, _)| *e == event).count()
                })
            })
        }
    }

    impl Drop for Recorder {
        fn drop(&mut self) {
            RECORDED.with(|r| *r.borrow_mut() = None);
        }
    }
}

/// A mapping started polling.
pub(crate) struct MappingStarted<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) source: &'a str,
    pub(crate) function: &'a str,
}

impl MappingStarted<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::MappingStarted, Some(self.uuid));
        tracing::info!(
            mapping = self.uuid,
            source = self.source,
            function = self.function,
            "mapping polling"
        );
    }
}

/// A mapping cannot work as configured; it keeps retrying every `retry_in`.
pub(crate) struct MappingErrored<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) error: &'a str,
    pub(crate) retry_in: Duration,
}

impl MappingErrored<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::MappingErrored, Some(self.uuid));
        tracing::warn!(
            mapping = self.uuid,
            error = self.error,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "mapping in error state"
        );
    }
}

/// A batch was invoked; `outcome` is a summary, never the payload. Counts the invocation,
/// its records (InvokedEventCount) and its duration.
pub(crate) struct BatchInvoked<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) metrics: &'a MappingMetrics,
    pub(crate) records: usize,
    pub(crate) payload_bytes: usize,
    pub(crate) elapsed: Duration,
    pub(crate) outcome: &'a str,
}

impl BatchInvoked<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::BatchInvoked, Some(self.uuid));
        MappingMetrics::add(&self.metrics.invocations, 1);
        MappingMetrics::add(&self.metrics.invoked, self.records);
        self.metrics.invocation_duration.observe(self.elapsed);
        tracing::debug!(
            mapping = self.uuid,
            records = self.records,
            payload_bytes = self.payload_bytes,
            elapsed_ms = self.elapsed.as_millis() as u64,
            outcome = self.outcome,
            "batch invoked"
        );
    }
}

/// An invocation failed and will be retried.
pub(crate) struct InvokeRetrying<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) outcome: &'a str,
    pub(crate) attempt: u32,
    pub(crate) delay: Duration,
}

impl InvokeRetrying<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::InvokeRetrying, Some(self.uuid));
        tracing::info!(
            mapping = self.uuid,
            outcome = self.outcome,
            attempt = self.attempt,
            delay_ms = self.delay.as_millis() as u64,
            "invocation will be retried"
        );
    }
}

/// A batch failed and its records return to the source (FailedInvokeEventCount).
pub(crate) struct BatchFailed<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) metrics: &'a MappingMetrics,
    pub(crate) records: usize,
    pub(crate) reason: &'a str,
}

impl BatchFailed<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::BatchFailed, Some(self.uuid));
        MappingMetrics::add(&self.metrics.failed_invoke, self.records);
        tracing::warn!(
            mapping = self.uuid,
            records = self.records,
            reason = self.reason,
            "batch failed; records return to the source"
        );
    }
}

/// Some entries of a DeleteMessageBatch/ChangeMessageVisibilityBatch call failed.
pub(crate) struct BatchEntriesFailed<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) operation: &'a str,
    pub(crate) failed: usize,
    pub(crate) first_error: &'a str,
}

impl BatchEntriesFailed<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::BatchEntriesFailed, Some(self.uuid));
        tracing::warn!(
            mapping = self.uuid,
            operation = self.operation,
            failed = self.failed,
            first_error = self.first_error,
            "batch call had failed entries"
        );
    }
}

/// A record is larger than one invocation may carry (counted as a failed record).
pub(crate) struct RecordTooLarge<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) metrics: &'a MappingMetrics,
    pub(crate) record_id: &'a str,
    pub(crate) bytes: usize,
}

impl RecordTooLarge<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::RecordTooLarge, Some(self.uuid));
        MappingMetrics::add(&self.metrics.failed_invoke, 1);
        tracing::warn!(
            mapping = self.uuid,
            record = self.record_id,
            bytes = self.bytes,
            "record exceeds the 6 MB invoke limit; left to the source's redrive"
        );
    }
}

/// A stream batch was given up (retries or record age exhausted): DroppedEventCount.
pub(crate) struct BatchGivenUp<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) metrics: &'a MappingMetrics,
    pub(crate) shard_id: &'a str,
    pub(crate) records: usize,
    pub(crate) condition: &'a str,
    pub(crate) first_sequence_number: &'a str,
    pub(crate) last_sequence_number: &'a str,
    pub(crate) destination: Option<&'a str>,
}

impl BatchGivenUp<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::BatchGivenUp, Some(self.uuid));
        MappingMetrics::add(&self.metrics.dropped, self.records);
        match self.destination {
            Some(destination) => tracing::warn!(
                mapping = self.uuid,
                shard = self.shard_id,
                records = self.records,
                condition = self.condition,
                first = self.first_sequence_number,
                last = self.last_sequence_number,
                destination,
                "batch given up; reported to the on-failure destination"
            ),
            None => tracing::error!(
                mapping = self.uuid,
                shard = self.shard_id,
                records = self.records,
                condition = self.condition,
                first = self.first_sequence_number,
                last = self.last_sequence_number,
                "batch given up and dropped: no on-failure destination is configured"
            ),
        }
    }
}

/// A failing stream batch was split in two.
pub(crate) struct BatchBisected<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) shard_id: &'a str,
    pub(crate) records: usize,
}

impl BatchBisected<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::BatchBisected, Some(self.uuid));
        tracing::info!(
            mapping = self.uuid,
            shard = self.shard_id,
            records = self.records,
            "function error; bisecting the batch"
        );
    }
}

/// A shard worker started, with where it starts.
pub(crate) struct ShardStarted<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) shard_id: &'a str,
    pub(crate) position: &'a str,
}

impl ShardStarted<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::ShardStarted, Some(self.uuid));
        tracing::info!(
            mapping = self.uuid,
            shard = self.shard_id,
            position = self.position,
            "shard reader started"
        );
    }
}

/// A shard was read to its end and checkpointed; its children may start.
pub(crate) struct ShardEnded<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) shard_id: &'a str,
    pub(crate) how: &'a str,
}

impl ShardEnded<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::ShardEnded, Some(self.uuid));
        tracing::info!(
            mapping = self.uuid,
            shard = self.shard_id,
            how = self.how,
            "shard finished"
        );
    }
}

/// A shard read failed.
pub(crate) struct ShardReadFailed<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) shard_id: &'a str,
    pub(crate) error: &'a str,
    pub(crate) action: &'a str,
}

impl ShardReadFailed<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::ShardReadFailed, Some(self.uuid));
        tracing::warn!(
            mapping = self.uuid,
            shard = self.shard_id,
            error = self.error,
            action = self.action,
            "shard read failed"
        );
    }
}

/// SIGHUP: a new configuration was loaded and applied to the running mappings.
pub(crate) struct ConfigReloaded<'a> {
    pub(crate) added: &'a [String],
    pub(crate) removed: &'a [String],
    pub(crate) changed: &'a [String],
    pub(crate) unchanged: usize,
}

impl ConfigReloaded<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::ConfigReloaded, None);
        tracing::info!(
            added = ?self.added,
            removed = ?self.removed,
            changed = ?self.changed,
            unchanged = self.unchanged,
            "config reloaded"
        );
    }
}

/// SIGHUP: the new configuration failed to load or validate; nothing changed.
pub(crate) struct ConfigReloadRejected<'a> {
    pub(crate) error: &'a str,
}

impl ConfigReloadRejected<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::ConfigReloadRejected, None);
        tracing::error!(
            error = self.error,
            "config reload rejected; the running mappings are unchanged"
        );
    }
}

/// SIGHUP: sections that are read only at start-up changed; they apply after a restart.
pub(crate) struct ConfigNeedsRestart<'a> {
    pub(crate) sections: &'a [&'static str],
}

impl ConfigNeedsRestart<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::ConfigNeedsRestart, None);
        tracing::warn!(
            sections = ?self.sections,
            "config sections changed that take effect only after a restart"
        );
    }
}

/// A mapping was stopped by a reload (removed or about to restart with new settings).
pub(crate) struct MappingStopped<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) reason: &'a str,
    pub(crate) drained: bool,
}

impl MappingStopped<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::MappingStopped, Some(self.uuid));
        tracing::info!(
            mapping = self.uuid,
            reason = self.reason,
            drained = self.drained,
            "mapping stopped"
        );
    }
}

/// Records were read from the source (PolledEventCount).
pub(crate) struct RecordsPolled<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) metrics: &'a MappingMetrics,
    pub(crate) records: usize,
}

impl RecordsPolled<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::RecordsPolled, Some(self.uuid));
        MappingMetrics::add(&self.metrics.polled, self.records);
        tracing::trace!(
            mapping = self.uuid,
            records = self.records,
            "records polled"
        );
    }
}

/// Records matched no filter and were acknowledged without an invocation
/// (FilteredOutEventCount).
pub(crate) struct RecordsFilteredOut<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) metrics: &'a MappingMetrics,
    pub(crate) records: usize,
}

impl RecordsFilteredOut<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::RecordsFilteredOut, Some(self.uuid));
        MappingMetrics::add(&self.metrics.filtered_out, self.records);
        tracing::debug!(
            mapping = self.uuid,
            records = self.records,
            "records filtered out"
        );
    }
}

/// Records of an invocation failed: reported in `batchItemFailures`, or in a failed
/// invocation that is retried (FailedInvokeEventCount).
pub(crate) struct RecordsFailed<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) metrics: &'a MappingMetrics,
    pub(crate) records: usize,
}

impl RecordsFailed<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::RecordsFailed, Some(self.uuid));
        MappingMetrics::add(&self.metrics.failed_invoke, self.records);
        tracing::debug!(
            mapping = self.uuid,
            records = self.records,
            "records failed"
        );
    }
}

/// SQS messages were deleted (DeletedEventCount); `refused` entries were not and return.
pub(crate) struct MessagesDeleted<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) metrics: &'a MappingMetrics,
    pub(crate) deleted: usize,
    pub(crate) refused: usize,
}

impl MessagesDeleted<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::MessagesDeleted, Some(self.uuid));
        MappingMetrics::add(&self.metrics.deleted, self.deleted);
        MappingMetrics::add(&self.metrics.delete_failed, self.refused);
        tracing::debug!(
            mapping = self.uuid,
            deleted = self.deleted,
            refused = self.refused,
            "messages deleted"
        );
    }
}

/// A DeleteMessageBatch call failed as a whole; the messages return after their
/// visibility timeout.
pub(crate) struct DeleteFailed<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) metrics: &'a MappingMetrics,
    pub(crate) records: usize,
    pub(crate) error: &'a str,
}

impl DeleteFailed<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::DeleteFailed, Some(self.uuid));
        MappingMetrics::add(&self.metrics.delete_failed, self.records);
        tracing::warn!(
            mapping = self.uuid,
            error = self.error,
            records = self.records,
            "delete failed; messages will be redelivered"
        );
    }
}

/// SQS messages received but not processed were made visible again (shutdown, or a FIFO
/// group held elsewhere).
pub(crate) struct MessagesReleased<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) metrics: &'a MappingMetrics,
    pub(crate) released: usize,
}

impl MessagesReleased<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::MessagesReleased, Some(self.uuid));
        MappingMetrics::add(&self.metrics.released, self.released);
        tracing::info!(
            mapping = self.uuid,
            records = self.released,
            "released unprocessed messages"
        );
    }
}

/// A given-up batch reached its on-failure destination
/// (OnFailureDestinationDeliveredEventCount).
pub(crate) struct DestinationDelivered<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) metrics: &'a MappingMetrics,
    pub(crate) records: usize,
    pub(crate) destination: &'a str,
}

impl DestinationDelivered<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::DestinationDelivered, Some(self.uuid));
        MappingMetrics::add(&self.metrics.on_failure_delivered, self.records);
        tracing::info!(
            mapping = self.uuid,
            records = self.records,
            destination = self.destination,
            "batch delivered to the on-failure destination"
        );
    }
}
