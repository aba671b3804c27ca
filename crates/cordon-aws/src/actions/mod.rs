//! The AWS side of every action: [`AwsActions`] implements the executor's
//! [`Actions`] trait by dispatching, through one exhaustive `match` on the
//! step's [`Action`], to a [`Handler`] per action with that action's typed
//! parameters. Each handler keeps its pre-state, outcome and rollback result
//! as typed structs, serialized into the journal.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use cordon_core::action::Action;
use cordon_core::executor::{ActionError, Actions, Amendment, ErrorKind, Progress};
use cordon_core::plan::{CaseId, InstanceTarget, Plan, PlannedStep, Target};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::AwsClients;
use crate::evidence::EvidenceStore;
use crate::recorder::run_as;

pub mod bucket;
pub mod detective;
pub mod ec2;
pub mod evidence;
pub mod iam;
pub mod notify;

/// Everything an action needs: the clients and where evidence goes.
#[derive(Debug, Clone)]
pub struct AwsActions {
    pub clients: AwsClients,
    pub evidence: EvidenceStore,
    /// SNS topic for `notify` steps that name none (`CORDON_NOTIFY_TOPIC_ARN`).
    pub notify_topic: Option<String>,
    /// Where the local journal and local evidence live (`<root>/<case-id>/`),
    /// so `store-evidence` can upload them; `None` when there is no local state
    /// (Lambda: the journal and captures are already in S3).
    pub case_root: Option<PathBuf>,
    /// The finding exactly as received, for the case it opened, so
    /// `store-evidence` can keep it byte for byte where there is no
    /// `<case-dir>/finding.json` (the Lambda).
    pub finding_raw: Option<(CaseId, String)>,
}

impl AwsActions {
    pub fn new(clients: AwsClients, evidence: EvidenceStore) -> Self {
        // A local evidence directory is the case root (the journal's directory too).
        let case_root = match &evidence {
            EvidenceStore::LocalDir(root) => Some(root.clone()),
            EvidenceStore::S3 { .. } => None,
        };
        Self {
            clients,
            evidence,
            notify_topic: None,
            case_root,
            finding_raw: None,
        }
    }

    /// Gives `store-evidence` the finding of `case` exactly as received.
    pub fn with_finding_raw(mut self, case: CaseId, raw: impl Into<String>) -> Self {
        self.finding_raw = Some((case, raw.into()));
        self
    }

    /// Sets where the local journal and evidence live, for `store-evidence`.
    pub fn with_case_root(mut self, case_root: Option<PathBuf>) -> Self {
        self.case_root = case_root;
        self
    }

    /// Sets the default topic for `notify` steps.
    pub fn with_notify_topic(mut self, topic_arn: Option<String>) -> Self {
        self.notify_topic = topic_arn;
        self
    }
}

/// What a handler sees of its step's durable progress records: it journals
/// a phase boundary before crossing it, and reads what earlier attempts
/// journaled before repeating (or undoing) what they began.
pub trait StepProgress: Send + Sync + std::fmt::Debug {
    /// Journals `progress` durably before returning; a handler must not go on
    /// with what the record announces when this fails.
    fn record(
        &self,
        progress: Value,
    ) -> Pin<Box<dyn Future<Output = Result<(), ActionError>> + Send + '_>>;
    /// The step's records journaled before this call, oldest first.
    fn earlier(&self) -> &[Value];
    /// Whether [`StepProgress::record`] reaches a journal. Only then does an
    /// empty [`StepProgress::earlier`] prove that this is the step's first
    /// attempt in its epoch.
    fn journaled(&self) -> bool;
    /// Whether the pre-state was read by this attempt just before its apply
    /// (see [`cordon_core::executor::Progress::fresh_pre_state`]).
    fn fresh_pre_state(&self) -> bool;
}

