//! The GuardDuty finding model: tolerant of what AWS sends, strict about what
//! the engine needs (`id`, `type`, `severity`, `accountId`, `region`).
//!
//! Three wrappings arrive in practice: an EventBridge event (`detail` holds the
//! finding), a bare finding (what a `$.detail` input path delivers) and a
//! `GetFindings` item (or a whole `GetFindings` response with `findings: [...]`).
//! Files may hold one of those, a JSON array of them, or JSON lines.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// Largest input accepted, so a stray multi-gigabyte file fails fast with a clear error.
pub const MAX_INPUT_BYTES: usize = 64 * 1024 * 1024;

/// Why a finding could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FindingError {
    #[error("the input is empty: expected a GuardDuty finding as JSON")]
    Empty,
    #[error(
        "the input is {0} bytes, more than the {MAX_INPUT_BYTES}-byte limit: pass one finding file, not an archive"
    )]
    TooLarge(usize),
    #[error("{location}: not valid JSON ({source}): pass a GuardDuty finding, an EventBridge event or a GetFindings response")]
    NotJson {
        location: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{location}: JSON is not a GuardDuty finding: {reason}")]
    NotAFinding { location: String, reason: String },
    #[error("{location}: finding {id}: {reason}")]
    Invalid {
        location: String,
        id: String,
        reason: String,
    },
}

/// How the finding reached us; kept so evidence can say what was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Wrapping {
    /// An EventBridge event whose `detail` is the finding.
    EventBridge,
    /// The finding object itself.
    Bare,
    /// One element of a `GetFindings` response's `findings` array.
    GetFindings,
}

/// A parsed finding. `raw` is the exact text received, kept verbatim for evidence.
#[derive(Debug, Clone)]
pub struct Finding {
    pub id: String,
    pub arn: Option<String>,
    pub account_id: String,
    pub region: String,
    pub partition: String,
    pub schema_version: Option<String>,
    pub finding_type: FindingType,
    pub severity: Severity,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub resource: Resource,
    pub service: Service,
    pub wrapping: Wrapping,
    /// The EventBridge event id, when the finding came in an event.
    pub event_id: Option<String>,
    /// The exact bytes received for this finding (the whole event when wrapped).
    pub raw: String,
}

impl Finding {
    /// The finding object as JSON (the `detail` of an event), for evidence and templating.
    pub fn detail_json(&self) -> Value {
        let value: Value = serde_json::from_str(&self.raw).unwrap_or(Value::Null);
        match self.wrapping {
            Wrapping::EventBridge => value.get("detail").cloned().unwrap_or(Value::Null),
            Wrapping::Bare | Wrapping::GetFindings => value,
        }
    }

    /// True for GuardDuty's generated sample findings (`additionalInfo.sample`).
    pub fn is_sample(&self) -> bool {
        self.service.sample
    }
}

/// `ThreatPurpose:ResourceTypeAffected/ThreatFamilyName.DetectionMechanism!Artifact`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingType {
    pub raw: String,
    pub purpose: String,
    pub resource_type: String,
    pub family: String,
    pub mechanism: Option<String>,
    pub artifact: Option<String>,
}

impl FindingType {
    /// Parses a type string; rejects strings without the `Purpose:Resource/Family` shape.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "type {raw:?} is not of the form ThreatPurpose:ResourceType/ThreatFamily[.Mechanism][!Artifact]"
            )
        };
        let (purpose, rest) = raw.split_once(':').ok_or_else(bad)?;
        let (resource_type, rest) = rest.split_once('/').ok_or_else(bad)?;
        let (family_mechanism, artifact) = match rest.split_once('!') {
            Some((fm, a)) => (fm, Some(a.to_string())),
            None => (rest, None),
        };
        let (family, mechanism) = match family_mechanism.split_once('.') {
            Some((f, m)) => (f, Some(m.to_string())),
            None => (family_mechanism, None),
        };
        if purpose.is_empty() || resource_type.is_empty() || family.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            raw: raw.to_string(),
            purpose: purpose.to_string(),
            resource_type: resource_type.to_string(),
            family: family.to_string(),
            mechanism,
            artifact,
        })
    }
}

