//! `enrich-with-detective` through the real dispatch (`AwsActions` as the
//! executor calls it), with Detective answered by aws-smithy-mocks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::PathBuf;

use aws_sdk_detective::Client;
use aws_sdk_detective::operation::get_investigation::GetInvestigationOutput;
use aws_sdk_detective::operation::list_graphs::{ListGraphsError, ListGraphsOutput};
use aws_sdk_detective::operation::list_indicators::ListIndicatorsOutput;
use aws_sdk_detective::operation::list_investigations::ListInvestigationsOutput;
use aws_sdk_detective::operation::start_investigation::StartInvestigationOutput;
use aws_sdk_detective::types::{
    Graph, Indicator, IndicatorType, InvestigationDetail, Severity, State, Status,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::DateTime;
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::retry::RetryConfig;
use cordon_aws::actions::AwsActions;
use cordon_aws::evidence::EvidenceStore;
use cordon_core::executor::{Actions, ErrorKind};
use cordon_core::finding::parse_single_finding;
use cordon_core::plan::{Plan, plan};
use cordon_core::route::RouteReason;
use cordon_core::validate::validate_text;
use serde_json::Value;

const GRAPH: &str = "arn:aws:detective:us-east-1:111122223333:graph:0123456789abcdef";
const USER_ARN: &str = "arn:aws:iam::111122223333:user/deploy-bot";

const PLAYBOOK: &str = r#"
name: detective-test
description: Deactivate the key and enrich the user with Detective.
priority: 10
match:
  finding-types: ["*:IAMUser/*"]
on-failure: continue
steps:
  - id: deactivate-key
    action: deactivate-access-key
  - id: enrich
    action: enrich-with-detective
    with:
      lookback-hours: 24
      timeout-seconds: 60
"#;

/// The enrich step targets the case; the instance (and its profile) comes
/// from another step's target, as in the shipped EC2 playbooks.
const TAG_AND_ENRICH: &str = r#"
name: tag-and-enrich
description: Tag the instance, enrich its role.
priority: 10
match:
  finding-types: ["*:EC2/*"]
on-failure: continue
steps:
  - id: tag
    action: tag-resource
  - id: enrich
    action: enrich-with-detective
"#;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn plan_for(fixture: &str, playbook: &str) -> Plan {
    let text =
        std::fs::read_to_string(repo_root().join("tests/fixtures/findings").join(fixture)).unwrap();
    let finding = parse_single_finding(&text, fixture).unwrap();
    let (playbook, _) = validate_text(playbook, "test.yaml").unwrap();
    let reason = RouteReason {
        playbook: playbook.name.clone(),
        priority: playbook.priority,
        matched: Vec::new(),
    };
    plan(&finding, &playbook, reason)
}

fn evidence_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cordon-detective-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Real clients for everything but Detective, which answers from `detective`.
/// Their endpoint is a closed local port, so nothing can reach AWS by mistake.
fn actions(detective: Client, dir: PathBuf) -> AwsActions {
    actions_with_iam(detective, None, dir)
}

fn actions_with_iam(
    detective: Client,
    iam: Option<aws_sdk_iam::Client>,
    dir: PathBuf,
) -> AwsActions {
    let mut clients = common::offline_clients();
    clients.detective = detective;
    if let Some(iam) = iam {
        clients.iam = iam;
    }
    AwsActions::new(clients, EvidenceStore::LocalDir(dir))
}

fn graphs() -> Rule {
    mock!(Client::list_graphs).then_output(|| {
        ListGraphsOutput::builder()
            .graph_list(Graph::builder().arn(GRAPH).build())
            .build()
    })
}

fn no_investigations() -> Rule {
    mock!(Client::list_investigations).then_output(|| ListInvestigationsOutput::builder().build())
}

fn investigation(id: &str, status: Status) -> GetInvestigationOutput {
    GetInvestigationOutput::builder()
        .graph_arn(GRAPH)
        .investigation_id(id)
        .entity_arn(USER_ARN)
        .scope_start_time(DateTime::from_secs(1_718_000_000))
        .scope_end_time(DateTime::from_secs(1_718_200_000))
        .status(status)
        .severity(Severity::High)
        .state(State::Active)
        .build()
}

