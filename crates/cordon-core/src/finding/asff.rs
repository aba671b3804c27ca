//! Security Hub findings in the AWS Security Finding Format (ASFF).
//!
//! Read as leniently as GuardDuty's: PascalCase as Security Hub sends it
//! (camelCase accepted), numbers as strings, unknown fields ignored. What
//! cordon needs is `Id`, `AwsAccountId`, a region (`Region`, else the
//! product ARN's or the event's) and a resource it can name.
//!
//! GuardDuty's own findings (product `arn:…:product/aws/guardduty`) are read
//! back into the GuardDuty finding they are, following the GuardDuty user
//! guide's ASFF mapping: the id is the last part of the finding ARN in `Id`,
//! the type is the `Types` entry `TTPs/<category>/<type with / written as ->`,
//! the severity is GuardDuty's own (`Severity.Original`, else
//! `Severity.Product`), and `ProductFields` carry the `aws/guardduty/service/…`
//! values (detector, resource role, archived, first and last seen). The case
//! id, the playbook and the plan's targets are then those of the original.
//!
//! Other products' findings get an id of their own: `securityhub-` and 40 hex
//! digits of SHA-256 over the product ARN and the ASFF `Id` (the pair Security
//! Hub keys findings on), since ASFF ids are ARNs or URLs that do not fit
//! cordon's id format. Updates of one finding keep its case.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{
    AccessKeyDetails, AsffFacts, Finding, FindingError, FindingType, InstanceDetails,
    InstanceProfileRef, NetworkInterface, Resource, ResourceRole, Service, Severity, SeverityLabel,
    Source, Tag, Wrapping, field, json_kind, preview, required_text, text, value_as_bool,
    value_as_f64, value_as_text,
};

/// A Security Hub finding rather than a GuardDuty finding or a Config
/// evaluation: only ASFF has these keys (Config's `awsAccountId` is camelCase).
pub(super) fn looks_like(object: &Map<String, Value>) -> bool {
    ["ProductArn", "AwsAccountId", "productArn"]
        .iter()
        .any(|k| object.contains_key(*k))
}

/// An EventBridge event from Security Hub (`Security Hub Findings - Imported`,
/// `- Custom Action`, `- Imported`): every element of `detail.findings`.
pub(super) fn is_event(source: &str, detail_type: &str) -> bool {
    source == "aws.securityhub" || detail_type.starts_with("Security Hub Findings")
}

/// Every finding of a Security Hub event; each keeps the whole event as `raw`.
pub(super) fn parse_event(
    object: &Map<String, Value>,
    raw: &str,
    location: &str,
) -> Result<Vec<Finding>, FindingError> {
    let not_a_finding = |reason: String| FindingError::NotAFinding {
        location: location.to_string(),
        reason,
    };
    let Some(detail) = object.get("detail").and_then(Value::as_object) else {
        return Err(not_a_finding(
            "it is a Security Hub event without a `detail` object".to_string(),
        ));
    };
    let items = match detail.get("findings") {
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(not_a_finding(format!(
                "the event's `detail.findings` is {}, expected an array",
                json_kind(other)
            )));
        }
        None => {
            return Err(not_a_finding(
                "it is a Security Hub event without `detail.findings`".to_string(),
            ));
        }
    };
    let event_id = object.get("id").and_then(value_as_text);
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let mut finding = finding_from_value(
                item,
                &format!("{location}.detail.findings[{index}]"),
                Wrapping::SecurityHubEvent { index },
                raw.to_string(),
                Some(object),
            )?;
            finding.event_id = event_id.clone();
            Ok(finding)
        })
        .collect()
}

