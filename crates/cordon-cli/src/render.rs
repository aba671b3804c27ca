//! Text rendering for the terminal: plans, routes, timelines, status.

use std::fmt::Write;
use std::time::Duration;

use std::io::IsTerminal;

use cordon_core::action::{Reversibility, UndoGate};
use cordon_core::executor::DryRunStep;
use cordon_core::finding::Finding;
use cordon_core::journal::{CaseState, JournalEvent, JournalRecord};
use cordon_core::plan::{Plan, PlannedStep, Target};
use cordon_core::route::Route;
use cordon_core::summary::CaseSummary;

use crate::live::LiveEni;
use crate::output::UnreadableCase;

pub fn route(finding: &Finding, route: &Route) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "finding {}  {}  severity {} ({})",
        finding.id,
        finding.finding_type,
        finding.severity,
        finding.severity.band()
    );
    match route {
        Route::Matched {
            reason,
            also_matched,
        } => {
            let _ = writeln!(
                out,
                "playbook: {} (priority {})",
                reason.playbook, reason.priority
            );
            for why in &reason.matched {
                let _ = writeln!(out, "  because {why}");
            }
            for other in also_matched {
                let _ = writeln!(out, "  also matched, lower priority: {other}");
            }
        }
        Route::NoMatch { rejections } => {
            let _ = writeln!(
                out,
                "no playbook answers this finding; nothing would be done"
            );
            for (name, why) in rejections {
                let _ = writeln!(out, "  {name}: {why}");
            }
        }
    }
    out
}

fn reversibility(r: Reversibility) -> &'static str {
    match r {
        Reversibility::Restores => "restores",
        Reversibility::KeepsEvidence => "keeps evidence",
        Reversibility::NothingToUndo => "nothing to undo",
        Reversibility::Irreversible => "IRREVERSIBLE",
    }
}

