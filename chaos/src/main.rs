//! `esmd-chaos`: esmd's fault campaign.
//!
//! Each seed is a scenario (`scenario`): a source on moto or kinesis-local (`backend`; the
//! emulator processes, restarted when one dies, are `server`'s), esmd
//! with every AWS endpoint behind a fault-injecting proxy (`proxy`, `faults`), a function
//! host that fails on purpose (`function`), and a timeline of `kill -9`, SIGSTOP/SIGCONT,
//! SIGTERM and a shard split (`run`). After the drain, the checker (`checker`) reads the
//! run's log (`log`): nothing lost, order per key and lineage kept, no checkpoint backwards,
//! duplicates only where a disruption explains them, no panic, exit 0 on every SIGTERM.
//! `campaign` runs many seeds and writes the summary.

mod backend;
mod campaign;
mod checker;
mod esmd;
mod faults;
mod function;
mod log;
mod proxy;
mod run;
mod scenario;
mod server;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "esmd's fault campaign: seeded runs against moto and kinesis-local")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run seeds and check every invariant; exits 1 if any seed fails.
    Run {
        /// Seeds: `7`, `0..20` (end exclusive) or `1,5,9`.
        #[arg(long, default_value = "0..20")]
        seeds: String,
        /// Seeds run at once, each worker with its own moto server.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// The esmd binary under test.
        #[arg(long)]
        esmd: PathBuf,
        /// Where each run's logs go.
        #[arg(long, default_value = "target/chaos")]
        out: PathBuf,
        /// Also write the summary as JSON here.
        #[arg(long)]
        summary: Option<PathBuf>,
    },
    /// Print the scenarios of seeds as JSON (what a replay will do).
    Show {
        #[arg(long)]
        seeds: String,
    },
    /// Check a run's log again (`run.json` in its folder) and print the verdict as JSON.
    Check { log: PathBuf },
}

fn parse_seeds(s: &str) -> Result<Vec<u64>> {
    if let Some((a, b)) = s.split_once("..") {
        let (a, b): (u64, u64) = (a.trim().parse()?, b.trim().parse()?);
        if b <= a {
            bail!("--seeds {s}: the range is empty");
        }
        return Ok((a..b).collect());
    }
    s.split(',')
        .map(|x| x.trim().parse().with_context(|| format!("--seeds: {x:?}")))
        .collect()
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run {
            seeds,
            jobs,
            esmd,
            out,
            summary,
        } => {
            let list = parse_seeds(&seeds)?;
            if !esmd.exists() {
                bail!(
                    "--esmd {}: no such file (cargo build first)",
                    esmd.display()
                );
            }
            let command = format!("scripts/chaos --seeds {seeds} --jobs {jobs}");
            let s = campaign::campaign(list, jobs, esmd, out, command).await?;
            let json = serde_json::to_string_pretty(&s)?;
            println!("{json}");
            if let Some(path) = summary {
                std::fs::write(&path, format!("{json}\n"))
                    .with_context(|| format!("write {}", path.display()))?;
            }
            if !s.ok() {
                bail!(
                    "{} of {} runs failed: seeds {:?} {:?}",
                    s.failed_seeds.len() + s.errored.len(),
                    s.runs,
                    s.failed_seeds,
                    s.errored
                );
            }
            Ok(())
        }
        Command::Show { seeds } => {
            let all: Vec<_> = parse_seeds(&seeds)?
                .into_iter()
                .map(scenario::Scenario::from_seed)
                .collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
            Ok(())
        }
        Command::Check { log } => {
            let text = std::fs::read(&log).with_context(|| format!("read {}", log.display()))?;
            let run: log::RunLog = serde_json::from_slice(&text)?;
            let v = checker::check(&run);
            println!("{}", serde_json::to_string_pretty(&v)?);
            if !v.ok() {
                bail!("{}", v.problems().join("\n"));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_parse_as_a_range_a_list_or_one() {
        assert_eq!(super::parse_seeds("0..3").unwrap(), vec![0, 1, 2]);
        assert_eq!(super::parse_seeds("4,9").unwrap(), vec![4, 9]);
        assert_eq!(super::parse_seeds("7").unwrap(), vec![7]);
        assert!(super::parse_seeds("3..3").is_err());
    }
}
