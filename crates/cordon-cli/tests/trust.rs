//! Trust boundaries end to end through the `cordon` binary against the
//! emulator: a finding from another account is acted on there (never on the
//! same-named resource in the caller's account), and the blast-radius guards
//! (protected tag, fleet cap, pause switch) stop before any change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use cordon_aws::accounts::{CrossAccount, acting_clients};
use cordon_aws::client::AwsClients;
use cordon_gameday::{EnvironmentSpec, Fixture};
use cordon_tests::{EmulatorGuard, emulator};
use serde_json::{Value, json};

/// The member account the findings of the cross-account test come from.
const MEMBER: &str = "222233334444";

use cordon_tests::CONTAIN_SMALL_PLAYBOOK as CONTAIN_PLAYBOOK;

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "cordon-trust-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the binary as the emulator's default account, with `playbooks`.
fn cordon(aws: &EmulatorGuard, state: &Path, playbooks: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(args)
        .envs(aws.env())
        .env("CORDON_STATE_DIR", state)
        .env("CORDON_PLAYBOOKS", playbooks)
        .env_remove("CORDON_NOTIFY_TOPIC_ARN")
        .env_remove("CORDON_EVIDENCE_BUCKET")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("cordon runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The first case id (`case-` and 20 hex digits) in the output.
fn case_id(out: &Output) -> String {
    let all = text(out);
    all.match_indices("case-")
        .map(|(at, _)| &all[at..(at + 25).min(all.len())])
        .find(|id| id.len() == 25 && id[5..].bytes().all(|b| b.is_ascii_hexdigit()))
        .expect("output names the case")
        .to_string()
}

/// The journal's events, in order.
fn events(state: &Path, case: &str) -> Vec<Value> {
    std::fs::read_to_string(state.join("cases").join(case).join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["event"].clone())
        .collect()
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

/// The mutating calls a `--output json` run reports.
fn mutating_calls(out: &Output) -> u64 {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let start = stdout.rfind("\n{").map_or(0, |i| i + 1);
    let report: Value = serde_json::from_str(&stdout[start..])
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)));
    report["api-calls"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(op, _)| {
            let name = op.rsplit('.').next().unwrap();
            !["Describe", "Get", "List"]
                .iter()
                .any(|p| name.starts_with(p))
        })
        .map(|(_, n)| n.as_u64().unwrap())
        .sum()
}

/// Clients acting in the member account through the responder role.
async fn member_clients(aws: &EmulatorGuard) -> AwsClients {
    let (member, _) = acting_clients(
        aws.clients(),
        "aws",
        MEMBER,
        cordon_tests::REGION,
        &CrossAccount::default(),
        "trust-test",
    )
    .await
    .unwrap();
    member
}

async fn build(clients: &AwsClients, spec: Value) -> Fixture {
    let spec: EnvironmentSpec = serde_json::from_value(spec).unwrap();
    cordon_gameday::provision(clients, &spec).await.unwrap()
}

fn write_json(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path
}

fn playbooks(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("playbooks");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("test.yaml"), yaml).unwrap();
    path
}

async fn inline_policies(clients: &AwsClients, role: &str) -> Vec<String> {
    clients
        .iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .unwrap()
        .policy_names()
        .to_vec()
}

