//! One seeded run: backends, proxies, the function host and esmd; the records and the
//! timeline; the drain; then the log the checker reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::backend::World;
use crate::checker::{check, lost, Verdict};
use crate::esmd::{mapping, Esmd};
use crate::faults::{Fault, Service};
use crate::function::{Behaviour, FunctionHost};
use crate::log::{Disruption, Handout, Produced, RunLog};
use crate::proxy::{Proxy, ProxyConfig};
use crate::scenario::{Event, Scenario};
use crate::server::Server;

/// How long a run may take to deliver everything after its faults end.
const DRAIN: Duration = Duration::from_secs(90);
/// A stall outlasts esmd's 30 s attempt timeout.
const STALL: Duration = Duration::from_secs(32);

/// The backends one worker shares between its runs (each run makes its own resources).
pub struct Backends {
    pub moto: Server,
    pub kinesis_local: Option<Server>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub seed: u64,
    pub scenario: String,
    pub verdict: Verdict,
    /// Faults injected, by kind (proxy faults by name, and kill, pause, sigterm, split).
    pub faults: BTreeMap<String, u64>,
    pub seconds: f64,
    /// Where the run's log and esmd's log are.
    pub dir: PathBuf,
}

struct Proxies {
    all: Vec<(Service, Proxy)>,
}

impl Proxies {
    async fn start(s: &Scenario, moto: &str, kinesis: &str, function: &str) -> Result<Proxies> {
        let mut all = Vec::new();
        for (i, service) in [
            Service::Sqs,
            Service::Kinesis,
            Service::DynamoDbStreams,
            Service::DynamoDb,
            Service::Lambda,
        ]
        .into_iter()
        .enumerate()
        {
            let upstream = match service {
                Service::Kinesis => kinesis,
                Service::Lambda => function,
                _ => moto,
            };
            // Lambda allows an invocation 15 minutes: no stall there.
            let faults: Vec<Fault> = s
                .proxy_faults
                .iter()
                .copied()
                .filter(|f| service != Service::Lambda || *f != Fault::Stall)
                .collect();
            let proxy = Proxy::start(ProxyConfig {
                service,
                upstream: upstream.to_string(),
                seed: s.seed.wrapping_mul(31).wrapping_add(i as u64),
                rate: s.proxy_rate,
                faults,
                stall: STALL,
            })
            .await?;
            all.push((service, proxy));
        }
        Ok(Proxies { all })
    }

    fn arm(&self, on: bool) {
        for (_, p) in &self.all {
            p.arm(on);
        }
    }

    fn endpoints(&self) -> Vec<(&'static str, String)> {
        self.all
            .iter()
            .map(|(s, p)| (s.env_suffix(), p.endpoint.clone()))
            .collect()
    }

    /// SQS faults can undo an acknowledgement (a delete that never happened or whose answer
    /// was lost; a stalled delete outlasting the visibility timeout): each is a disruption.
    fn disruptions(&self, started: Instant) -> Vec<Disruption> {
        let mut out = Vec::new();
        for (service, p) in &self.all {
            if *service != Service::Sqs {
                continue;
            }
            for (at, fault) in p.events() {
                let start_ms = at.saturating_duration_since(started).as_millis() as u64;
                let end_ms = start_ms
                    + if fault == Fault::Stall {
                        STALL.as_millis() as u64
                    } else {
                        0
                    };
                out.push(Disruption {
                    kind: format!("sqs:{}", fault.name()),
                    start_ms,
                    end_ms,
                    checkpoints: Vec::new(),
                });
            }
        }
        out
    }

    fn handouts(&self, started: Instant) -> Vec<Handout> {
        self.all
            .iter()
            .flat_map(|(_, p)| p.handouts())
            .map(|(at, ids)| Handout {
                at_ms: at.saturating_duration_since(started).as_millis() as u64,
                ids,
            })
            .collect()
    }

    fn counts(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (_, p) in &self.all {
            *out.entry("proxied_requests".to_string()).or_default() += p.requests();
            for (k, n) in p.counts() {
                *out.entry(format!("proxy_{k}")).or_default() += n;
            }
        }
        out
    }
}

