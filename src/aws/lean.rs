//! esmd's own client for the JSON-protocol calls it makes most (`[aws] sqs_client = "lean"`):
//! each request signed with SigV4 by `aws-sigv4` (the signer the SDK itself calls), sent by
//! hyper over kept-alive HTTP/1.1 (rustls with the system's roots for `https`, as the SDK),
//! its answer read with serde. It skips the SDK's orchestrator, which costs about 100 µs of
//! CPU per request (bench/README.md, the lean loop) whatever the request does.
//!
//! What the orchestrator did that esmd needs is done here: credentials from the same provider
//! chain, cached until five minutes before they expire; the endpoint resolved once by the
//! SDK's own resolver (or the configured `AWS_ENDPOINT_URL*`); a 5 s connect and a 30 s
//! attempt bound; failures classified by [`super::error::classify`], the one classification.
//! Retries stay with the callers, as for the SDK clients (their retry is disabled).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::provider::{error::CredentialsError, ProvideCredentials};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};

use super::error::{bare_code, classify, AwsFailure, FailureClass};

/// Credentials are fetched again this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// One service's JSON-protocol endpoint, signed and bounded.
pub(crate) struct JsonClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: http::Uri,
    host: String,
    /// `AmazonSQS`, prefixed to the operation in `x-amz-target`.
    target_prefix: &'static str,
    content_type: &'static str,
    /// The signing name (`sqs`).
    service: &'static str,
    region: String,
    credentials: CredentialsCache,
    attempt_timeout: Duration,
}

/// How a [`JsonClient`] speaks to its service.
pub(crate) struct Protocol {
    pub(crate) service: &'static str,
    pub(crate) target_prefix: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) attempt_timeout: Duration,
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    #[error("endpoint {0:?} is not a URL with a host")]
    Endpoint(String),
    #[error("no region is configured ([aws] region, AWS_REGION or the shared config)")]
    NoRegion,
    #[error("no credentials provider is configured")]
    NoCredentials,
    #[error("cannot load the system's TLS roots: {0}")]
    Tls(std::io::Error),
}

impl JsonClient {
    pub(crate) fn new(
        sdk: &aws_config::SdkConfig,
        endpoint: &str,
        protocol: Protocol,
    ) -> Result<Self, BuildError> {
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|_| BuildError::Endpoint(endpoint.into()))?;
        let host = uri
            .authority()
            .ok_or_else(|| BuildError::Endpoint(endpoint.into()))?
            .to_string();
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(Duration::from_secs(5)));
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(BuildError::Tls)?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Ok(JsonClient {
            http: Client::builder(hyper_util::rt::TokioExecutor::new()).build(https),
            uri,
            host,
            target_prefix: protocol.target_prefix,
            content_type: protocol.content_type,
            service: protocol.service,
            region: sdk.region().ok_or(BuildError::NoRegion)?.to_string(),
            credentials: CredentialsCache::new(
                sdk.credentials_provider()
                    .ok_or(BuildError::NoCredentials)?,
            ),
            attempt_timeout: protocol.attempt_timeout,
        })
    }

    /// One call: `operation`'s JSON `body` in, the answer's body out.
    pub(crate) async fn call(&self, operation: &str, body: Vec<u8>) -> Result<Bytes, AwsFailure> {
        let request = self.signed(operation, body).await?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                transient(format!(
                    "{} {operation}: {}",
                    self.service,
                    super::error::error_chain(&e)
                ))
            })?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| {
                transient(format!(
                    "{} {operation}: reading the response: {e}",
                    self.service
                ))
            })?;
            Ok::<_, AwsFailure>((parts, body.to_bytes()))
        };
        let (parts, body) = tokio::time::timeout(self.attempt_timeout, exchange)
            .await
            .map_err(|_| {
                transient(format!(
                    "{} {operation}: no answer within {:?}",
                    self.service, self.attempt_timeout
                ))
            })??;
        if parts.status.is_success() {
            return Ok(body);
        }
        Err(service_failure(
            parts.status.as_u16(),
            &parts.headers,
            &body,
        ))
    }

    async fn signed(
        &self,
        operation: &str,
        body: Vec<u8>,
    ) -> Result<http::Request<Full<Bytes>>, AwsFailure> {
        let target = format!("{}.{operation}", self.target_prefix);
        let mut request = http::Request::post(self.uri.clone())
            .header(http::header::HOST, &self.host)
            .header(http::header::CONTENT_TYPE, self.content_type)
            .header(http::header::CONTENT_LENGTH, body.len())
            .header("x-amz-target", &target)
            .body(())
            .map_err(|e| rejected(format!("{target}: {e}")))?;
        let identity: Identity = self.credentials.get().await?.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| rejected(format!("{target}: signing: {e}")))?
            .into();
        let headers = request
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
        let uri = request.uri().to_string();
        let signable = SignableRequest::new("POST", &uri, headers, SignableBody::Bytes(&body))
            .map_err(|e| rejected(format!("{target}: signing: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| rejected(format!("{target}: signing: {e}")))?
            .into_parts();
        instructions.apply_to_request_http1x(&mut request);
        Ok(request.map(|()| Full::new(Bytes::from(body))))
    }
}

fn failure(class: FailureClass, message: String) -> AwsFailure {
    AwsFailure {
        code: String::new(),
        status: None,
        retry_after: None,
        message,
        class,
    }
}

fn transient(message: String) -> AwsFailure {
    failure(FailureClass::Transient, message)
}

fn rejected(message: String) -> AwsFailure {
    failure(FailureClass::Rejected, message)
}

/// A service's error answer. The code is the query-compatible one when the service sends it
/// (`x-amzn-query-error: AWS.SimpleQueueService.NonExistentQueue;Sender`, as the SDK reads
/// it), else the body's `__type`; then the same classification as every SDK error.
pub(crate) fn service_failure(status: u16, headers: &http::HeaderMap, body: &[u8]) -> AwsFailure {
    #[derive(serde::Deserialize, Default)]
    struct ErrorBody {
        #[serde(rename = "__type", default)]
        kind: String,
        #[serde(alias = "Message", default)]
        message: Option<String>,
    }
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let code = header("x-amzn-query-error")
        .and_then(|v| v.split(';').next())
        .or_else(|| header("x-amzn-errortype"))
        .filter(|c| !c.is_empty())
        .unwrap_or(&parsed.kind);
    let code = bare_code(code).to_string();
    let message = match (code.is_empty(), parsed.message) {
        (false, Some(m)) => format!("{code}: {m}"),
        (true, Some(m)) => m,
        (false, None) => code.clone(),
        (true, None) => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    };
    AwsFailure {
        class: classify(&code, Some(status)),
        retry_after: header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs),
        status: Some(status),
        code,
        message,
    }
}

