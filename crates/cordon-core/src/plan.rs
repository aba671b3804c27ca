//! Planning: finding + playbook ⇒ an ordered, printable plan. Pure and
//! deterministic: the same inputs give a byte-identical plan; nothing calls AWS.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::action::{Action, ActionKind, Reversibility, TargetKind};
use crate::finding::{AccessKeyDetails, Finding, InstanceDetails, KeyKind, Resource, Source};
use crate::ids::{self, EniId, IdError, IdKind, SecurityGroupId, SubnetId, VpcId};
use crate::playbook::{Approval, OnFailure, Playbook, RetryPolicy, SelfApproval};
use crate::route::RouteReason;
use crate::text::preview;

/// A case id, derived from the finding so a re-delivered finding maps to the same case.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Plan {
    pub case_id: CaseId,
    pub finding: FindingSummary,
    pub playbook: String,
    pub route: RouteReason,
    pub steps: Vec<PlannedStep>,
    /// Union of every step's IAM permissions, sorted.
    pub permissions: Vec<String>,
    /// Which set of playbooks the plan was made from (a directory or the set
    /// embedded in the binary) and the set's hash, when the front door says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook_set: Option<PlaybookSet>,
}

/// A set of playbooks as loaded: where from, and a hash of exactly what was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct PlaybookSet {
    /// `embedded` (shipped in the binary) or the directory or file read.
    pub origin: String,
    /// SHA-256 (hex) over every file's name and bytes, in name order
    /// ([`crate::validate::set_digest`]).
    pub sha256: String,
}

impl Plan {
    pub fn step(&self, id: &str) -> Option<&PlannedStep> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// Whether the steps declare their needs (a graph) rather than keeping
    /// their written order. Journaled in format 4 (an older cordon would run
    /// such a plan in written order, which may not respect its needs).
    pub fn is_graph(&self) -> bool {
        self.steps.iter().any(|s| s.needs.is_some())
    }

    /// The ids of the steps `step` needs done before it starts: its declared
    /// `needs`, or, when it declares none (a sequential plan), the step before it.
    pub fn needs<'p>(&'p self, step: &'p PlannedStep) -> Vec<&'p str> {
        match &step.needs {
            Some(needs) => needs.iter().map(String::as_str).collect(),
            None => self
                .steps
                .iter()
                .position(|s| s.id == step.id)
                .and_then(|i| i.checked_sub(1))
                .map(|before| vec![self.steps[before].id.as_str()])
                .unwrap_or_default(),
        }
    }

    /// The steps that need `id` directly.
    pub fn dependents(&self, id: &str) -> Vec<&PlannedStep> {
        self.steps
            .iter()
            .filter(|s| self.needs(s).contains(&id))
            .collect()
    }

    /// The steps by level: level 0 needs nothing, level n needs steps of
    /// levels below n, at least one of level n - 1. The steps of one level
    /// run together (as far as approvals and the concurrency bound allow).
    /// Steps whose needs can never be met (a cycle or an unknown id, which
    /// validation refuses) are left out.
    pub fn levels(&self) -> Vec<Vec<&PlannedStep>> {
        graph_levels(&self.steps, |s| s.id.as_str(), |s| self.needs(s))
    }

    /// The resources the plan acts on, as `kind:id` (`instance:i-…`,
    /// `access-key:AKIA…`, `user:NAME`, `role:NAME`), sorted and distinct: the
    /// keys of the loop guard (and of resource locks).
    pub fn resources(&self) -> Vec<String> {
        let out: BTreeSet<String> = self.steps.iter().flat_map(PlannedStep::resources).collect();
        out.into_iter().collect()
    }

    /// Every step touching a resource in `protected` (keys as
    /// [`Plan::resources`] gives them, each with why it is protected) waits
    /// for an approval naming it, whatever the playbook says; the plan says why.
    pub fn protect(&mut self, protected: &std::collections::BTreeMap<String, String>) {
        for step in &mut self.steps {
            let why: Vec<&str> = step
                .resources()
                .iter()
                .filter_map(|r| protected.get(r).map(String::as_str))
                .collect();
            if why.is_empty() {
                continue;
            }
            let mut reason = why.join("; ");
            if let Some(earlier) = step
                .approval
                .reason
                .as_deref()
                .filter(|_| step.approval.required)
            {
                reason = format!("{reason}; {earlier}");
            }
            step.approval = ApprovalNeed {
                required: true,
                reason: Some(reason),
                explicit: true,
                ..step.approval.clone()
            };
        }
    }
}

