//! Wiring: builds the clients once, starts one task per enabled mapping and the admin HTTP
//! server, and drains everything in order on shutdown.
//!
//! Shutdown order: the root token stops every poller from receiving; in-flight invocations
//! get `daemon.shutdown_timeout` to finish and be acknowledged; then the `abandon` token ends
//! whatever is left; the admin server stops last, so probes see the drain.
//!
//! Live reload ([`reload`]): on SIGHUP `main` loads the file again and hands the result to
//! [`run_with_reload`]; each mapping has its own child tokens, so one can drain and stop while
//! the others keep polling.

pub(crate) mod memory;
pub(crate) mod reload;
pub(crate) mod signals;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::aws::AwsContext;
use crate::batch::BatchLimits;
use crate::checkpoint::{CheckpointError, CheckpointStore, SqliteStore, StoreLock};
use crate::config::{Config, ConfigError, EventSource, MappingConfig, SourceKind};
use crate::failure::destination::{DestinationSender, SdkDestinations, StreamKind};
use crate::failure::stream::StreamPolicy;
use crate::filter::FilterSet;
use crate::invoke::lambda::LambdaInvoker;
use crate::invoke::Invoker;
use crate::retry::RetryPolicies;
use crate::source::dynamodb::SdkDynamoDbStreams;
use crate::source::kinesis::SdkKinesis;
use crate::source::sqs::{SdkSqs, Shutdown, SqsApi, SqsSource};
use crate::source::stream::process::Processor;
use crate::source::stream::{self, ReadPacing, ShardContext, StreamApi, StreamSource};
use crate::telemetry::events::{
    ConfigNeedsRestart, ConfigReloadRejected, ConfigReloaded, MappingStopped,
};
use crate::telemetry::{MappingStatus, Registry};

#[derive(Debug, thiserror::Error)]
pub(crate) enum DaemonError {
    #[error(transparent)]
    Http(#[from] crate::http::BindError),
    #[error("mapping {uuid}: {message}")]
    Mapping { uuid: String, message: String },
    #[error("stopped after a fatal error: {0}")]
    Fatal(String),
    #[error("checkpoint store {path}: {source}")]
    State {
        path: String,
        #[source]
        source: CheckpointError,
    },
}

/// Builds the [`StreamApi`] for a stream mapping.
pub(crate) type StreamApiFactory =
    Arc<dyn Fn(&MappingConfig) -> Option<Arc<dyn StreamApi>> + Send + Sync>;

/// The clients every mapping shares, built from one AWS configuration load.
pub(crate) struct Clients {
    pub(crate) sqs: Arc<dyn SqsApi>,
    pub(crate) invoker: Arc<dyn Invoker>,
    pub(crate) streams: StreamApiFactory,
    pub(crate) destinations: Arc<dyn DestinationSender>,
}

/// The role ARN put in Kinesis records' `invokeIdentityArn`: esmd has no execution role, so
/// it names a role `esmd` in the stream's account.
fn invoke_identity_arn(stream_arn: &str) -> String {
    let account = stream_arn.split(':').nth(4).unwrap_or_default();
    format!("arn:aws:iam::{account}:role/esmd")
}

impl Clients {
    pub(crate) async fn from_aws(config: &Config) -> Self {
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

/// A reload request: the configuration file loaded again (on SIGHUP), or why it could not be.
pub(crate) type ReloadRequest = Result<Config, ConfigError>;

/// Runs every mapping until `shutdown` is cancelled, then drains; applies each configuration
/// received on `reloads` to the running set (see [`reload`]).
pub(crate) async fn run_with_reload(
    config: Config,
    clients: Clients,
    shutdown: CancellationToken,
    mut reloads: mpsc::UnboundedReceiver<ReloadRequest>,
) -> Result<(), DaemonError> {
    let registry = Arc::new(Registry::default());
    let http_stop = CancellationToken::new();

    let http_task = match config.http.listen {
        Some(addr) => Some(tokio::spawn(
            crate::http::serve(addr, Arc::clone(&registry), http_stop.clone()).await?,
        )),
        None => None,
    };

    let mut supervisor = Supervisor {
        clients,
        registry,
        tracker: TaskTracker::new(),
        root: shutdown.clone(),
        abandon: CancellationToken::new(),
        store: None,
        store_lock: None,
        fatal: crate::source::Fatal::new(shutdown.clone()),
        running: Vec::new(),
        config: config.clone(),
    };
    supervisor.open_store_if_needed(&config)?;
    for mapping in &config.mappings {
        supervisor.start(mapping)?;
    }

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(mut request) = reloads.recv() => {
                // Several SIGHUPs during one reload: only the latest file matters.
                while let Ok(newer) = reloads.try_recv() {
                    request = newer;
                }
                match request {
                Ok(next) => supervisor.reload(next).await,
                Err(e) => ConfigReloadRejected { error: &e.to_string() }.emit(),
                }
            }
        }
    }

