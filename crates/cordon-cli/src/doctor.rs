//! `cordon doctor`: readiness before the incident. A checklist, one line per
//! check, `PASS`, `FAIL` or `SKIP` (not probed, with why), and exit 1 when
//! anything fails:
//!
//! - the AWS region and the caller's identity (STS), and the clock against
//!   AWS's (a `Date` header: beyond 5 minutes fails, as SigV4 refuses
//!   requests beyond 15);
//! - the playbooks load;
//! - every permission the playbooks need (what `cordon policy` grants),
//!   asked without changing anything: EC2 calls with `DryRun=true`, EC2 reads
//!   for a few items, and the rest through IAM's policy simulator where the
//!   caller may use it (see [`cordon_aws::probe`]);
//! - the evidence bucket against the standard (`cordon evidence check`);
//! - the notify topic exists (`GetTopicAttributes`);
//! - per VPC in scope, the isolation and untrack groups: absent (created on
//!   first use), or clean (isolation: no rules; untrack: allow-all);
//! - the journal directory is writable.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Args;
use cordon_aws::client::AwsClients;
use cordon_aws::evidence_bucket::{self, Severity};
use cordon_aws::probe::{
    self, Ec2Targets, Identity, Method, Probe, ServerDate, Verdict, VpcReadiness,
};
use cordon_core::action::Action;
use cordon_core::ids::IdKind;
use cordon_core::playbook::Playbook;
use cordon_core::policy::{PolicyOptions, RolePolicy, role_policy};
use cordon_core::text::escape;
use cordon_core::validate::set_digest;
use serde::Serialize;

use crate::playbook_set::Source;
use crate::{Failure, Output, StateArgs, invalid, output, print_json};

/// Beyond this, `doctor` fails the clock: SigV4 refuses requests more than
/// 15 minutes off, and a clock drifting that far is worth fixing long before.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 300;

/// The tag key dry-run tagging uses when no playbook tags anything.
const DEFAULT_PROBE_TAG_KEY: &str = "cordon:case";

/// Options of `cordon doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// A playbook file or a directory of them (default: ./playbooks if it
    /// exists, else the playbooks embedded in this binary): the permissions
    /// and isolation groups they need are checked.
    #[arg(long, env = "CORDON_PLAYBOOKS")]
    playbooks: Option<PathBuf>,
    /// The SNS topic `notify` steps without a `topic-arn` publish to.
    #[arg(long, env = "CORDON_NOTIFY_TOPIC_ARN")]
    notify_topic: Option<String>,
    /// A VPC whose isolation groups to check (repeatable); default: every VPC of the region.
    #[arg(long = "vpc", value_name = "VPC")]
    vpcs: Vec<String>,
    #[command(flatten)]
    state: StateArgs,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// A check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Checked, and fine.
    Pass,
    /// Checked, and not fine: `doctor` exits 1.
    Fail,
    /// Not probed; the detail says why.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Check {
    pub status: Status,
    /// What was checked (`identity`, `permission ec2:CreateSnapshot`).
    pub check: String,
    /// What was found, or why it was not probed.
    pub detail: String,
    /// How it was checked (`DryRun`, `IAM SimulatePrincipalPolicy`, `none`).
    pub method: String,
}

impl Check {
    fn new(
        status: Status,
        check: impl Into<String>,
        detail: impl Into<String>,
        method: &str,
    ) -> Self {
        Check {
            status,
            check: check.into(),
            detail: detail.into(),
            method: method.to_string(),
        }
    }
}

/// `doctor --output json`: every check, and whether nothing failed.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct DoctorReport<'a> {
    /// No check failed.
    pub ready: bool,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub checks: &'a [Check],
}
impl output::Body for DoctorReport<'_> {}

impl<'a> DoctorReport<'a> {
    /// The report of `checks`.
    pub fn new(checks: &'a [Check]) -> Self {
        let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
        DoctorReport {
            ready: count(Status::Fail) == 0,
            passed: count(Status::Pass),
            failed: count(Status::Fail),
            skipped: count(Status::Skip),
            checks,
        }
    }
}

