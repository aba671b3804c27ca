//! GuardDuty findings about a fixture's resources, in the shape GuardDuty
//! sends them (camelCase `detail`, optionally in the EventBridge envelope).
//!
//! Each finding is a plain struct filled from the fixture's real ids; a test
//! or scenario changes a field (another instance id, a severity, a finding
//! id) before rendering it.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::FixtureError;
use crate::fixture::{Fixture, Group};

/// The default finding type of a Game Day instance finding.
pub const DEFAULT_FINDING_TYPE: &str = "Backdoor:EC2/C&CActivity.B!DNS";
/// The default finding type of an access key finding.
pub const DEFAULT_KEY_FINDING_TYPE: &str =
    "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS";

/// A finding about an instance (`resourceType: Instance`).
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceFinding {
    /// Finding id; derived from the instance, type and severity when absent,
    /// so the same finding delivered twice keeps its id (and its case).
    pub id: Option<String>,
    /// Account of the finding.
    pub account_id: String,
    /// Region of the finding.
    pub region: String,
    /// GuardDuty finding type.
    pub finding_type: String,
    /// Severity, 1.0 to 10.0.
    pub severity: f64,
    /// `ACTOR` (the instance did it) or `TARGET` (it was done to the instance).
    pub resource_role: String,
    /// The instance.
    pub instance_id: String,
    /// Its type.
    pub instance_type: String,
    /// Its AMI.
    pub image_id: String,
    /// Its zone.
    pub availability_zone: String,
    /// Its instance profile, as GuardDuty names it.
    pub instance_profile_arn: Option<String>,
    /// The interfaces the finding lists (GuardDuty often lists only the primary).
    pub interfaces: Vec<FindingInterface>,
    /// The instance's tags as the finding lists them.
    pub tags: Vec<(String, String)>,
}

/// One interface as an instance finding lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingInterface {
    /// `eni-…`
    pub id: String,
    /// Its private IPv4 address.
    pub private_ip: String,
    /// Its subnet.
    pub subnet_id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// Its groups.
    pub groups: Vec<Group>,
}

/// A finding about an access key (`resourceType: AccessKey`).
#[derive(Debug, Clone, PartialEq)]
pub struct AccessKeyFinding {
    /// Finding id; derived from the key, type and severity when absent.
    pub id: Option<String>,
    /// Account of the finding.
    pub account_id: String,
    /// Region of the finding.
    pub region: String,
    /// GuardDuty finding type.
    pub finding_type: String,
    /// Severity, 1.0 to 10.0.
    pub severity: f64,
    /// `AKIA…` (long-term) or `ASIA…` (temporary).
    pub access_key_id: String,
    /// The principal's unique id (`AIDA…` user, `AROA…:session` role).
    pub principal_id: String,
    /// The user or role name, when GuardDuty names one.
    pub user_name: Option<String>,
    /// `IAMUser`, `AssumedRole`, `Root`, `Federated`, …
    pub user_type: String,
}

/// The given id, or a 32-hex-digit one (as GuardDuty's look) derived from
/// what the finding is about, so the same finding keeps its id (and case).
fn id_or_derived(
    given: &Option<String>,
    subject: &str,
    finding_type: &str,
    severity: f64,
) -> String {
    given.clone().unwrap_or_else(|| {
        hex::encode(&Sha256::digest(format!("{subject}|{finding_type}|{severity}"))[..16])
    })
}

/// What every finding carries, whatever it is about.
struct Common<'a> {
    id: String,
    account_id: &'a str,
    region: &'a str,
    finding_type: &'a str,
    severity: f64,
}

impl Common<'_> {
    /// The whole `detail`: these fields, the resource, and the `service`
    /// block completed with what every finding's has.
    fn detail(
        &self,
        title: String,
        description: String,
        resource: Value,
        mut service: Value,
    ) -> Value {
        let (id, region, account) = (&self.id, self.region, self.account_id);
        let detector = hex::encode(&Sha256::digest(account.as_bytes())[..16]);
        if let Some(service) = service.as_object_mut() {
            service.insert("serviceName".into(), json!("guardduty"));
            service.insert("detectorId".into(), json!(detector));
            service.insert("eventFirstSeen".into(), json!("2026-01-06T14:02:11.000Z"));
            service.insert("eventLastSeen".into(), json!("2026-01-06T15:47:53.000Z"));
            service.insert("archived".into(), json!(false));
        }
        json!({
            "schemaVersion": "2.0",
            "accountId": account,
            "region": region,
            "partition": "aws",
            "id": id,
            "arn": format!("arn:aws:guardduty:{region}:{account}:detector/{detector}/finding/{id}"),
            "type": self.finding_type,
            "resource": resource,
            "service": service,
            "severity": self.severity,
            "createdAt": "2026-01-06T14:08:31.512Z",
            "updatedAt": "2026-01-06T15:53:02.104Z",
            "title": title,
            "description": description,
        })
    }
}