    let timeout = supervisor.config.daemon.shutdown_timeout;
    tracing::info!(
        deadline_secs = timeout.as_secs(),
        "shutting down: draining in-flight batches"
    );
    let tracker = supervisor.tracker.clone();
    tracker.close();
    if tokio::time::timeout(timeout, tracker.wait()).await.is_err() {
        tracing::warn!("shutdown deadline passed; abandoning in-flight invocations");
        supervisor.abandon.cancel();
        tracker.wait().await;
    }
    http_stop.cancel();
    if let Some(task) = http_task {
        let _ = task.await;
    }
    let fatal = supervisor.fatal.reason();
    drop(supervisor);
    if let Some(reason) = fatal {
        return Err(DaemonError::Fatal(reason));
    }
    tracing::info!("stopped");
    Ok(())
}

/// One running mapping: its settings, its own stop tokens (children of the daemon's) and its
/// task.
struct Running {
    config: MappingConfig,
    shutdown: Shutdown,
    task: Option<JoinHandle<()>>,
}

/// Owns the running mappings: starts them, stops them one by one, applies reloads.
struct Supervisor {
    clients: Clients,
    registry: Arc<Registry>,
    tracker: TaskTracker,
    root: CancellationToken,
    abandon: CancellationToken,
    store: Option<Arc<dyn CheckpointStore>>,
    /// Raised by a mapping that cannot go on safely: cancels the root token.
    fatal: crate::source::Fatal,
    /// Held until the daemon returns: `esmd checkpoints` refuses to touch a live store.
    store_lock: Option<StoreLock>,
    running: Vec<Running>,
    /// What is running: the mappings as last applied, the other sections as at start-up.
    config: Config,
}

impl Supervisor {
    /// Opens the checkpoint store when a stream mapping first needs it. An unusable store is
    /// fatal at start-up (the daemon cannot keep its promises without it) and rejects a reload.
    fn open_store_if_needed(&mut self, config: &Config) -> Result<(), DaemonError> {
        if self.store.is_some()
            || config
                .enabled_mappings()
                .all(|m| m.kind() == SourceKind::Sqs)
        {
            return Ok(());
        }
        let path = self.config.state.path.clone();
        let state_error = |source| DaemonError::State {
            path: path.display().to_string(),
            source,
        };
        let lock = StoreLock::acquire(&path).map_err(state_error)?;
        let store = SqliteStore::open(&path).map_err(state_error)?;
        tracing::info!(path = %path.display(), "checkpoint store open");
        self.store_lock = Some(lock);
        self.store = Some(Arc::new(store));
        Ok(())
    }

    fn start(&mut self, mapping: &MappingConfig) -> Result<(), DaemonError> {
        let status = Arc::new(MappingStatus::new(mapping));
        self.registry.add(Arc::clone(&status));
        let shutdown = Shutdown {
            stop_receiving: self.root.child_token(),
            abandon: self.abandon.child_token(),
            fatal: self.fatal.clone(),
        };
        let task = if mapping.enabled {
            Some(start_mapping(
                mapping,
                &self.clients,
                status,
                shutdown.clone(),
                &self.tracker,
                self.store.as_ref(),
            )?)
        } else {
            tracing::info!(mapping = %mapping.uuid, "mapping disabled");
            None
        };
        self.running.push(Running {
            config: mapping.clone(),
            shutdown,
            task,
        });
        Ok(())
    }

    /// Stops the given mappings together: no new polls, in-flight batches get
    /// `shutdown_timeout` to finish and be acknowledged, then whatever is left is abandoned
    /// (released, not acknowledged). Returns once every task has ended.
    async fn stop(&mut self, uuids: &[String], reason: &str) {
        let mut stopping = Vec::new();
        self.running.retain_mut(|r| {
            if uuids.contains(&r.config.uuid) {
                r.shutdown.stop_receiving.cancel();
                stopping.push((
                    r.config.uuid.clone(),
                    r.shutdown.abandon.clone(),
                    r.task.take(),
                ));
                false
            } else {
                true
            }
        });
        let timeout = self.config.daemon.shutdown_timeout;
        let drains = stopping
            .into_iter()
            .map(|(uuid, abandon, task)| async move {
                let mut drained = true;
                if let Some(mut task) = task {
                    if tokio::time::timeout(timeout, &mut task).await.is_err() {
                        drained = false;
                        abandon.cancel();
                        let _ = task.await;
                    }
                }
                (uuid, drained)
            });
        for (uuid, drained) in futures::future::join_all(drains).await {
            self.registry.remove(&uuid);
            MappingStopped {
                uuid: &uuid,
                reason,
                drained,
            }
            .emit();
        }
    }

