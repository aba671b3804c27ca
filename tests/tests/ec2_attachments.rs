//! The instance's attachments (instance profile, Auto Scaling group, load
//! balancer target groups) and the two evidence captures, against the
//! emulator: each action is applied, verified, undone and verified undone,
//! and the resources are compared field by field before and after.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aws_sdk_ec2::types::Filter;
use cordon_aws::actions::AwsActions;
use cordon_aws::client::AwsClients;
use cordon_aws::evidence::sha256_hex;
use cordon_core::executor::{ErrorKind, Executor};
use cordon_core::journal::CaseStatus;
use cordon_core::local_store::LocalJournal;
use cordon_core::plan::Plan;
use cordon_gameday::{EnvironmentSpec, provision as build};
use cordon_tests::{
    ApproveAll, Lifecycle, emulator, local_actions, mutating, plan_steps, take_calls,
};
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
    env: cordon_gameday::Fixture,
}

/// One subnet and group; the suspect (with a profile) and a bystander; a
/// group that launched one instance itself and then took in the suspect,
/// reaching its maximum size (2 of 2); three target groups.
fn environment() -> EnvironmentSpec {
    serde_json::from_value(json!({
        "vpcs": [{"name": "vpc", "cidr": "10.20.0.0/16",
                  "subnets": [{"name": "subnet", "cidr": "10.20.1.0/24"}]}],
        "security-groups": [{"name": "web", "vpc": "vpc", "description": "web servers",
            "ingress": [{"protocol": "tcp", "port": 443, "cidr": "0.0.0.0/0", "description": "https"}]}],
        "roles": [{"name": "web-role"}],
        "instance-profiles": [{"name": "web-profile", "role": "web-role"}],
        "instances": [
            {"name": "suspect", "subnet": "subnet", "groups": ["web"], "image-id": "ami-12345678",
             "instance-profile": "web-profile"},
            {"name": "bystander", "subnet": "subnet", "groups": ["web"], "image-id": "ami-12345678"}
        ],
        "auto-scaling-groups": [{"name": ASG, "subnets": ["subnet"], "min-size": 1, "max-size": 2,
            "desired-capacity": 1, "image-id": "ami-12345678", "attach": ["suspect"]}],
        "target-groups": [
            {"name": "web-tg", "vpc": "vpc", "port": 80, "targets": [
                {"instance": "suspect", "port": 8080}, {"launched-by": ASG, "port": 8080}]},
            {"name": "api-tg", "vpc": "vpc", "port": 443, "targets": [
                {"instance": "suspect", "port": 9443}]},
            {"name": "other-tg", "vpc": "vpc", "port": 80, "targets": [
                {"launched-by": ASG, "port": 8081}]}
        ]
    }))
    .expect("environment spec")
}

async fn provision(clients: &AwsClients) -> Fixture {
    let env = build(clients, &environment()).await.expect("provision");
    let launched = &env.auto_scaling_groups[ASG].launched;
    assert_eq!(launched.len(), 1, "the group launched one instance itself");
    let fx = Fixture {
        suspect: env.instances["suspect"].id.clone(),
        bystander: env.instances["bystander"].id.clone(),
        member: launched[0].clone(),
        profile_arn: env.instance_profiles["web-profile"].arn.clone(),
        security_group: env.security_groups["web"].id.clone(),
        web_tg: env.target_groups["web-tg"].arn.clone(),
        api_tg: env.target_groups["api-tg"].arn.clone(),
        other_tg: env.target_groups["other-tg"].arn.clone(),
        env,
    };
    clients.calls.reset();
    fx
}

/// A GuardDuty finding naming the instance `name`, with or without its
/// instance profile (a finding may name one the instance no longer has).
fn finding_json(fx: &Fixture, name: &str, profile_arn: Option<&str>) -> String {
    let mut finding = fx
        .env
        .instance_finding(name)
        .expect("an instance of the spec");
    finding.id = Some(format!("finding-{}", finding.instance_id));
    finding.instance_profile_arn = profile_arn.map(str::to_string);
    finding.detail().to_string()
}

/// The plan of a playbook running this file's five actions on instance `name`.
fn attachments_plan(fx: &Fixture, name: &str, profile_arn: Option<&str>) -> (Plan, String) {
    let raw = finding_json(fx, name, profile_arn);
    let retry = json!({"max-attempts": 2, "initial-backoff-ms": 10});
    let plan = plan_steps(
        &raw,
        "ec2-attachments",
        json!([
            {"id": "detach-asg", "action": "detach-from-autoscaling", "retry": retry},
            {"id": "deregister-lb", "action": "deregister-from-load-balancers", "retry": retry},
            {"id": "detach-profile", "action": "detach-instance-profile", "retry": retry},
            {"id": "capture-metadata", "action": "capture-instance-metadata"},
            {"id": "console-output", "action": "capture-console-output", "with": {"latest": true}}
        ]),
    );
    (plan, raw)
}

