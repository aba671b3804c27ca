//! `capture-memory`: volatile memory acquisition through SSM Run Command.
//!
//! cordon presigns a `PutObject` of one key of the evidence bucket,
//! `<prefix><case-id>/memory/<instance-id>.lime`, valid for the step's time
//! budget, and sends `AWS-RunShellScript` with the playbook's command, the
//! URL in place of `{upload_url}`. The host streams the image there: it gets
//! no credentials, and the URL lets it write that one key only, until it
//! expires. cordon then waits for the command (`GetCommandInvocation`)
//! within the budget and computes the image's SHA-256 itself by reading the
//! object back from S3: a hash computed on a compromised host proves nothing.
//! The journal records the command id, the key and the URL's expiry, never
//! the URL; `store-evidence` later pins the object in the case manifest with
//! the SHA-256 it reads back too.
//!
//! What only a real account shows: the SSM agent running the command, the
//! tool's acquisition, and the upload (the emulator records the command and
//! reports it successful at once). SSM needs the instance to reach the SSM
//! endpoints and S3: run this step before isolation, or give the VPC
//! interface endpoints for SSM and a gateway endpoint for S3, since the
//! isolation group denies all egress.
//!
//! A crash after the command is sent resumes the wait on the same command
//! (its id is journaled as progress); a crash between sending and that
//! record sends the command again, which uploads a second version of the
//! same key (the bucket is versioned, so neither is lost).

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_ssm::types::CommandInvocationStatus;
use cordon_core::action::{CaptureMemory as Params, UPLOAD_URL_PLACEHOLDER};
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::actions::{Ctx, Handler};
use crate::evidence::{EvidenceRef, EvidenceStore, case_key, get_object_op};
use crate::ops;

/// The `capture-memory` handler.
#[derive(Debug)]
pub struct CaptureMemory;

/// The SSM document that runs a shell script on Linux.
const DOCUMENT: &str = "AWS-RunShellScript";

/// How often the command's status is read.
const POLL: Duration = Duration::from_secs(5);

/// Where the image goes, decided before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MemoryPreState {
    pub instance_id: String,
    pub bucket: String,
    pub key: String,
}

/// The command sent, journaled as progress before waiting on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MemorySent {
    pub command_id: String,
    /// Unix time the command was sent: the budget runs from here, across a resume.
    pub sent_at: i64,
    /// Unix time the upload URL stops working.
    pub url_expires_at: i64,
}

/// What the capture produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MemoryOutcome {
    pub command_id: String,
    pub url_expires_at: i64,
    /// The image as cordon read it back from S3: size and SHA-256 computed here.
    pub evidence: EvidenceRef,
}

/// Undo keeps the image: it is evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MemoryKept {
    pub kept: String,
}

fn failed(instance_id: &str, message: String, hint: &str) -> ActionError {
    ActionError::new(ErrorKind::Other, instance_id, message, hint)
}

/// The command with the URL in place; the URL is only ever in this string,
/// which goes to SSM and nowhere else (no log, journal or error).
fn script(command: &str, url: &str) -> String {
    command.replace(UPLOAD_URL_PLACEHOLDER, url)
}

async fn send(ctx: Ctx<'_>, p: &Params, pre: &MemoryPreState) -> Result<MemorySent, ActionError> {
    let clients = ctx.clients();
    let budget = Duration::from_secs(p.time_budget_seconds);
    let presigning = PresigningConfig::expires_in(budget).map_err(|e| {
        failed(
            &pre.instance_id,
            format!("cannot presign an upload valid {}s: {e}", budget.as_secs()),
            "give the step a time budget of at most seven days",
        )
    })?;
    // Presigning sends nothing, but it is cordon authorizing a PUT (and the
    // SDK counts it as an operation): recorded like a call, under PutObject.
    let location = format!("s3://{}/{}", pre.bucket, pre.key);
    let ticket = clients.recorder.record(&ops::S3_PUT_OBJECT, &location);
    let presigned = clients
        .s3
        .put_object()
        .bucket(&pre.bucket)
        .key(&pre.key)
        .presigned(presigning)
        .await;
    clients.recorder.finish(ticket);
    let presigned = presigned.map_err(|e| {
        failed(
            &pre.instance_id,
            format!(
                "cannot presign the upload to s3://{}/{}: {e}",
                pre.bucket, pre.key
            ),
            "check cordon's credentials can sign requests",
        )
    })?;
    let sent_at = OffsetDateTime::now_utc().unix_timestamp();
    let request = clients
        .ssm
        .send_command()
        .instance_ids(&pre.instance_id)
        .document_name(DOCUMENT)
        .comment(format!("cordon {} {}", ctx.case_id(), ctx.step.id))
        .timeout_seconds(i32::try_from(p.time_budget_seconds.min(2_592_000)).unwrap_or(i32::MAX))
        .parameters("commands", vec![script(&p.command, presigned.uri())])
        .parameters("executionTimeout", vec![p.time_budget_seconds.to_string()]);
    let out = clients
        .call(&ops::SSM_SEND_COMMAND, &pre.instance_id, request)
        .await?;
    let command_id = out
        .command()
        .and_then(|c| c.command_id())
        .ok_or_else(|| {
            failed(
                &pre.instance_id,
                "SendCommand answered without a command id".into(),
                "check the instance is managed by SSM (agent running, instance profile with AmazonSSMManagedInstanceCore)",
            )
        })?
        .to_string();
    Ok(MemorySent {
        command_id,
        sent_at,
        url_expires_at: sent_at + p.time_budget_seconds as i64,
    })
}

