//! Playbook validation.
//!
//! The shipped playbooks must validate. Each file in `tests/broken-playbooks/` is
//! broken in known ways and must yield exactly the expected problems, all at once,
//! each with its file, line:column, path, message and (where useful) hint. The
//! subdirectories of `tests/broken-playbooks/` are whole playbook directories for
//! the cross-file checks (overlap at equal priority, duplicate names) and for the
//! near misses that must pass.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cordon_core::validate::{
    LoadedPlaybook, Problem, load_playbooks, patterns_intersect, rules_overlap, validate_text,
};

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../playbooks");
const BROKEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/broken-playbooks");

fn broken(name: &str) -> PathBuf {
    Path::new(BROKEN).join(name)
}

fn show(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One expected problem: where, at which path, a fragment of the message and of the hint.
struct Expected {
    line: usize,
    column: usize,
    path: &'static str,
    message: &'static str,
    hint: Option<&'static str>,
}

const fn at(line: usize, column: usize, path: &'static str, message: &'static str) -> Expected {
    Expected {
        line,
        column,
        path,
        message,
        hint: None,
    }
}

impl Expected {
    const fn hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }
}

/// Loads one broken file through the real entry point and checks that it yields
/// exactly `expected`, in order of location.
fn assert_problems(name: &str, expected: &[Expected]) {
    let path = broken(name);
    let problems = match load_playbooks(&path) {
        Ok(_) => panic!("{name} validated, but it is broken"),
        Err(problems) => problems,
    };
    assert_eq!(
        problems.len(),
        expected.len(),
        "{name}: expected {} problem(s), got:\n{}",
        expected.len(),
        show(&problems)
    );
    for (problem, want) in problems.iter().zip(expected) {
        let context = format!("{name}: {problem}\nall problems:\n{}", show(&problems));
        assert_eq!(problem.file, path.display().to_string(), "{context}");
        assert_eq!(
            problem.location,
            Some((want.line, want.column)),
            "{context}"
        );
        assert_eq!(problem.path, want.path, "{context}");
        assert!(
            problem.message.contains(want.message),
            "message lacks {:?}: {context}",
            want.message
        );
        if let Some(hint) = want.hint {
            let got = problem.hint.as_deref().unwrap_or_default();
            assert!(got.contains(hint), "hint lacks {hint:?}: {context}");
        }
    }
    // The same text through `validate_text` gives the same problems, under the name given.
    let text = std::fs::read_to_string(&path).expect("readable");
    let direct = validate_text(&text, name).expect_err("broken");
    assert_eq!(direct.len(), problems.len(), "{name}:\n{}", show(&direct));
    for (a, b) in direct.iter().zip(&problems) {
        assert_eq!(
            (&a.file, a.location, &a.path, &a.message),
            (&name.to_string(), b.location, &b.path, &b.message)
        );
    }
}

fn load_ok(dir: &Path) -> Vec<LoadedPlaybook> {
    load_playbooks(dir).unwrap_or_else(|problems| {
        panic!("{} should validate:\n{}", dir.display(), show(&problems))
    })
}

// ---------------------------------------------------------------------------
// The shipped playbooks
// ---------------------------------------------------------------------------

#[test]
fn every_shipped_playbook_validates_on_its_own() {
    let mut count = 0;
    for entry in std::fs::read_dir(SHIPPED).expect("playbooks/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let shown = path.display().to_string();
        let (playbook, match_location) = validate_text(&text, &shown)
            .unwrap_or_else(|problems| panic!("{shown}:\n{}", show(&problems)));
        assert_eq!(
            path.file_stem().and_then(|s| s.to_str()),
            Some(playbook.name.as_str()),
            "a shipped playbook's file is named after it"
        );
        assert!(match_location.is_some(), "{shown}: `match` has a location");
        assert!(!playbook.steps.is_empty(), "{shown}");
        count += 1;
    }
    assert_eq!(count, 14);
}

