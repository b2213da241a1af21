//! The lean loop: the raw-SDK SQS loop's calls (ReceiveMessage, Invoke, DeleteMessageBatch),
//! the same work per batch, made without the SDK's orchestrator. Each request is signed by
//! `aws-sigv4` (the SDK's own signer, called directly), sent by hyper over kept-alive HTTP/1.1
//! connections, and its JSON read with serde.
//!
//! It answers #16's "if a hand-written client is proposed for a hot call, show the gain
//! first": the table puts its CPU per record beside the SDK loop's in the same run, which
//! bounds what a hand-written client for the hot calls could save esmd. esmd does not use it.
//! No retries, no timeouts, no credential refresh, plain HTTP only: a measurement, not a
//! client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use serde::Deserialize;
use serde_json::json;

/// Signs and sends requests to the endpoints of the AWS environment variables.
struct Lean {
    http: Client<HttpConnector, Full<Bytes>>,
    identity: Identity,
    region: String,
    endpoint: String,
    lambda_endpoint: String,
}

/// Which protocol a call speaks.
enum Call<'a> {
    /// awsJson: `POST /` with the operation in `x-amz-target`.
    Json {
        service: &'static str,
        target: &'a str,
        content_type: &'static str,
    },
    /// Lambda's Invoke.
    Invoke { function: &'a str },
}

impl Lean {
    fn from_env() -> anyhow::Result<Lean> {
        let env = |k: &str| std::env::var(k).with_context(|| format!("{k} is not set"));
        let credentials = Credentials::new(
            env("AWS_ACCESS_KEY_ID")?,
            env("AWS_SECRET_ACCESS_KEY")?,
            None,
            None,
            "lean",
        );
        let endpoint = env("AWS_ENDPOINT_URL")?;
        Ok(Lean {
            http: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
            identity: credentials.into(),
            region: env("AWS_REGION")?,
            lambda_endpoint: env("AWS_ENDPOINT_URL_LAMBDA").unwrap_or_else(|_| endpoint.clone()),
            endpoint,
        })
    }

