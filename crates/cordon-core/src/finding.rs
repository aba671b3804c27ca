//! The finding model: tolerant of what AWS sends, strict about what the
//! engine needs (`id`, `type`, `severity`, `accountId`, `region`).
//!
//! Three sources ([`Source`]): GuardDuty findings (read here), Security Hub
//! findings in the AWS Security Finding Format ([`asff`]) and AWS Config rule
//! evaluations ([`config`]). A GuardDuty finding that reaches cordon through
//! Security Hub is read as the GuardDuty finding it is (same id, type,
//! severity and resource), so both deliveries open the same case.
//!
//! Three wrappings arrive in practice: an EventBridge event (`detail` holds the
//! finding, or for Security Hub `detail.findings` holds several), a bare
//! finding (what a `$.detail` input path delivers) and a `GetFindings` item
//! (or a whole `GetFindings` response with `findings: [...]`, Security Hub's
//! with `Findings: [...]`). Files may hold one of those, a JSON array of
//! them, or JSON lines.

mod asff;
mod config;

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// Largest input accepted, so a stray multi-gigabyte file fails fast with a clear error.
pub const MAX_INPUT_BYTES: usize = 64 * 1024 * 1024;

/// Why a finding could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FindingError {
    #[error(
        "the input is empty: expected a GuardDuty or Security Hub finding or a Config compliance event as JSON"
    )]
    Empty,
    #[error(
        "the input is {0} bytes, more than the {MAX_INPUT_BYTES}-byte limit: pass one finding file, not an archive"
    )]
    TooLarge(usize),
    #[error(
        "{location}: not valid JSON ({source}): pass a GuardDuty or Security Hub finding, an EventBridge event or a GetFindings response"
    )]
    NotJson {
        location: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{location}: JSON is not a finding cordon reads (GuardDuty, Security Hub ASFF, Config compliance change): {reason}"
    )]
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
    /// One element of a `GetFindings` response's `findings` array (GuardDuty's
    /// `findings` or Security Hub's `Findings`).
    GetFindings,
    /// Element `index` of a Security Hub event's `detail.findings`; `raw` is
    /// the whole event.
    SecurityHubEvent { index: usize },
}

/// Which AWS service produced the finding. Playbooks match on it (`sources`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    strum::Display,
)]
pub enum Source {
    /// A GuardDuty finding, delivered by GuardDuty itself.
    #[default]
    #[serde(rename = "guardduty")]
    #[strum(serialize = "guardduty")]
    GuardDuty,
    /// A Security Hub (ASFF) finding from any product; a GuardDuty finding
    /// delivered through Security Hub keeps its GuardDuty id, type and severity.
    #[serde(rename = "securityhub")]
    #[strum(serialize = "securityhub")]
    SecurityHub,
    /// An AWS Config rule evaluation (a compliance change).
    #[serde(rename = "config")]
    #[strum(serialize = "config")]
    Config,
}

impl Source {
    /// For `skip_serializing_if`: GuardDuty is the default source.
    pub fn is_guardduty(&self) -> bool {
        *self == Source::GuardDuty
    }
}

/// Security Hub's severity label (ASFF `Severity.Label`).
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
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum SeverityLabel {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl From<SeverityBand> for SeverityLabel {
    /// GuardDuty's bands are Security Hub's labels (the GuardDuty user guide's
    /// ASFF mapping): a GuardDuty finding has the same label both ways.
    fn from(band: SeverityBand) -> Self {
        match band {
            SeverityBand::Low => SeverityLabel::Low,
            SeverityBand::Medium => SeverityLabel::Medium,
            SeverityBand::High => SeverityLabel::High,
            SeverityBand::Critical => SeverityLabel::Critical,
        }
    }
}

/// What Security Hub says of a finding beyond the common model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AsffFacts {
    /// The ASFF `Id` (for GuardDuty's findings, the GuardDuty finding ARN).
    pub asff_id: String,
    pub product_arn: Option<String>,
    pub product_name: Option<String>,
    /// `Types` (or `FindingProviderFields.Types`), e.g.
    /// `Software and Configuration Checks/Vulnerabilities/CVE`.
    pub types: Vec<String>,
    pub severity_label: Option<SeverityLabel>,
    /// The primary resource's ASFF `Type`, e.g. `AwsEc2Instance`.
    pub resource_type: Option<String>,
    /// `Compliance.Status` (`PASSED`, `FAILED`, ...), for control findings.
    pub compliance_status: Option<String>,
}

