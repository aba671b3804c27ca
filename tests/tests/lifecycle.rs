//! Every step of every shipped playbook, through its whole lifecycle
//! (pre-state, dry run, apply, verify, undo, verify-undone) against the
//! emulator, on one Game Day environment: the run a permission check needs
//! (add a call recorder) and proof that each shipped action puts back what
//! it changed.

use aws_sdk_ec2::types::Filter;
use cordon_aws::actions::AwsActions;
use cordon_aws::client::AwsClients;
use cordon_aws::evidence::EvidenceStore;
use cordon_aws::evidence_bucket::{self, DEFAULT_KMS_ALIAS};
use cordon_core::finding::{Finding, parse_single_finding};
use cordon_core::plan::plan;
use cordon_core::playbook::Playbook;
use cordon_core::route::{RouteReason, evaluate};
use cordon_gameday::{EnvironmentSpec, Fixture, diff_states, provision, snapshot_state};
use cordon_tests::{Phase, emulator, run_every_step, scratch_dir, shipped_playbooks};
use serde_json::json;

const BUCKET: &str = "cordon-evidence-lifecycle";
/// The temporary key of a session of the web server's role.
const SESSION_KEY: &str = "ASIAEXAMPLETEMPORARY";

/// The compromised web server and a user whose key leaked.
fn environment() -> EnvironmentSpec {
    let mut spec = EnvironmentSpec::compromised_instance();
    spec.users.push(
        serde_json::from_value(json!({"name": "deploy-bot", "access-keys": 1})).expect("user spec"),
    );
    spec
}

/// Findings about the environment, one of which each shipped playbook answers.
fn candidates(env: &Fixture) -> Vec<Finding> {
    let mut raw = Vec::new();
    for severity in [8.0, 5.0, 2.0] {
        let mut finding = env.instance_finding("web-01").expect("instance finding");
        finding.severity = severity;
        raw.push(finding.detail());
    }
    raw.push(
        env.access_key_finding("deploy-bot")
            .expect("key finding")
            .detail(),
    );
    let role = &env.roles["gameday-web-role"].name;
    raw.push(
        env.key_finding(SESSION_KEY, Some(role), "AssumedRole")
            .detail(),
    );
    // The same kind of key from the user's GetSessionToken.
    raw.push(
        env.key_finding(SESSION_KEY, Some("deploy-bot"), "IAMUser")
            .detail(),
    );
    raw.iter()
        .map(|f| parse_single_finding(&f.to_string(), "candidate").expect("finding parses"))
        .collect()
}

/// The first candidate the playbook matches, with why.
fn finding_for<'a>(playbook: &Playbook, findings: &'a [Finding]) -> (&'a Finding, RouteReason) {
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

async fn snapshot_count(clients: &AwsClients, env: &Fixture) -> usize {
    let volumes: Vec<String> = env.instances["web-01"].volume_ids();
    clients
        .ec2
        .describe_snapshots()
        .filters(
            Filter::builder()
                .name("volume-id")
                .set_values(Some(volumes))
                .build(),
        )
        .send()
        .await
        .expect("DescribeSnapshots")
        .snapshots()
        .len()
}

#[tokio::test]
async fn every_step_of_every_shipped_playbook_runs_its_whole_lifecycle() {
    let aws = emulator().await;
    let clients = aws.clients();
    let env = provision(clients, &environment()).await.expect("provision");
    evidence_bucket::init(clients, BUCKET, DEFAULT_KMS_ALIAS, None)
        .await
        .expect("evidence bucket");
    let topic = clients
        .sns
        .create_topic()
        .name("cordon-lifecycle")
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn()
        .expect("topic ARN")
        .to_string();
    let store = EvidenceStore::S3 {
        clients: Box::new(clients.clone()),
        bucket: BUCKET.to_string(),
        prefix: "cases/".to_string(),
        kms_key: None,
        retention: false,
    };
    let actions = AwsActions::new(clients.clone(), store)
        .with_case_root(Some(scratch_dir("lifecycle")))
        .with_notify_topic(Some(topic));
    let findings = candidates(&env);
    let before = snapshot_state(clients, &env).await.expect("snapshot");

    let mut steps = 0;
    for playbook in shipped_playbooks() {
        let (finding, reason) = finding_for(&playbook, &findings);
        let plan = plan(finding, &playbook, reason);
        let reports = run_every_step(&actions, &plan, Some(&clients.calls)).await;
        for report in &reports {
            eprintln!(
                "{} / {} ({}): {:?}",
                playbook.name,
                report.step,
                report.action,
                report.calls()
            );
            report.assert_ok();
            let phases: Vec<Phase> = report.phases.iter().map(|p| p.phase).collect();
            assert_eq!(
                phases,
                [
                    Phase::PreState,
                    Phase::DryRun,
                    Phase::Apply,
                    Phase::Verify,
                    Phase::Undo,
                    Phase::VerifyUndone
                ],
                "{}: every phase ran",
                report.step
            );
        }
        steps += reports.len();
        let after = snapshot_state(clients, &env).await.expect("snapshot");
        let differences = diff_states(&before, &after);
        assert!(
            differences.is_empty(),
            "{}: not back at the pre-state:\n  {}",
            playbook.name,
            differences.join("\n  ")
        );
    }
    let playbook_steps: usize = shipped_playbooks().iter().map(|p| p.steps.len()).sum();
    assert_eq!(steps, playbook_steps, "every shipped step ran");
    assert!(
        snapshot_count(clients, &env).await > 0,
        "snapshots are evidence: rollback keeps them"
    );
}
