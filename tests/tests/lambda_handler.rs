//! The Step Functions task handler against the emulator, with the payloads
//! the generated state machine sends: a whole case step by step, retries and
//! overlapping invocations, rollback, and each stable error name from a real cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;
use cordon_aws::client::AwsClients;
use cordon_aws::s3_journal::S3Journal;
use cordon_core::journal::JournalStore;
use cordon_core::plan::CaseId;
use cordon_lambda::{Config, ErrorName, Handler, TaskOutput};
use cordon_tests::{EmulatorGuard, emulator, s3_journal_world};
use serde_json::{Value, json};

const BUCKET: &str = "cordon-lambda";
const PREFIX: &str = "cases/";

fn handler(aws: &EmulatorGuard) -> Handler {
    let config = Config::from_lookup(|name| match name {
        "CORDON_JOURNAL" => Some(format!("s3://{BUCKET}/{PREFIX}")),
        _ => None,
    })
    .unwrap();
    Handler::new(aws.clients().clone(), config).unwrap()
}

fn event(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap()
}

/// The security groups of each of the instance's ENIs, and its termination protection.
async fn instance_state(
    clients: &AwsClients,
    instance: &str,
) -> (BTreeMap<String, Vec<String>>, bool) {
    let enis = clients
        .ec2
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(instance)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let groups = enis
        .network_interfaces()
        .iter()
        .map(|eni| {
            let mut ids: Vec<String> = eni
                .groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_owned))
                .collect();
            ids.sort();
            (
                eni.network_interface_id().unwrap_or_default().to_string(),
                ids,
            )
        })
        .collect();
    let protection = clients
        .ec2
        .describe_instance_attribute()
        .instance_id(instance)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::DisableApiTermination)
        .send()
        .await
        .unwrap()
        .disable_api_termination()
        .and_then(|b| b.value())
        .unwrap_or(false);
    (groups, protection)
}

async fn plan(handler: &Handler, raw: &str) -> TaskOutput {
    handler
        .handle(json!({
            "mode": "plan",
            "finding": event(raw),
            "playbook": "ec2-compromised-high",
            "playbook-set": handler.playbook_set(),
        }))
        .await
        .unwrap()
}

async fn step(
    handler: &Handler,
    case: &str,
    id: &str,
) -> Result<TaskOutput, cordon_lambda::TaskError> {
    handler
        .handle(json!({"mode": "step", "case-id": case, "step": id, "playbook-set": handler.playbook_set()}))
        .await
}