/// An AWS Config rule evaluation (`Config Rules Compliance Change`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEvaluation {
    pub rule_name: String,
    /// Config's resource type, e.g. `AWS::S3::Bucket`.
    pub resource_type: String,
    pub resource_id: String,
    /// `newEvaluationResult.complianceType`: only `NON_COMPLIANT` opens a case.
    pub compliance: String,
    /// `oldEvaluationResult.complianceType`, when Config sent one.
    pub old_compliance: Option<String>,
    /// Which evaluation this is: its `resultRecordedTime` (else the
    /// `orderingTimestamp`, else the notification's time). Part of the case id.
    pub evaluated_at: String,
}

impl ConfigEvaluation {
    /// The compliance value that calls for remediation.
    pub const NON_COMPLIANT: &'static str = "NON_COMPLIANT";
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
    /// Which service produced it.
    pub source: Source,
    /// Security Hub's facts, for findings read from ASFF.
    pub asff: Option<AsffFacts>,
    /// The evaluation, for Config findings.
    pub config: Option<ConfigEvaluation>,
    /// Where the resource sits in the source document (`Resources[0]`,
    /// `resourceId`), for findings not in GuardDuty's shape: errors name it.
    pub resource_origin: Option<String>,
}

impl Finding {
    /// The finding object as JSON (the `detail` of an event), for evidence and templating.
    pub fn detail_json(&self) -> Value {
        let value: Value = serde_json::from_str(&self.raw).unwrap_or(Value::Null);
        match self.wrapping {
            Wrapping::EventBridge => value.get("detail").cloned().unwrap_or(Value::Null),
            Wrapping::SecurityHubEvent { index } => value
                .get("detail")
                .and_then(|d| d.get("findings"))
                .and_then(|f| f.get(index))
                .cloned()
                .unwrap_or(Value::Null),
            Wrapping::Bare | Wrapping::GetFindings => value,
        }
    }

    /// Why there is nothing to do for this finding whatever the playbooks
    /// say: a Config evaluation that is not `NON_COMPLIANT`, or a Security
    /// Hub control check that passed. `None`: a playbook may answer it.
    pub fn nothing_to_do(&self) -> Option<String> {
        if let Some(c) = &self.config
            && c.compliance != ConfigEvaluation::NON_COMPLIANT
        {
            return Some(format!(
                "{} {} is {} with Config rule {}: nothing to do",
                crate::text::preview(&c.resource_type),
                crate::text::preview(&c.resource_id),
                crate::text::preview(&c.compliance),
                crate::text::preview(&c.rule_name)
            ));
        }
        if let Some(status) = self
            .asff
            .as_ref()
            .and_then(|a| a.compliance_status.as_deref())
            .filter(|s| *s == "PASSED")
        {
            return Some(format!("the Security Hub check {status}: nothing to do"));
        }
        None
    }

    /// The product that produced the finding, as Security Hub names it
    /// (`GuardDuty` for GuardDuty's own findings too).
    pub fn product_name(&self) -> Option<&str> {
        match (&self.asff, self.source) {
            (Some(a), _) => a.product_name.as_deref(),
            (None, Source::GuardDuty) => Some("GuardDuty"),
            (None, _) => None,
        }
    }