/// The mutating calls sent since the counter was last reset, per operation.
fn mutating_now(clients: &AwsClients) -> BTreeMap<String, u64> {
    mutating(&clients.calls.snapshot())
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

/// Applies, expecting a change made by exactly `mutations`, and verifies it.
async fn apply_changes(life: &mut Lifecycle<'_, AwsActions>, mutations: &[(&str, u64)]) -> Value {
    let outcome = life.apply().await.expect("apply");
    assert_eq!(outcome["changed"], json!(true), "{outcome}");
    assert_eq!(life.last_mutating(), map(mutations));
    life.verify().await.expect("verify");
    outcome
}

/// A re-apply after a crash: nothing left to do, and no mutating call.
async fn reapply_changes_nothing(life: &mut Lifecycle<'_, AwsActions>) -> Value {
    let again = life.apply().await.expect("second apply");
    assert_eq!(again["changed"], json!(false), "{again}");
    assert!(
        life.last_mutating().is_empty(),
        "{:?}",
        life.last_mutating()
    );
    again
}

/// Undoes from the first outcome (the one journaled), expecting exactly
/// `mutations`, and verifies the resource is back.
async fn undo_changes(
    life: &mut Lifecycle<'_, AwsActions>,
    outcome: &Value,
    mutations: &[(&str, u64)],
) -> Value {
    let undone = life.undo_with(Some(outcome)).await.expect("undo");
    assert_eq!(undone["changed"], json!(true), "{undone}");
    assert_eq!(life.last_mutating(), map(mutations));
    life.verify_undone().await.expect("verify undone");
    undone
}

/// Rolling back twice is harmless: nothing changes, no mutating call.
async fn undo_again_changes_nothing(life: &mut Lifecycle<'_, AwsActions>, outcome: &Value) {
    let twice = life.undo_with(Some(outcome)).await.expect("second undo");
    assert_eq!(twice["changed"], json!(false), "{twice}");
    assert!(life.last_mutating().is_empty());
}

#[tokio::test]
async fn instance_profile_is_detached_and_restored() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients).await;
    let (actions, dir) = local_actions(clients, "profile");
    let (plan, _) = attachments_plan(&fx, "suspect", Some(&fx.profile_arn));
    let before = profile_state(clients, &fx.suspect).await;
    assert_eq!(
        before,
        vec![(fx.profile_arn.clone(), "associated".to_string())]
    );
    let mut life = Lifecycle::new(&actions, &plan, "detach-profile").counting(&clients.calls);

    let pre = life.pre_state().await.expect("pre-state");
    assert_eq!(pre["association"]["profile-arn"], json!(fx.profile_arn));
    assert_eq!(pre["association"]["profile-name"], json!("web-profile"));
    assert_eq!(
        life.last_calls(),
        &map(&[("EC2.DescribeIamInstanceProfileAssociations", 1)])
    );
    let dry = life.dry_run();
    assert_eq!(dry.len(), 1, "{dry:?}");
    assert!(
        dry[0].starts_with("ec2:DisassociateIamInstanceProfile association-id=iip-assoc-"),
        "{dry:?}"
    );

    let outcome = apply_changes(&mut life, &[("EC2.DisassociateIamInstanceProfile", 1)]).await;
    assert!(profile_state(clients, &fx.suspect).await.is_empty());

    // A re-run after a crash: nothing left to do, and no mutating call.
    let again = reapply_changes_nothing(&mut life).await;
    assert!(
        again["reason"]
            .as_str()
            .is_some_and(|r| r.contains("already disassociated")),
        "{again}"
    );

    undo_changes(
        &mut life,
        &outcome,
        &[("EC2.AssociateIamInstanceProfile", 1)],
    )
    .await;
    assert_eq!(profile_state(clients, &fx.suspect).await, before);

    // Rolling back twice is harmless.
    undo_again_changes_nothing(&mut life, &outcome).await;
    life.verify_undone().await.expect("verify undone again");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn autoscaling_detach_keeps_capacity_and_rollback_restores_it_exactly() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients).await;
    let (actions, dir) = local_actions(clients, "asg");
    let (plan, _) = attachments_plan(&fx, "suspect", None);
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
    let mut life = Lifecycle::new(&actions, &plan, "detach-asg").counting(&clients.calls);

    let pre = life.pre_state().await.expect("pre-state");
    assert_eq!(
        pre["membership"],
        json!({
            "group-name": ASG,
            "lifecycle-state": "InService",
            "protected-from-scale-in": false,
            "capacity": {"min-size": 1, "max-size": 2, "desired-capacity": 2}
        })
    );
    let dry = life.dry_run();
    assert_eq!(dry.len(), 1, "{dry:?}");
    assert!(
        dry[0].contains("should-decrement-desired-capacity=false"),
        "{dry:?}"
    );

    let outcome = apply_changes(&mut life, &[("AutoScaling.DetachInstances", 1)]).await;
    assert_eq!(asg_membership(clients, &fx.suspect).await, None);
    // Desired capacity kept: the group replaced the instance rather than shrinking.
    let (members_detached, capacity_detached) = asg_state(clients).await;
    assert_eq!(capacity_detached, (1, 2, 2));
    assert_eq!(members_detached.len(), 2);
    assert!(!members_detached.contains(&fx.suspect));
    assert!(members_detached.contains(&fx.member));

    reapply_changes_nothing(&mut life).await;

    // Room is made first (desired 2 → 1), then the instance is attached (→ 2):
    // the group never has to scale in with the re-attached instance in it.
    undo_changes(
        &mut life,
        &outcome,
        &[
            ("AutoScaling.AttachInstances", 1),
            ("AutoScaling.UpdateAutoScalingGroup", 1),
        ],
    )
    .await;
    let (members_after, capacity_after) = asg_state(clients).await;
    assert_eq!(capacity_after, capacity_before, "min/max/desired");
    assert_eq!(members_after.len(), members_before.len());
    assert!(members_after.contains(&fx.suspect), "{members_after:?}");
    assert_eq!(
        asg_membership(clients, &fx.suspect).await,
        membership_before
    );

    undo_again_changes_nothing(&mut life, &outcome).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn autoscaling_rollback_restores_membership_and_leaves_capacity_scaled_during_the_incident() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients).await;
    let (actions, _) = local_actions(clients, "asg-scaled");
    let (plan, _) = attachments_plan(&fx, "suspect", None);
    let mut life = Lifecycle::new(&actions, &plan, "detach-asg");
    let (_, outcome) = life.forward().await.expect("detach");
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
    let undone = life.undo_with(Some(&outcome)).await.expect("undo");
    life.verify_undone()
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
    let outcome = life.apply().await.expect("apply");
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
    let undone = life.undo_with(Some(&outcome)).await.expect("undo");
    let (members, capacity) = asg_state(clients).await;
    assert!(members.contains(&fx.suspect), "{members:?}");
    assert_eq!(capacity, (0, 1, 1), "{undone}");
    assert!(
        undone["done"][0]
            .as_str()
            .is_some_and(|d| d.contains("min 0, max 1, desired 0")),
        "{undone}"
    );
}

