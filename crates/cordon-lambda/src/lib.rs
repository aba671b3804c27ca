//! cordon's Step Functions task (see `docs/step-functions.md`): one Lambda
//! invocation per task, stateless, over the S3 journal and its lease, so a
//! retried or overlapping invocation is idempotent. Four modes: `plan` opens
//! the case, `step` runs one step, `decide` asks a human through SNS for an
//! approval-gated step, `rollback` undoes the case. Business outcomes are in
//! the output; errors carry stable names ([`ErrorName`]) that the state
//! machine's Retry and Catch match.

mod errors;
mod members;

use std::time::Duration;

use cordon_aws::accounts::{CrossAccount, DEFAULT_RESPONDER_ROLE, Scope};
use cordon_aws::actions::AwsActions;
use cordon_aws::client::AwsClients;
use cordon_aws::evidence::{EvidenceStore, case_key, get_s3, put_s3};
use cordon_aws::pause::PauseSwitches;
use cordon_aws::s3_journal::S3Journal;
use cordon_core::executor::{
    Approver, Decision, ExecError, Executor, FleetCap, LoopGuard, Outcome, PartReport, Report,
};
use cordon_core::finding::parse_single_finding;
use cordon_core::journal::{CaseState, CaseStatus, JournalStore, StepState};
use cordon_core::plan::{CaseId, FindingSummary, Plan, PlannedStep, try_plan};
use cordon_core::playbook::OnFailure;
use cordon_core::provenance::Provenance;
use cordon_core::route::{Route, route};
use cordon_core::validate::{LoadedPlaybook, load_playbook_texts, set_digest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use errors::{ErrorName, TaskError};

/// Where the finding as received is kept, beside the case's journal, so the
/// `store-evidence` step (a later invocation) can keep it byte for byte.
const RECEIVED_FINDING: &str = "received/finding.json";

/// The handler's settings, from the Lambda's environment (the CLI's names).
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub journal_bucket: String,
    /// Key prefix before the case id (`cases/`), for the journal and evidence.
    pub journal_prefix: String,
    /// Evidence bucket; the journal's bucket when unset.
    pub evidence_bucket: Option<String>,
    pub evidence_signing_key: Option<String>,
    pub notify_topic: Option<String>,
    pub approval_topic: Option<String>,
    pub pause_parameter: Option<String>,
    pub protected_tag: String,
    pub fleet_cap: Option<FleetCap>,
    pub loop_guard: Option<LoopGuard>,
    /// The role assumed in a finding's account when it is not the Lambda's
    /// own (`CORDON_ASSUME_ROLE_NAME`, `CORDON_EXTERNAL_ID`): what
    /// `infra/member-account.yaml` deploys.
    pub cross_account: CrossAccount,
}

