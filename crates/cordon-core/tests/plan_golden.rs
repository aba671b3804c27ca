//! Golden tests of the planner: (fixture finding, shipped playbook) ⇒ the plan,
//! rendered as pretty JSON and compared byte for byte with `tests/golden/*.json`.
//!
//! To accept a deliberate change to the plan format or to a shipped playbook,
//! regenerate the files and review the diff before committing it:
//!
//! ```text
//! UPDATE_GOLDEN=1 cargo test -p cordon-core --test plan_golden
//! git diff crates/cordon-core/tests/golden/
//! ```
//!
//! A plan that looks wrong in a golden file (a target left unresolved that the
//! finding names, a `{placeholder}` left unfilled) is a planner bug, not a new
//! expectation.

use std::path::{Path, PathBuf};

#[path = "support/golden.rs"]
mod golden;

use cordon_core::finding::{Finding, Wrapping, parse_single_finding};
use cordon_core::plan::{CaseId, Plan, Target, plan};
use cordon_core::playbook::Playbook;
use cordon_core::route::{Route, route};
use cordon_core::validate::load_playbooks;
use serde_json::{Value, json};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/findings");
const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../playbooks");

/// The (fixture, playbook it routes to) pairs with a golden plan each.
const PAIRS: &[(&str, &str)] = &[
    ("instance-two-enis.json", "ec2-compromised-high"),
    ("ec2-critical-attack-sequence.json", "ec2-compromised-high"),
    ("ec2-medium.json", "ec2-medium"),
    ("ec2-ssh-bruteforce-low.json", "ec2-low"),
    ("iam-user-key.json", "iam-user-key-compromised"),
    ("assumed-role-key.json", "iam-temporary-credentials"),
    (
        "iam-user-temporary-key.json",
        "iam-user-temporary-credentials",
    ),
    ("s3-bucket.json", "default-notify"),
];

fn shipped() -> Vec<Playbook> {
    load_playbooks(Path::new(SHIPPED))
        .unwrap_or_else(|problems| panic!("shipped playbooks invalid: {problems:?}"))
        .into_iter()
        .map(|l| l.playbook)
        .collect()
}

fn fixture_text(name: &str) -> String {
    let path = format!("{FIXTURES}/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read fixture {path}: {e}"))
}

fn parse(text: &str, origin: &str) -> Finding {
    parse_single_finding(text, origin).unwrap_or_else(|e| panic!("{origin}: {e}"))
}

/// Routes the fixture through the shipped playbooks and plans it.
///
/// `ec2-medium.json` is delivered archived, which routes nowhere (tested in
/// `routing.rs`); it is planned here as the same finding un-archived, which is the
/// plan a responder gets for it once it is reopened.
fn plan_for(name: &str, expected_playbook: &str) -> Plan {
    let mut finding = parse(&fixture_text(name), name);
    finding.service.archived = false;
    plan_finding(&finding, expected_playbook)
}

fn plan_finding(finding: &Finding, expected_playbook: &str) -> Plan {
    let playbooks = shipped();
    let (route, chosen) = route(finding, &playbooks);
    let (Route::Matched { reason, .. }, Some(playbook)) = (route.clone(), chosen) else {
        panic!("{} routed nowhere: {route:?}", finding.id);
    };
    assert_eq!(playbook.name, expected_playbook, "{}", finding.id);
    plan(finding, playbook, reason)
}

fn render(plan: &Plan) -> String {
    let mut text = serde_json::to_string_pretty(plan).expect("a plan serializes");
    text.push('\n');
    text
}

fn golden_path(fixture: &str, playbook: &str) -> PathBuf {
    Path::new(GOLDEN).join(format!("{playbook}.{fixture}"))
}

#[test]
fn plans_match_their_golden_files() {
    for (fixture, playbook) in PAIRS {
        let plan = plan_for(fixture, playbook);
        golden::check(&golden_path(fixture, playbook), &render(&plan));
    }
}

#[test]
fn every_golden_file_belongs_to_a_pair() {
    let expected: Vec<String> = PAIRS.iter().map(|(f, p)| format!("{p}.{f}")).collect();
    golden::assert_exactly(Path::new(GOLDEN), &expected);
}

