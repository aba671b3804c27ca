//! Containment of an instance against the emulator: tags, termination
//! protection, per-ENI isolation and snapshots. Each action is applied,
//! verified, undone (also from crash states) and verified undone, and the
//! resources are compared field by field with describes taken before.
//!
//! The environment comes from the Game Day fixture builder, which launches
//! instances with an explicit primary `NetworkInterfaces` spec (moto 5.2.5
//! reports every ENI of an instance launched with `SecurityGroupIds` as in
//! the instance's launch groups too, so a per-ENI group swap would never read
//! back as done; both launch forms are valid on AWS).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_sdk_ec2::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ec2::error::BoxError;
use aws_sdk_ec2::types::{
    Filter, InstanceAttributeName, IpPermission, IpRange, NetworkInterface, SecurityGroup, Tag,
};
use cordon_aws::actions::AwsActions;
use cordon_aws::actions::ec2::isolate::open_interfaces;
use cordon_aws::client::AwsClients;
use cordon_core::executor::{Actions, ErrorKind, Executor};
use cordon_core::journal::{CaseStatus, JournalEvent, JournalStore};
use cordon_core::local_store::LocalJournal;
use cordon_core::plan::PlannedStep;
use cordon_core::plan::{CaseId, Plan, Target};
use cordon_gameday::spec::InstanceSpec;
use cordon_gameday::{EnvironmentSpec, InstanceFinding, provision as build};
use cordon_tests::{
    ApproveAll, ApproveUndo, Lifecycle, REGION, emulator, latency_path, local_actions, mutating,
    plan_steps, take_calls,
};
use serde_json::{Value, json};

const ISOLATION: &str = "cordon-isolation";
const UNTRACK: &str = "cordon-isolation-untrack";

/// One VPC with an instance holding two ENIs with different groups and two volumes.
#[derive(Debug)]
struct Fixture {
    vpc: String,
    /// web, ssh, db.
    groups: [String; 3],
    instance: String,
    primary_eni: String,
    second_eni: String,
    root_volume: String,
    data_volume: String,
    /// Everything the builder made, for the other instances of a test.
    env: cordon_gameday::Fixture,
}

/// Two subnets, three groups with one ingress rule each, and `suspect`: its
/// primary ENI in web and ssh, a second ENI in db, a data volume.
fn environment(second_octet: u8) -> EnvironmentSpec {
    let group = |name: &str, port: i32| {
        json!({"name": name, "vpc": "vpc", "description": format!("{name} servers"),
               "ingress": [{"protocol": "tcp", "port": port, "cidr": "10.0.0.0/8"}]})
    };
    serde_json::from_value(json!({
        "vpcs": [{"name": "vpc", "cidr": format!("10.{second_octet}.0.0/16"), "subnets": [
            {"name": "a", "cidr": format!("10.{second_octet}.1.0/24")},
            {"name": "b", "cidr": format!("10.{second_octet}.2.0/24")}]}],
        "security-groups": [group("web", 443), group("ssh", 22), group("db", 5432)],
        "instances": [{"name": "suspect", "subnet": "a", "groups": ["web", "ssh"], "image-id": "ami-12c6146b",
            "interfaces": [{"subnet": "b", "groups": ["db"], "description": "second interface"}],
            "volumes": [{"device": "/dev/sdf", "size-gib": 10}]}]
    }))
    .expect("environment spec")
}

/// Another instance in subnet `a` and the web group, optionally with a
/// second ENI in subnet `b` and the db group.
fn other_instance(name: &str, second_eni: bool) -> InstanceSpec {
    let interfaces = if second_eni {
        json!([{"subnet": "b", "groups": ["db"]}])
    } else {
        json!([])
    };
    serde_json::from_value(json!({"name": name, "subnet": "a", "groups": ["web"],
        "image-id": "ami-12c6146b", "interfaces": interfaces}))
    .expect("instance spec")
}

async fn provision(clients: &AwsClients, second_octet: u8, others: Vec<InstanceSpec>) -> Fixture {
    let mut spec = environment(second_octet);
    spec.instances.extend(others);
    let env = build(clients, &spec).await.expect("provision");
    let suspect = &env.instances["suspect"];
    let group = |name: &str| env.security_groups[name].id.clone();
    let fx = Fixture {
        vpc: env.vpcs["vpc"].id.clone(),
        groups: [group("web"), group("ssh"), group("db")],
        instance: suspect.id.clone(),
        primary_eni: suspect.enis[0].id.clone(),
        second_eni: suspect.enis[1].id.clone(),
        root_volume: suspect.volumes[0].id.clone(),
        data_volume: suspect.volumes[1].id.clone(),
        env: env.clone(),
    };
    let enis = enis_of(clients, &fx.instance).await;
    assert_eq!(enis.len(), 2, "two ENIs attached");
    assert_eq!(
        enis[0].network_interface_id(),
        Some(fx.primary_eni.as_str())
    );
    assert_eq!(
        ids_of(&enis[0]),
        vec![fx.groups[0].clone(), fx.groups[1].clone()]
    );
    assert_eq!(
        ids_of(&enis[1]),
        vec![fx.groups[2].clone()],
        "the second ENI has its own groups"
    );
    fx
}

impl Fixture {
    /// The id of another instance of the spec.
    fn other(&self, name: &str) -> String {
        self.env.instances[name].id.clone()
    }
}

async fn describe(clients: &AwsClients, instance: &str) -> aws_sdk_ec2::types::Instance {
    clients
        .ec2
        .describe_instances()
        .instance_ids(instance)
        .send()
        .await
        .expect("DescribeInstances")
        .reservations()[0]
        .instances()[0]
        .clone()
}

/// The instance's ENIs, full descriptions, primary first.
async fn enis_of(clients: &AwsClients, instance: &str) -> Vec<NetworkInterface> {
    let out = clients
        .ec2
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(instance)
                .build(),
        )
        .send()
        .await
        .expect("DescribeNetworkInterfaces");
    let mut enis = out.network_interfaces().to_vec();
    enis.sort_by_key(|n| n.attachment().and_then(|a| a.device_index()));
    enis
}

fn ids_of(eni: &NetworkInterface) -> Vec<String> {
    eni.groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect()
}

async fn groups_named(clients: &AwsClients, name: &str) -> Vec<SecurityGroup> {
    clients
        .ec2
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values(name).build())
        .send()
        .await
        .expect("DescribeSecurityGroups")
        .security_groups()
        .to_vec()
}

async fn group(clients: &AwsClients, id: &str) -> SecurityGroup {
    clients
        .ec2
        .describe_security_groups()
        .group_ids(id)
        .send()
        .await
        .expect("DescribeSecurityGroups")
        .security_groups()[0]
        .clone()
}

fn tag_of<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// A GuardDuty finding naming the instance `name` of the spec and, as
/// GuardDuty often does, only its primary ENI.
fn finding_of(fx: &Fixture, name: &str) -> InstanceFinding {
    let mut finding = fx
        .env
        .instance_finding(name)
        .expect("an instance of the spec");
    finding.id = Some(format!("finding-{}", finding.instance_id));
    finding.interfaces.truncate(1);
    finding
}

/// The same finding about an instance id that does not exist.
fn missing_finding(fx: &Fixture, instance_id: &str, eni: &str) -> InstanceFinding {
    let mut finding = finding_of(fx, "suspect");
    finding.id = Some(format!("finding-{instance_id}"));
    finding.instance_id = instance_id.to_string();
    finding.interfaces[0].id = eni.to_string();
    finding
}

