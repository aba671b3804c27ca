//! A Game Day's scorecard: what happened, how long it took, what was
//! injected and survived, how exact the rollback was, and whether each
//! expectation held. Written as `scorecard.json` (kebab-case, versioned) and
//! `scorecard.md` (with the timeline as a Mermaid `gantt` chart), printed as
//! a terminal report; [`aggregate`] turns many into the KPIs a security team
//! reports.

use std::fmt::Write as _;
use std::path::Path;

use cordon_core::text::escape;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::GamedayError;

/// The version of the `scorecard.json` format.
pub const SCORECARD_FORMAT_VERSION: u32 = 1;

/// One Game Day, scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Scorecard {
    /// [`SCORECARD_FORMAT_VERSION`].
    pub format_version: u32,
    /// The scenario's name.
    pub scenario: String,
    /// The scenario file.
    pub scenario_file: String,
    /// `emulator` (the local moto server).
    pub target: String,
    /// When the Game Day started (RFC 3339).
    pub started_at: String,
    /// Every expectation held.
    pub passed: bool,
    /// From start to clean-up done, seconds (reported, never enforced).
    pub wall_seconds: f64,
    /// One row per finding.
    pub cases: Vec<CaseScore>,
    /// The slowest case's time to contain (the design guide's definition:
    /// case opened to its last containing step verified), milliseconds.
    pub time_to_contain_ms: Option<u64>,
    /// The slowest case's time to evidence complete: case opened to its last
    /// evidence step verified, milliseconds.
    pub time_to_evidence_ms: Option<u64>,
    /// AWS operations the cordon processes started (the runs it could count:
    /// a killed process reports none).
    pub api_calls: u64,
    /// Sequential rounds of AWS calls, the cordon processes' added up: in
    /// each process, the longest chain of calls each sent only after the one
    /// before it was answered (calls in flight together share a round), as
    /// `docs/round-trips.md` counts them. What the calls cost on a network,
    /// whatever its latency.
    #[serde(default)]
    pub api_rounds: u64,
    /// Requests on the wire beyond the operations: SDK retries.
    pub retries: u64,
    /// Throttling answers AWS sent.
    pub throttled: u64,
    /// Step attempts that failed and were retried by cordon.
    pub step_retries: u64,
    /// Faults injected, in the AWS layer and to the process.
    pub faults: Vec<FaultScore>,
    /// Approval requests and how they were answered.
    pub approvals: Vec<ApprovalScore>,
    /// Time all cases together waited for approvals, milliseconds.
    pub approval_wait_ms: u64,
    /// How exactly rollback restored the environment.
    pub rollback: RollbackScore,
    /// `cordon evidence verify` per case that stored evidence.
    pub evidence: Vec<EvidenceScore>,
    /// Every expectation and whether it held.
    pub expectations: Vec<ExpectationResult>,
    /// What happened when, milliseconds from the start.
    pub timeline: Vec<TimelineEntry>,
    /// Resources the clean-up could not delete (empty when clean).
    pub cleanup_failed: Vec<String>,
}

/// One finding's case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct CaseScore {
    /// The finding's name in the scenario.
    pub finding: String,
    /// The case id (absent when no case was opened).
    pub case_id: Option<String>,
    /// The playbook that answered.
    pub playbook: Option<String>,
    /// Where the case rested after containment (before the rollback).
    pub status: Option<String>,
    /// Case opened to its last containing step verified, milliseconds.
    pub time_to_contain_ms: Option<u64>,
    /// Case opened to its last evidence step verified, milliseconds.
    pub time_to_evidence_ms: Option<u64>,
    /// Time waiting for approvals, milliseconds.
    pub approval_wait_ms: u64,
    /// Step attempts that failed and were retried.
    pub step_retries: u64,
    /// Where the case rested after the rollback.
    pub rollback_status: Option<String>,
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct FaultScore {
    /// `process` or `aws`.
    pub layer: String,
    /// What was done, e.g. `SIGKILL at journal record 7 of case …`.
    pub fault: String,
    /// Milliseconds from the Game Day's start, when known.
    pub at_ms: Option<u64>,
}