#[test]
fn planning_twice_is_byte_identical() {
    for (fixture, playbook) in PAIRS {
        let first = render(&plan_for(fixture, playbook));
        let second = render(&plan_for(fixture, playbook));
        assert_eq!(first, second, "{fixture}");
    }
}

#[test]
fn no_placeholder_is_left_unfilled_and_case_targets_resolve() {
    for (fixture, playbook) in PAIRS {
        let plan = plan_for(fixture, playbook);
        let text = render(&plan);
        for placeholder in [
            "{case_id}",
            "{finding_id}",
            "{finding_type}",
            "{severity}",
            "{playbook}",
        ] {
            assert!(
                !text.contains(placeholder),
                "{fixture}: {placeholder} left in the plan"
            );
        }
        for step in &plan.steps {
            assert!(
                !matches!(step.target, Target::Unresolved { .. }),
                "{fixture}/{playbook}: step {} has an unresolved target: {}",
                step.id,
                step.target.label()
            );
            assert!(
                !step.permissions.is_empty(),
                "{fixture}: step {} lists no permissions",
                step.id
            );
        }
        let indexes: Vec<usize> = plan.steps.iter().map(|s| s.index).collect();
        assert_eq!(indexes, (1..=plan.steps.len()).collect::<Vec<_>>());
    }
}

