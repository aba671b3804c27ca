//! EC2-side actions: tags, hardening, isolation, snapshots, instance profile,
//! Auto Scaling, load balancers, captures.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use aws_sdk_ec2::types::{
    Filter, IamInstanceProfileAssociation, Instance, InstanceStateName, NetworkInterface,
};
use cordon_core::executor::{ActionError, ErrorKind};

use super::Ctx;
use crate::call::{Request, items};
use crate::client::{AwsClients, INITIAL_BACKOFF, MAX_ATTEMPTS, MAX_BACKOFF};
use crate::errors::Failed;
use crate::ops::{self, Op};
use crate::read_cache::{InstanceRead, Scope, joined_answer};

pub mod autoscaling;
pub mod capture;
pub mod elb;
pub mod imds;
pub mod ingress;
pub mod isolate;
pub mod memory;
pub mod profile;
pub mod protect;
pub mod snapshot;
pub mod snapshot_private;
pub mod tag;

/// A Describe filter: `name` matching any of `values`.
///
/// EC2 reads `*` and `?` in filter values as wildcards, and every value here
/// comes from a finding (attacker-influenced) or a playbook: a value holding
/// one would widen the match to resources the case is not about (an instance
/// id of `*` matches every instance). Such a value is refused before any call.
pub fn filter<V: Into<String>>(
    name: &str,
    values: impl IntoIterator<Item = V>,
) -> Result<Filter, ActionError> {
    let values: Vec<String> = values.into_iter().map(Into::into).collect();
    for value in &values {
        refuse_wildcard(value, &format!("the `{name}` filter"))?;
    }
    Ok(Filter::builder()
        .name(name)
        .set_values(Some(values))
        .build())
}

/// Refuses a value holding `*` or `?`, which EC2 would expand as a wildcard
/// in `place` (a Describe filter, say), matching resources the case is not
/// about. Values come from findings (attacker-influenced) and playbooks.
pub fn refuse_wildcard(value: &str, place: &str) -> Result<(), ActionError> {
    if !value.contains(['*', '?']) {
        return Ok(());
    }
    Err(ActionError::new(
        ErrorKind::Refused,
        value,
        format!(
            "{value:?} holds a wildcard (`*` or `?`) that EC2 would expand in {place}, matching resources this case is not about; nothing was called"
        ),
        "check the finding's ids (attacker-influenced) and the playbook's names: EC2 ids and cordon's names never hold `*` or `?`",
    ))
}

/// The instance's profile associations that are not yet fully gone
/// (`associating`, `associated`, `disassociating`): filtered and paginated,
/// so one call in practice.
pub async fn profile_associations(
    ctx: Ctx<'_>,
    instance_id: &str,
) -> Result<Vec<IamInstanceProfileAssociation>, ActionError> {
    let clients = ctx.clients();
    let request = clients
        .ec2
        .describe_iam_instance_profile_associations()
        .filters(filter("instance-id", [instance_id])?)
        .filters(filter(
            "state",
            ["associating", "associated", "disassociating"],
        )?);
    let pages = clients
        .paginate(
            &ops::EC2_DESCRIBE_IAM_INSTANCE_PROFILE_ASSOCIATIONS,
            instance_id,
            request,
        )
        .await?;
    Ok(items(&pages, |page| {
        page.iam_instance_profile_associations()
    }))
}

/// Describes one instance; a missing or terminated instance is a clear error.
///
/// Steps that describe the same instance while one read of it is under way
/// (the steps after isolation start together) share that read
/// ([`crate::read_cache::ReadCache::instance_read`]).
pub async fn describe_instance(ctx: Ctx<'_>, instance_id: &str) -> Result<Instance, ActionError> {
    let clients = ctx.clients();
    let related: Vec<&str> = ctx.instance().map_or_else(
        |_| Vec::new(),
        |target| {
            target
                .network_interfaces
                .iter()
                .map(|eni| eni.network_interface_id.as_str())
                .collect()
        },
    );
    let scope = read_scope(ctx);
    if let Some(instance) = clients.reads.take_early_instance(&scope, instance_id) {
        return usable_instance(Some(instance), instance_id);
    }
    let lead = match clients.reads.instance_read(&scope, instance_id, &related) {
        InstanceRead::Join(answer) => match joined_answer(answer).await {
            Some(instance) => return usable_instance(Some(instance), instance_id),
            None => None,
        },
        InstanceRead::Lead(lead) => Some(lead),
    };
    let instance = read_instance(clients, instance_id).await?;
    if let (Some(lead), Some(instance)) = (lead, &instance) {
        lead.answer(instance);
    }
    usable_instance(instance, instance_id)
}

/// One DescribeInstances of `instance_id`, past every cache: the instance, or
/// `None` when the answer does not hold it.
pub(crate) async fn read_instance(
    clients: &AwsClients,
    instance_id: &str,
) -> Result<Option<Instance>, ActionError> {
    let request = clients.ec2.describe_instances().instance_ids(instance_id);
    let out = clients
        .call(&ops::EC2_DESCRIBE_INSTANCES, instance_id, request)
        .await?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.instance_id() == Some(instance_id))
        .cloned())
}

/// The instance a read found; a missing or terminated one is a clear error.
fn usable_instance(instance: Option<Instance>, instance_id: &str) -> Result<Instance, ActionError> {
    let instance = instance.ok_or_else(|| {
        ActionError::new(
            ErrorKind::NotFound,
            instance_id,
            "instance not found",
            "check the finding's account and region match the credentials cordon runs with",
        )
    })?;
    if matches!(
        instance.state().and_then(|s| s.name()),
        Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
    ) {
        return Err(ActionError::new(
            ErrorKind::InvalidState,
            instance_id,
            "instance is terminated or shutting down: there is nothing left to contain",
            "collect what evidence remains (snapshots, logs) by hand and close the case",
        ));
    }
    Ok(instance)
}

