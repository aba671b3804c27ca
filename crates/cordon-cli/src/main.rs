//! `cordon`: run incident-response playbooks against GuardDuty findings.
//!
//! Exit codes are the outcomes of [`cordon_core::executor::Outcome`], the same
//! meanings for every front door: 0 done and verified; 1 failed or stopped, the
//! containment state needs a human; 2 invalid input; 3 waiting for a decision;
//! 4 failed and rolled back to the exact pre-state; 5 rollback incomplete;
//! 6 completed with failures; 124 an approval timed out.

mod approvals;
mod asl_cmd;
mod burst;
mod doctor;
mod evidence_cmd;
mod gameday_cmd;
mod infra;
mod intake;
mod live;
mod output;
mod playbook_set;
mod policy_cmd;
mod progress;
mod render;
mod report;
mod task_approval;
mod trust;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use approvals::CliApprover;
use clap::{Args, Parser, Subcommand, ValueEnum};
use cordon_aws::actions::AwsActions;
use cordon_aws::client::AwsClients;
use cordon_aws::faults::{FaultInjector, FaultPlan};
use cordon_aws::pause::PauseSwitches;
use cordon_aws::ratelimit::{RateLimits, ThrottleCounter};
use cordon_core::executor::{Decision, ExecError, Executor, LoopGuard, Outcome, Report};
use cordon_core::finding::{Finding, FindingError, parse_single_finding};
use cordon_core::journal::{CaseState, CaseStatus, JournalEvent, JournalRecord, JournalStore};
use cordon_core::local_store::LocalJournal;
use cordon_core::plan::{CaseId, Plan, PlannedStep, PlaybookSet, try_plan};
use cordon_core::route::{Route, route};
use cordon_core::summary::summarize;
use cordon_core::text::escape;
use cordon_core::validate::LoadedPlaybook;

/// Incident-response forensics for AWS: contain what GuardDuty finds, keep the
/// evidence, and roll back exactly.
#[derive(Debug, Parser)]
#[command(name = "cordon", version, about, long_about = None, after_help = exit_codes_help())]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log verbosity on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Write logs as JSON lines (an audit trail) instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    /// Tests and Game Days only: inject the AWS faults this plan describes
    /// (throttling, 5xx, timeouts, connection resets, AccessDenied; JSON or
    /// YAML, see docs/formats.md "Fault plans") into every AWS call.
    #[arg(long, global = true, value_name = "FILE")]
    inject_faults: Option<PathBuf>,
    /// With --inject-faults: append every injected fault to FILE, one JSON
    /// line each, synced as it is injected.
    #[arg(long, global = true, value_name = "FILE", requires = "inject_faults")]
    fault_log: Option<PathBuf>,
}