    /// The product's ARN in Security Hub (for GuardDuty's own findings, the
    /// ARN Security Hub gives GuardDuty in the finding's partition and region).
    pub fn product_arn(&self) -> Option<String> {
        match (&self.asff, self.source) {
            (Some(a), _) => a.product_arn.clone(),
            (None, Source::GuardDuty) => Some(format!(
                "arn:{}:securityhub:{}::product/aws/guardduty",
                self.partition, self.region
            )),
            (None, _) => None,
        }
    }

    /// Security Hub's severity label: the finding's own, else (GuardDuty)
    /// the label of its band. Config evaluations have none.
    pub fn severity_label(&self) -> Option<SeverityLabel> {
        if let Some(label) = self.asff.as_ref().and_then(|a| a.severity_label) {
            return Some(label);
        }
        match self.source {
            Source::Config => None,
            Source::GuardDuty | Source::SecurityHub => Some(self.severity.band().into()),
        }
    }

    /// The resource type in the source's own words (`AWS::S3::Bucket` for
    /// Config, `AwsS3Bucket` for Security Hub), next to cordon's
    /// ([`Resource::resource_type`]); playbooks' `resource-types` match either.
    pub fn source_resource_type(&self) -> Option<&str> {
        if let Some(c) = &self.config {
            return Some(&c.resource_type);
        }
        self.asff.as_ref().and_then(|a| a.resource_type.as_deref())
    }

