//! Every step of every shipped playbook, through its whole lifecycle
//! (pre-state, dry run, apply, verify, undo, verify-undone) against the
//! emulator, on one Game Day environment: the run a permission check needs
//! (add a call recorder) and proof that each shipped action puts back what
//! it changed.

use aws_sdk_ec2::types::Filter;
use cordon_aws::client::AwsClients;
use cordon_gameday::{Fixture, diff_states, snapshot_state};
use cordon_tests::shipped::{plan_shipped, shipped_world};
use cordon_tests::{Phase, emulator, run_every_step, shipped_playbooks};

const BUCKET: &str = "cordon-evidence-lifecycle";

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
    let world = shipped_world(clients, BUCKET, "lifecycle").await;
    let (env, actions, findings) = (&world.env, &world.actions, &world.findings);
    let before = snapshot_state(clients, env).await.expect("snapshot");

    let mut steps = 0;
    for playbook in shipped_playbooks() {
        let plan = plan_shipped(&playbook, findings);
        let reports = run_every_step(actions, &plan, Some(&clients.calls)).await;
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
        let after = snapshot_state(clients, env).await.expect("snapshot");
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
        snapshot_count(clients, env).await > 0,
        "snapshots are evidence: rollback keeps them"
    );
}
