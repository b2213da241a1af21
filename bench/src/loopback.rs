//! A fast in-memory backend that speaks just enough of the SQS (awsJson1_0) and Kinesis
//! (awsJson1_1) wire protocols for esmd, the baseline and the producers. Used only by the
//! benchmarks, so that the figures show esmd's own ceiling rather than moto's; correctness is
//! tested against moto.
//!
//! Simplifications: visibility timeouts never expire (a message in flight comes back only
//! when its visibility is set to 0); FIFO queues deliver in order and hold a group while any
//! of its messages is in flight; Kinesis shards never split or expire.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use md5::{Digest, Md5};
use serde_json::{json, Value};
use tokio::sync::Notify;

#[path = "loopback_subscribe.rs"]
mod subscribe;

const ACCOUNT: &str = "123456789012";

#[derive(Default)]
pub struct Loopback {
    base_url: Mutex<String>,
    queues: Mutex<HashMap<String, Arc<SqsQueue>>>,
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    next_id: AtomicU64,
}

struct Message {
    id: String,
    body: String,
    md5: String,
    group: Option<String>,
    sequence: u64,
    sent_millis: u128,
    receives: u32,
}

#[derive(Default)]
struct QueueState {
    visible: VecDeque<Message>,
    in_flight: HashMap<String, Message>,
    groups_in_flight: HashMap<String, usize>,
}

pub struct SqsQueue {
    fifo: bool,
    state: Mutex<QueueState>,
    arrived: Notify,
}

struct Shard {
    records: Vec<KinesisRecord>,
}

struct KinesisRecord {
    sequence: String,
    key: String,
    data: String,
    arrival_secs: f64,
}

pub struct Stream {
    shards: Vec<Mutex<Shard>>,
    /// Woken on every append, for SubscribeToShard.
    appended: Notify,
    next_sequence: AtomicU64,
    /// GetRecords calls, for the pacing figure.
    get_records_calls: AtomicU64,
}

fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

fn md5_hex(text: &str) -> String {
    let digest = Md5::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [("x-amzn-query-error", format!("{kind};Sender"))],
        json!({"__type": kind, "message": message}).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, body.to_string()).into_response()
}

/// A slow backend on loopback: every answer waits `delay`, and with `close` the server closes
/// the connection after it (moto's Werkzeug server answers `Connection: close` to every
/// request). The two together separate what a slow answer costs a client from what a new
/// connection per request costs it.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub delay: Duration,
    pub close: bool,
}

impl Loopback {
    /// Starts serving on a free loopback port; returns the backend and its endpoint URL.
    pub async fn start() -> anyhow::Result<(Arc<Loopback>, String)> {
        Self::start_paced(None).await
    }

