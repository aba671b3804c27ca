//! One world every shipped playbook can run in: the compromised web server
//! of the fixture builder plus a user whose key leaked, an SSE-KMS evidence
//! bucket, a responders' topic, and one finding per playbook. Shared by the
//! whole-lifecycle test and the permission proof, which both run every
//! shipped step in it.

use cordon_aws::actions::AwsActions;
use cordon_aws::client::AwsClients;
use cordon_aws::evidence::EvidenceStore;
use cordon_aws::evidence_bucket::{self, DEFAULT_KMS_ALIAS};
use cordon_core::finding::{Finding, parse_single_finding};
use cordon_core::plan::{Plan, plan};
use cordon_core::playbook::Playbook;
use cordon_core::route::{RouteReason, evaluate};
use cordon_gameday::{EnvironmentSpec, Fixture, provision};
use serde_json::json;

use crate::{create_quarantine_policy, scratch_dir};

/// The temporary key of a session of the web server's role.
pub const SESSION_KEY: &str = "ASIAEXAMPLETEMPORARY";
/// The user whose long-term key leaked (with a console password).
pub const LEAKED_USER: &str = "deploy-bot";

/// The compromised web server and a user whose key leaked.
pub fn environment() -> EnvironmentSpec {
    let mut spec = EnvironmentSpec::compromised_instance();
    spec.users.push(
        serde_json::from_value(
            json!({"name": LEAKED_USER, "access-keys": 1, "console-password": true}),
        )
        .unwrap_or_else(|err| panic!("user spec: {err}")),
    );
    spec
}

/// The bucket with no public access block of its own that the Config
/// bucket rule's candidate names.
pub const OPEN_BUCKET: &str = "cordon-shipped-open-bucket";

/// A Security Hub control finding (ASFF, product `Security Hub`) that failed
/// on security group `group_id`, as text.
pub fn security_hub_group_finding(group_id: &str) -> String {
    json!({
        "SchemaVersion": "2018-10-08",
        "Id": format!("arn:aws:securityhub:us-east-1:123456789012:security-control/EC2.13/finding/{group_id}"),
        "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/securityhub",
        "ProductName": "Security Hub",
        "CompanyName": "AWS",
        "Region": "us-east-1",
        "GeneratorId": "security-control/EC2.13",
        "AwsAccountId": "123456789012",
        "Types": ["Software and Configuration Checks/Industry and Regulatory Standards"],
        "CreatedAt": "2026-11-27T10:00:00.000Z",
        "UpdatedAt": "2026-11-27T10:00:00.000Z",
        "Severity": {"Label": "HIGH", "Normalized": 70, "Original": "HIGH"},
        "Title": "Security groups should not allow ingress from 0.0.0.0/0 or ::/0 to port 22",
        "Description": "This control checks whether a security group allows SSH from anywhere.",
        "ProductFields": {"aws/securityhub/ProductName": "Security Hub", "aws/securityhub/CompanyName": "AWS"},
        "Resources": [{
            "Type": "AwsEc2SecurityGroup",
            "Id": format!("arn:aws:ec2:us-east-1:123456789012:security-group/{group_id}"),
            "Partition": "aws",
            "Region": "us-east-1",
            "Details": {"AwsEc2SecurityGroup": {"GroupId": group_id}}
        }],
        "Compliance": {"Status": "FAILED", "SecurityControlId": "EC2.13"},
        "WorkflowState": "NEW",
        "Workflow": {"Status": "NEW"},
        "RecordState": "ACTIVE"
    })
    .to_string()
}