/// One approval request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ApprovalScore {
    /// The case.
    pub case_id: String,
    /// The step that asked.
    pub step: String,
    /// `granted`, `refused`, `timed-out` or `unanswered`.
    pub answer: String,
    /// From the request to the answer, milliseconds.
    pub waited_ms: Option<u64>,
}

/// Rollback fidelity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct RollbackScore {
    /// Resources snapshotted before the run.
    pub resources: usize,
    /// Of those, equal to their pre-state field by field after the rollback.
    pub restored: usize,
    /// Every field that differs, `PATH: BEFORE -> AFTER`.
    pub differences: Vec<String>,
}

/// Evidence verification of one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct EvidenceScore {
    /// The case.
    pub case_id: String,
    /// `cordon evidence verify` passed.
    pub verified: bool,
    /// Its last line.
    pub detail: String,
}

/// One expectation and its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ExpectationResult {
    /// What was expected, e.g. `instances.web-01.isolated = true`.
    pub expectation: String,
    /// It held; `null` for what is reported only (wall-time budgets).
    pub passed: Option<bool>,
    /// What was found.
    pub actual: String,
}

/// One bar of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct TimelineEntry {
    /// The section: `game day` for the phases, else a case's finding name.
    pub section: String,
    /// What ran: a phase (`provision`, `contain`, …) or a step id.
    pub label: String,
    /// Start, milliseconds from the Game Day's start.
    pub start_ms: u64,
    /// End, milliseconds from the Game Day's start.
    pub end_ms: u64,
    /// Failed, refused, killed: shown as critical.
    pub critical: bool,
}

fn seconds(ms: Option<u64>) -> String {
    ms.map_or_else(
        || "-".to_string(),
        |ms| format!("{:.2}s", ms as f64 / 1000.0),
    )
}

fn mark(passed: Option<bool>) -> &'static str {
    match passed {
        Some(true) => "PASS",
        Some(false) => "FAIL",
        None => "INFO",
    }
}

impl Scorecard {
    /// The JSON Schema (draft 2020-12) of `scorecard.json` and of `cordon
    /// gameday run --output json` (`docs/schemas/gameday-scorecard.schema.json`).
    pub fn json_schema() -> serde_json::Value {
        schemars::generate::SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<Scorecard>()
            .to_value()
    }

    /// Failed expectations.
    pub fn failures(&self) -> Vec<&ExpectationResult> {
        self.expectations
            .iter()
            .filter(|e| e.passed == Some(false))
            .collect()
    }

