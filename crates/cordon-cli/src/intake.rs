//! GuardDuty as the CLI's front door: `--finding-id` fetches the finding a
//! responder was paged about (no copy-pasting JSON out of the console), and
//! `cordon triage` shows what is open and which playbook each finding would get.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use cordon_aws::client::AwsClients;
use cordon_aws::guardduty::{self, IntakeError, TriageRow};
use cordon_core::finding::Finding;
use cordon_core::text::escape;

use crate::{Aws, Failure, Output, failed, invalid, print_json};

/// `cordon triage` options.
#[derive(Debug, Args)]
pub struct TriageArgs {
    /// GuardDuty detector id (default: the region's only detector).
    #[arg(long)]
    detector: Option<String>,
    /// Only findings at or above this severity (1.0-10.0; 4 = medium and up).
    #[arg(long, default_value_t = 1.0)]
    min_severity: f64,
    /// Directory (or file) of playbooks to route the findings against
    /// (default: ./playbooks if it exists, else the embedded playbooks).
    #[arg(long, env = "CORDON_PLAYBOOKS")]
    playbooks: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Fetches a finding by id from GuardDuty, through the process's clients.
/// Wrong ids, detectors or regions are the user's input (exit 2); AWS
/// failures are run failures (exit 1).
pub async fn fetch_finding(
    clients: &AwsClients,
    finding_id: &str,
    detector: Option<&str>,
) -> Result<Finding, Failure> {
    guardduty::fetch_finding(clients, detector, finding_id)
        .await
        .map_err(intake_failure)
}

/// `cordon triage`: open findings, most severe first, with their playbooks.
pub async fn triage(args: TriageArgs, aws: &Aws) -> Result<u8, Failure> {
    if !(1.0..=10.0).contains(&args.min_severity) {
        return Err(invalid(anyhow!(
            "--min-severity {} is outside GuardDuty's range 1.0-10.0",
            args.min_severity
        )));
    }
    let (loaded, _) = crate::playbook_set::load_valid(args.playbooks.as_deref())?;
    let playbooks: Vec<_> = loaded.into_iter().map(|loaded| loaded.playbook).collect();
    let clients = aws.clients().await?;
    let findings =
        guardduty::list_open_findings(clients, args.detector.as_deref(), args.min_severity)
            .await
            .map_err(intake_failure)?;
    let rows = guardduty::triage(&findings, &playbooks);
    match args.output {
        Output::Json => print_json(&crate::output::Triage { findings: &rows })?,
        Output::Text => print!("{}", render(&rows, args.min_severity)),
    }
    Ok(0)
}

fn intake_failure(error: IntakeError) -> Failure {
    match error {
        IntakeError::NoDetector { .. }
        | IntakeError::SeveralDetectors { .. }
        | IntakeError::FindingNotFound { .. } => invalid(error.into()),
        other => failed(other.into()),
    }
}

/// The triage table: one finding per line, columns sized to their contents.
fn render(rows: &[TriageRow], min_severity: f64) -> String {
    if rows.is_empty() {
        return format!("no open findings at severity {min_severity} or above\n");
    }
    let headers = [
        "SEVERITY", "BAND", "TYPE", "RESOURCE", "PLAYBOOK", "FINDING",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            [
                format!("{:.1}", row.severity),
                escape(&row.severity_band).into_owned(),
                escape(&row.finding_type).into_owned(),
                escape(&row.resource).into_owned(),
                row.playbook
                    .as_deref()
                    .map_or_else(|| "no match".to_owned(), |p| escape(p).into_owned()),
                escape(&row.finding_id).into_owned(),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for line in &cells {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push = |line: &[String]| {
        let padded: Vec<String> = line
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    push(&headers.map(str::to_owned));
    for line in &cells {
        push(line);
    }
    let unmatched = rows.iter().filter(|row| row.playbook.is_none()).count();
    out.push_str(&format!(
        "{} open finding(s); {unmatched} without a playbook\n",
        rows.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_rows_in_order_with_no_match() {
        let rows = vec![
            TriageRow {
                finding_id: "f1".into(),
                finding_type: "Backdoor:EC2/C&CActivity.B!DNS".into(),
                resource: "i-0a1b".into(),
                severity: 8.0,
                severity_band: "high".into(),
                playbook: Some("ec2-compromised-high".into()),
            },
            TriageRow {
                finding_id: "f2".into(),
                finding_type: "Recon:EC2/Portscan".into(),
                resource: "i-0c2d".into(),
                severity: 2.0,
                severity_band: "low".into(),
                playbook: None,
            },
        ];
        let table = render(&rows, 1.0);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("SEVERITY  BAND"));
        assert!(lines[1].starts_with("8.0"));
        assert!(lines[1].contains("ec2-compromised-high"));
        assert!(lines[2].contains("no match"));
        assert_eq!(lines[3], "2 open finding(s); 1 without a playbook");
    }
}
