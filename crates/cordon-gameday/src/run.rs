//! Running a Game Day: start the emulator, provision, raise the findings,
//! run cordon as a child process (so process faults are real: SIGKILL, SIGTERM,
//! then `cordon resume`), answer approvals as the scenario says, check every
//! expectation by reading the resources back, roll back, diff every resource
//! against its pre-state, verify the evidence chain, clean up (always, once
//! anything was created), and score it all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use cordon_aws::client::AwsClients;
use cordon_aws::faults::InjectedFault;
use cordon_core::journal::{CaseState, JournalEvent, JournalRecord, JournalStore};
use cordon_core::local_store::LocalJournal;
use cordon_core::plan::CaseId;
use cordon_core::policy::{CORDON_IAM_PATH, QUARANTINE_POLICY_NAME, quarantine_policy};
use cordon_core::summary::{PHASE_UNTRACK_BEGUN, summarize};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::OWNER_TAG;
use crate::cleanup::cleanup_journaled;
use crate::emulator::Emulator;
use crate::error::{FixtureError, GamedayError, aws, incomplete};
use crate::fixture::Fixture;
use crate::fixture::ResourceKind;
use crate::ledger::{CREATIONS_FORMAT_VERSION, CreationJournal, CreationLog, RunRecord};
use crate::provision::{ProvisionOptions, provision_journaled};
use crate::scenario::{
    Credentials, Decision, NamedFinding, ProcessFault, Scenario, session_key_id,
};
use crate::scorecard::{
    ApprovalScore, CaseScore, EvidenceScore, ExpectationResult, FaultScore, RollbackScore,
    SCORECARD_FORMAT_VERSION, Scorecard, TimelineEntry,
};
use crate::state::{diff_states, snapshot_state, volume_snapshots};

/// The region of every emulator Game Day.
const REGION: &str = "us-east-1";
/// Credentials the emulator accepts (it checks none).
const EMULATOR_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const EMULATOR_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// How often a running child's journals are read.
const POLL: Duration = Duration::from_millis(5);
/// Approval wait when an answer is given by `cordon approve` (not timed out).
const ANSWER_WAIT_SECONDS: u32 = 120;
/// Approval wait of a scenario whose answers include a time-out.
const DEFAULT_TIMEOUT_SECONDS: u32 = 3;
/// Cases worked at once when the scenario has many findings.
const DEFAULT_CONCURRENCY: u16 = 8;

/// Where a Game Day runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The local emulator, started for the Game Day and stopped after it.
    Emulator {
        /// The emulator (`moto_server`).
        program: PathBuf,
    },
    /// A real account, through the ambient AWS configuration (credential
    /// chain, region, `AWS_ENDPOINT_URL`), like `cordon run`. Refused before
    /// any change unless the caller's account is allowed and the existing
    /// resources the run touches carry the Game Day tag.
    Aws {
        /// The accounts a Game Day may change (`--allow-account`); no default.
        allowed_accounts: Vec<String>,
        /// An existing evidence bucket (`cordon evidence init`) tagged
        /// [`OWNER_TAG`]: on a real account the Game Day creates no bucket or
        /// KMS key of its own, since neither can be deleted at once.
        evidence_bucket: String,
    },
}

impl Target {
    /// `emulator` or `aws`, as the scorecard and the creation journal say.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Emulator { .. } => "emulator",
            Target::Aws { .. } => "aws",
        }
    }
}

/// How to run a Game Day.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The `cordon` binary the Game Day runs as a child (the running one).
    pub cordon: PathBuf,
    /// The emulator or a real account.
    pub target: Target,
    /// Where the scorecard, journals, findings and snapshots go.
    pub out: PathBuf,
    /// Overrides the count of the scenario's `copies`.
    pub scale: Option<u32>,
    /// Findings cordon works at once (default 8).
    pub concurrency: Option<u16>,
    /// Print each phase on stderr as it starts.
    pub progress: bool,
    /// Print `cordon plan` of each finding (on this process's stdout) before containing it.
    pub show_plans: bool,
}

/// Who the Game Day's calls run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The account id.
    pub account: String,
    /// The ARN partition (`aws`, `aws-cn`, `aws-us-gov`).
    pub partition: String,
}

/// The caller's identity (STS GetCallerIdentity, which changes nothing).
pub async fn caller(clients: &AwsClients) -> Result<Caller, FixtureError> {
    let out = clients
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(aws("sts:GetCallerIdentity", "the caller"))?;
    let account = out
        .account()
        .ok_or_else(|| incomplete("sts:GetCallerIdentity", "the caller", "account"))?
        .to_string();
    let partition = out
        .arn()
        .and_then(|arn| arn.split(':').nth(1))
        .filter(|p| !p.is_empty())
        .unwrap_or("aws")
        .to_string();
    Ok(Caller { account, partition })
}

/// The checks of `--target aws`, all by reading: the caller's account is on
/// `allowed`, and the evidence bucket (the one existing resource a Game
/// Day's run writes to) carries [`OWNER_TAG`]. The resources the run
/// creates carry the tag from their create call on (the builder tags in
/// the call itself, and the scenario cannot set that tag: see
/// [`crate::spec`]); scenarios cannot name other existing resources.
pub async fn preflight(
    clients: &AwsClients,
    allowed: &[String],
    evidence_bucket: &str,
) -> Result<Caller, GamedayError> {
    let caller = caller(clients).await?;
    if allowed.is_empty() {
        return Err(GamedayError::NoAllowList {
            account: caller.account,
        });
    }
    if !allowed.contains(&caller.account) {
        return Err(GamedayError::AccountNotAllowed {
            account: caller.account,
            allowed: allowed.join(", "),
        });
    }
    let resource = format!("s3://{evidence_bucket}");
    let tags = clients
        .s3
        .get_bucket_tagging()
        .bucket(evidence_bucket)
        .send()
        .await;
    let tagged = match tags {
        Ok(out) => out.tag_set().iter().any(|t| t.key() == OWNER_TAG),
        Err(e) => {
            let err = aws("s3:GetBucketTagging", &resource)(e);
            match &err {
                FixtureError::Aws { code, .. } if code == "NoSuchTagSet" => false,
                _ => return Err(err.into()),
            }
        }
    };
    if !tagged {
        return Err(GamedayError::Untagged {
            resource,
            tag: OWNER_TAG,
        });
    }
    Ok(caller)
}

