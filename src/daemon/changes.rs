//! Changes to the set of mappings, from the config file (SIGHUP) and from the Lambda API,
//! applied through one path: [`crate::api::control::Control`] holds what should run, the
//! supervisor applies its snapshot with the reload plan, and the snapshot's changes are then
//! settled (`Updating` → `Enabled`, a deleted mapping gone and its checkpoints cleared).

use std::sync::Arc;

use tokio::sync::Mutex;

use super::supervisor::Supervisor;
use super::{DaemonError, ReloadRequest};
use crate::api::control::Control;
use crate::checkpoint::catalog::MappingCatalog;
use crate::config::Config;
use crate::telemetry::events::{ConfigReloadRejected, StoredMappingRejected};

/// The mappings at start-up: the config file's, and those the Lambda API stored earlier.
/// A stored mapping that no longer validates, or clashes with the file, is reported and
/// left out (and left stored).
pub(super) async fn restore(
    config: &Config,
    catalog: Option<&dyn MappingCatalog>,
) -> Result<Arc<Mutex<Control>>, DaemonError> {
    let now = crate::api::now();
    let mut control = Control::new(config.mappings.clone(), now);
    if let (Some(catalog), Some(_)) = (catalog, &config.lambda_api) {
        let stored = catalog.list().await.map_err(|source| DaemonError::State {
            path: config.state.path.display().to_string(),
            source,
        })?;
        for row in stored {
            let checked = crate::api::shape::to_mapping(&row.document, &row.uuid)
                .and_then(|m| control.check_unique(&m).map(|()| m))
                .map_err(|e| e.message)
                .and_then(|m| match control.get(&m.uuid) {
                    Some(_) => Err(format!("uuid {} is also used in the config file", m.uuid)),
                    None => Ok(m),
                });
            match checked {
                Ok(mapping) => control.restore(mapping, row.document, row.last_modified),
                Err(error) => StoredMappingRejected {
                    uuid: &row.uuid,
                    error: &error,
                }
                .emit(),
            }
        }
    }
    Ok(Arc::new(Mutex::new(control)))
}

/// SIGHUP: the file's mappings replace the file's old ones; the API's stay.
pub(super) async fn reload_file(
    supervisor: &mut Supervisor,
    control: &Mutex<Control>,
    request: ReloadRequest,
) {
    let next = match request {
        Ok(next) => next,
        Err(e) => {
            ConfigReloadRejected {
                error: &e.to_string(),
            }
            .emit();
            return;
        }
    };
    let replaced = control
        .lock()
        .await
        .replace_file(next.mappings.clone(), crate::api::now());
    match replaced {
        Ok(()) => apply(supervisor, control, next, "reload").await,
        Err(error) => ConfigReloadRejected { error: &error }.emit(),
    }
}

/// Runs what [`Control`] holds now, with `next`'s other settings, then settles it.
pub(super) async fn apply(
    supervisor: &mut Supervisor,
    control: &Mutex<Control>,
    mut next: Config,
    cause: &str,
) {
    let (mappings, applied) = control.lock().await.desired();
    next.mappings = mappings;
    supervisor.apply(next, cause).await;
    let deleted = control.lock().await.settle(&applied);
    let Some(store) = &supervisor.store else {
        return;
    };
    for uuid in deleted {
        match store.reset(&uuid).await {
            Ok(shards) if shards > 0 => {
                tracing::info!(mapping = %uuid, shards, "deleted mapping's checkpoints cleared")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(mapping = %uuid, error = %e, "cannot clear a deleted mapping's checkpoints")
            }
        }
    }
}