impl Config {
    /// Reads `CORDON_*` (see the docs' environment table); a missing or
    /// malformed required setting is named in the error.
    pub fn from_env() -> Result<Config, TaskError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// [`Config::from_env`] over any lookup (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, TaskError> {
        let journal = get("CORDON_JOURNAL").ok_or_else(|| {
            TaskError::new(
                ErrorName::InvalidFinding,
                "CORDON_JOURNAL is not set: set it to s3://BUCKET/PREFIX",
            )
        })?;
        let (bucket, prefix) = parse_s3_url(&journal)?;
        let number = |name: &str, default: u64| -> Result<u64, TaskError> {
            match get(name) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| {
                    TaskError::new(
                        ErrorName::InvalidFinding,
                        format!("{name} is `{v}`, not a whole number"),
                    )
                }),
            }
        };
        let fleet_max = number("CORDON_FLEET_CAP_MAX", 20)?;
        let fleet_window = number("CORDON_FLEET_CAP_WINDOW", 600)?;
        let loop_max = number("CORDON_LOOP_GUARD_MAX", 3)?;
        let loop_window = number("CORDON_LOOP_GUARD_WINDOW", 24 * 3600)?;
        Ok(Config {
            journal_bucket: bucket,
            journal_prefix: prefix,
            evidence_bucket: get("CORDON_EVIDENCE_BUCKET"),
            evidence_signing_key: get("CORDON_EVIDENCE_SIGNING_KEY"),
            notify_topic: get("CORDON_NOTIFY_TOPIC_ARN"),
            approval_topic: get("CORDON_APPROVAL_TOPIC_ARN"),
            pause_parameter: get("CORDON_PAUSE_PARAMETER"),
            protected_tag: get("CORDON_PROTECTED_TAG")
                .unwrap_or_else(|| cordon_aws::protected::DEFAULT_PROTECTED_TAG.to_string()),
            fleet_cap: (fleet_max > 0).then(|| FleetCap {
                max_instances: u32::try_from(fleet_max).unwrap_or(u32::MAX),
                window: Duration::from_secs(fleet_window),
            }),
            loop_guard: (loop_max > 0).then(|| LoopGuard {
                max_triggers: u32::try_from(loop_max).unwrap_or(u32::MAX),
                window: Duration::from_secs(loop_window),
            }),
            cross_account: CrossAccount {
                role_name: get("CORDON_ASSUME_ROLE_NAME")
                    .unwrap_or_else(|| DEFAULT_RESPONDER_ROLE.to_string()),
                external_id: get("CORDON_EXTERNAL_ID"),
            },
        })
    }
}

/// `s3://BUCKET/PREFIX` as (bucket, prefix ending in `/` unless empty).
fn parse_s3_url(url: &str) -> Result<(String, String), TaskError> {
    let bad = || {
        TaskError::new(
            ErrorName::InvalidFinding,
            format!("CORDON_JOURNAL is `{url}`, not s3://BUCKET/PREFIX"),
        )
    };
    let rest = url.strip_prefix("s3://").ok_or_else(bad)?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad());
    }
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    Ok((bucket.to_string(), prefix))
}

/// One task's input, as the generated state machine sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TaskInput {
    #[serde(rename_all = "kebab-case")]
    Plan {
        finding: Value,
        playbook: Option<String>,
        playbook_set: Option<String>,
    },
    #[serde(rename_all = "kebab-case")]
    Step {
        case_id: String,
        step: String,
        playbook_set: Option<String>,
    },
    #[serde(rename_all = "kebab-case")]
    Decide {
        case_id: String,
        step: String,
        task_token: Option<String>,
        #[serde(default)]
        timed_out: bool,
    },
    #[serde(rename_all = "kebab-case")]
    Rollback {
        case_id: String,
        reason: Option<String>,
    },
}

/// A step of the plan, as the `plan` task returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StepSummary {
    pub id: String,
    pub action: String,
    pub needs: Vec<String>,
    pub approval: bool,
    pub contains: bool,
    pub on_failure: OnFailure,
}

/// One task's output (`format-version: 1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TaskOutput {
    pub format_version: u32,
    pub case_id: String,
    /// The case status as `cordon status` names it (`running` while steps remain).
    pub status: String,
    pub outcome: String,
    pub exit_code: u8,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playbook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playbook_set: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepSummary>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_status: Option<String>,
    /// Where the state machine's Choice goes: `continue`, `rollback`, `stop`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl TaskOutput {
    fn of(report: &PartReport) -> Self {
        TaskOutput {
            format_version: 1,
            case_id: report.case_id.to_string(),
            status: report
                .status
                .map_or_else(|| "running".to_string(), |s| s.to_string()),
            outcome: report.outcome.to_string(),
            exit_code: report.outcome.exit_code(),
            message: report.message.clone(),
            playbook: None,
            playbook_set: None,
            steps: None,
            step: None,
            step_status: None,
            next: None,
        }
    }

    fn of_report(report: &Report) -> Self {
        TaskOutput::of(&PartReport {
            case_id: report.case_id.clone(),
            status: Some(report.status),
            outcome: report.outcome,
            no_op: report.no_op,
            message: report.message.clone(),
            step: None,
        })
    }
}

