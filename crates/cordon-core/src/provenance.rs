//! Where a finding came from and as whom a case acts on it.
//!
//! Anyone who can put an event on the bus (`events:PutEvents`) or import a
//! finding can hand cordon a finding. With source verification the finding is
//! re-read from GuardDuty by id and the plan is made from what GuardDuty
//! returns; [`compare_with_source`] refuses a delivery that differs from its
//! source in anything that drives the plan. A finding from another account is
//! acted on through a role assumed in that account, never with the caller's
//! own credentials. Both facts are journaled with the case ([`Provenance`] in
//! `case-opened` and `epoch-opened`), verified or not.

use serde::{Deserialize, Serialize};

use crate::finding::{Finding, Resource, Source};
use crate::text::preview;

/// How a case's finding was checked and whose credentials act on it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Provenance {
    /// The finding was re-read from its source by id and the plan made from that copy.
    pub source_verified: bool,
    /// Where it was re-read (`GuardDuty GetFindings, detector D in REGION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The identity cordon runs as (STS caller ARN), when it was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The role assumed in the finding's account, when that is not the caller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumed_role: Option<String>,
    /// The identity every call of the case is made as (the assumed role's
    /// session, or the caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acting_as: Option<String>,
    /// The region the case's clients were built for: the finding's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// A delivered finding that its source does not confirm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "finding {finding} differs from what {source_name} returns for it ({}): refused as forged or altered; nothing was changed",
    differences.join("; ")
)]
pub struct SourceMismatch {
    /// The finding id (escaped preview).
    pub finding: String,
    /// The source, e.g. `GuardDuty`.
    pub source_name: String,
    /// One entry per field that drives the plan and differs: `type "A" here, "B" at the source`.
    pub differences: Vec<String>,
}

/// The fields of a finding that drive a plan: which playbook answers it, and
/// which resources, in which account and region, its steps act on. Severity is
/// not among them: the plan is made from the source's copy, severity included.
fn plan_fields(finding: &Finding) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("id", finding.id.clone()),
        ("type", finding.finding_type.raw.clone()),
        ("account", finding.account_id.clone()),
        ("region", finding.region.clone()),
        ("partition", finding.partition.clone()),
        (
            "resource type",
            finding.resource.resource_type().to_string(),
        ),
    ];
    match &finding.resource {
        Resource::Instance(instance) => {
            fields.push(("instance id", instance.instance_id.clone()));
            let mut enis: Vec<&str> = instance
                .network_interfaces
                .iter()
                .map(|eni| eni.network_interface_id.as_str())
                .collect();
            enis.sort_unstable();
            fields.push(("network interfaces", enis.join(",")));
            fields.push((
                "instance profile",
                instance
                    .iam_instance_profile
                    .as_ref()
                    .and_then(|p| p.arn.clone())
                    .unwrap_or_default(),
            ));
        }
        Resource::AccessKey(key) => {
            fields.push(("access key id", key.access_key_id.clone()));
            fields.push(("user name", key.user_name.clone().unwrap_or_default()));
            fields.push(("user type", key.user_type.clone().unwrap_or_default()));
        }
        Resource::S3Bucket { bucket_names } => {
            let mut names = bucket_names.clone();
            names.sort_unstable();
            fields.push(("buckets", names.join(",")));
        }
        Resource::SecurityGroup { group_id } => fields.push(("security group", group_id.clone())),
        Resource::Snapshot { snapshot_id } => fields.push(("snapshot", snapshot_id.clone())),
        Resource::Account { account_id } => fields.push(("account", account_id.clone())),
        Resource::Other { .. } => {}
    }
    fields
}

/// Fields a GuardDuty finding delivered through Security Hub may lack: ASFF's
/// `AwsEc2Instance` often lists no network interfaces and may name no
/// profile. Absent there, they are not compared (the plan is made from
/// GuardDuty's copy, which has them); present, they must agree.
const OPTIONAL_IN_ASFF: [&str; 2] = ["network interfaces", "instance profile"];