/// Waits for the command to end, until the budget runs out.
async fn wait(
    ctx: Ctx<'_>,
    p: &Params,
    pre: &MemoryPreState,
    sent: &MemorySent,
) -> Result<(), ActionError> {
    let clients = ctx.clients();
    let deadline = sent.sent_at + p.time_budget_seconds as i64;
    loop {
        let request = clients
            .ssm
            .get_command_invocation()
            .command_id(&sent.command_id)
            .instance_id(&pre.instance_id);
        match clients
            .try_call(&ops::SSM_GET_COMMAND_INVOCATION, &pre.instance_id, request)
            .await
        {
            Ok(out) => match out.status() {
                Some(CommandInvocationStatus::Success) => return Ok(()),
                Some(
                    CommandInvocationStatus::Pending
                    | CommandInvocationStatus::InProgress
                    | CommandInvocationStatus::Delayed,
                )
                | None => {}
                Some(other) => {
                    // The tool's output may echo the upload URL: only the
                    // status and exit code are reported.
                    return Err(failed(
                        &pre.instance_id,
                        format!(
                            "the memory acquisition command {} ended {} (exit code {})",
                            sent.command_id,
                            other.as_str(),
                            out.response_code()
                        ),
                        "read the command's output in the SSM console; check the tool is installed on the instance",
                    ));
                }
            },
            // Right after SendCommand, the invocation may not exist yet.
            Err(e) if e.code() == Some("InvocationDoesNotExist") => {}
            Err(e) => return Err(e.into()),
        }
        let left = deadline - OffsetDateTime::now_utc().unix_timestamp();
        if left <= 0 {
            return Err(ActionError::new(
                ErrorKind::Timeout,
                &pre.instance_id,
                format!(
                    "the memory acquisition (command {}) did not finish within its {}s budget",
                    sent.command_id, p.time_budget_seconds
                ),
                "containment goes on without the image (steps needing this one run under on-failure: continue); raise time-budget-seconds or acquire by hand",
            ));
        }
        tokio::time::sleep(POLL.min(Duration::from_secs(left.unsigned_abs()))).await;
    }
}