/// Reads one ASFF finding. `envelope` is the EventBridge event around it,
/// whose `account` and `region` stand in when the finding lacks them.
pub(super) fn finding_from_value(
    value: &Value,
    location: &str,
    wrapping: Wrapping,
    raw: String,
    envelope: Option<&Map<String, Value>>,
) -> Result<Finding, FindingError> {
    let Value::Object(object) = value else {
        return Err(FindingError::NotAFinding {
            location: location.to_string(),
            reason: format!(
                "expected the Security Hub finding to be an object, found {}",
                json_kind(value)
            ),
        });
    };
    let shown_id = text(object, "id")
        .filter(|id| !id.trim().is_empty())
        .map(|id| preview(&id));
    let invalid = |reason: String| FindingError::Invalid {
        location: location.to_string(),
        id: shown_id.clone().unwrap_or_else(|| "(no Id)".to_string()),
        reason,
    };
    let asff_id = required_text(object, "id").map_err(&invalid)?;
    let product_arn = text(object, "productArn");
    let product_fields = match field(object, "productFields") {
        Some(Value::Object(fields)) => fields.clone(),
        _ => Map::new(),
    };
    let product_field = |key: &str| product_fields.get(key).and_then(value_as_text);
    let product_name =
        text(object, "productName").or_else(|| product_field("aws/securityhub/ProductName"));
    let provider = match field(object, "findingProviderFields") {
        Some(Value::Object(p)) => Some(p),
        _ => None,
    };
    let types = string_list(object, "types")
        .or_else(|| provider.and_then(|p| string_list(p, "types")))
        .unwrap_or_default();
    let severity_object = severity_object(object, provider);
    let severity_label = severity_object
        .as_ref()
        .and_then(|s| text(s, "label"))
        .and_then(|l| l.trim().to_ascii_uppercase().parse::<SeverityLabel>().ok());
    let account_id = required_text(object, "awsAccountId")
        .or_else(|error| envelope_text(envelope, "account").ok_or(error))
        .map_err(&invalid)?;
    let region = text(object, "region")
        .filter(|r| !r.trim().is_empty())
        .or_else(|| product_arn.as_deref().and_then(|a| arn_part(a, 3)))
        .or_else(|| envelope_text(envelope, "region"))
        .ok_or_else(|| invalid("`Region` is missing".to_string()))?;
    let resources = match field(object, "resources") {
        Some(Value::Array(items)) => items.as_slice(),
        Some(Value::Null) | None => &[],
        Some(other) => {
            return Err(invalid(format!(
                "`Resources` is {}, expected an array",
                json_kind(other)
            )));
        }
    };
    let partition = product_arn
        .as_deref()
        .and_then(|a| arn_part(a, 1))
        .or_else(|| {
            resources
                .iter()
                .filter_map(Value::as_object)
                .find_map(|r| text(r, "partition"))
        })
        .unwrap_or_else(|| "aws".to_string());
    let is_guardduty = product_arn
        .as_deref()
        .is_some_and(|a| a.ends_with(":product/aws/guardduty"))
        || (product_arn.is_none() && product_name.as_deref() == Some("GuardDuty"));
    let record_archived = text(object, "recordState").as_deref() == Some("ARCHIVED");
    let sample = field(object, "sample")
        .and_then(value_as_bool)
        .unwrap_or(false);
    let compliance_status = match field(object, "compliance") {
        Some(Value::Object(c)) => text(c, "status"),
        _ => None,
    };

    let (id, finding_type, severity, service) = if is_guardduty {
        let id = guardduty_id(&asff_id).ok_or_else(|| {
            invalid(format!(
                "`Id` {} is not a GuardDuty finding ARN (…:detector/ID/finding/ID)",
                preview(&asff_id)
            ))
        })?;
        let finding_type = guardduty_type(&types).ok_or_else(|| {
            invalid(format!(
                "no entry of `Types` {types:?} holds a GuardDuty finding type (TTPs/…/Purpose:Resource-Family…)"
            ))
        })?;
        let severity = severity_object
            .as_ref()
            .and_then(|s| field(s, "original").or_else(|| field(s, "product")))
            .and_then(value_as_f64)
            .map(|v| Severity::new(v).map_err(&invalid))
            .transpose()?
            .or_else(|| normalised_severity(severity_object.as_ref(), severity_label))
            .ok_or_else(|| invalid("`Severity` is missing".to_string()))?;
        let service = Service {
            detector_id: product_field("aws/guardduty/service/detectorId")
                .or_else(|| detector_from_arn(&asff_id)),
            action_type: product_field("aws/guardduty/service/action/actionType"),
            resource_role: product_field("aws/guardduty/service/resourceRole").and_then(
                |r| match r.trim().to_ascii_uppercase().as_str() {
                    "TARGET" => Some(ResourceRole::Target),
                    "ACTOR" => Some(ResourceRole::Actor),
                    _ => None,
                },
            ),
            event_first_seen: product_field("aws/guardduty/service/eventFirstSeen")
                .or_else(|| text(object, "firstObservedAt")),
            event_last_seen: product_field("aws/guardduty/service/eventLastSeen")
                .or_else(|| text(object, "lastObservedAt")),
            archived: record_archived
                || product_fields
                    .get("aws/guardduty/service/archived")
                    .and_then(value_as_bool)
                    .unwrap_or(false),
            count: product_fields
                .get("aws/guardduty/service/count")
                .and_then(value_as_f64)
                .and_then(|c| (c >= 0.0 && c.fract() == 0.0).then_some(c as u64)),
            sample,
        };
        (id, finding_type, severity, service)
    } else {
        let finding_type =
            FindingType::foreign(types.first().map(String::as_str).unwrap_or("Unclassified"))
                .map_err(&invalid)?;
        let severity =
            normalised_severity(severity_object.as_ref(), severity_label).ok_or_else(|| {
                invalid("`Severity` gives neither `Label` nor `Normalized`".to_string())
            })?;
        let service = Service {
            event_first_seen: text(object, "firstObservedAt"),
            event_last_seen: text(object, "lastObservedAt"),
            archived: record_archived,
            sample,
            ..Service::default()
        };
        (
            own_id(product_arn.as_deref(), &asff_id),
            finding_type,
            severity,
            service,
        )
    };
    let (resource, resource_type, resource_origin) =
        primary_resource(resources, is_guardduty.then_some(&finding_type)).map_err(&invalid)?;
    Ok(Finding {
        id,
        arn: is_guardduty.then(|| asff_id.clone()),
        account_id,
        region,
        partition,
        schema_version: text(object, "schemaVersion"),
        finding_type,
        severity,
        created_at: text(object, "createdAt"),
        updated_at: text(object, "updatedAt"),
        title: text(object, "title"),
        description: text(object, "description"),
        resource,
        service,
        wrapping,
        event_id: None,
        raw,
        source: Source::SecurityHub,
        asff: Some(AsffFacts {
            asff_id,
            product_arn,
            product_name,
            types,
            severity_label,
            resource_type,
            compliance_status,
        }),
        config: None,
        resource_origin,
    })
}

