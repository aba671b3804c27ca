//! The evidence bucket standard, and the two commands that keep a bucket on it:
//! [`init`] creates (or brings up to standard) a bucket, [`check`] lists every
//! way an existing bucket differs from it.
//!
//! Evidence is only worth something if nobody can quietly change or remove it,
//! so the standard is: versioning on (a rewrite keeps the original), SSE-KMS
//! with a customer key and bucket key (access to the bytes is also access to
//! the key, and is logged by KMS), public access fully blocked, a bucket
//! policy refusing plain HTTP and refusing to delete versions or the bucket,
//! and Object Lock default retention where the owner wants immutability even
//! against administrators.

use std::fmt;
use std::str::FromStr;

use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, DefaultRetention,
    ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode, ObjectLockRule,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};
use cordon_core::executor::{ActionError, ErrorKind};
use serde_json::{Value, json};

use crate::client::AwsClients;
use crate::ops;

/// The KMS alias `init` uses (and creates) unless told otherwise.
pub const DEFAULT_KMS_ALIAS: &str = "alias/cordon-evidence";

/// Object Lock retention mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` can still delete: for owners who
    /// want a break-glass path.
    Governance,
    /// Nobody, root included, can delete a version before its retention ends.
    Compliance,
}

impl FromStr for LockMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "governance" => Ok(LockMode::Governance),
            "compliance" => Ok(LockMode::Compliance),
            other => Err(format!(
                "unknown Object Lock mode `{other}`: use governance or compliance"
            )),
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        })
    }
}

impl LockMode {
    fn sdk(self) -> ObjectLockRetentionMode {
        match self {
            LockMode::Governance => ObjectLockRetentionMode::Governance,
            LockMode::Compliance => ObjectLockRetentionMode::Compliance,
        }
    }
}

/// What [`init`] did, for the CLI to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initialized {
    /// The bucket did not exist and was created.
    pub created: bool,
    /// The customer key the bucket encrypts with.
    pub kms_key_arn: String,
    /// Object Lock default retention applied, if asked for.
    pub object_lock: Option<(LockMode, i32)>,
    /// The policy requires TLS (always, except against a plain-HTTP endpoint).
    pub tls_only: bool,
}

/// How much a difference from the standard matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The bucket falls short of the standard: `cordon evidence check` fails.
    Gap,
    /// Worth knowing, not required (Object Lock is the owner's choice).
    Info,
}

/// One setting that differs from the standard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The setting, e.g. `versioning`, `encryption`.
    pub setting: &'static str,
    /// What is wrong and how to fix it.
    pub detail: String,
    pub severity: Severity,
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.severity {
            Severity::Gap => "gap",
            Severity::Info => "info",
        };
        write!(f, "{tag}: {}: {}", self.setting, self.detail)
    }
}

fn gap(setting: &'static str, detail: impl Into<String>) -> Gap {
    Gap {
        setting,
        detail: detail.into(),
        severity: Severity::Gap,
    }
}

fn build_error(resource: &str, e: impl std::error::Error + Send + Sync + 'static) -> ActionError {
    ActionError::new(
        ErrorKind::Other,
        resource,
        format!("cannot build the request: {e}"),
        "report this as a cordon bug",
    )
    .with_source(e)
}

/// A plain-HTTP endpoint (an emulator): there `aws:SecureTransport` is always
/// false, so a TLS-only policy would refuse every request, cordon's included.
/// `init` leaves that statement out there and `check` reports its absence as
/// information only.
fn plain_http(clients: &AwsClients) -> bool {
    clients
        .endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"))
}

fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The bucket policy of the standard: no plain HTTP, and no deleting object
/// versions or the bucket by anyone. Deleting the *current* object only adds a
/// delete marker (versioning keeps the bytes), so it is not denied; to retire
/// the bucket an administrator must first remove this policy, which is itself
/// an auditable act.
pub fn bucket_policy(bucket: &str, region: &str) -> Value {
    let arn = format!("arn:{}:s3:::{bucket}", partition(region));
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CordonDenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn.clone(), format!("{arn}/*")],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}}
            },
            {
                "Sid": "CordonDenyEvidenceDeletion",
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:DeleteObjectVersion", "s3:DeleteBucket", "s3:PutLifecycleConfiguration"],
                "Resource": [arn.clone(), format!("{arn}/*")]
            }
        ]
    })
}