fn indicators() -> Rule {
    mock!(Client::list_indicators)
        .sequence()
        .output(|| {
            ListIndicatorsOutput::builder()
                .indicators(
                    Indicator::builder()
                        .indicator_type(IndicatorType::TtpObserved)
                        .build(),
                )
                .indicators(
                    Indicator::builder()
                        .indicator_type(IndicatorType::TtpObserved)
                        .build(),
                )
                .indicators(
                    Indicator::builder()
                        .indicator_type(IndicatorType::FlaggedIpAddress)
                        .build(),
                )
                .next_token("page-2")
                .build()
        })
        .output(|| {
            ListIndicatorsOutput::builder()
                .indicators(
                    Indicator::builder()
                        .indicator_type(IndicatorType::NewGeolocation)
                        .build(),
                )
                .build()
        })
        .build()
}

async fn run_step(
    aws: &AwsActions,
    plan: &Plan,
) -> Result<Value, cordon_core::executor::ActionError> {
    let step = plan.step("enrich").unwrap();
    let pre = aws.read_pre_state(plan, step).await?;
    let outcome = aws.apply(plan, step, &pre).await?;
    aws.verify(plan, step, &pre, &outcome).await?;
    Ok(outcome)
}

#[tokio::test]
async fn no_graph_is_a_skipped_outcome() {
    let list_graphs =
        mock!(Client::list_graphs).then_output(|| ListGraphsOutput::builder().build());
    let start = mock!(Client::start_investigation).then_output(|| {
        StartInvestigationOutput::builder()
            .investigation_id("x")
            .build()
    });
    let client = mock_client!(
        aws_sdk_detective,
        RuleMode::MatchAny,
        [&list_graphs, &start]
    );
    let aws = actions(client, evidence_dir("no-graph"));
    let plan = plan_for("iam-user-key.json", PLAYBOOK);
    let outcome = run_step(&aws, &plan).await.unwrap();
    assert_eq!(
        outcome,
        serde_json::json!({ "skipped": "no Detective behavior graph in us-east-1" })
    );
    assert_eq!(start.num_calls(), 0);
}

