//! Wiring: builds the clients once, starts one task per enabled mapping and the admin HTTP
//! server, and drains everything in order on shutdown.
//!
//! Shutdown order: the root token stops every poller from receiving; in-flight invocations
//! get `daemon.shutdown_timeout` to finish and be acknowledged; then the `abandon` token ends
//! whatever is left; the admin server stops last, so probes see the drain.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::aws::AwsContext;
use crate::batch::BatchLimits;
use crate::checkpoint::{CheckpointError, CheckpointStore, SqliteStore, StoreLock};
use crate::config::{Config, EventSource, MappingConfig, SourceKind};
use crate::failure::destination::{DestinationSender, SdkDestinations, StreamKind};
use crate::filter::FilterSet;
use crate::source::dynamodb::SdkDynamoDbStreams;
use crate::source::kinesis::SdkKinesis;
use crate::source::sqs::{SdkSqs, Shutdown, SqsApi, SqsSource};
use crate::source::stream::process::{Processor, RetryDelays};
use crate::source::stream::{self, ReadPacing, ShardContext, StreamApi, StreamSource};
use crate::target::lambda::LambdaInvoker;
use crate::target::Invoker;
use crate::telemetry::{MappingStatus, Registry};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Http(#[from] crate::http::BindError),
    #[error("mapping {uuid}: {message}")]
    Mapping { uuid: String, message: String },
    #[error("checkpoint store {path}: {source}")]
    State {
        path: String,
        #[source]
        source: CheckpointError,
    },
}

/// Builds the [`StreamApi`] for a stream mapping.
pub type StreamApiFactory = Arc<dyn Fn(&MappingConfig) -> Option<Arc<dyn StreamApi>> + Send + Sync>;

/// The clients every mapping shares, built from one AWS configuration load.
pub struct Clients {
    pub sqs: Arc<dyn SqsApi>,
    pub invoker: Arc<dyn Invoker>,
    pub streams: StreamApiFactory,
    pub destinations: Arc<dyn DestinationSender>,
}

/// The role ARN put in Kinesis records' `invokeIdentityArn`: esmd has no execution role, so
/// it names a role `esmd` in the stream's account.
fn invoke_identity_arn(stream_arn: &str) -> String {
    let account = stream_arn.split(':').nth(4).unwrap_or_default();
    format!("arn:aws:iam::{account}:role/esmd")
}

impl Clients {
    pub async fn from_aws(config: &Config) -> Self {
        let aws = AwsContext::load(&config.aws).await;
        let kinesis = aws.kinesis();
        let dynamodb_streams = aws.dynamodb_streams();
        let streams: StreamApiFactory = Arc::new(move |mapping: &MappingConfig| {
            let api: Arc<dyn StreamApi> = match &mapping.source {
                EventSource::Kinesis {
                    arn,
                    region,
                    stream_name,
                } => Arc::new(SdkKinesis::new(
                    kinesis.clone(),
                    arn,
                    stream_name,
                    region,
                    invoke_identity_arn(arn),
                )),
                EventSource::DynamoDbStreams { arn, region, .. } => Arc::new(
                    SdkDynamoDbStreams::new(dynamodb_streams.clone(), arn, region),
                ),
                EventSource::Sqs { .. } => return None,
            };
            Some(api)
        });
        Clients {
            sqs: Arc::new(SdkSqs::new(aws.sqs())),
            invoker: Arc::new(LambdaInvoker::new(aws.lambda())),
            streams,
            destinations: Arc::new(SdkDestinations {
                sqs: aws.sqs(),
                sns: aws.sns(),
                s3: aws.s3(),
            }),
        }
    }
}

