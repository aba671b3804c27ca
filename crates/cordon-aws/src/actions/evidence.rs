//! `store-evidence`: keeps everything the case has produced so far, pinned
//! with a manifest.
//!
//! What is kept: the finding exactly as received (the CLI keeps each distinct
//! delivery as `<case-dir>/finding-<sha256 prefix>.json`, or `finding.json`;
//! without such a file, the text given to [`AwsActions::with_finding_raw`]
//! for this case is kept as `finding.json`), the plan (`plan.json`),
//! the local journal file (`journal.jsonl`) and every local evidence file of
//! the case (read from [`AwsActions::case_root`]), and every object already
//! under the case prefix (captures written straight to S3, the S3 journal's
//! records). Last comes `manifest.json`, listing each object's key, version
//! id, size and SHA-256 plus the journal's hash chain. An object already
//! there is hashed from its bytes, fetched at its current version, unless a
//! step of the case wrote exactly that version and verified it by reading it
//! back: then its journaled size and SHA-256 pin it, and no round is spent
//! fetching it again (verification still re-reads every object).
//!
//! With an evidence bucket, all of it is uploaded. Without one, it stays in
//! the case directory ("stored locally"): the finding and the plan are
//! written there, and the manifest pins every evidence file of the case
//! directory by its SHA-256 and the journal by its hash chain (the journal
//! file itself keeps growing), so the case can be verified, or uploaded,
//! later. A journal
//! line this build cannot read is reported, never silently dropped: the
//! manifest's chain stops short of it and the step fails saying which line.
//!
//! [`AwsActions::case_root`]: super::AwsActions::case_root
//! [`AwsActions::with_finding_raw`]: super::AwsActions::with_finding_raw

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cordon_core::action::StoreEvidence as Params;
use cordon_core::executor::{ActionError, ErrorKind};
use cordon_core::journal::{JournalEvent, JournalRecord};
use cordon_core::plan::CaseId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use super::ec2::try_join_all;
use super::{Ctx, Handler};
pub use crate::evidence::ObjectVersion;
use crate::evidence::{
    EvidenceRef, EvidenceStore, case_key, case_prefix, get_s3, list_versions, put_s3, sha256_hex,
    write_durably,
};
use crate::manifest::{JOURNAL_NAME, MANIFEST_NAME, Manifest, ManifestObject, write_manifest};
use crate::ops;

/// The handler for `store-evidence`.
#[derive(Debug)]
pub struct StoreEvidence;

/// The name the raw finding is kept under.
pub const FINDING_NAME: &str = "finding.json";
/// The name the plan is kept under.
pub const PLAN_NAME: &str = "plan.json";
/// What a local store-evidence outcome says in its `stored` field.
pub const STORED_LOCALLY: &str = "locally";

/// Where the step keeps the evidence, as read before it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StorePreState {
    /// In an evidence bucket.
    Bucket(EvidencePreState),
    /// In the case directory: no bucket is configured.
    Local(LocalPreState),
}

/// Where the step writes. The step only ever adds object versions, so it has
/// nothing to restore, and it reads nothing here: the versions already under
/// the case prefix are listed by the apply, in the same round as its uploads,
/// and pinned in the manifest, which is what rollback checks is still whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EvidencePreState {
    pub bucket: String,
    pub prefix: String,
    /// The versions under the case prefix, as journals of earlier builds
    /// listed them before the step (absent since the listing moved into the
    /// apply's round); rollback still checks each is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<Vec<ObjectVersion>>,
}

/// The case directory and the files in it before the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LocalPreState {
    pub case_dir: String,
    /// Paths relative to the case directory, sorted.
    pub files: Vec<String>,
}

/// What the step wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StoreOutcome {
    Bucket(EvidenceOutcome),
    Local(LocalOutcome),
}

/// What the step uploaded: the manifest and the objects it pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EvidenceOutcome {
    pub bucket: String,
    pub prefix: String,
    pub manifest: EvidenceRef,
    pub objects: Vec<ManifestObject>,
    /// Evidence this process could not keep, and why (the raw finding when
    /// neither the case directory nor the caller has it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_stored: Vec<String>,
    /// `manifest.sig.json`, when the run has a signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<EvidenceRef>,
}

