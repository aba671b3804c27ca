//! The Game Day fixture builder against the emulator: it builds what the
//! spec says, marks every resource with its owner tag, finds them again from
//! the tag alone, and cleans up everything, even what a Game Day left
//! behind; a bad spec creates nothing, and a failed run says what it made.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{AttributeBooleanValue, Filter};
use cordon_aws::client::AwsClients;
use cordon_gameday::{
    EnvironmentSpec, FixtureError, OWNER_TAG, OwnedResource, ProvisionOptions, ResourceKind,
    cleanup, diff_states, discover, provision, provision_with, snapshot_state,
};
use cordon_tests::emulator;
use serde_json::json;

/// The compromised web server behind a load balancer (two zones), a user
/// with two keys, a console password and a policy, and a role with a policy.
fn environment() -> EnvironmentSpec {
    let mut spec = EnvironmentSpec::compromised_instance();
    let extra: EnvironmentSpec = serde_json::from_value(json!({
        "vpcs": [{"name": "edge", "cidr": "10.1.0.0/16", "subnets": [
            {"name": "edge-a", "cidr": "10.1.1.0/24", "availability-zone": "a"},
            {"name": "edge-b", "cidr": "10.1.2.0/24", "availability-zone": "b"}]}],
        "security-groups": [{"name": "edge-web", "vpc": "edge",
            "ingress": [{"port": 443, "cidr": "0.0.0.0/0"}]}],
        "target-groups": [{"name": "edge-tg", "vpc": "edge", "port": 80}],
        "load-balancers": [{"name": "edge-lb", "subnets": ["edge-a", "edge-b"], "groups": ["edge-web"],
            "listeners": [{"port": 80, "target-group": "edge-tg"}]}],
        "roles": [{"name": "auditor", "inline-policies": {
            "read": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}}}],
        "users": [{"name": "deploy-bot", "access-keys": 2, "console-password": true, "inline-policies": {
            "deploy": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}]}}}]
    }))
    .expect("extra spec");
    spec.vpcs.extend(extra.vpcs);
    spec.security_groups.extend(extra.security_groups);
    spec.target_groups.extend(extra.target_groups);
    spec.load_balancers.extend(extra.load_balancers);
    spec.roles.extend(extra.roles);
    spec.users.extend(extra.users);
    spec
}

async fn vpc_exists(clients: &AwsClients, id: &str) -> bool {
    let out = clients
        .ec2
        .describe_vpcs()
        .filters(Filter::builder().name("vpc-id").values(id).build())
        .send()
        .await
        .expect("DescribeVpcs");
    !out.vpcs().is_empty()
}

