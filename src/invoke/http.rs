//! The HTTP target (`esmd_http_target`): POSTs the same event JSON to a plain HTTP endpoint,
//! typically an app in the same pod, and reads the answer with Lambda's rules:
//! 2xx is success (the body may hold `batchItemFailures`), 429 a throttle (honouring
//! `Retry-After`), a connection failure or timeout a service error (retried), and any other
//! status a function error.

use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use super::{InvokeOutcome, Invoker};
use crate::config::MAX_INVOKE_PAYLOAD_BYTES;

/// How long one request may take: Lambda's own 15-minute ceiling.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(900);

pub(crate) struct HttpInvoker {
    url: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpInvoker {
    pub(crate) fn new(url: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        HttpInvoker {
            url: url.to_string(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    async fn post(&self, payload: Bytes) -> InvokeOutcome {
        let request = match hyper::Request::post(&self.url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            // Harmless to an app, and lets the target be a Lambda emulator as well.
            .header("X-Amz-Invocation-Type", "RequestResponse")
            .body(Full::new(payload))
        {
            Ok(r) => r,
            Err(e) => {
                return InvokeOutcome::Misconfigured {
                    message: format!("{}: {e}", self.url),
                }
            }
        };
        let response =
            match tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    return InvokeOutcome::ServiceError {
                        message: format!("{}: {e}", self.url),
                    }
                }
                Err(_) => {
                    return InvokeOutcome::FunctionError {
                        kind: "Timeout".into(),
                        body: Bytes::from_static(b"the HTTP target did not answer within 900 s"),
                    }
                }
            };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Lambda caps a synchronous response at 6 MB and reports a larger one as a function
        // error; reading stops at the cap, so a runaway answer cannot exhaust memory.
        let limited = Limited::new(response.into_body(), MAX_INVOKE_PAYLOAD_BYTES);
        let body = match limited.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return response_too_large();
            }
            Err(e) => {
                return InvokeOutcome::ServiceError {
                    message: format!("{}: reading the response: {e}", self.url),
                }
            }
        };
        classify(status.as_u16(), retry_after, body)
    }
}

/// What Lambda answers for a response over its 6 MB limit: a function error.
pub(crate) fn response_too_large() -> InvokeOutcome {
    InvokeOutcome::FunctionError {
        kind: "Unhandled".into(),
        body: Bytes::from_static(
            br#"{"errorType":"Function.ResponseSizeTooLarge","errorMessage":"Response payload size exceeded maximum allowed payload size."}"#,
        ),
    }
}

/// Lambda's rules for an HTTP answer.
pub(crate) fn classify(status: u16, retry_after: Option<Duration>, body: Bytes) -> InvokeOutcome {
    match status {
        200..=299 => InvokeOutcome::Returned { body },
        429 => InvokeOutcome::Throttled {
            retry_after,
            message: "HTTP 429 from the target".to_string(),
        },
        _ => InvokeOutcome::FunctionError {
            kind: format!("HTTP {status}"),
            body,
        },
    }
}

impl Invoker for HttpInvoker {
    fn invoke<'a>(&'a self, _function: &'a str, payload: Bytes) -> BoxFuture<'a, InvokeOutcome> {
        Box::pin(self.post(payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A target that answers 200 with a body of `size` bytes of spaces.
    async fn answering(size: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut request).await;
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
                let _ = socket.write_all(head.as_bytes()).await;
                let chunk = vec![b' '; 64 * 1024];
                let mut sent = 0;
                while sent < size {
                    let n = chunk.len().min(size - sent);
                    if socket.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                    sent += n;
                }
            }
        });
        url
    }

    #[tokio::test]
    async fn a_response_over_six_megabytes_is_a_function_error_not_a_success() {
        let big = HttpInvoker::new(&answering(MAX_INVOKE_PAYLOAD_BYTES + 1024 * 1024).await)
            .post(Bytes::from_static(b"{}"))
            .await;
        assert_eq!(
            big,
            response_too_large(),
            "a whitespace body over the cap is no success"
        );
        assert!(
            big.summary().contains("Function.ResponseSizeTooLarge"),
            "{}",
            big.summary()
        );
        let small = HttpInvoker::new(&answering(1024).await)
            .post(Bytes::from_static(b"{}"))
            .await;
        assert!(matches!(small, InvokeOutcome::Returned { .. }), "{small:?}");
    }

    #[test]
    fn statuses_map_like_lambda() {
        assert!(matches!(
            classify(200, None, Bytes::new()),
            InvokeOutcome::Returned { .. }
        ));
        assert!(matches!(
            classify(204, None, Bytes::new()),
            InvokeOutcome::Returned { .. }
        ));
        assert!(matches!(
            classify(429, Some(Duration::from_secs(2)), Bytes::new()),
            InvokeOutcome::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(2)
        ));
        for status in [400, 404, 413, 500, 503] {
            assert!(
                matches!(classify(status, None, Bytes::new()), InvokeOutcome::FunctionError { ref kind, .. } if kind == &format!("HTTP {status}")),
                "{status}"
            );
        }
    }
}
