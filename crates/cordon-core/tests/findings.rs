//! Integration tests of the GuardDuty finding parser, run against the hand-written
//! fixtures in `tests/fixtures/findings/` (realistic shapes, fake ids).

use std::time::{Duration, Instant};

use cordon_core::finding::{
    Finding, FindingError, FindingType, KeyKind, MAX_INPUT_BYTES, Resource, ResourceRole, Severity,
    SeverityBand, Wrapping, parse_findings, parse_single_finding,
};
use serde_json::{Value, json};

/// Generous bound for "returns quickly" on 10 MB inputs in an unoptimised test build.
const QUICK: Duration = Duration::from_secs(10);

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/{name}",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/findings")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read fixture {path}: {e}"))
}

fn value_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("test input is not JSON: {e}"))
}

fn parse_one(text: &str) -> Finding {
    parse_single_finding(text, "test-input").unwrap_or_else(|e| panic!("parse failed: {e}"))
}

fn parse_err(text: &str) -> FindingError {
    match parse_findings(text, "bad-input.json") {
        Ok(findings) => panic!("expected an error, parsed {} finding(s)", findings.len()),
        Err(error) => error,
    }
}

/// Asserts that an error message is one line, names the input and mentions `needle`.
fn assert_message(error: &FindingError, needle: &str) {
    let message = error.to_string();
    assert!(
        message.contains(needle),
        "{message:?} does not mention {needle:?}"
    );
    assert!(!message.contains('\n'), "{message:?} is not one line");
    assert!(
        message.len() < 400,
        "message is {} bytes long",
        message.len()
    );
}

const EVENT_ID: &str = "6f4a2b1c-0d9e-4f8a-b7c6-d5e4f3a2b1c0";

/// An EventBridge event around `bare`'s exact text.
fn event_envelope(bare: &str) -> String {
    format!(
        r#"{{"version":"0","id":"{EVENT_ID}","detail-type":"GuardDuty Finding","source":"aws.guardduty","account":"111122223333","time":"2024-06-11T14:08:45Z","region":"us-east-1","resources":[],"detail":{}}}"#,
        bare.trim()
    )
}

/// A `GetFindings` response holding `bares` (their exact texts).
fn get_findings_response(bares: &[&str]) -> String {
    let items: Vec<&str> = bares.iter().map(|b| b.trim()).collect();
    format!("{{\"findings\": [\n{}\n]}}\n", items.join(",\n"))
}

/// `bare` in each of the three wrappings: (wrapping, input, the `raw` the finding must keep).
fn three_wrappings(bare: &str) -> Vec<(Wrapping, String, String)> {
    let event = event_envelope(bare);
    vec![
        (Wrapping::Bare, bare.to_string(), bare.to_string()),
        (Wrapping::EventBridge, event.clone(), event),
        (
            Wrapping::GetFindings,
            get_findings_response(&[bare]),
            bare.trim().to_string(),
        ),
    ]
}

/// Parses `bare` in every wrapping, checks what every wrapping shares, and hands each
/// finding to `check` for the kind-specific fields.
fn in_every_wrapping(bare: &str, check: impl Fn(&Finding)) {
    let bare_value = value_of(bare);
    for (wrapping, input, raw) in three_wrappings(bare) {
        let finding = parse_one(&input);
        assert_eq!(finding.wrapping, wrapping);
        assert_eq!(
            finding.raw, raw,
            "raw must be the exact text received ({wrapping:?})"
        );
        assert_eq!(value_of(&finding.raw), value_of(&raw));
        assert_eq!(
            finding.detail_json(),
            bare_value,
            "detail_json ({wrapping:?})"
        );
        let expected_event_id = (wrapping == Wrapping::EventBridge).then(|| EVENT_ID.to_string());
        assert_eq!(finding.event_id, expected_event_id);
        assert_eq!(finding.account_id, "111122223333");
        assert_eq!(finding.region, "us-east-1");
        assert_eq!(finding.partition, "aws");
        assert_eq!(finding.schema_version.as_deref(), Some("2.0"));
        assert_eq!(
            finding.arn.as_deref(),
            Some(
                format!(
                    "arn:aws:guardduty:us-east-1:111122223333:detector/5ab6c7d8e9f00112233445566778899a/finding/{}",
                    finding.id
                )
                .as_str()
            )
        );
        assert_eq!(
            finding.service.detector_id.as_deref(),
            Some("5ab6c7d8e9f00112233445566778899a")
        );
        check(&finding);
    }
}

/// A type's parts: purpose, resource type, family, mechanism, artifact.
type TypeParts<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

fn type_parts(t: &FindingType) -> TypeParts<'_> {
    (
        &t.purpose,
        &t.resource_type,
        &t.family,
        t.mechanism.as_deref(),
        t.artifact.as_deref(),
    )
}

// ---------------------------------------------------------------------------
// Each resource kind in each wrapping
// ---------------------------------------------------------------------------