    /// The readable terminal report. Every value that came from a finding,
    /// AWS or a journal is escaped, so it cannot forge a line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let verdict = if self.passed { "PASSED" } else { "FAILED" };
        let _ = writeln!(
            out,
            "Game Day {}: {verdict}  ({} on {}, {:.1}s)",
            escape(&self.scenario),
            escape(&self.scenario_file),
            self.target,
            self.wall_seconds
        );
        let _ = writeln!(out, "\nTimeline (seconds from start):");
        for t in &self.timeline {
            let _ = writeln!(
                out,
                "  {:>7.2} {:>7.2}  {:<18} {}{}",
                t.start_ms as f64 / 1000.0,
                t.end_ms as f64 / 1000.0,
                escape(&t.section),
                escape(&t.label),
                if t.critical { "  !" } else { "" }
            );
        }
        let _ = writeln!(out, "\nCases:");
        for c in &self.cases {
            let _ = writeln!(
                out,
                "  {:<22} {:<34} {:<26} contain {:>7}  evidence {:>7}  approvals {:>7}  rollback {}",
                escape(&c.finding),
                escape(c.case_id.as_deref().unwrap_or("(no case)")),
                escape(c.status.as_deref().unwrap_or("-")),
                seconds(c.time_to_contain_ms),
                seconds(c.time_to_evidence_ms),
                seconds(Some(c.approval_wait_ms)),
                escape(c.rollback_status.as_deref().unwrap_or("-")),
            );
        }
        let _ = writeln!(
            out,
            "\nTime to contain: {}   time to evidence complete: {}   approvals waited: {}",
            seconds(self.time_to_contain_ms),
            seconds(self.time_to_evidence_ms),
            seconds(Some(self.approval_wait_ms))
        );
        let _ = writeln!(
            out,
            "API calls: {} in {} round(s)   SDK retries: {}   throttled: {}   step retries: {}",
            self.api_calls, self.api_rounds, self.retries, self.throttled, self.step_retries
        );
        let _ = writeln!(out, "Faults injected: {}", self.faults.len());
        for f in &self.faults {
            let _ = writeln!(
                out,
                "  {:<8} {}  at {}",
                f.layer,
                escape(&f.fault),
                seconds(f.at_ms)
            );
        }
        for a in &self.approvals {
            let _ = writeln!(
                out,
                "Approval {} / {}: {} after {}",
                escape(&a.case_id),
                escape(&a.step),
                a.answer,
                seconds(a.waited_ms)
            );
        }
        let _ = writeln!(
            out,
            "Rollback fidelity: {}/{} resources at their exact pre-state",
            self.rollback.restored, self.rollback.resources
        );
        for d in &self.rollback.differences {
            let _ = writeln!(out, "  differs: {}", escape(d));
        }
        for e in &self.evidence {
            let _ = writeln!(
                out,
                "Evidence {}: {} ({})",
                escape(&e.case_id),
                if e.verified {
                    "verified"
                } else {
                    "NOT VERIFIED"
                },
                escape(&e.detail)
            );
        }
        let _ = writeln!(out, "\nExpectations:");
        for e in &self.expectations {
            let _ = writeln!(
                out,
                "  {}  {}  (actual: {})",
                mark(e.passed),
                escape(&e.expectation),
                escape(&e.actual)
            );
        }
        for r in &self.cleanup_failed {
            let _ = writeln!(out, "clean-up could not delete {}", escape(r));
        }
        out
    }

    /// The Markdown scorecard, the timeline as a Mermaid `gantt` chart.
    /// Values are code spans (backticks stripped), so a hostile value cannot
    /// add a link, a heading or a table cell.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let verdict = if self.passed { "passed" } else { "FAILED" };
        let _ = writeln!(out, "# Game Day {}: {verdict}\n", code(&self.scenario));
        let _ = writeln!(
            out,
            "Scenario {} on the {}, started {}, {:.1} s.\n",
            code(&self.scenario_file),
            self.target,
            code(&self.started_at),
            self.wall_seconds
        );
        let _ = writeln!(
            out,
            "## Timeline\n\n```mermaid\ngantt\n    dateFormat x\n    axisFormat %M:%S\n    title {}",
            mermaid(&self.scenario)
        );
        let mut section = String::new();
        for t in &self.timeline {
            if t.section != section {
                section.clone_from(&t.section);
                let _ = writeln!(out, "    section {}", mermaid(&section));
            }
            let _ = writeln!(
                out,
                "    {} :{}{}, {}",
                mermaid(&t.label),
                if t.critical { "crit, " } else { "" },
                t.start_ms,
                t.end_ms.max(t.start_ms + 1)
            );
        }
        let _ = writeln!(out, "```\n\n## Figures\n");
        let _ = writeln!(out, "| figure | value |\n|---|---|");
        for (name, value) in [
            ("time to contain", seconds(self.time_to_contain_ms)),
            (
                "time to evidence complete",
                seconds(self.time_to_evidence_ms),
            ),
            ("approvals waited", seconds(Some(self.approval_wait_ms))),
            ("API calls", self.api_calls.to_string()),
            ("API rounds", self.api_rounds.to_string()),
            ("SDK retries", self.retries.to_string()),
            ("throttled answers", self.throttled.to_string()),
            ("step retries", self.step_retries.to_string()),
            ("faults injected", self.faults.len().to_string()),
            (
                "rollback fidelity",
                format!("{}/{}", self.rollback.restored, self.rollback.resources),
            ),
        ] {
            let _ = writeln!(out, "| {name} | {value} |");
        }
        let _ = writeln!(
            out,
            "\n## Cases\n\n| finding | case | status | contain | evidence | rollback |\n|---|---|---|---|---|---|"
        );
        for c in &self.cases {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                code(&c.finding),
                code(c.case_id.as_deref().unwrap_or("-")),
                code(c.status.as_deref().unwrap_or("-")),
                seconds(c.time_to_contain_ms),
                seconds(c.time_to_evidence_ms),
                code(c.rollback_status.as_deref().unwrap_or("-")),
            );
        }
        if !self.faults.is_empty() {
            let _ = writeln!(out, "\n## Faults injected\n");
            for f in &self.faults {
                let _ = writeln!(
                    out,
                    "- {} {} at {}",
                    f.layer,
                    code(&f.fault),
                    seconds(f.at_ms)
                );
            }
        }
        if !self.rollback.differences.is_empty() {
            let _ = writeln!(out, "\n## Rollback differences\n");
            for d in &self.rollback.differences {
                let _ = writeln!(out, "- {}", code(d));
            }
        }
        let _ = writeln!(
            out,
            "\n## Expectations\n\n| result | expectation | actual |\n|---|---|---|"
        );
        for e in &self.expectations {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                mark(e.passed),
                code(&e.expectation),
                code(&e.actual)
            );
        }
        out
    }

    /// Writes `scorecard.json` and `scorecard.md` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), GamedayError> {
        let json = dir.join("scorecard.json");
        let text = serde_json::to_string_pretty(self).map_err(|e| GamedayError::Io {
            path: json.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(&json, text + "\n").map_err(GamedayError::io(&json))?;
        let md = dir.join("scorecard.md");
        std::fs::write(&md, self.to_markdown()).map_err(GamedayError::io(&md))
    }
}

