//! `cordon policy` against golden files: the role policy for the shipped
//! playbooks (as shipped, with an evidence bucket, and narrowed to one
//! partition, account and region), the permissions boundary and the managed
//! quarantine policy. A change to a permission list, a scoping rule or a
//! shipped playbook shows up here as a reviewable diff. Bless with
//! `UPDATE_GOLDEN=1 cargo test -p cordon-cli --test suite policy::`, then review it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::golden;

use std::path::{Path, PathBuf};
use std::process::Output;

const BUCKET: &str = "acme-cordon-evidence";

/// Golden file name and the arguments that produce it.
const GOLDEN: &[(&str, &[&str])] = &[
    ("role.json", &["policy"]),
    (
        "role.evidence-bucket.json",
        &["policy", "--evidence-bucket", BUCKET],
    ),
    (
        "role.narrowed.json",
        &[
            "policy",
            "playbooks",
            "--partition",
            "aws",
            "--account",
            "111122223333",
            "--region",
            "eu-west-1",
            "--evidence-bucket",
            BUCKET,
            "--notify-topic",
            "arn:aws:sns:eu-west-1:111122223333:responders",
        ],
    ),
    ("boundary.json", &["policy", "--boundary"]),
    (
        "quarantine-policy.json",
        &["policy", "--quarantine-policy", "--account", "111122223333"],
    ),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/policy")
}

/// Runs `cordon` from the repository root with no cordon settings from the
/// caller's environment, so the output depends on the arguments alone.
fn cordon(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(args)
        .current_dir(repo())
        .env_remove("CORDON_EVIDENCE_BUCKET")
        .env_remove("CORDON_NOTIFY_TOPIC_ARN")
        .env_remove("CORDON_PLAYBOOKS")
        .output()
        .expect("cordon runs")
}

#[test]
fn policies_match_their_golden_files() {
    for (name, args) in GOLDEN {
        let out = cordon(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "cordon {args:?}: {stderr}");
        golden::check(
            &golden_dir().join(name),
            &String::from_utf8(out.stdout).unwrap(),
        );
    }
    let names: Vec<String> = GOLDEN.iter().map(|(name, _)| name.to_string()).collect();
    golden::assert_exactly(&golden_dir(), &names);
}

#[test]
fn the_text_output_says_why_each_permission_is_there() {
    let out = cordon(&["policy", "--output", "text"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("pass --evidence-bucket"), "{text}");
    assert!(
        text.contains("ec2-compromised-high/isolate (isolate-instance)"),
        "{text}"
    );
    assert!(
        text.contains("implied by ec2:AssociateIamInstanceProfile"),
        "{text}"
    );
    assert!(text.contains("front door (Approvals)"), "{text}");
    assert!(text.contains("iam:PolicyARN"), "{text}");
}

#[test]
fn the_text_output_names_the_approver_permissions_apart_from_the_role() {
    let out = cordon(&["policy", "--output", "text"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let (role, approver) = text
        .split_once("\nApprover permissions:")
        .unwrap_or_else(|| panic!("no approver section: {text}"));
    for permission in cordon_core::action::APPROVER_PERMISSIONS {
        assert!(
            approver.contains(&format!("  {}\n", permission.permission)),
            "{} missing: {approver}",
            permission.permission
        );
        assert!(approver.contains(permission.reason), "{approver}");
    }
    // cordon's own role could otherwise answer its own approval waits.
    assert!(!role.contains("states:SendTaskSuccess"), "{role}");
    assert!(approver.contains("never for this role"), "{approver}");
}

#[test]
fn bad_options_are_refused_with_what_to_pass() {
    for (args, says) in [
        (
            &["policy", "--account", "1234"][..],
            "account `1234` is not a 12-digit AWS account id",
        ),
        (
            &["policy", "--region", "europe"][..],
            "region `europe` is not an AWS region name",
        ),
        (
            &["policy", "--evidence-bucket", "Evidence_Bucket"][..],
            "not a valid S3 bucket name",
        ),
        (
            &["policy", "no/such/playbooks"][..],
            "problem(s) in the playbooks at no/such/playbooks",
        ),
    ] {
        let out = cordon(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed a policy anyway");
    }
}
