//! Where captured evidence goes. Every object is written with its SHA-256, and
//! the reference (location, size, hash) is what the journal records.

use std::io::Write;
use std::path::PathBuf;

use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ServerSideEncryption};
use cordon_core::executor::{ActionError, ErrorKind};
use cordon_core::plan::CaseId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::client::AwsClients;
use crate::ops::{self, Op};

/// A stored evidence object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EvidenceRef {
    /// `file:///…` or `s3://bucket/key`.
    pub location: String,
    pub size: u64,
    pub sha256: String,
    /// The object version, where the store versions objects.
    pub version_id: Option<String>,
}

/// One object version (or delete marker) in an evidence bucket, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ObjectVersion {
    pub key: String,
    pub version_id: Option<String>,
    pub is_latest: bool,
    pub delete_marker: bool,
}

/// Every version and delete marker under `prefix`, sorted by key (all pages).
pub async fn list_versions(
    clients: &AwsClients,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<ObjectVersion>, ActionError> {
    let request = clients
        .s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(prefix);
    let pages = clients
        .paginate(
            &ops::S3_LIST_OBJECT_VERSIONS,
            &format!("s3://{bucket}/{prefix}"),
            request,
        )
        .await?;
    let mut versions = Vec::new();
    for page in &pages {
        versions.extend(page.versions().iter().map(|v| ObjectVersion {
            key: v.key().unwrap_or_default().to_owned(),
            version_id: v.version_id().map(str::to_owned),
            is_latest: v.is_latest() == Some(true),
            delete_marker: false,
        }));
        versions.extend(page.delete_markers().iter().map(|m| ObjectVersion {
            key: m.key().unwrap_or_default().to_owned(),
            version_id: m.version_id().map(str::to_owned),
            is_latest: m.is_latest() == Some(true),
            delete_marker: true,
        }));
    }
    versions.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(versions)
}

/// The evidence store a run writes to.
#[derive(Debug, Clone)]
pub enum EvidenceStore {
    /// `<dir>/<case-id>/evidence/<name>`, fsync'd (the CLI's default, beside the journal).
    LocalDir(PathBuf),
    /// `s3://<bucket>/<prefix><case-id>/<name>` in a versioned evidence bucket
    /// (see [`crate::evidence_bucket`]): nothing is overwritten, a second put of
    /// a name makes a new version and the old one stays.
    S3 {
        /// The clients to write with (boxed: the variant would dwarf `LocalDir`).
        clients: Box<AwsClients>,
        bucket: String,
        /// Key prefix before the case id, e.g. `cases/`.
        prefix: String,
        /// KMS key for SSE-KMS; `None` uses the bucket's default key (still `aws:kms`).
        kms_key: Option<String>,
        /// The bucket has Object Lock default retention: each put is read back
        /// to make sure the object really is retained, because evidence that
        /// silently lost its immutability is worse than a failed capture.
        retention: bool,
        /// An asymmetric KMS key (`SIGN_VERIFY`, ECC_NIST_P256) that signs each
        /// manifest `store-evidence` writes (see [`crate::signing`]).
        signing_key: Option<String>,
    },
}

impl EvidenceStore {
    /// Stores `bytes` as `name` for `case`; never overwrites different bytes.
    pub async fn put(
        &self,
        case: &CaseId,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<EvidenceRef, ActionError> {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let size = bytes.len() as u64;
        match self {
            EvidenceStore::LocalDir(root) => {
                let dir = root.join(case.as_str()).join("evidence");
                let path = dir.join(sanitize(name));
                let location = format!("file://{}", path.display());
                let io_error = |e: std::io::Error| {
                    ActionError::new(
                        ErrorKind::Other,
                        path.display().to_string(),
                        format!("cannot write evidence: {e}"),
                        "check the case directory is writable and the disk has space",
                    )
                };
                write_durably(path.clone(), bytes).await.map_err(io_error)?;
                Ok(EvidenceRef {
                    location,
                    size,
                    sha256,
                    version_id: None,
                })
            }
            EvidenceStore::S3 {
                clients,
                bucket,
                prefix,
                kms_key,
                retention,
                ..
            } => {
                let key = case_key(prefix, case, &sanitize(name));
                let evidence = put_s3(clients, bucket, &key, bytes, kms_key.as_deref()).await?;
                if *retention {
                    check_retained(clients, bucket, &key, &evidence).await?;
                }
                Ok(evidence)
            }
        }
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the
/// whole new one (never a torn one): a `.partial` file, fsync'd, renamed over
/// `path`, and the directory fsync'd. Creates the directory.
pub async fn write_durably(path: PathBuf, bytes: Vec<u8>) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let dir = path
            .parent()
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        std::fs::create_dir_all(&dir)?;
        let tmp = path.with_extension("partial");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&dir)?.sync_all()
    })
    .await
    .map_err(std::io::Error::other)?
}

