//! EC2-side actions: tags, hardening, isolation, snapshots, instance profile,
//! Auto Scaling, load balancers, captures.

use aws_sdk_ec2::types::{Filter, Instance, InstanceStateName, NetworkInterface};
use cordon_core::executor::{ActionError, ErrorKind};

use super::Ctx;
use crate::errors::sdk_error;

pub mod autoscaling;
pub mod capture;
pub mod elb;
pub mod isolate;
pub mod profile;
pub mod protect;
pub mod snapshot;
pub mod tag;

/// Describes one instance; a missing or terminated instance is a clear error.
pub async fn describe_instance(ctx: Ctx<'_>, instance_id: &str) -> Result<Instance, ActionError> {
    let clients = ctx.clients();
    clients.limit("DescribeInstances").await;
    let out = clients
        .ec2
        .describe_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .map_err(|e| sdk_error(e, "DescribeInstances", "ec2:DescribeInstances", instance_id))?;
    let instance = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.instance_id() == Some(instance_id))
        .cloned()
        .ok_or_else(|| {
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

/// Every network interface attached to the instance (filtered, one call).
pub async fn instance_network_interfaces(ctx: Ctx<'_>, instance_id: &str) -> Result<Vec<NetworkInterface>, ActionError> {
    let clients = ctx.clients();
    clients.limit("DescribeNetworkInterfaces").await;
    let out = clients
        .ec2
        .describe_network_interfaces()
        .filters(Filter::builder().name("attachment.instance-id").values(instance_id).build())
        .send()
        .await
        .map_err(|e| sdk_error(e, "DescribeNetworkInterfaces", "ec2:DescribeNetworkInterfaces", instance_id))?;
    let mut enis = out.network_interfaces().to_vec();
    enis.sort_by_key(|n| n.attachment().and_then(|a| a.device_index()).unwrap_or(i32::MAX));
    Ok(enis)
}
