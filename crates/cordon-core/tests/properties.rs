//! Property tests: finding parsing, planning, playbook loading and routing
//! against arbitrary and hostile input. Zero panics (every bad input is an
//! error value), and bounded memory (the counting allocator below caps and
//! measures the heap).
//!
//! Case counts are modest so `cargo test` takes seconds; `scripts/fuzz` runs
//! each property with `PROPTEST_CASES=1000000` (or what it is given) in
//! release mode and prints how many inputs each one saw.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cap::Cap;
use cordon_core::finding::{Finding, parse_findings};
use cordon_core::ids::IdKind;
use cordon_core::plan::{Plan, Target, plan, try_plan};
use cordon_core::playbook::Playbook;
use cordon_core::route::{Route, route};
use cordon_core::validate::{limits, load_playbooks, validate_text};
use cordon_core::yaml;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, 2 * 1024 * 1024 * 1024);

/// Peak heap of the whole binary, every property running in parallel.
const PEAK_LIMIT: usize = 512 * 1024 * 1024;

/// Cases per property: `PROPTEST_CASES`, else a count that keeps `cargo test` quick.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

/// Runs one property, then reports how many inputs it saw and checks the heap.
fn check<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    };
    let inputs = AtomicU64::new(0);
    let started = Instant::now();
    let result = TestRunner::new(config).run(&strategy, |value| {
        inputs.fetch_add(1, Ordering::Relaxed);
        test(value)
    });
    let seconds = started.elapsed().as_secs_f64();
    let inputs = inputs.load(Ordering::Relaxed);
    eprintln!(
        "property {name}: {inputs} inputs in {seconds:.1} s ({:.0}/s), heap peak so far {} MiB",
        inputs as f64 / seconds.max(1e-9),
        ALLOCATOR.max_allocated() / (1024 * 1024)
    );
    if let Err(failure) = result {
        panic!("property {name}: {failure}");
    }
    let peak = ALLOCATOR.max_allocated();
    assert!(
        peak < PEAK_LIMIT,
        "{name}: heap peaked at {} MiB",
        peak / (1024 * 1024)
    );
}

fn shipped_playbooks() -> &'static [Playbook] {
    static PLAYBOOKS: OnceLock<Vec<Playbook>> = OnceLock::new();
    PLAYBOOKS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks");
        load_playbooks(&dir)
            .expect("the shipped playbooks are valid")
            .into_iter()
            .map(|loaded| loaded.playbook)
            .collect()
    })
}

fn shipped_playbook_texts() -> &'static [String] {
    static TEXTS: OnceLock<Vec<String>> = OnceLock::new();
    TEXTS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect()
    })
}

// ---------- strategies ----------

/// Strings that go where ids go: near-misses of every format, wildcards,
/// path and JSON fragments, controls, bidi overrides, any Unicode, and now
/// and then a huge one.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => ".{0,24}",
        3 => "[\\x00-\\x1f\\x7f-\\x9f\u{200b}-\u{200f}\u{202a}-\u{202e}\u{2066}-\u{2069}a-zA-Z0-9*?/.:\"{}\\[\\] -]{0,24}",
        2 => "(i|eni|sg|vpc|subnet|vol|snap|ami)-[0-9a-fA-F*?/.]{6,19}",
        2 => "(AKIA|ASIA|AIDA)[A-Z0-9a-z*]{14,18}",
        1 => "[0-9]{10,14}",
        1 => "[a-z]{1,3}(-[a-z]{1,6}){1,2}-[0-9]{1,3}",
        1 => "arn:(aws|aws-cn|x):iam::[0-9]{11,13}:(instance-profile|role|user)/[a-zA-Z0-9/*.+=,@_-]{0,20}",
        2 => prop::sample::select(vec![
            "", "*", "?", " ", "i-0123/../../x", "eni-0aaa\"}]}", "NaN", "nan", "inf", "-inf",
            "Infinity", "1e309", "-1e309", "-5", "0", "11", "10.0000001", "0.9999999", "AKIA*",
            "\n", "\u{1b}[2J", "\u{202e}", "GeneratedFindingVPCId", "arn:aws:iam::111122223333:example/instance/profile",
        ])
        .prop_map(str::to_string),
        1 => (1usize..64).prop_map(|k| "x".repeat(k * 1024)),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        hostile_string().prop_map(Value::String),
    ]
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "id",
            "type",
            "severity",
            "accountId",
            "region",
            "partition",
            "resource",
            "resourceType",
            "instanceDetails",
            "instanceId",
            "networkInterfaces",
            "networkInterfaceId",
            "securityGroups",
            "groupId",
            "accessKeyDetails",
            "accessKeyId",
            "userName",
            "userType",
            "service",
            "detail",
            "detail-type",
            "source",
            "findings",
            "Findings",
            "Id",
            "Type",
            "Severity",
        ])
        .prop_map(str::to_string),
        ".{0,12}",
    ]
}

