//! The function under test: a host that speaks the Lambda Invoke API, logs every invocation
//! and, while its faults are armed, fails some of them as a real function would: an unhandled
//! error, a timeout after a slow start, a partial batch failure, or a body that is not JSON.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};

use crate::log::{Delivered, Invocation};

/// How the function answers one invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Ok,
    Error,
    Timeout,
    Partial,
    Garbage,
}

#[derive(Clone, Copy, Debug)]
pub struct Behaviour {
    pub seed: u64,
    pub fault_rate: f64,
    /// The mapping reports batch item failures (`ReportBatchItemFailures`).
    pub partial: bool,
    /// FIFO queues and streams: a failure fails every later record of the batch too.
    pub ordered: bool,
}

/// The record the function always fails (armed or not), so that it must reach a destination.
pub type Poison = Option<String>;

struct Host {
    behaviour: Behaviour,
    poison: Poison,
    counts: Mutex<std::collections::BTreeMap<String, u64>>,
    armed: AtomicBool,
    rng: Mutex<StdRng>,
    log: Mutex<Vec<Invocation>>,
    started: Instant,
}

pub struct FunctionHost {
    pub endpoint: String,
    host: Arc<Host>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FunctionHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FunctionHost {
    pub async fn start(
        behaviour: Behaviour,
        poison: Poison,
        started: Instant,
    ) -> std::io::Result<FunctionHost> {
        let host = Arc::new(Host {
            poison,
            counts: Mutex::new(Default::default()),
            rng: Mutex::new(StdRng::seed_from_u64(behaviour.seed ^ 0xF00D)),
            behaviour,
            armed: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            started,
        });
        let app = axum::Router::new()
            .route(
                "/2015-03-31/functions/{name}/invocations",
                axum::routing::post(invoke),
            )
            .with_state(host.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FunctionHost {
            endpoint,
            host,
            task,
        })
    }

    pub fn arm(&self, on: bool) {
        self.host.armed.store(on, Ordering::SeqCst);
    }

    /// How many invocations got each injected answer.
    pub fn counts(&self) -> std::collections::BTreeMap<String, u64> {
        lock(&self.host.counts).clone()
    }

    pub fn invocations(&self) -> Vec<Invocation> {
        lock(&self.host.log).clone()
    }
}

/// One record of an event: its id (the SQS body, the Kinesis data, the DynamoDB item's `id`),
/// the identifier a batch item failure names, and its shard and sequence number.
pub fn parse_record(r: &Value) -> Option<(Delivered, String)> {
    match r.get("eventSource").and_then(Value::as_str)? {
        "aws:sqs" => {
            let id = r.get("body")?.as_str()?.to_string();
            let item = r.get("messageId")?.as_str()?.to_string();
            Some((
                Delivered {
                    id,
                    shard: None,
                    sequence: None,
                },
                item,
            ))
        }
        "aws:kinesis" => {
            let k = r.get("kinesis")?;
            let data = base64::engine::general_purpose::STANDARD
                .decode(k.get("data")?.as_str()?)
                .ok()?;
            let seq = k.get("sequenceNumber")?.as_str()?.to_string();
            let shard = r.get("eventID")?.as_str()?.split(':').next()?.to_string();
            Some((
                Delivered {
                    id: String::from_utf8(data).ok()?,
                    shard: Some(shard),
                    sequence: Some(seq.clone()),
                },
                seq,
            ))
        }
        "aws:dynamodb" => {
            let d = r.get("dynamodb")?;
            let id = d.pointer("/NewImage/id/S")?.as_str()?.to_string();
            let seq = d.get("SequenceNumber")?.as_str()?.to_string();
            Some((
                Delivered {
                    id,
                    shard: None,
                    sequence: Some(seq.clone()),
                },
                seq,
            ))
        }
        _ => None,
    }
}

impl Host {
    fn draw(&self) -> (Answer, u64) {
        let mut rng = lock(&self.rng);
        let slow = rng.gen_range(1_000..3_000);
        if !self.armed.load(Ordering::SeqCst) || !rng.gen_bool(self.behaviour.fault_rate) {
            return (Answer::Ok, slow);
        }
        let answers: &[Answer] = if self.behaviour.partial {
            &[
                Answer::Error,
                Answer::Timeout,
                Answer::Partial,
                Answer::Partial,
                Answer::Garbage,
            ]
        } else {
            &[Answer::Error, Answer::Timeout, Answer::Garbage]
        };
        (answers[rng.gen_range(0..answers.len())], slow)
    }

