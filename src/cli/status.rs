//! `esmd status`: one screen on a running daemon, read from its `/mappings` endpoint. Each
//! mapping's source, function, state, records in and out, last error; for streams each
//! shard's owner, status, checkpoint age and iterator age. Exit codes: 0 all mappings healthy,
//! 1 a mapping is in `Error`, 3 the daemon cannot be reached or answered nonsense.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

/// Fetches the daemon's mappings and prints them (`json`: the document, with `healthy`).
pub(super) fn run(admin: &str, json: bool) -> ExitCode {
    let url = admin.trim_end_matches('/');
    let mappings = match get_json(&format!("{url}/mappings")) {
        Ok(doc) => doc,
        Err(e) => {
            eprintln!("esmd status: {url}: {e}");
            return ExitCode::from(3);
        }
    };
    let list = mappings["mappings"].as_array().cloned().unwrap_or_default();
    let healthy = list.iter().all(|m| m["state"] != "Error");
    if json {
        let doc = serde_json::json!({ "admin": url, "healthy": healthy, "mappings": list });
        println!("{doc}");
    } else {
        print!("{}", render(&list, chrono::Utc::now()));
    }
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The human table.
pub(super) fn render(mappings: &[Value], now: chrono::DateTime<chrono::Utc>) -> String {
    let mut out = String::new();
    if mappings.is_empty() {
        out.push_str("no mappings\n");
    }
    for m in mappings {
        let metrics = &m["metrics"];
        let n = |k: &str| metrics[k].as_u64().unwrap_or(0);
        let _ = writeln!(
            out,
            "{}  {}  {} -> {}",
            text(&m["state"]),
            text(&m["uuid"]),
            text(&m["event_source_arn"]),
            text(&m["function_name"]),
        );
        let _ = writeln!(
            out,
            "  records: {} polled, {} filtered out, {} invoked, {} failed, {} dropped, {} deleted; in flight {}",
            n("polled_events"),
            n("filtered_out_events"),
            n("invoked_events"),
            n("failed_invoke_events"),
            n("dropped_events"),
            n("deleted_events"),
            n("in_flight_batches"),
        );
        let _ = writeln!(out, "  last result: {}", text(&m["last_processing_result"]));
        if let Some(error) = m["last_error"].as_str() {
            let _ = writeln!(out, "  last error: {error}");
        }
        for (shard, view) in m["shards"].as_object().into_iter().flatten() {
            let checkpointed = view["checkpointed_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or("never".to_string(), |t| {
                    let secs = (now - t.with_timezone(&chrono::Utc)).num_seconds().max(0);
                    format!("{secs}s ago")
                });
            let _ = writeln!(
                out,
                "  {shard:<24} {:<8} owner {}  checkpoint {checkpointed}  iterator age {} ms  outstanding {}",
                text(&view["status"]),
                text(&view["owner"]),
                view["iterator_age_ms"].as_i64().unwrap_or(0),
                view["outstanding_records"].as_u64().unwrap_or(0),
            );
        }
    }
    out
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// A plain HTTP/1.1 GET of a JSON document (the admin endpoints speak plain HTTP on loopback).
fn get_json(url: &str) -> Result<Value, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("the admin address must start with http://")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = TcpStream::connect(host).map_err(|e| format!("cannot connect: {e}"))?;
    let timeout = Some(Duration::from_secs(10));
    stream
        .set_read_timeout(timeout)
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("reading the answer: {e}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("not an HTTP answer")?;
    let status = head.split(' ').nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!("HTTP {status} from {path}"));
    }
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    serde_json::from_str(&body).map_err(|e| format!("not JSON: {e}"))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_mapping_its_error_and_its_shards() {
        let now = chrono::Utc::now();
        let mappings = serde_json::json!([
            {"uuid": "u1", "state": "Enabled", "event_source_arn": "arn:aws:kinesis:us-east-1:1:stream/s",
             "function_name": "f", "last_processing_result": "OK", "last_error": null,
             "metrics": {"polled_events": 5, "invoked_events": 5},
             "shards": {"shardId-000000000000": {"status": "reading", "owner": "host-1",
                 "checkpointed_at": (now - chrono::Duration::seconds(12)).to_rfc3339(),
                 "iterator_age_ms": 40, "outstanding_records": 0}}},
            {"uuid": "u2", "state": "Error", "event_source_arn": "arn:aws:sqs:us-east-1:1:missing",
             "function_name": "g", "last_processing_result": "PROBLEM: queue does not exist",
             "last_error": "queue does not exist", "metrics": {}}
        ]);
        let table = render(mappings.as_array().unwrap(), now);
        assert!(table.contains("Enabled  u1"), "{table}");
        assert!(table.contains("5 polled"), "{table}");
        assert!(
            table.contains("owner host-1  checkpoint 12s ago  iterator age 40 ms"),
            "{table}"
        );
        assert!(table.contains("Error  u2"), "{table}");
        assert!(
            table.contains("last error: queue does not exist"),
            "{table}"
        );
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"), "{\"a\":1}");
    }
}