#[test]
fn shipped_directory_loads_fourteen_playbooks() {
    let loaded = load_ok(Path::new(SHIPPED));
    let names: Vec<&str> = loaded.iter().map(|l| l.playbook.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "config-ebs-snapshot-public-account",
            "config-ebs-snapshot-public-restorable-check",
            "config-ec2-imdsv2-check",
            "config-restricted-common-ports",
            "config-restricted-ssh",
            "config-s3-bucket-level-public-access-prohibited",
            "default-notify",
            "ec2-compromised-high",
            "ec2-low",
            "ec2-medium",
            "iam-temporary-credentials",
            "iam-user-key-compromised",
            "iam-user-temporary-credentials",
            "securityhub-open-security-group",
        ]
    );
    for l in &loaded {
        assert!(l.file.starts_with(SHIPPED), "{}", l.file.display());
    }
}

// ---------------------------------------------------------------------------
// One broken file at a time
// ---------------------------------------------------------------------------

#[test]
fn unknown_action_name_suggests_the_closest() {
    assert_problems(
        "unknown-action.yaml",
        &[at(
            10,
            5,
            "steps[1].action",
            "unknown variant `isolate-instanc`",
        )
        .hint("did you mean `isolate-instance`?")],
    );
}

#[test]
fn unknown_field_at_top_level() {
    assert_problems(
        "unknown-field-top.yaml",
        &[at(2, 1, "priorty", "unknown field `priorty`").hint("did you mean `priority`?")],
    );
}

#[test]
fn unknown_field_in_match() {
    assert_problems(
        "unknown-field-match.yaml",
        &[
            at(4, 3, "match.resource-type", "unknown field `resource-type`")
                .hint("did you mean `resource-types`?"),
        ],
    );
}

#[test]
fn unknown_field_in_a_step() {
    assert_problems(
        "unknown-field-step.yaml",
        &[
            at(8, 5, "steps[0].aproval", "unknown field `aproval`")
                .hint("did you mean `approval`?"),
        ],
    );
}

#[test]
fn unknown_field_in_action_parameters() {
    assert_problems(
        "unknown-field-with.yaml",
        &[at(
            9,
            7,
            "steps[0].with.isolation-group",
            "`isolate-instance`: unknown field `isolation-group`",
        )
        .hint("did you mean `isolation-group-name`?")],
    );
}

#[test]
fn string_where_a_list_is_expected() {
    assert_problems(
        "wrong-type-list.yaml",
        &[at(
            3,
            3,
            "match.finding-types",
            r#"invalid type: string "*:EC2/*", expected a sequence"#,
        )
        .hint("write a list")],
    );
}

#[test]
fn severity_min_above_max() {
    assert_problems(
        "severity-min-above-max.yaml",
        &[at(
            4,
            3,
            "match.severity",
            "min 7 is above max 4: nothing can match",
        )],
    );
}

#[test]
fn severity_out_of_range() {
    assert_problems(
        "severity-out-of-range.yaml",
        &[
            at(
                5,
                5,
                "match.severity.min",
                "0 is outside GuardDuty's severity range 1-10",
            ),
            at(
                6,
                5,
                "match.severity.max",
                "11.5 is outside GuardDuty's severity range 1-10",
            ),
        ],
    );
}

#[test]
fn bad_band_name() {
    assert_problems(
        "bad-band.yaml",
        &[
            at(5, 19, "match.severity.bands[1]", "unknown variant `severe`")
                .hint("valid values: low, medium, high, critical"),
        ],
    );
}

#[test]
fn duplicate_step_ids() {
    assert_problems(
        "duplicate-step-ids.yaml",
        &[at(
            10,
            5,
            "steps[2].id",
            "duplicate step id `tag` (first used by steps[0])",
        )],
    );
}

#[test]
fn empty_steps() {
    assert_problems(
        "empty-steps.yaml",
        &[at(4, 1, "steps", "the playbook has no steps").hint("notify")],
    );
}

#[test]
fn missing_steps() {
    assert_problems(
        "missing-steps.yaml",
        &[at(1, 1, "", "missing `steps`").hint("steps:")],
    );
}

#[test]
fn missing_name() {
    assert_problems(
        "missing-name.yaml",
        &[at(1, 1, "", "missing `name`").hint("name:")],
    );
}

#[test]
fn missing_match() {
    assert_problems(
        "missing-match.yaml",
        &[at(1, 1, "", "missing `match`").hint("match:")],
    );
}