pub fn plan(plan: &Plan) -> String {
    let mut out = String::new();
    let f = &plan.finding;
    let _ = writeln!(out, "case {}", plan.case_id);
    let _ = writeln!(
        out,
        "finding {}  {}  severity {} ({})  account {}  region {}",
        f.id, f.finding_type, f.severity, f.severity_band, f.account_id, f.region
    );
    let _ = writeln!(
        out,
        "playbook {} (priority {})",
        plan.playbook, plan.route.priority
    );
    for why in &plan.route.matched {
        let _ = writeln!(out, "  because {why}");
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:>2}  {:<18} {:<32} {:<22} {:<10} undo",
        "#", "step", "action", "target", "approval"
    );
    for step in &plan.steps {
        let _ = writeln!(
            out,
            "{:>2}  {:<18} {:<32} {:<22} {:<10} {}",
            step.index,
            step.id,
            step.kind().to_string(),
            truncate(&step.target.label(), 22),
            if step.approval.required {
                "REQUIRED"
            } else {
                "-"
            },
            reversibility(step.reversibility)
        );
    }
    let notes: Vec<&PlannedStep> = plan
        .steps
        .iter()
        .filter(|s| {
            s.approval.required
                || s.blast_radius.is_some()
                || matches!(s.target, Target::Unresolved { .. })
        })
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(out);
        for step in notes {
            if let Some(reason) = &step.approval.reason {
                let _ = writeln!(out, "  {}: needs approval: {reason}", step.id);
            }
            if let Some(blast) = &step.blast_radius {
                let _ = writeln!(out, "  {}: blast radius: {blast}", step.id);
            }
            if let Target::Unresolved { reason } = &step.target {
                let _ = writeln!(out, "  {}: will be skipped: {reason}", step.id);
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "targets:");
    let mut seen = Vec::new();
    for step in &plan.steps {
        let label = serde_json::to_string(&step.target).unwrap_or_default();
        if seen.contains(&label) {
            continue;
        }
        seen.push(label);
        match &step.target {
            Target::Instance(i) => {
                let _ = writeln!(out, "  instance {}", i.instance_id);
                if let Some(profile) = &i.instance_profile_arn {
                    let _ = writeln!(out, "    instance profile {profile}");
                }
                for eni in &i.network_interfaces {
                    let _ = writeln!(
                        out,
                        "    {} vpc {} subnet {} groups [{}]",
                        eni.network_interface_id,
                        eni.vpc_id.as_deref().unwrap_or("?"),
                        eni.subnet_id.as_deref().unwrap_or("?"),
                        eni.security_group_ids.join(", ")
                    );
                }
            }
            Target::AccessKey(k) => {
                let _ = writeln!(
                    out,
                    "  access key {} ({:?}) of {} ({})",
                    k.access_key_id,
                    k.key_kind,
                    k.user_name.as_deref().unwrap_or("unknown user"),
                    k.user_type.as_deref().unwrap_or("unknown type")
                );
            }
            Target::Case => {}
            other => {
                let _ = writeln!(out, "  {}", other.label());
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "IAM permissions needed ({}):", plan.permissions.len());
    for chunk in plan.permissions.chunks(4) {
        let _ = writeln!(out, "  {}", chunk.join("  "));
    }
    out
}

pub fn dry_run(steps: &[DryRunStep]) -> String {
    let mut out = String::from("\ndry run: nothing was changed; these calls would be made:\n");
    for step in steps {
        let _ = writeln!(out, "  {}:", step.step);
        if let Some(note) = &step.note {
            let _ = writeln!(out, "    ({note})");
        }
        if step.calls.is_empty() && step.note.is_none() {
            let _ = writeln!(out, "    (no change needed)");
        }
        for call in &step.calls {
            let _ = writeln!(out, "    {call}");
        }
    }
    out
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut t: String = text.chars().take(width.saturating_sub(1)).collect();
        t.push('~');
        t
    }
}

pub fn approval_prompt(plan: &Plan, step: &PlannedStep) -> String {
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(out, "step `{}` ({}) needs approval", step.id, step.kind());
    let _ = writeln!(out, "  case:   {}", plan.case_id);
    let _ = writeln!(out, "  target: {}", step.target.label());
    if let Some(reason) = &step.approval.reason {
        let _ = writeln!(out, "  why:    {reason}");
    }
    if let Some(blast) = &step.blast_radius {
        let _ = writeln!(out, "  blast radius: {blast}");
    }
    let _ = writeln!(out, "  undo:   {}", reversibility(step.reversibility));
    let _ = write!(
        out,
        "approve? [y]es / [n]o (refuse) / anything else to decide later: "
    );
    out
}

/// One line of the live timeline.
pub fn timeline_line(
    elapsed: Duration,
    step_elapsed: Option<Duration>,
    record: &JournalRecord,
) -> String {
    let detail = match &record.event {
        JournalEvent::CaseOpened { plan, .. } => {
            format!("{} steps, playbook {}", plan.steps.len(), plan.playbook)
        }
        JournalEvent::ApprovalRequested { reason, .. } => format!("waiting: {reason}"),
        JournalEvent::ApprovalGranted { approver, .. } => format!("by {approver}"),
        JournalEvent::ApprovalRefused {
            approver, reason, ..
        } => format!("by {approver}: {reason}"),
        JournalEvent::StepPrepared { attempt, .. } => {
            format!("pre-state saved (attempt {attempt})")
        }
        JournalEvent::StepApplied { duration_ms, .. } => format!("applied in {duration_ms} ms"),
        JournalEvent::StepVerified { .. } => "verified".to_string(),
        JournalEvent::StepFailed {
            attempt,
            error,
            retrying,
            ..
        } => format!(
            "attempt {attempt} failed{}: {} ({})",
            if *retrying { ", retrying" } else { "" },
            error.message,
            error.resource
        ),
        JournalEvent::StepSkipped { reason, .. } => format!("skipped: {reason}"),
        JournalEvent::StepNotRun { reason, .. } => format!("not run: {reason}"),
        JournalEvent::RollbackStarted { reason } => format!("rollback: {reason}"),
        JournalEvent::StepRolledBack { .. } => "undone".to_string(),
        JournalEvent::StepRollbackVerified { .. } => "back at pre-state (verified)".to_string(),
        JournalEvent::StepRollbackFailed { error, .. } => {
            format!("undo failed: {} ({})", error.message, error.resource)
        }
        JournalEvent::CaseFinished { status } => format!("case {status}"),
        JournalEvent::EpochOpened { epoch, reason, .. } => format!("epoch {epoch}: {reason}"),
        JournalEvent::FindingUpdated { change, .. } => format!("finding updated: {change}"),
        JournalEvent::PlanAmended { reason, .. } => reason.clone(),
        JournalEvent::StepPreStateAmended { added, .. } => {
            format!("pre-state amended: added {}", added.join(", "))
        }
        JournalEvent::StepProgress { progress, .. } => progress_line(progress),
        JournalEvent::ApprovalTimedOut { waited_ms, .. } => {
            format!("nobody answered in {} s", waited_ms / 1000)
        }
        JournalEvent::CaseInterrupted { reason } => reason.clone(),
        JournalEvent::UndoApproved { approver, .. } => format!("undo approved by {approver}"),
        JournalEvent::UndoKept { reason, .. } => reason.clone(),
        JournalEvent::LoopGuardTripped { reason, .. } => reason.clone(),
    };
    let step = record.event.step().unwrap_or("-");
    let step_time = step_elapsed
        .filter(|d| !d.is_zero())
        .map(|d| format!(" [{} ms]", d.as_millis()))
        .unwrap_or_default();
    format!(
        "{:>8.3}s  #{:<3} {:<18} {:<24} {detail}{step_time}",
        elapsed.as_secs_f64(),
        record.seq,
        step,
        record.event.name()
    )
}

/// A step's progress record in a few words (`phase` and what it is about).
fn progress_line(progress: &serde_json::Value) -> String {
    match progress.get("phase").and_then(|p| p.as_str()) {
        Some(phase) => {
            let about = progress
                .get("about")
                .and_then(|a| a.as_str())
                .unwrap_or_default();
            format!("{phase} {about}").trim_end().to_string()
        }
        None => progress.to_string(),
    }
}

pub fn status(state: &CaseState, records: &[JournalRecord]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "case {}  playbook {}  status {}",
        state.plan.case_id,
        state.plan.playbook,
        state
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "in progress (interrupted?)".to_string())
    );
    let _ = writeln!(
        out,
        "finding {} {}",
        state.plan.finding.id, state.plan.finding.finding_type
    );
    let _ = writeln!(out);
    for step in &state.plan.steps {
        let s = state.step(&step.id).cloned().unwrap_or_default();
        let word = if s.rollback_verified {
            "rolled back"
        } else if s.undo_kept.is_some() {
            "KEPT (undo needs approval)"
        } else if s.rollback_failed.is_some() {
            "ROLLBACK FAILED"
        } else if s.verified {
            "done"
        } else if s.failed_final.is_some() {
            "FAILED"
        } else if s.skipped.is_some() {
            "skipped"
        } else if s.not_run.is_some() {
            "not run"
        } else if s.approval_requested && s.approved_by.is_none() {
            "awaiting approval"
        } else if s.touched() {
            "prepared (interrupted)"
        } else {
            "pending"
        };
        let _ = writeln!(
            out,
            "  {:>2}  {:<18} {:<32} {word}",
            step.index,
            step.id,
            step.kind().to_string()
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "journal ({} records):", records.len());
    for record in records {
        let _ = writeln!(
            out,
            "  {}  #{:<3} {:<18} {}",
            record.at,
            record.seq,
            record.event.step().unwrap_or("-"),
            record.event.name()
        );
    }
    out
}