/// `Ok` when `received` says what `source` says in every field that drives a
/// plan; else every difference, values escaped.
pub fn compare_with_source(
    received: &Finding,
    source: &Finding,
    source_name: &str,
) -> Result<(), SourceMismatch> {
    let mut ours = plan_fields(received);
    let mut theirs = plan_fields(source);
    if received.source == Source::SecurityHub {
        let lacking: Vec<&str> = ours
            .iter()
            .filter(|(name, value)| OPTIONAL_IN_ASFF.contains(name) && value.is_empty())
            .map(|(name, _)| *name)
            .collect();
        ours.retain(|(name, _)| !lacking.contains(name));
        theirs.retain(|(name, _)| !lacking.contains(name));
    }
    let mut differences = Vec::new();
    for (name, value) in &ours {
        let at_source = theirs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        match at_source {
            Some(v) if v == value => {}
            Some(v) => differences.push(format!(
                "{name} {} here, {} at the source",
                preview(value),
                preview(v)
            )),
            None => differences.push(format!(
                "{name} {} here, absent at the source",
                preview(value)
            )),
        }
    }
    for (name, value) in &theirs {
        if !ours.iter().any(|(n, _)| n == name) {
            differences.push(format!(
                "{name} absent here, {} at the source",
                preview(value)
            ));
        }
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(SourceMismatch {
            finding: preview(&received.id),
            source_name: source_name.to_string(),
            differences,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::finding::parse_single_finding;

    fn finding(instance: &str, kind: &str, severity: f64) -> Finding {
        let text = serde_json::json!({
            "schemaVersion": "2.0", "accountId": "111122223333", "region": "us-east-1",
            "partition": "aws", "id": "f1", "type": kind, "severity": severity,
            "resource": {"resourceType": "Instance", "instanceDetails": {
                "instanceId": instance,
                "networkInterfaces": [{"networkInterfaceId": "eni-0123456789abcdef0"}]}},
            "service": {"detectorId": "5ab6c7d8e9f00112233445566778899a"}
        })
        .to_string();
        parse_single_finding(&text, "test").unwrap()
    }

    #[test]
    fn a_security_hub_copy_without_interfaces_compares_on_what_it_has() {
        let source = finding("i-0123456789abcdef0", "Backdoor:EC2/Spambot", 8.0);
        let asff = |instance: &str| {
            let text = serde_json::json!({
                "SchemaVersion": "2018-10-08",
                "Id": "arn:aws:guardduty:us-east-1:111122223333:detector/5ab6c7d8e9f00112233445566778899a/finding/f1",
                "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty",
                "AwsAccountId": "111122223333", "Region": "us-east-1",
                "Types": ["TTPs/Command and Control/Backdoor:EC2-Spambot"],
                "Severity": {"Product": 8, "Label": "HIGH"},
                "Resources": [{"Type": "AwsEc2Instance", "Partition": "aws",
                    "Id": format!("arn:aws:ec2:us-east-1:111122223333:instance/{instance}")}]
            })
            .to_string();
            parse_single_finding(&text, "asff").unwrap()
        };
        assert!(compare_with_source(&asff("i-0123456789abcdef0"), &source, "GuardDuty").is_ok());
        let err =
            compare_with_source(&asff("i-0fffffffffffffff0"), &source, "GuardDuty").unwrap_err();
        assert_eq!(err.differences.len(), 1, "{err}");
        // A GuardDuty delivery lacking them is still a difference.
        let mut bare = source.clone();
        bare.resource = Resource::Instance(crate::finding::InstanceDetails {
            instance_id: "i-0123456789abcdef0".to_string(),
            ..Default::default()
        });
        assert!(compare_with_source(&bare, &source, "GuardDuty").is_err());
    }

    #[test]
    fn same_plan_fields_pass_whatever_the_severity() {
        let received = finding("i-0123456789abcdef0", "Backdoor:EC2/Spambot", 5.0);
        let source = finding("i-0123456789abcdef0", "Backdoor:EC2/Spambot", 8.0);
        assert!(compare_with_source(&received, &source, "GuardDuty").is_ok());
    }

    #[test]
    fn each_difference_is_named_and_escaped() {
        let received = finding("i-0aaaa\n\u{1b}[31m", "Recon:EC2/Portscan", 5.0);
        let source = finding("i-0123456789abcdef0", "Backdoor:EC2/Spambot", 5.0);
        let err = compare_with_source(&received, &source, "GuardDuty").unwrap_err();
        assert_eq!(err.differences.len(), 2, "{err}");
        let text = err.to_string();
        assert!(text.contains("instance id \"i-0aaaa"), "{text}");
        assert!(
            text.contains(
                "type \"Recon:EC2/Portscan\" here, \"Backdoor:EC2/Spambot\" at the source"
            ),
            "{text}"
        );
        assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text}");
    }
}