/// The containment playbook of this file, planned for the finding.
fn containment_plan(finding: &InstanceFinding) -> (Plan, String) {
    let retry = json!({"max-attempts": 2, "initial-backoff-ms": 10});
    let raw = finding.detail().to_string();
    let plan = plan_steps(
        &raw,
        "ec2-isolation",
        json!([
            {"id": "tag", "action": "tag-resource", "retry": retry},
            {"id": "protect", "action": "enable-termination-protection", "retry": retry},
            {"id": "isolate", "action": "isolate-instance", "retry": retry},
            {"id": "snapshot", "action": "snapshot-volumes", "with": {"wait": true, "wait-timeout-seconds": 30}, "retry": retry},
            {"id": "scratch-snapshot", "action": "snapshot-volumes", "with": {"delete-on-rollback": true}, "retry": retry}
        ]),
    );
    (plan, raw)
}

/// The mutating calls since the counter was last reset.
fn mutating_now(clients: &AwsClients) -> BTreeMap<String, u64> {
    mutating(&clients.calls.snapshot())
}

fn count(calls: &BTreeMap<String, u64>, operation: &str) -> u64 {
    calls.get(&format!("EC2.{operation}")).copied().unwrap_or(0)
}

/// Isolates through the handler: pre-state, apply, verify. Returns (pre, outcome).
async fn isolate(actions: &AwsActions, plan: &Plan) -> (Value, Value) {
    let mut life = Lifecycle::new(actions, plan, "isolate");
    let pre = life.pre_state().await.expect("isolate pre-state");
    let outcome = life.apply().await.expect("isolate apply");
    life.verify().await.expect("isolate verify");
    (pre, outcome)
}

fn isolation_group_of(outcome: &Value) -> String {
    outcome["groups"][0]["isolation-group-id"]
        .as_str()
        .expect("isolation group id in outcome")
        .to_string()
}

