//! The per-case evidence manifest, and `cordon evidence verify`.
//!
//! The manifest pins every evidence object by key, version id, size and
//! SHA-256, and the journal by each record's hash and prev-hash. Verification
//! re-downloads each pinned version and re-hashes it (the store's own checksum
//! is never trusted), looks for newer versions or delete markers that would
//! make a reader see other bytes, and re-walks the stored journal's hash chain
//! so an edited record is named.

use std::collections::BTreeMap;
use std::fmt;

use cordon_core::executor::{ActionError, ErrorKind};
use cordon_core::format::{self, NewerFormat};
use cordon_core::journal::{GENESIS_HASH, JournalRecord};
use cordon_core::plan::CaseId;
use serde::{Deserialize, Serialize};

use crate::client::AwsClients;
use crate::evidence::{
    EvidenceRef, ObjectVersion, case_key, case_prefix, get_object_op, list_versions, put_s3,
    sha256_hex,
};

/// The manifest's name under the case prefix.
pub const MANIFEST_NAME: &str = "manifest.json";
/// The name the local journal is uploaded under.
pub const JOURNAL_NAME: &str = "journal.jsonl";

/// The manifest format this build writes.
///
/// 1: manifests before versioning (the same keys, no `format-version`).
/// 2: `format-version` first. Every version up to this one is read; see
/// `docs/formats.md`.
pub const FORMAT_VERSION: u32 = 2;

/// What a case's evidence is, pinned down so that any later change shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Manifest {
    /// [`FORMAT_VERSION`] when written by this build; absent (1) in older manifests.
    #[serde(default = "unversioned")]
    pub format_version: u32,
    pub case_id: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub objects: Vec<ManifestObject>,
    pub journal: Vec<ManifestJournalEntry>,
}

/// One evidence object version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ManifestObject {
    pub key: String,
    /// `None` only in an unversioned bucket (which `evidence check` flags).
    pub version_id: Option<String>,
    pub size: u64,
    /// SHA-256 (hex) computed by cordon from the bytes it sent.
    pub sha256: String,
}

/// One journal record's place in the hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ManifestJournalEntry {
    pub seq: u64,
    /// SHA-256 (hex) of the record's stored text ([`JournalRecord::hash`]).
    pub hash: String,
    pub prev_hash: String,
}

fn unversioned() -> u32 {
    format::UNVERSIONED
}

/// Why stored bytes are not a manifest this build can use.
#[derive(Debug, thiserror::Error)]
pub enum ManifestFormatError {
    #[error(transparent)]
    Newer(NewerFormat),
    #[error("unreadable manifest: {0}")]
    Unreadable(#[source] serde_json::Error),
}

impl Manifest {
    /// A manifest for `case`, stamped now.
    pub fn new(case: &CaseId, objects: Vec<ManifestObject>, journal: &[JournalRecord]) -> Self {
        let created_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Self {
            format_version: FORMAT_VERSION,
            case_id: case.as_str().to_owned(),
            created_at,
            objects,
            journal: journal
                .iter()
                .map(|r| ManifestJournalEntry {
                    seq: r.seq,
                    hash: r.hash(),
                    prev_hash: r.prev_hash.clone(),
                })
                .collect(),
        }
    }
}

impl Manifest {
    /// Reads a stored manifest of any version up to [`FORMAT_VERSION`]; `what`
    /// names it in the error a newer one gets.
    pub fn from_json(bytes: &[u8], what: &str) -> Result<Self, ManifestFormatError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            ManifestFormatError::Unreadable(serde::de::Error::custom(format!("not UTF-8: {e}")))
        })?;
        let version = format::stored_version(text).map_err(ManifestFormatError::Unreadable)?;
        format::check_version(version, FORMAT_VERSION, || what.to_string())
            .map_err(ManifestFormatError::Newer)?;
        serde_json::from_str(text).map_err(ManifestFormatError::Unreadable)
    }
}

impl ManifestObject {
    /// The manifest entry for an object written to `bucket`.
    pub fn from_ref(bucket: &str, evidence: &EvidenceRef) -> Self {
        let key = evidence
            .location
            .strip_prefix(&format!("s3://{bucket}/"))
            .unwrap_or(&evidence.location)
            .to_owned();
        Self {
            key,
            version_id: evidence.version_id.clone(),
            size: evidence.size,
            sha256: evidence.sha256.clone(),
        }
    }
}