    /// Where `field` (named as in GuardDuty's shape, e.g.
    /// `resource.instanceDetails.instanceId`) came from in this finding's own
    /// document, for errors.
    pub fn source_field(&self, field: &str) -> String {
        match (self.source, &self.resource_origin) {
            (Source::GuardDuty, _) | (_, None) => field.to_string(),
            (_, Some(origin)) if field.starts_with("resource.") => {
                format!("{origin} (read as {field})")
            }
            (Source::SecurityHub, _) => match field {
                "id" => "Id".to_string(),
                "accountId" => "AwsAccountId".to_string(),
                "region" => "Region".to_string(),
                "partition" => "Resources[].Partition".to_string(),
                other => other.to_string(),
            },
            (Source::Config, _) => match field {
                "accountId" => "awsAccountId".to_string(),
                "region" => "awsRegion".to_string(),
                other => other.to_string(),
            },
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
    /// Longest type accepted: GuardDuty's are under 100 characters, and routing
    /// matches every playbook pattern against it.
    pub const MAX_CHARS: usize = 256;

    /// A type of a finding that is not GuardDuty's (a Security Hub type, a
    /// Config rule name), kept whole in `raw` and `family`. Refused when it
    /// is blank, too long or holds control characters.
    pub fn foreign(raw: &str) -> Result<Self, String> {
        if raw.trim().is_empty() {
            return Err("the finding type is empty".to_string());
        }
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(format!(
                "type {} is longer than {} characters",
                crate::text::preview(raw),
                Self::MAX_CHARS
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err(format!(
                "type {} holds control characters",
                crate::text::preview(raw)
            ));
        }
        Ok(Self {
            raw: raw.to_string(),
            purpose: String::new(),
            resource_type: String::new(),
            family: raw.to_string(),
            mechanism: None,
            artifact: None,
        })
    }

    /// Parses a type string; rejects strings without the `Purpose:Resource/Family` shape.
    ///
    /// Every part must be non-empty and free of whitespace; the mechanism may itself hold
    /// dots (tolerated for types GuardDuty may add), the other parts may not hold separators.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(format!(
                "type {} is longer than {} characters; GuardDuty types are far shorter",
                crate::text::preview(raw),
                Self::MAX_CHARS
            ));
        }
        let bad = || {
            format!(
                "type {} is not of the form ThreatPurpose:ResourceType/ThreatFamily[.Mechanism][!Artifact]",
                crate::text::preview(raw)
            )
        };
        let (purpose, rest) = raw.split_once(':').ok_or_else(bad)?;
        let (resource_type, rest) = rest.split_once('/').ok_or_else(bad)?;
        let (family_mechanism, artifact) = match rest.split_once('!') {
            Some((fm, a)) => (fm, Some(a)),
            None => (rest, None),
        };
        let (family, mechanism) = match family_mechanism.split_once('.') {
            Some((f, m)) => (f, Some(m)),
            None => (family_mechanism, None),
        };
        let plain = |part: &str, allow_dot: bool| {
            !part.is_empty()
                && part.chars().all(|c| {
                    !c.is_whitespace()
                        && !c.is_control()
                        && !matches!(c, ':' | '/' | '!')
                        && (allow_dot || c != '.')
                })
        };
        if !plain(purpose, false)
            || !plain(resource_type, false)
            || !plain(family, false)
            || mechanism.is_some_and(|m| !plain(m, true))
            || artifact.is_some_and(|a| !plain(a, false))
        {
            return Err(bad());
        }
        Ok(Self {
            raw: raw.to_string(),
            purpose: purpose.to_string(),
            resource_type: resource_type.to_string(),
            family: family.to_string(),
            mechanism: mechanism.map(str::to_string),
            artifact: artifact.map(str::to_string),
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
    S3Bucket {
        bucket_names: Vec<String>,
    },
    /// A security group (Security Hub and Config findings name one).
    SecurityGroup {
        group_id: String,
    },
    /// An EBS snapshot (Security Hub and Config findings name one).
    Snapshot {
        snapshot_id: String,
    },
    /// An AWS account: what a periodic Config rule evaluating the whole
    /// account names (`AWS::::Account`, its id the account id).
    Account {
        account_id: String,
    },
    Other {
        resource_type: String,
    },
}

impl Resource {
    /// GuardDuty's `resourceType` string for this resource (cordon's own
    /// name for the kinds GuardDuty has no word for).
    pub fn resource_type(&self) -> &str {
        match self {
            Resource::Instance(_) => "Instance",
            Resource::AccessKey(_) => "AccessKey",
            Resource::S3Bucket { .. } => "S3Bucket",
            Resource::SecurityGroup { .. } => "SecurityGroup",
            Resource::Snapshot { .. } => "Snapshot",
            Resource::Account { .. } => "Account",
            Resource::Other { resource_type } => resource_type,
        }
    }
}

// The detail structs below read every text field leniently (`lenient_*`): AWS payloads
// disagree on types (numbers for strings, `null` for absent), and a finding must not be
// rejected over a field the engine only reports.

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDetails {
    #[serde(default, deserialize_with = "lenient_text_or_empty")]
    pub instance_id: String,
    #[serde(default, deserialize_with = "lenient_text")]
    pub instance_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    pub image_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    pub availability_zone: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
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
    #[serde(default, deserialize_with = "lenient_text")]
    pub arn: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct Tag {
    #[serde(default, deserialize_with = "lenient_text_or_empty")]
    pub key: String,
    #[serde(default, deserialize_with = "lenient_text_or_empty")]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    #[serde(default, deserialize_with = "lenient_text_or_empty")]
    pub network_interface_id: String,
    #[serde(default, deserialize_with = "lenient_text")]
    pub private_ip_address: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    pub public_ip: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    pub subnet_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    pub vpc_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub security_groups: Vec<SecurityGroupRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupRef {
    #[serde(default, deserialize_with = "lenient_text_or_empty")]
    pub group_id: String,
    #[serde(default, deserialize_with = "lenient_text")]
    pub group_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyDetails {
    #[serde(default, deserialize_with = "lenient_text_or_empty")]
    pub access_key_id: String,
    #[serde(default, deserialize_with = "lenient_text")]
    pub principal_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    pub user_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    pub user_type: Option<String>,
}

/// Long-term IAM user keys can be deactivated; temporary STS keys cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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

/// Parses every finding in `input`: one object (a bare finding, an EventBridge event or a
/// `GetFindings` response), a JSON array of those, or several of them as JSON lines or
/// concatenated documents (what `jq '.detail'` prints). `origin` names the input in errors.
///
/// Each finding's `raw` is the exact text received for it: the whole input when the input
/// is one object (only a leading byte-order mark is dropped), otherwise the exact text of
/// its array element, line or document.
pub fn parse_findings(input: &str, origin: &str) -> Result<Vec<Finding>, FindingError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(FindingError::TooLarge(input.len()));
    }
    let text = input.strip_prefix('\u{feff}').unwrap_or(input);
    if text.trim().is_empty() {
        return Err(FindingError::Empty);
    }
    let mut findings = Vec::new();
    for (location, raw) in split_documents(text, origin)? {
        findings.extend(parse_document(raw, &location)?);
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

/// Splits the input into the documents to read as findings, each with its location:
/// `origin` for a single document, `origin:LINE` for one of several, `[i]` for an array
/// element. A syntax error anywhere fails the whole input (serde's message gives the line).
fn split_documents<'a>(
    text: &'a str,
    origin: &str,
) -> Result<Vec<(String, &'a str)>, FindingError> {
    let not_json = |location: &str, source| FindingError::NotJson {
        location: location.to_string(),
        source,
    };
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
    let mut found: Vec<(usize, &'a RawValue)> = Vec::new();
    let (mut line, mut counted) = (1usize, 0usize);
    while let Some(next) = stream.next() {
        let raw = next.map_err(|source| not_json(origin, source))?;
        let start = stream.byte_offset().saturating_sub(raw.get().len());
        line += text
            .get(counted..start)
            .map_or(0, |between| between.bytes().filter(|&b| b == b'\n').count());
        counted = start.max(counted);
        found.push((line, raw));
    }
    let single = found.len() == 1;
    let mut documents = Vec::new();
    for (line, raw) in found {
        let location = if single {
            origin.to_string()
        } else {
            format!("{origin}:{line}")
        };
        if raw.get().starts_with('[') {
            let items: Vec<&RawValue> =
                serde_json::from_str(raw.get()).map_err(|source| not_json(&location, source))?;
            documents.extend(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| (format!("{location}[{i}]"), item.get())),
            );
        } else if single {
            // The whole input, surrounding whitespace included: the exact text received.
            documents.push((location, text));
        } else {
            documents.push((location, raw.get()));
        }
    }
    Ok(documents)
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
    if is_event(object) {
        let source = object.get("source").and_then(Value::as_str).unwrap_or("");
        let detail_type = object
            .get("detail-type")
            .and_then(Value::as_str)
            .unwrap_or("");
        if asff::is_event(source, detail_type) {
            return asff::parse_event(object, raw, location);
        }
        if config::is_event(source, detail_type) {
            return config::parse_event(object, raw, location).map(|finding| vec![finding]);
        }
        return parse_event(object, raw, location).map(|finding| vec![finding]);
    }
    if let Some(items) = field(object, "findings") {
        let Value::Array(items) = items else {
            return Err(FindingError::NotAFinding {
                location: location.to_string(),
                reason: format!("`findings` is {}, expected an array", json_kind(items)),
            });
        };
        let raws: Vec<&RawValue> = serde_json::from_str::<GetFindingsShape<'_>>(raw)
            .map(|shape| shape.findings)
            .unwrap_or_default();
        return items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let text = match raws.get(i) {
                    Some(r) if raws.len() == items.len() => r.get().to_string(),
                    _ => item.to_string(),
                };
                let location = format!("{location}.findings[{i}]");
                match item {
                    Value::Object(o) if asff::looks_like(o) => {
                        asff::finding_from_value(item, &location, Wrapping::GetFindings, text, None)
                    }
                    _ => finding_from_value(item, &location, Wrapping::GetFindings, text, None),
                }
            })
            .collect();
    }
    if asff::looks_like(object) {
        return Ok(vec![asff::finding_from_value(
            &value,
            location,
            Wrapping::Bare,
            raw.to_string(),
            None,
        )?]);
    }
    if config::looks_like(object) {
        return Ok(vec![config::finding_from_value(
            &value,
            location,
            Wrapping::Bare,
            raw.to_string(),
            None,
        )?]);
    }
    Ok(vec![finding_from_value(
        &value,
        location,
        Wrapping::Bare,
        raw.to_string(),
        None,
    )?])
}

/// An EventBridge envelope: `detail-type`, or `detail` next to `source`.
fn is_event(object: &serde_json::Map<String, Value>) -> bool {
    object.contains_key("detail-type")
        || (object.contains_key("detail") && object.contains_key("source"))
}

fn parse_event(
    object: &serde_json::Map<String, Value>,
    raw: &str,
    location: &str,
) -> Result<Finding, FindingError> {
    let source = object.get("source").and_then(Value::as_str).unwrap_or("");
    let detail_type = object
        .get("detail-type")
        .and_then(Value::as_str)
        .unwrap_or("");
    let not_guardduty = || FindingError::NotAFinding {
        location: location.to_string(),
        reason: format!(
            "it is an EventBridge event from source {} with detail-type {}, not a GuardDuty, Security Hub or Config finding event",
            crate::text::preview(source),
            crate::text::preview(detail_type)
        ),
    };
    let Some(detail) = object.get("detail") else {
        return Err(FindingError::NotAFinding {
            location: location.to_string(),
            reason: "it is an EventBridge event without a `detail`".to_string(),
        });
    };
    let from_guardduty = source.is_empty() || source == "aws.guardduty";
    let mut finding = finding_from_value(
        detail,
        location,
        Wrapping::EventBridge,
        raw.to_string(),
        Some(object),
    )
    .map_err(|error| match error {
        FindingError::NotAFinding { .. } if !from_guardduty => not_guardduty(),
        FindingError::NotAFinding { location, reason } => FindingError::NotAFinding {
            location,
            reason: match reason.strip_prefix("it ") {
                Some(rest) => format!("the event's `detail` {rest}"),
                None => format!("the event's `detail`: {reason}"),
            },
        },
        other => other,
    })?;
    finding.event_id = object.get("id").and_then(value_as_text);
    Ok(finding)
}

#[derive(Deserialize)]
struct GetFindingsShape<'a> {
    #[serde(borrow, alias = "Findings")]
    findings: Vec<&'a RawValue>,
}

/// At most 80 characters of `text`, escaped, so an error about a huge or hostile value
/// stays one readable line.
fn preview(text: &str) -> String {
    match text.char_indices().nth(crate::text::PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", crate::text::escape(&text[..cut])),
        None => crate::text::escape(text).into_owned(),
    }
}

/// `value` as an object, else "expected WHAT to be an object, found …".
fn an_object<'v>(
    value: &'v Value,
    location: &str,
    what: &str,
) -> Result<&'v serde_json::Map<String, Value>, FindingError> {
    match value {
        Value::Object(object) => Ok(object),
        other => Err(FindingError::NotAFinding {
            location: location.to_string(),
            reason: format!(
                "expected {what} to be an object, found {}",
                json_kind(other)
            ),
        }),
    }
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

