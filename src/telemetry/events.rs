//! Named log events. Each is a struct with an `emit` method, so the set of things esmd logs is
//! visible in one place and no call site can slip a payload or credential into a log line.

use std::time::Duration;

/// A mapping started polling.
pub struct MappingStarted<'a> {
    pub uuid: &'a str,
    pub source: &'a str,
    pub function: &'a str,
}

impl MappingStarted<'_> {
    pub fn emit(&self) {
        tracing::info!(
            mapping = self.uuid,
            source = self.source,
            function = self.function,
            "mapping polling"
        );
    }
}

/// A mapping cannot work as configured; it keeps retrying every `retry_in`.
pub struct MappingErrored<'a> {
    pub uuid: &'a str,
    pub error: &'a str,
    pub retry_in: Duration,
}

impl MappingErrored<'_> {
    pub fn emit(&self) {
        tracing::warn!(
            mapping = self.uuid,
            error = self.error,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "mapping in error state"
        );
    }
}

/// A batch was invoked; `outcome` is a summary, never the payload.
pub struct BatchInvoked<'a> {
    pub uuid: &'a str,
    pub records: usize,
    pub payload_bytes: usize,
    pub elapsed: Duration,
    pub outcome: &'a str,
}

impl BatchInvoked<'_> {
    pub fn emit(&self) {
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
pub struct InvokeRetrying<'a> {
    pub uuid: &'a str,
    pub outcome: &'a str,
    pub attempt: u32,
    pub delay: Duration,
}

impl InvokeRetrying<'_> {
    pub fn emit(&self) {
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
pub struct BatchFailed<'a> {
    pub uuid: &'a str,
    pub records: usize,
    pub reason: &'a str,
}

impl BatchFailed<'_> {
    pub fn emit(&self) {
        tracing::warn!(
            mapping = self.uuid,
            records = self.records,
            reason = self.reason,
            "batch failed; records return to the source"
        );
    }
}

/// Some entries of a DeleteMessageBatch/ChangeMessageVisibilityBatch call failed.
pub struct BatchEntriesFailed<'a> {
    pub uuid: &'a str,
    pub operation: &'a str,
    pub failed: usize,
    pub first_error: &'a str,
}

impl BatchEntriesFailed<'_> {
    pub fn emit(&self) {
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
pub struct RecordTooLarge<'a> {
    pub uuid: &'a str,
    pub record_id: &'a str,
    pub bytes: usize,
}

impl RecordTooLarge<'_> {
    pub fn emit(&self) {
        tracing::warn!(
            mapping = self.uuid,
            record = self.record_id,
            bytes = self.bytes,
            "record exceeds the 6 MB invoke limit; left to the source's redrive"
        );
    }
}

/// A stream batch was given up (retries or record age exhausted).
pub struct BatchGivenUp<'a> {
    pub uuid: &'a str,
    pub shard_id: &'a str,
    pub records: usize,
    pub condition: &'a str,
    pub first_sequence_number: &'a str,
    pub last_sequence_number: &'a str,
    pub destination: Option<&'a str>,
}

impl BatchGivenUp<'_> {
    pub fn emit(&self) {
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
pub struct BatchBisected<'a> {
    pub uuid: &'a str,
    pub shard_id: &'a str,
    pub records: usize,
}

impl BatchBisected<'_> {
    pub fn emit(&self) {
        tracing::info!(
            mapping = self.uuid,
            shard = self.shard_id,
            records = self.records,
            "function error; bisecting the batch"
        );
    }
}

/// A shard worker started, with where it starts.
pub struct ShardStarted<'a> {
    pub uuid: &'a str,
    pub shard_id: &'a str,
    pub position: &'a str,
}

impl ShardStarted<'_> {
    pub fn emit(&self) {
        tracing::info!(
            mapping = self.uuid,
            shard = self.shard_id,
            position = self.position,
            "shard reader started"
        );
    }
}

/// A shard was read to its end and checkpointed; its children may start.
pub struct ShardEnded<'a> {
    pub uuid: &'a str,
    pub shard_id: &'a str,
    pub how: &'a str,
}

impl ShardEnded<'_> {
    pub fn emit(&self) {
        tracing::info!(
            mapping = self.uuid,
            shard = self.shard_id,
            how = self.how,
            "shard finished"
        );
    }
}

/// A shard read failed.
pub struct ShardReadFailed<'a> {
    pub uuid: &'a str,
    pub shard_id: &'a str,
    pub error: &'a str,
    pub action: &'a str,
}

impl ShardReadFailed<'_> {
    pub fn emit(&self) {
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
pub struct ConfigReloaded<'a> {
    pub added: &'a [String],
    pub removed: &'a [String],
    pub changed: &'a [String],
    pub unchanged: usize,
}

impl ConfigReloaded<'_> {
    pub fn emit(&self) {
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
pub struct ConfigReloadRejected<'a> {
    pub error: &'a str,
}

impl ConfigReloadRejected<'_> {
    pub fn emit(&self) {
        tracing::error!(
            error = self.error,
            "config reload rejected; the running mappings are unchanged"
        );
    }
}

/// SIGHUP: sections that are read only at start-up changed; they apply after a restart.
pub struct ConfigNeedsRestart<'a> {
    pub sections: &'a [&'static str],
}

impl ConfigNeedsRestart<'_> {
    pub fn emit(&self) {
        tracing::warn!(
            sections = ?self.sections,
            "config sections changed that take effect only after a restart"
        );
    }
}

/// A mapping was stopped by a reload (removed or about to restart with new settings).
pub struct MappingStopped<'a> {
    pub uuid: &'a str,
    pub reason: &'a str,
    pub drained: bool,
}

impl MappingStopped<'_> {
    pub fn emit(&self) {
        tracing::info!(
            mapping = self.uuid,
            reason = self.reason,
            drained = self.drained,
            "mapping stopped"
        );
    }
}