/// Writes `manifest.json` under the case prefix (a new version if one exists).
pub async fn write_manifest(
    clients: &AwsClients,
    bucket: &str,
    prefix: &str,
    manifest: &Manifest,
    kms_key: Option<&str>,
) -> Result<EvidenceRef, ActionError> {
    let case = CaseId::parse(&manifest.case_id).map_err(|e| {
        ActionError::new(
            ErrorKind::Other,
            &manifest.case_id,
            e,
            "report this as a cordon bug",
        )
    })?;
    let key = case_key(prefix, &case, MANIFEST_NAME);
    let bytes = serde_json::to_vec_pretty(manifest).map_err(|e| {
        ActionError::new(
            ErrorKind::Other,
            &key,
            format!("cannot encode the manifest: {e}"),
            "report this as a cordon bug",
        )
    })?;
    put_s3(clients, bucket, &key, bytes, kms_key).await
}

/// One thing wrong with a case's evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No readable manifest: nothing can be verified.
    Manifest { reason: String },
    /// The pinned version is gone.
    Missing {
        key: String,
        version_id: Option<String>,
    },
    /// The pinned version's bytes no longer hash to the manifest's SHA-256.
    Altered {
        key: String,
        expected: String,
        found: String,
    },
    /// A newer version with other bytes is what readers now get.
    Superseded {
        key: String,
        version_id: Option<String>,
    },
    /// The newest version is a delete marker: readers get nothing.
    Deleted { key: String },
    /// The stored journal cannot be read.
    Journal { reason: String },
    /// A journal record differs from the manifest or breaks the chain.
    JournalRecord { seq: u64, reason: String },
    /// The manifest is not the one the signing key signed.
    Signature { reason: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Manifest { reason } => write!(f, "manifest: {reason}"),
            Problem::Missing { key, version_id } => {
                write!(
                    f,
                    "missing: {key} version {} is gone",
                    version_id.as_deref().unwrap_or("null")
                )
            }
            Problem::Altered {
                key,
                expected,
                found,
            } => {
                write!(
                    f,
                    "altered: {key}: SHA-256 is {found}, the manifest says {expected}"
                )
            }
            Problem::Superseded { key, version_id } => write!(
                f,
                "altered: {key}: a newer version ({}) with other bytes is now current",
                version_id.as_deref().unwrap_or("null")
            ),
            Problem::Deleted { key } => write!(f, "deleted: {key}: a delete marker hides it"),
            Problem::Journal { reason } => write!(f, "journal: {reason}"),
            Problem::JournalRecord { seq, reason } => write!(f, "journal record {seq}: {reason}"),
            Problem::Signature { reason } => write!(f, "signature: {reason}"),
        }
    }
}

/// The outcome of [`verify_case`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub case: CaseId,
    pub objects_checked: usize,
    pub journal_records: usize,
    /// Empty when everything checks out.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A version of an object, or `None` if it (or its key) does not exist.
