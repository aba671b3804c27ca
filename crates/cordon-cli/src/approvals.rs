//! Approvals on the command line: `--yes`, `--approve STEP`, a prompt on a
//! terminal, or a decision from another process (`cordon approve`) delivered
//! to a run that is waiting with `--approval-timeout`; and approvals of undo
//! steps that re-arm credentials or delete evidence (`--approve-undo STEP`).
//!
//! A waiting run holds the case's lock, so `cordon approve` cannot journal
//! the decision itself: it drops it in the case's decision inbox
//! (`<case-dir>/decisions/<step>.json`, written atomically), and the waiting
//! run takes it from there and journals it with the approver's verified
//! identity. When no run holds the case, `cordon approve` journals the
//! decision directly and continues the case.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use cordon_aws::client::AwsClients;
use cordon_aws::ops;
use cordon_core::action::UndoGate;
use cordon_core::executor::{Approver, Decision};
use cordon_core::plan::{Plan, PlannedStep};
use cordon_core::progress::TARGET as PROGRESS;
use serde::{Deserialize, Serialize};

use crate::render;

/// How often a waiting run looks in the decision inbox.
const INBOX_POLL: Duration = Duration::from_millis(250);

/// Parses a duration such as `90s`, `15m`, `2h` or `1d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 90s, 15m, 2h, 1d)"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{text}`: unit must be s, m, h or d")),
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// The identity that answers an approval: the caller's ARN from STS. No
/// fallback to a local user name: an approval needs a verified identity.
pub async fn caller_identity(clients: &AwsClients) -> anyhow::Result<String> {
    let request = clients.sts.get_caller_identity();
    let out = clients
        .call(&ops::STS_GET_CALLER_IDENTITY, "caller", request)
        .await
        .map_err(|e| anyhow!("cannot verify who approves (STS GetCallerIdentity): {e}"))?;
    out.arn()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("STS GetCallerIdentity returned no ARN; cannot record the approver"))
}

/// A decision written by `cordon approve` for a run that holds the case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InboxDecision {
    pub step: String,
    pub approved: bool,
    pub approver: String,
    #[serde(default)]
    pub reason: String,
}

/// The decision inbox of a case.
#[derive(Debug, Clone)]
pub struct Inbox {
    dir: PathBuf,
}

impl Inbox {
    pub fn new(case_dir: &Path) -> Self {
        Self {
            dir: case_dir.join("decisions"),
        }
    }

    fn path(&self, step: &str) -> PathBuf {
        self.dir.join(format!("{step}.json"))
    }

    /// Writes a decision atomically (temp file, fsync, rename).
    pub fn deliver(&self, decision: &InboxDecision) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let path = self.path(&decision.step);
        let tmp = self
            .dir
            .join(format!(".{}.{}.tmp", decision.step, std::process::id()));
        let text = serde_json::to_vec(decision)?;
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            file.write_all(&text)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot deliver the decision to {}", path.display()))?;
        Ok(path)
    }

    /// Takes (reads and removes) the decision for `step`, if one was delivered.
    pub fn take(&self, step: &str) -> Option<InboxDecision> {
        let path = self.path(step);
        let text = std::fs::read(&path).ok()?;
        let _ = std::fs::remove_file(&path);
        match serde_json::from_slice::<InboxDecision>(&text) {
            Ok(decision) if decision.step == step => Some(decision),
            Ok(_) | Err(_) => {
                tracing::warn!(path = %path.display(), "ignored an unreadable decision file");
                None
            }
        }
    }

    /// Whether a delivered decision is still waiting to be taken.
    pub fn pending(&self, step: &str) -> bool {
        self.path(step).exists()
    }
}

impl From<InboxDecision> for Decision {
    fn from(d: InboxDecision) -> Self {
        let approver = format!("{} (cordon approve)", d.approver);
        if d.approved {
            Decision::Approved { approver }
        } else {
            Decision::Refused {
                approver,
                reason: if d.reason.is_empty() {
                    "refused".to_string()
                } else {
                    d.reason
                },
            }
        }
    }
}

/// What the command line says about approvals.
#[derive(Debug, Clone, Default)]
pub struct Standing {
    /// `--yes`: approve every gated step.
    pub all: bool,
    /// `--approve STEP`.
    pub steps: BTreeSet<String>,
    /// `--approve-undo STEP`.
    pub undo_steps: BTreeSet<String>,
    /// `--approval-timeout`: wait this long for a decision, then stop the case.
    pub timeout: Option<Duration>,
}

/// Approvals from the command line.
pub struct CliApprover<'a> {
    clients: &'a AwsClients,
    standing: Standing,
    interactive: bool,
    inbox: Option<Inbox>,
}

impl std::fmt::Debug for CliApprover<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CliApprover")
            .field("standing", &self.standing)
            .field("interactive", &self.interactive)
            .finish_non_exhaustive()
    }
}

impl<'a> CliApprover<'a> {
    /// `interactive`: prompt on the terminal when stdin is one.
    pub fn new(
        clients: &'a AwsClients,
        standing: Standing,
        interactive: bool,
        inbox: Option<Inbox>,
    ) -> Self {
        Self {
            clients,
            standing,
            interactive: interactive && std::io::stdin().is_terminal(),
            inbox,
        }
    }