fn envelope_text(envelope: Option<&Map<String, Value>>, name: &str) -> Option<String> {
    envelope
        .and_then(|e| e.get(name))
        .and_then(value_as_text)
        .filter(|t| !t.trim().is_empty())
}

/// Part `n` of an ARN (`arn:PARTITION:SERVICE:REGION:ACCOUNT:…`), when not empty.
fn arn_part(arn: &str, n: usize) -> Option<String> {
    let mut parts = arn.splitn(6, ':');
    (parts.next() == Some("arn"))
        .then(|| parts.nth(n - 1))
        .flatten()
        .filter(|p| !p.is_empty())
        .map(str::to_string)
}

/// A list of strings; non-strings in it are skipped, anything else is absent.
fn string_list(object: &Map<String, Value>, camel: &str) -> Option<Vec<String>> {
    match field(object, camel) {
        Some(Value::Array(items)) => Some(items.iter().filter_map(value_as_text).collect()),
        _ => None,
    }
}

/// `Severity`, else `FindingProviderFields.Severity`.
fn severity_object(
    object: &Map<String, Value>,
    provider: Option<&Map<String, Value>>,
) -> Option<Map<String, Value>> {
    [Some(object), provider]
        .into_iter()
        .flatten()
        .find_map(|o| match field(o, "severity") {
            Some(Value::Object(s)) => Some(s.clone()),
            _ => None,
        })
}

/// Security Hub's 0-100 scale read on GuardDuty's 1-10 one (the labels'
/// edges 40, 70 and 90 fall on the bands' 4, 7 and 9), else the label's
/// lowest value. INFORMATIONAL and 0-9 read as 1.0, GuardDuty's lowest.
fn normalised_severity(
    severity: Option<&Map<String, Value>>,
    label: Option<SeverityLabel>,
) -> Option<Severity> {
    let normalised = severity
        .and_then(|s| field(s, "normalized"))
        .and_then(value_as_f64)
        .filter(|n| n.is_finite() && (0.0..=100.0).contains(n));
    let value = match (normalised, label) {
        (Some(n), _) => (n / 10.0).max(Severity::MIN),
        (None, Some(label)) => match label {
            SeverityLabel::Informational | SeverityLabel::Low => 1.0,
            SeverityLabel::Medium => 4.0,
            SeverityLabel::High => 7.0,
            SeverityLabel::Critical => 9.0,
        },
        (None, None) => return None,
    };
    Severity::new(value).ok()
}

