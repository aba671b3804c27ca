//! The declarative description of an environment: what to create, each thing
//! under a logical name that other entries refer to.
//!
//! The same types serve a test written in Rust (build the struct, or
//! `serde_json::from_value(json!({...}))`) and a Game Day scenario file
//! (YAML deserializes into them): keys are kebab-case, unknown keys are
//! rejected, and [`EnvironmentSpec::validate`] reports every dangling
//! reference at once before anything is created.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Everything an environment holds. Entries refer to each other by `name`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// VPCs with their subnets.
    #[serde(default)]
    pub vpcs: Vec<VpcSpec>,
    /// Security groups, each in one of the VPCs.
    #[serde(default)]
    pub security_groups: Vec<SecurityGroupSpec>,
    /// IAM roles (instance roles, roles whose sessions a scenario revokes).
    #[serde(default)]
    pub roles: Vec<RoleSpec>,
    /// Instance profiles, each holding at most one role.
    #[serde(default)]
    pub instance_profiles: Vec<InstanceProfileSpec>,
    /// EC2 instances with their network interfaces and volumes.
    #[serde(default)]
    pub instances: Vec<InstanceSpec>,
    /// Auto Scaling groups (each gets its own launch template).
    #[serde(default)]
    pub auto_scaling_groups: Vec<AutoScalingGroupSpec>,
    /// Load balancer target groups and their registered targets.
    #[serde(default)]
    pub target_groups: Vec<TargetGroupSpec>,
    /// Application load balancers forwarding to target groups.
    #[serde(default)]
    pub load_balancers: Vec<LoadBalancerSpec>,
    /// IAM users with access keys, inline policies, console passwords.
    #[serde(default)]
    pub users: Vec<UserSpec>,
}

/// A VPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct VpcSpec {
    /// Logical name, referred to by security groups and target groups.
    pub name: String,
    /// IPv4 CIDR block, e.g. `10.0.0.0/16`.
    pub cidr: String,
    /// Its subnets.
    #[serde(default)]
    pub subnets: Vec<SubnetSpec>,
}

/// A subnet of a VPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SubnetSpec {
    /// Logical name, unique across all VPCs (instances name only the subnet).
    pub name: String,
    /// IPv4 CIDR block inside the VPC's.
    pub cidr: String,
    /// Zone letter (`a`, `b`) appended to the region, or a full zone name;
    /// `a` when absent.
    #[serde(default)]
    pub availability_zone: Option<String>,
}

/// A security group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SecurityGroupSpec {
    /// Logical name, also its group name.
    pub name: String,
    /// The VPC it belongs to.
    pub vpc: String,
    /// Group description; a generated one when absent.
    #[serde(default)]
    pub description: Option<String>,
    /// Inbound rules (outbound keeps AWS's default allow-all).
    #[serde(default)]
    pub ingress: Vec<IngressRuleSpec>,
}

/// One inbound rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct IngressRuleSpec {
    /// `tcp`, `udp`, `icmp` or `-1` (all).
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// First port (or the only one).
    pub port: i32,
    /// Last port of a range; `port` when absent.
    #[serde(default)]
    pub to_port: Option<i32>,
    /// Source IPv4 CIDR.
    pub cidr: String,
    /// Rule description.
    #[serde(default)]
    pub description: Option<String>,
}

fn default_protocol() -> String {
    "tcp".to_string()
}

/// An IAM role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RoleSpec {
    /// Logical name, also its role name (plus the run's suffix, if any).
    pub name: String,
    /// The service principal allowed to assume it.
    #[serde(default = "default_trusted_service")]
    pub trusted_service: String,
    /// Inline policies: policy name to policy document.
    #[serde(default)]
    pub inline_policies: BTreeMap<String, Value>,
}

fn default_trusted_service() -> String {
    "ec2.amazonaws.com".to_string()
}

/// An instance profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InstanceProfileSpec {
    /// Logical name, also its profile name (plus the run's suffix, if any).
    pub name: String,
    /// The role it holds.
    #[serde(default)]
    pub role: Option<String>,
}

