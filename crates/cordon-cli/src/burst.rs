//! Bursts: many findings in one process (`cordon run` with several findings,
//! `cordon triage --run`).
//!
//! Findings come in bursts (one attack sequence raises dozens). A burst works
//! them concurrently, at most `--concurrency` at once, each its own case with
//! its own journal, lock and resource claims, exactly as `cordon run` on one
//! finding would; what they share is the process: one client set, one
//! token-bucket limiter per (account, region, throttle bucket) sized to EC2's
//! published budgets (`--rate-limit` resizes one), and one fleet ledger, so
//! the fleet cap counts the burst's instances together.
//!
//! Two findings of one burst on one instance: the resource claims let the
//! first case act and stop the second naming the holder; that is the second
//! finding's outcome (needs-human), never a crash of the burst. Deliveries of
//! one finding (one case id) run one after another, as re-deliveries do.
//!
//! The exit code is the most urgent outcome of any finding, by
//! [`precedence`] (docs/lifecycle.md, "Bursts").

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::anyhow;
use clap::Args;
use cordon_aws::client::AwsClients;
use cordon_aws::ratelimit::{Bucket, BucketSize, BucketStats, parse_bucket_size};
use cordon_core::executor::Outcome;
use cordon_core::finding::{Finding, parse_findings};
use cordon_core::fleet::FleetLedger;
use cordon_core::plan::{Plan, PlaybookSet};
use cordon_core::text::escape;
use cordon_core::validate::LoadedPlaybook;
use serde::Serialize;

use crate::output::Body;
use crate::{
    ApprovalArgs, Aws, CaseContext, CaseRun, Failure, FindingArgs, LoopGuardArgs, Output,
    RunOptions, StateArgs, Timeline, failed, invalid, one_sentence, trust,
};

/// Findings worked at once when `--concurrency` is not given.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// The findings `cordon run` works on.
#[derive(Debug, Args)]
pub struct RunInputs {
    /// GuardDuty findings: files (EventBridge events, bare findings,
    /// GetFindings items or responses, JSON arrays, JSON lines) or
    /// directories of `.json`/`.jsonl` files (`-` for stdin). More than one
    /// finding is a burst.
    #[arg(required_unless_present = "finding_id")]
    findings: Vec<PathBuf>,
    /// Fetch the finding from GuardDuty by id instead of reading a file (repeatable: a burst).
    #[arg(long)]
    finding_id: Vec<String>,
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
    pub output: Output,
}

/// How a burst shares the process's budgets.
#[derive(Debug, Args)]
pub struct BurstArgs {
    /// Findings worked at once in a burst (default 8); given, even one
    /// finding is reported as a burst.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000))]
    concurrency: Option<u16>,
    /// Resize a throttle bucket, BUCKET=CAPACITY/REFILL (calls, calls per
    /// second), e.g. `ec2:ModifyNetworkInterfaceAttribute=100/5` (repeatable).
    /// Buckets: ec2-non-mutating, ec2-unfiltered, ec2-mutating,
    /// ec2-resource-intensive, ec2-create-tags, ec2:OPERATION for one with
    /// its own bucket, or a service (iam, s3, sns, ...). Default: EC2's
    /// published sizes.
    #[arg(long = "rate-limit", value_name = "BUCKET=CAPACITY/REFILL", value_parser = parse_rate_limit)]
    rate_limits: Vec<(Bucket, BucketSize)>,
}

fn parse_rate_limit(spec: &str) -> Result<(Bucket, BucketSize), String> {
    parse_bucket_size(spec).map_err(|e| e.to_string())
}

impl BurstArgs {
    /// The bound on findings worked at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
            .map_or(DEFAULT_CONCURRENCY, |n| usize::from(n.max(1)))
    }

    /// Resizes the process's buckets as `--rate-limit` says (before any call).
    pub async fn apply_rate_limits(&self, aws: &Aws) -> Result<(), Failure> {
        if self.rate_limits.is_empty() {
            return Ok(());
        }
        let clients = aws.clients().await?;
        for (bucket, size) in &self.rate_limits {
            clients.limits.resize(*bucket, *size);
        }
        Ok(())
    }
}

