//! The command line: `esmd run`, `esmd validate`, `esmd checkpoints`, `esmd --version`.
//! [`main`] parses it, sets up logging, runs the command and maps the result to an exit
//! code; the binary's `main.rs` only calls it. `anyhow` is used here and nowhere below.

mod args;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::admin::AdminStore;
use crate::config::{Config, ConfigError};
use args::{CheckpointsAction, Cli, Command};

/// The whole program: parse the command line, run it, and return the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init_logging(cli.log_json);
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
        tokio::spawn(crate::daemon::memory::release_freed_memory(
            shutdown.clone(),
        ));
        let (reload_tx, reloads) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(crate::daemon::signals::watch_signals(
            shutdown.clone(),
            path.to_path_buf(),
            reload_tx,
        ));
        let clients = crate::daemon::Clients::from_aws(&config).await;
        crate::daemon::run_with_reload(config, clients, shutdown, reloads).await?;
        Ok(())
    })
}
