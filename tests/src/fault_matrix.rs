//! The fault matrix (issue 14): a shipped playbook run on the emulator once
//! cleanly, its call sequence recorded, then once per (fault kind,
//! operation, ordinal) of that sequence with that one fault injected
//! ([`cordon_aws::faults`]), and once per journal record with the process
//! killed right after it (the `cordon` binary's crash hook). Every run must
//! end in an allowed state ([`Ending`]), never leave an ENI in the allow-all
//! untrack group, never change anything whose pre-state is not journaled;
//! then resume or roll back to a clean end (contained, then exactly the
//! pre-state), and the evidence must verify.
//!
//! Fault runs drive the engine in-process (the executor, cordon's actions
//! and a local journal); kill runs need a process to kill, so they run the
//! `cordon` binary built with `crash-hooks`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use cordon_aws::actions::AwsActions;
use cordon_aws::client::AwsClients;
use cordon_aws::evidence::{EvidenceStore, sha256_hex};
use cordon_aws::faults::{
    FaultInjector, FaultKind, FaultPlan, FaultRule, FaultWhen, InjectedFault, operation_name,
};
use cordon_aws::manifest::{MANIFEST_NAME, Manifest};
use cordon_core::executor::{Executor, Report};
use cordon_core::finding::parse_single_finding;
use cordon_core::journal::{
    CaseState, CaseStatus, JournalEvent, JournalRecord, JournalStore, verify_chain,
};
use cordon_core::local_store::LocalJournal;
use cordon_core::plan::{Plan, plan};
use cordon_core::summary::summarize;
use cordon_gameday::{EnvironmentSpec, Fixture, diff_states, provision, snapshot_state};
use serde_json::{Value, json};

use crate::shipped::{LEAKED_USER, finding_for};
use crate::{
    ApproveAll, ApproveUndo, EmulatorGuard, create_quarantine_policy, scratch_dir,
    shipped_playbooks,
};

/// A shipped playbook under test, with the environment it acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// `ec2-compromised-high` on the Game Day's compromised web server.
    Ec2CompromisedHigh,
    /// `iam-user-key-compromised` on a user whose long-term key leaked.
    IamUserKeyCompromised,
}

impl Target {
    /// Both targets the issue names.
    pub const ALL: [Target; 2] = [Target::Ec2CompromisedHigh, Target::IamUserKeyCompromised];

    /// The shipped playbook's name.
    pub fn playbook(self) -> &'static str {
        match self {
            Target::Ec2CompromisedHigh => "ec2-compromised-high",
            Target::IamUserKeyCompromised => "iam-user-key-compromised",
        }
    }

    fn spec(self) -> EnvironmentSpec {
        match self {
            Target::Ec2CompromisedHigh => EnvironmentSpec::compromised_instance(),
            Target::IamUserKeyCompromised => serde_json::from_value(json!({
                "users": [{"name": LEAKED_USER, "access-keys": 1, "console-password": true}]
            }))
            .unwrap_or_else(|err| panic!("user spec: {err}")),
        }
    }

    fn finding(self, fixture: &Fixture) -> Value {
        match self {
            Target::Ec2CompromisedHigh => fixture
                .instance_finding("web-01")
                .unwrap_or_else(|err| panic!("instance finding: {err}"))
                .detail(),
            Target::IamUserKeyCompromised => fixture
                .access_key_finding(LEAKED_USER)
                .unwrap_or_else(|err| panic!("key finding: {err}"))
                .detail(),
        }
    }
}

/// One run of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cell {
    /// One fault on the `ordinal`th call of `operation`.
    Fault {
        /// The playbook.
        target: Target,
        /// The fault.
        kind: FaultKind,
        /// The operation, as the call recorder names it (`ec2:CreateSnapshot`).
        operation: String,
        /// Which of its calls (1-based).
        ordinal: u32,
    },
    /// The process killed right after journal record `after_record` (0-based seq).
    Kill {
        /// The playbook.
        target: Target,
        /// The last record written before the kill.
        after_record: u64,
    },
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Fault {
                target,
                kind,
                operation,
                ordinal,
            } => write!(f, "{}: {kind} on {operation} #{ordinal}", target.playbook()),
            Cell::Kill {
                target,
                after_record,
            } => write!(f, "{}: kill after record {after_record}", target.playbook()),
        }
    }
}

