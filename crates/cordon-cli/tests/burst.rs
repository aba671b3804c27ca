//! Bursts through the `cordon` binary against the emulator: many findings in
//! one process, each its own case and journal, the overlap of two findings on
//! one instance reported as that finding's outcome, directory and JSON-lines
//! inputs, and the fleet cap counting the burst's instances together.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::schema_check;

use std::path::{Path, PathBuf};
use std::process::Output;

use cordon_gameday::{EnvironmentSpec, Fixture};
use cordon_tests::{EmulatorGuard, emulator};
use serde_json::{Value, json};

use cordon_tests::CONTAIN_SMALL_PLAYBOOK as CONTAIN_PLAYBOOK;

struct Scene {
    aws: EmulatorGuard,
    dir: PathBuf,
    state: PathBuf,
    env: Fixture,
    playbooks: PathBuf,
    names: Vec<String>,
}

impl Scene {
    async fn new(name: &str, instances: usize) -> Self {
        let aws = emulator().await;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "cordon-burst-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let names: Vec<String> = (1..=instances).map(|i| format!("web-{i:02}")).collect();
        let spec = json!({
            "vpcs": [{"name": "v", "cidr": "10.0.0.0/16",
                      "subnets": [{"name": "s", "cidr": "10.0.1.0/24"}]}],
            "security-groups": [{"name": "web", "vpc": "v",
                                 "ingress": [{"port": 443, "cidr": "0.0.0.0/0"}]}],
            "instances": names.iter().map(|n| json!({"name": n, "subnet": "s", "groups": ["web"]})).collect::<Vec<_>>()
        });
        let spec: EnvironmentSpec = serde_json::from_value(spec).unwrap();
        let env = cordon_gameday::provision(aws.clients(), &spec)
            .await
            .unwrap();
        let playbooks = dir.join("playbooks");
        std::fs::create_dir_all(&playbooks).unwrap();
        std::fs::write(playbooks.join("test.yaml"), CONTAIN_PLAYBOOK).unwrap();
        Self {
            state: dir.join("state"),
            aws,
            dir,
            env,
            playbooks,
            names,
        }
    }

    fn cordon(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_cordon"))
            .args(args)
            .envs(self.aws.env())
            .env("CORDON_STATE_DIR", &self.state)
            .env("CORDON_PLAYBOOKS", &self.playbooks)
            .env_remove("CORDON_NOTIFY_TOPIC_ARN")
            .env_remove("CORDON_EVIDENCE_BUCKET")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("cordon runs")
    }

    /// The bare finding about instance `name`, with finding id `id`.
    fn finding(&self, name: &str, id: &str) -> Value {
        let mut finding = self.env.instance_finding(name).unwrap();
        finding.id = Some(id.to_string());
        finding.detail()
    }

    fn instance(&self, name: &str) -> String {
        self.env.instances[name].id.clone()
    }

    /// Whether every interface of `name` is in cordon's isolation group only.
    async fn isolated(&self, name: &str) -> bool {
        let out = self
            .aws
            .clients()
            .ec2
            .describe_instances()
            .instance_ids(self.instance(name))
            .send()
            .await
            .unwrap();
        let web = &self.env.security_groups["web"].id;
        out.reservations()[0].instances()[0]
            .network_interfaces()
            .iter()
            .all(|eni| {
                let groups: Vec<&str> = eni.groups().iter().filter_map(|g| g.group_id()).collect();
                !groups.is_empty() && !groups.contains(&web.as_str())
            })
    }
}

