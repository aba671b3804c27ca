//! `cordon gameday run --target aws` and `cordon gameday cleanup`, aimed at
//! the test harness's emulator on 127.0.0.1 through `AWS_ENDPOINT_URL`, as a
//! responder aims them at a sandbox account through their AWS configuration.
//!
//! The refusals are checked on the wire: the Game Day talks to the emulator
//! through the loopback proxy, which logs every request it relays, whatever
//! code path sent it (the call path or a raw SDK client) and whether or not
//! the process survived to report it. That log is stronger evidence of "no
//! mutating call" than the process's own call recorder, which only sees
//! what goes through its call path and dies with the process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use cordon_aws::client::is_read_only;
use cordon_gameday::discover;
use cordon_gameday::ledger::{CREATIONS_FILE, CreationLog};
use cordon_latency_proxy::{LatencyProxy, ProxyConfig};
use cordon_tests::EmulatorGuard;
use serde_json::Value;

/// The bucket a sandbox prepares for Game Day evidence.
const EVIDENCE_BUCKET: &str = "gameday-evidence";

/// A proxy in front of the emulator that logs every request it relays.
struct Wire {
    endpoint: String,
    log: PathBuf,
    serving: tokio::task::JoinHandle<()>,
}

impl Wire {
    async fn start(guard: &EmulatorGuard, name: &str) -> Wire {
        let port: u16 = guard
            .endpoint()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the emulator's port");
        let log = cordon_tests::scratch_dir(&format!("{name}-wire")).join("requests.jsonl");
        let mut config = ProxyConfig::new(SocketAddr::from(([127, 0, 0, 1], port)));
        config.delay = Duration::ZERO;
        config.log = Some(log.clone());
        let proxy = LatencyProxy::bind(config).await.expect("proxy");
        let endpoint = format!("http://{}", proxy.local_addr());
        let serving = tokio::spawn(proxy.serve());
        Wire {
            endpoint,
            log,
            serving,
        }
    }

