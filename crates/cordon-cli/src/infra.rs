//! `cordon export-infra`: the CloudFormation templates of `infra/`, generated
//! so they never drift from the code they deploy.
//!
//! - `cordon.yaml` (the security account): the Lambda task, one state machine
//!   per shipped playbook (from [`crate::asl`]), the router state machine, the
//!   GuardDuty rule, the dead-letter queue and its alarm, the responders' SNS
//!   topic, the evidence bucket and its KMS key, and the roles.
//! - `member-account.yaml`: the responder role the Lambda assumes in each
//!   member account.
//!
//! The execution role's policy is `cordon policy` for the embedded playbooks,
//! with the bucket, topic, account and region turned into `Fn::Sub` variables;
//! the evidence bucket's policy is the standard's ([`bucket_policy`]). Both are
//! computed here from the same functions the CLI uses, never written by hand.
//!
//! Routing: EventBridge patterns cannot say "the highest-priority playbook
//! whose rule holds" (no ordering between rules, no negation of another rule's
//! conjunction, no AKIA/ASIA key kinds next to user types and sample flags in
//! one pattern), so the rule targets a small router state machine whose first
//! state is the Lambda's `plan` mode: it routes with `cordon_core::route`,
//! the function `cordon route` uses, then starts the chosen playbook's
//! machine with the case id as the execution name.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Args;
use cordon_aws::evidence_bucket::{DEFAULT_KMS_ALIAS, bucket_policy};
use cordon_core::asl::{self, AslOptions};
use cordon_core::finding::Source as FindingSource;
use cordon_core::playbook::Playbook;
use cordon_core::policy::{self, PolicyOptions, RESPONDER_ROLE_NAME, RUN_EVIDENCE_PREFIX};
use cordon_core::validate::{LoadedPlaybook, set_digest};
use serde_json::{Map, Value, json};

use crate::playbook_set::Source;
use crate::{Failure, failed, invalid, playbooks_only};

/// Options of `cordon export-infra`.
#[derive(Debug, Args)]
pub struct ExportInfraArgs {
    /// Where the templates are written (or, with `--check`, compared).
    #[arg(long, default_value = "infra")]
    out_dir: PathBuf,
    /// Compare with the files in `--out-dir` instead of writing: exit 1 naming
    /// each template that differs (CI's drift check).
    #[arg(long)]
    check: bool,
}

/// The security account's template file.
pub const SECURITY_TEMPLATE: &str = "cordon.yaml";
/// The member accounts' template file.
pub const MEMBER_TEMPLATE: &str = "member-account.yaml";
/// Name of the Lambda function (and of its log group).
pub const FUNCTION_NAME: &str = "cordon";
/// Name of the router state machine.
pub const ROUTER_NAME: &str = "cordon-router";
/// Name of the Lambda's execution role (the member role trusts it).
pub const LAMBDA_ROLE_NAME: &str = "cordon-lambda";
/// The inline policy of the Lambda role that is `cordon policy`'s output.
pub const PLAYBOOK_POLICY_NAME: &str = "cordon-playbooks";
/// The SSM parameter that pauses all automatic action (`paused`).
pub const PAUSE_PARAMETER: &str = "/cordon/pause";

/// How every state machine names the Lambda: `Fn::Sub` of the function's
/// `Arn` attribute (the string form of `Fn::Sub`: its list form is read by
/// moto's CloudFormation with Python's `string.Template`, which turns ASL's
/// `$$.` context paths into `$.`).
const LAMBDA_ARN_VAR: &str = "${CordonFunction.Arn}";

// Sentinels the policy generator is called with, each replaced by a
// CloudFormation variable. Each is valid where it stands (bucket name, topic
// ARN, account, region) and occurs nowhere else in a policy.
const SENTINEL_BUCKET: &str = "cordon-sentinel-evidence-bucket";
const SENTINEL_ACCOUNT: &str = "000000000000";
const SENTINEL_REGION: &str = "zz-cordonsentinel-9";
const SENTINEL_TOPIC: &str = "arn:aws:sns:zz-cordonsentinel-9:000000000000:cordon-sentinel-topic";

/// Writes (or checks) both templates; 0, or 1 when `--check` finds a difference.
pub fn run(args: &ExportInfraArgs) -> Result<u8, Failure> {
    let templates = templates()?;
    if args.check {
        let stale: Vec<String> = templates
            .iter()
            .filter(|(name, text)| {
                std::fs::read_to_string(args.out_dir.join(name))
                    .ok()
                    .as_deref()
                    != Some(text.as_str())
            })
            .map(|(name, _)| args.out_dir.join(name).display().to_string())
            .collect();
        if stale.is_empty() {
            return Ok(0);
        }
        return Err(failed(anyhow!(
            "{} differ(s) from what cordon generates: run `scripts/gen-infra` and commit the result",
            stale.join(", ")
        )));
    }
    std::fs::create_dir_all(&args.out_dir)
        .map_err(|e| failed(anyhow!("cannot create {}: {e}", args.out_dir.display())))?;
    for (name, text) in &templates {
        write(&args.out_dir.join(name), text)?;
    }
    Ok(0)
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text).map_err(|e| failed(anyhow!("cannot write {}: {e}", path.display())))
}

/// Both templates as YAML text: `(file name, text)`.
pub fn templates() -> Result<Vec<(&'static str, String)>, Failure> {
    let loaded = Source::Embedded
        .load()
        .map_err(|problems| invalid(anyhow!("the embedded playbooks are invalid: {problems:?}")))?;
    let security = security_template(&loaded)?;
    let member = member_template(&loaded)?;
    Ok(vec![
        (SECURITY_TEMPLATE, to_yaml(&security)?),
        (MEMBER_TEMPLATE, to_yaml(&member)?),
    ])
}

/// `{"Ref": name}`.
fn r(name: &str) -> Value {
    json!({ "Ref": name })
}

/// `{"Fn::GetAtt": [resource, attribute]}`.
fn get_att(resource: &str, attribute: &str) -> Value {
    json!({ "Fn::GetAtt": [resource, attribute] })
}

/// `{"Fn::Sub": text}`.
fn sub(text: &str) -> Value {
    json!({ "Fn::Sub": text })
}

/// Every string of `value` with `replacements` applied; a string that changed
/// becomes `Fn::Sub` of itself. Refuses a `${` already in the input, which
/// `Fn::Sub` would misread.
fn substitute(value: &Value, replacements: &[(&str, &str)]) -> Result<Value, Failure> {
    Ok(match value {
        Value::String(s) => {
            if s.contains("${") {
                return Err(failed(anyhow!(
                    "`{s}` holds `${{`, which Fn::Sub would misread: report this as a cordon bug"
                )));
            }
            let mut out = s.clone();
            for (from, to) in replacements {
                out = out.replace(from, to);
            }
            if out == *s {
                Value::String(out)
            } else {
                sub(&out)
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| substitute(v, replacements))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), substitute(v, replacements)?)))
                .collect::<Result<Map<_, _>, Failure>>()?,
        ),
        other => other.clone(),
    })
}