#[tokio::test]
async fn a_finding_from_another_account_acts_there_through_the_responder_role() {
    let aws = emulator().await;
    let dir = temp_dir("cross-account");
    let state = dir.join("state");
    // The same role name in both accounts: the finding is about the member's.
    let spec = json!({"roles": [{"name": "app-role"}]});
    let member = member_clients(&aws).await;
    build(aws.clients(), spec.clone()).await;
    let member_env = build(&member, spec).await;
    assert_eq!(member_env.account_id, MEMBER);
    let mut finding =
        member_env.key_finding("ASIAEXAMPLE000000001", Some("app-role"), "AssumedRole");
    finding.id = Some("c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1".to_string());
    let path = write_json(&dir, "finding.json", &finding.detail());

    let out = cordon(
        &aws,
        &state,
        &repo().join("playbooks"),
        &["run", path.to_str().unwrap(), "--yes"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        inline_policies(&member, "app-role").await.len(),
        1,
        "the member account's role has its sessions revoked"
    );
    assert!(
        inline_policies(aws.clients(), "app-role").await.is_empty(),
        "the caller's same-named role is untouched"
    );
    let role = format!("arn:aws:iam::{MEMBER}:role/cordon-responder");
    assert!(text(&out).contains(&role), "{}", text(&out));
    let case = case_id(&out);
    let opened = &events(&state, &case)[0];
    let provenance = &opened["provenance"];
    assert_eq!(provenance["source-verified"], false, "{opened:#}");
    assert_eq!(provenance["assumed-role"], role.as_str(), "{opened:#}");
    assert!(
        provenance["acting-as"]
            .as_str()
            .unwrap()
            .contains(&format!("::{MEMBER}:")),
        "{opened:#}"
    );
    assert!(
        provenance["caller"]
            .as_str()
            .unwrap()
            .contains(cordon_tests::ACCOUNT_ID),
        "{opened:#}"
    );

    // Rolling back acts in the member account too, through the same role.
    let back = cordon(
        &aws,
        &state,
        &repo().join("playbooks"),
        &["rollback", &case, "--approve-undo", "revoke-sessions"],
    );
    assert_eq!(back.status.code(), Some(0), "{}", text(&back));
    assert!(inline_policies(&member, "app-role").await.is_empty());
}

#[tokio::test]
async fn a_malformed_responder_role_name_is_refused_before_any_change() {
    let aws = emulator().await;
    let dir = temp_dir("bad-role");
    let state = dir.join("state");
    let member_env = build(aws.clients(), json!({"roles": [{"name": "app-role"}]})).await;
    let mut finding =
        member_env.key_finding("ASIAEXAMPLE000000001", Some("app-role"), "AssumedRole");
    finding.account_id = MEMBER.to_string();
    let path = write_json(&dir, "finding.json", &finding.detail());
    let out = cordon(
        &aws,
        &state,
        &repo().join("playbooks"),
        &[
            "run",
            path.to_str().unwrap(),
            "--yes",
            "--assume-role-name",
            "bad role/x",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("--assume-role-name"), "{stderr}");
    assert!(inline_policies(aws.clients(), "app-role").await.is_empty());
}

/// Two instances in one VPC; `tags` on the first.
fn two_instances(tags: Value) -> Value {
    json!({
        "vpcs": [{"name": "v", "cidr": "10.0.0.0/16",
                  "subnets": [{"name": "s", "cidr": "10.0.1.0/24"}]}],
        "security-groups": [{"name": "web", "vpc": "v",
                             "ingress": [{"port": 443, "cidr": "0.0.0.0/0"}]}],
        "instances": [
            {"name": "web-01", "subnet": "s", "groups": ["web"], "tags": tags},
            {"name": "web-02", "subnet": "s", "groups": ["web"]}
        ]
    })
}

/// Two instances, the small containment playbook and a state directory.
struct Scene {
    aws: EmulatorGuard,
    dir: PathBuf,
    state: PathBuf,
    env: Fixture,
    playbooks: PathBuf,
}

impl Scene {
    /// `tags` go on the first instance, `web-01`.
    async fn new(name: &str, tags: Value) -> Self {
        let aws = emulator().await;
        let dir = temp_dir(name);
        let env = build(aws.clients(), two_instances(tags)).await;
        let playbooks = playbooks(&dir, CONTAIN_PLAYBOOK);
        Self {
            state: dir.join("state"),
            aws,
            dir,
            env,
            playbooks,
        }
    }

    fn cordon(&self, args: &[&str]) -> Output {
        cordon(&self.aws, &self.state, &self.playbooks, args)
    }

    /// The finding file about instance `name`.
    fn finding(&self, name: &str) -> String {
        let finding = self.env.instance_finding(name).unwrap().detail();
        write_json(&self.dir, &format!("{name}.json"), &finding)
            .to_str()
            .unwrap()
            .to_string()
    }

    fn instance(&self, name: &str) -> String {
        self.env.instances[name].id.clone()
    }

    /// The security groups of every interface of instance `name`.
    async fn groups(&self, name: &str) -> Vec<String> {
        let out = self
            .aws
            .clients()
            .ec2
            .describe_instances()
            .instance_ids(self.instance(name))
            .send()
            .await
            .unwrap();
        out.reservations()[0].instances()[0]
            .network_interfaces()
            .iter()
            .flat_map(|eni| eni.groups())
            .map(|g| g.group_id().unwrap().to_string())
            .collect()
    }
}

#[tokio::test]
async fn a_protected_instance_waits_for_an_approval_naming_the_step() {
    let scene = Scene::new("protected", json!({"cordon:protected": "payments"})).await;
    let before = scene.groups("web-01").await;
    let finding = scene.finding("web-01");

    // The playbook asks for no approval and --yes is given: still it waits.
    let out = scene.cordon(&["run", &finding, "--yes", "--output", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(mutating_calls(&out), 0, "{}", text(&out));
    assert_eq!(scene.groups("web-01").await, before);
    let case = case_id(&out);
    let opened = &events(&scene.state, &case)[0];
    let tag_step = &opened["plan"]["steps"][0];
    assert_eq!(tag_step["approval"]["required"], true, "{opened:#}");
    assert_eq!(tag_step["approval"]["explicit"], true, "{opened:#}");
    assert!(
        tag_step["approval"]["reason"]
            .as_str()
            .unwrap()
            .contains("carries the protected tag `cordon:protected`"),
        "{opened:#}"
    );
    // The plan, as printed, says why (the same delivery again: still waiting).
    let shown = scene.cordon(&["run", &finding, "--yes"]);
    assert_eq!(shown.status.code(), Some(3), "{}", text(&shown));
    assert!(
        text(&shown).contains(&format!(
            "instance {} carries the protected tag",
            scene.instance("web-01")
        )),
        "{}",
        text(&shown)
    );

    // An approval naming each step runs them.
    let approved = scene.cordon(&["run", &finding, "--approve", "tag", "--approve", "isolate"]);
    assert_eq!(approved.status.code(), Some(0), "{}", text(&approved));
    assert_ne!(scene.groups("web-01").await, before);

    // An unprotected instance runs with the playbook's own approvals.
    let free = scene.cordon(&["run", &scene.finding("web-02")]);
    assert_eq!(free.status.code(), Some(0), "{}", text(&free));
}

/// The protected tags are read alongside the caller-identity check, with the
/// caller's own clients; for a finding from another account that early read
/// (which cannot see the member's instance) must be thrown away and the tags
/// read through the responder role, or the guard would miss them.
#[tokio::test]
async fn a_protected_instance_in_another_account_is_read_there() {
    let aws = emulator().await;
    let dir = temp_dir("protected-member");
    let state = dir.join("state");
    let member = member_clients(&aws).await;
    let member_env = build(
        &member,
        two_instances(json!({"cordon:protected": "ledger"})),
    )
    .await;
    assert_eq!(member_env.account_id, MEMBER);
    let finding = member_env.instance_finding("web-01").unwrap().detail();
    let path = write_json(&dir, "finding.json", &finding);
    let out = cordon(
        &aws,
        &state,
        &playbooks(&dir, CONTAIN_PLAYBOOK),
        &["run", path.to_str().unwrap(), "--yes", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    // Assuming the responder role is the one call that is not a read.
    assert_eq!(mutating_calls(&out), 1, "{}", text(&out));
    assert!(
        text(&out).contains("\"STS.AssumeRole\": 1"),
        "{}",
        text(&out)
    );
    let opened = &events(&state, &case_id(&out))[0];
    assert_eq!(
        opened["plan"]["steps"][0]["approval"]["explicit"], true,
        "{opened:#}"
    );
}

#[tokio::test]
async fn the_fleet_cap_stops_before_any_change_and_escalates() {
    let scene = Scene::new("fleet-cap", json!({})).await;
    let cap = ["--fleet-cap-max", "1", "--fleet-cap-window", "10m"];
    let first = scene.finding("web-01");
    let out = scene.cordon(&[&["run", first.as_str()][..], &cap].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let before = scene.groups("web-02").await;
    let second = scene.finding("web-02");
    let out = scene.cordon(&[&["run", second.as_str(), "--output", "json"][..], &cap].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(mutating_calls(&out), 0, "{}", text(&out));
    assert_eq!(scene.groups("web-02").await, before);
    let all = text(&out);
    assert!(all.contains("fleet cap"), "{all}");
    assert!(
        all.contains("no notify topic is configured"),
        "escalation: {all}"
    );
    let case = case_id(&out);
    let journal = events(&scene.state, &case);
    let tripped = journal
        .iter()
        .find(|e| e["event"] == "fleet-cap-tripped")
        .unwrap_or_else(|| panic!("{journal:#?}"));
    assert_eq!(tripped["limit"], 1);
    assert_eq!(tripped["window-seconds"], 600);
    assert_eq!(tripped["isolated"], json!([scene.instance("web-01")]));
    assert_eq!(
        kinds(&journal).last().map(String::as_str),
        Some("case-finished")
    );

    // The first case's re-delivery is no new containment: the cap lets it be.
    let again = scene.cordon(&[&["run", first.as_str()][..], &cap].concat());
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));

    // A larger cap lets the second case go on.
    let out = scene.cordon(&["run", &second, "--fleet-cap-max", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_ne!(scene.groups("web-02").await, before);
}

/// Runs `web-01`'s finding with `flags` while a pause switch is on: the case
/// stops before its first step, changing nothing; returns the case and the output.
async fn run_paused(scene: &Scene, flags: &[&str]) -> (String, String) {
    let before = scene.groups("web-01").await;
    let finding = scene.finding("web-01");
    let out = scene.cordon(&[&["run", finding.as_str(), "--output", "json"][..], flags].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(mutating_calls(&out), 0, "{}", text(&out));
    assert_eq!(scene.groups("web-01").await, before);
    let case = case_id(&out);
    let journal = events(&scene.state, &case);
    let paused = journal
        .iter()
        .find(|e| e["event"] == "case-paused")
        .unwrap_or_else(|| panic!("{journal:#?}"));
    assert_eq!(paused["before-step"], "tag");
    (case, text(&out))
}

/// Once the switch is off, `resume` contains `web-01`.
async fn resume_unpaused(scene: &Scene, case: &str, flags: &[&str]) {
    let before = scene.groups("web-01").await;
    let resumed = scene.cordon(&[&["resume", case][..], flags].concat());
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert_ne!(scene.groups("web-01").await, before);
}

#[tokio::test]
async fn the_pause_file_stops_the_case_before_its_next_step() {
    let scene = Scene::new("pause-file", json!({})).await;
    let pause = scene.state.join("cases").join("PAUSE");
    std::fs::create_dir_all(pause.parent().unwrap()).unwrap();
    std::fs::write(&pause, "incident bridge: hold everything\n").unwrap();
    let (case, output) = run_paused(&scene, &[]).await;
    assert!(
        output.contains(&format!("remove {} to unpause", pause.display())),
        "{output}"
    );
    std::fs::remove_file(&pause).unwrap();
    resume_unpaused(&scene, &case, &[]).await;
}

#[tokio::test]
async fn the_pause_parameter_stops_every_case_until_it_changes() {
    let scene = Scene::new("pause-parameter", json!({})).await;
    let name = "/cordon/pause";
    let set = |value: &'static str| {
        scene
            .aws
            .clients()
            .ssm
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .overwrite(true)
            .send()
    };
    let flags = ["--pause-parameter", name];

    // No parameter yet: nobody pulled the switch.
    let out = scene.cordon(&[&["run", scene.finding("web-02").as_str()][..], &flags].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    set("paused").await.unwrap();
    let (case, output) = run_paused(&scene, &flags).await;
    assert!(
        output.contains("set it to anything else to unpause"),
        "{output}"
    );
    set("running").await.unwrap();
    resume_unpaused(&scene, &case, &flags).await;
}

#[tokio::test]
async fn verify_source_refuses_a_finding_without_a_detector_before_any_call() {
    let aws = emulator().await;
    let dir = temp_dir("verify-source");
    let state = dir.join("state");
    let env = build(aws.clients(), two_instances(json!({}))).await;
    let mut finding = env.instance_finding("web-01").unwrap().detail();
    finding["service"]["detectorId"] = Value::Null;
    let path = write_json(&dir, "finding.json", &finding);
    let pb = playbooks(&dir, CONTAIN_PLAYBOOK);
    let out = cordon(
        &aws,
        &state,
        &pb,
        &["run", path.to_str().unwrap(), "--verify-source", "--yes"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("names no GuardDuty detector"), "{stderr}");
    assert!(!state.join("cases").exists(), "no case was opened");
}

#[tokio::test]
async fn a_finding_from_another_region_is_acted_on_in_that_region() {
    let aws = emulator().await;
    let dir = temp_dir("region");
    let state = dir.join("state");
    // cordon runs with AWS_REGION=us-east-1; the instance and finding are in us-west-2.
    let west = aws.clients().derive("us-west-2", None).unwrap();
    let env = build(&west, two_instances(json!({}))).await;
    assert_eq!(env.region, "us-west-2");
    let finding = env.instance_finding("web-01").unwrap().detail();
    let path = write_json(&dir, "finding.json", &finding);
    let pb = playbooks(&dir, CONTAIN_PLAYBOOK);
    let out = cordon(&aws, &state, &pb, &["run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let tags = west
        .ec2
        .describe_tags()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("resource-id")
                .values(&env.instances["web-01"].id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(
        tags.tags()
            .iter()
            .any(|t| t.key() == Some("cordon:case-id")),
        "tagged in us-west-2: {tags:?}"
    );
    let case = case_id(&out);
    assert_eq!(
        events(&state, &case)[0]["provenance"]["region"],
        "us-west-2"
    );
}
