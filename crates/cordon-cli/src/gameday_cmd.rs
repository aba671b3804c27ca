//! `cordon gameday ...`: rehearse incidents end to end on the local emulator
//! and score them. The logic is in the `cordon-gameday` library; this module
//! parses arguments, finds the emulator and this binary, and prints.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::Subcommand;
use cordon_gameday::run::{RunOptions, run_scenario};
use cordon_gameday::scenario::Scenario;
use cordon_gameday::scorecard::{aggregate, load_scorecards};
use cordon_gameday::{GamedayError, ScenarioError};

use crate::{Failure, Output, failed, invalid};

/// The Game Day subcommands.
#[derive(Debug, Subcommand)]
pub enum GamedayCommand {
    /// Run a scenario on the local emulator (started and stopped here):
    /// provision, raise the findings, contain with cordon as a child process
    /// (process faults, approvals as the scenario says), check every
    /// expectation, roll back, diff every resource against its pre-state,
    /// verify the evidence, clean up. Exit 0 only if the scenario passed.
    Run {
        /// The scenario file (see gameday/ and docs/gameday.md).
        scenario: PathBuf,
        /// Where the scorecard (scorecard.json, scorecard.md), journals,
        /// findings and snapshots go (default: gameday-out/NAME-TIME).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The emulator to start (default: .venv/bin/moto_server of the
        /// repository holding the current directory).
        #[arg(long, value_name = "PATH")]
        emulator: Option<PathBuf>,
        /// Instances in all when the scenario makes copies of one (its `copies.count`).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=200))]
        scale: Option<u32>,
        /// Findings cordon works at once (default 8).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000))]
        concurrency: Option<u16>,
        /// Print the plan of each finding before containing it (text output only).
        #[arg(long)]
        show_plans: bool,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Check scenario files: every problem at once with file:line:column.
    Validate {
        /// Scenario files.
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
    /// Aggregate the scorecards under DIR into KPIs: success rate, mean,
    /// median and p95 time to contain, time to approve, faults survived.
    Report {
        /// A directory holding scorecard.json files (at any depth).
        dir: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

fn scenario_failure(error: ScenarioError) -> Failure {
    invalid(anyhow!(error))
}

/// Runs one Game Day subcommand; the result is the exit code.
pub async fn run(command: GamedayCommand) -> Result<u8, Failure> {
    match command {
        GamedayCommand::Validate { scenarios } => {
            let mut bad = 0;
            for path in &scenarios {
                match Scenario::load(path) {
                    Ok(s) => println!("{}: ok ({} finding(s))", path.display(), s.findings.len()),
                    Err(ScenarioError::Invalid(problems)) => {
                        bad += 1;
                        for p in problems {
                            println!("{p}");
                        }
                    }
                    Err(e) => return Err(scenario_failure(e)),
                }
            }
            Ok(if bad == 0 { 0 } else { 2 })
        }
        GamedayCommand::Report { dir, output } => {
            let cards = load_scorecards(&dir).map_err(|e| invalid(anyhow!(e)))?;
            let kpis = aggregate(&cards);
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&kpis).map_err(|e| failed(e.into()))?
                ),
                Output::Text => print!("{}", kpis.to_text()),
            }
            Ok(0)
        }
        GamedayCommand::Run {
            scenario,
            out,
            emulator,
            scale,
            concurrency,
            show_plans,
            output,
        } => {
            let parsed = Scenario::load(&scenario).map_err(scenario_failure)?;
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            let emulator = match emulator {
                Some(path) => path,
                None => cordon_gameday::emulator::find_moto_server(&cwd).ok_or_else(|| {
                    invalid(anyhow!(
                        "no .venv/bin/moto_server here or in a parent directory: run scripts/setup in the cordon repository, or pass --emulator PATH"
                    ))
                })?,
            };
            let out = out.unwrap_or_else(|| {
                let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
                cwd.join("gameday-out")
                    .join(format!("{}-{stamp}", parsed.name))
            });
            let options = RunOptions {
                cordon: std::env::current_exe().context("cannot find the cordon binary")?,
                emulator,
                out: out.clone(),
                scale,
                concurrency,
                progress: output == Output::Text,
                show_plans: show_plans && output == Output::Text,
            };
            let card = run_scenario(&parsed, &scenario.display().to_string(), &options)
                .await
                .map_err(|e| match e {
                    GamedayError::Scenario(e) => scenario_failure(e),
                    other => failed(anyhow!(other)),
                })?;
            match output {
                Output::Json => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&card).map_err(|e| failed(e.into()))?
                    );
                }
                Output::Text => {
                    print!("{}", card.to_text());
                    println!(
                        "\nScorecard: {} and {}",
                        out.join("scorecard.json").display(),
                        out.join("scorecard.md").display()
                    );
                }
            }
            Ok(if card.passed { 0 } else { 1 })
        }
    }
}

/// `cordon schema --scenario`.
pub fn schema() -> Result<u8, Failure> {
    println!(
        "{}",
        serde_json::to_string_pretty(&Scenario::json_schema()).map_err(|e| failed(e.into()))?
    );
    Ok(0)
}