/// Any JSON value, nested up to a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

fn instance_finding() -> Value {
    json!({
        "schemaVersion": "2.0", "accountId": "111122223333", "region": "us-east-1", "partition": "aws",
        "id": "8ec6a1b2c3d4e5f60718293a4b5c6d7e", "type": "Backdoor:EC2/C&CActivity.B!DNS", "severity": 8,
        "updatedAt": "2026-11-23T10:00:00.000Z",
        "resource": {"resourceType": "Instance", "instanceDetails": {
            "instanceId": "i-0a1b2c3d4e5f60718",
            "iamInstanceProfile": {"arn": "arn:aws:iam::111122223333:instance-profile/web", "id": "AIPAEXAMPLE"},
            "networkInterfaces": [{"networkInterfaceId": "eni-0a1b2c3d4e5f60711", "vpcId": "vpc-0a1b2c3d4e5f60731",
                "subnetId": "subnet-0a1b2c3d4e5f60721", "securityGroups": [{"groupId": "sg-0a1b2c3d4e5f60701"}]}]}},
        "service": {"resourceRole": "TARGET", "archived": false, "count": 1,
            "additionalInfo": {"value": "{\"sample\":false}"}}
    })
}

fn key_finding() -> Value {
    json!({
        "schemaVersion": "2.0", "accountId": "111122223333", "region": "us-east-1", "partition": "aws",
        "id": "1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f", "type": "UnauthorizedAccess:IAMUser/MaliciousIPCaller",
        "severity": 8,
        "resource": {"resourceType": "AccessKey", "accessKeyDetails": {"accessKeyId": "AKIAEXAMPLEDEPLOY042",
            "principalId": "AIDAEXAMPLE", "userName": "deploy-bot", "userType": "IAMUser"}},
        "service": {"resourceRole": "ACTOR"}
    })
}

const FINDING_POINTERS: &[&str] = &[
    "/id",
    "/type",
    "/severity",
    "/accountId",
    "/region",
    "/partition",
    "/resource",
    "/resource/resourceType",
    "/resource/instanceDetails",
    "/resource/instanceDetails/instanceId",
    "/resource/instanceDetails/iamInstanceProfile",
    "/resource/instanceDetails/iamInstanceProfile/arn",
    "/resource/instanceDetails/networkInterfaces",
    "/resource/instanceDetails/networkInterfaces/0",
    "/resource/instanceDetails/networkInterfaces/0/networkInterfaceId",
    "/resource/instanceDetails/networkInterfaces/0/vpcId",
    "/resource/instanceDetails/networkInterfaces/0/securityGroups",
    "/resource/instanceDetails/networkInterfaces/0/securityGroups/0/groupId",
    "/resource/accessKeyDetails",
    "/resource/accessKeyDetails/accessKeyId",
    "/resource/accessKeyDetails/userName",
    "/resource/accessKeyDetails/userType",
    "/resource/accessKeyDetails/principalId",
    "/service",
    "/service/resourceRole",
    "/service/archived",
    "/service/count",
    "/service/additionalInfo",
];

