//! The lean invoker against the SDK's, answer by answer: a test Lambda endpoint replays one
//! scripted answer to both, and both must reach the same outcome.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri};

use super::*;
use crate::aws::lean::SignedClient;
use crate::invoke::lambda::LambdaInvoker;

/// One scripted answer: status, headers, body.
type Script = (u16, Vec<(&'static str, &'static str)>, &'static str);

#[derive(Default)]
struct Endpoint {
    answer: Mutex<Option<Script>>,
    /// Path and headers of each request.
    seen: Mutex<Vec<(String, HeaderMap)>>,
}

async fn serve() -> (Arc<Endpoint>, String) {
    let state = Arc::new(Endpoint::default());
    let shared = Arc::clone(&state);
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let state = Arc::clone(&shared);
        async move {
            state.seen.lock().unwrap().push((uri.to_string(), headers));
            let (status, headers, body) = state.answer.lock().unwrap().clone().unwrap();
            let mut response = axum::response::Response::new(axum::body::Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            for (k, v) in headers {
                response.headers_mut().insert(k, v.parse().unwrap());
            }
            response
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (state, url)
}

async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .load()
        .await
}

async fn invokers(url: &str) -> (LambdaInvoker, LeanInvoker) {
    let sdk = sdk_config().await;
    let config = aws_sdk_lambda::config::Builder::from(&sdk)
        .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
        .endpoint_url(url)
        .build();
    let sdk_invoker = LambdaInvoker::new(aws_sdk_lambda::Client::from_conf(config));
    let signed = SignedClient::new(&sdk, url, "lambda", Duration::from_secs(30)).unwrap();
    (sdk_invoker, LeanInvoker::new(signed))
}

#[tokio::test]
async fn every_answer_reads_as_the_sdk_reads_it() {
    let (endpoint, url) = serve().await;
    let (sdk, lean) = invokers(&url).await;
    // Lambda's model binds `retryAfterSeconds` to the Retry-After header: a body field of that
    // name is not read, by the SDK or by the lean client.
    let throttled = r#"{"Type":"User","message":"Rate exceeded","retryAfterSeconds":"7"}"#;
    let scripts: Vec<Script> = vec![
        (200, vec![], r#"{"batchItemFailures":[]}"#),
        (
            200,
            vec![("x-amz-function-error", "Unhandled")],
            r#"{"errorMessage":"boom","errorType":"Error"}"#,
        ),
        (
            200,
            vec![("x-amz-function-error", "Handled")],
            r#"{"errorMessage":"no"}"#,
        ),
        (
            200,
            vec![],
            r#"{"errorMessage":"boom","errorType":"Error"}"#,
        ),
        (
            429,
            vec![("x-amzn-errortype", "TooManyRequestsException")],
            throttled,
        ),
        (
            429,
            vec![
                ("x-amzn-errortype", "TooManyRequestsException"),
                ("retry-after", "3"),
            ],
            r#"{"message":"Rate exceeded"}"#,
        ),
        (
            404,
            vec![(
                "x-amzn-errortype",
                "ResourceNotFoundException:http://internal.amazon.com/",
            )],
            r#"{"Type":"User","Message":"Function not found: arn:aws:lambda:us-east-1:123456789012:function:f"}"#,
        ),
        (
            413,
            vec![("x-amzn-errortype", "RequestTooLargeException")],
            r#"{"message":"Request must be smaller than 6291456 bytes"}"#,
        ),
        (
            403,
            vec![("x-amzn-errortype", "AccessDeniedException")],
            r#"{"Message":"denied"}"#,
        ),
        (
            500,
            vec![("x-amzn-errortype", "ServiceException")],
            r#"{"Message":"oops"}"#,
        ),
        (
            502,
            vec![("x-amzn-errortype", "EC2ThrottledException")],
            r#"{"Message":"ec2"}"#,
        ),
        (503, vec![], "<html>unavailable</html>"),
    ];
    for script in scripts {
        *endpoint.answer.lock().unwrap() = Some(script.clone());
        let payload = Bytes::from_static(br#"{"Records":[]}"#);
        let by_sdk = sdk.invoke("f", payload.clone()).await;
        let by_lean = lean.invoke("f", payload).await;
        if serde_json::from_str::<serde_json::Value>(script.2).is_ok() {
            assert_eq!(by_lean, by_sdk, "answer {script:?}");
        } else {
            // The same outcome; the lean client quotes the body where the SDK names its
            // parse error.
            let kind = std::mem::discriminant;
            assert_eq!(kind(&by_lean), kind(&by_sdk), "{by_lean:?} / {by_sdk:?}");
        }
    }
}

/// An endpoint answering `size` bytes of spaces, with a Content-Length or chunked.
async fn answering(size: usize, chunked: bool) -> String {
    let app = axum::Router::new().fallback(move || async move {
        if chunked {
            let chunks = (0..size.div_ceil(65536))
                .map(move |i| Ok::<_, std::io::Error>(vec![b' '; (size - i * 65536).min(65536)]));
            axum::body::Body::from_stream(futures::stream::iter(chunks))
        } else {
            axum::body::Body::from(vec![b' '; size])
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn a_response_over_six_megabytes_is_a_function_error_whether_declared_or_not() {
    for chunked in [false, true] {
        let (_, lean) =
            invokers(&answering(MAX_INVOKE_PAYLOAD_BYTES + 1024 * 1024, chunked).await).await;
        let outcome = lean.invoke("f", Bytes::from_static(b"{}")).await;
        assert_eq!(outcome, response_too_large(), "chunked: {chunked}");
        let (_, lean) = invokers(&answering(1024, chunked).await).await;
        let outcome = lean.invoke("f", Bytes::from_static(b"{}")).await;
        assert!(
            matches!(outcome, InvokeOutcome::Returned { ref body } if body.len() == 1024),
            "{outcome:?}"
        );
    }
}

#[tokio::test]
async fn the_request_is_the_sdks_request() {
    let (endpoint, url) = serve().await;
    let (sdk, lean) = invokers(&url).await;
    *endpoint.answer.lock().unwrap() = Some((200, vec![], "{}"));
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:orders:live";
    sdk.invoke(arn, Bytes::from_static(b"{}")).await;
    lean.invoke(arn, Bytes::from_static(b"{}")).await;
    let seen = endpoint.seen.lock().unwrap();
    let (sdk_path, sdk_headers) = &seen[0];
    let (lean_path, lean_headers) = &seen[1];
    assert_eq!(lean_path, sdk_path);
    assert_eq!(
        lean_path,
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Aorders%3Alive/invocations"
    );
    for name in ["content-type", "x-amz-invocation-type", "content-length"] {
        assert_eq!(lean_headers.get(name), sdk_headers.get(name), "{name}");
    }
    let auth = |h: &HeaderMap| h["authorization"].to_str().unwrap().to_string();
    let scope = |a: &str| {
        a.split(", ")
            .next()
            .unwrap()
            .split('/')
            .skip(2)
            .collect::<Vec<_>>()
            .join("/")
    };
    assert!(auth(lean_headers).starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"));
    assert_eq!(
        scope(&auth(lean_headers)),
        scope(&auth(sdk_headers)),
        "region/service/aws4_request"
    );
    assert!(lean_headers.contains_key("x-amz-date"));
}

#[test]
fn a_path_label_is_encoded_as_the_sdk_encodes_it() {
    assert_eq!(path_label("my-func_1.v~2"), "my-func_1.v~2");
    assert_eq!(path_label("a:b/c d"), "a%3Ab%2Fc%20d");
}
