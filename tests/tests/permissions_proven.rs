//! Permissions proven by the calls made (issue 8 item 2), as Cloud Custodian
//! checks its resources' permissions: every action kind runs its whole
//! lifecycle (pre-state, dry run, apply, verify, undo, verify-undone) against
//! the emulator with the call recorder on, and every IAM action a recorded
//! call needed must be one the action declares ([`ActionKind::permissions`]
//! or its rows of the implied table, [`IMPLIED_PERMISSIONS`]).
//!
//! What runs:
//! - every step of every shipped playbook, in the world the whole-lifecycle
//!   test uses ([`cordon_tests::shipped`]);
//! - the kinds and parameters no shipped playbook uses: the remediations
//!   (`enforce-imdsv2`, `block-bucket-public-access`,
//!   `revoke-open-ingress`, `make-snapshot-private`, `capture-memory` with the
//!   host's upload seeded, as the emulator runs no SSM agent), `delete-login-profile`
//!   (apply, then the refused undo), `snapshot-volumes` with
//!   `delete-on-rollback`, and `quarantine-user` rolling back a journal of
//!   the inline-policy version;
//! - `enrich-with-detective`, with Detective answered by the SDK's mocks (the
//!   emulator has no Detective) and everything else by the emulator;
//! - `capture-memory` resumed after a journaled intent (it reads
//!   `ListCommands` for the intent's marker), and past its budget with SSM
//!   answered by mocks (the emulator has no `CancelCommand`), which cancels;
//! - `store-evidence` signing its manifests (`--evidence-signing-key`): the
//!   evidence-signing front door's `kms:Sign` is declared for it, since the
//!   key is a run-time option rather than a step parameter.
//!
//! So every [`ActionKind`] is driven; none is left out.
//!
//! The declared permissions no recorded call used are printed with why, and
//! compared both ways with `tests/fixtures/permissions/unused.txt`: a new
//! unused permission, or one the run now uses, fails the test until the file
//! says so.
//!
//! What the recorder cannot see: calls the SDK makes by itself (credential
//! providers, endpoint discovery; none with the static test credentials), and
//! requests AWS makes on the caller's behalf, which are the implied table's
//! rows. The test checks the recorder saw every request the SDK sent while the
//! actions ran (the client's wire counter agrees with it), so no handler
//! bypasses the call path.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use aws_sdk_detective::Client as DetectiveClient;
use aws_sdk_detective::operation::get_investigation::GetInvestigationOutput;
use aws_sdk_detective::operation::list_graphs::ListGraphsOutput;
use aws_sdk_detective::operation::list_indicators::ListIndicatorsOutput;
use aws_sdk_detective::operation::list_investigations::ListInvestigationsOutput;
use aws_sdk_detective::operation::start_investigation::StartInvestigationOutput;
use aws_sdk_detective::types::{Graph, Indicator, IndicatorType, Status};
use aws_sdk_ssm::Client as SsmClient;
use aws_sdk_ssm::operation::cancel_command::CancelCommandOutput;
use aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput;
use aws_sdk_ssm::operation::send_command::SendCommandOutput;
use aws_sdk_ssm::types::{Command, CommandInvocationStatus};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use cordon_aws::actions::AwsActions;
use cordon_core::action::{ActionKind, FRONT_DOOR_PERMISSIONS, FrontDoor, IMPLIED_PERMISSIONS};
use cordon_core::executor::{Actions, ErrorKind, Progress};
use cordon_core::plan::Plan;
use cordon_tests::shipped::{LEAKED_USER, ShippedWorld, plan_shipped, shipped_world_signing};
use cordon_tests::{
    Lifecycle, Phase, emulator, plan_steps, repo_root, run_every_step, shipped_playbooks,
};
use serde_json::json;
use strum::IntoEnumIterator;

const BUCKET: &str = "cordon-evidence-permissions";
/// A bucket with no public access block of its own.
const OPEN_BUCKET: &str = "cordon-permissions-open";
const EXPECTATION: &str = "tests/fixtures/permissions/unused.txt";
const GRAPH: &str = "arn:aws:detective:us-east-1:123456789012:graph:0123456789abcdef";

