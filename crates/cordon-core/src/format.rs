//! Versions of cordon's public, long-lived formats: journal records, evidence
//! manifests and `--output json` documents.
//!
//! Each stored or printed document carries a `format-version` number. The
//! policy (see `docs/formats.md`): additive changes (a new optional key, a new
//! record kind, a new value of an enumerated key) keep the version; renaming or
//! removing a key, or changing its type or meaning, bumps it. Readers keep
//! reading every older version, and refuse a newer one with an error that says
//! so, instead of guessing at what they do not know.

use serde::Deserialize;

/// The version of a document written before formats carried `format-version`.
pub const UNVERSIONED: u32 = 1;

/// A document this build cannot read because a newer cordon wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} was written by a newer cordon ({detail}; this cordon reads format-version {UNVERSIONED} to {newest}): upgrade cordon"
)]
pub struct NewerFormat {
    /// What the document is, e.g. `record 4 of the journal of case case-…`.
    pub what: String,
    /// What gave it away: `format-version 3`, or a kind or value this build does not know.
    pub detail: String,
    /// The newest version of this format the running build reads.
    pub newest: u32,
}

#[derive(Deserialize)]
struct VersionProbe {
    #[serde(rename = "format-version")]
    format_version: Option<u32>,
}

/// The `format-version` of a stored JSON object, read before the rest of it, so a
/// document from a newer cordon is refused by its version rather than by
/// whatever else changed in it. An absent key is [`UNVERSIONED`]; version 0 or a
/// non-number is malformed.
pub fn stored_version(text: &str) -> Result<u32, serde_json::Error> {
    let probe: VersionProbe = serde_json::from_str(text)?;
    match probe.format_version {
        None => Ok(UNVERSIONED),
        Some(0) => Err(serde::de::Error::custom(
            "format-version 0 does not exist: versions start at 1",
        )),
        Some(v) => Ok(v),
    }
}

/// Refuses `version` when it is newer than `newest`; `what` names the document.
pub fn check_version(
    version: u32,
    newest: u32,
    what: impl FnOnce() -> String,
) -> Result<(), NewerFormat> {
    if version > newest {
        Err(NewerFormat {
            what: what(),
            detail: format!("format-version {version}"),
            newest,
        })
    } else {
        Ok(())
    }
}

/// The name of the enum value (a record kind, a status) a serde error says a
/// document used and this build does not have: under the additive-change
/// policy, the mark of a newer writer. Relies on serde's standard wording for
/// `Error::unknown_variant` (`unknown variant `name`, expected ...`), which a
/// unit test pins.
pub fn unknown_variant(error: &serde_json::Error) -> Option<String> {
    let message = error.to_string();
    let rest = message.strip_prefix("unknown variant `")?;
    rest.split_once('`').map(|(name, _)| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_version_is_unversioned_and_zero_is_malformed() {
        assert_eq!(
            stored_version(r#"{"seq":0}"#).expect("readable"),
            UNVERSIONED
        );
        assert_eq!(
            stored_version(r#"{"format-version":7,"x":[1,2]}"#).expect("readable"),
            7
        );
        assert!(stored_version(r#"{"format-version":0}"#).is_err());
        assert!(stored_version(r#"{"format-version":"2"}"#).is_err());
        assert!(stored_version("3").is_err());
    }

    #[test]
    fn newer_versions_are_refused_with_both_numbers() {
        assert!(check_version(2, 2, || unreachable!()).is_ok());
        let err = check_version(3, 2, || "the manifest of case c".to_string()).expect_err("newer");
        assert_eq!(
            err.to_string(),
            "the manifest of case c was written by a newer cordon (format-version 3; \
             this cordon reads format-version 1 to 2): upgrade cordon"
        );
    }

    #[test]
    fn serde_names_unknown_variants_as_this_module_expects() {
        #[derive(Debug, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        enum Status {
            Completed,
        }
        let err =
            serde_json::from_str::<Status>(r#""completed-with-failures""#).expect_err("unknown");
        assert_eq!(
            unknown_variant(&err).as_deref(),
            Some("completed-with-failures"),
            "{err}"
        );
        let err = serde_json::from_str::<Status>("3").expect_err("wrong type");
        assert_eq!(unknown_variant(&err), None, "{err}");
    }
}