/// The items of a step graph by level (see [`Plan::levels`]): level 0 needs
/// nothing, level n needs items of levels below n, at least one of level
/// n - 1; within a level, the items keep their written order. Shared by the
/// plan and by the state machines generated from a playbook
/// ([`crate::asl`]), so both front doors run the same steps together.
pub fn graph_levels<'a, T>(
    items: &'a [T],
    id: impl Fn(&'a T) -> &'a str,
    needs: impl Fn(&'a T) -> Vec<&'a str>,
) -> Vec<Vec<&'a T>> {
    let mut level: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut changed = true;
    while changed {
        changed = false;
        for item in items {
            if level.contains_key(id(item)) {
                continue;
            }
            let known: Option<Vec<usize>> =
                needs(item).iter().map(|n| level.get(n).copied()).collect();
            if let Some(known) = known {
                let at = known.iter().map(|l| l + 1).max().unwrap_or(0);
                level.insert(id(item), at);
                changed = true;
            }
        }
    }
    let mut out: Vec<Vec<&T>> = Vec::new();
    for item in items {
        if let Some(at) = level.get(id(item)) {
            if out.len() <= *at {
                out.resize_with(at + 1, Vec::new);
            }
            out[*at].push(item);
        }
    }
    out
}

/// Whether a playbook step waits for a human, and why, as far as the
/// playbook alone says (a plan may add [`ApprovalNeed::explicit`] for a
/// protected resource). Irreversible and inherently gated actions always
/// ask; `approvers:` and `self-approval: forbidden` imply approval.
pub fn approval_need(step: &crate::playbook::Step) -> ApprovalNeed {
    let kind = step.action.kind();
    let inherent = kind.inherent_approval();
    let restricted = !step.approvers.is_empty() || step.self_approval == SelfApproval::Forbidden;
    let (required, reason) = if step.action.reversibility() == Reversibility::Irreversible {
        (
            true,
            Some(inherent.unwrap_or("irreversible: it destroys state that cannot be restored")),
        )
    } else if let Some(reason) = inherent {
        (true, Some(reason))
    } else if step.approval == Approval::Required {
        (true, Some("the playbook asks for approval"))
    } else if restricted {
        (true, Some("the playbook names who may approve it"))
    } else {
        (false, None)
    };
    ApprovalNeed {
        required,
        reason: reason.map(str::to_string),
        approvers: step.approvers.clone(),
        forbid_self_approval: step.self_approval == SelfApproval::Forbidden,
        explicit: false,
    }
}

/// What the plan needs to know of the finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// Which service produced the finding; absent: GuardDuty (every plan
    /// made before cordon read Security Hub and Config).
    #[serde(default, skip_serializing_if = "Source::is_guardduty")]
    pub source: Source,
    /// The Config rule a Config evaluation failed: the loop guard keys
    /// repeated remediation on (resource, rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_rule: Option<String>,
}

/// One step, with everything resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// The steps that must be done first, when the playbook declares `needs`.
    /// Absent (plans of sequential playbooks, and every plan journaled before
    /// steps had needs): the step needs the one before it. See [`Plan::needs`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs: Option<Vec<String>>,
}

impl PlannedStep {
    pub fn kind(&self) -> ActionKind {
        self.action.kind()
    }

    /// The resources this step acts on, as [`Plan::resources`] names them.
    pub fn resources(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.target {
            Target::Instance(i) => out.push(format!("instance:{}", i.instance_id)),
            Target::AccessKey(k) => {
                out.push(format!("access-key:{}", k.access_key_id));
                if let Some(user) = &k.user_name
                    && k.user_type.as_deref() == Some("IAMUser")
                {
                    out.push(format!("user:{user}"));
                }
            }
            Target::User { user_name } => out.push(format!("user:{user_name}")),
            Target::Role {
                role_name: Some(role),
                ..
            } => out.push(format!("role:{role}")),
            Target::Role {
                instance_id: Some(instance),
                ..
            } => out.push(format!("instance:{instance}")),
            Target::Bucket { bucket_name } => out.push(format!("bucket:{bucket_name}")),
            Target::SecurityGroup { group_id } => out.push(format!("security-group:{group_id}")),
            Target::Snapshot { snapshot_id } => out.push(format!("snapshot:{snapshot_id}")),
            Target::Account { account_id, region } => {
                out.push(format!("account:{account_id}:{region}"))
            }
            Target::Role { .. } | Target::Case | Target::Unresolved { .. } => {}
        }
        out
    }
}