/// IAM actions per action kind.
type Permissions = BTreeMap<ActionKind, BTreeSet<&'static str>>;

/// What each action declares: the IAM actions of its calls and the implied
/// permissions AWS checks on its behalf.
fn declared() -> Permissions {
    ActionKind::iter()
        .map(|kind| {
            let own = kind.permissions().iter().copied();
            let implied = kind.implied_permissions().map(|row| row.permission);
            (kind, own.chain(implied).chain(signing(kind)).collect())
        })
        .collect()
}

/// The evidence-signing front door's permissions, which `store-evidence`
/// uses when the run has a signing key.
fn signing(kind: ActionKind) -> impl Iterator<Item = &'static str> {
    FRONT_DOOR_PERMISSIONS
        .iter()
        .filter(move |row| {
            kind == ActionKind::StoreEvidence && row.door == FrontDoor::EvidenceSigning
        })
        .map(|row| row.permission)
}

/// The result of comparing declarations with recorded calls.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Proof {
    /// A recorded call's IAM action the action does not declare: a failure.
    undeclared: BTreeSet<(ActionKind, &'static str)>,
    /// Declared, and needed by no recorded call.
    unused: BTreeSet<(ActionKind, &'static str)>,
}

/// Compares `declared` with `recorded` (both per action kind).
fn compare(declared: &Permissions, recorded: &Permissions) -> Proof {
    let none = BTreeSet::new();
    let mut undeclared = BTreeSet::new();
    let mut unused = BTreeSet::new();
    for (kind, used) in recorded {
        let allowed = declared.get(kind).unwrap_or(&none);
        undeclared.extend(used.difference(allowed).map(|p| (*kind, *p)));
    }
    for (kind, allowed) in declared {
        let used = recorded.get(kind).unwrap_or(&none);
        unused.extend(allowed.difference(used).map(|p| (*kind, *p)));
    }
    Proof { undeclared, unused }
}

impl fmt::Display for Proof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (kind, permission) in &self.undeclared {
            writeln!(
                f,
                "UNDECLARED {kind}: a recorded call needs {permission}, which neither \
                 ActionKind::permissions() nor the implied table grants it"
            )?;
        }
        writeln!(
            f,
            "{} undeclared, {} declared but unused",
            self.undeclared.len(),
            self.unused.len()
        )
    }
}

/// The checked-in unused permissions, `(kind, permission)` → why.
fn expected_unused() -> BTreeMap<(ActionKind, String), String> {
    let path = repo_root().join(EXPECTATION);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parse = || -> Option<((ActionKind, String), String)> {
            let (head, why) = line.split_once(": ")?;
            let (kind, permission) = head.split_once(' ')?;
            let kind: ActionKind = kind.parse().ok()?;
            Some((
                (kind, permission.trim().to_string()),
                why.trim().to_string(),
            ))
        };
        let (key, why) = parse().unwrap_or_else(|| {
            panic!(
                "{EXPECTATION}:{}: expected `<action> <permission>: <why>`, got `{line}`",
                n + 1
            )
        });
        assert!(!why.is_empty(), "{EXPECTATION}:{}: say why", n + 1);
        assert!(
            out.insert(key, why).is_none(),
            "{EXPECTATION}:{}: twice",
            n + 1
        );
    }
    out
}

/// Why an implied permission is never recorded, from the implied table.
fn implied_reason(kind: ActionKind, permission: &str) -> Option<&'static str> {
    IMPLIED_PERMISSIONS
        .iter()
        .find(|row| row.permission == permission && row.actions.contains(&kind))
        .map(|row| row.reason)
}