impl fmt::Display for FindingType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// GuardDuty's severity, a number from 1.0 to 10.0.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct Severity(f64);

impl Severity {
    pub const MIN: f64 = 1.0;
    pub const MAX: f64 = 10.0;

    pub fn new(value: f64) -> Result<Self, String> {
        if value.is_finite() && (Self::MIN..=Self::MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err(format!(
                "severity {value} is outside GuardDuty's range {}-{}",
                Self::MIN,
                Self::MAX
            ))
        }
    }

    pub fn value(self) -> f64 {
        self.0
    }

    /// Classified by range, never by exact value (AWS-NOTES: severity bands).
    pub fn band(self) -> SeverityBand {
        match self.0 {
            v if v < 4.0 => SeverityBand::Low,
            v if v < 7.0 => SeverityBand::Medium,
            v if v < 9.0 => SeverityBand::High,
            _ => SeverityBand::Critical,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Severity bands: low 1.0-3.9, medium 4.0-6.9, high 7.0-8.9, critical 9.0-10.0.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    strum::Display,
    strum::EnumString,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum SeverityBand {
    Low,
    Medium,
    High,
    Critical,
}

/// The resource a finding is about. Unknown kinds are kept, never rejected.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    Instance(InstanceDetails),
    AccessKey(AccessKeyDetails),
    S3Bucket { bucket_names: Vec<String> },
    Other { resource_type: String },
}

impl Resource {
    /// GuardDuty's `resourceType` string for this resource.
    pub fn resource_type(&self) -> &str {
        match self {
            Resource::Instance(_) => "Instance",
            Resource::AccessKey(_) => "AccessKey",
            Resource::S3Bucket { .. } => "S3Bucket",
            Resource::Other { resource_type } => resource_type,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDetails {
    #[serde(default)]
    pub instance_id: String,
    #[serde(default)]
    pub instance_type: Option<String>,
    #[serde(default)]
    pub image_id: Option<String>,
    #[serde(default)]
    pub availability_zone: Option<String>,
    #[serde(default)]
    pub instance_state: Option<String>,
    /// Epoch millis or a timestamp string in the wild; kept as text.
    #[serde(default, deserialize_with = "lenient_text")]
    pub launch_time: Option<String>,
    #[serde(default)]
    pub iam_instance_profile: Option<InstanceProfileRef>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<Tag>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub network_interfaces: Vec<NetworkInterface>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceProfileRef {
    #[serde(default)]
    pub arn: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct Tag {
    #[serde(default)]
    pub key: String,
    #[serde(default, deserialize_with = "lenient_text_or_empty")]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    #[serde(default)]
    pub network_interface_id: String,
    #[serde(default)]
    pub private_ip_address: Option<String>,
    #[serde(default)]
    pub public_ip: Option<String>,
    #[serde(default)]
    pub subnet_id: Option<String>,
    #[serde(default)]
    pub vpc_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub security_groups: Vec<SecurityGroupRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupRef {
    #[serde(default)]
    pub group_id: String,
    #[serde(default)]
    pub group_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyDetails {
    #[serde(default)]
    pub access_key_id: String,
    #[serde(default)]
    pub principal_id: Option<String>,
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub user_type: Option<String>,
}

/// Long-term IAM user keys can be deactivated; temporary STS keys cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyKind {
    /// `AKIA…`: an IAM user's access key.
    LongTerm,
    /// `ASIA…`: temporary credentials from STS; revoke the role's sessions instead.
    Temporary,
    Unknown,
}

impl AccessKeyDetails {
    pub fn key_kind(&self) -> KeyKind {
        if self.access_key_id.starts_with("AKIA") {
            KeyKind::LongTerm
        } else if self.access_key_id.starts_with("ASIA") {
            KeyKind::Temporary
        } else {
            KeyKind::Unknown
        }
    }
}

/// Whether the resource was attacked or did the attacking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceRole {
    Target,
    Actor,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Service {
    pub detector_id: Option<String>,
    pub action_type: Option<String>,
    pub resource_role: Option<ResourceRole>,
    pub event_first_seen: Option<String>,
    pub event_last_seen: Option<String>,
    pub archived: bool,
    pub count: Option<u64>,
    pub sample: bool,
}

/// Parses every finding in `input` (one object, an array, a `GetFindings`
/// response, or JSON lines). `origin` names the input in errors.
pub fn parse_findings(input: &str, origin: &str) -> Result<Vec<Finding>, FindingError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(FindingError::TooLarge(input.len()));
    }
    let trimmed = input.trim_start_matches('\u{feff}').trim();
    if trimmed.is_empty() {
        return Err(FindingError::Empty);
    }
    // One JSON document (object or array) or JSON lines.
    let documents: Vec<(String, &RawValue)> = match serde_json::from_str::<&RawValue>(trimmed) {
        Ok(_) if trimmed.starts_with('[') => serde_json::from_str::<Vec<&RawValue>>(trimmed)
            .map_err(|source| FindingError::NotJson {
                location: origin.to_string(),
                source,
            })?
            .into_iter()
            .enumerate()
            .map(|(i, r)| (format!("{origin}[{i}]"), r))
            .collect(),
        Ok(raw) => vec![(origin.to_string(), raw)],
        Err(first_error) => json_lines(trimmed, origin, first_error)?,
    };
    let mut findings = Vec::new();
    for (location, raw) in documents {
        findings.extend(parse_document(raw.get(), &location)?);
    }
    if findings.is_empty() {
        return Err(FindingError::NotAFinding {
            location: origin.to_string(),
            reason: "it holds no findings".to_string(),
        });
    }
    Ok(findings)
}

/// Parses exactly one finding; more or fewer is an error.
pub fn parse_single_finding(input: &str, origin: &str) -> Result<Finding, FindingError> {
    let mut all = parse_findings(input, origin)?;
    if all.len() != 1 {
        return Err(FindingError::NotAFinding {
            location: origin.to_string(),
            reason: format!("it holds {} findings; pass exactly one", all.len()),
        });
    }
    Ok(all.remove(0))
}

/// Splits JSON lines; a malformed single document reports its own parse error.
fn json_lines<'a>(
    text: &'a str,
    origin: &str,
    first_error: serde_json::Error,
) -> Result<Vec<(String, &'a RawValue)>, FindingError> {
    let mut lines = Vec::new();
    let mut first_error = Some(first_error);
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<&RawValue>(line) {
            Ok(raw) => lines.push((format!("{origin}:{}", n + 1), raw)),
            Err(source) if lines.is_empty() => {
                return Err(FindingError::NotJson {
                    location: origin.to_string(),
                    source: first_error.take().unwrap_or(source),
                });
            }
            Err(source) => {
                return Err(FindingError::NotJson {
                    location: format!("{origin}:{}", n + 1),
                    source,
                });
            }
        }
    }
    Ok(lines)
}

fn parse_document(raw: &str, location: &str) -> Result<Vec<Finding>, FindingError> {
    let value: Value = serde_json::from_str(raw).map_err(|source| FindingError::NotJson {
        location: location.to_string(),
        source,
    })?;
    let Value::Object(object) = &value else {
        return Err(FindingError::NotAFinding {
            location: location.to_string(),
            reason: format!("expected a JSON object, found {}", json_kind(&value)),
        });
    };
    if object.contains_key("detail") && (object.contains_key("detail-type") || object.contains_key("source")) {
        let detail = &object["detail"];
        let event_id = object.get("id").and_then(Value::as_str).map(str::to_string);
        let mut finding = finding_from_value(detail, location, Wrapping::EventBridge, raw.to_string())?;
        finding.event_id = event_id;
        return Ok(vec![finding]);
    }
    if let Some(items) = object.get("findings").or_else(|| object.get("Findings")) {
        let Value::Array(items) = items else {
            return Err(FindingError::NotAFinding {
                location: location.to_string(),
                reason: "`findings` is not an array".to_string(),
            });
        };
        let raws: Vec<&RawValue> = serde_json::from_str::<GetFindingsShape<'_>>(raw)
            .map(|shape| shape.findings)
            .unwrap_or_default();
        return items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let text = raws.get(i).map(|r| r.get().to_string()).unwrap_or_else(|| item.to_string());
                finding_from_value(item, &format!("{location}.findings[{i}]"), Wrapping::GetFindings, text)
            })
            .collect();
    }
    Ok(vec![finding_from_value(&value, location, Wrapping::Bare, raw.to_string())?])
}

#[derive(Deserialize)]
struct GetFindingsShape<'a> {
    #[serde(borrow, alias = "Findings")]
    findings: Vec<&'a RawValue>,
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// GuardDuty sends camelCase; the SDK's own serialisation is PascalCase. Accept both.
fn field<'a>(object: &'a serde_json::Map<String, Value>, camel: &str) -> Option<&'a Value> {
    if let Some(v) = object.get(camel) {
        return Some(v);
    }
    let mut pascal = String::with_capacity(camel.len());
    let mut chars = camel.chars();
    if let Some(first) = chars.next() {
        pascal.extend(first.to_uppercase());
        pascal.extend(chars);
    }
    object.get(&pascal)
}

