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
//! the SHA-256 it reads back too. The URL does stay in SSM's record of the
//! command (its parameters, which `ListCommands` returns to anyone allowed
//! to list the instance's commands) until SSM forgets the command; it stops
//! working when it expires, at the end of the budget.
//!
//! Sent once. Before `SendCommand`, a write-ahead intent is journaled: the
//! key, the URL's expiry and a marker unique to this attempt,
//! `cordon:<case-id>:<step-id>:<attempt-uuid>`, which goes in the command's
//! `Comment` (SSM stores it and `ListCommands` returns it). A run that finds
//! an intent but no command id (it crashed between sending and journaling
//! the answer) reads the instance's commands for the marker and adopts the
//! command it finds; only when there is none does it send, under a new
//! intent. An attempt whose answer was lost on the way (a timeout, a dropped
//! connection) is reconciled the same way before it is sent again.
//!
//! Past the budget, a command still running is cancelled (`CancelCommand`,
//! best effort: a refusal is journaled and named in the step's error), so
//! the host stops acquiring and streaming; isolation then goes on without
//! the image. The read-back streams the object through the hash, chunk by
//! chunk, with an idle limit rather than a deadline for the whole body: a
//! multi-GB image takes as long as it takes, a stream that stops sending
//! fails within [`READ_IDLE_TIMEOUT`], and memory stays one chunk.
//!
//! What only a real account shows: the SSM agent running the command, the
//! tool's acquisition, the upload, and the cancellation stopping it (the
//! emulator records the command, reports it successful at once and has no
//! `CancelCommand`). SSM needs the instance to reach the SSM endpoints and
//! S3: run this step before isolation, or give the VPC interface endpoints
//! for SSM and a gateway endpoint for S3, since the isolation group denies
//! all egress.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_ssm::types::CommandInvocationStatus;
use cordon_core::action::{CaptureMemory as Params, UPLOAD_URL_PLACEHOLDER};
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{Sent, send_reconciled};
use crate::actions::{Ctx, Handler};
use crate::call::items;
use crate::client::AwsClients;
use crate::evidence::{EvidenceRef, EvidenceStore, case_key, get_object_op};
use crate::ops;

/// The `capture-memory` handler.
#[derive(Debug)]
pub struct CaptureMemory;

/// The SSM document that runs a shell script on Linux.
const DOCUMENT: &str = "AWS-RunShellScript";

/// How often the command's status is read.
const POLL: Duration = Duration::from_secs(5);

/// The longest `Comment` SSM accepts on a command.
const COMMENT_MAX: usize = 100;

/// How long the read-back waits for the next chunk of the image before it
/// calls the stream stalled. S3 sends a healthy download continuously, so a
/// silence this long is a dead stream, whatever the image's size.
pub const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the image goes, decided before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MemoryPreState {
    pub instance_id: String,
    pub bucket: String,
    pub key: String,
}

/// The command about to be sent, journaled before `SendCommand` (write-ahead)
/// so that a run that never learns the command id can find the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MemoryIntent {
    /// `cordon:<case-id>:<step-id>:<attempt-uuid>`, the command's `Comment`
    /// (the step id shortened to fit SSM's 100 characters).
    pub marker: String,
    /// The one key the upload URL may write.
    pub key: String,
    /// Unix time just before sending: the budget runs from here.
    pub sent_at: i64,
    /// Unix time the upload URL stops working.
    pub url_expires_at: i64,
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
    /// The intent's marker (absent in journals written before intents were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
}

/// A command cancelled past its budget, journaled whether SSM took the
/// cancellation or refused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MemoryCancelled {
    /// The command still running when the budget ran out.
    pub command_id: String,
    /// Why `CancelCommand` failed, in one line; absent when SSM accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_refused: Option<String>,
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

/// `cordon:<case-id>:<step-id>:<attempt>`, at most [`COMMENT_MAX`] bytes:
/// the step id is shortened when it would not fit (the attempt's uuid
/// alone makes the marker unique; case and step are for people reading SSM).
fn marker(case_id: &str, step_id: &str, attempt: uuid::Uuid) -> String {
    let fixed = format!("cordon:{case_id}::{attempt}");
    let room = COMMENT_MAX.saturating_sub(fixed.len());
    let mut step = String::new();
    for c in step_id.chars() {
        if step.len() + c.len_utf8() > room {
            break;
        }
        step.push(c);
    }
    format!("cordon:{case_id}:{step}:{attempt}")
}

