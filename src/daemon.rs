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
use crate::config::{Config, MappingConfig, SourceKind};
use crate::filter::FilterSet;
use crate::source::sqs::{SdkSqs, Shutdown, SqsApi, SqsSource};
use crate::target::lambda::LambdaInvoker;
use crate::target::Invoker;
use crate::telemetry::{MappingStatus, Registry};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Http(#[from] crate::http::BindError),
    #[error("mapping {uuid}: {message}")]
    Mapping { uuid: String, message: String },
}

/// The clients every mapping shares, built from one AWS configuration load.
pub struct Clients {
    pub sqs: Arc<dyn SqsApi>,
    pub invoker: Arc<dyn Invoker>,
}

impl Clients {
    pub async fn from_aws(config: &Config) -> Self {
        let aws = AwsContext::load(&config.aws).await;
        Clients {
            sqs: Arc::new(SdkSqs::new(aws.sqs())),
            invoker: Arc::new(LambdaInvoker::new(aws.lambda())),
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
    tracing::info!("stopped");
    Ok(())
}

fn start_mapping(
    mapping: &MappingConfig,
    clients: &Clients,
    status: Arc<MappingStatus>,
    shutdown: Shutdown,
    tracker: &TaskTracker,
) -> Result<(), DaemonError> {
    let filters =
        FilterSet::compile(&mapping.filter_patterns).map_err(|e| DaemonError::Mapping {
            uuid: mapping.uuid.clone(),
            message: e.to_string(),
        })?;
    let mapping = Arc::new(mapping.clone());
    match mapping.kind() {
        SourceKind::Sqs => {
            let source = SqsSource::new(
                Arc::clone(&mapping),
                filters,
                Arc::clone(&clients.sqs),
                Arc::clone(&clients.invoker),
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
            status.set_error(format!(
                "{} mappings are not supported by this build yet",
                mapping.kind()
            ));
            tracing::error!(mapping = %mapping.uuid, kind = %mapping.kind(), "stream mappings are not supported by this build yet");
        }
    }
    Ok(())
}