fn mutations(clients: &AwsClients, op: &str) -> u64 {
    clients.calls.operations().get(op).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_runs_step_by_step_to_completed_and_rolls_back_exactly() {
    let aws = emulator().await;
    let (fixture, raw) = s3_journal_world(&aws, BUCKET).await;
    let instance = fixture.instance("web-01").unwrap().id.clone();
    let before = instance_state(aws.clients(), &instance).await;
    let handler = handler(&aws);

    let opened = plan(&handler, &raw).await;
    assert_eq!(opened.playbook.as_deref(), Some("ec2-compromised-high"));
    assert_eq!(opened.status, "running", "{}", opened.message);
    assert_eq!(opened.outcome, "done");
    let steps = opened.steps.clone().unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s.id == "isolate" && s.contains && s.needs.is_empty())
    );
    // The same delivery again (an EventBridge retry): the same case, nothing new.
    let again = plan(&handler, &raw).await;
    assert_eq!(again.case_id, opened.case_id);

    // Graph order: every step's needs come before it in the plan.
    let mut last = None;
    for s in &steps {
        let out = step(&handler, &opened.case_id, &s.id).await.unwrap();
        assert_eq!(
            out.next.as_deref(),
            Some("continue"),
            "{}: {}",
            s.id,
            out.message
        );
        assert!(
            matches!(
                out.step_status.as_deref(),
                Some("verified" | "skipped" | "failed")
            ),
            "{}: {:?}",
            s.id,
            out.step_status
        );
        last = Some(out);
    }
    let last = last.unwrap();
    assert!(
        matches!(
            last.status.as_str(),
            "completed" | "completed-with-failures"
        ),
        "{}",
        last.message
    );
    let contained = instance_state(aws.clients(), &instance).await;
    assert_ne!(contained, before, "nothing was contained");

    let case = CaseId::parse(&opened.case_id).unwrap();
    let verified = cordon_aws::manifest::verify_case(aws.clients(), BUCKET, PREFIX, &case, None)
        .await
        .unwrap();
    assert!(verified.ok(), "{:?}", verified.problems);

    let rolled = handler
        .handle(json!({"mode": "rollback", "case-id": opened.case_id, "reason": "test"}))
        .await
        .unwrap();
    assert!(
        matches!(
            rolled.status.as_str(),
            "rolled-back" | "rolled-back-except-credentials"
        ),
        "{}",
        rolled.message
    );
    assert_eq!(instance_state(aws.clients(), &instance).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_or_overlapping_step_mutates_once() {
    let aws = emulator().await;
    let (_, raw) = s3_journal_world(&aws, BUCKET).await;
    let handler = handler(&aws);
    let opened = plan(&handler, &raw).await;
    let case = opened.case_id.clone();
    step(&handler, &case, "isolate").await.unwrap();
    aws.clients().calls.reset();

    // A retry of a verified step: no mutating call at all.
    let first = step(&handler, &case, "protect").await.unwrap();
    assert_eq!(first.step_status.as_deref(), Some("verified"));
    let once = mutations(aws.clients(), "EC2.ModifyInstanceAttribute");
    assert!(once > 0, "{:?}", aws.clients().calls.operations());
    let retry = step(&handler, &case, "protect").await.unwrap();
    assert_eq!(retry.step_status.as_deref(), Some("verified"));
    assert_eq!(
        mutations(aws.clients(), "EC2.ModifyInstanceAttribute"),
        once
    );

    // Two invocations at once: one runs, the other is told to retry (or finds it done).
    let (a, b) = tokio::join!(step(&handler, &case, "tag"), step(&handler, &case, "tag"));
    for result in [&a, &b] {
        match result {
            Ok(out) => assert_eq!(out.step_status.as_deref(), Some("verified")),
            Err(e) => assert_eq!(e.name, ErrorName::InProgress, "{e}"),
        }
    }
    assert!(a.is_ok() || b.is_ok());
    assert_eq!(
        mutations(aws.clients(), "EC2.CreateTags"),
        1,
        "{:?}",
        aws.clients().calls.operations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_name_has_a_real_cause() {
    let aws = emulator().await;
    let (_, raw) = s3_journal_world(&aws, BUCKET).await;
    let handler = handler(&aws);
    let name = |r: Result<TaskOutput, cordon_lambda::TaskError>| match r {
        Ok(out) => panic!("expected an error, got {out:?}"),
        Err(e) => {
            assert!(!e.message.is_empty());
            e.name
        }
    };
    // Malformed finding, hostile id, unknown keys in the task input.
    assert_eq!(
        name(
            handler
                .handle(json!({"mode": "plan", "finding": {"id": 3}}))
                .await
        ),
        ErrorName::InvalidFinding
    );
    let mut hostile = event(&raw);
    hostile["resource"]["instanceDetails"]["instanceId"] = json!("i-../../etc");
    assert_eq!(
        name(
            handler
                .handle(json!({"mode": "plan", "finding": hostile}))
                .await
        ),
        ErrorName::InvalidFinding
    );
    assert_eq!(
        name(
            handler
                .handle(json!({"mode": "step", "case-id": "x", "step": "a", "extra": 1}))
                .await
        ),
        ErrorName::InvalidFinding
    );
    // Another playbook pinned than the finding routes to.
    assert_eq!(
        name(
            handler
                .handle(json!({"mode": "plan", "finding": event(&raw), "playbook": "ec2-low"}))
                .await
        ),
        ErrorName::InvalidFinding
    );
    // A state machine generated from another playbook set.
    assert_eq!(
        name(
            handler
                .handle(
                    json!({"mode": "plan", "finding": event(&raw), "playbook-set": "0".repeat(64)})
                )
                .await
        ),
        ErrorName::PlaybookSetMismatch
    );
    // Unknown case, unknown step.
    assert_eq!(
        name(step(&handler, "case-0123456789abcdef0123", "isolate").await),
        ErrorName::NotFound
    );
    let opened = plan(&handler, &raw).await;
    assert_eq!(
        name(step(&handler, &opened.case_id, "no-such-step").await),
        ErrorName::NotFound
    );
    // A step before the steps it needs.
    assert_eq!(
        name(step(&handler, &opened.case_id, "store-evidence").await),
        ErrorName::NotReady
    );
    // Another worker holds the case's lease.
    let other = S3Journal::new(aws.clients().clone(), BUCKET, PREFIX);
    let case = CaseId::parse(&opened.case_id).unwrap();
    let lease = other.lock(&case).await.unwrap();
    assert_eq!(
        name(step(&handler, &opened.case_id, "isolate").await),
        ErrorName::InProgress
    );
    other.release(&case, lease).await.unwrap();
    step(&handler, &opened.case_id, "isolate").await.unwrap();
}

/// A playbook whose gated step only alice may approve.
const GATED: &str = r#"
name: gated
priority: 1
match:
  resource-types: [Instance]
on-failure: stop
steps:
  - id: tag
    action: tag-resource
    with:
      tags:
        cordon:case-id: "{case_id}"
  - id: protect
    action: enable-termination-protection
    approval: required
    approvers: ["arn:aws:iam::123456789012:user/alice"]
"#;

const TOKEN: &str = "AAAAtask-token-that-is-a-bearer-secret";

/// Journals an approval of `step` by `approver` as `cordon approve` would.
async fn journal_approval(journal: &S3Journal, case: &CaseId, step: &str, approver: &str) {
    use cordon_core::journal::{JournalEvent, JournalRecord};
    let records = journal.load(case).await.unwrap();
    let last = records.last().unwrap();
    let record = JournalRecord::new(
        last.seq + 1,
        "2026-01-01T00:00:00Z".to_string(),
        last.hash(),
        JournalEvent::ApprovalGranted {
            step: step.to_string(),
            approver: approver.to_string(),
        },
    );
    journal.append(case, &record).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_step_runs_only_with_an_allowed_journaled_approval() {
    let aws = emulator().await;
    let (_, raw) = s3_journal_world(&aws, BUCKET).await;
    let clients = aws.clients();
    let topic = clients
        .sns
        .create_topic()
        .name("cordon-approvals")
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string();
    let sqs = aws_sdk_sqs::Client::new(aws.sdk_config());
    let queue = sqs
        .create_queue()
        .queue_name("approvers")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .unwrap();
    clients
        .sns
        .subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&queue_arn)
        .send()
        .await
        .unwrap();
    let config = Config::from_lookup(|name| match name {
        "CORDON_JOURNAL" => Some(format!("s3://{BUCKET}/{PREFIX}")),
        "CORDON_APPROVAL_TOPIC_ARN" => Some(topic.clone()),
        _ => None,
    })
    .unwrap();
    let handler =
        Handler::with_playbooks(clients.clone(), config, &[("gated.yaml", GATED)]).unwrap();
    let opened = handler
        .handle(json!({"mode": "plan", "finding": event(&raw), "playbook": "gated"}))
        .await
        .unwrap();
    let steps = opened.steps.clone().unwrap();
    assert_eq!(
        steps
            .iter()
            .map(|s| (s.id.as_str(), s.approval))
            .collect::<Vec<_>>(),
        [("tag", false), ("protect", true)]
    );
    let case_id = opened.case_id.clone();
    let case = CaseId::parse(&case_id).unwrap();
    step(&handler, &case_id, "tag").await.unwrap();
    clients.calls.reset();

    // No approval journaled: the step waits, nothing applied.
    let waiting = step(&handler, &case_id, "protect").await.unwrap();
    assert_eq!(
        waiting.step_status.as_deref(),
        Some("awaiting-approval"),
        "{}",
        waiting.message
    );
    assert_eq!(waiting.next.as_deref(), Some("stop"));
    assert_eq!(waiting.outcome, "awaiting-decision");
    assert_eq!(mutations(clients, "EC2.ModifyInstanceAttribute"), 0);

    // decide: one message on the approvers' topic with the command lines.
    let asked = handler
        .handle(
            json!({"mode": "decide", "case-id": case_id, "step": "protect", "task-token": TOKEN}),
        )
        .await
        .unwrap();
    assert_eq!(asked.outcome, "awaiting-decision", "{}", asked.message);
    let received = sqs
        .receive_message()
        .queue_url(&queue)
        .max_number_of_messages(10)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    let messages = received.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let body: Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    let text = body["Message"].as_str().unwrap();
    let journal_url = format!("s3://{BUCKET}/{PREFIX}");
    assert!(
        text.contains(&format!(
            "cordon approve {case_id} protect --task-token {TOKEN} --journal {journal_url}"
        )),
        "{text}"
    );
    assert!(text.contains("--refuse"), "{text}");
    assert!(!text.contains(cordon_tests::SECRET_ACCESS_KEY));
    // The journal never holds the token.
    let journal = S3Journal::new(clients.clone(), BUCKET, PREFIX);
    for record in journal.load(&case).await.unwrap() {
        assert!(
            !record.stored_text().contains(TOKEN),
            "the token reached the journal"
        );
    }

    // An approval by someone the playbook does not allow: still not applied.
    journal_approval(
        &journal,
        &case,
        "protect",
        "arn:aws:iam::123456789012:user/bob",
    )
    .await;
    let refused = step(&handler, &case_id, "protect").await.unwrap();
    assert_eq!(
        refused.step_status.as_deref(),
        Some("awaiting-approval"),
        "{}",
        refused.message
    );
    assert_eq!(refused.next.as_deref(), Some("stop"));
    assert_eq!(mutations(clients, "EC2.ModifyInstanceAttribute"), 0);

    // An allowed approver: applied, and the case completes.
    journal_approval(
        &journal,
        &case,
        "protect",
        "arn:aws:iam::123456789012:user/alice",
    )
    .await;
    let applied = step(&handler, &case_id, "protect").await.unwrap();
    assert_eq!(
        applied.step_status.as_deref(),
        Some("verified"),
        "{}",
        applied.message
    );
    assert_eq!(applied.status, "completed");
    assert!(mutations(clients, "EC2.ModifyInstanceAttribute") > 0);
}

/// Answers every S3 PutObject with `503 SlowDown`, S3's throttling answer:
/// the journal and evidence writes are throttled for good.
#[derive(Debug)]
struct SlowDown;

impl aws_sdk_s3::config::Intercept for SlowDown {
    fn name(&self) -> &'static str {
        "test.SlowDown"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextMut<
            '_,
        >,
        _runtime_components: &aws_sdk_s3::config::RuntimeComponents,
        cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let put = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .is_some_and(|m| m.name() == "PutObject");
        if put {
            let response = context.response_mut();
            *response.status_mut() = 503u16.try_into()?;
            *response.body_mut() = aws_smithy_types::body::SdkBody::from(
                "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
            );
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_journal_is_cordon_throttled() {
    let aws = emulator().await;
    let (_, raw) = s3_journal_world(&aws, BUCKET).await;
    let clients = AwsClients::builder(aws.sdk_config())
        .interceptor(SlowDown)
        .build()
        .unwrap();
    let config = Config::from_lookup(|name| {
        (name == "CORDON_JOURNAL").then(|| format!("s3://{BUCKET}/{PREFIX}"))
    })
    .unwrap();
    let handler = Handler::new(clients, config).unwrap();
    let error = handler
        .handle(json!({"mode": "plan", "finding": event(&raw)}))
        .await
        .unwrap_err();
    assert_eq!(error.name, ErrorName::Throttled, "{error}");
    assert!(error.message.contains("SlowDown"), "{error}");
}

/// An emulator enforcing IAM, with the journal bucket and the compromised
/// instance made as root, then the Lambda's clients as a principal that may
/// do `statements` only; the instance's finding; the principal's secret key.
async fn restricted_lambda(
    statements: Value,
) -> (
    cordon_tests::AuthEnforcedEmulator,
    Value,
    AwsClients,
    String,
) {
    let emulator = cordon_tests::AuthEnforcedEmulator::start().await.unwrap();
    let root = emulator.root();
    root.s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let fixture = cordon_gameday::provision(
        root,
        &cordon_gameday::EnvironmentSpec::compromised_instance(),
    )
    .await
    .unwrap();
    let finding = fixture.instance_finding("web-01").unwrap().to_json(false);
    let principal = emulator.principal("lambda", statements).await;
    emulator.enforce().unwrap();
    let endpoint = emulator.emulator().endpoint();
    let config = cordon_tests::sdk_config_for(&endpoint)
        .await
        .into_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    &principal.access_key_id,
                    &principal.secret_access_key,
                    None,
                    None,
                    "test",
                ),
            ),
        )
        .build();
    let clients = AwsClients::from_sdk_config(&config).unwrap();
    (
        emulator,
        finding,
        clients,
        principal.secret_access_key.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_s3_writes_is_cordon_access_denied() {
    // May read EC2 and S3, never write to S3: the journal cannot be kept.
    let (_emulator, finding, clients, _) = restricted_lambda(
        json!([{"Effect": "Allow", "Action": ["ec2:Describe*", "s3:GetObject", "s3:ListBucket"], "Resource": "*"}]),
    )
    .await;
    let lambda_config = Config::from_lookup(|name| {
        (name == "CORDON_JOURNAL").then(|| format!("s3://{BUCKET}/{PREFIX}"))
    })
    .unwrap();
    let handler = Handler::new(clients, lambda_config).unwrap();
    let error = handler
        .handle(json!({"mode": "plan", "finding": finding}))
        .await
        .unwrap_err();
    assert_eq!(error.name, ErrorName::AccessDenied, "{error}");
    assert!(error.message.contains("s3:PutObject"), "{error}");
}

/// The member account the cross-account findings come from (the emulator's
/// STS assumes a role in any account; its resources live apart per account).
const MEMBER: &str = "111111111111";

/// Runs step `id` of `case` and asserts it ended verified.
async fn verified(handler: &Handler, case: &str, id: &str) {
    let out = step(handler, case, id).await.unwrap();
    assert_eq!(
        out.step_status.as_deref(),
        Some("verified"),
        "{id}: {}",
        out.message
    );
}

fn responder_role() -> String {
    format!("arn:aws:iam::{MEMBER}:role/cordon-responder")
}

fn assumed(clients: &AwsClients) -> u64 {
    mutations(clients, "STS.AssumeRole")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_account_finding_acts_there_through_the_responder_role_in_every_container() {
    let aws = emulator().await;
    let (own, _) = s3_journal_world(&aws, BUCKET).await;
    let (member, _) = cordon_aws::accounts::acting_clients(
        aws.clients(),
        "aws",
        MEMBER,
        cordon_tests::REGION,
        &cordon_aws::accounts::CrossAccount::default(),
        "test-setup",
    )
    .await
    .unwrap();
    let fixture = cordon_gameday::provision(
        &member,
        &cordon_gameday::EnvironmentSpec::compromised_instance(),
    )
    .await
    .unwrap();
    assert_eq!(fixture.account_id, MEMBER);
    let raw = fixture
        .instance_finding("web-01")
        .unwrap()
        .to_json(false)
        .to_string();
    assert_eq!(event(&raw)["accountId"], MEMBER);
    let instance = fixture.instance("web-01").unwrap().id.clone();
    let own_instance = own.instance("web-01").unwrap().id.clone();
    // The member's instance is only in the member account: the Lambda's own
    // credentials cannot even see it, so a step that verifies it acted there.
    assert!(
        aws.clients()
            .ec2
            .describe_instances()
            .instance_ids(&instance)
            .send()
            .await
            .is_err(),
        "the member's instance is not visible in the Lambda's own account"
    );
    let own_before = instance_state(aws.clients(), &own_instance).await;
    let before = instance_state(&member, &instance).await;
    aws.clients().calls.reset();

    // Fails on the old code, which refused the finding (Cordon.InvalidFinding).
    let first = handler(&aws);
    let opened = plan(&first, &raw).await;
    assert_eq!(opened.status, "running", "{}", opened.message);
    assert_eq!(assumed(aws.clients()), 1, "plan assumes the responder role");
    let case_id = opened.case_id.clone();
    let case = CaseId::parse(&case_id).unwrap();
    let journal = S3Journal::new(aws.clients().clone(), BUCKET, PREFIX);
    let records = journal.load(&case).await.unwrap();
    let opened_record: Value = serde_json::from_str(&records[0].stored_text()).unwrap();
    let provenance = &opened_record["event"]["provenance"];
    assert_eq!(
        provenance["assumed-role"],
        responder_role().as_str(),
        "{opened_record:#}"
    );
    assert!(
        provenance["acting-as"]
            .as_str()
            .unwrap()
            .contains(&format!("::{MEMBER}:")),
        "{opened_record:#}"
    );

    verified(&first, &case_id, "isolate").await;
    assert_eq!(
        assumed(aws.clients()),
        1,
        "a warm container reuses the role's clients"
    );
    let contained = instance_state(&member, &instance).await;
    assert_ne!(contained.0, before.0, "the member's instance is isolated");

    // A new container (a fresh handler) retries the step and goes on: the
    // account comes from the journaled plan, not from the task input.
    let second = handler(&aws);
    verified(&second, &case_id, "isolate").await;
    assert_eq!(
        assumed(aws.clients()),
        2,
        "the new container assumes the role again"
    );
    assert_eq!(instance_state(&member, &instance).await, contained);
    verified(&second, &case_id, "protect").await;
    assert!(
        instance_state(&member, &instance).await.1,
        "termination protection on the member's instance"
    );
    assert_eq!(assumed(aws.clients()), 2);

    let rolled = second
        .handle(json!({"mode": "rollback", "case-id": case_id, "reason": "test"}))
        .await
        .unwrap();
    assert!(
        matches!(
            rolled.status.as_str(),
            "rolled-back" | "rolled-back-except-credentials"
        ),
        "{}",
        rolled.message
    );
    assert_eq!(instance_state(&member, &instance).await, before);
    // The Lambda's own account was never touched.
    assert_eq!(
        instance_state(aws.clients(), &own_instance).await,
        own_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_role_that_cannot_be_assumed_is_cordon_access_denied_naming_it() {
    // Everything the plan needs in its own account, but not sts:AssumeRole.
    let (_emulator, mut foreign, clients, secret) = restricted_lambda(
        json!([{"Effect": "Allow", "Action": ["ec2:Describe*", "s3:*", "sts:GetCallerIdentity"], "Resource": "*"}]),
    )
    .await;
    foreign["accountId"] = json!(MEMBER);
    let lambda_config = Config::from_lookup(|name| match name {
        "CORDON_JOURNAL" => Some(format!("s3://{BUCKET}/{PREFIX}")),
        "CORDON_EXTERNAL_ID" => Some("incident-shared-secret".to_string()),
        _ => None,
    })
    .unwrap();
    let handler = Handler::new(clients.clone(), lambda_config).unwrap();
    let error = handler
        .handle(json!({"mode": "plan", "finding": foreign}))
        .await
        .unwrap_err();
    assert_eq!(error.name, ErrorName::AccessDenied, "{error}");
    for part in [
        MEMBER,
        responder_role().as_str(),
        "infra/member-account.yaml",
    ] {
        assert!(error.message.contains(part), "{part} not in: {error}");
    }
    assert!(!error.message.contains("incident-shared-secret"), "{error}");
    assert!(!error.message.contains(&secret), "{error}");
    assert_eq!(
        clients.calls.mutating_total(),
        1,
        "only the AssumeRole attempt: {:?}",
        clients.calls.operations()
    );
}

/// `raw` (a GuardDuty finding, bare or in its event) as Security Hub imports it: an ASFF
/// finding in a `Security Hub Findings - Imported` event, with what
/// GuardDuty's ASFF mapping carries.
fn through_security_hub(raw: &str) -> Value {
    let event = event(raw);
    let d = event.get("detail").unwrap_or(&event);
    let instance = &d["resource"]["instanceDetails"];
    let finding_type = d["type"].as_str().unwrap().replacen('/', "-", 1);
    let interfaces: Vec<Value> = instance["networkInterfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|eni| json!({ "NetworkInterfaceId": eni["networkInterfaceId"] }))
        .collect();
    let region = d["region"].as_str().unwrap();
    let finding = json!({
        "SchemaVersion": "2018-10-08",
        "Id": d["arn"],
        "ProductArn": format!("arn:aws:securityhub:{region}::product/aws/guardduty"),
        "ProductName": "GuardDuty",
        "AwsAccountId": d["accountId"],
        "Region": region,
        "Types": [format!("TTPs/Command and Control/{finding_type}")],
        "Severity": { "Product": d["severity"], "Label": "HIGH", "Normalized": 60 },
        "ProductFields": {
            "aws/guardduty/service/detectorId": d["service"]["detectorId"],
            "aws/guardduty/service/resourceRole": d["service"]["resourceRole"]
        },
        "Resources": [{
            "Type": "AwsEc2Instance",
            "Id": format!("arn:aws:ec2:{region}:{}:instance/{}", d["accountId"].as_str().unwrap(), instance["instanceId"].as_str().unwrap()),
            "Partition": "aws",
            "Region": region,
            "Details": { "AwsEc2Instance": {
                "IamInstanceProfileArn": instance["iamInstanceProfile"]["arn"],
                "NetworkInterfaces": interfaces
            } }
        }],
        "RecordState": "ACTIVE",
        "Workflow": { "Status": "NEW" }
    });
    json!({
        "version": "0", "id": "3a2b1c0d-9e8f-4a6b-8c5d-4e3f2a1b0c9d",
        "detail-type": "Security Hub Findings - Imported", "source": "aws.securityhub",
        "account": d["accountId"], "region": region, "time": "2024-06-11T15:53:10Z",
        "resources": [], "detail": { "findings": [finding] }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_mode_reads_security_hub_and_config_events() {
    let aws = emulator().await;
    let (_, raw) = s3_journal_world(&aws, BUCKET).await;
    let handler = handler(&aws);
    let direct = plan(&handler, &raw).await;
    let via_hub = handler
        .handle(json!({
            "mode": "plan",
            "finding": through_security_hub(&raw),
            "playbook": "ec2-compromised-high",
            "playbook-set": handler.playbook_set(),
        }))
        .await
        .unwrap();
    assert_eq!(
        via_hub.case_id, direct.case_id,
        "one case, whichever way it came"
    );
    assert_eq!(via_hub.playbook, direct.playbook);

    let compliant = event(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/config/bucket-compliant.json"
        ))
        .unwrap(),
    );
    let error = handler
        .handle(json!({"mode": "plan", "finding": compliant}))
        .await
        .unwrap_err();
    assert_eq!(error.name, ErrorName::InvalidFinding);
    assert!(error.message.contains("nothing to do"), "{}", error.message);
}