    async fn identity(&self, how: &str) -> Option<String> {
        match caller_identity(self.clients).await {
            Ok(arn) => Some(format!("{arn} ({how})")),
            Err(e) => {
                eprintln!(
                    "cordon: {}; the step stays unapproved",
                    cordon_core::text::escape(&e.to_string())
                );
                None
            }
        }
    }

    /// Reads one line from the terminal, or `None` after `timeout`.
    async fn prompt(&self, text: String, timeout: Option<Duration>) -> Option<String> {
        eprint!("{text}");
        let read = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        });
        let answer = match timeout {
            Some(limit) => tokio::time::timeout(limit, read).await.ok()?,
            None => read.await,
        };
        Some(match answer {
            Ok(Ok(line)) => line.trim().to_ascii_lowercase(),
            _ => String::new(),
        })
    }

    /// Waits for a decision in the inbox until `timeout`.
    async fn wait_for_inbox(&self, step: &str, timeout: Duration) -> Option<InboxDecision> {
        let inbox = self.inbox.as_ref()?;
        let started = Instant::now();
        eprintln!(
            "waiting up to {}s for a decision on `{step}` (`cordon approve CASE {step}` from another terminal)",
            timeout.as_secs()
        );
        let key = format!("approval of {step}");
        loop {
            if let Some(decision) = inbox.take(step) {
                tracing::info!(target: PROGRESS, key = %key, done = true, "decision on `{step}` received");
                return Some(decision);
            }
            let waited = started.elapsed();
            if waited >= timeout {
                tracing::info!(target: PROGRESS, key = %key, done = true, "no decision on `{step}` after {}s", timeout.as_secs());
                return None;
            }
            tracing::info!(
                target: PROGRESS,
                key = %key,
                "waiting for a decision on `{step}`: {}s of {}s",
                waited.as_secs(),
                timeout.as_secs()
            );
            tokio::time::sleep(INBOX_POLL).await;
        }
    }
}

impl Approver for CliApprover<'_> {
    async fn decide(&self, plan: &Plan, step: &PlannedStep) -> Decision {
        // A step on a protected resource takes only an approval naming it.
        let blanket = self.standing.all && !step.approval.explicit;
        if blanket || self.standing.steps.contains(&step.id) {
            let how = if blanket { "--yes" } else { "--approve" };
            return match self.identity(how).await {
                Some(approver) => Decision::Approved { approver },
                None => Decision::Pending,
            };
        }
        if let Some(decision) = self.inbox.as_ref().and_then(|i| i.take(&step.id)) {
            return decision.into();
        }
        let timeout = self.standing.timeout;
        if self.interactive {
            let started = Instant::now();
            let Some(answer) = self
                .prompt(render::approval_prompt(plan, step), timeout)
                .await
            else {
                eprintln!();
                return Decision::TimedOut {
                    waited: started.elapsed(),
                };
            };
            return match answer.as_str() {
                "y" | "yes" => match self.identity("prompt").await {
                    Some(approver) => Decision::Approved { approver },
                    None => Decision::Pending,
                },
                "n" | "no" => match self.identity("prompt").await {
                    Some(approver) => Decision::Refused {
                        approver,
                        reason: "refused at the prompt".to_string(),
                    },
                    None => Decision::Pending,
                },
                _ => Decision::Pending,
            };
        }
        match timeout {
            None => Decision::Pending,
            Some(limit) => match self.wait_for_inbox(&step.id, limit).await {
                Some(decision) => decision.into(),
                None => Decision::TimedOut { waited: limit },
            },
        }
    }

    async fn decide_undo(&self, plan: &Plan, step: &PlannedStep, gate: UndoGate) -> Decision {
        if self.standing.undo_steps.contains(&step.id) {
            return match self.identity("--approve-undo").await {
                Some(approver) => Decision::Approved { approver },
                None => Decision::Pending,
            };
        }
        if !self.interactive {
            return Decision::Pending;
        }
        let text = render::undo_prompt(plan, step, gate);
        match self.prompt(text, None).await.as_deref() {
            Some("y" | "yes") => match self.identity("prompt").await {
                Some(approver) => Decision::Approved { approver },
                None => Decision::Pending,
            },
            Some("n" | "no") => match self.identity("prompt").await {
                Some(approver) => Decision::Refused {
                    approver,
                    reason: "refused at the prompt".to_string(),
                },
                None => Decision::Pending,
            },
            _ => Decision::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn the_inbox_delivers_once_and_atomically() {
        let dir = std::env::temp_dir().join(format!("cordon-inbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let inbox = Inbox::new(&dir);
        assert!(inbox.take("isolate").is_none());
        let decision = InboxDecision {
            step: "isolate".into(),
            approved: true,
            approver: "arn:aws:iam::111122223333:user/alice".into(),
            reason: String::new(),
        };
        inbox.deliver(&decision).unwrap();
        assert!(inbox.pending("isolate"));
        assert_eq!(inbox.take("isolate"), Some(decision));
        assert!(inbox.take("isolate").is_none(), "taken once");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