/// An EC2 instance.
///
/// Its primary network interface is described by `subnet` and `groups` and
/// launched as an explicit interface: the emulator reports instance-level
/// launch groups on every ENI of the instance, which real EC2 does not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InstanceSpec {
    /// Logical name (findings and lookups use it).
    pub name: String,
    /// Subnet of the primary interface.
    pub subnet: String,
    /// Security groups of the primary interface, in this order.
    #[serde(default)]
    pub groups: Vec<String>,
    /// AMI; the first Amazon-owned image the account lists when absent.
    #[serde(default)]
    pub image_id: Option<String>,
    /// Instance type.
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
    /// Instance profile attached at launch.
    #[serde(default)]
    pub instance_profile: Option<String>,
    /// Tags of the instance itself.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Tags put on every interface and volume of the instance, as a
    /// workload's tagging policy would.
    #[serde(default)]
    pub attachment_tags: BTreeMap<String, String>,
    /// More interfaces, attached at device index 1, 2, … in this order.
    #[serde(default)]
    pub interfaces: Vec<InterfaceSpec>,
    /// More volumes, attached after the root volume in this order.
    #[serde(default)]
    pub volumes: Vec<VolumeSpec>,
}

fn default_instance_type() -> String {
    "t3.micro".to_string()
}

/// A network interface beyond the primary one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InterfaceSpec {
    /// Its subnet (in the same VPC as the instance's).
    pub subnet: String,
    /// Its security groups, in this order.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Interface description.
    #[serde(default)]
    pub description: Option<String>,
}

/// An EBS volume beyond the root volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct VolumeSpec {
    /// Device name, e.g. `/dev/sdf`.
    pub device: String,
    /// Size in GiB.
    #[serde(default = "default_volume_size")]
    pub size_gib: i32,
    /// `gp3`, `gp2`, `io1`, …; the account default when absent.
    #[serde(default)]
    pub volume_type: Option<String>,
}

fn default_volume_size() -> i32 {
    8
}

/// An Auto Scaling group with a launch template of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AutoScalingGroupSpec {
    /// Logical name, also the group's and its launch template's name (plus
    /// the run's suffix, if any).
    pub name: String,
    /// Subnets the group launches into.
    pub subnets: Vec<String>,
    /// Minimum size.
    #[serde(default)]
    pub min_size: i32,
    /// Maximum size.
    pub max_size: i32,
    /// Instances the group launches itself before `attach` (its desired
    /// capacity at creation).
    #[serde(default)]
    pub desired_capacity: i32,
    /// AMI of the launch template; as for instances when absent.
    #[serde(default)]
    pub image_id: Option<String>,
    /// Instance type of the launch template.
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
    /// Instances of this spec attached to the group (each raises its
    /// desired capacity by one, as `AttachInstances` does).
    #[serde(default)]
    pub attach: Vec<String>,
}

/// A target group with its registered targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TargetGroupSpec {
    /// Logical name, also its name (plus the run's suffix, if any; at most
    /// 32 characters in all).
    pub name: String,
    /// Its VPC.
    pub vpc: String,
    /// `HTTP`, `HTTPS`, `TCP`, …
    #[serde(default = "default_target_protocol")]
    pub protocol: String,
    /// The group's default port.
    pub port: i32,
    /// Registered targets.
    #[serde(default)]
    pub targets: Vec<TargetSpec>,
}

fn default_target_protocol() -> String {
    "HTTP".to_string()
}

/// One registration: an instance of the spec, or every instance an Auto
/// Scaling group launched itself, on a port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TargetSpec {
    /// An instance of the spec.
    #[serde(default)]
    pub instance: Option<String>,
    /// An Auto Scaling group of the spec: the instances it launched itself.
    #[serde(default)]
    pub launched_by: Option<String>,
    /// The port the target is registered on.
    pub port: i32,
}

/// An application load balancer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LoadBalancerSpec {
    /// Logical name, also its name (plus the run's suffix, if any; at most
    /// 32 characters in all).
    pub name: String,
    /// Subnets (AWS wants two zones for an application load balancer).
    pub subnets: Vec<String>,
    /// Its security groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Listeners, each forwarding to a target group.
    #[serde(default)]
    pub listeners: Vec<ListenerSpec>,
}

/// A listener forwarding everything to one target group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ListenerSpec {
    /// `HTTP` or `HTTPS`.
    #[serde(default = "default_target_protocol")]
    pub protocol: String,
    /// The port it listens on.
    pub port: i32,
    /// The target group it forwards to.
    pub target_group: String,
}

