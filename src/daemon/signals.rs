//! Signals: SIGTERM and SIGINT start the drain, SIGHUP reloads the configuration file.

use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The signal streams, installed before anything else at startup so that a SIGTERM that
/// arrives while esmd is still starting drains it (exit 0) instead of killing it.
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (needs a running tokio runtime's context).
    pub(crate) fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// Cancels the root token on SIGTERM or SIGINT; on SIGHUP loads the config file again and
/// hands the result (or its error) to the daemon.
pub(crate) async fn watch_signals(
    signals: Signals,
    shutdown: CancellationToken,
    path: std::path::PathBuf,
    reloads: tokio::sync::mpsc::UnboundedSender<crate::daemon::ReloadRequest>,
) {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
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
