//! Every Lambda API request that is not about event source mappings (CreateFunction,
//! Invoke, GetFunction, ...) goes unchanged to the Lambda endpoint esmd itself invokes
//! (`AWS_ENDPOINT_URL_LAMBDA`, `[aws].endpoint_url`, `AWS_ENDPOINT_URL`), so that a whole
//! deployment can point its Lambda endpoint at esmd. This works with emulators (LocalStack,
//! moto, the Runtime Interface Emulator, cargo-lambda), which do not check signatures; real
//! AWS would refuse the forwarded signature, so without an emulator endpoint esmd answers
//! with an error instead of forwarding.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use super::{Api, ApiError};

/// The forwarding client and where it forwards to.
pub(crate) struct Proxy {
    /// `http://host:port` of the Lambda endpoint, or `None` for real AWS.
    upstream: Option<String>,
    client: Client<HttpConnector, Body>,
}

impl Proxy {
    pub(crate) fn new(upstream: Option<String>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Proxy {
            upstream: upstream.map(|u| u.trim_end_matches('/').to_string()),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

/// Headers that belong to one hop, not to the request.
const HOP_BY_HOP: [&str; 4] = ["host", "connection", "transfer-encoding", "keep-alive"];

pub(crate) async fn forward(State(api): State<Arc<Api>>, request: Request) -> Response {
    let Some(upstream) = &api.proxy.upstream else {
        return ApiError {
            status: axum::http::StatusCode::BAD_GATEWAY,
            kind: "ServiceException",
            message: format!(
                "esmd answers only the event-source-mapping operations and forwards the rest \
                 ({} {}) to a Lambda emulator; no Lambda endpoint is configured \
                 (AWS_ENDPOINT_URL_LAMBDA or [aws].endpoint_url)",
                request.method(),
                request.uri().path()
            ),
        }
        .into_response();
    };
    if !upstream.starts_with("http://") {
        return ApiError::service(format!(
            "esmd forwards Lambda API requests over plain HTTP only (to an emulator), not to {upstream}"
        ))
        .into_response();
    }
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    parts.uri = match format!("{upstream}{path}").parse() {
        Ok(uri) => uri,
        Err(e) => {
            return ApiError::service(format!("bad upstream URL {upstream}{path}: {e}"))
                .into_response()
        }
    };
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    match api
        .proxy
        .client
        .request(axum::http::Request::from_parts(parts, body))
        .await
    {
        Ok(response) => response.map(Body::new),
        Err(e) => ApiError {
            status: axum::http::StatusCode::BAD_GATEWAY,
            kind: "ServiceException",
            message: format!("the Lambda endpoint {upstream} did not answer: {e}"),
        }
        .into_response(),
    }
}