#[test]
fn high_severity_instance_plan_isolates_both_enis_with_their_groups() {
    let plan = plan_for("instance-two-enis.json", "ec2-compromised-high");
    assert_eq!(plan.playbook, "ec2-compromised-high");
    let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "isolate",
            "detach-asg",
            "deregister-lb",
            "protect",
            "detach-profile",
            "tag",
            "snapshot",
            "capture-metadata",
            "console-output",
            "store-evidence",
        ]
    );
    let isolate = plan.step("isolate").expect("isolate step");
    let Target::Instance(instance) = &isolate.target else {
        panic!("isolate targets {:?}", isolate.target);
    };
    assert_eq!(instance.instance_id, "i-0a1b2c3d4e5f60718");
    let enis: Vec<(&str, Vec<&str>)> = instance
        .network_interfaces
        .iter()
        .map(|n| {
            (
                n.network_interface_id.as_str(),
                n.security_group_ids.iter().map(|g| g.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        enis,
        vec![
            (
                "eni-0a1b2c3d4e5f60711",
                vec!["sg-0a1b2c3d4e5f60701", "sg-0a1b2c3d4e5f60702"]
            ),
            ("eni-0f1e2d3c4b5a69788", vec!["sg-0f1e2d3c4b5a69703"]),
        ]
    );
    for eni in &instance.network_interfaces {
        assert_eq!(eni.vpc_id.as_deref(), Some("vpc-0a1b2c3d4e5f60731"));
    }
    assert_eq!(
        instance.instance_profile_arn.as_deref(),
        Some("arn:aws:iam::111122223333:instance-profile/web-app-profile")
    );
    assert!(
        !isolate.approval.required,
        "the high playbook isolates without waiting"
    );
    assert_eq!(isolate.retry.max_attempts, 5);
    assert!(
        isolate
            .blast_radius
            .as_deref()
            .unwrap_or_default()
            .contains("tracked"),
        "{isolate:?}"
    );

    // The tag step's values are filled from the finding and the case.
    let tag = serde_json::to_value(&plan.step("tag").expect("tag").action).expect("json");
    assert_eq!(
        tag["with"]["tags"]["cordon:case-id"],
        json!(plan.case_id.as_str())
    );
    assert_eq!(
        tag["with"]["tags"]["cordon:finding-id"],
        json!("8ec6a1b2c3d4e5f60718293a4b5c6d7e")
    );
    assert_eq!(
        tag["with"]["tags"]["cordon:finding-type"],
        json!("Backdoor:EC2/C&CActivity.B!DNS")
    );
    assert_eq!(tag["with"]["tags"]["cordon:status"], json!("contained"));

    // Step failure policies: the playbook's `stop`, overridden to `continue` for captures.
    let policy = |id: &str| plan.step(id).expect(id).on_failure.to_string();
    assert_eq!(policy("isolate"), "stop");
    assert_eq!(policy("capture-metadata"), "continue");
    assert_eq!(policy("console-output"), "continue");
}

#[test]
fn ec2_medium_isolation_waits_for_approval() {
    let plan = plan_for("ec2-medium.json", "ec2-medium");
    for step in &plan.steps {
        let expected = step.id == "isolate";
        assert_eq!(step.approval.required, expected, "step {}", step.id);
    }
    let isolate = plan.step("isolate").expect("isolate");
    assert_eq!(
        isolate.approval.reason.as_deref(),
        Some("the playbook asks for approval")
    );
    assert_eq!(
        plan.steps.last().map(|s| s.id.as_str()),
        Some("isolate"),
        "isolation comes last"
    );
}

#[test]
fn temporary_credentials_revocation_needs_approval_and_states_its_blast_radius() {
    let plan = plan_for("assumed-role-key.json", "iam-temporary-credentials");
    let revoke = plan.step("revoke-sessions").expect("revoke-sessions");
    assert!(revoke.approval.required);
    let reason = revoke.approval.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("every session of the role"), "{reason}");
    match &revoke.target {
        Target::Role { role_name, .. } => assert_eq!(role_name.as_deref(), Some("web-app-role")),
        other => panic!("revoke targets {other:?}"),
    }
    let blast = revoke.blast_radius.as_deref().unwrap_or_default();
    assert!(
        blast.contains("every session of role web-app-role"),
        "{blast}"
    );
    assert!(
        blast.contains("every instance and principal using the role"),
        "{blast}"
    );
}

#[test]
fn iam_user_key_plan_targets_exactly_the_named_key() {
    let plan = plan_for("iam-user-key.json", "iam-user-key-compromised");
    let key_targets: Vec<String> = plan
        .steps
        .iter()
        .filter_map(|s| match &s.target {
            Target::AccessKey(k) => Some(k.access_key_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(key_targets.len(), 2, "deactivate and rotate");
    let finding = parse(&fixture_text("iam-user-key.json"), "iam-user-key.json");
    let named = match &finding.resource {
        cordon_core::finding::Resource::AccessKey(k) => k.access_key_id.clone(),
        other => panic!("{other:?}"),
    };
    assert!(key_targets.iter().all(|k| *k == named), "{key_targets:?}");
    let quarantine = plan.step("quarantine").expect("quarantine");
    assert!(quarantine.approval.required);
    assert!(
        matches!(quarantine.target, Target::User { .. }),
        "{:?}",
        quarantine.target
    );
    assert!(
        !plan
            .step("deactivate-key")
            .expect("deactivate")
            .approval
            .required
    );
}

#[test]
fn permissions_are_the_sorted_unique_union_of_the_steps() {
    for (fixture, playbook) in PAIRS {
        let plan = plan_for(fixture, playbook);
        assert!(
            plan.permissions.windows(2).all(|w| w[0] < w[1]),
            "{fixture}: not sorted and unique: {:?}",
            plan.permissions
        );
        let mut union: Vec<String> = plan
            .steps
            .iter()
            .flat_map(|s| s.permissions.clone())
            .collect();
        union.sort();
        union.dedup();
        assert_eq!(plan.permissions, union, "{fixture}");
    }
    // The high playbook needs these among others; each exactly once.
    let plan = plan_for("instance-two-enis.json", "ec2-compromised-high");
    for permission in [
        "ec2:ModifyNetworkInterfaceAttribute",
        "ec2:CreateTags",
        "ec2:DescribeInstances",
    ] {
        assert_eq!(
            plan.permissions.iter().filter(|p| *p == permission).count(),
            1,
            "{permission}"
        );
    }
}

#[test]
fn same_finding_in_two_wrappings_is_one_case_with_one_plan() {
    let bare_text = fixture_text("instance-two-enis.json");
    let bare = parse(&bare_text, "bare");
    let detail: Value = serde_json::from_str(&bare_text).expect("json");
    let event = json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": "111122223333",
        "time": "2024-06-11T15:53:05Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    });
    let wrapped = parse(&event.to_string(), "event");
    assert_eq!(bare.wrapping, Wrapping::Bare);
    assert_eq!(wrapped.wrapping, Wrapping::EventBridge);
    assert_ne!(bare.raw, wrapped.raw);
    assert_eq!(CaseId::for_finding(&bare), CaseId::for_finding(&wrapped));

    // The stored EventBridge fixture carries the same finding.
    let stored = parse(&fixture_text("event-ec2-high.json"), "event-ec2-high.json");
    assert_eq!(stored.wrapping, Wrapping::EventBridge);
    assert_eq!(CaseId::for_finding(&stored), CaseId::for_finding(&bare));

    let from_bare = render(&plan_finding(&bare, "ec2-compromised-high"));
    let from_event = render(&plan_finding(&wrapped, "ec2-compromised-high"));
    assert_eq!(
        from_bare, from_event,
        "the wrapping does not show in the plan"
    );

    // A different finding is a different case.
    let other = parse(&fixture_text("ec2-medium.json"), "ec2-medium.json");
    assert_ne!(CaseId::for_finding(&other), CaseId::for_finding(&bare));
    assert!(CaseId::parse(CaseId::for_finding(&bare).as_str()).is_ok());
}

#[test]
fn text_from_the_finding_is_never_substituted_again() {
    // GuardDuty types never hold braces, but the planner must not trust that: a value
    // filled in from the finding is final.
    let mut detail: Value =
        serde_json::from_str(&fixture_text("instance-two-enis.json")).expect("json");
    detail["type"] = json!("Backdoor:EC2/{playbook}.{case_id}");
    let finding = parse(&detail.to_string(), "braces");
    let plan = plan_finding(&finding, "ec2-compromised-high");
    let tag = serde_json::to_value(&plan.step("tag").expect("tag").action).expect("json");
    assert_eq!(
        tag["with"]["tags"]["cordon:finding-type"],
        json!("Backdoor:EC2/{playbook}.{case_id}")
    );
    assert_eq!(
        tag["with"]["tags"]["cordon:case-id"],
        json!(plan.case_id.as_str())
    );
}

#[test]
fn an_iam_users_temporary_credentials_revoke_that_users_sessions() {
    let plan = plan_for(
        "iam-user-temporary-key.json",
        "iam-user-temporary-credentials",
    );
    let revoke = plan.step("revoke-sessions").expect("revoke-sessions");
    assert_eq!(revoke.kind().to_string(), "revoke-user-sessions");
    assert_eq!(
        revoke.target,
        Target::User {
            user_name: "deploy-bot".to_string()
        }
    );
    assert!(revoke.kind().contains());
    assert!(
        !revoke.approval.required,
        "only the compromised user's own sessions"
    );
    assert_eq!(
        revoke
            .action
            .undo_gate()
            .map(|g| matches!(g, cordon_core::action::UndoGate::Credentials(_))),
        Some(true)
    );
    let blast = revoke.blast_radius.as_deref().unwrap_or_default();
    assert!(
        blast.contains("user deploy-bot")
            && blast.contains("long-term access keys are not affected"),
        "{blast}"
    );
    assert_eq!(
        revoke.permissions,
        vec![
            "iam:GetUserPolicy",
            "iam:PutUserPolicy",
            "iam:DeleteUserPolicy"
        ]
    );
}

#[test]
fn targets_serialize_in_the_plans_kebab_case() {
    let plan = plan_for("assumed-role-key.json", "iam-temporary-credentials");
    let step = serde_json::to_value(plan.step("revoke-sessions").expect("step")).expect("json");
    assert_eq!(
        step["target"],
        json!({"kind": "role", "role-name": "web-app-role", "instance-id": null, "instance-profile-arn": null})
    );
    let plan = plan_for("iam-user-key.json", "iam-user-key-compromised");
    let step = serde_json::to_value(plan.step("quarantine").expect("step")).expect("json");
    assert_eq!(
        step["target"],
        json!({"kind": "user", "user-name": "deploy-bot"})
    );
    // And read back into the same plan (journals store plans as JSON).
    let back: Plan = serde_json::from_str(&render(&plan)).expect("plan round-trips");
    assert_eq!(back, plan);
}