/// Whether a step waits for a human, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ApprovalNeed {
    pub required: bool,
    pub reason: Option<String>,
    /// Who may approve (ARN patterns); empty: any verified identity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// The identity that opened the case may not approve.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forbid_self_approval: bool,
    /// Only an approval naming this step counts (`--approve STEP`, the
    /// prompt, `cordon approve`), never a blanket `--yes`: the step touches a
    /// protected resource (see [`Plan::protect`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub explicit: bool,
}

impl ApprovalNeed {
    /// Whether only some identities may approve (journal format 3).
    pub fn is_restricted(&self) -> bool {
        !self.approvers.is_empty() || self.forbid_self_approval
    }

    /// Why `approver` (an ARN, optionally followed by ` (how)`) may not
    /// approve, or `None` when it may. `opened_by` is the identity that opened
    /// the case or its current epoch.
    pub fn refuses(&self, approver: &str, opened_by: Option<&str>) -> Option<String> {
        let arn = approver_arn(approver);
        if !self.approvers.is_empty()
            && !self
                .approvers
                .iter()
                .any(|pattern| glob_match::glob_match(pattern, arn))
        {
            return Some(format!(
                "only {} may approve it",
                self.approvers.join(" or ")
            ));
        }
        if self.forbid_self_approval {
            match opened_by.map(approver_arn) {
                Some(opener) if opener == arn => {
                    return Some(
                        "the playbook forbids self-approval and this identity opened the case"
                            .to_string(),
                    );
                }
                None => {
                    return Some(
                        "the playbook forbids self-approval and the journal does not say who opened the case"
                            .to_string(),
                    );
                }
                Some(_) => {}
            }
        }
        None
    }
}

/// The ARN part of an approver as journaled (`ARN (how)`).
pub fn approver_arn(approver: &str) -> &str {
    approver.split(" (").next().unwrap_or(approver).trim()
}

/// The resolved target of a step.
///
/// Fields of the struct variants are kebab-case like the rest of the plan
/// (`rename_all` alone renames only the variants).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
pub enum Target {
    Instance(InstanceTarget),
    AccessKey(AccessKeyTarget),
    User {
        /// Checked against IAM's user name format when planned and when read back.
        #[serde(deserialize_with = "ids::checked::user_name")]
        user_name: String,
    },
    /// A role; `role_name` is absent when it can only be resolved at run time
    /// (from the instance's profile).
    Role {
        #[serde(default, deserialize_with = "ids::checked::optional_role_name")]
        role_name: Option<String>,
        #[serde(default, deserialize_with = "ids::checked::optional_instance")]
        instance_id: Option<String>,
        #[serde(
            default,
            deserialize_with = "ids::checked::optional_instance_profile_arn"
        )]
        instance_profile_arn: Option<String>,
    },
    /// An S3 bucket, checked against S3's naming rules when planned and when read back.
    Bucket {
        #[serde(deserialize_with = "ids::checked::bucket_name")]
        bucket_name: String,
    },
    /// A security group, checked like every EC2 id.
    SecurityGroup {
        #[serde(deserialize_with = "ids::checked::security_group")]
        group_id: String,
    },
    /// An EBS snapshot, checked like every EC2 id.
    Snapshot {
        #[serde(deserialize_with = "ids::checked::snapshot")]
        snapshot_id: String,
    },
    /// An account in one region (an account-level Config evaluation's),
    /// both checked when planned and when read back.
    Account {
        #[serde(deserialize_with = "ids::checked::account")]
        account_id: String,
        #[serde(deserialize_with = "ids::checked::region")]
        region: String,
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
            Target::Bucket { bucket_name } => bucket_name.clone(),
            Target::SecurityGroup { group_id } => group_id.clone(),
            Target::Snapshot { snapshot_id } => snapshot_id.clone(),
            Target::Account { account_id, region } => format!("account {account_id} in {region}"),
            Target::Case => "case".to_string(),
            Target::Unresolved { reason } => format!("(unresolved: {reason})"),
        }
    }
}

