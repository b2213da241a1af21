//! Record and batch events: what was polled, filtered, invoked, failed, deleted, released,
//! given up or delivered. Each bumps the per-mapping counter AWS names beside it.

use std::time::Duration;

use super::{counted, Event};
use crate::telemetry::MappingMetrics;

/// A batch was invoked; `outcome` is a summary, never the payload. Counts the invocation,
/// its records (InvokedEventCount) and its duration.
pub(crate) struct BatchInvoked<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) metrics: &'a MappingMetrics,
    /// The function side answered 429.
    pub(crate) throttled: bool,
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
        if self.throttled {
            MappingMetrics::add(&self.metrics.throttled, 1);
        }
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
