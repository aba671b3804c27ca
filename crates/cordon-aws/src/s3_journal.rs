//! The journal store for Lambda (and any worker without a durable local disk):
//! one S3 object per record at `<prefix><case-id>/journal/<seq, 10 digits>.json`.
//!
//! Each record is written with `If-None-Match: *`, a conditional create: of two
//! workers racing for the same `seq` (a Step Functions retry overlapping a
//! slow first attempt), S3 lets exactly one win and answers the other with
//! `412 Precondition Failed`, which becomes [`JournalError::Conflict`]. That
//! makes the store safe without any lock, so [`S3Journal::lock`] is a no-op
//! guard. Records sit beside the case's evidence, so the bucket's versioning,
//! encryption and Object Lock protect the journal too.

use aws_sdk_s3::error::ProvideErrorMetadata;
use cordon_core::journal::{JournalError, JournalRecord, JournalStore};
use cordon_core::plan::CaseId;

use crate::client::AwsClients;
use crate::evidence::{case_prefix, get_s3, put_request};

/// The key of record `seq` of `case`.
pub fn record_key(prefix: &str, case: &CaseId, seq: u64) -> String {
    format!("{}journal/{seq:010}.json", case_prefix(prefix, case))
}

/// Journals in `s3://<bucket>/<prefix><case-id>/journal/`.
#[derive(Debug, Clone)]
pub struct S3Journal {
    pub clients: AwsClients,
    pub bucket: String,
    /// Key prefix before the case id, e.g. `cases/` (same as the evidence's).
    pub prefix: String,
}

/// Nothing to hold: conditional puts, not a lock, keep two writers apart. A
/// second worker on the same case fails its first append with a conflict and
/// re-reads the journal instead of blocking on a lease that could outlive a
/// crashed Lambda.
#[derive(Debug)]
pub struct S3NoLock;

fn io(
    location: String,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
) -> JournalError {
    JournalError::Io {
        location,
        message,
        source,
    }
}

impl S3Journal {
    pub fn new(clients: AwsClients, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            clients,
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    /// Every key under `prefix`, sorted, paging through the listing.
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, JournalError> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            self.clients.limit("S3.ListObjectsV2").await;
            let out = self
                .clients
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| {
                    io(
                        format!("s3://{}/{prefix}", self.bucket),
                        format!(
                            "cannot list the journal: {}",
                            e.message().unwrap_or("ListObjectsV2 failed")
                        ),
                        Some(Box::new(e)),
                    )
                })?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            token = out.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        Ok(keys)
    }
}

/// Reads the records stored under a case's `journal/` folder, in order, each
/// keeping its object's bytes as its stored text (what the chain hashes).
/// Shared with evidence verification, which re-checks the chain of the stored journal.
pub(crate) async fn read_records(
    clients: &AwsClients,
    bucket: &str,
    keys: &[String],
    case: &CaseId,
) -> Result<Vec<JournalRecord>, JournalError> {
    let mut records = Vec::with_capacity(keys.len());
    for key in keys {
        let bytes = get_s3(clients, bucket, key, None).await.map_err(|e| {
            io(
                format!("s3://{bucket}/{key}"),
                e.message.clone(),
                Some(Box::new(e)),
            )
        })?;
        let seq = records.len() as u64;
        let text = std::str::from_utf8(&bytes).map_err(|e| JournalError::Corrupt {
            case: case.clone(),
            seq,
            reason: format!("{key} is not UTF-8: {e}"),
        })?;
        let record =
            JournalRecord::from_stored(text).map_err(|e| match e.in_journal(case, seq) {
                JournalError::Corrupt { case, seq, reason } => JournalError::Corrupt {
                    case,
                    seq,
                    reason: format!("{key}: {reason}"),
                },
                other => other,
            })?;
        records.push(record);
    }
    Ok(records)
}

impl JournalStore for S3Journal {
    type Lock = S3NoLock;

    async fn lock(&self, _case: &CaseId) -> Result<S3NoLock, JournalError> {
        Ok(S3NoLock)
    }

    async fn load(&self, case: &CaseId) -> Result<Vec<JournalRecord>, JournalError> {
        let folder = format!("{}journal/", case_prefix(&self.prefix, case));
        let keys: Vec<String> = self
            .list_keys(&folder)
            .await?
            .into_iter()
            .filter(|k| k.ends_with(".json"))
            .collect();
        read_records(&self.clients, &self.bucket, &keys, case).await
    }

    async fn append(&self, case: &CaseId, record: &JournalRecord) -> Result<(), JournalError> {
        let key = record_key(&self.prefix, case, record.seq);
        let location = format!("s3://{}/{key}", self.bucket);
        // The record's stored text: the chain hashes exactly these bytes.
        let bytes = record.stored_text().into_owned().into_bytes();
        self.clients.limit("S3.PutObject").await;
        let result = put_request(&self.clients, &self.bucket, &key, bytes, None)
            .if_none_match("*")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                // 412: the record exists. 409 ConditionalRequestConflict: another
                // conditional write to the key is in flight; either way it is not ours.
                if status == Some(412)
                    || matches!(
                        e.code(),
                        Some("PreconditionFailed" | "ConditionalRequestConflict")
                    )
                {
                    Err(JournalError::Conflict {
                        case: case.clone(),
                        seq: record.seq,
                    })
                } else {
                    let message = format!(
                        "cannot write record {}: {}",
                        record.seq,
                        e.message().unwrap_or("PutObject failed")
                    );
                    Err(io(location, message, Some(Box::new(e))))
                }
            }
        }
    }

    async fn cases(&self) -> Result<Vec<CaseId>, JournalError> {
        let mut cases = Vec::new();
        let mut token = None;
        loop {
            self.clients.limit("S3.ListObjectsV2").await;
            let out = self
                .clients
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .delimiter("/")
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| {
                    io(
                        format!("s3://{}/{}", self.bucket, self.prefix),
                        format!(
                            "cannot list cases: {}",
                            e.message().unwrap_or("ListObjectsV2 failed")
                        ),
                        Some(Box::new(e)),
                    )
                })?;
            for common in out.common_prefixes() {
                let Some(name) = common
                    .prefix()
                    .and_then(|p| p.strip_prefix(self.prefix.as_str()))
                    .map(|p| p.trim_end_matches('/'))
                else {
                    continue;
                };
                let Ok(case) = CaseId::parse(name) else {
                    continue;
                };
                // A case prefix may hold evidence only (a local-journal run);
                // it is a case of this store only if its first record is here.
                let first = record_key(&self.prefix, &case, 0);
                if !self.list_keys(&first).await?.is_empty() {
                    cases.push(case);
                }
            }
            token = out.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        cases.sort();
        Ok(cases)
    }
}