/// Approvals in the Lambda come only from the journal (`cordon approve
/// --task-token` writes them); the executor re-checks each against the
/// step's `approvers:`. Without one, a step waits; `decide` with
/// `timed-out` answers that nobody came.
#[derive(Debug, Clone, Copy)]
struct JournalApprovals {
    timed_out: bool,
}

impl Approver for JournalApprovals {
    async fn decide(&self, _plan: &Plan, _step: &PlannedStep) -> Decision {
        if self.timed_out {
            Decision::TimedOut {
                waited: Duration::ZERO,
            }
        } else {
            Decision::Pending
        }
    }
}

/// The handler: clients, journal and playbooks built once per container.
#[derive(Debug)]
pub struct Handler {
    clients: AwsClients,
    /// The Lambda's own identity, (account, ARN) (STS, once per container).
    own_identity: tokio::sync::OnceCell<(String, String)>,
    journal: S3Journal,
    /// Where evidence goes, with the Lambda's own credentials, whichever
    /// account a case acts in: the bucket is the responders'.
    evidence: EvidenceStore,
    /// The actions of a case in the Lambda's own account and region.
    actions: AwsActions,
    /// The actions of cases in other accounts or regions, per (partition,
    /// account, region), bounded.
    members: members::MemberActions,
    playbooks: Vec<LoadedPlaybook>,
    set: String,
    config: Config,
}

impl Handler {
    /// Loads the embedded playbooks (refusing an invalid set) and wires the
    /// journal, evidence store and actions on `clients`.
    pub fn new(clients: AwsClients, config: Config) -> Result<Handler, TaskError> {
        Self::with_playbooks(clients, config, cordon_playbooks::EMBEDDED)
    }

    /// [`Handler::new`] with another playbook set (`(file name, YAML)` pairs):
    /// tests of playbook features the shipped set does not use (`approvers:`).
    pub fn with_playbooks(
        clients: AwsClients,
        config: Config,
        texts: &[(&str, &str)],
    ) -> Result<Handler, TaskError> {
        let playbooks = load_playbook_texts("embedded", texts).map_err(|problems| {
            TaskError::new(
                ErrorName::PlaybookSetMismatch,
                format!(
                    "the embedded playbooks have {} problem(s), the first: {}",
                    problems.len(),
                    problems.first().map(|p| p.to_string()).unwrap_or_default()
                ),
            )
        })?;
        let set = set_digest(&playbooks);
        let evidence = EvidenceStore::S3 {
            clients: Box::new(clients.clone()),
            bucket: config
                .evidence_bucket
                .clone()
                .unwrap_or_else(|| config.journal_bucket.clone()),
            prefix: config.journal_prefix.clone(),
            kms_key: None,
            retention: false,
            signing_key: config.evidence_signing_key.clone(),
        };
        let actions = AwsActions::new(clients.clone(), evidence.clone())
            .with_notify_topic(config.notify_topic.clone());
        let journal = S3Journal::new(
            clients.clone(),
            config.journal_bucket.clone(),
            config.journal_prefix.clone(),
        );
        Ok(Handler {
            clients,
            own_identity: tokio::sync::OnceCell::new(),
            journal,
            evidence,
            actions,
            members: members::MemberActions::default(),
            playbooks,
            set,
            config,
        })
    }

