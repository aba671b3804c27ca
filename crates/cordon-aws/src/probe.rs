//! Readiness probes for `cordon doctor`: what AWS says about cordon's
//! identity, permissions, clock and isolation groups, asked without changing
//! anything.
//!
//! Permissions are probed three ways, and each answer says which:
//! - EC2 calls that take `DryRun` are sent with `DryRun=true`: AWS checks the
//!   caller's permission and answers `DryRunOperation` (allowed) or
//!   `UnauthorizedOperation` (denied) without doing the call. Their
//!   parameters are harmless: fake but well-formed ids for instances, ENIs,
//!   volumes and snapshots, and a real VPC and security group where the
//!   caller has one, since some checks look at the resource. Any other answer
//!   (a `NotFound` given before the permission was judged, say) is reported
//!   as inconclusive, never as allowed.
//! - EC2 reads without `DryRun` are made for real, asking for a few items.
//! - Everything else goes to IAM's policy simulator (`SimulatePrincipalPolicy`)
//!   when the caller may use it; it evaluates the caller's policies, not the
//!   resource policies, service control policies' effect on a live call, or
//!   conditions it is given no value for.
//!
//! Every request goes through the one call path ([`AwsClients::call`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, ResourceType, SecurityGroup, Tag, TagSpecification,
};
use aws_sdk_iam::types::PolicyEvaluationDecisionType;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::date_time::{DateTime, Format};
use cordon_core::executor::ErrorKind;

use crate::actions::ec2::isolate::{allows_all, rule_summary};
use crate::call::{Request, items};
use crate::client::AwsClients;
use crate::errors::{CallError, Failed};
use crate::ops::{self, Op};

/// A well-formed instance id no account has: probes name it where a real
/// instance would be acted on.
pub const PROBE_INSTANCE: &str = "i-00000000000000000";
/// A well-formed ENI id no account has.
pub const PROBE_NETWORK_INTERFACE: &str = "eni-00000000000000000";
/// A well-formed volume id no account has.
pub const PROBE_VOLUME: &str = "vol-00000000000000000";
/// A well-formed snapshot id no account has.
pub const PROBE_SNAPSHOT: &str = "snap-00000000000000000";
/// A well-formed security group id no account has (when no VPC is in scope).
pub const PROBE_SECURITY_GROUP: &str = "sg-00000000000000000";
/// A well-formed VPC id no account has (when no VPC is in scope).
pub const PROBE_VPC: &str = "vpc-00000000000000000";
/// Name (and description) of the group a dry-run `CreateSecurityGroup` asks for.
pub const PROBE_GROUP_NAME: &str = "cordon-doctor-probe";

/// How a permission was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The call itself, with `DryRun=true`.
    DryRun,
    /// A real read asking for a few items.
    Read,
    /// IAM `SimulatePrincipalPolicy`.
    Simulator,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::DryRun => "DryRun",
            Method::Read => "read",
            Method::Simulator => "IAM SimulatePrincipalPolicy",
        })
    }
}

/// What AWS said about one permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed: `DryRunOperation`, a read that succeeded, or the simulator's `allowed`.
    Allowed,
    /// Denied, with AWS's code (or the simulator's decision) and message.
    Denied {
        /// `UnauthorizedOperation`, `AccessDenied`, `explicitDeny`, ...
        code: String,
        /// What AWS said, first line.
        message: String,
    },
    /// AWS answered something that does not say whether the permission is held.
    Inconclusive {
        /// The answer, in a few words.
        answer: String,
    },
}

/// One permission probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The IAM action (`ec2:CreateSnapshot`).
    pub permission: String,
    /// How it was checked.
    pub method: Method,
    /// The call made, for the reader (`CreateSnapshot DryRun=true on vol-...`).
    pub call: String,
    /// What AWS said.
    pub verdict: Verdict,
}