/// The checklist as text: one aligned line per check, then a summary line.
pub fn render(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
    let mut text = String::new();
    for c in checks {
        let _ = writeln!(
            text,
            "{}  {:<width$}  {}  (method: {})",
            c.status.label(),
            escape(&c.check),
            escape(&c.detail),
            escape(&c.method),
        );
    }
    let report = DoctorReport::new(checks);
    let _ = writeln!(
        text,
        "{} passed, {} failed, {} not probed: {}",
        report.passed,
        report.failed,
        report.skipped,
        if !report.ready {
            "NOT ready: fix each FAIL above"
        } else if report.skipped > 0 {
            "no failure, but ready only as far as probed: each SKIP above says why it was not"
        } else {
            "ready"
        }
    );
    text
}

/// Runs every check and prints the checklist; 1 when any check fails.
pub async fn run(args: &DoctorArgs) -> Result<u8, Failure> {
    for vpc in &args.vpcs {
        IdKind::Vpc
            .check(vpc)
            .map_err(|e| invalid(anyhow!("--vpc {}: {e}", escape(vpc))))?;
    }
    let checks = checklist(args).await;
    match args.output {
        Output::Json => print_json(&DoctorReport::new(&checks))?,
        Output::Text => print!("{}", render(&checks)),
    }
    Ok(if checks.iter().any(|c| c.status == Status::Fail) {
        1
    } else {
        0
    })
}

/// Every check, in the order printed.
async fn checklist(args: &DoctorArgs) -> Vec<Check> {
    let mut checks = Vec::new();
    let server_date = ServerDate::default();
    let config = AwsClients::loader().load().await;
    let clients = match AwsClients::builder(&config)
        .interceptor(server_date.clone())
        .build()
    {
        Ok(clients) => {
            let endpoint = match &clients.endpoint {
                Some(endpoint) => format!(" (endpoint {endpoint})"),
                None => String::new(),
            };
            checks.push(Check::new(
                Status::Pass,
                "region",
                format!("{}{endpoint}", clients.region),
                "AWS SDK configuration",
            ));
            Some(clients)
        }
        Err(e) => {
            checks.push(Check::new(
                Status::Fail,
                "region",
                e.to_string(),
                "AWS SDK configuration",
            ));
            None
        }
    };
    let identity = match &clients {
        Some(clients) => identity_checks(clients, &server_date, &mut checks).await,
        None => {
            for check in ["identity", "clock"] {
                checks.push(Check::new(
                    Status::Skip,
                    check,
                    "not probed: no AWS region configured",
                    "none",
                ));
            }
            None
        }
    };
    let playbooks = playbook_check(&Source::resolve(args.playbooks.as_deref()), &mut checks);
    checks.push(journal_check(&args.state.state_dir));
    let aws = clients.as_ref().zip(identity.as_ref());
    let Some((clients, identity)) = aws else {
        let why = if clients.is_none() {
            "no AWS region configured"
        } else {
            "the credentials did not work (see identity)"
        };
        for check in [
            "evidence bucket",
            "notify topic",
            "isolation groups",
            "permissions",
        ] {
            checks.push(Check::new(
                Status::Skip,
                check,
                format!("not probed: {why}"),
                "none",
            ));
        }
        return checks;
    };
    checks.push(evidence_check(clients, args.state.evidence_bucket.as_deref()).await);
    checks.extend(topic_checks(clients, args.notify_topic.as_deref(), playbooks.as_deref()).await);
    let (vpc_checks, targets) = vpc_checks(clients, &args.vpcs, playbooks.as_deref()).await;
    checks.extend(vpc_checks);
    match &playbooks {
        Some(playbooks) => {
            checks.extend(permission_checks(clients, identity, playbooks, args, targets).await);
        }
        None => checks.push(Check::new(
            Status::Skip,
            "permissions",
            "not probed: the playbooks did not load (see playbooks)",
            "none",
        )),
    }
    checks
}

