//! Planning: finding + playbook ⇒ an ordered, printable plan. Pure and
//! deterministic: the same inputs give a byte-identical plan; nothing calls AWS.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::action::{Action, ActionKind, Reversibility, TargetKind};
use crate::finding::{Finding, KeyKind, Resource};
use crate::playbook::{Approval, OnFailure, Playbook, RetryPolicy};
use crate::route::RouteReason;

/// A case id, derived from the finding so a re-delivered finding maps to the same case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CaseId(String);

impl CaseId {
    /// `case-` + the first 20 hex digits of SHA-256(partition:account:region:finding id).
    pub fn for_finding(finding: &Finding) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(
            format!(
                "{}:{}:{}:{}",
                finding.partition, finding.account_id, finding.region, finding.id
            )
            .as_bytes(),
        );
        let digest = hex::encode(hasher.finalize());
        Self(format!("case-{}", &digest[..20]))
    }

    /// Parses a case id typed by a user; only `case-` + 20 lowercase hex digits.
    pub fn parse(text: &str) -> Result<Self, String> {
        let ok = text.len() == 25
            && text.starts_with("case-")
            && text[5..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(Self(text.to_string()))
        } else {
            Err(format!(
                "{text:?} is not a case id (expected `case-` and 20 hex digits; `cordon cases` lists them)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The whole plan for one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Plan {
    pub case_id: CaseId,
    pub finding: FindingSummary,
    pub playbook: String,
    pub route: RouteReason,
    pub steps: Vec<PlannedStep>,
    /// Union of every step's IAM permissions, sorted.
    pub permissions: Vec<String>,
}

impl Plan {
    pub fn step(&self, id: &str) -> Option<&PlannedStep> {
        self.steps.iter().find(|s| s.id == id)
    }
}

/// What the plan needs to know of the finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FindingSummary {
    pub id: String,
    pub finding_type: String,
    pub severity: f64,
    pub severity_band: String,
    pub account_id: String,
    pub region: String,
    pub partition: String,
    pub resource_type: String,
    pub updated_at: Option<String>,
    pub event_first_seen: Option<String>,
    pub event_last_seen: Option<String>,
}

/// One step, with everything resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PlannedStep {
    /// 1-based position in the plan.
    pub index: usize,
    pub id: String,
    pub description: String,
    pub action: Action,
    pub target: Target,
    pub approval: ApprovalNeed,
    pub reversibility: Reversibility,
    /// Who else the step affects, when that reaches beyond the target.
    pub blast_radius: Option<String>,
    pub retry: RetryPolicy,
    pub on_failure: OnFailure,
    pub best_effort: bool,
    pub permissions: Vec<String>,
}

impl PlannedStep {
    pub fn kind(&self) -> ActionKind {
        self.action.kind()
    }
}

/// Whether a step waits for a human, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ApprovalNeed {
    pub required: bool,
    pub reason: Option<String>,
}

/// The resolved target of a step.
///
/// Fields of the struct variants are kebab-case like the rest of the plan
/// (`rename_all` alone renames only the variants).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
pub enum Target {
    Instance(InstanceTarget),
    AccessKey(AccessKeyTarget),
    User {
        user_name: String,
    },
    /// A role; `role_name` is absent when it can only be resolved at run time
    /// (from the instance's profile).
    Role {
        role_name: Option<String>,
        instance_id: Option<String>,
        instance_profile_arn: Option<String>,
    },
    Case,
    /// The finding does not name what the step needs; the step is skipped at run time.
    Unresolved {
        reason: String,
    },
}