#[tokio::test]
async fn load_balancer_targets_are_deregistered_and_registered_back_on_their_ports() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients).await;
    let (actions, dir) = local_actions(clients, "elb");
    let (plan, _) = attachments_plan(&fx, "suspect", None);
    let before = all_tg_state(clients, &fx).await;
    let mut life = Lifecycle::new(&actions, &plan, "deregister-lb").counting(&clients.calls);

    let pre = life.pre_state().await.expect("pre-state");
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
        life.last_calls(),
        &map(&[
            ("ElasticLoadBalancingv2.DescribeTargetGroups", 1),
            ("ElasticLoadBalancingv2.DescribeTargetHealth", 3)
        ])
    );
    assert_eq!(life.dry_run().len(), 2);

    let outcome = apply_changes(
        &mut life,
        &[("ElasticLoadBalancingv2.DeregisterTargets", 2)],
    )
    .await;
    let deregistered = all_tg_state(clients, &fx).await;
    assert_eq!(deregistered[0], vec![(fx.member.clone(), 8080)]);
    assert!(deregistered[1].is_empty());
    assert_eq!(
        deregistered[2], before[2],
        "a group the instance is not in is untouched"
    );

    reapply_changes_nothing(&mut life).await;

    undo_changes(
        &mut life,
        &outcome,
        &[("ElasticLoadBalancingv2.RegisterTargets", 2)],
    )
    .await;
    assert_eq!(
        all_tg_state(clients, &fx).await,
        before,
        "same targets on the same ports"
    );

    undo_again_changes_nothing(&mut life, &outcome).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A burst: cases on several instances in one process share one scan of the
