//! What every shard worker of one mapping shares: the stream client, the store, the
//! processor, filters, batch limits, lanes, pacing and the mapping's status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::api::{ReadPacing, StreamApi};
use super::process::Processor;
use crate::batch::BatchLimits;
use crate::checkpoint::{CheckpointStore, SequenceNumber};
use crate::filter::FilterSet;
use crate::source::Shutdown;
use crate::telemetry::MappingStatus;

/// What every shard of one mapping shares.
pub(crate) struct ShardContext {
    pub(crate) uuid: String,
    pub(crate) api: Arc<dyn StreamApi>,
    pub(crate) store: Arc<dyn CheckpointStore>,
    pub(crate) processor: Arc<Processor>,
    pub(crate) filters: Arc<FilterSet>,
    pub(crate) filter_view: fn(&str) -> serde_json::Value,
    pub(crate) limits: BatchLimits,
    pub(crate) lanes: usize,
    /// `tumbling_window_in_seconds`: a windowed mapping runs one lane per shard.
    pub(crate) tumbling_window: Option<std::time::Duration>,
    pub(crate) pacing: ReadPacing,
    pub(crate) shutdown: Shutdown,
    pub(crate) status: Arc<MappingStatus>,
    /// Ending sequence numbers of closed shards, refreshed by every listing: a shard may be
    /// closed (split or merged) while it is being read.
    pub(crate) closed: Arc<Mutex<HashMap<String, SequenceNumber>>>,
}
