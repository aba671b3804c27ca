//! The AWS side of every action: [`AwsActions`] implements the executor's
//! [`Actions`] trait by dispatching, through one exhaustive `match`, to a
//! [`Handler`] per action. Each handler keeps its pre-state as a typed struct,
//! serialized into the journal.

use std::future::Future;

use cordon_core::action::ActionKind;
use cordon_core::executor::{ActionError, Actions, ErrorKind};
use cordon_core::plan::{InstanceTarget, Plan, PlannedStep, Target};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::AwsClients;
use crate::evidence::EvidenceStore;

pub mod ec2;

/// Everything an action needs: the clients and where evidence goes.
#[derive(Debug, Clone)]
pub struct AwsActions {
    pub clients: AwsClients,
    pub evidence: EvidenceStore,
}

impl AwsActions {
    pub fn new(clients: AwsClients, evidence: EvidenceStore) -> Self {
        Self { clients, evidence }
    }
}

/// The context of one step's call.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub aws: &'a AwsActions,
    pub plan: &'a Plan,
    pub step: &'a PlannedStep,
}

impl<'a> Ctx<'a> {
    pub fn clients(&self) -> &'a AwsClients {
        &self.aws.clients
    }

    /// The instance this step targets, or a clear error.
    pub fn instance(&self) -> Result<&'a InstanceTarget, ActionError> {
        match &self.step.target {
            Target::Instance(i) => Ok(i),
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
        format!("step `{}` ({}) cannot act on this target", step.id, step.kind()),
        "fix the playbook so the action matches the finding's resource type",
    )
}

/// One action's AWS side. Pre-states are typed by each handler and stored as JSON.
pub trait Handler {
    type PreState: Serialize + DeserializeOwned + Send + Sync;

