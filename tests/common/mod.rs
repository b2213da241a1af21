//! The integration-test harness: a real moto server, a test-owned function speaking the Lambda
//! Invoke API, and the real `esmd` binary as a child process.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A moto server on a free loopback port, killed on drop.
///
/// With `ESMD_TEST_ENDPOINT` set (scripts/localstack-check.sh sets it to LocalStack), no moto is
/// started: the tests use that endpoint, after deleting every queue and stream left by the
/// previous test. Run such tests one at a time (`--test-threads=1`).
pub struct Moto {
    child: Option<Child>,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        if let Ok(endpoint) = std::env::var("ESMD_TEST_ENDPOINT") {
            let target = endpoint.clone();
            std::thread::spawn(move || {
                tokio::runtime::Runtime::new()
                    .expect("runtime")
                    .block_on(clear_external(&target))
            })
            .join()
            .expect("clear the external endpoint");
            return Moto {
                child: None,
                endpoint,
            };
        }
        let port = free_port();
        let binary = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let mut child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary} (pip install 'moto[server]'): {e}"));
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_get(&format!("{endpoint}/moto-api/")).is_ok() {
                return Moto {
                    child: Some(child),
                    endpoint,
                };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("moto server did not start on {endpoint}");
    }
}

/// Deletes every queue and stream on a shared endpoint, so that each test starts clean.
async fn clear_external(endpoint: &str) {
    let config = sdk_config(endpoint).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    if let Ok(out) = sqs.list_queues().send().await {
        for url in out.queue_urls() {
            let _ = sqs.delete_queue().queue_url(url).send().await;
        }
    }
    let kinesis = aws_sdk_kinesis::Client::new(&config);
    if let Ok(out) = kinesis.list_streams().send().await {
        for name in out.stream_names() {
            let _ = kinesis
                .delete_stream()
                .stream_name(name)
                .enforce_consumer_deletion(true)
                .send()
                .await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let left = kinesis
            .list_streams()
            .send()
            .await
            .map(|o| o.stream_names().len())
            .unwrap_or(0);
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("streams on {endpoint} were not deleted in time");
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn set_test_credentials() {
    // Set before any thread reads the environment (each test binary's tests share it).
    // A 12-digit key id is the account LocalStack files resources under; moto ignores it.
    std::env::set_var("AWS_ACCESS_KEY_ID", ACCOUNT);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_REGION", REGION);
}

pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    set_test_credentials();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            ACCOUNT, "testing", None, None, "test",
        ))
        .load()
        .await
}

pub async fn sqs_client(moto: &Moto) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&sdk_config(&moto.endpoint).await)
}

/// One invocation the function received.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub function: String,
    pub event: Value,
    pub started: Instant,
}