/// `cordon policy` for the embedded playbooks, with `bucket`, `topic`,
/// `account` and `region` given as CloudFormation `Fn::Sub` variables
/// (`None` leaves that option at `cordon policy`'s default, `*`).
fn playbook_policy(
    loaded: &[LoadedPlaybook],
    bucket: &str,
    topic: &str,
    account_region: Option<(&str, &str)>,
) -> Result<Value, Failure> {
    let (account, region) = match account_region {
        Some(_) => (SENTINEL_ACCOUNT, SENTINEL_REGION),
        None => ("*", "*"),
    };
    let opts = PolicyOptions::new("*", account, region)
        .and_then(|o| o.with_evidence_bucket(Some(SENTINEL_BUCKET)))
        .and_then(|o| o.with_notify_topic(Some(SENTINEL_TOPIC)))
        .map_err(|e| failed(e.into()))?;
    let role =
        policy::role_policy(&playbooks_only(loaded), &opts).map_err(|e| invalid(e.into()))?;
    let document = serde_json::to_value(&role.document).map_err(|e| failed(e.into()))?;
    let mut replacements = vec![(SENTINEL_TOPIC, topic), (SENTINEL_BUCKET, bucket)];
    if let Some((account, region)) = account_region {
        replacements.push((SENTINEL_ACCOUNT, account));
        replacements.push((SENTINEL_REGION, region));
    }
    let policy = substitute(&document, &replacements)?;
    let text = policy.to_string();
    if text.contains("sentinel") || text.contains(SENTINEL_ACCOUNT) {
        return Err(failed(anyhow!(
            "a policy sentinel survived substitution: report this as a cordon bug"
        )));
    }
    Ok(policy)
}

fn assume_role_policy(principal: Value, condition: Option<Value>) -> Value {
    let mut statement = json!({
        "Effect": "Allow",
        "Principal": principal,
        "Action": "sts:AssumeRole",
    });
    if let Some(condition) = condition {
        statement["Condition"] = condition;
    }
    json!({ "Version": policy::POLICY_LANGUAGE_VERSION, "Statement": [statement] })
}

fn service_role(service: &str) -> Value {
    assume_role_policy(
        json!({ "Service": service }),
        Some(json!({ "StringEquals": { "aws:SourceAccount": r("AWS::AccountId") } })),
    )
}

/// A key policy statement letting `service` encrypt for this account only
/// (EventBridge into the encrypted queue, CloudWatch alarms into the topic).
fn service_may_use_the_key(sid: &str, service: &str) -> Value {
    json!({
        "Sid": sid,
        "Effect": "Allow",
        "Principal": { "Service": service },
        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
        "Resource": "*",
        "Condition": { "StringEquals": { "aws:SourceAccount": r("AWS::AccountId") } }
    })
}

fn statement(sid: &str, actions: &[&str], resource: Value) -> Value {
    json!({ "Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource })
}

/// The `Metadata.checkov.skip` of a resource: every skip with its reason.
fn checkov_skips(skips: &[(&str, &str)]) -> Value {
    json!({ "checkov": { "skip": skips.iter().map(|(id, comment)| json!({ "id": id, "comment": comment })).collect::<Vec<_>>() } })
}

/// Logical id of a playbook's state machine: `Playbook` + the name in PascalCase.
pub fn machine_logical_id(playbook: &str) -> String {
    let mut id = String::from("Playbook");
    for part in playbook.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            id.push(first.to_ascii_uppercase());
            id.extend(chars);
        }
    }
    id
}

/// The router's definition: plan (routing with `cordon route`'s function),
/// then start the chosen playbook's machine named by the case id.
fn router_definition(loaded: &[LoadedPlaybook], set: &str) -> Value {
    let mut states = Map::new();
    states.insert(
        "Route".into(),
        json!({
            "Comment": "The Lambda's plan mode routes the finding with cordon_core::route (as `cordon route`) and opens its case.",
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {
                "FunctionName": LAMBDA_ARN_VAR,
                "Payload": { "mode": "plan", "finding.$": "$", "playbook-set": set }
            },
            "ResultSelector": { "plan.$": "$.Payload" },
            "Retry": [
                {
                    "ErrorEquals": ["Cordon.Throttled", "Cordon.Timeout", "Cordon.InProgress"],
                    "IntervalSeconds": 2, "MaxAttempts": 6, "BackoffRate": 2.0,
                    "MaxDelaySeconds": 60, "JitterStrategy": "FULL"
                },
                {
                    "ErrorEquals": ["Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException", "Lambda.TooManyRequestsException"],
                    "IntervalSeconds": 2, "MaxAttempts": 6, "BackoffRate": 2.0,
                    "MaxDelaySeconds": 60, "JitterStrategy": "FULL"
                }
            ],
            "Next": "Choose playbook"
        }),
    );
    let mut choices = Vec::new();
    for l in loaded {
        let name = &l.playbook.name;
        let start = format!("Start {name}");
        choices.push(json!({
            "And": [
                { "Variable": "$.plan.playbook", "IsPresent": true },
                { "Variable": "$.plan.playbook", "StringEquals": name }
            ],
            "Next": start
        }));
        states.insert(
            start,
            json!({
                "Type": "Task",
                "Resource": "arn:aws:states:::states:startExecution",
                "Parameters": {
                    "StateMachineArn": format!("${{{}}}", machine_logical_id(name)),
                    "Name.$": "$.plan.case-id",
                    "Input.$": "$$.Execution.Input"
                },
                "Retry": [{
                    "ErrorEquals": ["StepFunctions.SdkClientException", "StepFunctions.AWSStepFunctionsException"],
                    "IntervalSeconds": 2, "MaxAttempts": 6, "BackoffRate": 2.0,
                    "MaxDelaySeconds": 60, "JitterStrategy": "FULL"
                }],
                "Catch": [{ "ErrorEquals": ["StepFunctions.ExecutionAlreadyExistsException"], "Next": "Already started" }],
                "End": true
            }),
        );
    }
    states.insert(
        "Choose playbook".into(),
        json!({ "Type": "Choice", "Choices": choices, "Default": "No playbook" }),
    );
    states.insert(
        "Already started".into(),
        json!({ "Comment": "A duplicate delivery: the case's execution (named by the case id) exists.", "Type": "Succeed" }),
    );
    states.insert(
        "No playbook".into(),
        json!({ "Comment": "No playbook answers the finding: a clear answer, as `cordon route` gives it, not an error.", "Type": "Succeed" }),
    );
    json!({
        "Comment": "cordon router: picks the playbook exactly as `cordon route` and starts its state machine, the case id as execution name.",
        "StartAt": "Route",
        "States": states
    })
}

/// A state machine resource: `DefinitionString` as `Fn::Sub` over the
/// definition (moto's CloudFormation reads neither `Definition` nor
/// `DefinitionSubstitutions`; `Fn::Sub` works in both), logging and X-Ray on.
fn state_machine(name: &str, definition: &Value, role: &str) -> Result<Value, Failure> {
    let text = serde_json::to_string_pretty(definition).map_err(|e| failed(e.into()))?;
    Ok(json!({
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {
            "StateMachineName": name,
            "StateMachineType": "STANDARD",
            "RoleArn": get_att(role, "Arn"),
            "DefinitionString": sub(&text),
            "LoggingConfiguration": {
                "Level": "ALL",
                "IncludeExecutionData": false,
                "Destinations": [{ "CloudWatchLogsLogGroup": { "LogGroupArn": get_att("StatesLogGroup", "Arn") } }]
            },
            "TracingConfiguration": { "Enabled": true }
        }
    }))
}