/// Runs `scenario` (read from `file`) end to end and scores it.
pub async fn run_scenario(
    scenario: &Scenario,
    file: &str,
    options: &RunOptions,
) -> Result<Scorecard, GamedayError> {
    let out = &options.out;
    let mut game = GameDay::new(scenario, file, options);
    let (clients, emulator) = match &options.target {
        Target::Emulator { program } => {
            std::fs::create_dir_all(out).map_err(GamedayError::io(out))?;
            game.phase("emulator");
            let emulator = Emulator::start(program.clone(), out.join("emulator.log")).await?;
            let endpoint = emulator.endpoint();
            let config = AwsClients::loader()
                .region(aws_config::Region::new(REGION))
                .credentials_provider(aws_credential_types::Credentials::new(
                    EMULATOR_KEY_ID,
                    EMULATOR_SECRET,
                    None,
                    None,
                    "cordon-gameday",
                ))
                .endpoint_url(&endpoint)
                .load()
                .await;
            game.endpoint = Some(endpoint);
            (AwsClients::from_sdk_config(&config)?, Some(emulator))
        }
        Target::Aws {
            allowed_accounts,
            evidence_bucket,
        } => {
            game.phase("preflight");
            let clients = AwsClients::from_env().await?;
            game.caller = preflight(&clients, allowed_accounts, evidence_bucket).await?;
            game.bucket.clone_from(evidence_bucket);
            (clients, None)
        }
    };
    if game.caller.account.is_empty() {
        game.caller = caller(&clients).await?;
    }
    std::fs::create_dir_all(out.join("findings")).map_err(GamedayError::io(out))?;
    game.phase("provision");
    let spec = scenario.environment(options.scale);
    let provision_options = ProvisionOptions::unique();
    let journal = CreationJournal::create(
        out,
        RunRecord {
            format_version: CREATIONS_FORMAT_VERSION,
            owner: provision_options.owner.clone(),
            target: options.target.name().to_string(),
            account: game.caller.account.clone(),
            region: clients.region.clone(),
        },
    )
    .await
    .map_err(FixtureError::from)?;
    let provisioned = provision_journaled(&clients, &spec, &provision_options, &journal).await;
    let fixture = match provisioned {
        Ok(fixture) => fixture,
        Err(err) => {
            clean_up(&clients, &journal).await;
            return Err(err.into());
        }
    };
    write_json(
        &out.join("fixture.json"),
        &serde_json::to_value(&fixture).unwrap_or_default(),
    )?;
    let result = game.after_provision(&clients, &fixture, &journal).await;
    game.phase("clean up");
    let cleanup_failed = clean_up(&clients, &journal).await;
    game.end_phase();
    drop(emulator);
    let mut card = result?;
    card.cleanup_failed = cleanup_failed;
    card.timeline = std::mem::take(&mut game.timeline);
    // The Game Day's phases first, then each case's steps (a stable sort
    // keeps each section's own order, so a section stays in one piece).
    card.timeline.sort_by_key(|t| t.section != "game day");
    card.wall_seconds = game.started.elapsed().as_secs_f64();
    card.passed = card.failures().is_empty() && card.cleanup_failed.is_empty();
    card.write(out)?;
    Ok(card)
}

/// Deletes everything the creation journal names or the owner tag finds,
/// and journals the result; what was left behind, one line each.
async fn clean_up(clients: &AwsClients, journal: &CreationJournal) -> Vec<String> {
    let dir = journal.path().parent().unwrap_or(Path::new("."));
    let log = match CreationLog::read(dir) {
        Ok(log) => log,
        Err(e) => return vec![e.to_string()],
    };
    let report = match cleanup_journaled(clients, &log).await {
        Ok(report) => report,
        Err(e) => return vec![e.to_string()],
    };
    let mut failed: Vec<String> = report
        .failed
        .iter()
        .map(|(resource, err)| format!("{resource}: {err}"))
        .collect();
    if let Err(e) = journal
        .cleaned_up(report.deleted.len(), report.failed.len())
        .await
    {
        failed.push(e.to_string());
    }
    failed
}

fn write_json(path: &Path, value: &Value) -> Result<(), GamedayError> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    std::fs::write(path, text + "\n").map_err(GamedayError::io(path))
}

/// What one child process did.
#[derive(Debug, Default)]
struct ChildOutcome {
    /// Its exit code (`None`: killed by a signal).
    code: Option<i32>,
    /// Its standard output (a JSON document with `--output json`).
    stdout: String,
    /// The process fault it suffered, if the watch applied one.
    fault: Option<FaultScore>,
}

/// The state of one Game Day while it runs.
struct GameDay<'a> {
    scenario: &'a Scenario,
    file: &'a str,
    options: &'a RunOptions,
    started: Instant,
    started_at: time::OffsetDateTime,
    /// The emulator's endpoint; `None` on a real account.
    endpoint: Option<String>,
    bucket: String,
    caller: Caller,
    timeline: Vec<TimelineEntry>,
    open_phase: Option<(String, u64)>,
    faults: Vec<FaultScore>,
    api_calls: u64,
    api_rounds: u64,
    api_attempts: u64,
    throttled: u64,
    /// Approval requests answered by this Game Day: (case, step, request seq).
    answered: BTreeSet<(String, String, u64)>,
    answering: Vec<Child>,
}

