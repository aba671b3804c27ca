//! Game Day scenario files: the environment to build, the findings to raise
//! on it, the faults to inject (in the AWS layer and to the cordon process),
//! how approvals are answered, and what must hold for the Game Day to pass.
//!
//! Scenarios are YAML (`gameday/*.yaml`), strict like playbooks (unknown keys
//! are refused, every field documented, `cordon schema --scenario` prints the
//! JSON Schema) and validated by the playbook validator's machinery, so every
//! problem is reported at once with `file:line:column`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cordon_aws::faults::{FaultPlan, FaultPlanError};
use cordon_core::validate::{Problem, typed_yaml};
use cordon_core::yaml::Document;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ScenarioError;
use crate::spec::EnvironmentSpec;

/// One Game Day: build, raise, contain, check, roll back, check, clean up.
///
/// It passes when every expectation under `expect` holds, every resource is
/// back at its pre-state after the rollback (field by field), and the
/// evidence chain of every case that stored evidence verifies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Scenario {
    /// The scenario's name, in scorecards and reports (`[A-Za-z0-9_-]`).
    pub name: String,
    /// What the scenario rehearses, for the people reading the scorecard.
    #[serde(default)]
    pub description: Option<String>,
    /// The environment to build; every resource carries the Game Day tag.
    pub environment: EnvironmentSpec,
    /// Copies of one instance (a fleet for a burst); `--scale N` overrides the count.
    #[serde(default)]
    pub copies: Option<CopiesSpec>,
    /// The findings to raise against the built resources, all delivered to one
    /// `cordon run` (several findings are worked at once, as a burst).
    pub findings: Vec<FindingSpec>,
    /// Faults injected in cordon's AWS layer (`cordon --inject-faults`) during
    /// containment: `cordon run`, `resume` and `approve` (each process counts
    /// calls from 1); rollback and the checks run without them.
    #[serde(default)]
    pub faults: Option<FaultPlan>,
    /// Faults done to the cordon process from outside: the first applies to
    /// `cordon run`, each next one to the `cordon resume` that follows it.
    #[serde(default)]
    pub process_faults: Vec<ProcessFault>,
    /// How approval-gated steps are answered.
    #[serde(default)]
    pub approvals: ApprovalsSpec,
    /// What must hold once containment is over.
    pub expect: Expectations,
}

/// Copies of one instance of the environment: the same subnet, groups,
/// profile, tags, interfaces and volumes, named `NAME-2` … `NAME-COUNT`
/// (the original counts as the first). Copies join no Auto Scaling group or
/// target group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CopiesSpec {
    /// The instance copied.
    pub instance: String,
    /// How many instances there are in all, the original included (1 to 200).
    pub count: u32,
}

/// The most instances `copies` (or `--scale`) may ask for.
pub const MAX_COPIES: u32 = 200;

/// One finding, built in GuardDuty's documented shape from the provisioned
/// ids. Name exactly one of `instance`, `user` and `role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FindingSpec {
    /// Label used by `expect.cases` and process faults; `finding-N` (1-based) when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// An instance finding about this instance (every interface, its profile, its tags).
    #[serde(default)]
    pub instance: Option<String>,
    /// With `copies` of `instance`: one finding per copy.
    #[serde(default)]
    pub every_copy: bool,
    /// An access-key finding about this IAM user: its first access key
    /// (`AKIA…`), or with `credentials: temporary` a session key (`ASIA…`)
    /// from `GetSessionToken`.
    #[serde(default)]
    pub user: Option<String>,
    /// An access-key finding about a session (`ASIA…`) of this role: instance
    /// credentials used outside AWS.
    #[serde(default)]
    pub role: Option<String>,
    /// For `user`: `long-term` (default) or `temporary`.
    #[serde(default)]
    pub credentials: Credentials,
    /// GuardDuty finding type; a command-and-control type for instances,
    /// credential exfiltration for keys when absent.
    #[serde(default, rename = "type")]
    pub finding_type: Option<String>,
    /// Severity, 1.0 to 10.0 (default 8.0).
    #[serde(default)]
    pub severity: Option<f64>,
    /// Deliver it wrapped in the EventBridge envelope, as the event rule does.
    #[serde(default)]
    pub eventbridge: bool,
}