/// An IAM user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct UserSpec {
    /// Logical name, also its user name (plus the run's suffix, if any).
    pub name: String,
    /// How many access keys to create (IAM allows two).
    #[serde(default)]
    pub access_keys: u8,
    /// Inline policies: policy name to policy document.
    #[serde(default)]
    pub inline_policies: BTreeMap<String, Value>,
    /// Give the user a console password (random, never recorded).
    #[serde(default)]
    pub console_password: bool,
}

/// One problem in a spec: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    /// Path in the spec, e.g. `instances[0].groups[1]`.
    pub path: String,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The logical names a spec defines, per kind.
struct Names<'a> {
    vpcs: BTreeSet<&'a str>,
    subnets: BTreeSet<&'a str>,
    groups: BTreeSet<&'a str>,
    roles: BTreeSet<&'a str>,
    profiles: BTreeSet<&'a str>,
    instances: BTreeSet<&'a str>,
    asgs: BTreeSet<&'a str>,
    target_groups: BTreeSet<&'a str>,
}

/// Collects problems while walking a spec.
#[derive(Debug, Default)]
struct Problems(Vec<SpecProblem>);

impl Problems {
    fn push(&mut self, path: String, message: String) {
        self.0.push(SpecProblem { path, message });
    }

    /// `reference` must be one of `names` (of `kind`).
    fn reference(&mut self, path: String, kind: &str, reference: &str, names: &BTreeSet<&str>) {
        if !names.contains(reference) {
            let known: Vec<&str> = names.iter().copied().collect();
            self.push(
                path,
                format!(
                    "no {kind} named `{reference}` (known: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
    }

    /// Each of `references` (at `list[j]`) must be one of `names`.
    fn references(
        &mut self,
        list: &str,
        kind: &str,
        references: &[String],
        names: &BTreeSet<&str>,
    ) {
        for (j, reference) in references.iter().enumerate() {
            self.reference(format!("{list}[{j}]"), kind, reference, names);
        }
    }

    /// Logical names of one kind must be unique and non-empty.
    fn unique<'a>(
        &mut self,
        list: &str,
        names: impl IntoIterator<Item = &'a str>,
    ) -> BTreeSet<&'a str> {
        let mut seen = BTreeSet::new();
        for (i, name) in names.into_iter().enumerate() {
            if name.is_empty() {
                self.push(format!("{list}[{i}].name"), "must not be empty".into());
            } else if !seen.insert(name) {
                self.push(
                    format!("{list}[{i}].name"),
                    format!("`{name}` is used twice; logical names must be unique"),
                );
            }
        }
        seen
    }
}

impl EnvironmentSpec {
    /// Every problem at once: duplicate names, references to names the spec
    /// does not define, interfaces in another VPC than their groups, sizes
    /// AWS would refuse. Provisioning refuses a spec with problems before
    /// making any call.
    pub fn validate(&self) -> Result<(), Vec<SpecProblem>> {
        let mut p = Problems::default();
        let names = self.names(&mut p);
        for (i, group) in self.security_groups.iter().enumerate() {
            let path = format!("security-groups[{i}].vpc");
            p.reference(path, "VPC", &group.vpc, &names.vpcs);
        }
        for (i, profile) in self.instance_profiles.iter().enumerate() {
            if let Some(role) = &profile.role {
                let path = format!("instance-profiles[{i}].role");
                p.reference(path, "role", role, &names.roles);
            }
        }
        self.validate_instances(&mut p, &names);
        self.validate_auto_scaling_groups(&mut p, &names);
        self.validate_load_balancing(&mut p, &names);
        for (i, user) in self.users.iter().enumerate() {
            if user.access_keys > 2 {
                p.push(
                    format!("users[{i}].access-keys"),
                    format!(
                        "IAM allows two access keys per user, not {}",
                        user.access_keys
                    ),
                );
            }
        }
        if p.0.is_empty() { Ok(()) } else { Err(p.0) }
    }

