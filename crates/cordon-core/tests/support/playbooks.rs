//! Playbooks for the routing tests of every source (included with `#[path]`):
//! the shipped set, and playbooks written inline in a test.

#![allow(dead_code)] // each test crate uses what it needs

use std::path::Path;

use cordon_core::playbook::Playbook;
use cordon_core::validate::{load_playbooks, validate_text};

/// The shipped playbooks (`playbooks/*.yaml`), which must validate.
pub fn shipped() -> Vec<Playbook> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../playbooks"));
    match load_playbooks(dir) {
        Ok(loaded) => loaded.into_iter().map(|l| l.playbook).collect(),
        Err(problems) => panic!(
            "the shipped playbooks do not validate:\n{}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// A playbook written inline, validated like any other.
pub fn playbook(yaml: &str) -> Playbook {
    match validate_text(yaml, "inline.yaml") {
        Ok((playbook, _)) => playbook,
        Err(problems) => panic!(
            "test playbook is invalid:\n{}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}
