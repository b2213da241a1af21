//! esmd runs AWS Lambda event source mappings anywhere: it polls SQS queues (and, later,
//! Kinesis and DynamoDB streams), batches records, invokes functions synchronously through the
//! Lambda Invoke API, and acknowledges records with AWS's exact semantics.
//!
//! # Data flow
//!
//! ```text
//! config ──► daemon ──► source (sqs) ──► batch ──► filter ──► payload ──► target (Invoker)
//!                                 ▲                                           │
//!                                 └──── acknowledge (delete / keep) ◄── failure ◄┘
//! ```
//!
//! - [`config`]: the TOML contract (Terraform's field names) and AWS's validation rules.
//! - [`aws`]: one AWS configuration load; endpoints from `AWS_ENDPOINT_URL[_<SERVICE>]`.
//! - [`source`]: event sources behind narrow traits; [`source::sqs`] polls queues.
//! - [`batch`]: count, byte (6 MB) and window limits; records are serialised once.
//! - [`filter`]: Lambda event-filtering patterns, compiled once.
//! - [`payload`]: the event JSON AWS sends, byte for byte, and batch-response parsing.
//! - [`target`]: the [`target::Invoker`] trait and the Lambda implementation.
//! - [`failure`]: error → action classification, backoff, per-source disposition.
//! - [`telemetry`] and [`http`]: state, metrics and the admin endpoints.
//! - [`daemon`]: wiring, and the ordered drain on shutdown.
//!
//! # Delivery guarantee
//!
//! At least once. A record is acknowledged (an SQS message deleted) only after the function
//! confirmed it or it matched no filter. Anything else returns to the source: SQS messages
//! through their visibility timeout, so the queue's redrive policy still decides when a message
//! goes to its dead-letter queue.

pub mod aws;
pub mod batch;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod failure;
pub mod filter;
pub mod http;
pub mod payload;
pub mod source;
pub mod target;
pub mod telemetry;