    /// The logical names of each kind (duplicates reported).
    fn names(&self, p: &mut Problems) -> Names<'_> {
        let subnets = self
            .vpcs
            .iter()
            .flat_map(|v| v.subnets.iter().map(|s| s.name.as_str()));
        let names = Names {
            vpcs: p.unique("vpcs", self.vpcs.iter().map(|v| v.name.as_str())),
            subnets: p.unique("subnets", subnets),
            groups: p.unique(
                "security-groups",
                self.security_groups.iter().map(|g| g.name.as_str()),
            ),
            roles: p.unique("roles", self.roles.iter().map(|r| r.name.as_str())),
            profiles: p.unique(
                "instance-profiles",
                self.instance_profiles.iter().map(|r| r.name.as_str()),
            ),
            instances: p.unique("instances", self.instances.iter().map(|i| i.name.as_str())),
            asgs: p.unique(
                "auto-scaling-groups",
                self.auto_scaling_groups.iter().map(|a| a.name.as_str()),
            ),
            target_groups: p.unique(
                "target-groups",
                self.target_groups.iter().map(|t| t.name.as_str()),
            ),
        };
        p.unique(
            "load-balancers",
            self.load_balancers.iter().map(|l| l.name.as_str()),
        );
        p.unique("users", self.users.iter().map(|u| u.name.as_str()));
        names
    }

    fn validate_auto_scaling_groups(&self, p: &mut Problems, names: &Names<'_>) {
        for (i, asg) in self.auto_scaling_groups.iter().enumerate() {
            let at = format!("auto-scaling-groups[{i}]");
            if asg.subnets.is_empty() {
                p.push(format!("{at}.subnets"), "needs at least one subnet".into());
            }
            p.references(
                &format!("{at}.subnets"),
                "subnet",
                &asg.subnets,
                &names.subnets,
            );
            p.references(
                &format!("{at}.attach"),
                "instance",
                &asg.attach,
                &names.instances,
            );
            let size = asg.desired_capacity + asg.attach.len() as i32;
            if !(0 <= asg.min_size && asg.min_size <= asg.max_size && size <= asg.max_size) {
                p.push(
                    at,
                    format!(
                        "sizes must satisfy 0 <= min-size ({}) <= max-size ({}) and \
                         desired-capacity + attached ({size}) <= max-size",
                        asg.min_size, asg.max_size
                    ),
                );
            }
        }
    }

    fn validate_load_balancing(&self, p: &mut Problems, names: &Names<'_>) {
        for (i, tg) in self.target_groups.iter().enumerate() {
            let at = format!("target-groups[{i}]");
            p.reference(format!("{at}.vpc"), "VPC", &tg.vpc, &names.vpcs);
            for (j, target) in tg.targets.iter().enumerate() {
                let at = format!("{at}.targets[{j}]");
                match (&target.instance, &target.launched_by) {
                    (Some(instance), None) => {
                        let path = format!("{at}.instance");
                        p.reference(path, "instance", instance, &names.instances);
                    }
                    (None, Some(asg)) => {
                        let path = format!("{at}.launched-by");
                        p.reference(path, "Auto Scaling group", asg, &names.asgs);
                    }
                    _ => p.push(at, "name exactly one of `instance` or `launched-by`".into()),
                }
            }
        }
        for (i, lb) in self.load_balancers.iter().enumerate() {
            let at = format!("load-balancers[{i}]");
            p.references(
                &format!("{at}.subnets"),
                "subnet",
                &lb.subnets,
                &names.subnets,
            );
            p.references(
                &format!("{at}.groups"),
                "security group",
                &lb.groups,
                &names.groups,
            );
            for (j, listener) in lb.listeners.iter().enumerate() {
                p.reference(
                    format!("{at}.listeners[{j}].target-group"),
                    "target group",
                    &listener.target_group,
                    &names.target_groups,
                );
            }
        }
    }

