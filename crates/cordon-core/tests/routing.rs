//! Routing: which playbook answers a finding, and why.
//!
//! The first half runs the SHIPPED playbooks (`playbooks/*.yaml`) over findings at
//! every severity band boundary and of every kind they distinguish; the second half
//! checks each matching rule (pattern kinds, exclusions, resource role, key kind,
//! numeric ranges, priority) with small playbooks written here.

use cordon_core::finding::{Finding, parse_single_finding};
use cordon_core::playbook::Playbook;
use cordon_core::route::{Route, RouteReason, evaluate, pattern_matches, route};
use cordon_core::validate::rules_overlap;
use serde_json::{Value, json};

#[path = "support/playbooks.rs"]
mod playbooks;
use playbooks::{playbook, shipped};

fn fixture(name: &str) -> Finding {
    let path = format!(
        "{}/{name}",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/findings")
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {path}: {e}"));
    parse_single_finding(&text, name).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A minimal finding as GuardDuty sends it (bare `detail`), with `resource` and
/// `service` given; everything else is fixed.
fn finding_with(finding_type: &str, severity: f64, resource: Value, service: Value) -> Finding {
    let value = json!({
        "schemaVersion": "2.0",
        "accountId": "111122223333",
        "region": "us-east-1",
        "partition": "aws",
        "id": format!("routing-{finding_type}-{severity}"),
        "type": finding_type,
        "severity": severity,
        "resource": resource,
        "service": service,
    });
    parse_single_finding(&value.to_string(), "inline")
        .unwrap_or_else(|e| panic!("test finding: {e}"))
}

fn instance_resource() -> Value {
    json!({
        "resourceType": "Instance",
        "instanceDetails": {
            "instanceId": "i-0123456789abcdef0",
            "networkInterfaces": [{
                "networkInterfaceId": "eni-0123456789abcdef0",
                "vpcId": "vpc-01234567",
                "securityGroups": [{"groupId": "sg-01234567", "groupName": "web"}]
            }]
        }
    })
}

fn access_key_resource(key_id: &str, user_type: &str, user_name: &str) -> Value {
    json!({
        "resourceType": "AccessKey",
        "accessKeyDetails": {
            "accessKeyId": key_id,
            "principalId": "AIDAEXAMPLE",
            "userType": user_type,
            "userName": user_name
        }
    })
}

fn service(role: Option<&str>) -> Value {
    let mut service = json!({ "archived": false, "count": 1, "additionalInfo": {"value": "{}", "type": "default"} });
    if let Some(role) = role {
        service["resourceRole"] = json!(role);
    }
    service
}

fn ec2(finding_type: &str, severity: f64) -> Finding {
    finding_with(
        finding_type,
        severity,
        instance_resource(),
        service(Some("ACTOR")),
    )
}

fn ec2_role(finding_type: &str, severity: f64, role: Option<&str>) -> Finding {
    finding_with(finding_type, severity, instance_resource(), service(role))
}

fn key(key_id: &str, user_type: &str, severity: f64) -> Finding {
    finding_with(
        "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
        severity,
        access_key_resource(key_id, user_type, "alice"),
        service(Some("TARGET")),
    )
}

/// The chosen playbook's reason and the others that matched; panics on no match.
fn matched(finding: &Finding, playbooks: &[Playbook]) -> (RouteReason, Vec<String>) {
    let (route, chosen) = route(finding, playbooks);
    match route {
        Route::Matched {
            reason,
            also_matched,
        } => {
            assert_eq!(
                chosen.map(|p| p.name.as_str()),
                Some(reason.playbook.as_str())
            );
            (reason, also_matched)
        }
        Route::NoMatch { rejections } => panic!(
            "{} (severity {}) matched no playbook: {rejections:#?}",
            finding.finding_type,
            finding.severity.value()
        ),
    }
}

fn chosen(finding: &Finding, playbooks: &[Playbook]) -> String {
    matched(finding, playbooks).0.playbook
}

fn rejections(finding: &Finding, playbooks: &[Playbook]) -> Vec<(String, String)> {
    let (route, chosen) = route(finding, playbooks);
    assert!(chosen.is_none(), "expected no match, got {route:?}");
    match route {
        Route::NoMatch { rejections } => rejections,
        Route::Matched { .. } => panic!("expected no match, got {route:?}"),
    }
}

fn reason_text(reason: &RouteReason) -> String {
    reason.matched.join("; ")
}

// ---------------------------------------------------------------------------
// The shipped playbooks
// ---------------------------------------------------------------------------

#[test]
fn ec2_findings_route_by_severity_band_at_every_boundary() {
    let playbooks = shipped();
    let table = [
        (1.0, "ec2-low", "low"),
        (3.9, "ec2-low", "low"),
        // Classified by range, never by exact value: 3.95 is still low.
        (3.95, "ec2-low", "low"),
        (4.0, "ec2-medium", "medium"),
        (6.9, "ec2-medium", "medium"),
        (6.95, "ec2-medium", "medium"),
        (7.0, "ec2-compromised-high", "high"),
        (8.9, "ec2-compromised-high", "high"),
        (8.95, "ec2-compromised-high", "high"),
        (9.0, "ec2-compromised-high", "critical"),
        (10.0, "ec2-compromised-high", "critical"),
    ];
    for (severity, expected, band) in table {
        for finding_type in [
            "Backdoor:EC2/C&CActivity.B!DNS",
            "Recon:EC2/Portscan",
            "Execution:Runtime/NewBinaryExecuted",
            "AttackSequence:EC2/CompromisedInstanceGroup",
        ] {
            let finding = ec2(finding_type, severity);
            let (reason, also) = matched(&finding, &playbooks);
            assert_eq!(reason.playbook, expected, "{finding_type} at {severity}");
            assert_eq!(reason.priority, 100);
            let text = reason_text(&reason);
            assert!(
                text.contains(&format!("severity {severity} (band {band})")),
                "{severity}: {text}"
            );
            assert!(text.contains("resource type Instance"), "{text}");
            // The catch-all matched too, with lower priority; the sibling bands did not.
            assert_eq!(
                also,
                vec!["default-notify (priority -1000)".to_string()],
                "{finding_type} at {severity}"
            );
        }
    }
}

#[test]
fn ec2_band_reasons_name_the_pattern_that_matched() {
    let playbooks = shipped();
    let (reason, _) = matched(&ec2("Backdoor:EC2/C&CActivity.B!DNS", 8.0), &playbooks);
    assert_eq!(
        reason.matched,
        vec![
            r#"type Backdoor:EC2/C&CActivity.B!DNS matches "*:EC2/*""#.to_string(),
            "resource type Instance".to_string(),
            "severity 8 (band high)".to_string(),
        ]
    );
    let (reason, _) = matched(&ec2("Execution:Runtime/NewBinaryExecuted", 5.0), &playbooks);
    assert_eq!(reason.playbook, "ec2-medium");
    assert_eq!(
        reason.matched[0],
        r#"type Execution:Runtime/NewBinaryExecuted matches "*:Runtime/*""#
    );
}

#[test]
fn long_term_key_routes_to_iam_user_key_compromised() {
    let playbooks = shipped();
    let (reason, also) = matched(&key("AKIAEXAMPLEKEY000001", "IAMUser", 5.0), &playbooks);
    assert_eq!(reason.playbook, "iam-user-key-compromised");
    let text = reason_text(&reason);
    assert!(text.contains(r#"matches "*:IAMUser/*""#), "{text}");
    assert!(text.contains("resource type AccessKey"), "{text}");
    assert!(text.contains("severity 5 (>= 4)"), "{text}");
    assert!(text.contains("long-term (AKIA) access key"), "{text}");
    assert_eq!(also, vec!["default-notify (priority -1000)".to_string()]);

    assert_eq!(
        chosen(&fixture("iam-user-key.json"), &playbooks),
        "iam-user-key-compromised"
    );
}

#[test]
fn temporary_key_routes_to_iam_temporary_credentials() {
    let playbooks = shipped();
    let (reason, _) = matched(&key("ASIAEXAMPLETEMP00001", "AssumedRole", 8.0), &playbooks);
    assert_eq!(reason.playbook, "iam-temporary-credentials");
    assert!(
        reason_text(&reason).contains("temporary (ASIA) access key"),
        "{reason:?}"
    );

    assert_eq!(
        chosen(&fixture("assumed-role-key.json"), &playbooks),
        "iam-temporary-credentials"
    );
}

#[test]
fn an_iam_users_temporary_key_routes_to_user_session_revocation() {
    let playbooks = shipped();
    let (reason, also) = matched(&key("ASIAEXAMPLETEMP00002", "IAMUser", 8.0), &playbooks);
    assert_eq!(reason.playbook, "iam-user-temporary-credentials");
    let text = reason_text(&reason);
    assert!(text.contains("temporary (ASIA) access key"), "{text}");
    assert!(text.contains("user type IAMUser"), "{text}");
    assert_eq!(also, vec!["default-notify (priority -1000)".to_string()]);
    assert_eq!(
        chosen(&fixture("iam-user-temporary-key.json"), &playbooks),
        "iam-user-temporary-credentials"
    );

    // The role playbook says why it does not answer: the key is no role's.
    let role_playbook = playbooks
        .iter()
        .find(|p| p.name == "iam-temporary-credentials")
        .expect("shipped");
    assert_eq!(
        cordon_core::route::evaluate(
            &role_playbook.matcher,
            &fixture("iam-user-temporary-key.json")
        ),
        Err(
            r#"access key ASIAEXAMPLETEMP00923 has user type IAMUser, not one of ["AssumedRole"]"#
                .to_string()
        )
    );
    // A root or federated key's temporary credentials are neither's: only the catch-all.
    for user_type in ["Root", "FederatedUser"] {
        let (reason, _) = matched(&key("ASIAEXAMPLETEMP00003", user_type, 8.0), &playbooks);
        assert_eq!(reason.playbook, "default-notify", "{user_type}");
    }
}

#[test]
fn low_severity_key_finding_only_notifies() {
    // The IAM playbooks start at 4.0 (inclusive); 3.9 falls through to the catch-all.
    let playbooks = shipped();
    assert_eq!(
        chosen(&key("AKIAEXAMPLEKEY000001", "IAMUser", 4.0), &playbooks),
        "iam-user-key-compromised"
    );
    assert_eq!(
        chosen(&key("AKIAEXAMPLEKEY000001", "IAMUser", 3.9), &playbooks),
        "default-notify"
    );
    assert_eq!(
        chosen(&key("ASIAEXAMPLETEMP00001", "AssumedRole", 3.9), &playbooks),
        "default-notify"
    );
}

#[test]
fn s3_finding_routes_to_default_notify() {
    let playbooks = shipped();
    let finding = fixture("s3-bucket.json");
    let (reason, also) = matched(&finding, &playbooks);
    assert_eq!(reason.playbook, "default-notify");
    assert_eq!(reason.priority, -1000);
    assert_eq!(reason.matched, vec!["any finding type".to_string()]);
    assert!(also.is_empty(), "{also:?}");

    let inline = finding_with(
        "Policy:S3/BucketBlockPublicAccessDisabled",
        8.0,
        json!({"resourceType": "S3Bucket", "s3BucketDetails": [{"name": "corp-data"}]}),
        service(Some("TARGET")),
    );
    assert_eq!(chosen(&inline, &playbooks), "default-notify");
}

#[test]
fn sample_finding_only_notifies() {
    let playbooks = shipped();
    let finding = fixture("sample-finding.json");
    assert!(finding.is_sample());
    // A high EC2 finding: without the sample flag it would be contained.
    assert_eq!(finding.severity.value(), 8.0);
    let (reason, also) = matched(&finding, &playbooks);
    assert_eq!(reason.playbook, "default-notify");
    assert!(also.is_empty(), "{also:?}");
    let high = playbooks
        .iter()
        .find(|p| p.name == "ec2-compromised-high")
        .expect("shipped");
    let why = evaluate(&high.matcher, &finding).expect_err("samples are not contained");
    assert!(why.contains("sample"), "{why}");

    // The same shape, inline: `additionalInfo.sample: true`.
    let mut service = service(Some("ACTOR"));
    service["additionalInfo"] = json!({"sample": true});
    let inline = finding_with(
        "UnauthorizedAccess:EC2/TorClient",
        8.0,
        instance_resource(),
        service,
    );
    assert_eq!(chosen(&inline, &playbooks), "default-notify");
}

#[test]
fn archived_finding_matches_nothing_with_a_reason_per_playbook() {
    let playbooks = shipped();
    let mut service = service(Some("ACTOR"));
    service["archived"] = json!(true);
    let finding = finding_with(
        "Backdoor:EC2/C&CActivity.B!DNS",
        8.0,
        instance_resource(),
        service,
    );
    let rejected = rejections(&finding, &playbooks);
    let names: Vec<&str> = rejected.iter().map(|(n, _)| n.as_str()).collect();
    // Every shipped playbook rejects it, each with its reason.
    let mut all: Vec<&str> = playbooks.iter().map(|p| p.name.as_str()).collect();
    all.sort_unstable();
    assert_eq!(names, all);
    assert!(names.contains(&"ec2-compromised-high"), "{names:?}");
    let why = |name: &str| {
        rejected
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, w)| w.as_str())
            .unwrap_or_default()
    };
    // The playbooks that would otherwise answer say "archived".
    assert!(why("default-notify").contains("archived"), "{rejected:#?}");
    assert!(
        why("ec2-compromised-high").contains("archived"),
        "{rejected:#?}"
    );
    // The others give their own first failing condition.
    assert_eq!(why("ec2-low"), r#"severity 8 is high, not one of ["low"]"#);
    assert_eq!(
        why("ec2-medium"),
        r#"severity 8 is high, not one of ["medium"]"#
    );
    assert!(
        why("iam-user-key-compromised").contains(r#"matches none of ["*:IAMUser/*"]"#),
        "{rejected:#?}"
    );
    assert!(
        why("iam-temporary-credentials").contains(r#"matches none of ["*:IAMUser/*"]"#),
        "{rejected:#?}"
    );

    // The fixture delivered archived gets the same answer.
    let archived = fixture("ec2-medium.json");
    assert!(archived.service.archived);
    let rejected = rejections(&archived, &playbooks);
    assert_eq!(rejected.len(), playbooks.len());
    assert!(
        rejected
            .iter()
            .any(|(n, w)| n == "ec2-medium" && w.contains("archived")),
        "{rejected:#?}"
    );
}

#[test]
fn fixtures_route_as_their_names_say() {
    let playbooks = shipped();
    for (file, expected) in [
        ("instance-two-enis.json", "ec2-compromised-high"),
        ("event-ec2-high.json", "ec2-compromised-high"),
        ("ec2-critical-attack-sequence.json", "ec2-compromised-high"),
        ("ec2-ssh-bruteforce-low.json", "ec2-low"),
        ("iam-user-key.json", "iam-user-key-compromised"),
        ("assumed-role-key.json", "iam-temporary-credentials"),
        (
            "iam-user-temporary-key.json",
            "iam-user-temporary-credentials",
        ),
        ("s3-bucket.json", "default-notify"),
        ("sample-finding.json", "default-notify"),
        ("unknown-kind.json", "default-notify"),
    ] {
        assert_eq!(chosen(&fixture(file), &playbooks), expected, "{file}");
    }
}

#[test]
fn no_playbooks_is_a_clear_no_match() {
    let finding = ec2("Recon:EC2/Portscan", 5.0);
    let (route, chosen) = route(&finding, &[]);
    assert!(chosen.is_none());
    assert_eq!(route, Route::NoMatch { rejections: vec![] });
    let json = serde_json::to_value(&route).expect("serializable");
    assert_eq!(json["result"], "no-match");
}

// ---------------------------------------------------------------------------
// Matching rules, one kind at a time
// ---------------------------------------------------------------------------

fn rule_playbook(name: &str, match_yaml: &str) -> Playbook {
    if match_yaml.is_empty() {
        return playbook(&format!(
            "name: {name}\nmatch: {{}}\nsteps:\n  - id: notify\n    action: notify\n"
        ));
    }
    playbook(&format!(
        "name: {name}\nmatch:\n{}\nsteps:\n  - id: notify\n    action: notify\n",
        match_yaml
            .lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    ))
}

fn accepts(playbook: &Playbook, finding: &Finding) -> bool {
    evaluate(&playbook.matcher, finding).is_ok()
}

#[test]
fn exact_type_pattern() {
    let p = rule_playbook("exact", r#"finding-types: ["Recon:EC2/Portscan"]"#);
    let reasons = evaluate(&p.matcher, &ec2("Recon:EC2/Portscan", 5.0)).expect("exact match");
    assert_eq!(
        reasons,
        vec![r#"type Recon:EC2/Portscan matches "Recon:EC2/Portscan""#.to_string()]
    );
    for other in [
        "Recon:EC2/PortscanX",
        "Recon:EC2/Portsca",
        "recon:EC2/Portscan",
        "Impact:EC2/PortSweep",
    ] {
        let why = evaluate(&p.matcher, &ec2(other, 5.0)).expect_err(other);
        assert_eq!(
            why,
            format!(r#"type {other} matches none of ["Recon:EC2/Portscan"]"#)
        );
    }
}

#[test]
fn purpose_and_resource_prefix_pattern() {
    let p = rule_playbook("backdoor", r#"finding-types: ["Backdoor:EC2/*"]"#);
    for yes in [
        "Backdoor:EC2/C&CActivity.B!DNS",
        "Backdoor:EC2/C&CActivity.B",
        "Backdoor:EC2/Spambot",
        "Backdoor:EC2/DenialOfService.Tcp",
    ] {
        assert!(accepts(&p, &ec2(yes, 8.0)), "{yes}");
    }
    for no in [
        "Recon:EC2/Portscan",
        "Backdoor:Runtime/C&CActivity.B",
        "Backdoor:EC2Fleet/X",
    ] {
        assert!(!accepts(&p, &ec2(no, 8.0)), "{no}");
    }
}

#[test]
fn any_purpose_one_resource_pattern() {
    let p = rule_playbook("iam", r#"finding-types: ["*:IAMUser/*"]"#);
    for yes in [
        "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
        "Policy:IAMUser/RootCredentialUsage",
        "Stealth:IAMUser/CloudTrailLoggingDisabled",
    ] {
        assert!(
            accepts(
                &p,
                &key("AKIAEXAMPLEKEY000001", "IAMUser", 5.0).with_type(yes)
            ),
            "{yes}"
        );
    }
    for no in [
        "Recon:EC2/Portscan",
        "Discovery:Kubernetes/MaliciousIPCaller",
    ] {
        assert!(!accepts(&p, &ec2(no, 5.0)), "{no}");
    }
}

#[test]
fn artifact_suffix_pattern() {
    let p = rule_playbook("dns", r#"finding-types: ["*!DNS"]"#);
    for yes in [
        "Trojan:EC2/DropPoint!DNS",
        "CryptoCurrency:EC2/BitcoinTool.B!DNS",
        "Backdoor:EC2/C&CActivity.B!DNS",
    ] {
        let reasons = evaluate(&p.matcher, &ec2(yes, 8.0)).expect(yes);
        assert_eq!(reasons[0], format!(r#"type {yes} matches "*!DNS""#));
    }
    for no in [
        "Trojan:EC2/DropPoint",
        "Trojan:EC2/DNSDataExfiltration",
        "Backdoor:EC2/C&CActivity.B",
    ] {
        assert!(!accepts(&p, &ec2(no, 8.0)), "{no}");
    }
}

#[test]
fn single_character_pattern() {
    let p = rule_playbook(
        "brute",
        r#"finding-types: ["UnauthorizedAccess:EC2/???BruteForce"]"#,
    );
    assert!(accepts(
        &p,
        &ec2("UnauthorizedAccess:EC2/SSHBruteForce", 5.0)
    ));
    assert!(accepts(
        &p,
        &ec2("UnauthorizedAccess:EC2/RDPBruteForce", 5.0)
    ));
    // `?` is exactly one character: not zero, not two.
    assert!(!accepts(
        &p,
        &ec2("UnauthorizedAccess:EC2/SSBruteForce", 5.0)
    ));
    assert!(!accepts(
        &p,
        &ec2("UnauthorizedAccess:EC2/SSHHBruteForce", 5.0)
    ));
}

#[test]
fn pattern_matches_table() {
    let table: &[(&str, &str, bool)] = &[
        ("Recon:EC2/Portscan", "Recon:EC2/Portscan", true),
        ("Recon:EC2/Portscan", "Recon:EC2/Portscan2", false),
        ("Backdoor:EC2/*", "Backdoor:EC2/C&CActivity.B!DNS", true),
        ("*:EC2/*", "Impact:EC2/PortSweep", true),
        ("*:EC2/*", "Impact:IAMUser/AnomalousBehavior", false),
        ("*!DNS", "Trojan:EC2/DropPoint!DNS", true),
        ("*!DNS", "Trojan:EC2/DropPoint!DNSX", false),
        ("*.B*", "Backdoor:EC2/C&CActivity.B!DNS", true),
        (
            "UnauthorizedAccess:EC2/???BruteForce",
            "UnauthorizedAccess:EC2/RDPBruteForce",
            true,
        ),
        ("?", "", false),
        ("*", "", true),
        ("", "", true),
        ("", "Recon:EC2/Portscan", false),
        ("**:EC2/**", "Recon:EC2/Portscan", true),
        ("a*b*c", "aXbYbZc", true),
        ("a*b*c", "aXbYbZ", false),
        // Case-sensitive, as GuardDuty types are.
        ("backdoor:ec2/*", "Backdoor:EC2/Spambot", false),
        // A `*` in the pattern is a wildcard even where the text has a literal `*`.
        ("a*b", "a*xb", true),
    ];
    for (pattern, text, expected) in table {
        assert_eq!(
            pattern_matches(pattern, text),
            *expected,
            "{pattern:?} vs {text:?}"
        );
    }
}

#[test]
fn exclusions_win_over_patterns_and_name_the_exclusion() {
    let p = rule_playbook(
        "ec2-but-dns",
        "finding-types: [\"*:EC2/*\"]\nexclude-finding-types: [\"*!DNS\", \"Recon:EC2/Portscan\"]",
    );
    assert!(accepts(&p, &ec2("Backdoor:EC2/C&CActivity.B", 8.0)));
    assert!(accepts(&p, &ec2("Impact:EC2/PortSweep", 8.0)));
    let why =
        evaluate(&p.matcher, &ec2("Backdoor:EC2/C&CActivity.B!DNS", 8.0)).expect_err("excluded");
    assert_eq!(
        why,
        r#"type Backdoor:EC2/C&CActivity.B!DNS is excluded by "*!DNS""#
    );
    let why = evaluate(&p.matcher, &ec2("Recon:EC2/Portscan", 8.0)).expect_err("excluded");
    assert_eq!(
        why,
        r#"type Recon:EC2/Portscan is excluded by "Recon:EC2/Portscan""#
    );

    // Exclusions alone (no finding-types) mean "anything but".
    let p = rule_playbook("all-but-iam", r#"exclude-finding-types: ["*:IAMUser/*"]"#);
    assert!(accepts(&p, &ec2("Recon:EC2/Portscan", 2.0)));
    assert!(!accepts(&p, &key("AKIAEXAMPLEKEY000001", "IAMUser", 5.0)));
}

#[test]
fn resource_types_restrict_and_explain() {
    let p = rule_playbook("keys", "resource-types: [AccessKey]");
    let why = evaluate(&p.matcher, &ec2("Recon:EC2/Portscan", 5.0)).expect_err("instance");
    assert_eq!(why, r#"resource type Instance is not one of ["AccessKey"]"#);
    assert!(accepts(&p, &key("AKIAEXAMPLEKEY000001", "IAMUser", 5.0)));
}

/// SSHBruteForce is low when the instance is the target and high when it is the actor:
/// one playbook per role, same type, same priority, and no overlap between them.
const SSH_TARGET: &str = r#"
name: ssh-bruteforce-target
priority: 200
match:
  finding-types: ["UnauthorizedAccess:EC2/SSHBruteForce"]
  resource-types: [Instance]
  resource-role: target
steps:
  - id: tag
    action: tag-resource
"#;

const SSH_ACTOR: &str = r#"
name: ssh-bruteforce-actor
priority: 200
match:
  finding-types: ["UnauthorizedAccess:EC2/SSHBruteForce"]
  resource-types: [Instance]
  resource-role: actor
steps:
  - id: isolate
    action: isolate-instance
"#;

#[test]
fn resource_role_separates_target_from_actor() {
    let pair = vec![playbook(SSH_TARGET), playbook(SSH_ACTOR)];
    assert!(
        !rules_overlap(&pair[0].matcher, &pair[1].matcher),
        "different roles cannot overlap"
    );
    let mut playbooks = shipped();
    playbooks.extend(pair.iter().cloned());

    let target = ec2_role("UnauthorizedAccess:EC2/SSHBruteForce", 2.0, Some("TARGET"));
    let (reason, also) = matched(&target, &playbooks);
    assert_eq!(reason.playbook, "ssh-bruteforce-target");
    assert!(
        reason_text(&reason).contains("resource role target"),
        "{reason:?}"
    );
    assert_eq!(
        also,
        vec![
            "ec2-low (priority 100)".to_string(),
            "default-notify (priority -1000)".to_string()
        ]
    );

    let actor = ec2_role("UnauthorizedAccess:EC2/SSHBruteForce", 8.0, Some("ACTOR"));
    let (reason, also) = matched(&actor, &playbooks);
    assert_eq!(reason.playbook, "ssh-bruteforce-actor");
    assert!(
        reason_text(&reason).contains("resource role actor"),
        "{reason:?}"
    );
    assert_eq!(
        also,
        vec![
            "ec2-compromised-high (priority 100)".to_string(),
            "default-notify (priority -1000)".to_string()
        ]
    );

    assert_eq!(
        evaluate(&pair[0].matcher, &actor).expect_err("actor is not target"),
        "resource role is actor, not target"
    );
    assert_eq!(
        evaluate(&pair[1].matcher, &target).expect_err("target is not actor"),
        "resource role is target, not actor"
    );
    let no_role = ec2_role("UnauthorizedAccess:EC2/SSHBruteForce", 5.0, None);
    for p in &pair {
        let why = evaluate(&p.matcher, &no_role).expect_err("no role given");
        assert!(
            why.starts_with("the finding gives no resource role"),
            "{why}"
        );
    }
    // The fixture: a brute-forced (target) instance.
    assert_eq!(
        chosen(&fixture("ec2-ssh-bruteforce-low.json"), &playbooks),
        "ssh-bruteforce-target"
    );
}

#[test]
fn key_kind_separates_long_term_from_temporary() {
    let long = rule_playbook("long", "key-kind: long-term");
    let temp = rule_playbook("temp", "key-kind: temporary");
    let akia = key("AKIAEXAMPLEKEY000001", "IAMUser", 5.0);
    let asia = key("ASIAEXAMPLETEMP00001", "AssumedRole", 5.0);
    let other = key("ABIAEXAMPLEOTHER0001", "IAMUser", 5.0);
    assert_eq!(
        evaluate(&long.matcher, &akia),
        Ok(vec![
            "any finding type".to_string(),
            "long-term (AKIA) access key".to_string()
        ])
    );
    assert_eq!(
        evaluate(&temp.matcher, &asia),
        Ok(vec![
            "any finding type".to_string(),
            "temporary (ASIA) access key".to_string()
        ])
    );
    assert_eq!(
        evaluate(&long.matcher, &asia),
        Err("access key ASIAEXAMPLETEMP00001 is not long-term (AKIA)".to_string())
    );
    assert_eq!(
        evaluate(&temp.matcher, &akia),
        Err("access key AKIAEXAMPLEKEY000001 is not temporary (ASIA)".to_string())
    );
    assert!(
        !accepts(&long, &other) && !accepts(&temp, &other),
        "a key that is neither matches neither"
    );
    let why = evaluate(&long.matcher, &ec2("Recon:EC2/Portscan", 5.0)).expect_err("no key");
    assert_eq!(
        why,
        "a Instance finding names no access key (rule wants a long-term (AKIA) key)"
    );
}

#[test]
fn numeric_range_is_inclusive_at_both_ends() {
    let p = rule_playbook("range", "severity:\n  min: 5.5\n  max: 7.5");
    for (severity, ok) in [
        (5.49, false),
        (5.5, true),
        (6.0, true),
        (7.0, true),
        (7.5, true),
        (7.51, false),
    ] {
        assert_eq!(
            accepts(&p, &ec2("Recon:EC2/Portscan", severity)),
            ok,
            "{severity}"
        );
    }
    assert_eq!(
        evaluate(&p.matcher, &ec2("Recon:EC2/Portscan", 5.5)),
        Ok(vec![
            "any finding type".to_string(),
            "severity 5.5 (>= 5.5, <= 7.5)".to_string()
        ])
    );
    assert_eq!(
        evaluate(&p.matcher, &ec2("Recon:EC2/Portscan", 5.49)),
        Err("severity 5.49 is below 5.5".to_string())
    );
    assert_eq!(
        evaluate(&p.matcher, &ec2("Recon:EC2/Portscan", 7.51)),
        Err("severity 7.51 is above 7.5".to_string())
    );

    // Only one end given.
    let from = rule_playbook("from", "severity:\n  min: 1.0");
    assert!(accepts(&from, &ec2("Recon:EC2/Portscan", 1.0)));
    let upto = rule_playbook("upto", "severity:\n  max: 10.0");
    assert!(accepts(&upto, &ec2("Recon:EC2/Portscan", 10.0)));

    // Bands and a range together: both must hold.
    let both = rule_playbook("both", "severity:\n  bands: [high]\n  min: 8.0");
    assert!(!accepts(&both, &ec2("Recon:EC2/Portscan", 7.5)));
    assert_eq!(
        evaluate(&both.matcher, &ec2("Recon:EC2/Portscan", 8.0)),
        Ok(vec![
            "any finding type".to_string(),
            "severity 8 (band high, >= 8)".to_string()
        ])
    );
    assert_eq!(
        evaluate(&both.matcher, &ec2("Recon:EC2/Portscan", 9.5)),
        Err(r#"severity 9.5 is critical, not one of ["high"]"#.to_string())
    );
}

#[test]
fn highest_priority_wins_and_the_rest_are_listed_in_order() {
    let playbooks = vec![
        rule_playbook("catch-all", ""),
        playbook(
            "name: any-ec2\npriority: 10\nmatch:\n  finding-types: [\"*:EC2/*\"]\nsteps:\n  - id: n\n    action: notify\n",
        ),
        playbook(
            "name: backdoor\npriority: 20\nmatch:\n  finding-types: [\"Backdoor:EC2/*\"]\nsteps:\n  - id: n\n    action: notify\n",
        ),
        playbook(
            "name: iam\npriority: 30\nmatch:\n  finding-types: [\"*:IAMUser/*\"]\nsteps:\n  - id: n\n    action: notify\n",
        ),
    ];
    let finding = ec2("Backdoor:EC2/Spambot", 5.0);
    let (reason, also) = matched(&finding, &playbooks);
    assert_eq!(reason.playbook, "backdoor");
    assert_eq!(reason.priority, 20);
    assert_eq!(
        also,
        vec![
            "any-ec2 (priority 10)".to_string(),
            "catch-all (priority 0)".to_string()
        ]
    );

    // The order the playbooks are given in does not matter.
    let reversed: Vec<Playbook> = playbooks.iter().rev().cloned().collect();
    assert_eq!(route(&finding, &reversed).0, route(&finding, &playbooks).0);

    // A non-backdoor EC2 type falls to the next.
    assert_eq!(
        chosen(&ec2("Recon:EC2/Portscan", 5.0), &playbooks),
        "any-ec2"
    );
}

#[test]
fn equal_priority_ties_break_by_name_whatever_the_order() {
    // Validation refuses such a pair; should one slip through, the choice is stable.
    let a = rule_playbook("alpha", r#"finding-types: ["*:EC2/*"]"#);
    let b = rule_playbook("bravo", r#"finding-types: ["*:EC2/*"]"#);
    let finding = ec2("Recon:EC2/Portscan", 5.0);
    for playbooks in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
        let (reason, also) = matched(&finding, &playbooks);
        assert_eq!(reason.playbook, "alpha");
        assert_eq!(also, vec!["bravo (priority 0)".to_string()]);
    }
}

#[test]
fn include_flags_admit_samples_and_archived_findings() {
    let p = rule_playbook("everything", "include-sample: true\ninclude-archived: true");
    let mut svc = service(Some("ACTOR"));
    svc["archived"] = json!(true);
    svc["additionalInfo"] = json!({"sample": true});
    let finding = finding_with("Recon:EC2/Portscan", 5.0, instance_resource(), svc);
    assert!(accepts(&p, &finding));
    let strict = rule_playbook("strict", "");
    let why = evaluate(&strict.matcher, &finding).expect_err("sample");
    assert!(why.contains("sample"), "{why}");
}

/// Lets a test re-type a finding while keeping the rest.
trait WithType {
    fn with_type(self, finding_type: &str) -> Finding;
}

impl WithType for Finding {
    fn with_type(mut self, finding_type: &str) -> Finding {
        self.finding_type =
            cordon_core::finding::FindingType::parse(finding_type).expect("valid test type");
        self
    }
}
