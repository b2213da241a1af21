//! A test-owned container credentials endpoint (what ECS and EKS Pod Identity serve at
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI`): each fetch hands out a new generation of temporary
//! credentials (`KEY-<n>`, `TOKEN-<n>`) that expire a set time after it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// One generation handed out.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_key: String,
    pub token: String,
    pub expires: Instant,
}

#[derive(Clone)]
struct CredState {
    issued: Arc<Mutex<Vec<Issued>>>,
    lifetime: Duration,
    failing: Arc<AtomicBool>,
}

pub struct CredentialsServer {
    /// The URL for `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub uri: String,
    issued: Arc<Mutex<Vec<Issued>>>,
    failing: Arc<AtomicBool>,
}

impl CredentialsServer {
    /// Each generation expires `lifetime` after it is fetched.
    pub fn start(lifetime: Duration) -> Self {
        let issued = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(AtomicBool::new(false));
        let state = CredState {
            issued: Arc::clone(&issued),
            lifetime,
            failing: Arc::clone(&failing),
        };
        let addr = super::serve_on_own_thread(move |listener| async move {
            let app = Router::new()
                .route("/credentials", get(credentials))
                .with_state(state);
            let _ = axum::serve(listener, app).await;
        });
        CredentialsServer {
            uri: format!("http://{addr}/credentials"),
            issued,
            failing,
        }
    }

    /// From now on (`true`), every fetch is answered with a 500 and issues nothing.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    pub fn issued(&self) -> Vec<Issued> {
        self.issued.lock().unwrap().clone()
    }
}

async fn credentials(State(state): State<CredState>) -> Result<Json<Value>, StatusCode> {
    if state.failing.load(Ordering::SeqCst) {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let mut issued = state.issued.lock().unwrap();
    let n = issued.len() + 1;
    let expiration = chrono::DateTime::<chrono::Utc>::from(SystemTime::now() + state.lifetime);
    let generation = Issued {
        access_key: format!("KEY-{n}"),
        token: format!("TOKEN-{n}"),
        expires: Instant::now() + state.lifetime,
    };
    let body = json!({
        "AccessKeyId": generation.access_key,
        "SecretAccessKey": format!("secret-{n}"),
        "Token": generation.token,
        "Expiration": expiration.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    issued.push(generation);
    Ok(Json(body))
}
