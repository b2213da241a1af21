//! The invariants of a run, checked on its log. Pure: no IO, so that its tests can plant a
//! loss, a reorder, a backwards checkpoint or an unexplained duplicate and see it caught.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::log::{Destined, Disruption, RunLog};

/// How long after a disruption a commit may still be missing (a checkpoint write or an SQS
/// delete that the disruption interrupted), in milliseconds.
pub const COMMIT_WINDOW_MS: u64 = 3_000;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    pub produced: usize,
    pub acked: usize,
    pub to_destination: usize,
    pub lost: Vec<String>,
    pub order_violations: Vec<String>,
    /// Reorders the queue made itself: it handed a message out while an earlier message of
    /// its group was neither acknowledged nor ahead of it in the same answer (moto's FIFO
    /// quirk, README "Emulator differences"). Reported, not failed.
    pub backend_order_violations: Vec<String>,
    pub backwards_checkpoints: Vec<String>,
    /// Deliveries of a record that the function had already acknowledged.
    pub duplicates: usize,
    /// Duplicates that no crash, pause or lost answer explains.
    pub unexplained_duplicates: Vec<String>,
    /// Duplicates the queue made itself: it handed a message out again within its visibility
    /// timeout, to a second receive (a moto race under concurrent long polls). Reported, not
    /// failed.
    pub backend_duplicates: usize,
    pub max_duplicates_per_disruption: usize,
    pub bad_exits: Vec<String>,
    pub panics: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.order_violations.is_empty()
            && self.backwards_checkpoints.is_empty()
            && self.unexplained_duplicates.is_empty()
            && self.bad_exits.is_empty()
            && self.panics.is_empty()
    }

    /// One line per broken invariant.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut add = |what: &str, items: &[String]| {
            if !items.is_empty() {
                let shown: Vec<_> = items.iter().take(5).cloned().collect();
                out.push(format!("{what} ({}): {}", items.len(), shown.join("; ")));
            }
        };
        add("lost", &self.lost);
        add("order violations", &self.order_violations);
        add("backwards checkpoints", &self.backwards_checkpoints);
        add("unexplained duplicates", &self.unexplained_duplicates);
        add("bad exits", &self.bad_exits);
        add("panics", &self.panics);
        out
    }
}

pub fn check(log: &RunLog) -> Verdict {
    let mut v = Verdict {
        produced: log.produced.len(),
        ..Verdict::default()
    };
    let acked = acked_ids(log);
    v.acked = log
        .produced
        .iter()
        .filter(|p| acked.contains(p.id.as_str()))
        .count();
    v.to_destination = destined_ids(log).len();
    v.lost = lost(log);
    if log.ordered {
        for o in order_violations(log) {
            if backend_broke_order(log, &o) {
                v.backend_order_violations.push(o.text);
            } else {
                v.order_violations.push(o.text);
            }
        }
    }
    v.order_violations.extend(lineage_violations(log));
    v.backwards_checkpoints = backwards_checkpoints(log);
    duplicates(log, &mut v);
    for (i, e) in log.exits.iter().enumerate() {
        if e.after == "sigterm" && e.code != Some(0) {
            v.bad_exits.push(format!(
                "process {i} exited {:?} (signal {:?}) after SIGTERM",
                e.code, e.signal
            ));
        }
        v.panics.extend(e.panics.iter().cloned());
    }
    v
}

fn acked_ids(log: &RunLog) -> HashSet<&str> {
    log.invocations
        .iter()
        .flat_map(|i| i.acked.iter().map(String::as_str))
        .collect()
}

/// Records neither acknowledged by the function nor in the destination (the runner drains
/// until this is empty).
pub fn lost(log: &RunLog) -> Vec<String> {
    let acked = acked_ids(log);
    let destined = destined_ids(log);
    log.produced
        .iter()
        .filter(|p| !acked.contains(p.id.as_str()) && !destined.contains(p.id.as_str()))
        .map(|p| p.id.clone())
        .collect()
}

/// Ids in the destination: SQS messages by id, stream ranges through the delivered records'
/// shards and sequence numbers.
fn destined_ids(log: &RunLog) -> HashSet<&str> {
    let mut out = HashSet::new();
    let delivered: Vec<_> = log
        .invocations
        .iter()
        .flat_map(|i| i.records.iter())
        .collect();
    for d in &log.destination {
        match d {
            Destined::Id(id) => {
                if let Some(p) = log.produced.iter().find(|p| &p.id == id) {
                    out.insert(p.id.as_str());
                }
            }
            Destined::Range { shard, start, end } => {
                for r in &delivered {
                    // DynamoDB Streams events do not name their shard: match on the
                    // sequence number alone.
                    let Some(q) = &r.sequence else {
                        continue;
                    };
                    if r.shard.as_ref().is_none_or(|s| s == shard)
                        && compare_sequence(q, start) != Ordering::Less
                        && compare_sequence(q, end) != Ordering::Greater
                    {
                        out.insert(r.id.as_str());
                    }
                }
            }
        }
    }
    out
}

