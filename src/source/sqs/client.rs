//! The narrow SQS interface the source needs, and its aws-sdk-sqs implementation. SDK types
//! stop here: the rest of esmd sees [`SqsMessage`] and [`SqsError`].

use std::time::Duration;

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use futures::future::BoxFuture;

use crate::action::ErrorAction;
use crate::aws::error::{AwsFailure, FailureClass};
use crate::payload::sqs::{MessageAttribute, SqsMessage};

/// An SQS call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SqsError {
    #[error("queue does not exist: {0}")]
    QueueMissing(String),
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("throttled: {0}")]
    Throttled(String),
    #[error("transient error: {0}")]
    Transient(String),
    #[error("{0}")]
    Other(String),
}

impl SqsError {
    pub(crate) fn action(&self) -> ErrorAction {
        match self {
            SqsError::QueueMissing(_) | SqsError::AccessDenied(_) | SqsError::Other(_) => {
                ErrorAction::StopMapping
            }
            SqsError::Throttled(_) | SqsError::Transient(_) => ErrorAction::Retry,
        }
    }
}

/// One entry of a batch call that SQS refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailedEntry {
    /// The position of the entry in the request.
    pub(crate) index: usize,
    pub(crate) code: String,
    pub(crate) message: String,
}

/// A message to delete or change, by its receipt handle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReceiptRef<'a> {
    pub(crate) receipt_handle: &'a str,
}

/// The SQS calls a mapping makes.
pub(crate) trait SqsApi: Send + Sync + 'static {
    fn queue_url<'a>(
        &'a self,
        queue_name: &'a str,
        account_id: &'a str,
    ) -> BoxFuture<'a, Result<String, SqsError>>;

    fn visibility_timeout<'a>(
        &'a self,
        queue_url: &'a str,
    ) -> BoxFuture<'a, Result<Duration, SqsError>>;

    /// ApproximateNumberOfMessages and ApproximateNumberOfMessagesNotVisible.
    fn queue_depth<'a>(&'a self, queue_url: &'a str)
        -> BoxFuture<'a, Result<(i64, i64), SqsError>>;

    /// ReceiveMessage with every system and message attribute.
    fn receive<'a>(
        &'a self,
        queue_url: &'a str,
        max_messages: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<SqsMessage>, SqsError>>;

    /// DeleteMessageBatch, in chunks of ten; returns the entries SQS refused.
    fn delete<'a>(
        &'a self,
        queue_url: &'a str,
        entries: &'a [ReceiptRef<'a>],
    ) -> BoxFuture<'a, Result<Vec<FailedEntry>, SqsError>>;

    /// ChangeMessageVisibilityBatch, in chunks of ten; returns the entries SQS refused.
    fn change_visibility<'a>(
        &'a self,
        queue_url: &'a str,
        entries: &'a [(ReceiptRef<'a>, Duration)],
    ) -> BoxFuture<'a, Result<Vec<FailedEntry>, SqsError>>;
}

pub(crate) struct SdkSqs {
    client: aws_sdk_sqs::Client,
}

impl SdkSqs {
    pub(crate) fn new(client: aws_sdk_sqs::Client) -> Self {
        SdkSqs { client }
    }
}

fn classify<E>(err: SdkError<E, aws_smithy_runtime_api::http::Response>) -> SqsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    AwsFailure::from_sdk(&err).into()
}

impl From<AwsFailure> for SqsError {
    fn from(failure: AwsFailure) -> Self {
        let text = failure.to_string();
        match failure.class {
            FailureClass::NotFound => SqsError::QueueMissing(text),
            FailureClass::AccessDenied => SqsError::AccessDenied(text),
            FailureClass::Throttled => SqsError::Throttled(text),
            FailureClass::Transient => SqsError::Transient(text),
            FailureClass::TooLarge
            | FailureClass::ExpiredIterator
            | FailureClass::InvalidArgument
            | FailureClass::Rejected => SqsError::Other(text),
        }
    }
}

fn to_message(m: aws_sdk_sqs::types::Message) -> SqsMessage {
    let mut attributes: Vec<(String, String)> = m
        .attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.as_str().to_string(), v))
        .collect();
    attributes.sort();
    let message_attributes = m
        .message_attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                MessageAttribute {
                    data_type: v.data_type().to_string(),
                    string_value: v.string_value().map(String::from),
                    binary_value: v.binary_value().map(|b| b.as_ref().to_vec()),
                },
            )
        })
        .collect();
    SqsMessage {
        message_id: m.message_id.unwrap_or_default(),
        receipt_handle: m.receipt_handle.unwrap_or_default(),
        body: m.body.unwrap_or_default(),
        attributes,
        message_attributes,
        md5_of_body: m.md5_of_body,
        md5_of_message_attributes: m.md5_of_message_attributes,
    }
}

