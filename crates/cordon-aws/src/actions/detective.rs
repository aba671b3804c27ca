//! `enrich-with-detective`: start (or reuse) an Amazon Detective investigation
//! of the IAM user or role behind the finding, and keep its indicators as
//! evidence.
//!
//! Best effort by design: Detective ingests data up to 48 hours late, covers
//! only IAM users and roles, and exists only where a behaviour graph was set
//! up. So "no graph", "no IAM entity", a FAILED investigation or one still
//! RUNNING at the deadline are *outcomes* (`skipped` / `partial`), never
//! errors; only AWS failures (throttling, access denied) are errors, and the
//! planner marks the step best-effort so even those never stop containment.
//!
//! The only change made in AWS is creating an investigation. Undo keeps it:
//! it is evidence, and it holds no state to restore.
//!
//! The planner gives this step the *case* as its target, so the IAM entity is
//! taken from the plan's other targets (access key, user, role, or the
//! instance's profile, whose role is read with `iam:GetInstanceProfile` — a
//! permission `ActionKind::permissions` does not list for this action yet, so
//! where it is missing the step skips with a clear reason instead of failing).
//! A playbook whose only step is `enrich-with-detective` therefore skips.

use std::time::Duration;

use std::collections::BTreeMap;

use aws_sdk_detective::types::{FilterCriteria, IndicatorType, Status, StringFilter};
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use cordon_core::action::EnrichWithDetective as Params;
use cordon_core::executor::{ActionError, ErrorKind};
use cordon_core::plan::Target;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Ctx, Handler};
use crate::evidence::EvidenceRef;
use crate::ops;

/// The `enrich-with-detective` handler.
#[derive(Debug)]
pub struct EnrichWithDetective;

/// How often a running investigation is polled; Detective investigations take
/// minutes, so polling faster only burns API budget.
pub const POLL_INTERVAL: Duration = Duration::from_secs(10);
/// `ListIndicators` page size (its maximum).
const INDICATOR_PAGE: i32 = 100;
/// Existing investigations of the entity checked for an overlapping scope
/// before a new one is started (newest first).
const REUSE_CANDIDATES: usize = 5;

/// Why Detective cannot help with this finding, said once and reused.
const IAM_ONLY: &str = "Detective investigations cover IAM users and roles only";
/// Attached to every outcome: what a responder reading it must keep in mind.
const LAG_NOTE: &str =
    "best effort: Detective ingests data up to 48 h late, so a re-run later may show more";

/// What the step will investigate, decided before anything is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DetectivePreState {
    /// Why nothing will be done (no IAM entity, no behaviour graph); `None` when there is work.
    pub skip: Option<String>,
    /// The IAM user or role ARN investigated.
    pub entity_arn: Option<String>,
    /// The region's behaviour graph.
    pub graph_arn: Option<String>,
    /// An existing investigation of the entity whose scope overlaps ours, reused as is.
    pub existing_investigation: Option<String>,
    /// Scope start (RFC 3339): the finding's first event minus the lookback.
    pub scope_start: String,
    /// Scope end (RFC 3339): the finding's last event, or when the step ran.
    pub scope_end: String,
}

/// What the step recorded: an investigation and its evidence, or why it skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DetectiveOutcome {
    /// Nothing to investigate (no IAM entity, no behaviour graph).
    Skipped {
        /// Why.
        skipped: String,
    },
    /// An investigation started or reused, and what it found.
    Investigated(Box<Investigated>),
}

/// An investigation and where its indicators are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Investigated {
    pub investigation_id: String,
    pub graph_arn: String,
    pub entity_arn: String,
    /// An existing investigation was reused instead of starting one.
    pub reused: bool,
    /// `RUNNING`, `SUCCESSFUL`, `FAILED` as Detective reported it last.
    pub status: String,
    /// Detective's severity, as it answered (absent while running).
    pub severity: Value,
    /// Indicators found, per indicator type.
    pub indicator_counts: BTreeMap<String, u64>,
    /// The investigation and its indicators, as evidence.
    pub evidence: EvidenceRef,
    /// The indicators were not collected (the investigation failed or outlasted the step).
    pub partial: bool,
    /// Why, when partial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_reason: Option<String>,
    /// What a responder should keep in mind (Detective's data lag).
    pub note: String,
}

