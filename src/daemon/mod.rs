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

mod changes;
pub(crate) mod reload;
pub(crate) mod signals;
mod supervisor;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::aws::{AwsContext, Service, CALL_ATTEMPT_TIMEOUT};
use crate::checkpoint::catalog::MappingCatalog;
use crate::checkpoint::dynamodb::DynamoStore;
use crate::checkpoint::{CheckpointError, CheckpointStore, SqliteStore, StoreLock};
use crate::config::{Config, ConfigError, EventSource, MappingConfig, StateBackend, StateConfig};
use crate::failure::destination::{DestinationSender, SdkDestinations};
use crate::invoke::Invoker;
use crate::source::dynamodb::SdkDynamoDbStreams;
use crate::source::kinesis::fanout::SdkKinesisFanOut;
use crate::source::kinesis::lean::LeanKinesis;
use crate::source::kinesis::SdkKinesis;
use crate::source::sqs::SqsApi;
use crate::source::stream::StreamApi;
use crate::telemetry::Registry;
use supervisor::Supervisor;

#[derive(Debug, thiserror::Error)]
pub(crate) enum DaemonError {
    #[error(transparent)]
    Http(#[from] crate::http::BindError),
    #[error("mapping {uuid}: {message}")]
    Mapping { uuid: String, message: String },
    #[error("stopped after a fatal error: {0}")]
    Fatal(String),
    #[error(transparent)]
    Aws(#[from] crate::aws::AwsSetupError),
    #[error("cannot use the state file {path}")]
    State {
        path: String,
        #[source]
        source: CheckpointError,
    },
}

/// Builds the [`StreamApi`] for a stream mapping.
pub(crate) type StreamApiFactory =
    Arc<dyn Fn(&MappingConfig) -> Option<Arc<dyn StreamApi>> + Send + Sync>;

/// An open state store: the checkpoints, the Lambda API's mappings (SQLite only), and the
/// lock that keeps `esmd checkpoints` off it while the daemon runs (none for a store that
/// needs none).
pub(crate) struct OpenedStore {
    pub(crate) checkpoints: Arc<dyn CheckpointStore>,
    pub(crate) catalog: Option<Arc<dyn MappingCatalog>>,
    pub(crate) lock: Option<StoreLock>,
}

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
    /// Where the Lambda API forwards the requests it does not answer itself: the Lambda
    /// endpoint esmd invokes, when one is configured (an emulator).
    pub(crate) lambda_upstream: Option<String>,
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
            Ok(OpenedStore {
                checkpoints: Arc::new(store.clone()),
                catalog: Some(Arc::new(store)),
                lock: Some(lock),
            })
        }
        StateBackend::DynamoDb(leases) => {
            let store = DynamoStore::open(dynamodb, leases).await?;
            tracing::info!(table = %leases.table, instance = %store.owner(), "lease table open");
            Ok(OpenedStore {
                checkpoints: Arc::new(store),
                catalog: None,
                lock: None,
            })
        }
    }
}

/// The role ARN put in Kinesis records' `invokeIdentityArn`: esmd has no execution role, so
/// it names a role `esmd` in the stream's account.
fn invoke_identity_arn(account_id: &str) -> String {
    format!("arn:aws:iam::{account_id}:role/esmd")
}