impl StepProgress for Progress<'_> {
    fn record(
        &self,
        progress: Value,
    ) -> Pin<Box<dyn Future<Output = Result<(), ActionError>> + Send + '_>> {
        Box::pin(Progress::record(self, progress))
    }

    fn earlier(&self) -> &[Value] {
        Progress::earlier(self)
    }

    fn journaled(&self) -> bool {
        Progress::journaled(self)
    }

    fn fresh_pre_state(&self) -> bool {
        Progress::fresh_pre_state(self)
    }
}

/// The context of one step's call.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub aws: &'a AwsActions,
    pub plan: &'a Plan,
    pub step: &'a PlannedStep,
    /// The step's progress records: journaled during `apply`, replayed
    /// (read-only) during `undo`, empty elsewhere.
    pub progress: &'a dyn StepProgress,
}

impl<'a> Ctx<'a> {
    pub fn clients(&self) -> &'a AwsClients {
        &self.aws.clients
    }

    /// Journals a progress record of this step (see [`StepProgress::record`]).
    pub async fn record_progress(&self, progress: Value) -> Result<(), ActionError> {
        self.progress.record(progress).await
    }

    /// The step's progress records from before this call, oldest first.
    pub fn earlier_progress(&self) -> &'a [Value] {
        self.progress.earlier()
    }

    /// Whether this apply is provably the step's first in its epoch: its
    /// progress is journaled and no earlier attempt journaled any. A step that
    /// journals before its first change may then skip looking for what an
    /// earlier attempt made.
    pub fn first_attempt(&self) -> bool {
        self.progress.journaled() && self.progress.earlier().is_empty()
    }

    /// Whether the pre-state was read by this attempt a moment ago, journaled,
    /// with no apply of the step since: the apply may act on it instead of
    /// reading the live state again, where its change fails, or is checked,
    /// when the world moved meanwhile.
    pub fn fresh_pre_state(&self) -> bool {
        self.progress.fresh_pre_state()
    }

    /// The instance this step targets, or a clear error; an id holding a
    /// wildcard is refused before it reaches any call.
    pub fn instance(&self) -> Result<&'a InstanceTarget, ActionError> {
        match &self.step.target {
            Target::Instance(i) => {
                ec2::refuse_wildcard(&i.instance_id, "an instance id")?;
                Ok(i)
            }
            other => Err(wrong_target(self.step, other)),
        }
    }

    /// The bucket this step targets, or a clear error.
    pub fn bucket(&self) -> Result<&'a str, ActionError> {
        match &self.step.target {
            Target::Bucket { bucket_name } => Ok(bucket_name),
            other => Err(wrong_target(self.step, other)),
        }
    }

    /// The security group this step targets, or a clear error; an id
    /// holding a wildcard is refused before it reaches any call.
    pub fn security_group(&self) -> Result<&'a str, ActionError> {
        match &self.step.target {
            Target::SecurityGroup { group_id } => {
                ec2::refuse_wildcard(group_id, "a security group id")?;
                Ok(group_id)
            }
            other => Err(wrong_target(self.step, other)),
        }
    }

    /// The snapshot this step targets, or a clear error; an id holding a
    /// wildcard is refused before it reaches any call.
    pub fn snapshot(&self) -> Result<&'a str, ActionError> {
        match &self.step.target {
            Target::Snapshot { snapshot_id } => {
                ec2::refuse_wildcard(snapshot_id, "a snapshot id")?;
                Ok(snapshot_id)
            }
            other => Err(wrong_target(self.step, other)),
        }
    }

    /// The account and region this step targets, or a clear error.
    pub fn account(&self) -> Result<(&'a str, &'a str), ActionError> {
        match &self.step.target {
            Target::Account { account_id, region } => Ok((account_id, region)),
            other => Err(wrong_target(self.step, other)),
        }
    }

    /// Tag value identifying this case on resources cordon creates.
    pub fn case_id(&self) -> &'a str {
        self.plan.case_id.as_str()
    }
}

/// The step's target is not what its action acts on.
pub fn wrong_target(step: &PlannedStep, target: &Target) -> ActionError {
    ActionError::new(
        ErrorKind::InvalidState,
        target.label(),
        format!(
            "step `{}` ({}) cannot act on this target",
            step.id,
            step.kind()
        ),
        "fix the playbook so the action matches the finding's resource type",
    )
}

