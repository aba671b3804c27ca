//! `cordon approve CASE STEP --task-token TOKEN --journal s3://BUCKET[/PREFIX]`
//! (and `--refuse`): the answer to a Step Functions approval wait. The
//! decision is journaled in the case's S3 journal under its lease, with the
//! approver's verified identity and the same checks as a local approval;
//! then the waiting execution is answered ([`cordon_aws::task_token`]). The
//! CLI runs no step: the state machine's next task does, re-checking the
//! journaled approver.

use anyhow::anyhow;
use cordon_aws::actions::AwsActions;
use cordon_aws::evidence::EvidenceStore;
use cordon_aws::s3_journal::S3Journal;
use cordon_aws::task_token::{self, TaskToken, TaskTokenError};
use cordon_core::executor::{Decision, Executor};
use cordon_core::text::escape;

use crate::approvals::{self, CliApprover};
use crate::{Aws, Failure, Output, exec_failure, failed, invalid, output, parse_case, print_json};

/// `s3://BUCKET[/PREFIX]` as the S3 journal store takes it: the bucket, and
/// the key prefix before the case id (`cases/`, or empty).
pub fn parse_journal_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("--journal {url:?} is not an s3://BUCKET[/PREFIX] URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !bucket_ok {
        return Err(format!(
            "--journal {url:?}: {bucket:?} is not an S3 bucket name (3 to 63 lowercase letters, digits, dots, hyphens)"
        ));
    }
    let prefix = prefix.trim_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Ok((bucket.to_string(), prefix))
}

/// The S3 journal at `url` (`--journal s3://BUCKET[/PREFIX]`, the Lambda's
/// `CORDON_JOURNAL`), read with the caller's credentials: a responder looks
/// at a case the Lambda runs without a local journal.
pub async fn s3_journal(url: &str, aws: &Aws) -> Result<S3Journal, Failure> {
    let (bucket, prefix) = parse_journal_url(url).map_err(|e| invalid(anyhow!(e)))?;
    Ok(S3Journal::new(aws.clients().await?.clone(), bucket, prefix))
}

/// What one answer is about.
pub struct TaskApproval<'a> {
    pub case: &'a str,
    pub step: &'a str,
    pub refuse: bool,
    pub reason: String,
    pub token: &'a str,
    pub journal: &'a str,
    pub output: Output,
}

/// Journals the decision, answers the execution; 0, 2 for bad input, the
/// awaiting-decision code for an identity the step's `approvers:` refuse, 1
/// when Step Functions refuses the answer.
pub async fn run(request: TaskApproval<'_>, aws: &Aws) -> Result<u8, Failure> {
    let token = TaskToken::new(request.token).map_err(|e| invalid(e.into()))?;
    let case = parse_case(request.case)?;
    let (bucket, prefix) = parse_journal_url(request.journal).map_err(|e| invalid(anyhow!(e)))?;
    let clients = aws.clients().await?;
    let identity = approvals::caller_identity(clients).await.map_err(failed)?;
    let decision = if request.refuse {
        Decision::Refused {
            approver: identity.clone(),
            reason: if request.reason.is_empty() {
                "refused".to_string()
            } else {
                request.reason
            },
        }
    } else {
        Decision::Approved {
            approver: identity.clone(),
        }
    };
    let journal = S3Journal::new(clients.clone(), &bucket, &prefix);
    // Nothing runs here: the actions and the approver only complete the executor.
    let actions = AwsActions::new(
        clients.clone(),
        EvidenceStore::LocalDir(std::env::temp_dir()),
    );
    let approver = CliApprover::new(clients, approvals::Standing::default(), false, None);
    let executor = Executor::new(&actions, &journal, &approver);
    match task_token::answer(&executor, clients, &case, request.step, decision, &token).await {
        Ok(()) => {
            let (verdict, next) = if request.refuse {
                ("refused", "the execution ends with Cordon.ApprovalRefused")
            } else {
                ("approved", "the execution resumes")
            };
            match request.output {
                Output::Json => print_json(&output::TaskApprovalAnswer {
                    case_id: case.to_string(),
                    step: request.step.to_string(),
                    decision: verdict.to_string(),
                    approver: identity.clone(),
                    journal: format!("s3://{bucket}/{prefix}{case}/"),
                    task_token_sha256: token.fingerprint(),
                    next: next.to_string(),
                })?,
                Output::Text => println!(
                    "{} step {} of case {case} as {} (journaled in s3://{bucket}/{prefix}{case}/, task token sha256:{}…): {next}.",
                    if request.refuse {
                        "Refused"
                    } else {
                        "Approved"
                    },
                    escape(request.step),
                    escape(&identity),
                    token.fingerprint(),
                ),
            }
            Ok(0)
        }
        Err(TaskTokenError::Journal { source, .. }) => Err(exec_failure(*source)),
        Err(e @ TaskTokenError::Malformed) => Err(invalid(e.into())),
        Err(e @ TaskTokenError::Rejected { .. }) => Err(failed(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_urls_give_bucket_and_prefix() {
        assert_eq!(
            parse_journal_url("s3://cordon-evidence"),
            Ok(("cordon-evidence".into(), String::new()))
        );
        assert_eq!(
            parse_journal_url("s3://cordon-evidence/cases"),
            Ok(("cordon-evidence".into(), "cases/".into()))
        );
        assert_eq!(
            parse_journal_url("s3://cordon-evidence/a/b/"),
            Ok(("cordon-evidence".into(), "a/b/".into()))
        );
        for bad in [
            "cordon-evidence",
            "s3://",
            "s3://UPPER",
            "https://x/y",
            "s3://a",
        ] {
            assert!(parse_journal_url(bad).is_err(), "{bad}");
        }
    }
}