/// An instance and what the finding says of it. Every id here has its AWS
/// format (checked when planned and when a journaled plan is read back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct InstanceTarget {
    #[serde(deserialize_with = "ids::checked::instance")]
    pub instance_id: String,
    pub network_interfaces: Vec<EniTarget>,
    /// Absent when the finding names none, or names a malformed one (then only
    /// a step that needs it, `revoke-role-sessions`, refuses the finding).
    #[serde(
        default,
        deserialize_with = "ids::checked::optional_instance_profile_arn"
    )]
    pub instance_profile_arn: Option<String>,
}

/// One network interface as the finding saw it.
///
/// No step takes these from the finding (handlers read the live interfaces),
/// so a malformed VPC, subnet or group id (GuardDuty's sample findings carry
/// `GeneratedFindingVPCId` and the like) is left out rather than refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct EniTarget {
    pub network_interface_id: EniId,
    pub vpc_id: Option<VpcId>,
    pub subnet_id: Option<SubnetId>,
    /// Groups as the finding saw them; the run re-reads the live ones as pre-state.
    pub security_group_ids: Vec<SecurityGroupId>,
}

/// The access key a finding names. The key id and user name have their AWS
/// formats; the user type and principal id are GuardDuty's words, shown and
/// compared but never sent to AWS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct AccessKeyTarget {
    #[serde(deserialize_with = "ids::checked::access_key")]
    pub access_key_id: String,
    #[serde(default, deserialize_with = "ids::checked::optional_user_name")]
    pub user_name: Option<String>,
    pub user_type: Option<String>,
    pub key_kind: KeyKind,
    pub principal_id: Option<String>,
}

/// Why a finding cannot be planned: an id a step would use is not in its AWS
/// format. One line, naming the JSON field and the format expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "finding {finding}: `{field}`: {source}; nothing was planned and no AWS call was made: check the finding at its source (it may be corrupted or forged)"
)]
pub struct PlanError {
    /// The finding's id, escaped and quoted.
    pub finding: String,
    /// Where the value sits in the finding, e.g. `resource.instanceDetails.instanceId`.
    pub field: String,
    pub source: IdError,
}

/// Builds the plan, refusing a finding in which an id a step would use (in a
/// call, a filter, a path, an S3 key, a tag or a policy) is not in its AWS
/// format. Pure: no I/O, no clock, no randomness.
pub fn try_plan(
    finding: &Finding,
    playbook: &Playbook,
    route: RouteReason,
) -> Result<Plan, PlanError> {
    let checks = Checks { finding };
    checks.finding_ids()?;
    build(finding, playbook, route, |kind| checks.target(kind))
}

/// [`try_plan`] that never fails: when the finding is refused, every step's
/// target is unresolved with the reason, so the executor skips them all and
/// nothing reaches AWS. Front doors use [`try_plan`] to refuse such a finding
/// outright; this form serves callers that hold only well-formed findings.
pub fn plan(finding: &Finding, playbook: &Playbook, route: RouteReason) -> Plan {
    match try_plan(finding, playbook, route.clone()) {
        Ok(plan) => plan,
        Err(error) => {
            let reason = error.to_string();
            let unresolved = |_| {
                Ok::<_, Infallible>(Target::Unresolved {
                    reason: reason.clone(),
                })
            };
            match build(finding, playbook, route, unresolved) {
                Ok(plan) => plan,
                Err(never) => match never {},
            }
        }
    }
}

fn build<E>(
    finding: &Finding,
    playbook: &Playbook,
    route: RouteReason,
    resolve: impl Fn(TargetKind) -> Result<Target, E>,
) -> Result<Plan, E> {
    let case_id = CaseId::for_finding(finding);
    let values = Placeholders::new(finding, &case_id, &playbook.name);
    let mut steps: Vec<PlannedStep> = Vec::with_capacity(playbook.steps.len());
    for (i, step) in playbook.steps.iter().enumerate() {
        let kind = step.action.kind();
        let reversibility = step.action.reversibility();
        let action = values.fill_action(&step.action);
        let target = resolve(kind.target_kind())?;
        let approval = approval_need(step);
        let blast_radius = blast_radius(kind, &target);
        steps.push(PlannedStep {
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
            needs: playbook
                .declares_needs()
                .then(|| step.needs.clone().unwrap_or_default()),
        });
    }
    let permissions: BTreeSet<String> = steps
        .iter()
        .flat_map(|s| s.permissions.iter().cloned())
        .collect();
    Ok(Plan {
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
            source: finding.source,
            config_rule: finding.config.as_ref().map(|c| c.rule_name.clone()),
        },
        playbook: playbook.name.clone(),
        route,
        steps,
        permissions: permissions.into_iter().collect(),
        playbook_set: None,
    })
}