    /// [`Loopback::start`], each answer paced by `pace` if given.
    pub async fn start_paced(pace: Option<Pace>) -> anyhow::Result<(Arc<Loopback>, String)> {
        let backend = Arc::new(Loopback::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        *backend.base_url.lock().unwrap_or_else(|e| e.into_inner()) = url.clone();
        let mut app = axum::Router::new()
            .fallback(dispatch)
            .with_state(Arc::clone(&backend));
        if let Some(pace) = pace {
            app = app.layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| async move {
                    tokio::time::sleep(pace.delay).await;
                    let mut response = next.run(request).await;
                    if pace.close {
                        response.headers_mut().insert(
                            axum::http::header::CONNECTION,
                            axum::http::HeaderValue::from_static("close"),
                        );
                    }
                    response
                },
            ));
        }
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((backend, url))
    }

    pub fn create_queue(&self, name: &str) {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(SqsQueue {
                    fifo: name.ends_with(".fifo"),
                    state: Mutex::new(QueueState::default()),
                    arrived: Notify::new(),
                })
            });
    }

    pub fn create_stream(&self, name: &str, shards: usize) {
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                name.to_string(),
                Arc::new(Stream {
                    shards: (0..shards)
                        .map(|_| {
                            Mutex::new(Shard {
                                records: Vec::new(),
                            })
                        })
                        .collect(),
                    next_sequence: AtomicU64::new(1),
                    appended: Notify::new(),
                    get_records_calls: AtomicU64::new(0),
                }),
            );
    }

    fn queue(&self, url_or_name: &str) -> Option<Arc<SqsQueue>> {
        let name = url_or_name.rsplit('/').next().unwrap_or(url_or_name);
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn stream(&self, request: &Value) -> Option<Arc<Stream>> {
        let name = request["StreamName"]
            .as_str()
            .or_else(|| request["StreamARN"].as_str()?.rsplit('/').next())?;
        self.stream_named(name)
    }

    /// GetRecords calls on a stream so far.
    pub fn get_records_calls(&self, stream: &str) -> u64 {
        self.stream_named(stream)
            .map(|s| s.get_records_calls.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    fn stream_named(&self, name: &str) -> Option<Arc<Stream>> {
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Visible plus in-flight messages.
    pub fn queue_len(&self, name: &str) -> usize {
        self.queue(name)
            .map(|q| {
                let s = q.state.lock().unwrap_or_else(|e| e.into_inner());
                s.visible.len() + s.in_flight.len()
            })
            .unwrap_or(0)
    }

    /// Enqueues bodies directly (the preload before a throughput run).
    pub fn preload(&self, queue: &str, bodies: impl IntoIterator<Item = (String, Option<String>)>) {
        let Some(q) = self.queue(queue) else { return };
        let mut s = q.state.lock().unwrap_or_else(|e| e.into_inner());
        for (body, group) in bodies {
            let message = self.message(body, group);
            s.visible.push_back(message);
        }
        drop(s);
        q.arrived.notify_waiters();
    }

    fn message(&self, body: String, group: Option<String>) -> Message {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        Message {
            id: format!("00000000-0000-4000-8000-{n:012}"),
            md5: md5_hex(&body),
            body,
            group,
            sequence: n,
            sent_millis: now_millis(),
            receives: 0,
        }
    }

    /// Appends records to a stream's shards directly (the preload), round robin by key.
    pub fn preload_stream(
        &self,
        stream: &str,
        records: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) {
        let Some(s) = self.stream_named(stream) else {
            return;
        };
        for (key, data) in records {
            s.append(&key, base64::engine::general_purpose::STANDARD.encode(data));
        }
    }

    fn queue_url(&self, name: &str) -> Response {
        let base = self
            .base_url
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        ok(json!({"QueueUrl": format!("{base}/{ACCOUNT}/{name}")}))
    }

    async fn sqs(&self, op: &str, req: Value) -> Response {
        match op {
            "GetQueueUrl" => {
                let name = req["QueueName"].as_str().unwrap_or_default();
                if self.queue(name).is_none() {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "AWS.SimpleQueueService.NonExistentQueue",
                        "The specified queue does not exist.",
                    );
                }
                self.queue_url(name)
            }
            "CreateQueue" => {
                let name = req["QueueName"].as_str().unwrap_or_default();
                self.create_queue(name);
                self.queue_url(name)
            }
            _ => {
                let Some(queue) = self.queue(req["QueueUrl"].as_str().unwrap_or_default()) else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "AWS.SimpleQueueService.NonExistentQueue",
                        "The specified queue does not exist.",
                    );
                };
                self.queue_op(op, &queue, req).await
            }
        }
    }

    async fn queue_op(&self, op: &str, queue: &SqsQueue, req: Value) -> Response {
        match op {
            "GetQueueAttributes" => {
                let s = queue.state.lock().unwrap_or_else(|e| e.into_inner());
                let mut attrs = json!({
                    "VisibilityTimeout": "30",
                    "ApproximateNumberOfMessages": s.visible.len().to_string(),
                    "ApproximateNumberOfMessagesNotVisible": s.in_flight.len().to_string(),
                    "ApproximateNumberOfMessagesDelayed": "0",
                });
                if queue.fifo {
                    attrs["FifoQueue"] = json!("true");
                }
                ok(json!({"Attributes": attrs}))
            }
            "SendMessage" => {
                let body = req["MessageBody"].as_str().unwrap_or_default().to_string();
                let group = req["MessageGroupId"].as_str().map(str::to_string);
                let m = self.message(body, group);
                let out = json!({"MessageId": m.id, "MD5OfMessageBody": m.md5});
                queue
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .visible
                    .push_back(m);
                queue.arrived.notify_waiters();
                ok(out)
            }
            "SendMessageBatch" => {
                let mut successful = Vec::new();
                {
                    let mut s = queue.state.lock().unwrap_or_else(|e| e.into_inner());
                    for entry in req["Entries"].as_array().into_iter().flatten() {
                        let body = entry["MessageBody"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string();
                        let group = entry["MessageGroupId"].as_str().map(str::to_string);
                        let m = self.message(body, group);
                        successful.push(json!({"Id": entry["Id"], "MessageId": m.id, "MD5OfMessageBody": m.md5}));
                        s.visible.push_back(m);
                    }
                }
                queue.arrived.notify_waiters();
                ok(json!({"Successful": successful, "Failed": []}))
            }
            "ReceiveMessage" => {
                let max = req["MaxNumberOfMessages"]
                    .as_u64()
                    .unwrap_or(1)
                    .clamp(1, 10) as usize;
                let wait =
                    Duration::from_secs(req["WaitTimeSeconds"].as_u64().unwrap_or(0).min(20));
                let deadline = tokio::time::Instant::now() + wait;
                loop {
                    let notified = queue.arrived.notified();
                    let messages = receive(queue, max);
                    if !messages.is_empty() || tokio::time::Instant::now() >= deadline {
                        return ok(json!({"Messages": messages}));
                    }
                    let _ = tokio::time::timeout_at(deadline, notified).await;
                }
            }
            "DeleteMessageBatch" | "ChangeMessageVisibilityBatch" => {
                let release = op == "ChangeMessageVisibilityBatch";
                let mut successful = Vec::new();
                let mut failed = Vec::new();
                {
                    let mut s = queue.state.lock().unwrap_or_else(|e| e.into_inner());
                    for entry in req["Entries"].as_array().into_iter().flatten() {
                        let handle = entry["ReceiptHandle"].as_str().unwrap_or_default();
                        match s.in_flight.remove(handle) {
                            Some(m) => {
                                if let Some(g) = &m.group {
                                    if let Some(n) = s.groups_in_flight.get_mut(g) {
                                        *n -= 1;
                                        if *n == 0 {
                                            s.groups_in_flight.remove(g);
                                        }
                                    }
                                }
                                if release && entry["VisibilityTimeout"].as_u64() == Some(0) {
                                    s.visible.push_front(m);
                                } else if release {
                                    // Hidden "until later": kept in flight under a new handle.
                                    let key = format!("{handle}+");
                                    s.in_flight.insert(key, m);
                                }
                                successful.push(json!({"Id": entry["Id"]}));
                            }
                            None => failed.push(json!({
                                "Id": entry["Id"], "Code": "ReceiptHandleIsInvalid",
                                "SenderFault": true, "Message": "unknown receipt handle"
                            })),
                        }
                    }
                }
                queue.arrived.notify_waiters();
                ok(json!({"Successful": successful, "Failed": failed}))
            }
            _ => error(StatusCode::BAD_REQUEST, "UnsupportedOperation", op),
        }
    }

    async fn kinesis(&self, op: &str, req: Value) -> Response {
        if op == "GetRecords" {
            return self.get_records(&req);
        }
        if op == "SubscribeToShard" {
            return self.subscribe(&req);
        }
        let Some(stream) = self.stream(&req) else {
            return error(
                StatusCode::BAD_REQUEST,
                "ResourceNotFoundException",
                "no such stream",
            );
        };
        match op {
            "ListShards" => ok(json!({"Shards": (0..stream.shards.len()).map(|i| json!({
                "ShardId": shard_id(i),
                "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "340282366920938463463374607431768211455"},
                "SequenceNumberRange": {"StartingSequenceNumber": "0"},
            })).collect::<Vec<_>>()})),
            "GetShardIterator" => {
                let shard = shard_index(req["ShardId"].as_str().unwrap_or_default());
                let Some(s) = shard.and_then(|i| stream.shards.get(i)) else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "ResourceNotFoundException",
                        "no such shard",
                    );
                };
                let records = &s.lock().unwrap_or_else(|e| e.into_inner()).records;
                let seq = req["StartingSequenceNumber"].as_str().unwrap_or_default();
                let position = match req["ShardIteratorType"].as_str().unwrap_or_default() {
                    "LATEST" => records.len(),
                    "AT_SEQUENCE_NUMBER" => records.partition_point(|r| r.sequence.as_str() < seq),
                    "AFTER_SEQUENCE_NUMBER" => {
                        records.partition_point(|r| r.sequence.as_str() <= seq)
                    }
                    "AT_TIMESTAMP" => {
                        let t = req["Timestamp"].as_f64().unwrap_or(0.0);
                        records.partition_point(|r| r.arrival_secs < t)
                    }
                    _ => 0,
                };
                let name = req["StreamName"].as_str().unwrap_or_default();
                ok(json!({"ShardIterator": format!("{name}|{}|{position}", shard.unwrap_or(0))}))
            }
            "PutRecord" | "PutRecords" => {
                let entries: Vec<Value> = if op == "PutRecord" {
                    vec![req.clone()]
                } else {
                    req["Records"].as_array().cloned().unwrap_or_default()
                };
                let mut out = Vec::new();
                for e in entries {
                    let key = e["PartitionKey"].as_str().unwrap_or_default();
                    let data = e["Data"].as_str().unwrap_or_default().to_string();
                    let (shard, sequence) = stream.append(key, data);
                    out.push(json!({"ShardId": shard_id(shard), "SequenceNumber": sequence}));
                }
                if op == "PutRecord" {
                    ok(out.pop().unwrap_or(Value::Null))
                } else {
                    ok(json!({"FailedRecordCount": 0, "Records": out}))
                }
            }
            "DescribeStreamSummary" => ok(json!({"StreamDescriptionSummary": {
                "StreamName": req["StreamName"], "StreamStatus": "ACTIVE",
                "OpenShardCount": stream.shards.len(),
            }})),
            _ => error(StatusCode::BAD_REQUEST, "UnsupportedOperation", op),
        }
    }

    fn get_records(&self, req: &Value) -> Response {
        let iterator = req["ShardIterator"].as_str().unwrap_or_default();
        let mut parts = iterator.split('|');
        let (Some(name), Some(shard), Some(position)) = (parts.next(), parts.next(), parts.next())
        else {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidArgumentException",
                "bad iterator",
            );
        };
        let (Ok(shard), Ok(position)) = (shard.parse::<usize>(), position.parse::<usize>()) else {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidArgumentException",
                "bad iterator",
            );
        };
        let Some(stream) = self.stream_named(name) else {
            return error(
                StatusCode::BAD_REQUEST,
                "ResourceNotFoundException",
                "no such stream",
            );
        };
        stream.get_records_calls.fetch_add(1, Ordering::Relaxed);
        let Some(s) = stream.shards.get(shard) else {
            return error(
                StatusCode::BAD_REQUEST,
                "ResourceNotFoundException",
                "no such shard",
            );
        };
        let limit = req["Limit"].as_u64().unwrap_or(10_000).min(10_000) as usize;
        let s = s.lock().unwrap_or_else(|e| e.into_inner());
        let end = (position + limit).min(s.records.len());
        let records: Vec<Value> = s.records[position.min(end)..end]
            .iter()
            .map(|r| {
                json!({
                    "SequenceNumber": r.sequence,
                    "ApproximateArrivalTimestamp": r.arrival_secs,
                    "Data": r.data,
                    "PartitionKey": r.key,
                })
            })
            .collect();
        // How far the next unread record is behind now, as Kinesis reports it; 0 when caught up.
        let behind = s
            .records
            .get(end)
            .map(|r| (now_millis() as f64 - r.arrival_secs * 1000.0).max(1.0) as u64)
            .unwrap_or(0);
        ok(json!({
            "Records": records,
            "NextShardIterator": format!("{name}|{shard}|{end}"),
            "MillisBehindLatest": behind,
        }))
    }
}