impl RunInputs {
    /// The one-finding `cordon run` of before bursts (plan and timeline
    /// printed, the one case's report), when that is what was asked: one file
    /// (not a directory) or one `--finding-id`, and no `--concurrency`. A file
    /// holding several findings is read as a burst.
    pub fn single(&self, burst: &BurstArgs) -> Result<Option<FindingArgs>, Failure> {
        if burst.concurrency.is_some() || self.findings.len() + self.finding_id.len() != 1 {
            return Ok(None);
        }
        let (finding, finding_id) = match (self.findings.first(), self.finding_id.first()) {
            (Some(path), None) if path.is_dir() => return Ok(None),
            (Some(path), None) if path.as_os_str() != "-" && holds_several(path)? => {
                return Ok(None);
            }
            (Some(path), None) => (Some(path.clone()), None),
            (None, Some(id)) => (None, Some(id.clone())),
            _ => return Ok(None),
        };
        Ok(Some(FindingArgs {
            finding,
            finding_id,
            detector: self.detector.clone(),
            verify_source: self.verify_source,
            playbooks: self.playbooks.clone(),
            output: self.output,
        }))
    }
}

/// Whether the file at `path` holds more than one finding (an unreadable or
/// malformed one is left to the one-finding path, which says what is wrong).
fn holds_several(path: &Path) -> Result<bool, Failure> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(false);
    };
    Ok(parse_findings(&text, &path.display().to_string()).is_ok_and(|found| found.len() > 1))
}

/// `cordon triage --run`: what `--run` needs besides the triage options.
#[derive(Debug, Args)]
pub struct TriageRun {
    /// Contain every open finding at or above --min-severity (that a
    /// playbook answers), as one burst, within the guards (fleet cap across
    /// the burst, protected tag, pause switch).
    #[arg(long)]
    run: bool,
    #[command(flatten)]
    burst: BurstArgs,
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
}

impl TriageRun {
    /// `None` without `--run`: triage only lists.
    pub fn settings(&self) -> Result<Option<TriageSettings<'_>>, Failure> {
        Ok(self.run.then_some(TriageSettings(self)))
    }

    /// Resizes the process's buckets as `--rate-limit` says.
    pub async fn apply_rate_limits(&self, aws: &Aws) -> Result<(), Failure> {
        self.burst.apply_rate_limits(aws).await
    }
}

/// The `--run` half of `cordon triage --run`.
#[derive(Debug)]
pub struct TriageSettings<'t>(&'t TriageRun);

/// Everything a burst's cases share, moved into the tasks.
#[derive(Debug)]
pub struct Settings {
    pub options: RunOptions,
    pub approval: ApprovalArgs,
    pub guards: trust::GuardArgs,
    pub pause: trust::PauseArgs,
    pub account: trust::AccountArgs,
    pub state: StateArgs,
    pub output: Output,
    pub concurrency: usize,
}

/// One finding of a burst as received, or why it could not be read.
#[derive(Debug)]
struct Item {
    /// Where it came from: `file`, `file[2]` (third of several), `finding-id ID`.
    input: String,
    finding: Result<Finding, String>,
    /// Fetched from GuardDuty (no `--verify-source` needed).
    from_source: bool,
}

/// One line of a burst's report.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct BurstRow {
    /// Where the finding came from (file, `file[i]`, `finding-id ID`).
    pub input: String,
    pub finding_id: Option<String>,
    pub case_id: Option<String>,
    /// `null` when no playbook answers the finding (nothing to do).
    pub playbook: Option<String>,
    /// Where the case rests (`completed`, `stopped`, ...), when it ran.
    pub status: Option<String>,
    /// The outcome, named as `cordon --help` lists them.
    pub outcome: String,
    pub exit_code: u8,
    pub message: String,
    /// From this finding's turn starting to its outcome.
    pub seconds: f64,
}