    async fn call(&self, call: Call<'_>, body: Vec<u8>) -> anyhow::Result<Bytes> {
        let (service, uri, content_type, target) = match call {
            Call::Json {
                service,
                target,
                content_type,
            } => (
                service,
                format!("{}/", self.endpoint),
                content_type,
                Some(target),
            ),
            Call::Invoke { function } => (
                "lambda",
                format!(
                    "{}/2015-03-31/functions/{function}/invocations",
                    self.lambda_endpoint
                ),
                "application/octet-stream",
                None,
            ),
        };
        let uri: http::Uri = uri.parse()?;
        let host = uri
            .authority()
            .context("an endpoint without a host")?
            .to_string();
        let mut request = http::Request::post(uri)
            .header(http::header::HOST, host)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, body.len());
        if let Some(target) = target {
            request = request.header("x-amz-target", target);
        }
        let mut request = request.body(())?;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()?
            .into();
        let headers = request
            .headers()
            .iter()
            .map(|(k, v)| Ok((k.as_str(), v.to_str()?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let signable = SignableRequest::new(
            "POST",
            request.uri().to_string(),
            headers.into_iter(),
            SignableBody::Bytes(&body),
        )?;
        let (instructions, _) = sign(signable, &params)?.into_parts();
        instructions.apply_to_request_http1x(&mut request);
        let request = request.map(|()| Full::new(Bytes::from(body)));
        let response = self.http.request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::ensure!(
            status.is_success(),
            "{service} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(body)
    }

    async fn sqs(&self, operation: &str, body: serde_json::Value) -> anyhow::Result<Bytes> {
        let target = format!("AmazonSQS.{operation}");
        let call = Call::Json {
            service: "sqs",
            target: &target,
            content_type: "application/x-amz-json-1.0",
        };
        self.call(call, serde_json::to_vec(&body)?).await
    }

    async fn invoke(&self, function: &str, records: Vec<serde_json::Value>) -> anyhow::Result<()> {
        let payload = serde_json::to_vec(&json!({ "Records": records }))?;
        self.call(Call::Invoke { function }, payload).await?;
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Received {
    #[serde(default)]
    messages: Vec<Message>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Message {
    message_id: String,
    receipt_handle: String,
    body: String,
}

/// The SQS loop of [`crate::baseline::sqs`], call for call.
pub async fn sqs(
    queue_url: String,
    function: String,
    batch: usize,
    loops: usize,
) -> anyhow::Result<()> {
    let lean = Arc::new(Lean::from_env()?);
    let tasks = (0..loops)
        .map(|_| {
            let (lean, url, function) = (Arc::clone(&lean), queue_url.clone(), function.clone());
            tokio::spawn(async move { sqs_loop(&lean, &url, &function, batch).await })
        })
        .collect();
    crate::baseline::join(tasks).await
}

async fn sqs_loop(lean: &Lean, url: &str, function: &str, batch: usize) -> anyhow::Result<()> {
    loop {
        let mut messages: Vec<Message> = Vec::new();
        while messages.len() < batch {
            let body = lean
                .sqs(
                    "ReceiveMessage",
                    json!({
                        "QueueUrl": url,
                        "MaxNumberOfMessages": (batch - messages.len()).min(10),
                        "MessageSystemAttributeNames": ["All"],
                        "WaitTimeSeconds": if messages.is_empty() { 1 } else { 0 },
                    }),
                )
                .await?;
            let got = serde_json::from_slice::<Received>(&body)?.messages;
            if got.is_empty() {
                break;
            }
            messages.extend(got);
        }
        if messages.is_empty() {
            continue;
        }
        let records = messages
            .iter()
            .map(|m| json!({"messageId": m.message_id, "body": m.body, "eventSource": "aws:sqs"}))
            .collect();
        lean.invoke(function, records).await?;
        for chunk in messages.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| json!({"Id": i.to_string(), "ReceiptHandle": m.receipt_handle}))
                .collect();
            lean.sqs(
                "DeleteMessageBatch",
                json!({"QueueUrl": url, "Entries": entries}),
            )
            .await?;
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Records {
    #[serde(default)]
    records: Vec<Record>,
    next_shard_iterator: Option<String>,
}

/// A record as GetRecords returns it: the data stays base64, as the event wants it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Record {
    data: String,
    sequence_number: String,
    partition_key: String,
}

/// The Kinesis loop of [`crate::baseline::kinesis`], call for call; the data is passed through
/// in base64 (the SDK decodes it, and the event encodes it again).
pub async fn kinesis(
    stream: String,
    function: String,
    batch: usize,
    count: usize,
) -> anyhow::Result<()> {
    let lean = Arc::new(Lean::from_env()?);
    let kinesis = |target: &'static str| Call::Json {
        service: "kinesis",
        target,
        content_type: "application/x-amz-json-1.1",
    };
    let shards: serde_json::Value = serde_json::from_slice(
        &lean
            .call(
                kinesis("Kinesis_20131202.ListShards"),
                serde_json::to_vec(&json!({"StreamName": stream}))?,
            )
            .await?,
    )?;
    let ids: Vec<String> = shards["Shards"]
        .as_array()
        .context("ListShards returned no shards")?
        .iter()
        .filter_map(|s| s["ShardId"].as_str().map(String::from))
        .collect();
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for shard_id in ids {
        let (lean, done, stream, function) = (
            Arc::clone(&lean),
            Arc::clone(&done),
            stream.clone(),
            function.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let body = json!({"StreamName": stream, "ShardId": shard_id, "ShardIteratorType": "TRIM_HORIZON"});
            let out: serde_json::Value = serde_json::from_slice(
                &lean
                    .call(kinesis("Kinesis_20131202.GetShardIterator"), serde_json::to_vec(&body)?)
                    .await?,
            )?;
            let mut iterator = out["ShardIterator"].as_str().unwrap_or_default().to_string();
            while done.load(Ordering::Relaxed) < count {
                let body = json!({"ShardIterator": iterator, "Limit": batch});
                let out: Records = serde_json::from_slice(
                    &lean
                        .call(kinesis("Kinesis_20131202.GetRecords"), serde_json::to_vec(&body)?)
                        .await?,
                )?;
                iterator = out.next_shard_iterator.unwrap_or_default();
                if out.records.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
                let n = out.records.len();
                let records = out
                    .records
                    .into_iter()
                    .map(|r| json!({"kinesis": {
                        "data": r.data, "sequenceNumber": r.sequence_number, "partitionKey": r.partition_key,
                    }}))
                    .collect();
                lean.invoke(&function, records).await?;
                done.fetch_add(n, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    crate::baseline::join(tasks).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn get_records_data_stays_base64() {
        let out: Records = serde_json::from_str(
            r#"{"Records":[{"Data":"aGk=","SequenceNumber":"1","PartitionKey":"k","ApproximateArrivalTimestamp":1.5}],"NextShardIterator":"it","MillisBehindLatest":0}"#,
        )
        .unwrap();
        assert_eq!(
            out.records[0].data,
            base64::engine::general_purpose::STANDARD.encode("hi")
        );
        assert_eq!(out.next_shard_iterator.as_deref(), Some("it"));
    }
}