/// Reads the image back from S3 and hashes it as it streams.
async fn read_back(ctx: Ctx<'_>, pre: &MemoryPreState) -> Result<EvidenceRef, ActionError> {
    let clients = ctx.clients();
    let location = format!("s3://{}/{}", pre.bucket, pre.key);
    let request = clients.s3.get_object().bucket(&pre.bucket).key(&pre.key);
    let out = match clients
        .try_call(get_object_op(None), &location, request)
        .await
    {
        Ok(out) => out,
        Err(e) if e.code() == Some("NoSuchKey") => {
            return Err(failed(
                &pre.instance_id,
                format!("the command succeeded but nothing reached {location}"),
                "check the command PUTs the image to {upload_url} and the instance can reach S3 (a VPC endpoint, or run before isolation)",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let version_id = out.version_id().map(str::to_string);
    let mut body = out.body;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body.try_next().await.map_err(|e| {
        ActionError::new(
            ErrorKind::Timeout,
            &location,
            format!("reading the memory image back was cut short: {e}"),
            "check network access to S3 and retry",
        )
    })? {
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Ok(EvidenceRef {
        location,
        size,
        sha256: hex::encode(hasher.finalize()),
        version_id,
    })
}

impl Handler for CaptureMemory {
    type Params = Params;
    type PreState = MemoryPreState;
    type Outcome = MemoryOutcome;
    type Undone = MemoryKept;

    async fn pre_state(ctx: Ctx<'_>, _p: &Params) -> Result<MemoryPreState, ActionError> {
        let instance_id = ctx.instance()?.instance_id.clone();
        let EvidenceStore::S3 { bucket, prefix, .. } = &ctx.aws.evidence else {
            return Err(ActionError::new(
                ErrorKind::NotConfigured,
                &instance_id,
                "capture-memory needs an evidence bucket: the host uploads the image to S3",
                "run with --evidence-bucket (the Lambda always has one)",
            ));
        };
        let key = case_key(
            prefix,
            &ctx.plan.case_id,
            &format!("memory/{instance_id}.lime"),
        );
        Ok(MemoryPreState {
            instance_id,
            bucket: bucket.clone(),
            key,
        })
    }

    async fn apply(
        ctx: Ctx<'_>,
        p: &Params,
        pre: &MemoryPreState,
    ) -> Result<MemoryOutcome, ActionError> {
        let earlier = ctx
            .earlier_progress()
            .iter()
            .rev()
            .find_map(|v| serde_json::from_value::<MemorySent>(v.clone()).ok());
        let sent = match earlier {
            Some(sent) => sent,
            None => {
                let sent = send(ctx, p, pre).await?;
                let record = serde_json::to_value(&sent).map_err(|e| {
                    failed(
                        &pre.instance_id,
                        format!("cannot record the command: {e}"),
                        "report this as a cordon bug",
                    )
                })?;
                ctx.record_progress(record).await?;
                sent
            }
        };
        wait(ctx, p, pre, &sent).await?;
        let evidence = read_back(ctx, pre).await?;
        Ok(MemoryOutcome {
            command_id: sent.command_id,
            url_expires_at: sent.url_expires_at,
            evidence,
        })
    }

    async fn verify(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &MemoryPreState,
        outcome: &MemoryOutcome,
    ) -> Result<(), ActionError> {
        let clients = ctx.clients();
        let version = outcome.evidence.version_id.as_deref();
        let request = clients
            .s3
            .head_object()
            .bucket(&pre.bucket)
            .key(&pre.key)
            .set_version_id(version.map(str::to_string));
        let op = match version {
            Some(_) => &ops::S3_HEAD_OBJECT_VERSION,
            None => &ops::S3_HEAD_OBJECT,
        };
        let out = clients
            .call(op, &outcome.evidence.location, request)
            .await?;
        let size = out.content_length().and_then(|n| u64::try_from(n).ok());
        if size != Some(outcome.evidence.size) {
            return Err(ActionError::new(
                ErrorKind::Verification,
                &outcome.evidence.location,
                format!(
                    "the image reads back {size:?} bytes, {} were hashed",
                    outcome.evidence.size
                ),
                "the object changed after it was hashed: keep both versions and investigate",
            ));
        }
        Ok(())
    }

    async fn undo(
        _ctx: Ctx<'_>,
        _p: &Params,
        pre: &MemoryPreState,
        _outcome: Option<&MemoryOutcome>,
    ) -> Result<MemoryKept, ActionError> {
        Ok(MemoryKept {
            kept: format!("s3://{}/{}", pre.bucket, pre.key),
        })
    }

    async fn verify_undone(
        _ctx: Ctx<'_>,
        _p: &Params,
        _pre: &MemoryPreState,
    ) -> Result<(), ActionError> {
        Ok(())
    }

    fn describe(_ctx: Ctx<'_>, p: &Params, pre: &MemoryPreState) -> Vec<String> {
        vec![format!(
            "{} {} {DOCUMENT} (memory image to s3://{}/{} through a presigned PUT valid {}s)",
            ops::SSM_SEND_COMMAND.iam_action,
            pre.instance_id,
            pre.bucket,
            pre.key,
            p.time_budget_seconds
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_only_replaces_the_placeholder() {
        let p = Params::default();
        let s = script(
            &p.command,
            "https://b.s3.amazonaws.com/k?X-Amz-Signature=abc",
        );
        assert_eq!(
            s,
            "avml --compress --delete --url 'https://b.s3.amazonaws.com/k?X-Amz-Signature=abc' /var/tmp/cordon-memory.lime"
        );
    }
}
