//! Trust boundaries on the command line: a finding verified at its source
//! (`--verify-source`), the finding's account and region (a role assumed in
//! another account), and the blast-radius guards (protected tag, fleet cap,
//! pause switch). See the README's "Guards" and "Other accounts".

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use cordon_aws::accounts::{self, AccountError, CrossAccount, Scope};
use cordon_aws::actions::AwsActions;
use cordon_aws::actions::ec2::isolate;
use cordon_aws::client::AwsClients;
use cordon_aws::evidence::EvidenceStore;
use cordon_aws::guardduty::{self, VerifyError};
use cordon_aws::pause::PauseSwitches;
use cordon_aws::read_cache::Scope as ReadScope;
use cordon_core::executor::{FleetCap, Report};
use cordon_core::finding::Finding;
use cordon_core::ids::IdKind;
use cordon_core::plan::{CaseId, FindingSummary, Plan};
use cordon_core::provenance::Provenance;
use cordon_core::text::escape;

use crate::{Aws, Failure, StateArgs, failed, invalid};

/// `--verify-source`: where a finding that arrived as a file or event is checked.
#[derive(Debug, Clone, Default)]
pub struct SourceCheck {
    /// The finding was re-read from GuardDuty (or fetched from it by id).
    pub verified: bool,
    /// Where it was read.
    pub source: Option<String>,
    /// The text received, when the plan is made from the source's copy
    /// instead: kept with the case as evidence of what arrived.
    pub received_raw: Option<String>,
}

/// Re-reads `received` from GuardDuty (detector from its `service.detectorId`,
/// in the finding's region, as the caller) and returns GuardDuty's copy; a
/// finding GuardDuty does not have, or has otherwise, is invalid input (exit 2).
pub async fn verify_source(
    aws: &Aws,
    received: Finding,
) -> Result<(Finding, SourceCheck), Failure> {
    IdKind::Region
        .check(&received.region)
        .map_err(|e| invalid(anyhow!("finding {}: region {e}", escape(&received.id))))?;
    let caller = aws.clients().await?;
    let clients = if caller.region == received.region {
        caller.clone()
    } else {
        caller
            .derive(&received.region, None)
            .map_err(|e| failed(e.into()))?
    };
    let verified = guardduty::verify_at_source(&clients, &received)
        .await
        .map_err(|e| match e {
            VerifyError::Intake { .. } => failed(e.into()),
            other => invalid(other.into()),
        })?;
    let check = SourceCheck {
        verified: true,
        source: Some(verified.source),
        received_raw: (received.raw != verified.finding.raw).then_some(received.raw),
    };
    Ok((verified.finding, check))
}

/// The role used for findings from other accounts.
#[derive(Debug, Clone, Args)]
pub struct AccountArgs {
    /// Role assumed in a finding's account when it is not the caller's
    /// (arn:PARTITION:iam::FINDING-ACCOUNT:role/NAME); cordon never acts on
    /// another account's finding with its own credentials.
    #[arg(long, env = "CORDON_ASSUME_ROLE_NAME", default_value = accounts::DEFAULT_RESPONDER_ROLE)]
    assume_role_name: String,
    /// External id the role's trust policy asks for.
    #[arg(long, env = "CORDON_EXTERNAL_ID")]
    external_id: Option<String>,
}

/// The pause switch (checked before every step not yet run).
#[derive(Debug, Clone, Args)]
pub struct PauseArgs {
    /// A file whose presence pauses all automatic action (default: PAUSE in
    /// the journal directory, `<state-dir>/cases/PAUSE`).
    #[arg(long, env = "CORDON_PAUSE_FILE")]
    pause_file: Option<PathBuf>,
    /// An SSM parameter (in cordon's own account and region) whose value
    /// `paused` pauses all automatic action.
    #[arg(long, env = "CORDON_PAUSE_PARAMETER")]
    pause_parameter: Option<String>,
}

impl PauseArgs {
    /// The switches to obey; the parameter is read with the caller's clients.
    pub fn switches(&self, state: &StateArgs, caller: &AwsClients) -> PauseSwitches {
        PauseSwitches {
            file: self
                .pause_file
                .clone()
                .unwrap_or_else(|| state.state_dir.join("cases").join("PAUSE")),
            parameter: self
                .pause_parameter
                .clone()
                .map(|name| (caller.clone(), name)),
        }
    }
}