/// Real resources the EC2 dry runs may name, so AWS has something to judge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ec2Targets {
    /// A VPC of the region.
    pub vpc_id: Option<String>,
    /// A security group of that VPC (its default group).
    pub security_group_id: Option<String>,
    /// The tag key a dry-run `CreateTags`/`DeleteTags` uses: one the playbooks
    /// set, since cordon's policy allows only those on existing resources.
    pub tag_key: String,
}

/// Whether [`probe_ec2`] knows a probe for `permission` (else: the simulator).
pub fn has_ec2_probe(permission: &str) -> bool {
    EC2_PROBES.contains(&permission)
}

/// The EC2 permissions [`probe_ec2`] can check: DryRun calls and plain reads.
const EC2_PROBES: &[&str] = &[
    "ec2:DescribeInstances",
    "ec2:DescribeInstanceAttribute",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeTags",
    "ec2:DescribeSnapshots",
    "ec2:DescribeVolumes",
    "ec2:DescribeIamInstanceProfileAssociations",
    "ec2:GetConsoleOutput",
    "ec2:CreateTags",
    "ec2:DeleteTags",
    "ec2:ModifyInstanceAttribute",
    "ec2:CreateSecurityGroup",
    "ec2:RevokeSecurityGroupEgress",
    "ec2:AuthorizeSecurityGroupEgress",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:ModifyNetworkInterfaceAttribute",
    "ec2:CreateSnapshot",
    "ec2:DeleteSnapshot",
];

/// How many items a probing read asks for (EC2's smallest page is 5).
const FEW: i32 = 5;

