//! Signed manifests: the anchor of a case's chain of custody.
//!
//! The manifest pins every evidence object's version and SHA-256 and the
//! journal's hash chain; but whoever can write the bucket could put a newer
//! `manifest.json` that pins forged objects, and `evidence verify` would read
//! that newest version. With a signing key (an asymmetric KMS key,
//! `SIGN_VERIFY`, ECC_NIST_P256), `store-evidence` signs what it wrote: the
//! case, the manifest's key, **version id** and SHA-256, and the journal's
//! last hash, in one JSON payload kept verbatim in `manifest.sig.json`
//! beside it. `evidence verify --signing-key KEY` checks that signature with
//! KMS against the key the verifier names (never the one the file names), then
//! that the manifest readers get now is exactly the signed version.

use cordon_core::executor::{ActionError, ErrorKind};
use cordon_core::format;
use cordon_core::plan::CaseId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::client::AwsClients;
use crate::evidence::{EvidenceRef, case_key, put_s3};
use crate::manifest::MANIFEST_NAME;
use crate::ops;

/// The signature object beside `manifest.json`.
pub const SIGNATURE_NAME: &str = "manifest.sig.json";
/// KMS's name for the algorithm (ECDSA over P-256 with SHA-256).
pub const ALGORITHM: &str = "ECDSA_SHA_256";
/// The version of `manifest.sig.json` this build writes and reads.
pub const SIGNATURE_FORMAT_VERSION: u32 = 1;

/// What is signed, kebab-case like every cordon format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SignedManifest {
    pub case_id: String,
    /// `s3://bucket/key` of the manifest.
    pub manifest: String,
    /// The S3 version of the manifest signed: a newer version is not signed.
    pub manifest_version_id: Option<String>,
    pub manifest_sha256: String,
    /// The hash of the journal's last record the manifest pins.
    pub journal_head: Option<String>,
}

/// `manifest.sig.json`: the payload exactly as signed, and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ManifestSignature {
    pub format_version: u32,
    /// The JSON text of a [`SignedManifest`], byte for byte as signed.
    pub payload: String,
    /// The key that signed, as KMS reports it (informational: verifiers use their own).
    pub key_id: String,
    pub algorithm: String,
    /// Base64 DER signature over SHA-256(payload).
    pub signature: String,
}

fn digest(payload: &str) -> Vec<u8> {
    Sha256::digest(payload.as_bytes()).to_vec()
}

fn error(resource: &str, message: String, hint: &str) -> ActionError {
    ActionError::new(ErrorKind::Other, resource, message, hint)
}

/// Signs the manifest just written and stores `manifest.sig.json` beside it.
#[allow(clippy::too_many_arguments)]
pub async fn sign_manifest(
    clients: &AwsClients,
    bucket: &str,
    prefix: &str,
    case: &CaseId,
    manifest: &EvidenceRef,
    journal_head: Option<String>,
    signing_key: &str,
    kms_key: Option<&str>,
) -> Result<EvidenceRef, ActionError> {
    let signed = SignedManifest {
        case_id: case.as_str().to_string(),
        manifest: manifest.location.clone(),
        manifest_version_id: manifest.version_id.clone(),
        manifest_sha256: manifest.sha256.clone(),
        journal_head,
    };
    let payload = serde_json::to_string(&signed).map_err(|e| {
        error(
            &manifest.location,
            format!("cannot encode what to sign: {e}"),
            "report this as a cordon bug",
        )
    })?;
    let request = clients
        .kms
        .sign()
        .key_id(signing_key)
        .message(aws_smithy_types::Blob::new(digest(&payload)))
        .message_type(aws_sdk_kms::types::MessageType::Digest)
        .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256);
    let out = clients.call(&ops::KMS_SIGN, signing_key, request).await?;
    let signature = out.signature().ok_or_else(|| {
        error(
            signing_key,
            "KMS Sign returned no signature".to_string(),
            "check that the key is an asymmetric SIGN_VERIFY key (ECC_NIST_P256)",
        )
    })?;
    let document = ManifestSignature {
        format_version: SIGNATURE_FORMAT_VERSION,
        payload,
        key_id: out.key_id().unwrap_or(signing_key).to_string(),
        algorithm: ALGORITHM.to_string(),
        signature: aws_smithy_types::base64::encode(signature.as_ref()),
    };
    let key = case_key(prefix, case, SIGNATURE_NAME);
    let bytes = serde_json::to_vec_pretty(&document).map_err(|e| {
        error(
            &key,
            format!("cannot encode the signature: {e}"),
            "report this as a cordon bug",
        )
    })?;
    put_s3(clients, bucket, &key, bytes, kms_key).await
}

