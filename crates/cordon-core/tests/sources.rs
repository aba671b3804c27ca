//! Findings from Security Hub (ASFF) and AWS Config: parsing every shape
//! they arrive in, routing on the source-specific match keys, and the
//! promise that a GuardDuty finding delivered through Security Hub is the
//! same case, the same playbook and the same targets as the original.

use cordon_core::finding::{
    Finding, FindingError, Resource, SeverityLabel, Source, Wrapping, parse_findings,
    parse_single_finding,
};
use cordon_core::plan::{Plan, Target, try_plan};
use cordon_core::playbook::Playbook;
use cordon_core::route::{Route, route};
use cordon_core::validate::{rules_overlap, validate_text};

#[path = "support/playbooks.rs"]
mod playbooks;
use playbooks::{playbook, shipped};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");

fn read(path: &str) -> String {
    let path = format!("{FIXTURES}/{path}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn all(path: &str) -> Vec<Finding> {
    parse_findings(&read(path), path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn one(path: &str) -> Finding {
    parse_single_finding(&read(path), path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn plan_with(finding: &Finding, playbooks: &[Playbook]) -> Plan {
    match route(finding, playbooks) {
        (Route::Matched { reason, .. }, Some(playbook)) => {
            try_plan(finding, playbook, reason).unwrap_or_else(|e| panic!("{}: {e}", finding.id))
        }
        (other, _) => panic!("{} matched nothing: {other:?}", finding.id),
    }
}

/// The answer that matters to a responder: which resources each step acts on.
fn targets(plan: &Plan) -> Vec<(String, String, Vec<String>)> {
    plan.steps
        .iter()
        .map(|s| (s.id.clone(), s.target.label(), s.resources()))
        .collect()
}

#[test]
fn a_security_hub_event_yields_every_finding_and_keeps_the_whole_event() {
    let text = read("securityhub/event-guardduty-and-inspector.json");
    let found = parse_findings(&text, "event").unwrap();
    assert_eq!(found.len(), 2);
    for (i, f) in found.iter().enumerate() {
        assert_eq!(f.source, Source::SecurityHub);
        assert_eq!(f.wrapping, Wrapping::SecurityHubEvent { index: i });
        assert_eq!(f.raw, text, "the raw text is the event, verbatim");
        assert_eq!(
            f.event_id.as_deref(),
            Some("2f1a0b9c-8d7e-4f6a-b5c4-d3e2f1a0b9c8")
        );
        let detail = f.detail_json();
        assert_eq!(
            detail["Id"],
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["detail"]["findings"][i]["Id"]
        );
    }
    let inspector = &found[1];
    assert_eq!(inspector.product_name(), Some("Inspector"));
    assert_eq!(
        inspector.finding_type.raw,
        "Software and Configuration Checks/Vulnerabilities/CVE"
    );
    assert_eq!(inspector.severity.value(), 9.0);
    assert_eq!(inspector.severity_label(), Some(SeverityLabel::Critical));
    assert!(inspector.id.starts_with("securityhub-") && inspector.id.len() == 52);
    match &inspector.resource {
        Resource::Instance(i) => assert_eq!(i.instance_id, "i-0b2c3d4e5f6071829"),
        other => panic!("{other:?}"),
    }
    assert_eq!(inspector.source_resource_type(), Some("AwsEc2Instance"));
}

#[test]
fn a_guardduty_finding_through_security_hub_is_the_original() {
    let direct = one("findings/event-ec2-high.json");
    for via in [
        all("securityhub/event-guardduty-and-inspector.json").remove(0),
        one("securityhub/bare-guardduty-ec2.json"),
    ] {
        assert_eq!(via.source, Source::SecurityHub);
        assert_eq!(via.id, direct.id);
        assert_eq!(via.finding_type, direct.finding_type);
        assert_eq!(via.severity, direct.severity);
        assert_eq!(via.account_id, direct.account_id);
        assert_eq!(via.region, direct.region);
        assert_eq!(via.partition, direct.partition);
        assert_eq!(via.arn, direct.arn);
        assert_eq!(via.service.detector_id, direct.service.detector_id);
        assert_eq!(via.service.resource_role, direct.service.resource_role);
        assert_eq!(via.service.count, direct.service.count);
        assert_eq!(via.severity_label(), direct.severity_label());
        assert_eq!(via.product_name(), direct.product_name());
        assert_eq!(via.product_arn(), direct.product_arn());
        let playbooks = shipped();
        let (a, b) = (plan_with(&direct, &playbooks), plan_with(&via, &playbooks));
        assert_eq!(a.case_id, b.case_id, "one case, whichever way it came");
        assert_eq!(a.playbook, b.playbook);
        assert_eq!(a.playbook, "ec2-compromised-high");
        assert_eq!(targets(&a), targets(&b));
        assert_eq!(a.resources(), b.resources());
        let instance = |plan: &Plan| {
            plan.steps.iter().find_map(|s| match &s.target {
                Target::Instance(i) => Some((
                    i.instance_id.clone(),
                    i.instance_profile_arn.clone(),
                    i.network_interfaces
                        .iter()
                        .map(|e| e.network_interface_id.to_string())
                        .collect::<Vec<_>>(),
                )),
                _ => None,
            })
        };
        assert_eq!(instance(&a), instance(&b));
    }
}

#[test]
fn get_findings_output_reads_keys_buckets_and_security_groups() {
    let found = all("securityhub/get-findings.json");
    assert_eq!(found.len(), 3);
    assert!(found.iter().all(|f| f.wrapping == Wrapping::GetFindings));

    let key = &found[0];
    let direct = one("findings/iam-user-key.json");
    assert_eq!(key.id, direct.id);
    assert_eq!(key.finding_type, direct.finding_type);
    match (&key.resource, &direct.resource) {
        (Resource::AccessKey(a), Resource::AccessKey(b)) => {
            assert_eq!(a.access_key_id, b.access_key_id);
            assert_eq!(a.user_name, b.user_name);
            assert_eq!(a.user_type, b.user_type);
        }
        other => panic!("{other:?}"),
    }
    let playbooks = shipped();
    let (a, b) = (plan_with(&direct, &playbooks), plan_with(key, &playbooks));
    assert_eq!(
        (a.case_id.clone(), a.playbook.clone()),
        (b.case_id.clone(), b.playbook.clone())
    );
    assert_eq!(targets(&a), targets(&b));

    let macie = &found[1];
    assert_eq!(macie.product_name(), Some("Macie"));
    assert_eq!(
        macie.resource,
        Resource::S3Bucket {
            bucket_names: vec!["customer-exports-prod".to_string()]
        }
    );
    let control = &found[2];
    assert_eq!(
        control.resource,
        Resource::SecurityGroup {
            group_id: "sg-0a1b2c3d4e5f60799".to_string()
        }
    );
    assert_eq!(
        control.asff.as_ref().unwrap().compliance_status.as_deref(),
        Some("FAILED")
    );
    assert_eq!(control.nothing_to_do(), None);
}

#[test]
fn arrays_bare_findings_and_unknown_fields_are_read() {
    let found = all("securityhub/array.json");
    assert_eq!(found.len(), 2);
    let value = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    assert_eq!(
        value(&found[0].raw),
        value(&read("securityhub/bare-inspector.json")),
        "an array element keeps its own text"
    );
    let bare = one("securityhub/bare-inspector.json");
    assert_eq!(bare.wrapping, Wrapping::Bare);
    assert_eq!(
        bare.id, found[0].id,
        "the id is derived from the product and Id alone"
    );
    let passed = &found[1];
    let why = passed
        .nothing_to_do()
        .expect("a passed check needs nothing");
    assert!(why.contains("PASSED"), "{why}");
    match route(passed, &shipped()) {
        (Route::NoMatch { rejections }, None) => {
            assert!(
                rejections.iter().all(|(_, r)| r.contains("nothing to do")),
                "{rejections:?}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_config_event_is_read_with_its_rule_resource_and_compliance() {
    let f = one("config/bucket-non-compliant.json");
    assert_eq!(f.source, Source::Config);
    assert_eq!(f.wrapping, Wrapping::EventBridge);
    assert_eq!(f.account_id, "111122223333");
    assert_eq!(f.region, "us-east-1");
    let c = f.config.as_ref().unwrap();
    assert_eq!(c.rule_name, "s3-bucket-level-public-access-prohibited");
    assert_eq!(c.resource_type, "AWS::S3::Bucket");
    assert_eq!(c.compliance, "NON_COMPLIANT");
    assert_eq!(c.old_compliance.as_deref(), Some("COMPLIANT"));
    assert_eq!(c.evaluated_at, "2024-06-12T09:30:02.114Z");
    assert_eq!(
        f.resource,
        Resource::S3Bucket {
            bucket_names: vec!["customer-exports-prod".to_string()]
        }
    );
    assert_eq!(f.nothing_to_do(), None);
    assert_eq!(f.severity_label(), None);
    assert!(f.id.starts_with("config-"));
    assert_eq!(f.raw, read("config/bucket-non-compliant.json"));
    // The bare detail is the same evaluation, so the same case.
    let detail = one("config/instance-imdsv2-detail.json");
    assert_eq!(detail.wrapping, Wrapping::Bare);
    match &detail.resource {
        Resource::Instance(i) => assert_eq!(i.instance_id, "i-0a1b2c3d4e5f60718"),
        other => panic!("{other:?}"),
    }
    let sg = one("config/sg-restricted-ssh.json");
    assert_eq!(
        sg.resource,
        Resource::SecurityGroup {
            group_id: "sg-0a1b2c3d4e5f60799".to_string()
        }
    );
}

/// An account-level evaluation with its account id swapped for `account`
/// in the detail's `resourceId` (and the qualifier's, where `qualifier`).
fn account_evaluation(account: &str, qualifier: bool) -> String {
    let mut event: serde_json::Value =
        serde_json::from_str(&read("config/account-snapshots-public.json"))
            .unwrap_or_else(|e| panic!("the fixture: {e}"));
    event["detail"]["resourceId"] = serde_json::json!(account);
    if qualifier {
        event["detail"]["newEvaluationResult"]["evaluationResultIdentifier"]["evaluationResultQualifier"]
            ["resourceId"] = serde_json::json!(account);
    }
    event.to_string()
}

#[test]
fn an_account_level_config_evaluation_plans_the_account_in_its_region() {
    let f = one("config/account-snapshots-public.json");
    assert_eq!(
        f.resource,
        Resource::Account {
            account_id: "111122223333".to_string()
        }
    );
    assert_eq!(f.source_resource_type(), Some("AWS::::Account"));
    assert_eq!(f.region, "eu-west-1");
    let plan = plan_with(&f, &shipped());
    assert_eq!(plan.playbook, "config-ebs-snapshot-public-account");
    assert_eq!(
        targets(&plan),
        [
            (
                "make-private".to_string(),
                "account 111122223333 in eu-west-1".to_string(),
                vec!["account:111122223333:eu-west-1".to_string()]
            ),
            ("notify".to_string(), "case".to_string(), vec![]),
        ]
    );
    assert_eq!(
        plan.steps[0].target,
        Target::Account {
            account_id: "111122223333".to_string(),
            region: "eu-west-1".to_string()
        }
    );
    assert_eq!(
        serde_json::to_string(&plan.steps[0].target).unwrap(),
        r#"{"kind":"account","account-id":"111122223333","region":"eu-west-1"}"#
    );
    // Deterministic like every Config case: the same evaluation is the same
    // case, and the bare detail (a `$.detail` input path) too.
    let again = plan_with(&one("config/account-snapshots-public.json"), &shipped());
    assert_eq!(plan.case_id, again.case_id);
    let event: serde_json::Value =
        serde_json::from_str(&read("config/account-snapshots-public.json")).unwrap();
    let detail = parse_single_finding(&event["detail"].to_string(), "detail").unwrap();
    assert_eq!(plan_with(&detail, &shipped()).case_id, plan.case_id);
    // The resource only in the evaluation's qualifier reads the same.
    let mut bare = event["detail"].clone();
    let object = bare.as_object_mut().unwrap();
    object.remove("resourceId");
    object.remove("resourceType");
    let qualified = parse_single_finding(&bare.to_string(), "qualifier").unwrap();
    assert_eq!(qualified.resource, f.resource);
    // The per-snapshot playbook does not answer it, nor this one a snapshot.
    let per_snapshot = shipped()
        .into_iter()
        .find(|p| p.name == "config-ebs-snapshot-public-restorable-check")
        .unwrap();
    assert!(!matches!(
        route(&f, std::slice::from_ref(&per_snapshot)).0,
        Route::Matched { .. }
    ));
}

#[test]
fn an_account_evaluation_naming_another_account_or_a_hostile_id_is_refused_before_any_plan() {
    // Another account than the evaluation's own: refused when read, one line.
    for other in [
        "444455556666",
        "11112222333",
        "111122223333 ",
        "*",
        "111122223333\n",
    ] {
        let error = parse_findings(&account_evaluation(other, true), "event").unwrap_err();
        let shown = error.to_string();
        assert!(
            matches!(error, FindingError::Invalid { .. }),
            "{other:?}: {error:?}"
        );
        assert!(!shown.contains('\n'), "one line: {shown}");
        assert!(
            shown.contains("is not its `awsAccountId` 111122223333"),
            "{shown}"
        );
    }
    // The same hostile value in both places: the planner refuses it as an
    // account id, naming the field, before any AWS call.
    let forged = read("config/account-snapshots-public.json").replace("111122223333", "1111*");
    let hostile = parse_single_finding(&forged, "event").unwrap();
    let any = playbook(
        "name: p\nmatch:\n  sources: [config]\nsteps:\n  - id: s\n    action: make-account-snapshots-private\n",
    );
    let (Route::Matched { reason, .. }, _) = route(&hostile, std::slice::from_ref(&any)) else {
        panic!("routes");
    };
    let error = try_plan(&hostile, &any, reason).unwrap_err();
    assert_eq!(error.field, "awsAccountId");
    assert!(
        error.to_string().contains("no AWS call was made"),
        "{error}"
    );
    // A forged journal cannot smuggle one in either.
    for forged in [
        r#"{"kind":"account","account-id":"1111*","region":"us-east-1"}"#,
        r#"{"kind":"account","account-id":"111122223333","region":"us-east-1\n"}"#,
    ] {
        assert!(serde_json::from_str::<Target>(forged).is_err(), "{forged}");
    }
}

#[test]
fn config_case_ids_are_per_evaluation() {
    let text = read("config/bucket-non-compliant.json");
    let first = one("config/bucket-non-compliant.json");
    let again = parse_single_finding(&text, "again").unwrap();
    let pb =
        playbook("name: p\nmatch:\n  sources: [config]\nsteps:\n  - id: n\n    action: notify\n");
    let plan = |f: &Finding| plan_with(f, std::slice::from_ref(&pb)).case_id;
    assert_eq!(
        plan(&first),
        plan(&again),
        "a re-delivered event is the same case"
    );
    let later = parse_single_finding(
        &text.replace("2024-06-12T09:30:02.114Z", "2024-06-13T09:30:02.114Z"),
        "later",
    )
    .unwrap();
    assert_ne!(
        plan(&first),
        plan(&later),
        "a later failure is a new evaluation"
    );
    let elsewhere =
        parse_single_finding(&text.replace("\"111122223333\"", "\"444455556666\""), "x").unwrap();
    assert_ne!(plan(&first), plan(&elsewhere));
}

#[test]
fn a_compliant_evaluation_is_read_and_answered_with_nothing_to_do() {
    let f = one("config/bucket-compliant.json");
    let why = f.nothing_to_do().unwrap();
    for words in [
        "customer-exports-prod",
        "is \"COMPLIANT\" with Config rule",
        "s3-bucket-level-public-access-prohibited",
        "nothing to do",
    ] {
        assert!(why.contains(words), "{why}");
    }
    let pb =
        playbook("name: p\nmatch:\n  sources: [config]\nsteps:\n  - id: n\n    action: notify\n");
    match route(&f, &[pb]) {
        (Route::NoMatch { rejections }, None) => assert_eq!(rejections[0].1, why),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_new_match_keys_route_on_source_rule_product_type_and_label() {
    let config = one("config/bucket-non-compliant.json");
    let sg = one("config/sg-restricted-ssh.json");
    let hub = all("securityhub/get-findings.json");
    let (key, macie, control) = (&hub[0], &hub[1], &hub[2]);
    let guardduty = one("findings/iam-user-key.json");
    let inspector = one("securityhub/bare-inspector.json");
    let step = "steps:\n  - id: n\n    action: notify\n";
    let cases: &[(&str, &[(&Finding, bool)])] = &[
        (
            "match:\n  sources: [config]\n  config-rules: [\"s3-bucket-*\"]\n  resource-types: [\"AWS::S3::Bucket\"]\n",
            &[
                (&config, true),
                (&sg, false),
                (macie, false),
                (&guardduty, false),
            ],
        ),
        (
            "match:\n  config-rules: [restricted-ssh, restricted-common-ports]\n",
            &[(&sg, true), (&config, false), (control, false)],
        ),
        (
            "match:\n  resource-types: [S3Bucket]\n",
            &[(&config, true), (macie, true), (&sg, false)],
        ),
        (
            "match:\n  resource-types: [AwsS3Bucket]\n",
            &[(macie, true), (&config, false)],
        ),
        (
            "match:\n  products: [GuardDuty]\n",
            &[
                (key, true),
                (&guardduty, true),
                (macie, false),
                (&config, false),
            ],
        ),
        (
            "match:\n  products: [\"arn:aws:securityhub:*::product/aws/inspector\"]\n",
            &[(&inspector, true), (key, false)],
        ),
        (
            "match:\n  asff-types: [\"Software and Configuration Checks/Vulnerabilities/*\"]\n",
            &[(&inspector, true), (control, false), (&guardduty, false)],
        ),
        (
            "match:\n  severity-labels: [CRITICAL]\n",
            &[
                (&inspector, true),
                (control, true),
                (macie, false),
                (&config, false),
            ],
        ),
        (
            "match:\n  severity-labels: [MEDIUM]\n",
            &[(key, true), (&guardduty, true)],
        ),
        (
            "match:\n  sources: [guardduty, securityhub]\n  resource-types: [SecurityGroup]\n",
            &[(control, true), (&sg, false)],
        ),
    ];
    for (rule, expectations) in cases {
        let pb = playbook(&format!("name: p\n{rule}{step}"));
        for (finding, expected) in *expectations {
            let got = cordon_core::route::evaluate(&pb.matcher, finding);
            assert_eq!(
                got.is_ok(),
                *expected,
                "rule:\n{rule}finding {} ({}): {got:?}",
                finding.id,
                finding.source
            );
        }
    }
}

#[test]
fn overlap_sees_sources_and_config_rules() {
    let rule = |yaml: &str| {
        playbook(&format!(
            "name: p\n{yaml}steps:\n  - id: n\n    action: notify\n"
        ))
        .matcher
    };
    let ssh = rule("match:\n  config-rules: [restricted-ssh]\n");
    let ports = rule("match:\n  config-rules: [restricted-common-ports]\n");
    let any_restricted = rule("match:\n  config-rules: [\"restricted-*\"]\n");
    let guardduty_only = rule("match:\n  sources: [guardduty]\n");
    let asff = rule("match:\n  asff-types: [\"Software*\"]\n");
    assert!(!rules_overlap(&ssh, &ports));
    assert!(rules_overlap(&ssh, &any_restricted));
    assert!(!rules_overlap(&ssh, &guardduty_only));
    assert!(!rules_overlap(&asff, &ssh));
    assert!(rules_overlap(
        &asff,
        &rule("match:\n  products: [Inspector]\n")
    ));
}

#[test]
fn hostile_ids_from_security_hub_and_config_are_refused_before_any_plan() {
    let pb = |yaml: &str| {
        playbook(&format!(
            "name: p\n{yaml}steps:\n  - id: t\n    action: tag-resource\n    with:\n      tags: {{a: b}}\n"
        ))
    };
    let instance = pb("match:\n  resource-types: [Instance]\n");
    let event = read("securityhub/event-guardduty-and-inspector.json")
        .replace("instance/i-0b2c3d4e5f6071829", "instance/i-*");
    let hostile = parse_findings(&event, "event").unwrap().remove(1);
    let (Route::Matched { reason, .. }, _) = route(&hostile, std::slice::from_ref(&instance))
    else {
        panic!("the hostile finding should route");
    };
    let error = try_plan(&hostile, &instance, reason).unwrap_err();
    assert!(error.field.starts_with("Resources[0]"), "{}", error.field);
    assert!(
        error.to_string().contains("no AWS call was made"),
        "{error}"
    );

    let config = read("config/instance-imdsv2-detail.json")
        .replace("i-0a1b2c3d4e5f60718", "i-0a1b2c3d4e5f60718/../../x");
    let hostile = parse_single_finding(&config, "detail").unwrap();
    let (Route::Matched { reason, .. }, _) = route(&hostile, std::slice::from_ref(&instance))
    else {
        panic!("the hostile evaluation should route");
    };
    let error = try_plan(&hostile, &instance, reason).unwrap_err();
    assert!(error.field.starts_with("resourceId"), "{}", error.field);

    // Account and region are checked as for GuardDuty, named as the source names them.
    let forged = read("config/bucket-non-compliant.json").replace(
        "\"awsAccountId\": \"111122223333\"",
        "\"awsAccountId\": \"1111*\"",
    );
    let hostile = parse_single_finding(&forged, "event").unwrap();
    let any = pb("match:\n  sources: [config]\n");
    let (Route::Matched { reason, .. }, _) = route(&hostile, std::slice::from_ref(&any)) else {
        panic!("routes");
    };
    let error = try_plan(&hostile, &any, reason).unwrap_err();
    assert_eq!(error.field, "awsAccountId");
}

#[test]
fn malformed_security_hub_and_config_input_is_a_clear_error() {
    let cases = [
        (
            r#"{"detail-type":"Security Hub Findings - Imported","source":"aws.securityhub","detail":{"findings":{}}}"#,
            "`detail.findings` is an object",
        ),
        (
            r#"{"SchemaVersion":"2018-10-08","ProductArn":"arn:aws:securityhub:us-east-1::product/aws/guardduty","Id":"not-an-arn","AwsAccountId":"111122223333","Region":"us-east-1","Types":["TTPs/x/Backdoor:EC2-X"],"Severity":{"Product":5}}"#,
            "is not a GuardDuty finding ARN",
        ),
        (
            r#"{"SchemaVersion":"2018-10-08","ProductArn":"arn:aws:securityhub:us-east-1::product/aws/guardduty","Id":"arn:aws:guardduty:us-east-1:111122223333:detector/d/finding/f","AwsAccountId":"111122223333","Region":"us-east-1","Types":["Effects/Data Exposure"],"Severity":{"Product":5}}"#,
            "holds a GuardDuty finding type",
        ),
        (
            r#"{"ProductArn":"arn:aws:securityhub:us-east-1::product/aws/inspector","Id":"x","Region":"us-east-1","Severity":{"Label":"LOW"}}"#,
            "`awsAccountId` is missing",
        ),
        (
            r#"{"detail-type":"Config Rules Compliance Change","source":"aws.config","account":"111122223333","region":"us-east-1","detail":{"configRuleName":"r","resourceType":"AWS::S3::Bucket","resourceId":"b-1"}}"#,
            "`newEvaluationResult` is missing",
        ),
        (
            r#"{"configRuleName":"r","resourceId":"b-1","resourceType":"AWS::S3::Bucket","awsAccountId":"111122223333","awsRegion":"us-east-1","newEvaluationResult":{"complianceType":"NON_COMPLIANT"}}"#,
            "no evaluation time",
        ),
    ];
    for (input, words) in cases {
        match parse_findings(input, "input") {
            Err(e @ (FindingError::Invalid { .. } | FindingError::NotAFinding { .. })) => {
                assert!(e.to_string().contains(words), "{e}")
            }
            other => panic!("{input}: {other:?}"),
        }
    }
}

/// Problems of an inline playbook, as `file:line:column: path: message`.
fn problems(yaml: &str) -> Vec<String> {
    match validate_text(yaml, "p.yaml") {
        Ok(_) => Vec::new(),
        Err(problems) => problems.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_new_match_keys_are_validated_with_file_line_and_column() {
    let notify = "steps:\n  - id: n\n    action: notify\n";
    let cases: &[(&str, &str)] = &[
        (
            "name: p\nmatch:\n  severity-labels: [HIGH, SEVERE]\n",
            "p.yaml:3:",
        ),
        (
            "name: p\nmatch:\n  sources: [guardduty, inspector]\n",
            "p.yaml:3:",
        ),
        (
            "name: p\nmatch:\n  sources: [guardduty]\n  config-rules: [restricted-ssh]\n",
            "no finding can match",
        ),
        (
            "name: p\nmatch:\n  config-rules: [restricted-ssh]\n  severity:\n    bands: [high]\n",
            "Config evaluations, which have no severity",
        ),
        (
            "name: p\nmatch:\n  resource-types: [\"AWS::S3::Bucket\"]\n  asff-types: [\"Software*\"]\n",
            "no finding can match",
        ),
        (
            "name: p\nmatch:\n  config-rules: [\"\"]\n",
            "match.config-rules[0]: empty pattern",
        ),
        (
            "name: p\nmatch:\n  resource-types: [\"AWS::S3::Buckets\"]\n",
            "unknown resource type \"AWS::S3::Buckets\" (hint: did you mean `AWS::S3::Bucket`?)",
        ),
    ];
    for (head, expected) in cases {
        let found = problems(&format!("{head}{notify}"));
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{head}: expected {expected:?} in {found:#?}"
        );
        assert!(found.iter().all(|p| p.starts_with("p.yaml:")), "{found:#?}");
    }
    // A step's target must be something the matched resource types can name.
    let found = problems(
        "name: p\nmatch:\n  resource-types: [\"AWS::S3::Bucket\"]\nsteps:\n  - id: i\n    action: isolate-instance\n",
    );
    assert!(
        found.iter().any(|p| p.contains("acts on an instance")),
        "{found:#?}"
    );
    assert!(problems(
        "name: p\nmatch:\n  sources: [config]\n  resource-types: [\"AWS::EC2::Instance\"]\nsteps:\n  - id: i\n    action: isolate-instance\n",
    )
    .is_empty());
}