#[tokio::test]
async fn every_recorded_call_is_a_declared_permission() {
    let aws = emulator().await;
    let clients = aws.clients();
    let signing_key = cordon_tests::create_signing_key(clients).await;
    let world = shipped_world_signing(clients, BUCKET, "permissions", Some(signing_key)).await;
    let (open_group, public_snapshot) = seed(&world).await;
    // Set-up is not an action's work.
    clients.recorder.reset();
    clients.calls.reset();

    let mut steps = 0;
    for playbook in shipped_playbooks() {
        let plan = plan_shipped(&playbook, &world.findings);
        for report in run_every_step(&world.actions, &plan, None).await {
            report.assert_ok();
            steps += 1;
        }
    }
    assert!(steps > 0);
    drive_login_profile(&world).await;
    drive_deleting_snapshots(&world).await;
    drive_instance_role_revocation(&world).await;
    drive_inline_quarantine_rollback(&world).await;
    drive_remediations(&world, &open_group, &public_snapshot).await;

    // Everything the SDK sent while the actions ran was recorded, each under
    // an action.
    let ops_by_kind = clients.recorder.ops_by_kind();
    assert!(
        !ops_by_kind.contains_key(&None),
        "calls outside any action: {:?}",
        ops_by_kind.get(&None)
    );
    let mut recorded_ops: BTreeMap<String, u64> = BTreeMap::new();
    for ((_, op), n) in clients.recorder.counts() {
        *recorded_ops.entry(op.counter_key()).or_default() += n;
    }
    assert_eq!(
        recorded_ops,
        clients.calls.operations(),
        "the recorder and the SDK's count of operations sent disagree"
    );

    // Detective and the memory budget last: their mocked clients have no wire counter.
    drive_detective(&world).await;
    drive_memory_past_budget(&world).await;

    let recorded = clients.recorder.iam_actions_by_kind();
    let not_driven: Vec<ActionKind> = ActionKind::iter()
        .filter(|kind| !recorded.contains_key(kind))
        .collect();
    assert!(not_driven.is_empty(), "never driven: {not_driven:?}");

    let declared = declared();
    let proof = compare(&declared, &recorded);
    eprintln!("{proof}");
    assert!(
        proof.undeclared.is_empty(),
        "calls made without a declared permission:\n{proof}"
    );

    // Each unused permission, with why; the same list as the checked-in one.
    let expected = expected_unused();
    let mut report = String::new();
    for (kind, permission) in &proof.unused {
        if let Some(why) = expected.get(&(*kind, permission.to_string())) {
            report.push_str(&format!("  {kind} {permission}: {why}\n"));
            if implied_reason(*kind, permission).is_some() {
                assert!(
                    why.starts_with("implied"),
                    "{EXPECTATION}: {kind} {permission} is in the implied table: say `implied: ...`"
                );
            }
        }
    }
    eprintln!("declared permissions no recorded call used:\n{report}");
    let unused: BTreeSet<(ActionKind, String)> = proof
        .unused
        .iter()
        .map(|(kind, p)| (*kind, p.to_string()))
        .collect();
    let stale: Vec<String> = expected
        .keys()
        .filter(|key| !unused.contains(*key))
        .map(|(kind, p)| format!("{kind} {p}"))
        .collect();
    let missing: Vec<String> = unused
        .iter()
        .filter(|key| !expected.contains_key(*key))
        .map(|(kind, p)| match implied_reason(*kind, p) {
            Some(reason) => format!("{kind} {p}: implied: {reason}"),
            None => format!("{kind} {p}: <why>"),
        })
        .collect();
    assert!(
        stale.is_empty() && missing.is_empty(),
        "{EXPECTATION} has drifted.\nNow used (remove): {stale:#?}\nNow unused (add, with why): {missing:#?}"
    );

    // Every recorded permission is needed: without it, exactly it is reported.
    for (kind, used) in &recorded {
        for permission in used {
            let mut copy = declared.clone();
            copy.entry(*kind).or_default().remove(permission);
            assert_eq!(
                compare(&copy, &recorded).undeclared,
                BTreeSet::from([(*kind, *permission)]),
                "removing {permission} from {kind}"
            );
        }
    }
}

/// A test playbook of `steps` for the web server's instance finding.
fn web_server_plan(world: &ShippedWorld, name: &str, steps: serde_json::Value) -> Plan {
    let finding = world
        .env
        .instance_finding("web-01")
        .expect("instance finding");
    plan_steps(&finding.detail().to_string(), name, steps)
}

/// A test playbook of `steps` for the leaked user key's finding.
fn leaked_key_plan(world: &ShippedWorld, name: &str, steps: serde_json::Value) -> Plan {
    let key = &world.env.users[LEAKED_USER].access_keys[0].id;
    let finding = world.env.key_finding(key, Some(LEAKED_USER), "IAMUser");
    plan_steps(&finding.detail().to_string(), name, steps)
}

