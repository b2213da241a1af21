//! Event sources: where records come from and how they are acknowledged.
//!
//! - [`sqs`]: long-polled queues; a message is acknowledged by deleting it.
//! - [`stream`]: the shard machinery shared by [`kinesis`] and [`dynamodb`]: discovery and
//!   lineage, per-shard readers, lanes for `parallelization_factor`, and checkpoints.

pub(crate) mod build;
pub(crate) mod dynamodb;
pub(crate) mod kinesis;
pub(crate) mod sqs;
pub(crate) mod stream;

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// Cancellation for one mapping: `stop_receiving` starts the drain; `abandon` ends in-flight
/// invocations once the shutdown deadline has passed; `fatal` stops the whole process.
#[derive(Clone, Debug, Default)]
pub(crate) struct Shutdown {
    pub(crate) stop_receiving: CancellationToken,
    pub(crate) abandon: CancellationToken,
    pub(crate) fatal: Fatal,
}

/// How a mapping reports a condition that makes safe progress impossible for the whole
/// process ([`crate::action::ErrorAction::Fatal`], e.g. an unusable checkpoint store): the
/// first reason is kept and the daemon's root token is cancelled, so every mapping drains and
/// `esmd run` then exits non-zero with that reason.
#[derive(Clone, Debug, Default)]
pub(crate) struct Fatal {
    reason: Arc<Mutex<Option<String>>>,
    root: CancellationToken,
}

impl Fatal {
    /// A fatal signal that cancels `root` when raised.
    pub(crate) fn new(root: CancellationToken) -> Self {
        Fatal {
            reason: Arc::default(),
            root,
        }
    }

    pub(crate) fn raise(&self, reason: String) {
        let mut stored = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if stored.is_none() {
            tracing::error!(reason = %reason, "fatal: draining every mapping and exiting");
            *stored = Some(reason);
        }
        self.root.cancel();
    }

    /// The first reason raised, if any.
    pub(crate) fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