/// One action's AWS side, typed end to end: the executor's JSON is decoded
/// into `PreState`/`Outcome` once, in the dispatch, and the action's own
/// parameters arrive as `Params`, so no handler re-matches the `Action` enum
/// or reads `serde_json::Value` by hand.
///
/// What the journal keeps (pre-state, outcome, rollback result) serializes
/// kebab-case; a field renamed since journals were first written keeps its
/// old name as a serde alias, so those journals stay readable.
pub trait Handler {
    /// The action's parameters (its struct in `cordon_core::action`).
    type Params: Sync;
    /// Exactly what `apply` will change, as it was before.
    type PreState: Serialize + DeserializeOwned + Send + Sync;
    /// What `apply` did; `verify` and `undo` read it back.
    type Outcome: Serialize + DeserializeOwned + Send + Sync;
    /// What `undo` did.
    type Undone: Serialize + DeserializeOwned + Send + Sync;

    /// Reads exactly what `apply` will change. Read-only.
    fn pre_state(
        ctx: Ctx<'_>,
        params: &Self::Params,
    ) -> impl Future<Output = Result<Self::PreState, ActionError>> + Send;
    /// Applies the change; idempotent.
    fn apply(
        ctx: Ctx<'_>,
        params: &Self::Params,
        pre: &Self::PreState,
    ) -> impl Future<Output = Result<Self::Outcome, ActionError>> + Send;
    /// Reads back and checks the post-condition.
    fn verify(
        ctx: Ctx<'_>,
        params: &Self::Params,
        pre: &Self::PreState,
        outcome: &Self::Outcome,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;
    /// Puts the resource back at `pre`; tolerant of half-applied and
    /// already-undone states. `outcome` is absent when the step never got to
    /// journal one (a crash between preparing and applying).
    fn undo(
        ctx: Ctx<'_>,
        params: &Self::Params,
        pre: &Self::PreState,
        outcome: Option<&Self::Outcome>,
    ) -> impl Future<Output = Result<Self::Undone, ActionError>> + Send;
    /// Reads back and checks the resource equals `pre`.
    fn verify_undone(
        ctx: Ctx<'_>,
        params: &Self::Params,
        pre: &Self::PreState,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;
    /// The mutating calls `apply` would make, for a dry run.
    fn describe(ctx: Ctx<'_>, params: &Self::Params, pre: &Self::PreState) -> Vec<String>;
    /// After a failed verification: re-reads live state and returns `pre`
    /// with what it lacks (a resource attached since it was read), or `None`
    /// when nothing is missing. Never records cordon's own containment as a
    /// resource's original state. Default: no amendment.
    fn amend(
        _ctx: Ctx<'_>,
        _params: &Self::Params,
        _pre: &Self::PreState,
    ) -> impl Future<Output = Result<Option<Amended<Self::PreState>>, ActionError>> + Send {
        async { Ok(None) }
    }
}

/// A pre-state amended after a failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amended<P> {
    /// The whole pre-state from now on.
    pub pre: P,
    /// The resources added to it, for the journal.
    pub added: Vec<String>,
}

/// The three things a step journals about what it touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journaled {
    /// `step-prepared`'s pre-state.
    PreState,
    /// `step-applied`'s outcome.
    Outcome,
    /// `step-rolled-back`'s result.
    Undone,
}

impl Journaled {
    fn noun(self) -> &'static str {
        match self {
            Journaled::PreState => "pre-state",
            Journaled::Outcome => "outcome",
            Journaled::Undone => "rollback result",
        }
    }
}

fn decode<T: DeserializeOwned>(
    step: &str,
    part: Journaled,
    value: &Value,
) -> Result<T, ActionError> {
    T::deserialize(value).map_err(|e| {
        ActionError::new(
            ErrorKind::Other,
            step,
            format!(
                "the journaled {} of step `{step}` is unreadable: {e}",
                part.noun()
            ),
            "the journal was written by another cordon version or edited; restore it from evidence",
        )
    })
}