/// A field the engine cannot do without: present, a scalar, and not blank.
fn required_text(object: &serde_json::Map<String, Value>, camel: &str) -> Result<String, String> {
    match field(object, camel) {
        None | Some(Value::Null) => Err(format!("`{camel}` is missing")),
        Some(value) => match value_as_text(value) {
            Some(text) if text.trim().is_empty() => Err(format!("`{camel}` is empty")),
            Some(text) => Ok(text),
            None => Err(format!(
                "`{camel}` is {}, expected a string",
                json_kind(value)
            )),
        },
    }
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

/// Reads one finding object. `envelope` is the EventBridge event around it, whose
/// `account` and `region` stand in when the finding itself lacks them.
fn finding_from_value(
    value: &Value,
    location: &str,
    wrapping: Wrapping,
    raw: String,
    envelope: Option<&serde_json::Map<String, Value>>,
) -> Result<Finding, FindingError> {
    let object = an_object(value, location, "the finding")?;
    let present = |name| !matches!(field(object, name), None | Some(Value::Null));
    if !present("id") && !present("type") && !present("severity") {
        return Err(FindingError::NotAFinding {
            location: location.to_string(),
            reason: "it has none of `id`, `type`, `severity`".to_string(),
        });
    }
    let shown_id = text(object, "id")
        .filter(|id| !id.trim().is_empty())
        .map(|id| preview(&id));
    let invalid = |reason: String| FindingError::Invalid {
        location: location.to_string(),
        id: shown_id.clone().unwrap_or_else(|| "(no id)".to_string()),
        reason,
    };
    let id = required_text(object, "id").map_err(invalid)?;
    let type_text = required_text(object, "type").map_err(invalid)?;
    let finding_type = FindingType::parse(&type_text).map_err(invalid)?;
    let severity = match field(object, "severity") {
        None | Some(Value::Null) => return Err(invalid("`severity` is missing".to_string())),
        Some(value) => {
            let number = value_as_f64(value).ok_or_else(|| {
                invalid(format!(
                    "`severity` is {}, expected a number from 1.0 to 10.0",
                    preview(&value.to_string())
                ))
            })?;
            Severity::new(number).map_err(invalid)?
        }
    };
    let from_envelope = |camel: &str, envelope_name: &str| {
        required_text(object, camel).or_else(|error| {
            envelope
                .and_then(|e| e.get(envelope_name))
                .and_then(value_as_text)
                .filter(|t| !t.trim().is_empty())
                .ok_or(error)
        })
    };
    let account_id = from_envelope("accountId", "account").map_err(invalid)?;
    let region = from_envelope("region", "region").map_err(invalid)?;
    let resource = match field(object, "resource") {
        Some(Value::Object(r)) => parse_resource(r).map_err(invalid)?,
        Some(Value::Null) | None => Resource::Other {
            resource_type: "Unknown".to_string(),
        },
        Some(other) => {
            return Err(invalid(format!(
                "`resource` is {}, expected an object",
                json_kind(other)
            )));
        }
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
        source: Source::GuardDuty,
        asff: None,
        config: None,
        resource_origin: None,
    })
}

