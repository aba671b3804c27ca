//! The playbook format: which findings a playbook answers, and its ordered steps.
//!
//! Strict on purpose (`deny_unknown_fields` everywhere): a typo in a playbook
//! must fail validation, not silently skip a containment step.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::action::{Action, ActionKind};
use crate::finding::{ResourceRole, SeverityBand, SeverityLabel, Source};

/// A playbook: a rule saying which findings it answers, and what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Playbook {
    /// Unique name, used in routing output, journals and evidence.
    pub name: String,
    /// What the playbook is for, for the responder reading the plan.
    #[serde(default)]
    pub description: String,
    /// When several playbooks match a finding, the highest priority wins.
    /// Two matching playbooks with equal priority are a validation error.
    #[serde(default)]
    pub priority: i32,
    /// Which findings this playbook answers.
    #[serde(rename = "match")]
    pub matcher: MatchRule,
    /// What to do when a step fails, unless the step says otherwise.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// The steps. When none declares `needs`, they run one after another in
    /// this order; otherwise each runs once the steps it needs are done.
    pub steps: Vec<Step>,
}

impl Playbook {
    /// Whether any step declares `needs` (the steps form a graph); else the
    /// steps keep their written order.
    pub fn declares_needs(&self) -> bool {
        self.steps.iter().any(|s| s.needs.is_some())
    }

    /// The ids of the steps `step` needs done before it starts, as a plan of
    /// this playbook has them ([`crate::plan::Plan::needs`]): its declared
    /// `needs` in a graph, else the step written before it.
    pub fn needs<'p>(&'p self, step: &'p Step) -> Vec<&'p str> {
        if self.declares_needs() {
            return step.needs.iter().flatten().map(String::as_str).collect();
        }
        self.steps
            .iter()
            .position(|s| s.id == step.id)
            .and_then(|i| i.checked_sub(1))
            .map(|before| vec![self.steps[before].id.as_str()])
            .unwrap_or_default()
    }
}

/// Conditions a finding must meet; all given conditions must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MatchRule {
    /// Patterns over the finding type, e.g. `Backdoor:EC2/*` or `*:IAMUser/*`.
    /// `*` matches any run of characters, `?` one character. Empty: any type.
    #[serde(default)]
    pub finding_types: Vec<String>,
    /// Types to leave out even when a pattern above matches.
    #[serde(default)]
    pub exclude_finding_types: Vec<String>,
    /// Resource types, e.g. `Instance`, `AccessKey`. Empty: any resource.
    /// cordon's names (GuardDuty's, plus `SecurityGroup` and `Snapshot`)
    /// match every source; Config's (`AWS::S3::Bucket`) and Security Hub's
    /// (`AwsS3Bucket`) match only findings of that source.
    #[serde(default)]
    pub resource_types: Vec<String>,
    /// Which sources' findings: `guardduty`, `securityhub`, `config`. Empty:
    /// any. A GuardDuty finding delivered by Security Hub is `securityhub`.
    #[serde(default)]
    pub sources: Vec<Source>,
    /// Config rule names or patterns (`*`, `?`), e.g.
    /// `s3-bucket-level-public-access-prohibited`. Given: only Config
    /// evaluations of a matching rule match. Empty: any.
    #[serde(default)]
    pub config_rules: Vec<String>,
    /// Security Hub products, by `ProductName` (`Inspector`, `GuardDuty`) or
    /// `ProductArn` pattern. GuardDuty's own findings are product `GuardDuty`.
    /// Given: Config evaluations never match. Empty: any.
    #[serde(default)]
    pub products: Vec<String>,
    /// Patterns over Security Hub `Types` entries, e.g.
    /// `Software and Configuration Checks/Vulnerabilities/*`. Given: only
    /// Security Hub findings with a matching entry match. Empty: any.
    #[serde(default)]
    pub asff_types: Vec<String>,
    /// Security Hub severity labels (`INFORMATIONAL` … `CRITICAL`); a
    /// GuardDuty finding's label is its band's. Given: Config evaluations
    /// never match. Empty: any.
    #[serde(default)]
    pub severity_labels: Vec<SeverityLabel>,
    /// Severity condition: bands or a numeric range. Absent: any severity.
    #[serde(default)]
    pub severity: Option<SeverityRule>,
    /// Whether the resource was the target or the actor. Absent: either.
    #[serde(default)]
    pub resource_role: Option<ResourceRole>,
    /// For access-key findings: `long-term` (AKIA) or `temporary` (ASIA) keys only.
    #[serde(default)]
    pub key_kind: Option<KeyKindRule>,
    /// For access-key findings: the key's user type as GuardDuty reports it
    /// (`IAMUser`, `AssumedRole`, `Root`, `FederatedUser`, ...). Temporary
    /// credentials come from a role (`AssumedRole`) or from an IAM user's
    /// `GetSessionToken` (`IAMUser`), and are revoked differently. Empty: any;
    /// given, only access-key findings match.
    #[serde(default)]
    pub user_types: Vec<String>,
    /// Answer GuardDuty's generated sample findings too (off by default).
    #[serde(default)]
    pub include_sample: bool,
    /// Answer archived findings too (off by default).
    #[serde(default)]
    pub include_archived: bool,
}

/// Which kind of access key a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KeyKindRule {
    /// `AKIA…` IAM user keys.
    LongTerm,
    /// `ASIA…` temporary STS credentials.
    Temporary,
}