#[test]
fn instance_with_two_enis_in_every_wrapping() {
    in_every_wrapping(&fixture("instance-two-enis.json"), |f| {
        assert_eq!(f.id, "8ec6a1b2c3d4e5f60718293a4b5c6d7e");
        assert_eq!(f.finding_type.raw, "Backdoor:EC2/C&CActivity.B!DNS");
        assert_eq!(f.finding_type.to_string(), "Backdoor:EC2/C&CActivity.B!DNS");
        assert_eq!(
            type_parts(&f.finding_type),
            ("Backdoor", "EC2", "C&CActivity", Some("B"), Some("DNS"))
        );
        assert_eq!(f.severity.value(), 8.0);
        assert_eq!(f.severity.band(), SeverityBand::High);
        assert_eq!(f.created_at.as_deref(), Some("2024-06-11T14:08:31.512Z"));
        assert_eq!(f.updated_at.as_deref(), Some("2024-06-11T15:53:02.104Z"));
        assert!(
            f.title
                .as_deref()
                .is_some_and(|t| t.contains("i-0a1b2c3d4e5f60718"))
        );
        assert!(f.description.is_some());

        assert_eq!(f.resource.resource_type(), "Instance");
        let Resource::Instance(instance) = &f.resource else {
            panic!("expected an instance resource, got {:?}", f.resource);
        };
        assert_eq!(instance.instance_id, "i-0a1b2c3d4e5f60718");
        assert_eq!(instance.instance_type.as_deref(), Some("m5.large"));
        assert_eq!(instance.image_id.as_deref(), Some("ami-0a1b2c3d4e5f60741"));
        assert_eq!(instance.availability_zone.as_deref(), Some("us-east-1a"));
        assert_eq!(instance.instance_state.as_deref(), Some("running"));
        assert_eq!(
            instance.launch_time.as_deref(),
            Some("2024-05-02T09:14:27.000Z")
        );
        let profile = instance
            .iam_instance_profile
            .as_ref()
            .expect("instance profile");
        assert_eq!(
            profile.arn.as_deref(),
            Some("arn:aws:iam::111122223333:instance-profile/web-app-profile")
        );
        assert_eq!(profile.id.as_deref(), Some("AIPAEXAMPLEPROFILE001"));
        let tags: Vec<(&str, &str)> = instance
            .tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect();
        assert_eq!(
            tags,
            [
                ("Name", "web-01"),
                ("Environment", "production"),
                ("aws:autoscaling:groupName", "web-asg")
            ]
        );

        // Two ENIs in one VPC, each with its own security groups.
        let enis = &instance.network_interfaces;
        assert_eq!(enis.len(), 2);
        let groups = |i: usize| -> Vec<&str> {
            enis[i]
                .security_groups
                .iter()
                .map(|g| g.group_id.as_str())
                .collect()
        };
        assert_eq!(enis[0].network_interface_id, "eni-0a1b2c3d4e5f60711");
        assert_eq!(groups(0), ["sg-0a1b2c3d4e5f60701", "sg-0a1b2c3d4e5f60702"]);
        assert_eq!(
            enis[0].security_groups[1].group_name.as_deref(),
            Some("bastion-ssh-access")
        );
        assert_eq!(enis[0].private_ip_address.as_deref(), Some("10.0.1.25"));
        assert_eq!(enis[0].public_ip.as_deref(), Some("198.51.100.25"));
        assert_eq!(
            enis[0].subnet_id.as_deref(),
            Some("subnet-0a1b2c3d4e5f60721")
        );
        assert_eq!(enis[1].network_interface_id, "eni-0f1e2d3c4b5a69788");
        assert_eq!(groups(1), ["sg-0f1e2d3c4b5a69703"]);
        assert_eq!(enis[1].private_ip_address.as_deref(), Some("10.0.2.40"));
        assert_eq!(enis[1].public_ip, None);
        assert_eq!(
            enis[1].subnet_id.as_deref(),
            Some("subnet-0f1e2d3c4b5a69722")
        );
        assert_eq!(enis[0].vpc_id, enis[1].vpc_id);
        assert_eq!(enis[0].vpc_id.as_deref(), Some("vpc-0a1b2c3d4e5f60731"));

        let s = &f.service;
        assert_eq!(s.action_type.as_deref(), Some("DNS_REQUEST"));
        assert_eq!(s.resource_role, Some(ResourceRole::Actor));
        assert_eq!(
            s.event_first_seen.as_deref(),
            Some("2024-06-11T14:02:11.000Z")
        );
        assert_eq!(
            s.event_last_seen.as_deref(),
            Some("2024-06-11T15:47:53.000Z")
        );
        assert_eq!(s.count, Some(14));
        assert!(!s.archived);
        assert!(!s.sample);
        assert!(!f.is_sample());
    });
}

#[test]
fn iam_user_key_in_every_wrapping() {
    in_every_wrapping(&fixture("iam-user-key.json"), |f| {
        assert_eq!(f.id, "1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f");
        assert_eq!(
            type_parts(&f.finding_type),
            (
                "UnauthorizedAccess",
                "IAMUser",
                "MaliciousIPCaller",
                None,
                None
            )
        );
        assert_eq!(f.severity.value(), 5.0);
        assert_eq!(f.severity.band(), SeverityBand::Medium);
        assert_eq!(f.resource.resource_type(), "AccessKey");
        let Resource::AccessKey(key) = &f.resource else {
            panic!("expected an access key resource, got {:?}", f.resource);
        };
        assert_eq!(key.access_key_id, "AKIAEXAMPLEDEPLOY042");
        assert_eq!(key.key_kind(), KeyKind::LongTerm);
        assert_eq!(key.user_type.as_deref(), Some("IAMUser"));
        assert_eq!(key.user_name.as_deref(), Some("deploy-bot"));
        assert_eq!(key.principal_id.as_deref(), Some("AIDAEXAMPLEUSERID0042"));
        let s = &f.service;
        assert_eq!(s.action_type.as_deref(), Some("AWS_API_CALL"));
        assert_eq!(s.resource_role, Some(ResourceRole::Target));
        assert_eq!(
            s.event_first_seen.as_deref(),
            Some("2024-06-12T03:21:40.000Z")
        );
        assert_eq!(
            s.event_last_seen.as_deref(),
            Some("2024-06-12T03:44:09.000Z")
        );
        assert_eq!(s.count, Some(3));
        assert!(!s.archived);
        assert!(!s.sample);
    });
}

#[test]
fn assumed_role_key_in_every_wrapping() {
    in_every_wrapping(&fixture("assumed-role-key.json"), |f| {
        assert_eq!(f.id, "2a3b4c5d6e7f8091a2b3c4d5e6f70812");
        assert_eq!(
            type_parts(&f.finding_type),
            (
                "UnauthorizedAccess",
                "IAMUser",
                "InstanceCredentialExfiltration",
                Some("OutsideAWS"),
                None
            )
        );
        assert_eq!(f.severity.band(), SeverityBand::High);
        let Resource::AccessKey(key) = &f.resource else {
            panic!("expected an access key resource, got {:?}", f.resource);
        };
        assert_eq!(key.access_key_id, "ASIAEXAMPLETEMP00817");
        assert_eq!(key.key_kind(), KeyKind::Temporary);
        assert_eq!(key.user_type.as_deref(), Some("AssumedRole"));
        assert_eq!(key.user_name.as_deref(), Some("web-app-role"));
        assert_eq!(
            key.principal_id.as_deref(),
            Some("AROAEXAMPLEROLEID0077:i-0a1b2c3d4e5f60718")
        );
        let s = &f.service;
        assert_eq!(s.resource_role, Some(ResourceRole::Target));
        assert_eq!(
            s.event_first_seen.as_deref(),
            Some("2024-06-11T16:05:02.000Z")
        );
        assert_eq!(
            s.event_last_seen.as_deref(),
            Some("2024-06-11T16:31:48.000Z")
        );
        assert_eq!(s.count, Some(27));
        assert!(!s.archived);
        assert!(!s.sample);
    });
}

