//! GuardDuty intake against the SDK's replay client: real-shaped raw JSON
//! bodies go through the whole SDK stack, so the raw-body capture, the
//! parsing and the retry policy are exercised without any network.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::RetryConfig;
use cordon_aws::client::AwsClients;
use cordon_aws::guardduty::{IntakeError, fetch_finding, list_open_findings, triage};
use cordon_core::finding::{Resource, Wrapping};
use cordon_core::validate::load_playbooks;

const DETECTOR: &str = "5ab6c7d8e9f00112233445566778899a";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> String {
    let text =
        std::fs::read_to_string(repo_root().join("tests/fixtures/findings").join(name)).unwrap();
    text.trim().to_owned()
}

fn request(path: &str) -> HttpRequest {
    let mut request = HttpRequest::new(SdkBody::empty());
    request
        .set_uri(format!("https://guardduty.us-east-1.amazonaws.com{path}"))
        .unwrap();
    request
}

fn response(status: u16, body: String) -> HttpResponse {
    let mut response =
        HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body));
    response
        .headers_mut()
        .insert("content-type", "application/json");
    response
}

fn ok(path: &str, body: String) -> ReplayEvent {
    ReplayEvent::new(request(path), response(200, body))
}

fn throttled(path: &str) -> ReplayEvent {
    let mut response = response(
        429,
        r#"{"message":"Rate exceeded","__type":"TooManyRequestsException"}"#.to_owned(),
    );
    response
        .headers_mut()
        .insert("x-amzn-errortype", "TooManyRequestsException");
    ReplayEvent::new(request(path), response)
}

fn get_findings_path() -> String {
    format!("/detector/{DETECTOR}/findings/get")
}

/// Clients whose every request is answered, in order, by `events`; retries
/// back off by a millisecond so throttling tests stay fast.
fn clients(events: Vec<ReplayEvent>) -> (AwsClients, StaticReplayClient) {
    let replay = StaticReplayClient::new(events);
    let config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        )))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(1))
                .with_max_backoff(Duration::from_millis(2)),
        )
        .http_client(replay.clone())
        .build();
    (AwsClients::builder(&config).build().unwrap(), replay)
}

#[tokio::test]
async fn fetch_by_id_parses_the_raw_body_verbatim() {
    let finding_text = fixture("instance-two-enis.json");
    let body = format!("{{\"findings\":[{finding_text}]}}");
    let (clients, replay) = clients(vec![
        ok("/detector", format!("{{\"detectorIds\":[\"{DETECTOR}\"]}}")),
        ok(&get_findings_path(), body),
    ]);
    let finding = fetch_finding(&clients, None, "8ec6a1b2c3d4e5f60718293a4b5c6d7e")
        .await
        .unwrap();
    assert_eq!(finding.id, "8ec6a1b2c3d4e5f60718293a4b5c6d7e");
    assert_eq!(finding.finding_type.raw, "Backdoor:EC2/C&CActivity.B!DNS");
    assert_eq!(finding.severity.value(), 8.0);
    assert_eq!(finding.account_id, "111122223333");
    assert_eq!(finding.region, "us-east-1");
    assert_eq!(finding.wrapping, Wrapping::GetFindings);
    assert_eq!(finding.service.detector_id.as_deref(), Some(DETECTOR));
    assert_eq!(
        finding.service.event_first_seen.as_deref(),
        Some("2024-06-11T14:02:11.000Z")
    );
    match &finding.resource {
        Resource::Instance(instance) => {
            assert_eq!(instance.instance_id, "i-0a1b2c3d4e5f60718");
            assert_eq!(instance.network_interfaces.len(), 2);
        }
        other => panic!("expected an instance, got {other:?}"),
    }
    // The exact text GuardDuty sent for the finding: fields the SDK's typed
    // model would drop or reorder (e.g. `imageDescription`, null `outpostArn`) survive.
    assert_eq!(finding.raw, finding_text);
    let requests: Vec<String> = replay
        .actual_requests()
        .map(|r| r.uri().to_owned())
        .collect();
    assert_eq!(requests.len(), 2);
    assert!(requests[1].ends_with("/findings/get"), "{requests:?}");
}

