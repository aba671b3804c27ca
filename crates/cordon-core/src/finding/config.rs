//! AWS Config rule evaluations: `Config Rules Compliance Change` events.
//!
//! The event's `detail` names the rule (`configRuleName`), the resource
//! (`resourceType`, `resourceId`), where it is (`awsAccountId`, `awsRegion`)
//! and the new and old results (`newEvaluationResult.complianceType`,
//! `oldEvaluationResult.complianceType`). Every compliance value is read;
//! only `NON_COMPLIANT` lets a playbook answer ([`Finding::nothing_to_do`]).
//!
//! The finding id is `config-` and 40 hex digits of SHA-256 over the rule
//! name, the resource type and id, and the evaluation's time
//! ([`ConfigEvaluation::evaluated_at`]); the case id adds the partition,
//! account and region as for every finding. So a re-delivered event (EventBridge
//! delivers at least once) maps to its case, and the same resource failing
//! the same rule again later is a new evaluation, hence a new case, which
//! the loop guard then weighs against the remediation before it.
//!
//! A periodic rule evaluating the whole account names `AWS::::Account` and
//! the account id: read as [`Resource::Account`] when that id is the
//! evaluation's own `awsAccountId`, refused otherwise.
//!
//! Config gives no severity: these findings read as 1.0 (GuardDuty's lowest);
//! playbooks answer them by `sources`, `config-rules` and `resource-types`.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{
    ConfigEvaluation, Finding, FindingError, FindingType, InstanceDetails, Resource, Service,
    Severity, Source, Wrapping, an_object, field, json_kind, preview, required_text, text,
    value_as_text,
};

/// An EventBridge event from Config about a rule's compliance.
pub(super) fn is_event(source: &str, detail_type: &str) -> bool {
    source == "aws.config" || detail_type == "Config Rules Compliance Change"
}

/// A bare `detail` of such an event (what a `$.detail` input path delivers).
pub(super) fn looks_like(object: &Map<String, Value>) -> bool {
    object.contains_key("configRuleName")
        && (object.contains_key("newEvaluationResult") || object.contains_key("resourceId"))
}

/// Config's resource type for an evaluation of the whole account.
const ACCOUNT_RESOURCE: &str = "AWS::::Account";

/// Longest rule name Config allows.
const MAX_RULE_NAME: usize = 128;