/// A throttle bucket's size and what it saw during the burst.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct BucketReport {
    #[serde(flatten)]
    pub size: BucketSize,
    #[serde(flatten)]
    pub stats: BucketStats,
}

/// The summary after a burst's lines.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct BurstSummary {
    pub findings: usize,
    /// Distinct cases (deliveries of one finding share one).
    pub cases: usize,
    pub concurrency: usize,
    /// Findings per outcome name.
    pub outcomes: BTreeMap<String, usize>,
    /// Findings no playbook answers (counted as `done`: nothing to do).
    pub no_playbook: usize,
    /// The burst's exit code: the most urgent outcome (docs/lifecycle.md).
    pub exit_code: u8,
    pub wall_seconds: f64,
    /// SDK operations started, all cases together.
    pub api_calls: u64,
    /// Requests put on the wire, retries included.
    pub api_attempts: u64,
    /// Sequential rounds of the calls, all cases together: the longest
    /// chain of calls each sent only after the one before it was answered.
    pub api_rounds: usize,
    /// Throttling answers AWS still sent (retried with jittered back-off).
    pub throttled: u64,
    /// Per throttle bucket used: its size, tokens taken, waits, time waited, throttled answers.
    pub buckets: BTreeMap<String, BucketReport>,
    /// Operations started by `Service.Operation`.
    pub api_calls_by_operation: BTreeMap<String, u64>,
}

/// `run` of a burst, `--output json`: one object per finding and the summary.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct BurstReport<'a> {
    pub findings: &'a [BurstRow],
    pub summary: &'a BurstSummary,
}
impl Body for BurstReport<'_> {}

/// How urgent an outcome is for whoever started the burst: the burst exits
/// with the code of its most urgent outcome. Containment a human must finish
/// first (a rollback that did not complete, a case stopped or refused), then
/// a human's decision (timed out, then awaited), then partial results, then
/// bad input (the other findings ran), then done.
pub fn precedence(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::RollbackIncomplete => 7,
        Outcome::NeedsHuman => 6,
        Outcome::ApprovalTimedOut => 5,
        Outcome::AwaitingDecision => 4,
        Outcome::CompletedWithFailures => 3,
        Outcome::RolledBack => 2,
        Outcome::InvalidInput => 1,
        Outcome::Done => 0,
    }
}

/// The outcome whose exit code is `code`.
fn outcome_of_code(code: u8) -> Outcome {
    <Outcome as strum::IntoEnumIterator>::iter()
        .find(|o| o.exit_code() == code)
        .unwrap_or(Outcome::NeedsHuman)
}

/// The burst's outcome: the most urgent of its findings' (done when empty).
pub fn burst_outcome(outcomes: impl IntoIterator<Item = Outcome>) -> Outcome {
    outcomes
        .into_iter()
        .max_by_key(|o| precedence(*o))
        .unwrap_or(Outcome::Done)
}

/// `cordon run` with several findings.
pub async fn run(inputs: RunInputs, settings: Settings, aws: Aws) -> Result<u8, Failure> {
    let playbooks = crate::playbook_set::load_valid(inputs.playbooks.as_deref())?;
    let mut items = read_inputs(&inputs.findings)?;
    if !inputs.finding_id.is_empty() {
        let clients = aws.clients().await?;
        for id in &inputs.finding_id {
            let finding =
                crate::intake::fetch_finding(clients, id, inputs.detector.as_deref()).await;
            items.push(Item {
                input: format!("finding-id {}", escape(id)),
                finding: finding.map_err(|f| one_sentence(&f.error)),
                from_source: true,
            });
        }
    }
    let verify = inputs.verify_source;
    work(items, playbooks, verify, settings, aws).await
}