#[test]
fn s3_bucket_in_every_wrapping() {
    in_every_wrapping(&fixture("s3-bucket.json"), |f| {
        assert_eq!(f.id, "3f4e5d6c7b8a99887766554433221100");
        assert_eq!(
            type_parts(&f.finding_type),
            (
                "Policy",
                "S3",
                "BucketBlockPublicAccessDisabled",
                None,
                None
            )
        );
        assert_eq!(f.severity.band(), SeverityBand::Low);
        assert_eq!(f.resource.resource_type(), "S3Bucket");
        assert_eq!(
            f.resource,
            Resource::S3Bucket {
                bucket_names: vec!["acme-customer-exports-111122223333".to_string()]
            }
        );
        let s = &f.service;
        assert_eq!(s.action_type.as_deref(), Some("AWS_API_CALL"));
        assert_eq!(s.resource_role, Some(ResourceRole::Target));
        assert_eq!(
            s.event_first_seen.as_deref(),
            Some("2024-06-13T08:15:44.000Z")
        );
        assert_eq!(s.event_last_seen, s.event_first_seen);
        assert_eq!(s.count, Some(1));
        assert!(!s.archived);
        assert!(!s.sample);
    });
}

#[test]
fn unknown_resource_kind_in_every_wrapping() {
    in_every_wrapping(&fixture("unknown-kind.json"), |f| {
        assert_eq!(f.id, "4d5e6f708192a3b4c5d6e7f801928374");
        assert_eq!(
            type_parts(&f.finding_type),
            ("Discovery", "Kubernetes", "MaliciousIPCaller", None, None)
        );
        assert_eq!(f.severity.band(), SeverityBand::Medium);
        assert_eq!(
            f.resource,
            Resource::Other {
                resource_type: "EKSCluster".to_string()
            }
        );
        assert_eq!(f.resource.resource_type(), "EKSCluster");
        let s = &f.service;
        assert_eq!(s.action_type.as_deref(), Some("KUBERNETES_API_CALL"));
        assert_eq!(s.resource_role, Some(ResourceRole::Target));
        assert_eq!(
            s.event_first_seen.as_deref(),
            Some("2024-06-14T21:09:33.000Z")
        );
        assert_eq!(
            s.event_last_seen.as_deref(),
            Some("2024-06-14T21:10:02.000Z")
        );
        assert_eq!(s.count, Some(2));
        assert!(!s.archived);
        assert!(!s.sample);
        // The unknown details survive in the raw text and the detail JSON.
        assert_eq!(
            f.detail_json()["resource"]["eksClusterDetails"]["name"],
            "payments-prod"
        );
    });
}

#[test]
fn a_kind_guardduty_adds_tomorrow_is_kept_not_rejected() {
    let mut value = value_of(&fixture("unknown-kind.json"));
    value["resource"] = json!({
        "resourceType": "QuantumWidget",
        "quantumWidgetDetails": {"widgetId": "qw-0123", "spins": [1, 2, null]}
    });
    let f = parse_one(&value.to_string());
    assert_eq!(f.resource.resource_type(), "QuantumWidget");
}

#[test]
fn s3_object_findings_keep_their_own_resource_type() {
    let mut value = value_of(&fixture("s3-bucket.json"));
    value["type"] = json!("Object:S3/MaliciousFile");
    value["resource"]["resourceType"] = json!("S3Object");
    let f = parse_one(&value.to_string());
    assert_eq!(f.resource.resource_type(), "S3Object");
    assert!(!matches!(f.resource, Resource::S3Bucket { .. }));
}

// ---------------------------------------------------------------------------
// The other EC2 fixtures
// ---------------------------------------------------------------------------

#[test]
fn ec2_fixtures_bands_and_roles() {
    let cases = [
        (
            "ec2-ssh-bruteforce-low.json",
            "UnauthorizedAccess:EC2/SSHBruteForce",
            2.0,
            SeverityBand::Low,
            ResourceRole::Target,
            "i-0b2c3d4e5f6071829",
        ),
        (
            "ec2-medium.json",
            "Recon:EC2/Portscan",
            5.0,
            SeverityBand::Medium,
            ResourceRole::Actor,
            "i-0c3d4e5f60718293a",
        ),
        (
            "instance-two-enis.json",
            "Backdoor:EC2/C&CActivity.B!DNS",
            8.0,
            SeverityBand::High,
            ResourceRole::Actor,
            "i-0a1b2c3d4e5f60718",
        ),
        (
            "ec2-critical-attack-sequence.json",
            "AttackSequence:EC2/CompromisedInstanceGroup",
            9.5,
            SeverityBand::Critical,
            ResourceRole::Target,
            "i-0d4e5f60718293a4b",
        ),
    ];
    for (file, finding_type, severity, band, role, instance_id) in cases {
        let f = parse_one(&fixture(file));
        assert_eq!(f.finding_type.raw, finding_type, "{file}");
        assert_eq!(f.severity.value(), severity, "{file}");
        assert_eq!(f.severity.band(), band, "{file}");
        assert_eq!(f.service.resource_role, Some(role), "{file}");
        let Resource::Instance(instance) = &f.resource else {
            panic!("{file}: expected an instance resource");
        };
        assert_eq!(instance.instance_id, instance_id, "{file}");
    }
    let medium = parse_one(&fixture("ec2-medium.json"));
    assert_eq!(
        type_parts(&medium.finding_type),
        ("Recon", "EC2", "Portscan", None, None)
    );
    assert!(medium.service.archived, "ec2-medium is archived");
    let critical = parse_one(&fixture("ec2-critical-attack-sequence.json"));
    assert_eq!(
        critical.service.action_type, None,
        "attack sequences have no action"
    );
}

#[test]
fn sample_findings_are_flagged() {
    let f = parse_one(&fixture("sample-finding.json"));
    assert!(f.service.sample);
    assert!(f.is_sample());
    assert_eq!(f.finding_type.raw, "UnauthorizedAccess:EC2/TorClient");

    // The API puts the flag in JSON text under `value`; older events put it inline.
    let mut value = value_of(&fixture("instance-two-enis.json"));
    for (info, expected) in [
        (
            json!({"value": "{\"sample\":true}", "type": "default"}),
            true,
        ),
        (
            json!({"value": "{\"sample\":false}", "type": "default"}),
            false,
        ),
        (json!({"sample": true}), true),
        (json!({"sample": "true"}), true),
        (json!({"sample": false}), false),
        (json!({"value": "not json", "type": "default"}), false),
        (json!({"value": "{}", "type": "default"}), false),
        (json!(null), false),
    ] {
        value["service"]["additionalInfo"] = info.clone();
        assert_eq!(
            parse_one(&value.to_string()).service.sample,
            expected,
            "additionalInfo {info}"
        );
    }
}

// ---------------------------------------------------------------------------
// Arrays, JSON lines, concatenated documents
// ---------------------------------------------------------------------------