/// Findings about the environment, one of which each shipped playbook answers.
/// `snapshot_id` is a public snapshot for the Config snapshot rule.
pub fn candidates(env: &Fixture, snapshot_id: &str) -> Vec<Finding> {
    let mut raw = Vec::new();
    for severity in [8.0, 5.0, 2.0] {
        let mut finding = env
            .instance_finding("web-01")
            .unwrap_or_else(|err| panic!("instance finding: {err}"));
        finding.severity = severity;
        raw.push(finding.detail());
    }
    raw.push(
        env.access_key_finding(LEAKED_USER)
            .unwrap_or_else(|err| panic!("key finding: {err}"))
            .detail(),
    );
    let role = &env.roles["gameday-web-role"].name;
    raw.push(
        env.key_finding(SESSION_KEY, Some(role), "AssumedRole")
            .detail(),
    );
    // The same kind of key from the user's GetSessionToken.
    raw.push(
        env.key_finding(SESSION_KEY, Some(LEAKED_USER), "IAMUser")
            .detail(),
    );
    let mut texts: Vec<String> = raw.iter().map(ToString::to_string).collect();
    // The remediations: one Config evaluation per shipped rule, and a
    // Security Hub control finding, about resources of the world.
    let web = env
        .instance("web-01")
        .unwrap_or_else(|err| panic!("web-01: {err}"));
    let group = web
        .enis
        .first()
        .and_then(|eni| eni.groups.first())
        .map(|g| g.id.clone())
        .unwrap_or_else(|| panic!("web-01 has no security group"));
    for (rule, resource_type, id) in [
        (
            "s3-bucket-level-public-access-prohibited",
            "AWS::S3::Bucket",
            OPEN_BUCKET,
        ),
        ("ec2-imdsv2-check", "AWS::EC2::Instance", web.id.as_str()),
        ("restricted-ssh", "AWS::EC2::SecurityGroup", group.as_str()),
        (
            "restricted-common-ports",
            "AWS::EC2::SecurityGroup",
            group.as_str(),
        ),
        (
            "ebs-snapshot-public-restorable-check",
            "AWS::EC2::Snapshot",
            snapshot_id,
        ),
        // The same rule's periodic evaluation of the whole account.
        (
            "ebs-snapshot-public-restorable-check",
            "AWS::::Account",
            crate::ACCOUNT_ID,
        ),
    ] {
        texts.push(crate::config_event(rule, resource_type, id));
    }
    texts.push(security_hub_group_finding(&group));
    texts
        .iter()
        .map(|f| {
            parse_single_finding(f, "candidate").unwrap_or_else(|err| panic!("finding: {err}"))
        })
        .collect()
}

/// The first candidate the playbook matches, with why.
pub fn finding_for<'a>(playbook: &Playbook, findings: &'a [Finding]) -> (&'a Finding, RouteReason) {
    findings
        .iter()
        .find_map(|f| {
            let matched = evaluate(&playbook.matcher, f).ok()?;
            let reason = RouteReason {
                playbook: playbook.name.clone(),
                priority: playbook.priority,
                matched,
            };
            Some((f, reason))
        })
        .unwrap_or_else(|| panic!("no candidate finding matches playbook {}", playbook.name))
}

/// The plan of `playbook` for the candidate it answers.
pub fn plan_shipped(playbook: &Playbook, findings: &[Finding]) -> Plan {
    let (finding, reason) = finding_for(playbook, findings);
    plan(finding, playbook, reason)
}

/// The provisioned world: the fixture, actions writing evidence to the
/// bucket, and the candidate findings.
#[derive(Debug)]
pub struct ShippedWorld {
    /// What the fixture builder made.
    pub env: Fixture,
    /// Actions on the emulator, evidence in `bucket` under `cases/`.
    pub actions: AwsActions,
    /// One finding per shipped playbook (see [`candidates`]).
    pub findings: Vec<Finding>,
}

/// Provisions [`environment`], the managed quarantine policy, an evidence bucket named `bucket` (SSE-KMS,
/// versioned) and a topic, and actions using them, with local case state in
/// a fresh scratch directory named `name`.
pub async fn shipped_world(clients: &AwsClients, bucket: &str, name: &str) -> ShippedWorld {
    shipped_world_signing(clients, bucket, name, None).await
}

/// [`shipped_world`] whose `store-evidence` signs each manifest with
/// `signing_key` (an asymmetric KMS key, [`crate::create_signing_key`]).
pub async fn shipped_world_signing(
    clients: &AwsClients,
    bucket: &str,
    name: &str,
    signing_key: Option<String>,
) -> ShippedWorld {
    let env = provision(clients, &environment())
        .await
        .unwrap_or_else(|err| panic!("provision: {err}"));
    create_quarantine_policy(clients).await;
    evidence_bucket::init(clients, bucket, DEFAULT_KMS_ALIAS, None)
        .await
        .unwrap_or_else(|err| panic!("evidence bucket: {err}"));
    let topic = clients
        .sns
        .create_topic()
        .name(format!("cordon-{name}"))
        .send()
        .await
        .unwrap_or_else(|err| panic!("CreateTopic: {err}"))
        .topic_arn()
        .unwrap_or_else(|| panic!("CreateTopic returned no ARN"))
        .to_string();
    let store = EvidenceStore::S3 {
        clients: Box::new(clients.clone()),
        bucket: bucket.to_string(),
        prefix: "cases/".to_string(),
        kms_key: None,
        retention: false,
        signing_key,
    };
    let actions = AwsActions::new(clients.clone(), store)
        .with_case_root(Some(scratch_dir(name)))
        .with_notify_topic(Some(topic));
    clients
        .s3
        .create_bucket()
        .bucket(OPEN_BUCKET)
        .send()
        .await
        .unwrap_or_else(|err| panic!("CreateBucket {OPEN_BUCKET}: {err:?}"));
    let snapshot = crate::public_snapshot(clients).await;
    let findings = candidates(&env, &snapshot);
    ShippedWorld {
        env,
        actions,
        findings,
    }
}
