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
//! (asserted below: each scenario still succeeds with all of them removed at
//! once, so removing any one changes nothing, and this list stays exact):
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
//! Where the emulator authorizes a call under another name than AWS does
//! ([`EMULATOR_ALIASES`]), the principal also holds the emulator's name for
//! each AWS name it holds, and a removal takes both away; the generated policy
//! itself is never widened. A run without each alias alone is asserted to fail
//! with a denial naming the AWS action, so the map stays exact when the
//! emulator changes.
//!
//! The emulator's signature check and error shapes need a re-signing proxy in
//! between (see `emulator_proxy`); it changes encodings, never actions.
//! Only a real account shows the resource ARNs and condition keys at work.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::emulator_proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use cordon_aws::client::AwsClients;
use cordon_aws::evidence_bucket::{self, DEFAULT_KMS_ALIAS};
use cordon_core::policy::{PolicyOptions, role_policy};
use cordon_core::validate::load_playbooks;
use cordon_gameday::{EnvironmentSpec, provision};
use cordon_tests::shipped::security_hub_group_finding;
use cordon_tests::{
    ACCOUNT_ID, Emulator, REGION, config_event, create_quarantine_policy, one_instance_environment,
    open_security_group, public_snapshot, set_metadata_options,
};
use emulator_proxy::ResigningProxy;
use serde_json::json;

/// Removing one of these changes nothing on the emulator (see the module
/// docs): every scenario succeeds without all of them at once.
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

/// The emulator's name for a call, next to the name AWS authorizes it under:
/// (AWS name, emulator name). moto 5.2.5 keys S3's bucket sub-resources by
/// the query parameter (`?publicAccessBlock`), but its table of IAM names
/// spells that one `public_access_block`, so the bucket-level public access
/// block calls fall through to the bucket's default action for their HTTP
/// method: `PutPublicAccessBlock` is authorized as `s3:CreateBucket`,
/// `DeletePublicAccessBlock` as `s3:DeleteBucket` (AWS: both
/// `s3:PutBucketPublicAccessBlock`) and `GetPublicAccessBlock` as
/// `s3:ListBucket` (AWS: `s3:GetBucketPublicAccessBlock`). `s3:ListBucket` is
/// also an AWS action of the generated policy (the S3 journal), which the runs
/// here do not use (see [`NOT_ENFORCED_BY_THE_EMULATOR`]): a run without it
/// still holds it as the emulator's name while it holds
/// `s3:GetBucketPublicAccessBlock`, and one without the latter loses both.
const EMULATOR_ALIASES: &[(&str, &str)] = &[
    ("s3:GetBucketPublicAccessBlock", "s3:ListBucket"),
    ("s3:PutBucketPublicAccessBlock", "s3:CreateBucket"),
    ("s3:PutBucketPublicAccessBlock", "s3:DeleteBucket"),
];

/// What the test principal is granted for the AWS actions `actions`: those,
/// and the emulator's name for each that the emulator authorizes otherwise.
fn emulator_grant(actions: &BTreeSet<String>) -> BTreeSet<String> {
    let aliases = EMULATOR_ALIASES
        .iter()
        .filter(|(aws, _)| actions.contains(*aws))
        .map(|(_, emulator)| (*emulator).to_string());
    actions.iter().cloned().chain(aliases).collect()
}

/// [`emulator_grant`] of `full` without `removed`, and without the
/// emulator's names for those: what shows whether a run needs them.
fn grant_without(full: &BTreeSet<String>, removed: &BTreeSet<String>) -> BTreeSet<String> {
    let mut grant = emulator_grant(&full.difference(removed).cloned().collect());
    for (_, emulator) in EMULATOR_ALIASES
        .iter()
        .filter(|(aws, _)| removed.contains(*aws))
    {
        grant.remove(*emulator);
    }
    grant
}

const EVIDENCE_BUCKET: &str = "cordon-least-privilege-evidence";
const PRINCIPAL: &str = "cordon-responder";

/// A bucket with no public access block of its own.
const OPEN_BUCKET: &str = "customer-exports";

/// The shipped playbooks, cheapest scenario first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scenario {
    DefaultNotify,
    BucketPublicAccess,
    AccountSnapshots,
    PublicSnapshot,
    RestrictedSsh,
    RestrictedCommonPorts,
    SecurityHubOpenGroup,
    IamTemporaryCredentials,
    IamUserTemporaryCredentials,
    IamUserKeyCompromised,
    Imdsv2,
    Ec2Low,
    Ec2Medium,
    Ec2CompromisedHigh,
}