#[test]
fn invalid_yaml_is_one_located_error() {
    // The flow list opened on line 3 is never closed; the parser notices on line 4.
    assert_problems("invalid-yaml.yaml", &[at(4, 3, "", "not valid YAML")]);
}

#[test]
fn instance_action_in_an_access_key_playbook() {
    assert_problems(
        "instance-action-on-access-key.yaml",
        &[at(
            9,
            5,
            "steps[1].action",
            "`isolate-instance` acts on an instance but the playbook only matches AccessKey findings",
        )],
    );
}

#[test]
fn unknown_resource_type_with_a_hint() {
    assert_problems(
        "unknown-resource-type.yaml",
        &[at(
            4,
            30,
            "match.resource-types[1]",
            r#"unknown resource type "EC2Instance""#,
        )
        .hint("did you mean `Instance`?")],
    );
}

#[test]
fn patterns_that_cannot_match() {
    assert_problems(
        "pattern-cannot-match.yaml",
        &[
            at(
                5,
                7,
                "match.finding-types[1]",
                r#""Backdoor" cannot match a GuardDuty type"#,
            )
            .hint("Backdoor:EC2/*"),
            at(
                6,
                7,
                "match.finding-types[2]",
                r#""Recon:EC2" cannot match a GuardDuty type"#,
            ),
        ],
    );
}

#[test]
fn four_problems_in_one_file_are_four_problems() {
    assert_problems(
        "several-problems.yaml",
        &[
            at(3, 1, "owner", "unknown field `owner`"),
            at(7, 3, "match.severity", "min 9.5 is above max 3"),
            at(
                16,
                7,
                "steps[1].with.cut-tracked-connection",
                "unknown field `cut-tracked-connection`",
            )
            .hint("did you mean `cut-tracked-connections`?"),
            at(
                18,
                5,
                "steps[2].action",
                "unknown variant `snapshot-volume`",
            )
            .hint("did you mean `snapshot-volumes`?"),
        ],
    );
}

#[test]
fn four_problems_in_the_header_are_four_problems() {
    // serde alone stops at the first error of a struct; validation must not.
    assert_problems(
        "several-header-problems.yaml",
        &[
            at(
                3,
                1,
                "priority",
                r#"invalid type: string "high", expected i32"#,
            ),
            at(4, 1, "owner", "unknown field `owner`"),
            at(6, 3, "match.finding-type", "unknown field `finding-type`")
                .hint("did you mean `finding-types`?"),
            at(8, 21, "match.severity.bands[1]", "unknown variant `urgent`"),
        ],
    );
}

#[test]
fn unknown_placeholders_in_parameters() {
    assert_problems(
        "unknown-placeholder.yaml",
        &[
            at(
                10,
                9,
                "steps[0].with.tags.cordon:case-id",
                "unknown placeholder `{case-id}`",
            )
            .hint("did you mean `{case_id}`?"),
            at(
                15,
                7,
                "steps[1].with.subject",
                "unknown placeholder `{finding}`",
            )
            .hint("did you mean `{finding_id}`?"),
        ],
    );
}

/// A capture-memory command names its own tool, with `{upload_url}` where
/// the image goes (the URL is filled in when the command is sent). On the
/// old code the placeholder check refused it while the action's own check
/// required it, so no playbook could name its tool.
#[test]
fn capture_memory_command_takes_the_upload_url_placeholder() {
    let dir = std::env::temp_dir().join(format!("cordon-upload-url-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("memory.yaml"),
        "name: memory\ndescription: d\nmatch:\n  resource-types: [Instance]\nsteps:\n  - id: memory\n    action: capture-memory\n    with:\n      command: \"avml --url '{upload_url}' /tmp/m.lime\"\n  - id: notify\n    action: notify\n    with:\n      subject: \"{upload_url}\"\n",
    )
    .expect("write");
    let problems = load_playbooks(&dir).expect_err("notify has no upload URL");
    std::fs::remove_dir_all(&dir).expect("clean up");
    let messages: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    assert_eq!(
        messages,
        ["steps[1].with.subject: unknown placeholder `{upload_url}`"],
        "only notify's is unknown"
    );
}

#[test]
fn every_broken_file_has_a_test_and_the_directory_reports_them_all_at_once() {
    let mut files: BTreeSet<String> = BTreeSet::new();
    for entry in std::fs::read_dir(BROKEN).expect("broken-playbooks/ exists") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            files.insert(path.display().to_string());
        }
    }
    assert_eq!(
        files.len(),
        23,
        "a new broken file needs its own test above"
    );
    let problems = load_playbooks(Path::new(BROKEN)).expect_err("all broken");
    let reported: BTreeSet<String> = problems.iter().map(|p| p.file.clone()).collect();
    assert_eq!(
        reported,
        files,
        "every file reports its problems in the one pass:\n{}",
        show(&problems)
    );
    // The per-file counts above, summed (1 per file except: out-of-range 2,
    // cannot-match 2, placeholders 2, several 4, several-header 4,
    // needs-unknown-self-twice 3).
    assert_eq!(
        problems.len(),
        17 + 2 + 2 + 2 + 4 + 4 + 3,
        "{}",
        show(&problems)
    );
    let mut sorted = problems.clone();
    sorted.sort();
    assert_eq!(
        sorted, problems,
        "problems come sorted by file and location"
    );
}

