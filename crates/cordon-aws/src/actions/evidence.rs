//! `store-evidence`: copies everything the case has produced so far into the
//! evidence bucket and pins it with a manifest.
//!
//! The raw finding is not part of the plan, so what is stored is: the plan
//! (`plan.json`), the local journal file (`journal.jsonl`) and every local
//! evidence file of the case (both read from [`AwsActions::case_root`]), every
//! object already under the case prefix (captures written straight to S3, the
//! S3 journal's records), and last `manifest.json` listing each object's key,
//! version id, size and SHA-256 plus the journal's hash chain.
//!
//! [`AwsActions::case_root`]: super::AwsActions::case_root

use std::path::{Path, PathBuf};

use cordon_core::action::StoreEvidence as Params;
use cordon_core::executor::{ActionError, ErrorKind};
use cordon_core::journal::JournalRecord;
use serde::{Deserialize, Serialize};

use super::{Ctx, Handler};
pub use crate::evidence::ObjectVersion;
use crate::evidence::{
    EvidenceRef, EvidenceStore, case_key, case_prefix, get_s3, list_versions, put_s3, sha256_hex,
};
use crate::manifest::{JOURNAL_NAME, MANIFEST_NAME, Manifest, ManifestObject, write_manifest};
use crate::ops;

/// The handler for `store-evidence`.
#[derive(Debug)]
pub struct StoreEvidence;

/// The object versions under the case prefix before the step: the step only
/// ever adds versions, so this is the proof nothing was overwritten or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EvidencePreState {
    pub bucket: String,
    pub prefix: String,
    pub versions: Vec<ObjectVersion>,
}

/// What the step wrote: the manifest and the objects it pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EvidenceOutcome {
    pub bucket: String,
    pub prefix: String,
    pub manifest: EvidenceRef,
    pub objects: Vec<ManifestObject>,
}

/// Rollback keeps the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EvidenceUndone {
    /// Always true: evidence is never deleted by rollback.
    pub kept: bool,
    pub bucket: String,
    /// The manifest the step wrote, when it got that far.
    pub manifest: Option<EvidenceRef>,
    pub reason: String,
}

/// Bucket, prefix and KMS key for this step: the step's own bucket, else the
/// run's S3 evidence store.
fn destination(
    ctx: Ctx<'_>,
    params: &Params,
) -> Result<(String, String, Option<String>), ActionError> {
    let run_store = match &ctx.aws.evidence {
        EvidenceStore::S3 {
            bucket, kms_key, ..
        } => Some((bucket.clone(), kms_key.clone())),
        EvidenceStore::LocalDir(_) => None,
    };
    let (bucket, kms_key) = match (&params.bucket, run_store) {
        (Some(bucket), Some((run_bucket, kms))) if *bucket == run_bucket => (bucket.clone(), kms),
        (Some(bucket), _) => (bucket.clone(), None),
        (None, Some((bucket, kms))) => (bucket, kms),
        (None, None) => {
            return Err(ActionError::new(
                ErrorKind::Refused,
                "evidence bucket",
                format!("step `{}` has no evidence bucket to store to", ctx.step.id),
                "name one in the step (`with: {bucket: ...}`) or run with --evidence-bucket / CORDON_EVIDENCE_BUCKET",
            ));
        }
    };
    Ok((bucket, params.prefix.clone(), kms_key))
}

/// The case's local files to upload: `(name, path)`, journal first.
fn local_files(case_dir: &Path) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    let journal = case_dir.join(JOURNAL_NAME);
    if journal.is_file() {
        files.push((JOURNAL_NAME.to_string(), journal));
    }
    let mut evidence: Vec<(String, PathBuf)> = std::fs::read_dir(case_dir.join("evidence"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        // `.partial` files are writes a crash interrupted: never acknowledged, not evidence.
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "partial"))
        .filter_map(|p| Some((p.file_name()?.to_string_lossy().into_owned(), p)))
        .filter(|(name, _)| name != JOURNAL_NAME && name != MANIFEST_NAME && name != "plan.json")
        .collect();
    evidence.sort();
    files.extend(evidence);
    files
}

