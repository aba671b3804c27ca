//! Text rendering for the terminal: plans, routes, timelines, status.
//!
//! Finding-, AWS- and journal-derived text goes through
//! [`cordon_core::text::escape`] wherever it is interpolated, so a newline, an
//! ANSI escape or a bidi override in a user name or finding type is shown
//! escaped and can never forge a line or recolour the terminal.

use std::fmt::Write;
use std::time::Duration;

use std::io::IsTerminal;

use cordon_core::action::{Reversibility, UndoGate};
use cordon_core::claims::ResourceHolder;
use cordon_core::executor::DryRunStep;
use cordon_core::finding::{Finding, Source};
use cordon_core::journal::{CaseState, CaseStatus, JournalEvent, JournalRecord};
use cordon_core::plan::{CaseId, Plan, PlannedStep, Target};
use cordon_core::route::Route;
use cordon_core::summary::CaseSummary;
use cordon_core::text::escape;

use crate::live::LiveEni;
use crate::output::UnreadableCase;

pub fn route(finding: &Finding, route: &Route) -> String {
    let mut out = String::new();
    match &finding.config {
        Some(config) => {
            let _ = writeln!(
                out,
                "finding {}  Config rule {}  {} {}  {}",
                escape(&finding.id),
                escape(&config.rule_name),
                escape(&config.resource_type),
                escape(&config.resource_id),
                escape(&config.compliance)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "finding {}  {}  severity {} ({}){}",
                escape(&finding.id),
                escape(&finding.finding_type.raw),
                finding.severity,
                finding.severity.band(),
                match (finding.source, finding.product_name()) {
                    (Source::GuardDuty, _) => String::new(),
                    (source, Some(product)) => format!("  {product} via {source}"),
                    (source, None) => format!("  via {source}"),
                }
            );
        }
    }
    if let (Route::NoMatch { .. }, Some(why)) = (route, finding.nothing_to_do()) {
        let _ = writeln!(out, "{}", escape(&why));
        return out;
    }
    match route {
        Route::Matched {
            reason,
            also_matched,
        } => {
            let _ = writeln!(
                out,
                "playbook: {} (priority {})",
                escape(&reason.playbook),
                reason.priority
            );
            for why in &reason.matched {
                let _ = writeln!(out, "  because {}", escape(why));
            }
            for other in also_matched {
                let _ = writeln!(out, "  also matched, lower priority: {}", escape(other));
            }
        }
        Route::NoMatch { rejections } => {
            let _ = writeln!(
                out,
                "no playbook answers this finding; nothing would be done"
            );
            for (name, why) in rejections {
                let _ = writeln!(out, "  {}: {}", escape(name), escape(why));
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
    let _ = writeln!(out, "case {}", escape(plan.case_id.as_str()));
    let _ = writeln!(
        out,
        "finding {}  {}  severity {} ({})  account {}  region {}",
        escape(&f.id),
        escape(&f.finding_type),
        f.severity,
        escape(&f.severity_band),
        escape(&f.account_id),
        escape(&f.region)
    );
    let _ = writeln!(
        out,
        "playbook {} (priority {})",
        escape(&plan.playbook),
        plan.route.priority
    );
    for why in &plan.route.matched {
        let _ = writeln!(out, "  because {}", escape(why));
    }
    if let Some(set) = &plan.playbook_set {
        let _ = writeln!(
            out,
            "  from the playbooks at {} (set sha256 {})",
            escape(&set.origin),
            escape(&set.sha256)
        );
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
            escape(&step.id),
            step.kind().to_string(),
            truncate(&escape(&step.target.label()), 22),
            if step.approval.required {
                "REQUIRED"
            } else {
                "-"
            },
            reversibility(step.reversibility)
        );
    }
    graph(&mut out, plan);
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
            let id = escape(&step.id);
            if let Some(reason) = &step.approval.reason {
                let _ = writeln!(out, "  {id}: needs approval: {}", escape(reason));
            }
            if let Some(blast) = &step.blast_radius {
                let _ = writeln!(out, "  {id}: blast radius: {}", escape(blast));
            }
            if let Target::Unresolved { reason } = &step.target {
                let _ = writeln!(out, "  {id}: will be skipped: {}", escape(reason));
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
                let _ = writeln!(out, "  instance {}", escape(&i.instance_id));
                if let Some(profile) = &i.instance_profile_arn {
                    let _ = writeln!(out, "    instance profile {}", escape(profile));
                }
                for eni in &i.network_interfaces {
                    let groups: Vec<&str> =
                        eni.security_group_ids.iter().map(|g| g.as_str()).collect();
                    let _ = writeln!(
                        out,
                        "    {} vpc {} subnet {} groups [{}]",
                        eni.network_interface_id,
                        eni.vpc_id.as_deref().unwrap_or("?"),
                        eni.subnet_id.as_deref().unwrap_or("?"),
                        groups.join(", ")
                    );
                }
            }
            Target::AccessKey(k) => {
                let _ = writeln!(
                    out,
                    "  access key {} ({:?}) of {} ({})",
                    escape(&k.access_key_id),
                    k.key_kind,
                    escape(k.user_name.as_deref().unwrap_or("unknown user")),
                    escape(k.user_type.as_deref().unwrap_or("unknown type"))
                );
            }
            Target::Case => {}
            other => {
                let _ = writeln!(out, "  {}", escape(&other.label()));
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "IAM permissions needed ({}):", plan.permissions.len());
    for chunk in plan.permissions.chunks(4) {
        let _ = writeln!(out, "  {}", escape(&chunk.join("  ")));
    }
    out
}

/// For a plan whose steps declare `needs`: what each step needs, and the
/// levels of steps that run together. A sequential plan (no `needs`) runs in
/// the order of the table and shows nothing more.
fn graph(out: &mut String, plan: &Plan) {
    if !plan.is_graph() {
        return;
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "needs (a step starts once every step it needs is done):"
    );
    for step in &plan.steps {
        let needs: Vec<String> = plan
            .needs(step)
            .iter()
            .map(|n| escape(n).into_owned())
            .collect();
        let needs = if needs.is_empty() {
            "nothing".to_string()
        } else {
            needs.join(", ")
        };
        let _ = writeln!(out, "  {:<18} {needs}", escape(&step.id));
    }
    let _ = writeln!(out, "runs together:");
    let levels = plan.levels();
    for (level, steps) in levels.iter().enumerate() {
        let ids: Vec<String> = steps.iter().map(|s| escape(&s.id).into_owned()).collect();
        let _ = writeln!(out, "  {:>2}  {}", level + 1, ids.join("  "));
    }
    let placed: usize = levels.iter().map(Vec::len).sum();
    if placed < plan.steps.len() {
        let _ = writeln!(
            out,
            "  {} step(s) can never start: their needs form a cycle or name a step the plan does not have",
            plan.steps.len() - placed
        );
    }
}

pub fn dry_run(steps: &[DryRunStep]) -> String {
    let mut out = String::from("\ndry run: nothing was changed; these calls would be made:\n");
    for step in steps {
        let _ = writeln!(out, "  {}:", escape(&step.step));
        if let Some(note) = &step.note {
            let _ = writeln!(out, "    ({})", escape(note));
        }
        if step.calls.is_empty() && step.note.is_none() {
            let _ = writeln!(out, "    (no change needed)");
        }
        for call in &step.calls {
            let _ = writeln!(out, "    {}", escape(call));
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
    let _ = writeln!(
        out,
        "step `{}` ({}) needs approval",
        escape(&step.id),
        step.kind()
    );
    let _ = writeln!(out, "  case:   {}", escape(plan.case_id.as_str()));
    let _ = writeln!(out, "  target: {}", escape(&step.target.label()));
    if let Some(reason) = &step.approval.reason {
        let _ = writeln!(out, "  why:    {}", escape(reason));
    }
    if let Some(blast) = &step.blast_radius {
        let _ = writeln!(out, "  blast radius: {}", escape(blast));
    }
    let _ = writeln!(out, "  undo:   {}", reversibility(step.reversibility));
    let _ = write!(
        out,
        "approve? [y]es / [n]o (refuse) / anything else to decide later: "
    );
    out
}

/// `; source-verified; acting as ARN`: what the journal says of where the
/// finding came from and whose credentials act on it.
fn provenance_note(provenance: Option<&cordon_core::provenance::Provenance>) -> String {
    let Some(p) = provenance else {
        return String::new();
    };
    let mut note = String::from(if p.source_verified {
        "; source-verified"
    } else {
        "; source not verified"
    });
    if let Some(acting) = &p.acting_as {
        note.push_str(&format!("; acting as {}", escape(acting)));
    }
    note
}

/// One line of the live timeline.
pub fn timeline_line(
    elapsed: Duration,
    step_elapsed: Option<Duration>,
    record: &JournalRecord,
) -> String {
    let detail = event_detail(&record.event);
    let step = escape(record.event.step().unwrap_or("-"));
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

/// What a journal record says, in a few words, with its untrusted text
/// terminal-escaped (the live timeline, `cordon status` and the case report).
pub fn event_detail(event: &JournalEvent) -> String {
    match event {
        JournalEvent::CaseOpened {
            plan, provenance, ..
        } => {
            format!(
                "{} steps, playbook {}{}",
                plan.steps.len(),
                escape(&plan.playbook),
                provenance_note(provenance.as_ref())
            )
        }
        JournalEvent::ApprovalRequested { reason, .. } => format!("waiting: {}", escape(reason)),
        JournalEvent::ApprovalGranted { approver, .. } => format!("by {}", escape(approver)),
        JournalEvent::ApprovalRefused {
            approver, reason, ..
        } => format!("by {}: {}", escape(approver), escape(reason)),
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
            escape(&error.message),
            escape(&error.resource)
        ),
        JournalEvent::StepSkipped { reason, .. } => format!("skipped: {}", escape(reason)),
        JournalEvent::StepNotRun { reason, .. } => format!("not run: {}", escape(reason)),
        JournalEvent::RollbackStarted { reason } => format!("rollback: {}", escape(reason)),
        JournalEvent::StepRolledBack { .. } => "undone".to_string(),
        JournalEvent::StepRollbackVerified { .. } => "back at pre-state (verified)".to_string(),
        JournalEvent::StepRollbackFailed { error, .. } => {
            format!(
                "undo failed: {} ({})",
                escape(&error.message),
                escape(&error.resource)
            )
        }
        JournalEvent::CaseFinished { status } => format!("case {status}"),
        JournalEvent::EpochOpened {
            epoch,
            reason,
            provenance,
            ..
        } => {
            format!(
                "epoch {epoch}: {}{}",
                escape(reason),
                provenance_note(provenance.as_ref())
            )
        }
        JournalEvent::FindingUpdated { change, .. } => {
            format!("finding updated: {}", escape(change))
        }
        JournalEvent::PlanAmended { reason, .. } => escape(reason).into_owned(),
        JournalEvent::StepPreStateAmended { added, .. } => {
            format!("pre-state amended: added {}", escape(&added.join(", ")))
        }
        JournalEvent::StepProgress { progress, .. } => progress_line(progress),
        JournalEvent::ApprovalTimedOut { waited_ms, .. } => {
            format!("nobody answered in {} s", waited_ms / 1000)
        }
        JournalEvent::CaseInterrupted { reason } => escape(reason).into_owned(),
        JournalEvent::UndoApproved { approver, .. } => {
            format!("undo approved by {}", escape(approver))
        }
        JournalEvent::UndoKept { reason, .. } => escape(reason).into_owned(),
        JournalEvent::LoopGuardTripped { reason, .. }
        | JournalEvent::FleetCapTripped { reason, .. } => escape(reason).into_owned(),
        JournalEvent::CasePaused {
            before_step,
            switch,
        } => format!(
            "paused before `{}` ({})",
            escape(before_step),
            escape(switch)
        ),
        JournalEvent::ResourceClaimed {
            resource,
            taken_over_from,
        } => match taken_over_from {
            Some(from) => format!(
                "claimed {} (taken over from rolled-back case {from})",
                escape(resource)
            ),
            None => format!("claimed {}", escape(resource)),
        },
        JournalEvent::ResourceReleased { resource } => format!("released {}", escape(resource)),
        JournalEvent::ResourceBusy { reason, .. } => {
            format!("not acted on: {}", escape(reason))
        }
    }
}

/// A step's progress record in a few words (`phase` and what it is about).
fn progress_line(progress: &serde_json::Value) -> String {
    match progress.get("phase").and_then(|p| p.as_str()) {
        Some(phase) => {
            let about = progress
                .get("about")
                .and_then(|a| a.as_str())
                .unwrap_or_default();
            format!("{} {}", escape(phase), escape(about))
                .trim_end()
                .to_string()
        }
        None => escape(&progress.to_string()).into_owned(),
    }
}

pub fn status(state: &CaseState, records: &[JournalRecord]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "case {}  playbook {}  status {}",
        escape(state.plan.case_id.as_str()),
        escape(&state.plan.playbook),
        state
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "in progress (interrupted?)".to_string())
    );
    let _ = writeln!(
        out,
        "finding {} {}",
        escape(&state.plan.finding.id),
        escape(&state.plan.finding.finding_type)
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
            escape(&step.id),
            step.kind().to_string()
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "journal ({} records):", records.len());
    for record in records {
        let _ = writeln!(
            out,
            "  {}  #{:<3} {:<18} {}",
            escape(&record.at),
            record.seq,
            escape(record.event.step().unwrap_or("-")),
            record.event.name()
        );
    }
    out
}

/// The top of `cordon status`: where the case is in its lifecycle, and
/// what must not be missed (ENIs open to the world between the isolation phases).
/// One line per resource of the case: who holds it (the holder is the case
/// to roll back to free it).
pub fn holders(case: &CaseId, holders: &[ResourceHolder]) -> String {
    let mut out = String::new();
    for holder in holders {
        let who = match &holder.held_by {
            None => "not held by any case".to_string(),
            Some(by) if by == case => "held by this case".to_string(),
            Some(by) => {
                format!("held by case {by} (`cordon status {by}`; rolling it back lets go)")
            }
        };
        let since = holder
            .since
            .as_deref()
            .map(|at| format!(" since {}", escape(at)))
            .unwrap_or_default();
        let _ = writeln!(out, "resource {}: {who}{since}", escape(&holder.resource));
    }
    out
}

pub fn summary_header(summary: &CaseSummary, live: Option<&[LiveEni]>) -> String {
    let mut out = String::new();
    let red = std::io::stdout().is_terminal();
    let _ = writeln!(
        out,
        "lifecycle: {}  epoch {}  opened {}  time to contain {}  waited for approval {}",
        escape(&summary.status),
        summary.epoch,
        escape(&summary.opened_at),
        summary
            .time_to_contain_ms
            .map(millis)
            .unwrap_or_else(|| "-".to_string()),
        millis(summary.approval_wait_ms)
    );
    let status =
        serde_json::from_value::<CaseStatus>(serde_json::Value::String(summary.status.clone()))
            .ok();
    let _ = writeln!(
        out,
        "next: {}",
        CaseStatus::next_steps(status).replace("CASE", &escape(&summary.case_id))
    );
    if !summary.open_network_interfaces.is_empty() {
        let line = format!(
            "OPEN: {} entered the allow-all untrack group and were not seen leaving it; `cordon resume` or `cordon rollback` closes them",
            escape(&summary.open_network_interfaces.join(", "))
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
                escape(&eni.network_interface_id),
                escape(&eni.state),
                escape(&eni.detail)
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
        let _ = writeln!(out, "flags: {}", escape(&flags.join("; ")));
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
            escape(&row.case_id),
            escape(&row.status),
            row.epoch,
            row.time_to_contain_ms
                .map(millis)
                .unwrap_or_else(|| "-".to_string()),
            millis(row.approval_wait_ms),
            escape(&row.playbook),
            escape(&row.flags.join("; "))
        );
    }
    for row in unreadable {
        let _ = writeln!(
            out,
            "{:<25}  unreadable: {}",
            escape(&row.case_id),
            escape(&row.error)
        );
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
        escape(&step.id),
        step.kind()
    );
    let _ = writeln!(out, "  case:   {}", escape(plan.case_id.as_str()));
    let _ = writeln!(out, "  target: {}", escape(&step.target.label()));
    let _ = writeln!(out, "  undo:   {}", gate.reason());
    let _ = write!(
        out,
        "undo it? [y]es / [n]o (keep it contained) / anything else to keep it for now: "
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use cordon_core::executor::DryRunStep;
    use cordon_core::finding::parse_single_finding;
    use cordon_core::journal::{CaseState, ErrorRecord, JournalEvent, JournalRecord};
    use cordon_core::plan::{AccessKeyTarget, Plan, Target, try_plan};
    use cordon_core::route::{Route, route as route_finding};
    use cordon_core::text::needs_escape;
    use cordon_core::validate::validate_text;

    use super::*;

    /// Text that would forge a line, hide the rest, recolour the terminal
    /// (7-bit and 8-bit CSI) and reverse what follows.
    const EVIL: &str = "bob\n  forged-line REQUIRED\r\u{1b}[8m\u{9b}2J\u{202e}exe.txt\u{2069}";
    /// The same structure, harmless.
    const CLEAN: &str = "bob";

    const FINDING: &str = r#"{"schemaVersion":"2.0","accountId":"111122223333","region":"us-east-1","partition":"aws",
        "id":"1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f","type":"UnauthorizedAccess:IAMUser/MaliciousIPCaller","severity":8,
        "resource":{"resourceType":"AccessKey","accessKeyDetails":{"accessKeyId":"AKIAEXAMPLEDEPLOY042",
        "principalId":"AIDAEXAMPLEUSERID0042","userName":"deploy-bot","userType":"IAMUser"}},
        "service":{"resourceRole":"TARGET"}}"#;

    const PLAYBOOK: &str = "name: keys\nmatch: {finding-types: [\"*:IAMUser/*\"]}\nsteps:\n\
        - {id: deactivate, action: deactivate-access-key}\n\
        - {id: quarantine, action: quarantine-user, approval: required}\n\
        - {id: tell, action: notify}\n";

    fn finding_and_plan() -> (Finding, Plan) {
        let finding = parse_single_finding(FINDING, "test").unwrap();
        let (playbook, _) = validate_text(PLAYBOOK, "keys.yaml").unwrap();
        let (Route::Matched { reason, .. }, Some(_)) =
            route_finding(&finding, std::slice::from_ref(&playbook))
        else {
            panic!("the playbook must match");
        };
        let plan = try_plan(&finding, &playbook, reason).unwrap();
        (finding, plan)
    }

    /// `plan` with every text field a finding, AWS or a journal could put in
    /// front of a responder set to `text` (bypassing validation, so this tests
    /// the renderer alone).
    fn tainted(text: &str) -> (Finding, Plan) {
        let (mut finding, mut plan) = finding_and_plan();
        finding.id = text.to_string();
        plan.finding.id = text.to_string();
        plan.finding.finding_type = text.to_string();
        plan.finding.account_id = text.to_string();
        plan.finding.region = text.to_string();
        plan.playbook = text.to_string();
        plan.route.matched.push(text.to_string());
        for step in &mut plan.steps {
            step.id = format!("{}-{text}", step.id);
            step.approval.reason = step.approval.reason.as_ref().map(|_| text.to_string());
            step.blast_radius = Some(text.to_string());
        }
        plan.steps[0].target = Target::AccessKey(AccessKeyTarget {
            access_key_id: text.to_string(),
            user_name: Some(text.to_string()),
            user_type: Some(text.to_string()),
            key_kind: cordon_core::finding::KeyKind::LongTerm,
            principal_id: Some(text.to_string()),
        });
        plan.steps[1].target = Target::User {
            user_name: text.to_string(),
        };
        plan.steps[2].target = Target::Unresolved {
            reason: text.to_string(),
        };
        plan.permissions.push(text.to_string());
        (finding, plan)
    }

    fn tainted_provenance(text: &str) -> cordon_core::provenance::Provenance {
        cordon_core::provenance::Provenance {
            source_verified: true,
            source: Some(text.to_string()),
            caller: Some(text.to_string()),
            assumed_role: Some(text.to_string()),
            acting_as: Some(text.to_string()),
            region: Some(text.to_string()),
        }
    }

    fn records(plan: &Plan, text: &str) -> Vec<JournalRecord> {
        let error = ErrorRecord {
            kind: text.to_string(),
            resource: text.to_string(),
            message: text.to_string(),
            hint: text.to_string(),
        };
        let step = plan.steps[0].id.clone();
        let events = vec![
            JournalEvent::CaseOpened {
                plan: Box::new(plan.clone()),
                finding_sha256: text.to_string(),
                cordon_version: text.to_string(),
                provenance: Some(tainted_provenance(text)),
            },
            JournalEvent::ApprovalRequested {
                step: step.clone(),
                reason: text.to_string(),
            },
            JournalEvent::ApprovalGranted {
                step: step.clone(),
                approver: text.to_string(),
            },
            JournalEvent::ApprovalRefused {
                step: step.clone(),
                approver: text.to_string(),
                reason: text.to_string(),
            },
            JournalEvent::StepFailed {
                step: step.clone(),
                attempt: 1,
                error: error.clone(),
                retrying: true,
            },
            JournalEvent::StepSkipped {
                step: step.clone(),
                reason: text.to_string(),
            },
            JournalEvent::StepNotRun {
                step: step.clone(),
                reason: text.to_string(),
            },
            JournalEvent::RollbackStarted {
                reason: text.to_string(),
            },
            JournalEvent::StepRollbackFailed {
                step: step.clone(),
                epoch: None,
                error,
            },
            JournalEvent::EpochOpened {
                epoch: 2,
                plan: Box::new(plan.clone()),
                finding_sha256: text.to_string(),
                reason: text.to_string(),
                provenance: Some(tainted_provenance(text)),
            },
            JournalEvent::FindingUpdated {
                finding_sha256: text.to_string(),
                updated_at: Some(text.to_string()),
                severity: 8.0,
                change: text.to_string(),
            },
            JournalEvent::PlanAmended {
                steps: plan.steps.clone(),
                reason: text.to_string(),
            },
            JournalEvent::StepPreStateAmended {
                step: step.clone(),
                pre_state: serde_json::json!({ "about": text }),
                added: vec![text.to_string()],
            },
            JournalEvent::StepProgress {
                step: step.clone(),
                progress: serde_json::json!({ "phase": text, "about": text }),
            },
            JournalEvent::StepProgress {
                step: step.clone(),
                progress: serde_json::json!({ "other": text }),
            },
            JournalEvent::CaseInterrupted {
                reason: text.to_string(),
            },
            JournalEvent::UndoApproved {
                step: step.clone(),
                epoch: None,
                approver: text.to_string(),
            },
            JournalEvent::UndoKept {
                step,
                epoch: None,
                reason: text.to_string(),
            },
            JournalEvent::LoopGuardTripped {
                resources: vec![text.to_string()],
                reason: text.to_string(),
            },
            JournalEvent::ResourceClaimed {
                resource: text.to_string(),
                taken_over_from: None,
            },
            JournalEvent::ResourceReleased {
                resource: text.to_string(),
            },
            JournalEvent::ResourceBusy {
                resource: text.to_string(),
                holder: plan.case_id.clone(),
                reason: text.to_string(),
            },
            JournalEvent::FleetCapTripped {
                isolated: vec![text.to_string()],
                limit: 1,
                window_seconds: 600,
                reason: text.to_string(),
            },
            JournalEvent::CasePaused {
                before_step: text.to_string(),
                switch: text.to_string(),
            },
        ];
        events
            .into_iter()
            .enumerate()
            .map(|(seq, event)| JournalRecord::new(seq as u64, text, "", event))
            .collect()
    }

    /// Every rendering of the tainted plan, journal and rows, as one text per renderer.
    fn rendered(text: &str) -> Vec<(&'static str, String)> {
        let (finding, plan) = tainted(text);
        let records = records(&plan, text);
        let state = CaseState::new(plan.clone());
        let row = CaseSummary {
            case_id: text.to_string(),
            playbook: text.to_string(),
            finding_id: text.to_string(),
            finding_type: text.to_string(),
            severity: 8.0,
            status: text.to_string(),
            epoch: 1,
            opened_at: text.to_string(),
            time_to_contain_ms: Some(1500),
            approval_wait_ms: 0,
            open_network_interfaces: vec![text.to_string()],
            flags: vec![text.to_string()],
        };
        let unreadable = UnreadableCase {
            case_id: text.to_string(),
            error: text.to_string(),
        };
        let live = LiveEni {
            network_interface_id: text.to_string(),
            state: text.to_string(),
            detail: text.to_string(),
        };
        let matched = Route::Matched {
            reason: plan.route.clone(),
            also_matched: vec![text.to_string()],
        };
        let unmatched = Route::NoMatch {
            rejections: vec![(text.to_string(), text.to_string())],
        };
        let dry = vec![DryRunStep {
            step: text.to_string(),
            calls: vec![text.to_string()],
            note: Some(text.to_string()),
        }];
        let timeline: String = records
            .iter()
            .map(|r| timeline_line(Duration::from_millis(1500), None, r) + "\n")
            .collect();
        vec![
            ("route", route(&finding, &matched)),
            ("no match", route(&finding, &unmatched)),
            ("plan", super::plan(&plan)),
            ("approval prompt", approval_prompt(&plan, &plan.steps[1])),
            ("timeline", timeline),
            ("status", status(&state, &records)),
            (
                "summary",
                summary_header(&row, Some(std::slice::from_ref(&live))),
            ),
            ("cases", cases(std::slice::from_ref(&row), &[unreadable])),
            (
                "undo prompt",
                undo_prompt(
                    &plan,
                    &plan.steps[0],
                    UndoGate::Credentials("re-arms the key"),
                ),
            ),
            ("dry run", dry_run(&dry)),
        ]
    }

    #[test]
    fn hostile_text_is_escaped_in_every_rendering() {
        let clean = rendered(CLEAN);
        for ((what, evil), (_, clean)) in rendered(EVIL).into_iter().zip(clean) {
            let raw: Vec<char> = evil
                .chars()
                .filter(|&c| c != '\n' && needs_escape(c))
                .collect();
            assert!(
                raw.is_empty(),
                "{what}: raw {raw:?} reached the terminal:\n{evil}"
            );
            assert_eq!(
                evil.lines().count(),
                clean.lines().count(),
                "{what}: hostile text changed the number of lines:\n{evil}\n---\n{clean}"
            );
            assert!(
                !evil
                    .lines()
                    .any(|l| l.trim_start().starts_with("forged-line")),
                "{what}: a forged line:\n{evil}"
            );
            assert!(
                evil.contains(
                    "bob\\n  forged-line REQUIRED\\r\\u{1b}[8m\\u{9b}2J\\u{202e}exe.txt\\u{2069}"
                ),
                "{what}: the text must be shown, escaped:\n{evil}"
            );
        }
    }

    #[test]
    fn a_plan_shows_what_each_step_needs_and_what_runs_together_only_for_a_graph() {
        let (_, sequential) = finding_and_plan();
        let text = plan(&sequential);
        assert!(!text.contains("runs together"), "{text}");
        let graph = PLAYBOOK.replace(
            "deactivate-access-key}",
            "deactivate-access-key, needs: []}",
        );
        let graph = graph
            .replace(
                "approval: required}",
                "approval: required, needs: [deactivate]}",
            )
            .replace("action: notify}", "action: notify, needs: [deactivate]}");
        let finding = parse_single_finding(FINDING, "test").unwrap();
        let (playbook, _) = validate_text(&graph, "keys.yaml").unwrap();
        let (Route::Matched { reason, .. }, Some(_)) =
            route_finding(&finding, std::slice::from_ref(&playbook))
        else {
            panic!("the playbook must match");
        };
        let text = plan(&try_plan(&finding, &playbook, reason).unwrap());
        assert!(text.contains("  quarantine         deactivate\n"), "{text}");
        assert!(text.contains("  deactivate         nothing\n"), "{text}");
        assert!(
            text.contains("runs together:\n   1  deactivate\n   2  quarantine  tell\n"),
            "{text}"
        );
    }
}
