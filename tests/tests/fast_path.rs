//! The isolate step's critical path, counted from the call recorder rather
//! than timed: how many calls it makes and in how many sequential rounds
//! (calls sent only after another answered), with the isolation groups
//! present and in a fresh VPC (the figures `docs/round-trips.md` publishes);
//! and a request that never answers, put on the call path by the latency
//! proxy, costs one attempt timeout, not the operation budget, and never
//! makes a second group or snapshot.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use cordon_aws::actions::AwsActions;
use cordon_aws::actions::ec2::isolate;
use cordon_aws::client::{AwsClients, CONTROL_PLANE_ATTEMPT_TIMEOUT};
use cordon_aws::read_cache::Scope;
use cordon_aws::recorder::{RecordedCall, sequential_rounds};
use cordon_core::action::ActionKind;
use cordon_core::executor::Executor;
use cordon_core::journal::{CaseStatus, JournalEvent, JournalStore};
use cordon_core::local_store::LocalJournal;
use cordon_core::plan::Plan;
use cordon_gameday::{EnvironmentSpec, Fixture, provision};
use cordon_latency_proxy::{HangMode, HangRule, ProxyConfig};
use cordon_tests::{
    ApproveAll, Lifecycle, emulator, latency_path, local_actions, plan_steps, snapshots_per_volume,
};
use serde_json::json;

const ISOLATION: &str = "cordon-isolation";
const UNTRACK: &str = "cordon-isolation-untrack";

/// One VPC; `suspect` with two ENIs in different groups and a data volume,
/// `earlier` with one ENI (isolated first, to leave the groups behind).
fn environment() -> EnvironmentSpec {
    let group = |name: &str, port: i32| {
        json!({"name": name, "vpc": "vpc", "description": format!("{name} servers"),
               "ingress": [{"protocol": "tcp", "port": port, "cidr": "10.0.0.0/8"}]})
    };
    serde_json::from_value(json!({
        "vpcs": [{"name": "vpc", "cidr": "10.70.0.0/16", "subnets": [
            {"name": "a", "cidr": "10.70.1.0/24"},
            {"name": "b", "cidr": "10.70.2.0/24"}]}],
        "security-groups": [group("web", 443), group("db", 5432)],
        "instances": [
            {"name": "suspect", "subnet": "a", "groups": ["web"], "image-id": "ami-12c6146b",
             "interfaces": [{"subnet": "b", "groups": ["db"]}],
             "volumes": [{"device": "/dev/sdf", "size-gib": 10}]},
            {"name": "earlier", "subnet": "a", "groups": ["web"], "image-id": "ami-12c6146b"}
        ]
    }))
    .expect("environment spec")
}

/// A plan with one step, `action`, for instance `name`, from a finding that
/// names only its primary ENI (as GuardDuty often does).
fn plan_for(env: &Fixture, name: &str, action: &str) -> Plan {
    plan_steps(
        &raw_finding(env, name, action),
        "fast-path",
        json!([{"id": "step", "action": action}]),
    )
}

/// The finding [`plan_for`] plans from, as received.
fn raw_finding(env: &Fixture, name: &str, action: &str) -> String {
    let mut finding = env.instance_finding(name).expect("instance of the spec");
    finding.id = Some(format!("fast-path-{name}-{action}"));
    finding.interfaces.truncate(1);
    finding.detail().to_string()
}

/// Pre-state, apply and verify of the plan's step, each of which must succeed.
async fn contain(actions: &AwsActions, plan: &Plan) {
    let mut step = Lifecycle::new(actions, plan, "step");
    step.pre_state().await.expect("pre-state");
    step.apply().await.expect("apply");
    step.verify().await.expect("verify");
}

/// The isolate step's recorded calls since the recorder was last reset.
fn isolate_calls(clients: &AwsClients) -> Vec<RecordedCall> {
    clients
        .recorder
        .recent()
        .into_iter()
        .filter(|c| c.action == Some(ActionKind::IsolateInstance))
        .collect()
}