// ---------------------------------------------------------------------------
// More than one problem of a kind, inline
// ---------------------------------------------------------------------------

#[test]
fn every_missing_required_field_is_reported() {
    let problems = validate_text("description: nothing else\n", "bare.yaml").expect_err("empty");
    let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(
        messages,
        vec!["missing `match`", "missing `name`", "missing `steps`"],
        "{}",
        show(&problems)
    );
    assert!(problems.iter().all(|p| p.location == Some((1, 1))));
}

#[test]
fn a_bad_required_value_is_reported_once_not_again_as_missing() {
    let text = "name: [not, a, string]\nmatch: {}\nsteps:\n  - id: 7\n    action: notify\n  - id: ok\n    action: [notify]\n";
    let problems = validate_text(text, "types.yaml").expect_err("wrong types");
    let got: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        vec![
            "types.yaml:1:1: name: invalid type: sequence, expected a string",
            "types.yaml:4:5: steps[0].id: invalid type: integer `7`, expected a string",
            "types.yaml:7:5: steps[1].action: invalid type: sequence, expected string or map",
        ],
        "{}",
        show(&problems)
    );
}

#[test]
fn a_step_missing_its_id_or_action_is_located_at_the_step() {
    let text = "name: steps-missing\nmatch: {}\nsteps:\n  - id: a\n    action: notify\n  - action: notify\n    description: no id\n  - id: c\n";
    let problems = validate_text(text, "steps.yaml").expect_err("missing fields");
    let got: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        vec![
            "steps.yaml:6:5: steps[1]: missing `id` (hint: every step needs an `id:`, unique in the playbook)",
            "steps.yaml:8:5: steps[2]: missing `action` (hint: name the action to run, e.g. `action: notify`)",
        ]
    );
}

#[test]
fn known_placeholders_and_plain_braces_pass() {
    let text = "name: braces\nmatch: {}\nsteps:\n  - id: n\n    action: notify\n    with:\n      subject: \"{playbook} {severity} {finding_type} {finding_id} {case_id} {} { x } {\"\n";
    if let Err(problems) = validate_text(text, "braces.yaml") {
        panic!("{}", show(&problems));
    }
}

#[test]
fn every_bad_parameter_of_a_step_is_reported() {
    let text = "name: params\nmatch: {}\nsteps:\n  - id: snap\n    action: snapshot-volumes\n    with:\n      wait: sometimes\n      timeout: 30\n      delete-on-rollback: true\n";
    let problems = validate_text(text, "params.yaml").expect_err("bad params");
    let got: Vec<(&str, Option<(usize, usize)>)> = problems
        .iter()
        .map(|p| (p.path.as_str(), p.location))
        .collect();
    assert_eq!(
        got,
        vec![
            ("steps[0].with.wait", Some((7, 7))),
            ("steps[0].with.timeout", Some((8, 7)))
        ],
        "{}",
        show(&problems)
    );
    assert!(
        problems
            .iter()
            .all(|p| p.message.starts_with("`snapshot-volumes`: ")),
        "{}",
        show(&problems)
    );
}