/// Creates the bucket (or brings an existing one up to the standard) and its
/// KMS key. Safe to re-run: every setting is put, not toggled.
///
/// Object Lock can only be switched on when a bucket is created, and the
/// default retention can only be set while the bucket is empty on some
/// S3-compatible stores, so ask for it on the first `init`.
pub async fn init(
    clients: &AwsClients,
    bucket: &str,
    kms_alias: &str,
    object_lock: Option<(LockMode, i32)>,
) -> Result<Initialized, ActionError> {
    let existed = ensure_bucket(clients, bucket, object_lock.is_some()).await?;
    put_versioning(clients, bucket).await?;
    let kms_key_arn = ensure_kms_key(clients, kms_alias).await?;
    put_encryption(clients, bucket, &kms_key_arn).await?;
    put_public_access_block(clients, bucket).await?;
    put_policy(clients, bucket).await?;
    if let Some((mode, days)) = object_lock {
        put_object_lock(clients, bucket, mode, days, existed).await?;
    }
    Ok(Initialized {
        created: !existed,
        kms_key_arn,
        object_lock,
        tls_only: !plain_http(clients),
    })
}

/// Creates the bucket unless it exists (with Object Lock enabled when asked:
/// only possible at creation). Returns whether it existed.
async fn ensure_bucket(
    clients: &AwsClients,
    bucket: &str,
    object_lock: bool,
) -> Result<bool, ActionError> {
    let s3 = &clients.s3;
    let resource = format!("s3://{bucket}");
    let exists = match clients
        .try_call(
            &ops::S3_HEAD_BUCKET,
            &resource,
            s3.head_bucket().bucket(bucket),
        )
        .await
    {
        Ok(_) => true,
        Err(e) if e.status() == Some(404) => false,
        Err(e) => return Err(e.into()),
    };
    if !exists {
        let mut create = s3.create_bucket().bucket(bucket);
        if clients.region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(clients.region.as_str()))
                    .build(),
            );
        }
        if object_lock {
            create = create.object_lock_enabled_for_bucket(true);
        }
        clients
            .call(&ops::S3_CREATE_BUCKET, &resource, create)
            .await?;
    }
    Ok(exists)
}

async fn put_versioning(clients: &AwsClients, bucket: &str) -> Result<(), ActionError> {
    let versioning = clients
        .s3
        .put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        );
    clients
        .call(
            &ops::S3_PUT_BUCKET_VERSIONING,
            &format!("s3://{bucket}"),
            versioning,
        )
        .await?;
    Ok(())
}

/// SSE-KMS under `kms_key_arn`, with an S3 Bucket Key.
async fn put_encryption(
    clients: &AwsClients,
    bucket: &str,
    kms_key_arn: &str,
) -> Result<(), ActionError> {
    let resource = format!("s3://{bucket}");
    let by_default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::AwsKms)
        .kms_master_key_id(kms_key_arn)
        .build()
        .map_err(|e| build_error(&resource, e))?;
    let encryption = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(by_default)
                .bucket_key_enabled(true)
                .build(),
        )
        .build()
        .map_err(|e| build_error(&resource, e))?;
    let encryption = clients
        .s3
        .put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(encryption);
    clients
        .call(&ops::S3_PUT_BUCKET_ENCRYPTION, &resource, encryption)
        .await?;
    Ok(())
}

async fn put_public_access_block(clients: &AwsClients, bucket: &str) -> Result<(), ActionError> {
    let block = clients
        .s3
        .put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        );
    clients
        .call(
            &ops::S3_PUT_PUBLIC_ACCESS_BLOCK,
            &format!("s3://{bucket}"),
            block,
        )
        .await?;
    Ok(())
}

/// The standard's bucket policy; without the TLS-only statement over plain
/// HTTP (an emulator), which it would lock out.
async fn put_policy(clients: &AwsClients, bucket: &str) -> Result<(), ActionError> {
    let mut policy = bucket_policy(bucket, &clients.region);
    if plain_http(clients)
        && let Some(statements) = policy["Statement"].as_array_mut()
    {
        statements.retain(|s| s["Sid"] != "CordonDenyInsecureTransport");
    }
    let put_policy = clients
        .s3
        .put_bucket_policy()
        .bucket(bucket)
        .policy(policy.to_string());
    clients
        .call(
            &ops::S3_PUT_BUCKET_POLICY,
            &format!("s3://{bucket}"),
            put_policy,
        )
        .await?;
    Ok(())
}

