//! The instance's attachments (instance profile, Auto Scaling group, load
//! balancer target groups) and the two evidence captures, against the
//! emulator: each action is applied, verified, undone and verified undone,
//! and the resources are compared field by field before and after.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
use aws_sdk_ec2::types::{
    Filter, IamInstanceProfileSpecification, InstanceType, IpPermission, IpRange,
    RequestLaunchTemplateData,
};
use aws_sdk_elasticloadbalancingv2::types::{ProtocolEnum, TargetDescription, TargetTypeEnum};
use cordon_aws::actions::AwsActions;
use cordon_aws::client::{AwsClients, is_read_only};
use cordon_aws::evidence::{EvidenceStore, sha256_hex};
use cordon_core::executor::{Actions, ErrorKind, Executor};
use cordon_core::finding::parse_single_finding;
use cordon_core::journal::CaseStatus;
use cordon_core::local_store::LocalJournal;
use cordon_core::plan::{Plan, PlannedStep, plan};
use cordon_core::playbook::Playbook;
use cordon_core::route::RouteReason;
use cordon_tests::{ApproveAll, REGION, emulator, instance_finding_json};
use serde_json::{Value, json};

const ASG: &str = "web-asg";

/// Everything the tests provision.
#[derive(Debug)]
struct Fixture {
    /// In a group, two target groups, with an instance profile.
    suspect: String,
    /// In nothing, with no profile.
    bystander: String,
    /// The instance the group launched itself.
    member: String,
    profile_arn: String,
    security_group: String,
    web_tg: String,
    api_tg: String,
    other_tg: String,
}

async fn provision(clients: &AwsClients) -> Fixture {
    let ec2 = &clients.ec2;
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.20.0.0/16")
        .send()
        .await
        .expect("CreateVpc");
    let vpc_id = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_string();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc_id)
        .cidr_block("10.20.1.0/24")
        .availability_zone(format!("{REGION}a"))
        .send()
        .await
        .expect("CreateSubnet");
    let subnet_id = subnet
        .subnet()
        .and_then(|s| s.subnet_id())
        .expect("subnet id")
        .to_string();
    let group = ec2
        .create_security_group()
        .group_name("web")
        .description("web servers")
        .vpc_id(&vpc_id)
        .send()
        .await
        .expect("CreateSecurityGroup");
    let security_group = group.group_id().expect("group id").to_string();
    ec2.authorize_security_group_ingress()
        .group_id(&security_group)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(443)
                .to_port(443)
                .ip_ranges(
                    IpRange::builder()
                        .cidr_ip("0.0.0.0/0")
                        .description("https")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("AuthorizeSecurityGroupIngress");

    let iam = &clients.iam;
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    });
    iam.create_role()
        .role_name("web-role")
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .expect("CreateRole");
    let profile = iam
        .create_instance_profile()
        .instance_profile_name("web-profile")
        .send()
        .await
        .expect("CreateInstanceProfile");
    let profile_arn = profile
        .instance_profile()
        .map(|p| p.arn().to_string())
        .expect("profile arn");
    iam.add_role_to_instance_profile()
        .instance_profile_name("web-profile")
        .role_name("web-role")
        .send()
        .await
        .expect("AddRoleToInstanceProfile");

    let launch = |profile: Option<&str>| {
        ec2.run_instances()
            .image_id("ami-12345678")
            .min_count(1)
            .max_count(1)
            .instance_type(InstanceType::T3Micro)
            .subnet_id(&subnet_id)
            .security_group_ids(&security_group)
            .set_iam_instance_profile(
                profile.map(|arn| IamInstanceProfileSpecification::builder().arn(arn).build()),
            )
            .send()
    };
    let suspect = launch(Some(&profile_arn))
        .await
        .expect("RunInstances suspect");
    let suspect = suspect.instances()[0]
        .instance_id()
        .expect("instance id")
        .to_string();
    let bystander = launch(None).await.expect("RunInstances bystander");
    let bystander = bystander.instances()[0]
        .instance_id()
        .expect("instance id")
        .to_string();

    ec2.create_launch_template()
        .launch_template_name("web")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id("ami-12345678")
                .instance_type(InstanceType::T3Micro)
                .build(),
        )
        .send()
        .await
        .expect("CreateLaunchTemplate");
    let asg = &clients.autoscaling;
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(ASG)
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_name("web")
                .build(),
        )
        .min_size(1)
        .max_size(2)
        .desired_capacity(1)
        .vpc_zone_identifier(&subnet_id)
        .send()
        .await
        .expect("CreateAutoScalingGroup");
    // The suspect joins a group that is then at its maximum size (2 of 2).
    asg.attach_instances()
        .auto_scaling_group_name(ASG)
        .instance_ids(&suspect)
        .send()
        .await
        .expect("AttachInstances");
    let (members, _) = asg_state(clients).await;
    let member = members
        .into_iter()
        .find(|id| *id != suspect)
        .expect("the group's own instance");

    let elb = &clients.elbv2;
    let target_group = |name: &'static str, port: i32| {
        elb.create_target_group()
            .name(name)
            .protocol(ProtocolEnum::Http)
            .port(port)
            .vpc_id(&vpc_id)
            .target_type(TargetTypeEnum::Instance)
            .send()
    };
    let mut arns = Vec::new();
    for (name, port) in [("web-tg", 80), ("api-tg", 443), ("other-tg", 80)] {
        let out = target_group(name, port).await.expect("CreateTargetGroup");
        arns.push(
            out.target_groups()[0]
                .target_group_arn()
                .expect("arn")
                .to_string(),
        );
    }
    let register = |arn: &str, id: &str, port: i32| {
        elb.register_targets()
            .target_group_arn(arn)
            .targets(TargetDescription::builder().id(id).port(port).build())
            .send()
    };
    register(&arns[0], &suspect, 8080)
        .await
        .expect("RegisterTargets");
    register(&arns[0], &member, 8080)
        .await
        .expect("RegisterTargets");
    register(&arns[1], &suspect, 9443)
        .await
        .expect("RegisterTargets");
    register(&arns[2], &member, 8081)
        .await
        .expect("RegisterTargets");

    clients.calls.reset();
    Fixture {
        suspect,
        bystander,
        member,
        profile_arn,
        security_group,
        web_tg: arns[0].clone(),
        api_tg: arns[1].clone(),
        other_tg: arns[2].clone(),
    }
}

