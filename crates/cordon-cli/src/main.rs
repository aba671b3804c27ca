//! `cordon`: run incident-response playbooks against GuardDuty findings.
//!
//! Exit codes: 0 success (including "no playbook matches" and no-op re-runs);
//! 1 the run failed or stopped (a step failed, rollback incomplete, AWS error);
//! 2 invalid input (usage, malformed finding, invalid playbooks, unknown case);
//! 3 the case waits for approval.

mod evidence_cmd;
mod intake;
mod output;
mod policy_cmd;
mod render;

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Parser, Subcommand, ValueEnum};
use cordon_aws::actions::AwsActions;
use cordon_aws::client::AwsClients;
use cordon_aws::evidence::EvidenceStore;
use cordon_aws::ops;
use cordon_core::executor::{Approver, Decision, ExecError, Executor, Report};
use cordon_core::finding::{Finding, FindingError, parse_single_finding};
use cordon_core::journal::{CaseState, JournalRecord, JournalStore};
use cordon_core::local_store::LocalJournal;
use cordon_core::plan::{CaseId, Plan, PlannedStep, plan};
use cordon_core::route::{Route, route};
use cordon_core::validate::{LoadedPlaybook, load_playbooks};

/// Incident-response forensics for AWS: contain what GuardDuty finds, keep the
/// evidence, and roll back exactly.
#[derive(Debug, Parser)]
#[command(name = "cordon", version, about, long_about = None, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log verbosity on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Write logs as JSON lines (an audit trail) instead of text.
    #[arg(long, global = true)]
    log_json: bool,
}

