//! The `--output json` documents: what scripts read from cordon. Each command
//! prints exactly one JSON object on stdout, `format-version` first, then the
//! command's own kebab-case keys (journal records on the live timeline go to
//! stderr, one per line, each carrying its own `format-version`).
//!
//! Output format 1 (before versioning) printed some documents as bare arrays
//! (`cases`, `triage`) and `route`'s `also_matched` in snake_case. The version
//! policy is the journal's: see `docs/formats.md`.

use std::collections::BTreeMap;

use cordon_aws::faults::InjectedFault;
use cordon_aws::guardduty::TriageRow;
use cordon_core::claims::ResourceHolder;
use cordon_core::executor::DryRunStep;
use cordon_core::journal::JournalRecord;
use cordon_core::plan::{CaseId, Plan};
use cordon_core::route::Route;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use cordon_core::summary::CaseSummary;

use crate::live::LiveEni;

/// The output format this build prints.
pub const FORMAT_VERSION: u32 = 2;

/// The body of a command's document: a struct whose keys follow `format-version`.
pub trait Body: Serialize {}

/// A document as printed.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[schemars(rename = "{B}Document")]
pub struct Document<'a, B: Body> {
    /// The output format (see `docs/formats.md`); a script checks it first.
    pub format_version: u32,
    #[serde(flatten)]
    pub body: &'a B,
}

impl<'a, B: Body> Document<'a, B> {
    pub fn new(body: &'a B) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            body,
        }
    }
}

/// `route`, and `plan`/`run` when no playbook answers: `result` is `matched` or `no-match`.
impl Body for Route {}

/// `plan`: the plan itself.
impl Body for Plan {}

/// `run --dry-run`: the plan and the calls each step would make.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct DryRun<'a> {
    pub plan: &'a Plan,
    pub dry_run: &'a [DryRunStep],
}
impl Body for DryRun<'_> {}

/// `run`, `resume`, `approve`, `rollback`: where the case ended and what it took.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct RunReport<'a> {
    pub case_id: &'a CaseId,
    pub status: String,
    /// The journal already had the case at rest; nothing was done.
    pub no_op: bool,
    pub step_failed: bool,
    /// What the run means, the same name in every front door (see `cordon --help`).
    pub outcome: String,
    /// The exit code `cordon` returns for `outcome`.
    pub exit_code: u8,
    pub message: &'a str,
    /// Operations started, by `Service.Operation`.
    pub api_calls: BTreeMap<String, u64>,
    /// Sequential rounds of the calls: the longest chain of calls each sent
    /// only after the one before it was answered (`docs/round-trips.md`).
    pub api_rounds: usize,
    /// The faults `--inject-faults` injected, in order (absent when none were).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub injected_faults: Vec<InjectedFault>,
}
impl Body for RunReport<'_> {}

/// `status`: the case, its plan and every journal record (in the current
/// journal format, whichever format stored it).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct CaseStatusReport<'a> {
    pub case_id: &'a CaseId,
    /// `null` while the case has not reached a resting state.
    pub status: Option<String>,
    /// Epoch, time to contain, approval wait, open ENIs, flags.
    pub summary: &'a CaseSummary,
    /// With `--live`: what AWS says now about each ENI the journal flags as open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<&'a [LiveEni]>,
    /// Who holds each of the case's resources (`held-by`: a case id or `null`).
    pub resources: &'a [ResourceHolder],
    pub plan: &'a Plan,
    /// The journal's records, each as `cordon status` of the journal format
    /// prints it (the journal format is documented in `docs/formats.md`).
    #[schemars(with = "Vec<Value>")]
    pub journal: &'a [JournalRecord],
}
impl Body for CaseStatusReport<'_> {}

/// `cases`: one row per case.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Cases<'a> {
    pub cases: &'a [CaseSummary],
    /// Cases whose journal could not be read, with why.
    pub unreadable: &'a [UnreadableCase],
}

/// A case whose journal could not be read.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct UnreadableCase {
    pub case_id: String,
    pub error: String,
}
impl Body for Cases<'_> {}

/// `approve --task-token`: the decision journaled in the case's S3 journal
/// and sent to the waiting Step Functions execution.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct TaskApprovalAnswer {
    pub case_id: String,
    pub step: String,
    /// `approved` or `refused`.
    pub decision: String,
    /// The approver's verified identity (STS), as journaled.
    pub approver: String,
    /// Where the decision is journaled: `s3://BUCKET/PREFIX<case-id>/`.
    pub journal: String,
    /// A 12-hex SHA-256 prefix of the task token: the token is never printed.
    pub task_token_sha256: String,
    /// What the execution does next.
    pub next: String,
}

