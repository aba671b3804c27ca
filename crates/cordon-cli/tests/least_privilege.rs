//! Least privilege on the emulator: every shipped playbook runs end to end
//! (`run --yes`, then `rollback`) through the `cordon` binary with IAM
//! authorization enforced, as a user holding exactly the actions of
//! `cordon policy` (on `Resource: "*"`: the emulator checks actions and
//! mostly ignores resources and conditions, which the golden policy files
//! pin instead). Then, one action at a time, the same runs without that
//! action: each enforced action's removal makes a run fail with an
//! AccessDenied line naming the action.
//!
//! One private emulator serves every run (authorization is process-wide in
//! moto); it is reset, re-provisioned as root with authorization off, and
//! only then switched to enforcing. A removal is tried on the playbooks whose
//! own policy holds the action, cheapest first, until one fails.
//!
//! What the emulator cannot show, and why each is still in the policy
//! (asserted below: removing one changes nothing on the emulator, so this list
//! stays exact):
//! - `kms:GenerateDataKey`, `kms:Decrypt`: S3 SSE-KMS and an encrypted SNS
//!   topic call KMS on the caller's behalf; the emulator encrypts without
//!   asking KMS as the caller.
//! - `iam:PassRole` and `secretsmanager:TagResource`: authorized in AWS
//!   alongside the associating or tagging-at-creation call; the emulator checks
//!   only the call's own action. (`ec2:CreateTags` at creation is the same, but
//!   it is also a call of its own for `tag-resource`, whose removal fails.)
//! - `sts:GetCallerIdentity`: the emulator, like AWS, never denies it.
//! - `guardduty:GetFindings`, `guardduty:ListDetectors`,
//!   `guardduty:ListFindings`, `s3:ListBucket`, `s3:GetObject`: the front
//!   doors' GuardDuty intake and S3 journal, which a CLI run from a finding file
//!   with a local journal does not use (intake is tested with the SDK's replay
//!   client); evidence in a versioned bucket is read back by version, which is
//!   `s3:GetObjectVersion`.
//! - `sts:AssumeRole`, `ssm:GetParameter`: the cross-account role and the
//!   pause parameter, which a single-account run without `--pause-parameter`
//!   does not use (both are tested in `tests/trust.rs`).
//!
//! The emulator's signature check and error shapes need a re-signing proxy in
//! between (see `emulator_proxy`); it changes encodings, never actions.
//! Only a real account shows the resource ARNs and condition keys at work.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod emulator_proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use cordon_aws::client::AwsClients;
use cordon_aws::evidence_bucket::{self, DEFAULT_KMS_ALIAS};
use cordon_core::policy::{PolicyOptions, role_policy};
use cordon_core::validate::load_playbooks;
use cordon_gameday::{EnvironmentSpec, provision};
use cordon_tests::{ACCOUNT_ID, Emulator, REGION, create_quarantine_policy};
use emulator_proxy::ResigningProxy;
use serde_json::json;

/// Removing one of these changes nothing on the emulator (see the module docs).
const NOT_ENFORCED_BY_THE_EMULATOR: &[&str] = &[
    "guardduty:GetFindings",
    "guardduty:ListDetectors",
    "guardduty:ListFindings",
    "iam:PassRole",
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "s3:GetObject",
    "s3:ListBucket",
    "secretsmanager:TagResource",
    "ssm:GetParameter",
    "sts:AssumeRole",
    "sts:GetCallerIdentity",
];

/// Shipped playbooks without a scenario here yet: the Config and Security
/// Hub remediations. The emulator authorizes S3's public-access-block calls
/// under names AWS does not use (`s3:PutPublicAccessBlock` for
/// `s3:PutBucketPublicAccessBlock`), so running them with exactly the
/// generated policy needs a map of the emulator's names first. Their calls'
/// permissions are proven one by one in `tests/tests/permissions_proven.rs`.
const NOT_ENFORCED_HERE: [&str; 7] = [
    "config-ebs-snapshot-public-account",
    "config-ebs-snapshot-public-restorable-check",
    "config-ec2-imdsv2-check",
    "config-restricted-common-ports",
    "config-restricted-ssh",
    "config-s3-bucket-level-public-access-prohibited",
    "securityhub-open-security-group",
];

const EVIDENCE_BUCKET: &str = "cordon-least-privilege-evidence";
const PRINCIPAL: &str = "cordon-responder";