#[test]
fn json_array_of_findings() {
    let text = fixture("findings-array.json");
    let findings = parse_findings(&text, "findings-array.json").expect("array parses");
    let ids: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f",
            "6f708192a3b4c5d6e7f8019283746556",
            "3f4e5d6c7b8a99887766554433221100"
        ]
    );
    let wrappings: Vec<Wrapping> = findings.iter().map(|f| f.wrapping).collect();
    assert_eq!(
        wrappings,
        [Wrapping::Bare, Wrapping::Bare, Wrapping::EventBridge]
    );
    let array = value_of(&text);
    for (i, f) in findings.iter().enumerate() {
        assert_eq!(value_of(&f.raw), array[i], "element {i} round-trips");
    }
    assert_eq!(
        findings[0].detail_json(),
        value_of(&fixture("iam-user-key.json"))
    );
    assert_eq!(
        findings[2].detail_json(),
        value_of(&fixture("s3-bucket.json"))
    );
    assert!(findings[2].event_id.is_some());
}

#[test]
fn array_elements_keep_their_exact_text() {
    let a = fixture("iam-user-key.json");
    let b = event_envelope(&fixture("s3-bucket.json"));
    let c = fixture("ec2-medium.json");
    let text = format!("[\n  {},\n{}  ,  {}\n]\n", a.trim(), b, c.trim());
    let findings = parse_findings(&text, "array").expect("array parses");
    let raws: Vec<&str> = findings.iter().map(|f| f.raw.as_str()).collect();
    assert_eq!(raws, [a.trim(), b.as_str(), c.trim()]);
}

#[test]
fn json_lines_of_findings() {
    let text = fixture("findings.jsonl");
    let findings = parse_findings(&text, "findings.jsonl").expect("JSON lines parse");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(findings.len(), lines.len());
    assert_eq!(findings.len(), 4);
    for (f, line) in findings.iter().zip(&lines) {
        assert_eq!(f.raw, *line, "each finding keeps its line verbatim");
    }
    let ids: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "5e6f708192a3b4c5d6e7f80192837465",
            "8192a3b4c5d6e7f80192837465564738",
            "2a3b4c5d6e7f8091a2b3c4d5e6f70812",
            "4d5e6f708192a3b4c5d6e7f801928374"
        ]
    );
    assert_eq!(findings[2].wrapping, Wrapping::EventBridge);
    assert!(findings[1].is_sample());
    assert_eq!(findings[3].resource.resource_type(), "EKSCluster");

    // CRLF line ends and blank lines are fine too.
    let crlf = format!("\r\n{}\r\n\r\n", lines.join("\r\n"));
    assert_eq!(
        parse_findings(&crlf, "crlf.jsonl")
            .expect("CRLF lines")
            .len(),
        4
    );
}

#[test]
fn json_lines_error_names_the_bad_line() {
    let text = fixture("findings.jsonl");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[2] = "{\"id\": oops}".to_string();
    let error = parse_err(&lines.join("\n"));
    assert!(matches!(error, FindingError::NotJson { .. }), "{error:?}");
    assert_message(&error, "line 3");

    // A line that is JSON but not a finding is reported by its line number.
    lines[2] = r#"{"hello": 1}"#.to_string();
    let error = parse_err(&lines.join("\n"));
    assert!(
        matches!(error, FindingError::NotAFinding { .. }),
        "{error:?}"
    );
    assert_message(&error, "bad-input.json:3");
}

#[test]
fn concatenated_pretty_documents_like_jq_prints() {
    let a = fixture("instance-two-enis.json");
    let b = fixture("iam-user-key.json");
    let findings = parse_findings(&format!("{a}{b}"), "jq-output").expect("concatenated documents");
    let raws: Vec<&str> = findings.iter().map(|f| f.raw.as_str()).collect();
    assert_eq!(raws, [a.trim(), b.trim()]);
}

#[test]
fn get_findings_response_with_several_findings() {
    let a = fixture("iam-user-key.json");
    let b = fixture("unknown-kind.json");
    let text = get_findings_response(&[&a, &b]);
    let findings = parse_findings(&text, "get-findings.json").expect("response parses");
    assert_eq!(findings.len(), 2);
    assert!(findings.iter().all(|f| f.wrapping == Wrapping::GetFindings));
    assert_eq!(findings[0].raw, a.trim());
    assert_eq!(findings[1].raw, b.trim());
    // parse_single_finding refuses more than one.
    let error = parse_single_finding(&text, "get-findings.json").expect_err("two findings");
    assert!(matches!(error, FindingError::NotAFinding { .. }));
    assert_message(&error, "holds 2 findings");
}

// ---------------------------------------------------------------------------
// Leniency
// ---------------------------------------------------------------------------

#[test]
fn lenient_fixture_with_strings_for_numbers_nulls_and_unknown_fields() {
    let text = fixture("lenient-instance.json");
    let f = parse_one(&text);
    assert_eq!(f.raw, text);
    assert_eq!(
        f.severity.value(),
        8.0,
        "severity given as the string \"8.0\""
    );
    assert_eq!(f.severity.band(), SeverityBand::High);
    assert_eq!(
        type_parts(&f.finding_type),
        (
            "CryptoCurrency",
            "EC2",
            "BitcoinTool",
            Some("B"),
            Some("DNS")
        )
    );
    let Resource::Instance(instance) = &f.resource else {
        panic!("expected an instance resource");
    };
    assert_eq!(
        instance.launch_time.as_deref(),
        Some("1717398000000"),
        "epoch millis"
    );
    let profile = instance.iam_instance_profile.as_ref().expect("profile");
    assert_eq!(profile.id, None, "null id");
    let tags: Vec<(&str, &str)> = instance
        .tags
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    assert_eq!(
        tags,
        [
            ("Name", "ml-train-2"),
            ("CostCenter", "4711"),
            ("Owner", "")
        ]
    );
    assert_eq!(instance.network_interfaces.len(), 2);
    assert_eq!(instance.network_interfaces[0].public_ip, None);
    assert_eq!(
        instance.network_interfaces[0].security_groups[0].group_id,
        "sg-0e5f60718293a4b07"
    );
    assert!(
        instance.network_interfaces[1].security_groups.is_empty(),
        "null securityGroups"
    );
    assert_eq!(f.service.count, Some(6), "count given as a string");
    assert!(
        !f.service.archived,
        "archived given as the string \"false\""
    );
    assert_eq!(
        f.service.resource_role,
        Some(ResourceRole::Actor),
        "lower-case role"
    );
    assert!(!f.service.sample);

    let low = parse_one(&fixture("ec2-ssh-bruteforce-low.json"));
    let Resource::Instance(instance) = &low.resource else {
        panic!("expected an instance resource");
    };
    assert_eq!(instance.launch_time.as_deref(), Some("1714640067000"));
    assert!(instance.tags.is_empty(), "null tags");
    assert_eq!(instance.iam_instance_profile, None, "null profile");
    assert_eq!(low.service.count, Some(212), "count \"212\"");
}

