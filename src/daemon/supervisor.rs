//! The supervisor owns the running mappings: it starts them, stops them one by one, and
//! applies a new set of mappings (a SIGHUP's file, or a change through the Lambda API) by
//! the same plan ([`super::reload::plan`]).

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Clients, DaemonError};
use crate::checkpoint::catalog::MappingCatalog;
use crate::checkpoint::{CheckpointStore, StoreLock};
use crate::config::{Config, MappingConfig, SourceKind};
use crate::source::build::{build, Dependencies};
use crate::source::Shutdown;
use crate::telemetry::events::{
    ConfigNeedsRestart, ConfigReloadRejected, ConfigReloaded, MappingStopped,
};
use crate::telemetry::{MappingStatus, Registry};

/// One running mapping: its settings, its own stop tokens (children of the daemon's) and its
/// task.
struct Running {
    config: MappingConfig,
    shutdown: Shutdown,
    task: Option<JoinHandle<()>>,
}

pub(super) struct Supervisor {
    pub(super) clients: Clients,
    pub(super) registry: Arc<Registry>,
    pub(super) tracker: TaskTracker,
    pub(super) root: CancellationToken,
    pub(super) abandon: CancellationToken,
    pub(super) store: Option<Arc<dyn CheckpointStore>>,
    /// The Lambda API's mappings, in the same store (SQLite).
    pub(super) catalog: Option<Arc<dyn MappingCatalog>>,
    /// Raised by a mapping that cannot go on safely: cancels the root token.
    pub(super) fatal: crate::source::Fatal,
    /// Held until the daemon returns: `esmd checkpoints` refuses to touch a live store.
    pub(super) store_lock: Option<StoreLock>,
    running: Vec<Running>,
    /// What is running: the mappings as last applied, the other sections as at start-up.
    pub(super) config: Config,
}

impl Supervisor {
    pub(super) fn new(
        clients: Clients,
        registry: Arc<Registry>,
        root: CancellationToken,
        config: Config,
    ) -> Self {
        Supervisor {
            clients,
            registry,
            tracker: TaskTracker::new(),
            fatal: crate::source::Fatal::new(root.clone()),
            root,
            abandon: CancellationToken::new(),
            store: None,
            catalog: None,
            store_lock: None,
            running: Vec::new(),
            config,
        }
    }

    /// Opens the state store when a stream mapping or the Lambda API first needs it. An
    /// unusable store is fatal at start-up (the daemon cannot keep its promises without it)
    /// and rejects a reload.
    pub(super) async fn open_store_if_needed(
        &mut self,
        config: &Config,
    ) -> Result<(), DaemonError> {
        let needed = config.lambda_api.is_some()
            || config
                .enabled_mappings()
                .any(|m| m.kind() != SourceKind::Sqs);
        if self.store.is_some() || !needed {
            return Ok(());
        }
        let path = self.config.state.path.clone();
        let opened = (self.clients.open_store)(self.config.state.clone())
            .await
            .map_err(|source| DaemonError::State {
                path: path.display().to_string(),
                source,
            })?;
        tracing::info!(path = %path.display(), "checkpoint store open");
        self.store_lock = opened.lock;
        self.store = Some(opened.checkpoints);
        self.catalog = opened.catalog;
        Ok(())
    }

    pub(super) fn start(&mut self, mapping: &MappingConfig) -> Result<(), DaemonError> {
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
    /// and added ones start; unchanged ones are not touched. `cause` names what asked for it
    /// (`reload` for SIGHUP, `api` for the Lambda API).
    pub(super) async fn apply(&mut self, next: Config, cause: &str) {
        let plan = super::reload::plan(&self.config, &next);
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
        self.stop(&stopping, cause).await;
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