/// A GuardDuty finding naming `instance_id`, as EventBridge would deliver it.
fn finding_json(instance_id: &str, profile_arn: Option<&str>) -> String {
    let mut details = json!({"imageId": "ami-12345678"});
    if let Some(arn) = profile_arn {
        details["iamInstanceProfile"] = json!({"arn": arn, "id": "AIPAEXAMPLE"});
    }
    instance_finding_json(instance_id, details)
}

/// The plan of a playbook running this file's five actions on `instance_id`.
fn plan_for(instance_id: &str, profile_arn: Option<&str>) -> (Plan, String) {
    let raw = finding_json(instance_id, profile_arn);
    let finding = parse_single_finding(&raw, "test finding").expect("finding parses");
    let playbook: Playbook = serde_json::from_value(json!({
        "name": "ec2-attachments",
        "priority": 1,
        "match": {"finding-types": ["*:EC2/*"]},
        "on-failure": "rollback",
        "steps": [
            {"id": "detach-asg", "action": "detach-from-autoscaling", "retry": {"max-attempts": 2, "initial-backoff-ms": 10}},
            {"id": "deregister-lb", "action": "deregister-from-load-balancers", "retry": {"max-attempts": 2, "initial-backoff-ms": 10}},
            {"id": "detach-profile", "action": "detach-instance-profile", "retry": {"max-attempts": 2, "initial-backoff-ms": 10}},
            {"id": "capture-metadata", "action": "capture-instance-metadata"},
            {"id": "console-output", "action": "capture-console-output", "with": {"latest": true}}
        ]
    }))
    .expect("playbook parses");
    let reason = RouteReason {
        playbook: playbook.name.clone(),
        priority: playbook.priority,
        matched: vec!["test".to_string()],
    };
    (plan(&finding, &playbook, reason), raw)
}

fn step<'a>(plan: &'a Plan, id: &str) -> &'a PlannedStep {
    plan.step(id).unwrap_or_else(|| panic!("no step {id}"))
}

/// A fresh, empty evidence directory for one test.
fn evidence_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cordon-ec2-attachments-{}-{test}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The mutating calls sent since the last reset, per operation.
fn mutating(clients: &AwsClients) -> BTreeMap<String, u64> {
    clients
        .calls
        .snapshot()
        .into_iter()
        .filter(|(key, _)| !is_read_only(key.split_once('.').map_or(key.as_str(), |(_, op)| op)))
        .collect()
}

/// Prints the calls of one phase (for the record) and resets the counter.
fn phase(clients: &AwsClients, label: &str) -> BTreeMap<String, u64> {
    let calls = clients.calls.snapshot();
    eprintln!("calls {label}: {calls:?}");
    clients.calls.reset();
    calls
}

fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// (profile ARN, state) of every association of the instance.
async fn profile_state(clients: &AwsClients, instance_id: &str) -> Vec<(String, String)> {
    let out = clients
        .ec2
        .describe_iam_instance_profile_associations()
        .filters(
            Filter::builder()
                .name("instance-id")
                .values(instance_id)
                .build(),
        )
        .send()
        .await
        .expect("DescribeIamInstanceProfileAssociations");
    out.iam_instance_profile_associations()
        .iter()
        .map(|a| {
            (
                a.iam_instance_profile()
                    .and_then(|p| p.arn())
                    .unwrap_or_default()
                    .to_string(),
                a.state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// The group's member instance ids (sorted) and (min, max, desired).
async fn asg_state(clients: &AwsClients) -> (Vec<String>, (i32, i32, i32)) {
    let out = clients
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(ASG)
        .send()
        .await
        .expect("DescribeAutoScalingGroups");
    let group = &out.auto_scaling_groups()[0];
    let mut members: Vec<String> = group
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    members.sort();
    (
        members,
        (
            group.min_size().unwrap_or(-1),
            group.max_size().unwrap_or(-1),
            group.desired_capacity().unwrap_or(-1),
        ),
    )
}

/// The group an instance is in, with its lifecycle state and scale-in protection.
async fn asg_membership(clients: &AwsClients, instance_id: &str) -> Option<(String, String, bool)> {
    let out = clients
        .autoscaling
        .describe_auto_scaling_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .expect("DescribeAutoScalingInstances");
    out.auto_scaling_instances().first().map(|i| {
        (
            i.auto_scaling_group_name().unwrap_or_default().to_string(),
            i.lifecycle_state().unwrap_or_default().to_string(),
            i.protected_from_scale_in().unwrap_or_default(),
        )
    })
}

/// Registered (id, port) pairs of a target group, sorted.
async fn tg_state(clients: &AwsClients, arn: &str) -> Vec<(String, i32)> {
    let out = clients
        .elbv2
        .describe_target_health()
        .target_group_arn(arn)
        .send()
        .await
        .expect("DescribeTargetHealth");
    let mut targets: Vec<(String, i32)> = out
        .target_health_descriptions()
        .iter()
        .filter_map(|h| h.target())
        .map(|t| {
            (
                t.id().unwrap_or_default().to_string(),
                t.port().unwrap_or_default(),
            )
        })
        .collect();
    targets.sort();
    targets
}

/// The suspect's own registrations in each target group. Rollback tests that
/// also move the Auto Scaling group compare only these: when the group scales
/// in, real AWS deregisters the instance it terminates from its target groups
/// (the emulator does not), so other members may legitimately differ.
async fn suspect_tg_state(clients: &AwsClients, fx: &Fixture) -> Vec<Vec<(String, i32)>> {
    all_tg_state(clients, fx)
        .await
        .into_iter()
        .map(|targets| {
            targets
                .into_iter()
                .filter(|(id, _)| *id == fx.suspect)
                .collect()
        })
        .collect()
}

async fn all_tg_state(clients: &AwsClients, fx: &Fixture) -> Vec<Vec<(String, i32)>> {
    vec![
        tg_state(clients, &fx.web_tg).await,
        tg_state(clients, &fx.api_tg).await,
        tg_state(clients, &fx.other_tg).await,
    ]
}

fn actions(clients: &AwsClients, dir: &Path) -> AwsActions {
    AwsActions::new(clients.clone(), EvidenceStore::LocalDir(dir.to_path_buf()))
}

#[tokio::test]
async fn instance_profile_is_detached_and_restored() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients).await;
    let dir = evidence_dir("profile");
    let actions = actions(clients, &dir);
    let (plan, _) = plan_for(&fx.suspect, Some(&fx.profile_arn));
    let step = step(&plan, "detach-profile");
    let before = profile_state(clients, &fx.suspect).await;
    assert_eq!(
        before,
        vec![(fx.profile_arn.clone(), "associated".to_string())]
    );
    clients.calls.reset();

    let pre = actions
        .read_pre_state(&plan, step)
        .await
        .expect("pre-state");
    assert_eq!(pre["association"]["profile-arn"], json!(fx.profile_arn));
    assert_eq!(pre["association"]["profile-name"], json!("web-profile"));
    assert_eq!(
        phase(clients, "profile pre-state"),
        map(&[("EC2.DescribeIamInstanceProfileAssociations", 1)])
    );
    let dry = actions.describe_apply(&plan, step, &pre);
    assert_eq!(dry.len(), 1, "{dry:?}");
    assert!(
        dry[0].starts_with("ec2:DisassociateIamInstanceProfile association-id=iip-assoc-"),
        "{dry:?}"
    );

    let outcome = actions.apply(&plan, step, &pre).await.expect("apply");
    assert_eq!(outcome["changed"], json!(true), "{outcome}");
    assert_eq!(
        mutating(clients),
        map(&[("EC2.DisassociateIamInstanceProfile", 1)])
    );
    phase(clients, "profile apply");
    actions
        .verify(&plan, step, &pre, &outcome)
        .await
        .expect("verify");
    phase(clients, "profile verify");
    assert!(profile_state(clients, &fx.suspect).await.is_empty());
    clients.calls.reset();

    // A re-run after a crash: nothing left to do, and no mutating call.
    let again = actions
        .apply(&plan, step, &pre)
        .await
        .expect("second apply");
    assert_eq!(again["changed"], json!(false), "{again}");
    assert!(
        again["reason"]
            .as_str()
            .is_some_and(|r| r.contains("already disassociated")),
        "{again}"
    );
    assert!(mutating(clients).is_empty(), "{:?}", mutating(clients));
    phase(clients, "profile second apply");

    let undone = actions
        .undo(&plan, step, &pre, Some(&outcome))
        .await
        .expect("undo");
    assert_eq!(undone["changed"], json!(true), "{undone}");
    assert_eq!(
        mutating(clients),
        map(&[("EC2.AssociateIamInstanceProfile", 1)])
    );
    phase(clients, "profile undo");
    actions
        .verify_undone(&plan, step, &pre)
        .await
        .expect("verify undone");
    phase(clients, "profile verify-undone");
    assert_eq!(profile_state(clients, &fx.suspect).await, before);
    clients.calls.reset();

    // Rolling back twice is harmless.
    let twice = actions
        .undo(&plan, step, &pre, Some(&outcome))
        .await
        .expect("second undo");
    assert_eq!(twice["changed"], json!(false), "{twice}");
    assert!(mutating(clients).is_empty());
    actions
        .verify_undone(&plan, step, &pre)
        .await
        .expect("verify undone again");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn autoscaling_detach_keeps_capacity_and_rollback_restores_it_exactly() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients).await;
    let dir = evidence_dir("asg");
    let actions = actions(clients, &dir);
    let (plan, _) = plan_for(&fx.suspect, None);
    let step = step(&plan, "detach-asg");
    let (members_before, capacity_before) = asg_state(clients).await;
    assert_eq!(
        capacity_before,
        (1, 2, 2),
        "the group starts at its maximum"
    );
    let membership_before = asg_membership(clients, &fx.suspect).await;
    assert_eq!(
        membership_before,
        Some((ASG.to_string(), "InService".to_string(), false))
    );
    clients.calls.reset();

    let pre = actions
        .read_pre_state(&plan, step)
        .await
        .expect("pre-state");
    assert_eq!(
        pre["membership"],
        json!({
            "group-name": ASG,
            "lifecycle-state": "InService",
            "protected-from-scale-in": false,
            "capacity": {"min-size": 1, "max-size": 2, "desired-capacity": 2}
        })
    );
    phase(clients, "asg pre-state");
    let dry = actions.describe_apply(&plan, step, &pre);
    assert_eq!(dry.len(), 1, "{dry:?}");
    assert!(
        dry[0].contains("should-decrement-desired-capacity=false"),
        "{dry:?}"
    );

    let outcome = actions.apply(&plan, step, &pre).await.expect("apply");
    assert_eq!(outcome["changed"], json!(true), "{outcome}");
    assert_eq!(
        mutating(clients),
        map(&[("AutoScaling.DetachInstances", 1)])
    );
    phase(clients, "asg apply");
    actions
        .verify(&plan, step, &pre, &outcome)
        .await
        .expect("verify");
    phase(clients, "asg verify");
    assert_eq!(asg_membership(clients, &fx.suspect).await, None);
    // Desired capacity kept: the group replaced the instance rather than shrinking.
    let (members_detached, capacity_detached) = asg_state(clients).await;
    assert_eq!(capacity_detached, (1, 2, 2));
    assert_eq!(members_detached.len(), 2);
    assert!(!members_detached.contains(&fx.suspect));
    assert!(members_detached.contains(&fx.member));
    clients.calls.reset();

    let again = actions
        .apply(&plan, step, &pre)
        .await
        .expect("second apply");
    assert_eq!(again["changed"], json!(false), "{again}");
    assert!(mutating(clients).is_empty(), "{:?}", mutating(clients));
    phase(clients, "asg second apply");

    let undone = actions
        .undo(&plan, step, &pre, Some(&outcome))
        .await
        .expect("undo");
    assert_eq!(undone["changed"], json!(true), "{undone}");
    // Room is made first (desired 2 → 1), then the instance is attached (→ 2):
    // the group never has to scale in with the re-attached instance in it.
    assert_eq!(
        mutating(clients),
        map(&[
            ("AutoScaling.AttachInstances", 1),
            ("AutoScaling.UpdateAutoScalingGroup", 1)
        ])
    );
    phase(clients, "asg undo");
    actions
        .verify_undone(&plan, step, &pre)
        .await
        .expect("verify undone");
    phase(clients, "asg verify-undone");
    let (members_after, capacity_after) = asg_state(clients).await;
    assert_eq!(capacity_after, capacity_before, "min/max/desired");
    assert_eq!(members_after.len(), members_before.len());
    assert!(members_after.contains(&fx.suspect), "{members_after:?}");
    assert_eq!(
        asg_membership(clients, &fx.suspect).await,
        membership_before
    );
    clients.calls.reset();

    let twice = actions
        .undo(&plan, step, &pre, Some(&outcome))
        .await
        .expect("second undo");
    assert_eq!(twice["changed"], json!(false), "{twice}");
    assert!(mutating(clients).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn autoscaling_rollback_restores_membership_and_leaves_capacity_scaled_during_the_incident() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients).await;
    let dir = evidence_dir("asg-scaled");
    let actions = actions(clients, &dir);
    let (plan, _) = plan_for(&fx.suspect, None);
    let step = step(&plan, "detach-asg");
    let pre = actions
        .read_pre_state(&plan, step)
        .await
        .expect("pre-state");
    let outcome = actions.apply(&plan, step, &pre).await.expect("apply");
    actions
        .verify(&plan, step, &pre, &outcome)
        .await
        .expect("verify");
    assert_eq!(asg_state(clients).await.1, (1, 2, 2));

    // The owners scale the group out while the incident runs.
    clients
        .autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(ASG)
        .max_size(6)
        .desired_capacity(5)
        .send()
        .await
        .expect("UpdateAutoScalingGroup");
    let undone = actions
        .undo(&plan, step, &pre, Some(&outcome))
        .await
        .expect("undo");
    actions
        .verify_undone(&plan, step, &pre)
        .await
        .expect("verify undone: membership is back");
    let (members, capacity) = asg_state(clients).await;
    assert_eq!(capacity, (1, 6, 5), "the scaled capacity stays");
    assert!(members.contains(&fx.suspect), "{members:?}");
    assert_eq!(
        asg_membership(clients, &fx.suspect).await,
        Some((ASG.to_string(), "InService".to_string(), false))
    );
    let drift = undone["capacity-drift"].as_str().expect("drift reported");
    assert!(
        drift.contains("min 1, max 2, desired 2") && drift.contains("min 1, max 6, desired 5"),
        "{drift}"
    );

    // A group scaled to zero with no room at all: the least room for one.
    let outcome = actions.apply(&plan, step, &pre).await.expect("apply");
    clients
        .autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(ASG)
        .min_size(0)
        .max_size(0)
        .desired_capacity(0)
        .send()
        .await
        .expect("UpdateAutoScalingGroup");
    let undone = actions
        .undo(&plan, step, &pre, Some(&outcome))
        .await
        .expect("undo");
    let (members, capacity) = asg_state(clients).await;
    assert!(members.contains(&fx.suspect), "{members:?}");
    assert_eq!(capacity, (0, 1, 1), "{undone}");
    assert!(
        undone["done"][0]
            .as_str()
            .is_some_and(|d| d.contains("min 0, max 1, desired 0")),
        "{undone}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn load_balancer_targets_are_deregistered_and_registered_back_on_their_ports() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients).await;
    let dir = evidence_dir("elb");
    let actions = actions(clients, &dir);
    let (plan, _) = plan_for(&fx.suspect, None);
    let step = step(&plan, "deregister-lb");
    let before = all_tg_state(clients, &fx).await;
    clients.calls.reset();

    let pre = actions
        .read_pre_state(&plan, step)
        .await
        .expect("pre-state");
    let mut expected = vec![
        json!({"target-group-arn": fx.web_tg, "target-group-name": "web-tg",
               "targets": [{"id": fx.suspect, "port": 8080, "availability-zone": null}]}),
        json!({"target-group-arn": fx.api_tg, "target-group-name": "api-tg",
               "targets": [{"id": fx.suspect, "port": 9443, "availability-zone": null}]}),
    ];
    expected.sort_by_key(|g| {
        g["target-group-arn"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    assert_eq!(pre["registrations"], Value::Array(expected));
    assert_eq!(
        phase(clients, "elb pre-state"),
        map(&[
            ("ElasticLoadBalancingv2.DescribeTargetGroups", 1),
            ("ElasticLoadBalancingv2.DescribeTargetHealth", 3)
        ])
    );
    assert_eq!(actions.describe_apply(&plan, step, &pre).len(), 2);

    let outcome = actions.apply(&plan, step, &pre).await.expect("apply");
    assert_eq!(outcome["changed"], json!(true), "{outcome}");
    assert_eq!(
        mutating(clients),
        map(&[("ElasticLoadBalancingv2.DeregisterTargets", 2)])
    );
    phase(clients, "elb apply");
    actions
        .verify(&plan, step, &pre, &outcome)
        .await
        .expect("verify");
    phase(clients, "elb verify");
    let deregistered = all_tg_state(clients, &fx).await;
    assert_eq!(deregistered[0], vec![(fx.member.clone(), 8080)]);
    assert!(deregistered[1].is_empty());
    assert_eq!(
        deregistered[2], before[2],
        "a group the instance is not in is untouched"
    );
    clients.calls.reset();

    let again = actions
        .apply(&plan, step, &pre)
        .await
        .expect("second apply");
    assert_eq!(again["changed"], json!(false), "{again}");
    assert!(mutating(clients).is_empty(), "{:?}", mutating(clients));
    phase(clients, "elb second apply");

    let undone = actions
        .undo(&plan, step, &pre, Some(&outcome))
        .await
        .expect("undo");
    assert_eq!(undone["changed"], json!(true), "{undone}");
    assert_eq!(
        mutating(clients),
        map(&[("ElasticLoadBalancingv2.RegisterTargets", 2)])
    );
    phase(clients, "elb undo");
    actions
        .verify_undone(&plan, step, &pre)
        .await
        .expect("verify undone");
    phase(clients, "elb verify-undone");
    assert_eq!(
        all_tg_state(clients, &fx).await,
        before,
        "same targets on the same ports"
    );
    clients.calls.reset();

    let twice = actions
        .undo(&plan, step, &pre, Some(&outcome))
        .await
        .expect("second undo");
    assert_eq!(twice["changed"], json!(false), "{twice}");
    assert!(mutating(clients).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

fn file_of(outcome: &Value) -> PathBuf {
    let location = outcome["location"].as_str().expect("location");
    PathBuf::from(
        location
            .strip_prefix("file://")
            .expect("a file:// location"),
    )
}

#[tokio::test]
async fn captures_write_evidence_whose_sha256_matches_the_outcome() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients).await;
    let dir = evidence_dir("capture");
    let actions = actions(clients, &dir);
    let (plan, _) = plan_for(&fx.suspect, None);

    let metadata = step(&plan, "capture-metadata");
    let pre = actions
        .read_pre_state(&plan, metadata)
        .await
        .expect("pre-state");
    assert_eq!(
        pre,
        json!({"instance-id": fx.suspect, "instance-state": "running"})
    );
    phase(clients, "metadata pre-state");
    let outcome = actions.apply(&plan, metadata, &pre).await.expect("apply");
    assert!(
        mutating(clients).is_empty(),
        "a capture changes nothing in AWS"
    );
    phase(clients, "metadata apply");
    let path = file_of(&outcome);
    assert!(
        path.ends_with(format!("instance-metadata-{}.json", fx.suspect)),
        "{path:?}"
    );
    let bytes = std::fs::read(&path).expect("evidence file");
    assert_eq!(outcome["sha256"], json!(sha256_hex(&bytes)));
    assert_eq!(outcome["size"], json!(bytes.len()));
    let document: Value = serde_json::from_slice(&bytes).expect("metadata is JSON");
    assert_eq!(document["instance"]["instance-id"], json!(fx.suspect));
    assert_eq!(document["instance"]["instance-type"], json!("t3.micro"));
    assert_eq!(
        document["instance"]["iam-instance-profile"]["arn"],
        json!(fx.profile_arn)
    );
    let enis = document["network-interfaces"].as_array().expect("enis");
    assert_eq!(enis.len(), 1);
    assert_eq!(enis[0]["groups"][0]["group-id"], json!(fx.security_group));
    let groups = document["security-groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["ingress"][0]["from-port"], json!(443));
    assert_eq!(
        groups[0]["ingress"][0]["ipv4-ranges"][0]["cidr"],
        json!("0.0.0.0/0")
    );
    assert!(document["volumes"].is_array());
    actions
        .verify(&plan, metadata, &pre, &outcome)
        .await
        .expect("verify");
    let kept = actions
        .undo(&plan, metadata, &pre, Some(&outcome))
        .await
        .expect("undo");
    assert_eq!(kept["kept"], outcome["location"]);
    assert!(path.exists(), "rollback keeps evidence");
    actions
        .verify_undone(&plan, metadata, &pre)
        .await
        .expect("verify undone");
    phase(clients, "metadata verify+undo");

    let console = step(&plan, "console-output");
    let pre = actions
        .read_pre_state(&plan, console)
        .await
        .expect("pre-state");
    assert_eq!(clients.calls.total(), 0, "console pre-state needs no call");
    let outcome = actions.apply(&plan, console, &pre).await.expect("apply");
    assert_eq!(
        phase(clients, "console apply"),
        map(&[("EC2.GetConsoleOutput", 1)])
    );
    assert_eq!(outcome["empty"], json!(false), "{outcome}");
    assert_eq!(outcome["latest"], json!(true), "{outcome}");
    let path = file_of(&outcome);
    assert!(
        path.ends_with(format!("console-output-{}.txt", fx.suspect)),
        "{path:?}"
    );
    let bytes = std::fs::read(&path).expect("evidence file");
    assert_eq!(outcome["sha256"], json!(sha256_hex(&bytes)));
    assert!(
        String::from_utf8_lossy(&bytes).starts_with("Linux version"),
        "decoded from base64"
    );
    actions
        .verify(&plan, console, &pre, &outcome)
        .await
        .expect("verify");

    // Evidence changed after the fact fails verification.
    std::fs::write(&path, b"tampered").expect("overwrite");
    let err = actions
        .verify(&plan, console, &pre, &outcome)
        .await
        .expect_err("tampered evidence");
    assert_eq!(err.kind, ErrorKind::Verification);
    assert!(err.to_string().contains("does not match"), "{err}");

    let kept = actions
        .undo(&plan, console, &pre, None)
        .await
        .expect("undo after a crash");
    assert_eq!(kept["kept"], Value::Null);
    actions
        .verify_undone(&plan, console, &pre)
        .await
        .expect("verify undone");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_instance_with_no_attachments_is_a_clear_no_op() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients).await;
    let dir = evidence_dir("bare");
    let actions = actions(clients, &dir);
    // The finding still names a profile: the outcome says it is gone.
    let (plan, _) = plan_for(&fx.bystander, Some(&fx.profile_arn));
    for (id, expected) in [
        ("detach-profile", "no instance profile"),
        ("detach-asg", "no Auto Scaling group"),
        ("deregister-lb", "no target group"),
    ] {
        let step = step(&plan, id);
        let pre = actions
            .read_pre_state(&plan, step)
            .await
            .expect("pre-state");
        assert!(actions.describe_apply(&plan, step, &pre).is_empty(), "{id}");
        let outcome = actions.apply(&plan, step, &pre).await.expect("apply");
        assert_eq!(outcome["changed"], json!(false), "{id}: {outcome}");
        let reason = outcome["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(expected), "{id}: {reason}");
        assert!(reason.contains(&fx.bystander), "{id}: {reason}");
        actions
            .verify(&plan, step, &pre, &outcome)
            .await
            .expect("verify");
        let undone = actions
            .undo(&plan, step, &pre, Some(&outcome))
            .await
            .expect("undo");
        assert_eq!(undone["changed"], json!(false), "{id}: {undone}");
        actions
            .verify_undone(&plan, step, &pre)
            .await
            .expect("verify undone");
    }
    let outcome = actions
        .apply(
            &plan,
            step(&plan, "detach-profile"),
            &json!({"instance-id": fx.bystander, "association": null}),
        )
        .await
        .expect("apply");
    assert!(
        outcome["note"]
            .as_str()
            .is_some_and(|n| n.contains(&fx.profile_arn)),
        "{outcome}"
    );
    assert!(mutating(clients).is_empty(), "{:?}", mutating(clients));
    phase(clients, "no-op actions");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn undo_right_after_prepare_changes_nothing() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients).await;
    let dir = evidence_dir("prepared");
    let actions = actions(clients, &dir);
    let (plan, _) = plan_for(&fx.suspect, Some(&fx.profile_arn));
    let profile = profile_state(clients, &fx.suspect).await;
    let asg = asg_state(clients).await;
    let tgs = all_tg_state(clients, &fx).await;
    clients.calls.reset();
    for id in [
        "detach-asg",
        "deregister-lb",
        "detach-profile",
        "capture-metadata",
        "console-output",
    ] {
        let step = step(&plan, id);
        let pre = actions
            .read_pre_state(&plan, step)
            .await
            .expect("pre-state");
        // Crash here: the journal has the pre-state and no outcome.
        actions.undo(&plan, step, &pre, None).await.expect("undo");
        actions
            .verify_undone(&plan, step, &pre)
            .await
            .expect("verify undone");
    }
    assert!(mutating(clients).is_empty(), "{:?}", mutating(clients));
    assert_eq!(profile_state(clients, &fx.suspect).await, profile);
    assert_eq!(asg_state(clients).await, asg);
    assert_eq!(all_tg_state(clients, &fx).await, tgs);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn undo_after_a_crash_mid_apply_restores() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients).await;
    let dir = evidence_dir("mid-apply");
    let actions = actions(clients, &dir);
    let (plan, _) = plan_for(&fx.suspect, Some(&fx.profile_arn));
    let profile = profile_state(clients, &fx.suspect).await;
    let (_, capacity) = asg_state(clients).await;
    let tgs = suspect_tg_state(clients, &fx).await;
    for id in ["detach-asg", "deregister-lb", "detach-profile"] {
        let step = step(&plan, id);
        let pre = actions
            .read_pre_state(&plan, step)
            .await
            .expect("pre-state");
        actions.apply(&plan, step, &pre).await.expect("apply");
        // Crash before the outcome is journaled: rollback has no outcome.
        let undone = actions.undo(&plan, step, &pre, None).await.expect("undo");
        assert_eq!(undone["changed"], json!(true), "{id}: {undone}");
        actions
            .verify_undone(&plan, step, &pre)
            .await
            .expect("verify undone");
    }
    assert_eq!(profile_state(clients, &fx.suspect).await, profile);
    let (members, capacity_after) = asg_state(clients).await;
    assert_eq!(capacity_after, capacity);
    assert!(members.contains(&fx.suspect));
    assert_eq!(suspect_tg_state(clients, &fx).await, tgs);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn plan_runs_and_rolls_back_through_the_executor() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients).await;
    let dir = evidence_dir("executor");
    let actions = actions(clients, &dir);
    let (plan, raw) = plan_for(&fx.suspect, Some(&fx.profile_arn));
    let profile = profile_state(clients, &fx.suspect).await;
    let (_, capacity) = asg_state(clients).await;
    let membership = asg_membership(clients, &fx.suspect).await;
    let tgs = suspect_tg_state(clients, &fx).await;
    let journal = LocalJournal::new(dir.join("journal"));
    let executor = Executor::new(&actions, &journal, &ApproveAll);

    let dry = executor.dry_run(&plan).await;
    let lines: Vec<&String> = dry.iter().flat_map(|s| &s.calls).collect();
    assert_eq!(lines.len(), 1 + 2 + 1 + 1 + 1, "{lines:#?}");
    assert!(mutating(clients).is_empty(), "a dry run changes nothing");
    phase(clients, "dry run");

    let report = executor.run(&plan, &raw).await.expect("run");
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    phase(clients, "executor run");
    assert!(profile_state(clients, &fx.suspect).await.is_empty());
    assert_eq!(asg_membership(clients, &fx.suspect).await, None);
    assert!(
        all_tg_state(clients, &fx)
            .await
            .iter()
            .flatten()
            .all(|(id, _)| *id != fx.suspect)
    );
    let evidence = dir.join(plan.case_id.as_str()).join("evidence");
    assert!(
        evidence
            .join(format!("instance-metadata-{}.json", fx.suspect))
            .exists()
    );
    assert!(
        evidence
            .join(format!("console-output-{}.txt", fx.suspect))
            .exists()
    );

    let again = executor.run(&plan, &raw).await.expect("re-run");
    assert!(again.no_op, "{}", again.message);

    let report = executor
        .rollback(&plan.case_id, "test")
        .await
        .expect("rollback");
    assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
    phase(clients, "executor rollback");
    assert_eq!(profile_state(clients, &fx.suspect).await, profile);
    assert_eq!(asg_state(clients).await.1, capacity);
    assert_eq!(asg_membership(clients, &fx.suspect).await, membership);
    assert_eq!(suspect_tg_state(clients, &fx).await, tgs);
    assert!(
        evidence
            .join(format!("instance-metadata-{}.json", fx.suspect))
            .exists(),
        "evidence kept"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