/// Every network interface attached to the instance (filtered, paginated).
pub async fn instance_network_interfaces(
    ctx: Ctx<'_>,
    instance_id: &str,
) -> Result<Vec<NetworkInterface>, ActionError> {
    attached_interfaces(ctx.clients(), instance_id).await
}

/// [`instance_network_interfaces`] with bare clients, for reads made before
/// a case (and so a step context) exists.
pub async fn attached_interfaces(
    clients: &AwsClients,
    instance_id: &str,
) -> Result<Vec<NetworkInterface>, ActionError> {
    let request = clients
        .ec2
        .describe_network_interfaces()
        .filters(filter("attachment.instance-id", [instance_id])?);
    let pages = clients
        .paginate(&ops::EC2_DESCRIBE_NETWORK_INTERFACES, instance_id, request)
        .await?;
    let mut enis = items(&pages, |page| page.network_interfaces());
    enis.sort_by_key(|n| {
        n.attachment()
            .and_then(|a| a.device_index())
            .unwrap_or(i32::MAX)
    });
    Ok(enis)
}

/// Runs futures concurrently and returns their outputs in input order.
///
/// Independent AWS calls (one per ENI, per VPC, per volume) go out together so
/// a step costs one round trip per phase, not one per resource. A local helper
/// rather than `futures::join_all`: it borrows the step's context without
/// `'static` bounds or spawned tasks, and keeps the dependency set small.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (future, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Like [`join_all`] for fallible calls: every call runs to completion (so a
/// failure on one resource does not abandon the others half-way), then the
/// first error, in input order, is returned.
pub async fn try_join_all<T, F>(futures: Vec<F>) -> Result<Vec<T>, ActionError>
where
    F: Future<Output = Result<T, ActionError>>,
{
    join_all(futures).await.into_iter().collect()
}

/// Network interfaces by id, through a `network-interface-id` filter so that an
/// interface deleted since the pre-state was read is simply absent (the
/// `NetworkInterfaceIds` parameter would fail the whole call instead).
pub async fn network_interfaces_by_id(
    ctx: Ctx<'_>,
    ids: &[String],
) -> Result<Vec<NetworkInterface>, ActionError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let clients = ctx.clients();
    let request = clients
        .ec2
        .describe_network_interfaces()
        .filters(filter("network-interface-id", ids)?);
    let pages = clients
        .paginate(
            &ops::EC2_DESCRIBE_NETWORK_INTERFACES,
            &ids.join(","),
            request,
        )
        .await?;
    Ok(items(&pages, |page| page.network_interfaces()))
}

/// Security group ids of an interface, in the order AWS returns them.
pub fn interface_group_ids(eni: &NetworkInterface) -> Vec<String> {
    eni.groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect()
}

/// A boxed AWS call, so calls of different shapes can share one [`try_join_all`].
pub type BoxedCall<'a, T> = Pin<Box<dyn Future<Output = Result<T, ActionError>> + Send + 'a>>;

/// Where this step's cached reads live: the finding's account, the clients' region.
pub fn read_scope(ctx: Ctx<'_>) -> Scope {
    Scope {
        account: ctx.plan.finding.account_id.clone(),
        region: ctx.clients().region.clone(),
    }
}

/// What a call sent once ([`Op::send_once`]) came to.
#[derive(Debug)]
pub enum Sent<O, T> {
    /// AWS answered it.
    Answered(O),
    /// An attempt got no answer, and the read that followed found what it
    /// (or another worker) made: nothing was sent again.
    Found(T),
}

/// Sends a creation that must not be re-sent blindly ([`Op::send_once`]):
/// after an attempt that may have taken effect ([`Failed::may_have_taken_effect`])
/// `find` reads first, and the request (`request()` builds it afresh) is sent
/// again only when `find` comes back empty; a throttled attempt changed
/// nothing and is sent again after a back-off. At most [`MAX_ATTEMPTS`]
/// sends, like the SDK's own retries. The outer error is `find`'s; the inner
/// one the call's own last failure, for the caller to accept an expected
/// answer (`InvalidGroup.Duplicate`).
pub async fn send_reconciled<R, T, Fut>(
    ctx: Ctx<'_>,
    op: &'static Op,
    resource: &str,
    request: impl Fn() -> R,
    find: impl Fn() -> Fut,
) -> Result<Result<Sent<R::Output, T>, Failed<R::Error>>, ActionError>
where
    R: Request,
    Fut: Future<Output = Result<Option<T>, ActionError>>,
{
    let clients = ctx.clients();
    let mut backoff = INITIAL_BACKOFF;
    let mut attempt = 1;
    loop {
        let failed = match clients.try_call(op, resource, request()).await {
            Ok(output) => return Ok(Ok(Sent::Answered(output))),
            Err(failed) => failed,
        };
        let again = attempt < MAX_ATTEMPTS;
        attempt += 1;
        if failed.is_throttling() && again {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        if failed.may_have_taken_effect() {
            tracing::warn!(
                operation = op.name,
                resource,
                "no answer: reading what it may have made before sending it again"
            );
            if let Some(found) = find().await? {
                return Ok(Ok(Sent::Found(found)));
            }
            if again {
                continue;
            }
        }
        return Ok(Err(failed));
    }
}