impl Invocation {
    pub fn records(&self) -> &Vec<Value> {
        self.event["Records"].as_array().expect("Records array")
    }
    pub fn bodies(&self) -> Vec<String> {
        self.records()
            .iter()
            .map(|r| r["body"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// What the function answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub function_error: Option<&'static str>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply {
            status: 200,
            function_error: None,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
    pub fn function_error() -> Reply {
        Reply {
            status: 200,
            function_error: Some("Unhandled"),
            body: r#"{"errorMessage":"boom","errorType":"Error"}"#.into(),
            delay: Duration::ZERO,
        }
    }
    pub fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            function_error: None,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Behaviour = dyn Fn(&Invocation, usize) -> Reply + Send + Sync;

#[derive(Clone)]
struct FnState {
    calls: Arc<Mutex<Vec<Invocation>>>,
    completed: Arc<Mutex<usize>>,
    behaviour: Arc<Behaviour>,
}

/// A test-owned HTTP server speaking `POST /2015-03-31/functions/{name}/invocations`.
pub struct FunctionServer {
    pub endpoint: String,
    calls: Arc<Mutex<Vec<Invocation>>>,
    completed: Arc<Mutex<usize>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FunctionServer {
    /// `behaviour(invocation, index)` decides each reply; `index` counts from 0. The server
    /// runs on its own thread and runtime, so tests of any flavour can use it.
    pub fn start(behaviour: impl Fn(&Invocation, usize) -> Reply + Send + Sync + 'static) -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let completed = Arc::new(Mutex::new(0));
        let state = FnState {
            calls: Arc::clone(&calls),
            completed: Arc::clone(&completed),
            behaviour: Arc::new(behaviour),
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                let app = Router::new()
                    .route("/2015-03-31/functions/{name}/invocations", post(invoke))
                    .with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let addr = addr_rx.recv().expect("function server address");
        FunctionServer {
            endpoint: format!("http://{addr}"),
            calls,
            completed,
            stop: Some(stop_tx),
        }
    }

    pub fn calls(&self) -> Vec<Invocation> {
        self.calls.lock().unwrap().clone()
    }

    pub fn completed(&self) -> usize {
        *self.completed.lock().unwrap()
    }

    /// Every record body delivered, in invocation order.
    pub fn bodies(&self) -> Vec<String> {
        self.calls().iter().flat_map(|c| c.bodies()).collect()
    }
}

impl Drop for FunctionServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn invoke(
    State(state): State<FnState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    assert_eq!(
        headers
            .get("x-amz-invocation-type")
            .and_then(|v| v.to_str().ok()),
        Some("RequestResponse"),
        "esmd must invoke synchronously"
    );
    let event: Value = serde_json::from_slice(&body).expect("event is JSON");
    let invocation = Invocation {
        function: name,
        event,
        started: Instant::now(),
    };
    let (reply, index) = {
        let mut calls = state.calls.lock().unwrap();
        let index = calls.len();
        calls.push(invocation.clone());
        ((state.behaviour)(&invocation, index), index)
    };
    let _ = index;
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    *state.completed.lock().unwrap() += 1;
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap(),
        reply.body.clone(),
    )
        .into_response();
    if let Some(kind) = reply.function_error {
        response
            .headers_mut()
            .insert("X-Amz-Function-Error", HeaderValue::from_static(kind));
    }
    if reply.status >= 400 {
        let error_type = match reply.status {
            429 => "TooManyRequestsException",
            404 => "ResourceNotFoundException",
            _ => "ServiceException",
        };
        response
            .headers_mut()
            .insert("x-amzn-ErrorType", HeaderValue::from_static(error_type));
    }
    response
}

/// The `esmd` binary running with a config, killed on drop.
pub struct Esmd {
    child: Option<Child>,
    pub admin: String,
    pub log: PathBuf,
    pub dir: tempfile::TempDir,
    config_path: PathBuf,
    /// The `[http]`, `[state]` and `[daemon]` sections written before each body.
    header: String,
    env: Vec<(String, String)>,
}

impl Esmd {
    /// Writes `[http]` and `[state]` for a free port and a temp dir, then `body`.
    pub fn start(moto: &Moto, function: &FunctionServer, body: &str) -> Esmd {
        Self::start_with_env(moto, function, body, &[])
    }

    pub fn start_with_env(
        moto: &Moto,
        function: &FunctionServer,
        body: &str,
        env: &[(&str, &str)],
    ) -> Esmd {
        Self::start_at(&moto.endpoint, function, body, env)
    }

    /// Like `start_with_env`, with any AWS endpoint (moto, kinesis-local).
    pub fn start_at(
        endpoint: &str,
        function: &FunctionServer,
        body: &str,
        env: &[(&str, &str)],
    ) -> Esmd {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let header = format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n[state]\npath = \"{}\"\n[daemon]\nshutdown_timeout_seconds = 10\n",
            dir.path().join("state.db").display()
        );
        let config_path = dir.path().join("esmd.toml");
        std::fs::write(&config_path, format!("{header}{body}")).expect("write config");
        let log = dir.path().join("esmd.log");
        let mut all_env: Vec<(String, String)> = vec![
            ("AWS_ACCESS_KEY_ID".into(), ACCOUNT.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_ENDPOINT_URL".into(), endpoint.into()),
            ("AWS_ENDPOINT_URL_LAMBDA".into(), function.endpoint.clone()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            (
                "RUST_LOG".into(),
                std::env::var("ESMD_TEST_LOG").unwrap_or_else(|_| "info,esmd=debug".into()),
            ),
        ];
        all_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut esmd = Esmd {
            child: None,
            admin: format!("http://127.0.0.1:{port}"),
            log,
            dir,
            config_path,
            header,
            env: all_env,
        };
        esmd.spawn();
        esmd
    }

    fn spawn(&mut self) {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_esmd"));
        cmd.args(["run", "--config"])
            .arg(&self.config_path)
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn esmd"));
        self.wait_for(Duration::from_secs(30), "admin endpoint", || {
            http_get(&format!("{}/healthz", self.admin)).is_ok()
        });
    }

    /// Replaces the mappings in the config file (same `[http]`, `[state]`, `[daemon]`); send
    /// SIGHUP to apply it.
    pub fn rewrite_config(&self, body: &str) {
        std::fs::write(&self.config_path, format!("{}{body}", self.header)).expect("write config");
    }

    /// Starts esmd again with the same config and state (after it exited or was killed).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "esmd is still running");
        self.spawn();
    }

    /// Runs `esmd checkpoints --config <this config> <args…>`: (success, stdout, stderr).
    pub fn checkpoints(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_esmd"))
            .arg("checkpoints")
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .output()
            .expect("run esmd checkpoints");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `kill -9`: no drain, no final checkpoint.
    pub fn kill9(&mut self) {
        self.signal("KILL");
        self.wait_exit(Duration::from_secs(10));
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&format!("{}{}", self.admin, path)).unwrap_or((0, String::new()))
    }

    pub fn mappings(&self) -> Value {
        serde_json::from_str(&self.get("/mappings").1).unwrap_or(Value::Null)
    }

    /// The value of a metric line such as `esmd_deleted_events_total{mapping="…",…}`.
    pub fn metric(&self, name: &str, mapping: &str) -> u64 {
        let text = self.get("/metrics").1;
        text.lines()
            .filter(|l| {
                l.starts_with(&format!("{name}{{")) && l.contains(&format!("mapping=\"{mapping}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .next()
            .unwrap_or(0)
    }

    /// Polls `cond` until it holds, or panics with esmd's log.
    pub fn wait_for(&self, timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out waiting for {what}\n--- esmd log ---\n{}",
            self.logs()
        );
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(timeout)
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "esmd did not exit in time\n--- esmd log ---\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Esmd {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- esmd log ---\n{}", self.logs());
        }
    }
}

/// A minimal HTTP/1.1 GET over loopback; returns (status, body).
pub fn http_get(url: &str) -> std::io::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Undo chunked encoding if present (axum uses it for streamed bodies).
    Ok((status, dechunk(&response, body)))
}

fn dechunk(head: &str, body: String) -> String {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body;
    }
    let mut out = String::new();
    let mut rest = body.as_str();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Blocks on a future from a sync test.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Polls an async condition until it holds, or panics (printing esmd's log if given).
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, esmd: Option<&Esmd>, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let log = esmd.map(|e| e.logs()).unwrap_or_default();
    panic!("timed out waiting for {what}\n--- esmd log ---\n{log}");
}

/// A queue in moto.
pub struct Queue {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
    pub arn: String,
    pub name: String,
}

pub fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")
}

impl Queue {
    /// Creates a queue with the given attributes (e.g. `VisibilityTimeout`).
    pub async fn create(moto: &Moto, name: &str, attributes: &[(&str, &str)]) -> Queue {
        use aws_sdk_sqs::types::QueueAttributeName;
        let client = sqs_client(moto).await;
        let mut req = client.create_queue().queue_name(name);
        for (k, v) in attributes {
            req = req.attributes(QueueAttributeName::from(*k), *v);
        }
        let url = req
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("url");
        Queue {
            client,
            url,
            arn: queue_arn(name),
            name: name.into(),
        }
    }

    /// Creates `name` with a DLQ `name-dlq` and a redrive policy.
    pub async fn with_dlq(
        moto: &Moto,
        name: &str,
        visibility: u32,
        max_receive: u32,
    ) -> (Queue, Queue) {
        let dlq = Queue::create(moto, &format!("{name}-dlq"), &[]).await;
        let policy = serde_json::json!({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": max_receive.to_string()}).to_string();
        let q = Queue::create(
            moto,
            name,
            &[
                ("VisibilityTimeout", &visibility.to_string()),
                ("RedrivePolicy", &policy),
            ],
        )
        .await;
        (q, dlq)
    }

    pub async fn send(&self, body: &str) -> String {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .expect("send")
            .message_id
            .expect("id")
    }

    pub async fn send_fifo(&self, body: &str, group: &str, dedup: &str) {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(dedup)
            .send()
            .await
            .expect("send fifo");
    }

    /// (visible, in flight) counts.
    pub async fn counts(&self) -> (u64, u64) {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("attributes");
        let attrs = out.attributes.unwrap_or_default();
        let get = |k: A| attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            get(A::ApproximateNumberOfMessages),
            get(A::ApproximateNumberOfMessagesNotVisible),
        )
    }

    pub async fn is_empty(&self) -> bool {
        self.counts().await == (0, 0)
    }

    /// Receives (without deleting) whatever is visible now.
    pub async fn peek_bodies(&self) -> Vec<String> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .visibility_timeout(0)
            .send()
            .await
            .expect("receive");
        out.messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| m.body)
            .collect()
    }
}

// Kinesis helpers shared by the stream tests.

pub async fn kinesis(endpoint: &str) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(&sdk_config(endpoint).await)
}

pub fn stream_arn(name: &str) -> String {
    format!("arn:aws:kinesis:{REGION}:123456789012:stream/{name}")
}

pub async fn create_stream(client: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .expect("create stream");
    for _ in 0..100 {
        let d = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .expect("describe");
        if d.stream_description_summary()
            .map(|s| s.stream_status().as_str())
            == Some("ACTIVE")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("stream {name} never became active");
}

pub async fn put(client: &aws_sdk_kinesis::Client, stream: &str, key: &str, data: &str) -> String {
    client
        .put_record()
        .stream_name(stream)
        .partition_key(key)
        .data(aws_sdk_kinesis::primitives::Blob::new(
            data.as_bytes().to_vec(),
        ))
        .send()
        .await
        .expect("put record")
        .sequence_number()
        .to_string()
}

/// Waits until a tumbling window of `secs` has just begun, so a short test stays inside it.
pub async fn at_window_start(secs: i64) {
    loop {
        let ms = chrono::Utc::now().timestamp_millis() % (secs * 1000);
        if ms < 300 {
            return;
        }
        tokio::time::sleep(Duration::from_millis((secs * 1000 - ms) as u64 + 20)).await;
    }
}

/// Creates a table keyed by `id` (S) with a stream of the given view; returns the stream ARN.
pub async fn table_with_stream(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    view: aws_sdk_dynamodb::types::StreamViewType,
) -> String {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        StreamSpecification,
    };
    let out = client
        .create_table()
        .table_name(name)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(view)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create table");
    out.table_description()
        .and_then(|t| t.latest_stream_arn())
        .expect("stream arn")
        .to_string()
}
