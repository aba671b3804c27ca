//! What [`provision`](crate::provision) built: every resource's AWS ids under
//! the logical name the spec gave it, plus the inventory that cleanup walks.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::FixtureError;

/// The ids of everything one provisioning run created.
///
/// Maps are keyed by the spec's logical names, so a test reads
/// `fixture.instances["web-01"].id`. Serializable (the `cordon-gameday`
/// binary writes it as `fixture.json`); secret access keys are never part
/// of the serialized form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Fixture {
    /// Value of the [`OWNER_TAG`](crate::OWNER_TAG) on every resource of this run.
    pub owner: String,
    /// Account the resources live in (from STS).
    pub account_id: String,
    /// Region the clients talk to.
    pub region: String,
    /// VPCs by logical name.
    #[serde(default)]
    pub vpcs: BTreeMap<String, Vpc>,
    /// Subnets by logical name.
    #[serde(default)]
    pub subnets: BTreeMap<String, Subnet>,
    /// Security groups by logical name.
    #[serde(default)]
    pub security_groups: BTreeMap<String, SecurityGroup>,
    /// Roles by logical name.
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// Instance profiles by logical name.
    #[serde(default)]
    pub instance_profiles: BTreeMap<String, InstanceProfile>,
    /// Instances by logical name.
    #[serde(default)]
    pub instances: BTreeMap<String, Instance>,
    /// Auto Scaling groups by logical name.
    #[serde(default)]
    pub auto_scaling_groups: BTreeMap<String, AutoScalingGroup>,
    /// Target groups by logical name.
    #[serde(default)]
    pub target_groups: BTreeMap<String, TargetGroup>,
    /// Load balancers by logical name.
    #[serde(default)]
    pub load_balancers: BTreeMap<String, LoadBalancer>,
    /// Users by logical name.
    #[serde(default)]
    pub users: BTreeMap<String, User>,
    /// Everything created, in creation order: what cleanup deletes.
    #[serde(default)]
    pub resources: Vec<OwnedResource>,
}

/// A VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Vpc {
    /// `vpc-…`
    pub id: String,
    /// Its CIDR block.
    pub cidr: String,
}

/// A subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Subnet {
    /// `subnet-…`
    pub id: String,
    /// Its VPC's id.
    pub vpc_id: String,
    /// Its zone, e.g. `us-east-1a`.
    pub availability_zone: String,
}

/// A security group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SecurityGroup {
    /// `sg-…`
    pub id: String,
    /// Its group name.
    pub name: String,
    /// Its VPC's id.
    pub vpc_id: String,
}

/// A security group as an interface lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Group {
    /// `sg-…`
    pub id: String,
    /// Its group name.
    pub name: String,
}

/// An IAM role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Role {
    /// Role name.
    pub name: String,
    /// Role ARN.
    pub arn: String,
}

/// An instance profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InstanceProfile {
    /// Profile name.
    pub name: String,
    /// Profile ARN.
    pub arn: String,
    /// Name of the role it holds.
    pub role_name: Option<String>,
}

/// An EC2 instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Instance {
    /// `i-…`
    pub id: String,
    /// Its type.
    pub instance_type: String,
    /// Its AMI.
    pub image_id: String,
    /// Its zone.
    pub availability_zone: String,
    /// Its VPC's id.
    pub vpc_id: String,
    /// ARN of the profile attached at launch.
    pub instance_profile_arn: Option<String>,
    /// Name of the Auto Scaling group it was attached to.
    pub auto_scaling_group: Option<String>,
    /// The tags the spec gave it (the owner tag aside).
    pub tags: BTreeMap<String, String>,
    /// Its interfaces by device index, primary first.
    pub enis: Vec<Eni>,
    /// Root volume first, then the spec's volumes in order.
    pub volumes: Vec<Volume>,
}

impl Instance {
    /// Every volume id, root first.
    pub fn volume_ids(&self) -> Vec<String> {
        self.volumes.iter().map(|v| v.id.clone()).collect()
    }

    /// Every interface id, primary first.
    pub fn eni_ids(&self) -> Vec<String> {
        self.enis.iter().map(|e| e.id.clone()).collect()
    }
}

