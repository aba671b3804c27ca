//! `cordon-gameday`: build a Game Day environment and raise a finding on
//! it, snapshot its state, diff two snapshots, clean it up.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use cordon_aws::client::AwsClients;
use cordon_gameday::{
    DEFAULT_FINDING_TYPE, EnvironmentSpec, Fixture, ProvisionOptions, cleanup, diff_states,
    discover, provision_with, snapshot_state,
};

#[derive(Debug, Parser)]
#[command(name = "cordon-gameday", about = "Game Day fixtures for cordon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an environment (default: a compromised web server); write a
    /// finding about one of its instances, its ids and its pre-state.
    Provision(ProvisionArgs),
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
    /// Delete everything a run created: from its fixture file, or (when that
    /// was lost) from the owner tag it put on every resource.
    Cleanup {
        /// The fixture ids written by `provision`.
        #[arg(long, conflicts_with = "owner", required_unless_present = "owner")]
        fixture: Option<PathBuf>,
        /// The run's owner id (`gd-…`, printed by `provision`).
        #[arg(long)]
        owner: Option<String>,
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

/// The options of `provision`.
#[derive(Debug, Args)]
struct ProvisionArgs {
    /// Where to write the GuardDuty finding.
    #[arg(long)]
    finding_out: PathBuf,
    /// Where to write the pre-state snapshot.
    #[arg(long)]
    state_out: PathBuf,
    /// Where to write the fixture ids (default: fixture.json next to --state-out).
    #[arg(long)]
    fixture_out: Option<PathBuf>,
    /// The environment to build, as a JSON spec (default: the compromised web server).
    #[arg(long)]
    spec: Option<PathBuf>,
    /// The instance the finding is about (default: the spec's first).
    #[arg(long)]
    instance: Option<String>,
    /// Finding severity.
    #[arg(long, default_value_t = 8.0)]
    severity: f64,
    /// Finding type.
    #[arg(long, default_value = DEFAULT_FINDING_TYPE)]
    finding_type: String,
    /// Wrap the finding in an EventBridge envelope.
    #[arg(long)]
    eventbridge: bool,
}

async fn provision_command(args: ProvisionArgs) -> Result<u8> {
    let spec = match &args.spec {
        Some(path) => read_json(path)?,
        None => EnvironmentSpec::compromised_instance(),
    };
    let Some(instance) = args
        .instance
        .clone()
        .or_else(|| spec.instances.first().map(|i| i.name.clone()))
    else {
        bail!("the spec has no instance to raise a finding about");
    };
    let clients = AwsClients::from_env().await?;
    // Suffixed names: several runs can share one account.
    let options = ProvisionOptions::unique();
    let fixture = match provision_with(&clients, &spec, &options).await {
        Ok(fixture) => fixture,
        Err(err) => {
            for resource in &err.created {
                eprintln!("created before the failure: {resource}");
            }
            bail!(
                "{err}: run `cordon-gameday cleanup --owner {}`",
                options.owner
            );
        }
    };
    let fixture_out = args.fixture_out.unwrap_or_else(|| {
        args.state_out
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("fixture.json")
    });
    write_json(&fixture_out, &fixture)?;
    let mut finding = fixture.instance_finding(&instance)?;
    finding.severity = args.severity;
    finding.finding_type = args.finding_type;
    write_json(&args.finding_out, &finding.to_json(args.eventbridge))?;
    write_json(&args.state_out, &snapshot_state(&clients, &fixture).await?)?;
    print_fixture(&fixture, &instance)?;
    println!(
        "finding: {}  fixture: {}  pre-state: {}",
        args.finding_out.display(),
        fixture_out.display(),
        args.state_out.display()
    );
    Ok(0)
}

fn print_fixture(fixture: &Fixture, instance: &str) -> Result<()> {
    let record = fixture.instance(instance)?;
    let profile = record
        .instance_profile_arn
        .as_deref()
        .and_then(|arn| arn.rsplit('/').next())
        .unwrap_or("none");
    println!(
        "provisioned {instance} = {} (ENIs {}; volumes {}; ASG {}; profile {profile}); owner {}, {} resources",
        record.id,
        record.eni_ids().join(", "),
        record.volume_ids().join(", "),
        record.auto_scaling_group.as_deref().unwrap_or("none"),
        fixture.owner,
        fixture.resources.len(),
    );
    Ok(())
}

async fn cleanup_command(fixture: Option<PathBuf>, owner: Option<String>) -> Result<u8> {
    let clients = AwsClients::from_env().await?;
    let resources = match (fixture, owner) {
        (Some(path), _) => read_json::<Fixture>(&path)?.resources,
        (None, Some(owner)) => discover(&clients, &owner).await?,
        (None, None) => bail!("name the run: --fixture FILE or --owner ID"),
    };
    let report = cleanup(&clients, &resources).await;
    for resource in &report.deleted {
        println!("deleted {resource}");
    }
    for (resource, err) in &report.failed {
        eprintln!("could not delete {resource}: {err}");
    }
    Ok(if report.is_clean() { 0 } else { 1 })
}

async fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Provision(args) => provision_command(args).await,
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
        Command::Cleanup { fixture, owner } => cleanup_command(fixture, owner).await,
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