    /// Reads exactly what `apply` will change. Read-only.
    fn pre_state(ctx: Ctx<'_>) -> impl Future<Output = Result<Self::PreState, ActionError>> + Send;
    /// Applies the change; idempotent.
    fn apply(ctx: Ctx<'_>, pre: &Self::PreState) -> impl Future<Output = Result<Value, ActionError>> + Send;
    /// Reads back and checks the post-condition.
    fn verify(ctx: Ctx<'_>, pre: &Self::PreState, outcome: &Value) -> impl Future<Output = Result<(), ActionError>> + Send;
    /// Puts the resource back at `pre`; tolerant of half-applied and already-undone states.
    fn undo(ctx: Ctx<'_>, pre: &Self::PreState, outcome: Option<&Value>) -> impl Future<Output = Result<Value, ActionError>> + Send;
    /// Reads back and checks the resource equals `pre`.
    fn verify_undone(ctx: Ctx<'_>, pre: &Self::PreState) -> impl Future<Output = Result<(), ActionError>> + Send;
    /// The mutating calls `apply` would make, for a dry run.
    fn describe(ctx: Ctx<'_>, pre: &Self::PreState) -> Vec<String>;
}

fn decode<T: DeserializeOwned>(step: &PlannedStep, value: &Value) -> Result<T, ActionError> {
    serde_json::from_value(value.clone()).map_err(|e| {
        ActionError::new(
            ErrorKind::Other,
            step.id.clone(),
            format!("the journaled pre-state of step `{}` is unreadable: {e}", step.id),
            "the journal was written by another cordon version or edited; restore it from evidence",
        )
    })
}

fn encode<T: Serialize>(step: &PlannedStep, value: &T) -> Result<Value, ActionError> {
    serde_json::to_value(value).map_err(|e| {
        ActionError::new(
            ErrorKind::Other,
            step.id.clone(),
            format!("cannot record the pre-state of step `{}`: {e}", step.id),
            "report this as a cordon bug",
        )
    })
}

async fn pre_state<H: Handler>(ctx: Ctx<'_>) -> Result<Value, ActionError> {
    encode(ctx.step, &H::pre_state(ctx).await?)
}

async fn apply<H: Handler>(ctx: Ctx<'_>, pre: &Value) -> Result<Value, ActionError> {
    H::apply(ctx, &decode(ctx.step, pre)?).await
}

async fn verify<H: Handler>(ctx: Ctx<'_>, pre: &Value, outcome: &Value) -> Result<(), ActionError> {
    H::verify(ctx, &decode(ctx.step, pre)?, outcome).await
}

async fn undo<H: Handler>(ctx: Ctx<'_>, pre: &Value, outcome: Option<&Value>) -> Result<Value, ActionError> {
    H::undo(ctx, &decode(ctx.step, pre)?, outcome).await
}

async fn verify_undone<H: Handler>(ctx: Ctx<'_>, pre: &Value) -> Result<(), ActionError> {
    H::verify_undone(ctx, &decode(ctx.step, pre)?).await
}

fn describe<H: Handler>(ctx: Ctx<'_>, pre: &Value) -> Vec<String> {
    match decode(ctx.step, pre) {
        Ok(pre) => H::describe(ctx, &pre),
        Err(e) => vec![format!("(cannot describe: {e})")],
    }
}

/// Calls `$f::<Handler>(args)` for the step's action: the one exhaustive dispatch.
macro_rules! dispatch {
    ($kind:expr, $f:ident ( $($arg:expr),* )) => {
        match $kind {
            ActionKind::TagResource => $f::<NotInThisBuild>($($arg),*),
            ActionKind::EnableTerminationProtection => $f::<NotInThisBuild>($($arg),*),
            ActionKind::IsolateInstance => $f::<NotInThisBuild>($($arg),*),
            ActionKind::SnapshotVolumes => $f::<NotInThisBuild>($($arg),*),
            ActionKind::DetachInstanceProfile => $f::<NotInThisBuild>($($arg),*),
            ActionKind::DetachFromAutoscaling => $f::<NotInThisBuild>($($arg),*),
            ActionKind::DeregisterFromLoadBalancers => $f::<NotInThisBuild>($($arg),*),
            ActionKind::CaptureInstanceMetadata => $f::<NotInThisBuild>($($arg),*),
            ActionKind::CaptureConsoleOutput => $f::<NotInThisBuild>($($arg),*),
            ActionKind::RevokeRoleSessions
            | ActionKind::DeactivateAccessKey
            | ActionKind::RotateAccessKey
            | ActionKind::QuarantineUser
            | ActionKind::DeleteLoginProfile
            | ActionKind::EnrichWithDetective
            | ActionKind::StoreEvidence
            | ActionKind::Notify => $f::<NotInThisBuild>($($arg),*),
        }
    };
}

impl Actions for AwsActions {
    async fn read_pre_state(&self, plan: &Plan, step: &PlannedStep) -> Result<Value, ActionError> {
        let ctx = Ctx { aws: self, plan, step };
        dispatch!(step.kind(), pre_state(ctx)).await
    }

    async fn apply(&self, plan: &Plan, step: &PlannedStep, pre_state: &Value) -> Result<Value, ActionError> {
        let ctx = Ctx { aws: self, plan, step };
        dispatch!(step.kind(), apply(ctx, pre_state)).await
    }

    async fn verify(&self, plan: &Plan, step: &PlannedStep, pre_state: &Value, outcome: &Value) -> Result<(), ActionError> {
        let ctx = Ctx { aws: self, plan, step };
        dispatch!(step.kind(), verify(ctx, pre_state, outcome)).await
    }

    async fn undo(&self, plan: &Plan, step: &PlannedStep, pre_state: &Value, outcome: Option<&Value>) -> Result<Value, ActionError> {
        let ctx = Ctx { aws: self, plan, step };
        dispatch!(step.kind(), undo(ctx, pre_state, outcome)).await
    }

    async fn verify_undone(&self, plan: &Plan, step: &PlannedStep, pre_state: &Value) -> Result<(), ActionError> {
        let ctx = Ctx { aws: self, plan, step };
        dispatch!(step.kind(), verify_undone(ctx, pre_state)).await
    }

    fn describe_apply(&self, plan: &Plan, step: &PlannedStep, pre_state: &Value) -> Vec<String> {
        let ctx = Ctx { aws: self, plan, step };
        dispatch!(step.kind(), describe(ctx, pre_state))
    }
}

/// Actions whose AWS side is not in this build yet: every call fails clearly, changing nothing.
#[derive(Debug)]
pub struct NotInThisBuild;

impl NotInThisBuild {
    fn error(ctx: Ctx<'_>) -> ActionError {
        ActionError::new(
            ErrorKind::Refused,
            ctx.step.target.label(),
            format!("action `{}` is not available in this build of cordon", ctx.step.kind()),
            "remove the step from the playbook or upgrade cordon",
        )
    }
}

impl Handler for NotInThisBuild {
    type PreState = ();

    async fn pre_state(ctx: Ctx<'_>) -> Result<(), ActionError> {
        Err(Self::error(ctx))
    }
    async fn apply(ctx: Ctx<'_>, _: &()) -> Result<Value, ActionError> {
        Err(Self::error(ctx))
    }
    async fn verify(ctx: Ctx<'_>, _: &(), _: &Value) -> Result<(), ActionError> {
        Err(Self::error(ctx))
    }
    async fn undo(ctx: Ctx<'_>, _: &(), _: Option<&Value>) -> Result<Value, ActionError> {
        Err(Self::error(ctx))
    }
    async fn verify_undone(ctx: Ctx<'_>, _: &()) -> Result<(), ActionError> {
        Err(Self::error(ctx))
    }
    fn describe(ctx: Ctx<'_>, _: &()) -> Vec<String> {
        vec![Self::error(ctx).to_string()]
    }
}