    /// Applies a new configuration: removed and changed mappings drain and stop, then changed
    /// and added ones start; unchanged ones are not touched.
    async fn reload(&mut self, next: Config) {
        let plan = reload::plan(&self.config, &next);
        if !plan.needs_restart.is_empty() {
            ConfigNeedsRestart {
                sections: &plan.needs_restart,
            }
            .emit();
        }
        if let Err(e) = self.open_store_if_needed(&next) {
            ConfigReloadRejected {
                error: &e.to_string(),
            }
            .emit();
            return;
        }
        let mut stopping = plan.removed.clone();
        stopping.extend(plan.changed.iter().cloned());
        self.stop(&stopping, "reload").await;
        self.config.daemon = next.daemon.clone();
        self.config.mappings = next.mappings.clone();
        if self.root.is_cancelled() {
            return;
        }
        for mapping in next
            .mappings
            .iter()
            .filter(|m| plan.added.contains(&m.uuid) || plan.changed.contains(&m.uuid))
        {
            if let Err(e) = self.start(mapping) {
                // Validation already compiled the filters; this is a last line of defence.
                tracing::error!(mapping = %mapping.uuid, error = %e, "mapping cannot start");
            }
        }
        ConfigReloaded {
            added: &plan.added,
            removed: &plan.removed,
            changed: &plan.changed,
            unchanged: plan.unchanged.len(),
        }
        .emit();
    }
}

fn start_mapping(
    mapping: &MappingConfig,
    clients: &Clients,
    status: Arc<MappingStatus>,
    shutdown: Shutdown,
    tracker: &TaskTracker,
    store: Option<&Arc<dyn CheckpointStore>>,
) -> Result<JoinHandle<()>, DaemonError> {
    let filters =
        FilterSet::compile(&mapping.filter_patterns).map_err(|e| DaemonError::Mapping {
            uuid: mapping.uuid.clone(),
            message: e.to_string(),
        })?;
    let mapping = Arc::new(mapping.clone());
    // A mapping with `esmd_http_target` delivers to its own HTTP endpoint instead of Lambda.
    let invoker: Arc<dyn Invoker> = match &mapping.http_target {
        Some(url) => Arc::new(crate::invoke::http::HttpInvoker::new(url)),
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
            Ok(tracker.spawn(Arc::new(source).run()))
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
                policy: mapping
                    .stream
                    .as_ref()
                    .map(StreamPolicy::from)
                    .unwrap_or_default(),
                delays: RetryPolicies::DEFAULT,
            };
            let lanes = mapping
                .stream
                .as_ref()
                .map(|s| s.parallelization_factor)
                .unwrap_or(1);
            let pacing = with_poll_interval(pacing, &mapping);
            let ctx = ShardContext {
                uuid: mapping.uuid.clone(),
                api,
                store,
                processor: Arc::new(processor),
                filters: Arc::new(filters),
                filter_view,
                limits: BatchLimits::for_mapping(&mapping),
                lanes,
                tumbling_window: mapping.stream.as_ref().and_then(|s| s.tumbling_window),
                pacing,
                shutdown,
                status,
                closed: Default::default(),
            };
            let source = StreamSource {
                mapping: Arc::clone(&mapping),
                ctx: Arc::new(ctx),
            };
            Ok(tracker.spawn(source.run()))
        }
    }
}

/// The source's read pacing, with the mapping's `esmd_poll_interval_ms` when it has one.
fn with_poll_interval(pacing: ReadPacing, mapping: &MappingConfig) -> ReadPacing {
    match mapping.stream.as_ref().and_then(|s| s.poll_interval) {
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

    fn kinesis(extra: &str) -> MappingConfig {
        let text = format!(
            "[[mapping]]\nevent_source_arn = \"arn:aws:kinesis:us-east-1:123456789012:stream/s\"\nfunction_name = \"f\"\nstarting_position = \"LATEST\"\n{extra}"
        );
        match Config::parse(&text) {
            Ok(c) => c.mappings[0].clone(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn the_poll_interval_replaces_only_the_idle_interval() {
        let tuned =
            with_poll_interval(ReadPacing::KINESIS, &kinesis("esmd_poll_interval_ms = 500"));
        assert_eq!(tuned.idle_interval, std::time::Duration::from_millis(500));
        assert_eq!(tuned.min_interval, ReadPacing::KINESIS.min_interval);
        assert_eq!(tuned.max_records, ReadPacing::KINESIS.max_records);
        let default = with_poll_interval(ReadPacing::KINESIS, &kinesis(""));
        assert_eq!(default.idle_interval, ReadPacing::KINESIS.idle_interval);
    }
}