/// The exit codes, one line each, from the outcomes every front door shares.
fn exit_codes_help() -> String {
    let mut text = String::from("Exit codes:\n");
    for outcome in <Outcome as strum::IntoEnumIterator>::iter() {
        text.push_str(&format!(
            "  {:>3}  {:<24} {}\n",
            outcome.exit_code(),
            outcome.to_string(),
            outcome.meaning()
        ));
    }
    text
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the playbook format's JSON Schema, or with `--output-of` the
    /// schema of a command's `--output json` document, or with `--fault-plan`
    /// that of `--inject-faults` files (also in `docs/schemas/`).
    Schema {
        /// The command whose JSON document's schema to print.
        #[arg(long, value_name = "COMMAND", value_parser = clap::builder::PossibleValuesParser::new(output::DOCUMENTS))]
        output_of: Option<String>,
        /// The fault plan's schema (`--inject-faults FILE`, Game Day `faults:`).
        #[arg(long, conflicts_with = "output_of")]
        fault_plan: bool,
        /// The schema of Game Day scenario files.
        #[arg(long, conflicts_with_all = ["output_of", "fault_plan"])]
        scenario: bool,
    },
    /// Validate playbooks; reports every problem at once with file:line:column.
    Validate {
        /// A playbook file or a directory of them (default: ./playbooks if it
        /// exists, else the playbooks embedded in this binary).
        #[arg(env = "CORDON_PLAYBOOKS")]
        path: Option<PathBuf>,
    },
    /// The playbooks embedded in this binary.
    #[command(subcommand)]
    Playbooks(PlaybooksCommand),
    /// Say which playbook answers a finding, and why.
    Route(FindingArgs),
    /// Print the plan for a finding: steps, targets, approvals, IAM permissions.
    Plan(FindingArgs),
    /// Run the plan for a finding (journaled). The same finding again: a finished
    /// case is a no-op, a rolled-back case is contained again in a new epoch, an
    /// updated finding re-plans the steps not yet applied (or asks, exit 3).
    /// Several findings (files, a directory, a file holding several, JSON
    /// lines, `--finding-id` repeated) are a burst: worked concurrently, each
    /// its own case and journal, one line each, then a summary; the exit code
    /// is the most urgent outcome (docs/lifecycle.md, "Bursts").
    Run {
        #[command(flatten)]
        finding: burst::RunInputs,
        #[command(flatten)]
        burst: burst::BurstArgs,
        /// Read pre-states and print the calls that would be made; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// When an updated finding changes the plan in a way that matters (another
        /// playbook, an applied step's target), contain it in a new epoch on top.
        #[arg(long)]
        accept_replan: bool,
        #[command(flatten)]
        approval: ApprovalArgs,
        #[command(flatten)]
        guard: LoopGuardArgs,
        #[command(flatten)]
        guards: trust::GuardArgs,
        #[command(flatten)]
        pause: trust::PauseArgs,
        #[command(flatten)]
        account: trust::AccountArgs,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Continue a stopped or interrupted case from its journal.
    Resume {
        case: String,
        #[command(flatten)]
        approval: ApprovalArgs,
        #[command(flatten)]
        pause: trust::PauseArgs,
        #[command(flatten)]
        account: trust::AccountArgs,
        #[command(flatten)]
        state: StateArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Approve (or refuse) a step waiting for approval, then continue the case.
    Approve {
        case: String,
        step: String,
        /// Refuse instead: the remaining steps are recorded as not run.
        #[arg(long)]
        refuse: bool,
        /// Why (recorded in the journal).
        #[arg(long, default_value = "")]
        reason: String,
        /// Answer a Step Functions approval wait with the token from the
        /// approval message (or $CORDON_TASK_TOKEN): the decision is
        /// journaled in the case's S3 journal (--journal), then the execution
        /// resumes, or ends with Cordon.ApprovalRefused under --refuse.
        #[arg(
            long,
            value_name = "TOKEN",
            env = "CORDON_TASK_TOKEN",
            hide_env_values = true,
            requires = "journal"
        )]
        task_token: Option<String>,
        /// The case's S3 journal, s3://BUCKET[/PREFIX] (the Lambda's
        /// CORDON_JOURNAL); with --task-token. Default: the local journal.
        #[arg(long, value_name = "s3://BUCKET[/PREFIX]", requires = "task_token")]
        journal: Option<String>,
        #[command(flatten)]
        pause: trust::PauseArgs,
        #[command(flatten)]
        account: trust::AccountArgs,
        #[command(flatten)]
        state: StateArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Undo every step of a case from its journaled pre-state, newest first.
    /// Undo that re-arms credentials (reactivating a key, lifting a session
    /// revocation or quarantine) or deletes evidence needs `--approve-undo STEP`
    /// (or a yes at the prompt); without it the step is kept and the case ends
    /// rolled-back-except-credentials (exit 1).
    Rollback {
        case: String,
        /// Approve the undo of this step (repeatable).
        #[arg(long = "approve-undo", value_name = "STEP")]
        approve_undo: Vec<String>,
        #[command(flatten)]
        account: trust::AccountArgs,
        #[command(flatten)]
        state: StateArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show a case: where it is in its lifecycle, each step's state, flags
    /// (an ENI left open between the isolation phases), and the timeline.
    Status {
        case: String,
        /// Re-read AWS to confirm what the journal flags (ENIs still open).
        #[arg(long)]
        live: bool,
        /// Read the case from an S3 journal, s3://BUCKET[/PREFIX] (the
        /// Lambda's CORDON_JOURNAL), instead of the local one.
        #[arg(long, value_name = "s3://BUCKET[/PREFIX]")]
        journal: Option<String>,
        #[command(flatten)]
        account: trust::AccountArgs,
        #[command(flatten)]
        state: StateArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// List known cases: status, epoch, time to contain, time waiting for
    /// approval, and flags.
    Cases {
        #[command(flatten)]
        state: StateArgs,
        /// List the cases of an S3 journal, s3://BUCKET[/PREFIX] (the
        /// Lambda's CORDON_JOURNAL), instead of the local one.
        #[arg(long, value_name = "s3://BUCKET[/PREFIX]")]
        journal: Option<String>,
        /// Only cases in this state (repeatable): completed, completed-with-failures,
        /// awaiting-approval, stopped, rolled-back, rollback-incomplete, …
        #[arg(long = "status", value_name = "STATE")]
        statuses: Vec<String>,
        /// Only cases opened within this long (90s, 15m, 2h, 7d).
        #[arg(long, value_name = "DURATION", value_parser = approvals::parse_duration)]
        since: Option<std::time::Duration>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions { shell: clap_complete::Shell },
    /// Print cordon's man page (roff); with --dir, write one page per command there.
    Man {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// List open GuardDuty findings, most severe first, with the playbook each
    /// would get; with `--run`, contain them all as one burst.
    Triage {
        #[command(flatten)]
        triage: intake::TriageArgs,
        #[command(flatten)]
        run: burst::TriageRun,
    },
    /// Game Days: rehearse incidents end to end on the local emulator, with
    /// faults and approvals as a scenario says, and score them.
    Gameday {
        #[command(subcommand)]
        command: gameday_cmd::GamedayCommand,
    },
    /// Evidence bucket set-up and checks, and verification of a case's evidence.
    Evidence {
        #[command(subcommand)]
        command: evidence_cmd::EvidenceCommand,
    },
    /// The case report for a ticket, from the journal and evidence manifest
    /// alone: finding, route, each step's pre-state → post-state, approvals,
    /// failures, rollbacks, evidence with SHA-256 and versions, time to contain.
    Report {
        #[command(flatten)]
        args: report::ReportArgs,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Print the IAM policy the playbooks need (JSON), scoped by ARN and condition keys;
    /// or the role's permissions boundary, or the managed policy quarantine attaches.
    Policy(policy_cmd::PolicyArgs),
    /// Print the Step Functions state machine (Amazon States Language) of a
    /// playbook, calling the cordon Lambda: plan, the step graph with
    /// Parallel branches, retries, approval waits for `cordon approve
    /// --task-token`, rollback and stop; `--all --out DIR` writes one per playbook.
    ExportAsl(asl_cmd::ExportAslArgs),
    /// Write the CloudFormation templates of infra/ (cordon.yaml, member-account.yaml)
    /// for the embedded playbooks; `--check` fails when the files differ.
    ExportInfra(infra::ExportInfraArgs),
    /// Check readiness before an incident: identity, region, clock, every
    /// permission the playbooks need (probed without changing anything), the
    /// evidence bucket, the notify topic, the isolation groups and the journal
    /// directory. One PASS/FAIL/SKIP line each; exit 1 on any FAIL.
    Doctor(doctor::DoctorArgs),
}

#[derive(Debug, Args)]
struct FindingArgs {
    /// A GuardDuty finding: EventBridge event, bare finding, or GetFindings item (`-` for stdin).
    #[arg(required_unless_present = "finding_id", conflicts_with = "finding_id")]
    finding: Option<PathBuf>,
    /// Fetch the finding from GuardDuty by id instead of reading a file.
    #[arg(long)]
    finding_id: Option<String>,
    /// GuardDuty detector for --finding-id (default: the region's only detector).
    #[arg(long, requires = "finding_id")]
    detector: Option<String>,
    /// Re-read a finding that came as a file or event from GuardDuty by id
    /// (detector from its service.detectorId, in its region) and plan from
    /// GuardDuty's copy: one GuardDuty does not have, or has with another type,
    /// resource, account or region, is refused (exit 2) before any change.
    #[arg(long)]
    verify_source: bool,
    /// Directory (or file) of playbooks (default: ./playbooks if it exists,
    /// else the playbooks embedded in this binary).
    #[arg(long, env = "CORDON_PLAYBOOKS")]
    playbooks: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Subcommand)]
enum PlaybooksCommand {
    /// Write the embedded playbooks into DIR to customise them (then pass
    /// `--playbooks DIR`, or run from DIR's parent as `./playbooks`).
    Export {
        dir: PathBuf,
        /// Overwrite files of the same name.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Args)]
struct ApprovalArgs {
    /// Approve every step that needs approval (scripted runs).
    #[arg(long)]
    yes: bool,
    /// Approve this step (repeatable).
    #[arg(long = "approve", value_name = "STEP")]
    approve: Vec<String>,
    /// Wait this long (90s, 15m, 2h) for a decision on a step that needs
    /// approval (at the prompt, or `cordon approve` from another terminal);
    /// then the case stops, journaled, exit 124. Default: do not wait.
    #[arg(long, value_name = "DURATION", value_parser = approvals::parse_duration)]
    approval_timeout: Option<std::time::Duration>,
}

/// Flapping protection: automatic action stops on a resource contained or
/// re-triggered too often, and a human decides.
#[derive(Debug, Clone, Args)]
struct LoopGuardArgs {
    /// Cases or epochs allowed on one resource (instance, key, user, role) per
    /// window before automatic action stops; 0 turns the guard off.
    #[arg(long, env = "CORDON_LOOP_GUARD_MAX", default_value_t = 3)]
    loop_guard_max: u32,
    /// The loop guard's window.
    #[arg(long, env = "CORDON_LOOP_GUARD_WINDOW", default_value = "24h", value_parser = approvals::parse_duration)]
    loop_guard_window: std::time::Duration,
}

impl LoopGuardArgs {
    fn guard(&self) -> Option<LoopGuard> {
        (self.loop_guard_max > 0).then_some(LoopGuard {
            max_triggers: self.loop_guard_max,
            window: self.loop_guard_window,
        })
    }
}

#[derive(Debug, Clone, Args)]
struct StateArgs {
    /// Where journals and local evidence live.
    #[arg(long, env = "CORDON_STATE_DIR", default_value = ".cordon")]
    state_dir: PathBuf,
    /// Store evidence in this S3 bucket (see `cordon evidence init`) instead of the state directory.
    #[arg(long, env = "CORDON_EVIDENCE_BUCKET")]
    evidence_bucket: Option<String>,
    /// Sign each evidence manifest with this asymmetric KMS key (SIGN_VERIFY,
    /// ECC_NIST_P256); `cordon evidence verify --signing-key` checks it.
    #[arg(
        long,
        env = "CORDON_EVIDENCE_SIGNING_KEY",
        requires = "evidence_bucket"
    )]
    evidence_signing_key: Option<String>,
}

impl ApprovalArgs {
    /// The standing approvals these flags give.
    fn standing(&self) -> approvals::Standing {
        approvals::Standing {
            all: self.yes,
            steps: self.approve.iter().cloned().collect(),
            undo_steps: Default::default(),
            timeout: self.approval_timeout,
        }
    }
}

impl StateArgs {
    fn journal(&self) -> LocalJournal {
        LocalJournal::new(self.state_dir.join("cases"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    error: anyhow::Error,
}

pub(crate) fn invalid(error: anyhow::Error) -> Failure {
    Failure { code: 2, error }
}

pub(crate) fn failed(error: anyhow::Error) -> Failure {
    Failure { code: 1, error }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        failed(error)
    }
}

/// A reader that went away (`cordon … | head`) ends the process quietly
/// with 141, as a shell tool killed by SIGPIPE does, instead of a panic: Rust
/// ignores SIGPIPE, so the write fails and `println!` panics.
fn quiet_on_broken_pipe() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cordon: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let faults = match load_faults(cli.inject_faults.as_deref(), cli.fault_log.as_deref()) {
        Ok(faults) => faults,
        Err(error) => {
            eprintln!("cordon: {}", one_sentence(&error));
            return ExitCode::from(Outcome::InvalidInput.exit_code());
        }
    };
    match runtime.block_on(dispatch(cli.command, faults)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("cordon: {}", one_sentence(&failure.error));
            ExitCode::from(failure.code)
        }
    }
}

/// An error as one line, causes appended outermost first: never a Debug
/// dump, and escaped, since causes quote findings and AWS answers.
pub(crate) fn one_sentence(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message.push_str(": ");
            message.push_str(&cause);
        }
    }
    escape(&message).into_owned()
}

fn init_logging(verbose: u8, json: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, filter};
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let env = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Progress events are for the progress layer only, never log lines.
    let not_progress = filter::filter_fn(|meta| meta.target() != cordon_core::progress::TARGET);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = if json {
        fmt.json()
            .with_filter(env)
            .with_filter(not_progress)
            .boxed()
    } else {
        fmt.with_filter(env).with_filter(not_progress).boxed()
    };
    let args: Vec<String> = std::env::args().collect();
    let progress = (!json && !progress::json_requested(&args)).then(|| {
        progress::ProgressLayer::for_stderr().with_filter(
            filter::Targets::new().with_target(cordon_core::progress::TARGET, tracing::Level::INFO),
        )
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(progress)
        .init();
}

/// The fault injector `--inject-faults` asks for (with its `--fault-log`),
/// announced on stderr: a run with faults must never pass for a real one.
fn load_faults(
    plan: Option<&Path>,
    log: Option<&Path>,
) -> Result<Option<FaultInjector>, anyhow::Error> {
    let Some(path) = plan else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the fault plan {}", path.display()))?;
    let plan = FaultPlan::parse(&text).with_context(|| format!("fault plan {}", path.display()))?;
    let rules = plan.rules.len();
    let seed = plan.seed;
    let injector = FaultInjector::new(plan)?;
    if let Some(log) = log {
        injector.log_to(log)?;
    }
    eprintln!(
        "cordon: WARNING: injecting AWS faults from {} ({rules} rule(s), seed {seed}): for tests and Game Days only",
        escape(&path.display().to_string())
    );
    Ok(Some(injector))
}

async fn dispatch(command: Command, faults: Option<FaultInjector>) -> Result<u8, Failure> {
    let aws = Aws::new(faults);
    match command {
        Command::Schema { scenario: true, .. } => gameday_cmd::schema(),
        Command::Schema {
            output_of,
            fault_plan,
            ..
        } => schema(output_of.as_deref(), fault_plan),
        Command::Validate { path } => validate(path.as_deref()),
        Command::Playbooks(PlaybooksCommand::Export { dir, force }) => {
            let written = playbook_set::export(&dir, force)?;
            for path in &written {
                println!("wrote {}", path.display());
            }
            println!(
                "{} playbook(s) exported; use them with --playbooks {}",
                written.len(),
                dir.display()
            );
            Ok(0)
        }
        Command::Route(args) => route_finding(&args, &aws).await,
        Command::Plan(args) => plan_finding(&args, &aws).await,
        Command::Run {
            finding,
            burst,
            dry_run,
            accept_replan,
            approval,
            guard,
            guards,
            pause,
            account,
            state,
        } => {
            let options = RunOptions {
                dry_run,
                accept_replan,
                loop_guard: guard.guard(),
            };
            burst.apply_rate_limits(&aws).await?;
            if let Some(single) = finding.single(&burst)? {
                let context = CaseContext {
                    approval: &approval,
                    pause: &pause,
                    account: &account,
                    state: &state,
                };
                return run(&single, &options, &guards, &context, &aws).await;
            }
            if dry_run {
                return Err(invalid(anyhow!(
                    "--dry-run takes one finding: run it on each finding of the burst separately"
                )));
            }
            let settings = burst::Settings {
                options,
                approval,
                guards,
                pause,
                account,
                state,
                output: finding.output,
                concurrency: burst.concurrency(),
            };
            burst::run(finding, settings, aws).await
        }
        Command::Resume {
            case,
            approval,
            pause,
            account,
            state,
            output,
        } => {
            let context = CaseContext {
                approval: &approval,
                pause: &pause,
                account: &account,
                state: &state,
            };
            resume(&case, &context, output, &aws).await
        }
        Command::Approve {
            case,
            step,
            refuse,
            reason,
            task_token,
            journal,
            pause,
            account,
            state,
            output,
        } => {
            if let (Some(token), Some(journal)) = (&task_token, &journal) {
                let request = task_approval::TaskApproval {
                    case: &case,
                    step: &step,
                    refuse,
                    reason,
                    token,
                    journal,
                    output,
                };
                return task_approval::run(request, &aws).await;
            }
            let decision = (step, refuse, reason);
            approve(&case, decision, &pause, &account, &state, output, &aws).await
        }
        Command::Rollback {
            case,
            approve_undo,
            account,
            state,
            output,
        } => rollback(&case, approve_undo, &account, &state, output, &aws).await,
        Command::Status {
            case,
            live,
            journal,
            account,
            state,
            output,
        } => {
            let request = StatusRequest {
                case: &case,
                live,
                account: &account,
                state: &state,
                output,
                aws: &aws,
            };
            match journal {
                Some(url) => status(&task_approval::s3_journal(&url, &aws).await?, request).await,
                None => status(&state.journal(), request).await,
            }
        }
        Command::Cases {
            state,
            journal,
            statuses,
            since,
            output,
        } => match journal {
            Some(url) => {
                let journal = task_approval::s3_journal(&url, &aws).await?;
                cases(&journal, &statuses, since, output).await
            }
            None => cases(&state.journal(), &statuses, since, output).await,
        },
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "cordon", &mut std::io::stdout());
            Ok(0)
        }
        Command::Man { dir } => man(dir.as_deref()),
        Command::Triage { triage, run } => match run.settings()? {
            None => intake::triage(triage, &aws).await,
            Some(settings) => {
                run.apply_rate_limits(&aws).await?;
                burst::triage_run(triage, settings, aws).await
            }
        },
        Command::Gameday { command } => gameday_cmd::run(command).await,
        Command::Evidence { command } => evidence_cmd::run(command).await.map_err(failed),
        Command::Policy(args) => policy_cmd::run(&args),
        Command::ExportAsl(args) => asl_cmd::run(&args),
        Command::ExportInfra(args) => infra::run(&args),
        Command::Doctor(args) => doctor::run(&args).await,
        Command::Report { args, state } => report::run(&args, &state.journal(), &state.state_dir)
            .await
            .map_err(report_failure),
    }
}

/// An unknown case or a journal that cannot be trusted is invalid input (2).
fn report_failure(error: anyhow::Error) -> Failure {
    use cordon_core::journal::JournalError;
    match error.downcast_ref::<JournalError>() {
        Some(JournalError::UnknownCase { .. } | JournalError::Corrupt { .. }) => invalid(error),
        _ => failed(error),
    }
}

fn schema(output_of: Option<&str>, fault_plan: bool) -> Result<u8, Failure> {
    let schema = match output_of {
        None if fault_plan => output::fault_plan_schema(),
        None => cordon_core::playbook::json_schema(),
        Some(name) => output::json_schema(name).ok_or_else(|| {
            invalid(anyhow!(
                "no JSON document is named `{name}`: use one of {}",
                output::DOCUMENTS.join(", ")
            ))
        })?,
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&schema).map_err(|e| failed(e.into()))?
    );
    Ok(0)
}

async fn route_finding(args: &FindingArgs, aws: &Aws) -> Result<u8, Failure> {
    let (finding, playbooks, _, _) = load_inputs(args, aws).await?;
    let (route, _) = route(&finding, &playbooks_only(&playbooks));
    match args.output {
        Output::Json => print_json(&route)?,
        Output::Text => print!("{}", render::route(&finding, &route)),
    }
    Ok(0)
}

async fn plan_finding(args: &FindingArgs, aws: &Aws) -> Result<u8, Failure> {
    let (finding, playbooks, _, set) = load_inputs(args, aws).await?;
    match make_plan(&finding, &playbooks)? {
        Some(mut plan) => {
            plan.playbook_set = Some(set);
            match args.output {
                Output::Json => print_json(&plan)?,
                Output::Text => print!("{}", render::plan(&plan)),
            }
        }
        None => no_match(&finding, &playbooks, args.output)?,
    }
    Ok(0)
}

/// How `cordon run` treats the case.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunOptions {
    dry_run: bool,
    accept_replan: bool,
    loop_guard: Option<LoopGuard>,
}

