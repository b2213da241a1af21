//! Event sources: where records come from and how they are acknowledged.
//!
//! - [`sqs`]: long-polled queues; a message is acknowledged by deleting it.

pub mod sqs;