/// A well-formed finding with one to four fields replaced by anything
/// (type confusion: numbers where strings go and back, objects, arrays,
/// hostile strings), in one of the three wrappings.
fn mutated_finding() -> impl Strategy<Value = String> {
    let edit = (prop::sample::select(FINDING_POINTERS), json_value());
    (any::<bool>(), prop::collection::vec(edit, 1..4), 0u8..3).prop_map(
        |(instance, edits, wrapping)| {
            let mut finding = if instance {
                instance_finding()
            } else {
                key_finding()
            };
            for (pointer, value) in edits {
                if let Some(slot) = finding.pointer_mut(pointer) {
                    *slot = value;
                }
            }
            let document = match wrapping {
                0 => finding,
                1 => json!({"version": "0", "id": "e1", "detail-type": "GuardDuty Finding",
                    "source": "aws.guardduty", "account": "111122223333", "region": "us-east-1",
                    "detail": finding}),
                _ => json!({"findings": [finding]}),
            };
            document.to_string()
        },
    )
}

/// Every id in a plan's targets has its AWS format.
fn assert_ids_well_formed(plan: &Plan) -> Result<(), TestCaseError> {
    let ok = |kind: IdKind, text: &str| -> Result<(), TestCaseError> {
        prop_assert!(kind.matches(text), "{kind:?} {text:?} reached a plan");
        Ok(())
    };
    ok(IdKind::FindingId, &plan.finding.id)?;
    ok(IdKind::Account, &plan.finding.account_id)?;
    ok(IdKind::Region, &plan.finding.region)?;
    ok(IdKind::Partition, &plan.finding.partition)?;
    for step in &plan.steps {
        match &step.target {
            Target::Instance(i) => {
                ok(IdKind::Instance, &i.instance_id)?;
                if let Some(arn) = &i.instance_profile_arn {
                    ok(IdKind::InstanceProfileArn, arn)?;
                }
            }
            Target::AccessKey(k) => {
                ok(IdKind::AccessKey, &k.access_key_id)?;
                if let Some(user) = &k.user_name {
                    ok(IdKind::UserName, user)?;
                }
            }
            Target::User { user_name } => ok(IdKind::UserName, user_name)?,
            Target::Role {
                role_name,
                instance_id,
                instance_profile_arn,
            } => {
                if let Some(role) = role_name {
                    ok(IdKind::RoleName, role)?;
                }
                if let Some(id) = instance_id {
                    ok(IdKind::Instance, id)?;
                }
                if let Some(arn) = instance_profile_arn {
                    ok(IdKind::InstanceProfileArn, arn)?;
                }
            }
            Target::Bucket { bucket_name } => ok(IdKind::BucketName, bucket_name)?,
            Target::SecurityGroup { group_id } => ok(IdKind::SecurityGroup, group_id)?,
            Target::Snapshot { snapshot_id } => ok(IdKind::Snapshot, snapshot_id)?,
            Target::Account { account_id, region } => {
                ok(IdKind::Account, account_id)?;
                ok(IdKind::Region, region)?;
            }
            Target::Case | Target::Unresolved { .. } => {}
        }
    }
    // A journaled plan reads back: what the planner let through, the checks on read accept.
    let text = serde_json::to_string(plan).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: Plan = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, plan);
    Ok(())
}

/// Routes and plans a parsed finding with the shipped playbooks; never panics,
/// and a plan that exists holds only well-formed ids.
fn route_and_plan(finding: &Finding) -> Result<(), TestCaseError> {
    let severity = finding.severity.value();
    prop_assert!(
        severity.is_finite() && (1.0..=10.0).contains(&severity),
        "severity {severity}"
    );
    let (first, chosen) = route(finding, shipped_playbooks());
    let (again, _) = route(finding, shipped_playbooks());
    prop_assert_eq!(&first, &again, "routing is not deterministic");
    let (Route::Matched { reason, .. }, Some(playbook)) = (first, chosen) else {
        return Ok(());
    };
    match try_plan(finding, playbook, reason.clone()) {
        Ok(checked) => {
            assert_ids_well_formed(&checked)?;
            prop_assert_eq!(plan(finding, playbook, reason), checked);
        }
        Err(error) => {
            let shown = error.to_string();
            prop_assert!(!shown.contains('\n'), "a multi-line error: {shown}");
            let lenient = plan(finding, playbook, reason);
            prop_assert!(
                lenient
                    .steps
                    .iter()
                    .all(|s| matches!(s.target, Target::Unresolved { .. })),
                "a refused finding left a step with a target"
            );
        }
    }
    Ok(())
}

