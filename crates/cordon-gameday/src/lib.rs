//! Game Day fixtures: a realistic compromised instance, provisioned in an AWS
//! account (in practice the local emulator), plus a deterministic snapshot of
//! every resource attribute cordon's EC2 playbooks touch and a field-by-field
//! diff between two snapshots.
//!
//! The snapshot is the yardstick for "rollback is exact": take one before a
//! run, one after `cordon rollback`, and [`diff_states`] must be empty.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow};
use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, IamInstanceProfileSpecification, InstanceAttributeName,
    InstanceNetworkInterfaceSpecification, InstanceType, RequestLaunchTemplateData, ResourceType,
    Tag, TagSpecification, VolumeType,
};
use aws_sdk_elasticloadbalancingv2::types::{ProtocolEnum, TargetDescription, TargetTypeEnum};
use cordon_aws::client::AwsClients;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The default finding type of a Game Day finding.
pub const DEFAULT_FINDING_TYPE: &str = "Backdoor:EC2/C&CActivity.B!DNS";
/// AMI used when the account lists none (moto ships this id).
const FALLBACK_AMI: &str = "ami-12c6146b";
/// Availability zone of every fixture resource.
const AZ_SUFFIX: &str = "a";

/// A security group of the fixture.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Group {
    /// `sg-…`
    pub id: String,
    /// Its name.
    pub name: String,
}

/// A network interface of the fixture instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Eni {
    /// `eni-…`
    pub id: String,
    /// Device index on the instance.
    pub device_index: i32,
    /// Its subnet.
    pub subnet_id: String,
    /// Its private IPv4 address.
    pub private_ip: String,
    /// Its security groups at provisioning time.
    pub groups: Vec<Group>,
}

/// The ids of everything [`provision_compromised_instance`] created.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Fixture {
    /// Account (from STS).
    pub account_id: String,
    /// Region the clients talk to.
    pub region: String,
    /// Availability zone of the instance.
    pub availability_zone: String,
    /// The VPC.
    pub vpc_id: String,
    /// Primary and secondary subnets.
    pub subnet_ids: Vec<String>,
    /// All three groups, in creation order.
    pub security_groups: Vec<Group>,
    /// The compromised instance.
    pub instance_id: String,
    /// Its type.
    pub instance_type: String,
    /// Its AMI.
    pub image_id: String,
    /// Primary ENI first, then the one at device index 1.
    pub enis: Vec<Eni>,
    /// Root volume first, then the extra one.
    pub volume_ids: Vec<String>,
    /// IAM role in the instance profile.
    pub role_name: String,
    /// Instance profile name.
    pub instance_profile_name: String,
    /// Instance profile ARN.
    pub instance_profile_arn: String,
    /// Launch template backing the ASG.
    pub launch_template_id: String,
    /// The Auto Scaling group holding the instance.
    pub asg_name: String,
    /// Target group with the instance registered on port 8080.
    pub target_group_arn: String,
    /// The port it is registered on.
    pub target_port: i32,
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn tags_spec(kind: ResourceType, tags: &[(&str, &str)]) -> TagSpecification {
    let mut b = TagSpecification::builder().resource_type(kind);
    for (k, v) in tags {
        b = b.tags(tag(k, v));
    }
    b.build()
}