#[tokio::test]
async fn isolation_moves_every_eni_and_undo_restores_each_its_own_groups() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients, 10, vec![]).await;
    let (actions, dir) = local_actions(clients, "isolate");
    let (plan, _) = containment_plan(&finding_of(&fx, "suspect"));
    let before = enis_of(clients, &fx.instance).await;
    let mut life = Lifecycle::new(&actions, &plan, "isolate").counting(&clients.calls);

    let pre = life.pre_state().await.expect("pre-state");
    let pre_calls = life.last_calls().clone();
    let interfaces = pre["interfaces"].as_array().expect("interfaces");
    assert_eq!(
        interfaces.len(),
        2,
        "both ENIs, though the finding names one: {pre}"
    );
    assert_eq!(
        interfaces[0]["network-interface-id"],
        fx.primary_eni.as_str()
    );
    assert_eq!(
        interfaces[0]["security-group-ids"],
        json!([fx.groups[0], fx.groups[1]])
    );
    assert_eq!(
        interfaces[1]["network-interface-id"],
        fx.second_eni.as_str()
    );
    assert_eq!(interfaces[1]["security-group-ids"], json!([fx.groups[2]]));
    assert_eq!(interfaces[1]["vpc-id"], fx.vpc.as_str());

    let dry = life.dry_run();
    eprintln!("isolate dry run:\n{}", dry.join("\n"));
    assert_eq!(
        dry.iter()
            .filter(|l| l.starts_with("ec2:ModifyNetworkInterfaceAttribute"))
            .count(),
        4
    );

    let outcome = life.apply().await.expect("apply");
    let apply_calls = life.last_calls().clone();
    life.verify().await.expect("verify");
    let verify_calls = life.last_calls().clone();
    let total: u64 = [&pre_calls, &apply_calls, &verify_calls]
        .iter()
        .flat_map(|c| c.values())
        .sum();
    eprintln!("isolate of a 2-ENI instance, fresh VPC: {total} calls");
    assert_eq!(
        count(&apply_calls, "ModifyNetworkInterfaceAttribute"),
        4,
        "two phases x two ENIs"
    );
    assert_eq!(count(&apply_calls, "CreateSecurityGroup"), 2);
    assert_eq!(count(&apply_calls, "ModifyInstanceAttribute"), 0);

    let iso = isolation_group_of(&outcome);
    for eni in enis_of(clients, &fx.instance).await {
        assert_eq!(
            ids_of(&eni),
            vec![iso.clone()],
            "{:?} only in the isolation group",
            eni.network_interface_id()
        );
    }
    let iso_group = group(clients, &iso).await;
    assert_eq!(iso_group.group_name(), Some(ISOLATION));
    assert_eq!(iso_group.vpc_id(), Some(fx.vpc.as_str()));
    assert!(
        iso_group.ip_permissions().is_empty(),
        "no ingress: {:?}",
        iso_group.ip_permissions()
    );
    assert!(
        iso_group.ip_permissions_egress().is_empty(),
        "no egress: {:?}",
        iso_group.ip_permissions_egress()
    );
    assert_eq!(tag_of(iso_group.tags(), "cordon:role"), Some("isolation"));
    let untrack = groups_named(clients, UNTRACK).await;
    assert_eq!(untrack.len(), 1);
    assert_eq!(tag_of(untrack[0].tags(), "cordon:role"), Some("untrack"));
    for rules in [
        untrack[0].ip_permissions(),
        untrack[0].ip_permissions_egress(),
    ] {
        assert!(rules.iter().any(|r| {
            r.ip_protocol() == Some("-1")
                && r.ip_ranges()
                    .iter()
                    .any(|x| x.cidr_ip() == Some("0.0.0.0/0"))
        }));
        assert!(rules.iter().any(|r| {
            r.ip_protocol() == Some("-1")
                && r.ipv6_ranges()
                    .iter()
                    .any(|x| x.cidr_ipv6() == Some("::/0"))
        }));
    }
    let results = outcome["interfaces"].as_array().expect("interfaces");
    assert_eq!(results.len(), 2);
    assert!(
        results
            .iter()
            .all(|r| r["passed-through"] == untrack[0].group_id().expect("id"))
    );
    let note = outcome["still-tracked"].as_str().expect("note");
    for path in [
        "ICMP",
        "NAT gateways",
        "Network Load Balancers",
        "Gateway Load Balancers",
        "transit gateways",
    ] {
        assert!(note.contains(path), "{note}");
    }

    let undone = life.rollback().await.expect("undo, verify undone");
    assert_eq!(
        undone["restored"],
        json!([fx.primary_eni, fx.second_eni]),
        "{undone}"
    );
    let after = enis_of(clients, &fx.instance).await;
    assert_eq!(after.len(), before.len());
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(a.network_interface_id(), b.network_interface_id());
        assert_eq!(
            a.groups(),
            b.groups(),
            "each ENI back in its own groups, same order"
        );
        assert_eq!(a, b, "nothing else changed on the ENI");
    }
    assert_eq!(
        groups_named(clients, ISOLATION).await.len(),
        1,
        "the isolation group is kept for reuse"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn isolation_groups_are_shared_within_a_vpc_and_distinct_across_vpcs() {
    let aws = emulator().await;
    let clients = aws.clients();
    let a = provision(clients, 10, vec![other_instance("neighbour", false)]).await;
    let b = provision(clients, 20, vec![]).await;
    let (actions, dir) = local_actions(clients, "reuse");

    let (plan_a, _) = containment_plan(&finding_of(&a, "suspect"));
    let (_, first) = isolate(&actions, &plan_a).await;
    clients.calls.reset();
    let (plan_n, _) = containment_plan(&finding_of(&a, "neighbour"));
    let (_, second) = isolate(&actions, &plan_n).await;
    let reuse_calls = take_calls(clients, "isolate, groups reused");
    assert_eq!(
        count(&reuse_calls, "CreateSecurityGroup"),
        0,
        "groups found, not created"
    );
    assert_eq!(count(&reuse_calls, "RevokeSecurityGroupEgress"), 0);
    assert_eq!(count(&reuse_calls, "AuthorizeSecurityGroupIngress"), 0);
    let (plan_b, _) = containment_plan(&finding_of(&b, "suspect"));
    let (_, third) = isolate(&actions, &plan_b).await;

    assert_eq!(
        isolation_group_of(&first),
        isolation_group_of(&second),
        "one isolation group per VPC"
    );
    assert_eq!(
        first["groups"][0]["untrack-group-id"],
        second["groups"][0]["untrack-group-id"]
    );
    assert_ne!(
        isolation_group_of(&first),
        isolation_group_of(&third),
        "another VPC, another group"
    );
    assert_eq!(
        group(clients, &isolation_group_of(&third)).await.vpc_id(),
        Some(b.vpc.as_str())
    );
    let all: BTreeSet<String> = groups_named(clients, ISOLATION)
        .await
        .iter()
        .filter_map(|g| g.vpc_id().map(str::to_string))
        .collect();
    assert_eq!(
        all,
        BTreeSet::from([a.vpc.clone(), b.vpc.clone()]),
        "exactly one per VPC"
    );
    assert_eq!(groups_named(clients, UNTRACK).await.len(), 2);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_reused_isolation_group_with_rules_is_repaired_or_refused() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients, 10, vec![other_instance("other", false)]).await;
    let (actions, dir) = local_actions(clients, "repair");
    // A group left half-made (created, default egress never revoked).
    let made = clients
        .ec2
        .create_security_group()
        .group_name(ISOLATION)
        .description("half made")
        .vpc_id(&fx.vpc)
        .send()
        .await
        .expect("CreateSecurityGroup");
    let iso = made.group_id().expect("id").to_string();
    let (plan, _) = containment_plan(&finding_of(&fx, "suspect"));
    let (_, outcome) = isolate(&actions, &plan).await;
    assert_eq!(isolation_group_of(&outcome), iso, "reused");
    assert!(
        group(clients, &iso)
            .await
            .ip_permissions_egress()
            .is_empty(),
        "egress revoked"
    );
    assert_eq!(
        outcome["groups"][0]["repaired"].as_array().map(Vec::len),
        Some(1),
        "{outcome}"
    );

    // Someone adds an ingress rule: cordon refuses to call that isolation.
    clients
        .ec2
        .authorize_security_group_ingress()
        .group_id(&iso)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(IpRange::builder().cidr_ip("203.0.113.7/32").build())
                .build(),
        )
        .send()
        .await
        .expect("AuthorizeSecurityGroupIngress");
    let other = fx.other("other");
    let (plan, _) = containment_plan(&finding_of(&fx, "other"));
    let mut life = Lifecycle::new(&actions, &plan, "isolate").counting(&clients.calls);
    life.pre_state().await.expect("pre-state");
    let err = life.apply().await.expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Refused, "{err}");
    assert_eq!(err.resource, iso);
    assert!(err.to_string().contains("tcp:22 203.0.113.7/32"), "{err}");
    assert!(
        life.last_mutating().is_empty(),
        "no ENI moved: {:?}",
        life.last_mutating()
    );
    assert_eq!(
        ids_of(&enis_of(clients, &other).await[0]),
        vec![fx.groups[0].clone()]
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn reapply_after_a_crash_is_idempotent_and_undo_works_from_half_applied_states() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients, 10, vec![]).await;
    let (actions, dir) = local_actions(clients, "crash");
    let (plan, _) = containment_plan(&finding_of(&fx, "suspect"));
    let before = enis_of(clients, &fx.instance).await;
    let mut life = Lifecycle::new(&actions, &plan, "isolate").counting(&clients.calls);

    // Crash after apply, before its outcome was journaled: apply runs again
    // from the same journaled pre-state.
    life.pre_state().await.expect("pre-state");
    let first = life.apply().await.expect("apply");
    let second = life.apply().await.expect("re-apply");
    let again = life.last_calls().clone();
    assert_eq!(
        mutating(&again).len(),
        0,
        "an isolated ENI is not passed through the allow-all group again: {again:?}"
    );
    assert_eq!(isolation_group_of(&first), isolation_group_of(&second));
    assert_eq!(
        first["groups"][0]["untrack-group-id"],
        second["groups"][0]["untrack-group-id"]
    );
    assert_eq!(
        second["groups"][0]["created"],
        json!([]),
        "reused, not created again"
    );
    assert!(
        second["interfaces"]
            .as_array()
            .expect("interfaces")
            .iter()
            .all(|i| i["note"]
                .as_str()
                .is_some_and(|n| n.contains("already isolated")))
    );
    life.verify_outcome(&second).await.expect("verify");
    let iso = isolation_group_of(&first);
    let untrack = first["groups"][0]["untrack-group-id"]
        .as_str()
        .expect("untrack")
        .to_string();

    // Crash between prepare and applied: undo gets no outcome.
    life.undo_without_outcome()
        .await
        .expect("undo without outcome");
    life.verify_undone().await.expect("verify undone");
    assert_eq!(enis_of(clients, &fx.instance).await, before);
    // Undoing twice is harmless.
    let twice = life.undo_without_outcome().await.expect("undo again");
    assert_eq!(
        twice["already-restored"],
        json!([fx.primary_eni, fx.second_eni])
    );

    // Half-applied by a crash mid-apply: the primary ENI sits in the allow-all
    // group, the second one is untouched.
    life.pre_state().await.expect("pre-state");
    let swap_by_hand = || {
        clients
            .ec2
            .modify_network_interface_attribute()
            .network_interface_id(&fx.primary_eni)
            .groups(&untrack)
            .send()
    };
    swap_by_hand().await.expect("swap by hand");
    let undone = life
        .undo_without_outcome()
        .await
        .expect("undo half-applied");
    life.verify_undone().await.expect("verify undone");
    assert_eq!(undone["restored"], json!([fx.primary_eni]));
    assert_eq!(undone["already-restored"], json!([fx.second_eni]));
    assert_eq!(enis_of(clients, &fx.instance).await, before);

    // Re-applying from that half-applied state finishes the job.
    swap_by_hand().await.expect("swap by hand");
    life.apply().await.expect("apply from half-applied");
    assert_eq!(
        count(life.last_calls(), "ModifyNetworkInterfaceAttribute"),
        3,
        "primary: one swap; second: two"
    );
    life.verify().await.expect("verify");
    for eni in enis_of(clients, &fx.instance).await {
        assert_eq!(ids_of(&eni), vec![iso.clone()]);
    }
    life.rollback().await.expect("undo, verify undone");
    assert_eq!(enis_of(clients, &fx.instance).await, before);
    let _ = std::fs::remove_dir_all(dir);
}