/// A Markdown code span that stays one span in a table cell: backticks and
/// pipes cannot end it, line breaks cannot start a new block.
fn code(text: &str) -> String {
    let clean: String = escape(text)
        .chars()
        .map(|c| match c {
            '`' => '\'',
            '|' => '/',
            c => c,
        })
        .collect();
    format!("`{clean}`")
}

/// Text safe inside a Mermaid gantt line: no `:`, `;`, `#` or line breaks,
/// which would end the task name or the line.
fn mermaid(text: &str) -> String {
    escape(text)
        .chars()
        .map(|c| match c {
            ':' | ';' | '#' | '\n' | '\r' | '`' => ' ',
            c => c,
        })
        .collect()
}

/// The KPIs over many Game Days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Kpis {
    /// Scorecards read.
    pub game_days: usize,
    /// Of those, passed.
    pub passed: usize,
    /// `passed / game-days`.
    pub success_rate: f64,
    /// Over every case that was contained, milliseconds.
    pub time_to_contain_ms: Distribution,
    /// Over every approval that was answered, milliseconds.
    pub time_to_approve_ms: Distribution,
    /// Faults injected in all Game Days.
    pub faults_injected: usize,
    /// Of those, in Game Days that passed.
    pub faults_survived: usize,
    /// Per scenario: runs and passes.
    pub scenarios: Vec<ScenarioKpi>,
}

/// Mean, median and 95th percentile of a set of durations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Distribution {
    /// How many values.
    pub count: usize,
    /// Their mean.
    pub mean: Option<f64>,
    /// Their median.
    pub median: Option<f64>,
    /// Their 95th percentile (nearest rank).
    pub p95: Option<f64>,
}