/// `delete-login-profile` (no shipped playbook has it): the password goes,
/// and its undo is refused (a password cannot be put back).
async fn drive_login_profile(world: &ShippedWorld) {
    let plan = leaked_key_plan(
        world,
        "permissions-login-profile",
        json!([{"id": "password", "action": "delete-login-profile"}]),
    );
    let mut life = Lifecycle::new(&world.actions, &plan, "password");
    let (pre, _) = life.forward().await.expect("delete login profile");
    assert!(
        pre["login-profile"].is_object(),
        "no password to delete: {pre}"
    );
    let err = life.undo().await.expect_err("undo refused");
    assert_eq!(err.kind, ErrorKind::Refused, "{err}");
    let err = life.verify_undone().await.expect_err("not restorable");
    assert_eq!(err.kind, ErrorKind::Refused, "{err}");
}

/// `snapshot-volumes` with `delete-on-rollback`: its undo deletes the snapshots.
async fn drive_deleting_snapshots(world: &ShippedWorld) {
    let plan = web_server_plan(
        world,
        "permissions-snapshots",
        json!([{"id": "snapshots", "action": "snapshot-volumes",
                "with": {"delete-on-rollback": true}}]),
    );
    let report = Lifecycle::new(&world.actions, &plan, "snapshots")
        .run()
        .await;
    report.assert_ok();
    let undone = report.phase(Phase::Undo).expect("undo ran");
    assert!(undone.result.is_ok(), "{:?}", undone.result);
}

/// Set-up the recorder does not see (its calls are not an action's): a
/// bucket with no public access block, a group with SSH open to the world and
/// a public snapshot for the remediations (returns the group's and the
/// snapshot's ids), what
/// the inline-policy version of `quarantine-user` left on the user, and
/// scale-in protection on the web server, which `detach-from-autoscaling`'s
/// rollback restores.
async fn seed(world: &ShippedWorld) -> (String, String) {
    let clients = &world.actions.clients;
    clients
        .s3
        .create_bucket()
        .bucket(OPEN_BUCKET)
        .send()
        .await
        .expect("CreateBucket");
    let group = cordon_tests::open_security_group(clients, "permissions-open").await;
    // What the host of `capture-memory` uploads (the emulator runs no agent).
    let plan = memory_plan(world);
    let instance = world.env.instance("web-01").expect("web-01");
    clients
        .s3
        .put_object()
        .bucket(BUCKET)
        .key(format!(
            "cases/{}/memory/{}.lime",
            plan.case_id.as_str(),
            instance.id
        ))
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"memory image",
        ))
        .send()
        .await
        .expect("the host's upload");
    let snapshot = cordon_tests::public_snapshot(clients).await;
    let instance = world.env.instance("web-01").expect("web-01");
    clients
        .autoscaling
        .set_instance_protection()
        .auto_scaling_group_name(instance.auto_scaling_group.as_deref().expect("in a group"))
        .instance_ids(&instance.id)
        .protected_from_scale_in(true)
        .send()
        .await
        .expect("SetInstanceProtection");
    clients
        .iam
        .put_user_policy()
        .user_name(&world.env.users[LEAKED_USER].name)
        .policy_name("CordonQuarantineDenyAll")
        .policy_document(cordon_aws::actions::iam::user::deny_all_document())
        .send()
        .await
        .expect("PutUserPolicy (the old version's quarantine)");
    (group, snapshot)
}

/// `revoke-role-sessions` for an instance finding: the role comes from the
/// instance's profile (the shipped playbook revokes an assumed role's).
async fn drive_instance_role_revocation(world: &ShippedWorld) {
    let plan = web_server_plan(
        world,
        "permissions-instance-role",
        json!([{"id": "revoke", "action": "revoke-role-sessions"}]),
    );
    Lifecycle::new(&world.actions, &plan, "revoke")
        .run()
        .await
        .assert_ok();
}