/// (DisableApiTermination, shutdown behaviour, DisableApiStop, device → DeleteOnTermination).
async fn protection(
    clients: &AwsClients,
    instance: &str,
) -> (bool, String, bool, BTreeMap<String, bool>) {
    let attr = |name: InstanceAttributeName| {
        clients
            .ec2
            .describe_instance_attribute()
            .instance_id(instance)
            .attribute(name)
            .send()
    };
    let termination = attr(InstanceAttributeName::DisableApiTermination)
        .await
        .expect("DescribeInstanceAttribute");
    let shutdown = attr(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .await
        .expect("DescribeInstanceAttribute");
    let stop = attr(InstanceAttributeName::DisableApiStop)
        .await
        .expect("DescribeInstanceAttribute");
    let mappings = describe(clients, instance)
        .await
        .block_device_mappings()
        .iter()
        .map(|m| {
            (
                m.device_name().expect("device").to_string(),
                m.ebs()
                    .and_then(|e| e.delete_on_termination())
                    .expect("DeleteOnTermination"),
            )
        })
        .collect();
    (
        termination
            .disable_api_termination()
            .and_then(|v| v.value())
            .expect("value"),
        shutdown
            .instance_initiated_shutdown_behavior()
            .and_then(|v| v.value())
            .expect("value")
            .to_string(),
        stop.disable_api_stop()
            .and_then(|v| v.value())
            .unwrap_or(false),
        mappings,
    )
}

#[tokio::test]
async fn termination_protection_is_set_then_restored_exactly() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients, 10, vec![]).await;
    clients
        .ec2
        .modify_instance_attribute()
        .instance_id(&fx.instance)
        .attribute(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .value("terminate")
        .send()
        .await
        .expect("shutdown behaviour");
    let before = protection(clients, &fx.instance).await;
    assert_eq!(before.1, "terminate");
    assert_eq!(
        before.3.values().filter(|v| **v).count(),
        1,
        "root deletes on termination: {before:?}"
    );
    assert_eq!(
        enis_of(clients, &fx.instance)
            .await
            .iter()
            .map(ids_of)
            .collect::<Vec<_>>(),
        vec![
            vec![fx.groups[0].clone(), fx.groups[1].clone()],
            vec![fx.groups[2].clone()]
        ],
        "setting the shutdown behaviour leaves the ENIs alone"
    );
    let (actions, dir) = local_actions(clients, "protect");
    let (plan, _) = containment_plan(&finding_of(&fx, "suspect"));
    let mut life = Lifecycle::new(&actions, &plan, "protect").counting(&clients.calls);
    life.pre_state().await.expect("pre-state");
    let dry = life.dry_run();
    assert_eq!(dry.len(), 3, "{dry:#?}");
    assert!(dry.iter().all(|l| !l.contains("DisableApiStop")));
    life.apply().await.expect("apply");
    life.verify().await.expect("verify");
    let calls = life.calls();
    assert_eq!(
        count(&calls, "ModifyInstanceAttribute"),
        3,
        "one attribute per call"
    );

    let (termination, shutdown, stop, mappings) = protection(clients, &fx.instance).await;
    assert!(termination);
    assert_eq!(shutdown, "stop");
    assert!(!stop, "DisableApiStop is never set");
    assert!(
        mappings.values().all(|v| !v),
        "every volume kept: {mappings:?}"
    );

    // Re-apply (crash before the outcome was journaled) is harmless.
    life.apply().await.expect("re-apply");
    life.undo_without_outcome().await.expect("undo");
    life.verify_undone().await.expect("verify undone");
    assert_eq!(protection(clients, &fx.instance).await, before);
    let _ = std::fs::remove_dir_all(dir);
}

