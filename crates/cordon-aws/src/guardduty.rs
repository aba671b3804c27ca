//! GuardDuty intake: fetch a finding by id, or list the open ones, as the
//! same [`Finding`] a finding file gives.
//!
//! The SDK hands back *typed* findings, but cordon needs the finding's JSON:
//! [`parse_findings`] reads GuardDuty's camelCase shape, and the text is kept
//! verbatim as evidence. So every `GetFindings` call keeps the raw HTTP
//! response body ([`AwsClients::call_raw`]), and that body — exactly what
//! GuardDuty sent — is what gets parsed.
//! Only if no body was captured (a transport that never buffers it) is the JSON
//! rebuilt from the typed fields ([`typed_finding_json`]).

use aws_sdk_guardduty::types::{Condition, FindingCriteria};
use aws_smithy_runtime_api::box_error::BoxError;
use cordon_core::executor::ErrorKind;
use cordon_core::finding::{Finding, FindingError, Resource, parse_findings};
use cordon_core::playbook::Playbook;
use cordon_core::route::{Route, route};
use serde_json::{Map, Value, json};

use crate::call::items;
use crate::client::AwsClients;
use crate::errors::CallError;
use crate::ops;

/// `GetFindings` accepts at most 50 finding ids per call.
pub const GET_FINDINGS_BATCH: usize = 50;
/// `ListFindings` page size (its maximum).
const LIST_PAGE_SIZE: i32 = 50;

/// Why a finding could not be taken in from GuardDuty; each message is one
/// sentence saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// No detector in the region: GuardDuty is off, so there are no findings.
    #[error(
        "GuardDuty is not enabled in {region}: no detector (enable GuardDuty or check the region)"
    )]
    NoDetector { region: String },
    /// Several detectors (rare; e.g. left over from a migration): cordon will not guess.
    #[error(
        "GuardDuty has {count} detectors in {region} ({ids}): pass --detector to choose one",
        count = ids.len(),
        ids = ids.join(", ")
    )]
    SeveralDetectors { region: String, ids: Vec<String> },
    /// GetFindings answered without the finding: wrong id, detector or region.
    #[error(
        "GuardDuty finding {finding_id} not found in detector {detector} ({region}): check the id, the detector and the region"
    )]
    FindingNotFound {
        finding_id: String,
        detector: String,
        region: String,
    },
    /// The identity lacks a GuardDuty read permission.
    #[error(
        "GuardDuty {operation} was denied ({scope}): grant `{permission}` to the identity cordon runs as"
    )]
    AccessDenied {
        operation: &'static str,
        permission: &'static str,
        scope: String,
        #[source]
        source: BoxError,
    },
    /// Throttling outlasted the SDK's retries.
    #[error(
        "GuardDuty kept throttling {operation} ({scope}) after cordon's retries: wait a minute and retry"
    )]
    Throttled {
        operation: &'static str,
        scope: String,
        #[source]
        source: BoxError,
    },
    /// Any other AWS failure, with GuardDuty's own code and message.
    #[error("GuardDuty {operation} failed ({scope}) with {code}{detail}")]
    Aws {
        operation: &'static str,
        scope: String,
        code: String,
        detail: String,
        #[source]
        source: BoxError,
    },
    /// GuardDuty answered, but not with findings cordon can read.
    #[error("GuardDuty GetFindings ({scope}) returned findings cordon cannot read")]
    Unreadable {
        scope: String,
        #[source]
        source: FindingError,
    },
}

