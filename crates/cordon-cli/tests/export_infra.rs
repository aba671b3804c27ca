//! `infra/` is what `cordon export-infra` generates for the embedded
//! playbooks (as the policy and ASL goldens are what their commands print):
//! a playbook, policy or state machine change that is not regenerated with
//! `scripts/gen-infra` fails here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn export_infra(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cordon"))
        .arg("export-infra")
        .args(args)
        .env_remove("CORDON_PLAYBOOKS")
        .output()
        .expect("run cordon")
}

fn repo_infra() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra")
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("cordon-export-infra-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn the_committed_templates_are_what_export_infra_generates() {
    let infra = repo_infra();
    let out = export_infra(&[
        "--check",
        "--out-dir",
        infra.to_str().expect("a UTF-8 path"),
    ]);
    assert!(
        out.status.success(),
        "infra/ is stale: run scripts/gen-infra and commit ({})",
        String::from_utf8_lossy(&out.stderr)
    );
    // Regenerated from scratch, byte for byte the same files.
    let dir = scratch("fresh");
    let out = export_infra(&["--out-dir", dir.to_str().expect("a UTF-8 path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["cordon.yaml", "member-account.yaml"] {
        assert_eq!(
            std::fs::read_to_string(dir.join(name)).expect("generated"),
            std::fs::read_to_string(infra.join(name)).expect("committed"),
            "{name}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_names_a_template_that_differs_and_passes_once_it_is_regenerated() {
    let dir = scratch("tampered");
    let path = dir.to_str().expect("a UTF-8 path");
    assert!(export_infra(&["--out-dir", path]).status.success());
    let member = dir.join("member-account.yaml");
    let text = std::fs::read_to_string(&member).expect("generated");
    std::fs::write(
        &member,
        text.replace("sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"),
    )
    .expect("tamper");
    let out = export_infra(&["--check", "--out-dir", path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("member-account.yaml"), "{stderr}");
    assert!(!stderr.contains("cordon.yaml,"), "{stderr}");
    assert!(export_infra(&["--out-dir", path]).status.success());
    assert!(
        export_infra(&["--check", "--out-dir", path])
            .status
            .success()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