/// Every tag of the instance, its volumes and its ENIs: (resource, key) → value.
async fn all_tags(clients: &AwsClients, fx: &Fixture) -> BTreeMap<(String, String), String> {
    let ids = [
        &fx.instance,
        &fx.root_volume,
        &fx.data_volume,
        &fx.primary_eni,
        &fx.second_eni,
    ];
    let out = clients
        .ec2
        .describe_tags()
        .filters(
            Filter::builder()
                .name("resource-id")
                .set_values(Some(ids.iter().map(|s| s.to_string()).collect()))
                .build(),
        )
        .send()
        .await
        .expect("DescribeTags");
    out.tags()
        .iter()
        .map(|t| {
            (
                (
                    t.resource_id().expect("id").to_string(),
                    t.key().expect("key").to_string(),
                ),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn tags_are_applied_everywhere_and_undo_restores_old_values_and_removes_added_keys() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients, 10, vec![]).await;
    clients
        .ec2
        .create_tags()
        .resources(&fx.instance)
        .tags(
            Tag::builder()
                .key("cordon:case-id")
                .value("case-from-last-year")
                .build(),
        )
        .tags(Tag::builder().key("Owner").value("alice").build())
        .send()
        .await
        .expect("CreateTags");
    clients
        .ec2
        .create_tags()
        .resources(&fx.data_volume)
        .tags(
            Tag::builder()
                .key("cordon:finding-id")
                .value("older-finding")
                .build(),
        )
        .send()
        .await
        .expect("CreateTags");
    let before = all_tags(clients, &fx).await;
    let (actions, dir) = local_actions(clients, "tags");
    let (plan, _) = containment_plan(&finding_of(&fx, "suspect"));
    let mut life = Lifecycle::new(&actions, &plan, "tag").counting(&clients.calls);
    life.forward().await.expect("pre-state, apply, verify");
    assert_eq!(
        count(&life.calls(), "CreateTags"),
        1,
        "one call covers every resource"
    );

    let tagged = all_tags(clients, &fx).await;
    for id in [
        &fx.instance,
        &fx.root_volume,
        &fx.data_volume,
        &fx.primary_eni,
        &fx.second_eni,
    ] {
        assert_eq!(
            tagged
                .get(&(id.clone(), "cordon:case-id".to_string()))
                .map(String::as_str),
            Some(plan.case_id.as_str()),
            "{id}"
        );
        assert_eq!(
            tagged
                .get(&(id.clone(), "cordon:finding-id".to_string()))
                .map(String::as_str),
            Some(format!("finding-{}", fx.instance).as_str()),
            "{id}"
        );
    }

    let undone = life.rollback().await.expect("undo, verify undone");
    eprintln!("tag undo: {undone}");
    let after = all_tags(clients, &fx).await;
    assert_eq!(
        after, before,
        "old values back, added keys gone, other keys untouched"
    );
    assert_eq!(
        after
            .get(&(fx.instance.clone(), "cordon:case-id".to_string()))
            .map(String::as_str),
        Some("case-from-last-year")
    );
    // Undo without an outcome (crash before apply) and twice: still exact.
    life.undo_without_outcome().await.expect("undo again");
    life.verify_undone().await.expect("verify undone");
    assert_eq!(all_tags(clients, &fx).await, before);
    let _ = std::fs::remove_dir_all(dir);
}

async fn snapshots_of_case(
    clients: &AwsClients,
    case: &CaseId,
) -> Vec<aws_sdk_ec2::types::Snapshot> {
    clients
        .ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(
            Filter::builder()
                .name("tag:cordon:case-id")
                .values(case.as_str())
                .build(),
        )
        .send()
        .await
        .expect("DescribeSnapshots")
        .snapshots()
        .to_vec()
}

#[tokio::test]
async fn snapshots_one_per_volume_reused_on_reapply_and_kept_on_undo() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients, 10, vec![]).await;
    let (actions, dir) = local_actions(clients, "snapshots");
    let (plan, _) = containment_plan(&finding_of(&fx, "suspect"));
    let mut life = Lifecycle::new(&actions, &plan, "snapshot").counting(&clients.calls);
    let (_, outcome) = life.forward().await.expect("pre-state, apply, verify");
    assert_eq!(count(&life.calls(), "CreateSnapshot"), 2);

    let snapshots = snapshots_of_case(clients, &plan.case_id).await;
    assert_eq!(snapshots.len(), 2, "one per volume");
    let volumes: BTreeSet<&str> = snapshots.iter().filter_map(|s| s.volume_id()).collect();
    assert_eq!(
        volumes,
        BTreeSet::from([fx.root_volume.as_str(), fx.data_volume.as_str()])
    );
    for s in &snapshots {
        let tags = s.tags();
        assert_eq!(tag_of(tags, "cordon:case-id"), Some(plan.case_id.as_str()));
        assert_eq!(
            tag_of(tags, "cordon:finding-id"),
            Some(format!("finding-{}", fx.instance).as_str())
        );
        assert_eq!(
            tag_of(tags, "cordon:instance-id"),
            Some(fx.instance.as_str())
        );
        assert_eq!(tag_of(tags, "cordon:step"), Some("snapshot"));
        if s.volume_id() == Some(fx.data_volume.as_str()) {
            assert_eq!(tag_of(tags, "cordon:device"), Some("/dev/sdf"));
        } else {
            assert!(tag_of(tags, "cordon:device").is_some());
        }
    }
    assert!(
        outcome["snapshots"]
            .as_array()
            .expect("snapshots")
            .iter()
            .all(|s| s["state"] == "completed")
    );

    // A re-apply after a crash takes no new snapshot.
    let again = life.apply().await.expect("re-apply");
    assert_eq!(count(life.last_calls(), "CreateSnapshot"), 0);
    assert_eq!(
        snapshots_of_case(clients, &plan.case_id).await.len(),
        2,
        "no duplicates"
    );
    let ids = |o: &Value| -> BTreeSet<String> {
        o["snapshots"]
            .as_array()
            .expect("snapshots")
            .iter()
            .map(|s| s["snapshot-id"].as_str().expect("id").to_string())
            .collect()
    };
    assert_eq!(ids(&again), ids(&outcome));
    assert!(
        again["snapshots"]
            .as_array()
            .expect("snapshots")
            .iter()
            .all(|s| s["reused"] == true)
    );

    // Rolling back keeps the evidence.
    let undone = life.undo().await.expect("undo");
    let undo_mutating = life.last_mutating();
    life.verify_undone().await.expect("verify undone");
    let kept: BTreeSet<String> = undone["kept"]
        .as_array()
        .expect("kept")
        .iter()
        .map(|s| s.as_str().expect("id").to_string())
        .collect();
    assert_eq!(kept, ids(&outcome));
    assert_eq!(
        snapshots_of_case(clients, &plan.case_id).await.len(),
        2,
        "kept"
    );
    assert!(
        undo_mutating.is_empty(),
        "undo deleted nothing: {undo_mutating:?}"
    );

    // With delete-on-rollback they go, and only they.
    let mut scratch = Lifecycle::new(&actions, &plan, "scratch-snapshot");
    scratch.forward().await.expect("pre-state, apply, verify");
    assert_eq!(snapshots_of_case(clients, &plan.case_id).await.len(), 4);
    let undone = scratch.undo_without_outcome().await.expect("undo");
    scratch.verify_undone().await.expect("verify undone");
    assert_eq!(
        undone["deleted"].as_array().map(Vec::len),
        Some(2),
        "{undone}"
    );
    let left: BTreeSet<String> = snapshots_of_case(clients, &plan.case_id)
        .await
        .iter()
        .filter_map(|s| s.snapshot_id().map(str::to_string))
        .collect();
    assert_eq!(left, kept, "the evidence snapshots are untouched");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn missing_or_terminated_instance_is_a_clear_error_and_nothing_is_created() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients, 10, vec![]).await;
    let (actions, dir) = local_actions(clients, "missing");
    let steps = ["tag", "protect", "isolate", "snapshot"];
    clients.calls.reset();

    let missing = "i-0123456789abcdef0";
    let (plan, _) = containment_plan(&missing_finding(&fx, missing, "eni-0123456789abcdef0"));
    for id in steps {
        let err = Lifecycle::new(&actions, &plan, id)
            .pre_state()
            .await
            .expect_err("missing instance");
        eprintln!("{id}: {err}");
        assert_eq!(err.kind, ErrorKind::NotFound, "{id}: {err}");
        assert_eq!(err.resource, missing, "{id}");
        assert!(err.to_string().contains(missing), "{id}: {err}");
    }

    clients
        .ec2
        .terminate_instances()
        .instance_ids(&fx.instance)
        .send()
        .await
        .expect("TerminateInstances");
    clients.calls.reset();
    let (plan, _) = containment_plan(&finding_of(&fx, "suspect"));
    for id in steps {
        let err = Lifecycle::new(&actions, &plan, id)
            .pre_state()
            .await
            .expect_err("terminated instance");
        eprintln!("{id}: {err}");
        assert_eq!(err.kind, ErrorKind::InvalidState, "{id}: {err}");
        assert_eq!(err.resource, fx.instance, "{id}");
        assert!(err.to_string().contains("terminated"), "{id}: {err}");
    }
    assert!(
        mutating_now(clients).is_empty(),
        "{:?}",
        mutating_now(clients)
    );
    assert!(
        groups_named(clients, ISOLATION).await.is_empty(),
        "no isolation group created"
    );
    assert!(
        groups_named(clients, UNTRACK).await.is_empty(),
        "no untrack group created"
    );
    assert!(snapshots_of_case(clients, &plan.case_id).await.is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn containment_plan_runs_and_rolls_back_through_the_executor() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients, 10, vec![]).await;
    let (actions, dir) = local_actions(clients, "executor");
    let (plan, raw) = containment_plan(&finding_of(&fx, "suspect"));
    let enis = enis_of(clients, &fx.instance).await;
    let protected = protection(clients, &fx.instance).await;
    let tags = all_tags(clients, &fx).await;
    let journal = LocalJournal::new(dir.join("journal"));
    let executor = Executor::new(&actions, &journal, &ApproveAll);
    clients.calls.reset();

    let dry = executor.dry_run(&plan).await;
    for s in &dry {
        eprintln!("dry run {}: {:#?} {:?}", s.step, s.calls, s.note);
    }
    // Only the snapshots deleted on rollback wait for approval: deleting them
    // destroys evidence, so the step is irreversible.
    let noted: Vec<&str> = dry
        .iter()
        .filter(|s| s.note.is_some())
        .map(|s| s.step.as_str())
        .collect();
    assert_eq!(noted, vec!["scratch-snapshot"], "{dry:#?}");
    assert!(
        mutating_now(clients).is_empty(),
        "a dry run changes nothing"
    );
    take_calls(clients, "dry run");

    let report = executor.run(&plan, &raw).await.expect("run");
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    take_calls(clients, "executor run");
    let iso = groups_named(clients, ISOLATION).await[0]
        .group_id()
        .expect("id")
        .to_string();
    assert!(
        enis_of(clients, &fx.instance)
            .await
            .iter()
            .all(|e| ids_of(e) == [iso.clone()])
    );
    assert!(protection(clients, &fx.instance).await.0);
    assert_eq!(snapshots_of_case(clients, &plan.case_id).await.len(), 4);

    // The rollback's approver also approves deleting the scratch snapshots.
    let report = Executor::new(&actions, &journal, &ApproveUndo)
        .rollback(&plan.case_id, "test")
        .await
        .expect("rollback");
    assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
    take_calls(clients, "executor rollback");
    assert_eq!(enis_of(clients, &fx.instance).await, enis);
    assert_eq!(protection(clients, &fx.instance).await, protected);
    assert_eq!(all_tags(clients, &fx).await, tags);
    assert_eq!(
        snapshots_of_case(clients, &plan.case_id).await.len(),
        2,
        "evidence snapshots kept"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// When each request was on the wire, to measure how many round trips a step
/// makes one after the other (calls made concurrently overlap in time).
#[derive(Debug, Clone, Default)]
struct Timeline {
    /// In flight, keyed by the address of the invocation's config bag (one
    /// bag per invocation, shared by its hooks): (operation, sent).
    open: Arc<Mutex<BTreeMap<usize, (String, Instant)>>>,
    /// Answered: (operation, sent, answered).
    done: Arc<Mutex<Vec<(String, Instant, Instant)>>>,
}

fn action_of(request: &aws_sdk_ec2::config::http::HttpRequest) -> String {
    let body = request
        .body()
        .bytes()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    body.split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .unwrap_or("?")
        .to_string()
}

fn bag_key(cfg: &ConfigBag) -> usize {
    std::ptr::from_ref(cfg) as usize
}

impl Intercept for Timeline {
    fn name(&self) -> &'static str {
        "test.Timeline"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.open
            .lock()
            .expect("timeline lock")
            .insert(bag_key(cfg), (action_of(context.request()), Instant::now()));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let answered = Instant::now();
        if let Some((op, sent)) = self
            .open
            .lock()
            .expect("timeline lock")
            .remove(&bag_key(cfg))
        {
            self.done
                .lock()
                .expect("timeline lock")
                .push((op, sent, answered));
        }
        Ok(())
    }
}