/// Why a delivered finding was not confirmed by GuardDuty: each is refused
/// before any change (the CLI's exit 2), in one sentence.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Only GuardDuty's findings can be re-read from GuardDuty.
    #[error(
        "finding {finding} came from {source_name}, not GuardDuty: --verify-source re-reads only GuardDuty's findings (delivered directly or through Security Hub); run it without --verify-source after checking it at its source"
    )]
    NotGuardDuty {
        finding: String,
        source_name: String,
    },
    /// Without a detector id there is nowhere to re-read the finding from.
    #[error(
        "finding {finding} names no GuardDuty detector (service.detectorId), so it cannot be verified at its source: fetch it with --finding-id ID --detector D instead"
    )]
    NoDetector { finding: String },
    /// An id the re-read would send is malformed: refused before any call.
    #[error("finding {finding}: {field} {source}; refused before any AWS call")]
    Malformed {
        finding: String,
        field: &'static str,
        #[source]
        source: cordon_core::ids::IdError,
    },
    /// GuardDuty does not have the finding: forged, or from another detector.
    #[error(
        "finding {finding} is not known to GuardDuty (detector {detector} in {region}): refused as forged; nothing was changed"
    )]
    NotAtSource {
        finding: String,
        detector: String,
        region: String,
    },
    /// GuardDuty has it, with other values in fields that drive the plan.
    #[error(transparent)]
    Mismatch(#[from] cordon_core::provenance::SourceMismatch),
    /// The re-read itself failed (access, throttling, GuardDuty's answer).
    #[error("cannot verify finding {finding} at its source: {source}")]
    Intake {
        finding: String,
        #[source]
        source: Box<IntakeError>,
    },
}

/// A finding as GuardDuty returns it, and where it was read.
#[derive(Debug, Clone)]
pub struct VerifiedFinding {
    /// GuardDuty's copy: the plan is made from this, and it is kept as evidence.
    pub finding: Finding,
    /// `GuardDuty GetFindings, detector D in REGION`, for the journal.
    pub source: String,
}

/// Re-reads `received` from GuardDuty by id (detector from its
/// `service.detectorId`, validated) and checks that GuardDuty's copy agrees
/// in every field that drives a plan (type, resource ids, account, region).
///
/// `clients` must be built for the finding's region and an identity that can
/// read its detector (the delegated administrator's for member findings).
pub async fn verify_at_source(
    clients: &AwsClients,
    received: &Finding,
) -> Result<VerifiedFinding, VerifyError> {
    use cordon_core::ids::IdKind;
    let shown = cordon_core::text::preview(&received.id);
    let check = |field: &'static str, kind: IdKind, value: &str| {
        kind.check(value).map_err(|source| VerifyError::Malformed {
            finding: shown.clone(),
            field,
            source,
        })
    };
    let from_guardduty = match received.source {
        cordon_core::finding::Source::GuardDuty => true,
        cordon_core::finding::Source::SecurityHub => received.product_name() == Some("GuardDuty"),
        cordon_core::finding::Source::Config => false,
    };
    if !from_guardduty {
        return Err(VerifyError::NotGuardDuty {
            finding: shown,
            source_name: match received.product_name() {
                Some(product) => format!("{product} via {}", received.source),
                None => received.source.to_string(),
            },
        });
    }
    check("id", IdKind::FindingId, &received.id)?;
    check("region", IdKind::Region, &received.region)?;
    let detector =
        received
            .service
            .detector_id
            .as_deref()
            .ok_or_else(|| VerifyError::NoDetector {
                finding: shown.clone(),
            })?;
    check("service.detectorId", IdKind::Detector, detector)?;
    let found = get_findings(clients, detector, std::slice::from_ref(&received.id))
        .await
        .map_err(|source| VerifyError::Intake {
            finding: shown.clone(),
            source: Box::new(source),
        })?;
    let source_finding = found
        .into_iter()
        .find(|f| f.id == received.id)
        .ok_or_else(|| VerifyError::NotAtSource {
            finding: shown.clone(),
            detector: detector.to_owned(),
            region: clients.region.clone(),
        })?;
    cordon_core::provenance::compare_with_source(received, &source_finding, "GuardDuty")?;
    Ok(VerifiedFinding {
        finding: source_finding,
        source: format!(
            "GuardDuty GetFindings, detector {detector} in {}",
            clients.region
        ),
    })
}

/// Fetches one finding by id, parsed from GuardDuty's own JSON.
///
/// `detector` defaults to the region's only detector (see [`resolve_detector`]).
pub async fn fetch_finding(
    clients: &AwsClients,
    detector: Option<&str>,
    finding_id: &str,
) -> Result<Finding, IntakeError> {
    let detector = resolve_detector(clients, detector).await?;
    let findings = get_findings(clients, &detector, &[finding_id.to_owned()]).await?;
    findings
        .into_iter()
        .find(|finding| finding.id == finding_id)
        .ok_or_else(|| IntakeError::FindingNotFound {
            finding_id: finding_id.to_owned(),
            detector,
            region: clients.region.clone(),
        })
}

