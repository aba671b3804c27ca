//! Where captured evidence goes. Every object is written with its SHA-256, and
//! the reference (location, size, hash) is what the journal records.

use std::io::Write;
use std::path::PathBuf;

use cordon_core::executor::{ActionError, ErrorKind};
use cordon_core::plan::CaseId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

/// The evidence store a run writes to.
#[derive(Debug, Clone)]
pub enum EvidenceStore {
    /// `<dir>/<case-id>/evidence/<name>`, fsync'd (the CLI's default, beside the journal).
    LocalDir(PathBuf),
}

impl EvidenceStore {
    /// Stores `bytes` as `name` for `case`; never overwrites different bytes.
    pub async fn put(&self, case: &CaseId, name: &str, bytes: Vec<u8>) -> Result<EvidenceRef, ActionError> {
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
                let (dir2, path2) = (dir.clone(), path.clone());
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    std::fs::create_dir_all(&dir2)?;
                    let tmp = path2.with_extension("partial");
                    let mut file = std::fs::File::create(&tmp)?;
                    file.write_all(&bytes)?;
                    file.sync_all()?;
                    std::fs::rename(&tmp, &path2)?;
                    std::fs::File::open(&dir2)?.sync_all()
                })
                .await
                .map_err(|e| io_error(std::io::Error::other(e)))?
                .map_err(io_error)?;
                Ok(EvidenceRef {
                    location,
                    size,
                    sha256,
                    version_id: None,
                })
            }
        }
    }
}

/// Keeps names to one safe path component.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect()
}