/// Which credentials an IAM user's finding is about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Credentials {
    /// The user's access key (`AKIA…`).
    #[default]
    LongTerm,
    /// A session key of the user (`ASIA…`, from `GetSessionToken`).
    Temporary,
}

/// A fault done to the cordon process from outside, then `cordon resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum ProcessFault {
    /// SIGKILL the process as soon as the journal record with this `seq`
    /// (0-based) of the finding's case is on disk.
    KillAtRecord {
        /// The record's `seq`.
        record: u64,
        /// The finding whose case is watched (default: the first finding).
        #[serde(default)]
        finding: Option<String>,
    },
    /// SIGTERM the process as soon as isolation phase 1 begins (the journal's
    /// `untrack-begun` progress record: ENIs entering the allow-all group).
    /// cordon finishes the step in flight, both phases, and stops.
    SigtermInIsolationPhase1 {
        /// The finding whose case is watched (default: the first finding).
        #[serde(default)]
        finding: Option<String>,
    },
}

impl ProcessFault {
    /// The finding whose case the fault watches, if named.
    pub fn finding(&self) -> Option<&str> {
        match self {
            ProcessFault::KillAtRecord { finding, .. }
            | ProcessFault::SigtermInIsolationPhase1 { finding } => finding.as_deref(),
        }
    }
}

/// How a step waiting for approval is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Approved (`--yes`, or `cordon approve` once the step asks).
    #[default]
    Grant,
    /// Refused with `cordon approve --refuse` once the step asks.
    Refuse,
    /// Nobody answers: the case stops at `--approval-timeout` (exit 124).
    TimeOut,
}

/// Approvals per step id, and for the steps not listed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ApprovalsSpec {
    /// The answer for every approval-gated step not listed in `steps`.
    #[serde(default)]
    pub default: Decision,
    /// The answer per step id.
    #[serde(default)]
    pub steps: BTreeMap<String, Decision>,
    /// How long cordon waits for an answer before it times out, in seconds
    /// (default 3; only used when some answer is not `grant`).
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
}

impl ApprovalsSpec {
    /// The answer for `step`.
    pub fn decision(&self, step: &str) -> Decision {
        self.steps.get(step).copied().unwrap_or(self.default)
    }

    /// Every answer is a grant: `--yes` does it without waiting.
    pub fn all_granted(&self) -> bool {
        self.default == Decision::Grant && self.steps.values().all(|d| *d == Decision::Grant)
    }
}

/// What must hold after containment. Absent keys are not checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Expectations {
    /// The status each finding's case rests in (`completed`, `stopped`,
    /// `awaiting-approval`, `rolled-back`, `rolled-back-except-credentials`,
    /// `completed-with-failures`, …), by finding name; a finding not listed
    /// must end `completed`.
    #[serde(default)]
    pub cases: BTreeMap<String, String>,
    /// How many cases rest in each status, e.g. `{completed: 1, stopped: 1}`
    /// when two findings race for one instance and either may win. When
    /// given, findings not listed in `cases` are counted here instead of
    /// each having to end `completed`.
    #[serde(default)]
    pub statuses: BTreeMap<String, usize>,
    /// Containment state per instance (for a copied instance: every copy).
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceExpectation>,
    /// Containment state per IAM user.
    #[serde(default)]
    pub users: BTreeMap<String, UserExpectation>,
    /// Containment state per IAM role.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleExpectation>,
    /// `cordon evidence verify` passes for every case that stored evidence (default true).
    #[serde(default = "yes")]
    pub evidence_verified: bool,
    /// After `cordon rollback`, every resource equals its pre-state field by field (default true).
    #[serde(default = "yes")]
    pub rollback_exact: bool,
    /// At most this many AWS operations by the cordon processes (run and resumes).
    #[serde(default)]
    pub max_api_calls: Option<u64>,
    /// At most this many requests put on the wire beyond the operations (retries).
    #[serde(default)]
    pub max_retries: Option<u64>,
    /// At most this many sequential rounds of AWS calls, the cordon
    /// processes' added up (a round: calls in flight together; a call sent
    /// after another's answer starts the next; see `docs/round-trips.md`).
    /// Enforced: rounds are counted, not timed, so they hold on any machine.
    #[serde(default)]
    pub max_api_rounds: Option<u64>,
    /// Time to contain the slowest case should stay under this: reported,
    /// never enforced (timing on a shared machine is not a test).
    #[serde(default)]
    pub time_to_contain_seconds: Option<f64>,
}