/// Provisions a compromised instance with everything the high-severity
/// playbook acts on: two ENIs with different groups, two volumes, an
/// instance profile, an Auto Scaling group and a target group.
pub async fn provision_compromised_instance(clients: &AwsClients) -> Result<Fixture> {
    let ec2 = &clients.ec2;
    let account_id = clients
        .sts
        .get_caller_identity()
        .send()
        .await
        .context("sts:GetCallerIdentity")?
        .account()
        .unwrap_or_default()
        .to_string();
    let region = clients.region.clone();
    let az = format!("{region}{AZ_SUFFIX}");
    // Unique suffix so two fixtures can live in one account.
    let suffix = {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!("{:x}", nanos & 0xff_ffff)
    };

    let vpc_id = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .tag_specifications(tags_spec(ResourceType::Vpc, &[("Name", "gameday-vpc")]))
        .send()
        .await
        .context("ec2:CreateVpc")?
        .vpc()
        .and_then(|v| v.vpc_id())
        .ok_or_else(|| anyhow!("CreateVpc returned no id"))?
        .to_string();

    let mut subnet_ids = Vec::new();
    for cidr in ["10.0.1.0/24", "10.0.2.0/24"] {
        let id = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(cidr)
            .availability_zone(&az)
            .send()
            .await
            .context("ec2:CreateSubnet")?
            .subnet()
            .and_then(|s| s.subnet_id())
            .ok_or_else(|| anyhow!("CreateSubnet returned no id"))?
            .to_string();
        subnet_ids.push(id);
    }

    let mut security_groups = Vec::new();
    for name in ["web-frontend", "bastion-ssh-access", "app-backend"] {
        let name = format!("{name}-{suffix}");
        let id = ec2
            .create_security_group()
            .vpc_id(&vpc_id)
            .group_name(&name)
            .description(format!("gameday {name}"))
            .send()
            .await
            .context("ec2:CreateSecurityGroup")?
            .group_id()
            .ok_or_else(|| anyhow!("CreateSecurityGroup returned no id"))?
            .to_string();
        security_groups.push(Group { id, name });
    }

    let image_id = ec2
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .ok()
        .and_then(|out| {
            let mut ids: Vec<String> = out
                .images()
                .iter()
                .filter_map(|i| i.image_id().map(str::to_string))
                .collect();
            ids.sort();
            ids.into_iter().next()
        })
        .unwrap_or_else(|| FALLBACK_AMI.to_string());

    let instance_type = InstanceType::T3Micro;
    let run = ec2
        .run_instances()
        .image_id(&image_id)
        .instance_type(instance_type.clone())
        .min_count(1)
        .max_count(1)
        // The primary ENI's groups go in a network-interface spec, not as
        // instance-level groups: moto unions instance-level groups into every
        // attached ENI's groups, which real EC2 does not.
        .network_interfaces(
            InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .subnet_id(&subnet_ids[0])
                .groups(&security_groups[0].id)
                .groups(&security_groups[1].id)
                .build(),
        )
        .tag_specifications(tags_spec(
            ResourceType::Instance,
            &[("Name", "web-01"), ("Environment", "production")],
        ))
        .send()
        .await
        .context("ec2:RunInstances")?;
    let instance = run
        .instances()
        .first()
        .ok_or_else(|| anyhow!("RunInstances returned no instance"))?;
    let instance_id = instance
        .instance_id()
        .ok_or_else(|| anyhow!("RunInstances returned no instance id"))?
        .to_string();

    // Second ENI, different subnet and group, at device index 1.
    let eni2 = ec2
        .create_network_interface()
        .subnet_id(&subnet_ids[1])
        .groups(&security_groups[2].id)
        .description("gameday backend interface")
        .send()
        .await
        .context("ec2:CreateNetworkInterface")?
        .network_interface()
        .and_then(|n| n.network_interface_id())
        .ok_or_else(|| anyhow!("CreateNetworkInterface returned no id"))?
        .to_string();
    ec2.attach_network_interface()
        .network_interface_id(&eni2)
        .instance_id(&instance_id)
        .device_index(1)
        .send()
        .await
        .context("ec2:AttachNetworkInterface")?;

    // Extra data volume.
    let extra_volume = ec2
        .create_volume()
        .availability_zone(&az)
        .size(8)
        .volume_type(VolumeType::Gp3)
        .send()
        .await
        .context("ec2:CreateVolume")?
        .volume_id()
        .ok_or_else(|| anyhow!("CreateVolume returned no id"))?
        .to_string();
    ec2.attach_volume()
        .volume_id(&extra_volume)
        .instance_id(&instance_id)
        .device("/dev/sdf")
        .send()
        .await
        .context("ec2:AttachVolume")?;

    // Read back ENIs and the root volume.
    let described = describe_instance(clients, &instance_id).await?;
    let mut enis = Vec::new();
    for ni in described.network_interfaces() {
        let id = ni.network_interface_id().unwrap_or_default().to_string();
        let device_index = ni.attachment().and_then(|a| a.device_index()).unwrap_or(0);
        let groups = ni
            .groups()
            .iter()
            .map(|g| Group {
                id: g.group_id().unwrap_or_default().to_string(),
                name: g.group_name().unwrap_or_default().to_string(),
            })
            .collect();
        enis.push(Eni {
            id,
            device_index,
            subnet_id: ni.subnet_id().unwrap_or_default().to_string(),
            private_ip: ni.private_ip_address().unwrap_or_default().to_string(),
            groups,
        });
    }
    if !enis.iter().any(|e| e.id == eni2) {
        // Some emulator versions list only the primary ENI on the instance.
        let out = ec2
            .describe_network_interfaces()
            .network_interface_ids(&eni2)
            .send()
            .await
            .context("ec2:DescribeNetworkInterfaces")?;
        for ni in out.network_interfaces() {
            enis.push(Eni {
                id: eni2.clone(),
                device_index: 1,
                subnet_id: ni.subnet_id().unwrap_or_default().to_string(),
                private_ip: ni.private_ip_address().unwrap_or_default().to_string(),
                groups: ni
                    .groups()
                    .iter()
                    .map(|g| Group {
                        id: g.group_id().unwrap_or_default().to_string(),
                        name: g.group_name().unwrap_or_default().to_string(),
                    })
                    .collect(),
            });
        }
    }
    enis.sort_by_key(|e| e.device_index);
    let mut volume_ids: Vec<String> = described
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs().and_then(|e| e.volume_id()).map(str::to_string))
        .filter(|v| *v != extra_volume)
        .collect();
    volume_ids.truncate(1);
    volume_ids.push(extra_volume);

    // Tag ENIs and volumes like a real workload would be.
    let mut to_tag: Vec<String> = enis.iter().map(|e| e.id.clone()).collect();
    to_tag.extend(volume_ids.iter().cloned());
    ec2.create_tags()
        .set_resources(Some(to_tag))
        .tags(tag("Environment", "production"))
        .tags(tag("Owner", "web-team"))
        .send()
        .await
        .context("ec2:CreateTags")?;

    // IAM role + instance profile, associated.
    let role_name = format!("gameday-web-role-{suffix}");
    let instance_profile_name = format!("gameday-web-profile-{suffix}");
    clients
        .iam
        .create_role()
        .role_name(&role_name)
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .context("iam:CreateRole")?;
    let instance_profile_arn = clients
        .iam
        .create_instance_profile()
        .instance_profile_name(&instance_profile_name)
        .send()
        .await
        .context("iam:CreateInstanceProfile")?
        .instance_profile()
        .map(|p| p.arn().to_string())
        .ok_or_else(|| anyhow!("CreateInstanceProfile returned no profile"))?;
    clients
        .iam
        .add_role_to_instance_profile()
        .instance_profile_name(&instance_profile_name)
        .role_name(&role_name)
        .send()
        .await
        .context("iam:AddRoleToInstanceProfile")?;
    ec2.associate_iam_instance_profile()
        .instance_id(&instance_id)
        .iam_instance_profile(
            IamInstanceProfileSpecification::builder()
                .arn(&instance_profile_arn)
                .build(),
        )
        .send()
        .await
        .context("ec2:AssociateIamInstanceProfile")?;

    // Auto Scaling group holding the instance (min 0 so it can be detached).
    let launch_template_id = ec2
        .create_launch_template()
        .launch_template_name(format!("gameday-web-{suffix}"))
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(&image_id)
                .instance_type(instance_type.clone())
                .build(),
        )
        .send()
        .await
        .context("ec2:CreateLaunchTemplate")?
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .ok_or_else(|| anyhow!("CreateLaunchTemplate returned no id"))?
        .to_string();
    let asg_name = format!("gameday-web-asg-{suffix}");
    clients
        .autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(&asg_name)
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_id(&launch_template_id)
                .version("$Latest")
                .build(),
        )
        .min_size(0)
        .max_size(2)
        .desired_capacity(0)
        .vpc_zone_identifier(&subnet_ids[0])
        .send()
        .await
        .context("autoscaling:CreateAutoScalingGroup")?;
    clients
        .autoscaling
        .attach_instances()
        .auto_scaling_group_name(&asg_name)
        .instance_ids(&instance_id)
        .send()
        .await
        .context("autoscaling:AttachInstances")?;

    // Target group with the instance on 8080.
    let target_port = 8080;
    let target_group_arn = clients
        .elbv2
        .create_target_group()
        .name(format!("gameday-web-{suffix}"))
        .protocol(ProtocolEnum::Http)
        .port(target_port)
        .vpc_id(&vpc_id)
        .target_type(TargetTypeEnum::Instance)
        .send()
        .await
        .context("elasticloadbalancing:CreateTargetGroup")?
        .target_groups()
        .first()
        .and_then(|t| t.target_group_arn())
        .ok_or_else(|| anyhow!("CreateTargetGroup returned no ARN"))?
        .to_string();
    clients
        .elbv2
        .register_targets()
        .target_group_arn(&target_group_arn)
        .targets(
            TargetDescription::builder()
                .id(&instance_id)
                .port(target_port)
                .build(),
        )
        .send()
        .await
        .context("elasticloadbalancing:RegisterTargets")?;

    Ok(Fixture {
        account_id,
        region,
        availability_zone: az,
        vpc_id,
        subnet_ids,
        security_groups,
        instance_id,
        instance_type: instance_type.as_str().to_string(),
        image_id,
        enis,
        volume_ids,
        role_name,
        instance_profile_name,
        instance_profile_arn,
        launch_template_id,
        asg_name,
        target_group_arn,
        target_port,
    })
}