/// Why the current manifest is not the one `signing_key` signed, or `None`
/// when it is. `signature` is the stored `manifest.sig.json` (absent: unsigned),
/// `manifest_bytes` and `manifest_version_id` what readers get now.
pub async fn check_signature(
    clients: &AwsClients,
    signing_key: &str,
    case: &CaseId,
    signature: Option<&[u8]>,
    manifest_bytes: &[u8],
    manifest_version_id: Option<&str>,
) -> Result<Option<String>, ActionError> {
    let Some(signature) = signature else {
        return Ok(Some(format!(
            "{SIGNATURE_NAME} is missing: the manifest is not signed, so a forged newer version could not be told apart"
        )));
    };
    let text = String::from_utf8_lossy(signature);
    let version = match format::stored_version(&text) {
        Ok(v) => v,
        Err(e) => return Ok(Some(format!("{SIGNATURE_NAME} is unreadable: {e}"))),
    };
    if let Err(e) = format::check_version(version, SIGNATURE_FORMAT_VERSION, || {
        SIGNATURE_NAME.to_string()
    }) {
        return Ok(Some(e.to_string()));
    }
    let document: ManifestSignature = match serde_json::from_slice(signature) {
        Ok(d) => d,
        Err(e) => return Ok(Some(format!("{SIGNATURE_NAME} is unreadable: {e}"))),
    };
    let Ok(raw) = aws_smithy_types::base64::decode(&document.signature) else {
        return Ok(Some(format!(
            "{SIGNATURE_NAME}: the signature is not base64"
        )));
    };
    let request = clients
        .kms
        .verify()
        .key_id(signing_key)
        .message(aws_smithy_types::Blob::new(digest(&document.payload)))
        .message_type(aws_sdk_kms::types::MessageType::Digest)
        .signature(aws_smithy_types::Blob::new(raw))
        .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256);
    let valid = match clients
        .try_call(&ops::KMS_VERIFY, signing_key, request)
        .await
    {
        Ok(out) => out.signature_valid(),
        // KMS answers a signature that does not verify with this error.
        Err(e) if e.code() == Some("KMSInvalidSignatureException") => false,
        Err(e) => return Err(e.into()),
    };
    if !valid {
        return Ok(Some(format!(
            "{SIGNATURE_NAME} was not signed by {signing_key} over what it says (forged or altered)"
        )));
    }
    let signed: SignedManifest = match serde_json::from_str(&document.payload) {
        Ok(s) => s,
        Err(e) => return Ok(Some(format!("the signed payload is unreadable: {e}"))),
    };
    if signed.case_id != case.as_str() {
        return Ok(Some(format!(
            "the signature is for case {}, not {case}",
            signed.case_id
        )));
    }
    let now = crate::evidence::sha256_hex(manifest_bytes);
    if now != signed.manifest_sha256 || manifest_version_id != signed.manifest_version_id.as_deref()
    {
        return Ok(Some(format!(
            "{MANIFEST_NAME} now read (version {}, SHA-256 {now}) is not the signed one (version {}, SHA-256 {}): a newer manifest was written after signing",
            manifest_version_id.unwrap_or("null"),
            signed.manifest_version_id.as_deref().unwrap_or("null"),
            signed.manifest_sha256
        )));
    }
    Ok(None)
}
