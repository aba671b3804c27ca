//! The journal store for Lambda (and any worker without a durable local disk):
//! one S3 object per record at `<prefix><case-id>/journal/<seq, 10 digits>.json`.
//!
//! Each record is written with `If-None-Match: *`, a conditional create: of two
//! workers racing for the same `seq`, S3 lets exactly one win and answers the
//! other with `412 Precondition Failed`, which becomes [`JournalError::Conflict`].
//! Records sit beside the case's evidence, so the bucket's versioning,
//! encryption and Object Lock protect the journal too.
//!
//! Conditional records alone do not stop a second worker (a Step Functions
//! retry overlapping a slow first attempt) from reading a step journaled as
//! prepared and applying it again while the first is still applying it. So
//! each case also has a **lease**, `<prefix><case-id>/lease.json`: created with
//! `If-None-Match: *`, taken over only once expired and only with `If-Match`
//! on the ETag read (so of two workers taking it over, one wins), carrying a
//! **fencing token** that grows with every takeover. A worker checks its token
//! before every change to AWS ([`JournalStore::fence`]) and extends the lease
//! there; one whose lease was taken over stops with [`JournalError::Fenced`].
//! A worker that finds a live lease gets [`JournalError::Locked`] at once
//! (the Lambda's `Cordon.InProgress`: retry later). The lease is released by
//! overwriting it as expired (no `s3:DeleteObject`: the evidence bucket denies
//! deletes), so the next task of a state machine need not wait.

use std::time::Duration;

use cordon_core::claims::{ClaimAnswer, ResourceClaim, claim_file_name};
use cordon_core::journal::{JournalError, JournalRecord, JournalStore};
use cordon_core::plan::CaseId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::client::AwsClients;
use crate::errors::CallError;
use crate::evidence::{case_prefix, get_s3, put_request};
use crate::ops;

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
    /// How long a lease lasts between fences ([`DEFAULT_LEASE`]).
    pub lease: Duration,
    /// This worker's identity in leases.
    pub holder: String,
}

/// How long a lease lasts unless extended: longer than the slowest step
/// between two fences (a snapshot's wait is bounded by its own timeout), short
/// enough that a crashed worker's case is taken over within minutes.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(300);

/// The lease object, as stored (kebab-case, versioned like every cordon format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LeaseRecord {
    pub format_version: u32,
    /// Who holds it: a random id per worker (per Lambda invocation, per process).
    pub holder: String,
    /// The fencing token: 1 for the first holder, one more for each takeover.
    pub token: u64,
    /// RFC 3339; after it, any worker may take the lease over.
    pub expires_at: String,
}

/// A case held by this worker: the lease as last written, and its ETag.
#[derive(Debug)]
pub struct S3Lease {
    holder: String,
    token: u64,
    state: tokio::sync::Mutex<HeldLease>,
}

#[derive(Debug)]
struct HeldLease {
    etag: String,
    expires_at: OffsetDateTime,
}

impl S3Lease {
    /// The fencing token this worker holds.
    pub fn token(&self) -> u64 {
        self.token
    }
}

/// The key of a case's lease.
pub fn lease_key(prefix: &str, case: &CaseId) -> String {
    format!("{}lease.json", case_prefix(prefix, case))
}

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

/// A failed S3 call as a journal error: `what` failed at `location`, and why.
fn call_failed(location: String, what: &str, error: CallError) -> JournalError {
    io(
        location,
        format!("{what}: {}", error.message()),
        Some(Box::new(error)),
    )
}

impl S3Journal {
    pub fn new(clients: AwsClients, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            clients,
            bucket: bucket.into(),
            prefix: prefix.into(),
            lease: DEFAULT_LEASE,
            holder: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// The same store with leases of `lease` (tests use seconds).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The object at `key` with its ETag; `None` when there is none.
    /// `what` names it in errors ("the lease", "the claim").
    async fn read_object(
        &self,
        key: &str,
        what: &str,
    ) -> Result<Option<(Vec<u8>, String)>, JournalError> {
        let location = format!("s3://{}/{key}", self.bucket);
        let request = self.clients.s3.get_object().bucket(&self.bucket).key(key);
        let out = match self
            .clients
            .try_call(&ops::S3_GET_OBJECT, &location, request)
            .await
        {
            Ok(out) => out,
            Err(e) if e.status() == Some(404) || e.code() == Some("NoSuchKey") => return Ok(None),
            Err(e) => {
                return Err(call_failed(
                    location,
                    &format!("cannot read {what}"),
                    e.into_error(),
                ));
            }
        };
        let etag = out.e_tag().unwrap_or_default().to_string();
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| {
                io(
                    location.clone(),
                    format!("reading {what} was cut short: {e}"),
                    None,
                )
            })?
            .into_bytes();
        Ok(Some((bytes.to_vec(), etag)))
    }

