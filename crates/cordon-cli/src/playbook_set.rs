//! Which playbooks a command uses: `--playbooks` / `CORDON_PLAYBOOKS` when
//! given, else `./playbooks` when it exists, else the set embedded in the
//! binary (the shipped playbooks as of its build). Every plan says which set
//! it came from, with the set's hash ([`cordon_core::validate::set_digest`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use cordon_core::plan::PlaybookSet;
use cordon_core::text::escape;
use cordon_core::validate::{
    LoadedPlaybook, Problem, load_playbook_texts, load_playbooks, set_digest,
};

use crate::{Failure, failed, invalid};

use cordon_playbooks as embedded;

/// What `origin` says for the embedded set.
pub const EMBEDDED_ORIGIN: &str = "embedded";

/// The directory used when no playbooks are named and it exists.
const DEFAULT_DIR: &str = "playbooks";

/// Where the playbooks come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A directory or one file.
    Path(PathBuf),
    /// The set built into the binary.
    Embedded,
}

impl Source {
    /// `explicit` (the flag or its environment variable), else `./playbooks`
    /// when it exists, else the embedded set.
    pub fn resolve(explicit: Option<&Path>) -> Source {
        match explicit {
            Some(path) => Source::Path(path.to_path_buf()),
            None if Path::new(DEFAULT_DIR).exists() => Source::Path(PathBuf::from(DEFAULT_DIR)),
            None => Source::Embedded,
        }
    }

    /// How the set is named in plans and messages.
    pub fn origin(&self) -> String {
        match self {
            Source::Path(path) => path.display().to_string(),
            Source::Embedded => EMBEDDED_ORIGIN.to_string(),
        }
    }

    /// Loads and validates every playbook of the set.
    pub fn load(&self) -> Result<Vec<LoadedPlaybook>, Vec<Problem>> {
        match self {
            Source::Path(path) => load_playbooks(path),
            Source::Embedded => load_playbook_texts(EMBEDDED_ORIGIN, embedded::EMBEDDED),
        }
    }
}

/// The playbooks of `explicit` (see [`Source::resolve`]) and which set they
/// are, or every problem on stderr and one closing error (exit 2).
pub fn load_valid(explicit: Option<&Path>) -> Result<(Vec<LoadedPlaybook>, PlaybookSet), Failure> {
    let source = Source::resolve(explicit);
    let loaded = source.load().map_err(|problems| {
        for problem in &problems {
            eprintln!("{}", escape(&problem.to_string()));
        }
        let origin = source.origin();
        invalid(anyhow!(
            "{} problem(s) in the playbooks at {origin}: fix them (`cordon validate {origin}`)",
            problems.len(),
        ))
    })?;
    let set = PlaybookSet {
        origin: source.origin(),
        sha256: set_digest(&loaded),
    };
    Ok((loaded, set))
}

/// Writes the embedded playbooks into `dir` (created if missing) to be
/// customised; refuses to overwrite a file unless `force`. Returns the paths.
pub fn export(dir: &Path, force: bool) -> Result<Vec<PathBuf>, Failure> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
        .map_err(failed)?;
    let existing: Vec<String> = embedded::EMBEDDED
        .iter()
        .map(|(name, _)| dir.join(name))
        .filter(|path| path.exists())
        .map(|path| path.display().to_string())
        .collect();
    if !existing.is_empty() && !force {
        return Err(invalid(anyhow!(
            "{} already exist(s): pass --force to overwrite, or export into an empty directory",
            existing.join(", ")
        )));
    }
    let mut written = Vec::new();
    for (name, text) in embedded::EMBEDDED {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .with_context(|| format!("cannot write {}", path.display()))
            .map_err(failed)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_set_is_the_shipped_playbooks_and_valid() {
        let loaded = Source::Embedded
            .load()
            .expect("embedded playbooks are valid");
        let shipped =
            load_playbooks(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks"))
                .expect("shipped playbooks are valid");
        assert_eq!(loaded.len(), shipped.len());
        assert_eq!(set_digest(&loaded), set_digest(&shipped));
        assert!(loaded.iter().all(|p| p.file.starts_with(EMBEDDED_ORIGIN)));
    }

    #[test]
    fn an_explicit_path_wins() {
        assert_eq!(
            Source::resolve(Some(Path::new("/x/y"))),
            Source::Path(PathBuf::from("/x/y"))
        );
    }
}
