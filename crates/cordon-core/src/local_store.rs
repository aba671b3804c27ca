//! The CLI's journal store: one directory per case holding `journal.jsonl`,
//! each record fsync'd before the executor moves on, and a `lock` file held
//! with an OS lock so two `cordon` processes never work one case at once
//! (the OS drops the lock if the process dies, so a crash never wedges a case).
//! Each line is one record's stored text, exactly what its hash covers.
//!
//! Resource claims (see [`crate::claims`]) live beside the cases in
//! `root/resources/<kind>-<id>.json`; every claim operation holds an OS lock
//! on `root/resources/lock` for its few file operations, so a check and the
//! write after it are one step for every cordon process on the machine, and
//! each claim is written whole (a temporary file renamed over it).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use crate::claims::{ClaimAnswer, ResourceClaim, claim_file_name};
use crate::journal::{JournalError, JournalRecord, JournalStore};
use crate::plan::CaseId;

/// Journals under `root/<case-id>/journal.jsonl`.
#[derive(Debug, Clone)]
pub struct LocalJournal {
    root: PathBuf,
    /// Where each case's journal ended after this process's last append to
    /// it, so the next append need not re-read every record to find its
    /// place; shared by clones.
    tails: Arc<Mutex<HashMap<CaseId, Tail>>>,
}

/// The end of a journal file as this process last left it: the next record's
/// sequence number, and the file's length and modification time then. A file
/// whose length or time differs was written by someone else since, and is
/// read again in full.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tail {
    next_seq: u64,
    len: u64,
    modified: Option<SystemTime>,
}

/// Holds the case's lock file; dropping it releases the case.
#[derive(Debug)]
pub struct LocalLock {
    _file: File,
}

impl LocalJournal {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            tails: Arc::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The case's directory (journal, lock, local evidence).
    pub fn case_dir(&self, case: &CaseId) -> PathBuf {
        self.root.join(case.as_str())
    }

    fn journal_path(&self, case: &CaseId) -> PathBuf {
        self.case_dir(case).join("journal.jsonl")
    }

    /// Where resource claims live: `root/resources/` (not a case id, so never
    /// listed as a case).
    pub fn claims_dir(&self) -> PathBuf {
        self.root.join("resources")
    }

    /// Runs `f` on the path of `resource`'s claim while holding the claims
    /// lock (held until `f` returns; the OS drops it if the process dies).
    async fn with_claims_lock<T: Send + 'static>(
        &self,
        resource: &str,
        f: impl FnOnce(&Path) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        let dir = self.claims_dir();
        let path = dir.join(claim_file_name(resource)?);
        blocking(move || {
            fs::create_dir_all(&dir)
                .map_err(|e| io_error(&dir, "cannot create the claims directory", e))?;
            let lock_path = dir.join("lock");
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| io_error(&lock_path, "cannot open the claims lock", e))?;
            lock.lock()
                .map_err(|e| io_error(&lock_path, "cannot lock the claims", e))?;
            f(&path)
        })
        .await
    }
}

/// The claim stored at `path`, if any.
/// The tails map; a panic while it was held leaves whole entries only.
fn lock_tails(
    tails: &Mutex<HashMap<CaseId, Tail>>,
) -> std::sync::MutexGuard<'_, HashMap<CaseId, Tail>> {
    tails.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_claim(path: &Path) -> Result<Option<ResourceClaim>, JournalError> {
    match fs::read(path) {
        Ok(bytes) => ResourceClaim::from_stored(&bytes, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, "cannot read the resource claim", e)),
    }
}

/// Writes `claim` whole at `path`: a temporary file, fsync'd, renamed over it.
fn write_claim(path: &Path, claim: &ResourceClaim) -> Result<(), JournalError> {
    let text = serde_json::to_vec(claim).map_err(|e| JournalError::Io {
        location: path.display().to_string(),
        message: format!("cannot encode the resource claim: {e}"),
        source: None,
    })?;
    let tmp = path.with_extension("json.tmp");
    let mut file = File::create(&tmp).map_err(|e| io_error(&tmp, "cannot write claim", e))?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(&tmp, "cannot write claim", e))?;
    fs::rename(&tmp, path).map_err(|e| io_error(path, "cannot store claim", e))?;
    sync_parent(path)
}

fn sync_parent(path: &Path) -> Result<(), JournalError> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "cannot fsync the claims directory", e))
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> JournalError {
    JournalError::Io {
        location: path.display().to_string(),
        message: format!("{what}: {e}"),
        source: Some(Box::new(e)),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, JournalError> + Send + 'static,
) -> Result<T, JournalError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| JournalError::Io {
            location: "journal".to_string(),
            message: format!("journal worker failed: {e}"),
            source: None,
        })?
}

/// Reads complete records, each keeping its line (without the newline) as its
/// stored text, which is what the hash chain covers. A final line without its
/// newline is a write torn by a crash before its fsync returned: it was never
/// acknowledged, so it is dropped.
fn read_records(case: &CaseId, path: &Path) -> Result<(Vec<JournalRecord>, u64), JournalError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io_error(path, "cannot open journal", e)),
    };
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut good_len = 0u64;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| io_error(path, "cannot read journal", e))?;
        if n == 0 {
            break;
        }
        if !line.ends_with('\n') {
            break;
        }
        let record = JournalRecord::from_stored(line.strip_suffix('\n').unwrap_or(&line))
            .map_err(|e| e.in_journal(case, records.len() as u64))?;
        records.push(record);
        good_len += n as u64;
    }
    Ok((records, good_len))
}

