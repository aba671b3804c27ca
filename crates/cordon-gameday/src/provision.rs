//! Builds an [`EnvironmentSpec`] in an account (in practice the emulator, or
//! a Game Day sandbox): one function per kind of resource, each recording
//! what it created in the [`Fixture`] before the next call, so a failure part
//! way still leaves a complete inventory to clean up.

use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag as AsgTag};
use aws_sdk_ec2::types::{
    Filter, IamInstanceProfileSpecification, InstanceNetworkInterfaceSpecification, InstanceType,
    IpPermission, IpRange, RequestLaunchTemplateData, ResourceType, Tag, TagSpecification,
    VolumeType,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action as ElbAction, ActionTypeEnum, ProtocolEnum, Tag as ElbTag, TargetDescription,
    TargetTypeEnum,
};
use aws_sdk_iam::types::Tag as IamTag;
use cordon_aws::client::AwsClients;
use sha2::{Digest, Sha256};

use crate::error::{FixtureError, ProvisionError, aws, incomplete};
use crate::fixture::lookup;
use crate::fixture::{
    AccessKey, AutoScalingGroup, Eni, Fixture, Group, Instance, InstanceProfile, LoadBalancer,
    ResourceKind, Role, SecretAccessKey, SecurityGroup, Subnet, TargetGroup, User, Volume, Vpc,
};
use crate::ledger::CreationJournal;
use crate::principal::Principal;
use crate::spec::{
    AutoScalingGroupSpec, EnvironmentSpec, InstanceProfileSpec, InstanceSpec, LoadBalancerSpec,
    RoleSpec, SecurityGroupSpec, TargetGroupSpec, UserSpec, VpcSpec,
};
use crate::{FALLBACK_AMI, OWNER_TAG, iam_path};

/// How often a wait for AWS to reach a state polls (the emulator is there
/// at the first look; a real account takes seconds).
const POLL: Duration = Duration::from_secs(2);
/// The longest the builder waits for one resource's state.
const WAIT_LIMIT: Duration = Duration::from_secs(300);

/// How one provisioning run names and marks what it creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionOptions {
    /// Value of the owner tag on every resource (and the key to find them again).
    pub owner: String,
    /// Appended as `-SUFFIX` to names that must be unique in an account or
    /// region (IAM names, Auto Scaling groups, launch templates, target
    /// groups, load balancers), so two runs can share an account.
    pub name_suffix: Option<String>,
}

impl Default for ProvisionOptions {
    /// A fresh owner, names as the spec gives them.
    fn default() -> Self {
        Self {
            owner: new_owner(),
            name_suffix: None,
        }
    }
}

impl ProvisionOptions {
    /// A fresh owner whose id also suffixes account-unique names: for an
    /// account that already holds other runs.
    pub fn unique() -> Self {
        let owner = new_owner();
        let suffix = owner.trim_start_matches("gd-").to_string();
        Self {
            owner,
            name_suffix: Some(suffix),
        }
    }
}

/// `gd-` and six hex digits from the clock and the process id: distinct
/// between runs of one machine.
fn new_owner() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let digest = Sha256::digest(format!("{nanos}|{}", std::process::id()));
    format!("gd-{}", hex::encode(&digest[..3]))
}

/// Builds `spec` with default options (see [`ProvisionOptions::default`]).
pub async fn provision(
    clients: &AwsClients,
    spec: &EnvironmentSpec,
) -> Result<Fixture, ProvisionError> {
    provision_with(clients, spec, &ProvisionOptions::default()).await
}

/// Builds `spec`: validates it (nothing is created if it has problems),
/// then creates every resource, tagged with the owner tag, and returns
/// their ids. On failure the error carries everything created so far.
pub async fn provision_with(
    clients: &AwsClients,
    spec: &EnvironmentSpec,
    options: &ProvisionOptions,
) -> Result<Fixture, ProvisionError> {
    build(clients, spec, options, None).await
}

/// [`provision_with`], journaling every creation in `journal` write-ahead
/// (the intent before the create call, the id after it), so that what it
/// created can be deleted even if this process dies part way: a Game Day.
pub async fn provision_journaled(
    clients: &AwsClients,
    spec: &EnvironmentSpec,
    options: &ProvisionOptions,
    journal: &CreationJournal,
) -> Result<Fixture, ProvisionError> {
    build(clients, spec, options, Some(journal.clone())).await
}

async fn build(
    clients: &AwsClients,
    spec: &EnvironmentSpec,
    options: &ProvisionOptions,
    journal: Option<CreationJournal>,
) -> Result<Fixture, ProvisionError> {
    spec.validate().map_err(|problems| ProvisionError {
        source: FixtureError::InvalidSpec(problems),
        created: Vec::new(),
    })?;
    let mut builder = Builder {
        clients,
        options,
        fixture: Fixture {
            owner: options.owner.clone(),
            region: clients.region.clone(),
            ..Fixture::default()
        },
        default_image: None,
        journal,
    };
    match builder.build(spec).await {
        Ok(()) => Ok(builder.fixture),
        Err(source) => Err(ProvisionError {
            source,
            created: builder.fixture.resources,
        }),
    }
}

