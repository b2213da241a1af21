//! Giving a stream batch up: AWS's on-failure record, sent to the destination (retried until
//! delivered, never dropped silently), or a loud drop when the mapping has none.

use chrono::Utc;

use super::api::StreamRecord;
use super::process::Processor;
use crate::failure::destination::{
    Condition, Delivery, DestinationError, FailedBatch, ResponseContext,
};
use crate::payload::records_event;
use crate::retry::{retry, Pace, Retried, Step as RetryStep};
use crate::telemetry::events::{BatchGivenUp, DestinationDelivered};

impl Processor {
    /// Reports a batch to the on-failure destination (retrying until it is delivered) or
    /// drops it loudly when none is set. Returns false if shutdown's deadline passed first;
    /// the batch then stays unsettled and is read again after a restart.
    pub(super) async fn give_up(
        &self,
        shard_id: &str,
        slice: &[StreamRecord],
        condition: Condition,
        invocations: u32,
        response: Option<ResponseContext>,
    ) -> bool {
        let (Some(first), Some(last)) = (slice.first(), slice.last()) else {
            return true;
        };
        let metrics = &self.status.metrics;
        let destination = self.destination();
        BatchGivenUp {
            uuid: &self.mapping.uuid,
            metrics,
            shard_id,
            records: slice.len(),
            condition: match condition {
                Condition::RetryAttemptsExhausted => "RetryAttemptsExhausted",
                Condition::RecordAgeExceeded => "RecordAgeExceeded",
            },
            first_sequence_number: first.sequence_number.as_str(),
            last_sequence_number: last.sequence_number.as_str(),
            destination: destination.map(|d| d.arn()),
        }
        .emit();
        let Some(destination) = destination else {
            return true;
        };
        let span = (shard_id, slice, first, last);
        let delivery = self.delivery(span, condition, invocations, response);
        let sent = retry(
            self.delays,
            &self.shutdown.abandon,
            |_| async {
                let sent = tokio::select! {
                    r = self.destinations.send(destination, &delivery) => r,
                    _ = self.shutdown.abandon.cancelled() => return RetryStep::Stop(None),
                };
                match sent {
                    Ok(()) => RetryStep::Done(()),
                    Err(e) => RetryStep::Retry {
                        pace: self.destination_pace(&e),
                        error: Some(e),
                        after: None,
                    },
                }
            },
            |e, _, delay| {
                if let Some(e) = e {
                    tracing::warn!(mapping = %self.mapping.uuid, shard = shard_id, error = %e, retry_in_ms = delay.as_millis() as u64, "on-failure destination delivery failed; retrying");
                }
            },
        )
        .await;
        if !matches!(sent, Retried::Done(())) {
            return false;
        }
        DestinationDelivered {
            uuid: &self.mapping.uuid,
            metrics,
            records: slice.len(),
            destination: destination.arn(),
        }
        .emit();
        true
    }

    /// AWS's on-failure record for a given-up span, and for S3 the record with the event.
    fn delivery(
        &self,
        (shard_id, slice, first, last): (&str, &[StreamRecord], &StreamRecord, &StreamRecord),
        condition: Condition,
        invocations: u32,
        response: Option<ResponseContext>,
    ) -> Delivery {
        let failed = FailedBatch {
            kind: self.kind,
            request_id: uuid::Uuid::new_v4().to_string(),
            function_arn: self.function_arn.clone(),
            condition,
            approximate_invoke_count: invocations,
            response,
            timestamp: Utc::now(),
            shard_id,
            stream_arn: self.mapping.source.stream_arn(),
            start_sequence_number: first.sequence_number.as_str(),
            end_sequence_number: last.sequence_number.as_str(),
            first_arrival: first.arrival,
            last_arrival: last.arrival,
            batch_size: slice.len(),
        };
        let event =
            String::from_utf8_lossy(&records_event(slice.iter().map(|r| &r.json))).into_owned();
        Delivery {
            record: failed.to_json(None),
            s3_key: failed.s3_key(&self.mapping.uuid),
            s3_body: failed.to_json(Some(&event)),
        }
    }

    /// Every delivery failure is retried; a missing or forbidden destination also puts the
    /// mapping in its error state while it waits, on the slow pace.
    fn destination_pace(&self, e: &DestinationError) -> Pace {
        if e.action() == crate::action::ErrorAction::Retry {
            Pace::Transient
        } else {
            self.status.set_error(e.to_string());
            Pace::ErrorState
        }
    }
}
