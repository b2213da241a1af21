//! Per-mapping counters and their Prometheus text rendering.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::MappingStatus;

/// Counters mirroring AWS's ESM metrics, per mapping.
#[derive(Debug, Default)]
pub struct MappingMetrics {
    /// PolledEventCount: records read from the source.
    pub polled: AtomicU64,
    /// FilteredOutEventCount: records that matched no filter.
    pub filtered_out: AtomicU64,
    /// InvokedEventCount: records sent to the function (each attempt counts).
    pub invoked: AtomicU64,
    /// FailedInvokeEventCount: records in invocations that did not succeed.
    pub failed_invoke: AtomicU64,
    /// DroppedEventCount: records given up on (streams).
    pub dropped: AtomicU64,
    /// DeletedEventCount: SQS messages deleted after success or filtering.
    pub deleted: AtomicU64,
    /// SQS messages whose delete failed (they will be redelivered).
    pub delete_failed: AtomicU64,
    /// SQS messages made visible again without being processed (shutdown).
    pub released: AtomicU64,
    /// OnFailureDestinationDeliveredEventCount.
    pub on_failure_delivered: AtomicU64,
    /// Invocations made.
    pub invocations: AtomicU64,
    /// Batches currently being invoked.
    pub in_flight_batches: AtomicI64,
    /// IteratorAge (streams): how far behind the tip the slowest shard is, in milliseconds.
    pub iterator_age_ms: AtomicI64,
}

impl MappingMetrics {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn counters(&self) -> [(&'static str, &'static str, &AtomicU64); 10] {
        [
            ("esmd_polled_events_total", "Records read from the event source (AWS PolledEventCount).", &self.polled),
            ("esmd_filtered_out_events_total", "Records that matched no filter (AWS FilteredOutEventCount).", &self.filtered_out),
            ("esmd_invoked_events_total", "Records sent to the function, per attempt (AWS InvokedEventCount).", &self.invoked),
            ("esmd_failed_invoke_events_total", "Records in invocations that failed (AWS FailedInvokeEventCount).", &self.failed_invoke),
            ("esmd_dropped_events_total", "Records given up on (AWS DroppedEventCount).", &self.dropped),
            ("esmd_deleted_events_total", "SQS messages deleted (AWS DeletedEventCount).", &self.deleted),
            ("esmd_delete_failed_events_total", "SQS messages whose delete failed and will be redelivered.", &self.delete_failed),
            ("esmd_released_events_total", "SQS messages made visible again unprocessed (shutdown).", &self.released),
            ("esmd_on_failure_destination_delivered_events_total", "Records reported to the on-failure destination (AWS OnFailureDestinationDeliveredEventCount).", &self.on_failure_delivered),
            ("esmd_invocations_total", "Function invocations made.", &self.invocations),
        ]
    }

    pub fn snapshot(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (name, _, counter) in self.counters() {
            let short = name.trim_start_matches("esmd_").trim_end_matches("_total");
            map.insert(short.into(), counter.load(Ordering::Relaxed).into());
        }
        map.insert(
            "in_flight_batches".into(),
            self.in_flight_batches.load(Ordering::Relaxed).into(),
        );
        map.insert(
            "iterator_age_ms".into(),
            self.iterator_age_ms.load(Ordering::Relaxed).into(),
        );
        serde_json::Value::Object(map)
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every mapping's metrics in the Prometheus text exposition format.
pub fn render_prometheus(mappings: &[std::sync::Arc<MappingStatus>]) -> String {
    let mut out = String::new();
    let labels = |m: &MappingStatus| {
        format!(
            "mapping=\"{}\",function=\"{}\",source=\"{}\"",
            escape(&m.uuid),
            escape(&m.function_name),
            m.source_kind
        )
    };
    let names = MappingMetrics::default()
        .counters()
        .map(|(name, help, _)| (name, help));
    for (i, (name, help)) in names.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for m in mappings {
            let value = m.metrics.counters()[i].2.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{{}}} {value}", labels(m));
        }
    }
    let _ = writeln!(
        out,
        "# HELP esmd_in_flight_batches Batches being invoked now.\n# TYPE esmd_in_flight_batches gauge"
    );
    for m in mappings {
        let _ = writeln!(
            out,
            "esmd_in_flight_batches{{{}}} {}",
            labels(m),
            m.metrics.in_flight_batches.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP esmd_iterator_age_milliseconds Age of the last record read, for the furthest-behind shard (AWS IteratorAge).\n# TYPE esmd_iterator_age_milliseconds gauge"
    );
    for m in mappings.iter().filter(|m| m.source_kind != "sqs") {
        let _ = writeln!(
            out,
            "esmd_iterator_age_milliseconds{{{}}} {}",
            labels(m),
            m.metrics.iterator_age_ms.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP esmd_mapping_up 1 while the mapping is polling, 0 otherwise.\n# TYPE esmd_mapping_up gauge"
    );
    for m in mappings {
        let _ = writeln!(
            out,
            "esmd_mapping_up{{{}}} {}",
            labels(m),
            u8::from(m.is_polling())
        );
    }
    out
}