/// Probes one EC2 permission without changing anything; `None` when there is
/// no such probe (`AssociateIamInstanceProfile` and its pair take no
/// `DryRun`): ask the simulator.
pub async fn probe_ec2(
    clients: &AwsClients,
    permission: &str,
    targets: &Ec2Targets,
) -> Option<Probe> {
    let ec2 = &clients.ec2;
    let vpc = targets.vpc_id.as_deref().unwrap_or(PROBE_VPC);
    let group = targets
        .security_group_id
        .as_deref()
        .unwrap_or(PROBE_SECURITY_GROUP);
    let tag = || Tag::builder().key(&targets.tag_key).value("probe").build();
    let any = || {
        IpPermission::builder()
            .ip_protocol("-1")
            .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .build()
    };
    let probe = match permission {
        "ec2:DescribeInstances" => {
            let request = ec2.describe_instances().max_results(FEW).dry_run(true);
            dry_run(clients, &ops::EC2_DESCRIBE_INSTANCES, "*", request).await
        }
        "ec2:DescribeInstanceAttribute" => {
            let request = ec2
                .describe_instance_attribute()
                .instance_id(PROBE_INSTANCE)
                .attribute(aws_sdk_ec2::types::InstanceAttributeName::DisableApiTermination)
                .dry_run(true);
            let op = &ops::EC2_DESCRIBE_INSTANCE_ATTRIBUTE;
            dry_run(clients, op, PROBE_INSTANCE, request).await
        }
        "ec2:DescribeNetworkInterfaces" => {
            let request = ec2
                .describe_network_interfaces()
                .max_results(FEW)
                .dry_run(true);
            dry_run(clients, &ops::EC2_DESCRIBE_NETWORK_INTERFACES, "*", request).await
        }
        "ec2:DescribeSecurityGroups" => {
            let request = ec2
                .describe_security_groups()
                .max_results(FEW)
                .dry_run(true);
            dry_run(clients, &ops::EC2_DESCRIBE_SECURITY_GROUPS, "*", request).await
        }
        "ec2:DescribeTags" => {
            let request = ec2.describe_tags().max_results(FEW).dry_run(true);
            dry_run(clients, &ops::EC2_DESCRIBE_TAGS, "*", request).await
        }
        "ec2:DescribeSnapshots" => {
            let request = ec2
                .describe_snapshots()
                .owner_ids("self")
                .max_results(FEW)
                .dry_run(true);
            dry_run(clients, &ops::EC2_DESCRIBE_SNAPSHOTS, "*", request).await
        }
        "ec2:DescribeVolumes" => {
            let request = ec2.describe_volumes().max_results(FEW).dry_run(true);
            dry_run(clients, &ops::EC2_DESCRIBE_VOLUMES, "*", request).await
        }
        "ec2:DescribeIamInstanceProfileAssociations" => {
            let request = ec2
                .describe_iam_instance_profile_associations()
                .max_results(FEW);
            let op = &ops::EC2_DESCRIBE_IAM_INSTANCE_PROFILE_ASSOCIATIONS;
            let mut probe = dry_run(clients, op, "*", request).await;
            probe.method = Method::Read;
            probe.call = format!("{} (a few items)", op.name);
            probe
        }
        "ec2:GetConsoleOutput" => {
            let request = ec2
                .get_console_output()
                .instance_id(PROBE_INSTANCE)
                .dry_run(true);
            dry_run(
                clients,
                &ops::EC2_GET_CONSOLE_OUTPUT,
                PROBE_INSTANCE,
                request,
            )
            .await
        }
        "ec2:CreateTags" => {
            let request = ec2
                .create_tags()
                .resources(PROBE_INSTANCE)
                .tags(tag())
                .dry_run(true);
            dry_run(clients, &ops::EC2_CREATE_TAGS, PROBE_INSTANCE, request).await
        }
        "ec2:DeleteTags" => {
            let request = ec2
                .delete_tags()
                .resources(PROBE_INSTANCE)
                .tags(tag())
                .dry_run(true);
            dry_run(clients, &ops::EC2_DELETE_TAGS, PROBE_INSTANCE, request).await
        }
        "ec2:ModifyInstanceAttribute" => {
            let request = ec2
                .modify_instance_attribute()
                .instance_id(PROBE_INSTANCE)
                .disable_api_termination(
                    aws_sdk_ec2::types::AttributeBooleanValue::builder()
                        .value(true)
                        .build(),
                )
                .dry_run(true);
            let op = &ops::EC2_MODIFY_INSTANCE_ATTRIBUTE;
            dry_run(clients, op, PROBE_INSTANCE, request).await
        }
        "ec2:CreateSecurityGroup" => {
            // Tagged at creation as cordon's own groups are, so the implied
            // `ec2:CreateTags` is judged too.
            let request = ec2
                .create_security_group()
                .vpc_id(vpc)
                .group_name(PROBE_GROUP_NAME)
                .description(PROBE_GROUP_NAME)
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::SecurityGroup)
                        .tags(
                            Tag::builder()
                                .key(crate::actions::ec2::isolate::ROLE_TAG)
                                .value("isolation")
                                .build(),
                        )
                        .build(),
                )
                .dry_run(true);
            dry_run(clients, &ops::EC2_CREATE_SECURITY_GROUP, vpc, request).await
        }
        "ec2:RevokeSecurityGroupEgress" => {
            let request = ec2
                .revoke_security_group_egress()
                .group_id(group)
                .ip_permissions(any())
                .dry_run(true);
            let op = &ops::EC2_REVOKE_SECURITY_GROUP_EGRESS;
            dry_run(clients, op, group, request).await
        }
        "ec2:AuthorizeSecurityGroupEgress" => {
            let request = ec2
                .authorize_security_group_egress()
                .group_id(group)
                .ip_permissions(any())
                .dry_run(true);
            let op = &ops::EC2_AUTHORIZE_SECURITY_GROUP_EGRESS;
            dry_run(clients, op, group, request).await
        }
        "ec2:AuthorizeSecurityGroupIngress" => {
            let request = ec2
                .authorize_security_group_ingress()
                .group_id(group)
                .ip_permissions(any())
                .dry_run(true);
            let op = &ops::EC2_AUTHORIZE_SECURITY_GROUP_INGRESS;
            dry_run(clients, op, group, request).await
        }
        "ec2:ModifyNetworkInterfaceAttribute" => {
            let request = ec2
                .modify_network_interface_attribute()
                .network_interface_id(PROBE_NETWORK_INTERFACE)
                .groups(group)
                .dry_run(true);
            let op = &ops::EC2_MODIFY_NETWORK_INTERFACE_ATTRIBUTE;
            dry_run(clients, op, PROBE_NETWORK_INTERFACE, request).await
        }
        "ec2:CreateSnapshot" => {
            let request = ec2
                .create_snapshot()
                .volume_id(PROBE_VOLUME)
                .description(PROBE_GROUP_NAME)
                .dry_run(true);
            dry_run(clients, &ops::EC2_CREATE_SNAPSHOT, PROBE_VOLUME, request).await
        }
        "ec2:DeleteSnapshot" => {
            let request = ec2
                .delete_snapshot()
                .snapshot_id(PROBE_SNAPSHOT)
                .dry_run(true);
            dry_run(clients, &ops::EC2_DELETE_SNAPSHOT, PROBE_SNAPSHOT, request).await
        }
        _ => return None,
    };
    Some(probe)
}