    /// Writes `bytes` at `key`: created (`If-None-Match: *`) when `replacing`
    /// is `None`, else only over the ETag read. `Ok(None)`: another writer was first.
    async fn write_object(
        &self,
        key: &str,
        bytes: Vec<u8>,
        replacing: Option<&str>,
        what: &str,
    ) -> Result<Option<String>, JournalError> {
        let location = format!("s3://{}/{key}", self.bucket);
        let request = put_request(&self.clients, &self.bucket, key, bytes.clone(), None);
        let request = match replacing {
            None => request.if_none_match("*"),
            Some(etag) => request.if_match(etag),
        };
        match self
            .clients
            .try_call(&ops::S3_PUT_OBJECT, &location, request)
            .await
        {
            Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_string())),
            // Our own earlier attempt, whose answer was lost, when the object
            // holds our bytes (leases and claims carry a unique holder).
            Err(e) if lost_race(e.status(), e.code()) => match self.read_object(key, what).await? {
                Some((stored, etag)) if stored == bytes => Ok(Some(etag)),
                _ => Ok(None),
            },
            Err(e) => Err(call_failed(
                location,
                &format!("cannot write {what}"),
                e.into_error(),
            )),
        }
    }

    /// The lease of `case` as stored, with its ETag; `None` when there is none.
    async fn read_lease(
        &self,
        case: &CaseId,
    ) -> Result<Option<(LeaseRecord, String)>, JournalError> {
        let key = lease_key(&self.prefix, case);
        let Some((bytes, etag)) = self.read_object(&key, "the lease").await? else {
            return Ok(None);
        };
        let lease: LeaseRecord = serde_json::from_slice(&bytes).map_err(|e| {
            io(
                format!("s3://{}/{key}", self.bucket),
                format!(
                    "the lease is not a cordon lease ({e}); remove it only if no worker is running"
                ),
                None,
            )
        })?;
        Ok(Some((lease, etag)))
    }

    /// Writes the lease: created (`If-None-Match: *`) when `replacing` is
    /// `None`, else only over the ETag read. `Ok(None)`: another worker wrote first.
    async fn write_lease(
        &self,
        case: &CaseId,
        lease: &LeaseRecord,
        replacing: Option<&str>,
    ) -> Result<Option<String>, JournalError> {
        let key = lease_key(&self.prefix, case);
        let bytes = serde_json::to_vec(lease)
            .map_err(|e| io(format!("s3://{}/{key}", self.bucket), e.to_string(), None))?;
        self.write_object(&key, bytes, replacing, "the lease").await
    }

    /// The key of `resource`'s claim: `<prefix>resources/<kind>-<id>.json`,
    /// beside the cases (not a case id, so never listed as one).
    fn claim_key(&self, resource: &str) -> Result<String, JournalError> {
        Ok(format!(
            "{}resources/{}",
            self.prefix,
            claim_file_name(resource)?
        ))
    }

    /// The claim of `resource` as stored (`None` inside: released) with its ETag.
    async fn read_claim(
        &self,
        resource: &str,
    ) -> Result<Option<(Option<ResourceClaim>, String)>, JournalError> {
        let key = self.claim_key(resource)?;
        let Some((bytes, etag)) = self.read_object(&key, "the resource claim").await? else {
            return Ok(None);
        };
        let location = format!("s3://{}/{key}", self.bucket);
        Ok(Some((ResourceClaim::from_stored(&bytes, &location)?, etag)))
    }

    async fn write_claim(
        &self,
        claim: &ResourceClaim,
        replacing: Option<&str>,
    ) -> Result<Option<String>, JournalError> {
        let key = self.claim_key(&claim.resource)?;
        let bytes = serde_json::to_vec(claim)
            .map_err(|e| io(format!("s3://{}/{key}", self.bucket), e.to_string(), None))?;
        self.write_object(&key, bytes, replacing, "the resource claim")
            .await
    }

    fn new_lease(&self, token: u64) -> (LeaseRecord, OffsetDateTime) {
        let expires_at = OffsetDateTime::now_utc() + self.lease;
        (
            LeaseRecord {
                format_version: 1,
                holder: self.holder.clone(),
                token,
                expires_at: rfc3339(expires_at),
            },
            expires_at,
        )
    }

    /// Every key under `prefix`, sorted, paging through the listing.
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, JournalError> {
        let location = format!("s3://{}/{prefix}", self.bucket);
        let request = self
            .clients
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix);
        let pages = self
            .clients
            .paginate(&ops::S3_LIST_OBJECTS_V2, &location, request)
            .await
            .map_err(|e| call_failed(location.clone(), "cannot list the journal", e))?;
        let mut keys: Vec<String> = pages
            .iter()
            .flat_map(|page| page.contents())
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
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

