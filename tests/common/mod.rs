//! The integration-test harness, by concern: [`moto`] (the AWS side), [`function`] (a
//! test-owned endpoint speaking the Lambda Invoke API), [`esmd`] (the real binary as a child
//! process), [`queues`] and [`streams`] (resources in moto), [`tls`] (https in front of
//! them), [`credentials`] (a container credentials endpoint handing out expiring ones), and
//! the waiting helpers below.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod credentials;
mod esmd;
mod function;
mod kinesis_local;
mod moto;
mod queues;
mod recordings;
mod streams;
mod tls;

// Each test crate uses its own part of the harness.
#[allow(unused_imports)]
pub use credentials::*;
#[allow(unused_imports)]
pub use esmd::*;
#[allow(unused_imports)]
pub use function::*;
#[allow(unused_imports)]
pub use kinesis_local::*;
#[allow(unused_imports)]
pub use moto::*;
#[allow(unused_imports)]
pub use queues::*;
#[allow(unused_imports)]
pub use recordings::*;
#[allow(unused_imports)]
pub use streams::*;
#[allow(unused_imports)]
pub use tls::*;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

/// A loopback port nobody listens on, never the same one twice in this test process (the
/// kernel may hand a just-released port out again, and one esmd takes two of them).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Waits until something accepts connections on a loopback port.
pub fn wait_listening(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A minimal HTTP/1.1 GET over loopback; returns (status, body).
pub fn http_get(url: &str) -> std::io::Result<(u16, String)> {
    http_send("GET", url, None)
}

/// A minimal HTTP/1.1 request over loopback, with an optional JSON body; (status, body).
pub fn http_send(method: &str, url: &str, json: Option<&str>) -> std::io::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = json.unwrap_or("");
    let content = if json.is_some() {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
    } else {
        String::new()
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{content}\r\n{body}"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Undo chunked encoding if present (axum uses it for streamed bodies).
    Ok((status, dechunk(&response, body)))
}

fn dechunk(head: &str, body: String) -> String {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body;
    }
    let mut out = String::new();
    let mut rest = body.as_str();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Runs `serve` on a loopback listener on a thread and runtime of its own (so tests of any
/// flavour can use it); returns the listener's address once it is bound.
pub fn serve_on_own_thread<F, Fut>(serve: F) -> std::net::SocketAddr
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            addr_tx
                .send(listener.local_addr().expect("addr"))
                .expect("send addr");
            serve(listener).await;
        });
    });
    addr_rx.recv().expect("server address")
}

/// Blocks on a future from a sync test.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Polls an async condition until it holds, or panics (printing esmd's log if given).
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, esmd: Option<&Esmd>, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let log = esmd.map(|e| e.logs()).unwrap_or_default();
    panic!("timed out waiting for {what}\n--- esmd log ---\n{log}");
}