/// How a run ended, among the allowed states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ending {
    /// Every step done and verified, the resources contained.
    Contained,
    /// Stopped: every step done so far verified, the rest not run.
    Stopped,
    /// Stopped inside a step's apply, its pre-state journaled: what it
    /// changed before the failure stays (safer kept than undone: the ENIs
    /// the isolation step journaled `isolation-done` stay isolated, the others
    /// are back in their own groups, none open; termination protection set
    /// on some attributes stays set); resume completes the step, rollback
    /// restores the pre-state.
    StoppedPartway,
    /// Stopped after a step applied and its read-back was refused or failed:
    /// the change and the failure are journaled; resume verifies it.
    StoppedUnverified,
    /// Rolled back to exactly the pre-state.
    RolledBack,
    /// Rolled back except credential containment (journaled as kept).
    RolledBackExceptCredentials,
    /// Killed mid-run (kill cells): every change's pre-state journaled.
    Killed,
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ending::Contained => "contained and verified",
            Ending::Stopped => "stopped, done steps verified",
            Ending::StoppedPartway => "stopped partway through a step, its pre-state journaled",
            Ending::StoppedUnverified => "stopped with a step applied, its verification failed",
            Ending::RolledBack => "rolled back to the exact pre-state",
            Ending::RolledBackExceptCredentials => "rolled back except credentials",
            Ending::Killed => "killed, every change journaled",
        })
    }
}

/// What one run of the matrix showed.
#[derive(Debug)]
pub struct CellOutcome {
    /// The run.
    pub cell: Cell,
    /// The allowed state it ended in, when it did.
    pub ending: Option<Ending>,
    /// Everything outside the allowed states, one sentence each; empty when
    /// the run, its clean end and the evidence check were all right.
    pub problems: Vec<String>,
    /// The faults actually injected.
    pub injected: Vec<InjectedFault>,
    /// Wall time of the whole cell (provisioning included).
    pub elapsed: Duration,
}

/// A clean run's calls, in the order they were sent, each with its ordinal
/// among the calls of its operation, and how many journal records it wrote.
#[derive(Debug, Clone)]
pub struct CleanRun {
    /// `(operation, ordinal)` per call.
    pub calls: Vec<(String, u32)>,
    /// Records in the clean run's journal.
    pub records: u64,
}

/// Everything a run needs: the environment built, its state before, the
/// finding and the plan.
struct World {
    fixture: Fixture,
    before: Value,
    raw: String,
    plan: Plan,
    dir: PathBuf,
}