/// Sends `request` (with `DryRun=true` where it takes one) and reads the answer.
async fn dry_run<R: Request>(
    clients: &AwsClients,
    op: &'static Op,
    resource: &str,
    request: R,
) -> Probe {
    let verdict = match clients.try_call(op, resource, request).await {
        // A read answered in full (emulators answer reads without looking at DryRun).
        Ok(_) if !op.mutating => Verdict::Allowed,
        // A change that went through despite DryRun: only a broken endpoint does that.
        Ok(_) => Verdict::Inconclusive {
            answer: "the call succeeded although DryRun was set: this endpoint ignores DryRun"
                .to_string(),
        },
        Err(failed) => judge_dry_run(&failed),
    };
    Probe {
        permission: op.iam_action.to_string(),
        method: Method::DryRun,
        call: format!("{} DryRun=true on {resource}", op.name),
        verdict,
    }
}

/// What a failed dry run says about the permission.
fn judge_dry_run<E>(failed: &Failed<E>) -> Verdict
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
{
    let code = failed.code().unwrap_or_default().to_string();
    let message = first_line(failed.message().unwrap_or_default());
    judge_code(&code, message, failed.status())
}

/// `DryRunOperation` is allowed, a denial is denied, anything else inconclusive.
pub fn judge_code(code: &str, message: &str, status: Option<u16>) -> Verdict {
    match code {
        "DryRunOperation" => Verdict::Allowed,
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" => Verdict::Denied {
            code: code.to_string(),
            message: message.to_string(),
        },
        "" => Verdict::Inconclusive {
            answer: match status {
                Some(status) => format!("HTTP {status} without an error code"),
                None => "no answer from the endpoint".to_string(),
            },
        },
        _ => Verdict::Inconclusive {
            answer: if message.is_empty() {
                code.to_string()
            } else {
                format!("{code}: {message}")
            },
        },
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// Why the policy simulator gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    /// The caller is the account's root user, whom the simulator does not model.
    #[error("the caller is the account's root user, whom IAM's simulator does not model")]
    Root,
    /// The caller's ARN is not one the simulator takes (a federated user, say).
    #[error("IAM's simulator cannot simulate {arn}")]
    UnsupportedPrincipal {
        /// The caller's ARN.
        arn: String,
    },
    /// A call failed (denied to this identity, or absent on this endpoint).
    #[error(transparent)]
    Call(#[from] CallError),
}

/// The IAM principal behind `caller_arn` (an STS ARN for an assumed role),
/// as `SimulatePrincipalPolicy` names it: a role's ARN needs its path, which
/// `iam:GetRole` gives.
pub async fn simulation_principal(
    clients: &AwsClients,
    caller_arn: &str,
) -> Result<String, SimulatorError> {
    let parts: Vec<&str> = caller_arn.splitn(6, ':').collect();
    let (Some(service), Some(resource)) = (parts.get(2), parts.get(5)) else {
        return Err(SimulatorError::UnsupportedPrincipal {
            arn: caller_arn.to_string(),
        });
    };
    match (*service, resource.split('/').collect::<Vec<_>>().as_slice()) {
        ("iam", ["root"]) => Err(SimulatorError::Root),
        ("iam", ["user", ..]) | ("iam", ["role", ..]) => Ok(caller_arn.to_string()),
        ("sts", ["assumed-role", role, _session]) => {
            let request = clients.iam.get_role().role_name(*role);
            let out = clients.call(&ops::IAM_GET_ROLE, role, request).await?;
            out.role().map(|r| r.arn().to_string()).ok_or_else(|| {
                SimulatorError::UnsupportedPrincipal {
                    arn: caller_arn.to_string(),
                }
            })
        }
        _ => Err(SimulatorError::UnsupportedPrincipal {
            arn: caller_arn.to_string(),
        }),
    }
}

/// Asks IAM's policy simulator about `permissions` for `principal_arn`
/// (any resource); one [`Probe`] per permission, in order.
pub async fn simulate(
    clients: &AwsClients,
    principal_arn: &str,
    permissions: &[String],
) -> Result<Vec<Probe>, SimulatorError> {
    let request = clients
        .iam
        .simulate_principal_policy()
        .policy_source_arn(principal_arn)
        .set_action_names(Some(permissions.to_vec()))
        .max_items(1000);
    let out = clients
        .call(&ops::IAM_SIMULATE_PRINCIPAL_POLICY, principal_arn, request)
        .await?;
    let results = out.evaluation_results();
    Ok(permissions
        .iter()
        .map(|permission| {
            let result = results
                .iter()
                .find(|r| r.eval_action_name().eq_ignore_ascii_case(permission));
            let verdict = match result {
                None => Verdict::Inconclusive {
                    answer: "the simulator returned no result for it".to_string(),
                },
                Some(r) if !r.missing_context_values().is_empty() => Verdict::Inconclusive {
                    answer: format!(
                        "the policy depends on {} which only a real call supplies",
                        r.missing_context_values().join(", ")
                    ),
                },
                Some(r) => match r.eval_decision() {
                    PolicyEvaluationDecisionType::Allowed => Verdict::Allowed,
                    decision => Verdict::Denied {
                        code: decision.as_str().to_string(),
                        message: "IAM's policy simulator, for any resource".to_string(),
                    },
                },
            };
            Probe {
                permission: permission.clone(),
                method: Method::Simulator,
                call: format!("SimulatePrincipalPolicy for {principal_arn}"),
                verdict,
            }
        })
        .collect())
}

/// Who the credentials belong to, as STS says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The account id.
    pub account: String,
    /// The caller's ARN (an STS ARN for an assumed role).
    pub arn: String,
}

