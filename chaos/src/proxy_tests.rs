//! Each fault is injected, and shows at the client as it would at esmd.

use super::*;
use std::sync::atomic::AtomicUsize;

/// A backend that counts requests and answers `{"ok":"<path>"}`, padded to 1000 bytes.
async fn backend() -> (String, Arc<AtomicUsize>, Arc<Mutex<Vec<bool>>>) {
    let served = Arc::new(AtomicUsize::new(0));
    let lost_marks = Arc::new(Mutex::new(Vec::new()));
    let (s, m) = (served.clone(), lost_marks.clone());
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (s, m) = (s.clone(), m.clone());
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            lock(&m).push(req.headers().contains_key("x-chaos-answer-lost"));
            format!(
                "{{\"ok\":\"{}\",\"pad\":\"{}\"}}",
                req.uri().path(),
                "x".repeat(960)
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), served, lost_marks)
}

async fn proxy_for(service: Service, upstream: &str) -> Proxy {
    Proxy::start(ProxyConfig {
        service,
        upstream: upstream.to_string(),
        seed: 1,
        rate: 1.0,
        faults: vec![Fault::Status500],
        stall: Duration::from_millis(300),
    })
    .await
    .unwrap()
}

/// One request on a fresh connection: the status and the whole body, or the error.
async fn call(endpoint: &str) -> Result<(u16, Vec<(String, String)>, String), String> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let req = Request::post(format!("{endpoint}/queue"))
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let answer = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = answer.status().as_u16();
    let headers = answer
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = answer
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{e:?}"))?
        .to_bytes();
    Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn an_unarmed_proxy_forwards_everything() {
    let (up, served, _) = backend().await;
    let p = proxy_for(Service::Sqs, &up).await;
    for _ in 0..5 {
        let (status, _, body) = call(&p.endpoint).await.unwrap();
        assert_eq!(status, 200);
        assert!(body.starts_with("{\"ok\":\"/queue\""));
    }
    assert_eq!(served.load(Ordering::SeqCst), 5);
    assert_eq!(p.requests(), 5);
    assert!(p.counts().is_empty());
}

#[tokio::test]
async fn a_reset_before_never_reaches_the_backend() {
    let (up, served, _) = backend().await;
    let p = proxy_for(Service::Sqs, &up).await;
    p.force(&[Fault::ResetBefore]);
    assert!(call(&p.endpoint).await.is_err());
    assert_eq!(served.load(Ordering::SeqCst), 0);
    assert_eq!(p.counts().get("reset_before_request"), Some(&1));
}

#[tokio::test]
async fn a_reset_after_is_served_and_marked_but_never_answered() {
    let (up, served, marks) = backend().await;
    let p = proxy_for(Service::Lambda, &up).await;
    p.force(&[Fault::ResetAfter]);
    assert!(call(&p.endpoint).await.is_err());
    assert_eq!(served.load(Ordering::SeqCst), 1);
    assert_eq!(*lock(&marks), vec![true]);
}

#[tokio::test]
async fn a_cut_body_sends_half_then_closes() {
    let (up, served, marks) = backend().await;
    let p = proxy_for(Service::Kinesis, &up).await;
    p.force(&[Fault::CutBody]);
    let err = call(&p.endpoint).await.unwrap_err();
    assert!(
        err.contains("Body") || err.contains("body") || err.contains("closed"),
        "{err}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 1);
    assert_eq!(*lock(&marks), vec![true]);
}

#[tokio::test]
async fn status_errors_and_throttles_use_each_services_wire_format() {
    let (up, served, _) = backend().await;
    let p = proxy_for(Service::Kinesis, &up).await;
    p.force(&[Fault::Status500, Fault::Status503, Fault::Throttle]);
    assert_eq!(call(&p.endpoint).await.unwrap().0, 500);
    assert_eq!(call(&p.endpoint).await.unwrap().0, 503);
    let (status, _, body) = call(&p.endpoint).await.unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("ProvisionedThroughputExceededException"));
    assert_eq!(served.load(Ordering::SeqCst), 0);

    let l = proxy_for(Service::Lambda, &up).await;
    l.force(&[Fault::Throttle]);
    let (status, headers, _) = call(&l.endpoint).await.unwrap();
    assert_eq!(status, 429);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "x-amzn-errortype" && v == "TooManyRequestsException"));
}

#[tokio::test]
async fn latency_delays_and_a_stall_outlasts_then_closes() {
    let (up, served, _) = backend().await;
    let p = proxy_for(Service::DynamoDbStreams, &up).await;
    p.force(&[Fault::Latency, Fault::Stall]);
    let t = Instant::now();
    assert_eq!(call(&p.endpoint).await.unwrap().0, 200);
    assert!(t.elapsed() >= Duration::from_millis(50));
    let t = Instant::now();
    assert!(call(&p.endpoint).await.is_err());
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_armed_proxy_draws_the_same_faults_for_the_same_seed() {
    let (up, _, _) = backend().await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let p = Proxy::start(ProxyConfig {
            service: Service::Sqs,
            upstream: up.clone(),
            seed: 42,
            rate: 0.5,
            faults: vec![Fault::Status500, Fault::Throttle],
            stall: Duration::from_millis(10),
        })
        .await
        .unwrap();
        p.arm(true);
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(call(&p.endpoint).await.unwrap().0);
        }
        seen.push(statuses);
    }
    assert_eq!(seen[0], seen[1]);
    assert!(seen[0].contains(&200) && seen[0].contains(&500) && seen[0].contains(&400));
}