fn encode<T: Serialize>(step: &str, part: Journaled, value: &T) -> Result<Value, ActionError> {
    serde_json::to_value(value).map_err(|e| {
        ActionError::new(
            ErrorKind::Other,
            step,
            format!("cannot record the {} of step `{step}`: {e}", part.noun()),
            "report this as a cordon bug",
        )
    })
}

async fn pre_state<H: Handler>(params: &H::Params, ctx: Ctx<'_>) -> Result<Value, ActionError> {
    let pre = H::pre_state(ctx, params).await?;
    encode(&ctx.step.id, Journaled::PreState, &pre)
}

async fn apply<H: Handler>(
    params: &H::Params,
    ctx: Ctx<'_>,
    pre: &Value,
) -> Result<Value, ActionError> {
    let pre: H::PreState = decode(&ctx.step.id, Journaled::PreState, pre)?;
    let outcome = H::apply(ctx, params, &pre).await?;
    encode(&ctx.step.id, Journaled::Outcome, &outcome)
}

async fn verify<H: Handler>(
    params: &H::Params,
    ctx: Ctx<'_>,
    pre: &Value,
    outcome: &Value,
) -> Result<(), ActionError> {
    let pre: H::PreState = decode(&ctx.step.id, Journaled::PreState, pre)?;
    let outcome: H::Outcome = decode(&ctx.step.id, Journaled::Outcome, outcome)?;
    H::verify(ctx, params, &pre, &outcome).await
}

async fn undo<H: Handler>(
    params: &H::Params,
    ctx: Ctx<'_>,
    pre: &Value,
    outcome: Option<&Value>,
) -> Result<Value, ActionError> {
    let pre: H::PreState = decode(&ctx.step.id, Journaled::PreState, pre)?;
    let outcome: Option<H::Outcome> = outcome
        .map(|o| decode(&ctx.step.id, Journaled::Outcome, o))
        .transpose()?;
    let undone = H::undo(ctx, params, &pre, outcome.as_ref()).await?;
    encode(&ctx.step.id, Journaled::Undone, &undone)
}

async fn verify_undone<H: Handler>(
    params: &H::Params,
    ctx: Ctx<'_>,
    pre: &Value,
) -> Result<(), ActionError> {
    let pre: H::PreState = decode(&ctx.step.id, Journaled::PreState, pre)?;
    H::verify_undone(ctx, params, &pre).await
}

async fn amend<H: Handler>(
    params: &H::Params,
    ctx: Ctx<'_>,
    pre: &Value,
) -> Result<Option<Amendment>, ActionError> {
    let pre: H::PreState = decode(&ctx.step.id, Journaled::PreState, pre)?;
    let Some(amended) = H::amend(ctx, params, &pre).await? else {
        return Ok(None);
    };
    Ok(Some(Amendment {
        pre_state: encode(&ctx.step.id, Journaled::PreState, &amended.pre)?,
        added: amended.added,
    }))
}

fn describe<H: Handler>(params: &H::Params, ctx: Ctx<'_>, pre: &Value) -> Vec<String> {
    match decode(&ctx.step.id, Journaled::PreState, pre) {
        Ok(pre) => H::describe(ctx, params, &pre),
        Err(e) => vec![format!("(cannot describe: {e})")],
    }
}