impl JournalStore for LocalJournal {
    type Lock = LocalLock;

    async fn lock(&self, case: &CaseId) -> Result<LocalLock, JournalError> {
        let dir = self.case_dir(case);
        let case = case.clone();
        blocking(move || {
            fs::create_dir_all(&dir)
                .map_err(|e| io_error(&dir, "cannot create case directory", e))?;
            let path = dir.join("lock");
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| io_error(&path, "cannot open lock file", e))?;
            match file.try_lock() {
                Ok(()) => Ok(LocalLock { _file: file }),
                Err(fs::TryLockError::WouldBlock) => Err(JournalError::Locked {
                    case,
                    detail: format!("{} is locked", path.display()),
                }),
                Err(fs::TryLockError::Error(e)) => Err(io_error(&path, "cannot lock", e)),
            }
        })
        .await
    }

    async fn load(&self, case: &CaseId) -> Result<Vec<JournalRecord>, JournalError> {
        let path = self.journal_path(case);
        let case = case.clone();
        blocking(move || read_records(&case, &path).map(|(records, _)| records)).await
    }

    async fn append(&self, case: &CaseId, record: &JournalRecord) -> Result<(), JournalError> {
        let path = self.journal_path(case);
        let dir = self.case_dir(case);
        let case = case.clone();
        let mut line = record.stored_text().into_owned();
        line.push('\n');
        let seq = record.seq;
        let tails = Arc::clone(&self.tails);
        blocking(move || {
            fs::create_dir_all(&dir)
                .map_err(|e| io_error(&dir, "cannot create case directory", e))?;
            let is_new = !path.exists();
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io_error(&path, "cannot open journal", e))?;
            let metadata = file
                .metadata()
                .map_err(|e| io_error(&path, "cannot read journal", e))?;
            let known = lock_tails(&tails).get(&case).copied();
            // The file as this process left it: its place is known. Anything
            // else (first append, another writer, a torn tail): read it all.
            let good_len = match known {
                Some(tail)
                    if tail.len == metadata.len() && tail.modified == metadata.modified().ok() =>
                {
                    if tail.next_seq != seq {
                        return Err(JournalError::Conflict { case, seq });
                    }
                    tail.len
                }
                _ => {
                    let (existing, good_len) = read_records(&case, &path)?;
                    if existing.len() as u64 != seq {
                        return Err(JournalError::Conflict { case, seq });
                    }
                    good_len
                }
            };
            // Drop a torn tail left by a crash before appending after it.
            if metadata.len() != good_len {
                file.set_len(good_len)
                    .map_err(|e| io_error(&path, "cannot trim torn record", e))?;
            }
            // Until the write is durable, the tail is unknown.
            lock_tails(&tails).remove(&case);
            file.write_all(line.as_bytes())
                .map_err(|e| io_error(&path, "cannot write journal", e))?;
            file.sync_data()
                .map_err(|e| io_error(&path, "cannot fsync journal", e))?;
            if is_new {
                File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| io_error(&dir, "cannot fsync case directory", e))?;
            }
            let written = file.metadata().ok();
            if let Some(written) = written.filter(|m| m.len() == good_len + line.len() as u64) {
                let tail = Tail {
                    next_seq: seq + 1,
                    len: written.len(),
                    modified: written.modified().ok(),
                };
                lock_tails(&tails).insert(case, tail);
            }
            Ok(())
        })
        .await
    }

    async fn cases(&self) -> Result<Vec<CaseId>, JournalError> {
        let root = self.root.clone();
        blocking(move || {
            let entries = match fs::read_dir(&root) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io_error(&root, "cannot list cases", e)),
            };
            let mut cases: Vec<CaseId> = entries
                .filter_map(Result::ok)
                .filter(|e| e.path().join("journal.jsonl").is_file())
                .filter_map(|e| CaseId::parse(&e.file_name().to_string_lossy()).ok())
                .collect();
            cases.sort();
            Ok(cases)
        })
        .await
    }

    async fn claim_resource(
        &self,
        claim: &ResourceClaim,
        take_over: Option<&ResourceClaim>,
    ) -> Result<ClaimAnswer, JournalError> {
        let claim = claim.clone();
        let take_over = take_over.cloned();
        self.with_claims_lock(&claim.resource.clone(), move |path| {
            match read_claim(path)? {
                None => {}
                Some(held) if held.case_id == claim.case_id => {
                    return Ok(ClaimAnswer::Claimed { new: false });
                }
                Some(held) if take_over.as_ref() == Some(&held) => {}
                Some(held) => return Ok(ClaimAnswer::HeldBy(held)),
            }
            write_claim(path, &claim)?;
            Ok(ClaimAnswer::Claimed { new: true })
        })
        .await
    }

    async fn resource_claim(&self, resource: &str) -> Result<Option<ResourceClaim>, JournalError> {
        self.with_claims_lock(resource, read_claim).await
    }

    async fn release_resource(&self, resource: &str, case: &CaseId) -> Result<bool, JournalError> {
        let case = case.clone();
        self.with_claims_lock(resource, move |path| match read_claim(path)? {
            Some(held) if held.case_id == case => {
                fs::remove_file(path).map_err(|e| io_error(path, "cannot release claim", e))?;
                sync_parent(path)?;
                Ok(true)
            }
            _ => Ok(false),
        })
        .await
    }
}