fn yes() -> bool {
    true
}

/// What an instance looks like once contained. Each key, when given, is checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InstanceExpectation {
    /// Every interface is in exactly one group with no rule (true), or in its
    /// own groups as before (false).
    #[serde(default)]
    pub isolated: Option<bool>,
    /// Termination protection is on.
    #[serde(default)]
    pub termination_protection: Option<bool>,
    /// An instance profile is associated.
    #[serde(default)]
    pub instance_profile: Option<bool>,
    /// It is a member of an Auto Scaling group of the environment.
    #[serde(default)]
    pub in_auto_scaling_group: Option<bool>,
    /// It is registered with a target group of the environment.
    #[serde(default)]
    pub in_target_group: Option<bool>,
    /// Every volume has a snapshot.
    #[serde(default)]
    pub volumes_snapshotted: Option<bool>,
}

/// What an IAM user looks like once contained.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct UserExpectation {
    /// Every access key the environment gave the user is `Active` or `Inactive`.
    #[serde(default)]
    pub keys: Option<KeyStatus>,
    /// The user has more access keys than the environment gave it (a rotation).
    #[serde(default)]
    pub key_rotated: Option<bool>,
    /// Sessions issued before containment are denied (the user has an inline
    /// or attached policy it did not have before).
    #[serde(default)]
    pub policies_added: Option<bool>,
}

/// What an IAM role looks like once contained.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RoleExpectation {
    /// Sessions issued before containment are denied (the role has a policy
    /// it did not have before).
    #[serde(default)]
    pub policies_added: Option<bool>,
}

/// An access key's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Deactivated.
    Inactive,
}

impl KeyStatus {
    /// IAM's spelling.
    pub fn as_iam(self) -> &'static str {
        match self {
            KeyStatus::Active => "Active",
            KeyStatus::Inactive => "Inactive",
        }
    }
}

/// A finding of the scenario, resolved: its label and what it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedFinding<'a> {
    /// `name`, or `finding-N`.
    pub name: String,
    /// The spec.
    pub spec: &'a FindingSpec,
    /// For `every-copy`: the copy's instance name.
    pub instance: Option<String>,
}

impl Scenario {
    /// The JSON Schema (draft 2020-12) of scenario files (`cordon schema
    /// --scenario`, `docs/schemas/gameday-scenario.schema.json`).
    pub fn json_schema() -> serde_json::Value {
        schemars::generate::SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<Scenario>()
            .to_value()
    }