fn parse_resource(object: &serde_json::Map<String, Value>) -> Result<Resource, String> {
    let resource_type = text(object, "resourceType").unwrap_or_else(|| "Unknown".to_string());
    // Borrowed as it is when every key is already camelCase (GuardDuty's own
    // JSON), normalised into a copy only when some key is not (the SDK's).
    let sub = |name: &str| -> Result<Option<Cow<'_, Value>>, String> {
        match field(object, name) {
            Some(Value::Null) | None => Ok(None),
            Some(v @ Value::Object(_)) if keys_are_camel_case(v) => Ok(Some(Cow::Borrowed(v))),
            Some(v @ Value::Object(_)) => Ok(Some(Cow::Owned(normalise_keys(v)))),
            Some(other) => Err(format!(
                "`resource.{name}` is {}, expected an object",
                json_kind(other)
            )),
        }
    };
    match resource_type.as_str() {
        "Instance" => {
            let details = sub("instanceDetails")?
                .ok_or("`resource.instanceDetails` is missing for an Instance finding")?;
            let details: InstanceDetails = typed_details(&details, "instanceDetails")?;
            if details.instance_id.trim().is_empty() {
                return Err("`resource.instanceDetails.instanceId` is missing".to_string());
            }
            if let Some(i) = details
                .network_interfaces
                .iter()
                .position(|eni| eni.network_interface_id.trim().is_empty())
            {
                return Err(format!(
                    "`resource.instanceDetails.networkInterfaces[{i}].networkInterfaceId` is missing"
                ));
            }
            Ok(Resource::Instance(details))
        }
        "AccessKey" => {
            let details = sub("accessKeyDetails")?
                .ok_or("`resource.accessKeyDetails` is missing for an AccessKey finding")?;
            let details: AccessKeyDetails = typed_details(&details, "accessKeyDetails")?;
            if details.access_key_id.trim().is_empty() {
                return Err("`resource.accessKeyDetails.accessKeyId` is missing".to_string());
            }
            Ok(Resource::AccessKey(details))
        }
        "S3Bucket" => {
            let bucket_names = match field(object, "s3BucketDetails") {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|b| b.as_object().and_then(|b| text(b, "name")))
                    .collect(),
                _ => Vec::new(),
            };
            Ok(Resource::S3Bucket { bucket_names })
        }
        // `S3Object` (Malware Protection for S3) and every other kind keep their own name,
        // so routing by resource type never mistakes them for a kind the engine acts on.
        _ => Ok(Resource::Other { resource_type }),
    }
}

