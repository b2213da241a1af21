//! esmd's own client for the calls it makes for every batch (`[aws] client = "lean"`: SQS's
//! ReceiveMessage and DeleteMessageBatch, Kinesis's GetRecords, Lambda's Invoke): each request
//! signed with SigV4 ([`sigv4`], held to `aws-sigv4`'s signatures, the signer the SDK calls,
//! with the day's key derived once a day), sent by hyper over kept-alive HTTP/1.1
//! (rustls with the system's roots for `https`, as the SDK), its answer read with serde. It
//! skips the SDK's orchestrator, which costs about 100 µs of CPU per request whatever the
//! request does (bench/README.md, the lean loop).
//!
//! What the orchestrator did that esmd needs is done here: credentials from the same provider
//! chain, cached until five minutes before they expire ([`credentials`]); the endpoint
//! configured (`AWS_ENDPOINT_URL*`, `[aws] endpoint_url`) or resolved once by the SDK's own
//! resolver; a 5 s connect and a per-service attempt bound; failures classified by
//! [`super::error::classify`], the one classification ([`json::service_failure`]). Retries
//! stay with the callers, as for the SDK clients, whose own retries are disabled.

mod credentials;
pub(crate) mod json;
mod sigv4;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};

use super::error::{AwsFailure, FailureClass};
use credentials::CredentialsCache;
pub(crate) use json::JsonClient;
use sigv4::Signer;

/// One service's endpoint: requests signed, sent and bounded in time.
pub(crate) struct SignedClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The endpoint, without a trailing `/`.
    base: String,
    host: String,
    /// The signing name (`sqs`, `lambda`).
    service: &'static str,
    credentials: CredentialsCache,
    signer: Signer,
    attempt_timeout: Duration,
    /// The service's clock minus ours, in milliseconds, learnt from the `Date` of an error
    /// answer (a request signed with a skewed clock is refused) and added to the signing
    /// time, as the SDK's clock-skew interceptor does.
    skew_ms: AtomicI64,
}

/// A service's answer, its body read up to a limit.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
    /// The body passed the limit, as declared or as read; `body` is then empty.
    pub(crate) over_limit: bool,
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    #[error("endpoint {0:?} is not a URL with a host and no path")]
    Endpoint(String),
    #[error("no region is configured ([aws] region, AWS_REGION or the shared config)")]
    NoRegion,
    #[error("no credentials provider is configured")]
    NoCredentials,
    #[error("cannot load the system's TLS roots: {0}")]
    Tls(std::io::Error),
}

impl SignedClient {
    pub(crate) fn new(
        sdk: &aws_config::SdkConfig,
        endpoint: &str,
        service: &'static str,
        attempt_timeout: Duration,
    ) -> Result<Self, BuildError> {
        let bad = || BuildError::Endpoint(endpoint.into());
        let uri: http::Uri = endpoint.parse().map_err(|_| bad())?;
        let host = uri.authority().ok_or_else(bad)?.to_string();
        if !uri.path().trim_end_matches('/').is_empty() || uri.query().is_some() {
            return Err(bad());
        }
        let region = sdk.region().ok_or(BuildError::NoRegion)?.to_string();
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
        Ok(SignedClient {
            http: Client::builder(hyper_util::rt::TokioExecutor::new()).build(https),
            base: endpoint.trim_end_matches('/').to_string(),
            host,
            service,
            signer: Signer::new(&region, service),
            credentials: CredentialsCache::new(
                sdk.credentials_provider()
                    .ok_or(BuildError::NoCredentials)?,
            ),
            attempt_timeout,
            skew_ms: AtomicI64::new(0),
        })
    }