/// The open (not archived) findings at or above `min_severity`, most severe
/// first (ties by id, so the order is stable), for triage.
pub async fn list_open_findings(
    clients: &AwsClients,
    detector: Option<&str>,
    min_severity: f64,
) -> Result<Vec<Finding>, IntakeError> {
    let detector = resolve_detector(clients, detector).await?;
    let scope = format!("detector {detector} in {}", clients.region);
    // The criterion takes a whole number; the exact bound is applied below.
    let floor = min_severity.floor().max(0.0) as i64;
    let criteria = FindingCriteria::builder()
        .criterion(
            "service.archived",
            Condition::builder().equals("false").build(),
        )
        .criterion(
            "severity",
            Condition::builder().greater_than_or_equal(floor).build(),
        )
        .build();
    let request = clients
        .guardduty
        .list_findings()
        .detector_id(&detector)
        .finding_criteria(criteria)
        .max_results(LIST_PAGE_SIZE);
    let pages = clients
        .paginate(&ops::GUARDDUTY_LIST_FINDINGS, &scope, request)
        .await
        .map_err(intake_error)?;
    let ids = items(&pages, |page| page.finding_ids());
    let mut findings = Vec::with_capacity(ids.len());
    for batch in ids.chunks(GET_FINDINGS_BATCH) {
        findings.extend(get_findings(clients, &detector, batch).await?);
    }
    findings
        .retain(|finding| finding.severity.value() >= min_severity && !finding.service.archived);
    findings.sort_by(|a, b| {
        b.severity
            .value()
            .total_cmp(&a.severity.value())
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(findings)
}

/// The detector to read from: the one given, else the region's only one.
/// None means GuardDuty is off; several means the caller must choose.
pub async fn resolve_detector(
    clients: &AwsClients,
    detector: Option<&str>,
) -> Result<String, IntakeError> {
    if let Some(detector) = detector {
        return Ok(detector.to_owned());
    }
    let scope = format!("region {}", clients.region);
    let request = clients.guardduty.list_detectors();
    let pages = clients
        .paginate(&ops::GUARDDUTY_LIST_DETECTORS, &scope, request)
        .await
        .map_err(intake_error)?;
    let mut ids = items(&pages, |page| page.detector_ids());
    match ids.len() {
        0 => Err(IntakeError::NoDetector {
            region: clients.region.clone(),
        }),
        1 => Ok(ids.remove(0)),
        _ => Err(IntakeError::SeveralDetectors {
            region: clients.region.clone(),
            ids,
        }),
    }
}

/// One `GetFindings` call (at most [`GET_FINDINGS_BATCH`] ids), parsed from
/// the raw response body.
async fn get_findings(
    clients: &AwsClients,
    detector: &str,
    ids: &[String],
) -> Result<Vec<Finding>, IntakeError> {
    let scope = format!("detector {detector} in {}", clients.region);
    let request = clients
        .guardduty
        .get_findings()
        .detector_id(detector)
        .set_finding_ids(Some(ids.to_vec()));
    let answer = clients
        .call_raw(&ops::GUARDDUTY_GET_FINDINGS, &scope, request)
        .await
        .map_err(intake_error)?;
    let output = answer.output;
    if output.findings().is_empty() {
        return Ok(Vec::new());
    }
    let origin = format!("GuardDuty {} ({scope})", ops::GUARDDUTY_GET_FINDINGS);
    let text = match answer.body.map(String::from_utf8) {
        Some(Ok(text)) => text,
        // No body captured (or not UTF-8, which GuardDuty never sends): rebuild it.
        _ => {
            tracing::warn!(
                %detector,
                "GetFindings raw body unavailable; rebuilding finding JSON from typed fields"
            );
            let findings: Vec<Value> = output.findings().iter().map(typed_finding_json).collect();
            json!({ "findings": findings }).to_string()
        }
    };
    parse_findings(&text, &origin).map_err(|source| IntakeError::Unreadable { scope, source })
}

/// One line of `cordon triage`: a finding and the playbook `cordon run` would
/// give it, so a responder can see what is open and what cordon would do.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct TriageRow {
    pub finding_id: String,
    pub finding_type: String,
    /// The affected resource as a responder names it (instance id, key and user, bucket).
    pub resource: String,
    pub severity: f64,
    pub severity_band: String,
    /// The playbook routing chooses; `None` is "no match", an answer rather than an error.
    pub playbook: Option<String>,
}

/// Routes each finding (already sorted by [`list_open_findings`]) against
/// the playbooks; pure, so triage output is testable without AWS.
pub fn triage(findings: &[Finding], playbooks: &[Playbook]) -> Vec<TriageRow> {
    findings
        .iter()
        .map(|finding| TriageRow {
            finding_id: finding.id.clone(),
            finding_type: finding.finding_type.raw.clone(),
            resource: resource_label(&finding.resource),
            severity: finding.severity.value(),
            severity_band: finding.severity.band().to_string(),
            playbook: match route(finding, playbooks) {
                (Route::Matched { reason, .. }, _) => Some(reason.playbook),
                (Route::NoMatch { .. }, _) => None,
            },
        })
        .collect()
}

fn resource_label(resource: &Resource) -> String {
    match resource {
        Resource::Instance(instance) => instance.instance_id.clone(),
        Resource::AccessKey(key) => format!(
            "{} ({})",
            key.access_key_id,
            key.user_name.as_deref().unwrap_or("unknown user")
        ),
        Resource::S3Bucket { bucket_names } if !bucket_names.is_empty() => {
            format!("s3://{}", bucket_names.join(", s3://"))
        }
        other => other.resource_type().to_owned(),
    }
}

/// Turns a failed GuardDuty call into one clear sentence naming GuardDuty and the scope.
fn intake_error(err: CallError) -> IntakeError {
    let (operation, permission) = (err.op.name, err.op.iam_action);
    let scope = err.resource.clone();
    match err.kind {
        ErrorKind::Throttled => IntakeError::Throttled {
            operation,
            scope,
            source: Box::new(err),
        },
        ErrorKind::AccessDenied => IntakeError::AccessDenied {
            operation,
            permission,
            scope,
            source: Box::new(err),
        },
        _ => IntakeError::Aws {
            operation,
            scope,
            code: err.code.clone(),
            detail: if err.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", err.detail)
            },
            source: Box::new(err),
        },
    }
}