fn blast_radius(kind: ActionKind, target: &Target) -> Option<String> {
    match kind {
        ActionKind::RevokeRoleSessions => Some(format!(
            "every session of {} issued before the step runs, on every instance and principal using the role",
            target.label()
        )),
        ActionKind::QuarantineUser => Some(format!("every request by {} is denied until rollback", target.label())),
        ActionKind::RevokeUserSessions => Some(format!(
            "every temporary-credential session of {} issued before the step runs (GetSessionToken credentials, console sessions); its long-term access keys are not affected",
            target.label()
        )),
        ActionKind::IsolateInstance => Some(
            "all traffic to and from the instance stops; flows through NAT gateways, load balancers and transit gateways, and ICMP, stay tracked until they idle out".to_string(),
        ),
        ActionKind::DetachInstanceProfile => Some(
            "the instance gets no new role credentials; credentials already issued stay valid until expiry".to_string(),
        ),
        ActionKind::BlockBucketPublicAccess => Some(format!(
            "public ACLs and public bucket policies on {} stop granting access: anything served from it publicly (a static website, public downloads) stops",
            target.label()
        )),
        ActionKind::RevokeOpenIngress => Some(format!(
            "every instance, interface and load balancer in {} loses the world-open access on the step's ports, legitimate users included",
            target.label()
        )),
        ActionKind::MakeSnapshotPrivate => Some(format!(
            "accounts using {} through its public permission can no longer create volumes from it; accounts it is shared with by id keep theirs",
            target.label()
        )),
        ActionKind::MakeAccountSnapshotsPrivate => Some(format!(
            "every public snapshot of {} (up to the step's max-snapshots): accounts using them through the public permission can no longer create volumes from them; accounts they are shared with by id keep theirs",
            target.label()
        )),
        ActionKind::CaptureMemory => Some(
            "runs an acquisition tool as root on the instance through SSM: it reads all of memory and uploads it; the instance is busy while it runs".to_string(),
        ),
        ActionKind::EnforceImdsv2 => Some(
            "software on the instance that reads instance metadata without a session token (IMDSv1) loses metadata and role credentials".to_string(),
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

/// The format checks planning makes, each naming the finding's field it read.
struct Checks<'f> {
    finding: &'f Finding,
}

impl Checks<'_> {
    /// `text` from `field`, when it has `kind`'s format.
    fn id(&self, field: &str, kind: IdKind, text: &str) -> Result<String, PlanError> {
        kind.check(text)
            .map(|()| text.to_string())
            .map_err(|source| self.error(field, source))
    }

    fn error(&self, field: &str, source: IdError) -> PlanError {
        PlanError {
            finding: preview(&self.finding.id),
            field: self.finding.source_field(field),
            source,
        }
    }

    /// The finding's own ids: they key the case id, ARNs, tags and evidence.
    fn finding_ids(&self) -> Result<(), PlanError> {
        let f = self.finding;
        self.id("id", IdKind::FindingId, &f.id)?;
        self.id("accountId", IdKind::Account, &f.account_id)?;
        self.id("region", IdKind::Region, &f.region)?;
        self.id("partition", IdKind::Partition, &f.partition)?;
        Ok(())
    }

    fn target(&self, kind: TargetKind) -> Result<Target, PlanError> {
        Ok(match (kind, &self.finding.resource) {
            (TargetKind::Case, _) => Target::Case,
            (TargetKind::Instance, Resource::Instance(i)) => Target::Instance(self.instance(i)?),
            (TargetKind::AccessKey, Resource::AccessKey(k)) => {
                Target::AccessKey(self.access_key(k)?)
            }
            (TargetKind::User, Resource::AccessKey(k)) => {
                match (&k.user_name, k.user_type.as_deref()) {
                    (Some(user), Some("IAMUser") | None) => Target::User {
                        user_name: self.id(USER_NAME, IdKind::UserName, user)?,
                    },
                    (_, Some(other)) => Target::Unresolved {
                        reason: format!("the key belongs to a {}, not an IAM user", preview(other)),
                    },
                    (None, _) => Target::Unresolved {
                        reason: "the finding names no user".to_string(),
                    },
                }
            }
            (TargetKind::Role, Resource::AccessKey(k)) => match k.user_type.as_deref() {
                Some("AssumedRole") => Target::Role {
                    // For assumed-role keys GuardDuty's userName is the role name.
                    role_name: k
                        .user_name
                        .as_deref()
                        .map(|role| self.id(USER_NAME, IdKind::RoleName, role))
                        .transpose()?,
                    instance_id: None,
                    instance_profile_arn: None,
                },
                other => Target::Unresolved {
                    reason: format!(
                        "the key's user type is {}, not an assumed role",
                        other.map(preview).unwrap_or_else(|| "unknown".to_string())
                    ),
                },
            },
            (TargetKind::Role, Resource::Instance(i)) => Target::Role {
                role_name: None,
                instance_id: Some(self.id(INSTANCE_ID, IdKind::Instance, &i.instance_id)?),
                // The fallback when the instance has no live association: it names
                // the role whose sessions are revoked, so it must be well-formed.
                instance_profile_arn: profile_arn(i)
                    .map(|arn| self.id(PROFILE_ARN, IdKind::InstanceProfileArn, arn))
                    .transpose()?,
            },
            (TargetKind::Bucket, Resource::S3Bucket { bucket_names }) => {
                match bucket_names.first() {
                    Some(name) => Target::Bucket {
                        bucket_name: self.id(BUCKET_NAME, IdKind::BucketName, name)?,
                    },
                    None => Target::Unresolved {
                        reason: "the finding names no bucket".to_string(),
                    },
                }
            }
            (TargetKind::SecurityGroup, Resource::SecurityGroup { group_id }) => {
                Target::SecurityGroup {
                    group_id: self.id(GROUP_ID, IdKind::SecurityGroup, group_id)?,
                }
            }
            (TargetKind::Snapshot, Resource::Snapshot { snapshot_id }) => Target::Snapshot {
                snapshot_id: self.id(SNAPSHOT_ID, IdKind::Snapshot, snapshot_id)?,
            },
            // The parser took only an account that is the finding's own; the
            // region is the finding's, checked with its ids.
            (TargetKind::Account, Resource::Account { account_id }) => Target::Account {
                account_id: self.id(ACCOUNT_ID, IdKind::Account, account_id)?,
                region: self.id("region", IdKind::Region, &self.finding.region)?,
            },
            (kind, resource) => Target::Unresolved {
                reason: format!(
                    "a {} finding has no {} to act on",
                    preview(resource.resource_type()),
                    match kind {
                        TargetKind::Instance => "instance",
                        TargetKind::AccessKey => "access key",
                        TargetKind::User => "IAM user",
                        TargetKind::Role => "role",
                        TargetKind::Case => "case",
                        TargetKind::Bucket => "bucket",
                        TargetKind::SecurityGroup => "security group",
                        TargetKind::Snapshot => "snapshot",
                        TargetKind::Account => "account",
                    }
                ),
            },
        })
    }

    fn instance(&self, i: &InstanceDetails) -> Result<InstanceTarget, PlanError> {
        let instance_id = self.id(INSTANCE_ID, IdKind::Instance, &i.instance_id)?;
        let network_interfaces = i
            .network_interfaces
            .iter()
            .enumerate()
            .map(|(n, eni)| {
                Ok(EniTarget {
                    network_interface_id: EniId::parse(&eni.network_interface_id).map_err(|e| {
                        self.error(
                            &format!("{INSTANCE}.networkInterfaces[{n}].networkInterfaceId"),
                            e,
                        )
                    })?,
                    vpc_id: eni.vpc_id.as_deref().and_then(|v| VpcId::parse(v).ok()),
                    subnet_id: eni
                        .subnet_id
                        .as_deref()
                        .and_then(|s| SubnetId::parse(s).ok()),
                    security_group_ids: eni
                        .security_groups
                        .iter()
                        .filter_map(|g| SecurityGroupId::parse(&g.group_id).ok())
                        .collect(),
                })
            })
            .collect::<Result<_, PlanError>>()?;
        Ok(InstanceTarget {
            instance_id,
            network_interfaces,
            instance_profile_arn: profile_arn(i)
                .filter(|arn| IdKind::InstanceProfileArn.matches(arn))
                .map(str::to_string),
        })
    }

    fn access_key(&self, k: &AccessKeyDetails) -> Result<AccessKeyTarget, PlanError> {
        Ok(AccessKeyTarget {
            access_key_id: self.id(
                "resource.accessKeyDetails.accessKeyId",
                IdKind::AccessKey,
                &k.access_key_id,
            )?,
            user_name: k
                .user_name
                .as_deref()
                .map(|user| self.id(USER_NAME, IdKind::UserName, user))
                .transpose()?,
            user_type: k.user_type.clone(),
            key_kind: k.key_kind(),
            principal_id: k.principal_id.clone(),
        })
    }
}

const INSTANCE: &str = "resource.instanceDetails";
const INSTANCE_ID: &str = "resource.instanceDetails.instanceId";
const PROFILE_ARN: &str = "resource.instanceDetails.iamInstanceProfile.arn";
const USER_NAME: &str = "resource.accessKeyDetails.userName";
const BUCKET_NAME: &str = "resource.s3BucketDetails[0].name";
const GROUP_ID: &str = "resource.securityGroup.groupId";
const SNAPSHOT_ID: &str = "resource.snapshot.snapshotId";
const ACCOUNT_ID: &str = "resource.account.accountId";

fn profile_arn(i: &InstanceDetails) -> Option<&str> {
    i.iam_instance_profile
        .as_ref()
        .and_then(|p| p.arn.as_deref())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::finding::parse_single_finding;

    /// A well-formed finding whose resource the test then replaces.
    fn finding(resource: Resource) -> Finding {
        let mut f = parse_single_finding(
            r#"{"id":"f-1","type":"Policy:S3/BucketBlockPublicAccessDisabled","severity":5,
                "accountId":"123456789012","region":"us-east-1","partition":"aws",
                "resource":{"resourceType":"Other"}}"#,
            "test",
        )
        .unwrap();
        f.resource = resource;
        f
    }

    fn resolve(resource: Resource, kind: TargetKind) -> Result<Target, PlanError> {
        let f = finding(resource);
        Checks { finding: &f }.target(kind)
    }

    fn bucket(names: &[&str]) -> Resource {
        Resource::S3Bucket {
            bucket_names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn a_bucket_target_is_the_first_bucket_named() {
        let target = resolve(bucket(&["evidence-a", "other-b"]), TargetKind::Bucket).unwrap();
        assert_eq!(
            target,
            Target::Bucket {
                bucket_name: "evidence-a".to_string()
            }
        );
        assert_eq!(target.label(), "evidence-a");
        assert!(matches!(
            resolve(bucket(&[]), TargetKind::Bucket).unwrap(),
            Target::Unresolved { reason } if reason.contains("no bucket")
        ));
    }

    #[test]
    fn security_group_and_snapshot_targets_resolve_from_their_resources() {
        let sg = resolve(
            Resource::SecurityGroup {
                group_id: "sg-0a1b2c3d4e5f60711".to_string(),
            },
            TargetKind::SecurityGroup,
        )
        .unwrap();
        assert_eq!(sg.label(), "sg-0a1b2c3d4e5f60711");
        let snap = resolve(
            Resource::Snapshot {
                snapshot_id: "snap-0a1b2c3d".to_string(),
            },
            TargetKind::Snapshot,
        )
        .unwrap();
        assert_eq!(
            snap,
            Target::Snapshot {
                snapshot_id: "snap-0a1b2c3d".to_string()
            }
        );
    }

    #[test]
    fn hostile_ids_in_the_new_resources_refuse_the_finding_naming_the_field() {
        for (resource, kind, field) in [
            (bucket(&["bucket/../x"]), TargetKind::Bucket, BUCKET_NAME),
            (bucket(&["*"]), TargetKind::Bucket, BUCKET_NAME),
            (
                Resource::SecurityGroup {
                    group_id: "sg-*".to_string(),
                },
                TargetKind::SecurityGroup,
                GROUP_ID,
            ),
            (
                Resource::Snapshot {
                    snapshot_id: "snap-0a1b2c3d\"}".to_string(),
                },
                TargetKind::Snapshot,
                SNAPSHOT_ID,
            ),
        ] {
            let error = resolve(resource, kind).unwrap_err();
            assert_eq!(error.field, field);
            assert!(
                error.to_string().contains("no AWS call was made"),
                "{error}"
            );
        }
    }

    #[test]
    fn other_pairs_are_unresolved_with_a_reason() {
        let sg = || Resource::SecurityGroup {
            group_id: "sg-0a1b2c3d".to_string(),
        };
        for (resource, kind, words) in [
            (sg(), TargetKind::Bucket, "finding has no bucket"),
            (
                bucket(&["b-1"]),
                TargetKind::SecurityGroup,
                "no security group",
            ),
            (sg(), TargetKind::Snapshot, "no snapshot"),
            (sg(), TargetKind::Instance, "no instance"),
            (
                Resource::Instance(InstanceDetails {
                    instance_id: "i-0a1b2c3d".to_string(),
                    ..Default::default()
                }),
                TargetKind::Bucket,
                "\"Instance\" finding has no bucket",
            ),
        ] {
            match resolve(resource, kind).unwrap() {
                Target::Unresolved { reason } => assert!(reason.contains(words), "{reason}"),
                other => panic!("{kind:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn new_targets_serialise_kebab_case_and_are_checked_when_read_back() {
        for (target, json) in [
            (
                Target::Bucket {
                    bucket_name: "b-1".to_string(),
                },
                r#"{"kind":"bucket","bucket-name":"b-1"}"#,
            ),
            (
                Target::SecurityGroup {
                    group_id: "sg-0a1b2c3d".to_string(),
                },
                r#"{"kind":"security-group","group-id":"sg-0a1b2c3d"}"#,
            ),
            (
                Target::Snapshot {
                    snapshot_id: "snap-0a1b2c3d".to_string(),
                },
                r#"{"kind":"snapshot","snapshot-id":"snap-0a1b2c3d"}"#,
            ),
        ] {
            assert_eq!(serde_json::to_string(&target).unwrap(), json);
            assert_eq!(serde_json::from_str::<Target>(json).unwrap(), target);
        }
        for forged in [
            r#"{"kind":"bucket","bucket-name":"../x"}"#,
            r#"{"kind":"security-group","group-id":"sg-*"}"#,
            r#"{"kind":"snapshot","snapshot-id":"vol-0a1b2c3d"}"#,
        ] {
            assert!(serde_json::from_str::<Target>(forged).is_err(), "{forged}");
        }
        assert_eq!(
            serde_json::to_string(&[
                TargetKind::Bucket,
                TargetKind::SecurityGroup,
                TargetKind::Snapshot
            ])
            .unwrap(),
            r#"["bucket","security-group","snapshot"]"#
        );
    }

    #[test]
    fn new_targets_are_resources_for_locks_and_the_loop_guard() {
        let step = |target| PlannedStep {
            index: 1,
            id: "s".to_string(),
            description: String::new(),
            action: serde_json::from_str(r#"{"action":"notify","with":{}}"#).unwrap(),
            target,
            approval: ApprovalNeed {
                required: false,
                reason: None,
                approvers: Vec::new(),
                forbid_self_approval: false,
                explicit: false,
            },
            reversibility: Reversibility::Restores,
            blast_radius: None,
            retry: RetryPolicy::default(),
            on_failure: OnFailure::default(),
            best_effort: false,
            permissions: Vec::new(),
            needs: None,
        };
        let keys: Vec<String> = [
            Target::Bucket {
                bucket_name: "b-1".to_string(),
            },
            Target::SecurityGroup {
                group_id: "sg-0a1b2c3d".to_string(),
            },
            Target::Snapshot {
                snapshot_id: "snap-0a1b2c3d".to_string(),
            },
        ]
        .into_iter()
        .flat_map(|t| step(t).resources())
        .collect();
        assert_eq!(
            keys,
            [
                "bucket:b-1",
                "security-group:sg-0a1b2c3d",
                "snapshot:snap-0a1b2c3d"
            ]
        );
        for key in &keys {
            assert!(crate::claims::claim_file_name(key).is_ok(), "{key}");
        }
    }
}