/// `MinimumSeverity`'s values, the severity bands cordon's playbooks use,
/// each with its lower bound and the condition that holds when it is chosen.
const SEVERITY_FLOORS: [(&str, u8, &str); 4] = [
    ("low", 1, "FromLow"),
    ("medium", 4, "FromMedium"),
    ("high", 7, "FromHigh"),
    ("critical", 9, "CriticalOnly"),
];

/// Security Hub's labels at or above `MinimumSeverity`'s band (GuardDuty's
/// bands are Security Hub's labels), as an `Fn::If` chain over literal lists.
/// Findings are filtered by label, not `Normalized`: GuardDuty's findings
/// in Security Hub do not carry their severity times ten there.
fn severity_labels_floor() -> Value {
    const LABELS: [&str; 4] = ["LOW", "MEDIUM", "HIGH", "CRITICAL"];
    let earlier = &SEVERITY_FLOORS[..SEVERITY_FLOORS.len() - 1];
    let from = |i: usize| json!(LABELS[i..]);
    earlier.iter().enumerate().rev().fold(
        from(earlier.len()),
        |otherwise, (i, (_, _, condition))| json!({ "Fn::If": [condition, from(i), otherwise] }),
    )
}

/// The Security Hub findings that reach cordon: imported, active, not yet
/// handled by a human (workflow `NEW` or `NOTIFIED`), at or above the
/// severity floor. GuardDuty's findings come this way too when GuardDuty
/// sends them to Security Hub; both deliveries map to one case id, and the
/// router starts each case's execution under that id, so only one runs.
fn security_hub_pattern() -> Value {
    json!({
        "source": ["aws.securityhub"],
        "detail-type": ["Security Hub Findings - Imported"],
        "detail": { "findings": {
            "RecordState": ["ACTIVE"],
            "Workflow": { "Status": ["NEW", "NOTIFIED"] },
            "Severity": { "Label": severity_labels_floor() }
        } }
    })
}

/// The Config evaluations that reach cordon: `NON_COMPLIANT` ones, of the
/// rules the playbooks name (`config-rules`; EventBridge wildcards have only
/// `*`, so a `?` widens to `*` and routing decides). `None` when no playbook
/// answers Config evaluations on purpose (names `config` in `sources` or
/// has `config-rules`): every evaluation would reach the catch-all
/// notification, one message per non-compliant resource.
fn config_pattern(playbooks: &[&Playbook]) -> Option<Value> {
    let for_config: Vec<&Playbook> = playbooks
        .iter()
        .copied()
        .filter(|p| {
            !p.matcher.config_rules.is_empty() || p.matcher.sources.contains(&FindingSource::Config)
        })
        .collect();
    if for_config.is_empty() {
        return None;
    }
    let mut detail = json!({
        "messageType": ["ComplianceChangeNotification"],
        "newEvaluationResult": { "complianceType": ["NON_COMPLIANT"] }
    });
    if for_config
        .iter()
        .all(|p| !p.matcher.config_rules.is_empty())
    {
        let mut names: Vec<Value> = for_config
            .iter()
            .flat_map(|p| p.matcher.config_rules.iter())
            .map(|rule| {
                if rule.contains(['*', '?']) {
                    json!({ "wildcard": rule.replace('?', "*") })
                } else {
                    json!(rule)
                }
            })
            .collect();
        names.sort_by_key(|v| v.to_string());
        names.dedup();
        detail["configRuleName"] = Value::Array(names);
    }
    Some(json!({
        "source": ["aws.config"],
        "detail-type": ["Config Rules Compliance Change"],
        "detail": detail
    }))
}