/// A severity condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SeverityRule {
    /// Any of these bands (low 1.0-3.9, medium 4.0-6.9, high 7.0-8.9, critical 9.0-10.0).
    #[serde(default)]
    pub bands: Vec<SeverityBand>,
    /// Lowest severity matched, inclusive.
    #[serde(default)]
    pub min: Option<f64>,
    /// Highest severity matched, inclusive.
    #[serde(default)]
    pub max: Option<f64>,
}

/// What happens when a step fails after its retries.
///
/// In a playbook whose steps declare `needs` (docs/formats.md): `stop` and
/// `rollback` start no new step once a step failed; the steps already running
/// finish and are journaled, then the case stops (every step not run is
/// journaled "not run") or rolls back. `continue` records the failure and
/// counts the step as finished: the steps that need it still run, as the
/// next step does in a sequential playbook.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default, strum::Display,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum OnFailure {
    /// Undo every step done so far, in reverse order, and stop.
    #[default]
    Rollback,
    /// Stop where we are, keeping what was done (resume or roll back later).
    Stop,
    /// Record the failure and go on with the next step.
    Continue,
}

/// Whether a step waits for a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Approval {
    /// Runs without asking, unless the action itself always needs approval.
    #[default]
    None,
    /// Waits for approval (CLI prompt, `--approve STEP`, `cordon approve`).
    Required,
}

/// Whether the identity that opened a case may approve its own step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SelfApproval {
    #[default]
    Allowed,
    /// A second person must approve (four eyes), e.g. for an account-wide
    /// credential change.
    Forbidden,
}

impl SelfApproval {
    fn is_allowed(&self) -> bool {
        *self == SelfApproval::Allowed
    }
}

/// Retries for transient failures (throttling, timeouts, eventual consistency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetryPolicy {
    /// Attempts in all, including the first (1 = no retry).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; doubles each time, with jitter.
    #[serde(default = "default_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Upper bound on a single delay, in milliseconds.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

fn default_attempts() -> u32 {
    3
}
fn default_backoff_ms() -> u64 {
    200
}
fn default_max_backoff_ms() -> u64 {
    5_000
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: default_attempts(),
            initial_backoff_ms: default_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
        }
    }
}

/// One step: an action with its parameters and policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "StepDocument", into = "StepDocument")]
#[schemars(with = "StepDocument")]
pub struct Step {
    pub id: String,
    pub description: String,
    pub action: Action,
    pub approval: Approval,
    /// Who may approve (IAM/STS ARN patterns, `*` matches any run of
    /// characters); empty: any verified identity. Implies approval.
    pub approvers: Vec<String>,
    /// Whether the identity that opened the case may approve. `forbidden`
    /// implies approval.
    pub self_approval: SelfApproval,
    pub retry: RetryPolicy,
    pub on_failure: Option<OnFailure>,
    /// The steps that must be done before this one; `None` when undeclared.
    pub needs: Option<Vec<String>>,
}

/// A step as written in YAML: the action's name, then its parameters under `with`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StepDocument {
    /// Unique within the playbook; names the step in plans, journals and `--approve`.
    pub id: String,
    /// Why this step is here, shown in the plan.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The action to run (one of the closed set; see `with` for its parameters).
    pub action: ActionKind,
    /// The action's parameters; defaults apply when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<serde_json::Value>,
    /// `required` to wait for a human before this step.
    #[serde(default)]
    pub approval: Approval,
    /// Who may approve this step: IAM or STS ARN patterns, `*` matching any
    /// run of characters (e.g. `arn:aws:sts::111122223333:assumed-role/IncidentLead/*`).
    /// Checked when the decision is journaled and again before the step runs.
    /// Implies `approval: required`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// `forbidden`: the identity that opened the case may not approve this
    /// step (four eyes). Implies `approval: required`.
    #[serde(default, skip_serializing_if = "SelfApproval::is_allowed")]
    pub self_approval: SelfApproval,
    /// Retries for transient failures.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Overrides the playbook's `on-failure` for this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// Ids of the steps that must be done before this one starts, e.g.
    /// `[isolate]`. When no step of the playbook declares `needs`, each step
    /// needs the one before it (the written order); once any step declares
    /// it, a step without `needs` needs nothing and the steps run
    /// concurrently as far as their needs allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs: Option<Vec<String>>,
}

impl TryFrom<StepDocument> for Step {
    type Error = String;

    fn try_from(doc: StepDocument) -> Result<Self, Self::Error> {
        let action = Action::from_parts(doc.action, doc.with)
            .map_err(|e| format!("step `{}`: parameters of `{}`: {e}", doc.id, doc.action))?;
        Ok(Step {
            id: doc.id,
            description: doc.description,
            action,
            approval: doc.approval,
            approvers: doc.approvers,
            self_approval: doc.self_approval,
            retry: doc.retry,
            on_failure: doc.on_failure,
            needs: doc.needs,
        })
    }
}

impl From<Step> for StepDocument {
    fn from(step: Step) -> Self {
        let with = serde_json::to_value(&step.action)
            .ok()
            .and_then(|mut v| v.get_mut("with").map(serde_json::Value::take));
        StepDocument {
            id: step.id,
            description: step.description,
            action: step.action.kind(),
            with,
            approval: step.approval,
            approvers: step.approvers,
            self_approval: step.self_approval,
            retry: step.retry,
            on_failure: step.on_failure,
            needs: step.needs,
        }
    }
}

/// The JSON Schema of the playbook format (`cordon schema`).
pub fn json_schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Playbook)).unwrap_or_default();
    // Describe each action's parameters too, so editors can complete `with:`.
    let actions = serde_json::to_value(schemars::schema_for!(Action)).unwrap_or_default();
    if let Some(object) = schema.as_object_mut() {
        object.insert("x-cordon-actions".to_string(), actions);
    }
    schema
}