/// Rollback keeps the investigation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DetectiveUndone {
    /// Why nothing is undone.
    pub note: String,
    /// The investigation kept, when the step started one.
    pub investigation_id: Option<String>,
}

impl DetectivePreState {
    fn skipped(reason: impl Into<String>, start: DateTime, end: DateTime) -> Self {
        Self {
            skip: Some(reason.into()),
            entity_arn: None,
            graph_arn: None,
            existing_investigation: None,
            scope_start: fmt_time(start),
            scope_end: fmt_time(end),
        }
    }
}

fn now() -> DateTime {
    DateTime::from_secs(OffsetDateTime::now_utc().unix_timestamp())
}

fn fmt_time(time: DateTime) -> String {
    // Whole seconds since the epoch always format; the fallback is unreachable in practice.
    time.fmt(Format::DateTime)
        .unwrap_or_else(|_| time.secs().to_string())
}

fn parse_time(text: &str) -> Option<DateTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(|t| DateTime::from_secs(t.unix_timestamp()))
}

fn bad_time(ctx: Ctx<'_>, text: &str) -> ActionError {
    ActionError::new(
        ErrorKind::Other,
        format!("step {}", ctx.step.id),
        format!("cannot read the journaled investigation scope time {text:?}"),
        "the journal was edited or written by another cordon version; re-plan the case",
    )
}

/// Where the entity comes from: the step's own target if it names one,
/// else the first IAM principal any step of the plan targets (the
/// `enrich-with-detective` step itself targets the case).
enum Entity {
    Arn(String),
    /// An instance profile whose role must be read from IAM.
    InstanceProfile(String),
}

fn entity_in_plan(ctx: Ctx<'_>) -> Option<Entity> {
    let finding = &ctx.plan.finding;
    let arn = |kind: &str, name: &str| {
        Entity::Arn(format!(
            "arn:{}:iam::{}:{kind}/{name}",
            finding.partition, finding.account_id
        ))
    };
    let from_target = |target: &Target| match target {
        Target::User { user_name } => Some(arn("user", user_name)),
        Target::Role {
            role_name: Some(role),
            ..
        } => Some(arn("role", role)),
        Target::AccessKey(key) => match (key.user_type.as_deref(), key.user_name.as_deref()) {
            (Some("IAMUser"), Some(user)) => Some(arn("user", user)),
            // For assumed-role keys GuardDuty's userName is the role name.
            (Some("AssumedRole"), Some(role)) => Some(arn("role", role)),
            _ => None,
        },
        Target::Role {
            role_name: None,
            instance_profile_arn: Some(profile),
            ..
        } => Some(Entity::InstanceProfile(profile.clone())),
        Target::Instance(instance) => instance
            .instance_profile_arn
            .clone()
            .map(Entity::InstanceProfile),
        _ => None,
    };
    std::iter::once(&ctx.step.target)
        .chain(ctx.plan.steps.iter().map(|step| &step.target))
        .find_map(from_target)
}

/// The role of an instance profile, or why it cannot be had (a reason to skip,
/// not an error: enrichment must never fail a case over IAM read access).
async fn profile_role(ctx: Ctx<'_>, profile_arn: &str) -> Result<String, String> {
    let name = profile_arn.rsplit('/').next().unwrap_or(profile_arn);
    let clients = ctx.clients();
    let request = clients
        .iam
        .get_instance_profile()
        .instance_profile_name(name);
    let out = clients
        .call(&ops::IAM_GET_INSTANCE_PROFILE, profile_arn, request)
        .await
        .map_err(|e| {
            format!(
                "{IAM_ONLY}, and the role of instance profile {profile_arn} could not be read: {}",
                e.message()
            )
        })?;
    out.instance_profile()
        .and_then(|profile| profile.roles().first())
        .map(|role| role.arn().to_owned())
        .ok_or_else(|| format!("{IAM_ONLY}, and instance profile {profile_arn} holds no role"))
}

async fn graph_arn(ctx: Ctx<'_>) -> Result<Option<String>, ActionError> {
    let clients = ctx.clients();
    let request = clients.detective.list_graphs();
    let out = clients
        .call(&ops::DETECTIVE_LIST_GRAPHS, &clients.region, request)
        .await?;
    Ok(out
        .graph_list()
        .iter()
        .find_map(|graph| graph.arn().map(str::to_owned)))
}