/// Runs every mapping until `shutdown` is cancelled, then drains.
pub async fn run(
    config: Config,
    clients: Clients,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let registry = Arc::new(Registry::default());
    let tracker = TaskTracker::new();
    let abandon = CancellationToken::new();
    let http_stop = CancellationToken::new();

    let http_task = match config.http.listen {
        Some(addr) => Some(tokio::spawn(
            crate::http::serve(addr, Arc::clone(&registry), http_stop.clone()).await?,
        )),
        None => None,
    };

    // The checkpoint store is opened only when a stream mapping needs it; an unusable store
    // is fatal (the daemon cannot keep its promises without it).
    let mut store_lock = None;
    let store: Option<Arc<dyn CheckpointStore>> = if config
        .enabled_mappings()
        .any(|m| m.kind() != SourceKind::Sqs)
    {
        let path = config.state.path.clone();
        let state_error = |source| DaemonError::State {
            path: path.display().to_string(),
            source,
        };
        // Held until the daemon returns: `esmd checkpoints` refuses to touch a live store.
        store_lock = Some(StoreLock::acquire(&path).map_err(state_error)?);
        let store = SqliteStore::open(&path).map_err(state_error)?;
        tracing::info!(path = %path.display(), "checkpoint store open");
        Some(Arc::new(store))
    } else {
        None
    };

    for mapping in &config.mappings {
        let status = Arc::new(MappingStatus::new(mapping));
        registry.add(Arc::clone(&status));
        if !mapping.enabled {
            tracing::info!(mapping = %mapping.uuid, "mapping disabled");
            continue;
        }
        start_mapping(
            mapping,
            &clients,
            status,
            Shutdown {
                stop_receiving: shutdown.child_token(),
                abandon: abandon.child_token(),
            },
            &tracker,
            store.as_ref(),
        )?;
    }
    tracker.close();

    shutdown.cancelled().await;
    tracing::info!(
        deadline_secs = config.daemon.shutdown_timeout.as_secs(),
        "shutting down: draining in-flight batches"
    );
    if tokio::time::timeout(config.daemon.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown deadline passed; abandoning in-flight invocations");
        abandon.cancel();
        tracker.wait().await;
    }
    http_stop.cancel();
    if let Some(task) = http_task {
        let _ = task.await;
    }
    drop(store_lock);
    tracing::info!("stopped");
    Ok(())
}

fn start_mapping(
    mapping: &MappingConfig,
    clients: &Clients,
    status: Arc<MappingStatus>,
    shutdown: Shutdown,
    tracker: &TaskTracker,
    store: Option<&Arc<dyn CheckpointStore>>,
) -> Result<(), DaemonError> {
    let filters =
        FilterSet::compile(&mapping.filter_patterns).map_err(|e| DaemonError::Mapping {
            uuid: mapping.uuid.clone(),
            message: e.to_string(),
        })?;
    let mapping = Arc::new(mapping.clone());
    // A mapping with `esmd_http_target` delivers to its own HTTP endpoint instead of Lambda.
    let invoker: Arc<dyn Invoker> = match &mapping.http_target {
        Some(url) => Arc::new(crate::target::http::HttpInvoker::new(url)),
        None => Arc::clone(&clients.invoker),
    };
    match mapping.kind() {
        SourceKind::Sqs => {
            let source = SqsSource::new(
                Arc::clone(&mapping),
                filters,
                Arc::clone(&clients.sqs),
                Arc::clone(&invoker),
                status,
                shutdown,
            )
            .ok_or_else(|| DaemonError::Mapping {
                uuid: mapping.uuid.clone(),
                message: "not an SQS source".into(),
            })?;
            tracker.spawn(Arc::new(source).run());
        }
        SourceKind::Kinesis | SourceKind::DynamoDbStreams => {
            let missing = |what: &str| DaemonError::Mapping {
                uuid: mapping.uuid.clone(),
                message: format!("no {what} for a stream mapping"),
            };
            let api = (clients.streams)(&mapping).ok_or_else(|| missing("stream client"))?;
            let store = Arc::clone(store.ok_or_else(|| missing("checkpoint store"))?);
            let (kind, pacing, filter_view): (_, _, fn(&str) -> serde_json::Value) =
                match mapping.kind() {
                    SourceKind::Kinesis => (
                        StreamKind::Kinesis,
                        ReadPacing::KINESIS,
                        crate::payload::kinesis::filter_view,
                    ),
                    _ => (
                        StreamKind::DynamoDb,
                        ReadPacing::DYNAMODB,
                        crate::payload::dynamodb::filter_view,
                    ),
                };
            let account = mapping.source.arn().split(':').nth(4).unwrap_or_default();
            let processor = Processor {
                mapping: Arc::clone(&mapping),
                kind,
                function_arn: stream::function_arn(
                    &mapping.function_name,
                    mapping.source.region(),
                    account,
                ),
                invoker: Arc::clone(&invoker),
                destinations: Arc::clone(&clients.destinations),
                status: Arc::clone(&status),
                shutdown: shutdown.clone(),
                delays: RetryDelays::DEFAULT,
            };
            let lanes = mapping
                .stream
                .as_ref()
                .map(|s| s.parallelization_factor)
                .unwrap_or(1);
            let ctx = ShardContext {
                uuid: mapping.uuid.clone(),
                api,
                store,
                processor: Arc::new(processor),
                filters: Arc::new(filters),
                filter_view,
                limits: BatchLimits::for_mapping(&mapping),
                lanes,
                pacing,
                shutdown,
                status,
                views: stream::new_views(),
                closed: Default::default(),
            };
            let source = StreamSource {
                mapping: Arc::clone(&mapping),
                ctx: Arc::new(ctx),
            };
            tracker.spawn(source.run());
        }
    }
    Ok(())
}
