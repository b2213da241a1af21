//! The `esmd` binary: parse the command line, set up logging, run, and map the result to an
//! exit code. Everything else lives in the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use esmd::checkpoint::admin::AdminStore;
use esmd::cli::{CheckpointsAction, Cli, Command};
use esmd::config::{Config, ConfigError};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    esmd::telemetry::init_logging(cli.log_json);
    match cli.command {
        Command::Validate { config } => match Config::load(&config) {
            Ok(cfg) => {
                println!(
                    "{}: valid ({} mapping(s))",
                    config.display(),
                    cfg.mappings.len()
                );
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("{}: {err}", config.display());
                ExitCode::from(2)
            }
        },
        Command::Checkpoints { config, action } => match checkpoints(&config, &action) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("esmd checkpoints: {err:#}");
                ExitCode::from(1)
            }
        },
        Command::Run { config } => match run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                match err.downcast_ref::<ConfigError>() {
                    Some(e) => eprintln!("{}: {e}", config.display()),
                    None => eprintln!("esmd: {err:#}"),
                }
                ExitCode::from(1)
            }
        },
    }
}

fn checkpoints(path: &std::path::Path, action: &CheckpointsAction) -> anyhow::Result<String> {
    let config = Config::load(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let store = AdminStore::open(&config)?;
    Ok(match action {
        CheckpointsAction::List => store.list(&config)?,
        CheckpointsAction::Set {
            mapping,
            shard,
            position,
        } => {
            let position = position.to_restart_at().map_err(anyhow::Error::msg)?;
            store.set(&config, mapping, shard, &position)?
        }
        CheckpointsAction::Reset { mapping } => store.reset(&config, mapping)?,
    })
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(release_freed_memory(shutdown.clone()));
        let (reload_tx, reloads) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(watch_signals(
            shutdown.clone(),
            path.to_path_buf(),
            reload_tx,
        ));
        let clients = esmd::daemon::Clients::from_aws(&config).await;
        esmd::daemon::run_with_reload(config, clients, shutdown, reloads).await?;
        Ok(())
    })
}

/// How often freed heap memory is handed back to the OS.
const MEMORY_TRIM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// glibc keeps memory freed after a burst (a stream backlog read ahead, a large batch) in its
/// arenas, so a daemon that once held 80 MB of records stays at 80 MB while idle with a 6 MB
/// heap. `malloc_trim` returns the free pages; every 10 s it costs microseconds.
async fn release_freed_memory(shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(MEMORY_TRIM_INTERVAL) => {}
            _ = shutdown.cancelled() => return,
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only walks glibc's own arenas and releases free pages; it takes
        // no pointers from us and is thread-safe.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Cancels the root token on SIGTERM or SIGINT; on SIGHUP loads the config file again and
/// hands the result (or its error) to the daemon.
async fn watch_signals(
    shutdown: CancellationToken,
    path: std::path::PathBuf,
    reloads: tokio::sync::mpsc::UnboundedSender<esmd::daemon::ReloadRequest>,
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