impl SqsApi for SdkSqs {
    fn queue_url<'a>(
        &'a self,
        queue_name: &'a str,
        account_id: &'a str,
    ) -> BoxFuture<'a, Result<String, SqsError>> {
        Box::pin(async move {
            let mut req = self.client.get_queue_url().queue_name(queue_name);
            if !account_id.is_empty() {
                req = req.queue_owner_aws_account_id(account_id);
            }
            let out = req.send().await.map_err(classify)?;
            out.queue_url
                .ok_or_else(|| SqsError::QueueMissing(format!("no URL returned for {queue_name}")))
        })
    }

    fn queue_depth<'a>(
        &'a self,
        queue_url: &'a str,
    ) -> BoxFuture<'a, Result<(i64, i64), SqsError>> {
        Box::pin(async move {
            let out = self
                .client
                .get_queue_attributes()
                .queue_url(queue_url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await
                .map_err(classify)?;
            let get = |name: QueueAttributeName| {
                out.attributes
                    .as_ref()
                    .and_then(|a| a.get(&name))
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0)
            };
            Ok((
                get(QueueAttributeName::ApproximateNumberOfMessages),
                get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            ))
        })
    }

    fn visibility_timeout<'a>(
        &'a self,
        queue_url: &'a str,
    ) -> BoxFuture<'a, Result<Duration, SqsError>> {
        Box::pin(async move {
            let out = self
                .client
                .get_queue_attributes()
                .queue_url(queue_url)
                .attribute_names(QueueAttributeName::VisibilityTimeout)
                .send()
                .await
                .map_err(classify)?;
            let secs = out
                .attributes
                .as_ref()
                .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(30);
            Ok(Duration::from_secs(secs))
        })
    }

    fn receive<'a>(
        &'a self,
        queue_url: &'a str,
        max_messages: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<SqsMessage>, SqsError>> {
        Box::pin(async move {
            #[allow(deprecated)]
            let out = self
                .client
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(max_messages.clamp(1, 10) as i32)
                .wait_time_seconds(wait.as_secs().min(20) as i32)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .attribute_names(QueueAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(classify)?;
            Ok(out
                .messages
                .unwrap_or_default()
                .into_iter()
                .map(to_message)
                .collect())
        })
    }

    fn delete<'a>(
        &'a self,
        queue_url: &'a str,
        entries: &'a [ReceiptRef<'a>],
    ) -> BoxFuture<'a, Result<Vec<FailedEntry>, SqsError>> {
        Box::pin(in_requests_of_ten(entries, move |chunk| async move {
            let request_entries = chunk
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(e.receipt_handle)
                        .build()
                        .map_err(|err| SqsError::Other(err.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(request_entries))
                .send()
                .await
                .map_err(classify)?;
            Ok(out.failed.iter().map(refused).collect())
        }))
    }

    fn change_visibility<'a>(
        &'a self,
        queue_url: &'a str,
        entries: &'a [(ReceiptRef<'a>, Duration)],
    ) -> BoxFuture<'a, Result<Vec<FailedEntry>, SqsError>> {
        Box::pin(in_requests_of_ten(entries, move |chunk| async move {
            let request_entries = chunk
                .iter()
                .enumerate()
                .map(|(i, (e, timeout))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(e.receipt_handle)
                        .visibility_timeout(timeout.as_secs().min(43_200) as i32)
                        .build()
                        .map_err(|err| SqsError::Other(err.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(queue_url)
                .set_entries(Some(request_entries))
                .send()
                .await
                .map_err(classify)?;
            Ok(out.failed.iter().map(refused).collect())
        }))
    }
}

/// DeleteMessageBatch and ChangeMessageVisibilityBatch take at most 10 entries: sends one
/// request per 10 entries, all at once, and maps each failed entry (indexed within its
/// request, by the entry ids `0`-`9` every request uses) back to its index in `entries`. A
/// request that fails as a whole fails the call (the caller retries them all; deleting or
/// hiding a message twice is harmless).
pub(super) async fn in_requests_of_ten<'a, T, F, Fut>(
    entries: &'a [T],
    send: F,
) -> Result<Vec<FailedEntry>, SqsError>
where
    F: Fn(&'a [T]) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<FailedEntry>, SqsError>>,
{
    let results = futures::future::join_all(entries.chunks(10).map(send)).await;
    let mut failed = Vec::new();
    for (chunk_index, result) in results.into_iter().enumerate() {
        failed.extend(result?.into_iter().map(|f| FailedEntry {
            index: chunk_index * 10 + f.index,
            ..f
        }));
    }
    Ok(failed)
}

/// A refused entry of one request; its id is its position in the request.
fn refused(f: &BatchResultErrorEntry) -> FailedEntry {
    FailedEntry {
        index: f.id().parse::<usize>().unwrap_or(0),
        code: f.code().to_string(),
        message: f.message().unwrap_or_default().to_string(),
    }
}