/// The provider chain's credentials, kept until shortly before they expire.
struct CredentialsCache {
    provider: SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

impl CredentialsCache {
    fn new(provider: SharedCredentialsProvider) -> Self {
        CredentialsCache {
            provider,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    async fn get(&self) -> Result<Credentials, AwsFailure> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| fresh(c, SystemTime::now())) {
            return Ok(c.clone());
        }
        let loaded = self.provider.provide_credentials().await.map_err(|e| {
            let class = match e {
                CredentialsError::ProviderTimedOut(_) | CredentialsError::ProviderError(_) => {
                    FailureClass::Transient
                }
                _ => FailureClass::AccessDenied,
            };
            failure(
                class,
                format!("no credentials: {}", super::error::error_chain(&e)),
            )
        })?;
        *cached = Some(loaded.clone());
        Ok(loaded)
    }
}

/// Whether credentials may still sign at `now`.
fn fresh(c: &Credentials, now: SystemTime) -> bool {
    c.expiry().is_none_or(|expiry| {
        expiry
            .duration_since(now)
            .is_ok_and(|left| left > REFRESH_BEFORE_EXPIRY)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn the_query_compatible_code_wins_over_the_json_type() {
        let f = service_failure(
            400,
            &headers(&[("x-amzn-query-error", "AWS.SimpleQueueService.NonExistentQueue;Sender")]),
            br#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The specified queue does not exist."}"#,
        );
        assert_eq!(f.code, "NonExistentQueue");
        assert_eq!(f.class, FailureClass::NotFound);
        assert_eq!(
            f.message,
            "NonExistentQueue: The specified queue does not exist."
        );
        let f = service_failure(
            400,
            &http::HeaderMap::new(),
            br#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"gone"}"#,
        );
        assert_eq!(
            (f.code.as_str(), f.class),
            ("QueueDoesNotExist", FailureClass::NotFound)
        );
    }

    #[test]
    fn throttles_and_server_errors_are_retried_and_keep_retry_after() {
        let f = service_failure(
            400,
            &headers(&[("retry-after", "3")]),
            br#"{"__type":"com.amazonaws.sqs#RequestThrottled","Message":"slow down"}"#,
        );
        assert_eq!(f.class, FailureClass::Throttled);
        assert_eq!(f.retry_after, Some(Duration::from_secs(3)));
        assert_eq!(f.message, "RequestThrottled: slow down");
        let f = service_failure(503, &http::HeaderMap::new(), b"<html>busy</html>");
        assert_eq!(
            (f.class, f.message.as_str()),
            (FailureClass::Transient, "<html>busy</html>")
        );
        let f = service_failure(
            403,
            &http::HeaderMap::new(),
            br#"{"__type":"AccessDenied"}"#,
        );
        assert_eq!(f.class, FailureClass::AccessDenied);
    }

    #[test]
    fn credentials_are_refreshed_five_minutes_before_they_expire() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let expiring = |secs| {
            Credentials::new(
                "a",
                "b",
                Some("t".into()),
                Some(now + Duration::from_secs(secs)),
                "p",
            )
        };
        assert!(fresh(&Credentials::new("a", "b", None, None, "p"), now));
        assert!(fresh(&expiring(301), now));
        assert!(!fresh(&expiring(300), now));
        assert!(!fresh(&expiring(0), now));
        let past = Credentials::new("a", "b", None, Some(now - Duration::from_secs(1)), "p");
        assert!(!fresh(&past, now));
    }
}