    /// The operation of every request relayed (S3's REST calls by method).
    fn operations(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["operation"].as_str().map(str::to_string))
            .collect()
    }

    /// Requests that may have changed something: every S3 write method and
    /// every operation that is not a read.
    fn mutating(&self) -> Vec<String> {
        self.operations()
            .into_iter()
            .filter(|op| match op.as_str() {
                "GET" | "HEAD" => false,
                "PUT" | "POST" | "DELETE" | "PATCH" => true,
                op => !is_read_only(op),
            })
            .collect()
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

/// The environment of a responder whose AWS configuration points at `endpoint`.
fn env(guard: &EmulatorGuard, endpoint: &str) -> Vec<(&'static str, String)> {
    guard
        .env()
        .into_iter()
        .map(|(k, v)| {
            if k == "AWS_ENDPOINT_URL" {
                (k, endpoint.to_string())
            } else {
                (k, v)
            }
        })
        .collect()
}

fn cordon(env: &[(&'static str, String)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cordon"));
    command
        .current_dir(cordon_tests::repo_root())
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("CORDON_STATE_DIR")
        .env_remove("CORDON_EVIDENCE_BUCKET")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true);
    command
}

/// `cordon gameday run SCENARIO --target aws ARGS --out OUT --output json`.
async fn gameday_aws(
    env: &[(&'static str, String)],
    scenario: &str,
    args: &[&str],
    out: &Path,
) -> Output {
    cordon(env)
        .args(["gameday", "run", scenario, "--target", "aws"])
        .args(args)
        .arg("--out")
        .arg(out)
        .args(["--output", "json"])
        .output()
        .await
        .expect("cordon runs")
}

async fn account(guard: &EmulatorGuard) -> String {
    cordon_gameday::run::caller(guard.clients())
        .await
        .expect("caller")
        .account
}

/// An evidence bucket prepared as docs/gameday.md says: `cordon evidence
/// init`, then the Game Day tag (unless `tagged` is false).
async fn evidence_bucket(guard: &EmulatorGuard, bucket: &str, tagged: bool) {
    let init = cordon(&guard.env())
        .args(["evidence", "init", bucket])
        .output()
        .await
        .expect("cordon runs");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    if tagged {
        guard
            .clients()
            .s3
            .put_bucket_tagging()
            .bucket(bucket)
            .tagging(
                aws_sdk_s3::types::Tagging::builder()
                    .tag_set(
                        aws_sdk_s3::types::Tag::builder()
                            .key("cordon:gameday")
                            .value("sandbox")
                            .build()
                            .expect("tag"),
                    )
                    .build()
                    .expect("tagging"),
            )
            .send()
            .await
            .expect("tag the bucket");
    }
}

/// Runs a Game Day of `leaked-key` with `args` through a fresh logging
/// proxy and asserts a refusal: exit 2, one line on stderr holding every
/// `needle`, nothing journaled, and on the wire the identity read and no
/// mutating call.
async fn assert_refused(guard: &EmulatorGuard, name: &str, args: &[&str], needles: &[&str]) {
    let wire = Wire::start(guard, name).await;
    let out = cordon_tests::scratch_dir(name).join("out");
    let output = gameday_aws(
        &env(guard, &wire.endpoint),
        "gameday/leaked-key.yaml",
        args,
        &out,
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "refused: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    }
    let operations = wire.operations();
    assert!(
        operations.iter().any(|op| op == "GetCallerIdentity"),
        "the Game Day's calls went through the proxy: {operations:?}"
    );
    assert_eq!(wire.mutating(), Vec::<String>::new(), "all: {operations:?}");
    assert!(!out.join(CREATIONS_FILE).exists(), "nothing journaled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_not_on_the_allow_list_is_refused_before_any_mutating_call() {
    let guard = cordon_tests::emulator().await;
    evidence_bucket(&guard, EVIDENCE_BUCKET, true).await;
    let account = account(&guard).await;
    assert_ne!(account, "111111111111");
    assert_refused(
        &guard,
        "gameday-aws-no-list",
        &["--evidence-bucket", EVIDENCE_BUCKET],
        &["--allow-account", &account],
    )
    .await;
    assert_refused(
        &guard,
        "gameday-aws-not-allowed",
        &[
            "--allow-account",
            "111111111111",
            "--evidence-bucket",
            EVIDENCE_BUCKET,
        ],
        &[
            &format!("account {account} is not on the allow-list"),
            "--allow-account 111111111111",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untagged_existing_resource_is_refused_before_any_mutating_call() {
    let guard = cordon_tests::emulator().await;
    evidence_bucket(&guard, "plain-evidence", false).await;
    let account = account(&guard).await;
    assert_refused(
        &guard,
        "gameday-aws-untagged",
        &[
            "--allow-account",
            &account,
            "--evidence-bucket",
            "plain-evidence",
        ],
        &["s3://plain-evidence does not carry the tag cordon:gameday"],
    )
    .await;
}

/// What the run's creation journal says, and what of it AWS still has.
async fn leftovers(guard: &EmulatorGuard, out: &Path) -> (CreationLog, Vec<String>) {
    let log = CreationLog::read(out).expect("creation journal");
    let found = discover(guard.clients(), &log.run.owner)
        .await
        .expect("discover");
    (log, found.iter().map(ToString::to_string).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_account_runs_the_scenario_and_cleanup_leaves_nothing_tagged() {
    let guard = cordon_tests::emulator().await;
    evidence_bucket(&guard, EVIDENCE_BUCKET, true).await;
    let account = account(&guard).await;
    let out = cordon_tests::scratch_dir("gameday-aws-run").join("out");
    let run = gameday_aws(
        &guard.env(),
        "gameday/crypto-miner.yaml",
        &[
            "--allow-account",
            &account,
            "--evidence-bucket",
            EVIDENCE_BUCKET,
        ],
        &out,
    )
    .await;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let card: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no scorecard ({e}): {stdout}\n{}\n{}",
            String::from_utf8_lossy(&run.stderr),
            std::fs::read_to_string(out.join("cordon.log")).unwrap_or_default()
        )
    });
    assert_eq!(
        (run.status.code(), &card["passed"]),
        (Some(0), &Value::Bool(true)),
        "{:#}",
        card["expectations"]
    );
    assert_eq!(card["target"], "aws");
    assert_eq!(card["cleanup-failed"], serde_json::json!([]));
    assert_eq!(
        card["evidence"][0]["verified"], true,
        "{}",
        card["evidence"]
    );

    let (log, left) = leftovers(&guard, &out).await;
    assert_eq!(log.run.target, "aws");
    assert_eq!(log.run.account, account);
    assert!(log.cleaned_up, "the journal ends with a clean clean-up");
    assert!(log.unanswered.is_empty(), "{:?}", log.unanswered);
    assert!(
        log.known
            .iter()
            .any(|r| r.kind == cordon_gameday::ResourceKind::ManagedPolicy),
        "the quarantine policy the account lacked was created and journaled: {:?}",
        log.known
    );
    assert_eq!(left, Vec::<String>::new(), "nothing tagged is left");
    for resource in &log.known {
        let gone = match resource.kind {
            cordon_gameday::ResourceKind::Instance => {
                let described = guard
                    .clients()
                    .ec2
                    .describe_instances()
                    .instance_ids(&resource.id)
                    .send()
                    .await
                    .expect("describe");
                described
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .all(|i| {
                        i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("terminated")
                    })
            }
            cordon_gameday::ResourceKind::ManagedPolicy => guard
                .clients()
                .iam
                .get_policy()
                .policy_arn(&resource.id)
                .send()
                .await
                .is_err(),
            _ => true,
        };
        assert!(gone, "{resource} is gone");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_after_the_game_day_was_killed_removes_everything_it_created() {
    let guard = cordon_tests::emulator().await;
    evidence_bucket(&guard, EVIDENCE_BUCKET, true).await;
    let account = account(&guard).await;
    let out = cordon_tests::scratch_dir("gameday-aws-killed").join("out");
    let mut game_day = cordon(&guard.env())
        .args([
            "gameday",
            "run",
            "gameday/crypto-miner.yaml",
            "--target",
            "aws",
            "--allow-account",
            &account,
            "--evidence-bucket",
            EVIDENCE_BUCKET,
            "--output",
            "json",
            "--out",
        ])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cordon starts");
    // SIGKILL once several creations are journaled: in the middle of
    // provisioning, when nothing of the Game Day gets to clean up.
    let journal = out.join(CREATIONS_FILE);
    let started = Instant::now();
    loop {
        let created = std::fs::read_to_string(&journal)
            .unwrap_or_default()
            .matches("\"record\":\"created\"")
            .count();
        if created >= 5 {
            break;
        }
        assert!(
            game_day.try_wait().expect("wait").is_none(),
            "the Game Day ended before creating 5 resources"
        );
        assert!(started.elapsed() < Duration::from_secs(120), "too slow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    game_day.kill().await.expect("SIGKILL our own child");

    let (log, left) = leftovers(&guard, &out).await;
    assert!(!log.cleaned_up);
    assert!(!left.is_empty(), "the killed run left resources behind");

    let cleanup = cordon(&guard.env())
        .args(["gameday", "cleanup", "--journal"])
        .arg(&out)
        .output()
        .await
        .expect("cordon runs");
    let report = String::from_utf8_lossy(&cleanup.stdout);
    assert_eq!(
        cleanup.status.code(),
        Some(0),
        "{report}\n{}",
        String::from_utf8_lossy(&cleanup.stderr)
    );
    for resource in &log.known {
        assert!(
            report.contains(&format!("deleted {resource}")),
            "{resource} in {report}"
        );
    }
    let (after, left) = leftovers(&guard, &out).await;
    assert_eq!(left, Vec::<String>::new(), "nothing tagged is left");
    assert!(after.cleaned_up, "the clean-up is journaled");
    let vpcs = log
        .known
        .iter()
        .filter(|r| r.kind == cordon_gameday::ResourceKind::Vpc)
        .map(|r| r.id.clone());
    for vpc in vpcs {
        let described = guard
            .clients()
            .ec2
            .describe_vpcs()
            .vpc_ids(&vpc)
            .send()
            .await;
        assert!(described.is_err(), "{vpc} is gone");
    }

    // A second clean-up finds nothing more to do and says so.
    let again = cordon(&guard.env())
        .args(["gameday", "cleanup", "--journal"])
        .arg(&out)
        .output()
        .await
        .expect("cordon runs");
    assert_eq!(again.status.code(), Some(0));
}