/// The caller's identity and how far the local clock is from AWS's, from
/// one `GetCallerIdentity` whose answer's `Date` header [`ServerDate`] keeps.
pub async fn identity_and_skew(
    clients: &AwsClients,
    server_date: &ServerDate,
) -> Result<(Identity, Option<i64>), CallError> {
    let before = SystemTime::now();
    let request = clients.sts.get_caller_identity();
    let out = clients
        .call(&ops::STS_GET_CALLER_IDENTITY, "caller", request)
        .await?;
    let after = SystemTime::now();
    let identity = Identity {
        account: out.account().unwrap_or_default().to_string(),
        arn: out.arn().unwrap_or_default().to_string(),
    };
    let skew = server_date.take().and_then(|server| {
        let local = mid_point(before, after)?;
        Some(server - local)
    });
    Ok((identity, skew))
}

/// Seconds since the epoch halfway between two instants.
fn mid_point(before: SystemTime, after: SystemTime) -> Option<i64> {
    let since = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).ok();
    let (b, a) = (since(before)?, since(after)?);
    i64::try_from(((b + a) / 2).as_secs()).ok()
}

/// Keeps the `Date` header of the last answer (seconds since the epoch):
/// AWS stamps every answer with its own clock, which SigV4 needs within
/// 15 minutes of the caller's.
#[derive(Debug, Clone, Default)]
pub struct ServerDate {
    seconds: Arc<Mutex<Option<i64>>>,
}