/// Deserialises a details object, naming the exact field when it is malformed.
fn typed_details<T: serde::de::DeserializeOwned>(value: &Value, name: &str) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let where_ = if path == "." {
            format!("resource.{name}")
        } else {
            format!("resource.{name}.{path}")
        };
        format!("`{where_}` is malformed: {}", error.into_inner())
    })
}

/// `key` with its first letter lower-cased; borrowed when that changes nothing.
fn camel_key(key: &str) -> Cow<'_, str> {
    let mut chars = key.chars();
    let Some(first) = chars.next() else {
        return Cow::Borrowed(key);
    };
    let mut lower = first.to_lowercase();
    if lower.next() == Some(first) && lower.next().is_none() {
        return Cow::Borrowed(key);
    }
    Cow::Owned(first.to_lowercase().chain(chars).collect())
}

/// Whether [`normalise_keys`] would leave `value` as it is: no key, at any
/// depth, starts with a letter that lower-cases to something else.
fn keys_are_camel_case(value: &Value) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .all(|(k, v)| matches!(camel_key(k), Cow::Borrowed(_)) && keys_are_camel_case(v)),
        Value::Array(items) => items.iter().all(keys_are_camel_case),
        _ => true,
    }
}

/// Lower-cases the first letter of every key, so PascalCase (SDK) input reads like camelCase.
fn normalise_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (camel_key(k).into_owned(), normalise_keys(v)))
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
    let resource_role =
        text(object, "resourceRole").and_then(|r| match r.trim().to_ascii_uppercase().as_str() {
            "TARGET" => Some(ResourceRole::Target),
            "ACTOR" => Some(ResourceRole::Actor),
            _ => None,
        });
    let sample = match field(object, "additionalInfo") {
        Some(Value::Object(info)) => sample_flag(info),
        _ => false,
    };
    Service {
        detector_id: text(object, "detectorId"),
        action_type,
        resource_role,
        event_first_seen: text(object, "eventFirstSeen"),
        event_last_seen: text(object, "eventLastSeen"),
        archived: field(object, "archived")
            .and_then(value_as_bool)
            .unwrap_or(false),
        count: field(object, "count")
            .and_then(value_as_f64)
            .and_then(|c| (c >= 0.0 && c.fract() == 0.0).then_some(c as u64)),
        sample,
    }
}

/// GuardDuty marks generated samples in `additionalInfo`, either inline
/// (`{"sample": true}`) or, in the API's shape, as JSON text in `value`
/// (`{"value": "{\"sample\":true}", "type": "default"}`).
fn sample_flag(info: &serde_json::Map<String, Value>) -> bool {
    if let Some(sample) = field(info, "sample").and_then(value_as_bool) {
        return sample;
    }
    let nested = match field(info, "value") {
        Some(Value::String(text)) => serde_json::from_str::<Value>(text).ok(),
        Some(value @ Value::Object(_)) => Some(value.clone()),
        _ => None,
    };
    nested
        .as_ref()
        .and_then(Value::as_object)
        .and_then(|object| field(object, "sample"))
        .and_then(value_as_bool)
        .unwrap_or(false)
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Any scalar as text; `null`, arrays and objects as absent.
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