struct Builder<'a> {
    clients: &'a AwsClients,
    options: &'a ProvisionOptions,
    fixture: Fixture,
    /// The AMI for instances that name none, looked up once.
    default_image: Option<String>,
    /// Where each creation is journaled, when the caller asked for it.
    journal: Option<CreationJournal>,
}

impl Builder<'_> {
    /// Journals, before the create call, that `kind` `name` (`id` when
    /// known in advance) is about to be created.
    async fn intend(
        &self,
        kind: ResourceKind,
        name: &str,
        id: Option<&str>,
    ) -> Result<(), FixtureError> {
        if let Some(journal) = &self.journal {
            journal.intend(kind, name, id).await?;
        }
        Ok(())
    }

    /// Records a creation in the fixture and the journal.
    async fn created(&mut self, kind: ResourceKind, id: &str) -> Result<(), FixtureError> {
        self.fixture.created(kind, id);
        if let Some(journal) = &self.journal {
            journal.created(kind, id).await?;
        }
        Ok(())
    }

    /// [`Builder::created`] unless the resource is recorded already.
    async fn created_once(&mut self, kind: ResourceKind, id: &str) -> Result<(), FixtureError> {
        if self
            .fixture
            .inventory()
            .iter()
            .any(|r| r.kind == kind && r.id == id)
        {
            return Ok(());
        }
        self.created(kind, id).await
    }

    async fn build(&mut self, spec: &EnvironmentSpec) -> Result<(), FixtureError> {
        self.account().await?;
        for vpc in &spec.vpcs {
            self.vpc(vpc).await?;
        }
        for group in &spec.security_groups {
            self.security_group(group).await?;
        }
        for role in &spec.roles {
            self.role(role).await?;
        }
        for profile in &spec.instance_profiles {
            self.instance_profile(profile).await?;
        }
        self.instances(&spec.instances).await?;
        for asg in &spec.auto_scaling_groups {
            self.auto_scaling_group(asg).await?;
        }
        for target_group in &spec.target_groups {
            self.target_group(target_group).await?;
        }
        for load_balancer in &spec.load_balancers {
            self.load_balancer(load_balancer).await?;
        }
        for user in &spec.users {
            self.user(user).await?;
        }
        Ok(())
    }

    /// An account-unique name for a logical one.
    fn named(&self, name: &str) -> String {
        match &self.options.name_suffix {
            Some(suffix) => format!("{name}-{suffix}"),
            None => name.to_string(),
        }
    }

    fn tag_spec(&self, kind: ResourceType, extra: &[(&str, &str)]) -> TagSpecification {
        let mut spec = TagSpecification::builder()
            .resource_type(kind)
            .tags(ec2_tag(OWNER_TAG, &self.options.owner));
        for (key, value) in extra {
            spec = spec.tags(ec2_tag(key, value));
        }
        spec.build()
    }

    fn iam_tags(&self, operation: &'static str, name: &str) -> Result<Vec<IamTag>, FixtureError> {
        let tag = IamTag::builder()
            .key(OWNER_TAG)
            .value(&self.options.owner)
            .build()
            .map_err(|source| FixtureError::Request {
                operation,
                resource: name.to_string(),
                source,
            })?;
        Ok(vec![tag])
    }

    fn subnet_id(&self, name: &str) -> Result<String, FixtureError> {
        lookup(&self.fixture.subnets, "subnet", name).map(|s| s.id.clone())
    }

    fn group_ids(&self, names: &[String]) -> Result<Vec<String>, FixtureError> {
        names
            .iter()
            .map(|n| {
                lookup(&self.fixture.security_groups, "security group", n).map(|g| g.id.clone())
            })
            .collect()
    }

    async fn account(&mut self) -> Result<(), FixtureError> {
        let out = self
            .clients
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(aws("sts:GetCallerIdentity", "the caller"))?;
        self.fixture.account_id = out
            .account()
            .ok_or_else(|| incomplete("sts:GetCallerIdentity", "the caller", "account"))?
            .to_string();
        Ok(())
    }

    async fn vpc(&mut self, spec: &VpcSpec) -> Result<(), FixtureError> {
        self.intend(ResourceKind::Vpc, &spec.name, None).await?;
        let ec2 = &self.clients.ec2;
        let out = ec2
            .create_vpc()
            .cidr_block(&spec.cidr)
            .tag_specifications(self.tag_spec(ResourceType::Vpc, &[("Name", &spec.name)]))
            .send()
            .await
            .map_err(aws("ec2:CreateVpc", &spec.name))?;
        let id = out
            .vpc()
            .and_then(|v| v.vpc_id())
            .ok_or_else(|| incomplete("ec2:CreateVpc", &spec.name, "VPC id"))?
            .to_string();
        self.created(ResourceKind::Vpc, &id).await?;
        self.fixture.vpcs.insert(
            spec.name.clone(),
            Vpc {
                id: id.clone(),
                cidr: spec.cidr.clone(),
            },
        );
        for subnet in &spec.subnets {
            let zone = match subnet.availability_zone.as_deref() {
                None => format!("{}a", self.fixture.region),
                Some(letter) if letter.len() == 1 => format!("{}{letter}", self.fixture.region),
                Some(zone) => zone.to_string(),
            };
            self.intend(ResourceKind::Subnet, &subnet.name, None)
                .await?;
            let out = ec2
                .create_subnet()
                .vpc_id(&id)
                .cidr_block(&subnet.cidr)
                .availability_zone(&zone)
                .tag_specifications(self.tag_spec(ResourceType::Subnet, &[("Name", &subnet.name)]))
                .send()
                .await
                .map_err(aws("ec2:CreateSubnet", &subnet.name))?;
            let subnet_id = out
                .subnet()
                .and_then(|s| s.subnet_id())
                .ok_or_else(|| incomplete("ec2:CreateSubnet", &subnet.name, "subnet id"))?
                .to_string();
            self.created(ResourceKind::Subnet, &subnet_id).await?;
            self.fixture.subnets.insert(
                subnet.name.clone(),
                Subnet {
                    id: subnet_id,
                    vpc_id: id.clone(),
                    availability_zone: zone,
                },
            );
        }
        Ok(())
    }

    async fn security_group(&mut self, spec: &SecurityGroupSpec) -> Result<(), FixtureError> {
        let vpc_id = lookup(&self.fixture.vpcs, "VPC", &spec.vpc)?.id.clone();
        self.intend(ResourceKind::SecurityGroup, &spec.name, None)
            .await?;
        let ec2 = &self.clients.ec2;
        let description = spec
            .description
            .clone()
            .unwrap_or_else(|| format!("Game Day group {}", spec.name));
        let out = ec2
            .create_security_group()
            .vpc_id(&vpc_id)
            .group_name(&spec.name)
            .description(description)
            .tag_specifications(self.tag_spec(ResourceType::SecurityGroup, &[("Name", &spec.name)]))
            .send()
            .await
            .map_err(aws("ec2:CreateSecurityGroup", &spec.name))?;
        let id = out
            .group_id()
            .ok_or_else(|| incomplete("ec2:CreateSecurityGroup", &spec.name, "group id"))?
            .to_string();
        self.created(ResourceKind::SecurityGroup, &id).await?;
        self.fixture.security_groups.insert(
            spec.name.clone(),
            SecurityGroup {
                id: id.clone(),
                name: spec.name.clone(),
                vpc_id,
            },
        );
        if spec.ingress.is_empty() {
            return Ok(());
        }
        let rules = spec.ingress.iter().map(|rule| {
            IpPermission::builder()
                .ip_protocol(&rule.protocol)
                .from_port(rule.port)
                .to_port(rule.to_port.unwrap_or(rule.port))
                .ip_ranges(
                    IpRange::builder()
                        .cidr_ip(&rule.cidr)
                        .set_description(rule.description.clone())
                        .build(),
                )
                .build()
        });
        ec2.authorize_security_group_ingress()
            .group_id(&id)
            .set_ip_permissions(Some(rules.collect()))
            .send()
            .await
            .map_err(aws("ec2:AuthorizeSecurityGroupIngress", &id))?;
        Ok(())
    }

    async fn role(&mut self, spec: &RoleSpec) -> Result<(), FixtureError> {
        let name = self.named(&spec.name);
        let iam = &self.clients.iam;
        let trust = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": spec.trusted_service}, "Action": "sts:AssumeRole"}]
        });
        self.intend(ResourceKind::Role, &spec.name, Some(&name))
            .await?;
        let out = iam
            .create_role()
            .role_name(&name)
            .path(iam_path(&self.options.owner))
            .assume_role_policy_document(trust.to_string())
            .set_tags(Some(self.iam_tags("iam:CreateRole", &name)?))
            .send()
            .await
            .map_err(aws("iam:CreateRole", &name))?;
        let arn = out
            .role()
            .map(|r| r.arn().to_string())
            .ok_or_else(|| incomplete("iam:CreateRole", &name, "role"))?;
        self.created(ResourceKind::Role, &name).await?;
        Principal::Role(&name)
            .put_inline_policies(self.clients, &spec.inline_policies)
            .await?;
        self.fixture
            .roles
            .insert(spec.name.clone(), Role { name, arn });
        Ok(())
    }

    async fn instance_profile(&mut self, spec: &InstanceProfileSpec) -> Result<(), FixtureError> {
        let name = self.named(&spec.name);
        let iam = &self.clients.iam;
        self.intend(ResourceKind::InstanceProfile, &spec.name, Some(&name))
            .await?;
        let out = iam
            .create_instance_profile()
            .instance_profile_name(&name)
            .path(iam_path(&self.options.owner))
            .set_tags(Some(self.iam_tags("iam:CreateInstanceProfile", &name)?))
            .send()
            .await
            .map_err(aws("iam:CreateInstanceProfile", &name))?;
        let arn = out
            .instance_profile()
            .map(|p| p.arn().to_string())
            .ok_or_else(|| incomplete("iam:CreateInstanceProfile", &name, "instance profile"))?;
        self.created(ResourceKind::InstanceProfile, &name).await?;
        let role_name = match &spec.role {
            Some(role) => {
                let role_name = lookup(&self.fixture.roles, "role", role)?.name.clone();
                iam.add_role_to_instance_profile()
                    .instance_profile_name(&name)
                    .role_name(&role_name)
                    .send()
                    .await
                    .map_err(aws("iam:AddRoleToInstanceProfile", &name))?;
                Some(role_name)
            }
            None => None,
        };
        self.fixture.instance_profiles.insert(
            spec.name.clone(),
            InstanceProfile {
                name,
                arn,
                role_name,
            },
        );
        Ok(())
    }

    /// The spec's AMI, or the first Amazon-owned image the account lists
    /// (the emulator's fixed one when it lists none).
    async fn image(&mut self, wanted: Option<&String>) -> String {
        if let Some(image) = wanted {
            return image.clone();
        }
        if let Some(image) = &self.default_image {
            return image.clone();
        }
        let listed = self
            .clients
            .ec2
            .describe_images()
            .owners("amazon")
            .send()
            .await
            .ok()
            .and_then(|out| {
                out.images()
                    .iter()
                    .filter_map(|i| i.image_id().map(str::to_string))
                    .min()
            });
        let image = listed.unwrap_or_else(|| FALLBACK_AMI.to_string());
        self.default_image = Some(image.clone());
        image
    }

    /// Launches every instance, waits for them to run, attaches their extra
    /// interfaces and volumes, then reads back what AWS made of them.
    async fn instances(&mut self, specs: &[InstanceSpec]) -> Result<(), FixtureError> {
        if specs.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::new();
        for spec in specs {
            ids.push(self.launch(spec).await?);
        }
        wait_for_instances(self.clients, &ids, "running").await?;
        for (spec, id) in specs.iter().zip(&ids) {
            self.attach_interfaces(spec, id).await?;
            self.attach_volumes(spec, id).await?;
        }
        self.read_back(specs, &ids).await
    }

    async fn launch(&mut self, spec: &InstanceSpec) -> Result<String, FixtureError> {
        let image_id = self.image(spec.image_id.as_ref()).await;
        let subnet_id = self.subnet_id(&spec.subnet)?;
        let groups = self.group_ids(&spec.groups)?;
        let profile_arn = match &spec.instance_profile {
            Some(p) => Some(
                lookup(&self.fixture.instance_profiles, "instance profile", p)?
                    .arn
                    .clone(),
            ),
            None => None,
        };
        let tags: Vec<(&str, &str)> = spec
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let primary = InstanceNetworkInterfaceSpecification::builder()
            .device_index(0)
            .subnet_id(&subnet_id)
            .set_groups(Some(groups))
            .build();
        self.intend(ResourceKind::Instance, &spec.name, None)
            .await?;
        let out = self
            .clients
            .ec2
            .run_instances()
            .image_id(&image_id)
            .instance_type(InstanceType::from(spec.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .network_interfaces(primary)
            .set_iam_instance_profile(
                profile_arn
                    .as_ref()
                    .map(|arn| IamInstanceProfileSpecification::builder().arn(arn).build()),
            )
            .tag_specifications(self.tag_spec(ResourceType::Instance, &tags))
            .tag_specifications(self.tag_spec(ResourceType::Volume, &[]))
            .send()
            .await
            .map_err(aws("ec2:RunInstances", &spec.name))?;
        let id = out
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .ok_or_else(|| incomplete("ec2:RunInstances", &spec.name, "instance id"))?
            .to_string();
        self.created(ResourceKind::Instance, &id).await?;
        let subnet = lookup(&self.fixture.subnets, "subnet", &spec.subnet)?;
        let instance = Instance {
            id: id.clone(),
            instance_type: spec.instance_type.clone(),
            image_id,
            availability_zone: subnet.availability_zone.clone(),
            vpc_id: subnet.vpc_id.clone(),
            instance_profile_arn: profile_arn,
            auto_scaling_group: None,
            tags: spec.tags.clone(),
            enis: Vec::new(),
            volumes: Vec::new(),
        };
        self.fixture.instances.insert(spec.name.clone(), instance);
        Ok(id)
    }

    async fn attach_interfaces(
        &mut self,
        spec: &InstanceSpec,
        instance_id: &str,
    ) -> Result<(), FixtureError> {
        for (index, interface) in spec.interfaces.iter().enumerate() {
            let subnet_id = self.subnet_id(&interface.subnet)?;
            let groups = self.group_ids(&interface.groups)?;
            self.intend(ResourceKind::NetworkInterface, &spec.name, None)
                .await?;
            let ec2 = &self.clients.ec2;
            let out = ec2
                .create_network_interface()
                .subnet_id(&subnet_id)
                .set_groups(Some(groups))
                .set_description(interface.description.clone())
                .tag_specifications(self.tag_spec(ResourceType::NetworkInterface, &[]))
                .send()
                .await
                .map_err(aws("ec2:CreateNetworkInterface", &spec.name))?;
            let eni = out
                .network_interface()
                .and_then(|n| n.network_interface_id())
                .ok_or_else(|| {
                    incomplete("ec2:CreateNetworkInterface", &spec.name, "interface id")
                })?
                .to_string();
            self.created(ResourceKind::NetworkInterface, &eni).await?;
            let device_index = i32::try_from(index + 1).unwrap_or(i32::MAX);
            ec2.attach_network_interface()
                .network_interface_id(&eni)
                .instance_id(instance_id)
                .device_index(device_index)
                .send()
                .await
                .map_err(aws("ec2:AttachNetworkInterface", &eni))?;
        }
        Ok(())
    }

    async fn attach_volumes(
        &mut self,
        spec: &InstanceSpec,
        instance_id: &str,
    ) -> Result<(), FixtureError> {
        let zone = lookup(&self.fixture.instances, "instance", &spec.name)?
            .availability_zone
            .clone();
        for volume in &spec.volumes {
            self.intend(ResourceKind::Volume, &spec.name, None).await?;
            let ec2 = self.clients.ec2.clone();
            let out = ec2
                .create_volume()
                .availability_zone(&zone)
                .size(volume.size_gib)
                .set_volume_type(volume.volume_type.as_deref().map(VolumeType::from))
                .tag_specifications(self.tag_spec(ResourceType::Volume, &[]))
                .send()
                .await
                .map_err(aws("ec2:CreateVolume", &spec.name))?;
            let id = out
                .volume_id()
                .ok_or_else(|| incomplete("ec2:CreateVolume", &spec.name, "volume id"))?
                .to_string();
            self.created(ResourceKind::Volume, &id).await?;
            wait_for_volume_available(self.clients, &id).await?;
            ec2.attach_volume()
                .volume_id(&id)
                .instance_id(instance_id)
                .device(&volume.device)
                .send()
                .await
                .map_err(aws("ec2:AttachVolume", &id))?;
        }
        Ok(())
    }

    /// Fills in each instance's interfaces (primary first, with their
    /// groups and addresses) and volumes (root first), then tags them all.
    async fn read_back(
        &mut self,
        specs: &[InstanceSpec],
        ids: &[String],
    ) -> Result<(), FixtureError> {
        let ec2 = &self.clients.ec2;
        let resource = format!("instance(s) {}", ids.join(", "));
        let described = ec2
            .describe_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(aws("ec2:DescribeInstances", &resource))?;
        let interfaces = ec2
            .describe_network_interfaces()
            .filters(
                Filter::builder()
                    .name("attachment.instance-id")
                    .set_values(Some(ids.to_vec()))
                    .build(),
            )
            .send()
            .await
            .map_err(aws("ec2:DescribeNetworkInterfaces", &resource))?;
        for spec in specs {
            let id = lookup(&self.fixture.instances, "instance", &spec.name)?
                .id
                .clone();
            let enis = interfaces_of(interfaces.network_interfaces(), &id);
            let instance = described
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find(|i| i.instance_id() == Some(id.as_str()));
            let volumes = volumes_of(instance, spec);
            self.tag_attachments(spec, &id, &enis, &volumes).await?;
            // The primary interface and root volume came with the instance;
            // they are the run's too (and outlive it if someone changed
            // their DeleteOnTermination).
            for eni in &enis {
                self.created_once(ResourceKind::NetworkInterface, &eni.id)
                    .await?;
            }
            for volume in &volumes {
                self.created_once(ResourceKind::Volume, &volume.id).await?;
            }
            if let Some(instance) = self.fixture.instances.get_mut(&spec.name) {
                instance.enis = enis;
                instance.volumes = volumes;
            }
        }
        Ok(())
    }

    /// Puts the owner tag and the spec's attachment tags on every interface
    /// and volume of the instance.
    async fn tag_attachments(
        &self,
        spec: &InstanceSpec,
        instance_id: &str,
        enis: &[Eni],
        volumes: &[Volume],
    ) -> Result<(), FixtureError> {
        let resources = enis
            .iter()
            .map(|e| e.id.clone())
            .chain(volumes.iter().map(|v| v.id.clone()));
        let mut tagging = self
            .clients
            .ec2
            .create_tags()
            .set_resources(Some(resources.collect()))
            .tags(ec2_tag(OWNER_TAG, &self.options.owner));
        for (key, value) in &spec.attachment_tags {
            tagging = tagging.tags(ec2_tag(key, value));
        }
        tagging
            .send()
            .await
            .map_err(aws("ec2:CreateTags", instance_id))?;
        Ok(())
    }

    async fn auto_scaling_group(
        &mut self,
        spec: &AutoScalingGroupSpec,
    ) -> Result<(), FixtureError> {
        let name = self.named(&spec.name);
        let launch_template_id = self.launch_template(spec, &name).await?;
        let subnets = spec
            .subnets
            .iter()
            .map(|s| self.subnet_id(s))
            .collect::<Result<Vec<_>, _>>()?;
        self.intend(ResourceKind::AutoScalingGroup, &spec.name, Some(&name))
            .await?;
        let autoscaling = self.clients.autoscaling.clone();
        autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(&name)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(&launch_template_id)
                    .version("$Latest")
                    .build(),
            )
            .min_size(spec.min_size)
            .max_size(spec.max_size)
            .desired_capacity(spec.desired_capacity)
            .vpc_zone_identifier(subnets.join(","))
            .tags(
                AsgTag::builder()
                    .key(OWNER_TAG)
                    .value(&self.options.owner)
                    .propagate_at_launch(true)
                    .resource_id(&name)
                    .resource_type("auto-scaling-group")
                    .build(),
            )
            .send()
            .await
            .map_err(aws("autoscaling:CreateAutoScalingGroup", &name))?;
        self.created(ResourceKind::AutoScalingGroup, &name).await?;
        let launched = self.members(&name, spec.desired_capacity).await?;
        let mut attached = Vec::new();
        for instance in &spec.attach {
            attached.push(
                lookup(&self.fixture.instances, "instance", instance)?
                    .id
                    .clone(),
            );
        }
        if !attached.is_empty() {
            autoscaling
                .attach_instances()
                .auto_scaling_group_name(&name)
                .set_instance_ids(Some(attached.clone()))
                .send()
                .await
                .map_err(aws("autoscaling:AttachInstances", &name))?;
        }
        for instance in &spec.attach {
            if let Some(record) = self.fixture.instances.get_mut(instance) {
                record.auto_scaling_group = Some(name.clone());
            }
        }
        self.fixture.auto_scaling_groups.insert(
            spec.name.clone(),
            AutoScalingGroup {
                name,
                launch_template_id,
                launched,
                attached,
            },
        );
        Ok(())
    }

    /// The launch template of a group, named like it.
    async fn launch_template(
        &mut self,
        spec: &AutoScalingGroupSpec,
        name: &str,
    ) -> Result<String, FixtureError> {
        let image_id = self.image(spec.image_id.as_ref()).await;
        self.intend(ResourceKind::LaunchTemplate, &spec.name, None)
            .await?;
        let out = self
            .clients
            .ec2
            .create_launch_template()
            .launch_template_name(name)
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id(image_id)
                    .instance_type(InstanceType::from(spec.instance_type.as_str()))
                    .build(),
            )
            .tag_specifications(self.tag_spec(ResourceType::LaunchTemplate, &[]))
            .send()
            .await
            .map_err(aws("ec2:CreateLaunchTemplate", name))?;
        let id = out
            .launch_template()
            .and_then(|t| t.launch_template_id())
            .ok_or_else(|| incomplete("ec2:CreateLaunchTemplate", name, "launch template id"))?
            .to_string();
        self.created(ResourceKind::LaunchTemplate, &id).await?;
        Ok(id)
    }

    /// Waits until the group has launched `count` instances; their ids, sorted.
    async fn members(&self, name: &str, count: i32) -> Result<Vec<String>, FixtureError> {
        let autoscaling = self.clients.autoscaling.clone();
        let wanted = usize::try_from(count).unwrap_or_default();
        let resource = format!("Auto Scaling group {name}");
        wait_for(&resource, "launched its desired capacity", || {
            let request = autoscaling
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(name)
                .send();
            async move {
                let out = request
                    .await
                    .map_err(aws("autoscaling:DescribeAutoScalingGroups", name))?;
                let mut members: Vec<String> = out
                    .auto_scaling_groups()
                    .iter()
                    .flat_map(|g| g.instances())
                    .filter_map(|i| i.instance_id().map(str::to_string))
                    .collect();
                members.sort();
                Ok((members.len() >= wanted).then_some(members))
            }
        })
        .await
    }

    async fn target_group(&mut self, spec: &TargetGroupSpec) -> Result<(), FixtureError> {
        let name = self.named(&spec.name);
        let vpc_id = lookup(&self.fixture.vpcs, "VPC", &spec.vpc)?.id.clone();
        self.intend(ResourceKind::TargetGroup, &spec.name, None)
            .await?;
        let elb = &self.clients.elbv2;
        let out = elb
            .create_target_group()
            .name(&name)
            .protocol(ProtocolEnum::from(spec.protocol.as_str()))
            .port(spec.port)
            .vpc_id(vpc_id)
            .target_type(TargetTypeEnum::Instance)
            .tags(
                ElbTag::builder()
                    .key(OWNER_TAG)
                    .value(&self.options.owner)
                    .build(),
            )
            .send()
            .await
            .map_err(aws("elasticloadbalancing:CreateTargetGroup", &name))?;
        let arn = out
            .target_groups()
            .first()
            .and_then(|t| t.target_group_arn())
            .ok_or_else(|| incomplete("elasticloadbalancing:CreateTargetGroup", &name, "ARN"))?
            .to_string();
        self.created(ResourceKind::TargetGroup, &arn).await?;
        let mut targets = Vec::new();
        for target in &spec.targets {
            let ids = match (&target.instance, &target.launched_by) {
                (Some(instance), _) => {
                    vec![
                        lookup(&self.fixture.instances, "instance", instance)?
                            .id
                            .clone(),
                    ]
                }
                (None, Some(asg)) => {
                    lookup(&self.fixture.auto_scaling_groups, "Auto Scaling group", asg)?
                        .launched
                        .clone()
                }
                // Validation requires one of the two.
                (None, None) => Vec::new(),
            };
            targets.extend(ids.into_iter().map(|id| (id, target.port)));
        }
        if !targets.is_empty() {
            let descriptions = targets
                .iter()
                .map(|(id, port)| TargetDescription::builder().id(id).port(*port).build());
            elb.register_targets()
                .target_group_arn(&arn)
                .set_targets(Some(descriptions.collect()))
                .send()
                .await
                .map_err(aws("elasticloadbalancing:RegisterTargets", &arn))?;
        }
        self.fixture
            .target_groups
            .insert(spec.name.clone(), TargetGroup { name, arn, targets });
        Ok(())
    }

    async fn load_balancer(&mut self, spec: &LoadBalancerSpec) -> Result<(), FixtureError> {
        let name = self.named(&spec.name);
        let subnets = spec
            .subnets
            .iter()
            .map(|s| self.subnet_id(s))
            .collect::<Result<Vec<_>, _>>()?;
        let groups = self.group_ids(&spec.groups)?;
        self.intend(ResourceKind::LoadBalancer, &spec.name, None)
            .await?;
        let elb = &self.clients.elbv2;
        let out = elb
            .create_load_balancer()
            .name(&name)
            .set_subnets(Some(subnets))
            .set_security_groups(Some(groups))
            .tags(
                ElbTag::builder()
                    .key(OWNER_TAG)
                    .value(&self.options.owner)
                    .build(),
            )
            .send()
            .await
            .map_err(aws("elasticloadbalancing:CreateLoadBalancer", &name))?;
        let arn = out
            .load_balancers()
            .first()
            .and_then(|l| l.load_balancer_arn())
            .ok_or_else(|| incomplete("elasticloadbalancing:CreateLoadBalancer", &name, "ARN"))?
            .to_string();
        self.created(ResourceKind::LoadBalancer, &arn).await?;
        let mut listener_arns = Vec::new();
        for listener in &spec.listeners {
            let target = lookup(
                &self.fixture.target_groups,
                "target group",
                &listener.target_group,
            )?;
            let out = elb
                .create_listener()
                .load_balancer_arn(&arn)
                .protocol(ProtocolEnum::from(listener.protocol.as_str()))
                .port(listener.port)
                .default_actions(
                    ElbAction::builder()
                        .r#type(ActionTypeEnum::Forward)
                        .target_group_arn(&target.arn)
                        .build(),
                )
                .send()
                .await
                .map_err(aws("elasticloadbalancing:CreateListener", &arn))?;
            listener_arns.extend(
                out.listeners()
                    .iter()
                    .filter_map(|l| l.listener_arn().map(str::to_string)),
            );
        }
        self.fixture.load_balancers.insert(
            spec.name.clone(),
            LoadBalancer {
                name,
                arn,
                listener_arns,
            },
        );
        Ok(())
    }

    async fn user(&mut self, spec: &UserSpec) -> Result<(), FixtureError> {
        let name = self.named(&spec.name);
        let iam = &self.clients.iam;
        self.intend(ResourceKind::User, &spec.name, Some(&name))
            .await?;
        let out = iam
            .create_user()
            .user_name(&name)
            .path(iam_path(&self.options.owner))
            .set_tags(Some(self.iam_tags("iam:CreateUser", &name)?))
            .send()
            .await
            .map_err(aws("iam:CreateUser", &name))?;
        let arn = out
            .user()
            .map(|u| u.arn().to_string())
            .ok_or_else(|| incomplete("iam:CreateUser", &name, "user"))?;
        self.created(ResourceKind::User, &name).await?;
        Principal::User(&name)
            .put_inline_policies(self.clients, &spec.inline_policies)
            .await?;
        let mut access_keys = Vec::new();
        for _ in 0..spec.access_keys {
            let out = iam
                .create_access_key()
                .user_name(&name)
                .send()
                .await
                .map_err(aws("iam:CreateAccessKey", &name))?;
            let key = out
                .access_key()
                .ok_or_else(|| incomplete("iam:CreateAccessKey", &name, "access key"))?;
            access_keys.push(AccessKey {
                id: key.access_key_id().to_string(),
                secret: SecretAccessKey::new(key.secret_access_key()),
            });
        }
        if spec.console_password {
            iam.create_login_profile()
                .user_name(&name)
                .password(console_password(&self.options.owner, &name))
                .send()
                .await
                .map_err(aws("iam:CreateLoginProfile", &name))?;
        }
        self.fixture.users.insert(
            spec.name.clone(),
            User {
                name,
                arn,
                access_keys,
            },
        );
        Ok(())
    }
}