fn parse_route_and_plan(text: &str) -> Result<(), TestCaseError> {
    if let Ok(findings) = parse_findings(text, "property") {
        for finding in &findings {
            route_and_plan(finding)?;
        }
    }
    Ok(())
}

// ---------- findings ----------

/// Up to 512 arbitrary bytes, read as text the way the CLI reads a file.
fn arbitrary_text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), 0..512)
        .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

#[test]
fn findings_from_arbitrary_bytes() {
    check("findings-from-bytes", arbitrary_text(), |text| {
        parse_route_and_plan(&text)
    });
}

#[test]
fn findings_from_arbitrary_json() {
    check("findings-from-json", json_value(), |value| {
        parse_route_and_plan(&value.to_string())
    });
}

#[test]
fn findings_with_confused_and_hostile_fields() {
    check("findings-mutated", mutated_finding(), |text| {
        parse_route_and_plan(&text)
    });
}

#[test]
fn severity_of_any_kind() {
    let severity = prop_oneof![
        any::<f64>().prop_map(|f| json!(f)),
        any::<f64>().prop_map(|f| json!(f.to_string())),
        prop::sample::select(vec![
            "NaN",
            "inf",
            "-inf",
            "+inf",
            "infinity",
            "1e309",
            "-0",
            "1e-400",
            "10.000000000000002",
            "0x10",
            " 5 ",
            "5,0",
            "",
        ])
        .prop_map(|s| json!(s)),
        hostile_string().prop_map(|s| json!(s)),
        json_value(),
    ];
    check("severity", severity, |severity| {
        let mut finding = instance_finding();
        finding["severity"] = severity;
        parse_route_and_plan(&finding.to_string())
    });
}

#[test]
fn deep_nesting_in_findings() {
    let shape = (0usize..20_000, 0u8..3, any::<bool>());
    check("findings-deep", shape, |(depth, kind, inside)| {
        let (open, close) = match kind {
            0 => ("[", "]"),
            1 => ("{\"a\":", "}"),
            _ => ("[{\"resource\":", "}]"),
        };
        let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
        let text = if inside {
            let mut finding = instance_finding();
            finding["resource"]["instanceDetails"]["tags"] = json!("NESTED");
            finding.to_string().replace("\"NESTED\"", &nested)
        } else {
            nested
        };
        parse_route_and_plan(&text)
    });
}

// ---------- playbooks ----------

/// After validation, every number a playbook sets is within its bound.
fn assert_bounded_numbers(playbook: &Playbook) -> Result<(), TestCaseError> {
    prop_assert!(limits::PRIORITY.range.contains(&playbook.priority));
    for step in &playbook.steps {
        prop_assert!(
            limits::MAX_ATTEMPTS
                .range
                .contains(&step.retry.max_attempts)
        );
        prop_assert!(
            limits::BACKOFF_MS
                .range
                .contains(&step.retry.initial_backoff_ms)
        );
        prop_assert!(
            limits::BACKOFF_MS
                .range
                .contains(&step.retry.max_backoff_ms)
        );
    }
    Ok(())
}

fn validate(text: &str) -> Result<(), TestCaseError> {
    if let Ok((playbook, _)) = validate_text(text, "property.yaml") {
        assert_bounded_numbers(&playbook)?;
    }
    Ok(())
}

#[test]
fn playbooks_from_arbitrary_bytes() {
    check("playbooks-from-bytes", arbitrary_text(), |text| {
        validate(&text)
    });
}