/// A `step-progress` record of this action, told apart by its `phase`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum MemoryProgress {
    /// About to call `SendCommand` (write-ahead).
    CommandIntended(MemoryIntent),
    /// `SendCommand` answered, or the command was found by its marker.
    CommandSent(MemorySent),
    /// Past the budget, `CancelCommand` was asked for.
    CommandCancelled(MemoryCancelled),
}

/// The step's journaled progress, as this handler reads it.
#[derive(Debug, Default)]
struct Progress {
    /// Intents, oldest first.
    intents: Vec<MemoryIntent>,
    /// The latest command known sent.
    sent: Option<MemorySent>,
    /// The latest cancellation asked for.
    cancelled: Option<MemoryCancelled>,
}

impl Progress {
    fn read(records: &[Value]) -> Self {
        let mut progress = Progress::default();
        for record in records {
            match serde_json::from_value::<MemoryProgress>(record.clone()) {
                Ok(MemoryProgress::CommandIntended(intent)) => progress.intents.push(intent),
                Ok(MemoryProgress::CommandSent(sent)) => progress.sent = Some(sent),
                Ok(MemoryProgress::CommandCancelled(cancelled)) => {
                    progress.cancelled = Some(cancelled)
                }
                // Journals written before phases: the command id alone.
                Err(_) => {
                    if let Ok(sent) = serde_json::from_value::<MemorySent>(record.clone()) {
                        progress.sent = Some(sent);
                    }
                }
            }
        }
        progress
    }
}

async fn record(
    ctx: Ctx<'_>,
    instance_id: &str,
    progress: MemoryProgress,
) -> Result<(), ActionError> {
    let value = serde_json::to_value(&progress).map_err(|e| {
        failed(
            instance_id,
            format!("cannot record the memory capture's progress: {e}"),
            "report this as a cordon bug",
        )
    })?;
    ctx.record_progress(value).await
}

/// The command one of `intents` sent, read from the instance's commands by
/// its marker (the latest intent first); `None` when SSM has none of them.
async fn find_sent(
    ctx: Ctx<'_>,
    pre: &MemoryPreState,
    intents: &[MemoryIntent],
) -> Result<Option<MemorySent>, ActionError> {
    let clients = ctx.clients();
    let request = clients.ssm.list_commands().instance_id(&pre.instance_id);
    let pages = clients
        .paginate(&ops::SSM_LIST_COMMANDS, &pre.instance_id, request)
        .await?;
    let commands = items(&pages, |page| page.commands());
    Ok(intents.iter().rev().find_map(|intent| {
        commands
            .iter()
            .find(|c| c.comment() == Some(intent.marker.as_str()))
            .and_then(|c| c.command_id())
            .map(|command_id| MemorySent {
                command_id: command_id.to_string(),
                sent_at: intent.sent_at,
                url_expires_at: intent.url_expires_at,
                marker: Some(intent.marker.clone()),
            })
    }))
}

/// Journals an intent, then sends the command once: an attempt that got no
/// answer is looked for by its marker before it is sent again.
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
    let intent = MemoryIntent {
        marker: marker(ctx.case_id(), &ctx.step.id, uuid::Uuid::new_v4()),
        key: pre.key.clone(),
        sent_at,
        url_expires_at: sent_at + p.time_budget_seconds as i64,
    };
    record(
        ctx,
        &pre.instance_id,
        MemoryProgress::CommandIntended(intent.clone()),
    )
    .await?;
    let commands = vec![script(&p.command, presigned.uri())];
    let request = || {
        clients
            .ssm
            .send_command()
            .instance_ids(&pre.instance_id)
            .document_name(DOCUMENT)
            .comment(&intent.marker)
            .timeout_seconds(
                i32::try_from(p.time_budget_seconds.min(2_592_000)).unwrap_or(i32::MAX),
            )
            .parameters("commands", commands.clone())
            .parameters("executionTimeout", vec![p.time_budget_seconds.to_string()])
    };
    let find = || find_sent(ctx, pre, std::slice::from_ref(&intent));
    match send_reconciled(ctx, &ops::SSM_SEND_COMMAND, &pre.instance_id, request, find).await? {
        Ok(Sent::Answered(out)) => {
            let command_id = out
                .command()
                .and_then(|c| c.command_id())
                .ok_or_else(|| {
                    failed(
                        &pre.instance_id,
                        "SendCommand answered without a command id".into(),
                        "check the instance is managed by SSM (agent running, instance profile with AmazonSSMManagedInstanceCore)",
                    )
                })?;
            Ok(MemorySent {
                command_id: command_id.to_string(),
                sent_at,
                url_expires_at: intent.url_expires_at,
                marker: Some(intent.marker.clone()),
            })
        }
        Ok(Sent::Found(sent)) => Ok(sent),
        Err(e) => Err(e.into()),
    }
}