/// `instance-two-enis.json` with one change applied.
fn variant(change: impl FnOnce(&mut Value)) -> String {
    let mut value = value_of(&fixture("instance-two-enis.json"));
    change(&mut value);
    value.to_string()
}

fn instance_of(f: &Finding) -> &cordon_core::finding::InstanceDetails {
    match &f.resource {
        Resource::Instance(instance) => instance,
        other => panic!("expected an instance resource, got {other:?}"),
    }
}

#[test]
fn lenient_scalars() {
    for (severity, expected) in [
        (json!("8.0"), 8.0),
        (json!(" 7.5 "), 7.5),
        (json!(8), 8.0),
        (json!(1), 1.0),
        (json!("10"), 10.0),
    ] {
        let f = parse_one(&variant(|v| v["severity"] = severity.clone()));
        assert_eq!(f.severity.value(), expected, "severity {severity}");
    }
    for (launch, expected) in [
        (json!(1714640067000_u64), "1714640067000"),
        (
            json!("2024-05-02T09:14:27.000Z"),
            "2024-05-02T09:14:27.000Z",
        ),
        (json!(null), ""),
    ] {
        let f = parse_one(&variant(|v| {
            v["resource"]["instanceDetails"]["launchTime"] = launch.clone();
        }));
        assert_eq!(
            instance_of(&f).launch_time.as_deref().unwrap_or(""),
            expected,
            "launchTime {launch}"
        );
    }
    for (count, expected) in [
        (json!("14"), Some(14)),
        (json!(14.0), Some(14)),
        (json!(" 3 "), Some(3)),
        (json!(null), None),
        (json!(-1), None),
        (json!("many"), None),
    ] {
        let f = parse_one(&variant(|v| v["service"]["count"] = count.clone()));
        assert_eq!(f.service.count, expected, "count {count}");
    }
    for (archived, expected) in [
        (json!(true), true),
        (json!("true"), true),
        (json!("FALSE"), false),
        (json!(null), false),
    ] {
        let f = parse_one(&variant(|v| v["service"]["archived"] = archived.clone()));
        assert_eq!(f.service.archived, expected, "archived {archived}");
    }
    // Numbers where text is expected.
    let f = parse_one(&variant(|v| {
        v["resource"]["instanceDetails"]["tags"][0]["value"] = json!(42);
        v["resource"]["instanceDetails"]["instanceType"] = json!(7);
    }));
    assert_eq!(instance_of(&f).tags[0].value, "42");
    assert_eq!(instance_of(&f).instance_type.as_deref(), Some("7"));
}

#[test]
fn null_lists_read_as_empty() {
    let f = parse_one(&variant(|v| {
        let details = &mut v["resource"]["instanceDetails"];
        details["tags"] = Value::Null;
        details["productCodes"] = Value::Null;
        details["networkInterfaces"][0]["securityGroups"] = Value::Null;
        details["networkInterfaces"][0]["ipv6Addresses"] = Value::Null;
        details["networkInterfaces"][1]["privateIpAddresses"] = Value::Null;
    }));
    let instance = instance_of(&f);
    assert!(instance.tags.is_empty());
    assert!(instance.network_interfaces[0].security_groups.is_empty());
    assert_eq!(instance.network_interfaces[1].security_groups.len(), 1);

    let f = parse_one(&variant(|v| {
        v["resource"]["instanceDetails"]["networkInterfaces"] = Value::Null;
    }));
    assert!(instance_of(&f).network_interfaces.is_empty());

    let mut s3 = value_of(&fixture("s3-bucket.json"));
    s3["resource"]["s3BucketDetails"] = Value::Null;
    let f = parse_one(&s3.to_string());
    assert_eq!(
        f.resource,
        Resource::S3Bucket {
            bucket_names: vec![]
        }
    );
}

#[test]
fn unknown_fields_at_every_level_are_ignored_and_kept_in_raw() {
    let input = variant(|v| {
        v["futureTop"] = json!({"a": [1, 2, 3]});
        v["resource"]["futureResource"] = json!("x");
        v["resource"]["instanceDetails"]["futureDetails"] = json!(null);
        v["resource"]["instanceDetails"]["networkInterfaces"][0]["futureEni"] = json!(1);
        v["resource"]["instanceDetails"]["networkInterfaces"][0]["securityGroups"][0]["futureSg"] =
            json!(true);
        v["resource"]["instanceDetails"]["tags"][0]["futureTag"] = json!([]);
        v["resource"]["instanceDetails"]["iamInstanceProfile"]["futureProfile"] = json!({});
        v["service"]["futureService"] = json!(2.5);
        v["service"]["action"]["futureAction"] = json!("y");
        v["service"]["additionalInfo"]["futureInfo"] = json!("z");
    });
    let f = parse_one(&input);
    let reference = parse_one(&fixture("instance-two-enis.json"));
    assert_eq!(f.resource, reference.resource);
    assert_eq!(f.service, reference.service);
    assert_eq!(f.raw, input);
    assert_eq!(f.detail_json()["futureTop"], json!({"a": [1, 2, 3]}));
}

#[test]
fn pascal_case_as_the_sdk_serialises() {
    let text = fixture("pascal-case-get-findings.json");
    let f = parse_one(&text);
    assert_eq!(f.wrapping, Wrapping::GetFindings);
    assert_eq!(f.id, "a3b4c5d6e7f801928374655647382910");
    assert_eq!(f.account_id, "111122223333");
    assert_eq!(f.region, "us-east-1");
    assert_eq!(f.finding_type.raw, "UnauthorizedAccess:IAMUser/TorIPCaller");
    assert_eq!(f.severity.band(), SeverityBand::Medium);
    let Resource::AccessKey(key) = &f.resource else {
        panic!("expected an access key resource, got {:?}", f.resource);
    };
    assert_eq!(key.access_key_id, "AKIAEXAMPLEREPORTS07");
    assert_eq!(key.key_kind(), KeyKind::LongTerm);
    assert_eq!(key.user_name.as_deref(), Some("reports-service"));
    assert_eq!(key.user_type.as_deref(), Some("IAMUser"));
    assert_eq!(f.service.action_type.as_deref(), Some("AWS_API_CALL"));
    assert_eq!(f.service.resource_role, Some(ResourceRole::Target));
    assert_eq!(f.service.count, Some(4));
    assert!(!f.service.sample);
    assert_eq!(value_of(&f.raw), value_of(&text)["Findings"][0]);

    // PascalCase instance details inside an EventBridge event (seen in the wild).
    let detail = json!({
        "AccountId": "111122223333", "Region": "us-east-1", "Id": "b4c5d6e7f80192837465564738291a0b",
        "Type": "Recon:EC2/Portscan", "Severity": 5,
        "Resource": {"ResourceType": "Instance", "InstanceDetails": {
            "InstanceId": "i-0c3d4e5f60718293a",
            "NetworkInterfaces": [{"NetworkInterfaceId": "eni-0c3d4e5f60718293b",
                "SecurityGroups": [{"GroupId": "sg-0c3d4e5f607182905", "GroupName": "batch-workers"}],
                "VpcId": "vpc-0a1b2c3d4e5f60731"}],
            "Tags": [{"Key": "Name", "Value": "batch-worker-3"}]}},
        "Service": {"ResourceRole": "ACTOR", "Count": 5, "Archived": false}
    });
    let f = parse_one(&event_envelope(&detail.to_string()));
    let instance = instance_of(&f);
    assert_eq!(instance.instance_id, "i-0c3d4e5f60718293a");
    assert_eq!(
        instance.network_interfaces[0].security_groups[0].group_id,
        "sg-0c3d4e5f607182905"
    );
    assert_eq!(instance.tags[0].value, "batch-worker-3");
    assert_eq!(f.service.resource_role, Some(ResourceRole::Actor));
}