/// A password nobody needs to know (the scenario only needs one to exist),
/// meeting the usual complexity rules.
fn console_password(owner: &str, user: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let digest = Sha256::digest(format!("{owner}|{user}|{nanos}"));
    format!("Gd-{}-Zz9!", hex::encode(&digest[..12]))
}

/// The interfaces attached to `instance_id`, with their groups and
/// addresses, by device index (primary first).
fn interfaces_of(
    interfaces: &[aws_sdk_ec2::types::NetworkInterface],
    instance_id: &str,
) -> Vec<Eni> {
    let mut enis: Vec<Eni> = interfaces
        .iter()
        .filter(|n| n.attachment().and_then(|a| a.instance_id()) == Some(instance_id))
        .map(|n| Eni {
            id: n.network_interface_id().unwrap_or_default().to_string(),
            device_index: n.attachment().and_then(|a| a.device_index()).unwrap_or(0),
            subnet_id: n.subnet_id().unwrap_or_default().to_string(),
            private_ip: n.private_ip_address().unwrap_or_default().to_string(),
            groups: n
                .groups()
                .iter()
                .map(|g| Group {
                    id: g.group_id().unwrap_or_default().to_string(),
                    name: g.group_name().unwrap_or_default().to_string(),
                })
                .collect(),
        })
        .collect();
    enis.sort_by_key(|e| e.device_index);
    enis
}

