//! Routing: which playbook answers a finding, and why.

use serde::{Deserialize, Serialize};

use crate::finding::{Finding, KeyKind, Resource};
use crate::playbook::{KeyKindRule, MatchRule, Playbook, SeverityRule};
use crate::text::preview;

/// Why a playbook was chosen: each condition that held, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct RouteReason {
    pub playbook: String,
    pub priority: i32,
    pub matched: Vec<String>,
}

/// The answer to "which playbook?": a choice, or no match with each playbook's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(
    tag = "result",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
pub enum Route {
    Matched {
        reason: RouteReason,
        /// Other playbooks that matched with lower priority (`also_matched` before output format 2).
        #[serde(alias = "also_matched")]
        also_matched: Vec<String>,
    },
    NoMatch {
        /// For each playbook, the first condition that failed.
        rejections: Vec<(String, String)>,
    },
}

/// Chooses the highest-priority playbook whose rule holds. Ties are prevented by
/// validation; should one slip through, the name breaks it so the choice is stable.
pub fn route<'a>(finding: &Finding, playbooks: &'a [Playbook]) -> (Route, Option<&'a Playbook>) {
    let mut matches: Vec<(&Playbook, Vec<String>)> = Vec::new();
    let mut rejections = Vec::new();
    for playbook in playbooks {
        match evaluate(&playbook.matcher, finding) {
            Ok(reasons) => matches.push((playbook, reasons)),
            Err(why) => rejections.push((playbook.name.clone(), why)),
        }
    }
    matches.sort_by(|(a, _), (b, _)| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut iter = matches.into_iter();
    match iter.next() {
        Some((playbook, matched)) => (
            Route::Matched {
                reason: RouteReason {
                    playbook: playbook.name.clone(),
                    priority: playbook.priority,
                    matched,
                },
                also_matched: iter
                    .map(|(p, _)| format!("{} (priority {})", p.name, p.priority))
                    .collect(),
            },
            Some(playbook),
        ),
        None => (Route::NoMatch { rejections }, None),
    }
}

/// Every condition of `rule` checked against the finding: the reasons it matched, or the first that did not.
pub fn evaluate(rule: &MatchRule, finding: &Finding) -> Result<Vec<String>, String> {
    if let Some(why) = finding.nothing_to_do() {
        return Err(why);
    }
    let mut reasons = Vec::new();
    if !rule.sources.is_empty() {
        if rule.sources.contains(&finding.source) {
            reasons.push(format!("source {}", finding.source));
        } else {
            return Err(format!(
                "source {} is not one of {:?}",
                finding.source,
                rule.sources
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            ));
        }
    }
    reasons.extend(source_matches(rule, finding)?);
    let finding_type = finding.finding_type.raw.as_str();
    if rule.finding_types.is_empty() {
        reasons.push("any finding type".to_string());
    } else {
        match rule
            .finding_types
            .iter()
            .find(|p| pattern_matches(p, finding_type))
        {
            Some(pattern) => reasons.push(format!("type {finding_type} matches {pattern:?}")),
            None => {
                return Err(format!(
                    "type {finding_type} matches none of {:?}",
                    rule.finding_types
                ));
            }
        }
    }
    if let Some(pattern) = rule
        .exclude_finding_types
        .iter()
        .find(|p| pattern_matches(p, finding_type))
    {
        return Err(format!("type {finding_type} is excluded by {pattern:?}"));
    }
    let resource_type = finding.resource.resource_type();
    if !rule.resource_types.is_empty() {
        let native = finding.source_resource_type();
        match rule
            .resource_types
            .iter()
            .find(|r| *r == resource_type || Some(r.as_str()) == native)
        {
            Some(r) => reasons.push(format!("resource type {r}")),
            None => {
                return Err(format!(
                    "resource type {}{} is not one of {:?}",
                    crate::text::escape(resource_type),
                    native
                        .filter(|n| *n != resource_type)
                        .map(|n| format!(" ({})", crate::text::escape(n)))
                        .unwrap_or_default(),
                    rule.resource_types
                ));
            }
        }
    }
    if let Some(severity) = &rule.severity {
        reasons.push(severity_matches(severity, finding)?);
    }
    if let Some(role) = rule.resource_role {
        match finding.service.resource_role {
            Some(actual) if actual == role => {
                reasons.push(format!("resource role {}", role_name(actual)))
            }
            Some(actual) => {
                return Err(format!(
                    "resource role is {}, not {}",
                    role_name(actual),
                    role_name(role)
                ));
            }
            None => {
                return Err(format!(
                    "the finding gives no resource role (rule wants {})",
                    role_name(role)
                ));
            }
        }
    }
    if let Some(kind) = rule.key_kind {
        let (wanted, wanted_name) = match kind {
            KeyKindRule::LongTerm => (KeyKind::LongTerm, "long-term (AKIA)"),
            KeyKindRule::Temporary => (KeyKind::Temporary, "temporary (ASIA)"),
        };
        match &finding.resource {
            Resource::AccessKey(k) if k.key_kind() == wanted => {
                reasons.push(format!("{wanted_name} access key"))
            }
            Resource::AccessKey(k) => {
                return Err(format!(
                    "access key {} is not {wanted_name}",
                    k.access_key_id
                ));
            }
            other => {
                return Err(format!(
                    "a {} finding names no access key (rule wants a {wanted_name} key)",
                    other.resource_type()
                ));
            }
        }
    }
    if !rule.user_types.is_empty() {
        reasons.push(user_type_matches(&rule.user_types, &finding.resource)?);
    }
    if finding.is_sample() && !rule.include_sample {
        return Err(
            "the finding is a GuardDuty sample and the rule does not include samples".to_string(),
        );
    }
    if finding.service.archived && !rule.include_archived {
        return Err(
            "the finding is archived and the rule does not include archived findings".to_string(),
        );
    }
    Ok(reasons)
}

/// The conditions on what only some sources say: Config rules, Security Hub
/// products, types and severity labels.
fn source_matches(rule: &MatchRule, finding: &Finding) -> Result<Vec<String>, String> {
    let mut reasons = Vec::new();
    if !rule.config_rules.is_empty() {
        let Some(config) = &finding.config else {
            return Err(format!(
                "a {} finding is not a Config evaluation (rule wants Config rules {:?})",
                finding.source, rule.config_rules
            ));
        };
        match rule
            .config_rules
            .iter()
            .find(|p| pattern_matches(p, &config.rule_name))
        {
            Some(p) => reasons.push(format!(
                "Config rule {} matches {p:?}",
                preview(&config.rule_name)
            )),
            None => {
                return Err(format!(
                    "Config rule {} matches none of {:?}",
                    preview(&config.rule_name),
                    rule.config_rules
                ));
            }
        }
    }
    if !rule.products.is_empty() {
        let name = finding.product_name();
        let arn = finding.product_arn();
        let hit = rule.products.iter().find(|p| {
            name.is_some_and(|n| pattern_matches(p, n))
                || arn.as_deref().is_some_and(|a| pattern_matches(p, a))
        });
        match hit {
            Some(p) => reasons.push(format!(
                "product {} matches {p:?}",
                preview(name.or(arn.as_deref()).unwrap_or("?"))
            )),
            None => {
                return Err(format!(
                    "product {} is not one of {:?}",
                    name.or(arn.as_deref())
                        .map(preview)
                        .unwrap_or_else(|| format!("(none: a {} finding)", finding.source)),
                    rule.products
                ));
            }
        }
    }
    if !rule.asff_types.is_empty() {
        let types = finding
            .asff
            .as_ref()
            .map(|a| a.types.as_slice())
            .unwrap_or_default();
        let hit = rule
            .asff_types
            .iter()
            .find_map(|p| types.iter().find(|t| pattern_matches(p, t)).map(|t| (p, t)));
        match hit {
            Some((p, t)) => reasons.push(format!("ASFF type {} matches {p:?}", preview(t))),
            None if finding.asff.is_none() => {
                return Err(format!(
                    "a {} finding has no Security Hub types (rule wants {:?})",
                    finding.source, rule.asff_types
                ));
            }
            None => {
                return Err(format!(
                    "no Security Hub type of the finding matches {:?}",
                    rule.asff_types
                ));
            }
        }
    }
    if !rule.severity_labels.is_empty() {
        match finding.severity_label() {
            Some(label) if rule.severity_labels.contains(&label) => {
                reasons.push(format!("severity label {label}"))
            }
            Some(label) => {
                return Err(format!(
                    "severity label {label} is not one of {:?}",
                    rule.severity_labels
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                ));
            }
            None => {
                return Err(format!(
                    "a {} finding has no severity label",
                    finding.source
                ));
            }
        }
    }
    Ok(reasons)
}

/// Whether the finding's access key has one of `wanted` user types.
fn user_type_matches(wanted: &[String], resource: &Resource) -> Result<String, String> {
    let Resource::AccessKey(key) = resource else {
        return Err(format!(
            "a {} finding names no access key (rule wants user type {wanted:?})",
            resource.resource_type()
        ));
    };
    match key.user_type.as_deref() {
        Some(t) if wanted.iter().any(|w| w == t) => Ok(format!("user type {t}")),
        Some(t) => Err(format!(
            "access key {} has user type {t}, not one of {wanted:?}",
            key.access_key_id
        )),
        None => Err(format!(
            "the finding gives no user type for access key {} (rule wants one of {wanted:?})",
            key.access_key_id
        )),
    }
}

fn role_name(role: crate::finding::ResourceRole) -> &'static str {
    match role {
        crate::finding::ResourceRole::Target => "target",
        crate::finding::ResourceRole::Actor => "actor",
    }
}