/// Default retention, unless the bucket already has exactly it. On a bucket
/// that `existed` before `init`, a refusal says Object Lock comes at creation.
async fn put_object_lock(
    clients: &AwsClients,
    bucket: &str,
    mode: LockMode,
    days: i32,
    existed: bool,
) -> Result<(), ActionError> {
    let current = object_lock_state(clients, bucket).await?;
    if current == Some(Some((mode, days))) {
        return Ok(());
    }
    let retention = DefaultRetention::builder()
        .mode(mode.sdk())
        .days(days)
        .build();
    let lock = clients
        .s3
        .put_object_lock_configuration()
        .bucket(bucket)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(
                    ObjectLockRule::builder()
                        .default_retention(retention)
                        .build(),
                )
                .build(),
        );
    clients
        .call(
            &ops::S3_PUT_OBJECT_LOCK_CONFIGURATION,
            &format!("s3://{bucket}"),
            lock,
        )
        .await
        .map_err(|e| {
            let mut err = ActionError::from(e);
            if existed {
                err.hint =
                    "Object Lock must be enabled when the bucket is created (and, on some stores, \
                            configured while it is empty): init a new bucket with --object-lock"
                        .to_string();
            }
            err
        })?;
    Ok(())
}

/// The ARN of the key behind `alias`, creating key and alias when absent.
async fn ensure_kms_key(clients: &AwsClients, alias: &str) -> Result<String, ActionError> {
    let describe = clients.kms.describe_key().key_id(alias);
    match clients
        .try_call(&ops::KMS_DESCRIBE_KEY, alias, describe)
        .await
    {
        Ok(out) => {
            if let Some(arn) = out.key_metadata().and_then(|m| m.arn()) {
                return Ok(arn.to_owned());
            }
        }
        Err(e)
            if e.service_error()
                .is_some_and(|s| s.is_not_found_exception()) => {}
        Err(e) => return Err(e.into()),
    }
    let create = clients
        .kms
        .create_key()
        .description("cordon evidence bucket encryption");
    let created = clients.call(&ops::KMS_CREATE_KEY, alias, create).await?;
    let meta = created.key_metadata().ok_or_else(|| {
        ActionError::new(
            ErrorKind::Other,
            alias,
            format!("{} returned no key metadata", ops::KMS_CREATE_KEY),
            "retry; report if it persists",
        )
    })?;
    let key_id = meta.key_id().to_owned();
    let arn = meta.arn().unwrap_or(&key_id).to_owned();
    let create_alias = clients
        .kms
        .create_alias()
        .alias_name(alias)
        .target_key_id(&key_id);
    clients
        .call(&ops::KMS_CREATE_ALIAS, alias, create_alias)
        .await?;
    Ok(arn)
}

