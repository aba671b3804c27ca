//! AccessDenied for real: the emulator enforces IAM authorization and cordon
//! runs as a user allowed only to read. The run must stop at the first
//! mutation with a one-line error naming the permission and the resource,
//! and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use cordon_aws::client::AwsClients;
use cordon_gameday::spec::UserSpec;
use cordon_gameday::{
    EnvironmentSpec, Fixture, diff_states, provision, side_effects, snapshot_state,
};
use cordon_tests::Emulator;
use serde_json::json;

/// The compromised web server, an administrator and a responder allowed
/// only to read.
fn environment() -> EnvironmentSpec {
    let read_only = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": [
        "ec2:Describe*", "autoscaling:Describe*", "elasticloadbalancing:Describe*", "iam:Get*",
        "iam:List*", "sts:GetCallerIdentity"], "Resource": "*"}]});
    let admin = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    let user = |name: &str, policy| -> UserSpec {
        serde_json::from_value(
            json!({"name": name, "access-keys": 1, "inline-policies": {"access": policy}}),
        )
        .unwrap()
    };
    let mut spec = EnvironmentSpec::compromised_instance();
    spec.users.push(user("forensics-admin", admin));
    spec.users.push(user("read-only-responder", read_only));
    spec
}

/// (access key id, secret) of the user's key.
fn key_of(fixture: &Fixture, user: &str) -> (String, String) {
    let key = &fixture.users[user].access_keys[0];
    (key.id.clone(), key.secret.expose().to_string())
}

async fn clients_as(endpoint: &str, key: &(String, String)) -> AwsClients {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new(&key.0, &key.1, None, None, "test"))
        .load()
        .await;
    AwsClients::from_sdk_config(&config).unwrap()
}

#[tokio::test]
async fn a_read_only_identity_gets_a_clear_error_and_nothing_changes() {
    let emulator = Emulator::start().await.expect("emulator starts");
    let endpoint = emulator.endpoint();
    let root = AwsClients::from_sdk_config(&emulator.sdk_config().await).unwrap();
    let fixture = provision(&root, &environment()).await.unwrap();
    let admin = key_of(&fixture, "forensics-admin");
    let reader = key_of(&fixture, "read-only-responder");
    let admin_clients = clients_as(&endpoint, &admin).await;
    let before = snapshot_state(&root, &fixture).await.unwrap();
    let effects_before = side_effects(&root, &fixture).await.unwrap();

    let dir = std::env::temp_dir().join(format!("cordon-denied-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let finding = dir.join("finding.json");
    std::fs::write(
        &finding,
        serde_json::to_vec(&{
            let mut finding = fixture.instance_finding("web-01").unwrap();
            finding.finding_type = "Backdoor:EC2/C&CActivity.B".to_string();
            finding.detail()
        })
        .unwrap(),
    )
    .unwrap();

    emulator.enforce_auth_after(0).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["run", finding.to_str().unwrap(), "--yes"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", &reader.0)
        .env("AWS_SECRET_ACCESS_KEY", &reader.1)
        .env("CORDON_STATE_DIR", dir.join("state"))
        .env(
            "CORDON_PLAYBOOKS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../playbooks"),
        )
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // The closing line names what was denied, on which resource, and the permission to grant.
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.contains("failed"))
        .unwrap_or_default();
    // Isolation comes first, and its first mutation is the VPC's isolation group.
    assert!(last.contains("step `isolate` failed"), "{last}");
    assert!(last.contains(&fixture.vpcs["gameday"].id), "{last}");
    assert!(last.contains("grant `ec2:CreateSecurityGroup`"), "{last}");
    assert!(!stdout.contains("panicked") && !stderr.contains("panicked"));

    let after = snapshot_state(&admin_clients, &fixture).await.unwrap();
    let differences = diff_states(&before, &after);
    assert!(
        differences.is_empty(),
        "a denied run changed things: {differences:#?}"
    );
    assert_eq!(
        side_effects(&admin_clients, &fixture).await.unwrap(),
        effects_before
    );
}