    fn ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

async fn invoke(
    State(host): State<Arc<Host>>,
    Path(_name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let at_ms = host.ms();
    let event: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let parsed: Vec<(Delivered, String)> = event
        .get("Records")
        .and_then(Value::as_array)
        .map(|rs| rs.iter().filter_map(parse_record).collect())
        .unwrap_or_default();
    let (mut answer, slow_ms) = host.draw();
    let poisoned = parsed
        .iter()
        .position(|(d, _)| Some(&d.id) == host.poison.as_ref());
    let mut failed_from = (answer == Answer::Partial && !parsed.is_empty())
        .then(|| lock(&host.rng).gen_range(0..parsed.len()));
    if let Some(p) = poisoned {
        if host.behaviour.partial {
            answer = Answer::Partial;
            failed_from = Some(match failed_from {
                Some(f) if host.behaviour.ordered => f.min(p),
                _ => p,
            });
        } else {
            answer = Answer::Error;
        }
    }
    if answer != Answer::Ok {
        let name = match answer {
            Answer::Error if poisoned.is_some() => "function_poison",
            Answer::Partial if poisoned.is_some() => "function_poison",
            Answer::Error => "function_error",
            Answer::Timeout => "function_timeout",
            Answer::Partial => "function_partial_failure",
            Answer::Garbage => "function_garbage_answer",
            Answer::Ok => "function_ok",
        };
        *lock(&host.counts).entry(name.to_string()).or_default() += 1;
    }
    let ids: Vec<String> = parsed.iter().map(|(d, _)| d.id.clone()).collect();
    let acked: Vec<String> = match (answer, failed_from) {
        (Answer::Ok, _) => ids.clone(),
        (Answer::Garbage, _) if !host.behaviour.partial => ids.clone(),
        (Answer::Partial, Some(f)) if host.behaviour.ordered => ids[..f].to_vec(),
        (Answer::Partial, Some(f)) => ids
            .iter()
            .enumerate()
            .filter(|(n, _)| *n != f)
            .map(|(_, id)| id.clone())
            .collect(),
        _ => Vec::new(),
    };
    if answer == Answer::Timeout {
        tokio::time::sleep(Duration::from_millis(slow_ms)).await;
    }
    let response = match (answer, failed_from) {
        (Answer::Ok, _) if host.behaviour.partial => {
            json_answer(json!({ "batchItemFailures": [] }))
        }
        (Answer::Ok, _) => json_answer(json!({ "ok": true })),
        (Answer::Partial, Some(f)) => {
            let upto = if host.behaviour.ordered && event_is_sqs(&event) {
                parsed.len()
            } else {
                f + 1
            };
            let failures: Vec<Value> = parsed[f..upto]
                .iter()
                .map(|(_, item)| json!({ "itemIdentifier": item }))
                .collect();
            json_answer(json!({ "batchItemFailures": failures }))
        }
        (Answer::Garbage, _) => (StatusCode::OK, "<<chaos: not json").into_response(),
        (Answer::Timeout, _) => function_error(
            "Sandbox.Timedout",
            &format!(
                "Task timed out after {:.2} seconds",
                slow_ms as f64 / 1000.0
            ),
        ),
        _ => function_error("Error", "chaos: injected failure"),
    };
    lock(&host.log).push(Invocation {
        at_ms,
        done_ms: host.ms(),
        records: parsed.into_iter().map(|(d, _)| d).collect(),
        acked,
        answer_lost: headers.contains_key("x-chaos-answer-lost"),
    });
    response
}

fn event_is_sqs(event: &Value) -> bool {
    event
        .pointer("/Records/0/eventSource")
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

fn json_answer(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn function_error(kind: &str, message: &str) -> Response {
    (
        StatusCode::OK,
        [("x-amz-function-error", "Unhandled")],
        axum::Json(json!({ "errorType": kind, "errorMessage": message })),
    )
        .into_response()
}