impl Body for TaskApprovalAnswer {}

/// `triage`: open findings, most severe first, each with its playbook.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Triage<'a> {
    pub findings: &'a [TriageRow],
}
impl Body for Triage<'_> {}

/// The commands whose `--output json` document has a published schema, by the
/// name `cordon schema --output-of NAME` takes and `docs/schemas/NAME.schema.json`
/// carries. `run` covers `resume`, `approve` and `rollback`, which print the
/// same report.
pub const DOCUMENTS: &[&str] = &[
    "route",
    "plan",
    "dry-run",
    "run",
    "task-approval",
    "status",
    "cases",
    "triage",
    "doctor",
    "report",
];

/// The JSON Schema of the document `name` prints (`None`: no such document;
/// see [`DOCUMENTS`]). A command that can print one of several documents
/// (`plan` prints the route when no playbook answers) has a `oneOf` of them.
/// The schema of fault plans (`cordon --inject-faults FILE`, a Game Day
/// scenario's `faults:`), published as `docs/schemas/fault-plan.schema.json`.
pub fn fault_plan_schema() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    generator
        .into_root_schema_for::<cordon_aws::faults::FaultPlan>()
        .to_value()
}

pub fn json_schema(name: &str) -> Option<Value> {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut branches = Vec::new();
    let mut add = |schema: schemars::Schema| branches.push(schema.to_value());
    match name {
        "route" => add(generator.subschema_for::<Document<Route>>()),
        "plan" => {
            add(generator.subschema_for::<Document<Plan>>());
            add(generator.subschema_for::<Document<Route>>());
        }
        "dry-run" => {
            add(generator.subschema_for::<Document<DryRun>>());
            add(generator.subschema_for::<Document<Route>>());
        }
        "run" => {
            add(generator.subschema_for::<Document<RunReport>>());
            add(generator.subschema_for::<Document<Route>>());
            add(generator.subschema_for::<Document<crate::burst::BurstReport>>());
        }
        "task-approval" => add(generator.subschema_for::<Document<TaskApprovalAnswer>>()),
        "status" => add(generator.subschema_for::<Document<CaseStatusReport>>()),
        "cases" => add(generator.subschema_for::<Document<Cases>>()),
        "triage" => {
            add(generator.subschema_for::<Document<Triage>>());
            add(generator.subschema_for::<Document<crate::burst::BurstReport>>());
        }
        "doctor" => add(generator.subschema_for::<Document<crate::doctor::DoctorReport>>()),
        "report" => return Some(crate::report::json_schema()),
        _ => return None,
    }
    let mut root = serde_json::Map::new();
    root.insert(
        "$schema".to_string(),
        Value::from("https://json-schema.org/draft/2020-12/schema"),
    );
    root.insert(
        "title".to_string(),
        Value::from(format!("cordon {name} --output json")),
    );
    if let [Value::Object(only)] = branches.as_slice() {
        root.extend(only.clone());
    } else {
        root.insert("oneOf".to_string(), Value::Array(branches));
    }
    root.insert(
        "$defs".to_string(),
        Value::Object(generator.take_definitions(true)),
    );
    Some(Value::Object(root))
}

/// The document's text: pretty JSON and a final newline.
pub fn to_text<B: Body>(body: &B) -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(&Document::new(body))?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
#[path = "../../cordon-core/tests/support/golden.rs"]
pub(crate) mod golden;
#[cfg(test)]
#[path = "../tests/support/schema_check.rs"]
pub(crate) mod schema_check;

