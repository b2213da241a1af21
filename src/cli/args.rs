//! The command-line arguments (clap derive).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "esmd",
    version,
    about = "Run AWS Lambda event source mappings anywhere"
)]
pub(crate) struct Cli {
    /// The TOML configuration file (before or after the subcommand).
    #[arg(long, short, global = true)]
    pub(crate) config: Option<PathBuf>,
    /// Print one JSON document on stdout instead of text (validate, checkpoints, status).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Log as JSON lines instead of human-readable text (levels come from RUST_LOG).
    #[arg(long, global = true)]
    pub(crate) log_json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the mappings until SIGTERM or SIGINT, then drain and exit 0.
    Run,
    /// Check a configuration file; list every problem and exit 2 if there are any.
    Validate,
    /// Inspect or move stream checkpoints in the configured store (refused while a daemon
    /// uses the store).
    Checkpoints {
        #[command(subcommand)]
        action: CheckpointsAction,
    },
    /// One screen on a running daemon: each mapping's state, records and errors, and each
    /// shard's owner, checkpoint age and iterator age. Exits 1 when a mapping is in `Error`,
    /// 3 when the daemon cannot be reached.
    Status {
        /// The daemon's admin address (default: `[http].listen` from --config).
        #[arg(long)]
        admin: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CheckpointsAction {
    /// Each stream mapping and shard with its status, sequence number and age.
    List,
    /// Move one shard for replay or rewind; the next run reads it from the new position.
    Set {
        /// The mapping's uuid or event_source_arn.
        #[arg(long)]
        mapping: String,
        /// The shard id, e.g. shardId-000000000000.
        #[arg(long)]
        shard: String,
        #[command(flatten)]
        position: PositionArgs,
        /// Lease table only: move the shard even while an instance holds its lease (that
        /// instance is fenced off the shard).
        #[arg(long)]
        force: bool,
    },
    /// Forget a mapping's checkpoints; the next run starts at its starting_position.
    Reset {
        /// The mapping's uuid or event_source_arn.
        #[arg(long)]
        mapping: String,
        /// Lease table only: reset even while instances hold the mapping's leases.
        #[arg(long)]
        force: bool,
    },
}

/// Exactly one position for `checkpoints set`.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub(crate) struct PositionArgs {
    /// Replay from this record (included).
    #[arg(long)]
    pub(crate) sequence_number: Option<String>,
    /// Read from the first record at or after this RFC 3339 time.
    #[arg(long)]
    pub(crate) timestamp: Option<String>,
    /// Read from the oldest record in the shard.
    #[arg(long)]
    pub(crate) trim_horizon: bool,
    /// Skip to the newest record.
    #[arg(long)]
    pub(crate) latest: bool,
}

impl PositionArgs {
    /// The position, or what is wrong with it.
    pub(crate) fn to_restart_at(&self) -> Result<crate::checkpoint::RestartAt, String> {
        use crate::checkpoint::{RestartAt, SequenceNumber};
        if let Some(n) = &self.sequence_number {
            return SequenceNumber::parse(n)
                .map(RestartAt::AtSequenceNumber)
                .map_err(|e| format!("--sequence-number: {e}"));
        }
        if let Some(t) = &self.timestamp {
            return chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| RestartAt::AtTimestamp(t.with_timezone(&chrono::Utc)))
                .map_err(|e| {
                    format!("--timestamp `{t}`: {e} (use RFC 3339, e.g. 2026-11-24T10:00:00Z)")
                });
        }
        Ok(if self.latest {
            RestartAt::Latest
        } else {
            RestartAt::TrimHorizon
        })
    }
}