/// An EventBridge rule starting the router, with the dead-letter queue and
/// retries every intake rule has.
fn intake_rule(description: &str, pattern: Value) -> Value {
    json!({
        "Type": "AWS::Events::Rule",
        "Properties": {
            "Description": description,
            "State": "ENABLED",
            "EventPattern": pattern,
            "Targets": [{
                "Id": "cordon-router",
                "Arn": r("RouterStateMachine"),
                "RoleArn": get_att("EventsRole", "Arn"),
                "DeadLetterConfig": { "Arn": get_att("DeadLetterQueue", "Arn") },
                "RetryPolicy": { "MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86_400 }
            }]
        }
    })
}

/// `MinimumSeverity`'s lower bound as a literal number: an EventBridge
/// `numeric` match needs a JSON number, and a `Ref` is a string, so an
/// `Fn::If` chain picks among literals.
fn severity_floor() -> Value {
    let (earlier, last) = SEVERITY_FLOORS.split_at(SEVERITY_FLOORS.len() - 1);
    earlier.iter().rev().fold(
        json!(last[0].1),
        |otherwise, (_, floor, condition)| json!({ "Fn::If": [condition, floor, otherwise] }),
    )
}

fn parameter(kind: &str, default: Value, description: &str) -> Value {
    json!({ "Type": kind, "Default": default, "Description": description })
}

/// The security account's template.
fn security_template(loaded: &[LoadedPlaybook]) -> Result<Value, Failure> {
    let set = set_digest(loaded);
    let journal_prefix = RUN_EVIDENCE_PREFIX;
    let mut parameters = Map::new();
    parameters.insert(
        "LambdaCodeBucket".into(),
        json!({
            "Type": "String",
            "Description": "S3 bucket holding the Lambda zip built by scripts/build-lambda."
        }),
    );
    parameters.insert(
        "LambdaCodeKey".into(),
        parameter(
            "String",
            json!("cordon/bootstrap.zip"),
            "Key of the zip in LambdaCodeBucket.",
        ),
    );
    parameters.insert(
        "Architecture".into(),
        json!({
            "Type": "String", "Default": "arm64", "AllowedValues": ["arm64", "x86_64"],
            "Description": "The architecture the zip was built for."
        }),
    );
    parameters.insert("ReservedConcurrency".into(), json!({
        "Type": "Number", "Default": 10, "MinValue": 1,
        "Description": "Concurrent Lambda invocations at most: bounds the calls cordon makes per second (docs/step-functions.md, Throttling)."
    }));
    parameters.insert("LogRetentionDays".into(), json!({
        "Type": "Number", "Default": 365,
        "AllowedValues": [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653],
        "Description": "Retention of the Lambda's and the state machines' logs."
    }));
    parameters.insert("MinimumSeverity".into(), json!({
        "Type": "String", "Default": "medium", "AllowedValues": SEVERITY_FLOORS.iter().map(|(band, _, _)| band).collect::<Vec<_>>(),
        "Description": "The lowest severity band that reaches cordon (low 1.0-3.9, medium 4.0-6.9, high 7.0-8.9, critical 9.0-10.0)."
    }));
    parameters.insert("ObjectLockMode".into(), json!({
        "Type": "String", "Default": "NONE", "AllowedValues": ["NONE", "GOVERNANCE", "COMPLIANCE"],
        "Description": "Object Lock default retention of the evidence bucket (only when the bucket is created); NONE leaves it off."
    }));
    parameters.insert(
        "ObjectLockDays".into(),
        json!({
            "Type": "Number", "Default": 365, "MinValue": 1,
            "Description": "Object Lock default retention in days (with ObjectLockMode)."
        }),
    );
    parameters.insert("ExternalId".into(), json!({
        "Type": "String", "Default": "", "AllowedPattern": "^$|^[\\w+=,.@:/-]{2,1224}$",
        "Description": "External id the member accounts' responder roles ask for (member-account.yaml); empty for none."
    }));
    parameters.insert(
        "ProtectedTag".into(),
        parameter(
            "String",
            json!(cordon_aws::protected::DEFAULT_PROTECTED_TAG),
            "Tag key marking resources no step touches without an approval naming the step.",
        ),
    );
    parameters.insert("FleetCapMax".into(), json!({
        "Type": "Number", "Default": 20, "MinValue": 0,
        "Description": "Instances all cases together may isolate per FleetCapWindowSeconds; 0 turns the cap off."
    }));
    parameters.insert("FleetCapWindowSeconds".into(), json!({
        "Type": "Number", "Default": 600, "MinValue": 1,
        "Description": "The fleet cap's window, in seconds (a bare number of seconds means the same to the CLI and the Lambda)."
    }));
    parameters.insert("LoopGuardMax".into(), json!({
        "Type": "Number", "Default": 3, "MinValue": 0,
        "Description": "Cases or epochs allowed on one resource per LoopGuardWindowSeconds; 0 turns the guard off."
    }));
    parameters.insert(
        "LoopGuardWindowSeconds".into(),
        json!({
            "Type": "Number", "Default": 86_400, "MinValue": 1,
            "Description": "The loop guard's window, in seconds."
        }),
    );

    let mut conditions = Map::new();
    // The last floor is the chain's fallback: it needs no condition.
    for (band, _, condition) in &SEVERITY_FLOORS[..SEVERITY_FLOORS.len() - 1] {
        conditions.insert(
            condition.to_string(),
            json!({ "Fn::Equals": [r("MinimumSeverity"), band] }),
        );
    }
    conditions.insert(
        "ObjectLock".into(),
        json!({ "Fn::Not": [{ "Fn::Equals": [r("ObjectLockMode"), "NONE"] }] }),
    );
    conditions.insert(
        "HasExternalId".into(),
        json!({ "Fn::Not": [{ "Fn::Equals": [r("ExternalId"), ""] }] }),
    );

    let mut resources = Map::new();
    resources.insert("CordonKey".into(), json!({
        "Type": "AWS::KMS::Key",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "Description": "cordon: evidence bucket, responders' topic and log encryption",
            "EnableKeyRotation": true,
            "KeyPolicy": {
                "Version": policy::POLICY_LANGUAGE_VERSION,
                "Statement": [
                    {
                        "Sid": "AccountAdministersTheKeyThroughIam",
                        "Effect": "Allow",
                        "Principal": { "AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root") },
                        "Action": "kms:*",
                        "Resource": "*"
                    },
                    {
                        "Sid": "CloudWatchLogsEncryptsCordonLogs",
                        "Effect": "Allow",
                        "Principal": { "Service": sub("logs.${AWS::Region}.amazonaws.com") },
                        "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
                        "Resource": "*",
                        "Condition": { "ArnLike": { "kms:EncryptionContext:aws:logs:arn": sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*") } }
                    },
                    service_may_use_the_key("EventBridgeSendsDeadLetters", "events.amazonaws.com"),
                    service_may_use_the_key("CloudWatchAlarmsPublishToTheTopic", "cloudwatch.amazonaws.com"),
                ]
            }
        }
    }));
    resources.insert(
        "CordonKeyAlias".into(),
        json!({
            "Type": "AWS::KMS::Alias",
            "Properties": { "AliasName": DEFAULT_KMS_ALIAS, "TargetKeyId": r("CordonKey") }
        }),
    );
    resources.insert("EvidenceBucket".into(), json!({
        "Type": "AWS::S3::Bucket",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Metadata": checkov_skips(&[
            ("CKV_AWS_18", "Server access logs need a second bucket with its own standard; evidence access is logged by KMS (every object is SSE-KMS) and by CloudTrail S3 data events, which the organisation's trail should record."),
        ]),
        "Properties": {
            "BucketName": sub("cordon-evidence-${AWS::AccountId}-${AWS::Region}"),
            "VersioningConfiguration": { "Status": "Enabled" },
            "BucketEncryption": { "ServerSideEncryptionConfiguration": [{
                "ServerSideEncryptionByDefault": { "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": get_att("CordonKey", "Arn") },
                "BucketKeyEnabled": true
            }] },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": true, "IgnorePublicAcls": true,
                "BlockPublicPolicy": true, "RestrictPublicBuckets": true
            },
            "OwnershipControls": { "Rules": [{ "ObjectOwnership": "BucketOwnerEnforced" }] },
            "ObjectLockEnabled": { "Fn::If": ["ObjectLock", true, r("AWS::NoValue")] },
            "ObjectLockConfiguration": { "Fn::If": ["ObjectLock", {
                "ObjectLockEnabled": "Enabled",
                "Rule": { "DefaultRetention": { "Mode": r("ObjectLockMode"), "Days": r("ObjectLockDays") } }
            }, r("AWS::NoValue")] }
        }
    }));
    let bucket_policy = substitute(
        &bucket_policy(SENTINEL_BUCKET, "us-east-1"),
        &[(
            &format!("arn:aws:s3:::{SENTINEL_BUCKET}"),
            "arn:${AWS::Partition}:s3:::${EvidenceBucket}",
        )],
    )?;
    resources.insert(
        "EvidenceBucketPolicy".into(),
        json!({
            "Type": "AWS::S3::BucketPolicy",
            "Properties": { "Bucket": r("EvidenceBucket"), "PolicyDocument": bucket_policy }
        }),
    );
    resources.insert(
        "ResponderTopic".into(),
        json!({
            "Type": "AWS::SNS::Topic",
            "Properties": {
                "DisplayName": "cordon responders",
                "KmsMasterKeyId": r("CordonKey")
            }
        }),
    );
    resources.insert("PauseParameter".into(), json!({
        "Type": "AWS::SSM::Parameter",
        "Properties": {
            "Name": PAUSE_PARAMETER,
            "Type": "String",
            "Value": "running",
            "Description": "Set to `paused` to halt all automatic action (checked before every step)."
        }
    }));
    resources.insert(
        "LambdaLogGroup".into(),
        json!({
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": format!("/aws/lambda/{FUNCTION_NAME}"),
                "RetentionInDays": r("LogRetentionDays"),
                "KmsKeyId": get_att("CordonKey", "Arn")
            }
        }),
    );
    resources.insert(
        "StatesLogGroup".into(),
        json!({
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": "/aws/vendedlogs/states/cordon",
                "RetentionInDays": r("LogRetentionDays"),
                "KmsKeyId": get_att("CordonKey", "Arn")
            }
        }),
    );
    resources.insert("LambdaRole".into(), json!({
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": LAMBDA_ROLE_NAME,
            "Path": policy::CORDON_IAM_PATH,
            "Description": "cordon's Lambda: exactly what the shipped playbooks need (cordon policy), plus its logs and traces.",
            "AssumeRolePolicyDocument": service_role("lambda.amazonaws.com"),
            "Policies": [
                {
                    "PolicyName": PLAYBOOK_POLICY_NAME,
                    "PolicyDocument": playbook_policy(
                        loaded,
                        "${EvidenceBucket}",
                        "${ResponderTopic}",
                        Some(("${AWS::AccountId}", "${AWS::Region}")),
                    )?
                },
                {
                    "PolicyName": "cordon-lambda-runtime",
                    "PolicyDocument": {
                        "Version": policy::POLICY_LANGUAGE_VERSION,
                        "Statement": [
                            statement("Logs", &["logs:CreateLogStream", "logs:PutLogEvents"], get_att("LambdaLogGroup", "Arn")),
                            statement("XRay", &["xray:PutTelemetryRecords", "xray:PutTraceSegments"], json!("*"))
                        ]
                    }
                }
            ]
        }
    }));
    resources.insert("CordonFunction".into(), json!({
        "Type": "AWS::Lambda::Function",
        "Metadata": checkov_skips(&[
            ("CKV_AWS_116", "Step Functions invokes the function synchronously, where a Lambda DLQ never applies; failed executions go to the stack's dead-letter queue through the execution status rule."),
            ("CKV_AWS_117", "The function only calls AWS APIs; a VPC would add NAT gateways or a dozen interface endpoints and no isolation its IAM role does not already give."),
            ("CKV_AWS_173", "The environment holds names and ARNs only, no secret (rotated keys go to Secrets Manager), so AWS-managed encryption of it suffices."),
        ]),
        "Properties": {
            "FunctionName": FUNCTION_NAME,
            "Description": "cordon: the Step Functions task (plan, step, decide, rollback)",
            "Runtime": "provided.al2023",
            "Handler": "bootstrap",
            "Architectures": [r("Architecture")],
            "Code": { "S3Bucket": r("LambdaCodeBucket"), "S3Key": r("LambdaCodeKey") },
            "Role": get_att("LambdaRole", "Arn"),
            "MemorySize": 512,
            "Timeout": 300,
            "ReservedConcurrentExecutions": r("ReservedConcurrency"),
            "TracingConfig": { "Mode": "Active" },
            "LoggingConfig": { "LogGroup": r("LambdaLogGroup"), "LogFormat": "JSON" },
            "Environment": { "Variables": {
                "CORDON_JOURNAL": sub(&format!("s3://${{EvidenceBucket}}/{journal_prefix}")),
                "CORDON_EVIDENCE_BUCKET": r("EvidenceBucket"),
                "CORDON_NOTIFY_TOPIC_ARN": r("ResponderTopic"),
                "CORDON_APPROVAL_TOPIC_ARN": r("ResponderTopic"),
                "CORDON_PAUSE_PARAMETER": r("PauseParameter"),
                "CORDON_ASSUME_ROLE_NAME": RESPONDER_ROLE_NAME,
                "CORDON_EXTERNAL_ID": { "Fn::If": ["HasExternalId", r("ExternalId"), r("AWS::NoValue")] },
                "CORDON_PROTECTED_TAG": r("ProtectedTag"),
                "CORDON_FLEET_CAP_MAX": r("FleetCapMax"),
                "CORDON_FLEET_CAP_WINDOW": r("FleetCapWindowSeconds"),
                "CORDON_LOOP_GUARD_MAX": r("LoopGuardMax"),
                "CORDON_LOOP_GUARD_WINDOW": r("LoopGuardWindowSeconds")
            } }
        }
    }));
    let states_base = |extra: Vec<Value>| -> Value {
        let mut statements = vec![
            statement(
                "InvokeCordon",
                &["lambda:InvokeFunction"],
                json!([
                    get_att("CordonFunction", "Arn"),
                    sub("${CordonFunction.Arn}:*")
                ]),
            ),
            statement(
                "LogDelivery",
                &[
                    "logs:CreateLogDelivery",
                    "logs:DeleteLogDelivery",
                    "logs:DescribeLogGroups",
                    "logs:DescribeResourcePolicies",
                    "logs:GetLogDelivery",
                    "logs:ListLogDeliveries",
                    "logs:PutResourcePolicy",
                    "logs:UpdateLogDelivery",
                ],
                json!("*"),
            ),
            statement(
                "XRay",
                &[
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                    "xray:PutTelemetryRecords",
                    "xray:PutTraceSegments",
                ],
                json!("*"),
            ),
        ];
        statements.extend(extra);
        json!({ "Version": policy::POLICY_LANGUAGE_VERSION, "Statement": statements })
    };
    let states_skips = checkov_skips(&[(
        "CKV_AWS_111",
        "CloudWatch Logs' log-delivery actions (CreateLogDelivery, PutResourcePolicy, ...) support no resource-level permission: AWS documents Resource \"*\" for Step Functions logging.",
    )]);
    resources.insert("PlaybookStatesRole".into(), json!({
        "Type": "AWS::IAM::Role",
        "Metadata": states_skips,
        "Properties": {
            "Path": policy::CORDON_IAM_PATH,
            "Description": "cordon's playbook state machines: invoke the cordon Lambda, log, trace.",
            "AssumeRolePolicyDocument": service_role("states.amazonaws.com"),
            "Policies": [{ "PolicyName": "cordon-playbook-machines", "PolicyDocument": states_base(vec![]) }]
        }
    }));
    let mut machine_arns = vec![r("RouterStateMachine")];
    for l in loaded {
        let name = &l.playbook.name;
        let id = machine_logical_id(name);
        let definition = asl::state_machine(
            &l.playbook,
            &AslOptions {
                lambda_arn: LAMBDA_ARN_VAR.to_string(),
                playbook_set: set.clone(),
                approval_timeout_seconds: asl::DEFAULT_APPROVAL_TIMEOUT_SECONDS,
            },
        )
        .map_err(|e| invalid(e.into()))?;
        resources.insert(
            id.clone(),
            state_machine(&format!("cordon-{name}"), &definition, "PlaybookStatesRole")?,
        );
        machine_arns.push(r(&id));
    }
    resources.insert("RouterStatesRole".into(), json!({
        "Type": "AWS::IAM::Role",
        "Metadata": states_skips,
        "Properties": {
            "Path": policy::CORDON_IAM_PATH,
            "Description": "cordon's router: plan (route) with the cordon Lambda, start the chosen playbook's machine.",
            "AssumeRolePolicyDocument": service_role("states.amazonaws.com"),
            "Policies": [{ "PolicyName": "cordon-router", "PolicyDocument": states_base(vec![
                statement("StartPlaybookMachines", &["states:StartExecution"], Value::Array(machine_arns[1..].to_vec()))
            ]) }]
        }
    }));
    resources.insert(
        "RouterStateMachine".into(),
        state_machine(
            ROUTER_NAME,
            &router_definition(loaded, &set),
            "RouterStatesRole",
        )?,
    );
    resources.insert(
        "DeadLetterQueue".into(),
        json!({
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "MessageRetentionPeriod": 1_209_600,
                "KmsMasterKeyId": r("CordonKey")
            }
        }),
    );
    let intake_rules: Vec<&str> = ["FindingRule", "SecurityHubFindingRule"]
        .into_iter()
        .chain(
            config_pattern(&playbooks_only(loaded).iter().collect::<Vec<_>>())
                .map(|_| "ConfigComplianceRule"),
        )
        .collect();
    resources.insert("DeadLetterQueuePolicy".into(), json!({
        "Type": "AWS::SQS::QueuePolicy",
        "Properties": {
            "Queues": [r("DeadLetterQueue")],
            "PolicyDocument": {
                "Version": policy::POLICY_LANGUAGE_VERSION,
                "Statement": [{
                    "Sid": "EventBridgeDeadLetters",
                    "Effect": "Allow",
                    "Principal": { "Service": "events.amazonaws.com" },
                    "Action": "sqs:SendMessage",
                    "Resource": get_att("DeadLetterQueue", "Arn"),
                    "Condition": { "ArnEquals": { "aws:SourceArn": intake_rules.iter().map(|rule| get_att(rule, "Arn")).chain([get_att("FailedExecutionRule", "Arn")]).collect::<Vec<_>>() } }
                }]
            }
        }
    }));
    resources.insert("EventsRole".into(), json!({
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Path": policy::CORDON_IAM_PATH,
            "Description": "EventBridge starts cordon's router for each GuardDuty or Security Hub finding and Config non-compliance.",
            "AssumeRolePolicyDocument": service_role("events.amazonaws.com"),
            "Policies": [{ "PolicyName": "cordon-start-router", "PolicyDocument": {
                "Version": policy::POLICY_LANGUAGE_VERSION,
                "Statement": [statement("StartRouter", &["states:StartExecution"], r("RouterStateMachine"))]
            } }]
        }
    }));
    resources.insert(
        "FindingRule".into(),
        intake_rule(
            "GuardDuty findings at or above MinimumSeverity start cordon's router.",
            json!({
                "source": ["aws.guardduty"],
                "detail-type": ["GuardDuty Finding"],
                "detail": { "severity": [{ "numeric": [">=", severity_floor()] }] }
            }),
        ),
    );
    resources.insert(
        "SecurityHubFindingRule".into(),
        intake_rule(
            "Security Hub findings (GuardDuty's, Inspector's, Macie's, Config's, partners') labelled at or above MinimumSeverity start cordon's router.",
            security_hub_pattern(),
        ),
    );
    if let Some(pattern) = config_pattern(&playbooks_only(loaded).iter().collect::<Vec<_>>()) {
        resources.insert(
            "ConfigComplianceRule".into(),
            intake_rule(
                "AWS Config evaluations turning NON_COMPLIANT, for the rules cordon's playbooks remediate, start cordon's router.",
                pattern,
            ),
        );
    }
    resources.insert("FailedExecutionRule".into(), json!({
        "Type": "AWS::Events::Rule",
        "Properties": {
            "Description": "Failed, timed-out and aborted executions of cordon's machines go to the dead-letter queue.",
            "State": "ENABLED",
            "EventPattern": {
                "source": ["aws.states"],
                "detail-type": ["Step Functions Execution Status Change"],
                "detail": {
                    "status": ["FAILED", "TIMED_OUT", "ABORTED"],
                    "stateMachineArn": machine_arns
                }
            },
            "Targets": [{ "Id": "cordon-dead-letters", "Arn": get_att("DeadLetterQueue", "Arn") }]
        }
    }));
    resources.insert("DeadLetterAlarm".into(), json!({
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": "A finding cordon could not start on, or a cordon execution that failed, timed out or was aborted: read the dead-letter queue.",
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{ "Name": "QueueName", "Value": get_att("DeadLetterQueue", "QueueName") }],
            "Statistic": "Maximum",
            "Period": 60,
            "EvaluationPeriods": 1,
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": [r("ResponderTopic")]
        }
    }));

    let mut outputs = Map::new();
    let mut output = |name: &str, value: Value, description: &str| {
        outputs.insert(
            name.into(),
            json!({ "Description": description, "Value": value }),
        );
    };
    output(
        "LambdaRoleArn",
        get_att("LambdaRole", "Arn"),
        "Give this to member-account.yaml (SecurityAccountLambdaRoleArn).",
    );
    output(
        "FunctionArn",
        get_att("CordonFunction", "Arn"),
        "The cordon Lambda.",
    );
    output(
        "RouterStateMachineArn",
        r("RouterStateMachine"),
        "Where GuardDuty findings enter.",
    );
    output(
        "EvidenceBucketName",
        r("EvidenceBucket"),
        "Evidence and journals (cases/).",
    );
    output(
        "Journal",
        sub(&format!("s3://${{EvidenceBucket}}/{journal_prefix}")),
        "`cordon approve ... --journal` and `cordon status --journal` take this.",
    );
    output(
        "ResponderTopicArn",
        r("ResponderTopic"),
        "Subscribe responders: notifications and approval requests.",
    );
    output(
        "DeadLetterQueueUrl",
        r("DeadLetterQueue"),
        "Findings and executions that failed.",
    );

    Ok(json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("cordon on AWS: GuardDuty findings -> router -> one state machine per playbook -> the cordon Lambda. Generated by `cordon export-infra` (scripts/gen-infra) for the embedded playbook set {set}; do not edit."),
        "Parameters": parameters,
        "Conditions": conditions,
        "Resources": resources,
        "Outputs": outputs
    }))
}