/// What the step kept in the case directory, for want of a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LocalOutcome {
    /// Always [`STORED_LOCALLY`].
    pub stored: String,
    pub case_dir: String,
    /// `manifest.json` in the case directory.
    pub manifest: EvidenceRef,
    /// Every evidence file of the case directory (the journal is pinned by
    /// the manifest's hash chain instead), keyed by its path relative to it.
    pub objects: Vec<ManifestObject>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_stored: Vec<String>,
    /// What to do with it.
    pub note: String,
}

/// Rollback keeps the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EvidenceUndone {
    /// Always true: evidence is never deleted by rollback.
    pub kept: bool,
    /// The bucket (absent when the evidence is in the case directory).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket: String,
    /// The case directory, when the evidence was kept there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_dir: Option<String>,
    /// The manifest the step wrote, when it got that far.
    pub manifest: Option<EvidenceRef>,
    pub reason: String,
}

/// Where this step keeps evidence.
enum Destination {
    /// Bucket, prefix and KMS key.
    Bucket(String, String, Option<String>),
    /// The case directory.
    Local(PathBuf),
}

/// The step's own bucket, else the run's S3 evidence store, else the case
/// The run's manifest signing key, if its evidence store has one.
fn signing_key<'c>(ctx: Ctx<'c>) -> Option<&'c str> {
    match &ctx.aws.evidence {
        EvidenceStore::S3 { signing_key, .. } => signing_key.as_deref(),
        EvidenceStore::LocalDir(_) => None,
    }
}

/// directory; an error only when there is none of them (no state at all).
fn destination(ctx: Ctx<'_>, params: &Params) -> Result<Destination, ActionError> {
    let run_store = match &ctx.aws.evidence {
        EvidenceStore::S3 {
            bucket, kms_key, ..
        } => Some((bucket.clone(), kms_key.clone())),
        EvidenceStore::LocalDir(_) => None,
    };
    let prefix = params.prefix.clone();
    Ok(match (&params.bucket, run_store) {
        (Some(bucket), Some((run_bucket, kms))) if *bucket == run_bucket => {
            Destination::Bucket(bucket.clone(), prefix, kms)
        }
        (Some(bucket), _) => Destination::Bucket(bucket.clone(), prefix, None),
        (None, Some((bucket, kms))) => Destination::Bucket(bucket, prefix, kms),
        (None, None) => match &ctx.aws.case_root {
            Some(root) => Destination::Local(root.join(ctx.plan.case_id.as_str())),
            None => {
                return Err(ActionError::new(
                    ErrorKind::Refused,
                    "evidence bucket",
                    format!(
                        "step `{}` has neither an evidence bucket nor a case directory to keep evidence in",
                        ctx.step.id
                    ),
                    "name a bucket in the step (`with: {bucket: ...}`) or run with --evidence-bucket / CORDON_EVIDENCE_BUCKET",
                ));
            }
        },
    })
}

/// Whether `name` is a kept finding: `finding.json` or `finding-<digest>.json`.
fn is_finding_file(name: &str) -> bool {
    name == FINDING_NAME
        || name
            .strip_prefix("finding-")
            .and_then(|rest| rest.strip_suffix(".json"))
            .is_some_and(|digest| {
                !digest.is_empty() && digest.chars().all(|c| c.is_ascii_hexdigit())
            })
}

