//! Many seeds on a few workers, each with its own moto (and kinesis-local), and the summary
//! that the README's Reliability section quotes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::run::{run, Backends, RunResult};
use crate::server::{Emulator, Server};

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub command: String,
    pub runs: usize,
    pub passed: usize,
    pub failed_seeds: Vec<u64>,
    /// Runs that could not be set up (a backend error): they count as failures.
    pub errored: Vec<String>,
    /// Emulators found dead before a run and started again (each with its exit status and
    /// log). A run that errored because its emulator died is run once more.
    pub emulator_restarts: Vec<String>,
    pub runs_by_scenario: BTreeMap<String, usize>,
    pub faults_injected: BTreeMap<String, u64>,
    pub records_produced: usize,
    pub records_to_destination: usize,
    pub lost: usize,
    pub order_violations: usize,
    /// Reorders moto's FIFO queue made itself (see the checker); not failures.
    pub emulator_order_violations: usize,
    pub backwards_checkpoints: usize,
    pub duplicates: usize,
    pub unexplained_duplicates: usize,
    /// Duplicates moto's SQS made itself (a message handed out twice within its visibility
    /// timeout); not failures.
    pub emulator_duplicates: usize,
    pub max_duplicates_per_disruption: usize,
    pub sigterm_exits: usize,
    pub bad_exits: usize,
    pub panics: usize,
    pub seconds: f64,
}

impl Summary {
    fn add(&mut self, r: &RunResult) {
        let v = &r.verdict;
        self.runs += 1;
        if v.ok() {
            self.passed += 1;
        } else {
            self.failed_seeds.push(r.seed);
        }
        let kind = r.scenario.split(' ').next().unwrap_or("").to_string();
        *self.runs_by_scenario.entry(kind).or_default() += 1;
        for (k, n) in &r.faults {
            *self.faults_injected.entry(k.clone()).or_default() += n;
        }
        self.records_produced += v.produced;
        self.records_to_destination += v.to_destination;
        self.lost += v.lost.len();
        self.order_violations += v.order_violations.len();
        self.emulator_order_violations += v.backend_order_violations.len();
        self.backwards_checkpoints += v.backwards_checkpoints.len();
        self.duplicates += v.duplicates;
        self.unexplained_duplicates += v.unexplained_duplicates.len();
        self.emulator_duplicates += v.backend_duplicates;
        self.max_duplicates_per_disruption = self
            .max_duplicates_per_disruption
            .max(v.max_duplicates_per_disruption);
        self.sigterm_exits += r.faults.get("sigterm").copied().unwrap_or(0) as usize + 1;
        self.bad_exits += v.bad_exits.len();
        self.panics += v.panics.len();
    }

    pub fn ok(&self) -> bool {
        self.failed_seeds.is_empty() && self.errored.is_empty()
    }
}

fn replay(seed: u64) -> String {
    format!("scripts/chaos --seeds {seed}")
}

pub async fn campaign(
    seeds: Vec<u64>,
    jobs: usize,
    esmd: PathBuf,
    out: PathBuf,
    command: String,
) -> Result<Summary> {
    let needs_kinesis_local = seeds.iter().any(|s| {
        crate::scenario::Scenario::from_seed(*s)
            .source
            .needs_kinesis_local()
    });
    let seeds = Arc::new(seeds);
    let next = Arc::new(AtomicUsize::new(0));
    let summary = Arc::new(Mutex::new(Summary {
        command,
        ..Summary::default()
    }));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..jobs.max(1) {
        let (seeds, next, summary, esmd, out) = (
            seeds.clone(),
            next.clone(),
            summary.clone(),
            esmd.clone(),
            out.clone(),
        );
        workers.push(tokio::spawn(async move {
            let logs = out.join("emulators");
            let mut backends = Backends {
                moto: Server::start(Emulator::Moto, &logs.join(format!("moto-{worker}.log")))
                    .await?,
                kinesis_local: if needs_kinesis_local {
                    let log = logs.join(format!("kinesis-local-{worker}.log"));
                    Some(Server::start(Emulator::KinesisLocal, &log).await?)
                } else {
                    None
                },
            };
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&seed) = seeds.get(i) else {
                    return anyhow::Ok(());
                };
                revive(&mut backends, &summary).await?;
                let mut result = run(seed, &backends, &esmd, &out).await;
                if result.is_err() && revive(&mut backends, &summary).await? {
                    println!("seed {seed:>4} runs again: an emulator died during it");
                    result = run(seed, &backends, &esmd, &out).await;
                }
                record(seed, result, &summary);
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    let mut s = std::mem::take(&mut *summary.lock().unwrap_or_else(|e| e.into_inner()));
    s.seconds = started.elapsed().as_secs_f64();
    Ok(s)
}

/// Starts again each of the worker's emulators that exited or stopped listening; whether
/// one had.
async fn revive(backends: &mut Backends, summary: &Mutex<Summary>) -> Result<bool> {
    let mut revived = false;
    for server in std::iter::once(&mut backends.moto).chain(backends.kinesis_local.as_mut()) {
        if let Some(what) = server.restart_if_gone().await? {
            println!("emulator restarted: {what}");
            summary
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .emulator_restarts
                .push(what);
            revived = true;
        }
    }
    Ok(revived)
}

fn record(seed: u64, result: Result<RunResult>, summary: &Mutex<Summary>) {
    let mut sum = summary.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(r) => {
            let v = &r.verdict;
            println!(
                "seed {seed:>4} {:<34} {} {:>5.1} s: {} records, {} acknowledged, {} to the destination, {} duplicates; faults {:?}",
                r.scenario,
                if v.ok() { "ok  " } else { "FAIL" },
                r.seconds,
                v.produced,
                v.acked,
                v.to_destination,
                v.duplicates,
                r.faults
            );
            if !v.ok() {
                for p in v.problems() {
                    println!("    {p}");
                }
                println!("    logs: {} ; replay: {}", r.dir.display(), replay(seed));
            }
            sum.add(&r);
        }
        Err(e) => {
            println!("seed {seed:>4} ERROR {e:#}; replay: {}", replay(seed));
            sum.runs += 1;
            sum.errored.push(format!("seed {seed}: {e:#}"));
        }
    }
}