/// The shipped playbooks, cheapest scenario first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scenario {
    DefaultNotify,
    IamTemporaryCredentials,
    IamUserTemporaryCredentials,
    IamUserKeyCompromised,
    Ec2Low,
    Ec2Medium,
    Ec2CompromisedHigh,
}

const SCENARIOS: [Scenario; 7] = [
    Scenario::DefaultNotify,
    Scenario::IamTemporaryCredentials,
    Scenario::IamUserTemporaryCredentials,
    Scenario::IamUserKeyCompromised,
    Scenario::Ec2Low,
    Scenario::Ec2Medium,
    Scenario::Ec2CompromisedHigh,
];

impl Scenario {
    fn playbook(self) -> &'static str {
        match self {
            Scenario::DefaultNotify => "default-notify",
            Scenario::IamTemporaryCredentials => "iam-temporary-credentials",
            Scenario::IamUserTemporaryCredentials => "iam-user-temporary-credentials",
            Scenario::IamUserKeyCompromised => "iam-user-key-compromised",
            Scenario::Ec2Low => "ec2-low",
            Scenario::Ec2Medium => "ec2-medium",
            Scenario::Ec2CompromisedHigh => "ec2-compromised-high",
        }
    }

    /// Provisions what the playbook acts on (as root, authorization off) and
    /// returns the finding and the environment the run needs.
    async fn prepare(self, root: &AwsClients) -> (serde_json::Value, Vec<(&'static str, String)>) {
        match self {
            Scenario::DefaultNotify => {
                let topic = root
                    .sns
                    .create_topic()
                    .name("responders")
                    .send()
                    .await
                    .unwrap();
                let topic = topic.topic_arn().unwrap().to_string();
                (
                    shipped_finding("s3-bucket", None),
                    vec![("CORDON_NOTIFY_TOPIC_ARN", topic)],
                )
            }
            Scenario::IamTemporaryCredentials => {
                let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
                root.iam
                    .create_role()
                    .role_name("web-app-role")
                    .assume_role_policy_document(trust)
                    .send()
                    .await
                    .unwrap();
                (shipped_finding("assumed-role-key", None), Vec::new())
            }
            Scenario::IamUserTemporaryCredentials => {
                // The user whose GetSessionToken credentials the fixture names.
                root.iam
                    .create_user()
                    .user_name("deploy-bot")
                    .send()
                    .await
                    .unwrap();
                (shipped_finding("iam-user-temporary-key", None), Vec::new())
            }
            Scenario::IamUserKeyCompromised => {
                let (key_id, _) = user_with_key(root, "deploy-bot").await;
                // Created once per account by a responder, as the README says.
                create_quarantine_policy(root).await;
                (shipped_finding("iam-user-key", Some(&key_id)), Vec::new())
            }
            Scenario::Ec2Low | Scenario::Ec2Medium | Scenario::Ec2CompromisedHigh => {
                let fixture = provision(root, &EnvironmentSpec::compromised_instance())
                    .await
                    .unwrap();
                let instance = fixture.instance("web-01").unwrap();
                // Scale-in protection makes rollback restore it after re-attaching.
                root.autoscaling
                    .set_instance_protection()
                    .auto_scaling_group_name(instance.auto_scaling_group.as_deref().unwrap())
                    .instance_ids(&instance.id)
                    .protected_from_scale_in(true)
                    .send()
                    .await
                    .unwrap();
                evidence_bucket::init(root, EVIDENCE_BUCKET, DEFAULT_KMS_ALIAS, None)
                    .await
                    .unwrap();
                let severity = match self {
                    Scenario::Ec2Low => 2.0,
                    Scenario::Ec2Medium => 5.0,
                    _ => 8.0,
                };
                let mut finding = fixture.instance_finding("web-01").unwrap();
                finding.severity = severity;
                finding.finding_type = "Backdoor:EC2/C&CActivity.B".to_string();
                (
                    finding.to_json(false),
                    vec![("CORDON_EVIDENCE_BUCKET", EVIDENCE_BUCKET.to_string())],
                )
            }
        }
    }
}

/// A finding from `tests/fixtures/findings/`, moved into the emulator's
/// account and, for a key finding, naming the key the emulator issued.
fn shipped_finding(name: &str, access_key_id: Option<&str>) -> serde_json::Value {
    let path = repo().join(format!("tests/fixtures/findings/{name}.json"));
    let mut finding: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    finding["accountId"] = json!(ACCOUNT_ID);
    finding["region"] = json!(REGION);
    if let Some(key) = access_key_id {
        finding["resource"]["accessKeyDetails"]["accessKeyId"] = json!(key);
    }
    finding
}