    fn validate_instances(&self, p: &mut Problems, names: &Names<'_>) {
        let (subnets, groups, profiles) = (&names.subnets, &names.groups, &names.profiles);
        for (i, instance) in self.instances.iter().enumerate() {
            let at = format!("instances[{i}]");
            // The builder sets the owner tag on everything it creates; a
            // scenario that set it too would hide a resource from cleanup
            // (another value) or from the Game Day tag check.
            for (key, tags) in [
                ("tags", &instance.tags),
                ("attachment-tags", &instance.attachment_tags),
            ] {
                if tags.contains_key(crate::OWNER_TAG) {
                    p.push(
                        format!("{at}.{key}"),
                        format!("`{}` is the Game Day's own tag; the builder sets it on everything it creates", crate::OWNER_TAG),
                    );
                }
            }
            let interfaces = std::iter::once((at.clone(), &instance.subnet, &instance.groups))
                .chain(
                    instance
                        .interfaces
                        .iter()
                        .enumerate()
                        .map(|(j, n)| (format!("{at}.interfaces[{j}]"), &n.subnet, &n.groups)),
                );
            let home = self.vpc_of_subnet(&instance.subnet);
            for (path, subnet, names) in interfaces {
                p.reference(format!("{path}.subnet"), "subnet", subnet, subnets);
                if let (Some(home), Some(vpc)) = (home, self.vpc_of_subnet(subnet))
                    && home != vpc
                {
                    p.push(
                        format!("{path}.subnet"),
                        format!("subnet `{subnet}` is in VPC `{vpc}`, the instance in `{home}`"),
                    );
                }
                for (k, group) in names.iter().enumerate() {
                    let gpath = format!("{path}.groups[{k}]");
                    p.reference(gpath.clone(), "security group", group, groups);
                    if let (Some(vpc), Some(group_vpc)) =
                        (self.vpc_of_subnet(subnet), self.vpc_of_group(group))
                        && vpc != group_vpc
                    {
                        p.push(
                            gpath,
                            format!(
                                "group `{group}` is in VPC `{group_vpc}`, subnet `{subnet}` in `{vpc}`"
                            ),
                        );
                    }
                }
            }
            if let Some(profile) = &instance.instance_profile {
                p.reference(
                    format!("{at}.instance-profile"),
                    "instance profile",
                    profile,
                    profiles,
                );
            }
            let mut devices = BTreeSet::new();
            for (j, volume) in instance.volumes.iter().enumerate() {
                if !devices.insert(volume.device.as_str()) {
                    p.push(
                        format!("{at}.volumes[{j}].device"),
                        format!("device `{}` is used twice", volume.device),
                    );
                }
                if volume.size_gib < 1 {
                    p.push(
                        format!("{at}.volumes[{j}].size-gib"),
                        "must be at least 1".into(),
                    );
                }
            }
        }
    }

    /// The VPC (logical name) a subnet belongs to.
    pub fn vpc_of_subnet(&self, subnet: &str) -> Option<&str> {
        self.vpcs
            .iter()
            .find(|v| v.subnets.iter().any(|s| s.name == subnet))
            .map(|v| v.name.as_str())
    }

    /// The VPC (logical name) a security group belongs to.
    pub fn vpc_of_group(&self, group: &str) -> Option<&str> {
        self.security_groups
            .iter()
            .find(|g| g.name == group)
            .map(|g| g.vpc.as_str())
    }

