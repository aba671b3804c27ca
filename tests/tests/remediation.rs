//! The reversible remediation actions (issue 15) against the emulator: each
//! is applied, verified, undone and verified undone, and the resource is
//! compared field by field with what it was before the case.

use cordon_core::executor::Executor;
use cordon_core::journal::CaseStatus;
use cordon_core::local_store::LocalJournal;
use cordon_gameday::provision as build;
use cordon_tests::{
    ApproveAll, ApproveUndo, Lifecycle, config_event, emulator, ingress_rules, local_actions,
    metadata_options, mutating, one_instance_environment, open_security_group, plan_steps,
    public_access_block, public_snapshot, s3_bucket_finding, set_metadata_options,
    volume_permissions,
};
use serde_json::json;

#[tokio::test]
async fn enforce_imdsv2_keeps_the_other_options_and_undo_restores_them_exactly() {
    let aws = emulator().await;
    let clients = aws.clients();
    let env = build(clients, &one_instance_environment("10.30.0.0/16"))
        .await
        .expect("provision");
    let instance_id = env.instances["app"].id.clone();
    // Not the defaults, so keeping and restoring them shows: a container
    // host's hop limit of 3 and tags readable from the metadata service.
    set_metadata_options(clients, &instance_id, "optional", 3, true).await;
    let before = metadata_options(clients, &instance_id).await;
    assert_eq!(before["http-tokens"], "optional", "{before}");
    assert_eq!(before["hop-limit"], 3, "{before}");
    assert_eq!(before["tags"], "enabled", "{before}");

    let (actions, _dir) = local_actions(clients, "enforce-imdsv2");
    let finding = env.instance_finding("app").expect("finding").detail();
    let plan = plan_steps(
        &finding.to_string(),
        "imdsv2",
        json!([{"id": "imdsv2", "action": "enforce-imdsv2"}]),
    );
    let mut life = Lifecycle::new(&actions, &plan, "imdsv2").counting(&clients.calls);
    let (pre, outcome) = life.forward().await.expect("enforce");
    assert_eq!(
        pre,
        json!({"instance-id": instance_id, "options": {
            "http-tokens": "optional", "http-put-response-hop-limit": 3,
            "http-endpoint": "enabled", "http-protocol-ipv6": "disabled",
            "instance-metadata-tags": "enabled"}})
    );
    assert_eq!(
        outcome["changed"],
        json!([format!(
            "ec2:ModifyInstanceMetadataOptions {instance_id} HttpTokens=required \
             HttpPutResponseHopLimit=3 HttpEndpoint=enabled HttpProtocolIpv6=disabled \
             InstanceMetadataTags=enabled"
        )])
    );
    let mut enforced = before.clone();
    enforced["http-tokens"] = json!("required");
    assert_eq!(metadata_options(clients, &instance_id).await, enforced);

    // A re-apply from the journaled pre-state (a resume after a crash) is harmless.
    life.apply().await.expect("re-apply");
    life.verify().await.expect("still enforced");
    assert_eq!(metadata_options(clients, &instance_id).await, enforced);

    life.rollback().await.expect("undo");
    assert_eq!(metadata_options(clients, &instance_id).await, before);
    // Undoing again finds nothing to do and sends nothing.
    let undone = life.undo().await.expect("second undo");
    assert_eq!(undone["restored"], json!([]));
    assert!(
        mutating(life.last_calls()).is_empty(),
        "{:?}",
        life.last_calls()
    );
    life.verify_undone().await.expect("still restored");
}

#[tokio::test]
async fn enforce_imdsv2_on_an_instance_already_requiring_tokens_changes_nothing() {
    let aws = emulator().await;
    let clients = aws.clients();
    let env = build(clients, &one_instance_environment("10.30.0.0/16"))
        .await
        .expect("provision");
    let instance_id = env.instances["app"].id.clone();
    set_metadata_options(clients, &instance_id, "required", 2, false).await;
    let before = metadata_options(clients, &instance_id).await;

    let (actions, _dir) = local_actions(clients, "enforce-imdsv2-noop");
    let finding = env.instance_finding("app").expect("finding").detail();
    let plan = plan_steps(
        &finding.to_string(),
        "imdsv2",
        json!([{"id": "imdsv2", "action": "enforce-imdsv2"}]),
    );
    let mut life = Lifecycle::new(&actions, &plan, "imdsv2").counting(&clients.calls);
    let (_, outcome) = life.forward().await.expect("enforce");
    assert_eq!(outcome["changed"], json!([]));
    let undone = life.rollback().await.expect("undo");
    assert_eq!(undone["restored"], json!([]));
    assert!(
        mutating(&life.calls()).is_empty(),
        "nothing to change, nothing sent: {:?}",
        life.calls()
    );
    assert_eq!(metadata_options(clients, &instance_id).await, before);
}