#[tokio::test]
async fn a_finding_without_an_iam_entity_is_skipped() {
    // An instance finding with no instance profile: nothing Detective can investigate.
    let list_graphs = graphs();
    let client = mock_client!(aws_sdk_detective, RuleMode::MatchAny, [&list_graphs]);
    let aws = actions(client, evidence_dir("no-entity"));
    let plan = plan_for("ec2-ssh-bruteforce-low.json", TAG_AND_ENRICH);
    let outcome = run_step(&aws, &plan).await.unwrap();
    let skipped = outcome["skipped"].as_str().unwrap();
    assert!(
        skipped.starts_with("Detective investigations cover IAM users and roles only"),
        "{skipped}"
    );
    assert_eq!(list_graphs.num_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn starts_polls_and_stores_indicators() {
    let list_graphs = graphs();
    let list_investigations = no_investigations();
    let start = mock!(Client::start_investigation)
        .match_requests(|req| {
            req.entity_arn() == Some(USER_ARN)
                && req.graph_arn() == Some(GRAPH)
                // first seen 2024-06-12T03:21:40Z minus 24 h
                && req.scope_start_time().map(DateTime::secs)
                    == Some(1_718_162_500 - 24 * 3600)
        })
        .then_output(|| {
            StartInvestigationOutput::builder()
                .investigation_id("inv-1")
                .build()
        });
    let get = mock!(Client::get_investigation)
        .sequence()
        .output(|| investigation("inv-1", Status::Running))
        .output(|| investigation("inv-1", Status::Successful))
        .build();
    let list_indicators = indicators();
    let client = mock_client!(
        aws_sdk_detective,
        RuleMode::MatchAny,
        [
            &list_graphs,
            &list_investigations,
            &start,
            &get,
            &list_indicators
        ]
    );
    let dir = evidence_dir("start");
    let aws = actions(client, dir.clone());
    let plan = plan_for("iam-user-key.json", PLAYBOOK);
    let outcome = run_step(&aws, &plan).await.unwrap();

    assert_eq!(start.num_calls(), 1);
    assert_eq!(get.num_calls(), 2);
    assert_eq!(list_indicators.num_calls(), 2);
    assert_eq!(outcome["investigation-id"], "inv-1");
    assert_eq!(outcome["entity-arn"], USER_ARN);
    assert_eq!(outcome["status"], "SUCCESSFUL");
    assert_eq!(outcome["severity"], "HIGH");
    assert_eq!(outcome["reused"], false);
    assert_eq!(outcome["partial"], false);
    assert_eq!(
        outcome["indicator-counts"],
        serde_json::json!({ "TTP_OBSERVED": 2, "FLAGGED_IP_ADDRESS": 1, "NEW_GEOLOCATION": 1 })
    );
    let location = outcome["evidence"]["location"].as_str().unwrap();
    assert!(location.ends_with("detective-inv-1.json"), "{location}");
    let path = dir
        .join(plan.case_id.as_str())
        .join("evidence/detective-inv-1.json");
    let stored: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(stored["indicators"].as_array().unwrap().len(), 4);
    assert_eq!(stored["investigation"]["InvestigationId"], "inv-1");
    assert!(stored["note"].as_str().unwrap().contains("48 h"));

    // Undo keeps the investigation: it is evidence.
    let step = plan.step("enrich").unwrap();
    let pre = aws.read_pre_state(&plan, step).await.unwrap();
    let undone = aws.undo(&plan, step, &pre, Some(&outcome)).await.unwrap();
    assert_eq!(undone["investigation-id"], "inv-1");
    assert_eq!(start.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_overlapping_investigation_is_reused() {
    let list_graphs = graphs();
    let list_investigations = mock!(Client::list_investigations)
        .match_requests(|req| {
            req.filter_criteria()
                .and_then(|f| f.entity_arn())
                .map(|f| f.value())
                == Some(USER_ARN)
        })
        .then_output(|| {
            ListInvestigationsOutput::builder()
                .investigation_details(
                    InvestigationDetail::builder()
                        .investigation_id("inv-old")
                        .entity_arn(USER_ARN)
                        .status(Status::Successful)
                        .created_time(DateTime::from_secs(1_718_200_000))
                        .build(),
                )
                .build()
        });
    let start = mock!(Client::start_investigation).then_output(|| {
        StartInvestigationOutput::builder()
            .investigation_id("new")
            .build()
    });
    let get = mock!(Client::get_investigation)
        .then_output(|| investigation("inv-old", Status::Successful));
    let list_indicators = indicators();
    let client = mock_client!(
        aws_sdk_detective,
        RuleMode::MatchAny,
        [
            &list_graphs,
            &list_investigations,
            &start,
            &get,
            &list_indicators
        ]
    );
    let aws = actions(client, evidence_dir("reuse"));
    let plan = plan_for("iam-user-key.json", PLAYBOOK);
    let outcome = run_step(&aws, &plan).await.unwrap();
    assert_eq!(start.num_calls(), 0);
    assert_eq!(outcome["investigation-id"], "inv-old");
    assert_eq!(outcome["reused"], true);
    assert_eq!(outcome["status"], "SUCCESSFUL");
}

#[tokio::test]
async fn throttling_is_a_retryable_error() {
    // ListGraphs models no throttling error: AWS's generic `ThrottlingException`
    // arrives unmodeled, carrying only its code.
    let list_graphs = mock!(Client::list_graphs).then_error(|| {
        ListGraphsError::generic(
            ErrorMetadata::builder()
                .code("ThrottlingException")
                .message("Rate exceeded")
                .build(),
        )
    });
    let client = mock_client!(
        aws_sdk_detective,
        RuleMode::MatchAny,
        [&list_graphs],
        |config| config.retry_config(RetryConfig::disabled())
    );
    let aws = actions(client, evidence_dir("throttled"));
    let plan = plan_for("iam-user-key.json", PLAYBOOK);
    let err = run_step(&aws, &plan).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Throttled);
    assert!(err.kind.retryable());
    assert!(err.message.contains("ListGraphs"), "{}", err.message);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_a_partial_outcome() {
    let list_graphs = graphs();
    let list_investigations = no_investigations();
    let start = mock!(Client::start_investigation).then_output(|| {
        StartInvestigationOutput::builder()
            .investigation_id("inv-slow")
            .build()
    });
    let get =
        mock!(Client::get_investigation).then_output(|| investigation("inv-slow", Status::Running));
    let list_indicators = indicators();
    let client = mock_client!(
        aws_sdk_detective,
        RuleMode::MatchAny,
        [
            &list_graphs,
            &list_investigations,
            &start,
            &get,
            &list_indicators
        ]
    );
    let dir = evidence_dir("timeout");
    let aws = actions(client, dir);
    let plan = plan_for("iam-user-key.json", PLAYBOOK);
    let outcome = run_step(&aws, &plan).await.unwrap();
    assert_eq!(outcome["investigation-id"], "inv-slow");
    assert_eq!(outcome["status"], "RUNNING");
    assert_eq!(outcome["partial"], true);
    let reason = outcome["partial-reason"].as_str().unwrap();
    assert!(reason.contains("60 s"), "{reason}");
    assert_eq!(list_indicators.num_calls(), 0);
    // 60 s at one poll per 10 s: the first read, then one after each sleep.
    assert_eq!(get.num_calls(), 7);
    assert!(outcome["evidence"]["location"].as_str().is_some());
}

#[tokio::test(start_paused = true)]
async fn an_instance_finding_investigates_the_profile_role() {
    let role = "arn:aws:iam::111122223333:role/batch-worker-role";
    let get_profile = mock!(aws_sdk_iam::Client::get_instance_profile)
        .match_requests(|req| req.instance_profile_name() == Some("batch-worker"))
        .then_output(move || {
            let when = DateTime::from_secs(1_700_000_000);
            aws_sdk_iam::operation::get_instance_profile::GetInstanceProfileOutput::builder()
                .instance_profile(
                    aws_sdk_iam::types::InstanceProfile::builder()
                        .path("/")
                        .instance_profile_name("batch-worker")
                        .instance_profile_id("AIPAEXAMPLEPROFILE002")
                        .arn("arn:aws:iam::111122223333:instance-profile/batch-worker")
                        .create_date(when)
                        .roles(
                            aws_sdk_iam::types::Role::builder()
                                .path("/")
                                .role_name("batch-worker-role")
                                .role_id("AROAEXAMPLE")
                                .arn(role)
                                .create_date(when)
                                .build()
                                .unwrap(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
        });
    let iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, [&get_profile]);
    let list_graphs = graphs();
    let list_investigations = no_investigations();
    let start = mock!(Client::start_investigation)
        .match_requests(move |req| req.entity_arn() == Some(role))
        .then_output(|| {
            StartInvestigationOutput::builder()
                .investigation_id("inv-role")
                .build()
        });
    let get = mock!(Client::get_investigation)
        .then_output(|| investigation("inv-role", Status::Successful));
    let list_indicators = indicators();
    let client = mock_client!(
        aws_sdk_detective,
        RuleMode::MatchAny,
        [
            &list_graphs,
            &list_investigations,
            &start,
            &get,
            &list_indicators
        ]
    );
    let aws = actions_with_iam(client, Some(iam), evidence_dir("profile-role"));
    let plan = plan_for("ec2-medium.json", TAG_AND_ENRICH);
    let outcome = run_step(&aws, &plan).await.unwrap();
    assert_eq!(get_profile.num_calls(), 1);
    assert_eq!(start.num_calls(), 1);
    assert_eq!(outcome["entity-arn"], role);
    assert_eq!(outcome["investigation-id"], "inv-role");
}
