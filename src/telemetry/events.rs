//! Named log events. Each is a struct with an `emit` method, so the set of things esmd logs is
//! visible in one place and no call site can slip a payload or credential into a log line.

use std::time::Duration;

/// A mapping started polling.
pub(crate) struct MappingStarted<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) source: &'a str,
    pub(crate) function: &'a str,
}

impl MappingStarted<'_> {
    pub(crate) fn emit(&self) {
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
        tracing::warn!(
            mapping = self.uuid,
            error = self.error,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "mapping in error state"
        );
    }
}

/// A batch was invoked; `outcome` is a summary, never the payload.
pub(crate) struct BatchInvoked<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) records: usize,
    pub(crate) payload_bytes: usize,
    pub(crate) elapsed: Duration,
    pub(crate) outcome: &'a str,
}

impl BatchInvoked<'_> {
    pub(crate) fn emit(&self) {
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
        tracing::info!(
            mapping = self.uuid,
            outcome = self.outcome,
            attempt = self.attempt,
            delay_ms = self.delay.as_millis() as u64,
            "invocation will be retried"
        );
    }
}

/// A batch failed and its records return to the source.
pub(crate) struct BatchFailed<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) records: usize,
    pub(crate) reason: &'a str,
}

impl BatchFailed<'_> {
    pub(crate) fn emit(&self) {
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
        tracing::warn!(
            mapping = self.uuid,
            operation = self.operation,
            failed = self.failed,
            first_error = self.first_error,
            "batch call had failed entries"
        );
    }
}

/// A record is larger than one invocation may carry.
pub(crate) struct RecordTooLarge<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) record_id: &'a str,
    pub(crate) bytes: usize,
}

impl RecordTooLarge<'_> {
    pub(crate) fn emit(&self) {
        tracing::warn!(
            mapping = self.uuid,
            record = self.record_id,
            bytes = self.bytes,
            "record exceeds the 6 MB invoke limit; left to the source's redrive"
        );
    }
}

/// A stream batch was given up (retries or record age exhausted).
pub(crate) struct BatchGivenUp<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) shard_id: &'a str,
    pub(crate) records: usize,
    pub(crate) condition: &'a str,
    pub(crate) first_sequence_number: &'a str,
    pub(crate) last_sequence_number: &'a str,
    pub(crate) destination: Option<&'a str>,
}

impl BatchGivenUp<'_> {
    pub(crate) fn emit(&self) {
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
        tracing::info!(
            mapping = self.uuid,
            reason = self.reason,
            drained = self.drained,
            "mapping stopped"
        );
    }
}