fn text(object: &serde_json::Map<String, Value>, camel: &str) -> Option<String> {
    field(object, camel).and_then(value_as_text)
}

fn value_as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn value_as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn value_as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn finding_from_value(
    value: &Value,
    location: &str,
    wrapping: Wrapping,
    raw: String,
) -> Result<Finding, FindingError> {
    let Value::Object(object) = value else {
        return Err(FindingError::NotAFinding {
            location: location.to_string(),
            reason: format!("expected the finding to be an object, found {}", json_kind(value)),
        });
    };
    let id = text(object, "id");
    let type_text = text(object, "type");
    let severity_value = field(object, "severity");
    if id.is_none() && type_text.is_none() && severity_value.is_none() {
        return Err(FindingError::NotAFinding {
            location: location.to_string(),
            reason: "it has none of `id`, `type`, `severity`".to_string(),
        });
    }
    let id = id.unwrap_or_default();
    let invalid = |reason: String| FindingError::Invalid {
        location: location.to_string(),
        id: if id.is_empty() { "(no id)".to_string() } else { id.clone() },
        reason,
    };
    if id.is_empty() {
        return Err(invalid("missing `id`".to_string()));
    }
    let type_text = type_text.ok_or_else(|| invalid("missing `type`".to_string()))?;
    let finding_type = FindingType::parse(&type_text).map_err(invalid)?;
    let severity_value = severity_value.ok_or_else(|| invalid("missing `severity`".to_string()))?;
    let severity_number = value_as_f64(severity_value)
        .ok_or_else(|| invalid(format!("`severity` is not a number: {severity_value}")))?;
    let severity = Severity::new(severity_number).map_err(invalid)?;
    let account_id = text(object, "accountId").ok_or_else(|| invalid("missing `accountId`".to_string()))?;
    let region = text(object, "region").ok_or_else(|| invalid("missing `region`".to_string()))?;
    let resource = match field(object, "resource") {
        Some(Value::Object(r)) => parse_resource(r).map_err(invalid)?,
        Some(Value::Null) | None => Resource::Other {
            resource_type: "Unknown".to_string(),
        },
        Some(other) => return Err(invalid(format!("`resource` is {}, expected an object", json_kind(other)))),
    };
    let service = match field(object, "service") {
        Some(Value::Object(s)) => parse_service(s),
        _ => Service::default(),
    };
    Ok(Finding {
        id,
        arn: text(object, "arn"),
        account_id,
        region,
        partition: text(object, "partition").unwrap_or_else(|| "aws".to_string()),
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
    })
}