/// Identity (STS) and clock skew (the same answer's `Date`).
async fn identity_checks(
    clients: &AwsClients,
    server_date: &ServerDate,
    checks: &mut Vec<Check>,
) -> Option<Identity> {
    const METHOD: &str = "STS GetCallerIdentity";
    match probe::identity_and_skew(clients, server_date).await {
        Ok((identity, skew)) => {
            checks.push(Check::new(
                Status::Pass,
                "identity",
                format!("{} in account {}", identity.arn, identity.account),
                METHOD,
            ));
            checks.push(clock_check(skew));
            Some(identity)
        }
        Err(e) => {
            checks.push(Check::new(Status::Fail, "identity", e.to_string(), METHOD));
            checks.push(Check::new(
                Status::Skip,
                "clock",
                "not probed: no answer from STS to compare with",
                "none",
            ));
            None
        }
    }
}

/// The clock line for a measured skew (AWS minus local, seconds).
pub fn clock_check(skew: Option<i64>) -> Check {
    const METHOD: &str = "the Date header of STS's answer";
    match skew {
        None => Check::new(
            Status::Skip,
            "clock",
            "not probed: the answer carried no readable Date header",
            METHOD,
        ),
        Some(skew) => {
            let direction = if skew > 0 { "behind" } else { "ahead of" };
            let detail = format!("the local clock is {}s {direction} AWS's", skew.abs());
            if skew.abs() > MAX_CLOCK_SKEW_SECONDS {
                Check::new(
                    Status::Fail,
                    "clock",
                    format!(
                        "{detail}: more than {MAX_CLOCK_SKEW_SECONDS}s; AWS refuses signatures beyond 15 minutes: sync the clock (NTP)"
                    ),
                    METHOD,
                )
            } else {
                Check::new(Status::Pass, "clock", detail, METHOD)
            }
        }
    }
}

fn playbook_check(source: &Source, checks: &mut Vec<Check>) -> Option<Vec<Playbook>> {
    let origin = source.origin();
    match source.load() {
        Ok(loaded) => {
            checks.push(Check::new(
                Status::Pass,
                "playbooks",
                format!(
                    "{} playbook(s) valid ({origin}, sha256 {})",
                    loaded.len(),
                    set_digest(&loaded)
                ),
                "cordon validate",
            ));
            Some(loaded.into_iter().map(|l| l.playbook).collect())
        }
        Err(problems) => {
            let first = problems
                .first()
                .map(ToString::to_string)
                .unwrap_or_default();
            checks.push(Check::new(
                Status::Fail,
                "playbooks",
                format!(
                    "{} problem(s) at {origin} (first: {first}): `cordon validate {origin}`",
                    problems.len(),
                ),
                "cordon validate",
            ));
            None
        }
    }
}

/// Creates, syncs and removes a file where journals go.
fn journal_check(state_dir: &Path) -> Check {
    const METHOD: &str = "create, sync and remove a temporary file";
    let dir = state_dir.join("cases");
    let probe = dir.join(format!(".doctor-{}.tmp", std::process::id()));
    let result = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&probe, b"cordon doctor\n"))
        .and_then(|()| std::fs::File::open(&probe)?.sync_all())
        .and_then(|()| std::fs::remove_file(&probe));
    match result {
        Ok(()) => Check::new(
            Status::Pass,
            "journal directory",
            format!("{} is writable", dir.display()),
            METHOD,
        ),
        Err(e) => Check::new(
            Status::Fail,
            "journal directory",
            format!(
                "{} is not writable ({e}): fix its permissions or pass --state-dir",
                dir.display()
            ),
            METHOD,
        ),
    }
}

