//! `[aws] client = "lean"`: ReceiveMessage and DeleteMessageBatch, the two SQS calls of
//! every batch, through esmd's own JSON-protocol client ([`crate::aws::lean`]) instead of the
//! SDK's orchestrator; the rarer calls (queue lookup, attributes, visibility changes) stay
//! with the SDK. The requests and their reading match [`super::client::SdkSqs`]'s, which the
//! contract below checks against moto.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::client::{in_requests_of_ten, FailedEntry, ReceiptRef, SdkSqs, SqsApi, SqsError};
use crate::aws::lean::{JsonClient, SignedClient};
use crate::aws::{AwsContext, AwsSetupError, Service};
use crate::payload::sqs::{MessageAttribute, SqsMessage};

pub(crate) struct LeanSqs {
    /// The calls made a few times per mapping, not per batch.
    sdk: SdkSqs,
    client: JsonClient,
}

impl LeanSqs {
    pub(crate) fn new(sdk: SdkSqs, signed: SignedClient) -> Self {
        let client = JsonClient::new(signed, "AmazonSQS", "application/x-amz-json-1.0");
        LeanSqs { sdk, client }
    }
}

/// The SQS calls a mapping makes: the SDK client, or with `[aws] client = "lean"` this one.
pub(crate) async fn sqs_api(aws: &AwsContext) -> Result<Arc<dyn SqsApi>, AwsSetupError> {
    let sdk = SdkSqs::new(aws.sqs());
    let lean = aws
        .lean_client(Service::Sqs, "sqs", Duration::from_secs(30))
        .await?;
    Ok(match lean {
        None => Arc::new(sdk),
        Some(signed) => Arc::new(LeanSqs::new(sdk, signed)),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Received {
    #[serde(default)]
    messages: Vec<WireMessage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireMessage {
    #[serde(default)]
    message_id: String,
    #[serde(default)]
    receipt_handle: String,
    #[serde(default)]
    body: String,
    #[serde(rename = "MD5OfBody")]
    md5_of_body: Option<String>,
    #[serde(rename = "MD5OfMessageAttributes")]
    md5_of_message_attributes: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    message_attributes: BTreeMap<String, WireAttribute>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireAttribute {
    data_type: String,
    string_value: Option<String>,
    /// base64 on the wire.
    binary_value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Deleted {
    #[serde(default)]
    failed: Vec<WireFailure>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireFailure {
    id: String,
    #[serde(default)]
    code: String,
    message: Option<String>,
}

/// ReceiveMessage's request: every attribute, as the SDK client asks.
fn receive_request(queue_url: &str, max_messages: usize, wait: Duration) -> Vec<u8> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Request<'a> {
        queue_url: &'a str,
        max_number_of_messages: usize,
        wait_time_seconds: u64,
        message_system_attribute_names: [&'static str; 1],
        attribute_names: [&'static str; 1],
        message_attribute_names: [&'static str; 1],
    }
    let request = Request {
        queue_url,
        max_number_of_messages: max_messages.clamp(1, 10),
        wait_time_seconds: wait.as_secs().min(20),
        message_system_attribute_names: ["All"],
        attribute_names: ["All"],
        message_attribute_names: ["All"],
    };
    serde_json::to_vec(&request).unwrap_or_default()
}

/// DeleteMessageBatch's request, written straight from the receipts (entry ids are the
/// entries' indexes within it).
fn delete_request(queue_url: &str, entries: &[ReceiptRef<'_>]) -> Vec<u8> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Request<'a> {
        queue_url: &'a str,
        entries: Vec<Entry<'a>>,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry<'a> {
        id: &'static str,
        receipt_handle: &'a str,
    }
    const IDS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    let request = Request {
        queue_url,
        entries: entries
            .iter()
            .zip(IDS)
            .map(|(e, id)| Entry {
                id,
                receipt_handle: e.receipt_handle,
            })
            .collect(),
    };
    // Strings always serialise.
    serde_json::to_vec(&request).unwrap_or_default()
}

/// A response esmd cannot read is transient, as the SDK classifies one.
fn malformed(operation: &str, e: impl std::fmt::Display) -> SqsError {
    SqsError::Transient(format!("SQS {operation}: malformed response: {e}"))
}

/// ReceiveMessage's answer as the source sees it.
fn read_messages(body: &[u8]) -> Result<Vec<SqsMessage>, SqsError> {
    let received: Received =
        serde_json::from_slice(body).map_err(|e| malformed("ReceiveMessage", e))?;
    received
        .messages
        .into_iter()
        .map(|m| {
            let message_attributes = m
                .message_attributes
                .into_iter()
                .map(|(name, a)| {
                    let binary_value = a
                        .binary_value
                        .map(|b| base64::engine::general_purpose::STANDARD.decode(b))
                        .transpose()
                        .map_err(|e| malformed("ReceiveMessage", format!("{name}: {e}")))?;
                    let attribute = MessageAttribute {
                        data_type: a.data_type,
                        string_value: a.string_value,
                        binary_value,
                    };
                    Ok((name, attribute))
                })
                .collect::<Result<_, SqsError>>()?;
            Ok(SqsMessage {
                message_id: m.message_id,
                receipt_handle: m.receipt_handle,
                body: m.body,
                attributes: m.attributes.into_iter().collect(),
                message_attributes,
                md5_of_body: m.md5_of_body,
                md5_of_message_attributes: m.md5_of_message_attributes,
            })
        })
        .collect()
}

/// DeleteMessageBatch's refused entries, indexed within the request.
fn read_failed(body: &[u8]) -> Result<Vec<FailedEntry>, SqsError> {
    let deleted: Deleted =
        serde_json::from_slice(body).map_err(|e| malformed("DeleteMessageBatch", e))?;
    Ok(deleted
        .failed
        .into_iter()
        .map(|f| FailedEntry {
            index: f.id.parse().unwrap_or(0),
            code: f.code,
            message: f.message.unwrap_or_default(),
        })
        .collect())
}

impl SqsApi for LeanSqs {
    fn queue_url<'a>(
        &'a self,
        queue_name: &'a str,
        account_id: &'a str,
    ) -> BoxFuture<'a, Result<String, SqsError>> {
        self.sdk.queue_url(queue_name, account_id)
    }

    fn visibility_timeout<'a>(
        &'a self,
        queue_url: &'a str,
    ) -> BoxFuture<'a, Result<Duration, SqsError>> {
        self.sdk.visibility_timeout(queue_url)
    }

    fn queue_depth<'a>(
        &'a self,
        queue_url: &'a str,
    ) -> BoxFuture<'a, Result<(i64, i64), SqsError>> {
        self.sdk.queue_depth(queue_url)
    }

    fn receive<'a>(
        &'a self,
        queue_url: &'a str,
        max_messages: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<SqsMessage>, SqsError>> {
        Box::pin(async move {
            let body = self
                .client
                .call(
                    "ReceiveMessage",
                    receive_request(queue_url, max_messages, wait),
                )
                .await?;
            read_messages(&body)
        })
    }

    fn delete<'a>(
        &'a self,
        queue_url: &'a str,
        entries: &'a [ReceiptRef<'a>],
    ) -> BoxFuture<'a, Result<Vec<FailedEntry>, SqsError>> {
        Box::pin(in_requests_of_ten(entries, move |chunk| async move {
            let body = self
                .client
                .call("DeleteMessageBatch", delete_request(queue_url, chunk))
                .await?;
            read_failed(&body)
        }))
    }

    fn change_visibility<'a>(
        &'a self,
        queue_url: &'a str,
        entries: &'a [(ReceiptRef<'a>, Duration)],
    ) -> BoxFuture<'a, Result<Vec<FailedEntry>, SqsError>> {
        self.sdk.change_visibility(queue_url, entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_written_as_the_sdk_writes_them() {
        let receive: serde_json::Value =
            serde_json::from_slice(&receive_request("u", 25, Duration::from_secs(30))).unwrap();
        assert_eq!(
            receive,
            json!({"QueueUrl": "u", "MaxNumberOfMessages": 10, "WaitTimeSeconds": 20,
                   "MessageSystemAttributeNames": ["All"], "AttributeNames": ["All"],
                   "MessageAttributeNames": ["All"]})
        );
        let receipts = [
            ReceiptRef {
                receipt_handle: "a\"b",
            },
            ReceiptRef {
                receipt_handle: "c",
            },
        ];
        let delete: serde_json::Value =
            serde_json::from_slice(&delete_request("u", &receipts)).unwrap();
        assert_eq!(
            delete,
            json!({"QueueUrl": "u", "Entries": [
                {"Id": "0", "ReceiptHandle": "a\"b"}, {"Id": "1", "ReceiptHandle": "c"}]})
        );
    }

    #[test]
    fn a_received_message_reads_as_the_sdk_reads_it() {
        let body = br#"{"Messages":[{"MessageId":"m1","ReceiptHandle":"r1","MD5OfBody":"abc","Body":"hi \"there\"","Attributes":{"SentTimestamp":"2","ApproximateReceiveCount":"1"},"MD5OfMessageAttributes":"def","MessageAttributes":{"tenant":{"StringValue":"acme","DataType":"String"},"blob":{"BinaryValue":"3q2+7w==","DataType":"Binary"}}}]}"#;
        let messages = read_messages(body).unwrap();
        assert_eq!(messages.len(), 1);
        let m = &messages[0];
        assert_eq!(
            (m.message_id.as_str(), m.receipt_handle.as_str()),
            ("m1", "r1")
        );
        assert_eq!(m.body, "hi \"there\"");
        assert_eq!(m.attribute("ApproximateReceiveCount"), Some("1"));
        assert_eq!(m.md5_of_body.as_deref(), Some("abc"));
        assert_eq!(m.md5_of_message_attributes.as_deref(), Some("def"));
        let blob = &m
            .message_attributes
            .iter()
            .find(|(n, _)| n == "blob")
            .unwrap()
            .1;
        assert_eq!(
            blob.binary_value.as_deref(),
            Some(&[0xde, 0xad, 0xbe, 0xef][..])
        );
        assert_eq!(blob.data_type, "Binary");
        assert_eq!(read_messages(b"{}").unwrap(), vec![]);
    }

    #[test]
    fn a_malformed_answer_is_transient_and_named() {
        let e = read_messages(b"<html>").unwrap_err();
        assert!(
            matches!(&e, SqsError::Transient(m) if m.contains("ReceiveMessage")),
            "{e}"
        );
        let bad_binary = br#"{"Messages":[{"MessageAttributes":{"b":{"BinaryValue":"***","DataType":"Binary"}}}]}"#;
        let e = read_messages(bad_binary).unwrap_err();
        assert!(
            matches!(&e, SqsError::Transient(m) if m.contains("b:")),
            "{e}"
        );
        assert!(matches!(read_failed(b"[1]"), Err(SqsError::Transient(_))));
    }

    #[test]
    fn refused_deletes_keep_their_position_and_code() {
        let body = br#"{"Successful":[{"Id":"0"}],"Failed":[{"Id":"1","SenderFault":true,"Code":"ReceiptHandleIsInvalid","Message":"bad"}]}"#;
        let failed = read_failed(body).unwrap();
        assert_eq!(
            failed,
            vec![FailedEntry {
                index: 1,
                code: "ReceiptHandleIsInvalid".into(),
                message: "bad".into()
            }]
        );
    }
}
