//! Issue 12 item 1: `cordon` works from any directory. With no `--playbooks`,
//! no `CORDON_PLAYBOOKS` and no `./playbooks`, it plans with the playbooks
//! embedded in the binary and says so with the set's hash; `cordon playbooks
//! export DIR` writes exactly that set out (same hash when read back).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn empty_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cordon-embedded-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `cordon ARGS` in `cwd`, with no playbooks configured and AWS at a
/// closed local port (planning needs none).
fn cordon(cwd: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .current_dir(cwd)
        .args(args)
        .env_remove("CORDON_PLAYBOOKS")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    eprintln!(
        "$ cordon {} => {:?}\n{}\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn plan_json(cwd: &Path, extra: &[&str]) -> Value {
    let finding = format!("{ROOT}/tests/fixtures/findings/instance-two-enis.json");
    let mut args = vec!["plan", finding.as_str(), "--output", "json"];
    args.extend_from_slice(extra);
    let out = cordon(cwd, &args);
    assert_eq!(out.status.code(), Some(0));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn an_empty_directory_plans_with_the_embedded_playbooks_and_export_writes_the_same_set() {
    let dir = empty_dir("plan");
    let embedded = plan_json(&dir, &[]);
    assert_eq!(
        embedded["playbook-set"]["origin"], "embedded",
        "{embedded:#}"
    );
    assert_eq!(embedded["playbook"], "ec2-compromised-high");
    let hash = embedded["playbook-set"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(hash.len(), 64);

    // The repository's playbooks are the embedded set.
    let shipped = format!("{ROOT}/playbooks");
    let repo = plan_json(&dir, &["--playbooks", &shipped]);
    assert_eq!(repo["playbook-set"]["sha256"], hash.as_str());
    assert_eq!(repo["steps"], embedded["steps"]);

    // Exported, then read back as ./playbooks: the same set.
    let out = cordon(&dir, &["playbooks", "export", "playbooks"]);
    assert_eq!(out.status.code(), Some(0));
    let local = plan_json(&dir, &[]);
    assert_eq!(local["playbook-set"]["origin"], "playbooks");
    assert_eq!(local["playbook-set"]["sha256"], hash.as_str());

    // A customised copy is a different set, and a second export refuses to overwrite it.
    let file = dir.join("playbooks/ec2-compromised-high.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("priority:", "# customised\npriority:")).unwrap();
    let custom = plan_json(&dir, &[]);
    assert_ne!(custom["playbook-set"]["sha256"], hash.as_str());
    let out = cordon(&dir, &["playbooks", "export", "playbooks"]);
    assert_eq!(out.status.code(), Some(2), "no overwrite without --force");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("# customised")
    );

    // The text plan says where its playbooks came from.
    let other = empty_dir("text");
    let finding = format!("{ROOT}/tests/fixtures/findings/instance-two-enis.json");
    let out = cordon(&other, &["plan", &finding]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "from the playbooks at embedded (set sha256 {hash})"
        )),
        "{text}"
    );
    let out = cordon(&other, &["validate"]);
    assert_eq!(out.status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other);
}
