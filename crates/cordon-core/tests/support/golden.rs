//! Golden files shared by the format tests of every crate (included with
//! `#[path]`): compare a rendering with its checked-in file, or rewrite the
//! file under `UPDATE_GOLDEN=1`.
//!
//! ```text
//! UPDATE_GOLDEN=1 cargo test -p <crate> --test <test>
//! git diff -- '*golden*'
//! ```
//!
//! A rewritten file is a changed public format: review the diff, and follow the
//! version policy in `docs/formats.md`.

#![allow(dead_code)] // each test crate uses what it needs

use std::path::Path;

/// True while golden files are being rewritten.
pub fn updating() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

/// Compares `actual` with the file at `path`, or rewrites it under `UPDATE_GOLDEN=1`.
pub fn check(path: &Path, actual: &str) {
    if updating() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        std::fs::write(path, actual)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "cannot read golden file {}: {e}\n(run with UPDATE_GOLDEN=1 to create it, then review it)",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs, first at line {}:\n  golden: {:?}\n  actual: {:?}\n\
             (if the change is intended: rerun with UPDATE_GOLDEN=1, then review the diff)",
            path.display(),
            line + 1,
            expected.lines().nth(line).unwrap_or("<end of file>"),
            actual.lines().nth(line).unwrap_or("<end of file>"),
        );
    }
}

/// Asserts `dir` holds exactly the files named `expected` (no stale golden files).
pub fn assert_exactly(dir: &Path, expected: &[String]) {
    if updating() {
        return; // the files are being rewritten, concurrently
    }
    let mut stored: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry"))
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    stored.sort();
    let mut expected = expected.to_vec();
    expected.sort();
    assert_eq!(
        stored,
        expected,
        "stale or missing golden files in {}",
        dir.display()
    );
}

/// Keys of `value`, at any depth, that are not kebab-case (an `_` or an upper-case
/// letter), skipping the values under `opaque` keys, whose keys are data
/// (action pre-states and outcomes, tag maps, operation counts).
pub fn non_kebab_keys(value: &serde_json::Value, opaque: &[&str]) -> Vec<String> {
    fn walk(value: &serde_json::Value, path: &str, opaque: &[&str], bad: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    let path = format!("{path}.{key}");
                    if key.chars().any(|c| c == '_' || c.is_ascii_uppercase()) {
                        bad.push(path.clone());
                    }
                    if !opaque.contains(&key.as_str()) {
                        walk(inner, &path, opaque, bad);
                    }
                }
            }
            serde_json::Value::Array(items) => {
                items.iter().for_each(|v| walk(v, path, opaque, bad))
            }
            _ => {}
        }
    }
    let mut bad = Vec::new();
    walk(value, "", opaque, &mut bad);
    bad
}