fn parse_resource(object: &serde_json::Map<String, Value>) -> Result<Resource, String> {
    let resource_type = text(object, "resourceType").unwrap_or_else(|| "Unknown".to_string());
    let sub = |name: &str| -> Result<Option<Value>, String> {
        match field(object, name) {
            Some(Value::Null) | None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(normalise_keys(v))),
            Some(other) => Err(format!("`resource.{name}` is {}, expected an object", json_kind(other))),
        }
    };
    match resource_type.as_str() {
        "Instance" => {
            let details = sub("instanceDetails")?.ok_or("`resource.instanceDetails` is missing for an Instance finding")?;
            let details: InstanceDetails = serde_json::from_value(details)
                .map_err(|e| format!("`resource.instanceDetails` is malformed: {e}"))?;
            if details.instance_id.is_empty() {
                return Err("`resource.instanceDetails.instanceId` is missing".to_string());
            }
            Ok(Resource::Instance(details))
        }
        "AccessKey" => {
            let details = sub("accessKeyDetails")?.ok_or("`resource.accessKeyDetails` is missing for an AccessKey finding")?;
            let details: AccessKeyDetails = serde_json::from_value(details)
                .map_err(|e| format!("`resource.accessKeyDetails` is malformed: {e}"))?;
            if details.access_key_id.is_empty() {
                return Err("`resource.accessKeyDetails.accessKeyId` is missing".to_string());
            }
            Ok(Resource::AccessKey(details))
        }
        "S3Bucket" | "S3Object" if field(object, "s3BucketDetails").is_some() => {
            let names = match field(object, "s3BucketDetails") {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|b| b.as_object().and_then(|b| text(b, "name")))
                    .collect(),
                _ => Vec::new(),
            };
            Ok(Resource::S3Bucket { bucket_names: names })
        }
        "S3Bucket" => Ok(Resource::S3Bucket { bucket_names: Vec::new() }),
        _ => Ok(Resource::Other { resource_type }),
    }
}