impl Timeline {
    /// (calls, sequential round trips, the longest chain of calls one after
    /// the other), then empties the timeline.
    fn take(&self) -> (usize, usize, Vec<String>) {
        let spans = std::mem::take(&mut *self.done.lock().expect("timeline lock"));
        let mut order: Vec<usize> = (0..spans.len()).collect();
        order.sort_by_key(|&i| spans[i].1);
        // Longest chain of calls each sent after the previous one was answered.
        let mut best: Vec<(usize, Option<usize>)> = vec![(1, None); spans.len()];
        for (n, &i) in order.iter().enumerate() {
            for &j in &order[..n] {
                if spans[j].2 <= spans[i].1 && best[j].0 + 1 > best[i].0 {
                    best[i] = (best[j].0 + 1, Some(j));
                }
            }
        }
        let mut chain = Vec::new();
        let mut at = (0..spans.len()).max_by_key(|&i| best[i].0);
        while let Some(i) = at {
            chain.push(spans[i].0.clone());
            at = best[i].1;
        }
        chain.reverse();
        (spans.len(), chain.len(), chain)
    }
}

#[tokio::test]
async fn isolating_a_two_eni_instance_takes_few_sequential_round_trips() {
    let aws = emulator().await;
    let fx = provision(aws.clients(), 10, vec![other_instance("other", true)]).await;
    let timeline = Timeline::default();
    // A network's round trip on the path, so two calls sent together never
    // count as one after the other (see `latency_path`).
    let (config, _proxy) = latency_path(aws.endpoint(), |config| {
        config.delay = std::time::Duration::from_millis(50);
    })
    .await;
    let clients = AwsClients::builder(&config)
        .interceptor(timeline.clone())
        .build()
        .expect("clients");
    let (actions, dir) = local_actions(&clients, "round-trips");

    for (label, instance) in [
        ("fresh VPC (groups created)", "suspect"),
        ("groups reused", "other"),
    ] {
        let (plan, _) = containment_plan(&finding_of(&fx, instance));
        timeline.take();
        clients.calls.reset();
        isolate(&actions, &plan).await;
        let calls = take_calls(&clients, &format!("isolate, {label}"));
        let (sent, sequential, chain) = timeline.take();
        eprintln!(
            "isolate of a 2-ENI instance, {label}: {sent} calls, {sequential} sequential round trips: {}",
            chain.join(" -> ")
        );
        assert_eq!(sent as u64, calls.values().sum::<u64>());
        assert_eq!(count(&calls, "ModifyNetworkInterfaceAttribute"), 4);
        let expected = if label.starts_with("fresh") { 6 } else { 4 };
        assert!(
            sequential <= expected,
            "{sequential} sequential round trips: {chain:?}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The plan of a test playbook made of `steps` for the suspect instance,
/// and the finding's text.
fn plan_of(fx: &Fixture, steps: Value) -> (Plan, String) {
    let raw = finding_of(fx, "suspect").detail().to_string();
    (plan_steps(&raw, "ec2-isolation", steps), raw)
}

/// Fails `ModifyNetworkInterfaceAttribute` calls that move one ENI into any
/// of some groups (before they reach the emulator), until cleared.
#[derive(Debug, Clone, Default)]
struct SwapFault(Arc<Mutex<Option<Refusal>>>);

/// The ENI whose moves are refused, and the groups it may not enter.
type Refusal = (String, Vec<String>);

impl SwapFault {
    fn fail(&self, eni: &str, into: &[&String]) {
        *self.0.lock().expect("fault lock") = Some((
            eni.to_string(),
            into.iter().map(|g| g.to_string()).collect(),
        ));
    }

    fn clear(&self) {
        *self.0.lock().expect("fault lock") = None;
    }
}

impl Intercept for SwapFault {
    fn name(&self) -> &'static str {
        "test.SwapFault"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        if action_of(request) != "ModifyNetworkInterfaceAttribute" {
            return Ok(());
        }
        let body = String::from_utf8_lossy(request.body().bytes().unwrap_or_default()).into_owned();
        match &*self.0.lock().expect("fault lock") {
            Some((eni, into))
                if body.contains(eni.as_str())
                    && into.iter().any(|g| body.contains(g.as_str())) =>
            {
                Err(format!("injected fault: {eni} cannot be moved").into())
            }
            _ => Ok(()),
        }
    }
}

/// Creates cordon's two groups in `vpc` the way it would (the isolation group
/// without rules; the untrack group bare, which the step repairs), so a test
/// knows their ids before the step runs. Returns (isolation, untrack).
async fn cordon_groups(clients: &AwsClients, vpc: &str) -> (String, String) {
    let mut ids = Vec::new();
    for name in [ISOLATION, UNTRACK] {
        let id = clients
            .ec2
            .create_security_group()
            .group_name(name)
            .description(format!("{name} made by the test"))
            .vpc_id(vpc)
            .send()
            .await
            .expect("CreateSecurityGroup")
            .group_id()
            .expect("group id")
            .to_string();
        ids.push(id);
    }
    clients
        .ec2
        .revoke_security_group_egress()
        .group_id(&ids[0])
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("-1")
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .send()
        .await
        .expect("RevokeSecurityGroupEgress");
    (ids[0].clone(), ids[1].clone())
}

/// The step's journaled progress records, oldest first.
async fn progress_of(journal: &LocalJournal, case: &CaseId, step: &str) -> Vec<Value> {
    journal
        .load(case)
        .await
        .expect("journal")
        .into_iter()
        .filter_map(|r| match r.event {
            JournalEvent::StepProgress { step: s, progress } if s == step => Some(progress),
            _ => None,
        })
        .collect()
}

/// The step's journaled failures, oldest first.
async fn failures_of(journal: &LocalJournal, case: &CaseId, step: &str) -> Vec<String> {
    journal
        .load(case)
        .await
        .expect("journal")
        .into_iter()
        .filter_map(|r| match r.event {
            JournalEvent::StepFailed { step: s, error, .. } if s == step => Some(format!(
                "{} ({}): {}",
                error.message, error.resource, error.hint
            )),
            _ => None,
        })
        .collect()
}

async fn groups_of(clients: &AwsClients, enis: &[&String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for eni in enis {
        let described = clients
            .ec2
            .describe_network_interfaces()
            .network_interface_ids(eni.as_str())
            .send()
            .await
            .expect("DescribeNetworkInterfaces");
        out.push(ids_of(&described.network_interfaces()[0]));
    }
    out
}

#[tokio::test]
async fn isolation_journals_each_phase_reverts_a_failed_swap_and_names_open_enis() {
    let aws = emulator().await;
    let fault = SwapFault::default();
    let clients = AwsClients::builder(aws.sdk_config())
        .interceptor(fault.clone())
        .build()
        .expect("clients");
    let clients = &clients;
    let fx = provision(clients, 10, vec![]).await;
    let (iso, untrack) = cordon_groups(clients, &fx.vpc).await;
    let (actions, dir) = local_actions(clients, "phases");
    let once = json!({"max-attempts": 1});
    let (plan, raw) = plan_of(
        &fx,
        json!([{"id": "isolate", "action": "isolate-instance", "on-failure": "stop", "retry": once}]),
    );
    let journal = LocalJournal::new(dir.join("journal"));
    let executor = Executor::new(&actions, &journal, &ApproveAll);
    let (primary, second) = (&fx.primary_eni, &fx.second_eni);
    let before = groups_of(clients, &[primary, second]).await;
    let case = &plan.case_id;

    // The second ENI cannot enter the isolation group: it goes back to its own.
    fault.fail(second, &[&iso]);
    let report = executor.run(&plan, &raw).await.expect("run");
    assert_eq!(report.status, CaseStatus::Stopped, "{}", report.message);
    let progress = progress_of(&journal, case, "isolate").await;
    assert_eq!(
        progress,
        vec![
            json!({"phase": "untrack-begun", "network-interfaces": [primary, second]}),
            json!({"phase": "isolation-done", "network-interfaces": [primary]}),
            json!({"phase": "reverted", "network-interfaces": [second]}),
        ]
    );
    assert!(open_interfaces(&progress).is_empty());
    assert_eq!(
        groups_of(clients, &[primary, second]).await,
        vec![vec![iso.clone()], before[1].clone()]
    );
    let failures = failures_of(&journal, case, "isolate").await;
    assert!(
        failures[0].contains("1 of 2 network interfaces isolated"),
        "{failures:?}"
    );

    // Resumed with the way back broken too: the ENI stays in the allow-all
    // group and the error names it.
    fault.fail(second, &[&iso, &fx.groups[2]]);
    let report = executor.resume(case).await.expect("resume");
    assert_eq!(report.status, CaseStatus::Stopped, "{}", report.message);
    let progress = progress_of(&journal, case, "isolate").await;
    assert_eq!(
        progress[3..],
        [
            json!({"phase": "untrack-begun", "network-interfaces": [second]}),
            json!({"phase": "isolation-done", "network-interfaces": [primary]}),
        ]
    );
    assert_eq!(open_interfaces(&progress), vec![second.clone()]);
    assert_eq!(
        groups_of(clients, &[second]).await,
        vec![vec![untrack.clone()]]
    );
    let failures = failures_of(&journal, case, "isolate").await;
    let last = failures.last().expect("a failure");
    assert!(
        last.contains(&format!("network interfaces {second} are OPEN"))
            && last.contains(&untrack)
            && last.contains(&format!("({second})")),
        "{last}"
    );

    // Resumed once EC2 answers again: straight from the allow-all group into
    // isolation, nothing left open, verified.
    fault.clear();
    let report = executor.resume(case).await.expect("resume");
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let progress = progress_of(&journal, case, "isolate").await;
    assert_eq!(
        progress.last(),
        Some(&json!({"phase": "isolation-done", "network-interfaces": [primary, second]}))
    );
    assert!(open_interfaces(&progress).is_empty());
    assert_eq!(
        groups_of(clients, &[primary, second]).await,
        vec![vec![iso.clone()], vec![iso.clone()]]
    );

    // Verification never passes while an ENI of the pre-state sits in the
    // allow-all group, attached to the instance or not.
    let state = cordon_core::journal::CaseState::from_records(
        case,
        &journal.load(case).await.expect("journal"),
    )
    .expect("case state");
    let isolate = state.step("isolate").expect("isolate step");
    let (pre, outcome) = (
        isolate.pre_state.clone().expect("pre-state"),
        isolate.outcome.clone().expect("outcome"),
    );
    clients
        .ec2
        .detach_network_interface()
        .attachment_id(
            enis_of(clients, &fx.instance).await[1]
                .attachment()
                .and_then(|a| a.attachment_id())
                .expect("attachment"),
        )
        .send()
        .await
        .expect("DetachNetworkInterface");
    clients
        .ec2
        .modify_network_interface_attribute()
        .network_interface_id(second)
        .groups(&untrack)
        .send()
        .await
        .expect("swap by hand");
    let error = actions
        .verify(&plan, plan.step("isolate").expect("step"), &pre, &outcome)
        .await
        .expect_err("an ENI in the allow-all group fails verification");
    assert_eq!(error.kind, ErrorKind::Verification);
    assert_eq!(&error.resource, second);
    assert!(error.message.contains("OPEN"), "{error}");

    let report = executor.rollback(case, "test").await.expect("rollback");
    assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
    assert_eq!(groups_of(clients, &[primary, second]).await, before);
    let _ = std::fs::remove_dir_all(dir);
}

/// What [`AttachAfterPreState`] attaches.
enum Attach {
    /// An ENI at a device index.
    Eni(String, i32),
    /// A volume at a device name.
    Volume(String, &'static str),
}

/// Delegates to cordon's actions, and attaches ENIs or volumes to the
/// instance right after one step's pre-state is read (drift, as an attacker
/// or an automation might cause it).
struct AttachAfterPreState<'a> {
    inner: &'a AwsActions,
    clients: &'a AwsClients,
    instance: String,
    step: &'static str,
    /// Attached once.
    attach: Mutex<Vec<Attach>>,
}

impl Actions for AttachAfterPreState<'_> {
    async fn read_pre_state(
        &self,
        plan: &Plan,
        step: &PlannedStep,
    ) -> Result<Value, cordon_core::executor::ActionError> {
        let pre = self.inner.read_pre_state(plan, step).await?;
        if step.id == self.step {
            let attach = std::mem::take(&mut *self.attach.lock().expect("drift lock"));
            for item in attach {
                let ec2 = &self.clients.ec2;
                match item {
                    Attach::Eni(eni, index) => {
                        ec2.attach_network_interface()
                            .network_interface_id(&eni)
                            .instance_id(&self.instance)
                            .device_index(index)
                            .send()
                            .await
                            .expect("AttachNetworkInterface");
                    }
                    Attach::Volume(volume, device) => {
                        ec2.attach_volume()
                            .volume_id(&volume)
                            .instance_id(&self.instance)
                            .device(device)
                            .send()
                            .await
                            .expect("AttachVolume");
                    }
                }
            }
        }
        Ok(pre)
    }

    async fn apply(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
    ) -> Result<Value, cordon_core::executor::ActionError> {
        self.inner.apply(plan, step, pre).await
    }

    async fn apply_with_progress(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
        progress: &cordon_core::executor::Progress<'_>,
    ) -> Result<Value, cordon_core::executor::ActionError> {
        self.inner
            .apply_with_progress(plan, step, pre, progress)
            .await
    }

    async fn verify(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
        outcome: &Value,
    ) -> Result<(), cordon_core::executor::ActionError> {
        self.inner.verify(plan, step, pre, outcome).await
    }

    async fn amend_pre_state(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
    ) -> Result<Option<cordon_core::executor::Amendment>, cordon_core::executor::ActionError> {
        self.inner.amend_pre_state(plan, step, pre).await
    }

    async fn undo(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
        outcome: Option<&Value>,
    ) -> Result<Value, cordon_core::executor::ActionError> {
        self.inner.undo(plan, step, pre, outcome).await
    }

    async fn verify_undone(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
    ) -> Result<(), cordon_core::executor::ActionError> {
        self.inner.verify_undone(plan, step, pre).await
    }

    fn describe_apply(&self, plan: &Plan, step: &PlannedStep, pre: &Value) -> Vec<String> {
        self.inner.describe_apply(plan, step, pre)
    }
}

async fn create_eni(clients: &AwsClients, subnet: &str, group: &str) -> String {
    clients
        .ec2
        .create_network_interface()
        .subnet_id(subnet)
        .groups(group)
        .send()
        .await
        .expect("CreateNetworkInterface")
        .network_interface()
        .and_then(|n| n.network_interface_id())
        .expect("eni id")
        .to_string()
}

#[tokio::test]
async fn enis_attached_after_the_pre_state_are_amended_in_and_roll_back_exactly() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients, 10, vec![]).await;
    let (iso, untrack) = cordon_groups(clients, &fx.vpc).await;
    // A newcomer in its own group, and one some other run left in cordon's
    // allow-all group: its original groups are unknown.
    let late = create_eni(clients, &fx.env.subnets["b"].id, &fx.groups[0]).await;
    let stray = create_eni(clients, &fx.env.subnets["b"].id, &untrack).await;
    let (inner, dir) = local_actions(clients, "drift");
    let actions = AttachAfterPreState {
        inner: &inner,
        clients,
        instance: fx.instance.clone(),
        step: "isolate",
        attach: Mutex::new(vec![
            Attach::Eni(late.clone(), 2),
            Attach::Eni(stray.clone(), 3),
        ]),
    };
    let retry = json!({"max-attempts": 3, "initial-backoff-ms": 10});
    let (plan, raw) = plan_of(
        &fx,
        json!([{"id": "isolate", "action": "isolate-instance", "on-failure": "stop", "retry": retry}]),
    );
    let journal = LocalJournal::new(dir.join("journal"));
    let executor = Executor::new(&actions, &journal, &ApproveAll);
    let all = [&fx.primary_eni, &fx.second_eni, &late, &stray];
    let before = groups_of(clients, &all).await;

    let report = executor.run(&plan, &raw).await.expect("run");
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    assert_eq!(
        groups_of(clients, &all).await,
        vec![vec![iso.clone()]; 4],
        "every ENI attached now is isolated"
    );
    let records = journal.load(&plan.case_id).await.expect("journal");
    let (pre, added) = records
        .iter()
        .find_map(|r| match &r.event {
            JournalEvent::StepPreStateAmended {
                pre_state, added, ..
            } => Some((pre_state.clone(), added.clone())),
            _ => None,
        })
        .expect("the pre-state was amended");
    assert_eq!(added, vec![late.clone(), stray.clone()]);
    let recorded = |eni: &str| {
        pre["interfaces"]
            .as_array()
            .expect("interfaces")
            .iter()
            .find(|i| i["network-interface-id"] == eni)
            .cloned()
            .expect("recorded")
    };
    assert_eq!(recorded(&late)["security-group-ids"], json!([fx.groups[0]]));
    assert!(recorded(&late).get("original-unknown").is_none());
    assert!(
        recorded(&stray)["original-unknown"]
            .as_str()
            .is_some_and(|why| why.contains(&untrack)),
        "cordon's allow-all group is never recorded as an original: {}",
        recorded(&stray)
    );
    // The first pre-state stays in the journal as it was.
    let first = records
        .iter()
        .find_map(|r| match &r.event {
            JournalEvent::StepPrepared { pre_state, .. } => Some(pre_state.clone()),
            _ => None,
        })
        .expect("prepared");
    assert_eq!(first["interfaces"].as_array().map(Vec::len), Some(2));

    let report = executor
        .rollback(&plan.case_id, "test")
        .await
        .expect("rollback");
    assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
    let after = groups_of(clients, &all).await;
    assert_eq!(
        after[..3],
        before[..3],
        "every known ENI back in its own groups"
    );
    assert_eq!(
        after[3],
        vec![iso.clone()],
        "the ENI of unknown origin stays isolated, never back in allow-all"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_wildcard_instance_id_is_refused_before_any_describe() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients, 10, vec![]).await;
    let (actions, dir) = local_actions(clients, "wildcard");
    let mut finding = missing_finding(&fx, "i-0123456789abcdef0", &fx.primary_eni);
    finding.instance_profile_arn =
        Some("arn:aws:iam::123456789012:instance-profile/web".to_string());
    let mut plan = plan_steps(
        &finding.detail().to_string(),
        "wildcard",
        json!([
            {"id": "revoke", "action": "revoke-role-sessions"},
            {"id": "isolate", "action": "isolate-instance"},
            {"id": "capture", "action": "capture-instance-metadata"}
        ]),
    );
    // The plan refuses a wildcard id (and deserializing one fails); this tests
    // the AWS layer's own refusal, for a plan built in code around those checks.
    for step in &mut plan.steps {
        match &mut step.target {
            Target::Instance(i) => i.instance_id = "*".to_string(),
            Target::Role {
                instance_id: Some(id),
                ..
            } => *id = "*".to_string(),
            other => panic!("unexpected target {other:?}"),
        }
    }
    clients.calls.reset();
    for id in ["revoke", "isolate", "capture"] {
        let error = actions
            .read_pre_state(&plan, plan.step(id).expect("step"))
            .await
            .expect_err("a wildcard id is refused");
        assert_eq!(error.kind, ErrorKind::Refused, "{id}: {error}");
        assert!(error.message.contains("wildcard"), "{id}: {error}");
        assert_eq!(error.resource, "*");
    }
    let calls = clients.calls.snapshot();
    for op in [
        "EC2.DescribeIamInstanceProfileAssociations",
        "EC2.DescribeNetworkInterfaces",
        "EC2.DescribeInstances",
    ] {
        assert!(!calls.contains_key(op), "{op} was called: {calls:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_volume_attached_after_the_pre_state_is_snapshotted_too_and_no_volume_is_an_error() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients, 10, vec![]).await;
    let late = clients
        .ec2
        .create_volume()
        .availability_zone(format!("{REGION}a"))
        .size(5)
        .send()
        .await
        .expect("CreateVolume")
        .volume_id()
        .expect("volume id")
        .to_string();
    let (inner, dir) = local_actions(clients, "volume-drift");
    let actions = AttachAfterPreState {
        inner: &inner,
        clients,
        instance: fx.instance.clone(),
        step: "snapshot",
        attach: Mutex::new(vec![Attach::Volume(late.clone(), "/dev/sdg")]),
    };
    let retry = json!({"max-attempts": 3, "initial-backoff-ms": 10});
    let (plan, raw) = plan_of(
        &fx,
        json!([{"id": "snapshot", "action": "snapshot-volumes", "on-failure": "stop", "retry": retry}]),
    );
    let journal = LocalJournal::new(dir.join("journal"));
    let report = Executor::new(&actions, &journal, &ApproveAll)
        .run(&plan, &raw)
        .await
        .expect("run");
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let snapshotted: BTreeSet<String> = snapshots_of_case(clients, &plan.case_id)
        .await
        .iter()
        .filter_map(|s| s.volume_id().map(str::to_string))
        .collect();
    assert_eq!(
        snapshotted,
        BTreeSet::from([fx.root_volume.clone(), fx.data_volume.clone(), late.clone()])
    );
    let added = journal
        .load(&plan.case_id)
        .await
        .expect("journal")
        .into_iter()
        .find_map(|r| match r.event {
            JournalEvent::StepPreStateAmended { added, .. } => Some(added),
            _ => None,
        })
        .expect("amended");
    assert_eq!(added, vec![late.clone()]);

    // An instance with no EBS volume at all: nothing can be kept, and the step says so.
    for volume in [&fx.root_volume, &fx.data_volume, &late] {
        clients
            .ec2
            .detach_volume()
            .volume_id(volume.as_str())
            .instance_id(&fx.instance)
            .send()
            .await
            .expect("DetachVolume");
    }
    let error = inner
        .read_pre_state(&plan, plan.step("snapshot").expect("step"))
        .await
        .expect_err("no volume to snapshot");
    assert_eq!(error.kind, ErrorKind::InvalidState, "{error}");
    assert!(error.message.contains("no EBS volume"), "{error}");
    let _ = std::fs::remove_dir_all(dir);
}