/// What a command working on a case was told about approvals, the pause
/// switch, other accounts and where state lives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CaseContext<'c> {
    approval: &'c ApprovalArgs,
    pause: &'c trust::PauseArgs,
    account: &'c trust::AccountArgs,
    state: &'c StateArgs,
}

async fn run(
    args: &FindingArgs,
    options: &RunOptions,
    guards: &trust::GuardArgs,
    context: &CaseContext<'_>,
    aws: &Aws,
) -> Result<u8, Failure> {
    let (approval, state) = (context.approval, context.state);
    let (finding, playbooks, check, set) = load_inputs(args, aws).await?;
    let Some(mut plan) = make_plan(&finding, &playbooks)? else {
        no_match(&finding, &playbooks, args.output)?;
        return Ok(0);
    };
    plan.playbook_set = Some(set);
    // Which account the case acts in (the caller's identity) and the
    // protected tags are asked together, not one after the other.
    let (case, early) = tokio::join!(
        trust::case_aws(aws, state, context.account, &plan.finding, &plan.case_id),
        guards.protected_early(aws, &plan),
    );
    let case = case?;
    guards.protect_case(&case, early, &mut plan).await?;
    if options.dry_run {
        return print_dry_run(&plan, &case, approval, state, args.output).await;
    }
    if args.output == Output::Text {
        print!("{}", render::plan(&plan));
        println!();
    }
    let timeline = Timeline::new(Some(args.output));
    let run = CaseRun {
        finding: &finding,
        check: &check,
        plan: &plan,
        case: &case,
        timeline: &timeline,
        interactive: args.output == Output::Text,
        fleet_ledger: None,
    };
    let report = execute_case(run, options, guards, context).await?;
    if let Some(guard) = timeline.guard_tripped() {
        trust::escalate(&case.caller, guard, &report).await;
    }
    finish(report, &case.actions, args.output)
}

