//! SubscribeToShard on the loopback backend: an event stream (`application/vnd.amazon.eventstream`)
//! that pushes a `SubscribeToShardEvent` as soon as records arrive on the shard (or an empty one
//! every second), so that `bench/fanout` measures esmd's own fan-out latency rather than an
//! emulator's push cadence. Subscriptions never end and shards never close here.

use std::sync::Arc;
use std::time::Duration;

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{error, shard_index, Loopback, Stream};

impl Loopback {
    pub(super) fn subscribe(&self, req: &Value) -> Response {
        let Some(stream) = req["ConsumerARN"]
            .as_str()
            .and_then(|arn| arn.split("stream/").nth(1))
            .and_then(|rest| rest.split('/').next())
            .and_then(|name| self.stream_named(name))
        else {
            return error(
                StatusCode::BAD_REQUEST,
                "ResourceNotFoundException",
                "no such consumer",
            );
        };
        let Some(shard) = shard_index(req["ShardId"].as_str().unwrap_or_default())
            .filter(|i| *i < stream.shards.len())
        else {
            return error(
                StatusCode::BAD_REQUEST,
                "ResourceNotFoundException",
                "no such shard",
            );
        };
        let start = &req["StartingPosition"];
        let seq = start["SequenceNumber"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let position = {
            let records = &stream.shards[shard]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .records;
            match start["Type"].as_str().unwrap_or_default() {
                "LATEST" => records.len(),
                "AT_SEQUENCE_NUMBER" => records.partition_point(|r| r.sequence < seq),
                "AFTER_SEQUENCE_NUMBER" => records.partition_point(|r| r.sequence <= seq),
                _ => 0,
            }
        };
        let events = futures::stream::unfold(
            (stream, shard, position),
            |(stream, shard, at)| async move {
                let (frame, next) = next_event(&stream, shard, at).await;
                Some((Ok::<Bytes, std::io::Error>(frame), (stream, shard, next)))
            },
        );
        (
            StatusCode::OK,
            [("content-type", "application/vnd.amazon.eventstream")],
            Body::from_stream(events),
        )
            .into_response()
    }
}

/// Waits up to a second for records after `at`, and frames them as one event.
async fn next_event(stream: &Arc<Stream>, shard: usize, at: usize) -> (Bytes, usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let notified = stream.appended.notified();
        let (records, continuation, next) = {
            let s = stream.shards[shard]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let records: Vec<Value> = s.records[at.min(s.records.len())..]
                .iter()
                .map(|r| {
                    json!({
                        "SequenceNumber": r.sequence, "ApproximateArrivalTimestamp": r.arrival_secs,
                        "Data": r.data, "PartitionKey": r.key,
                    })
                })
                .collect();
            let continuation = s
                .records
                .last()
                .map_or_else(|| format!("4961{:052}", 0), |r| r.sequence.clone());
            (records, continuation, s.records.len())
        };
        if !records.is_empty() || tokio::time::Instant::now() >= deadline {
            let payload = json!({
                "Records": records, "ContinuationSequenceNumber": continuation,
                "MillisBehindLatest": 0,
            });
            let message = Message::new(Bytes::from(payload.to_string()))
                .add_header(Header::new(
                    ":message-type",
                    HeaderValue::String("event".into()),
                ))
                .add_header(Header::new(
                    ":event-type",
                    HeaderValue::String("SubscribeToShardEvent".into()),
                ))
                .add_header(Header::new(
                    ":content-type",
                    HeaderValue::String("application/json".into()),
                ));
            let mut frame = Vec::new();
            // Writing to a Vec cannot fail for a well-formed message.
            let _ = write_message_to(&message, &mut frame);
            return (Bytes::from(frame), next);
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}