/// The member accounts' template: the responder role.
fn member_template(loaded: &[LoadedPlaybook]) -> Result<Value, Failure> {
    let set = set_digest(loaded);
    Ok(json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("cordon's responder role for a member account, assumed by the security account's cordon Lambda. Generated by `cordon export-infra` (scripts/gen-infra) for the embedded playbook set {set}; do not edit."),
        "Parameters": {
            "SecurityAccountLambdaRoleArn": {
                "Type": "String",
                "AllowedPattern": "^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$",
                "Description": "The LambdaRoleArn output of cordon.yaml in the security account."
            },
            "ExternalId": {
                "Type": "String", "MinLength": 2, "MaxLength": 1224, "AllowedPattern": "^[\\w+=,.@:/-]+$",
                "Description": "The ExternalId given to cordon.yaml."
            },
            "EvidenceBucketName": {
                "Type": "String",
                "AllowedPattern": "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
                "Description": "The EvidenceBucketName output of cordon.yaml."
            },
            "ResponderTopicArn": {
                "Type": "String",
                "AllowedPattern": "^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]+$",
                "Description": "The ResponderTopicArn output of cordon.yaml."
            }
        },
        "Resources": {
            "ResponderRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": RESPONDER_ROLE_NAME,
                    "Description": "cordon acts on this account's findings through this role (cordon policy for the shipped playbooks).",
                    "MaxSessionDuration": 3600,
                    "AssumeRolePolicyDocument": assume_role_policy(
                        json!({ "AWS": r("SecurityAccountLambdaRoleArn") }),
                        Some(json!({ "StringEquals": { "sts:ExternalId": r("ExternalId") } })),
                    ),
                    "Policies": [{
                        "PolicyName": PLAYBOOK_POLICY_NAME,
                        "PolicyDocument": playbook_policy(loaded, "${EvidenceBucketName}", "${ResponderTopicArn}", None)?
                    }]
                }
            }
        },
        "Outputs": {
            "ResponderRoleArn": { "Description": "The role cordon assumes here.", "Value": get_att("ResponderRole", "Arn") }
        }
    }))
}

