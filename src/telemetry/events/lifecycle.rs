//! Lifecycle events: mappings starting, erring and stopping; shards starting, ending and
//! failing to read; configuration reloads; credentials that could not be refreshed.

use std::time::Duration;

use super::{counted, Event};
use crate::telemetry::MappingMetrics;

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

/// An SQS ReceiveMessage failed and will be made again after a pause. Messages SQS handed
/// out in a response that never arrived return after the visibility timeout.
pub(crate) struct ReceiveFailed<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) error: &'a str,
    pub(crate) retry_in: Duration,
}

impl ReceiveFailed<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::ReceiveFailed, Some(self.uuid));
        tracing::warn!(
            mapping = self.uuid,
            error = self.error,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "SQS receive failed; retrying"
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

/// Another instance took a shard's lease: this one stops reading and writing the shard.
pub(crate) struct LeaseLost<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) metrics: &'a MappingMetrics,
    pub(crate) shard_id: &'a str,
    pub(crate) owner: &'a str,
}

impl LeaseLost<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::LeaseLost, Some(self.uuid));
        MappingMetrics::add(&self.metrics.leases_lost, 1);
        tracing::warn!(
            mapping = self.uuid,
            shard = self.shard_id,
            owner = self.owner,
            "lease lost to another instance; stopping the shard"
        );
    }
}

/// This instance took a shard from a more loaded instance (lease balancing).
pub(crate) struct LeaseStolen<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) metrics: &'a MappingMetrics,
    pub(crate) shard_id: &'a str,
}

impl LeaseStolen<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::LeaseStolen, Some(self.uuid));
        MappingMetrics::add(&self.metrics.leases_stolen, 1);
        tracing::info!(
            mapping = self.uuid,
            shard = self.shard_id,
            "took a shard from a more loaded instance"
        );
    }
}

/// This instance took a free or expired shard lease.
pub(crate) struct LeaseTaken<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) metrics: &'a MappingMetrics,
    pub(crate) shard_id: &'a str,
    pub(crate) counter: u64,
}

impl LeaseTaken<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::LeaseTaken, Some(self.uuid));
        MappingMetrics::add(&self.metrics.leases_taken, 1);
        tracing::debug!(
            mapping = self.uuid,
            shard = self.shard_id,
            counter = self.counter,
            "lease taken"
        );
    }
}

/// This instance gave a shard lease back (shutdown or reload), for another to take at once.
pub(crate) struct LeaseReleased<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) metrics: &'a MappingMetrics,
    pub(crate) shard_id: &'a str,
}

impl LeaseReleased<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::LeaseReleased, Some(self.uuid));
        MappingMetrics::add(&self.metrics.leases_released, 1);
        tracing::debug!(mapping = self.uuid, shard = self.shard_id, "lease released");
    }
}

/// The Lambda API created, updated or deleted a mapping (applied shortly after).
pub(crate) struct ApiMappingChanged<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) operation: &'static str,
    pub(crate) state: &'a str,
}

impl ApiMappingChanged<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::ApiMappingChanged, Some(self.uuid));
        tracing::info!(
            mapping = self.uuid,
            operation = self.operation,
            state = self.state,
            "mapping changed through the Lambda API"
        );
    }
}

/// A mapping stored by the Lambda API no longer passes validation (or clashes with the
/// config file) at start-up: it stays stored but does not run.
pub(crate) struct StoredMappingRejected<'a> {
    pub(crate) uuid: &'a str,
    pub(crate) error: &'a str,
}

impl StoredMappingRejected<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::StoredMappingRejected, Some(self.uuid));
        tracing::error!(
            mapping = self.uuid,
            error = self.error,
            "a mapping created through the Lambda API cannot run; delete it and create it again"
        );
    }
}

/// Fetching fresh credentials failed while the current ones are still valid for a while: the
/// lean client keeps signing with them and tries again after `retry_in`.
pub(crate) struct CredentialsRefreshFailed<'a> {
    pub(crate) error: &'a str,
    pub(crate) expires_in: Duration,
    pub(crate) retry_in: Duration,
}

impl CredentialsRefreshFailed<'_> {
    pub(crate) fn emit(&self) {
        counted(Event::CredentialsRefreshFailed, None);
        tracing::warn!(
            error = self.error,
            expires_in_s = self.expires_in.as_secs(),
            retry_in_ms = self.retry_in.as_millis() as u64,
            "refreshing credentials failed; signing with the current ones until they expire"
        );
    }
}