impl World {
    async fn build(aws: &EmulatorGuard, target: Target, name: &str) -> World {
        // A reset can outlast its 10-second budget on a loaded machine.
        let mut tries = 0;
        while let Err(err) = aws.try_reset().await {
            tries += 1;
            assert!(tries < 5, "emulator reset failed {tries} times: {err}");
            eprintln!("emulator reset failed ({err}); retrying");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let plain = aws.clients();
        let fixture = provision(plain, &target.spec())
            .await
            .unwrap_or_else(|err| panic!("provision: {err}"));
        if target == Target::IamUserKeyCompromised {
            create_quarantine_policy(plain).await;
        }
        let before = snapshot_state(plain, &fixture)
            .await
            .unwrap_or_else(|err| panic!("snapshot: {err}"));
        let raw = target.finding(&fixture).to_string();
        let finding = parse_single_finding(&raw, "fault-matrix")
            .unwrap_or_else(|err| panic!("finding: {err}"));
        let playbook = shipped_playbooks()
            .into_iter()
            .find(|p| p.name == target.playbook())
            .unwrap_or_else(|| panic!("no shipped playbook {}", target.playbook()));
        let plan = {
            let findings = [finding];
            let (finding, reason) = finding_for(&playbook, &findings);
            plan(finding, &playbook, reason)
        };
        World {
            fixture,
            before,
            raw,
            plan,
            dir: scratch_dir(name),
        }
    }

    fn cases(&self) -> PathBuf {
        self.dir.join("cases")
    }

    fn journal(&self) -> LocalJournal {
        LocalJournal::new(self.cases())
    }

    /// Actions as the CLI builds them: evidence and journal in the case directory.
    fn actions(&self, clients: &AwsClients) -> AwsActions {
        AwsActions::new(clients.clone(), EvidenceStore::LocalDir(self.cases()))
            .with_case_root(Some(self.cases()))
            .with_finding_raw(self.plan.case_id.clone(), self.raw.clone())
    }

    async fn records(&self) -> Vec<JournalRecord> {
        self.journal()
            .load(&self.plan.case_id)
            .await
            .unwrap_or_default()
    }

    async fn state(&self, aws: &EmulatorGuard) -> Value {
        snapshot_state(aws.clients(), &self.fixture)
            .await
            .unwrap_or_else(|err| panic!("snapshot: {err}"))
    }
}

/// Runs `target` once without faults and returns its call sequence and
/// journal length: the rows and columns of the matrix.
pub async fn clean_run(aws: &EmulatorGuard, target: Target) -> CleanRun {
    let world = World::build(aws, target, &format!("clean-{}", target.playbook())).await;
    let clients = AwsClients::builder(aws.sdk_config())
        .build()
        .unwrap_or_else(|err| panic!("clients: {err}"));
    let actions = world.actions(&clients);
    let journal = world.journal();
    let report = Executor::new(&actions, &journal, &ApproveAll)
        .run(&world.plan, &world.raw)
        .await
        .unwrap_or_else(|err| panic!("clean run: {err}"));
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut recent = clients.recorder.recent();
    recent.sort_by_key(|call| call.started);
    let calls = recent
        .iter()
        .map(|call| {
            let name = operation_name(call.op);
            let ordinal = seen.entry(name.clone()).or_insert(0);
            *ordinal += 1;
            (name, *ordinal)
        })
        .collect();
    let records = world.records().await.len() as u64;
    let _ = std::fs::remove_dir_all(&world.dir);
    CleanRun { calls, records }
}

/// Every fault cell of `target`: each kind at each (operation, ordinal) of the clean run.
pub fn fault_cells(target: Target, clean: &CleanRun, kinds: &[FaultKind]) -> Vec<Cell> {
    let mut cells = Vec::new();
    for (operation, ordinal) in &clean.calls {
        for kind in kinds {
            cells.push(Cell::Fault {
                target,
                kind: *kind,
                operation: operation.clone(),
                ordinal: *ordinal,
            });
        }
    }
    cells
}

/// Every kill cell of `target`: one per record of the clean run but the
/// last (after the last record there is nothing left to interrupt).
pub fn kill_cells(target: Target, clean: &CleanRun) -> Vec<Cell> {
    (0..clean.records.saturating_sub(1))
        .map(|after_record| Cell::Kill {
            target,
            after_record,
        })
        .collect()
}

/// Runs one cell and checks everything the issue asks of it. `cordon` is the
/// binary (built with `crash-hooks`) for kill cells.
pub async fn run_cell(aws: &EmulatorGuard, cell: &Cell, cordon: &Path) -> CellOutcome {
    let started = Instant::now();
    let (ending, problems, injected) = match cell {
        Cell::Fault {
            target,
            kind,
            operation,
            ordinal,
        } => fault_run(aws, *target, *kind, operation, *ordinal).await,
        Cell::Kill {
            target,
            after_record,
        } => kill_run(aws, *target, *after_record, cordon).await,
    };
    CellOutcome {
        cell: cell.clone(),
        ending,
        problems,
        injected,
        elapsed: started.elapsed(),
    }
}

async fn fault_run(
    aws: &EmulatorGuard,
    target: Target,
    kind: FaultKind,
    operation: &str,
    ordinal: u32,
) -> (Option<Ending>, Vec<String>, Vec<InjectedFault>) {
    let world = World::build(aws, target, "fault-cell").await;
    let injector = FaultInjector::new(FaultPlan {
        seed: 0,
        rules: vec![FaultRule {
            kind,
            operation: Some(operation.to_owned()),
            when: FaultWhen::Nth(vec![ordinal]),
        }],
    })
    .unwrap_or_else(|err| panic!("fault plan: {err}"));
    let faulty = AwsClients::builder(aws.sdk_config())
        .faults(injector.clone())
        .build()
        .unwrap_or_else(|err| panic!("clients: {err}"));
    let journal = world.journal();
    let mut problems = Vec::new();
    let report = Executor::new(&world.actions(&faulty), &journal, &ApproveAll)
        .run(&world.plan, &world.raw)
        .await;
    // A run may make fewer calls of an operation than the clean run it was
    // drawn from (reads shared between steps depend on timing): the fault is
    // then not reached, which the tally counts apart; the run is checked all
    // the same.
    let injected = injector.injected();
    let ending = match report {
        Ok(report) => check_end(aws, &world, &report, &mut problems).await,
        Err(err) => {
            problems.push(format!("the run failed outside the journal: {err}"));
            None
        }
    };
    clean_end(aws, &world, ending, &mut problems).await;
    let _ = std::fs::remove_dir_all(&world.dir);
    (ending, problems, injected)
}

/// Classifies where the run rests, checking the invariants on the way.
async fn check_end(
    aws: &EmulatorGuard,
    world: &World,
    report: &Report,
    problems: &mut Vec<String>,
) -> Option<Ending> {
    let records = world.records().await;
    let after = world.state(aws).await;
    let untracked = untrack_problems(aws, world, &after, &records).await;
    problems.extend(untracked);
    let diffs = diff_states(&world.before, &after);
    problems.extend(unjournaled(&diffs, &records));
    let state = match CaseState::from_records(&world.plan.case_id, &records) {
        Ok(state) => state,
        Err(err) => {
            problems.push(format!("journal unreadable: {err}"));
            return None;
        }
    };
    let steps = step_events(&records);
    match report.status {
        CaseStatus::Completed | CaseStatus::CompletedWithFailures => {
            let missing: Vec<&str> = containment_steps(&world.plan)
                .into_iter()
                .filter(|step| !steps.verified.contains(*step))
                .collect();
            if missing.is_empty() {
                problems.extend(containment_problems(aws, world, &after).await);
                Some(Ending::Contained)
            } else {
                problems.push(format!(
                    "{} but containment steps {missing:?} not verified",
                    report.status
                ));
                None
            }
        }
        CaseStatus::Stopped => {
            // Each change was made by a verified step, by the isolation step
            // for the ENIs it journaled as isolated before it failed, or by
            // a step applied whose verification failed (journaled).
            let isolated = isolation_done(&records);
            let mut ending = Ending::Stopped;
            for diff in &diffs {
                let makers = changed_by(diff);
                if makers.iter().any(|step| steps.verified.contains(*step)) {
                    continue;
                }
                if makers.contains(&"isolate")
                    && !steps.applied.contains("isolate")
                    && isolated.iter().any(|eni| diff.contains(eni.as_str()))
                {
                    ending = ending.max(Ending::StoppedPartway);
                    continue;
                }
                if makers
                    .iter()
                    .any(|step| steps.applied.contains(*step) && steps.failed.contains(*step))
                {
                    ending = ending.max(Ending::StoppedUnverified);
                    continue;
                }
                if makers.iter().any(|step| {
                    steps.prepared.contains(*step)
                        && steps.failed.contains(*step)
                        && !steps.applied.contains(*step)
                }) {
                    ending = ending.max(Ending::StoppedPartway);
                    continue;
                }
                problems.push(format!(
                    "stopped with a change no step accounts for: {diff}"
                ));
            }
            // A containment step applied and neither verified nor failed: lost.
            let lost: Vec<&String> = steps
                .applied
                .iter()
                .filter(|step| !steps.verified.contains(*step) && !steps.failed.contains(*step))
                .collect();
            if !lost.is_empty() {
                problems.push(format!(
                    "stopped with steps applied, neither verified nor failed: {lost:?}"
                ));
            }
            problems.is_empty().then_some(ending)
        }
        CaseStatus::RolledBack => {
            if diffs.is_empty() {
                Some(Ending::RolledBack)
            } else {
                problems.push(format!("rolled back but not at the pre-state: {diffs:?}"));
                None
            }
        }
        CaseStatus::RolledBackExceptCredentials => {
            let other: Vec<&String> = diffs.iter().filter(|d| !is_credential(d)).collect();
            if other.is_empty() {
                Some(Ending::RolledBackExceptCredentials)
            } else {
                problems.push(format!(
                    "rolled back except credentials, but other changes remain: {other:?}"
                ));
                None
            }
        }
        other => {
            problems.push(format!(
                "the run rests in `{other}` ({}; journal status {:?})",
                report.message, state.status
            ));
            None
        }
    }
}

/// Resumes a stopped (or crashed) case without faults, checks it contained,
/// rolls it back with every undo approved, checks the exact pre-state, and
/// verifies the evidence.
async fn clean_end(
    aws: &EmulatorGuard,
    world: &World,
    ending: Option<Ending>,
    problems: &mut Vec<String>,
) {
    let plain = aws.clients();
    let actions = world.actions(plain);
    let journal = world.journal();
    let case = &world.plan.case_id;
    if matches!(
        ending,
        Some(Ending::Stopped | Ending::StoppedPartway | Ending::StoppedUnverified | Ending::Killed)
    ) {
        match Executor::new(&actions, &journal, &ApproveAll)
            .resume(case)
            .await
        {
            Ok(report)
                if matches!(
                    report.status,
                    CaseStatus::Completed | CaseStatus::CompletedWithFailures
                ) =>
            {
                let after = world.state(aws).await;
                problems.extend(containment_problems(aws, world, &after).await);
            }
            Ok(report) => problems.push(format!(
                "resume ended `{}`: {}",
                report.status, report.message
            )),
            Err(err) => problems.push(format!("resume failed: {err}")),
        }
    }
    if ending != Some(Ending::RolledBack) {
        match Executor::new(&actions, &journal, &ApproveUndo)
            .rollback(case, "fault matrix: clean end")
            .await
        {
            Ok(report) if report.status == CaseStatus::RolledBack => {}
            Ok(report) => problems.push(format!(
                "rollback ended `{}`: {}",
                report.status, report.message
            )),
            Err(err) => problems.push(format!("rollback failed: {err}")),
        }
    }
    let diffs = diff_states(&world.before, &world.state(aws).await);
    if !diffs.is_empty() {
        problems.push(format!(
            "after the clean end, not at the pre-state: {diffs:?}"
        ));
    }
    problems.extend(evidence_problems(world).await);
}

/// The steps of the plan that contain (the rest preserve evidence).
fn containment_steps(plan: &Plan) -> Vec<&str> {
    plan.steps
        .iter()
        .filter(|step| step.kind().contains())
        .map(|step| step.id.as_str())
        .collect()
}

#[derive(Debug, Default)]
struct StepEvents {
    prepared: BTreeSet<String>,
    applied: BTreeSet<String>,
    verified: BTreeSet<String>,
    /// Steps whose last attempt failed for good.
    failed: BTreeSet<String>,
}

/// Which steps were prepared, applied and verified, in the journal's last epoch.
fn step_events(records: &[JournalRecord]) -> StepEvents {
    let mut events = StepEvents::default();
    for record in records {
        match &record.event {
            JournalEvent::EpochOpened { .. } => events = StepEvents::default(),
            JournalEvent::StepPrepared { step, .. } => {
                events.prepared.insert(step.clone());
            }
            JournalEvent::StepApplied { step, .. } => {
                events.applied.insert(step.clone());
            }
            JournalEvent::StepVerified { step, .. } => {
                events.verified.insert(step.clone());
                events.failed.remove(step);
            }
            JournalEvent::StepFailed {
                step,
                retrying: false,
                ..
            } => {
                events.failed.insert(step.clone());
            }
            _ => {}
        }
    }
    events
}

/// The ENIs the isolation step's last `isolation-done` progress record names.
fn isolation_done(records: &[JournalRecord]) -> Vec<String> {
    records
        .iter()
        .rev()
        .find_map(|record| match &record.event {
            JournalEvent::StepProgress { step, progress }
                if step == "isolate" && progress["phase"] == "isolation-done" =>
            {
                Some(
                    progress["network-interfaces"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|eni| eni.as_str().map(str::to_owned))
                        .collect(),
                )
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// The steps of the two playbooks that may make a change seen at `diff`
/// (a `diff_states` line: `$.network-interfaces.eni-….groups: … -> …`).
fn changed_by(diff: &str) -> &'static [&'static str] {
    let path = diff.split(": ").next().unwrap_or(diff);
    let rules: [(&str, &[&str]); 12] = [
        // Auto Scaling tags its members; leaving the group drops the tag.
        ("aws:autoscaling:groupName", &["detach-asg"]),
        (".groups", &["isolate"]),
        (".tags", &["tag"]),
        (".disable-api-termination", &["protect"]),
        (".instance-initiated-shutdown-behavior", &["protect"]),
        (".delete-on-termination", &["protect"]),
        (".instance-profile-associations", &["detach-profile"]),
        ("$.auto-scaling-groups", &["detach-asg"]),
        ("$.target-groups", &["deregister-lb"]),
        (".access-keys", &["deactivate-key", "rotate-key"]),
        (".attached-policies", &["quarantine"]),
        (".inline-policies", &["quarantine"]),
    ];
    rules
        .iter()
        .find(|(needle, _)| path.contains(needle))
        .map_or(&[], |(_, steps)| steps)
}

fn is_credential(diff: &str) -> bool {
    diff.starts_with("$.users.") || diff.starts_with("$.roles.")
}

/// A change with no journaled pre-state: no step that could have made it
/// was prepared.
fn unjournaled(diffs: &[String], records: &[JournalRecord]) -> Vec<String> {
    let mut prepared = BTreeSet::new();
    for record in records {
        if let JournalEvent::StepPrepared { step, .. } = &record.event {
            prepared.insert(step.clone());
        }
    }
    diffs
        .iter()
        .filter(|diff| {
            let steps = changed_by(diff);
            steps.is_empty() || !steps.iter().any(|step| prepared.contains(*step))
        })
        .map(|diff| format!("a change without its pre-state journaled: {diff}"))
        .collect()
}

/// The security groups of the fixture's VPCs named as cordon's untrack group.
async fn untrack_groups(aws: &EmulatorGuard, world: &World) -> BTreeSet<String> {
    let vpcs: Vec<String> = world.fixture.vpcs.values().map(|v| v.id.clone()).collect();
    if vpcs.is_empty() {
        return BTreeSet::new();
    }
    let out = aws
        .clients()
        .ec2
        .describe_security_groups()
        .filters(
            Filter::builder()
                .name("vpc-id")
                .set_values(Some(vpcs))
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|err| panic!("DescribeSecurityGroups: {err}"));
    out.security_groups()
        .iter()
        .filter(|g| g.group_name().is_some_and(|n| n.ends_with("-untrack")))
        .filter_map(|g| g.group_id().map(str::to_owned))
        .collect()
}

/// An ENI in the allow-all untrack group, or flagged open by the journal.
async fn untrack_problems(
    aws: &EmulatorGuard,
    world: &World,
    state: &Value,
    records: &[JournalRecord],
) -> Vec<String> {
    let mut problems = Vec::new();
    let untrack = untrack_groups(aws, world).await;
    for (eni, interface) in state["network-interfaces"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let groups = interface["groups"].as_array().cloned().unwrap_or_default();
        if groups
            .iter()
            .any(|g| g.as_str().is_some_and(|g| untrack.contains(g)))
        {
            problems.push(format!("{eni} is in the allow-all untrack group"));
        }
    }
    if let Ok(case_state) = CaseState::from_records(&world.plan.case_id, records) {
        let open = summarize(&case_state, records).open_network_interfaces;
        if !open.is_empty() {
            problems.push(format!("the journal flags ENIs OPEN: {open:?}"));
        }
    }
    problems
}

/// What is not contained although the case says it is.
async fn containment_problems(aws: &EmulatorGuard, world: &World, state: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let untrack = untrack_groups(aws, world).await;
    let original: BTreeSet<&str> = world
        .fixture
        .security_groups
        .values()
        .map(|g| g.id.as_str())
        .collect();
    for instance in world.fixture.instances.values() {
        for eni in &instance.enis {
            let groups = state["network-interfaces"][&eni.id]["groups"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let isolated = groups.len() == 1
                && groups[0]
                    .as_str()
                    .is_some_and(|g| !original.contains(g) && !untrack.contains(g));
            if !isolated {
                problems.push(format!("{} not isolated: {groups:?}", eni.id));
            }
        }
        for (name, group) in state["auto-scaling-groups"]
            .as_object()
            .into_iter()
            .flatten()
        {
            if group["instances"]
                .as_array()
                .is_some_and(|m| m.contains(&json!(instance.id)))
            {
                problems.push(format!(
                    "{} still in Auto Scaling group {name}",
                    instance.id
                ));
            }
        }
        for (name, group) in state["target-groups"].as_object().into_iter().flatten() {
            if group["targets"].as_array().is_some_and(|t| {
                t.iter()
                    .any(|t| t.as_str().is_some_and(|t| t.starts_with(&instance.id)))
            }) {
                problems.push(format!("{} still in target group {name}", instance.id));
            }
        }
    }
    for (name, user) in &world.fixture.users {
        for key in &user.access_keys {
            let status = &state["users"][name]["access-keys"][&key.id];
            if status != "Inactive" {
                problems.push(format!("{name}'s key {} is {status}, not inactive", key.id));
            }
        }
    }
    problems
}

/// The library equivalent of `cordon evidence verify` for a case kept
/// locally: the journal's hash chain holds, and the manifest (when
/// store-evidence ran) pins files that still hash to what it says and
/// journal records that are the ones in the journal.
async fn evidence_problems(world: &World) -> Vec<String> {
    let mut problems = Vec::new();
    let records = world.records().await;
    if let Err((seq, reason)) = verify_chain(&records) {
        problems.push(format!("journal chain broken at record {seq}: {reason}"));
    }
    let case_dir = world.cases().join(world.plan.case_id.to_string());
    let Ok(bytes) = std::fs::read(case_dir.join(MANIFEST_NAME)) else {
        return problems;
    };
    let manifest: Manifest = match serde_json::from_slice(&bytes) {
        Ok(manifest) => manifest,
        Err(err) => {
            problems.push(format!("manifest unreadable: {err}"));
            return problems;
        }
    };
    for object in &manifest.objects {
        match std::fs::read(case_dir.join(&object.key)) {
            Ok(bytes) if sha256_hex(&bytes) == object.sha256 => {}
            Ok(_) => problems.push(format!("evidence {} does not hash as pinned", object.key)),
            Err(err) => problems.push(format!("evidence {} unreadable: {err}", object.key)),
        }
    }
    for entry in &manifest.journal {
        let pinned = records
            .iter()
            .find(|r| r.seq == entry.seq)
            .is_some_and(|r| r.hash() == entry.hash);
        if !pinned {
            problems.push(format!(
                "manifest pins journal record {} that is not in the journal",
                entry.seq
            ));
        }
    }
    problems
}

async fn kill_run(
    aws: &EmulatorGuard,
    target: Target,
    after_record: u64,
    cordon: &Path,
) -> (Option<Ending>, Vec<String>, Vec<InjectedFault>) {
    let world = World::build(aws, target, "kill-cell").await;
    let finding = world.dir.join("finding.json");
    std::fs::write(&finding, &world.raw).unwrap_or_else(|err| panic!("finding: {err}"));
    let playbooks = crate::repo_root().join("playbooks");
    let out = cordon_command(aws, &world, cordon, &["run"])
        .arg(&finding)
        .arg("--yes")
        .arg("--playbooks")
        .arg(&playbooks)
        .env("CORDON_TEST_CRASH_AFTER_RECORD", after_record.to_string())
        .output()
        .unwrap_or_else(|err| panic!("spawn cordon: {err}"));
    let mut problems = Vec::new();
    if out.status.code().is_some() {
        problems.push(format!(
            "the run was not killed after record {after_record} (exit {:?}; is the binary built with crash-hooks?): {}",
            out.status.code(),
            tail(&out)
        ));
    }
    let records = world.records().await;
    let after = world.state(aws).await;
    let diffs = diff_states(&world.before, &after);
    problems.extend(unjournaled(&diffs, &records));
    if records.len() as u64 != after_record + 1 {
        problems.push(format!(
            "{} records journaled, the kill came after record {after_record}",
            records.len()
        ));
    }
    // An ENI left in the untrack group by a kill must be flagged OPEN.
    let untrack = untrack_groups(aws, &world).await;
    if let Ok(case_state) = CaseState::from_records(&world.plan.case_id, &records) {
        let open: BTreeSet<String> = summarize(&case_state, &records)
            .open_network_interfaces
            .into_iter()
            .collect();
        for (eni, interface) in after["network-interfaces"]
            .as_object()
            .into_iter()
            .flatten()
        {
            let in_untrack = interface["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|g| g.as_str().is_some_and(|g| untrack.contains(g)));
            if in_untrack && !open.contains(eni) {
                problems.push(format!(
                    "{eni} is in the untrack group and the journal does not flag it OPEN"
                ));
            }
        }
    }
    let ending = problems.is_empty().then_some(Ending::Killed);
    // The CLI's clean end: resume every other kill point, then roll back.
    let case = world.plan.case_id.to_string();
    if after_record.is_multiple_of(2) {
        let out = cordon_command(aws, &world, cordon, &["resume", &case, "--yes"])
            .output()
            .unwrap_or_else(|err| panic!("spawn cordon: {err}"));
        if out.status.code() != Some(0) {
            problems.push(format!(
                "resume exited {:?}: {}",
                out.status.code(),
                tail(&out)
            ));
        } else {
            let after = world.state(aws).await;
            problems.extend(containment_problems(aws, &world, &after).await);
        }
    }
    let mut rollback = cordon_command(aws, &world, cordon, &["rollback", &case]);
    for step in &world.plan.steps {
        rollback.args(["--approve-undo", &step.id]);
    }
    let out = rollback
        .output()
        .unwrap_or_else(|err| panic!("spawn cordon: {err}"));
    if out.status.code() != Some(0) {
        problems.push(format!(
            "rollback exited {:?}: {}",
            out.status.code(),
            tail(&out)
        ));
    }
    let diffs = diff_states(&world.before, &world.state(aws).await);
    if !diffs.is_empty() {
        problems.push(format!(
            "after the clean end, not at the pre-state: {diffs:?}"
        ));
    }
    problems.extend(evidence_problems(&world).await);
    let _ = std::fs::remove_dir_all(&world.dir);
    (ending, problems, Vec::new())
}

/// `cordon ARGS --state-dir DIR` on the emulator.
fn cordon_command(aws: &EmulatorGuard, world: &World, cordon: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(cordon);
    cmd.args(args)
        .arg("--state-dir")
        .arg(&world.dir)
        .env_remove("CORDON_TEST_CRASH_AFTER_RECORD")
        .env_remove("CORDON_PLAYBOOKS")
        .env_remove("AWS_PROFILE");
    for (key, value) in aws.env() {
        cmd.env(key, value);
    }
    cmd
}

fn tail(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Counts per ending and the runs outside the allowed states, for the script's summary.
#[derive(Debug, Default)]
pub struct Tally {
    /// Runs per ending.
    pub endings: BTreeMap<Ending, usize>,
    /// Fault runs that never reached their fault (the run made fewer calls
    /// of the operation than the clean run), and ended in an allowed state.
    pub not_reached: Vec<Cell>,
    /// Runs with problems, with them.
    pub failures: Vec<(Cell, Vec<String>)>,
    /// Runs in all.
    pub runs: usize,
}

impl Tally {
    /// Adds one run.
    pub fn add(&mut self, outcome: &CellOutcome) {
        self.runs += 1;
        if let Some(ending) = outcome.ending {
            *self.endings.entry(ending).or_default() += 1;
        }
        if !outcome.problems.is_empty() || outcome.ending.is_none() {
            self.failures
                .push((outcome.cell.clone(), outcome.problems.clone()));
        } else if matches!(outcome.cell, Cell::Fault { .. }) && outcome.injected.is_empty() {
            self.not_reached.push(outcome.cell.clone());
        }
    }

    /// The summary: runs, how many ended each way, and every run outside the allowed states.
    pub fn summary(&self) -> String {
        let mut text = format!("{} runs\n", self.runs);
        for (ending, n) in &self.endings {
            text.push_str(&format!("  {n:>5}  {ending}\n"));
        }
        text.push_str(&format!(
            "  {:>5}  outside the allowed states\n",
            self.failures.len()
        ));
        if !self.not_reached.is_empty() {
            text.push_str(&format!(
                "  of which {} never reached their fault (fewer calls of the operation than the clean run):\n",
                self.not_reached.len()
            ));
            for cell in &self.not_reached {
                text.push_str(&format!("    {cell}\n"));
            }
        }
        for (cell, problems) in &self.failures {
            text.push_str(&format!("FAILED {cell}\n"));
            for problem in problems {
                text.push_str(&format!("    {problem}\n"));
            }
        }
        text
    }
}
