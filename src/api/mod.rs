//! The Lambda event-source-mapping API (`[lambda_api] listen`), so that aws-cli, the SDKs,
//! CDK or Terraform pointed at esmd create, read, change and delete its mappings:
//! `CreateEventSourceMapping`, `GetEventSourceMapping`, `UpdateEventSourceMapping`,
//! `DeleteEventSourceMapping` and `ListEventSourceMappings`, with the paths, shapes, status
//! codes and error types of the botocore model for `lambda` (2015-03-31).
//!
//! - [`shape`]: the JSON shapes, translated to the config file's mapping table and validated
//!   by the same code as the file.
//! - [`control`]: the mappings and their AWS states; the daemon's supervisor applies its
//!   changes through the same path as a SIGHUP reload.
//! - [`proxy`]: any other Lambda request goes unchanged to the Lambda endpoint esmd invokes.
//!
//! API mappings are stored in the state store ([`MappingCatalog`]) before the answer, so
//! they survive a restart, with their stream checkpoints (keyed by uuid as always).

pub(crate) mod control;
pub(crate) mod error;
pub(crate) mod proxy;
pub(crate) mod shape;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::catalog::{MappingCatalog, StoredMapping};
use crate::telemetry::events::ApiMappingChanged;
use crate::telemetry::Registry;
use control::{Control, Entry};
pub(crate) use error::ApiError;
use shape::Operation;

/// What the API handlers share.
pub(crate) struct Api {
    pub(crate) control: Arc<Mutex<Control>>,
    pub(crate) catalog: Arc<dyn MappingCatalog>,
    /// For `LastProcessingResult`.
    pub(crate) registry: Arc<Registry>,
    /// Tells the supervisor that [`Control`] changed.
    pub(crate) changed: mpsc::UnboundedSender<()>,
    pub(crate) proxy: proxy::Proxy,
}

/// Seconds since the epoch, as `LastModified` counts them.
pub(crate) fn now() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

const COLLECTION: &str = "/2015-03-31/event-source-mappings";

pub(crate) fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route(COLLECTION, get(list).post(create))
        .route(&format!("{COLLECTION}/"), get(list).post(create))
        .route(
            &format!("{COLLECTION}/{{uuid}}"),
            get(read).put(update).delete(delete),
        )
        .fallback(proxy::forward)
        .with_state(api)
}

impl Api {
    fn render(&self, entry: &Entry) -> Value {
        let last_processing_result = self
            .registry
            .all()
            .iter()
            .find(|s| s.uuid == entry.mapping.uuid)
            .map_or_else(
                || "No records processed".into(),
                |s| s.last_processing_result(),
            );
        shape::render(
            &entry.mapping,
            &shape::Status {
                state: entry.state(),
                last_modified: entry.last_modified,
                last_processing_result,
            },
        )
    }

    fn answer(&self, status: StatusCode, entry: &Entry) -> Response {
        (status, Json(self.render(entry))).into_response()
    }

    fn notify(&self) {
        // The receiver goes only when the daemon stops; then nothing needs applying.
        let _ = self.changed.send(());
    }

    async fn store(
        &self,
        uuid: &str,
        document: &Map<String, Value>,
        at: f64,
    ) -> Result<(), ApiError> {
        let row = StoredMapping {
            uuid: uuid.to_string(),
            document: document.clone(),
            last_modified: at,
        };
        self.catalog
            .put(&row)
            .await
            .map_err(|e| ApiError::service(format!("cannot store mapping {uuid}: {e}")))
    }
}

fn body_object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid("the request body must be a JSON object")),
        Err(e) => Err(ApiError::invalid(format!(
            "the request body is not JSON: {e}"
        ))),
    }
}