#[test]
fn problems_display_as_file_line_column_path_message_hint() {
    let problems = load_playbooks(&broken("unknown-field-top.yaml")).expect_err("broken");
    let shown = problems[0].to_string();
    let file = broken("unknown-field-top.yaml").display().to_string();
    assert!(
        shown.starts_with(&format!("{file}:2:1: priorty: unknown field `priorty`")),
        "{shown}"
    );
    assert!(
        shown.ends_with(" (hint: did you mean `priority`?)"),
        "{shown}"
    );
}

// ---------------------------------------------------------------------------
// Whole directories: overlaps and duplicate names
// ---------------------------------------------------------------------------

#[test]
fn overlap_at_equal_priority_names_both_files() {
    let dir = broken("overlap-equal-priority");
    let problems = load_playbooks(&dir).expect_err("overlap");
    assert_eq!(problems.len(), 1, "{}", show(&problems));
    let p = &problems[0];
    let first = dir.join("backdoor.yaml").display().to_string();
    let second = dir.join("recon-or-backdoor.yaml").display().to_string();
    assert_eq!(p.file, second);
    assert_eq!(
        p.location,
        Some((3, 1)),
        "points at the second file's `match`"
    );
    assert_eq!(p.path, "match");
    assert!(
        p.message.contains("`ec2-from-seven`") && p.message.contains("`backdoor-high`"),
        "{p}"
    );
    assert!(p.message.contains(&first), "names the other file: {p}");
    assert!(p.message.contains("equal priority 50"), "{p}");
    assert!(
        p.hint.as_deref().unwrap_or_default().contains("priority"),
        "{p}"
    );
}

#[test]
fn same_pair_with_different_priorities_is_fine() {
    assert_eq!(load_ok(&broken("ok-different-priority")).len(), 2);
}

#[test]
fn disjoint_severity_is_fine() {
    let loaded = load_ok(&broken("ok-disjoint-bands"));
    assert_eq!(loaded.len(), 2);
    assert!(!rules_overlap(
        &loaded[0].playbook.matcher,
        &loaded[1].playbook.matcher
    ));
}

#[test]
fn iam_user_and_ec2_patterns_do_not_overlap() {
    let loaded = load_ok(&broken("ok-iam-vs-ec2"));
    assert_eq!(loaded.len(), 2);
    assert!(!patterns_intersect("*:IAMUser/*", "*:EC2/*"));
    assert!(patterns_intersect("*:EC2/*", "Backdoor:*"));
}

#[test]
fn duplicate_names_across_files() {
    let dir = broken("duplicate-names");
    let problems = load_playbooks(&dir).expect_err("duplicate");
    assert_eq!(problems.len(), 1, "{}", show(&problems));
    let p = &problems[0];
    assert_eq!(p.file, dir.join("second.yaml").display().to_string());
    assert_eq!(p.location, Some((2, 1)), "points at the `name` key");
    assert_eq!(p.path, "name");
    assert!(
        p.message
            .contains("playbook name `responders` is also used by")
            && p.message
                .contains(&dir.join("first.yaml").display().to_string()),
        "{p}"
    );
}

#[test]
fn overlap_rules_across_the_shipped_set() {
    let loaded = load_ok(Path::new(SHIPPED));
    let by_name = |name: &str| {
        &loaded
            .iter()
            .find(|l| l.playbook.name == name)
            .expect("shipped")
            .playbook
    };
    // The three EC2 playbooks share priority 100 and are kept apart by severity band.
    for (a, b) in [
        ("ec2-low", "ec2-medium"),
        ("ec2-medium", "ec2-compromised-high"),
        ("ec2-low", "ec2-compromised-high"),
    ] {
        assert!(
            !rules_overlap(&by_name(a).matcher, &by_name(b).matcher),
            "{a} vs {b}"
        );
    }
    // The two IAM playbooks by key kind.
    assert!(!rules_overlap(
        &by_name("iam-user-key-compromised").matcher,
        &by_name("iam-temporary-credentials").matcher
    ));
    // The two temporary-credential playbooks by the key's user type.
    assert!(!rules_overlap(
        &by_name("iam-temporary-credentials").matcher,
        &by_name("iam-user-temporary-credentials").matcher
    ));
    // The catch-all overlaps everything, which is why it has its own priority.
    assert!(rules_overlap(
        &by_name("default-notify").matcher,
        &by_name("ec2-low").matcher
    ));
}