/// Goldens of the documents the CLI tests cannot produce without AWS; the
/// others come from the binary in `tests/json_output.rs`.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;

    use cordon_core::finding::parse_single_finding;
    use cordon_core::route::route;
    use cordon_core::validate::load_playbooks;
    use serde_json::Value;

    use super::*;

    const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
    const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

    fn plan() -> Plan {
        let text =
            std::fs::read_to_string(format!("{ROOT}/tests/fixtures/findings/iam-user-key.json"))
                .unwrap();
        let finding = parse_single_finding(&text, "iam-user-key.json").unwrap();
        let playbooks: Vec<_> = load_playbooks(Path::new(&format!("{ROOT}/playbooks")))
            .unwrap()
            .into_iter()
            .map(|l| l.playbook)
            .collect();
        let (Route::Matched { reason, .. }, Some(playbook)) = route(&finding, &playbooks) else {
            panic!("the fixture routes to a shipped playbook");
        };
        cordon_core::plan::plan(&finding, playbook, reason)
    }

    /// The golden `name` of `body`, checked against the published `schema`.
    fn check<B: Body>(name: &str, schema: &str, body: &B) {
        let text = to_text(body).unwrap();
        golden::check(&Path::new(GOLDEN).join(name), &text);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value.as_object().unwrap().keys().next().map(String::as_str),
            Some("format-version"),
            "{name}"
        );
        assert_eq!(value["format-version"], FORMAT_VERSION);
        schema_check::assert_valid(schema, &value);
    }

    /// Each published schema is the one this build prints (`cordon schema
    /// --output-of NAME`); a change to one is a format change (`docs/formats.md`).
    /// `UPDATE_GOLDEN=1` rewrites them.
    #[test]
    fn the_published_json_schemas_are_current() {
        let published: Vec<String> = std::fs::read_dir(format!("{ROOT}/docs/schemas"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for name in DOCUMENTS {
            let mut text = serde_json::to_string_pretty(&json_schema(name).unwrap()).unwrap();
            text.push('\n');
            golden::check(
                &Path::new(ROOT).join(format!("docs/schemas/{name}.schema.json")),
                &text,
            );
        }
        let mut text = serde_json::to_string_pretty(&fault_plan_schema()).unwrap();
        text.push('\n');
        golden::check(
            &Path::new(ROOT).join("docs/schemas/fault-plan.schema.json"),
            &text,
        );
        let gameday = [
            (
                "gameday-scenario",
                cordon_gameday::scenario::Scenario::json_schema(),
            ),
            (
                "gameday-scorecard",
                cordon_gameday::scorecard::Scorecard::json_schema(),
            ),
        ];
        for (name, schema) in &gameday {
            let mut text = serde_json::to_string_pretty(schema).unwrap();
            text.push('\n');
            golden::check(
                &Path::new(ROOT).join(format!("docs/schemas/{name}.schema.json")),
                &text,
            );
        }
        for file in published {
            let name = file.strip_suffix(".schema.json").unwrap_or(&file);
            assert!(
                DOCUMENTS.contains(&name)
                    || [
                        "playbook",
                        "fault-plan",
                        "gameday-scenario",
                        "gameday-scorecard"
                    ]
                    .contains(&name),
                "docs/schemas/{file} is no document's schema"
            );
        }
        assert_eq!(json_schema("policy"), None);
    }

    #[test]
    fn dry_run_document_matches_its_golden_file() {
        let plan = plan();
        let steps = vec![
            DryRunStep {
                step: "deactivate-key".to_string(),
                calls: vec![
                    "iam:UpdateAccessKey AKIAEXAMPLEEXAMPLE01 of ci-runner -> Inactive".to_string(),
                ],
                note: None,
            },
            DryRunStep {
                step: "quarantine".to_string(),
                calls: Vec::new(),
                note: Some("needs approval before it runs".to_string()),
            },
        ];
        check(
            "dry-run.json",
            "dry-run",
            &DryRun {
                plan: &plan,
                dry_run: &steps,
            },
        );
    }

    #[test]
    fn run_report_document_matches_its_golden_file() {
        let case = plan().case_id;
        let api_calls = BTreeMap::from([
            ("IAM.ListAccessKeys".to_string(), 2),
            ("IAM.UpdateAccessKey".to_string(), 1),
            ("STS.GetCallerIdentity".to_string(), 1),
        ]);
        check(
            "run.json",
            "run",
            &RunReport {
                case_id: &case,
                status: "awaiting-approval".to_string(),
                no_op: false,
                step_failed: false,
                outcome: "awaiting-decision".to_string(),
                exit_code: 3,
                message: "step `quarantine` waits for approval: `cordon approve CASE quarantine`",
                api_calls,
                api_rounds: 3,
                injected_faults: Vec::new(),
            },
        );
    }

    #[test]
    fn triage_document_matches_its_golden_file() {
        let rows = vec![
            TriageRow {
                finding_id: "7ab4f0c9d1e2aa01".to_string(),
                finding_type:
                    "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS"
                        .to_string(),
                resource: "AKIAEXAMPLEEXAMPLE01 (ci-runner)".to_string(),
                severity: 8.0,
                severity_band: "high".to_string(),
                playbook: Some("iam-user-key-compromised".to_string()),
            },
            TriageRow {
                finding_id: "3cb4f0c9d1e2aa07".to_string(),
                finding_type: "Policy:S3/BucketBlockPublicAccessDisabled".to_string(),
                resource: "example-bucket".to_string(),
                severity: 2.0,
                severity_band: "low".to_string(),
                playbook: None,
            },
        ];
        check("triage.json", "triage", &Triage { findings: &rows });
    }
}