/// Reads one evaluation: `detail` is the event's `detail` (or the bare
/// object), `envelope` the event around it, whose `account`, `region` and
/// `time` stand in when the detail lacks them.
pub(super) fn finding_from_value(
    detail: &Value,
    location: &str,
    wrapping: Wrapping,
    raw: String,
    envelope: Option<&Map<String, Value>>,
) -> Result<Finding, FindingError> {
    let object = an_object(detail, location, "the Config event's `detail`")?;
    let shown = text(object, "configRuleName")
        .map(|r| preview(&r))
        .unwrap_or_else(|| "(no rule)".to_string());
    let invalid = |reason: String| FindingError::Invalid {
        location: location.to_string(),
        id: format!("Config rule {shown}"),
        reason,
    };
    let from_envelope = |name: &str| {
        envelope
            .and_then(|e| e.get(name))
            .and_then(value_as_text)
            .filter(|t| !t.trim().is_empty())
    };
    let rule_name = required_text(object, "configRuleName").map_err(&invalid)?;
    if rule_name.chars().count() > MAX_RULE_NAME || rule_name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "`configRuleName` {} is not a Config rule name (1 to {MAX_RULE_NAME} printable characters)",
            preview(&rule_name)
        )));
    }
    let new_result = match field(object, "newEvaluationResult") {
        Some(Value::Object(r)) => r,
        Some(other) => {
            return Err(invalid(format!(
                "`newEvaluationResult` is {}, expected an object",
                json_kind(other)
            )));
        }
        None => return Err(invalid("`newEvaluationResult` is missing".to_string())),
    };
    let qualifier = match field(new_result, "evaluationResultIdentifier") {
        Some(Value::Object(id)) => match field(id, "evaluationResultQualifier") {
            Some(Value::Object(q)) => Some(q),
            _ => None,
        },
        _ => None,
    };
    let from_qualifier = |name: &str| qualifier.and_then(|q| text(q, name));
    let resource_type = required_text(object, "resourceType")
        .or_else(|error| from_qualifier("resourceType").ok_or(error))
        .map_err(&invalid)?;
    let resource_id = required_text(object, "resourceId")
        .or_else(|error| from_qualifier("resourceId").ok_or(error))
        .map_err(&invalid)?;
    let compliance = required_text(new_result, "complianceType")
        .map_err(|e| invalid(format!("in `newEvaluationResult`: {e}")))?;
    let old_compliance = match field(object, "oldEvaluationResult") {
        Some(Value::Object(old)) => text(old, "complianceType"),
        _ => None,
    };
    let evaluated_at = text(new_result, "resultRecordedTime")
        .or_else(|| {
            match field(new_result, "evaluationResultIdentifier") {
                Some(Value::Object(id)) => text(id, "orderingTimestamp"),
                _ => None,
            }
        })
        .or_else(|| text(object, "notificationCreationTime"))
        .or_else(|| from_envelope("time"))
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            invalid(
                "no evaluation time (`newEvaluationResult.resultRecordedTime`, `orderingTimestamp`, `notificationCreationTime`): the case id cannot be derived"
                    .to_string(),
            )
        })?;
    let account_id = required_text(object, "awsAccountId")
        .or_else(|error| from_envelope("account").ok_or(error))
        .map_err(&invalid)?;
    let region = required_text(object, "awsRegion")
        .or_else(|error| from_envelope("region").ok_or(error))
        .map_err(&invalid)?;
    let partition = text(object, "configRuleARN")
        .and_then(|arn| arn.split(':').nth(1).map(str::to_string))
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "aws".to_string());
    let resource = match resource_type.as_str() {
        "AWS::EC2::Instance" => Resource::Instance(InstanceDetails {
            instance_id: resource_id.clone(),
            ..InstanceDetails::default()
        }),
        "AWS::S3::Bucket" => Resource::S3Bucket {
            bucket_names: vec![resource_id.clone()],
        },
        "AWS::EC2::SecurityGroup" => Resource::SecurityGroup {
            group_id: resource_id.clone(),
        },
        "AWS::EC2::Snapshot" => Resource::Snapshot {
            snapshot_id: resource_id.clone(),
        },
        // A periodic rule (`ebs-snapshot-public-restorable-check`) evaluates
        // the account itself: its id is the account's, which must be the
        // account the evaluation is in. Anything else is forged or corrupted,
        // and acting on it would act on the wrong account.
        ACCOUNT_RESOURCE if resource_id != account_id => {
            return Err(invalid(format!(
                "`resourceId` {} of an `{ACCOUNT_RESOURCE}` evaluation is not its `awsAccountId` {}: an account-level evaluation is about its own account; nothing was planned and no AWS call was made: check the evaluation at its source",
                preview(&resource_id),
                preview(&account_id)
            )));
        }
        ACCOUNT_RESOURCE => Resource::Account {
            account_id: resource_id.clone(),
        },
        other => Resource::Other {
            resource_type: other.to_string(),
        },
    };
    let finding_type = FindingType::foreign(&rule_name).map_err(&invalid)?;
    let annotation = text(new_result, "annotation");
    Ok(Finding {
        id: evaluation_id(&rule_name, &resource_type, &resource_id, &evaluated_at),
        arn: text(object, "configRuleARN"),
        account_id,
        region,
        partition,
        schema_version: text(object, "recordVersion"),
        finding_type,
        severity: Severity::new(Severity::MIN).map_err(&invalid)?,
        created_at: Some(evaluated_at.clone()),
        updated_at: text(object, "notificationCreationTime"),
        title: Some(format!(
            "{resource_type} {resource_id} is {compliance} with Config rule {rule_name}"
        )),
        description: annotation,
        resource,
        service: Service::default(),
        wrapping,
        event_id: None,
        raw,
        source: Source::Config,
        asff: None,
        config: Some(ConfigEvaluation {
            rule_name,
            resource_type,
            resource_id,
            compliance,
            old_compliance,
            evaluated_at,
        }),
        resource_origin: Some("resourceId".to_string()),
    })
}

/// A Config event: its `detail` read as one evaluation.
pub(super) fn parse_event(
    object: &Map<String, Value>,
    raw: &str,
    location: &str,
) -> Result<Finding, FindingError> {
    let Some(detail) = object.get("detail") else {
        return Err(FindingError::NotAFinding {
            location: location.to_string(),
            reason: "it is a Config event without a `detail`".to_string(),
        });
    };
    let mut finding = finding_from_value(
        detail,
        location,
        Wrapping::EventBridge,
        raw.to_string(),
        Some(object),
    )?;
    finding.event_id = object.get("id").and_then(value_as_text);
    Ok(finding)
}

/// `config-` and 40 hex digits of SHA-256 over the evaluation's parts, NUL-separated.
fn evaluation_id(rule: &str, resource_type: &str, resource_id: &str, evaluated_at: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [rule, resource_type, resource_id, evaluated_at] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest = hex::encode(hasher.finalize());
    format!("config-{}", &digest[..40])
}