/// `quarantine-user` rolling back a journal written when it put an inline
/// deny-all policy (before it attached the managed policy): the policy
/// [`seed`] put goes.
async fn drive_inline_quarantine_rollback(world: &ShippedWorld) {
    let plan = leaked_key_plan(
        world,
        "permissions-inline-quarantine",
        json!([{"id": "quarantine", "action": "quarantine-user"}]),
    );
    let user = world.env.users[LEAKED_USER].name.clone();
    let mut life = Lifecycle::new(&world.actions, &plan, "quarantine");
    life.set_pre_state(json!({
        "user-name": user,
        "policy-name": "CordonQuarantineDenyAll",
        "previous-document": null
    }));
    let outcome = json!({
        "user-name": user,
        "policy-name": "CordonQuarantineDenyAll",
        "replaced-previous-policy": false
    });
    life.undo_with(Some(&outcome))
        .await
        .expect("undo of the inline quarantine");
    life.verify_undone().await.expect("inline policy gone");
}

/// `capture-memory` on the web server.
fn memory_plan(world: &ShippedWorld) -> Plan {
    web_server_plan(
        world,
        "permissions-memory",
        json!([{"id": "memory", "action": "capture-memory"}]),
    )
}

/// `capture-memory` resumed after a run that journaled its intent and
/// crashed: it reads the instance's commands for the intent's marker
/// (`ssm:ListCommands`), finds none, and sends the command.
async fn drive_memory_resume(world: &ShippedWorld) {
    let plan = memory_plan(world);
    let step = plan.steps.iter().find(|s| s.id == "memory").expect("step");
    let actions = &world.actions;
    let pre = actions
        .read_pre_state(&plan, step)
        .await
        .expect("pre-state");
    let intent = json!({"phase": "command-intended",
                        "marker": "cordon:crashed:memory:never-sent", "key": pre["key"],
                        "sent-at": 1_700_000_000, "url-expires-at": 1_700_001_800});
    actions
        .apply_with_progress(&plan, step, &pre, &Progress::replay(vec![intent]))
        .await
        .expect("capture after an intent");
}

/// `capture-memory` past its budget: the command still running is cancelled
/// (`ssm:CancelCommand`). SSM answered by mocks: the emulator reports every
/// command successful at once and has no CancelCommand.
async fn drive_memory_past_budget(world: &ShippedWorld) {
    let send = mock!(SsmClient::send_command).then_output(|| {
        SendCommandOutput::builder()
            .command(Command::builder().command_id("cmd-permissions").build())
            .build()
    });
    let status = mock!(SsmClient::get_command_invocation).then_output(|| {
        GetCommandInvocationOutput::builder()
            .status(CommandInvocationStatus::InProgress)
            .build()
    });
    let cancel =
        mock!(SsmClient::cancel_command).then_output(|| CancelCommandOutput::builder().build());
    let mut clients = world.actions.clients.clone();
    clients.ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&send, &status, &cancel]);
    let actions = AwsActions {
        clients,
        ..world.actions.clone()
    };
    let plan = web_server_plan(
        world,
        "permissions-memory-budget",
        json!([{"id": "memory", "action": "capture-memory", "with": {"time-budget-seconds": 1}}]),
    );
    let mut life = Lifecycle::new(&actions, &plan, "memory");
    life.pre_state().await.expect("pre-state");
    let err = life.apply().await.expect_err("past the budget");
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert_eq!(cancel.num_calls(), 1, "cancelled");
}