/// Complete records of a local journal file (a torn last line was never acknowledged).
fn parse_local_journal(bytes: &[u8]) -> Vec<JournalRecord> {
    let text = String::from_utf8_lossy(bytes);
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

impl Handler for StoreEvidence {
    type Params = Params;
    type PreState = EvidencePreState;
    type Outcome = EvidenceOutcome;
    type Undone = EvidenceUndone;

    async fn pre_state(ctx: Ctx<'_>, params: &Params) -> Result<EvidencePreState, ActionError> {
        let (bucket, prefix, _) = destination(ctx, params)?;
        let versions = list_versions(
            ctx.clients(),
            &bucket,
            &case_prefix(&prefix, &ctx.plan.case_id),
        )
        .await?;
        Ok(EvidencePreState {
            bucket,
            prefix,
            versions,
        })
    }

    async fn apply(
        ctx: Ctx<'_>,
        params: &Params,
        pre: &EvidencePreState,
    ) -> Result<EvidenceOutcome, ActionError> {
        let clients = ctx.clients();
        let case = &ctx.plan.case_id;
        let (_, _, kms_key) = destination(ctx, params)?;
        let (bucket, prefix, kms) = (pre.bucket.as_str(), pre.prefix.as_str(), kms_key.as_deref());
        let mut written: Vec<EvidenceRef> = Vec::new();
        let mut journal: Vec<JournalRecord> = Vec::new();

        let plan = serde_json::to_vec_pretty(ctx.plan).map_err(|e| {
            ActionError::new(
                ErrorKind::Other,
                case.as_str(),
                format!("cannot encode the plan: {e}"),
                "report this as a cordon bug",
            )
        })?;
        written.push(
            put_s3(
                clients,
                bucket,
                &case_key(prefix, case, "plan.json"),
                plan,
                kms,
            )
            .await?,
        );

        if let Some(root) = &ctx.aws.case_root {
            for (name, path) in local_files(&root.join(case.as_str())) {
                let bytes = tokio::fs::read(&path).await.map_err(|e| {
                    ActionError::new(
                        ErrorKind::Other,
                        path.display().to_string(),
                        format!("cannot read local evidence: {e}"),
                        "check the state directory is readable",
                    )
                })?;
                if name == JOURNAL_NAME {
                    journal = parse_local_journal(&bytes);
                }
                written.push(
                    put_s3(clients, bucket, &case_key(prefix, case, &name), bytes, kms).await?,
                );
            }
        }

        // Objects already in the bucket for this case (S3 captures, S3 journal
        // records): pinned at their current version, hashed from their bytes.
        let mut objects: Vec<ManifestObject> = written
            .iter()
            .map(|r| ManifestObject::from_ref(bucket, r))
            .collect();
        let manifest_key = case_key(prefix, case, MANIFEST_NAME);
        let current = list_versions(clients, bucket, &case_prefix(prefix, case)).await?;
        let mut s3_journal_keys = Vec::new();
        for v in current.iter().filter(|v| v.is_latest && !v.delete_marker) {
            if v.key == manifest_key || objects.iter().any(|o| o.key == v.key) {
                continue;
            }
            let bytes = get_s3(clients, bucket, &v.key, v.version_id.as_deref()).await?;
            objects.push(ManifestObject {
                key: v.key.clone(),
                version_id: v.version_id.clone(),
                size: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
            });
            if v.key
                .starts_with(&format!("{}journal/", case_prefix(prefix, case)))
            {
                s3_journal_keys.push(v.key.clone());
            }
        }
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
        Ok(EvidenceOutcome {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            manifest: manifest_ref,
            objects,
        })
    }

    /// Re-downloads every object version the step pinned (and the manifest)
    /// and re-hashes it: the bucket's own checksum is not trusted.
    async fn verify(
        ctx: Ctx<'_>,
        _params: &Params,
        _pre: &EvidencePreState,
        outcome: &EvidenceOutcome,
    ) -> Result<(), ActionError> {
        let manifest = ManifestObject::from_ref(&outcome.bucket, &outcome.manifest);
        for object in outcome.objects.iter().chain(std::iter::once(&manifest)) {
            let bytes = get_s3(
                ctx.clients(),
                &outcome.bucket,
                &object.key,
                object.version_id.as_deref(),
            )
            .await?;
            let found = sha256_hex(&bytes);
            if found != object.sha256 || bytes.len() as u64 != object.size {
                return Err(ActionError::new(
                    ErrorKind::Verification,
                    format!("s3://{}/{}", outcome.bucket, object.key),
                    format!(
                        "stored object hashes to {found}, expected {}",
                        object.sha256
                    ),
                    "the upload was corrupted or the object replaced; the step retries",
                ));
            }
        }
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
        pre: &EvidencePreState,
        outcome: Option<&EvidenceOutcome>,
    ) -> Result<EvidenceUndone, ActionError> {
        Ok(EvidenceUndone {
            kept: true,
            bucket: pre.bucket.clone(),
            manifest: outcome.map(|o| o.manifest.clone()),
            reason: "evidence is never deleted by rollback".to_string(),
        })
    }

    /// Nothing was undone; this checks the claim the undo rests on: every
    /// version present before the step is still there (the step only adds).
    async fn verify_undone(
        ctx: Ctx<'_>,
        _params: &Params,
        pre: &EvidencePreState,
    ) -> Result<(), ActionError> {
        let prefix = case_prefix(&pre.prefix, &ctx.plan.case_id);
        let now = list_versions(ctx.clients(), &pre.bucket, &prefix).await?;
        for before in &pre.versions {
            let kept = now
                .iter()
                .any(|v| v.key == before.key && v.version_id == before.version_id);
            if !kept {
                return Err(ActionError::new(
                    ErrorKind::Verification,
                    format!("s3://{}/{}", pre.bucket, before.key),
                    format!(
                        "version {} present before store-evidence is gone",
                        before.version_id.as_deref().unwrap_or("null")
                    ),
                    "evidence was deleted outside cordon: check CloudTrail for DeleteObjectVersion",
                ));
            }
        }
        Ok(())
    }

    fn describe(ctx: Ctx<'_>, _params: &Params, pre: &EvidencePreState) -> Vec<String> {
        let case = &ctx.plan.case_id;
        let put = |name: &str| {
            format!(
                "{} s3://{}/{}",
                ops::S3_PUT_OBJECT.iam_action,
                pre.bucket,
                case_key(&pre.prefix, case, name)
            )
        };
        let mut calls = vec![put("plan.json")];
        if let Some(root) = &ctx.aws.case_root {
            calls.extend(
                local_files(&root.join(case.as_str()))
                    .iter()
                    .map(|(name, _)| put(name)),
            );
        }
        calls.push(put(MANIFEST_NAME));
        calls
    }
}