/// One planned case ready to run: `cordon run` on one finding, or one
/// finding of a burst.
pub(crate) struct CaseRun<'r> {
    pub finding: &'r Finding,
    pub check: &'r trust::SourceCheck,
    pub plan: &'r Plan,
    pub case: &'r trust::CaseAws,
    pub timeline: &'r Timeline,
    /// Approvals may be asked at the terminal (one case at a time only).
    pub interactive: bool,
    /// The burst's fleet ledger, so the fleet cap counts its cases together.
    pub fleet_ledger: Option<&'r cordon_core::fleet::FleetLedger>,
}

/// Keeps the finding with the case and runs its plan, journaled, with the
/// guards (loop guard, fleet cap, pause switch) and approvals.
pub(crate) async fn execute_case(
    run: CaseRun<'_>,
    options: &RunOptions,
    guards: &trust::GuardArgs,
    context: &CaseContext<'_>,
) -> Result<Report, Failure> {
    let CaseRun {
        finding,
        check,
        plan,
        case,
        timeline,
        interactive,
        fleet_ledger,
    } = run;
    let journal = context.state.journal();
    keep_finding(&journal, &plan.case_id, &finding.raw)?;
    if let Some(received) = &check.received_raw {
        keep_finding(&journal, &plan.case_id, received)?;
    }
    let approver = CliApprover::new(
        &case.caller,
        context.approval.standing(),
        interactive,
        Some(approvals::Inbox::new(&journal.case_dir(&plan.case_id))),
    );
    let observer = |r: &JournalRecord| timeline.record(r);
    let pause = context.pause.switches(context.state, &case.caller);
    let executor = case_executor(&case.actions, &journal, &approver, &observer, Some(&pause))
        .accept_replan(options.accept_replan)
        .loop_guard(options.loop_guard)
        .fleet_cap(guards.fleet_cap())
        .fleet_ledger(fleet_ledger)
        .provenance(Some(case.provenance(check)));
    executor.run(plan, &finding.raw).await.map_err(exec_failure)
}