#[test]
fn user_types_are_checked_against_the_findings_and_the_steps() {
    let text = "name: t\nmatch:\n  resource-types: [AccessKey, Instance]\n  user-types: [IamUser, AssumedRole]\nsteps:\n  - id: revoke\n    action: revoke-user-sessions\n";
    let problems = validate_text(text, "users.yaml").expect_err("bad user types");
    let got: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(
        got.iter().any(|p| p.contains("match.user-types[0]: unknown access-key user type \"IamUser\" (hint: did you mean `IAMUser`?)")),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|p| p.contains("match.user-types: user types only exist on access-key findings, but the rule also matches Instance")),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|p| p.contains("steps[0].action: `revoke-user-sessions` needs a key of user type IAMUser, but the playbook only matches user types [\"IamUser\", \"AssumedRole\"]")),
        "{got:#?}"
    );
    let role = "name: t\nmatch:\n  resource-types: [AccessKey]\n  user-types: [IAMUser]\nsteps:\n  - id: revoke\n    action: revoke-role-sessions\n";
    let problems = validate_text(role, "role.yaml").expect_err("a role from an IAM user's key");
    assert!(
        problems[0]
            .to_string()
            .contains("`revoke-role-sessions` needs a key of user type AssumedRole"),
        "{}",
        show(&problems)
    );
    let fine = "name: t\nmatch:\n  resource-types: [AccessKey]\n  user-types: [IAMUser]\nsteps:\n  - id: revoke\n    action: revoke-user-sessions\n  - id: tell\n    action: notify\n";
    validate_text(fine, "fine.yaml").expect("valid");
}

#[test]
fn the_json_schema_describes_user_types_and_the_user_session_action() {
    let schema = cordon_core::playbook::json_schema().to_string();
    assert!(schema.contains("\"user-types\""), "match.user-types");
    assert!(
        schema.contains("revoke-user-sessions"),
        "the action's name and parameters"
    );
}

// ---------------------------------------------------------------------------
// Step graphs (`needs`)

#[test]
fn needs_naming_an_unknown_step_itself_or_a_step_twice_are_located() {
    assert_problems(
        "needs-unknown-self-twice.yaml",
        &[
            at(8, 13, "steps[0].needs[0]", "step `isolate` needs itself"),
            at(
                11,
                13,
                "steps[1].needs[0]",
                "step `tag` needs \"isolat\", which is not a step of this playbook",
            )
            .hint("did you mean `isolate`?"),
            at(
                11,
                30,
                "steps[1].needs[2]",
                "step `tag` needs `isolate` twice",
            ),
        ],
    );
}

#[test]
fn a_cycle_of_needs_is_refused_naming_every_step_on_it() {
    assert_problems(
        "needs-cycle.yaml",
        &[at(
            10,
            5,
            "steps[1].needs",
            "the needs of step `tag` form a cycle: tag → snapshot → protect → tag",
        )
        .hint("remove one of these needs")],
    );
}

#[test]
fn needs_make_a_graph_and_no_needs_keep_the_written_order() {
    let sequential = validate_text(
        "name: s\nmatch: {resource-types: [Instance]}\nsteps:\n  - {id: a, action: tag-resource}\n  - {id: b, action: enable-termination-protection}\n",
        "s.yaml",
    )
    .unwrap()
    .0;
    assert!(!sequential.declares_needs());
    let graph = validate_text(
        "name: g\nmatch: {resource-types: [Instance]}\nsteps:\n  - {id: a, action: isolate-instance}\n  - {id: b, action: enable-termination-protection, needs: [a]}\n  - {id: c, action: tag-resource}\n",
        "g.yaml",
    )
    .unwrap()
    .0;
    assert!(graph.declares_needs());
    assert_eq!(graph.steps[1].needs, Some(vec!["a".to_string()]));
    assert_eq!(graph.steps[2].needs, None);
    let schema = cordon_core::playbook::json_schema();
    let step = &schema["$defs"]["Step"]["properties"]["needs"];
    assert!(
        step["description"]
            .as_str()
            .is_some_and(|d| d.contains("must be done before this one starts")),
        "the schema documents `needs`: {step}"
    );
}