/// The GuardDuty finding id in a finding ARN: `…:detector/D/finding/ID`.
fn guardduty_id(asff_id: &str) -> Option<String> {
    let (_, id) = asff_id.rsplit_once("/finding/")?;
    (asff_id.starts_with("arn:") && asff_id.contains(":guardduty:") && !id.is_empty())
        .then(|| id.to_string())
}

fn detector_from_arn(asff_id: &str) -> Option<String> {
    let (_, rest) = asff_id.split_once(":detector/")?;
    rest.split('/')
        .next()
        .filter(|d| !d.is_empty())
        .map(str::to_string)
}

/// The GuardDuty type in ASFF `Types`: the last part of an entry such as
/// `TTPs/Command and Control/Backdoor:EC2-C&CActivity.B!DNS`, with the `-`
/// that stands for GuardDuty's `/` (the first after the `:`) put back.
fn guardduty_type(types: &[String]) -> Option<FindingType> {
    types.iter().find_map(|entry| {
        let last = entry.rsplit('/').next()?;
        let (purpose, rest) = last.split_once(':')?;
        let (resource, family) = rest.split_once('-')?;
        FindingType::parse(&format!("{purpose}:{resource}/{family}")).ok()
    })
}

/// `securityhub-` and 40 hex digits of SHA-256(product ARN, NUL, Id).
fn own_id(product_arn: Option<&str>, asff_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(product_arn.unwrap_or("").as_bytes());
    hasher.update([0]);
    hasher.update(asff_id.as_bytes());
    let digest = hex::encode(hasher.finalize());
    format!("securityhub-{}", &digest[..40])
}

/// What kind of resource an ASFF resource is to cordon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Instance,
    AccessKey,
    Bucket,
    SecurityGroup,
    Snapshot,
}

fn kind_of(resource: &Map<String, Value>) -> Option<Kind> {
    let id = text(resource, "id").unwrap_or_default();
    match text(resource, "type").as_deref() {
        Some("AwsEc2Instance") => Some(Kind::Instance),
        Some("AwsIamAccessKey") => Some(Kind::AccessKey),
        Some("AwsS3Bucket") => Some(Kind::Bucket),
        Some("AwsEc2SecurityGroup") => Some(Kind::SecurityGroup),
        // ASFF has no snapshot type of its own (`AwsEc2Snapshot` is accepted
        // should it come): a snapshot is known by its ARN in `Other` resources.
        Some("AwsEc2Snapshot") => Some(Kind::Snapshot),
        _ if id.starts_with("arn:") && id.contains(":ec2:") && id.contains(":snapshot/") => {
            Some(Kind::Snapshot)
        }
        _ => None,
    }
}

/// The kind a GuardDuty finding's own `resourceType` would be, from the
/// resource part of its type (`Backdoor:EC2/…` is about an instance).
fn guardduty_kind(finding_type: &FindingType) -> Option<Kind> {
    match finding_type.resource_type.as_str() {
        "EC2" | "Runtime" => Some(Kind::Instance),
        "IAMUser" => Some(Kind::AccessKey),
        "S3" => Some(Kind::Bucket),
        _ => None,
    }
}