#[test]
fn one_pascal_case_key_deep_in_camel_case_details_is_read_like_the_rest() {
    // Details whose keys are all camelCase are read as they are; one
    // PascalCase key anywhere (here inside the second ENI of the array) must
    // still send the whole object through the key normalisation.
    let text = fixture("instance-two-enis.json");
    let camel = parse_one(&text);
    let mut mixed = value_of(&text);
    let details = if mixed.get("detail").is_some() {
        &mut mixed["detail"]["resource"]["instanceDetails"]
    } else {
        &mut mixed["resource"]["instanceDetails"]
    };
    let second = details["networkInterfaces"][1]
        .as_object_mut()
        .expect("a second ENI");
    let id = second.remove("networkInterfaceId").expect("the ENI's id");
    second.insert("NetworkInterfaceId".to_string(), id);
    let mixed = parse_one(&mixed.to_string());
    assert_eq!(instance_of(&mixed), instance_of(&camel));
}

#[test]
fn event_envelope_supplies_missing_account_and_region() {
    let mut detail = value_of(&fixture("iam-user-key.json"));
    let object = detail.as_object_mut().expect("object");
    object.remove("accountId");
    object.remove("region");
    let event = event_envelope(&detail.to_string());
    let f = parse_one(&event);
    assert_eq!(f.account_id, "111122223333");
    assert_eq!(f.region, "us-east-1");
    // Without an envelope they are required.
    let error = parse_err(&detail.to_string());
    assert!(matches!(error, FindingError::Invalid { .. }), "{error:?}");
    assert_message(&error, "`accountId` is missing");
}

#[test]
fn byte_order_mark_and_surrounding_whitespace() {
    let bare = fixture("iam-user-key.json");
    let f = parse_one(&format!("\u{feff}{bare}"));
    assert_eq!(f.raw, bare, "the BOM is dropped, nothing else");
    let padded = format!("\n\n  {bare}\n\n");
    assert_eq!(parse_one(&padded).raw, padded);
}

// ---------------------------------------------------------------------------
// Round trip
// ---------------------------------------------------------------------------

#[test]
fn raw_is_the_exact_input_for_every_single_document_fixture() {
    for name in [
        "instance-two-enis.json",
        "iam-user-key.json",
        "assumed-role-key.json",
        "s3-bucket.json",
        "unknown-kind.json",
        "ec2-ssh-bruteforce-low.json",
        "ec2-medium.json",
        "ec2-critical-attack-sequence.json",
        "sample-finding.json",
        "lenient-instance.json",
        "event-ec2-high.json",
    ] {
        let text = fixture(name);
        let f = parse_one(&text);
        assert_eq!(f.raw, text, "{name}: raw is the exact input");
        let reparsed: Value = serde_json::from_str(&f.raw).expect("raw is JSON");
        assert_eq!(
            reparsed,
            value_of(&text),
            "{name}: raw parses to the input value"
        );
    }
}

#[test]
fn readme_event_wraps_the_two_eni_finding() {
    let event_text = fixture("event-ec2-high.json");
    let f = parse_one(&event_text);
    assert_eq!(f.wrapping, Wrapping::EventBridge);
    assert_eq!(f.raw, event_text, "raw is the whole event");
    assert_eq!(
        f.event_id.as_deref(),
        Some("c8a7b6e5-d4c3-4b2a-9f8e-7d6c5b4a3921")
    );
    assert_eq!(
        f.detail_json(),
        value_of(&fixture("instance-two-enis.json"))
    );
    let bare = parse_one(&fixture("instance-two-enis.json"));
    assert_eq!(f.id, bare.id);
    assert_eq!(f.resource, bare.resource);
    assert_eq!(f.service, bare.service);
    assert_eq!(f.severity.band(), SeverityBand::High);
}

// ---------------------------------------------------------------------------
// Bad input: a clear error, never a panic
// ---------------------------------------------------------------------------

#[test]
fn empty_and_whitespace_inputs() {
    for input in ["", "   ", "\n\t \r\n", "\u{feff}", "\u{feff}  \n"] {
        let error = parse_err(input);
        assert!(matches!(error, FindingError::Empty), "{input:?}: {error:?}");
        assert_message(&error, "empty");
    }
}

#[test]
fn not_json() {
    for input in ["{nope", "{\"id\": }", "nope", "{\"a\":1", "[1,2", "\u{0}"] {
        let error = parse_err(input);
        assert!(
            matches!(error, FindingError::NotJson { .. }),
            "{input:?}: {error:?}"
        );
        assert_message(&error, "bad-input.json: not valid JSON");
    }
    assert_message(&parse_err("{nope"), "line 1 column 2");
}