async fn get_opt(
    clients: &AwsClients,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<Option<Vec<u8>>, ActionError> {
    let location = format!("s3://{bucket}/{key}");
    let request = clients
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version_id.map(str::to_owned));
    let out = match clients
        .try_call(get_object_op(version_id), &location, request)
        .await
    {
        Ok(out) => out,
        // 404 for a missing key or version; 405 when the version asked for is a delete marker;
        // some stores answer 400 for a version id they never issued.
        Err(e)
            if matches!(e.status(), Some(404 | 405))
                || matches!(
                    e.code(),
                    Some("NoSuchKey" | "NoSuchVersion" | "InvalidArgument")
                ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let body = out.body.collect().await.map_err(|e| {
        ActionError::new(
            ErrorKind::Timeout,
            &location,
            format!("reading the object was cut short: {e}"),
            "check network access to S3 and retry",
        )
    })?;
    Ok(Some(body.into_bytes().to_vec()))
}

/// The newest entry (version or delete marker) of each key under `prefix`.
async fn latest_versions(
    clients: &AwsClients,
    bucket: &str,
    prefix: &str,
) -> Result<BTreeMap<String, ObjectVersion>, ActionError> {
    Ok(list_versions(clients, bucket, prefix)
        .await?
        .into_iter()
        .filter(|v| v.is_latest)
        .map(|v| (v.key.clone(), v))
        .collect())
}

/// Re-reads everything the case's manifest pins and checks it. `Err` only when
/// S3 itself cannot be asked (no access, no bucket); every finding about the
/// evidence is a [`Problem`] in the report, one per line for the CLI.
pub async fn verify_case(
    clients: &AwsClients,
    bucket: &str,
    prefix: &str,
    case: &CaseId,
    signing_key: Option<&str>,
) -> Result<VerifyReport, ActionError> {
    let mut report = VerifyReport {
        case: case.clone(),
        objects_checked: 0,
        journal_records: 0,
        problems: Vec::new(),
    };
    let manifest_key = case_key(prefix, case, MANIFEST_NAME);
    let Some(manifest_bytes) = get_opt(clients, bucket, &manifest_key, None).await? else {
        report.problems.push(Problem::Manifest {
            reason: format!(
                "s3://{bucket}/{manifest_key} not found: run the case's store-evidence step"
            ),
        });
        return Ok(report);
    };
    let location = format!("s3://{bucket}/{manifest_key}");
    let manifest: Manifest = match Manifest::from_json(&manifest_bytes, &location) {
        Ok(m) => m,
        Err(ManifestFormatError::Newer(e)) => {
            report.problems.push(Problem::Manifest {
                reason: e.to_string(),
            });
            return Ok(report);
        }
        Err(ManifestFormatError::Unreadable(e)) => {
            report.problems.push(Problem::Manifest {
                reason: format!("{location} is unreadable: {e}"),
            });
            return Ok(report);
        }
    };
    if manifest.case_id != case.as_str() {
        report.problems.push(Problem::Manifest {
            reason: format!("it names case {}, not {case}", manifest.case_id),
        });
    }
    let latest = latest_versions(clients, bucket, &case_prefix(prefix, case)).await?;
    if let Some(key) = signing_key {
        let signature_key = case_key(prefix, case, crate::signing::SIGNATURE_NAME);
        let signature = get_opt(clients, bucket, &signature_key, None).await?;
        let manifest_version = latest
            .get(&manifest_key)
            .and_then(|v| v.version_id.as_deref());
        if let Some(reason) = crate::signing::check_signature(
            clients,
            key,
            case,
            signature.as_deref(),
            &manifest_bytes,
            manifest_version,
        )
        .await?
        {
            report.problems.push(Problem::Signature { reason });
        }
    }

    for object in &manifest.objects {
        report.objects_checked += 1;
        let key = &object.key;
        match get_opt(clients, bucket, key, object.version_id.as_deref()).await? {
            None => report.problems.push(Problem::Missing {
                key: key.clone(),
                version_id: object.version_id.clone(),
            }),
            Some(bytes) => {
                let found = sha256_hex(&bytes);
                if found != object.sha256 || bytes.len() as u64 != object.size {
                    report.problems.push(Problem::Altered {
                        key: key.clone(),
                        expected: object.sha256.clone(),
                        found,
                    });
                }
            }
        }
        match latest.get(key) {
            Some(l) if l.delete_marker => {
                report.problems.push(Problem::Deleted { key: key.clone() })
            }
            Some(l) if l.version_id != object.version_id => {
                // Same bytes re-stored (a re-run) is harmless; other bytes are not.
                match get_opt(clients, bucket, key, l.version_id.as_deref()).await? {
                    Some(bytes) if sha256_hex(&bytes) == object.sha256 => {}
                    _ => report.problems.push(Problem::Superseded {
                        key: key.clone(),
                        version_id: l.version_id.clone(),
                    }),
                }
            }
            _ => {}
        }
    }

    // The journal as a reader would get it now: the current versions.
    let jsonl_key = case_key(prefix, case, JOURNAL_NAME);
    let folder = format!("{}journal/", case_prefix(prefix, case));
    let records: Option<Result<Vec<JournalRecord>, Problem>> = if latest.contains_key(&jsonl_key) {
        match get_opt(clients, bucket, &jsonl_key, None).await? {
            None => Some(Err(Problem::Journal {
                reason: format!("{jsonl_key} cannot be read (deleted)"),
            })),
            Some(bytes) => Some(parse_jsonl(&bytes)),
        }
    } else {
        let keys: Vec<String> = latest
            .iter()
            .filter(|(k, l)| k.starts_with(&folder) && k.ends_with(".json") && !l.delete_marker)
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            None
        } else {
            Some(
                crate::s3_journal::read_records(clients, bucket, &keys, case)
                    .await
                    .map_err(|e| Problem::Journal {
                        reason: e.to_string(),
                    }),
            )
        }
    };
    match records {
        None if !manifest.journal.is_empty() => report.problems.push(Problem::Journal {
            reason: "the manifest lists journal records but no stored journal was found"
                .to_string(),
        }),
        None => {}
        Some(Err(problem)) => report.problems.push(problem),
        Some(Ok(records)) => {
            report.journal_records = records.len();
            report
                .problems
                .extend(check_journal(&records, &manifest.journal));
        }
    }
    Ok(report)
}

/// The records of an uploaded local journal, each line (without its newline)
/// kept as the record's stored text, as the local store reads it.
fn parse_jsonl(bytes: &[u8]) -> Result<Vec<JournalRecord>, Problem> {
    let text = String::from_utf8_lossy(bytes);
    let mut records = Vec::new();
    for (i, line) in text
        .split('\n')
        .filter(|l| !l.trim().is_empty())
        .enumerate()
    {
        let record = JournalRecord::from_stored(line).map_err(|e| Problem::JournalRecord {
            seq: i as u64,
            reason: e.to_string(),
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Checks the stored records against the manifest and along the chain.
///
/// Editing record N changes its hash, so the chain visibly breaks at N+1
/// (whose prev-hash still holds N's old hash). The record to blame is N,
/// not N+1, unless N still matches the manifest (then N+1's own prev-hash
/// was edited): the problem names the record whose content changed.
pub fn check_journal(records: &[JournalRecord], pinned: &[ManifestJournalEntry]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let hashes: Vec<String> = records.iter().map(JournalRecord::hash).collect();
    let pinned_hash = |seq: usize| {
        pinned
            .iter()
            .find(|p| p.seq == seq as u64)
            .map(|p| p.hash.as_str())
    };

    let mut blamed = None;
    for (i, record) in records.iter().enumerate() {
        if record.seq != i as u64 {
            problems.push(Problem::JournalRecord {
                seq: i as u64,
                reason: format!(
                    "numbered {} at position {i}: records were removed or reordered",
                    record.seq
                ),
            });
            blamed = Some(i);
            break;
        }
        let expected = if i == 0 {
            GENESIS_HASH
        } else {
            hashes[i - 1].as_str()
        };
        if record.prev_hash != expected {
            let previous_intact = i > 0 && pinned_hash(i - 1) == Some(hashes[i - 1].as_str());
            let culprit = if i > 0 && !previous_intact { i - 1 } else { i };
            let reason = if culprit + 1 == i {
                format!(
                    "was altered: its hash no longer matches the prev-hash recorded by record {i}; the chain breaks here"
                )
            } else {
                "was altered: its prev-hash does not match the record before it; the chain breaks here".to_string()
            };
            problems.push(Problem::JournalRecord {
                seq: culprit as u64,
                reason,
            });
            blamed = Some(culprit);
            break;
        }
    }
    for entry in pinned {
        let seq = entry.seq as usize;
        if blamed == Some(seq) {
            continue;
        }
        match hashes.get(seq) {
            None => problems.push(Problem::JournalRecord {
                seq: entry.seq,
                reason: "listed in the manifest but missing from the stored journal".to_string(),
            }),
            Some(hash) if *hash != entry.hash => problems.push(Problem::JournalRecord {
                seq: entry.seq,
                reason: "was altered: its hash differs from the manifest's".to_string(),
            }),
            Some(_) => {}
        }
    }
    problems
}