#[tokio::test]
async fn block_bucket_public_access_restores_a_partial_block_or_its_absence_exactly() {
    use aws_sdk_s3::types::PublicAccessBlockConfiguration;
    let aws = emulator().await;
    let clients = aws.clients();
    let (actions, _dir) = local_actions(clients, "block-bucket-public-access");
    for (bucket, partial) in [("cordon-open-none", false), ("cordon-open-partial", true)] {
        clients
            .s3
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("CreateBucket");
        if partial {
            clients
                .s3
                .put_public_access_block()
                .bucket(bucket)
                .public_access_block_configuration(
                    PublicAccessBlockConfiguration::builder()
                        .block_public_acls(true)
                        .ignore_public_acls(false)
                        .block_public_policy(false)
                        .restrict_public_buckets(false)
                        .build(),
                )
                .send()
                .await
                .expect("set-up block");
        }
        let before = public_access_block(clients, bucket).await;
        let plan = plan_steps(
            &s3_bucket_finding(bucket),
            "block-public",
            json!([{"id": "block", "action": "block-bucket-public-access"}]),
        );
        let mut life = Lifecycle::new(&actions, &plan, "block").counting(&clients.calls);
        let (pre, outcome) = life.forward().await.expect("block");
        let expected_pre = if partial {
            json!({"block-public-acls": true, "ignore-public-acls": false,
                   "block-public-policy": false, "restrict-public-buckets": false})
        } else {
            json!(null)
        };
        assert_eq!(pre["public-access-block"], expected_pre, "{bucket}");
        assert_eq!(outcome["changed"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            public_access_block(clients, bucket).await,
            json!([true, true, true, true])
        );
        // A re-apply (resume after a crash) is harmless.
        life.apply().await.expect("re-apply");
        life.verify().await.expect("still blocked");

        let undone = life.rollback().await.expect("undo");
        let call = if partial {
            "PutPublicAccessBlock"
        } else {
            "DeletePublicAccessBlock"
        };
        assert!(
            undone["restored"][0]
                .as_str()
                .unwrap_or_default()
                .starts_with(call),
            "{undone}"
        );
        assert_eq!(
            public_access_block(clients, bucket).await,
            before,
            "{bucket}"
        );
        let again = life.undo().await.expect("second undo");
        assert_eq!(again["restored"], json!([]));
        assert!(
            mutating(life.last_calls()).is_empty(),
            "{:?}",
            life.last_calls()
        );
    }
}

#[tokio::test]
async fn revoke_open_ingress_removes_only_world_open_rules_on_the_ports_and_restores_them_exactly()
{
    let aws = emulator().await;
    let clients = aws.clients();
    let group_id = open_security_group(clients, "bastion").await;
    let before = ingress_rules(clients, &group_id).await;
    assert_eq!(before.len(), 5, "{before:#?}");

    let (actions, _dir) = local_actions(clients, "revoke-open-ingress");
    let plan = plan_steps(
        &config_event("restricted-ssh", "AWS::EC2::SecurityGroup", &group_id),
        "open-ingress",
        json!([{"id": "revoke", "action": "revoke-open-ingress", "with": {"ports": [22, 3389]}}]),
    );
    let mut life = Lifecycle::new(&actions, &plan, "revoke").counting(&clients.calls);
    let (pre, outcome) = life.forward().await.expect("revoke");
    assert_eq!(
        pre["open-rules"],
        json!([
            {"protocol": "tcp", "from-port": 22, "to-port": 22, "cidr": "0.0.0.0/0",
             "description": "ssh from anywhere"},
            {"protocol": "tcp", "from-port": 22, "to-port": 22, "cidr": "::/0"},
            {"protocol": "tcp", "from-port": 3000, "to-port": 3400, "cidr": "0.0.0.0/0"}
        ])
    );
    assert_eq!(outcome["revoked"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        ingress_rules(clients, &group_id).await,
        [
            "tcp Some(22)-Some(22) 10.0.0.0/8 None",
            "tcp Some(443)-Some(443) 0.0.0.0/0 None",
        ],
        "only the world-open ranges on 22 and 3389 went"
    );
    // A re-apply (resume after a crash) finds nothing left to revoke.
    let again = life.apply().await.expect("re-apply");
    assert_eq!(again["revoked"], json!([]));
    life.verify().await.expect("still closed");

    life.rollback().await.expect("undo");
    assert_eq!(ingress_rules(clients, &group_id).await, before);
    let undone = life.undo().await.expect("second undo");
    assert_eq!(undone["restored"], json!([]));
    assert!(
        mutating(life.last_calls()).is_empty(),
        "{:?}",
        life.last_calls()
    );
}

#[tokio::test]
async fn revoke_open_ingress_undo_needs_explicit_approval() {
    let aws = emulator().await;
    let clients = aws.clients();
    let group_id = open_security_group(clients, "bastion-gated").await;
    let before = ingress_rules(clients, &group_id).await;
    let finding = config_event("restricted-ssh", "AWS::EC2::SecurityGroup", &group_id);
    let plan = plan_steps(
        &finding,
        "open-ingress",
        json!([{"id": "revoke", "action": "revoke-open-ingress", "with": {"ports": [22]}}]),
    );
    let (actions, dir) = local_actions(clients, "revoke-open-ingress-gated");
    let journal = LocalJournal::new(&dir);
    let report = Executor::new(&actions, &journal, &ApproveAll)
        .run(&plan, &finding)
        .await
        .expect("run");
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let closed = ingress_rules(clients, &group_id).await;
    assert_ne!(closed, before);

    // Without approval, the rollback keeps the group closed.
    let kept = Executor::new(&actions, &journal, &ApproveAll)
        .rollback(&plan.case_id, "test")
        .await
        .expect("rollback");
    assert_eq!(
        kept.status,
        CaseStatus::RolledBackExceptCredentials,
        "{}",
        kept.message
    );
    assert!(
        kept.message
            .contains("exposes a resource to the internet again"),
        "{}",
        kept.message
    );
    assert_eq!(ingress_rules(clients, &group_id).await, closed);

    // Approved, the rules come back exactly.
    let report = Executor::new(&actions, &journal, &ApproveUndo)
        .rollback(&plan.case_id, "test")
        .await
        .expect("rollback");
    assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
    assert_eq!(ingress_rules(clients, &group_id).await, before);
}

#[tokio::test]
async fn make_snapshot_private_removes_only_the_public_permission_and_undo_restores_it() {
    let aws = emulator().await;
    let clients = aws.clients();
    let snapshot_id = public_snapshot(clients).await;
    let before = volume_permissions(clients, &snapshot_id).await;
    assert_eq!(before, ["group:all", "user:111122223333"]);

    let (actions, _dir) = local_actions(clients, "make-snapshot-private");
    let plan = plan_steps(
        &config_event(
            "ebs-snapshot-public-restorable-check",
            "AWS::EC2::Snapshot",
            &snapshot_id,
        ),
        "public-snapshot",
        json!([{"id": "private", "action": "make-snapshot-private"}]),
    );
    let mut life = Lifecycle::new(&actions, &plan, "private").counting(&clients.calls);
    let (pre, _) = life.forward().await.expect("make private");
    assert_eq!(
        pre,
        json!({"snapshot-id": snapshot_id, "groups": ["all"], "user-ids": ["111122223333"]})
    );
    assert_eq!(
        volume_permissions(clients, &snapshot_id).await,
        ["user:111122223333"],
        "the account it is shared with keeps its permission"
    );
    life.apply().await.expect("re-apply");
    life.verify().await.expect("still private");

    life.rollback().await.expect("undo");
    assert_eq!(volume_permissions(clients, &snapshot_id).await, before);
    let undone = life.undo().await.expect("second undo");
    assert_eq!(undone["restored"], json!([]));
    assert!(
        mutating(life.last_calls()).is_empty(),
        "{:?}",
        life.last_calls()
    );
}

/// Each shipped remediation playbook answers a real-shaped event of its
/// source: the five Config managed rules and a failed Security Hub control
/// on a security group; and plans its step against the event's resource.
#[test]
fn config_and_security_hub_events_route_to_their_shipped_playbooks() {
    let playbooks = cordon_tests::shipped_playbooks();
    let group = "sg-0123456789abcdef0";
    let cases = [
        (
            config_event(
                "s3-bucket-level-public-access-prohibited",
                "AWS::S3::Bucket",
                "customer-exports",
            ),
            "config-s3-bucket-level-public-access-prohibited",
            "bucket:customer-exports",
        ),
        (
            config_event(
                "ec2-imdsv2-check",
                "AWS::EC2::Instance",
                "i-0123456789abcdef0",
            ),
            "config-ec2-imdsv2-check",
            "instance:i-0123456789abcdef0",
        ),
        (
            config_event("restricted-ssh", "AWS::EC2::SecurityGroup", group),
            "config-restricted-ssh",
            "security-group:sg-0123456789abcdef0",
        ),
        (
            config_event("restricted-common-ports", "AWS::EC2::SecurityGroup", group),
            "config-restricted-common-ports",
            "security-group:sg-0123456789abcdef0",
        ),
        (
            config_event(
                "ebs-snapshot-public-restorable-check",
                "AWS::EC2::Snapshot",
                "snap-0123456789abcdef0",
            ),
            "config-ebs-snapshot-public-restorable-check",
            "snapshot:snap-0123456789abcdef0",
        ),
        (
            cordon_tests::shipped::security_hub_group_finding(group),
            "securityhub-open-security-group",
            "security-group:sg-0123456789abcdef0",
        ),
    ];
    for (event, expected, target) in cases {
        let finding = cordon_core::finding::parse_single_finding(&event, "event")
            .unwrap_or_else(|err| panic!("{expected}: {err}"));
        let (route, chosen) = cordon_core::route::route(&finding, &playbooks);
        let chosen = chosen.unwrap_or_else(|| panic!("{expected}: no playbook: {route:?}"));
        assert_eq!(chosen.name, expected, "{route:?}");
        let reason = cordon_core::route::RouteReason {
            playbook: chosen.name.clone(),
            priority: chosen.priority,
            matched: vec![],
        };
        let plan = cordon_core::plan::plan(&finding, chosen, reason);
        let step = &plan.steps[0];
        let id = target.split_once(':').map_or(target, |(_, id)| id);
        assert_eq!(step.target.label(), id, "{expected}: step `{}`", step.id);
    }
}