/// Keeps the finding byte for byte as received, with the case (evidence):
/// `<case-dir>/finding-<sha256 prefix>.json`, one file per distinct delivery.
fn keep_finding(journal: &LocalJournal, case: &CaseId, raw: &str) -> Result<(), Failure> {
    let dir = journal.case_dir(case);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the case directory {}", dir.display()))?;
    let digest = cordon_core::executor::finding_digest(raw);
    let path = dir.join(format!("finding-{}.json", &digest[..16]));
    if !path.exists() {
        let tmp = dir.join(format!(".finding.{}.tmp", std::process::id()));
        std::fs::write(&tmp, raw.as_bytes())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("cannot keep the finding in {}", path.display()))?;
    }
    Ok(())
}

async fn print_dry_run(
    plan: &Plan,
    case: &trust::CaseAws,
    approval: &ApprovalArgs,
    state: &StateArgs,
    output: Output,
) -> Result<u8, Failure> {
    let approver = CliApprover::new(&case.caller, approval.standing(), false, None);
    let journal = state.journal();
    let executor = Executor::new(&case.actions, &journal, &approver);
    let steps = executor.dry_run(plan).await;
    match output {
        Output::Json => print_json(&output::DryRun {
            plan,
            dry_run: &steps,
        })?,
        Output::Text => {
            print!("{}", render::plan(plan));
            print!("{}", render::dry_run(&steps));
        }
    }
    Ok(0)
}

async fn resume(
    case: &str,
    context: &CaseContext<'_>,
    output: Output,
    aws: &Aws,
) -> Result<u8, Failure> {
    let case = parse_case(case)?;
    let journal = context.state.journal();
    let aws = open_case_aws(
        aws,
        context.state,
        context.account,
        &journal,
        &case,
        CaseCommand::Resume,
    )
    .await?;
    let approver = CliApprover::new(
        &aws.caller,
        context.approval.standing(),
        output == Output::Text,
        Some(approvals::Inbox::new(&journal.case_dir(&case))),
    );
    let timeline = Timeline::new(Some(output));
    let observer = |r: &JournalRecord| timeline.record(r);
    let pause = context.pause.switches(context.state, &aws.caller);
    let executor = case_executor(&aws.actions, &journal, &approver, &observer, Some(&pause));
    let report = executor.resume(&case).await.map_err(exec_failure)?;
    finish(report, &aws.actions, output)
}

/// What a command on a journaled case will do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaseCommand {
    Resume,
    Approve,
    Rollback,
}

/// The AWS side of a journaled case: its finding's account and region, from
/// its plan; no account check for a case the command leaves as it is.
async fn open_case_aws(
    aws: &Aws,
    state: &StateArgs,
    account: &trust::AccountArgs,
    journal: &LocalJournal,
    case: &CaseId,
    command: CaseCommand,
) -> Result<trust::CaseAws, Failure> {
    use cordon_core::journal::CaseStatus;
    let records = journal
        .load(case)
        .await
        .map_err(|e| exec_failure(e.into()))?;
    let case_state = CaseState::from_records(case, &records).map_err(|e| invalid(e.into()))?;
    let at_rest = !case_state.rollback_started || case_state.status.is_some();
    let idle = at_rest
        && match (command, case_state.status) {
            (CaseCommand::Rollback, Some(status)) => status == CaseStatus::RolledBack,
            (CaseCommand::Resume, Some(status)) => {
                matches!(status, CaseStatus::Completed | CaseStatus::RolledBack)
            }
            _ => false,
        };
    if idle {
        return trust::idle_case_aws(aws, state).await;
    }
    trust::case_aws(aws, state, account, &case_state.plan.finding, case).await
}

async fn approve(
    case: &str,
    (step, refuse, reason): (String, bool, String),
    pause: &trust::PauseArgs,
    account: &trust::AccountArgs,
    state: &StateArgs,
    output: Output,
    aws: &Aws,
) -> Result<u8, Failure> {
    let step = step.as_str();
    let case = parse_case(case)?;
    let journal = state.journal();
    let aws = open_case_aws(aws, state, account, &journal, &case, CaseCommand::Approve).await?;
    let identity = approvals::caller_identity(&aws.caller)
        .await
        .map_err(failed)?;
    let reason = if reason.is_empty() && refuse {
        "refused".to_string()
    } else {
        reason
    };
    // A run waiting for this decision holds the case: hand the decision to it.
    match journal.lock(&case).await {
        Err(cordon_core::journal::JournalError::Locked { .. }) => {
            return deliver_to_waiting_run(&journal, &case, step, !refuse, identity, reason).await;
        }
        Err(e) => return Err(exec_failure(e.into())),
        Ok(lock) => drop(lock),
    }
    let decision = if refuse {
        Decision::Refused {
            approver: identity,
            reason,
        }
    } else {
        Decision::Approved { approver: identity }
    };
    // Later approval-gated steps still ask: the approval covers this step only.
    let approver = CliApprover::new(
        &aws.caller,
        approvals::Standing::default(),
        output == Output::Text,
        None,
    );
    let timeline = Timeline::new(Some(output));
    let observer = |r: &JournalRecord| timeline.record(r);
    let pause = pause.switches(state, &aws.caller);
    let executor = case_executor(&aws.actions, &journal, &approver, &observer, Some(&pause));
    let report = executor
        .decide(&case, step, decision)
        .await
        .map_err(exec_failure)?;
    finish(report, &aws.actions, output)
}