fn severity_matches(rule: &SeverityRule, finding: &Finding) -> Result<String, String> {
    let value = finding.severity.value();
    let band = finding.severity.band();
    let mut parts = Vec::new();
    if !rule.bands.is_empty() {
        if !rule.bands.contains(&band) {
            return Err(format!(
                "severity {value} is {band}, not one of {:?}",
                band_names(&rule.bands)
            ));
        }
        parts.push(format!("band {band}"));
    }
    if let Some(min) = rule.min {
        if value < min {
            return Err(format!("severity {value} is below {min}"));
        }
        parts.push(format!(">= {min}"));
    }
    if let Some(max) = rule.max {
        if value > max {
            return Err(format!("severity {value} is above {max}"));
        }
        parts.push(format!("<= {max}"));
    }
    Ok(format!("severity {value} ({})", parts.join(", ")))
}

fn band_names(bands: &[crate::finding::SeverityBand]) -> Vec<String> {
    bands.iter().map(ToString::to_string).collect()
}

/// Wildcard match over the whole text: `*` is any run of characters (including
/// `/`, `.` and `!`), `?` exactly one. Case-sensitive, as GuardDuty types are.
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        // `*` first: a `*` in the pattern is always a wildcard, even facing a literal `*`.
        if pi < p.len() && p[pi] == '*' {
            backtrack = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((star_p, star_t)) = backtrack {
            pi = star_p + 1;
            ti = star_t + 1;
            backtrack = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::pattern_matches;

    #[test]
    fn wildcards() {
        assert!(pattern_matches(
            "Backdoor:EC2/*",
            "Backdoor:EC2/C&CActivity.B!DNS"
        ));
        assert!(pattern_matches("*:EC2/*", "Recon:EC2/Portscan"));
        assert!(pattern_matches("*!DNS", "Trojan:EC2/DropPoint!DNS"));
        assert!(!pattern_matches("*!DNS", "Trojan:EC2/DropPoint"));
        assert!(pattern_matches(
            "UnauthorizedAccess:EC2/???BruteForce",
            "UnauthorizedAccess:EC2/SSHBruteForce"
        ));
        assert!(!pattern_matches(
            "UnauthorizedAccess:EC2/???BruteForce",
            "UnauthorizedAccess:EC2/RDPBruteForces"
        ));
        assert!(pattern_matches("*", ""));
        assert!(!pattern_matches("Backdoor:EC2/*", "backdoor:EC2/Spambot"));
        assert!(pattern_matches("Recon:EC2/Portscan", "Recon:EC2/Portscan"));
        assert!(pattern_matches("a*b*c", "aXbYbZc"));
    }
}
