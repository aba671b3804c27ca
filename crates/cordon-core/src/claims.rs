//! Resource claims: which case holds a resource (an instance, an access key,
//! a user, a role) contained.
//!
//! Two findings often name one resource (two GuardDuty findings on one
//! instance). If both cases acted on it, the second would read the first one's
//! containment (the isolation group, the deny policy, the deactivated key) as
//! the resource's original state, and rolling back either would leave the
//! other's view of the world wrong. So a case **claims** every resource of its
//! plan before it changes any, in the journal store all cases share, and a
//! case that finds a resource claimed by another case refuses to act on it
//! (`resource-busy`, the case stops, exit 1, the message names the holder).
//!
//! A claim is released when its case ends at rest `rolled-back`, and kept in
//! every other state (the case still holds the resource contained, or may).
//! A claim whose case is rolled back, or whose case has no journal, is stale
//! and is taken over by the next case (journaled with `taken-over-from`), so a
//! crash between a rollback and its release never holds a resource forever;
//! any other claim has one way out: roll its case back (`cordon status` names
//! the holder).

use serde::{Deserialize, Serialize};

use crate::journal::{CaseState, JournalError, JournalStore};
use crate::plan::CaseId;

/// The claim document, as stored: `<journal root>/resources/<kind>-<id>.json`
/// locally, `<prefix>resources/<kind>-<id>.json` in S3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ResourceClaim {
    pub format_version: u32,
    /// `kind:id`, as [`crate::plan::Plan::resources`] names it.
    pub resource: String,
    /// The case holding the resource.
    pub case_id: CaseId,
    /// RFC 3339 UTC.
    pub claimed_at: String,
    /// Set when the holder let the resource go (a store that cannot delete,
    /// S3 with a bucket that denies deletes, rewrites the claim instead); a
    /// released claim holds nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<String>,
}

/// The version of [`ResourceClaim`] this build writes and reads.
pub const CLAIM_FORMAT_VERSION: u32 = 1;

impl ResourceClaim {
    /// A new claim of `resource` by `case`, made now.
    pub fn new(resource: &str, case: &CaseId, claimed_at: String) -> Self {
        Self {
            format_version: CLAIM_FORMAT_VERSION,
            resource: resource.to_string(),
            case_id: case.clone(),
            claimed_at,
            released_at: None,
        }
    }

    /// Parses a stored claim; `location` names it in errors. A released claim is `None`.
    pub fn from_stored(bytes: &[u8], location: &str) -> Result<Option<Self>, JournalError> {
        let bad = |why: String| JournalError::Io {
            location: location.to_string(),
            message: format!(
                "not a cordon resource claim ({why}); remove it only if no case holds the resource"
            ),
            source: None,
        };
        let version: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let found = version.get("format-version").and_then(|v| v.as_u64());
        if found.is_some_and(|v| v > u64::from(CLAIM_FORMAT_VERSION)) {
            return Err(JournalError::Io {
                location: location.to_string(),
                message: format!(
                    "written by a newer cordon (format-version {}; this cordon reads 1): upgrade cordon",
                    found.unwrap_or_default()
                ),
                source: None,
            });
        }
        let claim: ResourceClaim =
            serde_json::from_value(version).map_err(|e| bad(e.to_string()))?;
        Ok(claim.released_at.is_none().then_some(claim))
    }
}

/// What a store answered to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimAnswer {
    /// The case holds the resource now; `new` is false when it already did.
    Claimed { new: bool },
    /// Another case holds it (its claim as stored).
    HeldBy(ResourceClaim),
}

/// Who holds one of a case's resources, for `cordon status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ResourceHolder {
    pub resource: String,
    /// The case whose claim holds it (`null`: nobody).
    pub held_by: Option<CaseId>,
    /// RFC 3339 UTC, when that case claimed it.
    pub since: Option<String>,
}

/// Who holds each resource of every epoch of `state` (the one way out of a
/// claim is rolling back the case it names).
pub async fn holders<J: JournalStore>(
    journal: &J,
    state: &CaseState,
) -> Result<Vec<ResourceHolder>, JournalError> {
    let mut out = Vec::new();
    for resource in state.resources() {
        let claim = journal.resource_claim(&resource).await?;
        out.push(ResourceHolder {
            resource,
            since: claim.as_ref().map(|c| c.claimed_at.clone()),
            held_by: claim.map(|c| c.case_id),
        });
    }
    Ok(out)
}

/// The file (or object) name of a resource's claim: `kind:id` → `kind-id.json`.
///
/// Resource ids were validated against their AWS formats when the plan was
/// made; this refuses anything else that could leave the claims folder.
pub fn claim_file_name(resource: &str) -> Result<String, JournalError> {
    let safe = !resource.is_empty()
        && resource.len() <= 160
        && !resource.starts_with('.')
        && resource
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_:-".contains(&b));
    if !safe {
        return Err(JournalError::Io {
            location: "resource claims".to_string(),
            message: format!(
                "{:?} cannot name a resource claim (only AWS ids and IAM names can)",
                crate::text::escape(resource)
            ),
            source: None,
        });
    }
    Ok(format!("{}.json", resource.replacen(':', "-", 1)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn claim_names_are_plain_file_names() {
        assert_eq!(
            claim_file_name("instance:i-0123456789abcdef0").unwrap(),
            "instance-i-0123456789abcdef0.json"
        );
        assert_eq!(
            claim_file_name("user:alice.b@x").unwrap(),
            "user-alice.b@x.json"
        );
        for bad in ["user:../x", "user:a/b", "", "..", "user:a\nb"] {
            assert!(claim_file_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn released_and_newer_claims() {
        let case = CaseId::parse("case-0123456789abcdef0123").unwrap();
        let mut claim = ResourceClaim::new("role:r", &case, "2026-01-01T00:00:00Z".into());
        let text = serde_json::to_vec(&claim).unwrap();
        assert_eq!(
            ResourceClaim::from_stored(&text, "x").unwrap(),
            Some(claim.clone())
        );
        claim.released_at = Some("2026-01-01T00:01:00Z".into());
        let text = serde_json::to_vec(&claim).unwrap();
        assert_eq!(ResourceClaim::from_stored(&text, "x").unwrap(), None);
        let newer = br#"{"format-version":2,"whatever":1}"#;
        let err = ResourceClaim::from_stored(newer, "x").unwrap_err();
        assert!(err.to_string().contains("newer cordon"), "{err}");
    }
}
