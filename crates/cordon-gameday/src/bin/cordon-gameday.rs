//! `cordon-gameday`: provision a compromised-instance fixture, snapshot its
//! state, diff two snapshots.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use cordon_aws::client::AwsClients;
use cordon_gameday::{
    DEFAULT_FINDING_TYPE, Fixture, diff_states, provision_compromised_instance, snapshot_state,
};

#[derive(Debug, Parser)]
#[command(name = "cordon-gameday", about = "Game Day fixtures for cordon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Provision a compromised instance; write its finding, fixture ids and pre-state.
    Provision {
        /// Where to write the GuardDuty finding.
        #[arg(long)]
        finding_out: PathBuf,
        /// Where to write the pre-state snapshot.
        #[arg(long)]
        state_out: PathBuf,
        /// Where to write the fixture ids (default: fixture.json next to --state-out).
        #[arg(long)]
        fixture_out: Option<PathBuf>,
        /// Finding severity.
        #[arg(long, default_value_t = 8.0)]
        severity: f64,
        /// Finding type.
        #[arg(long, default_value = DEFAULT_FINDING_TYPE)]
        finding_type: String,
        /// Wrap the finding in an EventBridge envelope.
        #[arg(long)]
        eventbridge: bool,
    },
    /// Snapshot the fixture's current state.
    Snapshot {
        /// The fixture ids written by `provision`.
        #[arg(long)]
        fixture: PathBuf,
        /// Where to write the snapshot.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the differences between two snapshots; exit 1 if there are any.
    Diff {
        /// The earlier snapshot.
        a: PathBuf,
        /// The later snapshot.
        b: PathBuf,
    },
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
}

async fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Provision {
            finding_out,
            state_out,
            fixture_out,
            severity,
            finding_type,
            eventbridge,
        } => {
            let clients = AwsClients::from_env().await?;
            let fixture = provision_compromised_instance(&clients).await?;
            let fixture_out = fixture_out.unwrap_or_else(|| {
                state_out
                    .parent()
                    .unwrap_or_else(|| Path::new("."))
                    .join("fixture.json")
            });
            write_json(&fixture_out, &fixture)?;
            write_json(
                &finding_out,
                &fixture.finding_json(severity, &finding_type, eventbridge),
            )?;
            write_json(&state_out, &snapshot_state(&clients, &fixture).await?)?;
            println!(
                "provisioned {} (ENIs {}; volumes {}; ASG {}; profile {})",
                fixture.instance_id,
                fixture
                    .enis
                    .iter()
                    .map(|e| e.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                fixture.volume_ids.join(", "),
                fixture.asg_name,
                fixture.instance_profile_name,
            );
            println!(
                "finding: {}  fixture: {}  pre-state: {}",
                finding_out.display(),
                fixture_out.display(),
                state_out.display()
            );
            Ok(0)
        }
        Command::Snapshot { fixture, out } => {
            let fixture: Fixture = read_json(&fixture)?;
            let clients = AwsClients::from_env().await?;
            write_json(&out, &snapshot_state(&clients, &fixture).await?)?;
            Ok(0)
        }
        Command::Diff { a, b } => {
            let before: serde_json::Value = read_json(&a)?;
            let after: serde_json::Value = read_json(&b)?;
            let diffs = diff_states(&before, &after);
            if diffs.is_empty() {
                println!("no differences: every resource is at the same state");
                Ok(0)
            } else {
                println!("{} difference(s):", diffs.len());
                for d in &diffs {
                    println!("  {d}");
                }
                Ok(1)
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("cordon-gameday: {err:#}");
            ExitCode::from(2)
        }
    }
}