    /// One signed `POST` of `body` to `path` (percent-encoded already) for `operation` (named
    /// in errors); the answer's body is read up to `limit` bytes. A request that got no answer
    /// in time, or whose connection failed, is a transient failure.
    pub(crate) async fn send(
        &self,
        operation: &str,
        path: &str,
        headers: &[(http::HeaderName, &str)],
        body: Bytes,
        limit: usize,
    ) -> Result<Answer, AwsFailure> {
        let what = || format!("{} {operation}", self.service);
        let request = self.signed(path, headers, body).await?;
        let exchange = async {
            let response =
                self.http.request(request).await.map_err(|e| {
                    transient(format!("{}: {}", what(), super::error::error_chain(&e)))
                })?;
            let (parts, body) = response.into_parts();
            if !parts.status.is_success() {
                self.learn_skew(&parts.headers, SystemTime::now());
            }
            let declared = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
            let read = if declared.is_some_and(|n| n > limit) {
                None
            } else {
                match read_body(body, limit, declared).await {
                    Ok(b) => Some(b),
                    Err(e) if e.is::<http_body_util::LengthLimitError>() => None,
                    Err(e) => {
                        return Err(transient(format!("{}: reading the answer: {e}", what())))
                    }
                }
            };
            Ok(Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                over_limit: read.is_none(),
                body: read.unwrap_or_default(),
            })
        };
        tokio::time::timeout(self.attempt_timeout, exchange)
            .await
            .map_err(|_| {
                transient(format!(
                    "{}: no answer within {:?}",
                    what(),
                    self.attempt_timeout
                ))
            })?
    }

    /// Records how far the service's clock (its answer's `Date`) is from ours.
    fn learn_skew(&self, headers: &http::HeaderMap, now: SystemTime) {
        let date = headers
            .get(http::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok());
        if let Some(date) = date {
            let ours = chrono::DateTime::<chrono::Utc>::from(now);
            let skew = date.signed_duration_since(ours).num_milliseconds();
            self.skew_ms.store(skew, Ordering::Relaxed);
        }
    }

    /// Our clock, corrected by the skew learnt from the service.
    fn signing_time(&self) -> SystemTime {
        let skew = self.skew_ms.load(Ordering::Relaxed);
        let now = SystemTime::now();
        let by = Duration::from_millis(skew.unsigned_abs());
        if skew >= 0 {
            now + by
        } else {
            now - by
        }
    }

    async fn signed(
        &self,
        path: &str,
        headers: &[(http::HeaderName, &str)],
        body: Bytes,
    ) -> Result<http::Request<Full<Bytes>>, AwsFailure> {
        let uri = format!("{}{path}", self.base);
        let credentials = self.credentials.get().await?;
        let length = body.len().to_string();
        let mut signed: Vec<(&str, &str)> = Vec::with_capacity(headers.len() + 1);
        signed.push(("content-length", &length));
        signed.extend(headers.iter().map(|(name, value)| (name.as_str(), *value)));
        let signature = self
            .signer
            .sign(
                &credentials,
                self.signing_time(),
                &self.host,
                path,
                &signed,
                &body,
            )
            .ok_or_else(|| rejected(format!("{uri}: signing failed")))?;
        let mut request = http::Request::post(&uri)
            .header(http::header::HOST, &self.host)
            .header(http::header::CONTENT_LENGTH, length)
            .header("x-amz-date", signature.amz_date)
            .header(http::header::AUTHORIZATION, signature.authorization);
        if let Some(token) = credentials.session_token() {
            request = request.header("x-amz-security-token", token);
        }
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        request
            .body(Full::new(body))
            .map_err(|e| rejected(format!("{uri}: {e}")))
    }
}

/// An answer's body, at most `limit` bytes. One that declares a large length is read into a
/// pooled buffer ([`crate::memory::take`]; GetRecords answers are megabytes), which goes
/// back to the pool when the answer is dropped; a small one is hyper's own chunks.
async fn read_body(
    body: hyper::body::Incoming,
    limit: usize,
    declared: Option<usize>,
) -> Result<Bytes, Box<dyn std::error::Error + Send + Sync>> {
    let mut body = http_body_util::Limited::new(body, limit);
    let Some(length) = declared.filter(|&n| n >= crate::memory::POOLED_MIN) else {
        return Ok(body.collect().await?.to_bytes());
    };
    let mut buffer = crate::memory::take(length);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            buffer.extend_from_slice(&data);
        }
    }
    Ok(crate::memory::into_bytes(buffer))
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

pub(crate) fn transient(message: String) -> AwsFailure {
    failure(FailureClass::Transient, message)
}

fn rejected(message: String) -> AwsFailure {
    failure(FailureClass::Rejected, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn client() -> SignedClient {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::Credentials::new(
                "AKID", "secret", None, None, "test",
            ))
            .load()
            .await;
        SignedClient::new(&sdk, "http://127.0.0.1:9", "sqs", Duration::from_secs(1)).unwrap()
    }

    #[tokio::test]
    async fn a_skewed_service_clock_moves_the_signing_time() {
        let client = client().await;
        let now = SystemTime::now();
        let ahead = chrono::DateTime::<chrono::Utc>::from(now + Duration::from_secs(900));
        let mut headers = http::HeaderMap::new();
        let date = ahead.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        headers.insert(http::header::DATE, date.parse().unwrap());
        client.learn_skew(&headers, now);
        let signing = client.signing_time();
        let skew = signing.duration_since(SystemTime::now()).unwrap();
        assert!(
            skew > Duration::from_secs(898) && skew <= Duration::from_secs(901),
            "{skew:?}"
        );
        // An unreadable Date changes nothing.
        headers.insert(http::header::DATE, "yesterday".parse().unwrap());
        client.learn_skew(&headers, now);
        assert!(client.signing_time() > SystemTime::now() + Duration::from_secs(898));
    }

    #[test]
    fn an_endpoint_with_a_path_or_without_a_host_is_refused() {
        let sdk = aws_config::SdkConfig::builder().build();
        for bad in ["http://host/path", "not a url", "/relative"] {
            let e = SignedClient::new(&sdk, bad, "sqs", Duration::from_secs(1)).err();
            assert!(matches!(e, Some(BuildError::Endpoint(_))), "{bad}: {e:?}");
        }
    }
}