/// region's target groups instead of each asking every group (N² calls for
/// N instances behind their own groups). A case reusing the scan re-reads
/// only the groups it names the instance in; a registration (rollback)
/// drops the scan. Fails on the old code, where the bystander's pre-state
/// asked all three groups again.
#[tokio::test]
async fn cases_in_one_process_share_one_scan_of_the_target_groups() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients).await;
    let (actions, dir) = local_actions(clients, "elb-scan");
    let scan = map(&[
        ("ElasticLoadBalancingv2.DescribeTargetGroups", 1),
        ("ElasticLoadBalancingv2.DescribeTargetHealth", 3),
    ]);

    let (suspect_plan, _) = attachments_plan(&fx, "suspect", None);
    let mut first =
        Lifecycle::new(&actions, &suspect_plan, "deregister-lb").counting(&clients.calls);
    let pre = first.pre_state().await.expect("pre-state");
    assert_eq!(first.last_calls(), &scan, "the first case scans");

    let (bystander_plan, _) = attachments_plan(&fx, "bystander", None);
    let mut bystander =
        Lifecycle::new(&actions, &bystander_plan, "deregister-lb").counting(&clients.calls);
    let nothing = bystander.pre_state().await.expect("pre-state");
    assert_eq!(nothing["registrations"], json!([]));
    assert_eq!(
        bystander.last_calls(),
        &map(&[]),
        "the scan says the bystander is in no group: no call"
    );

    let mut again =
        Lifecycle::new(&actions, &suspect_plan, "deregister-lb").counting(&clients.calls);
    let reread = again.pre_state().await.expect("pre-state");
    assert_eq!(reread, pre, "same pre-state from the shared scan");
    assert_eq!(
        again.last_calls(),
        &map(&[("ElasticLoadBalancingv2.DescribeTargetHealth", 2)]),
        "only the suspect's two groups are read again"
    );

    let outcome = apply_changes(
        &mut first,
        &[("ElasticLoadBalancingv2.DeregisterTargets", 2)],
    )
    .await;
    undo_changes(
        &mut first,
        &outcome,
        &[("ElasticLoadBalancingv2.RegisterTargets", 2)],
    )
    .await;
    let mut after_rollback =
        Lifecycle::new(&actions, &bystander_plan, "deregister-lb").counting(&clients.calls);
    after_rollback.pre_state().await.expect("pre-state");
    assert_eq!(
        after_rollback.last_calls(),
        &scan,
        "a registration drops the scan: the next case scans again"
    );
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
    let (actions, dir) = local_actions(clients, "capture");
    let (plan, _) = attachments_plan(&fx, "suspect", None);

    let mut metadata = Lifecycle::new(&actions, &plan, "capture-metadata").counting(&clients.calls);
    let pre = metadata.pre_state().await.expect("pre-state");
    assert_eq!(
        pre,
        json!({"instance-id": fx.suspect, "instance-state": null})
    );
    assert!(
        metadata.last_calls().is_empty(),
        "the pre-state of a capture takes no round: {:?}",
        metadata.last_calls()
    );
    let outcome = metadata.apply().await.expect("apply");
    assert!(
        metadata.last_mutating().is_empty(),
        "a capture changes nothing in AWS"
    );
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
    metadata.verify().await.expect("verify");
    let kept = metadata.undo().await.expect("undo");
    assert_eq!(kept["kept"], outcome["location"]);
    assert!(path.exists(), "rollback keeps evidence");
    metadata.verify_undone().await.expect("verify undone");

    let mut console = Lifecycle::new(&actions, &plan, "console-output").counting(&clients.calls);
    console.pre_state().await.expect("pre-state");
    assert_eq!(
        console.last_calls().values().sum::<u64>(),
        0,
        "console pre-state needs no call"
    );
    let outcome = console.apply().await.expect("apply");
    assert_eq!(console.last_calls(), &map(&[("EC2.GetConsoleOutput", 1)]));
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
    console.verify().await.expect("verify");

    // Evidence changed after the fact fails verification.
    std::fs::write(&path, b"tampered").expect("overwrite");
    let err = console.verify().await.expect_err("tampered evidence");
    assert_eq!(err.kind, ErrorKind::Verification);
    assert!(err.to_string().contains("does not match"), "{err}");

    let kept = console
        .undo_without_outcome()
        .await
        .expect("undo after a crash");
    assert_eq!(kept["kept"], Value::Null);
    console.verify_undone().await.expect("verify undone");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_instance_with_no_attachments_is_a_clear_no_op() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients).await;
    let (actions, dir) = local_actions(clients, "bare");
    // The finding still names a profile: the outcome says it is gone.
    let (plan, _) = attachments_plan(&fx, "bystander", Some(&fx.profile_arn));
    for (id, expected) in [
        ("detach-profile", "no instance profile"),
        ("detach-asg", "no Auto Scaling group"),
        ("deregister-lb", "no target group"),
    ] {
        let mut life = Lifecycle::new(&actions, &plan, id);
        life.pre_state().await.expect("pre-state");
        assert!(life.dry_run().is_empty(), "{id}");
        let outcome = life.apply().await.expect("apply");
        assert_eq!(outcome["changed"], json!(false), "{id}: {outcome}");
        let reason = outcome["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(expected), "{id}: {reason}");
        assert!(reason.contains(&fx.bystander), "{id}: {reason}");
        life.verify().await.expect("verify");
        let undone = life.undo().await.expect("undo");
        assert_eq!(undone["changed"], json!(false), "{id}: {undone}");
        life.verify_undone().await.expect("verify undone");
    }
    let mut life = Lifecycle::new(&actions, &plan, "detach-profile");
    life.set_pre_state(json!({"instance-id": fx.bystander, "association": null}));
    let outcome = life.apply().await.expect("apply");
    assert!(
        outcome["note"]
            .as_str()
            .is_some_and(|n| n.contains(&fx.profile_arn)),
        "{outcome}"
    );
    assert!(
        mutating_now(clients).is_empty(),
        "{:?}",
        mutating_now(clients)
    );
    take_calls(clients, "no-op actions");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn undo_right_after_prepare_changes_nothing() {
    let aws = emulator().await;
    let clients = aws.clients();
    let fx = provision(clients).await;
    let (actions, dir) = local_actions(clients, "prepared");
    let (plan, _) = attachments_plan(&fx, "suspect", Some(&fx.profile_arn));
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
        let mut life = Lifecycle::new(&actions, &plan, id);
        life.pre_state().await.expect("pre-state");
        // Crash here: the journal has the pre-state and no outcome.
        life.undo_without_outcome().await.expect("undo");
        life.verify_undone().await.expect("verify undone");
    }
    assert!(
        mutating_now(clients).is_empty(),
        "{:?}",
        mutating_now(clients)
    );
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
    let (actions, dir) = local_actions(clients, "mid-apply");
    let (plan, _) = attachments_plan(&fx, "suspect", Some(&fx.profile_arn));
    let profile = profile_state(clients, &fx.suspect).await;
    let (_, capacity) = asg_state(clients).await;
    let tgs = suspect_tg_state(clients, &fx).await;
    for id in ["detach-asg", "deregister-lb", "detach-profile"] {
        let mut life = Lifecycle::new(&actions, &plan, id);
        life.pre_state().await.expect("pre-state");
        life.apply().await.expect("apply");
        // Crash before the outcome is journaled: rollback has no outcome.
        let undone = life.undo_without_outcome().await.expect("undo");
        assert_eq!(undone["changed"], json!(true), "{id}: {undone}");
        life.verify_undone().await.expect("verify undone");
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
    let (actions, dir) = local_actions(clients, "executor");
    let (plan, raw) = attachments_plan(&fx, "suspect", Some(&fx.profile_arn));
    let profile = profile_state(clients, &fx.suspect).await;
    let (_, capacity) = asg_state(clients).await;
    let membership = asg_membership(clients, &fx.suspect).await;
    let tgs = suspect_tg_state(clients, &fx).await;
    let journal = LocalJournal::new(dir.join("journal"));
    let executor = Executor::new(&actions, &journal, &ApproveAll);

    let dry = executor.dry_run(&plan).await;
    let lines: Vec<&String> = dry.iter().flat_map(|s| &s.calls).collect();
    assert_eq!(lines.len(), 1 + 2 + 1 + 1 + 1, "{lines:#?}");
    assert!(
        mutating_now(clients).is_empty(),
        "a dry run changes nothing"
    );
    take_calls(clients, "dry run");

    let report = executor.run(&plan, &raw).await.expect("run");
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let calls = take_calls(clients, "executor run");
    // Each detachment reads its pre-state, makes its change on it (the
    // executor read it a moment ago), then verifies: two membership reads,
    // not a third one between the pre-state and the change. The target
    // health is read by the scan (three groups) and by verification (one
    // call), not again before deregistering; the metadata capture reads the
    // instance once, in its apply.
    for (op, expected) in [
        ("AutoScaling.DescribeAutoScalingInstances", 2),
        ("EC2.DescribeIamInstanceProfileAssociations", 2),
        ("ElasticLoadBalancingv2.DescribeTargetHealth", 4),
        ("EC2.DescribeInstances", 1),
    ] {
        assert_eq!(calls.get(op), Some(&expected), "{op}: {calls:?}");
    }
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
    take_calls(clients, "executor rollback");
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