/// Lower-cases the first letter of every key, so PascalCase (SDK) input reads like camelCase.
fn normalise_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let mut chars = k.chars();
                    let key = match chars.next() {
                        Some(first) => first.to_lowercase().chain(chars).collect(),
                        None => String::new(),
                    };
                    (key, normalise_keys(v))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalise_keys).collect()),
        other => other.clone(),
    }
}

fn parse_service(object: &serde_json::Map<String, Value>) -> Service {
    let action_type = match field(object, "action") {
        Some(Value::Object(action)) => text(action, "actionType"),
        _ => None,
    };
    let resource_role = text(object, "resourceRole").and_then(|r| match r.to_ascii_uppercase().as_str() {
        "TARGET" => Some(ResourceRole::Target),
        "ACTOR" => Some(ResourceRole::Actor),
        _ => None,
    });
    let sample = match field(object, "additionalInfo") {
        Some(Value::Object(info)) => field(info, "sample").and_then(value_as_bool).unwrap_or(false),
        _ => false,
    };
    Service {
        detector_id: text(object, "detectorId"),
        action_type,
        resource_role,
        event_first_seen: text(object, "eventFirstSeen"),
        event_last_seen: text(object, "eventLastSeen"),
        archived: field(object, "archived").and_then(value_as_bool).unwrap_or(false),
        count: field(object, "count").and_then(value_as_f64).and_then(|c| {
            (c >= 0.0 && c.fract() == 0.0).then_some(c as u64)
        }),
        sample,
    }
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn lenient_text<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(value_as_text(&Value::deserialize(deserializer)?))
}

fn lenient_text_or_empty<'de, D>(deserializer: D) -> Result<String, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(lenient_text(deserializer)?.unwrap_or_default())
}