const SCENARIOS: [Scenario; 14] = [
    Scenario::DefaultNotify,
    Scenario::BucketPublicAccess,
    Scenario::AccountSnapshots,
    Scenario::PublicSnapshot,
    Scenario::RestrictedSsh,
    Scenario::RestrictedCommonPorts,
    Scenario::SecurityHubOpenGroup,
    Scenario::IamTemporaryCredentials,
    Scenario::IamUserTemporaryCredentials,
    Scenario::IamUserKeyCompromised,
    Scenario::Imdsv2,
    Scenario::Ec2Low,
    Scenario::Ec2Medium,
    Scenario::Ec2CompromisedHigh,
];

impl Scenario {
    fn playbook(self) -> &'static str {
        match self {
            Scenario::DefaultNotify => "default-notify",
            Scenario::BucketPublicAccess => "config-s3-bucket-level-public-access-prohibited",
            Scenario::PublicSnapshot => "config-ebs-snapshot-public-restorable-check",
            Scenario::AccountSnapshots => "config-ebs-snapshot-public-account",
            Scenario::RestrictedSsh => "config-restricted-ssh",
            Scenario::RestrictedCommonPorts => "config-restricted-common-ports",
            Scenario::SecurityHubOpenGroup => "securityhub-open-security-group",
            Scenario::IamTemporaryCredentials => "iam-temporary-credentials",
            Scenario::IamUserTemporaryCredentials => "iam-user-temporary-credentials",
            Scenario::IamUserKeyCompromised => "iam-user-key-compromised",
            Scenario::Imdsv2 => "config-ec2-imdsv2-check",
            Scenario::Ec2Low => "ec2-low",
            Scenario::Ec2Medium => "ec2-medium",
            Scenario::Ec2CompromisedHigh => "ec2-compromised-high",
        }
    }

    /// Provisions what the playbook acts on (as root, authorization off) and
    /// returns the finding and the environment the run needs.
    async fn prepare(self, root: &AwsClients) -> (serde_json::Value, Vec<(&'static str, String)>) {
        match self {
            Scenario::DefaultNotify => (shipped_finding("s3-bucket", None), notify_env(root).await),
            // No block before: the undo deletes the one the step puts, so the
            // run makes all three public-access-block calls.
            Scenario::BucketPublicAccess => {
                root.s3
                    .create_bucket()
                    .bucket(OPEN_BUCKET)
                    .send()
                    .await
                    .unwrap();
                let event = config_event(
                    "s3-bucket-level-public-access-prohibited",
                    "AWS::S3::Bucket",
                    OPEN_BUCKET,
                );
                (parse(&event), notify_env(root).await)
            }
            // One public snapshot: named by the evaluation of the snapshot, or
            // found by the sweep the evaluation of the account starts.
            Scenario::PublicSnapshot | Scenario::AccountSnapshots => {
                let snapshot = public_snapshot(root).await;
                let event = if self == Scenario::PublicSnapshot {
                    config_event(
                        "ebs-snapshot-public-restorable-check",
                        "AWS::EC2::Snapshot",
                        &snapshot,
                    )
                } else {
                    config_event(
                        "ebs-snapshot-public-restorable-check",
                        "AWS::::Account",
                        ACCOUNT_ID,
                    )
                };
                (parse(&event), notify_env(root).await)
            }
            // One group open to the world on SSH and on a range covering RDP:
            // each of the three playbooks revokes some of it.
            Scenario::RestrictedSsh
            | Scenario::RestrictedCommonPorts
            | Scenario::SecurityHubOpenGroup => {
                let group = open_security_group(root, "bastion").await;
                let finding = match self {
                    Scenario::RestrictedSsh => {
                        config_event("restricted-ssh", "AWS::EC2::SecurityGroup", &group)
                    }
                    Scenario::RestrictedCommonPorts => {
                        config_event("restricted-common-ports", "AWS::EC2::SecurityGroup", &group)
                    }
                    _ => security_hub_group_finding(&group),
                };
                (parse(&finding), notify_env(root).await)
            }
            Scenario::Imdsv2 => {
                let fixture = provision(root, &one_instance_environment("10.60.0.0/16"))
                    .await
                    .unwrap();
                let instance = fixture.instance("app").unwrap().id.clone();
                set_metadata_options(root, &instance, "optional", 2, false).await;
                let event = config_event("ec2-imdsv2-check", "AWS::EC2::Instance", &instance);
                (parse(&event), notify_env(root).await)
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

/// The responders' topic the `notify` steps publish to, as the run's environment.
async fn notify_env(root: &AwsClients) -> Vec<(&'static str, String)> {
    let topic = cordon_tests::responders_topic(root).await;
    vec![("CORDON_NOTIFY_TOPIC_ARN", topic)]
}

fn parse(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
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
    /// with `grant` (the emulator's action names) on `*`, enforces
    /// authorization, runs and rolls back.
    async fn attempt(&mut self, scenario: Scenario, grant: &BTreeSet<String>) -> Attempt {
        self.runs += 1;
        self.emulator.enforce_auth_after(u32::MAX).unwrap();
        self.emulator.reset().await.unwrap();
        let root = AwsClients::from_sdk_config(&self.emulator.sdk_config().await).unwrap();
        let (finding, env) = scenario.prepare(&root).await;
        let key = principal(&root, grant).await;
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
    let accounted: BTreeSet<&str> = own.keys().map(|s| s.playbook()).collect();
    let shipped: BTreeSet<&str> = playbooks.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        accounted, shipped,
        "every shipped playbook has a scenario here"
    );

    for scenario in SCENARIOS {
        let attempt = bench.attempt(scenario, &emulator_grant(&full)).await;
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
    let looked_into = |action: &str| only.as_ref().is_none_or(|o| o.contains(action));

    let mut problems = Vec::new();
    let mut denials = Vec::new();

    // What the emulator cannot show: every scenario succeeds without all of
    // it at once, so (the policy only allows) without any one of it too.
    let unseen: BTreeSet<String> = NOT_ENFORCED_BY_THE_EMULATOR
        .iter()
        .map(|a| (*a).to_string())
        .filter(|a| looked_into(a))
        .collect();
    for action in &unseen {
        assert!(
            full.contains(action),
            "{action} is listed as not enforced by the emulator but is not in the policy"
        );
    }
    if !unseen.is_empty() {
        for scenario in SCENARIOS {
            let attempt = bench
                .attempt(scenario, &grant_without(&full, &unseen))
                .await;
            if !attempt.succeeded {
                problems.push(format!(
                    "{scenario:?} fails without the actions listed as not enforced by the emulator: take the one it is denied off NOT_ENFORCED_BY_THE_EMULATOR\n{}",
                    attempt.output
                ));
            }
        }
    }

    // The emulator's names stay exact: without one of them alone, the first
    // scenario holding its AWS action is denied that AWS action.
    for (aws, emulator) in EMULATOR_ALIASES {
        if !looked_into(aws) {
            continue;
        }
        let scenario = *SCENARIOS
            .iter()
            .find(|s| own[s].contains(*aws))
            .expect("an aliased action is needed by a shipped playbook");
        let mut grant = emulator_grant(&full);
        grant.remove(*emulator);
        let attempt = bench.attempt(scenario, &grant).await;
        match (attempt.succeeded, denial_naming(&attempt.output, aws)) {
            (false, Some(line)) => denials.push(format!(
                "{aws} as the emulator's {emulator} ({scenario:?}): {}",
                line.trim()
            )),
            (true, _) => problems.push(format!(
                "{scenario:?} succeeds without {emulator}: the emulator no longer authorizes {aws} as {emulator}; take it off EMULATOR_ALIASES"
            )),
            (false, None) => problems.push(format!(
                "without {emulator}, {scenario:?} fails without a denial line naming {aws}:\n{}",
                attempt.output
            )),
        }
    }

    for action in &full {
        if !looked_into(action) || NOT_ENFORCED_BY_THE_EMULATOR.contains(&action.as_str()) {
            continue;
        }
        let without = grant_without(&full, &BTreeSet::from([action.clone()]));
        let mut holders = SCENARIOS
            .iter()
            .filter(|s| own[s].contains(action))
            .peekable();
        if holders.peek().is_none() {
            problems.push(format!("no scenario's playbook needs {action} on its own"));
            continue;
        }
        let mut denied = None;
        for scenario in holders {
            let attempt = bench.attempt(*scenario, &without).await;
            if !attempt.succeeded {
                denied = Some((*scenario, attempt));
                break;
            }
        }
        match denied {
            Some((scenario, attempt)) => match denial_naming(&attempt.output, action) {
                Some(line) => denials.push(format!("{action} ({scenario:?}): {}", line.trim())),
                None => problems.push(format!(
                    "without {action}, {scenario:?} fails without a denial line naming it:\n{}",
                    attempt.output
                )),
            },
            None => problems.push(format!(
                "removing {action} changes nothing on the emulator: either it is not needed, or add it to NOT_ENFORCED_BY_THE_EMULATOR with the reason"
            )),
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
    let _ = std::fs::remove_dir_all(&bench.dir);
}