async fn evidence_check(clients: &AwsClients, bucket: Option<&str>) -> Check {
    const METHOD: &str = "cordon evidence check";
    let Some(bucket) = bucket else {
        return Check::new(
            Status::Skip,
            "evidence bucket",
            "not probed: none configured (--evidence-bucket or CORDON_EVIDENCE_BUCKET); evidence stays in the state directory",
            "none",
        );
    };
    let check = format!("evidence bucket s3://{bucket}");
    match evidence_bucket::check(clients, bucket).await {
        Ok(gaps) => {
            let (failing, notes): (Vec<_>, Vec<_>) =
                gaps.iter().partition(|g| g.severity == Severity::Gap);
            let list = |gaps: &[&evidence_bucket::Gap]| {
                gaps.iter()
                    .map(|g| format!("{}: {}", g.setting, g.detail))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            if failing.is_empty() {
                let mut detail = "meets the evidence standard".to_string();
                if !notes.is_empty() {
                    detail.push_str(&format!(" (note: {})", list(&notes)));
                }
                Check::new(Status::Pass, check, detail, METHOD)
            } else {
                Check::new(
                    Status::Fail,
                    check,
                    format!(
                        "{} (`cordon evidence init {bucket}` brings it up to standard)",
                        list(&failing)
                    ),
                    METHOD,
                )
            }
        }
        Err(e) => Check::new(Status::Fail, check, e.to_string(), METHOD),
    }
}

/// The configured topic and every topic a playbook's `notify` step names.
async fn topic_checks(
    clients: &AwsClients,
    configured: Option<&str>,
    playbooks: Option<&[Playbook]>,
) -> Vec<Check> {
    const METHOD: &str = "SNS GetTopicAttributes";
    let mut topics: BTreeSet<String> = configured.map(str::to_string).into_iter().collect();
    let mut default_users = 0;
    for step in playbooks.unwrap_or_default().iter().flat_map(|p| &p.steps) {
        if let Action::Notify(notify) = &step.action {
            match &notify.topic_arn {
                Some(topic) => {
                    topics.insert(topic.clone());
                }
                None => default_users += 1,
            }
        }
    }
    let mut checks = Vec::new();
    if configured.is_none() && default_users > 0 {
        checks.push(Check::new(
            Status::Skip,
            "notify topic",
            format!(
                "not probed: none configured (--notify-topic or CORDON_NOTIFY_TOPIC_ARN), which {default_users} notify step(s) without a topic-arn use"
            ),
            "none",
        ));
    }
    for topic in topics {
        let check = format!("notify topic {topic}");
        checks.push(match probe::topic_owner(clients, &topic).await {
            Ok(owner) => Check::new(
                Status::Pass,
                check,
                format!(
                    "exists (owner {owner}); whether cordon may publish is the sns:Publish line"
                ),
                METHOD,
            ),
            Err(e) => Check::new(Status::Fail, check, e.to_string(), METHOD),
        });
    }
    checks
}

/// The isolation group names the playbooks use, with whether each cuts
/// tracked connections (and so uses an untrack group too).
fn isolation_names(playbooks: &[Playbook]) -> Vec<(String, bool)> {
    let mut names: Vec<(String, bool)> = Vec::new();
    for step in playbooks.iter().flat_map(|p| &p.steps) {
        if let Action::IsolateInstance(p) = &step.action {
            match names.iter_mut().find(|(n, _)| *n == p.isolation_group_name) {
                Some((_, untrack)) => *untrack |= p.cut_tracked_connections,
                None => names.push((p.isolation_group_name.clone(), p.cut_tracked_connections)),
            }
        }
    }
    names.sort();
    names
}

/// One line per cordon group per VPC in scope, and a VPC and group for the
/// permission dry runs.
async fn vpc_checks(
    clients: &AwsClients,
    vpcs: &[String],
    playbooks: Option<&[Playbook]>,
) -> (Vec<Check>, Ec2Targets) {
    const METHOD: &str = "EC2 DescribeSecurityGroups";
    let names = playbooks.map(isolation_names).unwrap_or_default();
    let mut targets = Ec2Targets {
        tag_key: playbooks
            .unwrap_or_default()
            .iter()
            .flat_map(|p| &p.steps)
            .find_map(|s| match &s.action {
                Action::TagResource(t) => t.tags.keys().next().cloned(),
                _ => None,
            })
            .unwrap_or_else(|| DEFAULT_PROBE_TAG_KEY.to_string()),
        ..Ec2Targets::default()
    };
    let found = match probe::vpc_readiness(clients, vpcs, &names).await {
        Ok(found) => found,
        Err(e) => {
            let check = Check::new(Status::Fail, "isolation groups", e.to_string(), METHOD);
            return (vec![check], targets);
        }
    };
    if let Some(first) = found.first() {
        targets.vpc_id = Some(first.vpc_id.clone());
        targets.security_group_id = first.default_group_id.clone();
    }
    let checks = if names.is_empty() {
        vec![Check::new(
            Status::Skip,
            "isolation groups",
            "not probed: no playbook isolates instances",
            "none",
        )]
    } else if found.is_empty() {
        vec![Check::new(
            Status::Skip,
            "isolation groups",
            "not probed: no VPC in this region",
            METHOD,
        )]
    } else {
        found.iter().flat_map(group_checks).collect()
    };
    (checks, targets)
}

/// The lines of one VPC: each group absent, clean, or what is wrong with it.
pub fn group_checks(vpc: &VpcReadiness) -> Vec<Check> {
    const METHOD: &str = "EC2 DescribeSecurityGroups";
    vpc.groups
        .iter()
        .map(|group| {
            let check = format!("{} {}", vpc.vpc_id, group.name);
            let purpose = if group.untrack {
                "untrack group (allow-all)"
            } else {
                "isolation group (no rules)"
            };
            match &group.state {
                None => Check::new(
                    Status::Pass,
                    check,
                    format!("{purpose} absent: isolate-instance creates it on first use"),
                    METHOD,
                ),
                Some(state) if state.problems.is_empty() => Check::new(
                    Status::Pass,
                    check,
                    format!("{purpose} {} is clean", state.group_id),
                    METHOD,
                ),
                Some(state) => {
                    let fix = if group.untrack {
                        "cordon restores allow-all on its next isolation, but someone changed it: find out who"
                    } else {
                        "instances isolated in it are not cut off, and cordon refuses a group with ingress rules: remove the rules"
                    };
                    Check::new(
                        Status::Fail,
                        check,
                        format!(
                            "{purpose} {} has {}: {fix}",
                            state.group_id,
                            state.problems.join(", ")
                        ),
                        METHOD,
                    )
                }
            }
        })
        .collect()
}

/// Every permission the playbooks' policy grants: EC2 by dry run or read,
/// the rest by the simulator, or said not probed.
async fn permission_checks(
    clients: &AwsClients,
    identity: &Identity,
    playbooks: &[Playbook],
    args: &DoctorArgs,
    targets: Ec2Targets,
) -> Vec<Check> {
    let options = PolicyOptions::default()
        .with_evidence_bucket(args.state.evidence_bucket.as_deref())
        .and_then(|o| o.with_notify_topic(args.notify_topic.as_deref()))
        .and_then(|o| o.with_evidence_signing_key(args.state.evidence_signing_key.as_deref()));
    let policy = match options.and_then(|o| role_policy(playbooks, &o)) {
        Ok(policy) => policy,
        Err(e) => {
            return vec![Check::new(
                Status::Fail,
                "permissions",
                format!("cannot compute the policy the playbooks need: {e}"),
                "cordon policy",
            )];
        }
    };
    let mut probes = Vec::new();
    let mut rest = Vec::new();
    for permission in policy.document.allowed_actions() {
        match probe::has_ec2_probe(&permission) {
            true => probes.extend(probe::probe_ec2(clients, &permission, &targets).await),
            false => rest.push(permission),
        }
    }
    let mut checks: Vec<Check> = probes
        .iter()
        .map(|p| probe_check(p, &policy, &identity.arn))
        .collect();
    if rest.is_empty() {
        return checks;
    }
    let simulated = match probe::simulation_principal(clients, &identity.arn).await {
        Ok(principal) => probe::simulate(clients, &principal, &rest).await,
        Err(e) => Err(e),
    };
    match simulated {
        Ok(simulated) => {
            checks.extend(
                simulated
                    .iter()
                    .map(|p| probe_check(p, &policy, &identity.arn)),
            );
        }
        Err(e) => {
            checks.push(Check::new(
                Status::Skip,
                "policy simulator",
                format!(
                    "not available: {}; the {} permission(s) below have no DryRun and are not probed: only a real account can show, where this identity may call iam:SimulatePrincipalPolicy (and iam:GetRole for a role)",
                    simulator_failure(&e),
                    rest.len()
                ),
                "IAM SimulatePrincipalPolicy",
            ));
            checks.extend(rest.iter().map(|permission| {
                Check::new(
                    Status::Skip,
                    format!("permission {permission}"),
                    format!(
                        "not probed: no DryRun and no policy simulator (see above); only a real account can show; needed by {}",
                        needed_by(&policy, permission)
                    ),
                    "none",
                )
            }));
        }
    }
    checks
}

/// The line of one probed permission.
pub fn probe_check(probe: &Probe, policy: &RolePolicy, caller: &str) -> Check {
    let check = format!("permission {}", probe.permission);
    let needed = needed_by(policy, &probe.permission);
    let method = match probe.method {
        Method::DryRun | Method::Read => format!("{}: {}", probe.method, probe.call),
        Method::Simulator => probe.method.to_string(),
    };
    match &probe.verdict {
        Verdict::Allowed => Check::new(
            Status::Pass,
            check,
            format!("allowed; needed by {needed}"),
            &method,
        ),
        Verdict::Denied { code, message } => Check::new(
            Status::Fail,
            check,
            format!(
                "denied ({code}{}): grant {} to {caller}; needed by {needed}",
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                },
                probe.permission
            ),
            &method,
        ),
        Verdict::Inconclusive { answer } => Check::new(
            Status::Skip,
            check,
            format!(
                "not probed: AWS answered {answer} without saying whether it is allowed; needed by {needed}"
            ),
            &method,
        ),
    }
}

