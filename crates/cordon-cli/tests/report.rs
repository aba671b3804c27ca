//! `cordon report`: golden reports of real cases run through the binary on the
//! emulator (completed, rolled back, stopped), the JSON document, the HTML
//! file in a real headless browser, and hostile finding and journal values
//! that must not inject Markdown or HTML.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::golden;
use crate::schema_check;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cordon_core::journal::{CaseStatus, ErrorRecord, JournalEvent, JournalRecord, JournalStore};
use cordon_core::local_store::LocalJournal;
use cordon_gameday::{EnvironmentSpec, provision};
use cordon_tests::EmulatorGuard;
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use regex::Regex;
use serde_json::{Value, json};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/report");

/// Tag, termination protection (needs approval), isolation, evidence.
const COMPLETED_PLAYBOOK: &str = r#"
name: report-contain
description: Containment with an approval and local evidence (report test).
priority: 200
match:
  finding-types: ["*:EC2/*"]
  resource-types: [Instance]
on-failure: rollback
steps:
  - id: tag
    action: tag-resource
    with:
      tags:
        cordon:case-id: "{case_id}"
  - id: protect
    action: enable-termination-protection
    approval: required
  - id: isolate
    action: isolate-instance
  - id: keep-evidence
    action: store-evidence
"#;

/// Isolation fails (a pre-existing `cordon-isolation` group that is not
/// one); what was done before is rolled back.
const ROLLBACK_PLAYBOOK: &str = r#"
name: report-rollback
description: Roll back on failure (report test).
priority: 200
match:
  finding-types: ["*:EC2/*"]
  resource-types: [Instance]
on-failure: rollback
steps:
  - id: tag
    action: tag-resource
    with:
      tags:
        cordon:case-id: "{case_id}"
  - id: protect
    action: enable-termination-protection
  - id: isolate
    action: isolate-instance
    retry:
      max-attempts: 1
"#;

/// The notify topic does not exist: the case stops with the tag kept.
const STOPPED_PLAYBOOK: &str = r#"
name: report-stop
description: Stop on failure (report test).
priority: 200
match:
  finding-types: ["*:EC2/*"]
  resource-types: [Instance]
on-failure: stop
steps:
  - id: tag
    action: tag-resource
    with:
      tags:
        cordon:case-id: "{case_id}"
  - id: tell
    action: notify
    retry:
      max-attempts: 1
    with:
      topic-arn: arn:aws:sns:us-east-1:123456789012:cordon-no-such-topic
  - id: protect
    action: enable-termination-protection
"#;

/// A provisioned compromised instance, its finding, a playbook and a state dir.
struct World {
    aws: EmulatorGuard,
    dir: PathBuf,
    vpc: String,
}

