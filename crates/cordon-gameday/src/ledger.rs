//! The creation journal of a Game Day: every resource the run creates is
//! journaled write-ahead, like a case journal, so that whatever happens to
//! the Game Day process (a failure, SIGKILL, a lost machine) the run's
//! resources can still be deleted: `cordon gameday cleanup --journal DIR`.
//!
//! `DIR/creations.jsonl` holds one JSON record per line, each fsync'd before
//! the call it announces is sent:
//! - `run`: written first: the owner id every resource is tagged with, the
//!   target, account and region;
//! - `intent`: before each create call: the kind, the logical name, and the
//!   id when it is known in advance (IAM names, the quarantine policy's ARN);
//! - `created`: after the call answered: the id;
//! - `cleaned-up`: when a cleanup left nothing behind.
//!
//! An intent without its `created` record is a call whose answer was lost
//! (or a crash right after it): the resource may exist with an id nobody
//! wrote down. Every resource is tagged in its own create call with the
//! run's owner id, so cleanup finds those by the tag ([`crate::discover`]),
//! and the ones named in advance by their name.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::fixture::{OwnedResource, ResourceKind};

/// The file name of the creation journal in a run's directory.
pub const CREATIONS_FILE: &str = "creations.jsonl";
/// The format of the creation journal's records.
pub const CREATIONS_FORMAT_VERSION: u32 = 1;