/// `<prefix><case-id>/<name>`: every object of a case shares one prefix, so a
/// case's evidence can be listed, verified and retained as a unit.
pub fn case_key(prefix: &str, case: &CaseId, name: &str) -> String {
    format!("{}{name}", case_prefix(prefix, case))
}

/// `<prefix><case-id>/`.
pub fn case_prefix(prefix: &str, case: &CaseId) -> String {
    format!("{prefix}{}/", case.as_str())
}

/// SHA-256 (hex) of `bytes`: what manifests and evidence references record.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A `PutObject` carrying the SHA-256 we computed (so S3 rejects a corrupted
/// upload, and Object Lock buckets accept the put) and SSE-KMS. Callers add
/// conditions (the journal's `If-None-Match`) before sending.
pub fn put_request(
    clients: &AwsClients,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    kms_key: Option<&str>,
) -> PutObjectFluentBuilder {
    let checksum = aws_smithy_types::base64::encode(Sha256::digest(&bytes));
    clients
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(checksum)
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .set_ssekms_key_id(kms_key.map(str::to_owned))
        .body(ByteStream::from(bytes))
}

/// Writes one object and returns its reference. The size and SHA-256 are the
/// ones computed here from the bytes sent, never what the store reports back:
/// an emulator (or a compromised proxy) can acknowledge a wrong checksum.
pub async fn put_s3(
    clients: &AwsClients,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    kms_key: Option<&str>,
) -> Result<EvidenceRef, ActionError> {
    let sha256 = sha256_hex(&bytes);
    let size = bytes.len() as u64;
    let location = format!("s3://{bucket}/{key}");
    let request = put_request(clients, bucket, key, bytes, kms_key);
    let out = clients
        .call(&ops::S3_PUT_OBJECT, &location, request)
        .await?;
    Ok(EvidenceRef {
        location,
        size,
        sha256,
        version_id: out.version_id().map(str::to_owned),
    })
}

/// Reads one object (one version when given) in full.
pub async fn get_s3(
    clients: &AwsClients,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<Vec<u8>, ActionError> {
    let location = format!("s3://{bucket}/{key}");
    let request = clients
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version_id.map(str::to_owned));
    let out = clients
        .call(get_object_op(version_id), &location, request)
        .await?;
    let body = out.body.collect().await.map_err(|e| {
        ActionError::new(
            ErrorKind::Timeout,
            &location,
            format!("reading the object was cut short: {e}"),
            "check network access to S3 and retry",
        )
    })?;
    Ok(body.into_bytes().to_vec())
}

/// `GetObject` of the current version, or of a named one (another IAM action).
pub fn get_object_op(version_id: Option<&str>) -> &'static Op {
    match version_id {
        Some(_) => &ops::S3_GET_OBJECT_VERSION,
        None => &ops::S3_GET_OBJECT,
    }
}

/// `HeadObject` of the current version, or of a named one.
fn head_object_op(version_id: Option<&str>) -> &'static Op {
    match version_id {
        Some(_) => &ops::S3_HEAD_OBJECT_VERSION,
        None => &ops::S3_HEAD_OBJECT,
    }
}

async fn check_retained(
    clients: &AwsClients,
    bucket: &str,
    key: &str,
    evidence: &EvidenceRef,
) -> Result<(), ActionError> {
    let request = clients
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(evidence.version_id.clone());
    let head = clients
        .call(
            head_object_op(evidence.version_id.as_deref()),
            &evidence.location,
            request,
        )
        .await?;
    if head.object_lock_retain_until_date().is_none()
        && head.object_lock_legal_hold_status().is_none()
    {
        return Err(ActionError::new(
            ErrorKind::Verification,
            &evidence.location,
            "the evidence object was stored without Object Lock retention",
            "give the bucket a default retention (`cordon evidence init --object-lock ...`) or run without retention",
        ));
    }
    Ok(())
}

/// Keeps names to one safe path component.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