async fn describe_instance(
    clients: &AwsClients,
    instance_id: &str,
) -> Result<aws_sdk_ec2::types::Instance> {
    let out = clients
        .ec2
        .describe_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .context("ec2:DescribeInstances")?;
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .next()
        .cloned()
        .ok_or_else(|| anyhow!("instance {instance_id} not found"))
}

impl Fixture {
    /// A GuardDuty finding naming this fixture's real instance, ENIs, groups,
    /// profile and account. `eventbridge` wraps it in the EventBridge envelope.
    pub fn finding_json(&self, severity: f64, finding_type: &str, eventbridge: bool) -> Value {
        self.finding_for_instance(&self.instance_id, severity, finding_type, eventbridge)
    }

    /// [`Fixture::finding_json`] naming another instance id (e.g. a missing one).
    pub fn finding_for_instance(
        &self,
        instance_id: &str,
        severity: f64,
        finding_type: &str,
        eventbridge: bool,
    ) -> Value {
        let digest = Sha256::digest(format!("{instance_id}|{finding_type}|{severity}"));
        let id = hex::encode(&digest[..16]);
        let detector = hex::encode(&Sha256::digest(self.account_id.as_bytes())[..16]);
        let region = &self.region;
        let account = &self.account_id;
        let enis: Vec<Value> = self
            .enis
            .iter()
            .map(|e| {
                let host = format!("ip-{}.ec2.internal", e.private_ip.replace('.', "-"));
                json!({
                    "ipv6Addresses": [],
                    "networkInterfaceId": e.id,
                    "privateDnsName": host,
                    "privateIpAddress": e.private_ip,
                    "privateIpAddresses": [{"privateDnsName": host, "privateIpAddress": e.private_ip}],
                    "securityGroups": e.groups.iter().map(|g| json!({"groupName": g.name, "groupId": g.id})).collect::<Vec<_>>(),
                    "subnetId": e.subnet_id,
                    "vpcId": self.vpc_id,
                })
            })
            .collect();
        let detail = json!({
            "schemaVersion": "2.0",
            "accountId": account,
            "region": region,
            "partition": "aws",
            "id": id,
            "arn": format!("arn:aws:guardduty:{region}:{account}:detector/{detector}/finding/{id}"),
            "type": finding_type,
            "resource": {
                "resourceType": "Instance",
                "instanceDetails": {
                    "instanceId": instance_id,
                    "instanceType": self.instance_type,
                    "launchTime": "2026-01-05T09:14:27.000Z",
                    "productCodes": [],
                    "iamInstanceProfile": {
                        "arn": self.instance_profile_arn,
                        "id": "AIPAGAMEDAYPROFILE01",
                    },
                    "networkInterfaces": enis,
                    "tags": [
                        {"key": "Name", "value": "web-01"},
                        {"key": "Environment", "value": "production"},
                        {"key": "aws:autoscaling:groupName", "value": self.asg_name},
                    ],
                    "instanceState": "running",
                    "availabilityZone": self.availability_zone,
                    "imageId": self.image_id,
                    "imageDescription": "Game Day AMI",
                }
            },
            "service": {
                "serviceName": "guardduty",
                "detectorId": detector,
                "action": {
                    "actionType": "DNS_REQUEST",
                    "dnsRequestAction": {
                        "domain": "beacon.c2-update.example",
                        "protocol": "UDP",
                        "blocked": false,
                        "domainWithSuffix": "c2-update.example"
                    }
                },
                "resourceRole": "ACTOR",
                "additionalInfo": {"value": "{\"threatListName\":\"ProofPoint\"}", "type": "default"},
                "eventFirstSeen": "2026-01-06T14:02:11.000Z",
                "eventLastSeen": "2026-01-06T15:47:53.000Z",
                "archived": false,
                "count": 14
            },
            "severity": severity,
            "createdAt": "2026-01-06T14:08:31.512Z",
            "updatedAt": "2026-01-06T15:53:02.104Z",
            "title": format!("Command and Control server domain name queried by EC2 instance {instance_id}."),
            "description": format!("EC2 instance {instance_id} is querying a domain name associated with a known Command & Control server."),
        });
        if eventbridge {
            json!({
                "version": "0",
                "id": format!("{}-{}", &id[..8], &id[8..12]),
                "detail-type": "GuardDuty Finding",
                "source": "aws.guardduty",
                "account": account,
                "time": "2026-01-06T15:53:02Z",
                "region": region,
                "resources": [],
                "detail": detail,
            })
        } else {
            detail
        }
    }
}

