//! What one run saw, written as JSON next to esmd's log so that the checker can be run on it
//! again (`esmd-chaos check FILE`).

use serde::{Deserialize, Serialize};

/// Everything the invariant checker needs from one run. Times are milliseconds since the
/// run started.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunLog {
    pub seed: u64,
    pub scenario: String,
    /// Whether order per key is promised (FIFO message groups, stream partition keys).
    pub ordered: bool,
    /// Records in the order they were produced.
    pub produced: Vec<Produced>,
    /// Invocations in the order the function received them.
    pub invocations: Vec<Invocation>,
    /// What reached the failure destination (an SQS DLQ, or a stream's on-failure queue).
    pub destination: Vec<Destined>,
    /// Checkpoint readings, in the order they were taken.
    pub checkpoints: Vec<CheckpointSample>,
    /// `(parent, child)` shard pairs: every parent record comes before any child record.
    pub lineage: Vec<(String, String)>,
    /// SQS: what the queue handed out in each ReceiveMessage answer (seen at the proxy), to
    /// tell a queue that broke FIFO order from esmd breaking it.
    #[serde(default)]
    pub handouts: Vec<Handout>,
    /// SQS: the queue's visibility timeout, in milliseconds (0 for streams).
    #[serde(default)]
    pub visibility_ms: u64,
    /// Kills, pauses, graceful restarts and lost answers, with when they happened.
    pub disruptions: Vec<Disruption>,
    /// How each esmd process ended.
    pub exits: Vec<Exit>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Produced {
    pub id: String,
    /// The message group or partition key.
    pub key: String,
    pub at_ms: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Invocation {
    pub at_ms: u64,
    pub done_ms: u64,
    pub records: Vec<Delivered>,
    /// The records the function answered as processed.
    pub acked: Vec<String>,
    /// The function answered, but the proxy dropped the answer on its way to esmd.
    pub answer_lost: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Delivered {
    pub id: String,
    pub shard: Option<String>,
    pub sequence: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Destined {
    /// An SQS message in the DLQ, by the id in its body.
    Id(String),
    /// A stream's on-failure record: a shard and an inclusive range of sequence numbers.
    Range {
        shard: String,
        start: String,
        end: String,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointSample {
    pub at_ms: u64,
    /// After which step the store was read (for the report).
    pub step: String,
    pub shard: String,
    pub sequence: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Disruption {
    /// `kill`, `stop`, `term`, or `sqs:<fault>` (a proxy fault on an SQS call).
    pub kind: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// Streams: the store's checkpoints while no esmd ran (after a kill or a SIGTERM exit,
    /// before the restart), as `(shard, sequence)`.
    #[serde(default)]
    pub checkpoints: Vec<(String, Option<String>)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Exit {
    /// `sigterm` (must exit 0) or `kill` (killed by SIGKILL).
    pub after: String,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Lines of the process's log with `panicked`.
    pub panics: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Handout {
    pub at_ms: u64,
    pub ids: Vec<String>,
}
