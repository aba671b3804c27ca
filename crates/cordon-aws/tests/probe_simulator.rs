//! `cordon doctor`'s use of IAM's policy simulator, with IAM answered by
//! aws-smithy-mocks (the emulator has no simulator): which principal is
//! simulated for each kind of caller, and how each decision is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use aws_sdk_iam::Client;
use aws_sdk_iam::operation::get_role::GetRoleOutput;
use aws_sdk_iam::operation::simulate_principal_policy::SimulatePrincipalPolicyOutput;
use aws_sdk_iam::types::{EvaluationResult, PolicyEvaluationDecisionType, Role};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_types::DateTime;
use cordon_aws::probe::{Method, SimulatorError, Verdict, simulate, simulation_principal};

const ROLE_ARN: &str = "arn:aws:iam::111122223333:role/cordon/cordon-responder";

fn result(action: &str, decision: PolicyEvaluationDecisionType) -> EvaluationResult {
    EvaluationResult::builder()
        .eval_action_name(action)
        .eval_decision(decision)
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_assumed_role_is_simulated_as_its_role_with_its_path() {
    let get_role = mock!(Client::get_role)
        .match_requests(|req| req.role_name() == Some("cordon-responder"))
        .then_output(|| {
            GetRoleOutput::builder()
                .role(
                    Role::builder()
                        .path("/cordon/")
                        .role_name("cordon-responder")
                        .role_id("AROAEXAMPLE")
                        .arn(ROLE_ARN)
                        .create_date(DateTime::from_secs(1_700_000_000))
                        .build()
                        .unwrap(),
                )
                .build()
        });
    let mut clients = common::offline_clients();
    clients.iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, [&get_role]);
    let principal = simulation_principal(
        &clients,
        "arn:aws:sts::111122223333:assumed-role/cordon-responder/session-1",
    )
    .await
    .unwrap();
    assert_eq!(principal, ROLE_ARN);
    assert_eq!(get_role.num_calls(), 1);

    let user = "arn:aws:iam::111122223333:user/ops/responder";
    assert_eq!(simulation_principal(&clients, user).await.unwrap(), user);
    assert!(matches!(
        simulation_principal(&clients, "arn:aws:iam::111122223333:root").await,
        Err(SimulatorError::Root)
    ));
    assert!(matches!(
        simulation_principal(&clients, "arn:aws:sts::111122223333:federated-user/bob").await,
        Err(SimulatorError::UnsupportedPrincipal { .. })
    ));
    assert_eq!(
        get_role.num_calls(),
        1,
        "only the assumed role needs GetRole"
    );
}

#[tokio::test]
async fn each_decision_is_reported_and_only_allowed_passes() {
    let simulate_rule = mock!(Client::simulate_principal_policy)
        .match_requests(|req| req.policy_source_arn() == Some(ROLE_ARN))
        .then_output(|| {
            SimulatePrincipalPolicyOutput::builder()
                .evaluation_results(result("sns:Publish", PolicyEvaluationDecisionType::Allowed))
                .evaluation_results(result(
                    "iam:UpdateAccessKey",
                    PolicyEvaluationDecisionType::ImplicitDeny,
                ))
                .evaluation_results(result(
                    "s3:PutObject",
                    PolicyEvaluationDecisionType::ExplicitDeny,
                ))
                .evaluation_results(
                    EvaluationResult::builder()
                        .eval_action_name("ec2:CreateTags")
                        .eval_decision(PolicyEvaluationDecisionType::ImplicitDeny)
                        .missing_context_values("ec2:CreateAction")
                        .build()
                        .unwrap(),
                )
                .is_truncated(false)
                .build()
        });
    let mut clients = common::offline_clients();
    clients.iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, [&simulate_rule]);
    let permissions: Vec<String> = [
        "sns:Publish",
        "iam:UpdateAccessKey",
        "s3:PutObject",
        "ec2:CreateTags",
        "kms:Decrypt",
    ]
    .map(String::from)
    .to_vec();
    let probes = simulate(&clients, ROLE_ARN, &permissions).await.unwrap();
    let verdicts: Vec<(&str, &Verdict)> = probes
        .iter()
        .map(|p| (p.permission.as_str(), &p.verdict))
        .collect();
    assert_eq!(verdicts[0], ("sns:Publish", &Verdict::Allowed));
    assert!(
        matches!(verdicts[1], ("iam:UpdateAccessKey", Verdict::Denied { code, .. }) if code == "implicitDeny")
    );
    assert!(
        matches!(verdicts[2], ("s3:PutObject", Verdict::Denied { code, .. }) if code == "explicitDeny")
    );
    assert!(
        matches!(verdicts[3], ("ec2:CreateTags", Verdict::Inconclusive { answer }) if answer.contains("ec2:CreateAction"))
    );
    assert!(matches!(
        verdicts[4],
        ("kms:Decrypt", Verdict::Inconclusive { .. })
    ));
    assert!(probes.iter().all(|p| p.method == Method::Simulator));
    assert_eq!(
        simulate_rule.num_calls(),
        1,
        "one call for every permission"
    );
}
