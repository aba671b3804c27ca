//! End-to-end containment tests: the `cordon` binary against a provisioned
//! Game Day fixture in the local emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use cordon_gameday::{
    EnvironmentSpec, Fixture, diff_states, provision as build, side_effects, snapshot_state,
    volume_snapshots,
};
use cordon_tests::EmulatorGuard;
use serde_json::Value;

/// The state-changing steps of the high playbook, for the bounded crash test.
const SMALL_PLAYBOOK: &str = r#"
name: ec2-contain-small
description: Containment steps only (crash-safety test).
priority: 200
match:
  finding-types: ["*:EC2/*"]
  resource-types: [Instance]
  severity:
    bands: [high, critical]
on-failure: stop
steps:
  - id: tag
    action: tag-resource
    with:
      tags:
        cordon:case-id: "{case_id}"
  - id: protect
    action: enable-termination-protection
  - id: detach-asg
    action: detach-from-autoscaling
  - id: deregister-lb
    action: deregister-from-load-balancers
  - id: isolate
    action: isolate-instance
  - id: detach-profile
    action: detach-instance-profile
"#;

/// A later step fails; everything done before is rolled back.
const ROLLBACK_PLAYBOOK: &str = r#"
name: ec2-contain-rollback
description: Roll back on failure (test).
priority: 200
match:
  finding-types: ["*:EC2/*"]
  resource-types: [Instance]
  severity:
    bands: [high, critical]
on-failure: rollback
steps:
  - id: tag
    action: tag-resource
    with:
      tags:
        cordon:case-id: "{case_id}"
  - id: protect
    action: enable-termination-protection
  - id: detach-asg
    action: detach-from-autoscaling
  - id: deregister-lb
    action: deregister-from-load-balancers
  - id: detach-profile
    action: detach-instance-profile
  - id: isolate
    action: isolate-instance
    retry:
      max-attempts: 1
"#;