    /// The same handler with leases of `lease` (tests: a crashed worker's
    /// case taken over in seconds).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.journal = self.journal.with_lease(lease);
        self
    }

    /// The embedded set's hash, as plans and state machines pin it.
    pub fn playbook_set(&self) -> &str {
        &self.set
    }

    /// Runs one task; `input` is the task's JSON.
    pub async fn handle(&self, input: Value) -> Result<TaskOutput, TaskError> {
        let input: TaskInput = serde_json::from_value(input).map_err(|e| {
            TaskError::new(
                ErrorName::InvalidFinding,
                format!("the task input is not a cordon task: {e}"),
            )
        })?;
        match input {
            TaskInput::Plan {
                finding,
                playbook,
                playbook_set,
            } => {
                self.check_set(playbook_set.as_deref())?;
                // Boxed: the engine's futures are large; a task's stack stays small.
                Box::pin(self.plan(&finding, playbook.as_deref())).await
            }
            TaskInput::Step {
                case_id,
                step,
                playbook_set,
            } => {
                self.check_set(playbook_set.as_deref())?;
                Box::pin(self.step(&parse_case(&case_id)?, &step)).await
            }
            TaskInput::Decide {
                case_id,
                step,
                task_token,
                timed_out,
            } => {
                Box::pin(self.decide(
                    &parse_case(&case_id)?,
                    &step,
                    task_token.as_deref(),
                    timed_out,
                ))
                .await
            }
            TaskInput::Rollback { case_id, reason } => {
                let case = parse_case(&case_id)?;
                let reason = reason.unwrap_or_else(|| "the state machine rolled back".to_string());
                let state = self.case_state(&case).await?;
                let (actions, _) = self.case_actions(&state.plan.finding).await?;
                let approvals = JournalApprovals { timed_out: false };
                let report = Box::pin(self.executor(&actions, &approvals).rollback(&case, &reason))
                    .await
                    .map_err(errors::exec_error)?;
                Ok(TaskOutput::of_report(&report))
            }
        }
    }

    fn check_set(&self, pinned: Option<&str>) -> Result<(), TaskError> {
        match pinned {
            Some(pinned) if pinned != self.set => Err(TaskError::new(
                ErrorName::PlaybookSetMismatch,
                format!(
                    "the state machine pins playbook set {pinned} but this Lambda embeds {}: regenerate the state machine (`cordon export-asl`) or deploy the matching Lambda",
                    self.set
                ),
            )),
            _ => Ok(()),
        }
    }

    fn executor<'a>(
        &'a self,
        actions: &'a AwsActions,
        approvals: &'a JournalApprovals,
    ) -> Executor<'a, AwsActions, S3Journal, JournalApprovals> {
        Executor::new(actions, &self.journal, approvals)
    }

    fn pause(&self) -> Option<PauseSwitches> {
        self.config
            .pause_parameter
            .as_ref()
            .map(|name| PauseSwitches {
                // No file switch in a Lambda: the parameter is the one switch.
                file: std::path::PathBuf::from("/nonexistent/cordon-pause"),
                parameter: Some((self.clients.clone(), name.clone())),
            })
    }

    /// The Lambda's own (account, ARN), asked of STS once per container.
    async fn own_identity(&self) -> Result<&(String, String), TaskError> {
        self.own_identity
            .get_or_try_init(|| cordon_aws::accounts::caller_identity(&self.clients))
            .await
            .map_err(|e| errors::account_error(&e))
    }

    /// The actions a case on `finding` acts through, and as whom: the
    /// Lambda's own in its own account and region; in another region, the
    /// Lambda's credentials there; in another account, the responder role
    /// assumed there (names such as an IAM role's are not unique across
    /// accounts: acting with the Lambda's own would touch the wrong one).
    /// `finding` is the plan's, from the finding (`plan`) or the case's
    /// journal (every later task), never from a task input.
    async fn case_actions(
        &self,
        finding: &FindingSummary,
    ) -> Result<(AwsActions, Scope), TaskError> {
        let (own_account, own_arn) = self.own_identity().await?;
        if finding.account_id == *own_account && finding.region == self.clients.region {
            let scope = Scope {
                account: own_account.clone(),
                region: finding.region.clone(),
                caller: own_arn.clone(),
                assumed_role: None,
                acting_as: own_arn.clone(),
            };
            return Ok((self.actions.clone(), scope));
        }
        let key = members::Key {
            partition: finding.partition.clone(),
            account: finding.account_id.clone(),
            region: finding.region.clone(),
        };
        if let Some(hit) = self.members.get(&key) {
            return Ok(hit);
        }
        let (clients, scope) = cordon_aws::accounts::acting_clients(
            &self.clients,
            &finding.partition,
            &finding.account_id,
            &finding.region,
            &self.config.cross_account,
            members::SESSION_NAME,
        )
        .await
        .map_err(|e| errors::account_error(&e))?;
        let actions = AwsActions::new(clients, self.evidence.clone())
            .with_notify_topic(self.config.notify_topic.clone());
        self.members.insert(key, actions.clone(), scope.clone());
        Ok((actions, scope))
    }

    /// The case's journaled state: its plan says where the case acts.
    async fn case_state(&self, case: &CaseId) -> Result<CaseState, TaskError> {
        let records = self
            .journal
            .load(case)
            .await
            .map_err(|e| errors::exec_error(e.into()))?;
        CaseState::from_records(case, &records).map_err(|e| errors::exec_error(e.into()))
    }

    async fn plan(&self, event: &Value, pinned: Option<&str>) -> Result<TaskOutput, TaskError> {
        let text = event.to_string();
        let finding = parse_single_finding(&text, "the task's finding")
            .map_err(|e| TaskError::new(ErrorName::InvalidFinding, e.to_string()))?;
        let playbooks: Vec<_> = self.playbooks.iter().map(|l| l.playbook.clone()).collect();
        let (routed, playbook) = route(&finding, &playbooks);
        let (Route::Matched { reason, .. }, Some(playbook)) = (routed, playbook) else {
            return Err(TaskError::new(
                ErrorName::InvalidFinding,
                match finding.nothing_to_do() {
                    Some(why) => format!("finding {}: {why}", finding.id),
                    None => format!(
                        "no shipped playbook answers finding {} (type {}, severity {}): nothing to run",
                        finding.id, finding.finding_type, finding.severity
                    ),
                },
            ));
        };
        if let Some(pinned) = pinned
            && pinned != playbook.name
        {
            return Err(TaskError::new(
                ErrorName::InvalidFinding,
                format!(
                    "finding {} routes to playbook `{}`, not `{pinned}` that this state machine runs",
                    finding.id, playbook.name
                ),
            ));
        }
        let mut plan = try_plan(&finding, playbook, reason)
            .map_err(|e| TaskError::new(ErrorName::InvalidFinding, e.to_string()))?;
        plan.playbook_set = Some(cordon_core::plan::PlaybookSet {
            origin: "embedded".to_string(),
            sha256: self.set.clone(),
        });
        let (actions, scope) = self.case_actions(&plan.finding).await?;
        let protected = cordon_aws::protected::protected_resources(
            &actions.clients,
            &plan,
            &self.config.protected_tag,
        )
        .await
        .map_err(|e| errors::of_error(&e))?;
        plan.protect(&protected);
        self.keep_finding(&plan.case_id, &finding.raw).await?;
        let approvals = JournalApprovals { timed_out: false };
        let pause = self.pause();
        let provenance = Provenance {
            source_verified: false,
            source: None,
            caller: Some(scope.caller),
            assumed_role: scope.assumed_role,
            acting_as: Some(scope.acting_as),
            region: Some(scope.region),
        };
        let mut executor = self
            .executor(&actions, &approvals)
            .loop_guard(self.config.loop_guard)
            .fleet_cap(self.config.fleet_cap)
            .provenance(Some(provenance));
        if let Some(pause) = &pause {
            executor = executor.pause_switch(pause);
        }
        let report = executor
            .open_case(&plan, &finding.raw)
            .await
            .map_err(errors::exec_error)?;
        let mut output = TaskOutput::of(&report);
        output.playbook = Some(plan.playbook.clone());
        output.playbook_set = Some(self.set.clone());
        output.steps = Some(
            plan.steps
                .iter()
                .map(|s| StepSummary {
                    id: s.id.clone(),
                    action: s.kind().to_string(),
                    needs: plan.needs(s).into_iter().map(str::to_string).collect(),
                    approval: s.approval.required,
                    contains: s.kind().contains(),
                    on_failure: s.on_failure,
                })
                .collect(),
        );
        Ok(output)
    }

    /// Keeps the finding as received beside the journal (once per content:
    /// the bucket is versioned, so a changed finding adds a version).
    async fn keep_finding(&self, case: &CaseId, raw: &str) -> Result<(), TaskError> {
        let key = case_key(&self.config.journal_prefix, case, RECEIVED_FINDING);
        put_s3(
            &self.clients,
            &self.config.journal_bucket,
            &key,
            raw.as_bytes().to_vec(),
            None,
        )
        .await
        .map_err(|e| errors::action_error(&e))?;
        Ok(())
    }

    async fn received_finding(&self, case: &CaseId) -> Option<String> {
        let key = case_key(&self.config.journal_prefix, case, RECEIVED_FINDING);
        let bytes = get_s3(&self.clients, &self.config.journal_bucket, &key, None)
            .await
            .ok()?;
        String::from_utf8(bytes).ok()
    }

    async fn step(&self, case: &CaseId, step: &str) -> Result<TaskOutput, TaskError> {
        let state = self.case_state(case).await?;
        let (actions, _) = self.case_actions(&state.plan.finding).await?;
        let actions = match self.received_finding(case).await {
            Some(raw) => actions.with_finding_raw(case.clone(), raw),
            None => actions,
        };
        let approvals = JournalApprovals { timed_out: false };
        let pause = self.pause();
        let mut executor = self.executor(&actions, &approvals);
        if let Some(pause) = &pause {
            executor = executor.pause_switch(pause);
        }
        match executor.run_step(case, step).await {
            Ok(report) => Ok(step_output(&report, step)),
            // The journal holds an approval by someone the playbook does not
            // allow: the step waits for an allowed one.
            Err(e @ ExecError::NotAnApprover { .. }) => Ok(TaskOutput {
                step: Some(step.to_string()),
                step_status: Some("awaiting-approval".to_string()),
                next: Some("stop".to_string()),
                ..TaskOutput::of(&PartReport {
                    case_id: case.clone(),
                    status: Some(CaseStatus::AwaitingApproval),
                    outcome: Outcome::AwaitingDecision,
                    no_op: false,
                    message: e.to_string(),
                    step: None,
                })
            }),
            Err(e) => Err(errors::exec_error(e)),
        }
    }

    async fn decide(
        &self,
        case: &CaseId,
        step: &str,
        token: Option<&str>,
        timed_out: bool,
    ) -> Result<TaskOutput, TaskError> {
        if token.is_none() && !timed_out {
            return Err(TaskError::new(
                ErrorName::InvalidFinding,
                format!(
                    "decide on step `{step}` of case {case} needs `task-token` or `timed-out: true`"
                ),
            ));
        }
        let state = self.case_state(case).await?;
        let Some(planned) = state.plan.step(step).cloned() else {
            return Err(errors::exec_error(ExecError::UnknownStep {
                case: case.clone(),
                step: step.to_string(),
            }));
        };
        if !planned.approval.required {
            return Err(errors::exec_error(ExecError::NoApprovalNeeded {
                case: case.clone(),
                step: step.to_string(),
            }));
        }
        // The step's own run asks the journal's approvals: none yet journals
        // that it waits (or, timed out, that nobody came and the case stops).
        let (actions, _) = self.case_actions(&state.plan.finding).await?;
        let approvals = JournalApprovals { timed_out };
        let report = self
            .executor(&actions, &approvals)
            .run_step(case, step)
            .await
            .map_err(errors::exec_error)?;
        if let Some(token) = token
            && report.outcome == Outcome::AwaitingDecision
        {
            self.publish_approval_request(case, &planned, token).await?;
        }
        let mut output = TaskOutput::of(&report);
        output.step = Some(step.to_string());
        Ok(output)
    }

    async fn publish_approval_request(
        &self,
        case: &CaseId,
        step: &PlannedStep,
        token: &str,
    ) -> Result<(), TaskError> {
        let Some(topic) = &self.config.approval_topic else {
            return Err(TaskError::new(
                ErrorName::NotFound,
                format!(
                    "step `{}` of case {case} needs approval but CORDON_APPROVAL_TOPIC_ARN is not set: set it to the approvers' SNS topic",
                    step.id
                ),
            ));
        };
        let message = approval_message(
            case,
            step,
            token,
            &self.config.journal_bucket,
            &self.config.journal_prefix,
        );
        let request = self
            .clients
            .sns
            .publish()
            .topic_arn(topic)
            .subject(format!("cordon: approve step {} of case {case}?", step.id))
            .message(message);
        self.clients
            .call(&cordon_aws::ops::SNS_PUBLISH, topic, request)
            .await
            .map_err(|e| errors::call_error(&e))?;
        Ok(())
    }
}

