//! `cordon policy`: the IAM policy the playbooks need, the permissions
//! boundary for cordon's role, or the managed policy quarantine attaches.
//! JSON (the default) is the deployable document; text says why each
//! permission is there.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use cordon_core::action::APPROVER_PERMISSIONS;
use cordon_core::plan::PlaybookSet;
use cordon_core::policy::{
    self, CORDON_IAM_PATH, EVIDENCE_BUCKET_PLACEHOLDER, PolicyDocument, PolicyOptions, RolePolicy,
    Statement,
};

use crate::{Failure, Output, failed, invalid, playbook_set, playbooks_only};

/// Options of `cordon policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// A playbook file or a directory of them (default: ./playbooks if it
    /// exists, else the playbooks embedded in this binary).
    #[arg(env = "CORDON_PLAYBOOKS")]
    playbooks: Option<PathBuf>,
    /// Partition of every ARN: aws, aws-cn, aws-us-gov, or * for any.
    #[arg(long, default_value = "*")]
    partition: String,
    /// Account id of every ARN, or * for any.
    #[arg(long, default_value = "*")]
    account: String,
    /// Region of every regional ARN, or * for any.
    #[arg(long, default_value = "*")]
    region: String,
    /// The evidence bucket (also the S3 journal's); a placeholder that matches no bucket otherwise.
    #[arg(long, env = "CORDON_EVIDENCE_BUCKET")]
    evidence_bucket: Option<String>,
    /// The topic `notify` steps without a `topic-arn` publish to; any topic of the account otherwise.
    #[arg(long, env = "CORDON_NOTIFY_TOPIC_ARN")]
    notify_topic: Option<String>,
    /// The asymmetric KMS key that signs evidence manifests (key id, key ARN,
    /// alias/NAME or alias ARN): grants kms:Sign on that key only; no kms:Sign otherwise.
    #[arg(long, env = "CORDON_EVIDENCE_SIGNING_KEY")]
    evidence_signing_key: Option<String>,
    /// Print the permissions boundary for cordon's role instead (playbooks are not read).
    #[arg(long, conflicts_with = "quarantine_policy")]
    boundary: bool,
    /// Print the managed deny-all policy `quarantine-user` attaches instead.
    #[arg(long)]
    quarantine_policy: bool,
    #[arg(long, value_enum, default_value_t = Output::Json)]
    output: Output,
}

/// Prints what was asked for; 0, or 2 for invalid options or playbooks.
pub fn run(args: &PolicyArgs) -> Result<u8, Failure> {
    let opts = PolicyOptions::new(&args.partition, &args.account, &args.region)
        .and_then(|o| o.with_evidence_bucket(args.evidence_bucket.as_deref()))
        .and_then(|o| o.with_notify_topic(args.notify_topic.as_deref()))
        .and_then(|o| o.with_evidence_signing_key(args.evidence_signing_key.as_deref()))
        .map_err(|e| invalid(e.into()))?;
    if args.quarantine_policy {
        let document = policy::quarantine_policy();
        let title = format!(
            "Managed policy {} (create it once; quarantine-user attaches it)",
            opts.quarantine_policy_arn()
        );
        return print_document(&document, args.output, &title);
    }
    if args.boundary {
        let document = policy::boundary(&opts);
        let title = format!(
            "Permissions boundary {CORDON_IAM_PATH}{} for cordon's role (the role lives under {CORDON_IAM_PATH})",
            policy::BOUNDARY_POLICY_NAME
        );
        return print_document(&document, args.output, &title);
    }
    let (loaded, set) = playbook_set::load_valid(args.playbooks.as_deref())?;
    let role =
        policy::role_policy(&playbooks_only(&loaded), &opts).map_err(|e| invalid(e.into()))?;
    match args.output {
        Output::Json => print_policy(&role.document)?,
        Output::Text => print!("{}", role_text(&role, args, &set, loaded.len())),
    }
    Ok(0)
}

/// Prints a policy document as IAM takes it: IAM's own format, so without the
/// `format-version` cordon's own JSON documents carry (IAM refuses unknown keys).
fn print_policy(document: &PolicyDocument) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(document).map_err(|e| failed(e.into()))?;
    println!("{text}");
    Ok(())
}

fn print_document(document: &PolicyDocument, output: Output, title: &str) -> Result<u8, Failure> {
    match output {
        Output::Json => print_policy(document)?,
        Output::Text => {
            let mut text = format!("{title}\n");
            for statement in &document.statements {
                statement_text(&mut text, statement);
                for action in &statement.action {
                    let _ = writeln!(text, "  {action}");
                }
            }
            print!("{text}");
        }
    }
    Ok(0)
}

fn statement_text(text: &mut String, statement: &Statement) {
    let _ = writeln!(text, "\n{} ({:?})", statement.sid, statement.effect);
    for resource in &statement.resource {
        let _ = writeln!(text, "  resource  {resource}");
    }
    for (operator, keys) in &statement.condition {
        for (key, values) in keys {
            let _ = writeln!(text, "  condition {operator} {key} = {}", values.join(", "));
        }
    }
}

fn role_text(role: &RolePolicy, args: &PolicyArgs, set: &PlaybookSet, playbooks: usize) -> String {
    let mut text = format!(
        "IAM policy for {playbooks} playbook(s) at {} (set sha256 {}): {} statement(s), {} action(s); partition {}, account {}, region {}\n",
        set.origin,
        set.sha256,
        role.document.statements.len(),
        role.document.allowed_actions().len(),
        args.partition,
        args.account,
        args.region,
    );
    if args.evidence_bucket.is_none() {
        let _ = writeln!(
            text,
            "The evidence bucket is the placeholder {EVIDENCE_BUCKET_PLACEHOLDER}: pass --evidence-bucket."
        );
    }
    for statement in &role.document.statements {
        statement_text(&mut text, statement);
        for action in &statement.action {
            let _ = writeln!(text, "  {action}");
            if let Some(needs) = role.needs.get(&(statement.sid.clone(), action.clone())) {
                for need in needs {
                    let _ = writeln!(text, "      {need}");
                }
            }
        }
    }
    approver_text(&mut text);
    text
}

/// The approver's permissions, apart: they belong to the identity that runs
/// `cordon approve --task-token`, never to the role above (a role that could
/// SendTaskSuccess could approve its own approval waits).
fn approver_text(text: &mut String) {
    let _ = writeln!(
        text,
        "\nApprover permissions: for the approver's own identity (`cordon approve CASE STEP --task-token TOKEN --journal s3://BUCKET[/PREFIX]`), never for this role; the S3 and KMS ones on the journal bucket and its key only"
    );
    for permission in APPROVER_PERMISSIONS {
        let _ = writeln!(text, "  {}", permission.permission);
        let _ = writeln!(text, "      {}", permission.reason);
    }
}