/// The EventBridge envelope around a finding's `detail`.
fn envelope(detail: Value) -> Value {
    let id: Vec<char> = detail["id"].as_str().unwrap_or_default().chars().collect();
    let part = |from: usize, to: usize| -> String {
        id.iter().skip(from).take(to.saturating_sub(from)).collect()
    };
    json!({
        "version": "0",
        "id": format!("{}-{}", part(0, 8), part(8, 12)),
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": detail["accountId"],
        "time": "2026-01-06T15:53:02Z",
        "region": detail["region"],
        "resources": [],
        "detail": detail,
    })
}

impl InstanceFinding {
    /// The finding's id (given, or derived).
    pub fn finding_id(&self) -> String {
        id_or_derived(
            &self.id,
            &self.instance_id,
            &self.finding_type,
            self.severity,
        )
    }

    /// The finding as GuardDuty's `detail` (what `GetFindings` returns).
    pub fn detail(&self) -> Value {
        let instance_id = &self.instance_id;
        let interfaces: Vec<Value> = self
            .interfaces
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
                    "vpcId": e.vpc_id,
                })
            })
            .collect();
        let mut details = json!({
            "instanceId": instance_id,
            "instanceType": self.instance_type,
            "launchTime": "2026-01-05T09:14:27.000Z",
            "productCodes": [],
            "networkInterfaces": interfaces,
            "tags": self.tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            "instanceState": "running",
            "availabilityZone": self.availability_zone,
            "imageId": self.image_id,
            "imageDescription": "Game Day AMI",
        });
        if let Some(arn) = &self.instance_profile_arn {
            details["iamInstanceProfile"] = json!({"arn": arn, "id": "AIPAGAMEDAYPROFILE01"});
        }
        Common {
            id: self.finding_id(),
            account_id: &self.account_id,
            region: &self.region,
            finding_type: &self.finding_type,
            severity: self.severity,
        }
        .detail(
            format!("Command and Control server domain name queried by EC2 instance {instance_id}."),
            format!("EC2 instance {instance_id} is querying a domain name associated with a known Command & Control server."),
            json!({"resourceType": "Instance", "instanceDetails": details}),
            json!({
                "action": {
                    "actionType": "DNS_REQUEST",
                    "dnsRequestAction": {
                        "domain": "beacon.c2-update.example",
                        "protocol": "UDP",
                        "blocked": false,
                        "domainWithSuffix": "c2-update.example"
                    }
                },
                "resourceRole": self.resource_role,
                "additionalInfo": {"value": "{\"threatListName\":\"ProofPoint\"}", "type": "default"},
                "count": 14
            }),
        )
    }

    /// The finding as EventBridge delivers it.
    pub fn event(&self) -> Value {
        envelope(self.detail())
    }

    /// [`InstanceFinding::event`] or [`InstanceFinding::detail`].
    pub fn to_json(&self, eventbridge: bool) -> Value {
        if eventbridge {
            self.event()
        } else {
            self.detail()
        }
    }
}

impl AccessKeyFinding {
    /// The finding's id (given, or derived).
    pub fn finding_id(&self) -> String {
        id_or_derived(
            &self.id,
            &self.access_key_id,
            &self.finding_type,
            self.severity,
        )
    }

    /// The finding as GuardDuty's `detail`.
    pub fn detail(&self) -> Value {
        let mut key = json!({
            "accessKeyId": self.access_key_id,
            "principalId": self.principal_id,
            "userType": self.user_type,
        });
        if let Some(user) = &self.user_name {
            key["userName"] = json!(user);
        }
        Common {
            id: self.finding_id(),
            account_id: &self.account_id,
            region: &self.region,
            finding_type: &self.finding_type,
            severity: self.severity,
        }
        .detail(
            "Credentials used from outside AWS".to_string(),
            format!(
                "Credentials {} were used from a remote IP address.",
                self.access_key_id
            ),
            json!({"resourceType": "AccessKey", "accessKeyDetails": key}),
            json!({
                "action": {
                    "actionType": "AWS_API_CALL",
                    "awsApiCallAction": {
                        "api": "GetCallerIdentity",
                        "serviceName": "sts.amazonaws.com",
                        "callerType": "Remote IP",
                        "remoteIpDetails": {"ipAddressV4": "198.51.100.7"}
                    }
                },
                "resourceRole": "TARGET",
                "count": 3
            }),
        )
    }