/// The instance's volumes: the root one first (the one device the spec did
/// not ask for), then the spec's, in its order.
fn volumes_of(instance: Option<&aws_sdk_ec2::types::Instance>, spec: &InstanceSpec) -> Vec<Volume> {
    let mappings: Vec<Volume> = instance
        .map(|i| i.block_device_mappings())
        .unwrap_or_default()
        .iter()
        .filter_map(|m| {
            Some(Volume {
                id: m.ebs()?.volume_id()?.to_string(),
                device: m.device_name()?.to_string(),
            })
        })
        .collect();
    let asked = |m: &&Volume| spec.volumes.iter().any(|v| v.device == m.device);
    let mut volumes: Vec<Volume> = mappings.iter().filter(|m| !asked(m)).cloned().collect();
    for wanted in &spec.volumes {
        volumes.extend(
            mappings
                .iter()
                .filter(|m| m.device == wanted.device)
                .cloned(),
        );
    }
    volumes
}

fn ec2_tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// Waits until every instance of `ids` is in `state` (`running`, `terminated`).
pub(crate) async fn wait_for_instances(
    clients: &AwsClients,
    ids: &[String],
    state: &'static str,
) -> Result<(), FixtureError> {
    let resource = format!("instance(s) {}", ids.join(", "));
    wait_for(&resource, state, || {
        let request = clients
            .ec2
            .describe_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send();
        let resource = resource.clone();
        async move {
            let out = request
                .await
                .map_err(aws("ec2:DescribeInstances", &resource))?;
            let there = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .all(|i| {
                    i.state()
                        .and_then(|s| s.name())
                        .is_some_and(|n| n.as_str() == state)
                });
            Ok(there.then_some(()))
        }
    })
    .await
}

/// Waits until a volume can be attached (or deleted).
pub(crate) async fn wait_for_volume_available(
    clients: &AwsClients,
    id: &str,
) -> Result<(), FixtureError> {
    wait_for(id, "available", || {
        let request = clients.ec2.describe_volumes().volume_ids(id).send();
        async move {
            let out = request.await.map_err(aws("ec2:DescribeVolumes", id))?;
            let available = out
                .volumes()
                .iter()
                .all(|v| v.state().is_some_and(|s| s.as_str() == "available"));
            Ok(available.then_some(()))
        }
    })
    .await
}

/// Polls `check` until it answers with a value, or [`WAIT_LIMIT`] has passed.
pub(crate) async fn wait_for<T, F, Fut>(
    resource: &str,
    state: &'static str,
    mut check: F,
) -> Result<T, FixtureError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, FixtureError>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if started.elapsed() >= WAIT_LIMIT {
            return Err(FixtureError::Timeout {
                resource: resource.to_string(),
                state,
                waited: WAIT_LIMIT,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}