impl ServerDate {
    /// The last answer's date, if one carried a readable `Date` header.
    pub fn take(&self) -> Option<i64> {
        // Replaced whole, never half-written: a poisoned lock still holds a valid value.
        self.seconds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Intercept for ServerDate {
    fn name(&self) -> &'static str {
        "cordon.ServerDate"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let date = context
            .response()
            .headers()
            .get("date")
            .and_then(|value| DateTime::from_str(value, Format::HttpDate).ok());
        if let Some(date) = date {
            *self.seconds.lock().unwrap_or_else(PoisonError::into_inner) = Some(date.secs());
        }
        Ok(())
    }
}

/// Whether the SNS topic answers `GetTopicAttributes`; its owner on success.
pub async fn topic_owner(clients: &AwsClients, topic_arn: &str) -> Result<String, CallError> {
    let request = clients.sns.get_topic_attributes().topic_arn(topic_arn);
    let out = clients
        .call(&ops::SNS_GET_TOPIC_ATTRIBUTES, topic_arn, request)
        .await?;
    Ok(out
        .attributes()
        .and_then(|a| a.get("Owner"))
        .cloned()
        .unwrap_or_default())
}

/// A VPC in scope and cordon's groups in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcReadiness {
    /// The VPC.
    pub vpc_id: String,
    /// Its default security group (every VPC has one), for the dry runs.
    pub default_group_id: Option<String>,
    /// Each group cordon uses in it, by name.
    pub groups: Vec<GroupReadiness>,
}

/// One of cordon's groups in one VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReadiness {
    /// The group's name (`cordon-isolation`, `cordon-isolation-untrack`).
    pub name: String,
    /// Whether it is an untrack (allow-all) group rather than an isolation group.
    pub untrack: bool,
    /// `None` when the group does not exist yet (it is created on first use).
    pub state: Option<GroupState>,
}

/// What an existing group holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    /// The group id.
    pub group_id: String,
    /// What is wrong with it for its purpose, one entry each; empty when clean.
    pub problems: Vec<String>,
}

/// The VPCs in scope (`vpcs`, or every VPC of the region when empty) with
/// cordon's groups named `isolation_names` (and their untrack groups where
/// `untrack` says so), from one filtered `DescribeSecurityGroups`: every VPC
/// has a group named `default`, so no `ec2:DescribeVpcs` is needed.
pub async fn vpc_readiness(
    clients: &AwsClients,
    vpcs: &[String],
    isolation_names: &[(String, bool)],
) -> Result<Vec<VpcReadiness>, CallError> {
    let mut names = vec!["default".to_string()];
    for (name, untrack) in isolation_names {
        names.push(name.clone());
        if *untrack {
            names.push(crate::actions::ec2::isolate::untrack_group_name(name));
        }
    }
    let mut filters = vec![
        Filter::builder()
            .name("group-name")
            .set_values(Some(names))
            .build(),
    ];
    if !vpcs.is_empty() {
        filters.push(
            Filter::builder()
                .name("vpc-id")
                .set_values(Some(vpcs.to_vec()))
                .build(),
        );
    }
    let label = if vpcs.is_empty() {
        "every VPC".to_string()
    } else {
        vpcs.join(",")
    };
    let request = clients
        .ec2
        .describe_security_groups()
        .set_filters(Some(filters));
    let pages = clients
        .paginate(&ops::EC2_DESCRIBE_SECURITY_GROUPS, &label, request)
        .await?;
    let found: Vec<SecurityGroup> = items(&pages, |page| page.security_groups());
    let mut in_scope: Vec<String> = if vpcs.is_empty() {
        found
            .iter()
            .filter(|g| g.group_name() == Some("default"))
            .filter_map(|g| g.vpc_id().map(str::to_string))
            .collect()
    } else {
        vpcs.to_vec()
    };
    in_scope.sort();
    in_scope.dedup();
    let group = |vpc: &str, name: &str| {
        found
            .iter()
            .find(|g| g.vpc_id() == Some(vpc) && g.group_name() == Some(name))
    };
    Ok(in_scope
        .into_iter()
        .map(|vpc| {
            let mut groups = Vec::new();
            for (name, untrack) in isolation_names {
                groups.push(GroupReadiness {
                    name: name.clone(),
                    untrack: false,
                    state: group(&vpc, name).map(isolation_state),
                });
                if *untrack {
                    let name = crate::actions::ec2::isolate::untrack_group_name(name);
                    let state = group(&vpc, &name).map(untrack_state);
                    groups.push(GroupReadiness {
                        name,
                        untrack: true,
                        state,
                    });
                }
            }
            VpcReadiness {
                default_group_id: group(&vpc, "default")
                    .and_then(|g| g.group_id())
                    .map(str::to_string),
                vpc_id: vpc,
                groups,
            }
        })
        .collect())
}