impl Clients {
    pub(crate) async fn from_aws(config: &Config) -> Result<Self, DaemonError> {
        let aws = AwsContext::load(&config.aws).await;
        let kinesis = aws.kinesis();
        let lean_kinesis = aws
            .lean_client(Service::Kinesis, "kinesis", CALL_ATTEMPT_TIMEOUT)
            .await?
            .map(|client| Arc::new(crate::source::kinesis::lean::kinesis_json(client)));
        let dynamodb_streams = aws.dynamodb_streams();
        let streams: StreamApiFactory = Arc::new(move |mapping: &MappingConfig| {
            let api: Arc<dyn StreamApi> = match &mapping.source {
                EventSource::Kinesis {
                    stream_arn,
                    region,
                    account_id,
                    stream_name,
                    consumer_arn,
                    ..
                } => {
                    let polling = SdkKinesis::new(
                        kinesis.clone(),
                        stream_arn,
                        stream_name,
                        region,
                        invoke_identity_arn(account_id),
                    );
                    match (consumer_arn, &lean_kinesis) {
                        (Some(consumer), _) => Arc::new(SdkKinesisFanOut::new(
                            polling,
                            consumer,
                            crate::source::kinesis::fanout::renew_after(),
                        )),
                        (None, Some(lean)) => Arc::new(LeanKinesis::new(polling, lean.clone())),
                        (None, None) => Arc::new(polling),
                    }
                }
                EventSource::DynamoDbStreams { arn, region, .. } => Arc::new(
                    SdkDynamoDbStreams::new(dynamodb_streams.clone(), arn, region),
                ),
                EventSource::Sqs { .. } => return None,
            };
            Some(api)
        });
        Ok(Clients {
            sqs: crate::source::sqs::sqs_api(&aws).await?,
            invoker: crate::invoke::lean::invoker(&aws).await?,
            streams,
            destinations: Arc::new(SdkDestinations {
                sqs: aws.sqs(),
                sns: aws.sns(),
                s3: aws.s3(),
            }),
            lambda_upstream: aws.endpoint(crate::aws::Service::Lambda),
            open_store: {
                let dynamodb = aws.dynamodb();
                Arc::new(move |state| Box::pin(open_store(state, dynamodb.clone())))
            },
        })
    }
}

/// Shutdown: in-flight invocations get `shutdown_timeout` to finish and be acknowledged,
/// then whatever is left is abandoned.
async fn drain(supervisor: &Supervisor) {
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
        // A call stuck on a backend that does not answer (a stalled connection) would hold
        // the exit for its whole attempt timeout: the deadline is a deadline. What is left
        // is safe to drop: its messages come back after their visibility timeout, its
        // records are read again from the checkpoint.
        if tokio::time::timeout(ABANDON_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = tracker.len(),
                "tasks still waiting on a backend after the shutdown deadline; exiting without them"
            );
        }
    }
}

/// How long abandoned work gets to notice, after the shutdown deadline.
const ABANDON_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// A reload request: the configuration file loaded again (on SIGHUP), or why it could not be.
pub(crate) type ReloadRequest = Result<Config, ConfigError>;

/// Runs every mapping until `shutdown` is cancelled, then drains. Applies each configuration
/// received on `reloads`, and each change made through the Lambda API, to the running set
/// (see [`reload`] and [`changes`]).
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
    let upstream = clients.lambda_upstream.clone();
    let mut supervisor = Supervisor::new(
        clients,
        Arc::clone(&registry),
        shutdown.clone(),
        config.clone(),
    );
    supervisor.open_store_if_needed(&config).await?;
    let (changed, mut changes_rx) = mpsc::unbounded_channel();
    let control = changes::restore(&config, supervisor.catalog.as_deref()).await?;
    let api_server = match (&config.lambda_api, &supervisor.catalog) {
        (Some(api), Some(catalog)) => {
            let api_state = Arc::new(crate::api::Api {
                control: Arc::clone(&control),
                catalog: Arc::clone(catalog),
                registry: Arc::clone(&registry),
                changed,
                proxy: crate::api::proxy::Proxy::new(upstream),
            });
            Some(crate::api::serve(api.listen, api_state, http_stop.clone()).await?)
        }
        _ => None,
    };
    let (desired, _) = control.lock().await.desired();
    for mapping in &desired {
        supervisor.start(mapping)?;
    }
    supervisor.config.mappings = desired;
    let http_task = http_server.map(tokio::spawn);
    let api_task = api_server.map(tokio::spawn);

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(mut request) = reloads.recv() => {
                // Several SIGHUPs during one reload: only the latest file matters.
                while let Ok(newer) = reloads.try_recv() {
                    request = newer;
                }
                changes::reload_file(&mut supervisor, &control, request).await;
            }
            Some(()) = changes_rx.recv() => {
                while changes_rx.try_recv().is_ok() {}
                let next = supervisor.config.clone();
                changes::apply(&mut supervisor, &control, next, "api").await;
            }
        }
    }

    drain(&supervisor).await;
    http_stop.cancel();
    for task in [http_task, api_task].into_iter().flatten() {
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

#[cfg(test)]
mod tests;
