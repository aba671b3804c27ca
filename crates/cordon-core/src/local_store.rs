//! The CLI's journal store: one directory per case holding `journal.jsonl`,
//! each record fsync'd before the executor moves on, and a `lock` file held
//! with an OS lock so two `cordon` processes never work one case at once
//! (the OS drops the lock if the process dies, so a crash never wedges a case).
//! Each line is one record's stored text, exactly what its hash covers.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::journal::{JournalError, JournalRecord, JournalStore};
use crate::plan::CaseId;

/// Journals under `root/<case-id>/journal.jsonl`.
#[derive(Debug, Clone)]
pub struct LocalJournal {
    root: PathBuf,
}

/// Holds the case's lock file; dropping it releases the case.
#[derive(Debug)]
pub struct LocalLock {
    _file: File,
}

impl LocalJournal {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
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
        blocking(move || {
            fs::create_dir_all(&dir)
                .map_err(|e| io_error(&dir, "cannot create case directory", e))?;
            let is_new = !path.exists();
            let (existing, good_len) = read_records(&case, &path)?;
            if existing.len() as u64 != seq {
                return Err(JournalError::Conflict { case, seq });
            }
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io_error(&path, "cannot open journal", e))?;
            // Drop a torn tail left by a crash before appending after it.
            if file.metadata().map(|m| m.len()).unwrap_or(0) != good_len {
                file.set_len(good_len)
                    .map_err(|e| io_error(&path, "cannot trim torn record", e))?;
            }
            file.write_all(line.as_bytes())
                .map_err(|e| io_error(&path, "cannot write journal", e))?;
            file.sync_data()
                .map_err(|e| io_error(&path, "cannot fsync journal", e))?;
            if is_new {
                File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| io_error(&dir, "cannot fsync case directory", e))?;
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
}