fn per_operation(calls: &[RecordedCall]) -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for call in calls {
        *out.entry(call.op.name).or_default() += 1;
    }
    out
}

/// The groups named `name` in `vpc`, read straight from the emulator.
async fn groups_named(clients: &AwsClients, vpc: &str, name: &str) -> Vec<String> {
    let out = clients
        .ec2
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .filters(Filter::builder().name("group-name").values(name).build())
        .send()
        .await
        .expect("DescribeSecurityGroups");
    out.security_groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect()
}

/// The tests of this file one at a time: sequential rounds are counted from
/// when calls were sent and answered, so another test's traffic slowing the
/// emulator could order two concurrent answers differently and count a round
/// that is not a dependency.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the round counts are taken through: a network's round trip. Straight
/// to the emulator, an answer can come back within the microseconds between
/// two calls a step sends together, and on a loaded machine the second then
/// counts as sent after the first's answer; 50 ms per request, as AWS takes,
/// leaves no such race.
const ROUND_TRIP: Duration = Duration::from_millis(50);

/// Isolates `suspect` (after `earlier`, when `groups_present`, so that an
/// earlier case left the groups behind) and checks the isolate step's calls
/// per operation and its sequential rounds.
async fn assert_isolation_cost(
    groups_present: bool,
    calls: &[(&'static str, usize)],
    rounds: usize,
) {
    let _one = ONE_AT_A_TIME.lock().await;
    let aws = emulator().await;
    let env = provision(aws.clients(), &environment())
        .await
        .expect("provision");
    let (clients, served) = proxied_path(aws.endpoint(), |config| config.delay = ROUND_TRIP).await;
    let (actions, _) = local_actions(&clients, "fast-path-rounds");
    if groups_present {
        contain(&actions, &plan_for(&env, "earlier", "isolate-instance")).await;
    }
    clients.recorder.reset();
    contain(&actions, &plan_for(&env, "suspect", "isolate-instance")).await;
    served.abort();
    let recorded = isolate_calls(&clients);
    assert_eq!(
        per_operation(&recorded),
        calls.iter().copied().collect(),
        "{recorded:#?}"
    );
    assert_eq!(sequential_rounds(&recorded), rounds, "{recorded:#?}");
}

#[tokio::test]
async fn isolating_with_the_groups_present_takes_four_rounds() {
    // Read (instance, its ENIs, the VPC's groups) | untrack swap of each ENI
    // | isolation swap of each ENI | read back (ENIs, the isolation group).
    let calls = [
        ("DescribeInstances", 1),
        ("DescribeNetworkInterfaces", 2),
        ("DescribeSecurityGroups", 2),
        ("ModifyNetworkInterfaceAttribute", 4),
    ];
    assert_isolation_cost(true, &calls, 4).await;
}

#[tokio::test]
async fn isolating_in_a_fresh_vpc_takes_six_rounds() {
    // Read | create both groups | the isolation group's egress revoked and
    // the untrack group's rules added | untrack swaps | isolation swaps | read back.
    let calls = [
        ("AuthorizeSecurityGroupEgress", 1),
        ("AuthorizeSecurityGroupIngress", 1),
        ("CreateSecurityGroup", 2),
        ("DescribeInstances", 1),
        ("DescribeNetworkInterfaces", 2),
        ("DescribeSecurityGroups", 2),
        ("ModifyNetworkInterfaceAttribute", 4),
        ("RevokeSecurityGroupEgress", 1),
    ];
    assert_isolation_cost(false, &calls, 6).await;
}

/// The read scope of `plan`'s case: the finding's account, the clients' region.
fn scope_of(clients: &AwsClients, plan: &Plan) -> Scope {
    Scope {
        account: plan.finding.account_id.clone(),
        region: clients.region.clone(),
    }
}

/// The reads made before the case opens, alongside the caller-identity
/// check, stand as the isolation step's pre-state: the step itself then reads
/// nothing before it swaps, and isolating takes three rounds of its own, not
/// four (`cordon run` counts the early round with the identity check's).
#[tokio::test]
async fn the_reads_made_before_the_case_opened_stand_as_the_isolation_pre_state() {
    let _one = ONE_AT_A_TIME.lock().await;
    let aws = emulator().await;
    let env = provision(aws.clients(), &environment())
        .await
        .expect("provision");
    let (clients, served) = proxied_path(aws.endpoint(), |config| config.delay = ROUND_TRIP).await;
    let clients = &clients;
    let (actions, _) = local_actions(clients, "fast-path-early");
    contain(&actions, &plan_for(&env, "earlier", "isolate-instance")).await;
    let plan = plan_for(&env, "suspect", "isolate-instance");
    let early = isolate::early_reads(clients, &plan)
        .await
        .expect("the plan isolates an instance");
    early.keep(clients, &scope_of(clients, &plan));
    clients.recorder.reset();
    contain(&actions, &plan).await;
    served.abort();
    let recorded = isolate_calls(clients);
    let calls = [
        ("DescribeNetworkInterfaces", 1),
        ("DescribeSecurityGroups", 1),
        ("ModifyNetworkInterfaceAttribute", 4),
    ];
    assert_eq!(
        per_operation(&recorded),
        calls.iter().copied().collect(),
        "{recorded:#?}"
    );
    assert_eq!(sequential_rounds(&recorded), 3, "{recorded:#?}");
}

/// An ENI in an isolation group when the early reads were made may belong to
/// another case rolling back (its claim released since): the pre-state is
/// then read again after the claims, and records the groups the ENI is in
/// by then, never the isolation group.
#[tokio::test]
async fn early_reads_that_saw_an_isolation_group_are_made_again_for_the_pre_state() {
    let _one = ONE_AT_A_TIME.lock().await;
    let aws = emulator().await;
    let clients = aws.clients();
    let env = provision(clients, &environment()).await.expect("provision");
    let (actions, _) = local_actions(clients, "fast-path-early-stale");
    contain(&actions, &plan_for(&env, "earlier", "isolate-instance")).await;
    let isolation = groups_named(clients, &env.vpcs["vpc"].id, ISOLATION).await;
    let plan = plan_for(&env, "suspect", "isolate-instance");
    let eni = env.instances["suspect"].eni_ids()[0].clone();
    let own = eni_groups(clients, &eni).await;
    set_eni_groups(clients, &eni, &isolation).await;
    let early = isolate::early_reads(clients, &plan)
        .await
        .expect("the plan isolates an instance");
    // The other case's rollback puts the ENI back, then the claim is free.
    set_eni_groups(clients, &eni, &own).await;
    early.keep(clients, &scope_of(clients, &plan));
    clients.recorder.reset();
    let mut step = Lifecycle::new(&actions, &plan, "step");
    step.pre_state().await.expect("pre-state");
    let recorded = isolate_calls(clients);
    assert_eq!(
        per_operation(&recorded).get("DescribeNetworkInterfaces"),
        Some(&1),
        "read again: {recorded:#?}"
    );
    let journaled = step.pre()["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|i| i["network-interface-id"] == eni.as_str())
        .expect("the ENI")["security-group-ids"]
        .clone();
    assert_eq!(journaled, json!(own), "pre-state of {eni}");
}

/// The security groups of `eni`, read straight from the emulator.
async fn eni_groups(clients: &AwsClients, eni: &str) -> Vec<String> {
    let out = clients
        .ec2
        .describe_network_interfaces()
        .network_interface_ids(eni)
        .send()
        .await
        .expect("DescribeNetworkInterfaces");
    out.network_interfaces()[0]
        .groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect()
}

/// Puts `eni` in exactly `groups`, straight through the emulator.
async fn set_eni_groups(clients: &AwsClients, eni: &str, groups: &[String]) {
    clients
        .ec2
        .modify_network_interface_attribute()
        .network_interface_id(eni)
        .set_groups(Some(groups.to_vec()))
        .send()
        .await
        .expect("ModifyNetworkInterfaceAttribute");
}

/// A proxy with no delay in front of the emulator that never answers the
/// first `operation` request, and clients that go through it.
async fn hanging_path(
    emulator_endpoint: &str,
    operation: &str,
    mode: HangMode,
) -> (AwsClients, tokio::task::JoinHandle<()>) {
    proxied_path(emulator_endpoint, |config| {
        config.delay = Duration::ZERO;
        config.hang = Some(HangRule::Operation(operation.to_string()));
        config.hang_mode = mode;
    })
    .await
}

/// Runs `plan` through the executor with a journal in `dir`, which must
/// complete; returns the calls `kind`'s handler made and the journal.
async fn run_recorded(
    actions: &AwsActions,
    dir: &std::path::Path,
    plan: &Plan,
    raw: &str,
    kind: ActionKind,
) -> (Vec<RecordedCall>, LocalJournal) {
    let journal = LocalJournal::new(dir.join("journal"));
    actions.clients.recorder.reset();
    let report = Executor::new(actions, &journal, &ApproveAll)
        .run(plan, raw)
        .await
        .expect("run");
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let calls = actions
        .clients
        .recorder
        .recent()
        .into_iter()
        .filter(|c| c.action == Some(kind))
        .collect();
    (calls, journal)
}

/// Clients through a latency proxy in front of the emulator (see
/// [`latency_path`]).
async fn proxied_path(
    emulator_endpoint: &str,
    configure: impl FnOnce(&mut ProxyConfig),
) -> (AwsClients, tokio::task::JoinHandle<()>) {
    let (config, served) = latency_path(emulator_endpoint, configure).await;
    let clients = AwsClients::from_sdk_config(&config).expect("proxied clients");
    (clients, served)
}

/// Far less than the 30 s operation budget a hung attempt used to hold
/// containment for, and far more than one attempt timeout and a retry take.
const BOUND: Duration = Duration::from_secs(20);

/// Isolation in a fresh VPC while the first CreateSecurityGroup hangs
/// (`mode`); returns the attempts sent per operation.
async fn isolate_with_a_hung_group_creation(mode: HangMode) -> BTreeMap<String, u64> {
    let aws = emulator().await;
    let env = provision(aws.clients(), &environment())
        .await
        .expect("provision");
    let (clients, proxy) = hanging_path(aws.endpoint(), "CreateSecurityGroup", mode).await;
    let (actions, _) = local_actions(&clients, "fast-path-hang");
    let plan = plan_for(&env, "suspect", "isolate-instance");
    tokio::time::timeout(BOUND, contain(&actions, &plan))
        .await
        .expect("isolation finished well inside the operation budget");
    let vpc = &env.vpcs["vpc"].id;
    for name in [ISOLATION, UNTRACK] {
        let found = groups_named(aws.clients(), vpc, name).await;
        assert_eq!(found.len(), 1, "{name}: {found:?}");
    }
    proxy.abort();
    clients.calls.snapshot()
}

#[tokio::test]
async fn a_group_creation_whose_answer_is_lost_is_found_not_sent_again() {
    let _one = ONE_AT_A_TIME.lock().await;
    assert!(CONTROL_PLANE_ATTEMPT_TIMEOUT < BOUND / 4);
    let attempts = isolate_with_a_hung_group_creation(HangMode::Unanswered).await;
    // One per group: the one that took effect unanswered was found by the
    // lookup that followed its timeout, never re-sent.
    assert_eq!(
        attempts.get("EC2.CreateSecurityGroup"),
        Some(&2),
        "{attempts:?}"
    );
}

#[tokio::test]
async fn a_group_creation_that_never_arrived_is_sent_again_after_the_lookup() {
    let _one = ONE_AT_A_TIME.lock().await;
    let attempts = isolate_with_a_hung_group_creation(HangMode::Unsent).await;
    // The lookup after the timeout found nothing, so it was sent once more.
    assert_eq!(
        attempts.get("EC2.CreateSecurityGroup"),
        Some(&3),
        "{attempts:?}"
    );
}

#[tokio::test]
async fn a_snapshot_whose_answer_is_lost_is_found_not_taken_twice() {
    let _one = ONE_AT_A_TIME.lock().await;
    let aws = emulator().await;
    let env = provision(aws.clients(), &environment())
        .await
        .expect("provision");
    let (clients, proxy) =
        hanging_path(aws.endpoint(), "CreateSnapshot", HangMode::Unanswered).await;
    let (actions, _) = local_actions(&clients, "fast-path-snapshot");
    let plan = plan_for(&env, "suspect", "snapshot-volumes");
    tokio::time::timeout(BOUND, contain(&actions, &plan))
        .await
        .expect("snapshots finished well inside the operation budget");
    proxy.abort();
    let volumes = &env.instances["suspect"].volumes;
    let ids: Vec<&str> = volumes.iter().map(|v| v.id.as_str()).collect();
    for (volume, taken) in snapshots_per_volume(aws.clients(), &ids).await {
        assert_eq!(taken, 1, "{volume}: {taken} snapshots");
    }
    let attempts = clients.calls.snapshot();
    assert_eq!(
        attempts.get("EC2.CreateSnapshot"),
        Some(&(volumes.len() as u64)),
        "{attempts:?}"
    );
}

/// A service that is slow, not lost: every DescribeInstances is answered
/// 4 s late, longer than a control-plane attempt's first budget (3 s). The
/// first attempt is abandoned; the retry has twice the budget and gets its
/// answer. With one fixed budget every attempt was abandoned just before its
/// answer came, and the call failed with a timeout it did not need.
#[tokio::test]
async fn a_slow_answer_arrives_on_a_retry_with_a_longer_attempt_budget() {
    let _one = ONE_AT_A_TIME.lock().await;
    let aws = emulator().await;
    let env = provision(aws.clients(), &environment())
        .await
        .expect("provision");
    let slow = CONTROL_PLANE_ATTEMPT_TIMEOUT + Duration::from_secs(1);
    let (clients, served) = proxied_path(aws.endpoint(), |config| {
        config.delay = Duration::ZERO;
        config.slow = Some(("DescribeInstances".to_string(), slow));
    })
    .await;
    let instance = &env.instances["suspect"].id;
    let request = clients.ec2.describe_instances().instance_ids(instance);
    let answer = clients
        .call(&cordon_aws::ops::EC2_DESCRIBE_INSTANCES, instance, request)
        .await;
    served.abort();
    let answer = answer.expect("the retry's longer budget covers the slow answer");
    assert_eq!(
        answer.reservations()[0].instances()[0].instance_id(),
        Some(instance.as_str())
    );
    assert_eq!(
        clients.calls.snapshot().get("EC2.DescribeInstances"),
        Some(&2),
        "one abandoned attempt, one answered"
    );
}

/// The steps after isolation start together, and several describe the
/// instance for their pre-state: one DescribeInstances answers them all
/// (each step's read still goes out when no read of the instance is under
/// way: nothing is kept once the answer is in).
#[tokio::test]
async fn steps_that_describe_one_instance_together_share_one_read() {
    let _one = ONE_AT_A_TIME.lock().await;
    let aws = emulator().await;
    let env = provision(aws.clients(), &environment())
        .await
        .expect("provision");
    // 100 ms per request, so the three reads certainly overlap.
    let (clients, served) = proxied_path(aws.endpoint(), |config| {
        config.delay = Duration::from_millis(100);
    })
    .await;
    let (actions, _) = local_actions(&clients, "fast-path-shared-read");
    let mut finding = env
        .instance_finding("suspect")
        .expect("instance of the spec");
    finding.id = Some("fast-path-shared-read".to_string());
    let plan = plan_steps(
        &finding.detail().to_string(),
        "fast-path",
        json!([
            {"id": "tag", "action": "tag-resource", "needs": [],
             "with": {"tags": {"cordon:case": "shared-read"}}},
            {"id": "snapshot", "action": "snapshot-volumes", "needs": []},
            {"id": "capture", "action": "capture-instance-metadata", "needs": []}
        ]),
    );
    let mut tag = Lifecycle::new(&actions, &plan, "tag");
    let mut snapshot = Lifecycle::new(&actions, &plan, "snapshot");
    let mut capture = Lifecycle::new(&actions, &plan, "capture");
    let (a, b, c) = tokio::join!(tag.pre_state(), snapshot.pre_state(), capture.pre_state());
    a.expect("tag pre-state");
    b.expect("snapshot pre-state");
    c.expect("capture pre-state");
    let shared = clients
        .calls
        .snapshot()
        .get("EC2.DescribeInstances")
        .copied();
    // Asked alone, afterwards: a read of its own.
    Lifecycle::new(&actions, &plan, "tag")
        .pre_state()
        .await
        .expect("tag pre-state, alone");
    let alone = clients
        .calls
        .snapshot()
        .get("EC2.DescribeInstances")
        .copied();
    served.abort();
    assert_eq!(shared, Some(1), "three pre-states, one read");
    assert_eq!(alone, Some(2), "a later ask reads afresh");
}

/// A snapshot step's first attempt, journaled, creates the snapshots without
/// first looking for an earlier attempt's by tag: it journals the volumes
/// before its first CreateSnapshot, so with no such record in the journal no
/// attempt can have taken one. The only DescribeSnapshots left is
/// verification's, after the snapshots were taken.
#[tokio::test]
async fn a_first_snapshot_attempt_takes_no_lookup_round() {
    let _one = ONE_AT_A_TIME.lock().await;
    let aws = emulator().await;
    let clients = aws.clients();
    let env = provision(clients, &environment()).await.expect("provision");
    let (actions, dir) = local_actions(clients, "fast-path-first-snapshot");
    let plan = plan_for(&env, "suspect", "snapshot-volumes");
    let raw = raw_finding(&env, "suspect", "snapshot-volumes");
    let (calls, journal) =
        run_recorded(&actions, &dir, &plan, &raw, ActionKind::SnapshotVolumes).await;
    let first_create = calls
        .iter()
        .position(|c| c.op.name == "CreateSnapshot")
        .expect("snapshots were taken");
    let looked_up: Vec<&RecordedCall> = calls[..first_create]
        .iter()
        .filter(|c| c.op.name == "DescribeSnapshots")
        .collect();
    assert!(looked_up.is_empty(), "{looked_up:#?}");
    assert_eq!(per_operation(&calls)["CreateSnapshot"], 2, "{calls:#?}");

    let records = journal.load(&plan.case_id).await.expect("journal");
    let announced = records.iter().position(|r| {
        matches!(&r.event, JournalEvent::StepProgress { progress, .. }
            if progress["phase"] == "creating-snapshots" && progress["volumes"].as_array().map(Vec::len) == Some(2))
    });
    let applied = records
        .iter()
        .position(|r| matches!(&r.event, JournalEvent::StepApplied { .. }));
    assert!(
        matches!((announced, applied), (Some(a), Some(b)) if a < b),
        "the volumes are journaled before the step is applied: {records:#?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `capture-instance-metadata` after isolation reads the groups the ENIs are
/// in alongside the instance, its ENIs and its volumes, instead of one round
/// after them: it expects the isolation group (known to the process from the
/// isolate step) and the groups the finding saw, and keeps exactly the
/// groups the reads show. The isolation groups are present (an earlier case
/// made them); in a fresh VPC the guess lacks the group isolation creates,
/// and the capture reads it one round later.
#[tokio::test]
async fn the_metadata_capture_reads_the_isolated_instances_groups_in_its_first_round() {
    let _one = ONE_AT_A_TIME.lock().await;
    let aws = emulator().await;
    let clients = aws.clients();
    let env = provision(clients, &environment()).await.expect("provision");
    let (actions, dir) = local_actions(clients, "fast-path-capture-groups");
    contain(&actions, &plan_for(&env, "earlier", "isolate-instance")).await;
    let plan = plan_steps(
        &raw_finding(&env, "suspect", "capture"),
        "fast-path",
        json!([
            {"id": "isolate", "action": "isolate-instance"},
            {"id": "capture", "action": "capture-instance-metadata", "needs": ["isolate"]}
        ]),
    );
    let raw = raw_finding(&env, "suspect", "capture");
    let (calls, _) = run_recorded(
        &actions,
        &dir,
        &plan,
        &raw,
        ActionKind::CaptureInstanceMetadata,
    )
    .await;
    let per_op = per_operation(&calls);
    assert_eq!(per_op.get("DescribeSecurityGroups"), Some(&1), "{calls:#?}");
    let groups = calls
        .iter()
        .find(|c| c.op.name == "DescribeSecurityGroups")
        .unwrap();
    let instance = calls
        .iter()
        .find(|c| c.op.name == "DescribeInstances")
        .unwrap();
    assert!(
        groups.started < instance.finished.expect("answered"),
        "the groups are read in the instance read's round: {calls:#?}"
    );

    let isolation = groups_named(clients, &env.vpcs["vpc"].id, ISOLATION).await;
    let document: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            dir.join(plan.case_id.as_str())
                .join("evidence")
                .join(format!(
                    "instance-metadata-{}.json",
                    env.instances["suspect"].id
                )),
        )
        .expect("the capture"),
    )
    .expect("JSON");
    let kept: Vec<&str> = document["security-groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["group-id"].as_str().expect("group-id"))
        .collect();
    assert_eq!(kept, isolation, "only the groups the ENIs are in now");
    let _ = std::fs::remove_dir_all(dir);
}

/// The steps whose pre-state is read ahead: the six actions no other action
/// of cordon changes the reads of, and only while the plan has one step of
/// the kind; never isolation, a capture or the evidence store.
#[tokio::test]
async fn only_pre_states_no_other_step_changes_are_read_ahead() {
    let aws = emulator().await;
    let (actions, _) = local_actions(aws.clients(), "fast-path-prefetchable");
    let finding = std::fs::read_to_string(
        cordon_tests::repo_root().join("tests/fixtures/findings/instance-two-enis.json"),
    )
    .expect("fixture");
    let ahead = |plan: &Plan| -> Vec<String> {
        plan.steps
            .iter()
            .filter(|s| cordon_core::executor::Actions::prefetchable(&actions, plan, s))
            .map(|s| s.id.clone())
            .collect()
    };
    let every = plan_steps(
        &finding,
        "fast-path",
        json!([
            {"id": "isolate", "action": "isolate-instance"},
            {"id": "asg", "action": "detach-from-autoscaling"},
            {"id": "lb", "action": "deregister-from-load-balancers"},
            {"id": "profile", "action": "detach-instance-profile"},
            {"id": "protect", "action": "enable-termination-protection"},
            {"id": "snapshot", "action": "snapshot-volumes"},
            {"id": "tag", "action": "tag-resource", "with": {"tags": {"k": "v"}}},
            {"id": "metadata", "action": "capture-instance-metadata"},
            {"id": "console", "action": "capture-console-output"},
            {"id": "store", "action": "store-evidence"}
        ]),
    );
    assert_eq!(
        ahead(&every),
        ["asg", "lb", "profile", "protect", "snapshot", "tag"]
    );
    // A second step of a kind may change what the first reads: neither is read ahead.
    let twice = plan_steps(
        &finding,
        "fast-path",
        json!([
            {"id": "isolate", "action": "isolate-instance"},
            {"id": "tag-1", "action": "tag-resource", "with": {"tags": {"k": "v"}}},
            {"id": "tag-2", "action": "tag-resource", "with": {"tags": {"k": "w"}}},
            {"id": "protect", "action": "enable-termination-protection"}
        ]),
    );
    assert_eq!(ahead(&twice), ["protect"]);
}
