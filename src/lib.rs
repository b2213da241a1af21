//! esmd runs AWS Lambda event source mappings anywhere: it polls SQS queues, Kinesis Data
//! Streams and DynamoDB Streams, batches records, invokes functions synchronously through the
//! Lambda Invoke API, and acknowledges records with AWS's exact semantics.
//!
//! # Data flow
//!
//! ```text
//! config ──► daemon ──► source ──► filter ──► batch ──► payload ──► invoke (Invoker)
//!                  (sqs | stream:                                         │
//!                   kinesis, dynamodb)                                    ▼
//!                         ▲                                            failure
//!                         └── acknowledge: delete / keep (SQS),  ◄──── (retry, bisect,
//!                             checkpoint + destination (streams))       destination)
//! ```
//!
//! - [`config`]: the TOML contract (Terraform's field names) and AWS's validation rules.
//! - [`aws`]: one AWS configuration load; endpoints from `AWS_ENDPOINT_URL[_<SERVICE>]`;
//!   with `[aws] client = "lean"`, esmd's own signed client for the per-batch calls.
//! - [`source`]: event sources behind narrow traits. [`source::sqs`] polls queues;
//!   [`source::stream`] is the shard machinery (discovery and lineage, per-shard readers,
//!   lanes for `parallelization_factor`, the stream failure policy) that
//!   [`source::kinesis`] and [`source::dynamodb`] plug their clients into.
//! - [`checkpoint`]: the [`checkpoint::CheckpointStore`] trait (lease-shaped, so a shared
//!   DynamoDB lease table can implement it), the embedded SQLite store, numeric sequence
//!   numbers, and the watermark that keeps checkpoints behind unsettled records.
//! - [`batch`]: count, byte (6 MB) and window limits; records are serialised once.
//! - [`filter`]: Lambda event-filtering patterns, compiled once.
//! - [`payload`]: the event JSON AWS sends, byte for byte, and batch-response parsing.
//! - [`invoke`]: the [`invoke::Invoker`] trait and the Lambda implementation.
//! - [`failure`]: error → action classification, backoff, the SQS disposition, and
//!   on-failure destination records.
//! - [`telemetry`] and [`http`]: state, metrics and the admin endpoints.
//! - [`api`]: the Lambda event-source-mapping API (`[lambda_api]`): create, change and
//!   delete mappings with aws-cli or an SDK; other Lambda calls are forwarded.
//! - [`daemon`]: wiring, the ordered drain on shutdown, and applying changes (SIGHUP, API).
//!
//! # Delivery guarantee
//!
//! At least once. A record is acknowledged only after the function confirmed it, it matched
//! no filter, or (streams) it was given up and reported to the on-failure destination.
//! Anything else returns to the source: SQS messages through their visibility timeout, so the
//! queue's redrive policy still decides when a message goes to its dead-letter queue; stream
//! records because the shard's checkpoint has not passed them.

pub(crate) mod action;
pub(crate) mod api;
pub(crate) mod aws;
pub(crate) mod batch;
pub(crate) mod checkpoint;
pub mod cli;
pub(crate) mod config;
pub(crate) mod daemon;
pub(crate) mod failure;
pub(crate) mod filter;
pub(crate) mod http;
pub(crate) mod invoke;
pub(crate) mod memory;
pub(crate) mod payload;
pub(crate) mod retry;
pub(crate) mod source;
pub(crate) mod telemetry;

/// The system allocator, counted on request (`ESMD_COUNT_ALLOCATIONS=1`, for the benchmark).
#[global_allocator]
static ALLOCATOR: telemetry::allocations::CountingAllocator =
    telemetry::allocations::CountingAllocator;