/// The top of `cordon status`: where the case is in its lifecycle, and
/// what must not be missed (ENIs open to the world between the isolation phases).
pub fn summary_header(summary: &CaseSummary, live: Option<&[LiveEni]>) -> String {
    let mut out = String::new();
    let red = std::io::stdout().is_terminal();
    let _ = writeln!(
        out,
        "lifecycle: {}  epoch {}  opened {}  time to contain {}  waited for approval {}",
        summary.status,
        summary.epoch,
        summary.opened_at,
        summary
            .time_to_contain_ms
            .map(millis)
            .unwrap_or_else(|| "-".to_string()),
        millis(summary.approval_wait_ms)
    );
    if !summary.open_network_interfaces.is_empty() {
        let line = format!(
            "OPEN: {} entered the allow-all untrack group and were not seen leaving it; `cordon resume` or `cordon rollback` closes them",
            summary.open_network_interfaces.join(", ")
        );
        if red {
            let _ = writeln!(out, "\x1b[1;31m{line}\x1b[0m");
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
    if let Some(live) = live {
        for eni in live {
            let _ = writeln!(
                out,
                "  live: {} is {} ({})",
                eni.network_interface_id, eni.state, eni.detail
            );
        }
    }
    let other_flags: Vec<&String> = summary
        .flags
        .iter()
        .filter(|f| !f.starts_with("OPEN ENI"))
        .collect();
    if !other_flags.is_empty() {
        let flags: Vec<&str> = other_flags.iter().map(|f| f.as_str()).collect();
        let _ = writeln!(out, "flags: {}", flags.join("; "));
    }
    let _ = writeln!(out);
    out
}

fn millis(ms: u64) -> String {
    if ms >= 60_000 {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{:.3}s", ms as f64 / 1000.0)
    }
}

/// `cordon cases`: one line per case.
pub fn cases(rows: &[CaseSummary], unreadable: &[UnreadableCase]) -> String {
    if rows.is_empty() && unreadable.is_empty() {
        return "no cases\n".to_string();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<25}  {:<30} {:>5} {:>10} {:>10}  {:<26} flags",
        "case", "status", "epoch", "contain", "approval", "playbook"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{:<25}  {:<30} {:>5} {:>10} {:>10}  {:<26} {}",
            row.case_id,
            row.status,
            row.epoch,
            row.time_to_contain_ms
                .map(millis)
                .unwrap_or_else(|| "-".to_string()),
            millis(row.approval_wait_ms),
            row.playbook,
            row.flags.join("; ")
        );
    }
    for row in unreadable {
        let _ = writeln!(out, "{:<25}  unreadable: {}", row.case_id, row.error);
    }
    out
}

/// The prompt for an undo that re-arms credentials or deletes evidence.
pub fn undo_prompt(plan: &Plan, step: &PlannedStep, gate: UndoGate) -> String {
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "undo of step `{}` ({}) needs approval",
        step.id,
        step.kind()
    );
    let _ = writeln!(out, "  case:   {}", plan.case_id);
    let _ = writeln!(out, "  target: {}", step.target.label());
    let _ = writeln!(out, "  undo:   {}", gate.reason());
    let _ = write!(
        out,
        "undo it? [y]es / [n]o (keep it contained) / anything else to keep it for now: "
    );
    out
}