pub async fn run(seed: u64, backends: &Backends, esmd_bin: &Path, out: &Path) -> Result<RunResult> {
    let s = Scenario::from_seed(seed);
    let started = Instant::now();
    let ms = move || started.elapsed().as_millis() as u64;
    let dir = out.join(format!("seed-{seed}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let kinesis_endpoint = match (&backends.kinesis_local, s.source.needs_kinesis_local()) {
        (Some(k), true) => k.endpoint.clone(),
        _ => backends.moto.endpoint.clone(),
    };
    let world = Arc::new(World::create(&s, &backends.moto.endpoint, &kinesis_endpoint).await?);
    let function = FunctionHost::start(
        Behaviour {
            seed,
            fault_rate: s.function_fault_rate,
            partial: s.partial,
            ordered: s.source.ordered(),
        },
        s.poison.map(|n| record_id(seed, n)),
        started,
    )
    .await?;
    let proxies = Proxies::start(
        &s,
        &backends.moto.endpoint,
        &kinesis_endpoint,
        &function.endpoint,
    )
    .await?;
    let failure_arn = world
        .failure_queue
        .as_ref()
        .filter(|_| s.source.is_stream())
        .map(|(_, arn)| arn.as_str());
    let mut esmd = Esmd::start(
        esmd_bin,
        &dir,
        &mapping(&s, &world.source_arn, failure_arn),
        &proxies.endpoints(),
    )
    .await?;
    proxies.arm(true);
    function.arm(true);

    let produced = produce_in_bursts(&s, world.clone(), started);
    let mut log = RunLog {
        seed,
        scenario: s.describe(),
        ordered: s.source.ordered(),
        ..RunLog::default()
    };
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (at, event) in &s.events {
        sleep_until(started, *at).await;
        let name = match event {
            Event::Kill | Event::Term => {
                let (sig, kind, within, name) = if *event == Event::Kill {
                    (libc::SIGKILL, "kill", 5, "kill")
                } else {
                    (libc::SIGTERM, "term", 30, "sigterm")
                };
                let t = ms();
                log.exits
                    .push(esmd.stop(sig, Duration::from_secs(within)).await);
                // The store as the stopped process left it (a restart replays from here).
                let left = esmd.checkpoints(ms(), &format!("{kind} at {at} ms, stopped"));
                log.disruptions.push(Disruption {
                    kind: kind.into(),
                    start_ms: t,
                    end_ms: ms(),
                    checkpoints: left
                        .iter()
                        .map(|c| (c.shard.clone(), c.sequence.clone()))
                        .collect(),
                });
                log.checkpoints.extend(left);
                esmd.spawn().await?;
                name
            }
            Event::Pause(d) => {
                let t = ms();
                esmd.signal(libc::SIGSTOP);
                tokio::time::sleep(Duration::from_millis(*d)).await;
                esmd.signal(libc::SIGCONT);
                log.disruptions.push(Disruption {
                    kind: "stop".into(),
                    start_ms: t,
                    end_ms: ms(),
                    checkpoints: Vec::new(),
                });
                "pause"
            }
            Event::Split => {
                world.split().await?;
                "split"
            }
        };
        *counts.entry(name.to_string()).or_default() += 1;
        log.checkpoints
            .extend(esmd.checkpoints(ms(), &format!("{name} at {at} ms")));
    }
    sleep_until(started, s.faults_until_ms).await;
    proxies.arm(false);
    function.arm(false);
    log.produced = produced.await??;
    log.checkpoints.extend(esmd.checkpoints(ms(), "faults end"));

    // Drain: until every record is acknowledged or in the failure queue.
    let deadline = Instant::now()
        + DRAIN
        + if s.proxy_faults.contains(&Fault::Stall) {
            STALL
        } else {
            Duration::ZERO
        };
    loop {
        log.destination.extend(world.take_destined().await?);
        log.invocations = function.invocations();
        if lost(&log).is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        log.checkpoints.extend(esmd.checkpoints(ms(), "drain"));
    }
    // Anything still in flight (a duplicate being delivered) shows before the final stop.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    log.exits
        .push(esmd.stop(libc::SIGTERM, Duration::from_secs(30)).await);
    log.checkpoints.extend(esmd.checkpoints(ms(), "final"));
    log.destination.extend(world.take_destined().await?);
    log.invocations = function.invocations();
    if s.source.needs_kinesis_local() {
        log.lineage = world.lineage().await?;
    }
    log.disruptions.extend(proxies.disruptions(started));
    log.handouts = proxies.handouts(started);
    if !s.source.is_stream() {
        log.visibility_ms = crate::backend::VISIBILITY_SECONDS as u64 * 1_000;
    }
    for (k, n) in proxies.counts().into_iter().chain(function.counts()) {
        *counts.entry(k).or_default() += n;
    }
    world.cleanup(&s).await;
    let verdict = check(&log);
    std::fs::write(dir.join("run.json"), serde_json::to_vec_pretty(&log)?)?;
    Ok(RunResult {
        seed,
        scenario: s.describe(),
        verdict,
        faults: counts,
        seconds: started.elapsed().as_secs_f64(),
        dir,
    })
}

async fn sleep_until(started: Instant, at_ms: u64) {
    let at = started + Duration::from_millis(at_ms);
    tokio::time::sleep_until(at.into()).await;
}

/// Produces the scenario's records in its bursts, round-robin over its keys.
fn produce_in_bursts(
    s: &Scenario,
    world: Arc<World>,
    started: Instant,
) -> tokio::task::JoinHandle<Result<Vec<Produced>>> {
    let s = s.clone();
    tokio::spawn(async move {
        let mut produced = Vec::new();
        let per_burst = s.records.div_ceil(s.bursts.len());
        let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
        for (b, at) in s.bursts.iter().enumerate() {
            sleep_until(started, *at).await;
            for i in 0..per_burst {
                let n = b * per_burst + i;
                if n >= s.records {
                    break;
                }
                let key = format!("k{}", n % s.keys);
                let id = record_id(s.seed, n);
                let count = per_key.entry(key.clone()).or_default();
                world.produce(&s, &id, &key, *count).await?;
                *count += 1;
                produced.push(Produced {
                    id,
                    key,
                    at_ms: started.elapsed().as_millis() as u64,
                });
            }
        }
        Ok(produced)
    })
}

fn record_id(seed: u64, n: usize) -> String {
    format!("s{seed}-r{n:04}")
}