const EXIT_CODES: &str = "Exit codes: 0 success (also: no playbook matches, nothing to do); 1 run failed or stopped; \
2 invalid input (usage, finding, playbooks, unknown case); 3 waiting for approval.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the playbook format's JSON Schema.
    Schema,
    /// Validate playbooks; reports every problem at once with file:line:column.
    Validate {
        /// A playbook file or a directory of them.
        #[arg(default_value = "playbooks")]
        path: PathBuf,
    },
    /// Say which playbook answers a finding, and why.
    Route(FindingArgs),
    /// Print the plan for a finding: steps, targets, approvals, IAM permissions.
    Plan(FindingArgs),
    /// Run the plan for a finding (journaled; re-running the same finding is a no-op).
    Run {
        #[command(flatten)]
        finding: FindingArgs,
        /// Read pre-states and print the calls that would be made; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        approval: ApprovalArgs,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Continue a stopped or interrupted case from its journal.
    Resume {
        case: String,
        #[command(flatten)]
        approval: ApprovalArgs,
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
        #[command(flatten)]
        state: StateArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Undo every step of a case from its journaled pre-state, newest first.
    Rollback {
        case: String,
        #[command(flatten)]
        state: StateArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show a case: its plan, each step's state, and the timeline.
    Status {
        case: String,
        #[command(flatten)]
        state: StateArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// List known cases.
    Cases {
        #[command(flatten)]
        state: StateArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// List open GuardDuty findings, most severe first, with the playbook each would get.
    Triage(intake::TriageArgs),
    /// Evidence bucket set-up and checks, and verification of a case's evidence.
    Evidence {
        #[command(subcommand)]
        command: evidence_cmd::EvidenceCommand,
    },
    /// Print the IAM policy the playbooks need (JSON), scoped by ARN and condition keys;
    /// or the role's permissions boundary, or the managed policy quarantine attaches.
    Policy(policy_cmd::PolicyArgs),
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
    /// Directory (or file) of playbooks.
    #[arg(long, env = "CORDON_PLAYBOOKS", default_value = "playbooks")]
    playbooks: PathBuf,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Args)]
struct ApprovalArgs {
    /// Approve every step that needs approval (scripted runs).
    #[arg(long)]
    yes: bool,
    /// Approve this step (repeatable).
    #[arg(long = "approve", value_name = "STEP")]
    approve: Vec<String>,
}

#[derive(Debug, Args)]
struct StateArgs {
    /// Where journals and local evidence live.
    #[arg(long, env = "CORDON_STATE_DIR", default_value = ".cordon")]
    state_dir: PathBuf,
    /// Store evidence in this S3 bucket (see `cordon evidence init`) instead of the state directory.
    #[arg(long, env = "CORDON_EVIDENCE_BUCKET")]
    evidence_bucket: Option<String>,
}

impl ApprovalArgs {
    /// No standing approvals: every gated step asks (or waits).
    fn none() -> Self {
        Self {
            yes: false,
            approve: Vec::new(),
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
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn invalid(error: anyhow::Error) -> Failure {
    Failure { code: 2, error }
}

fn failed(error: anyhow::Error) -> Failure {
    Failure { code: 1, error }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        failed(error)
    }
}

fn main() -> ExitCode {
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
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            // One sentence per cause, outermost first: never a Debug dump.
            let mut message = failure.error.to_string();
            for cause in failure.error.chain().skip(1) {
                let cause = cause.to_string();
                if !message.contains(&cause) {
                    message.push_str(": ");
                    message.push_str(&cause);
                }
            }
            eprintln!("cordon: {message}");
            ExitCode::from(failure.code)
        }
    }
}

fn init_logging(verbose: u8, json: bool) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn dispatch(command: Command) -> Result<u8, Failure> {
    let aws = Aws::default();
    match command {
        Command::Schema => schema(),
        Command::Validate { path } => validate(&path),
        Command::Route(args) => route_finding(&args, &aws).await,
        Command::Plan(args) => plan_finding(&args, &aws).await,
        Command::Run {
            finding,
            dry_run,
            approval,
            state,
        } => run(&finding, dry_run, &approval, &state, &aws).await,
        Command::Resume {
            case,
            approval,
            state,
            output,
        } => resume(&case, &approval, &state, output, &aws).await,
        Command::Approve {
            case,
            step,
            refuse,
            reason,
            state,
            output,
        } => approve(&case, &step, refuse, reason, &state, output, &aws).await,
        Command::Rollback {
            case,
            state,
            output,
        } => rollback(&case, &state, output, &aws).await,
        Command::Status {
            case,
            state,
            output,
        } => status(&case, &state, output).await,
        Command::Cases { state, output } => cases(&state, output).await,
        Command::Triage(args) => intake::triage(args, &aws).await,
        Command::Evidence { command } => evidence_cmd::run(command).await.map_err(failed),
        Command::Policy(args) => policy_cmd::run(&args),
    }
}

fn schema() -> Result<u8, Failure> {
    println!(
        "{}",
        serde_json::to_string_pretty(&cordon_core::playbook::json_schema())
            .map_err(|e| failed(e.into()))?
    );
    Ok(0)
}

async fn route_finding(args: &FindingArgs, aws: &Aws) -> Result<u8, Failure> {
    let (finding, playbooks) = load_inputs(args, aws).await?;
    let (route, _) = route(&finding, &playbooks_only(&playbooks));
    match args.output {
        Output::Json => print_json(&route)?,
        Output::Text => print!("{}", render::route(&finding, &route)),
    }
    Ok(0)
}

async fn plan_finding(args: &FindingArgs, aws: &Aws) -> Result<u8, Failure> {
    let (finding, playbooks) = load_inputs(args, aws).await?;
    match make_plan(&finding, &playbooks) {
        Some(plan) => match args.output {
            Output::Json => print_json(&plan)?,
            Output::Text => print!("{}", render::plan(&plan)),
        },
        None => no_match(&finding, &playbooks, args.output)?,
    }
    Ok(0)
}

async fn run(
    args: &FindingArgs,
    dry_run: bool,
    approval: &ApprovalArgs,
    state: &StateArgs,
    aws: &Aws,
) -> Result<u8, Failure> {
    let (finding, playbooks) = load_inputs(args, aws).await?;
    let Some(plan) = make_plan(&finding, &playbooks) else {
        no_match(&finding, &playbooks, args.output)?;
        return Ok(0);
    };
    let aws = aws_actions(aws, state).await?;
    if dry_run {
        return print_dry_run(&plan, &aws, approval, state, args.output).await;
    }
    if args.output == Output::Text {
        print!("{}", render::plan(&plan));
        println!();
    }
    let journal = state.journal();
    let approver = CliApprover::new(&aws.clients, approval, args.output == Output::Text);
    let timeline = Timeline::new(args.output);
    let observer = |r: &JournalRecord| timeline.record(r);
    let executor = case_executor(&aws, &journal, &approver, &observer);
    let report = executor
        .run(&plan, &finding.raw)
        .await
        .map_err(exec_failure)?;
    finish(report, &aws, args.output)
}

async fn print_dry_run(
    plan: &Plan,
    aws: &AwsActions,
    approval: &ApprovalArgs,
    state: &StateArgs,
    output: Output,
) -> Result<u8, Failure> {
    let approver = CliApprover::new(&aws.clients, approval, false);
    let journal = state.journal();
    let executor = Executor::new(aws, &journal, &approver);
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
    approval: &ApprovalArgs,
    state: &StateArgs,
    output: Output,
    aws: &Aws,
) -> Result<u8, Failure> {
    let case = parse_case(case)?;
    let aws = aws_actions(aws, state).await?;
    let journal = state.journal();
    let approver = CliApprover::new(&aws.clients, approval, output == Output::Text);
    let timeline = Timeline::new(output);
    let observer = |r: &JournalRecord| timeline.record(r);
    let executor = case_executor(&aws, &journal, &approver, &observer);
    let report = executor.resume(&case).await.map_err(exec_failure)?;
    finish(report, &aws, output)
}

async fn approve(
    case: &str,
    step: &str,
    refuse: bool,
    reason: String,
    state: &StateArgs,
    output: Output,
    aws: &Aws,
) -> Result<u8, Failure> {
    let case = parse_case(case)?;
    let aws = aws_actions(aws, state).await?;
    let journal = state.journal();
    let identity = caller_identity(&aws.clients).await;
    let decision = if refuse {
        Decision::Refused {
            approver: identity,
            reason: if reason.is_empty() {
                "refused".to_string()
            } else {
                reason
            },
        }
    } else {
        Decision::Approved { approver: identity }
    };
    // Later approval-gated steps still ask: the approval covers this step only.
    let approver = CliApprover::new(&aws.clients, &ApprovalArgs::none(), output == Output::Text);
    let timeline = Timeline::new(output);
    let observer = |r: &JournalRecord| timeline.record(r);
    let executor = Executor::new(&aws, &journal, &approver).observe(&observer);
    let report = executor
        .decide(&case, step, decision)
        .await
        .map_err(exec_failure)?;
    finish(report, &aws, output)
}

async fn rollback(case: &str, state: &StateArgs, output: Output, aws: &Aws) -> Result<u8, Failure> {
    let case = parse_case(case)?;
    let aws = aws_actions(aws, state).await?;
    let journal = state.journal();
    let approver = CliApprover::new(&aws.clients, &ApprovalArgs::none(), false);
    let timeline = Timeline::new(output);
    let observer = |r: &JournalRecord| timeline.record(r);
    let executor = case_executor(&aws, &journal, &approver, &observer);
    let report = executor
        .rollback(&case, "requested from the CLI")
        .await
        .map_err(exec_failure)?;
    finish(report, &aws, output)
}

async fn status(case: &str, state: &StateArgs, output: Output) -> Result<u8, Failure> {
    let case = parse_case(case)?;
    let journal = state.journal();
    let records = journal.load(&case).await.map_err(|e| failed(e.into()))?;
    let case_state = CaseState::from_records(&case, &records).map_err(|e| invalid(e.into()))?;
    match output {
        Output::Json => print_json(&output::CaseStatusReport {
            case_id: &case,
            status: case_state.status.map(|s| s.to_string()),
            plan: &case_state.plan,
            journal: &records,
        })?,
        Output::Text => print!("{}", render::status(&case_state, &records)),
    }
    Ok(0)
}

async fn cases(state: &StateArgs, output: Output) -> Result<u8, Failure> {
    let journal = state.journal();
    let cases = journal.cases().await.map_err(|e| failed(e.into()))?;
    let mut rows = Vec::new();
    for case in cases {
        let records = journal.load(&case).await.map_err(|e| failed(e.into()))?;
        match CaseState::from_records(&case, &records) {
            Ok(s) => rows.push(render::CaseRow::from_state(&s, &records)),
            Err(e) => rows.push(render::CaseRow::broken(&case, &e.to_string())),
        }
    }
    match output {
        Output::Json => print_json(&output::Cases { cases: &rows })?,
        Output::Text => print!("{}", render::cases(&rows)),
    }
    Ok(0)
}

fn validate(path: &Path) -> Result<u8, Failure> {
    match load_playbooks(path) {
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
            println!("{} playbook(s) valid", loaded.len());
            Ok(0)
        }
        Err(problems) => {
            for problem in &problems {
                println!("{problem}");
            }
            Err(invalid(anyhow!(
                "{} problem(s) found in the playbooks",
                problems.len()
            )))
        }
    }
}

async fn load_inputs(
    args: &FindingArgs,
    aws: &Aws,
) -> Result<(Finding, Vec<LoadedPlaybook>), Failure> {
    let finding = match (&args.finding_id, &args.finding) {
        (Some(id), _) => {
            intake::fetch_finding(aws.clients().await?, id, args.detector.as_deref()).await?
        }
        (None, Some(_)) if args.detector.is_some() => {
            return Err(invalid(anyhow!(
                "--detector only applies with --finding-id"
            )));
        }
        (None, Some(path)) => read_finding(path)?,
        (None, None) => {
            return Err(invalid(anyhow!(
                "pass a finding file (`-` for stdin) or --finding-id"
            )));
        }
    };
    let playbooks = load_valid_playbooks(&args.playbooks)?;
    Ok((finding, playbooks))
}

/// The playbooks at `path`, or every problem on stderr and one closing error.
fn load_valid_playbooks(path: &Path) -> Result<Vec<LoadedPlaybook>, Failure> {
    load_playbooks(path).map_err(|problems| {
        for problem in &problems {
            eprintln!("{problem}");
        }
        invalid(anyhow!(
            "{} problem(s) in the playbooks at {}: fix them (`cordon validate {}`)",
            problems.len(),
            path.display(),
            path.display()
        ))
    })
}

fn read_finding(path: &Path) -> Result<Finding, Failure> {
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

fn make_plan(finding: &Finding, loaded: &[LoadedPlaybook]) -> Option<Plan> {
    let playbooks = playbooks_only(loaded);
    match route(finding, &playbooks) {
        (Route::Matched { reason, .. }, Some(playbook)) => Some(plan(finding, playbook, reason)),
        _ => None,
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
fn print_json<B: output::Body>(body: &B) -> Result<(), Failure> {
    let text = output::to_text(body).map_err(|e| failed(e.into()))?;
    print!("{text}");
    Ok(())
}

fn parse_case(text: &str) -> Result<CaseId, Failure> {
    CaseId::parse(text).map_err(|e| invalid(anyhow!(e)))
}

/// The process's AWS clients, built on first use and shared from then on, so
/// a run that fetched its finding from GuardDuty acts (and counts its calls)
/// through the same clients, and commands that call AWS for nothing need no
/// AWS configuration.
#[derive(Debug, Default)]
struct Aws(tokio::sync::OnceCell<AwsClients>);

impl Aws {
    async fn clients(&self) -> Result<&AwsClients, Failure> {
        self.0
            .get_or_try_init(|| async { AwsClients::from_env().await })
            .await
            .map_err(|e| invalid(e.into()))
    }
}

async fn aws_actions(aws: &Aws, state: &StateArgs) -> Result<AwsActions, Failure> {
    let clients = aws.clients().await?.clone();
    let local = state.state_dir.join("cases");
    let evidence = match &state.evidence_bucket {
        Some(bucket) => EvidenceStore::S3 {
            clients: Box::new(clients.clone()),
            bucket: bucket.clone(),
            prefix: "cases/".to_string(),
            kms_key: None,
            retention: false,
        },
        None => EvidenceStore::LocalDir(local.clone()),
    };
    Ok(AwsActions::new(clients, evidence)
        .with_case_root(Some(local))
        .with_notify_topic(
            std::env::var("CORDON_NOTIFY_TOPIC_ARN")
                .ok()
                .filter(|t| !t.is_empty()),
        ))
}

/// The executor `run`, `resume` and `rollback` drive: every journal record
/// printed as it is written, and the crash-test hook armed.
fn case_executor<'a>(
    aws: &'a AwsActions,
    journal: &'a LocalJournal,
    approver: &'a CliApprover<'a>,
    observer: &'a (dyn Fn(&JournalRecord) + Send + Sync),
) -> Executor<'a, AwsActions, LocalJournal, CliApprover<'a>> {
    Executor::new(aws, journal, approver)
        .observe(observer)
        .crash_after_record(crash_hook())
}

/// Test hook for crash-safety tests: abort right after journal record N is durable.
fn crash_hook() -> Option<u64> {
    std::env::var("CORDON_TEST_CRASH_AFTER_RECORD")
        .ok()
        .and_then(|v| v.parse().ok())
}

fn exec_failure(error: ExecError) -> Failure {
    match error {
        ExecError::Journal(cordon_core::journal::JournalError::UnknownCase { .. })
        | ExecError::UnknownStep { .. }
        | ExecError::NoApprovalNeeded { .. }
        | ExecError::AlreadyDecided { .. } => invalid(error.into()),
        other => failed(other.into()),
    }
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
        })?,
        Output::Text => {
            println!();
            println!("{}", report.message);
            let total: u64 = calls.values().sum();
            println!(
                "API calls: {total} ({} mutating)",
                aws.clients.calls.mutating_total()
            );
        }
    }
    Ok(code)
}

async fn caller_identity(clients: &AwsClients) -> String {
    let request = clients.sts.get_caller_identity();
    match clients
        .call(&ops::STS_GET_CALLER_IDENTITY, "caller", request)
        .await
    {
        Ok(out) => out.arn().unwrap_or("unknown caller").to_string(),
        Err(_) => format!(
            "unverified local user {}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".to_string())
        ),
    }
}