/// What needs `permission`, briefly: the first need and how many more.
fn needed_by(policy: &RolePolicy, permission: &str) -> String {
    let needs: BTreeSet<String> = policy
        .needs
        .iter()
        .filter(|((_, p), _)| p == permission)
        .flat_map(|(_, needs)| needs.iter().map(ToString::to_string))
        .collect();
    let mut needs = needs.into_iter();
    match (needs.next(), needs.len()) {
        (None, _) => "the front doors".to_string(),
        (Some(first), 0) => first,
        (Some(first), more) => format!("{first} and {more} more"),
    }
}

/// Why the simulator gave no answer, in a few words.
fn simulator_failure(error: &probe::SimulatorError) -> String {
    match error {
        probe::SimulatorError::Call(e) if probe::is_denied(e) => format!(
            "this identity may not call {} ({})",
            e.op.iam_action, e.code
        ),
        probe::SimulatorError::Call(e) => match e.status {
            Some(status) => format!("{} (HTTP {status})", e.message()),
            None => e.message(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn sample() -> Vec<Check> {
        vec![
            Check::new(
                Status::Pass,
                "identity",
                "arn:aws:iam::123456789012:user/ops in account 123456789012",
                "STS GetCallerIdentity",
            ),
            Check::new(
                Status::Fail,
                "permission ec2:CreateSnapshot",
                "denied (UnauthorizedOperation): grant ec2:CreateSnapshot to arn:aws:iam::123456789012:user/ops",
                "DryRun: CreateSnapshot DryRun=true on vol-00000000000000000",
            ),
            Check::new(
                Status::Skip,
                "permission sns:Publish",
                "not probed: only a real account can show",
                "none",
            ),
        ]
    }

    #[test]
    fn text_is_one_aligned_line_per_check_then_a_summary() {
        let text = render(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(
            lines[0],
            "PASS  identity                       arn:aws:iam::123456789012:user/ops in account 123456789012  (method: STS GetCallerIdentity)"
        );
        assert!(lines[1].starts_with("FAIL  permission ec2:CreateSnapshot  denied (UnauthorizedOperation): grant ec2:CreateSnapshot"));
        assert!(
            lines[1]
                .ends_with("(method: DryRun: CreateSnapshot DryRun=true on vol-00000000000000000)")
        );
        assert!(lines[2].starts_with("SKIP  permission sns:Publish         not probed"));
        assert_eq!(
            lines[3],
            "1 passed, 1 failed, 1 not probed: NOT ready: fix each FAIL above"
        );
    }

    #[test]
    fn text_escapes_what_aws_said() {
        let checks = vec![Check::new(
            Status::Fail,
            "clock",
            "bad\u{1b}[31m\nline",
            "x",
        )];
        let text = render(&checks);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains('\u{1b}'));
    }

    #[test]
    fn json_is_one_kebab_case_document() {
        let checks = sample();
        let text = output::to_text(&DoctorReport::new(&checks)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "format-version",
                "ready",
                "passed",
                "failed",
                "skipped",
                "checks"
            ]
        );
        assert_eq!(value["ready"], false);
        assert_eq!(value["failed"], 1);
        assert_eq!(value["checks"][1]["status"], "fail");
        assert_eq!(value["checks"][2]["status"], "skip");
        assert_eq!(value["checks"][0]["method"], "STS GetCallerIdentity");
        let check_keys: Vec<&str> = value["checks"][0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(check_keys, ["status", "check", "detail", "method"]);
    }

    #[test]
    fn clock_fails_beyond_five_minutes_either_way() {
        assert_eq!(clock_check(Some(3)).status, Status::Pass);
        assert_eq!(clock_check(Some(-300)).status, Status::Pass);
        assert_eq!(clock_check(Some(301)).status, Status::Fail);
        assert_eq!(clock_check(Some(-900)).status, Status::Fail);
        assert!(
            clock_check(Some(-900))
                .detail
                .contains("900s ahead of AWS's")
        );
        assert_eq!(clock_check(None).status, Status::Skip);
    }

    #[test]
    fn groups_absent_pass_dirty_fail() {
        use cordon_aws::probe::{GroupReadiness, GroupState};
        let vpc = VpcReadiness {
            vpc_id: "vpc-0123456789abcdef0".to_string(),
            default_group_id: None,
            groups: vec![
                GroupReadiness {
                    name: "cordon-isolation".to_string(),
                    untrack: false,
                    state: Some(GroupState {
                        group_id: "sg-1".to_string(),
                        problems: vec!["ingress rule tcp:22 10.0.0.0/8".to_string()],
                    }),
                },
                GroupReadiness {
                    name: "cordon-isolation-untrack".to_string(),
                    untrack: true,
                    state: None,
                },
            ],
        };
        let checks = group_checks(&vpc);
        assert_eq!(checks[0].status, Status::Fail);
        assert!(checks[0].detail.contains("ingress rule tcp:22 10.0.0.0/8"));
        assert_eq!(checks[1].status, Status::Pass);
        assert!(checks[1].detail.contains("absent"));
    }

    #[test]
    fn denied_probe_names_the_permission_and_what_needs_it() {
        let playbooks: Vec<Playbook> = cordon_core::validate::load_playbooks(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../playbooks"
        )))
        .unwrap()
        .into_iter()
        .map(|l| l.playbook)
        .collect();
        let policy = role_policy(&playbooks, &PolicyOptions::default()).unwrap();
        let probe = Probe {
            permission: "ec2:ModifyNetworkInterfaceAttribute".to_string(),
            method: Method::DryRun,
            call: "ModifyNetworkInterfaceAttribute DryRun=true on eni-00000000000000000"
                .to_string(),
            verdict: Verdict::Denied {
                code: "UnauthorizedOperation".to_string(),
                message: String::new(),
            },
        };
        let check = probe_check(&probe, &policy, "arn:aws:iam::123456789012:user/ops");
        assert_eq!(check.status, Status::Fail);
        assert_eq!(
            check.check,
            "permission ec2:ModifyNetworkInterfaceAttribute"
        );
        assert!(
            check.detail.contains("isolate-instance"),
            "{}",
            check.detail
        );
        let inconclusive = Probe {
            verdict: Verdict::Inconclusive {
                answer: "InvalidNetworkInterfaceID.NotFound".to_string(),
            },
            ..probe
        };
        let check = probe_check(&inconclusive, &policy, "x");
        assert_eq!(check.status, Status::Skip);
        assert!(check.detail.starts_with("not probed"));
    }
}