fn tags_map<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    let map: BTreeMap<&str, &str> = tags.into_iter().collect();
    json!(map)
}

fn sorted_object(map: BTreeMap<String, Value>) -> Value {
    Value::Object(map.into_iter().collect::<Map<String, Value>>())
}

/// A deterministic describe of everything the fixture's playbook can change:
/// keys sorted, lists sorted, no timestamps, request ids or association ids.
pub async fn snapshot_state(clients: &AwsClients, fixture: &Fixture) -> Result<Value> {
    let ec2 = &clients.ec2;
    let id = &fixture.instance_id;
    let instance = describe_instance(clients, id).await?;

    let attr = |name: InstanceAttributeName| {
        ec2.describe_instance_attribute()
            .instance_id(id)
            .attribute(name)
            .send()
    };
    let protection = attr(InstanceAttributeName::DisableApiTermination)
        .await
        .context("ec2:DescribeInstanceAttribute disableApiTermination")?
        .disable_api_termination()
        .and_then(AttributeBooleanValue::value)
        .unwrap_or(false);
    let shutdown = attr(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .await
        .context("ec2:DescribeInstanceAttribute instanceInitiatedShutdownBehavior")?
        .instance_initiated_shutdown_behavior()
        .and_then(|v| v.value())
        .unwrap_or("stop")
        .to_string();

    let mut block_devices = BTreeMap::new();
    for m in instance.block_device_mappings() {
        let ebs = m.ebs();
        block_devices.insert(
            m.device_name().unwrap_or_default().to_string(),
            json!({
                "volume-id": ebs.and_then(|e| e.volume_id()),
                "delete-on-termination": ebs.and_then(|e| e.delete_on_termination()),
            }),
        );
    }

    let instance_json = json!({
        "state": instance.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()),
        "disable-api-termination": protection,
        "instance-initiated-shutdown-behavior": shutdown,
        "block-devices": sorted_object(block_devices),
        "tags": tags_map(instance.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))),
    });

    // ENIs, by the fixture's ids (so a detached ENI still shows up).
    let eni_ids: Vec<String> = fixture.enis.iter().map(|e| e.id.clone()).collect();
    let out = ec2
        .describe_network_interfaces()
        .set_network_interface_ids(Some(eni_ids))
        .send()
        .await
        .context("ec2:DescribeNetworkInterfaces")?;
    let mut enis = BTreeMap::new();
    for ni in out.network_interfaces() {
        let mut groups: Vec<&str> = ni.groups().iter().filter_map(|g| g.group_id()).collect();
        groups.sort_unstable();
        let attachment = ni.attachment().map(|a| {
            json!({
                "instance-id": a.instance_id(),
                "device-index": a.device_index(),
                "delete-on-termination": a.delete_on_termination(),
            })
        });
        enis.insert(
            ni.network_interface_id().unwrap_or_default().to_string(),
            json!({
                "groups": groups,
                "attachment": attachment,
                "source-dest-check": ni.source_dest_check(),
                "tags": tags_map(ni.tag_set().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))),
            }),
        );
    }

    let out = ec2
        .describe_volumes()
        .set_volume_ids(Some(fixture.volume_ids.clone()))
        .send()
        .await
        .context("ec2:DescribeVolumes")?;
    let mut volumes = BTreeMap::new();
    for v in out.volumes() {
        let mut attachments: Vec<Value> = v
            .attachments()
            .iter()
            .map(|a| {
                json!({
                    "instance-id": a.instance_id(),
                    "device": a.device(),
                    "delete-on-termination": a.delete_on_termination(),
                })
            })
            .collect();
        attachments.sort_by_key(|a| a.to_string());
        volumes.insert(
            v.volume_id().unwrap_or_default().to_string(),
            json!({
                "attachments": attachments,
                "tags": tags_map(v.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))),
            }),
        );
    }

    // Instance profile association (ARN only: association ids change on re-association).
    let out = ec2
        .describe_iam_instance_profile_associations()
        .send()
        .await
        .context("ec2:DescribeIamInstanceProfileAssociations")?;
    let mut profiles: Vec<String> = out
        .iam_instance_profile_associations()
        .iter()
        .filter(|a| a.instance_id() == Some(id.as_str()))
        .filter(|a| {
            a.state()
                .map(|s| matches!(s.as_str(), "associated" | "associating"))
                .unwrap_or(true)
        })
        .filter_map(|a| {
            a.iam_instance_profile()
                .and_then(|p| p.arn())
                .map(str::to_string)
        })
        .collect();
    profiles.sort();

    let out = clients
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&fixture.asg_name)
        .send()
        .await
        .context("autoscaling:DescribeAutoScalingGroups")?;
    let asg = out.auto_scaling_groups().first().map(|g| {
        let mut members: Vec<&str> = g
            .instances()
            .iter()
            .filter_map(|i| i.instance_id())
            .collect();
        members.sort_unstable();
        json!({
            "min-size": g.min_size(),
            "max-size": g.max_size(),
            "desired-capacity": g.desired_capacity(),
            "instances": members,
            "contains-instance": members.contains(&id.as_str()),
        })
    });

    let target_group = match clients
        .elbv2
        .describe_target_health()
        .target_group_arn(&fixture.target_group_arn)
        .send()
        .await
    {
        Ok(out) => {
            let mut targets: Vec<String> = out
                .target_health_descriptions()
                .iter()
                .filter_map(|d| d.target())
                .map(|t| {
                    format!(
                        "{}:{}",
                        t.id().unwrap_or_default(),
                        t.port().unwrap_or_default()
                    )
                })
                .collect();
            targets.sort();
            json!({ "exists": true, "targets": targets })
        }
        Err(_) => json!({ "exists": false, "targets": [] }),
    };

    Ok(json!({
        "instance-id": id,
        "instance": instance_json,
        "network-interfaces": sorted_object(enis),
        "volumes": sorted_object(volumes),
        "instance-profile-associations": profiles,
        "auto-scaling-group": asg,
        "target-group": target_group,
    }))
}

