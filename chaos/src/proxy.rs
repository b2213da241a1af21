//! A fault-injecting HTTP proxy between esmd and one backend.
//!
//! esmd reaches it through `AWS_ENDPOINT_URL_<SERVICE>`, so nothing in esmd knows it is there.
//! While armed, each request draws a fault with the proxy's seeded generator: the connection
//! closes before or after the backend serves it, the answer's body is cut in half, a 500, 503
//! or the service's own throttling error comes back, latency is added, or the request stalls
//! past the client's timeout. A request whose answer is lost after the backend served it is
//! marked with the header `x-chaos-answer-lost: 1` on its way, so that the function host can
//! tell which Invoke answers esmd never saw.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::faults::{Fault, Service};

type Body = BoxBody<Bytes, std::io::Error>;

/// Settings of one proxy.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub service: Service,
    /// `http://127.0.0.1:PORT` of the backend.
    pub upstream: String,
    pub seed: u64,
    /// The chance that an armed proxy injects a fault into a request.
    pub rate: f64,
    /// The faults it draws from (uniformly).
    pub faults: Vec<Fault>,
    /// How long a stalled request waits before its connection is closed.
    pub stall: Duration,
}

struct State {
    config: ProxyConfig,
    armed: AtomicBool,
    rng: Mutex<StdRng>,
    /// Faults that the next requests get, in order, whether armed or not (tests).
    forced: Mutex<VecDeque<Fault>>,
    counts: Mutex<BTreeMap<&'static str, u64>>,
    events: Mutex<Vec<(Instant, Fault)>>,
    /// SQS: the message bodies of each ReceiveMessage answer, in the backend's order.
    handouts: Mutex<Vec<(Instant, Vec<String>)>>,
    requests: AtomicU64,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A running proxy; it stops when dropped.
pub struct Proxy {
    pub endpoint: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(config: ProxyConfig) -> std::io::Result<Proxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(State {
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            config,
            armed: AtomicBool::new(false),
            forced: Mutex::new(VecDeque::new()),
            counts: Mutex::new(BTreeMap::new()),
            events: Mutex::new(Vec::new()),
            handouts: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { handle(state, req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Proxy {
            endpoint,
            state,
            task,
        })
    }

    /// Faults are injected only while armed (the runner disarms for the final drain).
    pub fn arm(&self, on: bool) {
        self.state.armed.store(on, Ordering::SeqCst);
    }

    /// The next requests get these faults, armed or not.
    #[cfg(test)]
    pub fn force(&self, faults: &[Fault]) {
        lock(&self.state.forced).extend(faults.iter().copied());
    }

    /// How many of each fault were injected.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.state.counts).clone()
    }

    /// Each injected fault with when it was drawn.
    pub fn events(&self) -> Vec<(Instant, Fault)> {
        lock(&self.state.events).clone()
    }

    /// SQS: what each ReceiveMessage answer handed out (message bodies, in order), and when.
    pub fn handouts(&self) -> Vec<(Instant, Vec<String>)> {
        lock(&self.state.handouts).clone()
    }

    /// How many requests reached the proxy.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    fn draw(&self) -> Option<Fault> {
        if let Some(f) = lock(&self.forced).pop_front() {
            return Some(f);
        }
        if !self.armed.load(Ordering::SeqCst) || self.config.faults.is_empty() {
            return None;
        }
        let mut rng = lock(&self.rng);
        if !rng.gen_bool(self.config.rate.clamp(0.0, 1.0)) {
            return None;
        }
        let i = rng.gen_range(0..self.config.faults.len());
        Some(self.config.faults[i])
    }