/// YAML 1.1 words a plain scalar must not be (PyYAML, which cfn-lint,
/// checkov and moto read templates with, takes them for booleans or null).
const YAML_WORDS: [&str; 11] = [
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", "",
];

/// Whether `s` can be written unquoted and still read back as this string by
/// any YAML 1.1 or 1.2 parser: a conservative whitelist (no number-, date- or
/// boolean-like text, no indicator characters, no `: ` or ` #`).
fn plain_ok(s: &str) -> bool {
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/');
    first_ok
        && !YAML_WORDS.contains(&s.to_ascii_lowercase().as_str())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || " _./:-(),".contains(c))
        && !s.contains(": ")
        && !s.ends_with(':')
        && !s.ends_with(' ')
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) if plain_ok(s) => s.clone(),
        // A JSON string is a valid YAML double-quoted scalar.
        other => other.to_string(),
    }
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::String(s) => s.contains('\n'),
        _ => false,
    }
}

/// `value` after a key or `- ` at `indent`: inline when a scalar, else on
/// the following lines (a multi-line string as a literal block).
fn emit_after(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            emit_mapping(out, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            emit_sequence(out, items, indent + 2);
        }
        Value::String(s) if s.contains('\n') => {
            out.push_str(if s.ends_with('\n') { " |\n" } else { " |-\n" });
            for line in s.lines() {
                if !line.is_empty() {
                    out.push_str(&" ".repeat(indent + 2));
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn emit_mapping(out: &mut String, map: &Map<String, Value>, indent: usize) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&scalar(&Value::String(key.clone())));
        out.push(':');
        emit_after(out, value, indent);
    }
}

fn emit_sequence(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The first key on the dash's line, the others under it.
                let mut body = String::new();
                emit_mapping(&mut body, map, indent + 2);
                out.push(' ');
                out.push_str(&body[indent + 2..]);
            }
            other if is_block(other) => emit_after(out, other, indent),
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

/// The template as block YAML (state machine definitions as literal blocks),
/// after a header saying how it is made.
fn to_yaml(template: &Value) -> Result<String, Failure> {
    let Value::Object(map) = template else {
        return Err(failed(anyhow!(
            "a template is a mapping: report this as a cordon bug"
        )));
    };
    let mut out = String::from(
        "# Generated by `cordon export-infra` (scripts/gen-infra): do not edit; a test fails when it differs.\n",
    );
    emit_mapping(&mut out, map, 0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_core::finding::{Severity, SeverityBand};
    use std::collections::BTreeSet;

    /// Actions AWS authorizes on no resource type (Service Authorization
    /// Reference): the only ones any policy of the templates grants on `*`.
    const NO_RESOURCE_LEVEL: [&str; 25] = [
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeAutoScalingInstances",
        "ec2:DescribeIamInstanceProfileAssociations",
        "ec2:DescribeInstanceAttribute",
        "ec2:DescribeInstances",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSnapshots",
        "ec2:DescribeTags",
        "ec2:DescribeVolumes",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetHealth",
        "guardduty:ListDetectors",
        "logs:CreateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:DescribeLogGroups",
        "logs:DescribeResourcePolicies",
        "logs:GetLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:UpdateLogDelivery",
        "sts:GetCallerIdentity",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "xray:PutTelemetryRecords",
    ];
    /// X-Ray's segment upload, the same (kept apart to keep the array sorted by service).
    const XRAY_PUT_TRACE_SEGMENTS: &str = "xray:PutTraceSegments";

    fn loaded() -> Vec<LoadedPlaybook> {
        Source::Embedded.load().expect("the embedded playbooks")
    }

    fn inline(yaml: &str) -> Playbook {
        cordon_core::validate::validate_text(yaml, "inline.yaml")
            .expect("a valid playbook")
            .0
    }

    #[test]
    fn security_hub_findings_are_filtered_by_the_labels_of_the_chosen_band_and_up() {
        let pattern = security_hub_pattern();
        assert_eq!(
            pattern["detail-type"],
            json!(["Security Hub Findings - Imported"])
        );
        let mut chain = &pattern["detail"]["findings"]["Severity"]["Label"];
        let mut seen = Vec::new();
        while let Some(branch) = chain.get("Fn::If") {
            seen.push((branch[0].clone(), branch[1].clone()));
            chain = &branch[2];
        }
        assert_eq!(
            seen,
            [
                (
                    json!("FromLow"),
                    json!(["LOW", "MEDIUM", "HIGH", "CRITICAL"])
                ),
                (json!("FromMedium"), json!(["MEDIUM", "HIGH", "CRITICAL"])),
                (json!("FromHigh"), json!(["HIGH", "CRITICAL"])),
            ]
        );
        assert_eq!(chain, &json!(["CRITICAL"]));
    }

    #[test]
    fn config_evaluations_reach_cordon_only_for_the_rules_playbooks_remediate() {
        let notify = "steps:\n  - id: n\n    action: notify\n";
        let ssh = inline(&format!(
            "name: a\nmatch:\n  config-rules: [restricted-ssh]\n{notify}"
        ));
        let ports = inline(&format!(
            "name: b\nmatch:\n  config-rules: [\"restricted-?ommon-*\"]\n{notify}"
        ));
        let any_config = inline(&format!("name: c\nmatch:\n  sources: [config]\n{notify}"));
        let catch_all = inline(&format!("name: d\npriority: -1\nmatch: {{}}\n{notify}"));
        assert_eq!(
            config_pattern(&[&catch_all]),
            None,
            "no playbook answers Config on purpose"
        );
        let pattern = config_pattern(&[&ssh, &ports, &catch_all]).expect("a rule");
        assert_eq!(pattern["source"], json!(["aws.config"]));
        assert_eq!(
            pattern["detail"]["newEvaluationResult"]["complianceType"],
            json!(["NON_COMPLIANT"])
        );
        assert_eq!(
            pattern["detail"]["configRuleName"],
            json!(["restricted-ssh", { "wildcard": "restricted-*ommon-*" }])
        );
        let pattern = config_pattern(&[&ssh, &any_config]).expect("a rule");
        assert!(
            pattern["detail"].get("configRuleName").is_none(),
            "a playbook for every Config rule takes every rule: {pattern}"
        );
    }

    fn as_list(value: &Value) -> Vec<Value> {
        match value {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        }
    }

    /// Every IAM role policy of a template: `(role, policy name, document)`.
    fn role_policies(template: &Value) -> Vec<(String, String, Value)> {
        let mut found = Vec::new();
        for (id, resource) in template["Resources"].as_object().expect("Resources") {
            if resource["Type"] != "AWS::IAM::Role" {
                continue;
            }
            for policy in as_list(&resource["Properties"]["Policies"]) {
                found.push((
                    id.clone(),
                    policy["PolicyName"].as_str().expect("a name").to_string(),
                    policy["PolicyDocument"].clone(),
                ));
            }
        }
        found
    }

    #[test]
    fn the_yaml_written_reads_back_as_the_template() {
        let loaded = loaded();
        for template in [
            security_template(&loaded).expect("cordon.yaml"),
            member_template(&loaded).expect("member-account.yaml"),
        ] {
            let text = to_yaml(&template).expect("YAML");
            let read = cordon_core::yaml::parse(&text).expect("valid YAML").value;
            assert_eq!(read, template);
        }
    }

    #[test]
    fn scalars_that_yaml_would_retype_are_quoted() {
        for text in [
            "2012-10-17",
            "*",
            "yes",
            "No",
            "on",
            "null",
            "~",
            "123",
            "1.5",
            "-x",
            "a: b",
            "a #b",
            "${X}",
            "",
            " a",
        ] {
            assert!(!plain_ok(text), "{text:?} must be quoted");
        }
        for text in [
            "arm64",
            "AWS::IAM::Role",
            "sts:AssumeRole",
            "/cordon/",
            "cordon-lambda",
            "Fn::Sub",
        ] {
            assert!(plain_ok(text), "{text:?} may stay plain");
        }
    }

    #[test]
    fn no_policy_grants_a_wildcard_action_nor_star_beyond_actions_without_resource_level_permissions()
     {
        let loaded = loaded();
        let security = security_template(&loaded).expect("cordon.yaml");
        let member = member_template(&loaded).expect("member-account.yaml");
        let mut on_star = BTreeSet::new();
        let mut policies = role_policies(&security);
        policies.extend(role_policies(&member));
        let names: Vec<(&str, &str)> = policies
            .iter()
            .map(|(r, n, _)| (r.as_str(), n.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("LambdaRole", PLAYBOOK_POLICY_NAME),
                ("LambdaRole", "cordon-lambda-runtime"),
                ("PlaybookStatesRole", "cordon-playbook-machines"),
                ("RouterStatesRole", "cordon-router"),
                ("EventsRole", "cordon-start-router"),
                ("ResponderRole", PLAYBOOK_POLICY_NAME),
            ]
        );
        for (role, name, document) in policies {
            for statement in as_list(&document["Statement"]) {
                assert_eq!(statement["Effect"], "Allow", "{role}/{name}");
                let actions: Vec<String> = as_list(&statement["Action"])
                    .iter()
                    .map(|a| a.as_str().expect("an action").to_string())
                    .collect();
                for action in &actions {
                    assert!(
                        !action.contains('*'),
                        "{role}/{name}: wildcard action {action}"
                    );
                }
                if as_list(&statement["Resource"]).contains(&json!("*")) {
                    on_star.extend(actions);
                }
            }
        }
        let mut allowed: BTreeSet<String> =
            NO_RESOURCE_LEVEL.iter().map(|a| a.to_string()).collect();
        allowed.insert(XRAY_PUT_TRACE_SEGMENTS.to_string());
        assert_eq!(on_star, allowed);
    }

    #[test]
    fn the_playbook_policies_are_cordon_policy_with_the_stack_names() {
        let loaded = loaded();
        let security = security_template(&loaded).expect("cordon.yaml");
        let policies = role_policies(&security);
        let (_, _, document) = policies
            .iter()
            .find(|(role, name, _)| role == "LambdaRole" && name == PLAYBOOK_POLICY_NAME)
            .expect("the Lambda role's playbook policy");
        // Resolved with an account, region, bucket and topic, the template's
        // policy is `cordon policy`'s for the same options.
        let text = document.to_string();
        let resolved = text
            .replace(r#"{"Fn::Sub":"#, "")
            .replace("${AWS::AccountId}", "111122223333")
            .replace("${AWS::Region}", "eu-west-1")
            .replace("${EvidenceBucket}", "evidence-b")
            .replace("${ResponderTopic}", "arn:aws:sns:eu-west-1:111122223333:t");
        let resolved = resolved.replace("\"}", "\"");
        let opts = PolicyOptions::new("*", "111122223333", "eu-west-1")
            .and_then(|o| o.with_evidence_bucket(Some("evidence-b")))
            .and_then(|o| o.with_notify_topic(Some("arn:aws:sns:eu-west-1:111122223333:t")))
            .expect("options");
        let expected = policy::role_policy(&playbooks_only(&loaded), &opts).expect("a policy");
        assert_eq!(
            serde_json::from_str::<Value>(&resolved).expect("JSON"),
            serde_json::to_value(&expected.document).expect("JSON")
        );
    }

    #[test]
    fn the_router_starts_each_playbook_machine_by_its_name_and_nothing_else() {
        let loaded = loaded();
        let router = router_definition(&loaded, "0".repeat(64).as_str());
        let choices = router["States"]["Choose playbook"]["Choices"]
            .as_array()
            .expect("choices");
        assert_eq!(choices.len(), loaded.len());
        for (choice, l) in choices.iter().zip(&loaded) {
            let name = &l.playbook.name;
            assert_eq!(choice["And"][1]["StringEquals"], json!(name));
            let start = &router["States"][choice["Next"].as_str().expect("a next state")];
            assert_eq!(
                start["Parameters"]["StateMachineArn"],
                json!(format!("${{{}}}", machine_logical_id(name)))
            );
        }
        assert_eq!(
            router["States"]["Choose playbook"]["Default"],
            "No playbook"
        );
        assert_eq!(
            router["States"]["Route"]["Parameters"]["Payload"]["mode"],
            "plan"
        );
        assert!(
            router["States"]["Route"]["Parameters"]["Payload"]
                .get("playbook")
                .is_none()
        );
    }

    /// Evaluates the `Fn::If` chain for one chosen band.
    fn floor_for(band: &str) -> u64 {
        let mut value = severity_floor();
        while let Some(branches) = value.get("Fn::If").cloned() {
            let condition = branches[0].as_str().expect("a condition");
            let holds = SEVERITY_FLOORS
                .iter()
                .any(|(b, _, c)| *c == condition && *b == band);
            value = branches[if holds { 1 } else { 2 }].clone();
        }
        value.as_u64().expect("a number")
    }

    #[test]
    fn minimum_severity_filters_at_the_lower_bound_of_each_band() {
        for (band, floor, _) in SEVERITY_FLOORS {
            assert_eq!(floor_for(band), u64::from(floor), "{band}");
            let parsed: SeverityBand = band.parse().expect("a band name");
            assert_eq!(
                Severity::new(f64::from(floor)).expect("a severity").band(),
                parsed
            );
            if floor > 1 {
                let below = Severity::new(f64::from(floor) - 0.1).expect("a severity");
                assert_ne!(below.band(), parsed, "{band}");
            }
        }
    }

    #[test]
    fn policy_sentinels_never_survive_and_a_dollar_brace_is_refused() {
        let loaded = loaded();
        let text = to_yaml(&security_template(&loaded).expect("cordon.yaml")).expect("YAML");
        assert!(!text.contains("sentinel"));
        assert!(!text.contains(SENTINEL_ACCOUNT));
        assert!(substitute(&json!("a ${b}"), &[]).is_err());
    }
}
