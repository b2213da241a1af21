//! The test-owned function: an HTTP server speaking the Lambda Invoke API.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One invocation the function received.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub function: String,
    pub event: Value,
    pub started: Instant,
    /// When the function answered (set once its reply's delay has passed; before the answer
    /// is sent, so esmd sees the answer after this).
    pub finished: Option<Instant>,
    /// The access key id the request was signed with (its `Authorization`'s `Credential=`).
    pub access_key: Option<String>,
    /// Its `X-Amz-Security-Token`, sent with temporary credentials.
    pub security_token: Option<String>,
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
        let addr = super::serve_on_own_thread(move |listener| async move {
            let app = Router::new()
                .route("/2015-03-31/functions/{name}/invocations", post(invoke))
                .with_state(state);
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await;
        });
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
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let access_key = header("authorization").and_then(|a| {
        let credential = a.split("Credential=").nth(1)?;
        credential.split('/').next().map(str::to_string)
    });
    let invocation = Invocation {
        function: name,
        event,
        started: Instant::now(),
        finished: None,
        access_key,
        security_token: header("x-amz-security-token"),
    };
    let (reply, index) = {
        let mut calls = state.calls.lock().unwrap();
        let index = calls.len();
        calls.push(invocation.clone());
        ((state.behaviour)(&invocation, index), index)
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    state.calls.lock().unwrap()[index].finished = Some(Instant::now());
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
