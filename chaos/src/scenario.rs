//! A seed becomes a scenario: the source, the mapping's options, the records, and a timeline
//! of kills, pauses, restarts, proxy fault bursts and a split. Pure, so a seed always means
//! the same scenario (the replay command).

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;

use crate::faults::Fault;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Source {
    SqsStandard,
    SqsFifo,
    Kinesis { parallelization: u32, split: bool },
    DynamoDb,
}

impl Source {
    pub fn is_stream(self) -> bool {
        matches!(self, Source::Kinesis { .. } | Source::DynamoDb)
    }

    /// Whether order per key is promised.
    pub fn ordered(self) -> bool {
        !matches!(self, Source::SqsStandard)
    }

    /// kinesis-local serves the stream when a shard must end (moto never ends one).
    pub fn needs_kinesis_local(self) -> bool {
        matches!(self, Source::Kinesis { split: true, .. })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Event {
    /// `kill -9`, then a restart.
    Kill,
    /// SIGSTOP for this many milliseconds, then SIGCONT.
    Pause(u64),
    /// SIGTERM (esmd must exit 0), then a restart.
    Term,
    /// Split the first open shard (Kinesis on kinesis-local).
    Split,
}

#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    pub seed: u64,
    pub source: Source,
    pub records: usize,
    pub keys: usize,
    pub batch_size: u32,
    /// `ReportBatchItemFailures`.
    pub partial: bool,
    /// Kinesis and DynamoDB: `bisect_batch_on_function_error`.
    pub bisect: bool,
    /// A DLQ (SQS) or an on-failure destination (streams), with few retries.
    pub destination: bool,
    pub function_fault_rate: f64,
    /// With a destination: the record (by index) the function always fails, so that it
    /// must reach the DLQ or the on-failure destination.
    pub poison: Option<usize>,
    pub proxy_rate: f64,
    pub proxy_faults: Vec<Fault>,
    /// When the records are produced (ms after the start), in bursts.
    pub bursts: Vec<u64>,
    /// The timeline: ms after the start, and what happens.
    pub events: Vec<(u64, Event)>,
    /// Faults (proxy and function) are armed until then; afterwards the run drains.
    pub faults_until_ms: u64,
}

impl Scenario {
    pub fn from_seed(seed: u64) -> Scenario {
        let mut rng = StdRng::seed_from_u64(seed);
        let source = match seed % 6 {
            0 => Source::SqsStandard,
            1 => Source::SqsFifo,
            2 => Source::Kinesis {
                parallelization: 1,
                split: false,
            },
            3 => Source::Kinesis {
                parallelization: rng.gen_range(2..=4),
                split: false,
            },
            4 => Source::Kinesis {
                parallelization: rng.gen_range(1..=3),
                split: true,
            },
            _ => Source::DynamoDb,
        };
        let partial = rng.gen_bool(0.5);
        let bisect = source.is_stream() && rng.gen_bool(0.5);
        let destination = rng.gen_bool(0.5);
        let mut proxy_faults: Vec<Fault> = Fault::ALL
            .into_iter()
            .filter(|f| *f != Fault::Stall)
            .filter(|_| rng.gen_bool(0.6))
            .collect();
        // A stall waits out the client's 30 s timeout: in one seed in eight.
        if rng.gen_bool(0.125) {
            proxy_faults.push(Fault::Stall);
        }
        let faults_until_ms = 6_000;
        let mut events: Vec<(u64, Event)> = Vec::new();
        for _ in 0..rng.gen_range(2..=4) {
            let at = rng.gen_range(300..5_500);
            let event = match rng.gen_range(0..3) {
                0 => Event::Kill,
                1 => Event::Pause(rng.gen_range(300..2_500)),
                _ => Event::Term,
            };
            events.push((at, event));
        }
        if source.needs_kinesis_local() {
            events.push((rng.gen_range(1_500..3_500), Event::Split));
        }
        events.sort_by_key(|(at, _)| *at);
        let records = rng.gen_range(40..=120);
        let poison = destination.then(|| rng.gen_range(0..records));
        Scenario {
            seed,
            source,
            records,
            poison,
            keys: rng.gen_range(2..=6),
            batch_size: match source {
                Source::SqsFifo | Source::SqsStandard => rng.gen_range(1..=10),
                _ => rng.gen_range(1..=25),
            },
            partial,
            bisect,
            destination,
            function_fault_rate: rng.gen_range(0.0..0.3),
            proxy_rate: rng.gen_range(0.02..0.15),
            proxy_faults,
            bursts: vec![0, 1_000, 2_000, 3_000, 4_000],
            events,
            faults_until_ms,
        }
    }

    pub fn describe(&self) -> String {
        let src = match self.source {
            Source::SqsStandard => "sqs-standard".to_string(),
            Source::SqsFifo => "sqs-fifo".to_string(),
            Source::Kinesis {
                parallelization,
                split,
            } => format!(
                "kinesis pf={parallelization}{}",
                if split { " split" } else { "" }
            ),
            Source::DynamoDb => "dynamodb-streams".to_string(),
        };
        let mut opts = Vec::new();
        if self.partial {
            opts.push("partial");
        }
        if self.bisect {
            opts.push("bisect");
        }
        if self.destination {
            opts.push("destination");
        }
        format!("{src} [{}]", opts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_means_the_same_scenario() {
        for seed in 0..50 {
            let a = serde_json::to_string(&Scenario::from_seed(seed)).unwrap();
            let b = serde_json::to_string(&Scenario::from_seed(seed)).unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn every_six_seeds_cover_every_source_and_events_are_in_time_order() {
        let sources: Vec<_> = (0..6).map(|s| Scenario::from_seed(s).source).collect();
        assert!(sources.contains(&Source::SqsStandard));
        assert!(sources.contains(&Source::SqsFifo));
        assert!(sources.contains(&Source::DynamoDb));
        assert!(sources.iter().any(|s| s.needs_kinesis_local()));
        for seed in 0..200 {
            let s = Scenario::from_seed(seed);
            assert!(s.events.windows(2).all(|w| w[0].0 <= w[1].0));
            assert!(s.events.iter().all(|(at, _)| *at < s.faults_until_ms));
            assert!(!s.bisect || s.source.is_stream());
        }
    }
}