/// The fallback when the raw body is unavailable: GuardDuty's camelCase JSON
/// rebuilt from the typed finding, covering exactly what cordon reads — the
/// top-level fields, `resource` (`resourceType`, `instanceDetails` with
/// profile, tags and network interfaces, `accessKeyDetails`) and `service`
/// (`detectorId`, `action.actionType`, `resourceRole`, `eventFirstSeen`,
/// `eventLastSeen`, `archived`, `count`, `additionalInfo`). Everything else
/// GuardDuty sent (action details, evidence, runtime details) is lost, so
/// evidence built from this is a summary, not the verbatim finding.
pub fn typed_finding_json(finding: &aws_sdk_guardduty::types::Finding) -> Value {
    let mut object = Map::new();
    put(&mut object, "schemaVersion", finding.schema_version());
    put(&mut object, "accountId", finding.account_id());
    put(&mut object, "region", finding.region());
    put(&mut object, "partition", finding.partition());
    put(&mut object, "id", finding.id());
    put(&mut object, "arn", finding.arn());
    put(&mut object, "type", finding.r#type());
    if let Some(severity) = finding.severity() {
        object.insert("severity".into(), json!(severity));
    }
    put(&mut object, "createdAt", finding.created_at());
    put(&mut object, "updatedAt", finding.updated_at());
    put(&mut object, "title", finding.title());
    put(&mut object, "description", finding.description());
    if let Some(resource) = finding.resource() {
        let mut out = Map::new();
        put(&mut out, "resourceType", resource.resource_type());
        if let Some(instance) = resource.instance_details() {
            let mut details = Map::new();
            put(&mut details, "instanceId", instance.instance_id());
            put(&mut details, "instanceType", instance.instance_type());
            put(&mut details, "launchTime", instance.launch_time());
            put(&mut details, "imageId", instance.image_id());
            put(
                &mut details,
                "availabilityZone",
                instance.availability_zone(),
            );
            put(&mut details, "instanceState", instance.instance_state());
            if let Some(profile) = instance.iam_instance_profile() {
                details.insert(
                    "iamInstanceProfile".into(),
                    json!({ "arn": profile.arn(), "id": profile.id() }),
                );
            }
            let tags: Vec<Value> = instance
                .tags()
                .iter()
                .map(|tag| json!({ "key": tag.key(), "value": tag.value() }))
                .collect();
            details.insert("tags".into(), Value::Array(tags));
            let enis: Vec<Value> = instance
                .network_interfaces()
                .iter()
                .map(|eni| {
                    let groups: Vec<Value> = eni
                        .security_groups()
                        .iter()
                        .map(|g| json!({ "groupId": g.group_id(), "groupName": g.group_name() }))
                        .collect();
                    json!({
                        "networkInterfaceId": eni.network_interface_id(),
                        "privateIpAddress": eni.private_ip_address(),
                        "publicIp": eni.public_ip(),
                        "subnetId": eni.subnet_id(),
                        "vpcId": eni.vpc_id(),
                        "securityGroups": groups,
                    })
                })
                .collect();
            details.insert("networkInterfaces".into(), Value::Array(enis));
            out.insert("instanceDetails".into(), Value::Object(details));
        }
        if let Some(key) = resource.access_key_details() {
            out.insert(
                "accessKeyDetails".into(),
                json!({
                    "accessKeyId": key.access_key_id(),
                    "principalId": key.principal_id(),
                    "userName": key.user_name(),
                    "userType": key.user_type(),
                }),
            );
        }
        object.insert("resource".into(), Value::Object(out));
    }
    if let Some(service) = finding.service() {
        let mut out = Map::new();
        put(&mut out, "detectorId", service.detector_id());
        if let Some(action) = service.action() {
            out.insert(
                "action".into(),
                json!({ "actionType": action.action_type() }),
            );
        }
        put(&mut out, "resourceRole", service.resource_role());
        put(&mut out, "eventFirstSeen", service.event_first_seen());
        put(&mut out, "eventLastSeen", service.event_last_seen());
        if let Some(archived) = service.archived() {
            out.insert("archived".into(), json!(archived));
        }
        if let Some(count) = service.count() {
            out.insert("count".into(), json!(count));
        }
        if let Some(info) = service.additional_info() {
            out.insert(
                "additionalInfo".into(),
                json!({ "value": info.value(), "type": info.r#type() }),
            );
        }
        object.insert("service".into(), Value::Object(out));
    }
    Value::Object(object)
}

fn put(object: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        object.insert(key.to_owned(), Value::String(value.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use aws_sdk_guardduty::types::{AccessKeyDetails, Finding as TypedFinding, Resource, Service};
    use cordon_core::finding::Resource as CoreResource;

    #[test]
    fn typed_fallback_parses_as_a_finding() {
        let typed = TypedFinding::builder()
            .schema_version("2.0")
            .account_id("111122223333")
            .region("us-east-1")
            .partition("aws")
            .id("abc123")
            .r#type("UnauthorizedAccess:IAMUser/MaliciousIPCaller")
            .severity(5.0)
            .created_at("2024-06-11T14:08:31.512Z")
            .updated_at("2024-06-11T15:53:02.104Z")
            .resource(
                Resource::builder()
                    .resource_type("AccessKey")
                    .access_key_details(
                        AccessKeyDetails::builder()
                            .access_key_id("AKIAEXAMPLE")
                            .user_name("alice")
                            .user_type("IAMUser")
                            .build(),
                    )
                    .build(),
            )
            .service(
                Service::builder()
                    .detector_id("det1")
                    .event_first_seen("2024-06-11T14:02:11.000Z")
                    .archived(false)
                    .count(3)
                    .build(),
            )
            .build();
        let text = json!({ "findings": [typed_finding_json(&typed)] }).to_string();
        let parsed = parse_findings(&text, "test").unwrap();
        assert_eq!(parsed.len(), 1);
        let finding = &parsed[0];
        assert_eq!(finding.id, "abc123");
        assert_eq!(finding.severity.value(), 5.0);
        assert_eq!(finding.service.detector_id.as_deref(), Some("det1"));
        match &finding.resource {
            CoreResource::AccessKey(key) => assert_eq!(key.user_name.as_deref(), Some("alice")),
            other => panic!("unexpected resource {other:?}"),
        }
    }
}