/// `None`: Object Lock not enabled; `Some(None)`: enabled without default
/// retention; `Some(Some(..))`: default retention in days (years count as 365 days).
async fn object_lock_state(
    clients: &AwsClients,
    bucket: &str,
) -> Result<Option<Option<(LockMode, i32)>>, ActionError> {
    let request = clients.s3.get_object_lock_configuration().bucket(bucket);
    match clients
        .try_call(
            &ops::S3_GET_OBJECT_LOCK_CONFIGURATION,
            &format!("s3://{bucket}"),
            request,
        )
        .await
    {
        Ok(out) => {
            let Some(config) = out.object_lock_configuration() else {
                return Ok(None);
            };
            if config.object_lock_enabled() != Some(&ObjectLockEnabled::Enabled) {
                return Ok(None);
            }
            let retention = config
                .rule()
                .and_then(|r| r.default_retention())
                .and_then(|d| {
                    let mode = match d.mode()? {
                        ObjectLockRetentionMode::Governance => LockMode::Governance,
                        ObjectLockRetentionMode::Compliance => LockMode::Compliance,
                        _ => return None,
                    };
                    let days = d
                        .days()
                        .filter(|d| *d > 0)
                        .or_else(|| d.years().map(|y| y * 365))?;
                    Some((mode, days))
                });
            Ok(Some(retention))
        }
        Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Every way the bucket differs from the standard, one entry per setting.
/// An empty list (or only [`Severity::Info`]) means the bucket is fit for evidence.
pub async fn check(clients: &AwsClients, bucket: &str) -> Result<Vec<Gap>, ActionError> {
    let mut gaps = Vec::new();
    gaps.extend(check_versioning(clients, bucket).await?);
    gaps.extend(check_encryption(clients, bucket).await?);
    gaps.extend(check_public_access_block(clients, bucket).await?);
    gaps.extend(check_policy(clients, bucket).await?);
    gaps.extend(check_object_lock(clients, bucket).await?);
    Ok(gaps)
}

/// Versioning must be on: a rewrite or delete keeps the original.
async fn check_versioning(clients: &AwsClients, bucket: &str) -> Result<Option<Gap>, ActionError> {
    let request = clients.s3.get_bucket_versioning().bucket(bucket);
    let enabled = match clients
        .try_call(
            &ops::S3_GET_BUCKET_VERSIONING,
            &format!("s3://{bucket}"),
            request,
        )
        .await
    {
        Ok(out) => out.status() == Some(&BucketVersioningStatus::Enabled),
        // The emulator answers with the wrong XML root (`GetBucketVersioningResponse`),
        // which the SDK refuses to decode; the 200 body still says the status.
        Err(e) if e.status() == Some(200) => e
            .raw_body()
            .is_some_and(|b| String::from_utf8_lossy(b).contains("<Status>Enabled</Status>")),
        Err(e) => return Err(e.into()),
    };
    Ok((!enabled).then(|| {
        gap(
            "versioning",
            "not enabled: a rewrite or delete would lose the original evidence (`cordon evidence init` turns it on)",
        )
    }))
}

/// Default encryption must be SSE-KMS with a customer key and a bucket key.
async fn check_encryption(clients: &AwsClients, bucket: &str) -> Result<Vec<Gap>, ActionError> {
    let request = clients.s3.get_bucket_encryption().bucket(bucket);
    let out = match clients
        .try_call(
            &ops::S3_GET_BUCKET_ENCRYPTION,
            &format!("s3://{bucket}"),
            request,
        )
        .await
    {
        Ok(out) => out,
        Err(e) if e.code() == Some("ServerSideEncryptionConfigurationNotFoundError") => {
            return Ok(vec![gap(
                "encryption",
                "no default encryption: objects put without SSE headers are not SSE-KMS",
            )]);
        }
        Err(e) => return Err(e.into()),
    };
    let mut gaps = Vec::new();
    let rule = out
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first());
    let by_default = rule.and_then(|r| r.apply_server_side_encryption_by_default());
    match by_default {
        None => gaps.push(gap("encryption", "no default encryption rule")),
        Some(d) if d.sse_algorithm() != &ServerSideEncryption::AwsKms => gaps.push(gap(
            "encryption",
            format!(
                "default encryption is {}, not SSE-KMS with a customer key",
                d.sse_algorithm().as_str()
            ),
        )),
        Some(d) => {
            let key = d.kms_master_key_id().unwrap_or("");
            if key.is_empty() || key.ends_with("alias/aws/s3") {
                gaps.push(gap(
                    "encryption",
                    "SSE-KMS uses the AWS-managed key: use a customer key so access to evidence is controlled and logged by its key policy",
                ));
            }
        }
    }
    if by_default.is_some() && rule.and_then(|r| r.bucket_key_enabled()) != Some(true) {
        gaps.push(gap(
            "bucket-key",
            "S3 Bucket Key not enabled: every object costs a KMS request (throttling under a burst of cases)",
        ));
    }
    Ok(gaps)
}

/// All four public access block settings must be on.
async fn check_public_access_block(
    clients: &AwsClients,
    bucket: &str,
) -> Result<Option<Gap>, ActionError> {
    let request = clients.s3.get_public_access_block().bucket(bucket);
    let out = match clients
        .try_call(
            &ops::S3_GET_PUBLIC_ACCESS_BLOCK,
            &format!("s3://{bucket}"),
            request,
        )
        .await
    {
        Ok(out) => out,
        Err(e) if e.code() == Some("NoSuchPublicAccessBlockConfiguration") => {
            return Ok(Some(gap(
                "public-access-block",
                "missing: public access is not blocked",
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let config = out.public_access_block_configuration();
    let settings = [
        (
            "BlockPublicAcls",
            config.and_then(|c| c.block_public_acls()),
        ),
        (
            "IgnorePublicAcls",
            config.and_then(|c| c.ignore_public_acls()),
        ),
        (
            "BlockPublicPolicy",
            config.and_then(|c| c.block_public_policy()),
        ),
        (
            "RestrictPublicBuckets",
            config.and_then(|c| c.restrict_public_buckets()),
        ),
    ];
    let off: Vec<&str> = settings
        .iter()
        .filter(|(_, on)| *on != Some(true))
        .map(|(name, _)| *name)
        .collect();
    Ok((!off.is_empty()).then(|| {
        gap(
            "public-access-block",
            format!("partial: {} off", off.join(", ")),
        )
    }))
}

/// The policy must refuse plain HTTP and deleting versions or the bucket.
async fn check_policy(clients: &AwsClients, bucket: &str) -> Result<Vec<Gap>, ActionError> {
    let request = clients.s3.get_bucket_policy().bucket(bucket);
    let policy: Option<Value> = match clients
        .try_call(
            &ops::S3_GET_BUCKET_POLICY,
            &format!("s3://{bucket}"),
            request,
        )
        .await
    {
        Ok(out) => out.policy().and_then(|p| serde_json::from_str(p).ok()),
        Err(e) if e.code() == Some("NoSuchBucketPolicy") => None,
        Err(e) => return Err(e.into()),
    };
    let statements: Vec<&Value> = match policy.as_ref().map(|p| &p["Statement"]) {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(single @ Value::Object(_)) => vec![single],
        _ => Vec::new(),
    };
    let mut gaps = Vec::new();
    if !statements.iter().any(|s| denies_insecure_transport(s)) {
        let mut missing = gap(
            "tls-only-policy",
            "no bucket policy statement denying requests with aws:SecureTransport=false",
        );
        if plain_http(clients) {
            missing.severity = Severity::Info;
            missing.detail.push_str(
                " (the endpoint is plain HTTP, where such a policy would refuse every request)",
            );
        }
        gaps.push(missing);
    }
    let missing: Vec<&str> = ["s3:DeleteObjectVersion", "s3:DeleteBucket"]
        .into_iter()
        .filter(|action| !statements.iter().any(|s| denies_unconditionally(s, action)))
        .collect();
    if !missing.is_empty() {
        gaps.push(gap(
            "deny-delete-policy",
            format!(
                "the bucket policy does not deny {} to everyone",
                missing.join(" and ")
            ),
        ));
    }
    Ok(gaps)
}

/// Object Lock is the owner's choice: reported as information only.
async fn check_object_lock(clients: &AwsClients, bucket: &str) -> Result<Option<Gap>, ActionError> {
    let info = |detail: &str| Gap {
        setting: "object-lock",
        detail: detail.to_string(),
        severity: Severity::Info,
    };
    Ok(match object_lock_state(clients, bucket).await? {
        Some(Some(_)) => None,
        Some(None) => Some(info(
            "enabled without a default retention: objects are only locked if a put asks",
        )),
        None => Some(info(
            "not enabled (optional: `cordon evidence init --object-lock` on a new bucket)",
        )),
    })
}

fn as_list(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn is_deny_for_everyone(statement: &Value) -> bool {
    let everyone = match &statement["Principal"] {
        Value::String(s) => s == "*",
        Value::Object(map) => map.get("AWS").is_some_and(|v| as_list(v).contains(&"*")),
        _ => false,
    };
    statement["Effect"] == "Deny" && everyone
}

fn covers(statement: &Value, action: &str) -> bool {
    as_list(&statement["Action"]).iter().any(|a| {
        let a = a.to_ascii_lowercase();
        a == "*" || a == "s3:*" || a == action.to_ascii_lowercase()
    })
}

fn denies_insecure_transport(statement: &Value) -> bool {
    let condition = &statement["Condition"]["Bool"]["aws:SecureTransport"];
    let insecure = condition == &Value::Bool(false) || as_list(condition).contains(&"false");
    is_deny_for_everyone(statement) && covers(statement, "s3:GetObject") && insecure
}

fn denies_unconditionally(statement: &Value, action: &str) -> bool {
    is_deny_for_everyone(statement)
        && statement.get("Condition").is_none()
        && covers(statement, action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_of_the_standard_passes_its_own_checks() {
        let policy = bucket_policy("b", "us-east-1");
        let statements: Vec<&Value> = policy["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        assert!(statements.iter().any(|s| denies_insecure_transport(s)));
        assert!(
            statements
                .iter()
                .any(|s| denies_unconditionally(s, "s3:DeleteObjectVersion"))
        );
        assert!(
            statements
                .iter()
                .any(|s| denies_unconditionally(s, "s3:DeleteBucket"))
        );
        assert!(
            !statements
                .iter()
                .any(|s| denies_unconditionally(s, "s3:GetObject"))
        );
    }

    #[test]
    fn lock_modes_parse() {
        assert_eq!("GOVERNANCE".parse::<LockMode>(), Ok(LockMode::Governance));
        assert_eq!("compliance".parse::<LockMode>(), Ok(LockMode::Compliance));
        assert!("legal".parse::<LockMode>().is_err());
    }
}
