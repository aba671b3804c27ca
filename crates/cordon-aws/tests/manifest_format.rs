//! The evidence manifest is a public, long-lived format: a golden file pins
//! it, an unversioned (format 1) manifest still reads, a newer one is refused
//! by version, and a manifest pins a format-1 journal by the hashes of its
//! stored records, so `cordon evidence verify` re-walks old chains too.
//!
//! `UPDATE_GOLDEN=1 cargo test -p cordon-aws --test suite manifest_format::` rewrites the golden file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::golden;

use std::path::Path;

use cordon_aws::manifest::{
    FORMAT_VERSION, Manifest, ManifestFormatError, ManifestObject, Problem, check_journal,
};
use cordon_core::journal::JournalRecord;
use cordon_core::plan::CaseId;
use serde_json::Value;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/manifest.json");
const V1_JOURNAL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/journals-v1/iam-temporary-credentials.jsonl"
);

/// The fixture journal as the local store reads it: one record per line.
fn v1_records() -> Vec<JournalRecord> {
    std::fs::read_to_string(V1_JOURNAL)
        .unwrap()
        .lines()
        .map(|line| JournalRecord::from_stored(line).unwrap())
        .collect()
}

/// A manifest as `store-evidence` writes it for the fixture's case, stamped at a fixed time.
fn representative() -> Manifest {
    let records = v1_records();
    let case = records[0].event.clone();
    let cordon_core::journal::JournalEvent::CaseOpened { plan, .. } = case else {
        panic!("the fixture opens a case");
    };
    let case: CaseId = plan.case_id;
    let prefix = format!("cases/{case}/");
    let objects = vec![
        ManifestObject {
            key: format!("{prefix}plan.json"),
            version_id: Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".to_string()),
            size: 2817,
            sha256: "9f".repeat(32),
        },
        ManifestObject {
            key: format!("{prefix}journal.jsonl"),
            version_id: None,
            size: 4169,
            sha256: "0c".repeat(32),
        },
    ];
    Manifest {
        created_at: "2026-11-27T02:01:23.101Z".to_string(),
        ..Manifest::new(&case, objects, &records)
    }
}

fn pretty(manifest: &Manifest) -> String {
    let mut text = serde_json::to_string_pretty(manifest).unwrap();
    text.push('\n');
    text
}

#[test]
fn manifest_matches_its_golden_file() {
    let manifest = representative();
    assert_eq!(manifest.format_version, FORMAT_VERSION);
    golden::check(Path::new(GOLDEN), &pretty(&manifest));
    let value: Value = serde_json::from_str(&pretty(&manifest)).unwrap();
    let first_key = value.as_object().unwrap().keys().next().unwrap().clone();
    assert_eq!(first_key, "format-version");
    let read = Manifest::from_json(pretty(&manifest).as_bytes(), "golden").unwrap();
    assert_eq!(read, manifest);
}

#[test]
fn manifest_pins_a_format_1_journal_by_its_stored_records() {
    let records = v1_records();
    let manifest = representative();
    assert_eq!(manifest.journal.len(), records.len());
    let lines: Vec<String> = std::fs::read_to_string(V1_JOURNAL)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    for (entry, line) in manifest.journal.iter().zip(&lines) {
        let stored = JournalRecord::from_stored(line).unwrap();
        assert_eq!(entry.hash, stored.hash());
    }
    assert_eq!(
        check_journal(&records, &manifest.journal),
        Vec::<Problem>::new()
    );

    // An edit to a stored line is named, even though the record still parses.
    let mut edited = records.clone();
    let altered = lines[3].replace("\"duration_ms\":4", "\"duration_ms\":5");
    assert_ne!(altered, lines[3]);
    edited[3] = JournalRecord::from_stored(&altered).unwrap();
    let problems = check_journal(&edited, &manifest.journal);
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::JournalRecord { seq: 3, .. })),
        "{problems:?}"
    );
}

#[test]
fn an_unversioned_manifest_reads_as_format_1() {
    let mut value: Value = serde_json::from_str(&pretty(&representative())).unwrap();
    value.as_object_mut().unwrap().remove("format-version");
    let read = Manifest::from_json(value.to_string().as_bytes(), "old").unwrap();
    assert_eq!(read.format_version, 1);
    assert_eq!(
        Manifest {
            format_version: FORMAT_VERSION,
            ..read
        },
        representative()
    );
}

#[test]
fn a_newer_manifest_is_refused_naming_it_and_its_version() {
    let mut value: Value = serde_json::from_str(&pretty(&representative())).unwrap();
    value["format-version"] = (FORMAT_VERSION + 1).into();
    value["something-new"] = "a later cordon's key".into();
    let err = Manifest::from_json(
        value.to_string().as_bytes(),
        "s3://evidence/cases/x/manifest.json",
    )
    .expect_err("newer");
    assert!(matches!(err, ManifestFormatError::Newer(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "s3://evidence/cases/x/manifest.json was written by a newer cordon (format-version {}; \
             this cordon reads format-version 1 to {FORMAT_VERSION}): upgrade cordon",
            FORMAT_VERSION + 1
        )
    );
}