async fn create(State(api): State<Arc<Api>>, body: Bytes) -> Result<Response, ApiError> {
    let document = body_object(&body)?;
    shape::check_fields(&document, Operation::Create)?;
    if document.get("EventSourceArn").is_none_or(Value::is_null) {
        return Err(ApiError::invalid(
            "EventSourceArn is required (esmd runs SQS, Kinesis and DynamoDB Streams mappings)",
        ));
    }
    let uuid = uuid::Uuid::new_v4().to_string();
    let mapping = shape::to_mapping(&document, &uuid)?;
    let mut control = api.control.lock().await;
    control.check_unique(&mapping)?;
    let at = now();
    api.store(&uuid, &document, at).await?;
    let entry = control.create(mapping, document, at)?.clone();
    drop(control);
    api.notify();
    ApiMappingChanged {
        uuid: &uuid,
        operation: "create",
        state: entry.state(),
    }
    .emit();
    Ok(api.answer(StatusCode::ACCEPTED, &entry))
}

async fn read(State(api): State<Arc<Api>>, Path(uuid): Path<String>) -> Result<Response, ApiError> {
    let control = api.control.lock().await;
    let entry = control
        .get(&uuid)
        .ok_or_else(|| ApiError::not_found(&uuid))?;
    Ok(api.answer(StatusCode::OK, entry))
}

async fn update(
    State(api): State<Arc<Api>>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let changes = body_object(&body)?;
    shape::check_fields(&changes, Operation::Update)?;
    let mut control = api.control.lock().await;
    let merged = shape::merge(&control.changeable(&uuid)?.document, &changes);
    let mapping = shape::to_mapping(&merged, &uuid)?;
    control.check_unique(&mapping)?;
    let at = now();
    api.store(&uuid, &merged, at).await?;
    let entry = control.update(mapping, merged, at)?.clone();
    drop(control);
    api.notify();
    ApiMappingChanged {
        uuid: &uuid,
        operation: "update",
        state: entry.state(),
    }
    .emit();
    Ok(api.answer(StatusCode::ACCEPTED, &entry))
}

async fn delete(
    State(api): State<Arc<Api>>,
    Path(uuid): Path<String>,
) -> Result<Response, ApiError> {
    let mut control = api.control.lock().await;
    control.changeable(&uuid)?;
    api.catalog
        .remove(&uuid)
        .await
        .map_err(|e| ApiError::service(format!("cannot delete mapping {uuid}: {e}")))?;
    let entry = control.delete(&uuid, now())?.clone();
    drop(control);
    api.notify();
    ApiMappingChanged {
        uuid: &uuid,
        operation: "delete",
        state: entry.state(),
    }
    .emit();
    Ok(api.answer(StatusCode::ACCEPTED, &entry))
}

/// `ListEventSourceMappings`: filtered by `EventSourceArn` and `FunctionName` (a name or an
/// ARN), `MaxItems` (1-10,000, default 100) per page, `Marker` from the previous page.
async fn list(
    State(api): State<Arc<Api>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let max_items = match query.get("MaxItems") {
        None => 100,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(format!(
                    "MaxItems must be an integer from 1 to 10000 (got {text})"
                )))
            }
        },
    };
    let start = match query.get("Marker") {
        None => 0,
        Some(marker) => marker
            .parse::<usize>()
            .map_err(|_| ApiError::invalid(format!("Marker `{marker}` was not issued by esmd")))?,
    };
    let control = api.control.lock().await;
    let matching: Vec<&Entry> = control
        .entries()
        .iter()
        .filter(|e| {
            query
                .get("EventSourceArn")
                .is_none_or(|arn| e.mapping.source.arn() == arn)
        })
        .filter(|e| {
            query.get("FunctionName").is_none_or(|f| {
                *f == e.mapping.function_name || *f == shape::function_arn(&e.mapping)
            })
        })
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(max_items)
        .map(|e| api.render(e))
        .collect();
    let mut out = serde_json::json!({ "EventSourceMappings": page });
    if start + max_items < matching.len() {
        out["NextMarker"] = (start + max_items).to_string().into();
    }
    Ok(Json(out).into_response())
}

/// Binds the listener (a taken port fails at start-up) and returns the serving future. This
/// API changes what runs: beyond loopback (which validation allows only with
/// `allow_remote = true`) it is logged as a warning.
pub(crate) async fn serve(
    addr: SocketAddr,
    api: Arc<Api>,
    shutdown: CancellationToken,
) -> Result<impl std::future::Future<Output = ()>, crate::http::BindError> {
    crate::http::serve_router(addr, router(api), shutdown, "the Lambda API").await
}

#[cfg(test)]
mod tests;
