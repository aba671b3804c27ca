//! The reversible remediation actions (issue 15) against the emulator: each
//! is applied, verified, undone and verified undone, and the resource is
//! compared field by field with what it was before the case.

use aws_sdk_ec2::types::{
    HttpTokensState, InstanceMetadataEndpointState, InstanceMetadataProtocolState,
    InstanceMetadataTagsState,
};
use cordon_aws::client::AwsClients;
use cordon_gameday::{EnvironmentSpec, provision as build};
use cordon_tests::{Lifecycle, emulator, local_actions, mutating, plan_steps};
use serde_json::json;

/// One instance in one subnet.
fn environment() -> EnvironmentSpec {
    serde_json::from_value(json!({
        "vpcs": [{"name": "vpc", "cidr": "10.30.0.0/16",
                  "subnets": [{"name": "subnet", "cidr": "10.30.1.0/24"}]}],
        "security-groups": [{"name": "app", "vpc": "vpc", "description": "app servers"}],
        "instances": [{"name": "app", "subnet": "subnet", "groups": ["app"],
                       "image-id": "ami-12345678"}]
    }))
    .expect("environment spec")
}

/// The instance's five metadata options, as a responder reads them.
async fn metadata_options(clients: &AwsClients, instance_id: &str) -> serde_json::Value {
    let out = clients
        .ec2
        .describe_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .expect("DescribeInstances");
    let options = out.reservations()[0].instances()[0]
        .metadata_options()
        .expect("metadata options")
        .clone();
    json!({
        "http-tokens": options.http_tokens().map(|v| v.as_str().to_string()),
        "hop-limit": options.http_put_response_hop_limit(),
        "http-endpoint": options.http_endpoint().map(|v| v.as_str().to_string()),
        "ipv6": options.http_protocol_ipv6().map(|v| v.as_str().to_string()),
        "tags": options.instance_metadata_tags().map(|v| v.as_str().to_string()),
    })
}

#[tokio::test]
async fn enforce_imdsv2_keeps_the_other_options_and_undo_restores_them_exactly() {
    let aws = emulator().await;
    let clients = aws.clients();
    let env = build(clients, &environment()).await.expect("provision");
    let instance_id = env.instances["app"].id.clone();
    // Not the defaults, so keeping and restoring them shows: a container
    // host's hop limit of 3 and tags readable from the metadata service.
    // Every option is given: the emulator resets those a call leaves out.
    clients
        .ec2
        .modify_instance_metadata_options()
        .instance_id(&instance_id)
        .http_tokens(HttpTokensState::Optional)
        .http_put_response_hop_limit(3)
        .http_endpoint(InstanceMetadataEndpointState::Enabled)
        .http_protocol_ipv6(InstanceMetadataProtocolState::Disabled)
        .instance_metadata_tags(InstanceMetadataTagsState::Enabled)
        .send()
        .await
        .expect("set-up metadata options");
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
    assert!(mutating(life.last_calls()).is_empty(), "{:?}", life.last_calls());
    life.verify_undone().await.expect("still restored");
}

#[tokio::test]
async fn enforce_imdsv2_on_an_instance_already_requiring_tokens_changes_nothing() {
    let aws = emulator().await;
    let clients = aws.clients();
    let env = build(clients, &environment()).await.expect("provision");
    let instance_id = env.instances["app"].id.clone();
    clients
        .ec2
        .modify_instance_metadata_options()
        .instance_id(&instance_id)
        .http_tokens(HttpTokensState::Required)
        .http_put_response_hop_limit(2)
        .http_endpoint(InstanceMetadataEndpointState::Enabled)
        .http_protocol_ipv6(InstanceMetadataProtocolState::Disabled)
        .instance_metadata_tags(InstanceMetadataTagsState::Disabled)
        .send()
        .await
        .expect("set-up metadata options");
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
