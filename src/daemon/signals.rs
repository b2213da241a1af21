//! Signals: SIGTERM and SIGINT start the drain, SIGHUP reloads the configuration file.

use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Cancels the root token on SIGTERM or SIGINT; on SIGHUP loads the config file again and
/// hands the result (or its error) to the daemon.
pub(crate) async fn watch_signals(
    shutdown: CancellationToken,
    path: std::path::PathBuf,
    reloads: tokio::sync::mpsc::UnboundedSender<crate::daemon::ReloadRequest>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); break; }
            _ = int.recv() => { tracing::info!("SIGINT received"); break; }
            _ = hup.recv() => {
                tracing::info!(path = %path.display(), "SIGHUP received: reloading the config");
                let loaded = Config::load(&path);
                if reloads.send(loaded).is_err() {
                    break;
                }
            }
        }
    }
    shutdown.cancel();
}
