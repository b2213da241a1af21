//! The function side: a Lambda Invoke endpoint (`POST /2015-03-31/functions/{name}/invocations`)
//! that answers success at once and notes when each record first reached it.
//!
//! Records carry their index at the start of their payload (`"<index>|padding"`): in an SQS
//! body, in Kinesis data (base64), or in a DynamoDB item's `id` attribute. The arrival time is
//! taken when the request's head has been read, before its body: the first byte of the
//! invocation, as closely as an HTTP server can see it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine;
use serde_json::Value;

#[derive(Default)]
pub struct Arrivals {
    /// First arrival per record index.
    pub first: Vec<Option<Instant>>,
    pub delivered: usize,
    pub duplicates: usize,
    pub invocations: usize,
    pub payload_bytes: usize,
    pub last: Option<Instant>,
    pub first_any: Option<Instant>,
}

#[derive(Clone, Default)]
pub struct Function {
    pub arrivals: Arc<Mutex<Arrivals>>,
}

impl Function {
    /// Serves on a free loopback port; returns the endpoint URL.
    pub async fn start(&self) -> anyhow::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route(
                "/2015-03-31/functions/{name}/invocations",
                axum::routing::post(invoke),
            )
            .with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(url)
    }

    /// Forgets earlier arrivals and expects `count` records.
    pub fn reset(&self, count: usize) {
        let mut a = self.lock();
        *a = Arrivals {
            first: vec![None; count],
            ..Arrivals::default()
        };
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Arrivals> {
        self.arrivals.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn delivered(&self) -> usize {
        self.lock().delivered
    }
}

/// The record index at the start of an event record's payload.
fn index_of(record: &Value) -> Option<usize> {
    let text: String = if let Some(body) = record["body"].as_str() {
        body.to_string()
    } else if let Some(data) = record["kinesis"]["data"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .ok()?;
        String::from_utf8_lossy(&bytes[..bytes.len().min(24)]).into_owned()
    } else {
        record["dynamodb"]["NewImage"]["id"]["S"]
            .as_str()?
            .to_string()
    };
    text.split('|').next()?.parse().ok()
}

async fn invoke(State(function): State<Function>, body: Bytes) -> impl IntoResponse {
    let arrived = Instant::now();
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let records = event["Records"].as_array().cloned().unwrap_or_default();
    let mut a = function.lock();
    a.invocations += 1;
    a.payload_bytes += body.len();
    a.first_any.get_or_insert(arrived);
    a.last = Some(arrived);
    for record in &records {
        match index_of(record) {
            Some(i) if i < a.first.len() => {
                if a.first[i].is_none() {
                    a.first[i] = Some(arrived);
                    a.delivered += 1;
                } else {
                    a.duplicates += 1;
                }
            }
            _ => a.duplicates += 1,
        }
    }
    (StatusCode::OK, "{}")
}
