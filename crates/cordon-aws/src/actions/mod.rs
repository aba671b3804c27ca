//! The AWS side of every action: [`AwsActions`] implements the executor's
//! [`Actions`] trait by dispatching, through one exhaustive `match`, to a
//! [`Handler`] per action. Each handler keeps its pre-state as a typed struct,
//! serialized into the journal.

use std::future::Future;
use std::path::PathBuf;

use cordon_core::action::ActionKind;
use cordon_core::executor::{ActionError, Actions, ErrorKind};
use cordon_core::plan::{InstanceTarget, Plan, PlannedStep, Target};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::AwsClients;
use crate::evidence::EvidenceStore;

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
        }
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
        format!(
            "step `{}` ({}) cannot act on this target",
            step.id,
            step.kind()
        ),
        "fix the playbook so the action matches the finding's resource type",
    )
}

/// One action's AWS side. Pre-states are typed by each handler and stored as JSON.
pub trait Handler {
    type PreState: Serialize + DeserializeOwned + Send + Sync;

    /// Reads exactly what `apply` will change. Read-only.
    fn pre_state(ctx: Ctx<'_>) -> impl Future<Output = Result<Self::PreState, ActionError>> + Send;
    /// Applies the change; idempotent.
    fn apply(
        ctx: Ctx<'_>,
        pre: &Self::PreState,
    ) -> impl Future<Output = Result<Value, ActionError>> + Send;
    /// Reads back and checks the post-condition.
    fn verify(
        ctx: Ctx<'_>,
        pre: &Self::PreState,
        outcome: &Value,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;
    /// Puts the resource back at `pre`; tolerant of half-applied and already-undone states.
    fn undo(
        ctx: Ctx<'_>,
        pre: &Self::PreState,
        outcome: Option<&Value>,
    ) -> impl Future<Output = Result<Value, ActionError>> + Send;
    /// Reads back and checks the resource equals `pre`.
    fn verify_undone(
        ctx: Ctx<'_>,
        pre: &Self::PreState,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;
    /// The mutating calls `apply` would make, for a dry run.
    fn describe(ctx: Ctx<'_>, pre: &Self::PreState) -> Vec<String>;
}

fn decode<T: DeserializeOwned>(step: &PlannedStep, value: &Value) -> Result<T, ActionError> {
    serde_json::from_value(value.clone()).map_err(|e| {
        ActionError::new(
            ErrorKind::Other,
            step.id.clone(),
            format!(
                "the journaled pre-state of step `{}` is unreadable: {e}",
                step.id
            ),
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

async fn undo<H: Handler>(
    ctx: Ctx<'_>,
    pre: &Value,
    outcome: Option<&Value>,
) -> Result<Value, ActionError> {
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
/// A trailing `.await` is applied inside each arm: every handler's future is a
/// distinct type, so the arms only unify once awaited.
macro_rules! dispatch {
    ($kind:expr, $f:ident ( $($arg:expr),* ) $(. $await:ident)?) => {
        match $kind {
            ActionKind::TagResource => $f::<ec2::tag::TagResource>($($arg),*) $(.$await)?,
            ActionKind::EnableTerminationProtection => $f::<ec2::protect::EnableTerminationProtection>($($arg),*) $(.$await)?,
            ActionKind::IsolateInstance => $f::<ec2::isolate::IsolateInstance>($($arg),*) $(.$await)?,
            ActionKind::SnapshotVolumes => $f::<ec2::snapshot::SnapshotVolumes>($($arg),*) $(.$await)?,
            ActionKind::DetachInstanceProfile => $f::<ec2::profile::DetachInstanceProfile>($($arg),*) $(.$await)?,
            ActionKind::DetachFromAutoscaling => $f::<ec2::autoscaling::DetachFromAutoscaling>($($arg),*) $(.$await)?,
            ActionKind::DeregisterFromLoadBalancers => $f::<ec2::elb::DeregisterFromLoadBalancers>($($arg),*) $(.$await)?,
            ActionKind::CaptureInstanceMetadata => $f::<ec2::capture::CaptureInstanceMetadata>($($arg),*) $(.$await)?,
            ActionKind::CaptureConsoleOutput => $f::<ec2::capture::CaptureConsoleOutput>($($arg),*) $(.$await)?,
            ActionKind::RevokeRoleSessions => $f::<iam::sessions::RevokeRoleSessions>($($arg),*) $(.$await)?,
            ActionKind::DeactivateAccessKey => $f::<iam::keys::DeactivateAccessKey>($($arg),*) $(.$await)?,
            ActionKind::RotateAccessKey => $f::<iam::keys::RotateAccessKey>($($arg),*) $(.$await)?,
            ActionKind::QuarantineUser => $f::<iam::user::QuarantineUser>($($arg),*) $(.$await)?,
            ActionKind::DeleteLoginProfile => $f::<iam::user::DeleteLoginProfile>($($arg),*) $(.$await)?,
            ActionKind::EnrichWithDetective => $f::<detective::EnrichWithDetective>($($arg),*) $(.$await)?,
            ActionKind::StoreEvidence => $f::<evidence::StoreEvidence>($($arg),*) $(.$await)?,
            ActionKind::Notify => $f::<notify::Notify>($($arg),*) $(.$await)?,
        }
    };
}

impl Actions for AwsActions {
    async fn read_pre_state(&self, plan: &Plan, step: &PlannedStep) -> Result<Value, ActionError> {
        let ctx = Ctx {
            aws: self,
            plan,
            step,
        };
        dispatch!(step.kind(), pre_state(ctx).await)
    }

    async fn apply(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
    ) -> Result<Value, ActionError> {
        let ctx = Ctx {
            aws: self,
            plan,
            step,
        };
        dispatch!(step.kind(), apply(ctx, pre_state).await)
    }

    async fn verify(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
        outcome: &Value,
    ) -> Result<(), ActionError> {
        let ctx = Ctx {
            aws: self,
            plan,
            step,
        };
        dispatch!(step.kind(), verify(ctx, pre_state, outcome).await)
    }

    async fn undo(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
        outcome: Option<&Value>,
    ) -> Result<Value, ActionError> {
        let ctx = Ctx {
            aws: self,
            plan,
            step,
        };
        dispatch!(step.kind(), undo(ctx, pre_state, outcome).await)
    }

    async fn verify_undone(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
    ) -> Result<(), ActionError> {
        let ctx = Ctx {
            aws: self,
            plan,
            step,
        };
        dispatch!(step.kind(), verify_undone(ctx, pre_state).await)
    }

    fn describe_apply(&self, plan: &Plan, step: &PlannedStep, pre_state: &Value) -> Vec<String> {
        let ctx = Ctx {
            aws: self,
            plan,
            step,
        };
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
            format!(
                "action `{}` is not available in this build of cordon",
                ctx.step.kind()
            ),
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