/// An isolation group is clean with no rule at all.
fn isolation_state(group: &SecurityGroup) -> GroupState {
    let mut problems = Vec::new();
    for (direction, rules) in [
        ("ingress", group.ip_permissions()),
        ("egress", group.ip_permissions_egress()),
    ] {
        for rule in rule_summary(rules) {
            problems.push(format!("{direction} rule {rule}"));
        }
    }
    GroupState {
        group_id: group.group_id().unwrap_or_default().to_string(),
        problems,
    }
}

/// An untrack group is clean when it allows all traffic, both ways, v4 and v6.
fn untrack_state(group: &SecurityGroup) -> GroupState {
    let mut problems = Vec::new();
    for (direction, rules) in [
        ("ingress", group.ip_permissions()),
        ("egress", group.ip_permissions_egress()),
    ] {
        for (v6, space) in [(false, "0.0.0.0/0"), (true, "::/0")] {
            if !allows_all(rules, v6) {
                problems.push(format!("no {direction} allow-all rule for {space}"));
            }
        }
    }
    GroupState {
        group_id: group.group_id().unwrap_or_default().to_string(),
        problems,
    }
}

/// Whether an error means the identity lacks the permission (rather than
/// the operation being absent or the endpoint failing).
pub fn is_denied(error: &CallError) -> bool {
    error.kind == ErrorKind::AccessDenied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_answers_are_judged_by_code() {
        assert_eq!(
            judge_code("DryRunOperation", "", Some(412)),
            Verdict::Allowed
        );
        assert_eq!(
            judge_code("UnauthorizedOperation", "You are not authorized", Some(403)),
            Verdict::Denied {
                code: "UnauthorizedOperation".to_string(),
                message: "You are not authorized".to_string()
            }
        );
        assert!(matches!(
            judge_code("AccessDenied", "User: x is not authorized", Some(403)),
            Verdict::Denied { .. }
        ));
        assert_eq!(
            judge_code("InvalidVolume.NotFound", "no such volume", Some(400)),
            Verdict::Inconclusive {
                answer: "InvalidVolume.NotFound: no such volume".to_string()
            }
        );
        assert!(matches!(
            judge_code("", "", Some(500)),
            Verdict::Inconclusive { answer } if answer.contains("500")
        ));
    }

    #[test]
    fn probe_ids_are_well_formed() {
        use cordon_core::ids::IdKind;
        for (kind, id) in [
            (IdKind::Instance, PROBE_INSTANCE),
            (IdKind::NetworkInterface, PROBE_NETWORK_INTERFACE),
            (IdKind::Volume, PROBE_VOLUME),
            (IdKind::Snapshot, PROBE_SNAPSHOT),
            (IdKind::SecurityGroup, PROBE_SECURITY_GROUP),
            (IdKind::Vpc, PROBE_VPC),
        ] {
            assert!(kind.matches(id), "{id}");
        }
    }

    #[test]
    fn every_ec2_probe_names_an_operation_row() {
        for permission in EC2_PROBES {
            assert!(
                ops::ALL.iter().any(|op| op.iam_action == *permission),
                "{permission}"
            );
        }
    }

    #[test]
    fn mid_point_is_halfway() {
        let t = |s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s);
        assert_eq!(mid_point(t(100), t(110)), Some(105));
    }
}