/// Calls `$f::<Handler>(params, args)` for the step's action: the one
/// exhaustive dispatch, handing each handler its own typed parameters. A
/// trailing `.await` is applied inside each arm: every handler's future is a
/// distinct type, so the arms only unify once awaited.
macro_rules! dispatch {
    ($action:expr, $f:ident ( $($arg:expr),* ) $(. $await:ident)?) => {
        match $action {
            Action::TagResource(p) => $f::<ec2::tag::TagResource>(p, $($arg),*) $(.$await)?,
            Action::EnableTerminationProtection(p) => $f::<ec2::protect::EnableTerminationProtection>(p, $($arg),*) $(.$await)?,
            Action::IsolateInstance(p) => $f::<ec2::isolate::IsolateInstance>(p, $($arg),*) $(.$await)?,
            Action::SnapshotVolumes(p) => $f::<ec2::snapshot::SnapshotVolumes>(p, $($arg),*) $(.$await)?,
            Action::DetachInstanceProfile(p) => $f::<ec2::profile::DetachInstanceProfile>(p, $($arg),*) $(.$await)?,
            Action::DetachFromAutoscaling(p) => $f::<ec2::autoscaling::DetachFromAutoscaling>(p, $($arg),*) $(.$await)?,
            Action::DeregisterFromLoadBalancers(p) => $f::<ec2::elb::DeregisterFromLoadBalancers>(p, $($arg),*) $(.$await)?,
            Action::CaptureInstanceMetadata(p) => $f::<ec2::capture::CaptureInstanceMetadata>(p, $($arg),*) $(.$await)?,
            Action::CaptureConsoleOutput(p) => $f::<ec2::capture::CaptureConsoleOutput>(p, $($arg),*) $(.$await)?,
            Action::RevokeRoleSessions(p) => $f::<iam::sessions::RevokeRoleSessions>(p, $($arg),*) $(.$await)?,
            Action::RevokeUserSessions(p) => $f::<iam::sessions::RevokeUserSessions>(p, $($arg),*) $(.$await)?,
            Action::DeactivateAccessKey(p) => $f::<iam::keys::DeactivateAccessKey>(p, $($arg),*) $(.$await)?,
            Action::RotateAccessKey(p) => $f::<iam::keys::RotateAccessKey>(p, $($arg),*) $(.$await)?,
            Action::QuarantineUser(p) => $f::<iam::user::QuarantineUser>(p, $($arg),*) $(.$await)?,
            Action::DeleteLoginProfile(p) => $f::<iam::user::DeleteLoginProfile>(p, $($arg),*) $(.$await)?,
            Action::EnrichWithDetective(p) => $f::<detective::EnrichWithDetective>(p, $($arg),*) $(.$await)?,
            Action::StoreEvidence(p) => $f::<evidence::StoreEvidence>(p, $($arg),*) $(.$await)?,
            Action::Notify(p) => $f::<notify::Notify>(p, $($arg),*) $(.$await)?,
            Action::EnforceImdsv2(p) => $f::<ec2::imds::EnforceImdsv2>(p, $($arg),*) $(.$await)?,
            Action::BlockBucketPublicAccess(p) => $f::<bucket::BlockBucketPublicAccess>(p, $($arg),*) $(.$await)?,
            Action::RevokeOpenIngress(p) => $f::<ec2::ingress::RevokeOpenIngress>(p, $($arg),*) $(.$await)?,
            Action::MakeSnapshotPrivate(p) => $f::<ec2::snapshot_private::MakeSnapshotPrivate>(p, $($arg),*) $(.$await)?,
            Action::MakeAccountSnapshotsPrivate(p) => $f::<ec2::account_snapshots::MakeAccountSnapshotsPrivate>(p, $($arg),*) $(.$await)?,
            Action::CaptureMemory(p) => $f::<ec2::memory::CaptureMemory>(p, $($arg),*) $(.$await)?,
        }
    };
}

fn reencode<H: Handler>(
    _params: &H::Params,
    step: &str,
    part: Journaled,
    value: &Value,
) -> Result<Value, ActionError> {
    match part {
        Journaled::PreState => encode(step, part, &decode::<H::PreState>(step, part, value)?),
        Journaled::Outcome => encode(step, part, &decode::<H::Outcome>(step, part, value)?),
        Journaled::Undone => encode(step, part, &decode::<H::Undone>(step, part, value)?),
    }
}

/// Decodes a journaled value of `step` (running `action`) into its handler's
/// type, as `resume` and `rollback` will, and returns it as this version
/// writes it: the check that an old journal is still readable.
pub fn decode_journaled(
    action: &Action,
    step: &str,
    part: Journaled,
    value: &Value,
) -> Result<Value, ActionError> {
    dispatch!(action, reencode(step, part, value))
}