impl Target {
    /// The one id a human would use for this target.
    pub fn label(&self) -> String {
        match self {
            Target::Instance(i) => i.instance_id.clone(),
            Target::AccessKey(k) => format!(
                "{} ({})",
                k.access_key_id,
                k.user_name.as_deref().unwrap_or("unknown user")
            ),
            Target::User { user_name } => format!("user {user_name}"),
            Target::Role {
                role_name: Some(role),
                ..
            } => format!("role {role}"),
            Target::Role {
                instance_profile_arn: Some(arn),
                ..
            } => format!("role of {arn}"),
            Target::Role { instance_id, .. } => format!(
                "role of {}'s instance profile",
                instance_id.as_deref().unwrap_or("the instance")
            ),
            Target::Case => "case".to_string(),
            Target::Unresolved { reason } => format!("(unresolved: {reason})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InstanceTarget {
    pub instance_id: String,
    pub network_interfaces: Vec<EniTarget>,
    pub instance_profile_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EniTarget {
    pub network_interface_id: String,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    /// Groups as the finding saw them; the run re-reads the live ones as pre-state.
    pub security_group_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AccessKeyTarget {
    pub access_key_id: String,
    pub user_name: Option<String>,
    pub user_type: Option<String>,
    pub key_kind: KeyKind,
    pub principal_id: Option<String>,
}

/// Builds the plan. Pure: no I/O, no clock, no randomness.
pub fn plan(finding: &Finding, playbook: &Playbook, route: RouteReason) -> Plan {
    let case_id = CaseId::for_finding(finding);
    let values = Placeholders::new(finding, &case_id, &playbook.name);
    let steps: Vec<PlannedStep> = playbook
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let kind = step.action.kind();
            let reversibility = step.action.reversibility();
            let action = values.fill_action(&step.action);
            let target = resolve_target(kind.target_kind(), finding);
            let inherent = kind.inherent_approval();
            let approval = if reversibility == Reversibility::Irreversible {
                ApprovalNeed {
                    required: true,
                    reason: Some(
                        inherent
                            .unwrap_or("irreversible: it destroys state that cannot be restored")
                            .to_string(),
                    ),
                }
            } else if let Some(reason) = inherent {
                ApprovalNeed {
                    required: true,
                    reason: Some(reason.to_string()),
                }
            } else if step.approval == Approval::Required {
                ApprovalNeed {
                    required: true,
                    reason: Some("the playbook asks for approval".to_string()),
                }
            } else {
                ApprovalNeed {
                    required: false,
                    reason: None,
                }
            };
            let blast_radius = blast_radius(kind, &target);
            PlannedStep {
                index: i + 1,
                id: step.id.clone(),
                description: step.description.clone(),
                action,
                target,
                approval,
                reversibility,
                blast_radius,
                retry: step.retry,
                on_failure: step.on_failure.unwrap_or(playbook.on_failure),
                best_effort: kind.best_effort(),
                permissions: kind.permissions().iter().map(|p| p.to_string()).collect(),
            }
        })
        .collect();
    let permissions: BTreeSet<String> = steps
        .iter()
        .flat_map(|s| s.permissions.iter().cloned())
        .collect();
    Plan {
        case_id,
        finding: FindingSummary {
            id: finding.id.clone(),
            finding_type: finding.finding_type.raw.clone(),
            severity: finding.severity.value(),
            severity_band: finding.severity.band().to_string(),
            account_id: finding.account_id.clone(),
            region: finding.region.clone(),
            partition: finding.partition.clone(),
            resource_type: finding.resource.resource_type().to_string(),
            updated_at: finding.updated_at.clone(),
            event_first_seen: finding.service.event_first_seen.clone(),
            event_last_seen: finding.service.event_last_seen.clone(),
        },
        playbook: playbook.name.clone(),
        route,
        steps,
        permissions: permissions.into_iter().collect(),
    }
}

fn blast_radius(kind: ActionKind, target: &Target) -> Option<String> {
    match kind {
        ActionKind::RevokeRoleSessions => Some(format!(
            "every session of {} issued before the step runs, on every instance and principal using the role",
            target.label()
        )),
        ActionKind::QuarantineUser => Some(format!("every request by {} is denied until rollback", target.label())),
        ActionKind::IsolateInstance => Some(
            "all traffic to and from the instance stops; flows through NAT gateways, load balancers and transit gateways, and ICMP, stay tracked until they idle out".to_string(),
        ),
        ActionKind::DetachInstanceProfile => Some(
            "the instance gets no new role credentials; credentials already issued stay valid until expiry".to_string(),
        ),
        // Exhaustive on purpose: a new action must say whether it reaches beyond its target.
        ActionKind::TagResource
        | ActionKind::EnableTerminationProtection
        | ActionKind::SnapshotVolumes
        | ActionKind::DetachFromAutoscaling
        | ActionKind::DeregisterFromLoadBalancers
        | ActionKind::DeactivateAccessKey
        | ActionKind::RotateAccessKey
        | ActionKind::DeleteLoginProfile
        | ActionKind::CaptureInstanceMetadata
        | ActionKind::CaptureConsoleOutput
        | ActionKind::EnrichWithDetective
        | ActionKind::StoreEvidence
        | ActionKind::Notify => None,
    }
}

fn resolve_target(kind: TargetKind, finding: &Finding) -> Target {
    match (kind, &finding.resource) {
        (TargetKind::Case, _) => Target::Case,
        (TargetKind::Instance, Resource::Instance(i)) => Target::Instance(InstanceTarget {
            instance_id: i.instance_id.clone(),
            network_interfaces: i
                .network_interfaces
                .iter()
                .map(|n| EniTarget {
                    network_interface_id: n.network_interface_id.clone(),
                    vpc_id: n.vpc_id.clone(),
                    subnet_id: n.subnet_id.clone(),
                    security_group_ids: n
                        .security_groups
                        .iter()
                        .map(|g| g.group_id.clone())
                        .collect(),
                })
                .collect(),
            instance_profile_arn: i.iam_instance_profile.as_ref().and_then(|p| p.arn.clone()),
        }),
        (TargetKind::AccessKey, Resource::AccessKey(k)) => Target::AccessKey(AccessKeyTarget {
            access_key_id: k.access_key_id.clone(),
            user_name: k.user_name.clone(),
            user_type: k.user_type.clone(),
            key_kind: k.key_kind(),
            principal_id: k.principal_id.clone(),
        }),
        (TargetKind::User, Resource::AccessKey(k)) => {
            match (&k.user_name, k.user_type.as_deref()) {
                (Some(user), Some("IAMUser") | None) => Target::User {
                    user_name: user.clone(),
                },
                (_, Some(other)) => Target::Unresolved {
                    reason: format!("the key belongs to a {other}, not an IAM user"),
                },
                (None, _) => Target::Unresolved {
                    reason: "the finding names no user".to_string(),
                },
            }
        }
        (TargetKind::Role, Resource::AccessKey(k)) => match k.user_type.as_deref() {
            Some("AssumedRole") => Target::Role {
                // For assumed-role keys GuardDuty's userName is the role name.
                role_name: k.user_name.clone(),
                instance_id: None,
                instance_profile_arn: None,
            },
            other => Target::Unresolved {
                reason: format!(
                    "the key's user type is {}, not an assumed role",
                    other.unwrap_or("unknown")
                ),
            },
        },
        (TargetKind::Role, Resource::Instance(i)) => Target::Role {
            role_name: None,
            instance_id: Some(i.instance_id.clone()),
            instance_profile_arn: i.iam_instance_profile.as_ref().and_then(|p| p.arn.clone()),
        },
        (kind, resource) => Target::Unresolved {
            reason: format!(
                "a {} finding has no {} to act on",
                resource.resource_type(),
                match kind {
                    TargetKind::Instance => "instance",
                    TargetKind::AccessKey => "access key",
                    TargetKind::User => "IAM user",
                    TargetKind::Role => "role",
                    TargetKind::Case => "case",
                }
            ),
        },
    }
}

/// The `{placeholders}` action parameters may use, filled in at plan time.
pub const PLACEHOLDERS: &[&str] = &[
    "{case_id}",
    "{finding_id}",
    "{finding_type}",
    "{severity}",
    "{playbook}",
];

/// Values for `{placeholders}` in action parameters.
struct Placeholders {
    pairs: Vec<(&'static str, String)>,
}

impl Placeholders {
    fn new(finding: &Finding, case_id: &CaseId, playbook: &str) -> Self {
        let pairs = vec![
            ("{case_id}", case_id.to_string()),
            ("{finding_id}", finding.id.clone()),
            ("{finding_type}", finding.finding_type.raw.clone()),
            ("{severity}", finding.severity.to_string()),
            ("{playbook}", playbook.to_string()),
        ];
        debug_assert!(
            pairs
                .iter()
                .map(|(k, _)| *k)
                .eq(PLACEHOLDERS.iter().copied())
        );
        Self { pairs }
    }

    fn fill_action(&self, action: &Action) -> Action {
        let Ok(mut value) = serde_json::to_value(action) else {
            return action.clone();
        };
        self.fill_value(&mut value);
        serde_json::from_value(value).unwrap_or_else(|_| action.clone())
    }

    /// One left-to-right pass: text that came from the finding (a type or id
    /// holding `{playbook}`, say) is never itself substituted.
    fn fill(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        'scan: while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            rest = &rest[open..];
            for (key, replacement) in &self.pairs {
                if let Some(after) = rest.strip_prefix(key) {
                    out.push_str(replacement);
                    rest = after;
                    continue 'scan;
                }
            }
            out.push('{');
            rest = &rest[1..];
        }
        out.push_str(rest);
        out
    }

    fn fill_value(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) if s.contains('{') => *s = self.fill(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.fill_value(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.fill_value(v)),
            _ => {}
        }
    }
}