/// Asks SSM to stop a command past its budget; `Some(why)` in one line
/// when it refused.
async fn cancel(ctx: Ctx<'_>, pre: &MemoryPreState, command_id: &str) -> Option<String> {
    let clients = ctx.clients();
    let request = clients
        .ssm
        .cancel_command()
        .command_id(command_id)
        .instance_ids(&pre.instance_id);
    match clients
        .try_call(&ops::SSM_CANCEL_COMMAND, &pre.instance_id, request)
        .await
    {
        Ok(_) => None,
        Err(e) => {
            let error = e.into_error().to_string();
            Some(error.lines().next().unwrap_or_default().to_string())
        }
    }
}

/// Waits for the command to end, until the budget runs out; past it, the
/// command is cancelled (best effort, once: `cancelled` is an earlier
/// attempt's cancellation) and the step fails with a timeout.
async fn wait(
    ctx: Ctx<'_>,
    p: &Params,
    pre: &MemoryPreState,
    sent: &MemorySent,
    cancelled: Option<&MemoryCancelled>,
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
            let refused = match cancelled {
                Some(earlier) if earlier.command_id == sent.command_id => {
                    earlier.cancel_refused.clone()
                }
                _ => {
                    let refused = cancel(ctx, pre, &sent.command_id).await;
                    let cancelled = MemoryCancelled {
                        command_id: sent.command_id.clone(),
                        cancel_refused: refused.clone(),
                    };
                    record(
                        ctx,
                        &pre.instance_id,
                        MemoryProgress::CommandCancelled(cancelled),
                    )
                    .await?;
                    refused
                }
            };
            let cancellation = match refused {
                None => "cancelled it (CancelCommand)".to_string(),
                Some(why) => format!("could not cancel it, the host may still be uploading: {why}"),
            };
            return Err(ActionError::new(
                ErrorKind::Timeout,
                &pre.instance_id,
                format!(
                    "the memory acquisition (command {}) did not finish within its {}s budget; cordon {cancellation}",
                    sent.command_id, p.time_budget_seconds
                ),
                "containment goes on without the image (steps needing this one run under on-failure: continue); raise time-budget-seconds or acquire by hand",
            ));
        }
        tokio::time::sleep(POLL.min(Duration::from_secs(left.unsigned_abs()))).await;
    }
}

/// Why a streamed body could not be hashed to its end.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// No chunk arrived within the idle limit.
    #[error("no data for {}s after {read} bytes: the stream stalled", idle.as_secs())]
    Stalled {
        /// The idle limit that ran out.
        idle: Duration,
        /// Bytes hashed before the stall.
        read: u64,
    },
    /// The stream failed (connection reset, a short body).
    #[error("the stream broke after {read} bytes: {source}")]
    Broken {
        /// Bytes hashed before the failure.
        read: u64,
        /// What the stream reported.
        #[source]
        source: BoxError,
    },
}

/// What a body's stream fails with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body read one chunk at a time: an S3 object's, or a test's stream.
pub trait Chunks: Send {
    /// The next chunk; `None` at the end.
    fn next_chunk(
        &mut self,
    ) -> impl Future<Output = Result<Option<impl AsRef<[u8]> + Send>, BoxError>> + Send;
}

impl Chunks for ByteStream {
    async fn next_chunk(&mut self) -> Result<Option<impl AsRef<[u8]> + Send>, BoxError> {
        self.try_next().await.map_err(Into::into)
    }
}