impl AwsActions {
    fn ctx<'a>(
        &'a self,
        plan: &'a Plan,
        step: &'a PlannedStep,
        progress: &'a dyn StepProgress,
    ) -> Ctx<'a> {
        Ctx {
            aws: self,
            plan,
            step,
            progress,
        }
    }
}

/// Every call a handler makes is recorded under the step's action (see
/// [`crate::recorder`]), dry runs and rollbacks included.
impl Actions for AwsActions {
    /// The actions whose pre-state no other action of cordon changes (an Auto
    /// Scaling membership, target registrations, the profile association,
    /// the termination attributes, the attached volumes, the values of the
    /// playbook's tag keys), when the plan has no second step of the kind:
    /// read while isolation runs, they are what a read after it would find.
    fn prefetchable(&self, plan: &Plan, step: &PlannedStep) -> bool {
        let kind = step.kind();
        matches!(
            kind,
            cordon_core::action::ActionKind::DetachFromAutoscaling
                | cordon_core::action::ActionKind::DeregisterFromLoadBalancers
                | cordon_core::action::ActionKind::DetachInstanceProfile
                | cordon_core::action::ActionKind::EnableTerminationProtection
                | cordon_core::action::ActionKind::SnapshotVolumes
                | cordon_core::action::ActionKind::TagResource
        ) && plan.steps.iter().filter(|s| s.kind() == kind).count() == 1
    }

    async fn read_pre_state(&self, plan: &Plan, step: &PlannedStep) -> Result<Value, ActionError> {
        let none = Progress::discard();
        let ctx = self.ctx(plan, step, &none);
        run_as(step.kind(), async {
            dispatch!(&step.action, pre_state(ctx).await)
        })
        .await
    }

    async fn apply(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
    ) -> Result<Value, ActionError> {
        self.apply_with_progress(plan, step, pre_state, &Progress::discard())
            .await
    }

    async fn apply_with_progress(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
        progress: &Progress<'_>,
    ) -> Result<Value, ActionError> {
        let ctx = self.ctx(plan, step, progress);
        run_as(step.kind(), async {
            dispatch!(&step.action, apply(ctx, pre_state).await)
        })
        .await
    }

    async fn verify(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
        outcome: &Value,
    ) -> Result<(), ActionError> {
        let none = Progress::discard();
        let ctx = self.ctx(plan, step, &none);
        run_as(step.kind(), async {
            dispatch!(&step.action, verify(ctx, pre_state, outcome).await)
        })
        .await
    }

    async fn amend_pre_state(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
    ) -> Result<Option<Amendment>, ActionError> {
        let none = Progress::discard();
        let ctx = self.ctx(plan, step, &none);
        run_as(step.kind(), async {
            dispatch!(&step.action, amend(ctx, pre_state).await)
        })
        .await
    }

    async fn undo(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
        outcome: Option<&Value>,
    ) -> Result<Value, ActionError> {
        self.undo_with_progress(plan, step, pre_state, outcome, &[])
            .await
    }

    async fn undo_with_progress(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
        outcome: Option<&Value>,
        progress: &[Value],
    ) -> Result<Value, ActionError> {
        let replayed = Progress::replay(progress.to_vec());
        let ctx = self.ctx(plan, step, &replayed);
        run_as(step.kind(), async {
            dispatch!(&step.action, undo(ctx, pre_state, outcome).await)
        })
        .await
    }

    async fn verify_undone(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
    ) -> Result<(), ActionError> {
        let none = Progress::discard();
        let ctx = self.ctx(plan, step, &none);
        run_as(step.kind(), async {
            dispatch!(&step.action, verify_undone(ctx, pre_state).await)
        })
        .await
    }

    fn describe_apply(&self, plan: &Plan, step: &PlannedStep, pre_state: &Value) -> Vec<String> {
        let none = Progress::discard();
        let ctx = self.ctx(plan, step, &none);
        dispatch!(&step.action, describe(ctx, pre_state))
    }
}