/// The approval request sent to the approvers: the case, the step, its blast
/// radius and the exact command lines; the token is the only secret in it.
pub fn approval_message(
    case: &CaseId,
    step: &PlannedStep,
    token: &str,
    bucket: &str,
    prefix: &str,
) -> String {
    let journal = format!("s3://{bucket}/{prefix}");
    let blast = step
        .blast_radius
        .clone()
        .unwrap_or_else(|| format!("{} only", step.target.label()));
    let reason = step.approval.reason.clone().unwrap_or_default();
    format!(
        "cordon case {case} waits for approval of step `{id}` ({action} on {target}).\n\
         Why approval: {reason}\n\
         Blast radius: {blast}\n\n\
         Approve:\n  cordon approve {case} {id} --task-token {token} --journal {journal}\n\
         Refuse:\n  cordon approve {case} {id} --refuse --reason 'WHY' --task-token {token} --journal {journal}\n\n\
         Token fingerprint (sha256 prefix): {fingerprint}\n",
        id = step.id,
        action = step.kind(),
        target = step.target.label(),
        fingerprint = token_fingerprint(token),
    )
}

/// A short SHA-256 prefix of a task token, for correlation without the secret.
pub fn token_fingerprint(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))[..12].to_string()
}

fn parse_case(text: &str) -> Result<CaseId, TaskError> {
    CaseId::parse(text).map_err(|e| {
        TaskError::new(
            ErrorName::InvalidFinding,
            format!("`case-id` is not a cordon case id: {e}"),
        )
    })
}

