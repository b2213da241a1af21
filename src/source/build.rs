//! Building a mapping's source from its validated configuration: the SQS source, or the
//! stream coordinator with its processor and shard context. The daemon hands over the shared
//! clients and supervises the task this returns; it fills no source's fields itself.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::sqs::{SqsApi, SqsSource};
use super::stream::process::Processor;
use super::stream::{function_arn, ReadPacing, ShardContext, StreamApi, StreamSource};
use super::Shutdown;
use crate::batch::BatchLimits;
use crate::checkpoint::CheckpointStore;
use crate::config::{MappingConfig, SourceKind, SourceSettings, StreamSettings};
use crate::failure::destination::{DestinationSender, StreamKind};
use crate::failure::stream::StreamPolicy;
use crate::invoke::http::HttpInvoker;
use crate::invoke::Invoker;
use crate::retry::RetryPolicies;
use crate::telemetry::MappingStatus;

/// The shared clients a source may need.
pub(crate) struct Dependencies {
    pub(crate) sqs: Arc<dyn SqsApi>,
    pub(crate) invoker: Arc<dyn Invoker>,
    /// The stream client for this mapping's stream (stream mappings only).
    pub(crate) stream_api: Option<Arc<dyn StreamApi>>,
    pub(crate) destinations: Arc<dyn DestinationSender>,
    /// The checkpoint store (stream mappings only).
    pub(crate) store: Option<Arc<dyn CheckpointStore>>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    #[error("no {0} for a stream mapping")]
    Missing(&'static str),
}

/// The mapping's task: runs until `shutdown` stops it.
pub(crate) fn build(
    mapping: Arc<MappingConfig>,
    deps: Dependencies,
    status: Arc<MappingStatus>,
    shutdown: Shutdown,
) -> Result<BoxFuture<'static, ()>, BuildError> {
    // A mapping with `esmd_http_target` delivers to its own HTTP endpoint instead of Lambda.
    let invoker: Arc<dyn Invoker> = match &mapping.http_target {
        Some(url) => Arc::new(HttpInvoker::new(url)),
        None => Arc::clone(&deps.invoker),
    };
    match mapping.settings.clone() {
        SourceSettings::Sqs(settings) => {
            let source = SqsSource::new(mapping, settings, deps.sqs, invoker, status, shutdown);
            Ok(Box::pin(Arc::new(source).run()))
        }
        SourceSettings::Stream(settings) => {
            let api = deps
                .stream_api
                .ok_or(BuildError::Missing("stream client"))?;
            let store = deps.store.ok_or(BuildError::Missing("checkpoint store"))?;
            let processor = Processor {
                kind: match mapping.kind() {
                    SourceKind::Kinesis => StreamKind::Kinesis,
                    _ => StreamKind::DynamoDb,
                },
                function_arn: function_arn(
                    &mapping.function_name,
                    mapping.source.region(),
                    mapping.source.account_id(),
                ),
                invoker,
                destinations: deps.destinations,
                status: Arc::clone(&status),
                shutdown: shutdown.clone(),
                policy: StreamPolicy::from(&settings),
                on_failure: settings.on_failure.clone(),
                delays: RetryPolicies::DEFAULT,
                mapping: Arc::clone(&mapping),
            };
            let ctx = ShardContext {
                uuid: mapping.uuid.clone(),
                api,
                store,
                processor: Arc::new(processor),
                filters: Arc::clone(&mapping.filters),
                filter_view: match mapping.kind() {
                    SourceKind::Kinesis => crate::payload::kinesis::filter_view,
                    _ => crate::payload::dynamodb::filter_view,
                },
                limits: BatchLimits::for_mapping(&mapping),
                lanes: settings.parallelization_factor,
                tumbling_window: settings.tumbling_window,
                pacing: pacing(
                    mapping.kind(),
                    mapping.source.consumer_arn().is_some(),
                    &settings,
                ),
                shutdown,
                status,
                closed: Default::default(),
            };
            let source = StreamSource {
                starting_position: settings.starting_position,
                mapping,
                ctx: Arc::new(ctx),
            };
            Ok(Box::pin(source.run()))
        }
    }
}

/// The source's read pacing, with the mapping's `esmd_poll_interval_ms` when it has one.
fn pacing(kind: SourceKind, fan_out: bool, settings: &StreamSettings) -> ReadPacing {
    let pacing = match kind {
        SourceKind::Kinesis if fan_out => ReadPacing::FAN_OUT,
        SourceKind::Kinesis => ReadPacing::KINESIS,
        _ => ReadPacing::DYNAMODB,
    };
    match settings.poll_interval {
        Some(idle_interval) => ReadPacing {
            idle_interval,
            ..pacing
        },
        None => pacing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn kinesis(extra: &str) -> StreamSettings {
        let text = format!(
            "[[mapping]]\nevent_source_arn = \"arn:aws:kinesis:us-east-1:123456789012:stream/s\"\nfunction_name = \"f\"\nstarting_position = \"LATEST\"\n{extra}"
        );
        let config = Config::parse(&text).unwrap();
        config.mappings[0].stream_settings().unwrap().clone()
    }

    #[test]
    fn the_poll_interval_replaces_only_the_idle_interval() {
        let tuned = pacing(
            SourceKind::Kinesis,
            false,
            &kinesis("esmd_poll_interval_ms = 500"),
        );
        assert_eq!(tuned.idle_interval, std::time::Duration::from_millis(500));
        assert_eq!(tuned.min_interval, ReadPacing::KINESIS.min_interval);
        assert_eq!(tuned.max_records, ReadPacing::KINESIS.max_records);
        let default = pacing(SourceKind::Kinesis, false, &kinesis(""));
        assert_eq!(default.idle_interval, ReadPacing::KINESIS.idle_interval);
        assert_eq!(
            pacing(SourceKind::DynamoDbStreams, false, &kinesis("")),
            ReadPacing::DYNAMODB
        );
    }
}