impl<'a> GameDay<'a> {
    fn new(scenario: &'a Scenario, file: &'a str, options: &'a RunOptions) -> Self {
        GameDay {
            scenario,
            file,
            options,
            started: Instant::now(),
            started_at: time::OffsetDateTime::now_utc(),
            endpoint: None,
            bucket: String::new(),
            caller: Caller {
                account: String::new(),
                partition: String::new(),
            },
            timeline: Vec::new(),
            open_phase: None,
            faults: Vec::new(),
            api_calls: 0,
            api_rounds: 0,
            api_attempts: 0,
            throttled: 0,
            answered: BTreeSet::new(),
            answering: Vec::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Closes the phase in progress and opens `name`.
    fn phase(&mut self, name: &str) {
        self.end_phase();
        if self.options.progress {
            eprintln!("gameday: {name}");
        }
        self.open_phase = Some((name.to_string(), self.now_ms()));
    }

    fn end_phase(&mut self) {
        if let Some((label, start_ms)) = self.open_phase.take() {
            let end_ms = self.now_ms();
            self.timeline.push(TimelineEntry {
                section: "game day".to_string(),
                label,
                start_ms,
                end_ms,
                critical: false,
            });
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.options.out.join("state")
    }

    /// The journals of the run's cases, as `cordon --state-dir` keeps them.
    fn journal(&self) -> LocalJournal {
        LocalJournal::new(self.state_dir().join("cases"))
    }

    /// `cordon ARGS` against the emulator, its stderr appended to `cordon.log`.
    fn cordon(&self, args: &[String]) -> Result<Command, GamedayError> {
        let log_path = self.options.out.join("cordon.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(GamedayError::io(&log_path))?;
        let mut command = Command::new(&self.options.cordon);
        command.args(args);
        // On a real account the children use the ambient configuration,
        // as this process does (AWS_ENDPOINT_URL included, when set).
        if let Some(endpoint) = &self.endpoint {
            command
                .env("AWS_ENDPOINT_URL", endpoint)
                .env("AWS_REGION", REGION)
                .env("AWS_ACCESS_KEY_ID", EMULATOR_KEY_ID)
                .env("AWS_SECRET_ACCESS_KEY", EMULATOR_SECRET)
                .env_remove("AWS_PROFILE")
                .env_remove("AWS_SESSION_TOKEN");
        }
        command
            .env("CORDON_STATE_DIR", self.state_dir())
            .env("CORDON_EVIDENCE_BUCKET", &self.bucket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        Ok(command)
    }

    /// `--inject-faults FILE --fault-log FILE` when the scenario has AWS faults.
    fn fault_args(&self) -> Vec<String> {
        if self.scenario.faults.is_none() {
            return Vec::new();
        }
        let out = &self.options.out;
        vec![
            "--inject-faults".to_string(),
            out.join("faults.json").display().to_string(),
            "--fault-log".to_string(),
            out.join("faults.jsonl").display().to_string(),
        ]
    }

    /// The AWS faults the containment processes logged.
    fn injected_faults(&self) -> Vec<FaultScore> {
        let log = self.options.out.join("faults.jsonl");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<InjectedFault>(line).ok())
            .map(|f| FaultScore {
                layer: "aws".to_string(),
                fault: format!("{} on call {} of {}", f.kind, f.ordinal, f.operation),
                at_ms: None,
            })
            .collect()
    }

    fn spawn(&self, args: &[String]) -> Result<Child, GamedayError> {
        self.cordon(args)?
            .spawn()
            .map_err(|source| GamedayError::Spawn {
                program: self.options.cordon.display().to_string(),
                source,
            })
    }

    /// Runs `cordon ARGS` to its end, unwatched.
    async fn run_cordon(&mut self, args: &[String]) -> Result<ChildOutcome, GamedayError> {
        let child = self.spawn(args)?;
        self.watch(child, None).await
    }

    /// Waits for `child` while reading the journals: answers approvals as
    /// the scenario says and applies `fault` when its moment comes.
    async fn watch(
        &mut self,
        mut child: Child,
        fault: Option<(&ProcessFault, Option<String>)>,
    ) -> Result<ChildOutcome, GamedayError> {
        let mut stdout = child.stdout.take();
        let reader = tokio::spawn(async move {
            let mut text = String::new();
            if let Some(out) = stdout.as_mut() {
                let _ = out.read_to_string(&mut text).await;
            }
            text
        });
        let mut applied: Option<FaultScore> = None;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                () = tokio::time::sleep(POLL) => {}
            }
            let journals = read_journals(&self.journal()).await;
            self.answer_approvals(&journals)?;
            if let (Some((fault, finding_id)), None) = (&fault, &applied)
                && let Some(description) = fault_due(fault, finding_id.as_deref(), &journals)
            {
                let at_ms = Some(self.now_ms());
                match fault {
                    ProcessFault::KillAtRecord { .. } => {
                        let _ = child.start_kill();
                    }
                    ProcessFault::SigtermInIsolationPhase1 { .. } => {
                        if let Some(pid) = child.id() {
                            // Our own child, by pid, while we still hold it (not yet reaped).
                            let _ = std::process::Command::new("kill")
                                .args(["-TERM", &pid.to_string()])
                                .status();
                        }
                    }
                }
                applied = Some(FaultScore {
                    layer: "process".to_string(),
                    fault: description,
                    at_ms,
                });
            }
        };
        let status = status.map_err(|source| GamedayError::Spawn {
            program: self.options.cordon.display().to_string(),
            source,
        })?;
        let stdout = reader.await.unwrap_or_default();
        self.count_calls(&stdout);
        Ok(ChildOutcome {
            code: status.code(),
            stdout,
            fault: applied,
        })
    }

    /// Adds what a `--output json` report says about AWS calls.
    fn count_calls(&mut self, stdout: &str) {
        let Ok(doc) = serde_json::from_str::<Value>(stdout) else {
            return;
        };
        let number = |v: &Value| v.as_u64().unwrap_or(0);
        let report = doc.get("summary").unwrap_or(&doc);
        self.api_rounds += number(&report["api-rounds"]);
        if let Some(summary) = doc.get("summary") {
            let calls = number(&summary["api-calls"]);
            self.api_calls += calls;
            self.api_attempts += number(&summary["api-attempts"]).max(calls);
            self.throttled += number(&summary["throttled"]);
        } else if let Some(calls) = doc.get("api-calls").and_then(Value::as_object) {
            let calls: u64 = calls.values().map(number).sum();
            self.api_calls += calls;
            self.api_attempts += calls;
        }
    }

    /// Hands the scenario's answer for every approval-gated step of each
    /// case (as its plan says) to cordon, from another process, as soon as
    /// the case is opened: `cordon approve CASE STEP [--refuse]` drops the
    /// decision in the case's inbox, where the run takes it when the step
    /// asks (the run journals the request only once it is answered).
    /// `time-out` steps get no answer.
    fn answer_approvals(
        &mut self,
        journals: &[(CaseId, Vec<JournalRecord>)],
    ) -> Result<(), GamedayError> {
        for (case, records) in journals {
            let mut plan = None;
            let mut decided: BTreeSet<&str> = BTreeSet::new();
            for record in records {
                match &record.event {
                    JournalEvent::CaseOpened { plan: p, .. }
                    | JournalEvent::EpochOpened { plan: p, .. } => {
                        plan = Some((record.seq, p));
                        decided.clear();
                    }
                    JournalEvent::ApprovalGranted { step, .. }
                    | JournalEvent::ApprovalRefused { step, .. }
                    | JournalEvent::ApprovalTimedOut { step, .. } => {
                        decided.insert(step);
                    }
                    _ => {}
                }
            }
            let Some((opened, plan)) = plan else { continue };
            for step in plan.steps.iter().filter(|s| s.approval.required) {
                let key = (case.to_string(), step.id.clone(), opened);
                if decided.contains(step.id.as_str()) || self.answered.contains(&key) {
                    continue;
                }
                let mut args = self.fault_args();
                args.extend(["approve".to_string(), case.to_string(), step.id.clone()]);
                match self.scenario.approvals.decision(&step.id) {
                    Decision::TimeOut => continue,
                    Decision::Grant => {}
                    Decision::Refuse => args.extend([
                        "--refuse".to_string(),
                        "--reason".to_string(),
                        "the Game Day scenario refuses this step".to_string(),
                    ]),
                }
                args.extend(["--output".to_string(), "json".to_string()]);
                self.answered.insert(key);
                let child = self.spawn(&args)?;
                self.answering.push(child);
            }
        }
        Ok(())
    }

    /// Waits for every `cordon approve` started.
    async fn finish_answers(&mut self) -> Result<(), GamedayError> {
        for mut child in std::mem::take(&mut self.answering) {
            let mut text = String::new();
            if let Some(out) = child.stdout.as_mut() {
                let _ = out.read_to_string(&mut text).await;
            }
            let _ = child.wait().await;
            self.count_calls(&text);
        }
        Ok(())
    }

    /// Everything after provisioning; the caller cleans up whatever happens.
    async fn after_provision(
        &mut self,
        clients: &AwsClients,
        fixture: &Fixture,
        journal: &CreationJournal,
    ) -> Result<Scorecard, GamedayError> {
        let out = self.options.out.clone();
        self.phase("cordon prerequisites");
        if self.endpoint.is_some() {
            self.bucket = format!("cordon-gameday-{}", fixture.owner.to_ascii_lowercase());
        }
        let bucket = self.bucket.clone();
        let init = match self.options.target {
            Target::Emulator { .. } => {
                self.run_cordon(&["evidence".to_string(), "init".to_string(), bucket.clone()])
                    .await?
            }
            // Prepared and tagged beforehand (preflight checked the tag).
            Target::Aws { .. } => ChildOutcome {
                code: Some(0),
                ..ChildOutcome::default()
            },
        };
        if init.code != Some(0) {
            return Err(GamedayError::Emulator {
                program: self.options.cordon.display().to_string(),
                reason: format!(
                    "`cordon evidence init {bucket}` failed; see {}",
                    out.join("cordon.log").display()
                ),
            });
        }
        ensure_quarantine_policy(clients, &self.caller, &fixture.owner, journal).await?;
        self.phase("pre-state");
        let before = snapshot_state(clients, fixture).await?;
        write_json(&out.join("before.json"), &before)?;

        self.phase("raise findings");
        let findings = self.scenario.findings(self.options.scale);
        let mut files = Vec::new();
        let mut ids: BTreeMap<String, String> = BTreeMap::new();
        for (i, finding) in findings.iter().enumerate() {
            let (id, json) = finding_json(fixture, finding)?;
            let safe: String = finding
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let path = out
                .join("findings")
                .join(format!("{:03}-{safe}.json", i + 1));
            write_json(&path, &json)?;
            files.push(path.display().to_string());
            ids.insert(finding.name.clone(), id);
        }

        if self.options.show_plans {
            self.phase("plans");
            for file in &files {
                let mut command = self.cordon(&["plan".to_string(), file.clone()])?;
                command.stdout(Stdio::inherit());
                let status = command
                    .status()
                    .await
                    .map_err(|source| GamedayError::Spawn {
                        program: self.options.cordon.display().to_string(),
                        source,
                    })?;
                if !status.success() {
                    eprintln!("gameday: `cordon plan {file}` failed ({status})");
                }
            }
        }
        self.phase("contain");
        let contain_started = self.now_ms();
        self.contain(&files, &ids).await?;
        self.finish_answers().await?;
        let injected = self.injected_faults();
        self.faults.extend(injected);
        let contain_ended = self.now_ms();
        let cases = load_cases(&self.journal()).await?;

        self.phase("check expectations");
        let contained = snapshot_state(clients, fixture).await?;
        write_json(&out.join("contained.json"), &contained)?;
        let mut expectations = Vec::new();
        self.check_cases(&findings, &ids, &cases, &mut expectations);
        self.check_resources(clients, fixture, &before, &contained, &mut expectations)
            .await?;

        self.phase("roll back");
        let mut rollback_status: BTreeMap<String, String> = BTreeMap::new();
        for Case {
            id: case, state, ..
        } in cases.iter().rev()
        {
            let mut args = vec![
                "rollback".to_string(),
                case.to_string(),
                "--output".to_string(),
                "json".to_string(),
            ];
            for step in &state.plan.steps {
                args.extend(["--approve-undo".to_string(), step.id.clone()]);
            }
            let outcome = self.run_cordon(&args).await?;
            let status = serde_json::from_str::<Value>(&outcome.stdout)
                .ok()
                .and_then(|v| v["status"].as_str().map(str::to_string))
                .unwrap_or_else(|| format!("exit {:?}", outcome.code));
            rollback_status.insert(case.to_string(), status);
        }
        let after = snapshot_state(clients, fixture).await?;
        write_json(&out.join("after-rollback.json"), &after)?;
        let rollback = rollback_fidelity(&before, &after);
        if self.scenario.expect.rollback_exact {
            expectations.push(ExpectationResult {
                expectation: "rollback-exact: every resource equals its pre-state".to_string(),
                passed: Some(rollback.differences.is_empty()),
                actual: format!(
                    "{}/{} restored{}",
                    rollback.restored,
                    rollback.resources,
                    if rollback.differences.is_empty() {
                        String::new()
                    } else {
                        format!("; {} field(s) differ", rollback.differences.len())
                    }
                ),
            });
        }

        self.phase("verify evidence");
        let mut evidence = Vec::new();
        for Case {
            id: case, state, ..
        } in &cases
        {
            let stored = state
                .plan
                .steps
                .iter()
                .any(|s| s.kind() == cordon_core::action::ActionKind::StoreEvidence)
                && state.steps.values().any(|s| s.verified);
            if !stored {
                continue;
            }
            let outcome = self
                .run_cordon(&[
                    "evidence".to_string(),
                    "verify".to_string(),
                    case.to_string(),
                    "--bucket".to_string(),
                    bucket.clone(),
                ])
                .await?;
            evidence.push(EvidenceScore {
                case_id: case.to_string(),
                verified: outcome.code == Some(0),
                detail: outcome
                    .stdout
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("no output")
                    .trim()
                    .to_string(),
            });
        }
        if self.scenario.expect.evidence_verified {
            let failed: Vec<&str> = evidence
                .iter()
                .filter(|e| !e.verified)
                .map(|e| e.case_id.as_str())
                .collect();
            expectations.push(ExpectationResult {
                expectation: "evidence-verified: every case's evidence chain verifies".to_string(),
                passed: Some(failed.is_empty()),
                actual: if failed.is_empty() {
                    format!("{} case(s) verified", evidence.len())
                } else {
                    format!("not verified: {}", failed.join(", "))
                },
            });
        }

        self.budgets(&cases, &mut expectations);
        let approvals = approval_scores(&cases);
        let scores = self.case_scores(&findings, &ids, &cases, &rollback_status, &approvals);
        self.case_timeline(&findings, &ids, &cases, contain_started, contain_ended);
        Ok(Scorecard {
            format_version: SCORECARD_FORMAT_VERSION,
            scenario: self.scenario.name.clone(),
            scenario_file: self.file.to_string(),
            target: self.options.target.name().to_string(),
            started_at: self
                .started_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            passed: false,
            wall_seconds: 0.0,
            time_to_contain_ms: scores.iter().filter_map(|c| c.time_to_contain_ms).max(),
            time_to_evidence_ms: scores.iter().filter_map(|c| c.time_to_evidence_ms).max(),
            approval_wait_ms: approvals.iter().filter_map(|a| a.waited_ms).sum(),
            step_retries: scores.iter().map(|c| c.step_retries).sum(),
            cases: scores,
            api_calls: self.api_calls,
            api_rounds: self.api_rounds,
            retries: self.api_attempts.saturating_sub(self.api_calls),
            throttled: self.throttled,
            faults: std::mem::take(&mut self.faults),
            approvals,
            rollback,
            evidence,
            expectations,
            timeline: Vec::new(),
            cleanup_failed: Vec::new(),
        })
    }

    /// `cordon run` on every finding, then, after each process fault,
    /// `cordon resume` on every case not at rest (the next fault applies to
    /// it) and `cordon run` again for findings whose case never opened.
    async fn contain(
        &mut self,
        files: &[String],
        ids: &BTreeMap<String, String>,
    ) -> Result<(), GamedayError> {
        let approvals = &self.scenario.approvals;
        if let Some(plan) = &self.scenario.faults {
            let path = self.options.out.join("faults.json");
            write_json(&path, &serde_json::to_value(plan).unwrap_or_default())?;
        }
        let mut run = self.fault_args();
        run.push("run".to_string());
        run.extend(files.iter().cloned());
        let concurrency = self.options.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        run.extend([
            "--concurrency".to_string(),
            concurrency.to_string(),
            "--output".to_string(),
            "json".to_string(),
        ]);
        if approvals.all_granted() {
            run.push("--yes".to_string());
        } else {
            let timed_out = approvals.default == Decision::TimeOut
                || approvals.steps.values().any(|d| *d == Decision::TimeOut);
            let seconds = if timed_out {
                approvals.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS)
            } else {
                ANSWER_WAIT_SECONDS
            };
            run.extend(["--approval-timeout".to_string(), format!("{seconds}s")]);
        }
        let first_finding = self
            .scenario
            .findings(self.options.scale)
            .first()
            .map(|f| f.name.clone());
        let watched = |fault: &ProcessFault| -> Option<String> {
            let name = fault
                .finding()
                .map(str::to_string)
                .or(first_finding.clone())?;
            ids.get(&name).cloned()
        };
        let mut faults = self.scenario.process_faults.iter();
        let mut fault = faults.next();
        let child = self.spawn(&run)?;
        let outcome = self.watch(child, fault.map(|f| (f, watched(f)))).await?;
        let mut hit = outcome.fault;
        while let Some(applied) = hit.take() {
            self.faults.push(applied);
            fault = faults.next();
            let cases = load_cases(&self.journal()).await?;
            for Case {
                id: case, state, ..
            } in &cases
            {
                if state.status.is_some() && state.interrupted.is_none() {
                    continue;
                }
                let mut args = self.fault_args();
                args.extend([
                    "resume".to_string(),
                    case.to_string(),
                    "--output".to_string(),
                    "json".to_string(),
                ]);
                let resumed_fault = fault
                    .filter(|f| watched(f).as_deref() == Some(state.plan.finding.id.as_str()))
                    .map(|f| (f, watched(f)));
                let child = self.spawn(&args)?;
                let outcome = self.watch(child, resumed_fault).await?;
                if let Some(applied) = outcome.fault {
                    hit = Some(applied);
                }
            }
            let opened: BTreeSet<&str> = cases
                .iter()
                .map(|c| c.state.plan.finding.id.as_str())
                .collect();
            if ids.values().any(|id| !opened.contains(id.as_str())) {
                let outcome = self.run_cordon(&run).await?;
                if let Some(applied) = outcome.fault {
                    hit = Some(applied);
                }
            }
        }
        Ok(())
    }

    /// The case of each finding rests where the scenario says.
    fn check_cases(
        &self,
        findings: &[NamedFinding<'_>],
        ids: &BTreeMap<String, String>,
        cases: &[Case],
        expectations: &mut Vec<ExpectationResult>,
    ) {
        let expect = &self.scenario.expect;
        let mut counted: BTreeMap<String, usize> = BTreeMap::new();
        for finding in findings {
            let base = finding.name.split('@').next().unwrap_or(&finding.name);
            let state = case_of(ids.get(&finding.name), cases);
            let actual = state.map_or_else(
                || "no case".to_string(),
                |c| {
                    c.state
                        .status
                        .map_or_else(|| "running".to_string(), |s| s.to_string())
                },
            );
            let want = match expect.cases.get(base) {
                Some(want) => want.as_str(),
                None if !expect.statuses.is_empty() => {
                    *counted.entry(actual).or_default() += 1;
                    continue;
                }
                None => "completed",
            };
            expectations.push(ExpectationResult {
                expectation: format!("cases.{} = {want}", finding.name),
                passed: Some(actual == want),
                actual,
            });
        }
        if !expect.statuses.is_empty() {
            let show = |m: &BTreeMap<String, usize>| {
                m.iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            expectations.push(ExpectationResult {
                expectation: format!("statuses = {{{}}}", show(&expect.statuses)),
                passed: Some(counted == expect.statuses),
                actual: format!("{{{}}}", show(&counted)),
            });
        }
    }

    /// Every instance, user and role expectation, read back from AWS.
    async fn check_resources(
        &self,
        clients: &AwsClients,
        fixture: &Fixture,
        before: &Value,
        contained: &Value,
        expectations: &mut Vec<ExpectationResult>,
    ) -> Result<(), GamedayError> {
        let scale = self.options.scale;
        let mut check = |expectation: String, want: bool, actual: bool, detail: String| {
            expectations.push(ExpectationResult {
                expectation,
                passed: Some(want == actual),
                actual: if detail.is_empty() {
                    actual.to_string()
                } else {
                    format!("{actual} ({detail})")
                },
            });
        };
        let snapshots = volume_snapshots(clients, fixture).await?;
        for (name, want) in &self.scenario.expect.instances {
            for instance_name in self.scenario.instances_named(name, scale) {
                let record = fixture.instance(&instance_name)?;
                let state = &contained["instances"][&instance_name];
                let at = format!("instances.{instance_name}");
                if let Some(want) = want.isolated {
                    let (isolated, detail) = isolated(clients, record.eni_ids(), contained).await?;
                    check(format!("{at}.isolated = {want}"), want, isolated, detail);
                }
                if let Some(want) = want.termination_protection {
                    let on = state["disable-api-termination"].as_bool().unwrap_or(false);
                    check(
                        format!("{at}.termination-protection = {want}"),
                        want,
                        on,
                        String::new(),
                    );
                }
                if let Some(want) = want.instance_profile {
                    let attached = state["instance-profile-associations"]
                        .as_array()
                        .is_some_and(|a| !a.is_empty());
                    check(
                        format!("{at}.instance-profile = {want}"),
                        want,
                        attached,
                        String::new(),
                    );
                }
                if let Some(want) = want.in_auto_scaling_group {
                    let member =
                        contained["auto-scaling-groups"]
                            .as_object()
                            .is_some_and(|groups| {
                                groups.values().any(|g| {
                                    g["instances"]
                                        .as_array()
                                        .is_some_and(|m| m.iter().any(|i| i == record.id.as_str()))
                                })
                            });
                    check(
                        format!("{at}.in-auto-scaling-group = {want}"),
                        want,
                        member,
                        String::new(),
                    );
                }
                if let Some(want) = want.in_target_group {
                    let prefix = format!("{}:", record.id);
                    let registered = contained["target-groups"]
                        .as_object()
                        .is_some_and(|groups| {
                            groups.values().any(|g| {
                                g["targets"].as_array().is_some_and(|t| {
                                    t.iter()
                                        .any(|t| t.as_str().is_some_and(|t| t.starts_with(&prefix)))
                                })
                            })
                        });
                    check(
                        format!("{at}.in-target-group = {want}"),
                        want,
                        registered,
                        String::new(),
                    );
                }
                if let Some(want) = want.volumes_snapshotted {
                    let volumes = record.volume_ids();
                    let missing: Vec<&String> = volumes
                        .iter()
                        .filter(|v| !snapshots.iter().any(|s| s["volume-id"] == v.as_str()))
                        .collect();
                    check(
                        format!("{at}.volumes-snapshotted = {want}"),
                        want,
                        missing.is_empty() && !volumes.is_empty(),
                        format!(
                            "{} of {} volume(s) without a snapshot",
                            missing.len(),
                            volumes.len()
                        ),
                    );
                }
            }
        }
        for (name, want) in &self.scenario.expect.users {
            let at = format!("users.{name}");
            let given: Vec<String> = fixture
                .user(name)?
                .access_keys
                .iter()
                .map(|k| k.id.clone())
                .collect();
            let keys = contained["users"][name]["access-keys"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            if let Some(status) = want.keys {
                let statuses: Vec<String> = given
                    .iter()
                    .map(|k| {
                        keys.get(k)
                            .and_then(Value::as_str)
                            .unwrap_or("deleted")
                            .to_string()
                    })
                    .collect();
                let all = statuses.iter().all(|s| s == status.as_iam());
                check(
                    format!(
                        "{at}.keys = {} (every key the environment gave)",
                        status.as_iam().to_ascii_lowercase()
                    ),
                    true,
                    all,
                    format!("statuses: {}", statuses.join(", ")),
                );
            }
            if let Some(want) = want.key_rotated {
                let rotated = keys.len() > given.len();
                check(
                    format!("{at}.key-rotated = {want}"),
                    want,
                    rotated,
                    format!("{} key(s)", keys.len()),
                );
            }
            if let Some(want) = want.policies_added {
                let added = policies_added(&before["users"][name], &contained["users"][name]);
                check(
                    format!("{at}.policies-added = {want}"),
                    want,
                    !added.is_empty(),
                    added.join(", "),
                );
            }
        }
        for (name, want) in &self.scenario.expect.roles {
            if let Some(want) = want.policies_added {
                let added = policies_added(&before["roles"][name], &contained["roles"][name]);
                check(
                    format!("roles.{name}.policies-added = {want}"),
                    want,
                    !added.is_empty(),
                    added.join(", "),
                );
            }
        }
        Ok(())
    }

    /// API-call and retry budgets (enforced) and the wall-time budget (reported).
    fn budgets(&self, cases: &[Case], expectations: &mut Vec<ExpectationResult>) {
        let expect = &self.scenario.expect;
        if let Some(max) = expect.max_api_calls {
            expectations.push(ExpectationResult {
                expectation: format!("max-api-calls = {max}"),
                passed: Some(self.api_calls <= max),
                actual: self.api_calls.to_string(),
            });
        }
        if let Some(max) = expect.max_api_rounds {
            expectations.push(ExpectationResult {
                expectation: format!("max-api-rounds = {max}"),
                passed: Some(self.api_rounds <= max),
                actual: self.api_rounds.to_string(),
            });
        }
        if let Some(max) = expect.max_retries {
            let retries = self.api_attempts.saturating_sub(self.api_calls);
            expectations.push(ExpectationResult {
                expectation: format!("max-retries = {max}"),
                passed: Some(retries <= max),
                actual: retries.to_string(),
            });
        }
        if let Some(budget) = expect.time_to_contain_seconds {
            let slowest = cases
                .iter()
                .filter_map(|c| c.summary().time_to_contain_ms)
                .max();
            expectations.push(ExpectationResult {
                expectation: format!("time-to-contain-seconds = {budget} (reported, not enforced)"),
                passed: None,
                actual: slowest.map_or_else(
                    || "not contained".to_string(),
                    |ms| {
                        let s = ms as f64 / 1000.0;
                        format!("{s:.2}s ({})", if s <= budget { "within" } else { "over" })
                    },
                ),
            });
        }
    }

    fn case_scores(
        &self,
        findings: &[NamedFinding<'_>],
        ids: &BTreeMap<String, String>,
        cases: &[Case],
        rollback_status: &BTreeMap<String, String>,
        approvals: &[ApprovalScore],
    ) -> Vec<CaseScore> {
        findings
            .iter()
            .map(|finding| {
                let found = case_of(ids.get(&finding.name), cases);
                let summary = found.map(Case::summary);
                CaseScore {
                    finding: finding.name.clone(),
                    case_id: found.map(|c| c.id.to_string()),
                    playbook: found.map(|c| c.state.plan.playbook.clone()),
                    status: found.and_then(|c| c.state.status.map(|s| s.to_string())),
                    time_to_contain_ms: summary.as_ref().and_then(|s| s.time_to_contain_ms),
                    time_to_evidence_ms: found.and_then(time_to_evidence),
                    approval_wait_ms: found.map_or(0, |c| {
                        let id = c.id.to_string();
                        approvals
                            .iter()
                            .filter(|a| a.case_id == id)
                            .filter_map(|a| a.waited_ms)
                            .sum()
                    }),
                    step_retries: found.map_or(0, step_retries),
                    rollback_status: found
                        .and_then(|c| rollback_status.get(&c.id.to_string()).cloned()),
                }
            })
            .collect()
    }

    /// Each case's steps on the timeline (one bar per case when there are many).
    fn case_timeline(
        &mut self,
        findings: &[NamedFinding<'_>],
        ids: &BTreeMap<String, String>,
        cases: &[Case],
        contain_started: u64,
        contain_ended: u64,
    ) {
        let offset = |at: &str| -> Option<u64> {
            let t = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                .ok()?;
            u64::try_from((t - self.started_at).whole_milliseconds()).ok()
        };
        let detailed = findings.len() <= 5;
        for finding in findings {
            let Some(Case { state, records, .. }) = case_of(ids.get(&finding.name), cases) else {
                continue;
            };
            if !detailed {
                let start = records
                    .first()
                    .and_then(|r| offset(&r.at))
                    .unwrap_or(contain_started);
                let end = records
                    .last()
                    .and_then(|r| offset(&r.at))
                    .unwrap_or(contain_ended);
                self.timeline.push(TimelineEntry {
                    section: "cases".to_string(),
                    label: finding.name.clone(),
                    start_ms: start,
                    end_ms: end,
                    critical: state.status.map(|s| s.to_string()) != Some("completed".to_string()),
                });
                continue;
            }
            let mut open: BTreeMap<&str, u64> = BTreeMap::new();
            for record in records {
                let Some(at) = offset(&record.at) else {
                    continue;
                };
                let (step, end, critical) = match &record.event {
                    JournalEvent::StepPrepared { step, .. }
                    | JournalEvent::ApprovalRequested { step, .. } => {
                        open.entry(step.as_str()).or_insert(at);
                        continue;
                    }
                    JournalEvent::StepVerified { step, .. }
                    | JournalEvent::StepSkipped { step, .. } => (step, at, false),
                    JournalEvent::StepFailed {
                        step,
                        retrying: false,
                        ..
                    }
                    | JournalEvent::ApprovalRefused { step, .. }
                    | JournalEvent::ApprovalTimedOut { step, .. } => (step, at, true),
                    _ => continue,
                };
                let start = open.remove(step.as_str()).unwrap_or(at);
                self.timeline.push(TimelineEntry {
                    section: finding.name.clone(),
                    label: step.clone(),
                    start_ms: start,
                    end_ms: end,
                    critical,
                });
            }
        }
    }
}

/// One case of the Game Day: its id, its folded state and its records.
struct Case {
    id: CaseId,
    state: CaseState,
    records: Vec<JournalRecord>,
}

impl Case {
    fn summary(&self) -> cordon_core::summary::CaseSummary {
        summarize(&self.state, &self.records)
    }
}

/// The managed deny-all policy `quarantine-user` attaches, as a deployment
/// of cordon has it (`cordon policy --quarantine-policy`): used as it is
/// when the account has it; otherwise created, tagged with the run's owner
/// and journaled like every creation, so cleanup deletes it again.
async fn ensure_quarantine_policy(
    clients: &AwsClients,
    caller: &Caller,
    owner: &str,
    journal: &CreationJournal,
) -> Result<(), FixtureError> {
    let arn = format!(
        "arn:{}:iam::{}:policy{CORDON_IAM_PATH}{QUARANTINE_POLICY_NAME}",
        caller.partition, caller.account
    );
    match clients.iam.get_policy().policy_arn(&arn).send().await {
        Ok(_) => return Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) => {}
        Err(e) => return Err(aws("iam:GetPolicy", &arn)(e)),
    }
    let tag = aws_sdk_iam::types::Tag::builder()
        .key(OWNER_TAG)
        .value(owner)
        .build()
        .map_err(|source| FixtureError::Request {
            operation: "iam:CreatePolicy",
            resource: QUARANTINE_POLICY_NAME.to_string(),
            source,
        })?;
    journal
        .intend(
            ResourceKind::ManagedPolicy,
            QUARANTINE_POLICY_NAME,
            Some(&arn),
        )
        .await?;
    let document = serde_json::to_string(&quarantine_policy()).unwrap_or_default();
    let out = clients
        .iam
        .create_policy()
        .path(CORDON_IAM_PATH)
        .policy_name(QUARANTINE_POLICY_NAME)
        .policy_document(document)
        .tags(tag)
        .send()
        .await
        .map_err(aws("iam:CreatePolicy", QUARANTINE_POLICY_NAME))?;
    let created = out.policy().and_then(|p| p.arn()).unwrap_or(&arn);
    journal
        .created(ResourceKind::ManagedPolicy, created)
        .await?;
    Ok(())
}

/// Every case in `journal` with its state, oldest first.
async fn load_cases(journal: &LocalJournal) -> Result<Vec<Case>, GamedayError> {
    let ids = journal
        .cases()
        .await
        .map_err(|source| GamedayError::Journal {
            case: "(all)".to_string(),
            source: Box::new(source),
        })?;
    let mut cases = Vec::new();
    for case in ids {
        let records = journal
            .load(&case)
            .await
            .map_err(|source| GamedayError::Journal {
                case: case.to_string(),
                source: Box::new(source),
            })?;
        let state =
            CaseState::from_records(&case, &records).map_err(|source| GamedayError::Journal {
                case: case.to_string(),
                source: Box::new(source),
            })?;
        cases.push(Case {
            id: case,
            state,
            records,
        });
    }
    cases.sort_by(|a, b| a.state.opened_at.cmp(&b.state.opened_at));
    Ok(cases)
}

/// Every journal under `state_dir` as it is now; a journal being written
/// (a half line) is skipped until the next look.
async fn read_journals(journal: &LocalJournal) -> Vec<(CaseId, Vec<JournalRecord>)> {
    let Ok(ids) = journal.cases().await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for case in ids {
        if let Ok(records) = journal.load(&case).await {
            out.push((case, records));
        }
    }
    out
}

/// The description of `fault` when its moment has come in the journals.
fn fault_due(
    fault: &ProcessFault,
    finding_id: Option<&str>,
    journals: &[(CaseId, Vec<JournalRecord>)],
) -> Option<String> {
    let (case, records) = journals.iter().find(|(_, records)| {
        records.iter().any(|r| match &r.event {
            JournalEvent::CaseOpened { plan, .. } => {
                finding_id.is_none_or(|id| plan.finding.id == id)
            }
            _ => false,
        })
    })?;
    match fault {
        ProcessFault::KillAtRecord { record, .. } => {
            let last = records.last().map_or(0, |r| r.seq);
            (last >= *record).then(|| {
                format!(
                    "SIGKILL at journal record {record} of case {case} (journal at record {last})"
                )
            })
        }
        ProcessFault::SigtermInIsolationPhase1 { .. } => {
            let last = records.last().map_or(0, |r| r.seq);
            records
                .iter()
                .any(|r| match &r.event {
                    JournalEvent::StepProgress { progress, .. } => {
                        progress.get("phase").and_then(Value::as_str) == Some(PHASE_UNTRACK_BEGUN)
                    }
                    _ => false,
                })
                .then(|| {
                    format!(
                        "SIGTERM during isolation phase 1 of case {case} (journal at record {last})"
                    )
                })
        }
    }
}

fn case_of<'c>(finding_id: Option<&String>, cases: &'c [Case]) -> Option<&'c Case> {
    let id = finding_id?;
    cases.iter().find(|c| &c.state.plan.finding.id == id)
}

/// The finding's id and its JSON, built from the provisioned ids.
fn finding_json(
    fixture: &Fixture,
    finding: &NamedFinding<'_>,
) -> Result<(String, Value), FixtureError> {
    let spec = finding.spec;
    if let Some(instance) = &finding.instance {
        let mut f = fixture.instance_finding(instance)?;
        if let Some(t) = &spec.finding_type {
            f.finding_type.clone_from(t);
        }
        if let Some(s) = spec.severity {
            f.severity = s;
        }
        return Ok((f.finding_id(), f.to_json(spec.eventbridge)));
    }
    let mut f = if let Some(user) = &spec.user {
        match spec.credentials {
            Credentials::LongTerm => fixture.access_key_finding(user)?,
            Credentials::Temporary => {
                let record = fixture.user(user)?;
                fixture.key_finding(
                    &session_key_id(&format!("user:{}", record.name)),
                    Some(&record.name),
                    "IAMUser",
                )
            }
        }
    } else if let Some(role) = &spec.role {
        let record = fixture
            .roles
            .get(role)
            .ok_or_else(|| FixtureError::Unknown {
                kind: "role",
                name: role.clone(),
            })?;
        fixture.key_finding(
            &session_key_id(&format!("role:{}", record.name)),
            Some(&record.name),
            "AssumedRole",
        )
    } else {
        return Err(FixtureError::Unknown {
            kind: "finding subject",
            name: finding.name.clone(),
        });
    };
    if let Some(t) = &spec.finding_type {
        f.finding_type.clone_from(t);
    }
    if let Some(s) = spec.severity {
        f.severity = s;
    }
    let json = if spec.eventbridge {
        f.event()
    } else {
        f.detail()
    };
    Ok((f.finding_id(), json))
}

/// Whether every ENI is in exactly one group that has no rule.
async fn isolated(
    clients: &AwsClients,
    enis: Vec<String>,
    contained: &Value,
) -> Result<(bool, String), FixtureError> {
    let mut groups = BTreeSet::new();
    let mut alone = true;
    for eni in &enis {
        let on: Vec<String> = contained["network-interfaces"][eni]["groups"]
            .as_array()
            .map(|g| {
                g.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        alone &= on.len() == 1;
        groups.extend(on);
    }
    if groups.is_empty() {
        return Ok((false, "no interface found".to_string()));
    }
    let ids: Vec<String> = groups.into_iter().collect();
    let out = clients
        .ec2
        .describe_security_groups()
        .filters(
            Filter::builder()
                .name("group-id")
                .set_values(Some(ids.clone()))
                .build(),
        )
        .send()
        .await
        .map_err(aws("ec2:DescribeSecurityGroups", &ids.join(", ")))?;
    let mut open = Vec::new();
    for group in out.security_groups() {
        if !group.ip_permissions().is_empty() || !group.ip_permissions_egress().is_empty() {
            open.push(group.group_name().unwrap_or_default().to_string());
        }
    }
    let detail = if open.is_empty() {
        format!("{} interface(s) in {}", enis.len(), ids.join(", "))
    } else {
        format!("groups with rules: {}", open.join(", "))
    };
    Ok((alone && open.is_empty(), detail))
}

/// Policies (inline names, attached ARNs) on `after` that `before` lacks.
fn policies_added(before: &Value, after: &Value) -> Vec<String> {
    let names = |v: &Value, key: &str| -> BTreeSet<String> {
        match &v[key] {
            Value::Object(map) => map.keys().cloned().collect(),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect(),
            _ => BTreeSet::new(),
        }
    };
    let mut added = Vec::new();
    for key in ["inline-policies", "attached-policies"] {
        let had = names(before, key);
        added.extend(names(after, key).into_iter().filter(|p| !had.contains(p)));
    }
    added
}

/// Resources before and after, and every field that differs.
fn rollback_fidelity(before: &Value, after: &Value) -> RollbackScore {
    let differences = diff_states(before, after);
    let mut resources = 0;
    let mut restored = 0;
    if let Value::Object(kinds) = before {
        for (kind, items) in kinds {
            let Value::Object(items) = items else {
                continue;
            };
            for name in items.keys() {
                resources += 1;
                let path = format!("$.{kind}.{name}");
                let differs = differences.iter().any(|d| {
                    d.strip_prefix(&path).is_some_and(|rest| {
                        rest.starts_with('.') || rest.starts_with(':') || rest.starts_with('[')
                    })
                });
                restored += usize::from(!differs);
            }
        }
    }
    RollbackScore {
        resources,
        restored,
        differences,
    }
}

/// Case opened to its last evidence step verified.
fn time_to_evidence(case: &Case) -> Option<u64> {
    let state = &case.state;
    let evidence: BTreeSet<&str> = state
        .plan
        .steps
        .iter()
        .filter(|s| s.kind().preserves_evidence())
        .map(|s| s.id.as_str())
        .collect();
    if evidence.is_empty()
        || !evidence
            .iter()
            .all(|s| state.steps.get(*s).is_some_and(|s| s.verified))
    {
        return None;
    }
    let records = &case.records;
    let opened = parse_time(&state.opened_at)?;
    records
        .iter()
        .filter_map(|r| match &r.event {
            JournalEvent::StepVerified { step, .. } if evidence.contains(step.as_str()) => {
                parse_time(&r.at)
            }
            _ => None,
        })
        .max()
        .and_then(|t| u64::try_from((t - opened).whole_milliseconds()).ok())
}

fn parse_time(at: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()
}

/// Step attempts that failed and were retried.
fn step_retries(case: &Case) -> u64 {
    case.records
        .iter()
        .filter(|r| matches!(r.event, JournalEvent::StepFailed { retrying: true, .. }))
        .count() as u64
}

/// Every approval request of every case and its answer.
fn approval_scores(cases: &[Case]) -> Vec<ApprovalScore> {
    let mut out = Vec::new();
    for Case {
        id: case, records, ..
    } in cases
    {
        let mut asked: BTreeMap<&str, &str> = BTreeMap::new();
        for record in records {
            let (step, answer) = match &record.event {
                JournalEvent::ApprovalRequested { step, .. } => {
                    asked.insert(step, &record.at);
                    continue;
                }
                JournalEvent::ApprovalGranted { step, .. } => (step, "granted"),
                JournalEvent::ApprovalRefused { step, .. } => (step, "refused"),
                JournalEvent::ApprovalTimedOut { step, waited_ms } => {
                    asked.remove(step.as_str());
                    out.push(ApprovalScore {
                        case_id: case.to_string(),
                        step: step.clone(),
                        answer: "timed-out".to_string(),
                        waited_ms: Some(*waited_ms),
                    });
                    continue;
                }
                _ => continue,
            };
            let waited_ms = asked.remove(step.as_str()).and_then(|from| {
                let (a, b) = (parse_time(from)?, parse_time(&record.at)?);
                u64::try_from((b - a).whole_milliseconds()).ok()
            });
            out.push(ApprovalScore {
                case_id: case.to_string(),
                step: step.clone(),
                answer: answer.to_string(),
                waited_ms,
            });
        }
        for step in asked.keys() {
            out.push(ApprovalScore {
                case_id: case.to_string(),
                step: (*step).to_string(),
                answer: "unanswered".to_string(),
                waited_ms: None,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fidelity_counts_resources_with_any_differing_field() {
        let before = json!({
            "instances": {"web": {"p": true}, "db": {"p": true}},
            "network-interfaces": {"eni-1": {"groups": ["sg-1"]}},
        });
        let after = json!({
            "instances": {"web": {"p": false}, "db": {"p": true}},
            "network-interfaces": {"eni-1": {"groups": ["sg-1"]}},
        });
        let score = rollback_fidelity(&before, &after);
        assert_eq!((score.resources, score.restored), (3, 2));
        assert_eq!(score.differences, vec!["$.instances.web.p: true -> false"]);
    }

    #[test]
    fn added_policies_are_named() {
        let before = json!({"inline-policies": {"a": {}}, "attached-policies": []});
        let after = json!({"inline-policies": {"a": {}, "AWSRevokeOlderSessions": {}}, "attached-policies": ["arn:x"]});
        assert_eq!(
            policies_added(&before, &after),
            vec!["AWSRevokeOlderSessions", "arn:x"]
        );
        assert!(policies_added(&before, &before).is_empty());
    }
}