impl World {
    async fn new(name: &str, playbook: &str) -> Self {
        let aws = cordon_tests::emulator().await;
        let fixture = provision(aws.clients(), &EnvironmentSpec::compromised_instance())
            .await
            .expect("provision");
        let dir = cordon_tests::scratch_dir(&format!("report-{name}"));
        let finding = fixture.instance_finding("web-01").unwrap().detail();
        std::fs::write(
            dir.join("finding.json"),
            serde_json::to_vec_pretty(&finding).unwrap(),
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("playbooks")).unwrap();
        std::fs::write(dir.join("playbooks/test.yaml"), playbook).unwrap();
        let vpc = fixture.vpcs["gameday"].id.clone();
        Self { aws, dir, vpc }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn cordon(&self, args: &[&str]) -> Output {
        let with_state = !matches!(args.first(), Some(&"evidence"));
        let state_dir = self.state_dir();
        let out = cordon(
            args,
            with_state.then_some(state_dir.as_path()),
            &self.aws.env(),
        );
        eprintln!(
            "$ cordon {} => {:?}\n{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn run(&self, extra: &[&str]) -> Output {
        let finding = self.dir.join("finding.json");
        let playbooks = self.dir.join("playbooks");
        let mut args = vec![
            "run",
            finding.to_str().unwrap(),
            "--yes",
            "--playbooks",
            playbooks.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.cordon(&args)
    }

    fn case_id(&self) -> String {
        only_case(&self.state_dir())
    }

    /// `cordon report CASE --format FORMAT`, which must succeed.
    fn report(&self, format: &str) -> String {
        report(&self.state_dir(), &self.case_id(), format, &self.aws.env())
    }
}

/// `cordon ARGS` (with `--state-dir` when given).
fn cordon(args: &[&str], state_dir: Option<&Path>, env: &[(&'static str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cordon"));
    cmd.args(args);
    if let Some(dir) = state_dir {
        cmd.arg("--state-dir").arg(dir);
    }
    cmd.env_remove("CORDON_PLAYBOOKS")
        .env_remove("CORDON_EVIDENCE_BUCKET")
        .env_remove("CORDON_TEST_CRASH_AFTER_RECORD")
        .env_remove("AWS_PROFILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn cordon")
}

fn report(state_dir: &Path, case: &str, format: &str, env: &[(&'static str, String)]) -> String {
    let out = cordon(&["report", case, "--format", format], Some(state_dir), env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "cordon report --format {format}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the report is UTF-8")
}

fn only_case(state_dir: &Path) -> String {
    let mut ids: Vec<String> = std::fs::read_dir(state_dir.join("cases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("case-"))
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids.remove(0)
}

/// The report with what changes from run to run replaced: the state
/// directory, times and durations, hashes, sizes, case, finding and AWS
/// resource ids, version ids. (AWS lists some resources in no fixed order, so
/// ids are not numbered: the kind of each id stays.)
fn normalise(text: &str, state_dir: &Path) -> String {
    let text = text.replace(&state_dir.to_string_lossy().into_owned(), "<state-dir>");
    let rules = [
        (
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
            "<time>",
        ),
        (r"\b\d+(\.\d{3})? (ms|s)\b", "<duration>"),
        (r"\b[0-9a-f]{64}\b", "<sha256>"),
        (r"\bcase-[0-9a-f]{20}\b", "case-<id>"),
        (
            r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
            "<uuid>",
        ),
        (r"\b[0-9a-f]{32}\b", "<finding-id>"),
        (r"\bfinding-[0-9a-f]{16}\.json\b", "finding-<digest>.json"),
        (r"size = \d+", "size = <size>"),
        (r"\| \d+ \| (` <sha256> `) \|", "| <size> | $1 |"),
    ];
    let mut text = text;
    for (pattern, with) in rules {
        text = Regex::new(pattern)
            .unwrap()
            .replace_all(&text, with)
            .into_owned();
    }
    Regex::new(r"\b(i|eni|sg|vpc|subnet|vol|snap|iip-assoc|igw|rtb|ami|r)-[0-9a-f]{8,17}\b")
        .unwrap()
        .replace_all(&text, "$1-<id>")
        .into_owned()
}

/// Checks the Markdown report against its golden file, normalised.
fn check_golden(name: &str, text: &str, state_dir: &Path) {
    golden::check(&Path::new(GOLDEN).join(name), &normalise(text, state_dir));
}

/// The JSON report: one document, `format-version` first, kebab-case keys
/// (the actions' own pre-states and outcomes aside).
fn json_document(text: &str) -> Value {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let doc = stream.next().expect("a document").expect("valid JSON");
    assert!(stream.next().is_none(), "more than one JSON document");
    assert_eq!(
        doc.as_object().unwrap().keys().next().map(String::as_str),
        Some("format-version")
    );
    let bad = golden::non_kebab_keys(&doc, &["pre-state", "post-state", "value", "result"]);
    assert!(bad.is_empty(), "keys not kebab-case: {bad:?}");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(cordon_tests::repo_root().join("docs/schemas/report.schema.json"))
            .unwrap(),
    )
    .unwrap();
    let mut keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
    let mut published: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    keys.sort();
    published.sort();
    assert_eq!(
        keys, published,
        "the document has the published schema's keys"
    );
    schema_check::assert_valid("report", &doc);
    doc
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_of_a_completed_case_shows_approvals_diffs_and_evidence() {
    let world = World::new("completed", COMPLETED_PLAYBOOK).await;
    let out = world.run(&[]);
    assert_eq!(out.status.code(), Some(0), "the case completes");

    let md = world.report("md");
    check_golden("completed.md", &md, &world.state_dir());

    let doc = json_document(&world.report("json"));
    assert_eq!(doc["status"], "completed");
    assert!(doc["time-to-contain-ms"].is_u64(), "{doc:#}");
    let steps = doc["epochs"][0]["steps"].as_array().unwrap();
    let protect = steps.iter().find(|s| s["id"] == "protect").unwrap();
    assert!(
        protect["approval"]["granted-by"]
            .as_str()
            .is_some_and(|who| who.starts_with("arn:aws:")),
        "the verified identity approved: {protect:#}"
    );
    let evidence = &doc["evidence"];
    assert_eq!(evidence["manifest-matches-journal"], true, "{evidence:#}");
    let objects = evidence["objects"].as_array().unwrap();
    assert!(!objects.is_empty());
    for object in objects {
        assert_eq!(object["sha256"].as_str().unwrap().len(), 64, "{object:#}");
    }

    // The evidence manifest changed after the fact: the report says so.
    let manifest = world
        .state_dir()
        .join("cases")
        .join(world.case_id())
        .join("manifest.json");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push(' ');
    std::fs::write(&manifest, text).unwrap();
    let doc = json_document(&world.report("json"));
    assert_eq!(doc["evidence"]["manifest-matches-journal"], false);
    assert!(
        doc["evidence"]["problem"]
            .as_str()
            .unwrap()
            .contains("not the one the journal recorded")
    );

    let html = world.report("html");
    let page = world.dir.join("report.html");
    std::fs::write(&page, &html).unwrap();
    let dom = render_in_browser(&page, &world.dir).await;
    assert!(dom.contains(&world.case_id()), "the case id is shown");
    assert!(dom.contains("<svg"), "the timeline chart is drawn");
}

/// With an evidence bucket, the report reads the manifest version the
/// journal pins from S3, shows each object's version id, and its verify
/// command is one that works.
#[tokio::test(flavor = "multi_thread")]
async fn the_report_reads_the_pinned_manifest_version_from_s3() {
    const BUCKET: &str = "cordon-report-evidence";
    let world = World::new("s3", COMPLETED_PLAYBOOK).await;
    let out = world.cordon(&["evidence", "init", BUCKET]);
    assert_eq!(out.status.code(), Some(0), "evidence init");
    let out = world.run(&["--evidence-bucket", BUCKET]);
    assert_eq!(out.status.code(), Some(0), "the case completes");

    let doc = json_document(&world.report("json"));
    let evidence = &doc["evidence"];
    assert_eq!(evidence["store"], "s3", "{evidence:#}");
    assert_eq!(evidence["manifest-matches-journal"], true, "{evidence:#}");
    assert!(
        evidence["manifest"]["version-id"].is_string(),
        "{evidence:#}"
    );
    let objects = evidence["objects"].as_array().unwrap();
    assert!(!objects.is_empty(), "{evidence:#}");
    for object in objects {
        assert!(object["version-id"].is_string(), "{object:#}");
        assert_eq!(object["sha256"].as_str().unwrap().len(), 64, "{object:#}");
    }
    let verify = doc["commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["command"].as_str())
        .find(|c| c.starts_with("cordon evidence verify "))
        .expect("a verify command");
    let args: Vec<&str> = verify.split(' ').skip(1).collect();
    let out = world.cordon(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "`{verify}` verifies the evidence"
    );
    let md = world.report("md");
    assert!(md.contains(&format!("s3://{BUCKET}/cases/")), "{md}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_of_a_rolled_back_case_shows_the_failure_and_each_undo() {
    let world = World::new("rolled-back", ROLLBACK_PLAYBOOK).await;
    cordon_tests::plant_open_isolation_group(world.aws.clients(), &world.vpc).await;
    let out = world.run(&[]);
    assert_eq!(out.status.code(), Some(4), "failed and rolled back");

    let md = world.report("md");
    check_golden("rolled-back.md", &md, &world.state_dir());
    let doc = json_document(&world.report("json"));
    assert_eq!(doc["status"], "rolled-back");
    let steps = doc["epochs"][0]["steps"].as_array().unwrap();
    let isolate = steps.iter().find(|s| s["id"] == "isolate").unwrap();
    assert!(!isolate["failures"].as_array().unwrap().is_empty());
    let tag = steps.iter().find(|s| s["id"] == "tag").unwrap();
    assert_eq!(tag["result"], "rolled-back", "{tag:#}");
    assert!(tag["rollback"]["verified-at"].is_string(), "{tag:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_of_a_stopped_case_says_what_was_done_and_how_to_go_on() {
    let world = World::new("stopped", STOPPED_PLAYBOOK).await;
    let out = world.run(&[]);
    assert_eq!(out.status.code(), Some(1), "stopped");

    let md = world.report("md");
    check_golden("stopped.md", &md, &world.state_dir());
    let doc = json_document(&world.report("json"));
    assert_eq!(doc["status"], "stopped");
    let commands: Vec<&str> = doc["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command"].as_str().unwrap())
        .collect();
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("cordon resume case-")),
        "{commands:?}"
    );
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("cordon rollback case-")),
        "{commands:?}"
    );
}

/// Markup an attacker may put in anything a finding or a resource carries.
const HOSTILE: &str = "x</code>|<img src=x onerror=alert(1)>[click](https://evil.example/a)![p](https://evil.example/p.png)<script>document.title='pwned'</script>`` ```\n# forged heading";

/// A journal written directly (no emulator), with hostile text wherever
/// the finding, AWS or a pre-state can put it.
async fn hostile_case(state_dir: &Path) -> String {
    let root = cordon_tests::repo_root();
    let mut finding: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/findings/event-ec2-high.json")).unwrap(),
    )
    .unwrap();
    finding["detail"]["resource"]["instanceDetails"]["tags"] =
        json!([{"key": "Name", "value": HOSTILE}]);
    let mut plan = cordon_tests::plan_steps(
        &finding.to_string(),
        "report-hostile",
        json!([{"id": "tag", "action": "tag-resource", "approval": "required",
                "with": {"tags": {"cordon:case-id": "{case_id}"}}}]),
    );
    // Planning refuses a malformed finding type; a journal is data all the
    // same (copied, restored, edited), and the report must not trust it.
    plan.finding.finding_type = HOSTILE.to_string();
    plan.route.matched = vec![HOSTILE.to_string()];
    let case = plan.case_id.clone();
    let events = vec![
        JournalEvent::CaseOpened {
            plan: Box::new(plan),
            finding_sha256: "0".repeat(64),
            cordon_version: "test".to_string(),
            provenance: None,
        },
        JournalEvent::ApprovalRequested {
            step: "tag".to_string(),
            reason: HOSTILE.to_string(),
        },
        JournalEvent::ApprovalGranted {
            step: "tag".to_string(),
            approver: HOSTILE.to_string(),
        },
        JournalEvent::StepPrepared {
            step: "tag".to_string(),
            attempt: 1,
            pre_state: json!({"resources": [{"resource-id": "i-0123456789abcdef0",
                "tags": {"Name": HOSTILE, HOSTILE: "v"}}]}),
        },
        JournalEvent::StepFailed {
            step: "tag".to_string(),
            attempt: 1,
            error: ErrorRecord {
                kind: "other".to_string(),
                resource: HOSTILE.to_string(),
                message: HOSTILE.to_string(),
                hint: HOSTILE.to_string(),
            },
            retrying: false,
        },
        JournalEvent::CaseFinished {
            status: CaseStatus::Stopped,
        },
    ];
    let journal = LocalJournal::new(state_dir.join("cases"));
    let mut prev = cordon_core::journal::GENESIS_HASH.to_string();
    for (seq, event) in events.into_iter().enumerate() {
        let at = format!("2026-11-27T08:00:{seq:02}Z");
        let record = JournalRecord::new(seq as u64, at, prev.clone(), event);
        journal.append(&case, &record).await.unwrap();
        prev = record.hash();
    }
    case.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_values_cannot_inject_markdown_or_html() {
    let dir = cordon_tests::scratch_dir("report-hostile");
    let state_dir = dir.join("state");
    let case = hostile_case(&state_dir).await;

    let md = report(&state_dir, &case, "md", &[]);
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TASKLISTS);
    let mut code_with_payload = 0;
    let mut cells_in_row = 0;
    let mut header_cells = None;
    for event in Parser::new_ext(&md, options) {
        match &event {
            Event::Html(_) | Event::InlineHtml(_) => panic!("raw HTML in the Markdown: {event:?}"),
            Event::Start(Tag::Link { .. } | Tag::Image { .. }) => {
                panic!("a link or image in the Markdown: {event:?}")
            }
            Event::Start(Tag::Heading { .. }) => {}
            Event::Code(text) if text.contains("<img src=x") => code_with_payload += 1,
            Event::Start(Tag::TableRow | Tag::TableHead) => cells_in_row = 0,
            Event::Start(Tag::TableCell) => cells_in_row += 1,
            Event::End(TagEnd::TableHead) => header_cells = Some(cells_in_row),
            Event::End(TagEnd::TableRow) => {
                assert_eq!(
                    Some(cells_in_row),
                    header_cells,
                    "a row of {cells_in_row} cells"
                )
            }
            _ => {}
        }
    }
    assert!(
        code_with_payload >= 5,
        "the payload is shown, literally, in code spans ({code_with_payload})"
    );
    assert!(
        !md.lines().any(|l| l.starts_with("# forged")),
        "no forged heading"
    );

    let html = report(&state_dir, &case, "html", &[]);
    assert!(!html.contains("<img"), "no injected element in the file");
    assert!(!html.contains("<script"), "no script in the file");
    let page = dir.join("hostile.html");
    std::fs::write(&page, &html).unwrap();
    let dom = render_in_browser(&page, &dir).await;
    assert!(!dom.contains("<img"), "no injected element in the DOM");
    let title = Regex::new(r"<title>(.*?)</title>").unwrap();
    assert_eq!(
        title.captures(&dom).map(|c| c[1].to_string()),
        Some(format!("cordon case report {case}")),
        "no script ran (it would have retitled the page)"
    );
    assert!(
        dom.contains("&lt;img src=x"),
        "the payload is shown as text"
    );

    let doc = json_document(&report(&state_dir, &case, "json", &[]));
    let rendered = doc.to_string();
    assert!(
        rendered.contains("<img src=x onerror=alert(1)>"),
        "JSON keeps the value as data"
    );
}

/// A self-contained page: no element that fetches or scripts, no attribute
/// naming a URL, a style that imports nothing, and a policy forbidding all of it.
fn assert_self_contained(html: &str) {
    let fetching = Regex::new(
        r"(?i)<(script|link|iframe|object|embed|img|image|use|a|base|form|meta\s+http-equiv=.refresh)\b|<[a-z][^>]*\s(src|href|xlink:href|action|formaction|srcset|background)\s*=",
    )
    .unwrap();
    let found: Vec<&str> = fetching.find_iter(html).map(|m| m.as_str()).collect();
    assert!(found.is_empty(), "the page may fetch: {found:?}");
    let style = Regex::new(r"(?s)<style>(.*?)</style>").unwrap();
    for css in style.captures_iter(html) {
        assert!(
            !css[1].contains("url(") && !css[1].contains("@import"),
            "{}",
            &css[1]
        );
    }
    assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none'"));
}

/// Renders `page` in headless Chromium (no network: every host name fails
/// to resolve) and returns the DOM after load; also takes a screenshot,
/// which must be a PNG.
async fn render_in_browser(page: &Path, dir: &Path) -> String {
    let html = std::fs::read_to_string(page).unwrap();
    assert_self_contained(&html);
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(b).is_file()))
        })
        .expect(
            "no headless browser: install Chromium (scripts/setup does, from Debian's packages)",
        );
    let url = format!("file://{}", page.display());
    let profile = format!("--user-data-dir={}", dir.join("browser-profile").display());
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        profile.as_str(),
    ];
    let dom = browse(browser, &[&common[..], &["--dump-dom", &url]].concat()).await;
    let shot = dir.join("report.png");
    let arg = format!("--screenshot={}", shot.display());
    browse(
        browser,
        &[&common[..], &["--window-size=1200,2000", &arg, &url]].concat(),
    )
    .await;
    let png = std::fs::read(&shot).expect("the browser wrote a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    assert!(png.len() > 10_000, "the page rendered something");
    dom
}

/// Runs the browser, killed after a minute; its stdout.
async fn browse(browser: &str, args: &[&str]) -> String {
    let run = tokio::process::Command::new(browser)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("{browser} did not finish in 60 s"))
        .expect("start the browser");
    assert!(out.status.success(), "{browser} failed: {:?}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}