/// The remediation actions of issue 15 no shipped playbook for a GuardDuty
/// finding runs: each through its whole lifecycle on the web server.
async fn drive_remediations(world: &ShippedWorld, open_group: &str, public_snapshot: &str) {
    let plan = web_server_plan(
        world,
        "permissions-remediations",
        json!([{"id": "imdsv2", "action": "enforce-imdsv2"}]),
    );
    for report in run_every_step(&world.actions, &plan, None).await {
        report.assert_ok();
    }
    Lifecycle::new(&world.actions, &memory_plan(world), "memory")
        .run()
        .await
        .assert_ok();
    drive_memory_resume(world).await;
    // Undo of the revocation is approval-gated in the executor; the
    // handler's undo (what an approved rollback runs) re-authorizes.
    let targets = [
        ("AWS::EC2::SecurityGroup", open_group, "revoke-open-ingress"),
        (
            "AWS::EC2::Snapshot",
            public_snapshot,
            "make-snapshot-private",
        ),
    ];
    for (resource_type, id, action) in targets {
        let finding = cordon_tests::config_event("permissions", resource_type, id);
        let plan = plan_steps(
            &finding,
            "permissions-exposure",
            json!([{"id": "close", "action": action}]),
        );
        Lifecycle::new(&world.actions, &plan, "close")
            .run()
            .await
            .assert_ok();
    }
    // The evidence bucket has a block of its own (undo puts it back); the
    // bucket [`seed`] made has none (undo deletes the step's).
    for bucket in [BUCKET, OPEN_BUCKET] {
        let finding = cordon_tests::s3_bucket_finding(bucket);
        let plan = plan_steps(
            &finding,
            "permissions-bucket",
            json!([{"id": "block", "action": "block-bucket-public-access"}]),
        );
        Lifecycle::new(&world.actions, &plan, "block")
            .run()
            .await
            .assert_ok();
    }
}

/// `enrich-with-detective` on the web server's role (through its instance
/// profile, read from the emulator), Detective answered by mocks.
async fn drive_detective(world: &ShippedWorld) {
    let graphs = mock!(DetectiveClient::list_graphs).then_output(|| {
        ListGraphsOutput::builder()
            .graph_list(Graph::builder().arn(GRAPH).build())
            .build()
    });
    let investigations = mock!(DetectiveClient::list_investigations)
        .then_output(|| ListInvestigationsOutput::builder().build());
    let start = mock!(DetectiveClient::start_investigation).then_output(|| {
        StartInvestigationOutput::builder()
            .investigation_id("inv-permissions")
            .build()
    });
    let get = mock!(DetectiveClient::get_investigation).then_output(|| {
        GetInvestigationOutput::builder()
            .graph_arn(GRAPH)
            .investigation_id("inv-permissions")
            .status(Status::Successful)
            .build()
    });
    let indicators = mock!(DetectiveClient::list_indicators).then_output(|| {
        ListIndicatorsOutput::builder()
            .indicators(
                Indicator::builder()
                    .indicator_type(IndicatorType::TtpObserved)
                    .build(),
            )
            .build()
    });
    let detective = mock_client!(
        aws_sdk_detective,
        RuleMode::MatchAny,
        [&graphs, &investigations, &start, &get, &indicators]
    );
    let mut clients = world.actions.clients.clone();
    clients.detective = detective;
    let actions = AwsActions {
        clients,
        ..world.actions.clone()
    };
    let plan = web_server_plan(
        world,
        "permissions-detective",
        json!([
            {"id": "tag", "action": "tag-resource"},
            {"id": "enrich", "action": "enrich-with-detective"}
        ]),
    );
    let report = Lifecycle::new(&actions, &plan, "enrich").run().await;
    report.assert_ok();
    assert_eq!(start.num_calls(), 1, "an investigation was started");
}

#[test]
fn removing_one_declared_permission_reports_exactly_that_action_and_permission() {
    let declared = declared();
    // Every action calling everything it declares a call of its own for.
    let recorded: Permissions = ActionKind::iter()
        .map(|kind| (kind, kind.permissions().iter().copied().collect()))
        .collect();
    let full = compare(&declared, &recorded);
    assert!(full.undeclared.is_empty(), "{full}");

    let mut copy = declared.clone();
    copy.entry(ActionKind::QuarantineUser)
        .or_default()
        .remove("iam:AttachUserPolicy");
    let proof = compare(&copy, &recorded);
    eprintln!("with iam:AttachUserPolicy removed from quarantine-user:\n{proof}");
    assert_eq!(
        proof.undeclared,
        BTreeSet::from([(ActionKind::QuarantineUser, "iam:AttachUserPolicy")])
    );
    assert!(
        proof
            .to_string()
            .starts_with("UNDECLARED quarantine-user: a recorded call needs iam:AttachUserPolicy"),
        "{proof}"
    );
    // Unused is the implied and signing rows only (recorded here holds every own call).
    for (kind, permission) in &proof.unused {
        assert!(
            implied_reason(*kind, permission).is_some() || signing(*kind).any(|p| p == *permission),
            "{kind} {permission}"
        );
    }
}
