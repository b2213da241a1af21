//! Per-mapping counters and their Prometheus text rendering.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::MappingStatus;

/// Counters mirroring AWS's ESM metrics, per mapping.
#[derive(Debug)]
pub(crate) struct MappingMetrics {
    /// PolledEventCount: records read from the source.
    pub(crate) polled: AtomicU64,
    /// FilteredOutEventCount: records that matched no filter.
    pub(crate) filtered_out: AtomicU64,
    /// InvokedEventCount: records sent to the function (each attempt counts).
    pub(crate) invoked: AtomicU64,
    /// FailedInvokeEventCount: records in invocations that did not succeed.
    pub(crate) failed_invoke: AtomicU64,
    /// DroppedEventCount: records given up on (streams).
    pub(crate) dropped: AtomicU64,
    /// DeletedEventCount: SQS messages deleted after success or filtering.
    pub(crate) deleted: AtomicU64,
    /// SQS messages whose delete failed (they will be redelivered).
    pub(crate) delete_failed: AtomicU64,
    /// SQS messages made visible again without being processed (shutdown).
    pub(crate) released: AtomicU64,
    /// OnFailureDestinationDeliveredEventCount.
    pub(crate) on_failure_delivered: AtomicU64,
    /// Invocations made.
    pub(crate) invocations: AtomicU64,
    /// Invocations the function side throttled (HTTP 429); retried, not counted as failures.
    pub(crate) throttled: AtomicU64,
    /// SQS: pollers running now (the scaler's count).
    pub(crate) sqs_pollers: AtomicI64,
    /// Streams: shard leases this instance holds now.
    pub(crate) leases_held: AtomicI64,
    /// Streams: leases taken (free or expired), stolen (balancing), lost (taken by another
    /// instance) and released (shutdown, reload).
    pub(crate) leases_taken: AtomicU64,
    pub(crate) leases_stolen: AtomicU64,
    pub(crate) leases_lost: AtomicU64,
    pub(crate) leases_released: AtomicU64,
    /// Batches currently being invoked.
    pub(crate) in_flight_batches: AtomicI64,
    /// IteratorAge (streams): how far behind the tip the slowest shard is, in milliseconds.
    pub(crate) iterator_age_ms: AtomicI64,
    /// SQS: ApproximateNumberOfMessages (visible backlog), sampled; -1 until known.
    pub(crate) sqs_backlog: AtomicI64,
    /// SQS: ApproximateNumberOfMessagesNotVisible (received by anyone, not yet deleted).
    pub(crate) sqs_not_visible: AtomicI64,
    /// How long invocations took, from request to response.
    pub(crate) invocation_duration: Histogram,
}

/// A batch being invoked: `esmd_in_flight_batches` counts it until this is dropped.
pub(crate) struct InFlight<'a>(&'a AtomicI64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Upper bounds (seconds) of the invocation-duration buckets: 5 ms to Lambda's 15 minutes.
pub(crate) const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 900.0,
];

/// A fixed-bucket, lock-free histogram in the Prometheus shape.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is `+Inf`.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, elapsed: std::time::Duration) {
        let secs = elapsed.as_secs_f64();
        let slot = DURATION_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Records `elapsed` and hands it back, for use inline.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Cumulative counts per bucket bound, ending with `+Inf`.
    fn cumulative(&self) -> Vec<(String, u64)> {
        let mut total = 0;
        let mut out = Vec::with_capacity(DURATION_BUCKETS.len() + 1);
        for (i, slot) in self.buckets.iter().enumerate() {
            total += slot.load(Ordering::Relaxed);
            let le = DURATION_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            out.push((le, total));
        }
        out
    }
}

impl Default for MappingMetrics {
    fn default() -> Self {
        MappingMetrics {
            polled: Default::default(),
            filtered_out: Default::default(),
            invoked: Default::default(),
            failed_invoke: Default::default(),
            dropped: Default::default(),
            deleted: Default::default(),
            delete_failed: Default::default(),
            released: Default::default(),
            on_failure_delivered: Default::default(),
            invocations: Default::default(),
            throttled: Default::default(),
            sqs_pollers: Default::default(),
            leases_held: Default::default(),
            leases_taken: Default::default(),
            leases_stolen: Default::default(),
            leases_lost: Default::default(),
            leases_released: Default::default(),
            in_flight_batches: Default::default(),
            iterator_age_ms: Default::default(),
            sqs_backlog: AtomicI64::new(-1),
            sqs_not_visible: AtomicI64::new(-1),
            invocation_duration: Default::default(),
        }
    }
}