#[tokio::test]
async fn the_builder_tags_everything_it_creates_and_cleanup_removes_it_all() {
    let aws = emulator().await;
    let clients = aws.clients();
    let options = ProvisionOptions::unique();
    let env = provision_with(clients, &environment(), &options)
        .await
        .expect("provision");
    let suffix = options.name_suffix.clone().expect("unique names");

    // What the spec asked for, under the run's names.
    let web = &env.instances["web-01"];
    assert_eq!(web.enis.len(), 2);
    assert_eq!(web.enis[0].device_index, 0);
    assert_eq!(web.enis[1].device_index, 1);
    assert_eq!(
        web.enis[0]
            .groups
            .iter()
            .map(|g| g.name.as_str())
            .collect::<Vec<_>>(),
        ["web-frontend", "bastion-ssh-access"]
    );
    assert_eq!(web.enis[1].subnet_id, env.subnets["backend"].id);
    assert_eq!(web.volumes.len(), 2);
    assert_eq!(web.volumes[1].device, "/dev/sdf");
    assert_eq!(
        web.auto_scaling_group.as_deref(),
        Some(format!("gameday-web-asg-{suffix}").as_str())
    );
    assert_eq!(
        env.auto_scaling_groups["gameday-web-asg"].attached,
        std::slice::from_ref(&web.id)
    );
    assert_eq!(
        env.target_groups["gameday-web"].targets,
        [(web.id.clone(), 8080)]
    );
    assert_eq!(env.load_balancers["edge-lb"].listener_arns.len(), 1);
    let user = &env.users["deploy-bot"];
    assert_eq!(user.name, format!("deploy-bot-{suffix}"));
    assert!(user.arn.contains(":user/cordon-gameday/"), "{}", user.arn);
    assert_eq!(user.access_keys.len(), 2);
    assert!(!user.access_keys[0].secret.expose().is_empty());
    assert!(
        !format!("{env:?}").contains(user.access_keys[0].secret.expose()),
        "a secret access key in Debug output"
    );
    assert!(
        !serde_json::to_string(&env)
            .expect("fixture JSON")
            .contains(user.access_keys[0].secret.expose()),
        "a secret access key in the fixture file"
    );
    let state = snapshot_state(clients, &env).await.expect("snapshot");
    assert_eq!(state["users"]["deploy-bot"]["console-password"], true);
    assert_eq!(
        state["users"]["deploy-bot"]["inline-policies"],
        json!(["deploy"])
    );
    assert_eq!(
        state["roles"]["auditor"]["inline-policies"],
        json!(["read"])
    );
    assert!(
        diff_states(
            &state,
            &snapshot_state(clients, &env).await.expect("snapshot")
        )
        .is_empty()
    );

    // Every resource carries the owner tag: discovery from the tag alone
    // finds the inventory, the root volume and primary interface that came
    // with the instance included.
    let found: BTreeSet<OwnedResource> = discover(clients, &env.owner)
        .await
        .expect("discover")
        .into_iter()
        .collect();
    let inventory: BTreeSet<OwnedResource> = env.inventory().iter().cloned().collect();
    assert_eq!(inventory.len(), env.inventory().len(), "each resource once");
    assert_eq!(found, inventory);
    for id in web.eni_ids() {
        assert!(
            inventory.contains(&OwnedResource {
                kind: ResourceKind::NetworkInterface,
                id
            }),
            "every interface is in the inventory"
        );
    }
    let tags = clients
        .ec2
        .describe_tags()
        .filters(
            Filter::builder()
                .name("resource-id")
                .values(&web.id)
                .build(),
        )
        .send()
        .await
        .expect("DescribeTags");
    assert!(
        tags.tags()
            .iter()
            .any(|t| t.key() == Some(OWNER_TAG) && t.value() == Some(env.owner.as_str())),
        "{tags:?}"
    );
    let other_owner = discover(clients, "gd-someone-else")
        .await
        .expect("discover");
    assert!(other_owner.is_empty(), "{other_owner:?}");

    // What a Game Day may leave behind: termination protection on, an
    // isolation group in the VPC.
    clients
        .ec2
        .modify_instance_attribute()
        .instance_id(&web.id)
        .disable_api_termination(AttributeBooleanValue::builder().value(true).build())
        .send()
        .await
        .expect("termination protection");
    clients
        .ec2
        .create_security_group()
        .group_name("cordon-isolation")
        .description("left behind")
        .vpc_id(&env.vpcs["gameday"].id)
        .send()
        .await
        .expect("CreateSecurityGroup");

    let report = env.cleanup(clients).await;
    for (resource, err) in &report.failed {
        eprintln!("{resource}: {err}");
    }
    assert!(report.is_clean(), "{:?}", report.failed);
    assert_eq!(report.deleted.len(), env.inventory().len());
    let left = discover(clients, &env.owner).await.expect("discover");
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(
        !vpc_exists(clients, &env.vpcs["gameday"].id).await,
        "the VPC is gone"
    );

    // Twice is harmless: what is gone counts as deleted.
    let again = cleanup(clients, env.inventory()).await;
    assert!(again.is_clean(), "{:?}", again.failed);
}

#[tokio::test]
async fn an_invalid_spec_creates_nothing() {
    let aws = emulator().await;
    let clients = aws.clients();
    let mut spec = EnvironmentSpec::compromised_instance();
    spec.instances[0].groups.push("no-such-group".to_string());
    clients.calls.reset();
    let err = provision(clients, &spec).await.expect_err("invalid spec");
    assert!(err.created.is_empty());
    assert!(
        matches!(&err.source, FixtureError::InvalidSpec(problems) if problems.len() == 1),
        "{err}"
    );
    assert!(err.to_string().contains("instances[0].groups[2]"), "{err}");
    assert_eq!(clients.calls.total(), 0, "{:?}", clients.calls.snapshot());
}

#[tokio::test]
async fn a_failed_run_names_what_it_created_and_that_cleans_up() {
    let aws = emulator().await;
    let clients = aws.clients();
    // The second subnet lies outside its VPC: AWS refuses it, after the VPC
    // and the first subnet exist.
    let spec: EnvironmentSpec = serde_json::from_value(json!({
        "vpcs": [{"name": "vpc", "cidr": "10.0.0.0/16", "subnets": [
            {"name": "inside", "cidr": "10.0.1.0/24"},
            {"name": "outside", "cidr": "10.9.1.0/24"}]}]
    }))
    .expect("spec");
    let err = provision(clients, &spec).await.expect_err("subnet refused");
    eprintln!("{err}");
    assert!(
        matches!(&err.source, FixtureError::Aws { operation: "ec2:CreateSubnet", resource, .. } if resource == "outside"),
        "{err:?}"
    );
    let kinds: Vec<ResourceKind> = err.created.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [ResourceKind::Vpc, ResourceKind::Subnet]);
    let report = cleanup(clients, &err.created).await;
    assert!(report.is_clean(), "{:?}", report.failed);
    assert!(
        !vpc_exists(clients, &err.created[0].id).await,
        "the VPC is gone"
    );
}