impl Distribution {
    /// The distribution of `values`.
    pub fn of(mut values: Vec<u64>) -> Distribution {
        if values.is_empty() {
            return Distribution::default();
        }
        values.sort_unstable();
        let n = values.len();
        let mean = values.iter().map(|v| *v as f64).sum::<f64>() / n as f64;
        let median = if n % 2 == 1 {
            values[n / 2] as f64
        } else {
            (values[n / 2 - 1] + values[n / 2]) as f64 / 2.0
        };
        // Nearest rank: the smallest value with at least 95% at or below it.
        let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
        Distribution {
            count: n,
            mean: Some(mean),
            median: Some(median),
            p95: Some(values[rank - 1] as f64),
        }
    }
}

/// One scenario's runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ScenarioKpi {
    /// Its name.
    pub scenario: String,
    /// Game Days run.
    pub runs: usize,
    /// Of those, passed.
    pub passed: usize,
}

/// The KPIs of `scorecards`.
pub fn aggregate(scorecards: &[Scorecard]) -> Kpis {
    let passed = scorecards.iter().filter(|s| s.passed).count();
    let contain = scorecards
        .iter()
        .flat_map(|s| s.cases.iter().filter_map(|c| c.time_to_contain_ms))
        .collect();
    let approve = scorecards
        .iter()
        .flat_map(|s| {
            s.approvals
                .iter()
                .filter(|a| a.answer == "granted" || a.answer == "refused")
                .filter_map(|a| a.waited_ms)
        })
        .collect();
    let mut scenarios: Vec<ScenarioKpi> = Vec::new();
    for s in scorecards {
        match scenarios.iter_mut().find(|k| k.scenario == s.scenario) {
            Some(k) => {
                k.runs += 1;
                k.passed += usize::from(s.passed);
            }
            None => scenarios.push(ScenarioKpi {
                scenario: s.scenario.clone(),
                runs: 1,
                passed: usize::from(s.passed),
            }),
        }
    }
    scenarios.sort_by(|a, b| a.scenario.cmp(&b.scenario));
    Kpis {
        game_days: scorecards.len(),
        passed,
        success_rate: if scorecards.is_empty() {
            0.0
        } else {
            passed as f64 / scorecards.len() as f64
        },
        time_to_contain_ms: Distribution::of(contain),
        time_to_approve_ms: Distribution::of(approve),
        faults_injected: scorecards.iter().map(|s| s.faults.len()).sum(),
        faults_survived: scorecards
            .iter()
            .filter(|s| s.passed)
            .map(|s| s.faults.len())
            .sum(),
        scenarios,
    }
}

/// Every `scorecard.json` under `dir` (at any depth), sorted by path.
pub fn load_scorecards(dir: &Path) -> Result<Vec<Scorecard>, GamedayError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = std::fs::read_dir(&d).map_err(GamedayError::io(&d))?;
        for entry in entries {
            let path = entry.map_err(GamedayError::io(&d))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().is_some_and(|n| n == "scorecard.json") {
                files.push(path);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(GamedayError::Scorecards {
            path: dir.display().to_string(),
            reason: "no scorecard.json in it or below it; run `cordon gameday run SCENARIO --out DIR` first".to_string(),
        });
    }
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).map_err(GamedayError::io(path))?;
            serde_json::from_str(&text).map_err(|e| GamedayError::Scorecards {
                path: path.display().to_string(),
                reason: format!("not a scorecard: {e}"),
            })
        })
        .collect()
}