/// Creates `name` with an access key; returns the key id and secret.
async fn user_with_key(root: &AwsClients, name: &str) -> (String, String) {
    root.iam.create_user().user_name(name).send().await.unwrap();
    let key = root
        .iam
        .create_access_key()
        .user_name(name)
        .send()
        .await
        .unwrap();
    let key = key.access_key().unwrap();
    (
        key.access_key_id().to_string(),
        key.secret_access_key().to_string(),
    )
}

/// How one run and its rollback ended.
#[derive(Debug)]
struct Attempt {
    succeeded: bool,
    output: String,
}

/// The emulator all runs share, the proxy the runs reach it through, and a
/// scratch directory.
struct Bench {
    emulator: Emulator,
    proxy: ResigningProxy,
    dir: PathBuf,
    runs: usize,
}

impl Bench {
    /// Resets everything, provisions `scenario` as root, creates the principal
    /// with `actions` on `*`, enforces authorization, runs and rolls back.
    async fn attempt(&mut self, scenario: Scenario, actions: &BTreeSet<String>) -> Attempt {
        self.runs += 1;
        self.emulator.enforce_auth_after(u32::MAX).unwrap();
        self.emulator.reset().await.unwrap();
        let root = AwsClients::from_sdk_config(&self.emulator.sdk_config().await).unwrap();
        let (finding, env) = scenario.prepare(&root).await;
        let key = principal(&root, actions).await;
        self.proxy.register(&key.0, &key.1);
        let state = self.dir.join(format!("state-{}", self.runs));
        let finding_path = self.dir.join(format!("finding-{}.json", self.runs));
        std::fs::write(&finding_path, serde_json::to_vec(&finding).unwrap()).unwrap();
        self.emulator.enforce_auth_after(0).unwrap();

        let cordon = |args: &[&str]| {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_cordon"))
                .args(args)
                .env("AWS_ENDPOINT_URL", self.proxy.endpoint())
                .env("AWS_REGION", REGION)
                .env("AWS_ACCESS_KEY_ID", &key.0)
                .env("AWS_SECRET_ACCESS_KEY", &key.1)
                .env_remove("AWS_SESSION_TOKEN")
                .env_remove("AWS_PROFILE")
                .env("CORDON_STATE_DIR", &state)
                .env("CORDON_PLAYBOOKS", repo().join("playbooks"))
                .env_remove("CORDON_EVIDENCE_BUCKET")
                .env_remove("CORDON_NOTIFY_TOPIC_ARN")
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.code(), text)
        };
        let (code, mut output) = cordon(&["run", finding_path.to_str().unwrap(), "--yes"]);
        if code != Some(0) || failed_somewhere(&output) {
            return Attempt {
                succeeded: false,
                output,
            };
        }
        assert!(
            output.contains(&format!("playbook: {}", scenario.playbook()))
                || output.contains(scenario.playbook()),
            "{scenario:?} was routed elsewhere:\n{output}"
        );
        let case = case_id(&output);
        // Approve every undo: this test is about permissions, and undo that
        // re-arms credentials is only done when approved.
        let (_, status) = cordon(&["status", &case, "--output", "json"]);
        let status: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
        let mut args = vec!["rollback".to_string(), case.clone()];
        for step in status["plan"]["steps"].as_array().into_iter().flatten() {
            if let Some(id) = step["id"].as_str() {
                args.push("--approve-undo".to_string());
                args.push(id.to_string());
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, back) = cordon(&args);
        output.push_str(&back);
        Attempt {
            succeeded: code == Some(0) && !failed_somewhere(&back),
            output,
        }
    }
}

/// Whether any step (or its undo) failed, including `on-failure: continue`
/// steps, after which a run still ends "completed" with exit 0.
fn failed_somewhere(output: &str) -> bool {
    output
        .lines()
        .any(|line| line.contains(" step-failed ") || line.contains("rollback-failed"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn case_id(output: &str) -> String {
    let start = output.find("case-").expect("the output names the case");
    output[start..start + 25].to_string()
}

/// A user allowed exactly `actions` on any resource; returns its key.
async fn principal(root: &AwsClients, actions: &BTreeSet<String>) -> (String, String) {
    let document = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
    });
    let key = user_with_key(root, PRINCIPAL).await;
    let policy = root
        .iam
        .create_policy()
        .policy_name("cordon-policy-actions")
        .policy_document(document.to_string())
        .send()
        .await
        .unwrap();
    root.iam
        .attach_user_policy()
        .user_name(PRINCIPAL)
        .policy_arn(policy.policy().unwrap().arn().unwrap())
        .send()
        .await
        .unwrap();
    key
}

/// The line of `output` that reports `action` as denied, if any.
fn denial_naming<'a>(output: &'a str, action: &str) -> Option<&'a str> {
    output.lines().find(|line| {
        line.contains(action)
            && ["AccessDenied", "UnauthorizedOperation", "not authorized"]
                .iter()
                .any(|marker| line.contains(marker))
    })
}