struct Case {
    aws: EmulatorGuard,
    fixture: Fixture,
    dir: PathBuf,
    finding: PathBuf,
    before: Value,
}

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir =
        std::env::temp_dir().join(format!("cordon-e2e-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The compromised web server of the Game Day.
const INSTANCE: &str = "web-01";

async fn provision(aws: EmulatorGuard, name: &str) -> Case {
    let fixture = build(aws.clients(), &EnvironmentSpec::compromised_instance())
        .await
        .expect("provision");
    let dir = temp_dir(name);
    let finding = dir.join("finding.json");
    let json = fixture
        .instance_finding(INSTANCE)
        .expect("instance finding")
        .detail();
    std::fs::write(&finding, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    let before = snapshot_state(aws.clients(), &fixture)
        .await
        .expect("snapshot");
    Case {
        aws,
        fixture,
        dir,
        finding,
        before,
    }
}

async fn setup(name: &str) -> Case {
    provision(cordon_tests::emulator().await, name).await
}

fn playbook_dir(case: &Case, yaml: &str) -> PathBuf {
    let dir = case.dir.join("playbooks");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("test.yaml"), yaml).unwrap();
    dir
}

fn shipped_playbooks() -> PathBuf {
    cordon_tests::repo_root().join("playbooks")
}

impl Case {
    fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn cordon(&self, args: &[&str], env: &[(&str, String)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cordon"));
        cmd.args(args)
            .arg("--state-dir")
            .arg(self.state_dir())
            .env_remove("CORDON_TEST_CRASH_AFTER_RECORD")
            .env_remove("CORDON_PLAYBOOKS")
            .env_remove("AWS_PROFILE");
        for (k, v) in self.aws.env() {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("spawn cordon");
        eprintln!(
            "$ cordon {} => {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            tail(&String::from_utf8_lossy(&out.stderr), 30),
        );
        out
    }

    fn run(&self, playbooks: &Path, extra: &[&str], env: &[(&str, String)]) -> Output {
        let finding = self.finding.to_string_lossy().into_owned();
        let pb = playbooks.to_string_lossy().into_owned();
        let mut args = vec!["run", finding.as_str(), "--yes", "--playbooks", pb.as_str()];
        args.extend_from_slice(extra);
        self.cordon(&args, env)
    }

    fn case_id(&self) -> String {
        let mut ids: Vec<String> = std::fs::read_dir(self.state_dir().join("cases"))
            .expect("cases dir")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("case-"))
            .collect();
        ids.sort();
        assert_eq!(ids.len(), 1, "exactly one case expected: {ids:?}");
        ids.remove(0)
    }

    fn journal(&self) -> Vec<Value> {
        let path = self
            .state_dir()
            .join("cases")
            .join(self.case_id())
            .join("journal.jsonl");
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn state(&self) -> Value {
        snapshot_state(self.aws.clients(), &self.fixture)
            .await
            .expect("snapshot")
    }

    async fn assert_back_at_pre_state(&self, what: &str) {
        let now = self.state().await;
        let diffs = diff_states(&self.before, &now);
        assert!(
            diffs.is_empty(),
            "{what}: not back at pre-state:\n  {}",
            diffs.join("\n  ")
        );
    }

    /// Every ENI only in one (new) isolation group, protected, out of the
    /// ASG and target group, profile detached.
    async fn assert_contained(&self) {
        let s = self.state().await;
        let original: Vec<&str> = self
            .fixture
            .security_groups
            .values()
            .map(|g| g.id.as_str())
            .collect();
        let instance = &self.fixture.instances[INSTANCE];
        let mut isolation = None;
        for eni in &instance.enis {
            let groups = s["network-interfaces"][&eni.id]["groups"]
                .as_array()
                .unwrap();
            assert_eq!(groups.len(), 1, "{}: {groups:?}", eni.id);
            let g = groups[0].as_str().unwrap().to_string();
            assert!(
                !original.contains(&g.as_str()),
                "{} still in an original group {g}",
                eni.id
            );
            if let Some(i) = &isolation {
                assert_eq!(i, &g, "ENIs in different isolation groups");
            }
            isolation = Some(g);
        }
        let web = &s["instances"][INSTANCE];
        assert_eq!(web["disable-api-termination"], true, "{s:#}");
        assert_eq!(
            web["instance-profile-associations"],
            serde_json::json!([]),
            "{s:#}"
        );
        let members = s["auto-scaling-groups"]["gameday-web-asg"]["instances"]
            .as_array()
            .unwrap();
        assert!(!members.contains(&serde_json::json!(instance.id)), "{s:#}");
        assert_eq!(
            s["target-groups"]["gameday-web"]["targets"],
            serde_json::json!([]),
            "{s:#}"
        );
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn stdout_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    // The final JSON document is the last top-level object on stdout.
    let start = text.rfind("\n{").map_or(0, |i| i + 1);
    serde_json::from_str(&text[start..]).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn mutating(calls: &Value) -> u64 {
    calls
        .as_object()
        .unwrap()
        .iter()
        .filter(|(op, _)| {
            let name = op.rsplit(['.', ':']).next().unwrap_or(op);
            !["Describe", "Get", "List"]
                .iter()
                .any(|p| name.starts_with(p))
        })
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn full_run_then_rollback_restores_pre_state() {
    let started = Instant::now();
    let case = setup("full").await;
    let out = case.run(&shipped_playbooks(), &["--output", "json"], &[]);
    // No evidence bucket here: `store-evidence` keeps the evidence in the
    // case directory, pinned by a manifest there, and says so.
    assert_eq!(
        out.status.code(),
        Some(0),
        "full run without a bucket stores its evidence locally"
    );
    let report = stdout_json(&out);
    assert_eq!(report["status"], "completed", "{report:#}");
    let stored = case
        .journal()
        .into_iter()
        .find(|r| r["event"]["event"] == "step-applied" && r["event"]["step"] == "store-evidence")
        .map(|r| r["event"]["outcome"].clone())
        .expect("store-evidence applied");
    assert_eq!(stored["stored"], "locally", "{stored:#}");
    let manifest = case
        .state_dir()
        .join("cases")
        .join(case.case_id())
        .join("manifest.json");
    assert!(manifest.is_file(), "{}", manifest.display());
    let calls = &report["api-calls"];
    let total: u64 = calls
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_u64)
        .sum();
    eprintln!(
        "API calls for the full run: total {total}, mutating {}: {calls:#}",
        mutating(calls)
    );

    case.assert_contained().await;
    let snaps = volume_snapshots(case.aws.clients(), &case.fixture)
        .await
        .unwrap();
    assert_eq!(
        snaps.len(),
        case.fixture.instances[INSTANCE].volumes.len(),
        "one snapshot per volume: {snaps:#?}"
    );
    let case_id = case.case_id();
    for s in &snaps {
        assert_eq!(s["tags"]["cordon:case-id"], case_id.as_str(), "{s:#}");
    }

    let out = case.cordon(&["rollback", &case_id], &[]);
    assert_eq!(out.status.code(), Some(0));
    case.assert_back_at_pre_state("after rollback").await;
    eprintln!("full_run_then_rollback took {:?}", started.elapsed());
}

#[tokio::test]
async fn second_run_and_second_rollback_are_no_ops() {
    let case = setup("noop").await;
    let pb = playbook_dir(&case, SMALL_PLAYBOOK);
    assert_eq!(case.run(&pb, &[], &[]).status.code(), Some(0));
    let records = case.journal().len();

    let out = case.run(&pb, &["--output", "json"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let report = stdout_json(&out);
    assert_eq!(report["no-op"], true, "{report:#}");
    assert_eq!(mutating(&report["api-calls"]), 0, "{report:#}");
    assert_eq!(
        case.journal().len(),
        records,
        "a no-op run must not write the journal"
    );

    let case_id = case.case_id();
    assert_eq!(
        case.cordon(&["rollback", &case_id], &[]).status.code(),
        Some(0)
    );
    case.assert_back_at_pre_state("after rollback").await;
    let records = case.journal().len();
    let out = case.cordon(&["rollback", &case_id, "--output", "json"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let report = stdout_json(&out);
    assert_eq!(mutating(&report["api-calls"]), 0, "{report:#}");
    assert_eq!(
        case.journal().len(),
        records,
        "a second rollback must not write the journal"
    );
    case.assert_back_at_pre_state("after second rollback").await;
}

#[tokio::test]
async fn crash_at_every_record_then_resume_or_rollback() {
    crash_at_every_record(SMALL_PLAYBOOK, "crash", false).await;
}

/// [`SMALL_PLAYBOOK`] as a graph: isolation first, then the other five
/// containment steps together. A crash lands among concurrent steps.
const SMALL_GRAPH_PLAYBOOK: &str = r#"
name: ec2-contain-small-graph
description: Containment steps only, concurrent after isolation (crash-safety test).
priority: 200
match:
  finding-types: ["*:EC2/*"]
  resource-types: [Instance]
  severity:
    bands: [high, critical]
on-failure: stop
steps:
  - id: isolate
    action: isolate-instance
    needs: []
  - id: tag
    action: tag-resource
    needs: [isolate]
    with:
      tags:
        cordon:case-id: "{case_id}"
  - id: protect
    action: enable-termination-protection
    needs: [isolate]
  - id: detach-asg
    action: detach-from-autoscaling
    needs: [isolate]
  - id: deregister-lb
    action: deregister-from-load-balancers
    needs: [isolate]
  - id: detach-profile
    action: detach-instance-profile
    needs: [isolate]
"#;

#[tokio::test]
async fn crash_at_every_record_among_concurrent_steps_then_resume_or_rollback() {
    crash_at_every_record(SMALL_GRAPH_PLAYBOOK, "gcrash", true).await;
}

/// Kills the run right after each journal record in turn (the crash-hooks
/// feature), then resumes (every other crash point) and rolls back: both must
/// finish, contained and then back at the pre-state. With `exactly_once`,
/// a resumed case must also show one `step-applied` per step: a step applied
/// before the crash is verified, never applied again.
async fn crash_at_every_record(playbook: &str, name: &str, exactly_once: bool) {
    let started = Instant::now();
    let mut aws = Some(cordon_tests::emulator().await);
    let mut n = 0u64;
    loop {
        let guard = aws.take().unwrap();
        guard.reset().await;
        let case = provision(guard, &format!("{name}{n}")).await;
        let pb = playbook_dir(&case, playbook);
        let out = case.run(
            &pb,
            &[],
            &[("CORDON_TEST_CRASH_AFTER_RECORD", n.to_string())],
        );
        if out.status.code() == Some(0) {
            assert!(
                n > 0,
                "the binary ignored CORDON_TEST_CRASH_AFTER_RECORD: build the tests with \
                 `--features cordon-cli/crash-hooks` (scripts/test does)"
            );
            eprintln!("record {n}: the run completed without crashing: done");
            aws = Some(case.aws);
            break;
        }
        assert_eq!(
            out.status.code(),
            None,
            "record {n}: expected an abort, got {:?}",
            out.status
        );
        let case_id = case.case_id();
        if n.is_multiple_of(2) {
            let out = case.cordon(&["resume", &case_id], &[]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "record {n}: resume must complete"
            );
            case.assert_contained().await;
            if exactly_once {
                let journal = case.journal();
                let applied = |step: &str| {
                    journal
                        .iter()
                        .filter(|r| {
                            r["event"]["event"] == "step-applied" && r["event"]["step"] == step
                        })
                        .count()
                };
                for step in [
                    "isolate",
                    "tag",
                    "protect",
                    "detach-asg",
                    "deregister-lb",
                    "detach-profile",
                ] {
                    assert_eq!(applied(step), 1, "record {n}: {step} applied once");
                }
            }
        }
        let out = case.cordon(&["rollback", &case_id], &[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "record {n}: rollback must complete"
        );
        case.assert_back_at_pre_state(&format!("crash after record {n}"))
            .await;
        aws = Some(case.aws);
        n += 1;
        assert!(n < 200, "the run never completed");
    }
    eprintln!("crash test: {n} crash points, took {:?}", started.elapsed());
    drop(aws);
}

#[tokio::test]
async fn dry_run_changes_nothing_and_lists_calls() {
    let case = setup("dry").await;
    let effects = side_effects(case.aws.clients(), &case.fixture)
        .await
        .unwrap();
    let out = case.run(&shipped_playbooks(), &["--dry-run"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ModifyNetworkInterfaceAttribute")
            || text.contains("modify-network-interface"),
        "the dry run lists the calls it would make:\n{text}"
    );
    case.assert_back_at_pre_state("after dry run").await;
    let after = side_effects(case.aws.clients(), &case.fixture)
        .await
        .unwrap();
    assert_eq!(effects, after, "no new security groups or snapshots");
}

#[tokio::test]
async fn failure_mid_run_rolls_back_everything() {
    let aws = cordon_tests::emulator().await;
    // A pre-existing `cordon-isolation` group with an ingress rule: isolation
    // refuses to use it, after tag, protect, detach-asg, deregister-lb and
    // detach-profile have changed the instance.
    let mut case = provision(aws, "fail").await;
    cordon_tests::plant_open_isolation_group(case.aws.clients(), &case.fixture.vpcs["gameday"].id)
        .await;
    case.before = case.state().await;
    let pb = playbook_dir(&case, ROLLBACK_PLAYBOOK);
    let out = case.run(&pb, &[], &[]);
    let journal = case.journal();
    let kinds: Vec<&str> = journal
        .iter()
        .filter_map(|r| r["event"]["event"].as_str())
        .collect();
    assert!(kinds.contains(&"step-failed"), "{kinds:?}");
    assert!(
        kinds.iter().any(|k| k.starts_with("step-rolled-back")),
        "{kinds:?}"
    );
    case.assert_back_at_pre_state("after on-failure rollback")
        .await;
    // A run whose step failed and was rolled back to the exact pre-state exits 4.
    assert_eq!(
        out.status.code(),
        Some(4),
        "a failed run rolled back exactly must exit 4"
    );
}

#[tokio::test]
async fn missing_or_terminated_instance_is_a_clear_error() {
    let case = setup("missing").await;
    let effects = side_effects(case.aws.clients(), &case.fixture)
        .await
        .unwrap();
    let missing = "i-0000000000000000f";
    let mut about_missing = case.fixture.instance_finding(INSTANCE).unwrap();
    about_missing.instance_id = missing.to_string();
    let json = about_missing.detail();
    let finding = case.dir.join("missing.json");
    std::fs::write(&finding, serde_json::to_vec(&json).unwrap()).unwrap();
    let f = finding.to_string_lossy().into_owned();
    let pb = shipped_playbooks().to_string_lossy().into_owned();
    let out = case.cordon(&["run", &f, "--yes", "--playbooks", &pb], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(missing),
        "stderr names the instance: {stderr}"
    );
    assert_eq!(
        effects,
        side_effects(case.aws.clients(), &case.fixture)
            .await
            .unwrap()
    );

    // Terminated: same.
    case.aws
        .clients()
        .ec2
        .terminate_instances()
        .instance_ids(&case.fixture.instances[INSTANCE].id)
        .send()
        .await
        .unwrap();
    let state_dir = case.dir.join("state2");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cordon"));
    cmd.args([
        "run",
        &case.finding.to_string_lossy(),
        "--yes",
        "--playbooks",
        &pb,
        "--state-dir",
    ])
    .arg(&state_dir)
    .env_remove("CORDON_TEST_CRASH_AFTER_RECORD");
    for (k, v) in case.aws.env() {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("terminated: {:?}\n{stderr}", out.status.code());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&case.fixture.instances[INSTANCE].id),
        "stderr names the instance: {stderr}"
    );
    assert_eq!(
        effects,
        side_effects(case.aws.clients(), &case.fixture)
            .await
            .unwrap()
    );
}

/// One tag step; `{extra}` goes under the step (e.g. an approval).
fn tag_playbook(on_failure: &str, tag_extra: &str, more_steps: &str) -> String {
    format!(
        r#"
name: ec2-lifecycle
description: Lifecycle exit codes (test).
priority: 200
match:
  finding-types: ["*:EC2/*"]
  resource-types: [Instance]
on-failure: {on_failure}
steps:
  - id: tag
    action: tag-resource
    with:
      tags:
        cordon:case-id: "{{case_id}}"
{tag_extra}{more_steps}"#
    )
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Exit 124 when nobody answers an approval in time; the case stops,
/// journaled, and the approval can still be given afterwards (exit 0).
/// `status` says where the case is and what comes next.
#[tokio::test(flavor = "multi_thread")]
async fn an_approval_timeout_exits_124_and_the_step_can_still_be_approved() {
    let case = setup("approval-timeout").await;
    let pb = playbook_dir(&case, &tag_playbook("stop", "    approval: required\n", ""));
    let finding = case.finding.to_string_lossy().into_owned();
    let pb_arg = pb.to_string_lossy().into_owned();
    let started = Instant::now();
    let out = case.cordon(
        &[
            "run",
            &finding,
            "--playbooks",
            &pb_arg,
            "--approval-timeout",
            "2s",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(124), "{:?}", text(&out));
    assert!(
        started.elapsed().as_secs() >= 2,
        "it waited for the timeout"
    );
    // Issue 12 item 5: the wait shows progress (plain lines: stderr is no terminal here).
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("progress: waiting for a decision on `tag`: 0s of 2s"),
        "{stderr}"
    );
    assert!(
        stderr.contains("progress: no decision on `tag` after 2s"),
        "{stderr}"
    );
    let kinds: Vec<String> = case
        .journal()
        .iter()
        .map(|r| r["event"]["event"].as_str().unwrap().to_string())
        .collect();
    assert!(
        kinds.contains(&"approval-timed-out".to_string()),
        "{kinds:?}"
    );
    let id = case.case_id();
    let out = case.cordon(&["status", &id], &[]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("lifecycle: stopped"), "{stdout}");
    assert!(stdout.contains("next: `cordon resume"), "{stdout}");

    let out = case.cordon(&["approve", &id, "tag"], &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = case.cordon(&["status", &id], &[]);
    assert!(
        text(&out).0.contains("lifecycle: completed"),
        "{:?}",
        text(&out)
    );
}

/// In JSON mode the wait prints no progress: stderr stays free of it and
/// stdout holds the one document.
#[tokio::test(flavor = "multi_thread")]
async fn a_wait_in_json_mode_prints_no_progress() {
    let case = setup("approval-json").await;
    let pb = playbook_dir(&case, &tag_playbook("stop", "    approval: required\n", ""));
    let finding = case.finding.to_string_lossy().into_owned();
    let pb_arg = pb.to_string_lossy().into_owned();
    let out = case.cordon(
        &[
            "run",
            &finding,
            "--playbooks",
            &pb_arg,
            "--approval-timeout",
            "1s",
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(124), "{:?}", text(&out));
    let (stdout, stderr) = text(&out);
    assert!(!stderr.contains("progress:"), "{stderr}");
    assert!(!stdout.contains("progress:"), "{stdout}");
    stdout_json(&out);
}

/// Exit 6 when a step under `on-failure: continue` fails: never "completed".
#[tokio::test(flavor = "multi_thread")]
async fn a_failure_under_continue_exits_6_and_cases_flags_it() {
    let case = setup("continue-failures").await;
    let missing_topic = "arn:aws:sns:us-east-1:123456789012:cordon-no-such-topic";
    let pb = playbook_dir(
        &case,
        &tag_playbook(
            "continue",
            "",
            &format!(
                "  - id: tell\n    action: notify\n    retry:\n      max-attempts: 1\n    with:\n      topic-arn: {missing_topic}\n"
            ),
        ),
    );
    let out = case.run(&pb, &[], &[]);
    assert_eq!(out.status.code(), Some(6), "{:?}", text(&out));
    assert!(
        !text(&out).0.contains("every step done"),
        "{:?}",
        text(&out)
    );
    let out = case.cordon(&["cases", "--output", "json"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rendered = doc.to_string();
    assert!(
        rendered.contains("\"completed-with-failures\""),
        "{rendered}"
    );
    let out = case.cordon(&["cases"], &[]);
    assert!(
        text(&out).0.contains("completed-with-failures"),
        "{:?}",
        text(&out)
    );
}

/// The loop guard through the CLI: contained and rolled back once, then the
/// finding again with a limit of one: automatic action stops, exit 1, and a
/// typo in `--approve-undo` is refused before anything is undone (exit 2).
#[tokio::test(flavor = "multi_thread")]
async fn the_loop_guard_stops_a_flapping_resource_with_exit_1() {
    let case = setup("loop-guard").await;
    let pb = playbook_dir(&case, &tag_playbook("stop", "", ""));
    let guard = ["--loop-guard-max", "1"];
    let out = case.run(&pb, &guard, &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let id = case.case_id();
    let out = case.cordon(&["rollback", &id, "--approve-undo", "tagg"], &[]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("--approve-undo tagg"),
        "{:?}",
        text(&out)
    );
    let out = case.cordon(&["rollback", &id], &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let before = case.journal().len();
    let out = case.run(&pb, &guard, &[]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let (stdout, stderr) = text(&out);
    assert!(
        format!("{stdout}{stderr}").contains("loop guard"),
        "{stdout}\n{stderr}"
    );
    let journal = case.journal();
    assert!(
        journal[before..]
            .iter()
            .any(|r| r["event"]["event"] == "loop-guard-tripped"),
        "{journal:?}"
    );
    assert!(
        !journal[before..]
            .iter()
            .any(|r| r["event"] == "step-applied"),
        "nothing was applied after the guard tripped"
    );
}

/// Issue 10 item 6: two findings (two ids, so two cases) on one instance. The
/// second case used to journal the first one's isolation group as the
/// instance's original groups, and after both were rolled back the instance
/// stayed isolated. Now the second case stops (exit 1) naming the holder and
/// changes nothing; rolled back in either order, the instance is back at its
/// original state.
#[tokio::test(flavor = "multi_thread")]
async fn two_findings_on_one_instance_both_rolled_back_leave_it_as_it_was() {
    let case = setup("overlap").await;
    let pb = playbook_dir(&case, SMALL_PLAYBOOK);
    let pb_arg = pb.to_string_lossy().into_owned();
    let mut second = case
        .fixture
        .instance_finding(INSTANCE)
        .expect("instance finding")
        .detail();
    let first_id = second["id"].as_str().unwrap().to_string();
    let second_id: String = first_id
        .chars()
        .rev()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    second["id"] = Value::String(second_id.clone());
    assert_ne!(first_id, second_id);
    let second_finding = case.dir.join("second-finding.json");
    std::fs::write(&second_finding, serde_json::to_vec_pretty(&second).unwrap()).unwrap();
    let second_finding = second_finding.to_string_lossy().into_owned();
    let run_second = || {
        case.cordon(
            &["run", &second_finding, "--yes", "--playbooks", &pb_arg],
            &[],
        )
    };

    let out = case.run(&pb, &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let first_case = case.case_id();
    case.assert_contained().await;
    let contained = case.state().await;

    let cases_dir = case.state_dir().join("cases");
    let out = run_second();
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let second_case = std::fs::read_dir(&cases_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("case-") && *name != first_case)
        .expect("the second case");
    let (stdout, stderr) = text(&out);
    let said = format!("{stdout}{stderr}");
    assert!(
        said.contains(&format!("held by case {first_case}")),
        "{said}"
    );
    let journal: Vec<Value> =
        std::fs::read_to_string(cases_dir.join(&second_case).join("journal.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert!(
        journal
            .iter()
            .all(|r| r["event"]["event"] != "step-prepared"),
        "the second case read the first one's containment as a pre-state: {journal:#?}"
    );
    assert!(
        journal
            .iter()
            .any(|r| r["event"]["event"] == "resource-busy"
                && r["event"]["holder"] == first_case.as_str()),
        "{journal:#?}"
    );
    assert!(
        diff_states(&contained, &case.state().await).is_empty(),
        "the refused case changed AWS"
    );
    let out = case.cordon(&["status", &second_case], &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(
        text(&out).0.contains(&format!(
            "resource instance:{}: held by case {first_case}",
            case.fixture.instances[INSTANCE].id
        )),
        "{:?}",
        text(&out)
    );

    // The refused case first: it holds nothing and opens nothing.
    let out = case.cordon(&["rollback", &second_case], &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(diff_states(&contained, &case.state().await).is_empty());
    // Then the holder: the instance is back as it was.
    let out = case.cordon(&["rollback", &first_case], &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    case.assert_back_at_pre_state("both cases rolled back")
        .await;

    // The second finding again: now it contains the instance itself, from
    // its true original state, and its rollback restores that state.
    let out = run_second();
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    case.assert_contained().await;
    // (Four openings on one instance: the loop guard's default of three would trip first.)
    let out = case.run(&pb, &["--loop-guard-max", "10"], &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the first finding again while the second case holds it: {:?}",
        text(&out)
    );
    assert!(
        text(&out)
            .0
            .contains(&format!("held by case {second_case}")),
        "{:?}",
        text(&out)
    );
    let out = case.cordon(&["rollback", &second_case], &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    case.assert_back_at_pre_state("the second case rolled back")
        .await;
    let out = case.cordon(&["rollback", &first_case], &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    case.assert_back_at_pre_state("both rolled back twice")
        .await;
}

/// Who may approve, through the binary: an identity outside the step's
/// `approvers` is refused (exit 3, the case keeps waiting, nothing changed);
/// with self-approval forbidden, the identity that opened the case is refused
/// even from another terminal (the emulator answers every caller with one ARN).
#[tokio::test(flavor = "multi_thread")]
async fn approvals_by_identities_the_playbook_does_not_allow_are_refused() {
    for (name, extra, refusal) in [
        (
            "approvers",
            "    approvers: [\"arn:aws:sts::*:assumed-role/IncidentLead/*\"]\n",
            "only arn:aws:sts::*:assumed-role/IncidentLead/* may approve it",
        ),
        (
            "self",
            "    self-approval: forbidden\n",
            "forbids self-approval",
        ),
    ] {
        let case = setup(&format!("approvers-{name}")).await;
        let pb = playbook_dir(&case, &tag_playbook("stop", extra, ""));
        let finding = case.finding.to_string_lossy().into_owned();
        let pb_arg = pb.to_string_lossy().into_owned();
        let out = case.cordon(&["run", &finding, "--playbooks", &pb_arg], &[]);
        assert_eq!(out.status.code(), Some(3), "{name}: {:?}", text(&out));
        let id = case.case_id();
        let before = case.state().await;
        let out = case.cordon(&["approve", &id, "tag"], &[]);
        assert_eq!(out.status.code(), Some(3), "{name}: {:?}", text(&out));
        let (_, stderr) = text(&out);
        assert!(stderr.contains(refusal), "{name}: {stderr}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{name}: one line: {stderr}"
        );
        assert!(
            !case
                .journal()
                .iter()
                .any(|r| r["event"]["event"] == "approval-granted"),
            "{name}: nothing granted"
        );
        assert_eq!(
            diff_states(&before, &case.state().await),
            Vec::<String>::new()
        );
        let out = case.cordon(&["status", &id], &[]);
        assert!(
            text(&out).0.contains("lifecycle: awaiting-approval"),
            "{name}: {:?}",
            text(&out)
        );
    }
}

/// Issue 9 item 6 end to end: a run killed inside the isolate step, between
/// journaling `untrack-begun` and the swaps, leaves the case's ENIs flagged
/// OPEN by `status` and `cases`; `status --live` asks AWS and tells an ENI
/// still in its own groups (closed) from one left in the allow-all group
/// (open, what a kill between the two swaps leaves); `resume` closes both.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_inside_isolation_flags_its_enis_open_until_resumed() {
    // A probe run finds the seq of the `untrack-begun` record.
    let probe = setup("open-probe").await;
    let pb = playbook_dir(&probe, SMALL_PLAYBOOK);
    let out = probe.run(&pb, &[], &[]);
    assert_eq!(out.status.code(), Some(0), "probe run");
    let untrack_begun = probe
        .journal()
        .iter()
        .find(|r| {
            r["event"]["event"] == "step-progress"
                && r["event"]["progress"]["phase"] == "untrack-begun"
        })
        .and_then(|r| r["seq"].as_u64())
        .expect("an untrack-begun record in the probe's journal");
    let aws = probe.aws;
    aws.reset().await;

    let case = provision(aws, "open-killed").await;
    let pb = playbook_dir(&case, SMALL_PLAYBOOK);
    let out = case.run(
        &pb,
        &[],
        &[("CORDON_TEST_CRASH_AFTER_RECORD", untrack_begun.to_string())],
    );
    assert_eq!(
        out.status.code(),
        None,
        "the run must abort after record {untrack_begun} (crash-hooks feature)"
    );
    let case_id = case.case_id();
    let enis: Vec<String> = case.fixture.instances[INSTANCE]
        .enis
        .iter()
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(enis.len(), 2, "the fixture's instance has two ENIs");

    let (status, _) = text(&case.cordon(&["status", &case_id], &[]));
    let open_line = status
        .lines()
        .find(|l| l.starts_with("OPEN: "))
        .unwrap_or_else(|| panic!("status must flag the open ENIs:\n{status}"));
    for eni in &enis {
        assert!(open_line.contains(eni.as_str()), "{eni} in {open_line}");
    }
    let (cases, _) = text(&case.cordon(&["cases"], &[]));
    assert!(cases.contains("OPEN ENI"), "cases must flag it:\n{cases}");

    // Nothing was swapped yet: AWS says both are closed.
    let (live, _) = text(&case.cordon(&["status", &case_id, "--live"], &[]));
    for eni in &enis {
        assert!(
            live.contains(&format!("live: {eni} is closed")),
            "{eni} closed in:\n{live}"
        );
    }

    // As if the process had died between the two swaps: one ENI in the
    // allow-all group.
    let ec2 = &case.aws.clients().ec2;
    let groups = ec2.describe_security_groups().send().await.unwrap();
    let untrack = groups
        .security_groups()
        .iter()
        .find(|g| g.group_name().is_some_and(|n| n.ends_with("-untrack")))
        .and_then(|g| g.group_id())
        .expect("the isolate step created its untrack group before untrack-begun")
        .to_string();
    ec2.modify_network_interface_attribute()
        .network_interface_id(&enis[0])
        .groups(&untrack)
        .send()
        .await
        .unwrap();
    let (live, _) = text(&case.cordon(&["status", &case_id, "--live"], &[]));
    assert!(
        live.contains(&format!("live: {} is open", enis[0])),
        "{} open in:\n{live}",
        enis[0]
    );
    assert!(
        live.contains(&format!("live: {} is closed", enis[1])),
        "{} closed in:\n{live}",
        enis[1]
    );

    let out = case.cordon(&["resume", &case_id], &[]);
    assert_eq!(out.status.code(), Some(0), "resume must complete");
    case.assert_contained().await;
    let (status, _) = text(&case.cordon(&["status", &case_id], &[]));
    assert!(
        !status.lines().any(|l| l.starts_with("OPEN: ")),
        "resume closed them:\n{status}"
    );
    let (cases, _) = text(&case.cordon(&["cases"], &[]));
    assert!(!cases.contains("OPEN ENI"), "{cases}");
}