/// `cordon triage --run`: every open finding at or above the severity, as one burst.
pub async fn triage_run(
    triage: crate::intake::TriageArgs,
    settings: TriageSettings<'_>,
    aws: Aws,
) -> Result<u8, Failure> {
    let TriageSettings(run) = settings;
    let (findings, playbooks) = crate::intake::open_findings(&triage, &aws).await?;
    let items = findings
        .into_iter()
        .map(|finding| Item {
            input: format!("triage {}", escape(&finding.id)),
            finding: Ok(finding),
            from_source: true,
        })
        .collect();
    let settings = Settings {
        options: RunOptions {
            dry_run: false,
            accept_replan: false,
            loop_guard: run.guard.guard(),
        },
        approval: run.approval.clone(),
        guards: run.guards.clone(),
        pause: run.pause.clone(),
        account: run.account.clone(),
        state: run.state.clone(),
        output: triage.output(),
        concurrency: run.burst.concurrency(),
    };
    work(items, playbooks, false, settings, aws).await
}

/// Every finding in `paths`: files (several findings each allowed) and
/// directories of `.json`/`.jsonl`/`.ndjson` files, in name order. A file
/// that cannot be read or parsed is one invalid item; the rest still run.
fn read_inputs(paths: &[PathBuf]) -> Result<Vec<Item>, Failure> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let found = finding_files(path)?;
            if found.is_empty() {
                return Err(invalid(anyhow!(
                    "directory {} holds no .json, .jsonl or .ndjson files: pass finding files or a directory of them",
                    path.display()
                )));
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut items = Vec::new();
    for file in files {
        let origin = if file.as_os_str() == "-" {
            "stdin".to_string()
        } else {
            file.display().to_string()
        };
        let text = if file.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map(|_| text)
                .map_err(|e| format!("cannot read the findings from stdin: {e}"))
        } else {
            std::fs::read(&file)
                .map_err(|e| format!("cannot read finding file {origin}: {e}"))
                .and_then(|bytes| {
                    String::from_utf8(bytes)
                        .map_err(|_| format!("{origin} is not UTF-8 text: pass JSON findings"))
                })
        };
        match text.and_then(|text| parse_findings(&text, &origin).map_err(|e| e.to_string())) {
            Ok(findings) => {
                let several = findings.len() > 1;
                items.extend(findings.into_iter().enumerate().map(|(i, finding)| Item {
                    input: if several {
                        format!("{origin}[{i}]")
                    } else {
                        origin.clone()
                    },
                    finding: Ok(finding),
                    from_source: false,
                }));
            }
            Err(error) => items.push(Item {
                input: origin,
                finding: Err(error),
                from_source: false,
            }),
        }
    }
    Ok(items)
}