/// Guards read before a run opens its case.
#[derive(Debug, Clone, Args)]
pub struct GuardArgs {
    /// Tag key marking resources no step touches without an approval naming
    /// the step (`--approve STEP`, the prompt, `cordon approve`; `--yes` is not enough).
    #[arg(long, env = "CORDON_PROTECTED_TAG", default_value = cordon_aws::protected::DEFAULT_PROTECTED_TAG)]
    protected_tag: String,
    /// Instances all cases together may isolate per window before automatic
    /// action stops and escalates; 0 turns the cap off.
    #[arg(long, env = "CORDON_FLEET_CAP_MAX", default_value_t = 20)]
    fleet_cap_max: u32,
    /// The fleet cap's window.
    #[arg(long, env = "CORDON_FLEET_CAP_WINDOW", default_value = "10m", value_parser = crate::approvals::parse_duration)]
    fleet_cap_window: std::time::Duration,
}

impl GuardArgs {
    pub fn fleet_cap(&self) -> Option<FleetCap> {
        (self.fleet_cap_max > 0).then_some(FleetCap {
            max_instances: self.fleet_cap_max,
            window: self.fleet_cap_window,
        })
    }

    /// Marks the plan's steps on resources carrying the protected tag (read
    /// live, in the case's account and region) as needing a named approval.
    pub async fn protect(&self, clients: &AwsClients, plan: &mut Plan) -> Result<(), Failure> {
        self.protect_with(clients, None, plan).await
    }

    /// The reads made with the caller's own clients in the finding's region,
    /// to run alongside [`case_aws`]'s caller-identity check: the
    /// isolation step's pre-state reads ([`isolate::early_reads`]) and the
    /// protected-tag read (from the same DescribeInstances when there is one).
    /// For a finding in the caller's own account (the common case) their
    /// answers are ready when that check is, one round trip sooner than
    /// reading after it. `None` when they cannot be made (the check reports why).
    pub async fn protected_early(&self, aws: &Aws, plan: &Plan) -> Option<EarlyProtected> {
        let caller = aws.clients().await.ok()?;
        let clients = accounts::own_account_clients(caller, &plan.finding.region).ok()?;
        let reads = isolate::early_reads(&clients, plan).await;
        let read = if self.protected_tag.is_empty() {
            None
        } else {
            let described = reads.as_ref().and_then(|r| r.instance());
            Some(
                cordon_aws::protected::protected_resources_given(
                    &clients,
                    plan,
                    &self.protected_tag,
                    described,
                )
                .await,
            )
        };
        Some(EarlyProtected { read, reads })
    }

    /// [`GuardArgs::protect`] for a case whose AWS side is known: the early
    /// reads are used when the case acts in the caller's own account (the
    /// account and region they were made in), and thrown away otherwise.
    pub async fn protect_case(
        &self,
        case: &CaseAws,
        early: Option<EarlyProtected>,
        plan: &mut Plan,
    ) -> Result<(), Failure> {
        let own = case
            .scope
            .as_ref()
            .is_some_and(|s| s.assumed_role.is_none() && s.region == plan.finding.region);
        let mut read = None;
        if let Some(early) = early {
            if let Some(reads) = early.reads {
                if own {
                    let scope = ReadScope {
                        account: plan.finding.account_id.clone(),
                        region: case.actions.clients.region.clone(),
                    };
                    reads.keep(&case.actions.clients, &scope);
                } else {
                    reads.drop_reads();
                }
            }
            read = early.read.filter(|_| own);
        }
        self.protect_with(&case.actions.clients, read, plan).await
    }

    async fn protect_with(
        &self,
        clients: &AwsClients,
        early: Option<ProtectedRead>,
        plan: &mut Plan,
    ) -> Result<(), Failure> {
        if self.protected_tag.is_empty() {
            return Err(invalid(anyhow!(
                "--protected-tag cannot be empty: name the tag key that marks protected resources"
            )));
        }
        let read = match early {
            Some(read) => read,
            None => {
                cordon_aws::protected::protected_resources(clients, plan, &self.protected_tag).await
            }
        };
        let protected = read.map_err(|e| failed(e.into()))?;
        plan.protect(&protected);
        Ok(())
    }
}

/// What the protected-tag guard read.
type ProtectedRead =
    Result<std::collections::BTreeMap<String, String>, cordon_aws::protected::ProtectedTagError>;

/// The answer of [`GuardArgs::protected_early`].
#[derive(Debug)]
pub struct EarlyProtected {
    /// The protected-tag read (`None`: no tag to read).
    read: Option<ProtectedRead>,
    /// The isolation step's pre-state reads, if the plan has one.
    reads: Option<isolate::EarlyReads>,
}

/// A case's AWS side: the actions, acting in the finding's account and
/// region, and the caller's own clients for what is cordon's, not the
/// finding's: approvals (the human's identity), evidence in the responders'
/// bucket, escalation, the pause parameter.
pub struct CaseAws {
    pub actions: AwsActions,
    pub caller: AwsClients,
    /// `None` for a case the command leaves as it is (see [`idle_case_aws`]).
    pub scope: Option<Scope>,
}