/// How long `cordon approve` waits to see a waiting run take its decision.
const HANDOVER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn deliver_to_waiting_run(
    journal: &LocalJournal,
    case: &CaseId,
    step: &str,
    approved: bool,
    approver: String,
    reason: String,
) -> Result<u8, Failure> {
    let inbox = approvals::Inbox::new(&journal.case_dir(case));
    inbox
        .deliver(&approvals::InboxDecision {
            step: step.to_string(),
            approved,
            approver,
            reason,
        })
        .map_err(failed)?;
    let started = Instant::now();
    while inbox.pending(step) && started.elapsed() < HANDOVER_WAIT {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if inbox.pending(step) {
        println!(
            "case {case} is held by another cordon process; the decision on `{step}` is delivered and will be journaled when that process asks for it"
        );
    } else {
        println!(
            "the cordon process working on case {case} took the decision on `{step}` and journals it (`cordon status {case}`)"
        );
    }
    Ok(0)
}

async fn rollback(
    case: &str,
    approve_undo: Vec<String>,
    account: &trust::AccountArgs,
    state: &StateArgs,
    output: Output,
    aws: &Aws,
) -> Result<u8, Failure> {
    let case = parse_case(case)?;
    let journal = state.journal();
    check_undo_steps(&case, &approve_undo, &journal).await?;
    let aws = open_case_aws(aws, state, account, &journal, &case, CaseCommand::Rollback).await?;
    let standing = approvals::Standing {
        undo_steps: approve_undo.into_iter().collect(),
        ..Default::default()
    };
    let approver = CliApprover::new(&aws.caller, standing, output == Output::Text, None);
    let timeline = Timeline::new(Some(output));
    let observer = |r: &JournalRecord| timeline.record(r);
    let executor = case_executor(&aws.actions, &journal, &approver, &observer, None);
    let report = executor
        .rollback(&case, "requested from the CLI")
        .await
        .map_err(exec_failure)?;
    finish(report, &aws.actions, output)
}

/// Refuses `--approve-undo` names that are not steps of the case (a typo would
/// otherwise leave a key deactivated while the responder thinks it re-armed).
/// Naming a step whose undo needs no approval is harmless and accepted.
async fn check_undo_steps(
    case: &CaseId,
    approve_undo: &[String],
    journal: &LocalJournal,
) -> Result<(), Failure> {
    if approve_undo.is_empty() {
        return Ok(());
    }
    let records = journal.load(case).await.map_err(|e| failed(e.into()))?;
    let state = CaseState::from_records(case, &records).map_err(|e| invalid(e.into()))?;
    let steps: Vec<&PlannedStep> = state
        .epochs()
        .into_iter()
        .flat_map(|(_, plan, _, _)| plan.steps.iter())
        .collect();
    let gated: std::collections::BTreeSet<&str> = steps
        .iter()
        .filter(|step| step.action.undo_gate().is_some())
        .map(|step| step.id.as_str())
        .collect();
    for name in approve_undo {
        if !steps.iter().any(|step| &step.id == name) {
            let known: Vec<&str> = gated.iter().copied().collect();
            return Err(invalid(anyhow!(
                "--approve-undo {}: case {case} has no step of that name (the steps whose undo needs approval: {}); nothing was undone",
                escape(name),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    Ok(())
}

/// What `cordon status` was asked, whichever journal it reads.
struct StatusRequest<'r> {
    case: &'r str,
    live: bool,
    account: &'r trust::AccountArgs,
    state: &'r StateArgs,
    output: Output,
    aws: &'r Aws,
}

async fn status<J: JournalStore>(journal: &J, request: StatusRequest<'_>) -> Result<u8, Failure> {
    let StatusRequest {
        case,
        live,
        account,
        state,
        output,
        aws,
    } = request;
    let case = parse_case(case)?;
    let records = journal.load(&case).await.map_err(|e| failed(e.into()))?;
    let case_state = CaseState::from_records(&case, &records).map_err(|e| invalid(e.into()))?;
    let summary = summarize(&case_state, &records);
    let holders = cordon_core::claims::holders(journal, &case_state)
        .await
        .map_err(|e| failed(e.into()))?;
    let live_enis = if live && !summary.open_network_interfaces.is_empty() {
        let aws = trust::case_aws(aws, state, account, &case_state.plan.finding, &case).await?;
        Some(live::open_enis(&aws.actions.clients, &summary.open_network_interfaces).await)
    } else {
        None
    };
    match output {
        Output::Json => print_json(&output::CaseStatusReport {
            case_id: &case,
            status: case_state.status.map(|s| s.to_string()),
            summary: &summary,
            live: live_enis.as_deref(),
            resources: &holders,
            plan: &case_state.plan,
            journal: &records,
        })?,
        Output::Text => {
            print!("{}", render::summary_header(&summary, live_enis.as_deref()));
            print!("{}", render::holders(&case, &holders));
            print!("{}", render::status(&case_state, &records));
        }
    }
    Ok(0)
}

/// Writes the man page of `cordon` (stdout), or one page per command into `dir`.
fn man(dir: Option<&Path>) -> Result<u8, Failure> {
    use clap::CommandFactory;
    let command = Cli::command();
    let Some(dir) = dir else {
        clap_mangen::Man::new(command)
            .render(&mut std::io::stdout())
            .map_err(|e| failed(e.into()))?;
        return Ok(0);
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
        .map_err(failed)?;
    let mut pages = vec![("cordon".to_string(), command.clone())];
    for sub in command.get_subcommands() {
        let name = format!("cordon-{}", sub.get_name());
        pages.push((
            name.clone(),
            sub.clone().display_name(name.clone()).bin_name(name),
        ));
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut bytes = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut bytes)
            .map_err(|e| failed(e.into()))?;
        std::fs::write(&path, bytes)
            .with_context(|| format!("cannot write {}", path.display()))
            .map_err(failed)?;
        println!("wrote {}", path.display());
    }
    Ok(0)
}

async fn cases<J: JournalStore>(
    journal: &J,
    statuses: &[String],
    since: Option<std::time::Duration>,
    output: Output,
) -> Result<u8, Failure> {
    let known: Vec<String> = <CaseStatus as strum::IntoEnumIterator>::iter()
        .map(|s| s.to_string())
        .chain(["running".to_string()])
        .collect();
    if let Some(bad) = statuses.iter().find(|s| !known.contains(s)) {
        return Err(invalid(anyhow!(
            "--status {}: not a case state; one of {}",
            escape(bad),
            known.join(", ")
        )));
    }
    // A window reaching before the calendar's start filters nothing out.
    let cutoff = since.and_then(|d| {
        time::Duration::try_from(d)
            .ok()
            .and_then(|d| time::OffsetDateTime::now_utc().checked_sub(d))
    });
    let cases = journal.cases().await.map_err(|e| failed(e.into()))?;
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    for case in cases {
        let records = journal.load(&case).await.map_err(|e| failed(e.into()))?;
        match CaseState::from_records(&case, &records) {
            Ok(s) => {
                let row = summarize(&s, &records);
                let opened = time::OffsetDateTime::parse(
                    &row.opened_at,
                    &time::format_description::well_known::Rfc3339,
                );
                let recent = match (cutoff, opened) {
                    (None, _) => true,
                    (Some(cutoff), Ok(opened)) => opened >= cutoff,
                    // An unreadable time is shown rather than hidden.
                    (Some(_), Err(_)) => true,
                };
                if recent && (statuses.is_empty() || statuses.contains(&row.status)) {
                    rows.push(row);
                }
            }
            Err(e) => unreadable.push(output::UnreadableCase {
                case_id: case.to_string(),
                error: e.to_string(),
            }),
        }
    }
    match output {
        Output::Json => print_json(&output::Cases {
            cases: &rows,
            unreadable: &unreadable,
        })?,
        Output::Text => print!("{}", render::cases(&rows, &unreadable)),
    }
    Ok(0)
}

fn validate(path: Option<&Path>) -> Result<u8, Failure> {
    let source = playbook_set::Source::resolve(path);
    match source.load() {
        Ok(loaded) => {
            for p in &loaded {
                println!(
                    "ok  {}  ({}: {} step(s), priority {})",
                    p.file.display(),
                    p.playbook.name,
                    p.playbook.steps.len(),
                    p.playbook.priority
                );
            }
            println!(
                "{} playbook(s) valid ({}, set sha256 {})",
                loaded.len(),
                source.origin(),
                cordon_core::validate::set_digest(&loaded)
            );
            Ok(0)
        }
        Err(problems) => {
            for problem in &problems {
                println!("{}", escape(&problem.to_string()));
            }
            Err(invalid(anyhow!(
                "{} problem(s) found in the playbooks",
                problems.len()
            )))
        }
    }
}

/// The finding (GuardDuty's copy with `--verify-source` or `--finding-id`),
/// the playbooks, and how the finding was checked.
async fn load_inputs(
    args: &FindingArgs,
    aws: &Aws,
) -> Result<
    (
        Finding,
        Vec<LoadedPlaybook>,
        trust::SourceCheck,
        PlaybookSet,
    ),
    Failure,
> {
    let mut check = trust::SourceCheck::default();
    let finding = match (&args.finding_id, &args.finding) {
        (Some(id), _) => {
            let finding =
                intake::fetch_finding(aws.clients().await?, id, args.detector.as_deref()).await?;
            check.verified = true;
            check.source = Some("GuardDuty GetFindings (--finding-id)".to_string());
            finding
        }
        (None, Some(_)) if args.detector.is_some() => {
            return Err(invalid(anyhow!(
                "--detector only applies with --finding-id"
            )));
        }
        (None, Some(path)) if args.verify_source => {
            let (finding, verified) = trust::verify_source(aws, read_finding(path)?).await?;
            check = verified;
            finding
        }
        (None, Some(path)) => read_finding(path)?,
        (None, None) => {
            return Err(invalid(anyhow!(
                "pass a finding file (`-` for stdin) or --finding-id"
            )));
        }
    };
    let (playbooks, set) = playbook_set::load_valid(args.playbooks.as_deref())?;
    Ok((finding, playbooks, check, set))
}

pub(crate) fn read_finding(path: &Path) -> Result<Finding, Failure> {
    let (text, origin) = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read the finding from stdin")
            .map_err(invalid)?;
        (text, "stdin".to_string())
    } else {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read finding file {}", path.display()))
            .map_err(invalid)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow!("{} is not UTF-8 text: pass a JSON finding", path.display()))
            .map_err(invalid)?;
        (text, path.display().to_string())
    };
    parse_single_finding(&text, &origin).map_err(|e| match e {
        // These two carry no location of their own.
        FindingError::Empty | FindingError::TooLarge(_) => invalid(anyhow!("{origin}: {e}")),
        other => invalid(other.into()),
    })
}

fn playbooks_only(loaded: &[LoadedPlaybook]) -> Vec<cordon_core::playbook::Playbook> {
    loaded.iter().map(|l| l.playbook.clone()).collect()
}

/// The plan for `finding`, `None` when no playbook answers it; a finding whose
/// ids a step would use are malformed is invalid input (exit 2), refused
/// before any client exists.
pub(crate) fn make_plan(
    finding: &Finding,
    loaded: &[LoadedPlaybook],
) -> Result<Option<Plan>, Failure> {
    let playbooks = playbooks_only(loaded);
    match route(finding, &playbooks) {
        (Route::Matched { reason, .. }, Some(playbook)) => try_plan(finding, playbook, reason)
            .map(Some)
            .map_err(|e| invalid(e.into())),
        _ => Ok(None),
    }
}

fn no_match(finding: &Finding, loaded: &[LoadedPlaybook], output: Output) -> Result<(), Failure> {
    let (route, _) = route(finding, &playbooks_only(loaded));
    match output {
        Output::Json => print_json(&route),
        Output::Text => {
            print!("{}", render::route(finding, &route));
            Ok(())
        }
    }
}

/// Prints the command's one JSON document on stdout (see [`output`]).
pub(crate) fn print_json<B: output::Body>(body: &B) -> Result<(), Failure> {
    let text = output::to_text(body).map_err(|e| failed(e.into()))?;
    print!("{text}");
    Ok(())
}

pub(crate) fn parse_case(text: &str) -> Result<CaseId, Failure> {
    CaseId::parse(text).map_err(|e| invalid(anyhow!(e)))
}

/// The process's AWS clients, built on first use and shared from then on, so
/// a run that fetched its finding from GuardDuty acts (and counts its calls)
/// through the same clients, and commands that call AWS for nothing need no
/// AWS configuration.
///
/// Every client counts throttling answers per bucket ([`ThrottleCounter`])
/// into the process's shared rate limits, for a burst's summary.
///
/// With `--inject-faults`, every client carries the fault injector.
#[derive(Debug, Default)]
pub(crate) struct Aws {
    clients: tokio::sync::OnceCell<AwsClients>,
    faults: Option<FaultInjector>,
}

impl Aws {
    /// Clients to build on first use, injecting `faults` when given.
    pub(crate) fn new(faults: Option<FaultInjector>) -> Self {
        Self {
            clients: tokio::sync::OnceCell::new(),
            faults,
        }
    }

    pub(crate) async fn clients(&self) -> Result<&AwsClients, Failure> {
        self.clients
            .get_or_try_init(|| async {
                let config = AwsClients::loader().load().await;
                let region = config.region().map(|r| r.to_string()).unwrap_or_default();
                let limits = RateLimits::new(region);
                let mut builder = AwsClients::builder(&config)
                    .rate_limits(limits.clone())
                    .interceptor(ThrottleCounter::new(limits));
                if let Some(faults) = &self.faults {
                    builder = builder.faults(faults.clone());
                }
                builder.build()
            })
            .await
            .map_err(|e| invalid(e.into()))
    }

    /// A handle on clients already built, for a task of a burst.
    pub(crate) fn with(clients: AwsClients) -> Self {
        Self {
            faults: clients.faults.clone(),
            clients: tokio::sync::OnceCell::new_with(Some(clients)),
        }
    }
}

/// Set by the first SIGINT/SIGTERM: the step in flight finishes (an
/// isolation never stops between its phases), the journal says so, the case
/// stops. A second signal aborts at once.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Watches for SIGINT and SIGTERM for the rest of the process (once, however
/// many cases the process runs).
fn watch_signals() {
    static WATCHING: Once = Once::new();
    WATCHING.call_once(watch_signals_now);
}

fn watch_signals_now() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot watch for signals; an interrupt will kill cordon at once");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!(
                    "cordon: second signal: aborting now (`cordon status` shows what is journaled)"
                );
                std::process::exit(130);
            }
            eprintln!(
                "cordon: stopping after the step in flight, then journaling (a second signal aborts now)"
            );
        }
    });
}

