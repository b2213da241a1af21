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
use crate::checkpoint::dynamodb::DynamoStore;
use crate::checkpoint::{CheckpointError, CheckpointStore, SqliteStore, StoreLock};
use crate::config::{
    Config, ConfigError, EventSource, MappingConfig, SourceKind, StateBackend, StateConfig,
};
use crate::failure::destination::{DestinationSender, SdkDestinations};
use crate::invoke::lambda::LambdaInvoker;
use crate::invoke::Invoker;
use crate::source::build::{build, Dependencies};
use crate::source::dynamodb::SdkDynamoDbStreams;
use crate::source::kinesis::SdkKinesis;
use crate::source::sqs::{SdkSqs, SqsApi};
use crate::source::stream::StreamApi;
use crate::source::Shutdown;
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

/// An open checkpoint store, with the lock that keeps `esmd checkpoints` off it while the
/// daemon runs (none for a store that needs none).
pub(crate) type OpenedStore = (Arc<dyn CheckpointStore>, Option<StoreLock>);

/// Opens the checkpoint store `[state]` names.
pub(crate) type StoreOpener = Arc<
    dyn Fn(StateConfig) -> futures::future::BoxFuture<'static, Result<OpenedStore, CheckpointError>>
        + Send
        + Sync,
>;

/// The clients every mapping shares, built from one AWS configuration load.
pub(crate) struct Clients {
    pub(crate) sqs: Arc<dyn SqsApi>,
    pub(crate) invoker: Arc<dyn Invoker>,
    pub(crate) streams: StreamApiFactory,
    pub(crate) destinations: Arc<dyn DestinationSender>,
    pub(crate) open_store: StoreOpener,
}

/// The store `[state]` names: the SQLite file at `path`, locked for the daemon's life, or the
/// DynamoDB lease table (created on first use), shared with the other instances.
async fn open_store(
    state: StateConfig,
    dynamodb: aws_sdk_dynamodb::Client,
) -> Result<OpenedStore, CheckpointError> {
    match &state.backend {
        StateBackend::Sqlite => {
            let lock = StoreLock::acquire(&state.path)?;
            let store = SqliteStore::open(&state.path)?;
            Ok((Arc::new(store), Some(lock)))
        }
        StateBackend::DynamoDb(leases) => {
            let store = DynamoStore::open(dynamodb, leases).await?;
            tracing::info!(table = %leases.table, instance = %store.owner(), "lease table open");
            Ok((Arc::new(store), None))
        }
    }
}

/// The role ARN put in Kinesis records' `invokeIdentityArn`: esmd has no execution role, so
/// it names a role `esmd` in the stream's account.
fn invoke_identity_arn(account_id: &str) -> String {
    format!("arn:aws:iam::{account_id}:role/esmd")
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
                    account_id,
                    stream_name,
                } => Arc::new(SdkKinesis::new(
                    kinesis.clone(),
                    arn,
                    stream_name,
                    region,
                    invoke_identity_arn(account_id),
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
            open_store: {
                let dynamodb = aws.dynamodb();
                Arc::new(move |state| Box::pin(open_store(state, dynamodb.clone())))
            },
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

    // Bind first (a taken port fails before anything starts), but answer only once every
    // mapping is registered, so `/mappings` never lists fewer mappings than were configured.
    let http_server = match config.http.listen {
        Some(addr) => {
            Some(crate::http::serve(addr, Arc::clone(&registry), http_stop.clone()).await?)
        }
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
    supervisor.open_store_if_needed(&config).await?;
    for mapping in &config.mappings {
        supervisor.start(mapping)?;
    }
    let http_task = http_server.map(tokio::spawn);

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
    async fn open_store_if_needed(&mut self, config: &Config) -> Result<(), DaemonError> {
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
        let opened = (self.clients.open_store)(self.config.state.clone()).await;
        let (store, lock) = opened.map_err(state_error)?;
        tracing::info!(path = %path.display(), "checkpoint store open");
        self.store_lock = lock;
        self.store = Some(store);
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
        if let Err(e) = self.open_store_if_needed(&next).await {
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
    let deps = Dependencies {
        sqs: Arc::clone(&clients.sqs),
        invoker: Arc::clone(&clients.invoker),
        stream_api: (clients.streams)(mapping),
        destinations: Arc::clone(&clients.destinations),
        store: store.cloned(),
    };
    let task = build(Arc::new(mapping.clone()), deps, status, shutdown).map_err(|e| {
        DaemonError::Mapping {
            uuid: mapping.uuid.clone(),
            message: e.to_string(),
        }
    })?;
    Ok(tracker.spawn(task))
}

#[cfg(test)]
mod tests;