/// The finding files of a directory, in name order (hidden files skipped).
fn finding_files(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        invalid(anyhow!(
            "cannot list finding directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .filter(|path| {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase());
            !name.is_some_and(|n| n.starts_with('.'))
                && matches!(ext.as_deref(), Some("json" | "jsonl" | "ndjson"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// What the tasks of one burst share.
struct Shared {
    settings: Settings,
    playbooks: Vec<LoadedPlaybook>,
    /// Which set `playbooks` is, said in every plan.
    playbook_set: PlaybookSet,
    clients: AwsClients,
    ledger: FleetLedger,
    verify_source: bool,
    /// Guards that tripped, with the case each stopped (escalated once, at the end).
    tripped: Mutex<Vec<(&'static str, String)>>,
}

/// Works `items` at most `concurrency` at once; prints the lines and the summary.
async fn work(
    items: Vec<Item>,
    (playbooks, playbook_set): (Vec<LoadedPlaybook>, PlaybookSet),
    verify_source: bool,
    settings: Settings,
    aws: Aws,
) -> Result<u8, Failure> {
    let started = Instant::now();
    let clients = aws.clients().await?.clone();
    let calls_before = clients.calls.operations();
    let attempts_before = clients.calls.total();
    let output = settings.output;
    let concurrency = settings.concurrency;
    let shared = Arc::new(Shared {
        settings,
        playbooks,
        playbook_set,
        clients,
        ledger: FleetLedger::new(),
        verify_source,
        tripped: Mutex::new(Vec::new()),
    });
    let findings = items.len();
    let (rows_by_index, cases) = run_groups(group(items, &shared), &shared, output).await;
    let rows: Vec<BurstRow> = rows_by_index.into_values().collect();
    if rows.len() != findings {
        return Err(failed(anyhow!(
            "a burst task ended without an outcome ({} of {findings} findings reported); `cordon cases` shows what is journaled",
            rows.len()
        )));
    }
    escalate(&shared).await;
    let summary = summarize(
        &rows,
        cases,
        concurrency,
        started,
        &shared,
        calls_before,
        attempts_before,
    );
    match output {
        Output::Json => crate::print_json(&BurstReport {
            findings: &rows,
            summary: &summary,
        })?,
        Output::Text => print!("{}", render_summary(&summary)),
    }
    Ok(summary.exit_code)
}

/// The burst's items grouped by case: deliveries of one finding (one case
/// id) run one after another in one task, in input order. Items that cannot
/// be planned are their own group.
fn group(items: Vec<Item>, shared: &Shared) -> Vec<Vec<(usize, Item)>> {
    let mut groups: Vec<Vec<(usize, Item)>> = Vec::new();
    let mut by_case: BTreeMap<String, usize> = BTreeMap::new();
    for (index, item) in items.into_iter().enumerate() {
        let case = item
            .finding
            .as_ref()
            .ok()
            .and_then(|finding| crate::make_plan(finding, &shared.playbooks).ok().flatten())
            .map(|plan| plan.case_id.to_string());
        let known = case.as_ref().and_then(|case| by_case.get(case).copied());
        match (known, case) {
            (Some(at), _) => groups[at].push((index, item)),
            (None, Some(case)) => {
                by_case.insert(case, groups.len());
                groups.push(vec![(index, item)]);
            }
            (None, None) => groups.push(vec![(index, item)]),
        }
    }
    groups
}

/// Runs every group, at most `concurrency` groups at once; returns the rows
/// by input index and the number of distinct cases.
async fn run_groups(
    groups: Vec<Vec<(usize, Item)>>,
    shared: &Arc<Shared>,
    output: Output,
) -> (BTreeMap<usize, BurstRow>, usize) {
    let permits = Arc::new(tokio::sync::Semaphore::new(shared.settings.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for group in groups {
        let shared = Arc::clone(shared);
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            // The semaphore is never closed, so acquiring only waits.
            let _permit = permits.acquire_owned().await;
            let mut rows = Vec::new();
            for (index, item) in group {
                let row = contain(item, &shared).await;
                if output == Output::Text {
                    println!("{}", render_row(&row));
                }
                rows.push((index, row));
            }
            rows
        });
    }
    let mut rows = BTreeMap::new();
    let mut cases = BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(group) => {
                for (index, row) in group {
                    if let Some(case) = &row.case_id {
                        cases.insert(case.clone());
                    }
                    rows.insert(index, row);
                }
            }
            Err(e) => tracing::error!(error = %e, "a burst task panicked"),
        }
    }
    (rows, cases.len())
}

/// One finding of the burst, start to outcome: never an error, always a row.
async fn contain(item: Item, shared: &Shared) -> BurstRow {
    let started = Instant::now();
    let mut row = BurstRow {
        input: item.input,
        finding_id: None,
        case_id: None,
        playbook: None,
        status: None,
        outcome: Outcome::Done.to_string(),
        exit_code: 0,
        message: String::new(),
        seconds: 0.0,
    };
    let result = match item.finding {
        Ok(finding) => {
            row.finding_id = Some(escape(&finding.id).into_owned());
            contain_finding(finding, item.from_source, shared, &mut row).await
        }
        Err(error) => Err(invalid(anyhow!(error))),
    };
    if let Err(failure) = result {
        let outcome = outcome_of_code(failure.code);
        row.outcome = outcome.to_string();
        row.exit_code = failure.code;
        row.message = one_sentence(&failure.error);
    }
    row.seconds = started.elapsed().as_secs_f64();
    row
}

/// Plans and runs one finding as its own case, filling in `row`.
async fn contain_finding(
    received: Finding,
    from_source: bool,
    shared: &Shared,
    row: &mut BurstRow,
) -> Result<(), Failure> {
    let settings = &shared.settings;
    let aws = Aws::with(shared.clients.clone());
    let (finding, check) = if from_source {
        let check = trust::SourceCheck {
            verified: true,
            source: Some("GuardDuty GetFindings".to_string()),
            received_raw: None,
        };
        (received, check)
    } else if shared.verify_source {
        trust::verify_source(&aws, received).await?
    } else {
        (received, trust::SourceCheck::default())
    };
    let Some(mut plan) = crate::make_plan(&finding, &shared.playbooks)? else {
        row.message = format!(
            "no playbook answers this finding ({}): nothing to do",
            escape(&finding.finding_type.raw)
        );
        return Ok(());
    };
    plan.playbook_set = Some(shared.playbook_set.clone());
    row.case_id = Some(plan.case_id.to_string());
    row.playbook = Some(plan.playbook.clone());
    let case = trust::case_aws(
        &aws,
        &settings.state,
        &settings.account,
        &plan.finding,
        &plan.case_id,
    )
    .await?;
    settings
        .guards
        .protect(&case.actions.clients, &mut plan)
        .await?;
    let timeline = Timeline::new(None);
    let context = CaseContext {
        approval: &settings.approval,
        pause: &settings.pause,
        account: &settings.account,
        state: &settings.state,
    };
    let report = crate::execute_case(
        case_run(&finding, &check, &plan, &case, &timeline, &shared.ledger),
        &settings.options,
        &settings.guards,
        &context,
    )
    .await?;
    if let Some(guard) = timeline.guard_tripped() {
        shared
            .tripped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((guard, plan.case_id.to_string()));
    }
    row.status = Some(report.status.to_string());
    row.outcome = report.outcome.to_string();
    row.exit_code = report.outcome.exit_code();
    row.message = escape(&report.message).into_owned();
    Ok(())
}

fn case_run<'r>(
    finding: &'r Finding,
    check: &'r trust::SourceCheck,
    plan: &'r Plan,
    case: &'r trust::CaseAws,
    timeline: &'r Timeline,
    ledger: &'r FleetLedger,
) -> CaseRun<'r> {
    CaseRun {
        finding,
        check,
        plan,
        case,
        timeline,
        interactive: false,
        fleet_ledger: Some(ledger),
    }
}

/// One escalation for the whole burst when a guard stopped cases (not one
/// page per case of a flood).
async fn escalate(shared: &Shared) {
    let tripped = std::mem::take(
        &mut *shared
            .tripped
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let mut by_guard: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for (guard, case) in tripped {
        by_guard.entry(guard).or_default().push(case);
    }
    for (guard, cases) in by_guard {
        let message = format!(
            "the {guard} stopped automatic action on {} case(s) of a burst: {}; a human decides (`cordon status CASE`, `cordon resume CASE`)",
            cases.len(),
            cases.join(", ")
        );
        trust::escalate_message(&shared.clients, guard, &message).await;
    }
}

fn summarize(
    rows: &[BurstRow],
    cases: usize,
    concurrency: usize,
    started: Instant,
    shared: &Shared,
    calls_before: BTreeMap<String, u64>,
    attempts_before: u64,
) -> BurstSummary {
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for row in rows {
        *outcomes.entry(row.outcome.clone()).or_default() += 1;
    }
    let worst = burst_outcome(rows.iter().map(|row| outcome_of_code(row.exit_code)));
    let limits = &shared.clients.limits;
    let buckets: BTreeMap<String, BucketReport> = limits
        .stats()
        .into_iter()
        .filter_map(|(name, stats)| {
            let bucket = Bucket::from_name(&name)?;
            Some((
                name,
                BucketReport {
                    size: limits.size(bucket),
                    stats,
                },
            ))
        })
        .collect();
    let mut by_operation = shared.clients.calls.operations();
    for (operation, before) in calls_before {
        if let Some(count) = by_operation.get_mut(&operation) {
            *count = count.saturating_sub(before);
        }
    }
    by_operation.retain(|_, count| *count > 0);
    BurstSummary {
        findings: rows.len(),
        cases,
        concurrency,
        outcomes,
        no_playbook: rows
            .iter()
            .filter(|row| row.playbook.is_none() && row.exit_code == 0)
            .count(),
        exit_code: worst.exit_code(),
        wall_seconds: started.elapsed().as_secs_f64(),
        api_calls: by_operation.values().sum(),
        api_attempts: shared.clients.calls.total().saturating_sub(attempts_before),
        api_rounds: crate::api_rounds(&shared.clients),
        throttled: buckets.values().map(|b| b.stats.throttled).sum(),
        buckets,
        api_calls_by_operation: by_operation,
    }
}

/// `OUTCOME  CASE  PLAYBOOK  INPUT: message`, one finding per line.
fn render_row(row: &BurstRow) -> String {
    format!(
        "{:<24} {:<25} {:<28} {}: {}",
        row.outcome,
        row.case_id.as_deref().unwrap_or("-"),
        row.playbook.as_deref().unwrap_or("(no playbook)"),
        escape(&row.input),
        row.message
    )
}

fn render_summary(summary: &BurstSummary) -> String {
    let mut out = String::from("\n");
    let outcomes: Vec<String> = summary
        .outcomes
        .iter()
        .map(|(outcome, n)| format!("{n} {outcome}"))
        .collect();
    out.push_str(&format!(
        "{} finding(s), {} case(s), at most {} at once: {}{}\n",
        summary.findings,
        summary.cases,
        summary.concurrency,
        outcomes.join(", "),
        if summary.no_playbook > 0 {
            format!(" ({} without a playbook)", summary.no_playbook)
        } else {
            String::new()
        }
    ));
    out.push_str(&format!(
        "API calls: {} ({} requests), throttled answers retried: {}, wall time {:.1} s\n",
        summary.api_calls, summary.api_attempts, summary.throttled, summary.wall_seconds
    ));
    for (name, bucket) in &summary.buckets {
        out.push_str(&format!(
            "  bucket {name} ({}/{}/s): {} token(s), {} wait(s) ({} ms), {} throttled\n",
            bucket.size.capacity,
            bucket.size.refill_per_second,
            bucket.stats.tokens,
            bucket.stats.waits,
            bucket.stats.waited_ms,
            bucket.stats.throttled
        ));
    }
    out.push_str(&format!(
        "exit {}: the most urgent outcome of the burst\n",
        summary.exit_code
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_exits_with_its_most_urgent_outcome() {
        use Outcome::*;
        assert_eq!(burst_outcome([]), Done);
        assert_eq!(burst_outcome([Done, Done]), Done);
        assert_eq!(burst_outcome([Done, InvalidInput]), InvalidInput);
        assert_eq!(burst_outcome([RolledBack, InvalidInput, Done]), RolledBack);
        assert_eq!(
            burst_outcome([CompletedWithFailures, RolledBack]),
            CompletedWithFailures
        );
        assert_eq!(burst_outcome([AwaitingDecision, Done]), AwaitingDecision);
        assert_eq!(
            burst_outcome([AwaitingDecision, ApprovalTimedOut]),
            ApprovalTimedOut
        );
        assert_eq!(burst_outcome([ApprovalTimedOut, NeedsHuman]), NeedsHuman);
        assert_eq!(
            burst_outcome([NeedsHuman, RollbackIncomplete, Done]),
            RollbackIncomplete
        );
    }

    #[test]
    fn every_outcome_has_its_own_precedence_and_code() {
        let all: Vec<Outcome> = <Outcome as strum::IntoEnumIterator>::iter().collect();
        let ranks: BTreeSet<u8> = all.iter().map(|o| precedence(*o)).collect();
        assert_eq!(ranks.len(), all.len());
        for outcome in all {
            assert_eq!(outcome_of_code(outcome.exit_code()), outcome);
        }
    }
}