    /// Reads and validates a scenario file: every problem at once.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::from_text(&text, &path.display().to_string()).map_err(ScenarioError::Invalid)
    }

    /// Validates a scenario's text; `file` names it in problems.
    pub fn from_text(text: &str, file: &str) -> Result<Scenario, Vec<Problem>> {
        let (scenario, doc) = typed_yaml::<Scenario>(text, file)?;
        let problems = scenario.check(file, &doc);
        if problems.is_empty() {
            Ok(scenario)
        } else {
            Err(problems)
        }
    }

    /// The instance names `copies` adds, with `count` overriding its count.
    pub fn copy_names(&self, count: Option<u32>) -> Vec<String> {
        let Some(copies) = &self.copies else {
            return Vec::new();
        };
        let count = count.unwrap_or(copies.count).clamp(1, MAX_COPIES);
        (2..=count)
            .map(|i| format!("{}-{i}", copies.instance))
            .collect()
    }

    /// The environment with the copies added (`scale` overrides their count).
    pub fn environment(&self, scale: Option<u32>) -> EnvironmentSpec {
        let mut env = self.environment.clone();
        if let Some(copies) = &self.copies
            && let Some(original) = env
                .instances
                .iter()
                .find(|i| i.name == copies.instance)
                .cloned()
        {
            for name in self.copy_names(scale) {
                let mut copy = original.clone();
                copy.name = name.clone();
                if copy.tags.contains_key("Name") {
                    copy.tags.insert("Name".to_string(), name);
                }
                env.instances.push(copy);
            }
        }
        env
    }

    /// Every finding to raise, `every-copy` expanded (`scale` as for
    /// [`Scenario::environment`]).
    pub fn findings(&self, scale: Option<u32>) -> Vec<NamedFinding<'_>> {
        let mut out = Vec::new();
        for (i, spec) in self.findings.iter().enumerate() {
            let name = spec
                .name
                .clone()
                .unwrap_or_else(|| format!("finding-{}", i + 1));
            let copied = self
                .copies
                .as_ref()
                .filter(|c| spec.every_copy && spec.instance.as_deref() == Some(&c.instance));
            out.push(NamedFinding {
                name: name.clone(),
                spec,
                instance: spec.instance.clone(),
            });
            if copied.is_some() {
                for copy in self.copy_names(scale) {
                    out.push(NamedFinding {
                        name: format!("{name}@{copy}"),
                        spec,
                        instance: Some(copy),
                    });
                }
            }
        }
        out
    }

    /// The instances an expectation on `name` covers: it and its copies.
    pub fn instances_named(&self, name: &str, scale: Option<u32>) -> Vec<String> {
        let mut names = vec![name.to_string()];
        if self.copies.as_ref().is_some_and(|c| c.instance == name) {
            names.extend(self.copy_names(scale));
        }
        names
    }

    /// Checks serde cannot make, each located in the document.
    fn check(&self, file: &str, doc: &Document) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut push = |path: &str, message: String, hint: Option<String>| {
            problems.push(Problem::at(file, doc, path, message, hint));
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            push(
                "name",
                format!("name {:?} must be non-empty [A-Za-z0-9_-]", self.name),
                Some("it names the scorecard's directory".to_string()),
            );
        }
        if let Err(spec_problems) = self.environment.validate() {
            for p in spec_problems {
                push(&format!("environment.{}", p.path), p.message, None);
            }
        }
        let instances: BTreeSet<&str> = self
            .environment
            .instances
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        let users: BTreeMap<&str, u8> = self
            .environment
            .users
            .iter()
            .map(|u| (u.name.as_str(), u.access_keys))
            .collect();
        let roles: BTreeSet<&str> = self
            .environment
            .roles
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        let known = |set: &mut dyn Iterator<Item = &str>| {
            let names: Vec<&str> = set.collect();
            Some(if names.is_empty() {
                "the environment defines none".to_string()
            } else {
                format!("known: {}", names.join(", "))
            })
        };
        if let Some(copies) = &self.copies {
            if !instances.contains(copies.instance.as_str()) {
                push(
                    "copies.instance",
                    format!("no instance named `{}`", copies.instance),
                    known(&mut instances.iter().copied()),
                );
            }
            if copies.count == 0 || copies.count > MAX_COPIES {
                push(
                    "copies.count",
                    format!("{} copies: must be 1 to {MAX_COPIES}", copies.count),
                    None,
                );
            }
        }
        if self.findings.is_empty() {
            push(
                "findings",
                "no finding to raise".to_string(),
                Some("list at least one finding".to_string()),
            );
        }
        let mut names = BTreeSet::new();
        for (i, f) in self.findings.iter().enumerate() {
            let at = format!("findings[{i}]");
            let name = f
                .name
                .clone()
                .unwrap_or_else(|| format!("finding-{}", i + 1));
            if !names.insert(name.clone()) {
                push(
                    &format!("{at}.name"),
                    format!("`{name}` is used twice"),
                    None,
                );
            }
            let subjects = [f.instance.is_some(), f.user.is_some(), f.role.is_some()];
            if subjects.iter().filter(|s| **s).count() != 1 {
                push(
                    &at,
                    "name exactly one of `instance`, `user`, `role`".to_string(),
                    None,
                );
            }
            if let Some(instance) = &f.instance
                && !instances.contains(instance.as_str())
            {
                push(
                    &format!("{at}.instance"),
                    format!("no instance named `{instance}`"),
                    known(&mut instances.iter().copied()),
                );
            }
            if f.every_copy
                && self
                    .copies
                    .as_ref()
                    .is_none_or(|c| Some(&c.instance) != f.instance.as_ref())
            {
                push(
                    &format!("{at}.every-copy"),
                    "`every-copy` needs `copies` of this finding's instance".to_string(),
                    None,
                );
            }
            if let Some(user) = &f.user {
                match users.get(user.as_str()) {
                    None => push(
                        &format!("{at}.user"),
                        format!("no user named `{user}`"),
                        known(&mut users.keys().copied()),
                    ),
                    Some(0) if f.credentials == Credentials::LongTerm => push(
                        &format!("{at}.user"),
                        format!("user `{user}` has no access key to raise a finding about"),
                        Some("give it `access-keys: 1`".to_string()),
                    ),
                    Some(_) => {}
                }
            }
            if let Some(role) = &f.role
                && !roles.contains(role.as_str())
            {
                push(
                    &format!("{at}.role"),
                    format!("no role named `{role}`"),
                    known(&mut roles.iter().copied()),
                );
            }
            if f.credentials == Credentials::Temporary && f.user.is_none() {
                push(
                    &format!("{at}.credentials"),
                    "`credentials` applies to `user` findings".to_string(),
                    None,
                );
            }
            if let Some(severity) = f.severity
                && !(1.0..=10.0).contains(&severity)
            {
                push(
                    &format!("{at}.severity"),
                    format!("severity {severity} is outside 1.0 to 10.0"),
                    None,
                );
            }
        }
        if let Some(Err(e)) = self.faults.as_ref().map(FaultPlan::validate) {
            let at = match &e {
                FaultPlanError::UnknownOperation { rule, .. } => {
                    format!("faults.rules[{}].operation", rule.saturating_sub(1))
                }
                FaultPlanError::Probability { rule, .. } | FaultPlanError::Ordinal { rule } => {
                    format!("faults.rules[{}].when", rule.saturating_sub(1))
                }
                _ => "faults".to_string(),
            };
            push(&at, e.to_string(), None);
        }
        for (i, fault) in self.process_faults.iter().enumerate() {
            if let Some(finding) = fault.finding()
                && !names.contains(finding)
            {
                push(
                    &format!("process-faults[{i}]"),
                    format!("no finding named `{finding}`"),
                    known(&mut names.iter().map(String::as_str)),
                );
            }
        }
        if self.approvals.timeout_seconds == Some(0) {
            push(
                "approvals.timeout-seconds",
                "must be at least 1".to_string(),
                None,
            );
        }
        for name in self.expect.cases.keys() {
            if !names.contains(name) {
                push(
                    &format!("expect.cases.{name}"),
                    format!("no finding named `{name}`"),
                    known(&mut names.iter().map(String::as_str)),
                );
            }
        }
        for name in self.expect.instances.keys() {
            if !instances.contains(name.as_str()) {
                push(
                    &format!("expect.instances.{name}"),
                    format!("no instance named `{name}`"),
                    known(&mut instances.iter().copied()),
                );
            }
        }
        for name in self.expect.users.keys() {
            if !users.contains_key(name.as_str()) {
                push(
                    &format!("expect.users.{name}"),
                    format!("no user named `{name}`"),
                    known(&mut users.keys().copied()),
                );
            }
        }
        for name in self.expect.roles.keys() {
            if !roles.contains(name.as_str()) {
                push(
                    &format!("expect.roles.{name}"),
                    format!("no role named `{name}`"),
                    known(&mut roles.iter().copied()),
                );
            }
        }
        problems.sort();
        problems
    }
}