fn receive(queue: &SqsQueue, max: usize) -> Vec<Value> {
    let mut s = queue.state.lock().unwrap_or_else(|e| e.into_inner());
    let mut taken = Vec::new();
    let mut held: HashSet<String> = HashSet::new();
    let mut index = 0;
    while taken.len() < max && index < s.visible.len() {
        let group = s.visible[index].group.clone();
        if let Some(g) = &group {
            // A FIFO group in flight from an earlier receive is held back.
            if s.groups_in_flight.contains_key(g) && !held.contains(g) {
                index += 1;
                continue;
            }
        }
        let Some(mut m) = s.visible.remove(index) else {
            break;
        };
        if let Some(g) = group {
            *s.groups_in_flight.entry(g.clone()).or_insert(0) += 1;
            held.insert(g);
        }
        m.receives += 1;
        let handle = format!("{}-{}", m.id, m.receives);
        let mut attributes = json!({
            "SentTimestamp": m.sent_millis.to_string(),
            "ApproximateReceiveCount": m.receives.to_string(),
            "ApproximateFirstReceiveTimestamp": now_millis().to_string(),
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
        });
        if queue.fifo {
            attributes["MessageGroupId"] = json!(m.group);
            attributes["SequenceNumber"] = json!(format!("{:020}", m.sequence));
            attributes["MessageDeduplicationId"] = json!(m.id);
        }
        taken.push(json!({
            "MessageId": m.id, "ReceiptHandle": handle, "MD5OfBody": m.md5,
            "Body": m.body, "Attributes": attributes,
        }));
        s.in_flight.insert(handle, m);
    }
    taken
}

impl Stream {
    fn append(&self, key: &str, data: String) -> (usize, String) {
        let shard = key
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
            % self.shards.len();
        let n = self.next_sequence.fetch_add(1, Ordering::Relaxed);
        // Kinesis sequence numbers are long decimal strings; fixed width keeps them ordered.
        let sequence = format!("4961{n:052}");
        let arrival_secs = now_millis() as f64 / 1000.0;
        self.shards[shard]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .records
            .push(KinesisRecord {
                sequence: sequence.clone(),
                key: key.to_string(),
                data,
                arrival_secs,
            });
        self.appended.notify_waiters();
        (shard, sequence)
    }
}

fn shard_id(i: usize) -> String {
    format!("shardId-{i:012}")
}

fn shard_index(id: &str) -> Option<usize> {
    id.strip_prefix("shardId-")?.parse().ok()
}

async fn dispatch(
    State(backend): State<Arc<Loopback>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match target.split_once('.') {
        Some(("AmazonSQS", op)) => backend.sqs(op, req).await,
        Some(("Kinesis_20131202", op)) => backend.kinesis(op, req).await,
        _ => error(StatusCode::BAD_REQUEST, "UnknownOperation", &target),
    }
}