/// The executor `run`, `resume`, `approve` and `rollback` drive: every
/// journal record printed as it is written, signals stop it cleanly, and
/// (test builds only) the crash hook armed.
fn case_executor<'a>(
    aws: &'a AwsActions,
    journal: &'a LocalJournal,
    approver: &'a CliApprover<'a>,
    observer: &'a (dyn Fn(&JournalRecord) + Send + Sync),
    pause: Option<&'a PauseSwitches>,
) -> Executor<'a, AwsActions, LocalJournal, CliApprover<'a>> {
    watch_signals();
    let mut executor = Executor::new(aws, journal, approver)
        .observe(observer)
        .interrupt_on(&INTERRUPTED);
    if let Some(pause) = pause {
        executor = executor.pause_switch(pause);
    }
    #[cfg(feature = "crash-hooks")]
    let executor = executor.crash_after_record(crash_hook());
    executor
}

/// Test hook for crash-safety tests: abort right after journal record N is
/// durable. Only in builds with the `crash-hooks` feature (`scripts/test`).
#[cfg(feature = "crash-hooks")]
fn crash_hook() -> Option<u64> {
    std::env::var("CORDON_TEST_CRASH_AFTER_RECORD")
        .ok()
        .and_then(|v| v.parse().ok())
}

pub(crate) fn exec_failure(error: ExecError) -> Failure {
    match error {
        ExecError::Journal(cordon_core::journal::JournalError::UnknownCase { .. })
        | ExecError::UnknownStep { .. }
        | ExecError::NoApprovalNeeded { .. }
        | ExecError::AlreadyDecided { .. } => invalid(error.into()),
        // The case keeps waiting for an allowed approver.
        ExecError::NotAnApprover { .. } => Failure {
            code: Outcome::AwaitingDecision.exit_code(),
            error: error.into(),
        },
        other => failed(other.into()),
    }
}