/// Why the creation journal could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Writing or syncing a record failed.
    #[error(
        "cannot write the creation journal {path}: {source}; nothing more is created: free the disk or fix the permissions, then run `cordon gameday cleanup --journal {dir}`",
        dir = path.parent().map(|p| p.display().to_string()).unwrap_or_default()
    )]
    Write {
        /// The journal file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The journal could not be read.
    #[error(
        "cannot read the creation journal {path}: {source}; pass the --out directory of the Game Day"
    )]
    Read {
        /// The journal file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The journal has no readable `run` record.
    #[error("{path} does not start with a Game Day's run record: {reason}")]
    Malformed {
        /// The journal file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// What the `run` record says: where the run's resources live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RunRecord {
    /// [`CREATIONS_FORMAT_VERSION`].
    pub format_version: u32,
    /// The owner id: the value of [`crate::OWNER_TAG`] on every resource.
    pub owner: String,
    /// `emulator` or `aws`.
    pub target: String,
    /// The account the resources are in.
    pub account: String,
    /// The region they are in.
    pub region: String,
}

/// One line of the creation journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CreationRecord {
    /// The run's header, first in the file.
    Run(RunRecord),
    /// A create call is about to be sent.
    Intent {
        /// What is created.
        kind: ResourceKind,
        /// Its logical name in the scenario.
        name: String,
        /// Its id when known before the call (IAM names, ARNs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// A create call answered with this id.
    Created {
        /// What was created.
        kind: ResourceKind,
        /// Its id.
        id: String,
    },
    /// A cleanup deleted everything (`failed` is then 0) or left some behind.
    CleanedUp {
        /// Resources deleted (or found gone).
        deleted: usize,
        /// Resources left behind.
        failed: usize,
    },
}

/// The creation journal being written by a running Game Day. Clones share the file.
#[derive(Debug, Clone)]
pub struct CreationJournal {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl CreationJournal {
    /// Creates `DIR/creations.jsonl` (refusing to reuse one: each run has
    /// its own) and writes the `run` record durably.
    pub async fn create(dir: &Path, run: RunRecord) -> Result<Self, LedgerError> {
        let journal = Self::open(dir, true).await?;
        journal.append(CreationRecord::Run(run)).await?;
        Ok(journal)
    }

    /// Opens the existing journal of a run in `dir` to append to it (a
    /// later `cordon gameday cleanup` journals its result there).
    pub async fn reopen(dir: &Path) -> Result<Self, LedgerError> {
        Self::open(dir, false).await
    }

    async fn open(dir: &Path, new: bool) -> Result<Self, LedgerError> {
        let path = dir.join(CREATIONS_FILE);
        let opened = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let file = OpenOptions::new()
                    .append(true)
                    .create_new(new)
                    .open(&path)?;
                // A new file's directory entry must survive a crash too.
                if new && let Some(parent) = path.parent() {
                    File::open(parent)?.sync_all()?;
                }
                Ok(file)
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
        };
        let file = opened.map_err(|source| LedgerError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Journals, durably, that `kind` `name` is about to be created.
    pub async fn intend(
        &self,
        kind: ResourceKind,
        name: &str,
        id: Option<&str>,
    ) -> Result<(), LedgerError> {
        self.append(CreationRecord::Intent {
            kind,
            name: name.to_string(),
            id: id.map(str::to_string),
        })
        .await
    }

    /// Journals, durably, that `kind` `id` exists now.
    pub async fn created(&self, kind: ResourceKind, id: &str) -> Result<(), LedgerError> {
        self.append(CreationRecord::Created {
            kind,
            id: id.to_string(),
        })
        .await
    }

    /// Journals the result of a cleanup.
    pub async fn cleaned_up(&self, deleted: usize, failed: usize) -> Result<(), LedgerError> {
        self.append(CreationRecord::CleanedUp { deleted, failed })
            .await
    }

    async fn append(&self, record: CreationRecord) -> Result<(), LedgerError> {
        // A record of our own types always serializes.
        let mut line = serde_json::to_string(&record).unwrap_or_default();
        line.push('\n');
        let file = Arc::clone(&self.file);
        let written = tokio::task::spawn_blocking(move || {
            let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
            file.write_all(line.as_bytes())?;
            file.sync_data()
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        written.map_err(|source| LedgerError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// A creation journal as read back: what to clean up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreationLog {
    /// The run's header.
    pub run: RunRecord,
    /// Every resource whose id is known: created, or named in advance.
    pub known: Vec<OwnedResource>,
    /// Intents whose answer never came and whose id was not known in
    /// advance: (kind, logical name). Cleanup finds them by the owner tag.
    pub unanswered: Vec<(ResourceKind, String)>,
    /// Whether the last record says a cleanup left nothing behind.
    pub cleaned_up: bool,
}

impl CreationLog {
    /// Reads `DIR/creations.jsonl`. A torn last line (the process died
    /// while writing it) is ignored: its call was not sent yet.
    pub fn read(dir: &Path) -> Result<Self, LedgerError> {
        let path = dir.join(CREATIONS_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| LedgerError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Self, LedgerError> {
        let malformed = |reason: String| LedgerError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let complete = text.ends_with('\n');
        let mut records = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            match serde_json::from_str::<CreationRecord>(line) {
                Ok(record) => records.push(record),
                Err(_) if i + 1 == lines.len() && !complete => break,
                Err(e) => return Err(malformed(format!("line {}: {e}", i + 1))),
            }
        }
        let mut records = records.into_iter();
        let run = match records.next() {
            Some(CreationRecord::Run(run)) => run,
            Some(_) => return Err(malformed("the first record is not `run`".to_string())),
            None => return Err(malformed("it is empty".to_string())),
        };
        let mut known: Vec<OwnedResource> = Vec::new();
        let mut pending: Vec<(ResourceKind, String)> = Vec::new();
        let mut cleaned_up = false;
        for record in records {
            cleaned_up = false;
            match record {
                CreationRecord::Run(_) => {
                    return Err(malformed("a second `run` record".to_string()));
                }
                CreationRecord::Intent {
                    kind, id: Some(id), ..
                } => push_once(&mut known, kind, id),
                CreationRecord::Intent {
                    kind,
                    name,
                    id: None,
                } => pending.push((kind, name)),
                CreationRecord::Created { kind, id } => {
                    // The oldest open intent of that kind is the one answered.
                    if let Some(i) = pending.iter().position(|(k, _)| *k == kind) {
                        pending.remove(i);
                    }
                    push_once(&mut known, kind, id);
                }
                CreationRecord::CleanedUp { failed, .. } => cleaned_up = failed == 0,
            }
        }
        Ok(Self {
            run,
            known,
            unanswered: pending,
            cleaned_up,
        })
    }
}

fn push_once(known: &mut Vec<OwnedResource>, kind: ResourceKind, id: String) {
    if !known.iter().any(|r| r.kind == kind && r.id == id) {
        known.push(OwnedResource { kind, id });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> RunRecord {
        RunRecord {
            format_version: CREATIONS_FORMAT_VERSION,
            owner: "gd-abc123".to_string(),
            target: "aws".to_string(),
            account: "123456789012".to_string(),
            region: "us-east-1".to_string(),
        }
    }

    #[tokio::test]
    async fn records_are_read_back_with_unanswered_intents_and_a_torn_last_line() {
        let dir = std::env::temp_dir().join(format!("cordon-ledger-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let journal = CreationJournal::create(&dir, run()).await.expect("create");
        assert!(
            CreationJournal::create(&dir, run()).await.is_err(),
            "one journal per run"
        );
        journal
            .intend(ResourceKind::Vpc, "net", None)
            .await
            .expect("intent");
        journal
            .created(ResourceKind::Vpc, "vpc-1")
            .await
            .expect("created");
        journal
            .intend(ResourceKind::User, "analyst", Some("analyst-abc123"))
            .await
            .expect("intent");
        journal
            .intend(ResourceKind::Instance, "web-01", None)
            .await
            .expect("intent");
        let mut text = std::fs::read_to_string(journal.path()).expect("read");
        text.push_str("{\"record\":\"created\",\"ki");
        std::fs::write(journal.path(), &text).expect("torn");

        let log = CreationLog::read(&dir).expect("log");
        assert_eq!(log.run, run());
        assert_eq!(
            log.known,
            vec![
                OwnedResource {
                    kind: ResourceKind::Vpc,
                    id: "vpc-1".to_string()
                },
                OwnedResource {
                    kind: ResourceKind::User,
                    id: "analyst-abc123".to_string()
                },
            ]
        );
        assert_eq!(
            log.unanswered,
            vec![(ResourceKind::Instance, "web-01".to_string())]
        );
        assert!(!log.cleaned_up);

        // A torn line in the middle is damage, not a crash mid-write.
        let damaged = text.replacen("\"record\":\"created\"", "\"rec", 1) + "\n";
        assert!(matches!(
            CreationLog::parse(Path::new("x"), &damaged),
            Err(LedgerError::Malformed { .. })
        ));
        std::fs::remove_dir_all(&dir).expect("clean");
    }

    #[test]
    fn a_cleanup_that_left_nothing_is_the_last_word_until_more_is_created() {
        let header = serde_json::to_string(&CreationRecord::Run(run())).expect("json");
        let cleaned = format!(
            "{header}\n{{\"record\":\"created\",\"kind\":\"vpc\",\"id\":\"vpc-1\"}}\n{{\"record\":\"cleaned-up\",\"deleted\":1,\"failed\":0}}\n"
        );
        assert!(
            CreationLog::parse(Path::new("x"), &cleaned)
                .expect("log")
                .cleaned_up
        );
        let partial = cleaned.replace("\"failed\":0", "\"failed\":1");
        assert!(
            !CreationLog::parse(Path::new("x"), &partial)
                .expect("log")
                .cleaned_up
        );
    }
}