/// Approvals from the command line: `--yes`, `--approve STEP`, or a prompt on a terminal.
struct CliApprover<'a> {
    clients: &'a AwsClients,
    all: bool,
    steps: BTreeSet<String>,
    interactive: bool,
}

impl<'a> CliApprover<'a> {
    fn new(clients: &'a AwsClients, args: &ApprovalArgs, interactive: bool) -> Self {
        Self {
            clients,
            all: args.yes,
            steps: args.approve.iter().cloned().collect(),
            interactive: interactive && std::io::stdin().is_terminal(),
        }
    }
}

impl Approver for CliApprover<'_> {
    async fn decide(&self, plan: &Plan, step: &PlannedStep) -> Decision {
        if self.all || self.steps.contains(&step.id) {
            let how = if self.all { "--yes" } else { "--approve" };
            return Decision::Approved {
                approver: format!("{} ({how})", caller_identity(self.clients).await),
            };
        }
        if !self.interactive {
            return Decision::Pending;
        }
        eprint!("{}", render::approval_prompt(plan, step));
        let answer = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await;
        let answer = match answer {
            Ok(Ok(line)) => line.trim().to_ascii_lowercase(),
            _ => String::new(),
        };
        let who = caller_identity(self.clients).await;
        match answer.as_str() {
            "y" | "yes" => Decision::Approved {
                approver: format!("{who} (prompt)"),
            },
            "n" | "no" => Decision::Refused {
                approver: format!("{who} (prompt)"),
                reason: "refused at the prompt".to_string(),
            },
            _ => Decision::Pending,
        }
    }
}

/// Prints each journal record as it is written, with the time since the start.
struct Timeline {
    output: Output,
    started: Instant,
    step_started: Mutex<std::collections::HashMap<String, Instant>>,
}

impl Timeline {
    fn new(output: Output) -> Self {
        Self {
            output,
            started: Instant::now(),
            step_started: Mutex::new(Default::default()),
        }
    }

    fn record(&self, record: &JournalRecord) {
        match self.output {
            Output::Json => {
                if let Ok(line) = serde_json::to_string(record) {
                    eprintln!("{line}");
                }
            }
            Output::Text => {
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