impl Kpis {
    /// The KPIs as a readable table.
    pub fn to_text(&self) -> String {
        let ms =
            |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{:.2}s", v / 1000.0));
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Game Days: {}   passed: {}   success rate: {:.1}%",
            self.game_days,
            self.passed,
            self.success_rate * 100.0
        );
        for (name, d) in [
            ("time to contain", &self.time_to_contain_ms),
            ("time to approve", &self.time_to_approve_ms),
        ] {
            let _ = writeln!(
                out,
                "{name:<16} n={:<4} mean {:>8}  median {:>8}  p95 {:>8}",
                d.count,
                ms(d.mean),
                ms(d.median),
                ms(d.p95)
            );
        }
        let _ = writeln!(
            out,
            "faults injected: {}   survived (in passed Game Days): {}",
            self.faults_injected, self.faults_survived
        );
        for s in &self.scenarios {
            let _ = writeln!(
                out,
                "  {:<40} {}/{} passed",
                escape(&s.scenario),
                s.passed,
                s.runs
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let d = Distribution::of((1..=20).collect());
        assert_eq!(d.count, 20);
        assert_eq!(d.mean, Some(10.5));
        assert_eq!(d.median, Some(10.5));
        assert_eq!(d.p95, Some(19.0));
        let one = Distribution::of(vec![7]);
        assert_eq!((one.median, one.p95), (Some(7.0), Some(7.0)));
        assert_eq!(Distribution::of(Vec::new()).mean, None);
    }

    fn card(name: &str, passed: bool, contain: &[u64], faults: usize) -> Scorecard {
        Scorecard {
            format_version: SCORECARD_FORMAT_VERSION,
            scenario: name.to_string(),
            scenario_file: format!("gameday/{name}.yaml"),
            target: "emulator".to_string(),
            started_at: "2026-01-01T00:00:00Z".to_string(),
            passed,
            wall_seconds: 1.0,
            cases: contain
                .iter()
                .map(|ms| CaseScore {
                    finding: "f".to_string(),
                    case_id: None,
                    playbook: None,
                    status: None,
                    time_to_contain_ms: Some(*ms),
                    time_to_evidence_ms: None,
                    approval_wait_ms: 0,
                    step_retries: 0,
                    rollback_status: None,
                })
                .collect(),
            time_to_contain_ms: contain.iter().copied().max(),
            time_to_evidence_ms: None,
            api_calls: 0,
            api_rounds: 0,
            retries: 0,
            throttled: 0,
            step_retries: 0,
            faults: (0..faults)
                .map(|_| FaultScore {
                    layer: "process".to_string(),
                    fault: "SIGKILL".to_string(),
                    at_ms: None,
                })
                .collect(),
            approvals: vec![ApprovalScore {
                case_id: "c".to_string(),
                step: "s".to_string(),
                answer: "granted".to_string(),
                waited_ms: Some(500),
            }],
            approval_wait_ms: 500,
            rollback: RollbackScore::default(),
            evidence: Vec::new(),
            expectations: vec![ExpectationResult {
                expectation: "instances.web.isolated = true\n# forged".to_string(),
                passed: Some(passed),
                actual: "a|b`c".to_string(),
            }],
            timeline: vec![TimelineEntry {
                section: "game day".to_string(),
                label: "contain: x; y".to_string(),
                start_ms: 10,
                end_ms: 10,
                critical: false,
            }],
            cleanup_failed: Vec::new(),
        }
    }

    #[test]
    fn aggregate_reports_success_rate_times_and_faults_survived() {
        let kpis = aggregate(&[
            card("a", true, &[1000, 3000], 2),
            card("a", false, &[2000], 1),
            card("b", true, &[], 0),
        ]);
        assert_eq!((kpis.game_days, kpis.passed), (3, 2));
        assert!((kpis.success_rate - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(kpis.time_to_contain_ms.median, Some(2000.0));
        assert_eq!(kpis.time_to_approve_ms.count, 3);
        assert_eq!((kpis.faults_injected, kpis.faults_survived), (3, 2));
        assert_eq!(kpis.scenarios[0].runs, 2);
        assert_eq!(kpis.scenarios[0].passed, 1);
    }

    #[test]
    fn markdown_keeps_hostile_text_inside_code_spans_and_the_gantt_well_formed() {
        let md = card("a", false, &[1000], 0).to_markdown();
        assert!(md.contains("```mermaid\ngantt\n"), "{md}");
        assert!(md.contains("    contain  x  y :10, 11"), "{md}");
        assert!(!md.contains("\n# forged"), "{md}");
        assert!(md.contains("`a/b'c`"), "{md}");
        let text = card("a", false, &[1000], 0).to_text();
        assert!(
            text.contains("FAIL  instances.web.isolated = true\\n# forged"),
            "{text}"
        );
    }
}