/// The findings kept in the case directory, `(name, path)`, sorted by name.
fn case_findings(case_dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(case_dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter_map(|p| Some((p.file_name()?.to_string_lossy().into_owned(), p)))
        .filter(|(name, _)| is_finding_file(name))
        .collect();
    found.sort();
    found
}

/// The case's local files to keep: `(name, path)`, the findings and the
/// journal first, then the evidence files (`.partial` ones are writes a crash
/// interrupted: never acknowledged, not evidence).
fn local_files(case_dir: &Path) -> Vec<(String, PathBuf)> {
    let mut files = case_findings(case_dir);
    let journal = case_dir.join(JOURNAL_NAME);
    if journal.is_file() {
        files.push((JOURNAL_NAME.to_string(), journal));
    }
    let mut evidence: Vec<(String, PathBuf)> = std::fs::read_dir(case_dir.join("evidence"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "partial"))
        .filter_map(|p| Some((p.file_name()?.to_string_lossy().into_owned(), p)))
        .filter(|(name, _)| {
            ![JOURNAL_NAME, MANIFEST_NAME, PLAN_NAME].contains(&name.as_str())
                && !is_finding_file(name)
        })
        .collect();
    evidence.sort();
    files.extend(evidence);
    files
}

/// The records of a local journal file. A torn last line (no newline) was
/// never acknowledged and is left out; any other line that is not a record
/// this build reads is reported as `line N: why`, not dropped silently.
pub fn parse_local_journal(bytes: &[u8]) -> (Vec<JournalRecord>, Vec<String>) {
    let text = String::from_utf8_lossy(bytes);
    let mut records = Vec::new();
    let mut unreadable = Vec::new();
    let Some(end) = text.rfind('\n') else {
        return (records, unreadable);
    };
    // Each line's text exactly as the local store keeps it (what its hash covers).
    for (i, line) in text[..end].split('\n').enumerate() {
        match JournalRecord::from_stored(line) {
            Ok(record) => records.push(record),
            Err(e) => unreadable.push(format!("line {}: {e}", i + 1)),
        }
    }
    (records, unreadable)
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> ActionError {
    ActionError::new(
        ErrorKind::Other,
        path.display().to_string(),
        format!("cannot {what}: {e}"),
        "check the state directory is readable and writable, and the disk has space",
    )
}

fn encode_json<T: Serialize>(case: &CaseId, what: &str, value: &T) -> Result<Vec<u8>, ActionError> {
    serde_json::to_vec_pretty(value).map_err(|e| {
        ActionError::new(
            ErrorKind::Other,
            case.as_str(),
            format!("cannot encode the {what}: {e}"),
            "report this as a cordon bug",
        )
    })
}

/// The raw finding when only the caller has it (no finding kept in the case
/// directory), or why it cannot be kept.
fn finding_from_caller(ctx: Ctx<'_>, case_dir: Option<&Path>) -> Result<Option<Vec<u8>>, String> {
    if case_dir.is_some_and(|dir| !case_findings(dir).is_empty()) {
        return Ok(None);
    }
    match &ctx.aws.finding_raw {
        Some((case, raw)) if *case == ctx.plan.case_id => Ok(Some(raw.as_bytes().to_vec())),
        _ => Err(format!(
            "{FINDING_NAME}: the finding as received is not available to this process (only its SHA-256 is journaled)"
        )),
    }
}

/// The error that follows writing evidence whose journal has unreadable lines.
fn unreadable_journal(case: &CaseId, unreadable: &[String]) -> ActionError {
    ActionError::new(
        ErrorKind::InvalidState,
        format!("{case}/{JOURNAL_NAME}"),
        format!(
            "the journal has lines this cordon cannot read ({}): the evidence is kept and the journal file pinned by its SHA-256, but the manifest's hash chain stops short of them",
            unreadable.join("; ")
        ),
        "the journal was edited or damaged, or written by a newer cordon: compare it with its hash chain and a newer cordon before trusting the case",
    )
}

/// The evidence objects in `bucket` that steps of the case wrote and then
/// verified by reading them back, by (key, version id): each step's last
/// journaled outcome, walked for `EvidenceRef`s, kept only if a
/// `step-verified` record of that step follows it. Unversioned objects are
/// left out: only a version id pins the bytes that were read back.
fn verified_evidence(
    journal: &[JournalRecord],
    bucket: &str,
) -> BTreeMap<(String, String), EvidenceRef> {
    let mut applied: BTreeMap<&str, &Value> = BTreeMap::new();
    let mut verified: BTreeMap<(String, String), EvidenceRef> = BTreeMap::new();
    let location = format!("s3://{bucket}/");
    for record in journal {
        match &record.event {
            JournalEvent::StepApplied { step, outcome, .. } => {
                applied.insert(step, outcome);
            }
            JournalEvent::StepVerified { step, .. } => {
                let Some(outcome) = applied.remove(step.as_str()) else {
                    continue;
                };
                let mut found = Vec::new();
                evidence_refs(outcome, &mut found);
                for evidence in found {
                    if let (Some(key), Some(version)) = (
                        evidence.location.strip_prefix(&location),
                        &evidence.version_id,
                    ) {
                        verified.insert((key.to_owned(), version.clone()), evidence.clone());
                    }
                }
            }
            _ => {}
        }
    }
    verified
}

/// Every object in `value` that reads as an [`EvidenceRef`].
fn evidence_refs(value: &Value, out: &mut Vec<EvidenceRef>) {
    match value {
        Value::Object(map) => {
            if map.contains_key("location")
                && map.contains_key("sha256")
                && let Ok(evidence) = serde_json::from_value::<EvidenceRef>(value.clone())
            {
                out.push(evidence);
                return;
            }
            map.values().for_each(|v| evidence_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| evidence_refs(v, out)),
        _ => {}
    }
}

impl StoreEvidence {
    async fn apply_bucket(
        ctx: Ctx<'_>,
        pre: &EvidencePreState,
        kms: Option<&str>,
    ) -> Result<EvidenceOutcome, ActionError> {
        let clients = ctx.clients();
        let case = &ctx.plan.case_id;
        let (bucket, prefix) = (pre.bucket.as_str(), pre.prefix.as_str());
        let mut journal: Vec<JournalRecord> = Vec::new();
        let mut unreadable = Vec::new();
        let mut not_stored = Vec::new();
        let case_dir = ctx.aws.case_root.as_ref().map(|r| r.join(case.as_str()));

        // What this step writes: the plan, the finding, the local files.
        let mut uploads = vec![(
            case_key(prefix, case, PLAN_NAME),
            encode_json(case, "plan", ctx.plan)?,
        )];
        match finding_from_caller(ctx, case_dir.as_deref()) {
            Ok(Some(raw)) => uploads.push((case_key(prefix, case, FINDING_NAME), raw)),
            Ok(None) => {}
            Err(why) => not_stored.push(why),
        }
        if let Some(dir) = &case_dir {
            for (name, path) in local_files(dir) {
                let bytes = tokio::fs::read(&path)
                    .await
                    .map_err(|e| io_error(&path, "read local evidence", e))?;
                if name == JOURNAL_NAME {
                    (journal, unreadable) = parse_local_journal(&bytes);
                }
                uploads.push((case_key(prefix, case, &name), bytes));
            }
        }
        let manifest_key = case_key(prefix, case, MANIFEST_NAME);
        // The case's lease is the S3 journal's lock, rewritten at the end of
        // every call: not evidence, and pinning it would flag it altered later.
        let lease_key = crate::s3_journal::lease_key(prefix, case);
        let signature_key = case_key(prefix, case, crate::signing::SIGNATURE_NAME);
        let ours: Vec<String> = uploads.iter().map(|(key, _)| key.clone()).collect();
        // Every upload and the listing of what is already there go out
        // together: one round, not one per object. The listing skips the
        // keys this step writes by name, so it need not wait for them.
        let puts = try_join_all(
            uploads
                .into_iter()
                .map(|(key, bytes)| async move { put_s3(clients, bucket, &key, bytes, kms).await })
                .collect(),
        );
        let here = case_prefix(prefix, case);
        let listing = list_versions(clients, bucket, &here);
        let (written, current) = tokio::join!(puts, listing);
        let (written, current) = (written?, current?);

        // Objects already in the bucket for this case (S3 captures, S3 journal
        // records): pinned at their current version, hashed from their bytes,
        // all read at once.
        let mut objects: Vec<ManifestObject> = written
            .iter()
            .map(|r| ManifestObject::from_ref(bucket, r))
            .collect();
        let theirs: Vec<&ObjectVersion> = current
            .iter()
            .filter(|v| v.is_latest && !v.delete_marker)
            .filter(|v| ![&manifest_key, &lease_key, &signature_key].contains(&&v.key))
            .filter(|v| !ours.contains(&v.key))
            .collect();
        // What the case's own steps wrote and read back is pinned from their
        // journaled outcome: a version's bytes never change, and fetching
        // them again would cost a round for nothing.
        let ours_pinned = objects.len();
        let verified = verified_evidence(&journal, bucket);
        // One look-up per object: pinned from the journal, or left to fetch.
        let mut unvouched: Vec<&ObjectVersion> = Vec::new();
        for v in theirs {
            let vouched = v
                .version_id
                .as_ref()
                .and_then(|version| verified.get(&(v.key.clone(), version.clone())));
            match vouched {
                Some(evidence) => objects.push(ManifestObject {
                    key: v.key.clone(),
                    version_id: v.version_id.clone(),
                    size: evidence.size,
                    sha256: evidence.sha256.clone(),
                }),
                None => unvouched.push(v),
            }
        }
        let theirs = unvouched;
        let fetched = try_join_all(
            theirs
                .iter()
                .map(|v| get_s3(clients, bucket, &v.key, v.version_id.as_deref()))
                .collect(),
        )
        .await?;
        let journal_prefix = format!("{}journal/", case_prefix(prefix, case));
        let mut s3_journal_keys = Vec::new();
        for (v, bytes) in theirs.into_iter().zip(fetched) {
            objects.push(ManifestObject {
                key: v.key.clone(),
                version_id: v.version_id.clone(),
                size: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
            });
            if v.key.starts_with(&journal_prefix) {
                s3_journal_keys.push(v.key.clone());
            }
        }
        // Theirs in key order, as listed, whichever way each was pinned.
        objects[ours_pinned..].sort_by(|a, b| a.key.cmp(&b.key));
        if journal.is_empty() && !s3_journal_keys.is_empty() {
            s3_journal_keys.sort();
            journal = crate::s3_journal::read_records(clients, bucket, &s3_journal_keys, case)
                .await
                .map_err(|e| {
                    ActionError::new(
                        ErrorKind::Other,
                        format!("s3://{bucket}/{}", case_prefix(prefix, case)),
                        e.to_string(),
                        "check the S3 journal",
                    )
                })?;
        }

        let manifest = Manifest::new(case, objects.clone(), &journal);
        let manifest_ref = write_manifest(clients, bucket, prefix, &manifest, kms).await?;
        let signature = match signing_key(ctx) {
            Some(key) => Some(
                crate::signing::sign_manifest(
                    clients,
                    bucket,
                    prefix,
                    case,
                    &manifest_ref,
                    journal.last().map(JournalRecord::hash),
                    key,
                    kms,
                )
                .await?,
            ),
            None => None,
        };
        if !unreadable.is_empty() {
            return Err(unreadable_journal(case, &unreadable));
        }
        Ok(EvidenceOutcome {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            manifest: manifest_ref,
            objects,
            not_stored,
            signature,
        })
    }

    /// No bucket: the finding and the plan join the case directory, and a
    /// manifest there pins every file of it.
    async fn apply_local(ctx: Ctx<'_>, case_dir: &Path) -> Result<LocalOutcome, ActionError> {
        let case = &ctx.plan.case_id;
        let mut not_stored = Vec::new();
        match finding_from_caller(ctx, Some(case_dir)) {
            Ok(Some(raw)) => {
                let path = case_dir.join(FINDING_NAME);
                write_durably(path.clone(), raw)
                    .await
                    .map_err(|e| io_error(&path, "keep the finding", e))?;
            }
            Ok(None) => {}
            Err(why) => not_stored.push(why),
        }
        let plan_path = case_dir.join(PLAN_NAME);
        write_durably(plan_path.clone(), encode_json(case, "plan", ctx.plan)?)
            .await
            .map_err(|e| io_error(&plan_path, "keep the plan", e))?;

        let mut files = vec![(PLAN_NAME.to_string(), plan_path)];
        files.extend(local_files(case_dir));
        let mut objects = Vec::new();
        let mut journal = Vec::new();
        let mut unreadable = Vec::new();
        for (name, path) in files {
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| io_error(&path, "read local evidence", e))?;
            if name == JOURNAL_NAME {
                // The journal grows after this step (its own outcome, at
                // least): its records are pinned by the hash chain, not the
                // file by its hash.
                (journal, unreadable) = parse_local_journal(&bytes);
                continue;
            }
            let key = if name == PLAN_NAME || is_finding_file(&name) {
                name
            } else {
                format!("evidence/{name}")
            };
            objects.push(ManifestObject {
                key,
                version_id: None,
                size: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
            });
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        let manifest = Manifest::new(case, objects.clone(), &journal);
        let bytes = encode_json(case, "manifest", &manifest)?;
        let manifest_path = case_dir.join(MANIFEST_NAME);
        let manifest_ref = EvidenceRef {
            location: format!("file://{}", manifest_path.display()),
            size: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
            version_id: None,
        };
        write_durably(manifest_path.clone(), bytes)
            .await
            .map_err(|e| io_error(&manifest_path, "write the manifest", e))?;
        if !unreadable.is_empty() {
            return Err(unreadable_journal(case, &unreadable));
        }
        info!(case = %case, files = objects.len(), "no evidence bucket: evidence stored locally");
        Ok(LocalOutcome {
            stored: STORED_LOCALLY.to_string(),
            case_dir: case_dir.display().to_string(),
            manifest: manifest_ref,
            objects,
            not_stored,
            note: format!(
                "no evidence bucket is configured: the evidence stays in {} and {MANIFEST_NAME} pins each file by its SHA-256; copy the directory somewhere safe, or run store-evidence with a bucket",
                case_dir.display()
            ),
        })
    }
}

/// Re-reads each pinned file of a local outcome (and its manifest) and re-hashes it.
async fn verify_local(outcome: &LocalOutcome) -> Result<(), ActionError> {
    let dir = PathBuf::from(&outcome.case_dir);
    let manifest = ManifestObject {
        key: MANIFEST_NAME.to_string(),
        version_id: None,
        size: outcome.manifest.size,
        sha256: outcome.manifest.sha256.clone(),
    };
    for object in outcome.objects.iter().chain(std::iter::once(&manifest)) {
        let path = dir.join(&object.key);
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| io_error(&path, "read back local evidence", e))?;
        check_hash(&path.display().to_string(), object, &bytes)?;
    }
    Ok(())
}

/// The bytes read back hash to what the manifest pinned.
fn check_hash(location: &str, object: &ManifestObject, bytes: &[u8]) -> Result<(), ActionError> {
    let found = sha256_hex(bytes);
    if found == object.sha256 && bytes.len() as u64 == object.size {
        return Ok(());
    }
    Err(ActionError::new(
        ErrorKind::Verification,
        location,
        format!(
            "stored evidence hashes to {found}, expected {}",
            object.sha256
        ),
        "the write was corrupted or the evidence replaced; the step retries",
    ))
}

impl Handler for StoreEvidence {
    type Params = Params;
    type PreState = StorePreState;
    type Outcome = StoreOutcome;
    type Undone = EvidenceUndone;

    async fn pre_state(ctx: Ctx<'_>, params: &Params) -> Result<StorePreState, ActionError> {
        match destination(ctx, params)? {
            // No listing here: it would cost the step a round of its own,
            // while the apply lists alongside its uploads anyway.
            Destination::Bucket(bucket, prefix, _) => Ok(StorePreState::Bucket(EvidencePreState {
                bucket,
                prefix,
                versions: None,
            })),
            Destination::Local(dir) => {
                let mut files: Vec<String> = local_files(&dir)
                    .into_iter()
                    .map(|(name, _)| name)
                    .collect();
                files.sort();
                Ok(StorePreState::Local(LocalPreState {
                    case_dir: dir.display().to_string(),
                    files,
                }))
            }
        }
    }

    async fn apply(
        ctx: Ctx<'_>,
        params: &Params,
        pre: &StorePreState,
    ) -> Result<StoreOutcome, ActionError> {
        match pre {
            StorePreState::Bucket(pre) => {
                let kms = match destination(ctx, params)? {
                    Destination::Bucket(_, _, kms) => kms,
                    Destination::Local(_) => None,
                };
                Ok(StoreOutcome::Bucket(
                    Self::apply_bucket(ctx, pre, kms.as_deref()).await?,
                ))
            }
            StorePreState::Local(pre) => Ok(StoreOutcome::Local(
                Self::apply_local(ctx, Path::new(&pre.case_dir)).await?,
            )),
        }
    }

    /// Re-reads every object version (or file) the step pinned, and the
    /// manifest, and re-hashes it: the store's own checksum is not trusted.
    async fn verify(
        ctx: Ctx<'_>,
        _params: &Params,
        _pre: &StorePreState,
        outcome: &StoreOutcome,
    ) -> Result<(), ActionError> {
        let outcome = match outcome {
            StoreOutcome::Local(local) => return verify_local(local).await,
            StoreOutcome::Bucket(outcome) => outcome,
        };
        let manifest = ManifestObject::from_ref(&outcome.bucket, &outcome.manifest);
        let checks = outcome
            .objects
            .iter()
            .chain(std::iter::once(&manifest))
            .map(|object| async move {
                let bytes = get_s3(
                    ctx.clients(),
                    &outcome.bucket,
                    &object.key,
                    object.version_id.as_deref(),
                )
                .await?;
                check_hash(
                    &format!("s3://{}/{}", outcome.bucket, object.key),
                    object,
                    &bytes,
                )
            })
            .collect();
        try_join_all(checks).await?;
        Ok(())
    }

    /// Evidence is kept: rollback undoes containment, not the record of what
    /// happened. Deleting it would destroy exactly what an investigation (or a
    /// regulator) needs about the rollback itself, and on an Object Lock bucket
    /// it is not possible anyway. Nothing that existed before was changed
    /// (the pre-state lists it), so there is nothing to restore.
    async fn undo(
        _ctx: Ctx<'_>,
        _params: &Params,
        pre: &StorePreState,
        outcome: Option<&StoreOutcome>,
    ) -> Result<EvidenceUndone, ActionError> {
        let manifest = outcome.map(|o| match o {
            StoreOutcome::Bucket(o) => o.manifest.clone(),
            StoreOutcome::Local(o) => o.manifest.clone(),
        });
        let (bucket, case_dir) = match pre {
            StorePreState::Bucket(pre) => (pre.bucket.clone(), None),
            StorePreState::Local(pre) => (String::new(), Some(pre.case_dir.clone())),
        };
        Ok(EvidenceUndone {
            kept: true,
            bucket,
            case_dir,
            manifest,
            reason: "evidence is never deleted by rollback".to_string(),
        })
    }

    /// Nothing was undone; this checks the claim the undo rests on: every
    /// version (or file) present before the step is still there.
    async fn verify_undone(
        ctx: Ctx<'_>,
        _params: &Params,
        pre: &StorePreState,
    ) -> Result<(), ActionError> {
        let pre = match pre {
            StorePreState::Bucket(pre) => pre,
            StorePreState::Local(pre) => {
                let dir = Path::new(&pre.case_dir);
                let now: Vec<String> = local_files(dir).into_iter().map(|(n, _)| n).collect();
                if let Some(gone) = pre.files.iter().find(|f| !now.contains(f)) {
                    warn!(file = %gone, "a file of the case directory is gone");
                    return Err(ActionError::new(
                        ErrorKind::Verification,
                        dir.join(gone).display().to_string(),
                        "a file present before store-evidence is gone",
                        "evidence was deleted outside cordon: restore it from a backup",
                    ));
                }
                return Ok(());
            }
        };
        let case = &ctx.plan.case_id;
        let now =
            list_versions(ctx.clients(), &pre.bucket, &case_prefix(&pre.prefix, case)).await?;
        let kept = |key: &str, version: Option<&str>, what: &str| {
            if now
                .iter()
                .any(|v| v.key == key && v.version_id.as_deref() == version && !v.delete_marker)
            {
                Ok(())
            } else {
                Err(ActionError::new(
                    ErrorKind::Verification,
                    format!("s3://{}/{key}", pre.bucket),
                    format!("version {} {what} is gone", version.unwrap_or("null")),
                    "evidence was deleted outside cordon: check CloudTrail for DeleteObjectVersion",
                ))
            }
        };
        if let Some(before) = &pre.versions {
            for v in before {
                kept(
                    &v.key,
                    v.version_id.as_deref(),
                    "present before store-evidence",
                )?;
            }
            return Ok(());
        }
        // The manifest the step wrote last pins every version that was under
        // the prefix when it ran, and every one it added. None written: the
        // step got no further than uploads, which only add versions.
        let manifest_key = case_key(&pre.prefix, case, MANIFEST_NAME);
        let Some(latest) = now.iter().find(|v| v.key == manifest_key && v.is_latest) else {
            return Ok(());
        };
        if latest.delete_marker {
            return Err(ActionError::new(
                ErrorKind::Verification,
                format!("s3://{}/{manifest_key}", pre.bucket),
                "the case's manifest was deleted",
                "evidence was deleted outside cordon: check CloudTrail for DeleteObject, then restore the manifest's previous version",
            ));
        }
        let bytes = get_s3(
            ctx.clients(),
            &pre.bucket,
            &manifest_key,
            latest.version_id.as_deref(),
        )
        .await?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            ActionError::new(
                ErrorKind::Verification,
                format!("s3://{}/{manifest_key}", pre.bucket),
                format!("the case's manifest does not read as one: {e}"),
                "the manifest was altered outside cordon: check CloudTrail for PutObject on it",
            )
        })?;
        for object in &manifest.objects {
            kept(
                &object.key,
                object.version_id.as_deref(),
                "pinned by the manifest",
            )?;
        }
        Ok(())
    }

    fn describe(ctx: Ctx<'_>, _params: &Params, pre: &StorePreState) -> Vec<String> {
        let case = &ctx.plan.case_id;
        let case_dir = ctx.aws.case_root.as_ref().map(|r| r.join(case.as_str()));
        let mut names = vec![PLAN_NAME.to_string()];
        if matches!(finding_from_caller(ctx, case_dir.as_deref()), Ok(Some(_))) {
            names.push(FINDING_NAME.to_string());
        }
        if let Some(dir) = &case_dir {
            names.extend(local_files(dir).into_iter().map(|(name, _)| name));
        }
        names.push(MANIFEST_NAME.to_string());
        match pre {
            StorePreState::Bucket(pre) => names
                .iter()
                .map(|name| {
                    format!(
                        "{} s3://{}/{}",
                        ops::S3_PUT_OBJECT.iam_action,
                        pre.bucket,
                        case_key(&pre.prefix, case, name)
                    )
                })
                .collect(),
            StorePreState::Local(pre) => vec![format!(
                "(no call: no evidence bucket; stored locally: {} pinned by {MANIFEST_NAME} in {})",
                names.join(", "),
                pre.case_dir
            )],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_journal_lines_are_reported_and_a_torn_tail_is_not() {
        let good = r#"{"format-version":2,"seq":0,"at":"2026-01-01T00:00:00Z","prev-hash":"0000000000000000000000000000000000000000000000000000000000000000","event":{"event":"rollback-started","reason":"test"}}"#;
        let text = format!("{good}\nnot a record\n{good}\n{{\"seq\":");
        let (records, unreadable) = parse_local_journal(text.as_bytes());
        assert_eq!(records.len(), 2);
        assert_eq!(unreadable.len(), 1, "{unreadable:?}");
        assert!(unreadable[0].starts_with("line 2: "), "{unreadable:?}");
        let (records, unreadable) = parse_local_journal(b"");
        assert!(records.is_empty() && unreadable.is_empty());
    }

    #[test]
    fn kept_findings_are_recognised_by_name() {
        assert!(is_finding_file("finding.json"));
        assert!(is_finding_file("finding-0123456789abcdef.json"));
        assert!(!is_finding_file("finding-.json"));
        assert!(!is_finding_file("finding-notes.json"));
        assert!(!is_finding_file(".finding.42.tmp"));
        assert!(!is_finding_file("plan.json"));
    }

    #[test]
    fn bucket_pre_states_and_outcomes_read_as_before() {
        let pre = serde_json::json!({"bucket": "b", "prefix": "cases/", "versions": []});
        let read: StorePreState = serde_json::from_value(pre.clone()).expect("pre-state");
        assert!(matches!(read, StorePreState::Bucket(_)));
        assert_eq!(serde_json::to_value(&read).expect("encodes"), pre);
        let local = serde_json::json!({"case-dir": "/state/case-1", "files": ["journal.jsonl"]});
        let read: StorePreState = serde_json::from_value(local.clone()).expect("pre-state");
        assert!(matches!(read, StorePreState::Local(_)));
        assert_eq!(serde_json::to_value(&read).expect("encodes"), local);
        let undone =
            serde_json::json!({"kept": true, "bucket": "b", "manifest": null, "reason": "r"});
        let read: EvidenceUndone = serde_json::from_value(undone.clone()).expect("undone");
        assert_eq!(serde_json::to_value(&read).expect("encodes"), undone);
    }
}