    /// The finding as EventBridge delivers it.
    pub fn event(&self) -> Value {
        envelope(self.detail())
    }
}

impl Fixture {
    /// A high-severity command-and-control finding on the instance of that
    /// logical name, listing every interface with its groups, its profile
    /// and its tags (with the Auto Scaling tag AWS adds).
    pub fn instance_finding(&self, name: &str) -> Result<InstanceFinding, FixtureError> {
        let instance = self.instance(name)?;
        let mut tags: Vec<(String, String)> = instance
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(asg) = &instance.auto_scaling_group {
            tags.push(("aws:autoscaling:groupName".to_string(), asg.clone()));
        }
        Ok(InstanceFinding {
            id: None,
            account_id: self.account_id.clone(),
            region: self.region.clone(),
            finding_type: DEFAULT_FINDING_TYPE.to_string(),
            severity: 8.0,
            resource_role: "ACTOR".to_string(),
            instance_id: instance.id.clone(),
            instance_type: instance.instance_type.clone(),
            image_id: instance.image_id.clone(),
            availability_zone: instance.availability_zone.clone(),
            instance_profile_arn: instance.instance_profile_arn.clone(),
            interfaces: instance
                .enis
                .iter()
                .map(|e| FindingInterface {
                    id: e.id.clone(),
                    private_ip: e.private_ip.clone(),
                    subnet_id: e.subnet_id.clone(),
                    vpc_id: instance.vpc_id.clone(),
                    groups: e.groups.clone(),
                })
                .collect(),
            tags,
        })
    }

    /// A finding that the first access key of the user of that logical name
    /// was used from outside AWS.
    pub fn access_key_finding(&self, user: &str) -> Result<AccessKeyFinding, FixtureError> {
        let record = self.user(user)?;
        let key = record
            .access_keys
            .first()
            .ok_or_else(|| FixtureError::Unknown {
                kind: "access key of user",
                name: user.to_string(),
            })?;
        Ok(self.key_finding(&key.id, Some(&record.name), "IAMUser"))
    }

    /// A finding about any key id (a role's `ASIA…` session key, a key that
    /// does not exist), in this fixture's account and region.
    pub fn key_finding(
        &self,
        access_key_id: &str,
        user_name: Option<&str>,
        user_type: &str,
    ) -> AccessKeyFinding {
        let principal_id = if user_type == "AssumedRole" {
            "AROAEXAMPLEROLE00001:gameday".to_string()
        } else {
            "AIDAEXAMPLEPRINCIPAL".to_string()
        };
        AccessKeyFinding {
            id: None,
            account_id: self.account_id.clone(),
            region: self.region.clone(),
            finding_type: DEFAULT_KEY_FINDING_TYPE.to_string(),
            severity: 8.0,
            access_key_id: access_key_id.to_string(),
            principal_id,
            user_name: user_name.map(str::to_string),
            user_type: user_type.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AccessKeyFinding {
        let fixture = Fixture {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            ..Fixture::default()
        };
        fixture.key_finding("AKIAEXAMPLEEXAMPLE01", Some("alice"), "IAMUser")
    }

    #[test]
    fn derived_ids_look_like_guardduty_ids_and_follow_the_content() {
        let finding = key();
        let id = finding.finding_id();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(finding.detail()["id"], id.as_str());
        let other = AccessKeyFinding {
            severity: 5.0,
            ..finding.clone()
        };
        assert_ne!(other.finding_id(), id, "another finding, another id");
        let named = AccessKeyFinding {
            id: Some("f-named".into()),
            ..finding
        };
        assert_eq!(named.detail()["id"], "f-named");
    }

    #[test]
    fn the_envelope_carries_the_detail() {
        let finding = key();
        let event = finding.event();
        assert_eq!(event["detail-type"], "GuardDuty Finding");
        assert_eq!(event["detail"], finding.detail());
        assert_eq!(event["account"], "123456789012");
    }
}