/// A network interface of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Eni {
    /// `eni-…`
    pub id: String,
    /// Device index on the instance.
    pub device_index: i32,
    /// Its subnet's id.
    pub subnet_id: String,
    /// Its private IPv4 address.
    pub private_ip: String,
    /// Its groups at provisioning time, in order.
    pub groups: Vec<Group>,
}

impl Eni {
    /// Its group ids, in order.
    pub fn group_ids(&self) -> Vec<String> {
        self.groups.iter().map(|g| g.id.clone()).collect()
    }
}

/// An EBS volume attached to an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Volume {
    /// `vol-…`
    pub id: String,
    /// Device name on the instance.
    pub device: String,
}

/// An Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AutoScalingGroup {
    /// Group name.
    pub name: String,
    /// Its launch template (`lt-…`).
    pub launch_template_id: String,
    /// Instances the group launched itself, sorted.
    pub launched: Vec<String>,
    /// Instances of the spec attached to it, in spec order.
    pub attached: Vec<String>,
}

/// A target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TargetGroup {
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// Registered `(instance id, port)` pairs, in spec order.
    pub targets: Vec<(String, i32)>,
}

/// A load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadBalancer {
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// Its listeners' ARNs.
    pub listener_arns: Vec<String>,
}

/// An IAM user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct User {
    /// User name.
    pub name: String,
    /// User ARN.
    pub arn: String,
    /// Its access keys, in creation order.
    pub access_keys: Vec<AccessKey>,
}

/// An access key of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AccessKey {
    /// `AKIA…`
    pub id: String,
    /// Its secret: in memory only (never serialized, redacted from Debug),
    /// for a test that must act as the user.
    #[serde(skip)]
    pub secret: SecretAccessKey,
}

/// A secret access key that never shows in `Debug` output or serialized state.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretAccessKey(String);

impl SecretAccessKey {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for building credentials.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "SecretAccessKey(none)"
        } else {
            "SecretAccessKey(<redacted>)"
        })
    }
}

/// Kinds of resources the builder creates, in the order cleanup deletes them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, strum::Display,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum ResourceKind {
    /// An IAM user (with its keys, password and inline policies).
    User,
    /// A load balancer (its listeners go with it).
    LoadBalancer,
    /// A target group.
    TargetGroup,
    /// An Auto Scaling group (force-deleted: its own instances go with it).
    AutoScalingGroup,
    /// A launch template.
    LaunchTemplate,
    /// An instance (termination protection lifted, terminated).
    Instance,
    /// A network interface created besides an instance's primary one.
    NetworkInterface,
    /// A volume created besides an instance's root volume.
    Volume,
    /// An instance profile (its role removed first).
    InstanceProfile,
    /// A role (its inline and attached policies removed first).
    Role,
    /// A managed policy the Game Day created because the account lacked it
    /// (cordon's quarantine policy); detached from everything first.
    ManagedPolicy,
    /// A security group.
    SecurityGroup,
    /// A subnet.
    Subnet,
    /// A VPC (with any security group still in it).
    Vpc,
}

/// One resource the builder created (or found carrying its owner tag).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct OwnedResource {
    /// What it is.
    pub kind: ResourceKind,
    /// Its id: `vpc-…`, `i-…`, a target group ARN, an IAM or Auto Scaling name.
    pub id: String,
}

impl fmt::Display for OwnedResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.id)
    }
}

impl Fixture {
    /// Every resource the run created, in creation order.
    pub fn inventory(&self) -> &[OwnedResource] {
        &self.resources
    }

    pub(crate) fn created(&mut self, kind: ResourceKind, id: impl Into<String>) {
        self.resources.push(OwnedResource {
            kind,
            id: id.into(),
        });
    }

    /// The instance of that logical name.
    pub fn instance(&self, name: &str) -> Result<&Instance, FixtureError> {
        lookup(&self.instances, "instance", name)
    }

    /// The user of that logical name.
    pub fn user(&self, name: &str) -> Result<&User, FixtureError> {
        lookup(&self.users, "user", name)
    }
}

/// The record of `name` in one of the fixture's maps.
pub(crate) fn lookup<'m, T>(
    map: &'m BTreeMap<String, T>,
    kind: &'static str,
    name: &str,
) -> Result<&'m T, FixtureError> {
    map.get(name).ok_or_else(|| FixtureError::Unknown {
        kind,
        name: name.to_string(),
    })
}