    fn count(&self, fault: Fault) {
        *lock(&self.counts).entry(fault.name()).or_default() += 1;
        lock(&self.events).push((Instant::now(), fault));
    }
}

/// An error from the service function makes hyper close the connection without an answer.
#[derive(Debug)]
struct Cut;
impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("chaos: connection cut")
    }
}
impl std::error::Error for Cut {}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Cut> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let fault = state.draw();
    if let Some(f) = fault {
        state.count(f);
    }
    let service = state.config.service;
    match fault {
        Some(Fault::ResetBefore) => return Err(Cut),
        Some(Fault::Status500) => return Ok(canned(500, &[], service.server_error(500))),
        Some(Fault::Status503) => return Ok(canned(503, &[], service.server_error(503))),
        Some(Fault::Throttle) => {
            let (status, headers, body) = service.throttle();
            return Ok(canned(status, &headers, body.to_string()));
        }
        Some(Fault::Stall) => {
            tokio::time::sleep(state.config.stall).await;
            return Err(Cut);
        }
        Some(Fault::Latency) => {
            let ms = lock(&state.rng).gen_range(50..=500);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        _ => {}
    }
    let lost = fault.is_some_and(Fault::answer_lost);
    let answer = forward(&state, req, lost).await.map_err(|_| Cut)?;
    match fault {
        Some(Fault::ResetAfter) => Err(Cut),
        Some(Fault::CutBody) => Ok(cut_body(answer)),
        _ => Ok(answer.map(|b| Full::new(b).map_err(|e| match e {}).boxed())),
    }
}

async fn forward(
    state: &State,
    req: Request<Incoming>,
    lost: bool,
) -> Result<Response<Bytes>, Box<dyn std::error::Error + Send + Sync>> {
    let (mut parts, body) = req.into_parts();
    let receive = state.config.service == Service::Sqs
        && parts
            .headers
            .get("x-amz-target")
            .is_some_and(|t| t.as_bytes() == b"AmazonSQS.ReceiveMessage");
    let body = body.collect().await?.to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    parts.uri = format!("{}{}", state.config.upstream, path).parse()?;
    if lost {
        parts.headers.insert(
            "x-chaos-answer-lost",
            hyper::header::HeaderValue::from_static("1"),
        );
    }
    let answer = state
        .client
        .request(Request::from_parts(parts, Full::new(body)))
        .await?;
    let (parts, body) = answer.into_parts();
    let body = body.collect().await?.to_bytes();
    if receive {
        let ids = handed_out(&body);
        if !ids.is_empty() {
            lock(&state.handouts).push((Instant::now(), ids));
        }
    }
    Ok(Response::from_parts(parts, body))
}

/// The bodies of the messages in an SQS ReceiveMessage answer (awsJson1_0).
fn handed_out(body: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    v.get("Messages")
        .and_then(|m| m.as_array())
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m.get("Body")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn canned(status: u16, headers: &[(&str, &str)], body: String) -> Response<Body> {
    let mut r = Response::builder().status(status);
    let mut typed = false;
    for (k, v) in headers {
        typed |= k.eq_ignore_ascii_case("content-type");
        r = r.header(*k, *v);
    }
    if !typed {
        r = r.header("content-type", "application/json");
    }
    r.body(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed())
        .unwrap_or_else(|_| Response::new(empty()))
}

fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|e| match e {}).boxed()
}

/// The answer's headers (with its full `content-length`) and the first half of its body, then
/// an error, which makes hyper close the connection.
fn cut_body(answer: Response<Bytes>) -> Response<Body> {
    let (mut parts, body) = answer.into_parts();
    parts.headers.insert(
        hyper::header::CONTENT_LENGTH,
        hyper::header::HeaderValue::from(body.len().max(2)),
    );
    parts.headers.remove(hyper::header::TRANSFER_ENCODING);
    let half = body.slice(..body.len() / 2);
    // The pause lets hyper flush the head and the half before the error closes the socket.
    let stream = futures::stream::unfold(Some(half), |half| async move {
        match half {
            Some(h) => Some((Ok(Frame::data(h)), None)),
            None => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((Err(std::io::Error::other("chaos: body cut")), None))
            }
        }
    });
    Response::from_parts(parts, BodyExt::boxed(StreamBody::new(stream)))
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
