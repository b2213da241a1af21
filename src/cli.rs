//! The command line: `esmd run`, `esmd validate`, `esmd --version`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "esmd",
    version,
    about = "Run AWS Lambda event source mappings anywhere"
)]
pub struct Cli {
    /// Log as JSON lines instead of human-readable text (levels come from RUST_LOG).
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the mappings until SIGTERM or SIGINT, then drain and exit 0.
    Run {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file; list every problem and exit non-zero if there are any.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
}