/// 412: the condition failed (the object exists, or changed since read); 409
/// ConditionalRequestConflict: another conditional write to the key is in flight.
fn lost_race(status: Option<u16>, code: Option<&str>) -> bool {
    status == Some(412)
        || matches!(
            code,
            Some("PreconditionFailed" | "ConditionalRequestConflict")
        )
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

fn parse_time(at: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(at, &Rfc3339).ok()
}

impl JournalStore for S3Journal {
    type Lock = S3Lease;

    /// Takes the case's lease: creates it, or takes over an expired one
    /// (fencing token + 1); a live lease of another worker is `Locked`.
    async fn lock(&self, case: &CaseId) -> Result<S3Lease, JournalError> {
        let current = self.read_lease(case).await?;
        let (token, replacing) = match &current {
            None => (1, None),
            Some((lease, etag)) => {
                let live =
                    parse_time(&lease.expires_at).is_some_and(|t| t > OffsetDateTime::now_utc());
                if live {
                    return Err(JournalError::Locked {
                        case: case.clone(),
                        detail: format!(
                            "its lease is held by worker {} (fencing token {}) until {}",
                            lease.holder, lease.token, lease.expires_at
                        ),
                    });
                }
                (lease.token + 1, Some(etag.as_str()))
            }
        };
        let (record, expires_at) = self.new_lease(token);
        match self.write_lease(case, &record, replacing).await? {
            Some(etag) => Ok(S3Lease {
                holder: self.holder.clone(),
                token,
                state: tokio::sync::Mutex::new(HeldLease { etag, expires_at }),
            }),
            None => Err(JournalError::Locked {
                case: case.clone(),
                detail: "another worker took its lease at the same moment".to_string(),
            }),
        }
    }

    /// The lease still ours, with our token? Extends it when half is used.
    async fn fence(&self, case: &CaseId, lock: &S3Lease) -> Result<(), JournalError> {
        let mut held = lock.state.lock().await;
        let fenced = |detail: String| JournalError::Fenced {
            case: case.clone(),
            detail,
        };
        let Some((stored, etag)) = self.read_lease(case).await? else {
            return Err(fenced(format!("its lease (token {}) is gone", lock.token)));
        };
        if stored.holder != lock.holder || stored.token != lock.token {
            return Err(fenced(format!(
                "worker {} holds fencing token {}, this worker held {}",
                stored.holder, stored.token, lock.token
            )));
        }
        let now = OffsetDateTime::now_utc();
        if held.expires_at <= now {
            // Ours on paper, but expired: another worker may be taking it over
            // right now. Only a conditional extension can tell.
        } else if held.expires_at - now > self.lease / 2 {
            return Ok(());
        }
        let (record, expires_at) = self.new_lease(lock.token);
        match self.write_lease(case, &record, Some(&etag)).await? {
            Some(etag) => {
                *held = HeldLease { etag, expires_at };
                Ok(())
            }
            None => Err(fenced(format!(
                "another worker wrote its lease while this one (token {}) extended it",
                lock.token
            ))),
        }
    }

    /// Marks the lease expired (if it is still ours), for the next worker.
    async fn release(&self, case: &CaseId, lock: S3Lease) -> Result<(), JournalError> {
        let held = lock.state.into_inner();
        let record = LeaseRecord {
            format_version: 1,
            holder: lock.holder,
            token: lock.token,
            expires_at: rfc3339(OffsetDateTime::now_utc()),
        };
        // Over our own ETag only: a lease taken over meanwhile is not ours to touch.
        self.write_lease(case, &record, Some(&held.etag))
            .await
            .map(|_| ())
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
        // The record's stored text: the chain hashes exactly these bytes.
        let bytes = record.stored_text().into_owned().into_bytes();
        let what = format!("record {}", record.seq);
        // A conditional create: an earlier attempt of this very put whose
        // answer was lost counts as ours (same bytes); anything else at this
        // seq was written by another worker.
        match self.write_object(&key, bytes, None, &what).await? {
            Some(_) => Ok(()),
            None => Err(JournalError::Conflict {
                case: case.clone(),
                seq: record.seq,
            }),
        }
    }

    /// Conditional create (`If-None-Match: *`); over a released or stale
    /// claim only with `If-Match` on the ETag read, so of two cases taking a
    /// resource at once exactly one wins and the other sees its claim.
    async fn claim_resource(
        &self,
        claim: &ResourceClaim,
        take_over: Option<&ResourceClaim>,
    ) -> Result<ClaimAnswer, JournalError> {
        // Two rounds: a lost race re-reads the claim that won it.
        for _ in 0..2 {
            let replacing = match self.read_claim(&claim.resource).await? {
                None => None,
                Some((None, etag)) => Some(etag),
                Some((Some(held), _)) if held.case_id == claim.case_id => {
                    return Ok(ClaimAnswer::Claimed { new: false });
                }
                Some((Some(held), etag)) if take_over == Some(&held) => Some(etag),
                Some((Some(held), _)) => return Ok(ClaimAnswer::HeldBy(held)),
            };
            if self
                .write_claim(claim, replacing.as_deref())
                .await?
                .is_some()
            {
                return Ok(ClaimAnswer::Claimed { new: true });
            }
        }
        match self.read_claim(&claim.resource).await? {
            Some((Some(held), _)) if held.case_id != claim.case_id => Ok(ClaimAnswer::HeldBy(held)),
            Some((Some(_), _)) => Ok(ClaimAnswer::Claimed { new: false }),
            _ => Err(io(
                format!("s3://{}/{}", self.bucket, self.claim_key(&claim.resource)?),
                "the claim kept changing while it was being taken; run again".to_string(),
                None,
            )),
        }
    }

    async fn resource_claim(&self, resource: &str) -> Result<Option<ResourceClaim>, JournalError> {
        Ok(self
            .read_claim(resource)
            .await?
            .and_then(|(claim, _)| claim))
    }

    /// Rewrites the claim as released over its ETag (the evidence bucket
    /// denies deletes, so it is never deleted).
    async fn release_resource(&self, resource: &str, case: &CaseId) -> Result<bool, JournalError> {
        let Some((Some(held), etag)) = self.read_claim(resource).await? else {
            return Ok(false);
        };
        if held.case_id != *case {
            return Ok(false);
        }
        let released = ResourceClaim {
            released_at: Some(rfc3339(OffsetDateTime::now_utc())),
            ..held
        };
        Ok(self.write_claim(&released, Some(&etag)).await?.is_some())
    }

    async fn cases(&self) -> Result<Vec<CaseId>, JournalError> {
        let location = format!("s3://{}/{}", self.bucket, self.prefix);
        let request = self
            .clients
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .delimiter("/");
        let pages = self
            .clients
            .paginate(&ops::S3_LIST_OBJECTS_V2, &location, request)
            .await
            .map_err(|e| call_failed(location.clone(), "cannot list cases", e))?;
        let mut cases = Vec::new();
        for common in pages.iter().flat_map(|page| page.common_prefixes()) {
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
        cases.sort();
        Ok(cases)
    }
}