/// The resource the finding is about, its ASFF type, and where it sits.
///
/// Several resources: for a GuardDuty finding, the first of the kind its
/// type is about (an S3 finding also lists the access key that acted); for
/// other products, the first resource cordon can act on, in the order
/// Security Hub lists them (it shows `Resources[0]` as the primary one).
/// Every bucket of the chosen kind is kept, as GuardDuty's `s3BucketDetails`
/// are. None cordon can act on: `Other` with the first resource's type.
fn primary_resource(
    resources: &[Value],
    guardduty_type: Option<&FindingType>,
) -> Result<(Resource, Option<String>, Option<String>), String> {
    let objects: Vec<(usize, &Map<String, Value>)> = resources
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_object().map(|o| (i, o)))
        .collect();
    let kinds: Vec<(usize, &Map<String, Value>, Kind)> = objects
        .iter()
        .filter_map(|&(i, r)| kind_of(r).map(|k| (i, r, k)))
        .collect();
    let wanted = guardduty_type.and_then(guardduty_kind);
    let chosen = wanted
        .and_then(|w| kinds.iter().find(|(_, _, k)| *k == w))
        .or_else(|| kinds.first());
    let Some(&(index, resource, kind)) = chosen else {
        let resource_type = objects
            .first()
            .and_then(|(_, r)| text(r, "type"))
            .unwrap_or_else(|| "Unknown".to_string());
        return Ok((
            Resource::Other {
                resource_type: resource_type.clone(),
            },
            Some(resource_type),
            None,
        ));
    };
    let origin = format!("Resources[{index}]");
    let resource_type = text(resource, "type");
    let id = text(resource, "id").unwrap_or_default();
    let details = |name: &str| match field(resource, "details") {
        Some(Value::Object(d)) => match d.get(name) {
            Some(Value::Object(inner)) => Some(inner),
            _ => None,
        },
        _ => None,
    };
    let missing = || format!("`{origin}.Id` is missing");
    let resource = match kind {
        Kind::Instance => {
            let instance_id = arn_resource(&id, "instance/").ok_or_else(missing)?;
            Resource::Instance(instance(instance_id, resource, details("AwsEc2Instance")))
        }
        Kind::AccessKey => {
            let d = details("AwsIamAccessKey");
            let from_details = |k: &str| d.and_then(|d| text(d, k)).filter(|t| !t.is_empty());
            let access_key_id = from_details("accessKeyId")
                .or_else(|| id.rsplit([':', '/']).next().map(str::to_string))
                .filter(|k| !k.is_empty())
                .ok_or_else(missing)?;
            Resource::AccessKey(AccessKeyDetails {
                access_key_id,
                principal_id: from_details("principalId"),
                user_name: from_details("principalName").or_else(|| from_details("userName")),
                user_type: from_details("principalType"),
            })
        }
        Kind::Bucket => Resource::S3Bucket {
            bucket_names: kinds
                .iter()
                .filter(|(_, _, k)| *k == Kind::Bucket)
                .filter_map(|(_, r, _)| text(r, "id"))
                .filter_map(|id| arn_resource(&id, ":::"))
                .collect(),
        },
        Kind::SecurityGroup => Resource::SecurityGroup {
            group_id: details("AwsEc2SecurityGroup")
                .and_then(|d| text(d, "groupId"))
                .or_else(|| arn_resource(&id, "security-group/"))
                .ok_or_else(missing)?,
        },
        Kind::Snapshot => Resource::Snapshot {
            snapshot_id: arn_resource(&id, "snapshot/").ok_or_else(missing)?,
        },
    };
    Ok((resource, resource_type, Some(origin)))
}

/// The resource id in an ARN after `marker` (`arn:aws:ec2:…:instance/i-…`,
/// `arn:aws:s3:::bucket`), or the id itself when it is not an ARN. Empty: none.
fn arn_resource(id: &str, marker: &str) -> Option<String> {
    let out = if id.starts_with("arn:") {
        id.rsplit_once(marker).map(|(_, rest)| rest)?
    } else {
        id
    };
    (!out.trim().is_empty()).then(|| out.to_string())
}

fn instance(
    instance_id: String,
    resource: &Map<String, Value>,
    details: Option<&Map<String, Value>>,
) -> InstanceDetails {
    let d = |k: &str| details.and_then(|d| text(d, k));
    let network_interfaces = details
        .and_then(|d| match field(d, "networkInterfaces") {
            Some(Value::Array(items)) => Some(items),
            _ => None,
        })
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_object)
                .filter_map(|eni| text(eni, "networkInterfaceId"))
                .filter(|id| !id.trim().is_empty())
                .map(|network_interface_id| NetworkInterface {
                    network_interface_id,
                    subnet_id: d("subnetId"),
                    vpc_id: d("vpcId"),
                    ..NetworkInterface::default()
                })
                .collect()
        })
        .unwrap_or_default();
    let tags = match field(resource, "tags") {
        Some(Value::Object(tags)) => tags
            .iter()
            .map(|(key, value)| Tag {
                key: key.clone(),
                value: value_as_text(value).unwrap_or_default(),
            })
            .collect(),
        _ => Vec::new(),
    };
    InstanceDetails {
        instance_id,
        instance_type: d("type"),
        image_id: d("imageId"),
        availability_zone: None,
        instance_state: None,
        launch_time: d("launchedAt"),
        iam_instance_profile: d("iamInstanceProfileArn").map(|arn| InstanceProfileRef {
            arn: Some(arn),
            id: None,
        }),
        tags,
        network_interfaces,
    }
}