/// Sequence numbers are decimal strings of up to 128 bits: compare them as numbers.
pub fn compare_sequence(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

struct OrderViolation {
    text: String,
    invocation: usize,
    id: String,
    /// The record of the same key that should have come first.
    earlier: Option<String>,
}

/// A record's first delivery must come after its key's previous record was delivered, and
/// records of one key within one invocation come in produce order.
fn order_violations(log: &RunLog) -> Vec<OrderViolation> {
    let mut by_key: HashMap<&str, Vec<&str>> = HashMap::new();
    for p in &log.produced {
        by_key
            .entry(p.key.as_str())
            .or_default()
            .push(p.id.as_str());
    }
    let mut position: HashMap<&str, (&str, usize)> = HashMap::new();
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for p in &log.produced {
        let n = per_key.entry(p.key.as_str()).or_default();
        position.insert(p.id.as_str(), (p.key.as_str(), *n));
        *n += 1;
    }
    let mut delivered_upto: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::new();
    for (n, inv) in log.invocations.iter().enumerate() {
        let mut last_in_batch: HashMap<&str, usize> = HashMap::new();
        for r in &inv.records {
            let Some(&(key, index)) = position.get(r.id.as_str()) else {
                continue;
            };
            if let Some(&prev) = last_in_batch.get(key) {
                if index <= prev {
                    out.push(OrderViolation {
                        text: format!(
                            "invocation {n}: {} (#{index} of key {key}) after #{prev} in one batch",
                            r.id
                        ),
                        invocation: n,
                        id: r.id.clone(),
                        earlier: None,
                    });
                }
            }
            last_in_batch.insert(key, index);
            let next = delivered_upto.entry(key).or_default();
            if index > *next {
                out.push(OrderViolation {
                    text: format!(
                        "invocation {n}: {} (#{index} of key {key}) first delivered before #{}",
                        r.id, *next
                    ),
                    invocation: n,
                    id: r.id.clone(),
                    earlier: by_key
                        .get(key)
                        .and_then(|ids| ids.get(*next))
                        .map(|s| s.to_string()),
                });
            }
            if index + 1 > *next {
                *next = index + 1;
            }
        }
    }
    out
}

/// Whether the queue handed the record out, before the violating invocation, while the
/// earlier record of its group was neither acknowledged nor ahead of it in that answer.
fn backend_broke_order(log: &RunLog, o: &OrderViolation) -> bool {
    let Some(earlier) = o.earlier.as_deref() else {
        return false;
    };
    let before = log.invocations[o.invocation].at_ms;
    let acked_at = log
        .invocations
        .iter()
        .filter(|i| i.acked.iter().any(|a| a == earlier))
        .map(|i| i.done_ms)
        .min();
    log.handouts.iter().any(|h| {
        let Some(pos) = h.ids.iter().position(|id| *id == o.id) else {
            return false;
        };
        h.at_ms <= before
            && !h.ids[..pos].iter().any(|id| id == earlier)
            && acked_at.is_none_or(|t| t > h.at_ms)
    })
}

/// Parent shards before children: no child record is delivered before the parent's last
/// record was first delivered.
fn lineage_violations(log: &RunLog) -> Vec<String> {
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    let mut last_first: BTreeMap<&str, usize> = BTreeMap::new();
    let mut seen = HashSet::new();
    for (n, inv) in log.invocations.iter().enumerate() {
        for r in &inv.records {
            let Some(shard) = r.shard.as_deref() else {
                continue;
            };
            first.entry(shard).or_insert(n);
            if seen.insert(r.id.as_str()) {
                last_first.insert(shard, n);
            }
        }
    }
    let mut out = Vec::new();
    for (parent, child) in &log.lineage {
        if let (Some(&p), Some(&c)) = (last_first.get(parent.as_str()), first.get(child.as_str())) {
            if c < p {
                out.push(format!(
                    "child {child} delivered in invocation {c}, before parent {parent} finished at {p}"
                ));
            }
        }
    }
    out
}

fn backwards_checkpoints(log: &RunLog) -> Vec<String> {
    let mut last: HashMap<&str, (&Option<String>, &str)> = HashMap::new();
    let mut out = Vec::new();
    for s in &log.checkpoints {
        if let Some((prev, prev_step)) = last.get(s.shard.as_str()) {
            let backwards = match (prev, &s.sequence) {
                (Some(_), None) => true,
                (Some(a), Some(b)) => compare_sequence(b, a) == Ordering::Less,
                _ => false,
            };
            if backwards {
                out.push(format!(
                    "{}: {:?} after {prev_step}, then {:?} after {}",
                    s.shard, prev, s.sequence, s.step
                ));
            }
        }
        last.insert(s.shard.as_str(), (&s.sequence, s.step.as_str()));
    }
    out
}

/// Counts deliveries of records already acknowledged (with the answer reaching esmd) and
/// attributes each to a disruption whose window holds the acknowledging invocation.
fn duplicates(log: &RunLog, v: &mut Verdict) {
    let mut acked_in: HashMap<&str, usize> = HashMap::new();
    let mut per_disruption: HashMap<usize, usize> = HashMap::new();
    for (n, inv) in log.invocations.iter().enumerate() {
        for r in &inv.records {
            let Some(&k) = acked_in.get(r.id.as_str()) else {
                continue;
            };
            v.duplicates += 1;
            let ack = &log.invocations[k];
            if r.sequence.is_none() && handed_out_twice(log, &r.id, inv.at_ms) {
                v.backend_duplicates += 1;
                continue;
            }
            match log.disruptions.iter().position(|d| match &r.sequence {
                Some(q) => restart_replays(d, ack.at_ms, r.shard.as_deref(), q),
                None => explains(d, ack.at_ms, ack.done_ms),
            }) {
                Some(d) => *per_disruption.entry(d).or_default() += 1,
                None => v.unexplained_duplicates.push(format!(
                    "{} again in invocation {n}, acknowledged in invocation {k} at {} ms",
                    r.id, ack.done_ms
                )),
            }
        }
        if !inv.answer_lost {
            for id in &inv.acked {
                acked_in.entry(id.as_str()).or_insert(n);
            }
        }
    }
    v.max_duplicates_per_disruption = per_disruption.values().copied().max().unwrap_or(0);
}

/// Whether the queue handed `id` out twice, the second time within the visibility timeout
/// of the first and before `by_ms`.
fn handed_out_twice(log: &RunLog, id: &str, by_ms: u64) -> bool {
    if log.visibility_ms == 0 {
        return false;
    }
    let times: Vec<u64> = log
        .handouts
        .iter()
        .filter(|h| h.at_ms <= by_ms && h.ids.iter().any(|i| i == id))
        .map(|h| h.at_ms)
        .collect();
    // esmd releases received messages (visibility 0) only when it shuts down: a second
    // handout after a SIGTERM may be its own doing, so it does not count.
    let released_between = |a: u64, b: u64| {
        log.disruptions
            .iter()
            .any(|d| d.kind == "term" && d.start_ms >= a && d.start_ms <= b)
    };
    times
        .windows(2)
        .any(|w| w[1] < w[0] + log.visibility_ms && !released_between(w[0], w[1]))
}

/// Streams: a restart replays from the checkpoint, so a record acknowledged before a kill or
/// a SIGTERM comes again if the store's checkpoint for its shard was still below it (with
/// `parallelization_factor` > 1, or a batch still retrying, the checkpoint is the lowest
/// unfinished record, so later acknowledged records are replayed). DynamoDB Streams events
/// do not name their shard: any shard's checkpoint below it explains it.
fn restart_replays(d: &Disruption, acked_at: u64, shard: Option<&str>, seq: &str) -> bool {
    if !(d.kind == "kill" || d.kind == "term") || acked_at > d.end_ms {
        return false;
    }
    let below = |c: &Option<String>| {
        c.as_deref()
            .is_none_or(|c| compare_sequence(c, seq) == Ordering::Less)
    };
    let relevant: Vec<_> = d
        .checkpoints
        .iter()
        .filter(|(s, _)| shard.is_none_or(|want| want == s))
        .collect();
    relevant.is_empty() || relevant.iter().any(|(_, c)| below(c))
}

/// SQS: an acknowledgement can be undone by a disruption that began before it was committed: the
/// invocation started before the disruption ended and finished at most a commit window
/// before the disruption began.
fn explains(d: &Disruption, at_ms: u64, done_ms: u64) -> bool {
    // A SIGTERM drains: it finishes in-flight batches and deletes what they processed.
    d.kind != "term"
        && at_ms <= d.end_ms + COMMIT_WINDOW_MS
        && done_ms + COMMIT_WINDOW_MS >= d.start_ms
}

#[cfg(test)]
#[path = "checker_tests.rs"]
mod tests;