/// An investigation of `entity` whose scope overlaps `[start, end]` and that did
/// not fail: reusing it avoids piling up duplicate investigations on re-runs.
async fn existing_investigation(
    ctx: Ctx<'_>,
    graph: &str,
    entity: &str,
    start: DateTime,
    end: DateTime,
) -> Result<Option<String>, ActionError> {
    let clients = ctx.clients();
    let filter = StringFilter::builder().value(entity).build().map_err(|e| {
        ActionError::new(
            ErrorKind::Other,
            entity.to_owned(),
            format!("cannot build the investigation filter: {e}"),
            "report this as a cordon bug",
        )
    })?;
    let request = clients
        .detective
        .list_investigations()
        .graph_arn(graph)
        .filter_criteria(FilterCriteria::builder().entity_arn(filter).build());
    let out = clients
        .call(&ops::DETECTIVE_LIST_INVESTIGATIONS, entity, request)
        .await?;
    let mut candidates: Vec<_> = out
        .investigation_details()
        .iter()
        .filter(|detail| detail.entity_arn().is_none_or(|arn| arn == entity))
        .filter(|detail| detail.status() != Some(&Status::Failed))
        .filter_map(|detail| {
            detail
                .investigation_id()
                .map(|id| (detail.created_time().map(DateTime::secs), id.to_owned()))
        })
        .collect();
    candidates.sort_by_key(|(created, _)| std::cmp::Reverse(*created));
    for (_, id) in candidates.into_iter().take(REUSE_CANDIDATES) {
        let request = clients
            .detective
            .get_investigation()
            .graph_arn(graph)
            .investigation_id(&id);
        let detail = clients
            .call(&ops::DETECTIVE_GET_INVESTIGATION, &id, request)
            .await?;
        let overlaps = match (detail.scope_start_time(), detail.scope_end_time()) {
            (Some(s), Some(e)) => s.secs() <= end.secs() && e.secs() >= start.secs(),
            _ => false,
        };
        if overlaps && detail.status() != Some(&Status::Failed) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// The last `GetInvestigation` answer, typed summary plus raw JSON when captured.
struct Investigation {
    status: Option<Status>,
    summary: Value,
}

async fn get_investigation(
    ctx: Ctx<'_>,
    graph: &str,
    id: &str,
) -> Result<Investigation, ActionError> {
    let clients = ctx.clients();
    let request = clients
        .detective
        .get_investigation()
        .graph_arn(graph)
        .investigation_id(id);
    let answer = clients
        .call_raw(&ops::DETECTIVE_GET_INVESTIGATION, id, request)
        .await?;
    let out = answer.output;
    let raw = answer
        .body
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    let summary = raw.unwrap_or_else(|| {
        json!({
            "GraphArn": out.graph_arn(),
            "InvestigationId": out.investigation_id(),
            "EntityArn": out.entity_arn(),
            "EntityType": out.entity_type().map(|t| t.as_str()),
            "CreatedTime": out.created_time().map(|t| fmt_time(*t)),
            "ScopeStartTime": out.scope_start_time().map(|t| fmt_time(*t)),
            "ScopeEndTime": out.scope_end_time().map(|t| fmt_time(*t)),
            "Status": out.status().map(|s| s.as_str()),
            "Severity": out.severity().map(|s| s.as_str()),
            "State": out.state().map(|s| s.as_str()),
        })
    });
    Ok(Investigation {
        status: out.status().cloned(),
        summary,
    })
}

/// Every indicator, all pages: raw JSON when the body was captured, else
/// the type and the SDK's rendering of the detail.
async fn list_indicators(
    ctx: Ctx<'_>,
    graph: &str,
    id: &str,
) -> Result<(Vec<Value>, BTreeMap<String, u64>), ActionError> {
    let clients = ctx.clients();
    let request = clients
        .detective
        .list_indicators()
        .graph_arn(graph)
        .investigation_id(id)
        .max_results(INDICATOR_PAGE);
    let pages = clients
        .paginate_raw(&ops::DETECTIVE_LIST_INDICATORS, id, request)
        .await?;
    let mut indicators = Vec::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for page in pages {
        let typed = page.output.indicators();
        for indicator in typed {
            let kind = indicator
                .indicator_type()
                .map_or("UNKNOWN", IndicatorType::as_str);
            *counts.entry(kind.to_owned()).or_default() += 1;
        }
        let raw = page
            .body
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|body| body.get("Indicators").and_then(Value::as_array).cloned());
        match raw {
            Some(items) if items.len() == typed.len() => indicators.extend(items),
            _ => indicators.extend(typed.iter().map(|indicator| {
                json!({
                    "IndicatorType": indicator.indicator_type().map(IndicatorType::as_str),
                    "IndicatorDetail": indicator.indicator_detail().map(|d| format!("{d:?}")),
                })
            })),
        }
    }
    Ok((indicators, counts))
}

impl Handler for EnrichWithDetective {
    type Params = Params;
    type PreState = DetectivePreState;
    type Outcome = DetectiveOutcome;
    type Undone = DetectiveUndone;

    async fn pre_state(ctx: Ctx<'_>, params: &Params) -> Result<DetectivePreState, ActionError> {
        let finding = &ctx.plan.finding;
        let lookback = i64::from(params.lookback_hours) * 3600;
        let end = finding
            .event_last_seen
            .as_deref()
            .and_then(parse_time)
            .unwrap_or_else(now);
        let first = finding
            .event_first_seen
            .as_deref()
            .and_then(parse_time)
            .unwrap_or(end);
        let start = DateTime::from_secs(first.secs() - lookback);

        let entity = match entity_in_plan(ctx) {
            Some(Entity::Arn(arn)) => arn,
            Some(Entity::InstanceProfile(profile)) => match profile_role(ctx, &profile).await {
                Ok(arn) => arn,
                Err(reason) => return Ok(DetectivePreState::skipped(reason, start, end)),
            },
            None => {
                return Ok(DetectivePreState::skipped(
                    format!("{IAM_ONLY}; this finding names neither"),
                    start,
                    end,
                ));
            }
        };
        let Some(graph) = graph_arn(ctx).await? else {
            return Ok(DetectivePreState::skipped(
                format!("no Detective behavior graph in {}", ctx.clients().region),
                start,
                end,
            ));
        };
        let existing = existing_investigation(ctx, &graph, &entity, start, end).await?;
        Ok(DetectivePreState {
            skip: None,
            entity_arn: Some(entity),
            graph_arn: Some(graph),
            existing_investigation: existing,
            scope_start: fmt_time(start),
            scope_end: fmt_time(end),
        })
    }

    async fn apply(
        ctx: Ctx<'_>,
        params: &Params,
        pre: &DetectivePreState,
    ) -> Result<DetectiveOutcome, ActionError> {
        let (Some(entity), Some(graph), None) = (&pre.entity_arn, &pre.graph_arn, &pre.skip) else {
            let reason = pre.skip.as_deref().unwrap_or(IAM_ONLY);
            return Ok(DetectiveOutcome::Skipped {
                skipped: reason.to_string(),
            });
        };
        let clients = ctx.clients();
        let start = parse_time(&pre.scope_start).ok_or_else(|| bad_time(ctx, &pre.scope_start))?;
        let end = parse_time(&pre.scope_end).ok_or_else(|| bad_time(ctx, &pre.scope_end))?;
        // Re-checked when the pre-state found none: a crash after
        // StartInvestigation must not start a second one on resume.
        let existing = match &pre.existing_investigation {
            Some(id) => Some(id.clone()),
            None => existing_investigation(ctx, graph, entity, start, end).await?,
        };
        let reused = existing.is_some();
        let id = match existing {
            Some(id) => id,
            None => {
                let request = clients
                    .detective
                    .start_investigation()
                    .graph_arn(graph)
                    .entity_arn(entity)
                    .scope_start_time(start)
                    .scope_end_time(end);
                let out = clients
                    .call(&ops::DETECTIVE_START_INVESTIGATION, entity, request)
                    .await?;
                out.investigation_id().map(str::to_owned).ok_or_else(|| {
                    ActionError::new(
                        ErrorKind::Verification,
                        entity.clone(),
                        "Detective started an investigation but returned no id",
                        "the step is retried; check Detective's investigations for the entity",
                    )
                })?
            }
        };

        let deadline = tokio::time::Instant::now() + Duration::from_secs(params.timeout_seconds);
        let investigation = loop {
            let investigation = get_investigation(ctx, graph, &id).await?;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            match investigation.status {
                Some(Status::Successful | Status::Failed) => break investigation,
                _ if remaining.is_zero() => break investigation,
                _ => tokio::time::sleep(POLL_INTERVAL.min(remaining)).await,
            }
        };
        let status = investigation
            .status
            .as_ref()
            .map_or("UNKNOWN", Status::as_str);
        let successful = investigation.status == Some(Status::Successful);
        let (indicators, counts) = if successful {
            list_indicators(ctx, graph, &id).await?
        } else {
            (Vec::new(), BTreeMap::new())
        };
        let severity = investigation
            .summary
            .get("Severity")
            .cloned()
            .unwrap_or(Value::Null);
        let evidence_body = json!({
            "investigation": investigation.summary,
            "indicators": indicators,
            "note": LAG_NOTE,
        });
        let bytes = serde_json::to_vec_pretty(&evidence_body).map_err(|e| {
            ActionError::new(
                ErrorKind::Other,
                id.clone(),
                format!("cannot serialize the investigation: {e}"),
                "report this as a cordon bug",
            )
        })?;
        let evidence = ctx
            .aws
            .evidence
            .put(&ctx.plan.case_id, &format!("detective-{id}.json"), bytes)
            .await?;
        let partial_reason = (!successful).then(|| match investigation.status {
            Some(Status::Failed) => "Detective reports the investigation FAILED".to_owned(),
            _ => format!(
                "the investigation was still {status} after {} s; its indicators were not collected (`cordon resume` or Detective's console shows them later)",
                params.timeout_seconds
            ),
        });
        Ok(DetectiveOutcome::Investigated(Box::new(Investigated {
            investigation_id: id,
            graph_arn: graph.clone(),
            entity_arn: entity.clone(),
            reused,
            status: status.to_string(),
            severity,
            indicator_counts: counts,
            evidence,
            partial: !successful,
            partial_reason,
            note: LAG_NOTE.to_string(),
        })))
    }

    async fn verify(
        ctx: Ctx<'_>,
        _params: &Params,
        _pre: &DetectivePreState,
        outcome: &DetectiveOutcome,
    ) -> Result<(), ActionError> {
        let recorded = match outcome {
            DetectiveOutcome::Skipped { .. } => true,
            DetectiveOutcome::Investigated(investigated) => {
                !investigated.investigation_id.is_empty()
            }
        };
        if recorded {
            Ok(())
        } else {
            Err(ActionError::new(
                ErrorKind::Verification,
                format!("step {}", ctx.step.id),
                "the Detective step recorded neither an investigation nor a reason to skip",
                "the step is retried",
            ))
        }
    }

    async fn undo(
        _ctx: Ctx<'_>,
        _params: &Params,
        _pre: &DetectivePreState,
        outcome: Option<&DetectiveOutcome>,
    ) -> Result<DetectiveUndone, ActionError> {
        let investigation_id = match outcome {
            Some(DetectiveOutcome::Investigated(investigated)) => {
                Some(investigated.investigation_id.clone())
            }
            _ => None,
        };
        Ok(DetectiveUndone {
            note: "the Detective investigation is evidence and is kept; nothing else was changed"
                .to_string(),
            investigation_id,
        })
    }

    async fn verify_undone(
        _ctx: Ctx<'_>,
        _params: &Params,
        _pre: &DetectivePreState,
    ) -> Result<(), ActionError> {
        Ok(())
    }

    fn describe(_ctx: Ctx<'_>, _params: &Params, pre: &DetectivePreState) -> Vec<String> {
        match (&pre.skip, &pre.entity_arn, &pre.existing_investigation) {
            (Some(reason), _, _) => vec![format!("skip Detective enrichment: {reason}")],
            (None, entity, Some(id)) => vec![format!(
                "reuse Detective investigation {id} of {}; read its indicators",
                entity.as_deref().unwrap_or("?")
            )],
            (None, entity, None) => vec![format!(
                "{} entity={} scope={}..{}",
                ops::DETECTIVE_START_INVESTIGATION.iam_action,
                entity.as_deref().unwrap_or("?"),
                pre.scope_start,
                pre.scope_end
            )],
        }
    }
}
