//! `cordon gameday ...`: rehearse incidents end to end on the local emulator
//! and score them. The logic is in the `cordon-gameday` library; this module
//! parses arguments, finds the emulator and this binary, and prints.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::Subcommand;
use cordon_aws::client::AwsClients;
use cordon_gameday::cleanup_journaled;
use cordon_gameday::ledger::{CreationJournal, CreationLog};
use cordon_gameday::run::{RunOptions, Target, caller, run_scenario};
use cordon_gameday::scenario::Scenario;
use cordon_gameday::scorecard::{aggregate, load_scorecards};
use cordon_gameday::{GamedayError, ScenarioError};

use crate::{Failure, Output, failed, invalid};

/// The Game Day subcommands.
#[derive(Debug, Subcommand)]
pub enum GamedayCommand {
    /// Run a scenario on the local emulator (started and stopped here) or,
    /// with --target aws, in a sandbox account: provision, raise the
    /// findings, contain with cordon as a child process (process faults,
    /// approvals as the scenario says), check every expectation, roll back,
    /// diff every resource against its pre-state, verify the evidence, clean
    /// up. Exit 0 only if the scenario passed; 2 if it was refused.
    Run {
        /// The scenario file (see gameday/ and docs/gameday.md).
        scenario: PathBuf,
        /// Where to run: the local emulator, or the account of the ambient
        /// AWS configuration (credential chain, region, AWS_ENDPOINT_URL).
        #[arg(long, value_enum, default_value_t = TargetArg::Emulator)]
        target: TargetArg,
        /// With --target aws: an account the Game Day may change (repeat
        /// for several). No default: without it, or when the caller's
        /// account is not listed, the Game Day refuses before any change.
        #[arg(long = "allow-account", value_name = "ACCOUNT_ID", value_parser = account_id)]
        allow_accounts: Vec<String>,
        /// With --target aws: the evidence bucket to write to, prepared with
        /// `cordon evidence init` and tagged cordon:gameday (refused otherwise).
        #[arg(long, value_name = "BUCKET", required_if_eq("target", "aws"))]
        evidence_bucket: Option<String>,
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
    /// Delete everything a Game Day created, from the creation journal in
    /// its --out directory: also after it failed or was killed. Uses the
    /// ambient AWS configuration, in the journal's account and region.
    Cleanup {
        /// The Game Day's --out directory (holding creations.jsonl).
        #[arg(long, value_name = "DIR")]
        journal: PathBuf,
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

/// Where `cordon gameday run` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetArg {
    /// The local emulator, started and stopped by the Game Day.
    Emulator,
    /// A real (sandbox) account.
    Aws,
}

/// A 12-digit AWS account id.
fn account_id(text: &str) -> Result<String, String> {
    if text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text.to_string())
    } else {
        Err("an AWS account id is 12 digits".to_string())
    }
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
        GamedayCommand::Cleanup { journal } => cleanup(&journal).await,
        GamedayCommand::Run {
            scenario,
            target,
            allow_accounts,
            evidence_bucket,
            out,
            emulator,
            scale,
            concurrency,
            show_plans,
            output,
        } => {
            let parsed = Scenario::load(&scenario).map_err(scenario_failure)?;
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            let target = match target {
                TargetArg::Aws => {
                    if emulator.is_some() {
                        return Err(invalid(anyhow!(
                            "--emulator is for --target emulator; --target aws never starts the emulator (set AWS_ENDPOINT_URL to aim it at one)"
                        )));
                    }
                    Target::Aws {
                        allowed_accounts: allow_accounts,
                        evidence_bucket: evidence_bucket.unwrap_or_default(),
                    }
                }
                TargetArg::Emulator => {
                    if !allow_accounts.is_empty() || evidence_bucket.is_some() {
                        return Err(invalid(anyhow!(
                            "--allow-account and --evidence-bucket are for --target aws; the emulator needs neither"
                        )));
                    }
                    let program = match emulator {
                        Some(path) => path,
                        None => cordon_gameday::emulator::find_moto_server(&cwd).ok_or_else(|| {
                            invalid(anyhow!(
                                "no .venv/bin/moto_server here or in a parent directory: run scripts/setup in the cordon repository, or pass --emulator PATH"
                            ))
                        })?,
                    };
                    Target::Emulator { program }
                }
            };
            let out = out.unwrap_or_else(|| {
                let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
                cwd.join("gameday-out")
                    .join(format!("{}-{stamp}", parsed.name))
            });
            let options = RunOptions {
                cordon: std::env::current_exe().context("cannot find the cordon binary")?,
                target,
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
                    refused if refused.is_refusal() => invalid(anyhow!(refused)),
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

/// `cordon gameday cleanup --journal DIR`: exit 0 when nothing is left.
async fn cleanup(dir: &Path) -> Result<u8, Failure> {
    let log = CreationLog::read(dir).map_err(|e| invalid(anyhow!(e)))?;
    if log.run.target != "aws" {
        println!(
            "{}: the Game Day ran on the emulator, which stopped with it; nothing to clean up",
            dir.display()
        );
        return Ok(0);
    }
    let clients = AwsClients::from_env()
        .await
        .map_err(|e| invalid(anyhow!(e)))?;
    let clients = if clients.region == log.run.region {
        clients
    } else {
        clients
            .derive(&log.run.region, None)
            .map_err(|e| invalid(anyhow!(e)))?
    };
    let caller = caller(&clients).await.map_err(|e| failed(anyhow!(e)))?;
    if caller.account != log.run.account {
        return Err(invalid(anyhow!(
            "the Game Day {} ran in account {}, the caller is account {}; nothing was deleted: use credentials of account {}",
            log.run.owner,
            log.run.account,
            caller.account,
            log.run.account
        )));
    }
    let report = cleanup_journaled(&clients, &log)
        .await
        .map_err(|e| failed(anyhow!(e)))?;
    let journal = CreationJournal::reopen(dir)
        .await
        .map_err(|e| failed(anyhow!(e)))?;
    journal
        .cleaned_up(report.deleted.len(), report.failed.len())
        .await
        .map_err(|e| failed(anyhow!(e)))?;
    for resource in &report.deleted {
        println!("deleted {resource}");
    }
    for (resource, err) in &report.failed {
        println!("LEFT {resource}: {err}");
    }
    println!(
        "Game Day {}: {} deleted, {} left in account {} ({})",
        log.run.owner,
        report.deleted.len(),
        report.failed.len(),
        log.run.account,
        log.run.region
    );
    Ok(if report.is_clean() { 0 } else { 1 })
}

/// `cordon schema --scenario`.
pub fn schema() -> Result<u8, Failure> {
    println!(
        "{}",
        serde_json::to_string_pretty(&Scenario::json_schema()).map_err(|e| failed(e.into()))?
    );
    Ok(0)
}