/// Size and SHA-256 (hex) of `body`, hashed chunk by chunk as it arrives:
/// each chunk must come within `idle` of the last, and no deadline bounds
/// the whole body, so a large object completes and a stalled one fails
/// fast. Only one chunk is held at a time.
pub async fn hash_stream(
    body: &mut impl Chunks,
    idle: Duration,
) -> Result<(u64, String), StreamError> {
    let mut hasher = Sha256::new();
    let mut read = 0u64;
    loop {
        let chunk = match tokio::time::timeout(idle, body.next_chunk()).await {
            Err(_) => return Err(StreamError::Stalled { idle, read }),
            Ok(Err(source)) => return Err(StreamError::Broken { read, source }),
            Ok(Ok(None)) => return Ok((read, hex::encode(hasher.finalize()))),
            Ok(Ok(Some(chunk))) => chunk,
        };
        let chunk = chunk.as_ref();
        read += chunk.len() as u64;
        hasher.update(chunk);
    }
}

/// Reads `s3://bucket/key` back and hashes it as it streams ([`hash_stream`]
/// with `idle` between chunks). `None` when there is no such object.
pub async fn hash_object(
    clients: &AwsClients,
    bucket: &str,
    key: &str,
    idle: Duration,
) -> Result<Option<EvidenceRef>, ActionError> {
    let location = format!("s3://{bucket}/{key}");
    let request = clients.s3.get_object().bucket(bucket).key(key);
    let out = match clients
        .try_call(get_object_op(None), &location, request)
        .await
    {
        Ok(out) => out,
        Err(e) if e.code() == Some("NoSuchKey") => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let version_id = out.version_id().map(str::to_string);
    let mut body = out.body;
    let (size, sha256) = hash_stream(&mut body, idle).await.map_err(|e| {
        let kind = match e {
            StreamError::Stalled { .. } => ErrorKind::Timeout,
            StreamError::Broken { .. } => ErrorKind::Other,
        };
        ActionError::new(
            kind,
            &location,
            format!("reading the memory image back was cut short: {e}"),
            "check network access to S3 and retry (resume reads it again)",
        )
    })?;
    Ok(Some(EvidenceRef {
        location,
        size,
        sha256,
        version_id,
    }))
}

/// Reads the image back from S3 and hashes it as it streams.
async fn read_back(ctx: Ctx<'_>, pre: &MemoryPreState) -> Result<EvidenceRef, ActionError> {
    match hash_object(ctx.clients(), &pre.bucket, &pre.key, READ_IDLE_TIMEOUT).await? {
        Some(evidence) => Ok(evidence),
        None => Err(failed(
            &pre.instance_id,
            format!(
                "the command succeeded but nothing reached s3://{}/{}",
                pre.bucket, pre.key
            ),
            "check the command PUTs the image to {upload_url} and the instance can reach S3 (a VPC endpoint, or run before isolation)",
        )),
    }
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
        let progress = Progress::read(ctx.earlier_progress());
        let sent = match progress.sent {
            Some(sent) => sent,
            None => {
                // An intent without a command id: a run that crashed (or an
                // attempt that lost its answer) may have sent it already.
                let found = if progress.intents.is_empty() {
                    None
                } else {
                    find_sent(ctx, pre, &progress.intents).await?
                };
                let sent = match found {
                    Some(sent) => sent,
                    None => send(ctx, p, pre).await?,
                };
                record(
                    ctx,
                    &pre.instance_id,
                    MemoryProgress::CommandSent(sent.clone()),
                )
                .await?;
                sent
            }
        };
        wait(ctx, p, pre, &sent, progress.cancelled.as_ref()).await?;
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
    use serde_json::json;

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

    #[test]
    fn the_marker_names_case_step_and_attempt_within_ssm_comment_limit() {
        let attempt = uuid::Uuid::new_v4();
        let case = "case-0123456789abcdef0123";
        assert_eq!(
            marker(case, "memory", attempt),
            format!("cordon:{case}:memory:{attempt}")
        );
        let long = marker(case, &"é".repeat(80), attempt);
        assert!(long.len() <= COMMENT_MAX, "{} bytes: {long}", long.len());
        assert!(long.starts_with(&format!("cordon:{case}:é")), "{long}");
        assert!(long.ends_with(&format!(":{attempt}")), "{long}");
        assert_ne!(
            marker(case, "memory", uuid::Uuid::new_v4()),
            marker(case, "memory", attempt)
        );
    }

    #[test]
    fn progress_tells_the_phases_apart_and_reads_old_journals() {
        let intent = |marker: &str, at: i64| {
            json!({"phase": "command-intended", "marker": marker, "key": "k",
                   "sent-at": at, "url-expires-at": at + 600})
        };
        let progress = Progress::read(&[
            intent("cordon:c:s:1", 1),
            json!({"phase": "untrack-begun"}),
            intent("cordon:c:s:2", 5),
        ]);
        assert_eq!(progress.intents.len(), 2);
        assert_eq!(progress.sent, None);
        let sent = MemorySent {
            command_id: "c-1".into(),
            sent_at: 1,
            url_expires_at: 601,
            marker: Some("cordon:c:s:1".into()),
        };
        let written =
            serde_json::to_value(MemoryProgress::CommandSent(sent.clone())).expect("json");
        assert_eq!(
            written,
            json!({"phase": "command-sent", "command-id": "c-1", "sent-at": 1,
                   "url-expires-at": 601, "marker": "cordon:c:s:1"})
        );
        assert_eq!(Progress::read(&[written]).sent, Some(sent));
        // A journal written before intents existed: the command alone.
        let old =
            Progress::read(&[json!({"command-id": "c-1", "sent-at": 1, "url-expires-at": 601})]);
        assert!(old.intents.is_empty());
        assert_eq!(
            old.sent,
            Some(MemorySent {
                command_id: "c-1".into(),
                sent_at: 1,
                url_expires_at: 601,
                marker: None
            })
        );
        let cancelled = serde_json::to_value(MemoryProgress::CommandCancelled(MemoryCancelled {
            command_id: "c-1".into(),
            cancel_refused: None,
        }))
        .expect("json");
        assert_eq!(
            cancelled,
            json!({"phase": "command-cancelled", "command-id": "c-1"})
        );
        let read = Progress::read(&[cancelled]);
        assert!(read.intents.is_empty() && read.sent.is_none());
        assert_eq!(read.cancelled.map(|c| c.command_id).as_deref(), Some("c-1"));
    }

    /// A body of `chunks` chunks of `size` bytes, `gap` apart, that then
    /// ends or (with `stall`) never sends another byte.
    struct Paced {
        chunks: usize,
        size: usize,
        gap: Duration,
        stall: bool,
        sent: usize,
    }

    fn body(chunks: usize, size: usize, gap: Duration, stall: bool) -> Paced {
        Paced {
            chunks,
            size,
            gap,
            stall,
            sent: 0,
        }
    }

    impl Chunks for Paced {
        async fn next_chunk(&mut self) -> Result<Option<impl AsRef<[u8]> + Send>, BoxError> {
            if self.sent > 0 {
                tokio::time::sleep(self.gap).await;
            }
            if self.sent == self.chunks {
                if self.stall {
                    std::future::pending::<()>().await;
                }
                return Ok(None);
            }
            self.sent += 1;
            Ok(Some(vec![7u8; self.size]))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_steady_stream_completes_however_long_it_takes() {
        // 600 chunks a second short of the idle limit apart: ten times the
        // whole-transfer budget of an S3 call, and it completes.
        let gap = READ_IDLE_TIMEOUT - Duration::from_secs(1);
        let started = tokio::time::Instant::now();
        let (size, sha256) = hash_stream(&mut body(600, 1024, gap, false), READ_IDLE_TIMEOUT)
            .await
            .expect("complete");
        assert_eq!(size, 600 * 1024);
        assert_eq!(sha256, hex::encode(Sha256::digest(vec![7u8; 600 * 1024])));
        assert!(started.elapsed() > crate::client::S3_OPERATION_TIMEOUT * 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_stream_fails_after_the_idle_limit() {
        let started = tokio::time::Instant::now();
        let err = hash_stream(
            &mut body(3, 1024, Duration::from_secs(1), true),
            Duration::from_secs(10),
        )
        .await
        .expect_err("stalled");
        assert!(
            matches!(err, StreamError::Stalled { read: 3072, .. }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "no data for 10s after 3072 bytes: the stream stalled"
        );
        // The three chunks (at 0, 1 and 2 s), then ten seconds without one.
        assert_eq!(started.elapsed(), Duration::from_secs(12));
    }
}
