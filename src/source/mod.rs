//! Event sources: where records come from and how they are acknowledged.
//!
//! - [`sqs`]: long-polled queues; a message is acknowledged by deleting it.
//! - [`stream`]: the shard machinery shared by [`kinesis`] and [`dynamodb`]: discovery and
//!   lineage, per-shard readers, lanes for `parallelization_factor`, and checkpoints.

pub mod dynamodb;
pub mod kinesis;
pub mod sqs;
pub mod stream;

use tokio_util::sync::CancellationToken;

/// Cancellation for one mapping: `stop_receiving` starts the drain; `abandon` ends in-flight
/// invocations once the shutdown deadline has passed.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    pub stop_receiving: CancellationToken,
    pub abandon: CancellationToken,
}