#[tokio::test]
async fn the_generated_policy_is_enough_and_every_enforced_action_in_it_is_needed() {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("cordon-least-privilege-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let emulator = Emulator::start().await.expect("emulator starts");
    let proxy = ResigningProxy::start(emulator.port()).unwrap();
    let mut bench = Bench {
        emulator,
        proxy,
        dir,
        runs: 0,
    };
    let playbooks: Vec<_> = load_playbooks(&repo().join("playbooks"))
        .unwrap()
        .into_iter()
        .map(|l| l.playbook)
        .collect();
    let opts = PolicyOptions::default();
    let full = role_policy(&playbooks, &opts)
        .unwrap()
        .document
        .allowed_actions();
    let mut own: BTreeMap<Scenario, BTreeSet<String>> = BTreeMap::new();
    for scenario in SCENARIOS {
        let playbook = playbooks
            .iter()
            .find(|p| p.name == scenario.playbook())
            .expect("every scenario's playbook is shipped");
        own.insert(
            scenario,
            role_policy(std::slice::from_ref(playbook), &opts)
                .unwrap()
                .document
                .allowed_actions(),
        );
    }
    let mut accounted: BTreeSet<&str> = own.keys().map(|s| s.playbook()).collect();
    for name in NOT_ENFORCED_HERE {
        assert!(
            playbooks.iter().any(|p| p.name == *name),
            "{name} is listed as not enforced here but is not shipped"
        );
        accounted.insert(name);
    }
    let shipped: BTreeSet<&str> = playbooks.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        accounted, shipped,
        "every shipped playbook has a scenario here or is listed in NOT_ENFORCED_HERE"
    );

    for scenario in SCENARIOS {
        let attempt = bench.attempt(scenario, &full).await;
        assert!(
            attempt.succeeded,
            "{scenario:?} fails with exactly the generated policy:\n{}",
            attempt.output
        );
    }
    let baseline = started.elapsed();
    // To look into a few actions only: CORDON_LEAST_PRIVILEGE_ONLY=ec2:CreateTags,sns:Publish
    let only: Option<BTreeSet<String>> = std::env::var("CORDON_LEAST_PRIVILEGE_ONLY")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect());

    let mut problems = Vec::new();
    let mut denials = Vec::new();
    for action in &full {
        if only.as_ref().is_some_and(|o| !o.contains(action)) {
            continue;
        }
        // Needed only by playbooks without a scenario here: nothing to run.
        if !own.values().any(|actions| actions.contains(action)) {
            continue;
        }
        let without: BTreeSet<String> = full.iter().filter(|a| *a != action).cloned().collect();
        let mut denied = None;
        for scenario in SCENARIOS.iter().filter(|s| own[s].contains(action)) {
            let attempt = bench.attempt(*scenario, &without).await;
            if !attempt.succeeded {
                denied = Some((*scenario, attempt));
                break;
            }
        }
        let expected_enforced = !NOT_ENFORCED_BY_THE_EMULATOR.contains(&action.as_str());
        match (denied, expected_enforced) {
            (Some((scenario, attempt)), true) => match denial_naming(&attempt.output, action) {
                Some(line) => denials.push(format!("{action} ({scenario:?}): {}", line.trim())),
                None => problems.push(format!(
                    "without {action}, {scenario:?} fails without a denial line naming it:\n{}",
                    attempt.output
                )),
            },
            (None, true) => problems.push(format!(
                "removing {action} changes nothing on the emulator: either it is not needed, or add it to NOT_ENFORCED_BY_THE_EMULATOR with the reason"
            )),
            (Some((scenario, attempt)), false) => problems.push(format!(
                "{action} is listed as not enforced, but {scenario:?} fails without it: take it off the list\n{}",
                attempt.output
            )),
            (None, false) => {}
        }
    }
    eprintln!(
        "least privilege: {} actions, {} runs; baseline {:.0?}, all {:.0?}\n{}",
        full.len(),
        bench.runs,
        baseline,
        started.elapsed(),
        denials.join("\n")
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