#[test]
fn json_that_is_not_a_finding() {
    let cases = [
        (r#"{"hello":1}"#, "none of `id`, `type`, `severity`"),
        ("[1,2]", "bad-input.json[0]"),
        ("[1,2]", "found a number"),
        (r#""str""#, "found a string"),
        ("null", "found null"),
        ("42", "found a number"),
        ("[]", "holds no findings"),
        (r#"{"findings": []}"#, "holds no findings"),
        (
            r#"{"findings": {"id": "x"}}"#,
            "`findings` is an object, expected an array",
        ),
        (
            r#"{"version":"0","detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","detail":{"instance-id":"i-0a1b2c3d4e5f60718","state":"stopped"}}"#,
            "from source \"aws.ec2\"",
        ),
        (
            r#"{"version":"0","detail-type":"GuardDuty Finding","source":"aws.guardduty"}"#,
            "without a `detail`",
        ),
        (
            r#"{"detail-type":"GuardDuty Finding","source":"aws.guardduty","detail":{"foo":1}}"#,
            "the event's `detail` has none of `id`, `type`, `severity`",
        ),
        (
            r#"{"detail-type":"GuardDuty Finding","source":"aws.guardduty","detail":"{}"}"#,
            "the event's `detail`: expected the finding to be an object, found a string",
        ),
    ];
    for (input, needle) in cases {
        let error = parse_err(input);
        assert!(
            matches!(error, FindingError::NotAFinding { .. }),
            "{input}: {error:?}"
        );
        assert_message(&error, needle);
    }
}

/// The instance fixture with `change` applied must fail with an `Invalid` error
/// naming the finding and mentioning `needle`.
fn assert_invalid(change: impl FnOnce(&mut Value), needle: &str) {
    let error = parse_err(&variant(change));
    assert!(matches!(error, FindingError::Invalid { .. }), "{error:?}");
    assert_message(&error, needle);
    assert_message(&error, "bad-input.json: finding ");
}

fn remove(value: &mut Value, key: &str) {
    value.as_object_mut().expect("an object").remove(key);
}

#[test]
fn invalid_findings() {
    assert_invalid(|v| remove(v, "type"), "`type` is missing");
    assert_invalid(|v| remove(v, "severity"), "`severity` is missing");
    assert_invalid(|v| v["severity"] = json!(null), "`severity` is missing");
    assert_invalid(|v| v["severity"] = json!(0.5), "severity 0.5 is outside");
    assert_invalid(|v| v["severity"] = json!(10.5), "severity 10.5 is outside");
    assert_invalid(|v| v["severity"] = json!(0), "severity 0 is outside");
    assert_invalid(|v| v["severity"] = json!("high"), "`severity` is \"high\"");
    assert_invalid(|v| v["severity"] = json!("NaN"), "outside");
    assert_invalid(|v| v["severity"] = json!([8]), "`severity` is [8]");
    assert_invalid(
        |v| v["type"] = json!("Nonsense"),
        "type \"Nonsense\" is not of the form",
    );
    assert_invalid(|v| v["type"] = json!({"a": 1}), "`type` is an object");
    assert_invalid(|v| v["type"] = json!(""), "`type` is empty");
    assert_invalid(|v| remove(v, "id"), "`id` is missing");
    assert_invalid(|v| v["id"] = json!("  "), "`id` is empty");
    assert_invalid(
        |v| remove(&mut v["resource"], "instanceDetails"),
        "`resource.instanceDetails` is missing for an Instance finding",
    );
    assert_invalid(
        |v| v["resource"]["instanceDetails"] = json!(null),
        "`resource.instanceDetails` is missing",
    );
    assert_invalid(
        |v| v["resource"]["instanceDetails"] = json!("i-0a1b2c3d4e5f60718"),
        "`resource.instanceDetails` is a string, expected an object",
    );
    assert_invalid(
        |v| remove(&mut v["resource"]["instanceDetails"], "instanceId"),
        "`resource.instanceDetails.instanceId` is missing",
    );
    assert_invalid(
        |v| v["resource"]["instanceDetails"]["networkInterfaces"] = json!("eni-0a1b2c3d4e5f60711"),
        "`resource.instanceDetails.networkInterfaces` is malformed",
    );
    assert_invalid(
        |v| v["resource"]["instanceDetails"]["networkInterfaces"][1]["securityGroups"] = json!(7),
        "`resource.instanceDetails.networkInterfaces[1].securityGroups` is malformed",
    );
    assert_invalid(
        |v| {
            remove(
                &mut v["resource"]["instanceDetails"]["networkInterfaces"][1],
                "networkInterfaceId",
            )
        },
        "`resource.instanceDetails.networkInterfaces[1].networkInterfaceId` is missing",
    );
    assert_invalid(|v| v["resource"] = json!([1]), "`resource` is an array");
    assert_invalid(|v| remove(v, "region"), "`region` is missing");

    let mut key = value_of(&fixture("iam-user-key.json"));
    remove(&mut key["resource"], "accessKeyDetails");
    let error = parse_err(&key.to_string());
    assert!(matches!(error, FindingError::Invalid { .. }), "{error:?}");
    assert_message(
        &error,
        "`resource.accessKeyDetails` is missing for an AccessKey finding",
    );
    assert_message(&error, "finding 1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f");
}

#[test]
fn the_failing_finding_is_named_in_a_get_findings_response() {
    let good = fixture("iam-user-key.json");
    let bad = variant(|v| v["severity"] = json!("high"));
    let error = parse_err(&get_findings_response(&[&good, &bad]));
    assert!(matches!(error, FindingError::Invalid { .. }), "{error:?}");
    assert_message(
        &error,
        "bad-input.json.findings[1]: finding 8ec6a1b2c3d4e5f60718293a4b5c6d7e",
    );
}

#[test]
fn too_large_input_is_refused_before_parsing() {
    let huge = " ".repeat(MAX_INPUT_BYTES + 1);
    let error = parse_err(&huge);
    assert!(matches!(error, FindingError::TooLarge(n) if n == MAX_INPUT_BYTES + 1));
    assert_message(&error, "limit");
}

const TEN_MB: usize = 10 * 1024 * 1024;

fn assert_quick_clear_error(input: &str, what: &str) -> FindingError {
    let started = Instant::now();
    let result = parse_findings(input, "bad-input.json");
    let elapsed = started.elapsed();
    assert!(elapsed < QUICK, "{what}: took {elapsed:?}");
    let error = match result {
        Ok(findings) => panic!("{what}: parsed {} finding(s)", findings.len()),
        Err(error) => error,
    };
    assert_message(&error, "bad-input.json");
    error
}

#[test]
fn ten_megabytes_of_junk() {
    let brackets = "{[".repeat(TEN_MB / 2);
    let error = assert_quick_clear_error(&brackets, "repeated {[");
    assert!(matches!(error, FindingError::NotJson { .. }), "{error:?}");

    let opening = "[".repeat(TEN_MB);
    let error = assert_quick_clear_error(&opening, "deeply nested arrays");
    assert!(matches!(error, FindingError::NotJson { .. }), "{error:?}");

    // Balanced but absurdly deep nesting, bare and inside a finding: no stack overflow.
    let depth = TEN_MB / 2;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let error = assert_quick_clear_error(&nested, "deeply nested, balanced");
    assert!(matches!(error, FindingError::NotJson { .. }), "{error:?}");
    let inside =
        variant(|v| v["futureField"] = json!("PLACEHOLDER")).replace("\"PLACEHOLDER\"", &nested);
    let error = assert_quick_clear_error(&inside, "deep nesting inside a finding");
    assert!(matches!(error, FindingError::NotJson { .. }), "{error:?}");

    // Printable junk with line breaks, from a small linear congruential generator.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let printable: String = (0..TEN_MB)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            match (state >> 33) % 97 {
                95 => '\n',
                96 => '"',
                n => char::from(b' ' + u8::try_from(n).unwrap_or(0)),
            }
        })
        .collect();
    let error = assert_quick_clear_error(&printable, "printable junk");
    assert!(matches!(error, FindingError::NotJson { .. }), "{error:?}");
}