/// A well-formed session key id (`ASIA` and 16 upper-case letters or
/// digits) derived from what it stands for, so the same scenario raises the
/// same finding (and opens the same case id) every time.
pub fn session_key_id(subject: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(subject.as_bytes());
    let tail: String = digest
        .iter()
        .take(16)
        .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
        .collect();
    format!("ASIA{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name: sample
environment:
  vpcs: [{name: v, cidr: 10.0.0.0/16, subnets: [{name: s, cidr: 10.0.1.0/24}]}]
  instances: [{name: web, subnet: s}]
  users: [{name: alice, access-keys: 1}]
copies: {instance: web, count: 3}
findings:
  - {name: miner, instance: web, every-copy: true}
  - {user: alice}
faults:
  seed: 7
  rules:
    - {kind: throttling, operation: "ec2:ModifyNetworkInterfaceAttribute", when: {nth: [1, 2]}}
process-faults:
  - kill-at-record: {record: 4, finding: miner}
approvals: {steps: {quarantine: refuse}}
expect:
  cases: {finding-2: stopped}
  instances: {web: {isolated: true}}
  users: {alice: {keys: inactive}}
"#;

    #[test]
    fn a_good_scenario_loads_and_expands_its_copies() {
        let scenario = Scenario::from_text(GOOD, "good.yaml").expect("valid");
        assert_eq!(scenario.copy_names(None), vec!["web-2", "web-3"]);
        assert_eq!(scenario.environment(Some(2)).instances.len(), 2);
        let names: Vec<String> = scenario
            .findings(None)
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(
            names,
            vec!["miner", "miner@web-2", "miner@web-3", "finding-2"]
        );
        assert_eq!(scenario.instances_named("web", Some(1)), vec!["web"]);
        assert_eq!(scenario.approvals.decision("quarantine"), Decision::Refuse);
        assert_eq!(scenario.approvals.decision("isolate"), Decision::Grant);
        assert!(!scenario.approvals.all_granted());
        assert!(scenario.expect.evidence_verified && scenario.expect.rollback_exact);
        assert_eq!(scenario.faults.expect("faults").rules.len(), 1);
    }

    #[test]
    fn every_problem_is_reported_with_file_line_and_column() {
        let text = r#"name: "bad name"
environment:
  instances: [{name: web, subnet: nowhere}]
findings:
  - {instance: ghost, user: alice}
  - {role: r, severity: 11}
process-faults:
  - kill-at-record: {record: 1, finding: nope}
faults:
  rules: [{kind: timeout, operation: "ec2:Nope", when: every}]
expect:
  instances: {db: {isolated: true, isolatd: false}}
"#;
        let problems: Vec<String> = Scenario::from_text(text, "bad.yaml")
            .expect_err("invalid")
            .iter()
            .map(ToString::to_string)
            .collect();
        // serde's problems come first (unknown key), the rest once the shape is right.
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].starts_with("bad.yaml:12:") && problems[0].contains("isolatd"),
            "{problems:#?}"
        );
        let fixed = text.replace(", isolatd: false", "");
        let problems: Vec<String> = Scenario::from_text(&fixed, "bad.yaml")
            .expect_err("invalid")
            .iter()
            .map(ToString::to_string)
            .collect();
        let expected = [
            "bad.yaml:1:1: name: name \"bad name\"",
            "bad.yaml:3:27: environment.instances[0].subnet: no subnet named `nowhere`",
            "bad.yaml:5:5: findings[0]: name exactly one of",
            "bad.yaml:5:6: findings[0].instance: no instance named `ghost`",
            "bad.yaml:5:23: findings[0].user: no user named `alice`",
            "bad.yaml:6:6: findings[1].role: no role named `r`",
            "bad.yaml:6:15: findings[1].severity: severity 11 is outside",
            "bad.yaml:8:5: process-faults[0]: no finding named `nope`",
            "bad.yaml:10:27: faults.rules[0].operation: fault rule 1: cordon has no operation `ec2:Nope`",
            "bad.yaml:12:15: expect.instances.db: no instance named `db`",
        ];
        for want in expected {
            assert!(
                problems.iter().any(|p| p.starts_with(want)),
                "missing {want:?} in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    }

    #[test]
    fn session_keys_are_well_formed_and_stable() {
        let key = session_key_id("role:web");
        assert_eq!(key, session_key_id("role:web"));
        assert_ne!(key, session_key_id("role:db"));
        assert!(cordon_core::ids::AccessKeyId::parse(&key).is_ok(), "{key}");
    }

    #[test]
    fn the_schema_names_the_kebab_case_keys() {
        let schema = Scenario::json_schema().to_string();
        for key in [
            "process-faults",
            "every-copy",
            "rollback-exact",
            "kill-at-record",
        ] {
            assert!(schema.contains(key), "{key} missing");
        }
    }
}