fn finding_id(i: usize) -> String {
    format!("{i:032x}")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The burst's one document, checked against its published schema.
fn report(out: &Output) -> Value {
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)));
    schema_check::assert_valid("run", &doc);
    doc
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// The journal's event kinds of `case`.
fn event_kinds(state: &Path, case: &str) -> Vec<String> {
    std::fs::read_to_string(state.join("cases").join(case).join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            record["event"]["event"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test]
async fn a_burst_of_five_findings_contains_every_instance_each_in_its_own_case() {
    let scene = Scene::new("five", 5).await;
    let findings = scene.dir.join("findings");
    std::fs::create_dir_all(&findings).unwrap();
    for (i, name) in scene.names.iter().enumerate() {
        let finding = scene.finding(name, &finding_id(i + 1));
        write(&findings, &format!("{i:03}.json"), &finding.to_string());
    }
    // Not a finding file: a directory input only reads .json/.jsonl/.ndjson.
    write(&findings, "README.txt", "not a finding");

    let out = scene.cordon(&[
        "run",
        findings.to_str().unwrap(),
        "--concurrency",
        "3",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = report(&out);
    let rows = report["findings"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "{report:#}");
    let mut cases = std::collections::BTreeSet::new();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["outcome"], "done", "{row:#}");
        assert_eq!(row["status"], "completed", "{row:#}");
        assert_eq!(row["playbook"], "contain-small", "{row:#}");
        assert!(
            row["input"]
                .as_str()
                .unwrap()
                .ends_with(&format!("{i:03}.json"))
        );
        let case = row["case-id"].as_str().unwrap().to_string();
        let kinds = event_kinds(&scene.state, &case);
        assert_eq!(kinds.first().map(String::as_str), Some("case-opened"));
        assert!(kinds.iter().any(|k| k == "step-verified"), "{kinds:?}");
        cases.insert(case);
    }
    assert_eq!(cases.len(), 5, "each finding its own case");
    for name in &scene.names {
        assert!(scene.isolated(name).await, "{name} isolated");
    }
    let summary = &report["summary"];
    assert_eq!(summary["findings"], 5);
    assert_eq!(summary["cases"], 5);
    assert_eq!(summary["concurrency"], 3);
    assert_eq!(summary["outcomes"], json!({"done": 5}));
    assert_eq!(summary["exit-code"], 0);
    assert_eq!(summary["throttled"], 0);
    // One ModifyNetworkInterfaceAttribute per phase per ENI, all through one bucket.
    let mnia = &summary["buckets"]["ec2:ModifyNetworkInterfaceAttribute"];
    assert_eq!(mnia["capacity"], 100, "{summary:#}");
    assert_eq!(
        mnia["tokens"], summary["api-calls-by-operation"]["EC2.ModifyNetworkInterfaceAttribute"],
        "{summary:#}"
    );
    assert!(mnia["tokens"].as_u64().unwrap() >= 5, "{summary:#}");
}

#[tokio::test]
async fn two_findings_on_one_instance_in_one_burst_contain_it_once_and_refuse_the_other() {
    let scene = Scene::new("overlap", 2).await;
    // JSON lines: two findings on web-01 (different ids), one on web-02.
    let lines = [
        scene.finding("web-01", &finding_id(1)).to_string(),
        scene.finding("web-01", &finding_id(2)).to_string(),
        scene.finding("web-02", &finding_id(3)).to_string(),
    ]
    .join("\n");
    let file = write(&scene.dir, "burst.jsonl", &lines);

    let out = scene.cordon(&["run", file.to_str().unwrap(), "--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = report(&out);
    let rows = report["findings"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{report:#}");
    let on_web01: Vec<&Value> = rows[..2].iter().collect();
    let done: Vec<&&Value> = on_web01.iter().filter(|r| r["outcome"] == "done").collect();
    let refused: Vec<&&Value> = on_web01
        .iter()
        .filter(|r| r["outcome"] == "needs-human")
        .collect();
    assert_eq!((done.len(), refused.len()), (1, 1), "{report:#}");
    let holder = done[0]["case-id"].as_str().unwrap();
    let message = refused[0]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("held by case {holder}")),
        "the refusal names the holder: {message}"
    );
    assert!(message.contains(&scene.instance("web-01")), "{message}");
    let refused_case = refused[0]["case-id"].as_str().unwrap();
    assert!(
        event_kinds(&scene.state, refused_case)
            .iter()
            .any(|k| k == "resource-busy")
    );
    assert_eq!(rows[2]["outcome"], "done", "{report:#}");
    assert!(
        rows[0]["input"]
            .as_str()
            .unwrap()
            .ends_with("burst.jsonl[0]")
    );
    assert!(scene.isolated("web-01").await);
    assert!(scene.isolated("web-02").await);
    let summary = &report["summary"];
    assert_eq!(summary["outcomes"], json!({"done": 2, "needs-human": 1}));
    assert_eq!(summary["exit-code"], 1);
}

#[tokio::test]
async fn the_fleet_cap_counts_the_burst_s_instances_together() {
    let scene = Scene::new("fleet-cap", 4).await;
    let array: Vec<Value> = scene
        .names
        .iter()
        .enumerate()
        .map(|(i, name)| scene.finding(name, &finding_id(i + 1)))
        .collect();
    let file = write(&scene.dir, "burst.json", &Value::Array(array).to_string());

    let out = scene.cordon(&[
        "run",
        file.to_str().unwrap(),
        "--concurrency",
        "4",
        "--fleet-cap-max",
        "2",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = report(&out);
    let summary = &report["summary"];
    assert_eq!(
        summary["outcomes"],
        json!({"done": 2, "needs-human": 2}),
        "{report:#}"
    );
    let mut isolated = 0;
    for name in &scene.names {
        if scene.isolated(name).await {
            isolated += 1;
        }
    }
    assert_eq!(isolated, 2, "no more than the cap across the burst");
    let stopped: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "needs-human")
        .collect();
    for row in stopped {
        assert!(
            row["message"].as_str().unwrap().contains("fleet cap"),
            "{row:#}"
        );
        let kinds = event_kinds(&scene.state, row["case-id"].as_str().unwrap());
        assert!(kinds.iter().any(|k| k == "fleet-cap-tripped"), "{kinds:?}");
    }
    assert!(
        text(&out).contains("no notify topic is configured"),
        "one escalation for the burst: {}",
        text(&out)
    );
}

#[tokio::test]
async fn a_burst_prints_a_line_per_finding_and_a_summary_and_reports_bad_input_per_finding() {
    let scene = Scene::new("text", 2).await;
    let one = write(
        &scene.dir,
        "one.json",
        &scene.finding("web-01", &finding_id(1)).to_string(),
    );
    let two = write(
        &scene.dir,
        "two.json",
        &scene.finding("web-02", &finding_id(2)).to_string(),
    );
    let broken = write(&scene.dir, "broken.json", "{\"not\": ");

    let out = scene.cordon(&[
        "run",
        one.to_str().unwrap(),
        two.to_str().unwrap(),
        broken.to_str().unwrap(),
        "--rate-limit",
        "ec2:ModifyNetworkInterfaceAttribute=50/2",
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("done ")).count(),
        2,
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("invalid-input") && l.contains("broken.json")),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 finding(s), 2 case(s), at most 8 at once: 2 done, 1 invalid-input"),
        "{stdout}"
    );
    assert!(
        stdout.contains("bucket ec2:ModifyNetworkInterfaceAttribute (50/2/s)"),
        "{stdout}"
    );
    assert!(stdout.contains("exit 2"), "{stdout}");
    assert!(scene.isolated("web-01").await);
    assert!(scene.isolated("web-02").await);
}

#[tokio::test]
async fn a_bad_rate_limit_is_refused_before_any_call() {
    let scene = Scene::new("bad-limit", 1).await;
    let one = write(
        &scene.dir,
        "one.json",
        &scene.finding("web-01", &finding_id(1)).to_string(),
    );
    for spec in ["ec2:NoSuchCall=1/1", "ec2-mutating=0/5", "ec2-mutating=5"] {
        let out = scene.cordon(&["run", one.to_str().unwrap(), "--rate-limit", spec]);
        assert_eq!(out.status.code(), Some(2), "{spec}: {}", text(&out));
        assert!(text(&out).contains("rate limit"), "{}", text(&out));
    }
    assert!(!scene.isolated("web-01").await);
}