#[test]
fn ten_megabytes_of_valid_but_wrong_json() {
    let item = r#"{"hello":"world","n":12345,"list":[1,2,3]}"#;
    let count = TEN_MB / (item.len() + 1);
    let array = format!("[{}]", vec![item; count].join(","));
    let error = assert_quick_clear_error(&array, "array of non-findings");
    assert!(
        matches!(error, FindingError::NotAFinding { .. }),
        "{error:?}"
    );

    let lines = vec![item; count].join("\n");
    let error = assert_quick_clear_error(&lines, "JSON lines of non-findings");
    assert!(
        matches!(error, FindingError::NotAFinding { .. }),
        "{error:?}"
    );

    // Finding-shaped, with huge values where the engine needs small ones.
    let huge = "A".repeat(TEN_MB);
    let finding = json!({
        "id": "c5d6e7f8019283746556473829101a2b", "accountId": "111122223333",
        "region": "us-east-1", "type": "Recon:EC2/Portscan",
        "severity": huge.clone(), "description": huge.clone()
    });
    let error = assert_quick_clear_error(&finding.to_string(), "huge severity");
    assert!(matches!(error, FindingError::Invalid { .. }), "{error:?}");

    let finding = json!({
        "id": huge.clone(), "accountId": "111122223333", "region": "us-east-1",
        "type": huge.clone(), "severity": 5
    });
    let error = assert_quick_clear_error(&finding.to_string(), "huge id and type");
    assert!(matches!(error, FindingError::Invalid { .. }), "{error:?}");
}

#[test]
fn every_prefix_of_an_event_parses_or_errors() {
    let event = fixture("event-ec2-high.json");
    let complete = event.trim_end().len();
    for end in (0..=event.len()).step_by(7).chain([complete, event.len()]) {
        let Some(prefix) = event.get(..end) else {
            continue;
        };
        let result = parse_findings(prefix, "prefix");
        if end < complete {
            let error = result.expect_err("a cut event is not a finding");
            assert!(!error.to_string().contains('\n'));
        } else {
            assert_eq!(result.expect("the whole event parses").len(), 1);
        }
    }
    // The same over JSON lines and an array: never a panic.
    for name in ["findings.jsonl", "findings-array.json"] {
        let text = fixture(name);
        for end in (0..=text.len()).step_by(7) {
            if let Some(prefix) = text.get(..end) {
                let _ = parse_findings(prefix, name);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Severity and type
// ---------------------------------------------------------------------------

#[test]
fn severity_band_boundaries() {
    let cases = [
        (1.0, SeverityBand::Low),
        (2.0, SeverityBand::Low),
        (3.9, SeverityBand::Low),
        (3.95, SeverityBand::Low),
        (3.999, SeverityBand::Low),
        (4.0, SeverityBand::Medium),
        (5.5, SeverityBand::Medium),
        (6.9, SeverityBand::Medium),
        (6.95, SeverityBand::Medium),
        (7.0, SeverityBand::High),
        (8.0, SeverityBand::High),
        (8.9, SeverityBand::High),
        (8.95, SeverityBand::High),
        (9.0, SeverityBand::Critical),
        (9.5, SeverityBand::Critical),
        (10.0, SeverityBand::Critical),
    ];
    for (value, band) in cases {
        let severity = Severity::new(value).unwrap_or_else(|e| panic!("{value}: {e}"));
        assert_eq!(severity.band(), band, "severity {value}");
        assert_eq!(severity.value(), value);
    }
    for value in [0.0, 0.5, 0.999, 10.01, 10.5, -1.0, f64::NAN, f64::INFINITY] {
        assert!(
            Severity::new(value).is_err(),
            "severity {value} must be refused"
        );
    }
    assert_eq!(SeverityBand::Critical.to_string(), "critical");
}

#[test]
fn finding_type_parts() {
    let cases: [(&str, TypeParts<'_>); 7] = [
        (
            "Backdoor:EC2/C&CActivity.B!DNS",
            ("Backdoor", "EC2", "C&CActivity", Some("B"), Some("DNS")),
        ),
        (
            "Recon:EC2/Portscan",
            ("Recon", "EC2", "Portscan", None, None),
        ),
        (
            "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
            (
                "UnauthorizedAccess",
                "IAMUser",
                "InstanceCredentialExfiltration",
                Some("OutsideAWS"),
                None,
            ),
        ),
        (
            "AttackSequence:IAM/CompromisedCredentials",
            (
                "AttackSequence",
                "IAM",
                "CompromisedCredentials",
                None,
                None,
            ),
        ),
        (
            "Trojan:EC2/DropPoint!DNS",
            ("Trojan", "EC2", "DropPoint", None, Some("DNS")),
        ),
        (
            "Impact:Runtime/AbusedDomainRequest.Reputation",
            (
                "Impact",
                "Runtime",
                "AbusedDomainRequest",
                Some("Reputation"),
                None,
            ),
        ),
        (
            "UnauthorizedAccess:EC2/MaliciousIPCaller.Custom",
            (
                "UnauthorizedAccess",
                "EC2",
                "MaliciousIPCaller",
                Some("Custom"),
                None,
            ),
        ),
    ];
    for (raw, parts) in cases {
        let parsed = FindingType::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(type_parts(&parsed), parts, "{raw}");
        assert_eq!(parsed.raw, raw);
        assert_eq!(parsed.to_string(), raw);
    }
    for bad in [
        "Nonsense",
        "",
        "Recon:EC2",
        "Recon/EC2:Portscan",
        ":EC2/Portscan",
        "Recon:/Portscan",
        "Recon:EC2/",
        "Recon:EC2/.B",
        "Recon:EC2/Portscan.",
        "Recon:EC2/Portscan!",
        "Recon:EC2/Port scan",
        " Recon:EC2/Portscan",
        "Recon:EC2/Portscan\n",
        "Recon:EC2/Portscan/Extra",
        "Recon:EC2:X/Portscan",
        "Backdoor:EC2/C&CActivity.B!DNS!More",
    ] {
        let error = FindingType::parse(bad).expect_err(bad);
        assert!(error.contains("is not of the form"), "{bad:?}: {error}");
    }
}
