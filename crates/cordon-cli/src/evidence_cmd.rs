//! `cordon evidence ...`: set up and check the evidence bucket, and verify a
//! case's stored evidence. Each problem is printed on its own line so the
//! output can be pasted into a ticket or grepped in CI; exit 1 on any.

use anyhow::{Result, anyhow};
use clap::Subcommand;
use cordon_aws::client::AwsClients;
use cordon_aws::evidence_bucket::{self, DEFAULT_KMS_ALIAS, LockMode, Severity};
use cordon_aws::manifest::verify_case;
use cordon_core::plan::CaseId;
use cordon_core::text::escape;

/// The evidence subcommands.
#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Create (or bring up to standard) an evidence bucket: versioning, SSE-KMS with a
    /// customer key and bucket key, public access blocked, TLS-only and deny-delete policy.
    Init {
        bucket: String,
        /// KMS alias of the customer key (created when absent).
        #[arg(long, default_value = DEFAULT_KMS_ALIAS)]
        kms_alias: String,
        /// Object Lock mode (governance or compliance); needs a new bucket.
        #[arg(long, requires = "retention_days")]
        object_lock: Option<LockMode>,
        /// Default retention in days for --object-lock.
        #[arg(long, requires = "object_lock")]
        retention_days: Option<i32>,
    },
    /// List every way a bucket differs from the evidence standard (exit 1 if any).
    Check { bucket: String },
    /// Re-read a case's evidence and journal from the bucket and check them against
    /// its manifest (exit 1 on any problem).
    Verify {
        case: String,
        #[arg(long, env = "CORDON_EVIDENCE_BUCKET")]
        bucket: String,
        /// Key prefix before the case id.
        #[arg(long, default_value = "cases/")]
        prefix: String,
        /// Require the manifest to be signed by this KMS key (the one
        /// `--evidence-signing-key` named): an unsigned, mis-signed or newer
        /// manifest fails.
        #[arg(long, env = "CORDON_EVIDENCE_SIGNING_KEY")]
        signing_key: Option<String>,
    },
}

/// Runs one evidence subcommand; the result is the exit code.
pub async fn run(command: EvidenceCommand) -> Result<u8> {
    let clients = AwsClients::from_env().await?;
    match command {
        EvidenceCommand::Init {
            bucket,
            kms_alias,
            object_lock,
            retention_days,
        } => {
            let lock = object_lock.zip(retention_days);
            let done = evidence_bucket::init(&clients, &bucket, &kms_alias, lock).await?;
            println!(
                "{} s3://{bucket}: versioning, SSE-KMS ({}), bucket key, public access block, {} policy",
                if done.created { "created" } else { "updated" },
                done.kms_key_arn,
                if done.tls_only {
                    "TLS-only and deny-delete"
                } else {
                    "deny-delete (plain-HTTP endpoint: no TLS-only statement)"
                }
            );
            if let Some((mode, days)) = done.object_lock {
                println!("object lock: {mode}, default retention {days} days");
            }
            Ok(0)
        }
        EvidenceCommand::Check { bucket } => {
            let gaps = evidence_bucket::check(&clients, &bucket).await?;
            for gap in &gaps {
                println!("{}", escape(&gap.to_string()));
            }
            if gaps.iter().any(|g| g.severity == Severity::Gap) {
                Ok(1)
            } else {
                println!("s3://{bucket} meets the evidence standard");
                Ok(0)
            }
        }
        EvidenceCommand::Verify {
            case,
            bucket,
            prefix,
            signing_key,
        } => {
            let case = CaseId::parse(&case).map_err(|e| anyhow!(e))?;
            let report =
                verify_case(&clients, &bucket, &prefix, &case, signing_key.as_deref()).await?;
            for problem in &report.problems {
                println!("{}", escape(&problem.to_string()));
            }
            if report.ok() {
                println!(
                    "case {case}: {} objects and {} journal records verified",
                    report.objects_checked, report.journal_records
                );
                Ok(0)
            } else {
                Ok(1)
            }
        }
    }
}