/// Side effects a dry run must never have: security groups in the fixture's
/// VPC and snapshots of its volumes (sorted ids).
pub async fn side_effects(clients: &AwsClients, fixture: &Fixture) -> Result<Value> {
    let out = clients
        .ec2
        .describe_security_groups()
        .filters(
            Filter::builder()
                .name("vpc-id")
                .values(&fixture.vpc_id)
                .build(),
        )
        .send()
        .await
        .context("ec2:DescribeSecurityGroups")?;
    let mut groups: Vec<String> = out
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect();
    groups.sort();
    let snapshots = volume_snapshots(clients, fixture).await?;
    let snapshot_ids: Vec<&str> = snapshots
        .iter()
        .filter_map(|s| s["snapshot-id"].as_str())
        .collect();
    Ok(json!({ "security-groups": groups, "snapshots": snapshot_ids }))
}

/// Snapshots of the fixture's volumes: id, volume id and tags.
pub async fn volume_snapshots(clients: &AwsClients, fixture: &Fixture) -> Result<Vec<Value>> {
    let out = clients
        .ec2
        .describe_snapshots()
        .filters(
            Filter::builder()
                .name("volume-id")
                .set_values(Some(fixture.volume_ids.clone()))
                .build(),
        )
        .send()
        .await
        .context("ec2:DescribeSnapshots")?;
    let mut snaps: Vec<Value> = out
        .snapshots()
        .iter()
        .filter(|s| {
            s.volume_id()
                .is_some_and(|v| fixture.volume_ids.iter().any(|f| f == v))
        })
        .map(|s| {
            json!({
                "snapshot-id": s.snapshot_id(),
                "volume-id": s.volume_id(),
                "tags": tags_map(s.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))),
            })
        })
        .collect();
    snaps.sort_by_key(|s| s["snapshot-id"].to_string());
    Ok(snaps)
}

/// Field-by-field differences between two snapshots, each as
/// `PATH: BEFORE -> AFTER` with a JSON path (`$.network-interfaces.eni-….groups`).
pub fn diff_states(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_at("$", a, b, &mut out);
    out
}

fn diff_at(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => diff_at(&p, l, r, out),
                    (Some(l), None) => out.push(format!("{p}: {l} -> (absent)")),
                    (None, Some(r)) => out.push(format!("{p}: (absent) -> {r}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (l, r)) in x.iter().zip(y).enumerate() {
                diff_at(&format!("{path}[{i}]"), l, r, out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} -> {b}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_reports_paths() {
        let a = json!({"x": {"g": ["sg-1", "sg-2"], "p": true}, "k": 1});
        let b = json!({"x": {"g": ["sg-9"], "p": false}, "n": 2});
        let d = diff_states(&a, &b);
        assert_eq!(
            d,
            vec![
                "$.k: 1 -> (absent)",
                "$.n: (absent) -> 2",
                "$.x.g: [\"sg-1\",\"sg-2\"] -> [\"sg-9\"]",
                "$.x.p: true -> false",
            ]
        );
        assert!(diff_states(&a, &a).is_empty());
    }
}