/// The `step` task's output: the step's status and where the machine goes.
fn step_output(report: &PartReport, step: &str) -> TaskOutput {
    let state = report.step.clone().unwrap_or_default();
    let step_status = step_status(&state, report.status);
    let next = match (step_status, report.status) {
        (
            _,
            Some(
                CaseStatus::RolledBack
                | CaseStatus::RollbackIncomplete
                | CaseStatus::RolledBackExceptCredentials,
            ),
        ) if state.failed_final.is_some() => "rollback",
        // A step failed with the case still going or completed: under `continue`.
        (
            "verified" | "skipped" | "failed",
            None
            | Some(
                CaseStatus::Completed
                | CaseStatus::CompletedWithFailures
                | CaseStatus::AwaitingApproval,
            ),
        ) => "continue",
        _ => "stop",
    };
    let mut output = TaskOutput::of(report);
    output.step = Some(step.to_string());
    output.step_status = Some(step_status.to_string());
    output.next = Some(next.to_string());
    output
}

fn step_status(state: &StepState, case: Option<CaseStatus>) -> &'static str {
    if state.verified {
        "verified"
    } else if state.done() {
        "skipped"
    } else if state.failed_final.is_some() {
        "failed"
    } else if state.approval_requested
        && state.approved_by.is_none()
        && state.refused_by.is_none()
        && !state.approval_timed_out
        && case == Some(CaseStatus::AwaitingApproval)
    {
        "awaiting-approval"
    } else {
        "not-run"
    }
}