#[tokio::test]
async fn explicit_detector_skips_list_detectors() {
    let body = format!("{{\"findings\":[{}]}}", fixture("iam-user-key.json"));
    let (clients, replay) = clients(vec![ok(&get_findings_path(), body)]);
    let finding = fetch_finding(&clients, Some(DETECTOR), "1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f")
        .await
        .unwrap();
    assert_eq!(finding.id, "1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f");
    assert_eq!(replay.actual_requests().count(), 1);
}

#[tokio::test]
async fn no_detector_is_a_clear_error() {
    let (clients, _replay) = clients(vec![ok("/detector", r#"{"detectorIds":[]}"#.to_owned())]);
    let err = fetch_finding(&clients, None, "abc").await.unwrap_err();
    assert!(matches!(err, IntakeError::NoDetector { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "GuardDuty is not enabled in us-east-1: no detector (enable GuardDuty or check the region)"
    );
}

#[tokio::test]
async fn several_detectors_ask_for_one() {
    let (clients, _replay) = clients(vec![ok(
        "/detector",
        r#"{"detectorIds":["d1","d2"]}"#.to_owned(),
    )]);
    let err = fetch_finding(&clients, None, "abc").await.unwrap_err();
    assert!(err.to_string().contains("--detector"), "{err}");
}

#[tokio::test]
async fn unknown_finding_id_is_not_found() {
    let (clients, _replay) = clients(vec![ok(
        &get_findings_path(),
        r#"{"findings":[]}"#.to_owned(),
    )]);
    let err = fetch_finding(&clients, Some(DETECTOR), "nope")
        .await
        .unwrap_err();
    assert!(
        matches!(err, IntakeError::FindingNotFound { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("nope"), "{err}");
}

#[tokio::test]
async fn access_denied_names_the_permission() {
    let mut denied = response(
        403,
        r#"{"message":"User is not authorized to perform: guardduty:GetFindings","__type":"AccessDeniedException"}"#
            .to_owned(),
    );
    denied
        .headers_mut()
        .insert("x-amzn-errortype", "AccessDeniedException");
    let (clients, _replay) = clients(vec![ReplayEvent::new(
        request(&get_findings_path()),
        denied,
    )]);
    let err = fetch_finding(&clients, Some(DETECTOR), "abc")
        .await
        .unwrap_err();
    assert!(matches!(err, IntakeError::AccessDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("guardduty:GetFindings"), "{err}");
}

#[tokio::test]
async fn throttling_then_success_is_retried() {
    let finding_text = fixture("instance-two-enis.json");
    let body = format!("{{\"findings\":[{finding_text}]}}");
    let (clients, replay) = clients(vec![
        throttled(&get_findings_path()),
        ok(&get_findings_path(), body),
    ]);
    let finding = fetch_finding(&clients, Some(DETECTOR), "8ec6a1b2c3d4e5f60718293a4b5c6d7e")
        .await
        .unwrap();
    assert_eq!(finding.raw, finding_text);
    assert_eq!(replay.actual_requests().count(), 2);
    assert_eq!(
        clients.calls.snapshot().get("GuardDuty.GetFindings"),
        Some(&2)
    );
}

#[tokio::test]
async fn persistent_throttling_is_a_clear_error() {
    let path = get_findings_path();
    let (clients, replay) = clients(vec![throttled(&path), throttled(&path), throttled(&path)]);
    let err = fetch_finding(&clients, Some(DETECTOR), "abc")
        .await
        .unwrap_err();
    assert!(matches!(err, IntakeError::Throttled { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("GuardDuty"), "{message}");
    assert!(message.contains(DETECTOR), "{message}");
    // All three configured attempts were made.
    assert_eq!(replay.actual_requests().count(), 3);
}

#[tokio::test]
async fn triage_lists_open_findings_by_severity_with_playbooks() {
    let low_first = format!(
        "{{\"findings\":[{},{}]}}",
        fixture("iam-user-key.json"),
        fixture("instance-two-enis.json")
    );
    let (clients, replay) = clients(vec![
        ok("/detector", format!("{{\"detectorIds\":[\"{DETECTOR}\"]}}")),
        ok(
            &format!("/detector/{DETECTOR}/findings"),
            r#"{"findingIds":["1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f"],"nextToken":"page2"}"#.to_owned(),
        ),
        ok(
            &format!("/detector/{DETECTOR}/findings"),
            r#"{"findingIds":["8ec6a1b2c3d4e5f60718293a4b5c6d7e"],"nextToken":""}"#.to_owned(),
        ),
        ok(&get_findings_path(), low_first),
    ]);
    let findings = list_open_findings(&clients, None, 4.0).await.unwrap();
    assert_eq!(replay.actual_requests().count(), 4);
    let ids: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "8ec6a1b2c3d4e5f60718293a4b5c6d7e",
            "1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f"
        ]
    );

    let playbooks: Vec<_> = load_playbooks(&repo_root().join("playbooks"))
        .unwrap()
        .into_iter()
        .map(|loaded| loaded.playbook)
        .collect();
    let rows = triage(&findings, &playbooks);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].severity, 8.0);
    assert_eq!(rows[0].severity_band, "high");
    assert_eq!(rows[0].resource, "i-0a1b2c3d4e5f60718");
    assert_eq!(rows[0].playbook.as_deref(), Some("ec2-compromised-high"));
    assert_eq!(rows[1].severity_band, "medium");
    assert_eq!(rows[1].resource, "AKIAEXAMPLEDEPLOY042 (deploy-bot)");
    assert_eq!(
        rows[1].playbook.as_deref(),
        Some("iam-user-key-compromised")
    );
}

#[tokio::test]
async fn list_findings_sends_the_open_and_severity_criteria() {
    let (clients, replay) = clients(vec![ok(
        &format!("/detector/{DETECTOR}/findings"),
        r#"{"findingIds":[]}"#.to_owned(),
    )]);
    let findings = list_open_findings(&clients, Some(DETECTOR), 7.0)
        .await
        .unwrap();
    assert!(findings.is_empty());
    let request = replay.actual_requests().next().unwrap();
    let body: serde_json::Value = serde_json::from_slice(request.body().bytes().unwrap()).unwrap();
    let criterion = &body["findingCriteria"]["criterion"];
    assert_eq!(criterion["service.archived"]["equals"][0], "false");
    assert_eq!(criterion["severity"]["greaterThanOrEqual"], 7);
}

// ---- --verify-source: a delivered finding re-read from GuardDuty by id.

/// The fixture finding as delivered (an EventBridge event), with `edit`
/// applied to its detail: what an attacker with `events:PutEvents` would send.
fn delivered(edit: impl FnOnce(&mut serde_json::Value)) -> cordon_core::finding::Finding {
    let mut detail: serde_json::Value =
        serde_json::from_str(&fixture("instance-two-enis.json")).unwrap();
    edit(&mut detail);
    let event = serde_json::json!({
        "version": "0", "id": "e1", "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty", "account": "111122223333", "region": "us-east-1",
        "time": "2024-06-11T14:08:31Z", "detail": detail
    });
    cordon_core::finding::parse_single_finding(&event.to_string(), "event").unwrap()
}

/// GuardDuty's answer for the fixture finding (the one real copy).
fn source_has_the_finding() -> ReplayEvent {
    ok(
        &get_findings_path(),
        format!("{{\"findings\":[{}]}}", fixture("instance-two-enis.json")),
    )
}

#[tokio::test]
async fn verified_finding_is_planned_from_guardduty_s_copy() {
    // Severity lowered in transit (to dodge a high-severity playbook): not a
    // field that identifies the finding, but the plan is made from the source.
    let received = delivered(|d| d["severity"] = serde_json::json!(2.0));
    let (clients, replay) = clients(vec![source_has_the_finding()]);
    let verified = cordon_aws::guardduty::verify_at_source(&clients, &received)
        .await
        .unwrap();
    assert_eq!(verified.finding.severity.value(), 8.0);
    assert_eq!(verified.finding.raw, fixture("instance-two-enis.json"));
    assert_eq!(
        verified.source,
        format!("GuardDuty GetFindings, detector {DETECTOR} in us-east-1")
    );
    let requests: Vec<String> = replay
        .actual_requests()
        .map(|r| r.uri().to_owned())
        .collect();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].ends_with(&get_findings_path()), "{requests:?}");
}

#[tokio::test]
async fn finding_guardduty_does_not_have_is_refused_as_forged() {
    let received = delivered(|_| {});
    let (clients, _) = clients(vec![ok(&get_findings_path(), "{\"findings\":[]}".into())]);
    let err = cordon_aws::guardduty::verify_at_source(&clients, &received)
        .await
        .unwrap_err();
    assert!(
        matches!(err, cordon_aws::guardduty::VerifyError::NotAtSource { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "finding \"8ec6a1b2c3d4e5f60718293a4b5c6d7e\" is not known to GuardDuty (detector {DETECTOR} in us-east-1): refused as forged; nothing was changed"
        )
    );
}

/// `edit` applied to the delivery makes GuardDuty's copy disagree: refused,
/// in one line that contains `expected`.
async fn refused_as_altered(edit: impl FnOnce(&mut serde_json::Value), expected: &str) {
    let received = delivered(edit);
    let (clients, _) = clients(vec![source_has_the_finding()]);
    let err = cordon_aws::guardduty::verify_at_source(&clients, &received)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, cordon_aws::guardduty::VerifyError::Mismatch(_)),
        "{err:?}"
    );
    assert!(text.contains(expected), "{text}");
    assert!(text.contains("refused as forged or altered"), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
}

#[tokio::test]
async fn tampered_type_is_refused() {
    refused_as_altered(
        |d| d["type"] = "Recon:EC2/Portscan".into(),
        "type \"Recon:EC2/Portscan\" here, \"Backdoor:EC2/C&CActivity.B!DNS\" at the source",
    )
    .await;
}

#[tokio::test]
async fn tampered_instance_id_is_refused() {
    // Same finding id, another victim: the attacker's way to isolate anything.
    refused_as_altered(
        |d| d["resource"]["instanceDetails"]["instanceId"] = "i-0fffffffffffffff0".into(),
        "instance id \"i-0fffffffffffffff0\" here, \"i-0a1b2c3d4e5f60718\" at the source",
    )
    .await;
}

#[tokio::test]
async fn malformed_or_missing_detector_is_refused_before_any_call() {
    for (edit, expected) in [
        (
            serde_json::json!("../../detector/x"),
            "service.detectorId \"../../detector/x\" is not a GuardDuty detector id",
        ),
        (serde_json::Value::Null, "names no GuardDuty detector"),
    ] {
        let received = delivered(|d| d["service"]["detectorId"] = edit);
        let (clients, replay) = clients(vec![]);
        let err = cordon_aws::guardduty::verify_at_source(&clients, &received)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
        assert_eq!(replay.actual_requests().count(), 0, "no call was made");
    }
}

fn other_fixture(path: &str) -> cordon_core::finding::Finding {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures").join(path)).unwrap();
    cordon_core::finding::parse_single_finding(&text, path).unwrap()
}

#[tokio::test]
async fn a_guardduty_finding_delivered_by_security_hub_is_verified_at_guardduty() {
    let received = other_fixture("securityhub/bare-guardduty-ec2.json");
    let (clients, replay) = clients(vec![source_has_the_finding()]);
    let verified = cordon_aws::guardduty::verify_at_source(&clients, &received)
        .await
        .unwrap();
    assert_eq!(verified.finding.id, received.id);
    assert_eq!(verified.finding.raw, fixture("instance-two-enis.json"));
    assert_eq!(replay.actual_requests().count(), 1);
}

#[tokio::test]
async fn findings_guardduty_never_had_are_refused_for_verification_before_any_call() {
    for (path, source) in [
        (
            "config/bucket-non-compliant.json",
            "came from config, not GuardDuty",
        ),
        (
            "securityhub/bare-inspector.json",
            "came from Inspector via securityhub, not GuardDuty",
        ),
    ] {
        let received = other_fixture(path);
        let (clients, replay) = clients(vec![]);
        let err = cordon_aws::guardduty::verify_at_source(&clients, &received)
            .await
            .unwrap_err();
        assert!(
            matches!(err, cordon_aws::guardduty::VerifyError::NotGuardDuty { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(source), "{err}");
        assert_eq!(replay.actual_requests().count(), 0, "no call was made");
    }
}
