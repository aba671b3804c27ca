//! `cordon doctor` on the emulator with IAM authorization enforced: an
//! identity allowed everything passes every permission the emulator can
//! probe (EC2, by `DryRun`), and one denied `ec2:ModifyNetworkInterfaceAttribute`
//! and `ec2:CreateSnapshot` fails with one line naming each, and only those.
//! A dirty isolation group in another VPC fails its own line.
//!
//! What the emulator cannot show: it has no IAM policy simulator, so every
//! non-EC2 permission (and the EC2 ones without `DryRun`) is reported "not
//! probed", which this test checks rather than hides; and it checks actions,
//! not resources or conditions, which only a real account shows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use cordon_aws::evidence_bucket::{self, DEFAULT_KMS_ALIAS};
use cordon_tests::{AuthEnforcedEmulator, Principal};
use serde_json::json;

const EVIDENCE_BUCKET: &str = "cordon-doctor-evidence";
/// What the restricted identity may not do.
const DENIED: [&str; 2] = ["ec2:ModifyNetworkInterfaceAttribute", "ec2:CreateSnapshot"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `cordon doctor ARGS` as `who`; exit code and stdout (stderr appended).
fn doctor(
    emulator: &AuthEnforcedEmulator,
    who: &Principal,
    state: &Path,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cordon"))
        .arg("doctor")
        .args(args)
        .envs(who.env(&emulator.emulator().endpoint()))
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("CORDON_EVIDENCE_BUCKET")
        .env_remove("CORDON_EVIDENCE_SIGNING_KEY")
        .env_remove("CORDON_NOTIFY_TOPIC_ARN")
        .env("CORDON_STATE_DIR", state)
        .env("CORDON_PLAYBOOKS", repo().join("playbooks"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The checklist lines whose status is `status` and whose check starts with `prefix`.
fn lines<'a>(output: &'a str, status: &str, prefix: &str) -> Vec<&'a str> {
    output
        .lines()
        .filter(|l| l.starts_with(&format!("{status}  {prefix}")))
        .collect()
}

#[tokio::test]
async fn doctor_passes_a_full_identity_and_names_each_missing_ec2_permission() {
    let emulator = AuthEnforcedEmulator::start()
        .await
        .expect("emulator starts");
    let root = emulator.root();
    evidence_bucket::init(root, EVIDENCE_BUCKET, DEFAULT_KMS_ALIAS, None)
        .await
        .unwrap();
    let topic = cordon_tests::responders_topic(root).await;
    let default_vpc = root
        .ec2
        .describe_vpcs()
        .send()
        .await
        .unwrap()
        .vpcs()
        .iter()
        .find(|v| v.is_default() == Some(true))
        .and_then(|v| v.vpc_id())
        .expect("the emulator's region has a default VPC")
        .to_string();
    // Another VPC whose isolation group someone opened up.
    let other_vpc = root
        .ec2
        .create_vpc()
        .cidr_block("10.42.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc()
        .and_then(|v| v.vpc_id())
        .unwrap()
        .to_string();
    let dirty = root
        .ec2
        .create_security_group()
        .vpc_id(&other_vpc)
        .group_name("cordon-isolation")
        .description("opened")
        .send()
        .await
        .unwrap();
    let dirty = dirty.group_id().unwrap().to_string();
    root.ec2
        .authorize_security_group_ingress()
        .group_id(&dirty)
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .cidr_ip("10.0.0.0/8")
        .send()
        .await
        .unwrap();

    let admin = emulator
        .principal(
            "doctor-admin",
            json!([{"Effect": "Allow", "Action": "*", "Resource": "*"}]),
        )
        .await;
    let restricted = emulator
        .principal(
            "doctor-restricted",
            json!([
                {"Effect": "Allow", "Action": "*", "Resource": "*"},
                {"Effect": "Deny", "Action": DENIED, "Resource": "*"},
            ]),
        )
        .await;
    emulator.enforce().unwrap();

    let state = cordon_tests::scratch_dir("doctor");
    let scoped = [
        "--evidence-bucket",
        EVIDENCE_BUCKET,
        "--notify-topic",
        &topic,
        "--vpc",
        &default_vpc,
    ];

    // Everything allowed: nothing fails, every EC2 permission the emulator
    // answers a dry run for passes by DryRun.
    let (code, out, err) = doctor(&emulator, &admin, &state, &scoped);
    eprintln!("{out}{err}");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(lines(&out, "FAIL", "").is_empty(), "{out}");
    assert_eq!(lines(&out, "PASS", "identity").len(), 1, "{out}");
    assert!(out.contains(&admin.arn), "{out}");
    for check in ["region", "clock", "playbooks", "journal directory"] {
        assert_eq!(lines(&out, "PASS", check).len(), 1, "{check}:\n{out}");
    }
    assert_eq!(lines(&out, "PASS", "evidence bucket").len(), 1, "{out}");
    assert_eq!(lines(&out, "PASS", "notify topic").len(), 1, "{out}");
    let absent = lines(&out, "PASS", &format!("{default_vpc} cordon-isolation"));
    assert_eq!(absent.len(), 2, "isolation and untrack groups:\n{out}");
    assert!(absent.iter().all(|l| l.contains("absent")), "{out}");
    let probed = lines(&out, "PASS", "permission ec2:");
    for permission in DENIED.iter().chain(&[
        "ec2:CreateSecurityGroup",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupEgress",
        "ec2:CreateTags",
        "ec2:ModifyInstanceAttribute",
    ]) {
        let line = probed
            .iter()
            .find(|l| l.contains(&format!("permission {permission} ")))
            .unwrap_or_else(|| panic!("{permission} does not pass:\n{out}"));
        assert!(line.contains("(method: DryRun: "), "{line}");
    }
    // Never PASS what was not probed: the emulator has no policy simulator.
    let publish = lines(&out, "SKIP", "permission sns:Publish");
    assert_eq!(publish.len(), 1, "{out}");
    assert!(
        publish[0].contains("only a real account can show"),
        "{}",
        publish[0]
    );
    assert!(lines(&out, "PASS", "permission sns:").is_empty(), "{out}");
    let simulator = lines(&out, "SKIP", "policy simulator");
    assert_eq!(simulator.len(), 1, "{out}");
    assert!(
        simulator[0].contains("only a real account can show"),
        "{out}"
    );

    // The same as one JSON document.
    let mut json_args = scoped.to_vec();
    json_args.extend(["--output", "json"]);
    let (code, out, err) = doctor(&emulator, &admin, &state, &json_args);
    assert_eq!(code, Some(0), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(report["ready"], true, "{out}");
    assert_eq!(report["failed"], 0, "{out}");
    assert!(report["checks"].as_array().unwrap().len() > 20, "{out}");

    // Two EC2 permissions denied: exit 1, one FAIL line naming each, no other FAIL.
    let (code, out, err) = doctor(&emulator, &restricted, &state, &scoped);
    eprintln!("{out}{err}");
    assert_eq!(code, Some(1), "{out}{err}");
    let failed = lines(&out, "FAIL", "");
    assert_eq!(failed.len(), DENIED.len(), "{out}");
    for permission in DENIED {
        let line = failed
            .iter()
            .find(|l| l.starts_with(&format!("FAIL  permission {permission} ")))
            .unwrap_or_else(|| panic!("no FAIL line for {permission}:\n{out}"));
        assert!(line.contains("denied ("), "{line}");
        assert!(
            line.contains(&format!("grant {permission} to {}", restricted.arn)),
            "{line}"
        );
    }

    // Every VPC: the opened isolation group in the other one fails.
    let all_vpcs = [
        "--evidence-bucket",
        EVIDENCE_BUCKET,
        "--notify-topic",
        &topic,
    ];
    let (code, out, err) = doctor(&emulator, &admin, &state, &all_vpcs);
    assert_eq!(code, Some(1), "{out}{err}");
    let failed = lines(&out, "FAIL", "");
    assert_eq!(failed.len(), 1, "{out}");
    assert!(
        failed[0].starts_with(&format!("FAIL  {other_vpc} cordon-isolation ")),
        "{out}"
    );
    assert!(
        failed[0].contains(&dirty) && failed[0].contains("ingress rule tcp:22 10.0.0.0/8"),
        "{out}"
    );
    assert_eq!(
        lines(&out, "PASS", &format!("{default_vpc} cordon-isolation")).len(),
        2,
        "{out}"
    );
}

#[test]
fn without_a_region_doctor_fails_that_line_and_probes_nothing_in_aws() {
    let state = std::env::temp_dir().join(format!("cordon-doctor-noregion-{}", std::process::id()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["doctor", "--state-dir"])
        .arg(&state)
        .env("CORDON_PLAYBOOKS", repo().join("playbooks"))
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_CONFIG_FILE", state.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", state.join("no-credentials"))
        // Nothing may look for a region on the instance metadata service.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(lines(&text, "FAIL", "region").len(), 1, "{text}");
    assert!(text.contains("set AWS_REGION"), "{text}");
    assert_eq!(lines(&text, "PASS", "playbooks").len(), 1, "{text}");
    assert_eq!(lines(&text, "PASS", "journal directory").len(), 1, "{text}");
    for check in [
        "identity",
        "clock",
        "evidence bucket",
        "notify topic",
        "isolation groups",
        "permissions",
    ] {
        let skipped = lines(&text, "SKIP", check);
        assert_eq!(skipped.len(), 1, "{check}:\n{text}");
        assert!(
            skipped[0].contains("not probed: no AWS region configured"),
            "{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&state);
}