impl std::fmt::Debug for CaseAws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseAws")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl CaseAws {
    /// What the journal records of the case's origin and identity.
    pub fn provenance(&self, check: &SourceCheck) -> Provenance {
        let scope = self.scope.as_ref();
        Provenance {
            source_verified: check.verified,
            source: check.source.clone(),
            caller: scope.map(|s| s.caller.clone()),
            assumed_role: scope.and_then(|s| s.assumed_role.clone()),
            acting_as: scope.map(|s| s.acting_as.clone()),
            region: scope.map(|s| s.region.clone()),
        }
    }
}

/// The clients for a case on `finding`: its account (a role assumed there
/// when it is not the caller's) and its region.
pub async fn case_aws(
    aws: &Aws,
    state: &StateArgs,
    account: &AccountArgs,
    finding: &FindingSummary,
    case: &CaseId,
) -> Result<CaseAws, Failure> {
    let caller = aws.clients().await?.clone();
    let cross = CrossAccount {
        role_name: account.assume_role_name.clone(),
        external_id: account.external_id.clone(),
    };
    let (acting, scope) = accounts::acting_clients(
        &caller,
        &finding.partition,
        &finding.account_id,
        &finding.region,
        &cross,
        &format!("cordon-{case}"),
    )
    .await
    .map_err(|e| match e {
        AccountError::Malformed { .. } | AccountError::ExternalId => invalid(e.into()),
        other => failed(other.into()),
    })?;
    if scope.assumed_role.is_some() {
        eprintln!(
            "cordon: the finding is from account {}: acting as {} (assumed {})",
            scope.account,
            escape(&scope.acting_as),
            escape(scope.assumed_role.as_deref().unwrap_or_default())
        );
    }
    Ok(CaseAws {
        actions: case_actions(acting, &caller, state),
        caller,
        scope: Some(scope),
    })
}

/// For a case the command will leave as it is (a no-op rollback of a
/// rolled-back case, a resume of a finished one): no account check, so a
/// command that changes nothing needs no AWS; any call would go out as the
/// caller in the caller's region, and none is made.
pub async fn idle_case_aws(aws: &Aws, state: &StateArgs) -> Result<CaseAws, Failure> {
    let caller = aws.clients().await?.clone();
    Ok(CaseAws {
        actions: case_actions(caller.clone(), &caller, state),
        caller,
        scope: None,
    })
}

/// The actions acting through `acting`; evidence goes to the responders'
/// bucket with the caller's credentials, or to the case directory.
fn case_actions(acting: AwsClients, caller: &AwsClients, state: &StateArgs) -> AwsActions {
    let local = state.state_dir.join("cases");
    let evidence = match &state.evidence_bucket {
        Some(bucket) => EvidenceStore::S3 {
            clients: Box::new(caller.clone()),
            bucket: bucket.clone(),
            prefix: "cases/".to_string(),
            kms_key: None,
            retention: false,
            signing_key: state.evidence_signing_key.clone(),
        },
        None => EvidenceStore::LocalDir(local.clone()),
    };
    AwsActions::new(acting, evidence)
        .with_case_root(Some(local))
        .with_notify_topic(notify_topic())
}

/// The responders' topic (`CORDON_NOTIFY_TOPIC_ARN`).
pub fn notify_topic() -> Option<String> {
    std::env::var("CORDON_NOTIFY_TOPIC_ARN")
        .ok()
        .filter(|t| !t.is_empty())
}

/// A guard stopped automatic action: tell the responders on the notify
/// topic, with the caller's own credentials (the topic is theirs).
pub async fn escalate(caller: &AwsClients, guard: &str, report: &Report) {
    escalate_message(caller, guard, &report.message).await;
}

/// Tells the responders on the notify topic that `guard` stopped automatic
/// action, saying `what` (one message for a whole burst).
pub async fn escalate_message(caller: &AwsClients, guard: &str, what: &str) {
    let message = format!("cordon: {what}");
    match notify_topic() {
        Some(topic) => {
            let request = caller
                .sns
                .publish()
                .topic_arn(&topic)
                .subject(format!("cordon: automatic action stopped ({guard})"))
                .message(&message);
            match caller
                .call(&cordon_aws::ops::SNS_PUBLISH, &topic, request)
                .await
            {
                Ok(_) => eprintln!("cordon: {guard} tripped; responders notified on {topic}"),
                Err(e) => eprintln!(
                    "cordon: {guard} tripped, and notifying {topic} failed: {}",
                    escape(&e.to_string())
                ),
            }
        }
        None => eprintln!(
            "cordon: {guard} tripped and no notify topic is configured (CORDON_NOTIFY_TOPIC_ARN): escalate by hand"
        ),
    }
}