/// The sequential rounds of the calls this process made (of the latest
/// [`cordon_aws::recorder::RECENT_CALLS`], which covers a burst of 50 cases).
pub(crate) fn api_rounds(clients: &cordon_aws::client::AwsClients) -> usize {
    cordon_aws::recorder::sequential_rounds(&clients.recorder.recent())
}

fn finish(report: Report, aws: &AwsActions, output: Output) -> Result<u8, Failure> {
    let code = report.outcome.exit_code();
    let calls = aws.clients.calls.operations();
    match output {
        Output::Json => print_json(&output::RunReport {
            case_id: &report.case_id,
            status: report.status.to_string(),
            no_op: report.no_op,
            step_failed: report.step_failed,
            outcome: report.outcome.to_string(),
            exit_code: code,
            message: &report.message,
            api_calls: calls,
            api_rounds: api_rounds(&aws.clients),
            injected_faults: aws
                .clients
                .faults
                .as_ref()
                .map(FaultInjector::injected)
                .unwrap_or_default(),
        })?,
        Output::Text => {
            println!();
            println!("{}", escape(&report.message));
            let total: u64 = calls.values().sum();
            println!(
                "API calls: {total} ({} mutating)",
                aws.clients.calls.mutating_total()
            );
        }
    }
    Ok(code)
}

/// Prints each journal record as it is written, with the time since the start
/// (or nothing, for the cases of a burst), and notes a guard's trip.
pub(crate) struct Timeline {
    output: Option<Output>,
    started: Instant,
    step_started: Mutex<std::collections::HashMap<String, Instant>>,
    /// The guard whose trip this process journaled, if any.
    guard_tripped: Mutex<Option<&'static str>>,
}

impl Timeline {
    pub(crate) fn new(output: Option<Output>) -> Self {
        Self {
            output,
            started: Instant::now(),
            step_started: Mutex::new(Default::default()),
            guard_tripped: Mutex::new(None),
        }
    }

    /// The guard (loop guard, fleet cap) whose trip this process journaled.
    pub(crate) fn guard_tripped(&self) -> Option<&'static str> {
        self.guard_tripped.lock().ok().and_then(|g| *g)
    }

    fn record(&self, record: &JournalRecord) {
        let guard = match record.event {
            JournalEvent::LoopGuardTripped { .. } => Some("loop guard"),
            JournalEvent::FleetCapTripped { .. } => Some("fleet cap"),
            _ => None,
        };
        if let (Some(guard), Ok(mut tripped)) = (guard, self.guard_tripped.lock()) {
            *tripped = Some(guard);
        }
        match self.output {
            None => {}
            Some(Output::Json) => {
                if let Ok(line) = serde_json::to_string(record) {
                    eprintln!("{line}");
                }
            }
            Some(Output::Text) => {
                let elapsed = self.started.elapsed();
                let step_elapsed = record.event.step().and_then(|step| {
                    let mut map = self.step_started.lock().ok()?;
                    let now = Instant::now();
                    let start = *map.entry(step.to_string()).or_insert(now);
                    Some(now.duration_since(start))
                });
                println!("{}", render::timeline_line(elapsed, step_elapsed, record));
            }
        }
    }
}
