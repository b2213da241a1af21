//! The command line: `esmd run`, `validate`, `checkpoints`, `status`, `--version`. `--config`,
//! `--json` and `--log-json` go before or after the subcommand.
//! [`main`] parses it, sets up logging, runs the command and maps the result to an exit
//! code; the binary's `main.rs` only calls it. `anyhow` is used here and nowhere below.

mod args;
mod status;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::admin::AdminStore;
use crate::config::{Config, ConfigError, ConfigProblem};
use args::{CheckpointsAction, Cli, Command};

/// The whole program: parse the command line, run it, and return the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init_logging(cli.log_json);
    let Some(config) = cli.config.as_deref() else {
        return match cli.command {
            Command::Status { admin: Some(url) } => status::run(&url, cli.json),
            _ => {
                eprintln!("esmd: --config <FILE> is required (before or after the subcommand)");
                ExitCode::from(2)
            }
        };
    };
    match cli.command {
        Command::Validate => validate(config, cli.json),
        Command::Checkpoints { action } => match checkpoints(config, &action, cli.json) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("esmd checkpoints: {err:#}");
                ExitCode::from(1)
            }
        },
        Command::Status { admin } => match admin.map_or_else(|| admin_url(config), Ok) {
            Ok(url) => status::run(&url, cli.json),
            Err(err) => {
                eprintln!("esmd status: {err:#}");
                ExitCode::from(2)
            }
        },
        Command::Run => match run(config) {
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

/// `esmd validate`: every problem, by mapping and field; exit 2 when there are any.
fn validate(path: &Path, json: bool) -> ExitCode {
    let loaded = Config::load(path);
    if json {
        let (valid, mappings, problems) = match &loaded {
            Ok(cfg) => (true, cfg.mappings.len(), Vec::new()),
            Err(ConfigError::Invalid(problems)) => (false, 0, problems.clone()),
            Err(e @ ConfigError::Read { .. }) => (
                false,
                0,
                vec![ConfigProblem {
                    mapping: None,
                    field: "(file)".into(),
                    message: e.to_string(),
                }],
            ),
        };
        let problems: Vec<serde_json::Value> = problems
            .iter()
            .map(|p| serde_json::json!({"mapping": p.mapping, "field": p.field, "message": p.message}))
            .collect();
        let doc = serde_json::json!({
            "config": path.display().to_string(),
            "valid": valid,
            "mappings": mappings,
            "problems": problems,
        });
        println!("{doc}");
        return if valid {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        };
    }
    match loaded {
        Ok(cfg) => {
            println!(
                "{}: valid ({} mapping(s))",
                path.display(),
                cfg.mappings.len()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{}: {err}", path.display());
            ExitCode::from(2)
        }
    }
}

fn checkpoints(path: &Path, action: &CheckpointsAction, json: bool) -> anyhow::Result<String> {
    let config = Config::load(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let store = AdminStore::open(&config)?;
    Ok(match action {
        CheckpointsAction::List if json => format!("{}\n", store.list_json(&config)?),
        CheckpointsAction::List => store.list(&config)?,
        CheckpointsAction::Set {
            mapping,
            shard,
            position,
            force,
        } => {
            let position = position.to_restart_at().map_err(anyhow::Error::msg)?;
            store.set(&config, mapping, shard, &position, (json, *force))?
        }
        CheckpointsAction::Reset { mapping, force } => {
            store.reset(&config, mapping, (json, *force))?
        }
    })
}

/// The admin address of the daemon that runs `path`'s config.
fn admin_url(path: &Path) -> anyhow::Result<String> {
    let config = Config::load(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    match config.http.listen {
        Some(addr) => Ok(format!("http://{addr}")),
        None => anyhow::bail!(
            "{}: [http].listen is \"\" (the admin endpoints are off); give --admin URL",
            path.display()
        ),
    }
}

fn run(path: &Path) -> anyhow::Result<()> {
    crate::telemetry::allocations::enable_from_env();
    crate::memory::configure_allocator();
    // The configuration first: it sizes the runtime. Then the signal handlers, before any
    // mapping starts: a SIGTERM during startup must drain, not kill.
    let config = Config::load(path)?;
    // One worker: every task on the main thread (tokio's current-thread scheduler), with no
    // hand-offs between a worker and the thread that waits on the root future.
    let mut runtime = match config.daemon.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(workers) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(workers);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let signals = {
        let _context = runtime.enter();
        crate::daemon::signals::Signals::install().context("cannot install signal handlers")?
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(crate::memory::release_after_bursts(shutdown.clone()));
        let (reload_tx, reloads) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(crate::daemon::signals::watch_signals(
            signals,
            shutdown.clone(),
            path.to_path_buf(),
            reload_tx,
        ));
        let clients = crate::daemon::Clients::from_aws(&config).await?;
        crate::daemon::run_with_reload(config, clients, shutdown, reloads).await
    });
    // Tasks abandoned after the drain deadline (a call on a stalled connection) must not hold
    // the exit: the runtime gives them a second, then the process ends.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result?;
    Ok(())
}