/// Fragments of YAML syntax, shuffled: anchors, aliases, flow and block
/// collections, tags, directives, document markers, quotes.
fn yaml_soup() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "- ",
        ": ",
        "? ",
        "&a ",
        "&b ",
        "*a",
        "*b",
        "[",
        "]",
        "{",
        "}",
        ", ",
        "\n",
        "  ",
        "    ",
        "name: x",
        "steps:",
        "match:",
        "priority: ",
        "with:",
        "retry:",
        "max-attempts: ",
        "action: notify",
        "id: s",
        "\"",
        "'",
        "|",
        ">",
        "!!str ",
        "!!binary ",
        "!tag ",
        "%YAML 1.2\n",
        "---\n",
        "...\n",
        "# c\n",
        "1e999",
        ".nan",
        ".inf",
        "-.inf",
        "0x1F",
        "99999999999999999999",
        "-1",
        "~",
        "null",
        "\t",
        "\u{1b}",
        "\u{202e}",
        "\u{feff}",
        "x",
        "0",
    ]);
    prop::collection::vec(token, 0..64).prop_map(|tokens| tokens.concat())
}

#[test]
fn playbooks_from_yaml_fragments() {
    check("playbooks-from-yaml", yaml_soup(), |text| validate(&text));
}

/// Every path of a JSON value, as JSON pointers.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// A shipped playbook with one to three values replaced by anything (JSON is
/// YAML, so the edited document is written back as JSON).
fn mutated_playbook() -> impl Strategy<Value = String> {
    let texts = shipped_playbook_texts();
    (
        0..texts.len(),
        prop::collection::vec((any::<prop::sample::Index>(), json_value()), 1..4),
    )
        .prop_map(move |(which, edits)| {
            let mut value = yaml::parse(&texts[which]).unwrap().value;
            for (index, replacement) in edits {
                let mut all = Vec::new();
                pointers(&value, String::new(), &mut all);
                let pointer = index.get(&all).clone();
                if pointer.is_empty() {
                    value = replacement;
                } else if let Some(slot) = value.pointer_mut(&pointer) {
                    *slot = replacement;
                }
            }
            value.to_string()
        })
}

#[test]
fn playbooks_with_confused_and_hostile_values() {
    check("playbooks-mutated", mutated_playbook(), |text| {
        validate(&text)
    });
}

#[test]
fn yaml_alias_chains_stay_within_budget() {
    // Anchors nested `levels` deep, each aliased `fan` times by the next: small
    // ones load, the rest are refused; none may take long or much memory.
    check(
        "yaml-alias-chains",
        (1usize..30, 1usize..12),
        |(levels, fan)| {
            let mut text = String::from("a0: &a0 [x]\n");
            for level in 1..=levels {
                let refs = vec![format!("*a{}", level - 1); fan].join(", ");
                text.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
            }
            let started = Instant::now();
            let parsed = yaml::parse(&text);
            // Generous: debug builds on a loaded two-core machine.
            prop_assert!(started.elapsed().as_secs_f64() < 2.0);
            let expanded = (0..=levels as u32)
                .map(|l| (fan as f64).powi(l as i32))
                .sum::<f64>();
            if expanded < 1_000.0 {
                prop_assert!(parsed.is_ok(), "{levels}x{fan}: {parsed:?}");
            }
            Ok(())
        },
    );
}

// ---------- routing ----------

/// Finding types from GuardDuty's grammar, near misses and junk.
fn finding_type() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z]{1,12}:[A-Za-z0-9]{1,10}/[A-Za-z&]{1,16}(\\.[A-Za-z.]{1,8})?(![A-Z]{1,4})?",
        "(Backdoor|Recon|UnauthorizedAccess|CryptoCurrency|Impact|AttackSequence):(EC2|IAMUser|Runtime|S3)/[A-Za-z]{1,12}",
        hostile_string(),
    ]
}

#[test]
fn routing_is_total_and_deterministic() {
    let shape = (
        finding_type(),
        1.0f64..=10.0,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    );
    check(
        "routing",
        shape,
        |(kind, severity, instance, actor, sample)| {
            let mut finding = if instance {
                instance_finding()
            } else {
                key_finding()
            };
            finding["type"] = json!(kind);
            finding["severity"] = json!(severity);
            finding["service"]["resourceRole"] = json!(if actor { "ACTOR" } else { "TARGET" });
            finding["service"]["additionalInfo"] = json!({ "sample": sample });
            parse_route_and_plan(&finding.to_string())
        },
    );
}