    /// The Game Day's compromised web server: instance `web-01` with two
    /// interfaces in two subnets and three groups, a data volume, an instance
    /// profile, in an Auto Scaling group and registered in a target group:
    /// everything the high-severity playbook acts on.
    pub fn compromised_instance() -> EnvironmentSpec {
        let text = r#"{
          "vpcs": [{"name": "gameday", "cidr": "10.0.0.0/16", "subnets": [
            {"name": "frontend", "cidr": "10.0.1.0/24"},
            {"name": "backend", "cidr": "10.0.2.0/24"}]}],
          "security-groups": [
            {"name": "web-frontend", "vpc": "gameday",
             "ingress": [{"port": 443, "cidr": "0.0.0.0/0"}]},
            {"name": "bastion-ssh-access", "vpc": "gameday",
             "ingress": [{"port": 22, "cidr": "10.0.0.0/16"}]},
            {"name": "app-backend", "vpc": "gameday",
             "ingress": [{"port": 8080, "cidr": "10.0.1.0/24"}]}],
          "roles": [{"name": "gameday-web-role"}],
          "instance-profiles": [{"name": "gameday-web-profile", "role": "gameday-web-role"}],
          "instances": [{
            "name": "web-01",
            "subnet": "frontend",
            "groups": ["web-frontend", "bastion-ssh-access"],
            "instance-profile": "gameday-web-profile",
            "tags": {"Name": "web-01", "Environment": "production"},
            "attachment-tags": {"Environment": "production", "Owner": "web-team"},
            "interfaces": [{"subnet": "backend", "groups": ["app-backend"],
                            "description": "gameday backend interface"}],
            "volumes": [{"device": "/dev/sdf", "size-gib": 8, "volume-type": "gp3"}]
          }],
          "auto-scaling-groups": [{"name": "gameday-web-asg", "subnets": ["frontend"],
            "min-size": 0, "max-size": 2, "attach": ["web-01"]}],
          "target-groups": [{"name": "gameday-web", "vpc": "gameday", "port": 8080,
            "targets": [{"instance": "web-01", "port": 8080}]}]
        }"#;
        // A literal of this crate: the unit test `compromised_instance_is_valid`
        // parses and validates it, so it cannot fail here.
        serde_json::from_str(text).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compromised_instance_is_valid() {
        let spec = EnvironmentSpec::compromised_instance();
        assert_eq!(spec.instances.len(), 1, "the literal parsed");
        assert_eq!(spec.instances[0].interfaces.len(), 1);
        assert_eq!(spec.validate(), Ok(()));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = serde_json::from_value::<EnvironmentSpec>(json!({
            "instances": [{"name": "a", "subnet": "s", "gropus": []}]
        }))
        .expect_err("typo");
        assert!(err.to_string().contains("gropus"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let spec: EnvironmentSpec = serde_json::from_value(json!({
            "vpcs": [
                {"name": "a", "cidr": "10.0.0.0/16", "subnets": [{"name": "a1", "cidr": "10.0.1.0/24"}]},
                {"name": "b", "cidr": "10.1.0.0/16", "subnets": [{"name": "b1", "cidr": "10.1.1.0/24"}]}
            ],
            "security-groups": [{"name": "web", "vpc": "a"}, {"name": "db", "vpc": "b"}, {"name": "web", "vpc": "nope"}],
            "instances": [{"name": "i", "subnet": "a1", "groups": ["web", "db", "ghost"],
                           "tags": {"cordon:gameday": "mine"},
                           "interfaces": [{"subnet": "b1"}], "instance-profile": "p",
                           "volumes": [{"device": "/dev/sdf"}, {"device": "/dev/sdf", "size-gib": 0}]}],
            "auto-scaling-groups": [{"name": "g", "subnets": [], "max-size": 1, "desired-capacity": 1, "attach": ["i"]}],
            "target-groups": [{"name": "t", "vpc": "a", "port": 80, "targets": [{"port": 80}, {"launched-by": "x", "port": 1}]}],
            "load-balancers": [{"name": "lb", "subnets": ["a1", "zz"], "listeners": [{"port": 80, "target-group": "tt"}]}],
            "users": [{"name": "u", "access-keys": 3}]
        }))
        .expect("shape is right");
        let problems: Vec<String> = spec
            .validate()
            .expect_err("problems")
            .iter()
            .map(ToString::to_string)
            .collect();
        let expected = [
            "security-groups[2].name: `web` is used twice",
            "security-groups[2].vpc: no VPC named `nope`",
            "instances[0].tags: `cordon:gameday` is the Game Day's own tag",
            "instances[0].groups[1]: group `db` is in VPC `b`, subnet `a1` in `a`",
            "instances[0].groups[2]: no security group named `ghost`",
            "instances[0].interfaces[0].subnet: subnet `b1` is in VPC `b`, the instance in `a`",
            "instances[0].instance-profile: no instance profile named `p`",
            "instances[0].volumes[1].device: device `/dev/sdf` is used twice",
            "instances[0].volumes[1].size-gib: must be at least 1",
            "auto-scaling-groups[0].subnets: needs at least one subnet",
            "auto-scaling-groups[0]: sizes must satisfy",
            "target-groups[0].targets[0]: name exactly one of",
            "target-groups[0].targets[1].launched-by: no Auto Scaling group named `x`",
            "load-balancers[0].subnets[1]: no subnet named `zz`",
            "load-balancers[0].listeners[0].target-group: no target group named `tt`",
            "users[0].access-keys: IAM allows two access keys per user, not 3",
        ];
        for want in expected {
            assert!(
                problems.iter().any(|p| p.starts_with(want)),
                "missing {want:?} in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    }
}