impl MappingMetrics {
    /// Counts a batch in flight until the guard is dropped.
    pub(crate) fn in_flight(&self) -> InFlight<'_> {
        self.in_flight_batches.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight_batches)
    }

    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn counters(&self) -> [(&'static str, &'static str, &AtomicU64); 15] {
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
            ("esmd_throttled_invocations_total", "Invocations the function side throttled (HTTP 429); retried, not failures.", &self.throttled),
            ("esmd_leases_taken_total", "Shard leases taken (free or expired).", &self.leases_taken),
            ("esmd_leases_stolen_total", "Shard leases taken from a more loaded instance (balancing).", &self.leases_stolen),
            ("esmd_leases_lost_total", "Shard leases another instance took from this one.", &self.leases_lost),
            ("esmd_leases_released_total", "Shard leases given back (shutdown, reload).", &self.leases_released),
        ]
    }

    pub(crate) fn snapshot(&self) -> serde_json::Value {
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
        map.insert(
            "invocation_duration_count".into(),
            self.invocation_duration.count().into(),
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

/// Renders every mapping's metrics, then the process-wide event counts, in the Prometheus
/// text exposition format.
pub(crate) fn render_prometheus(mappings: &[std::sync::Arc<MappingStatus>]) -> String {
    let mut out = String::new();
    let names = MappingMetrics::default()
        .counters()
        .map(|(name, help, _)| (name, help));
    for (i, (name, help)) in names.iter().enumerate() {
        family(&mut out, name, help, "counter");
        for m in mappings {
            let value = m.metrics.counters()[i].2.load(Ordering::Relaxed);
            sample(&mut out, name, m, value);
        }
    }
    gauges(&mut out, mappings);
    histogram(&mut out, mappings);
    family(
        &mut out,
        "esmd_mapping_up",
        "1 while the mapping is polling, 0 otherwise.",
        "gauge",
    );
    for m in mappings {
        sample(&mut out, "esmd_mapping_up", m, u8::from(m.is_polling()));
    }
    if let Some(n) = super::allocations::total() {
        family(
            &mut out,
            "esmd_heap_allocations_total",
            "Heap allocations and reallocations since start (ESMD_COUNT_ALLOCATIONS=1).",
            "counter",
        );
        let _ = writeln!(out, "esmd_heap_allocations_total {n}");
    }
    family(
        &mut out,
        "esmd_events_total",
        "Named events emitted by the process (each also logs), by event.",
        "counter",
    );
    for (event, count) in super::events::counts() {
        let _ = writeln!(out, "esmd_events_total{{event=\"{event}\"}} {count}");
    }
    out
}

fn labels(m: &MappingStatus) -> String {
    format!(
        "mapping=\"{}\",function=\"{}\",source=\"{}\"",
        escape(&m.uuid),
        escape(&m.function_name),
        m.source_kind
    )
}

fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, m: &MappingStatus, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{name}{{{}}} {value}", labels(m));
}

fn gauges(out: &mut String, mappings: &[std::sync::Arc<MappingStatus>]) {
    family(
        out,
        "esmd_in_flight_batches",
        "Batches being invoked now.",
        "gauge",
    );
    for m in mappings {
        let value = m.metrics.in_flight_batches.load(Ordering::Relaxed);
        sample(out, "esmd_in_flight_batches", m, value);
    }
    family(
        out,
        "esmd_leases_held",
        "Shard leases this instance holds now (streams).",
        "gauge",
    );
    for m in mappings.iter().filter(|m| m.source_kind != "sqs") {
        let value = m.metrics.leases_held.load(Ordering::Relaxed);
        sample(out, "esmd_leases_held", m, value);
    }
    family(
        out,
        "esmd_iterator_age_milliseconds",
        "Age of the last record read, for the furthest-behind shard (AWS IteratorAge).",
        "gauge",
    );
    for m in mappings.iter().filter(|m| m.source_kind != "sqs") {
        let value = m.metrics.iterator_age_ms.load(Ordering::Relaxed);
        sample(out, "esmd_iterator_age_milliseconds", m, value);
    }
    family(
        out,
        "esmd_sqs_pollers",
        "Pollers an SQS mapping runs now (between 1 and its maximum concurrency).",
        "gauge",
    );
    for m in mappings.iter().filter(|m| m.source_kind == "sqs") {
        let value = m.metrics.sqs_pollers.load(Ordering::Relaxed);
        sample(out, "esmd_sqs_pollers", m, value);
    }
    let sqs_gauges = [
        (
            "esmd_sqs_backlog_messages",
            "Visible messages waiting in the queue (ApproximateNumberOfMessages, sampled every 15 s).",
            true,
        ),
        (
            "esmd_sqs_not_visible_messages",
            "Messages received but not yet deleted (ApproximateNumberOfMessagesNotVisible, sampled every 15 s).",
            false,
        ),
    ];
    for (name, help, backlog) in sqs_gauges {
        family(out, name, help, "gauge");
        for m in mappings.iter().filter(|m| m.source_kind == "sqs") {
            let gauge = match backlog {
                true => &m.metrics.sqs_backlog,
                false => &m.metrics.sqs_not_visible,
            };
            let value = gauge.load(Ordering::Relaxed);
            if value >= 0 {
                sample(out, name, m, value);
            }
        }
    }
}

fn histogram(out: &mut String, mappings: &[std::sync::Arc<MappingStatus>]) {
    let name = "esmd_invocation_duration_seconds";
    family(
        out,
        name,
        "Time from invoke request to response.",
        "histogram",
    );
    for m in mappings {
        let h = &m.metrics.invocation_duration;
        for (le, count) in h.cumulative() {
            let _ = writeln!(out, "{name}_bucket{{{},le=\"{le}\"}} {count}", labels(m));
        }
        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        sample(out, &format!("{name}_sum"), m, sum);
        sample(out, &format!("{name}_count"), m, h.count());
    }
}
