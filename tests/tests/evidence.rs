//! The evidence bucket, store-evidence, manifest verification and the S3
//! journal, against the emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use cordon_aws::actions::AwsActions;
use cordon_aws::client::AwsClients;
use cordon_aws::evidence::{EvidenceStore, case_key};
use cordon_aws::evidence_bucket::{self, DEFAULT_KMS_ALIAS, LockMode, Severity};
use cordon_aws::manifest::{JOURNAL_NAME, verify_case};
use cordon_aws::s3_journal::S3Journal;
use cordon_core::journal::{GENESIS_HASH, JournalError, JournalEvent, JournalRecord, JournalStore};
use cordon_core::local_store::LocalJournal;
use cordon_core::plan::{CaseId, Plan};
use cordon_tests::{Lifecycle, SECRET_ACCESS_KEY, emulator, plan_steps, repo_root, scratch_dir};
use serde_json::json;

const PREFIX: &str = "cases/";

fn store_plan(bucket: &str) -> Plan {
    let raw = std::fs::read_to_string(repo_root().join("tests/fixtures/findings/ec2-medium.json"))
        .expect("fixture");
    plan_steps(
        &raw,
        "keep-evidence",
        json!([{"id": "store", "action": "store-evidence", "with": {"bucket": bucket}}]),
    )
}

/// A bucket set up as `cordon evidence init` does, and the plan of a case
/// storing its evidence there.
async fn evidence_case(clients: &AwsClients, bucket: &str) -> Plan {
    evidence_bucket::init(clients, bucket, DEFAULT_KMS_ALIAS, None)
        .await
        .expect("init");
    store_plan(bucket)
}

/// The evidence store of a run writing straight to `bucket`.
fn s3_store(clients: &AwsClients, bucket: &str, retention: bool) -> EvidenceStore {
    signed_store(clients, bucket, retention, None)
}

/// The same, signing each manifest with `signing_key`.
fn signed_store(
    clients: &AwsClients,
    bucket: &str,
    retention: bool,
    signing_key: Option<String>,
) -> EvidenceStore {
    EvidenceStore::S3 {
        clients: Box::new(clients.clone()),
        bucket: bucket.to_string(),
        prefix: PREFIX.to_string(),
        kms_key: None,
        retention,
        signing_key,
    }
}

fn record(seq: u64, prev: &str, event: JournalEvent) -> JournalRecord {
    JournalRecord::new(seq, format!("2026-01-01T00:00:0{seq}Z"), prev, event)
}

/// Three chained journal records of a case.
fn records(plan: &Plan) -> Vec<JournalRecord> {
    let r0 = record(
        0,
        GENESIS_HASH,
        JournalEvent::CaseOpened {
            plan: Box::new(plan.clone()),
            finding_sha256: "f".repeat(64),
            cordon_version: "test".to_string(),
            provenance: None,
        },
    );
    let r1 = record(
        1,
        &r0.hash(),
        JournalEvent::StepPrepared {
            step: "store".to_string(),
            attempt: 1,
            pre_state: json!({"versions": []}),
        },
    );
    let r2 = record(
        2,
        &r1.hash(),
        JournalEvent::StepFailed {
            step: "store".to_string(),
            attempt: 1,
            error: cordon_core::journal::ErrorRecord {
                kind: "throttled".to_string(),
                resource: "s3".to_string(),
                message: "slow down".to_string(),
                hint: "retry".to_string(),
            },
            retrying: true,
        },
    );
    vec![r0, r1, r2]
}

/// A local case: three chained journal records and one evidence file.
async fn local_case(root: &Path, plan: &Plan) {
    let journal = LocalJournal::new(root);
    let case = &plan.case_id;
    for r in records(plan) {
        journal.append(case, &r).await.expect("append");
    }
    EvidenceStore::LocalDir(root.to_path_buf())
        .put(
            case,
            "console-output-i-0123.txt",
            b"boot log: all quiet".to_vec(),
        )
        .await
        .expect("local evidence");
}

async fn get(clients: &AwsClients, bucket: &str, key: &str) -> Vec<u8> {
    let out = clients
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("GetObject");
    out.body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

async fn put(clients: &AwsClients, bucket: &str, key: &str, bytes: Vec<u8>) {
    clients
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(bytes))
        .send()
        .await
        .expect("PutObject");
}

fn lines(report: &cordon_aws::manifest::VerifyReport) -> Vec<String> {
    report.problems.iter().map(ToString::to_string).collect()
}

/// `cordon evidence verify` of the case, which must find nothing wrong.
async fn verified_clean(
    clients: &AwsClients,
    bucket: &str,
    case: &CaseId,
) -> cordon_aws::manifest::VerifyReport {
    let report = verify_case(clients, bucket, PREFIX, case, None)
        .await
        .expect("verify case");
    assert!(report.ok(), "{:#?}", lines(&report));
    report
}

/// Rewrites the object at `key` with `change` applied to its text.
async fn tamper(clients: &AwsClients, bucket: &str, key: &str, change: impl Fn(&str) -> String) {
    let text = String::from_utf8(get(clients, bucket, key).await).expect("utf-8");
    let changed = change(&text);
    assert_ne!(changed, text, "the tampering changed nothing");
    put(clients, bucket, key, changed.into_bytes()).await;
}

/// Verifies the case and checks the report names journal record 1 as
/// altered (and no other record when `only_record_1`) and the object at `key`.
async fn assert_record_1_altered(
    clients: &AwsClients,
    bucket: &str,
    case: &CaseId,
    key: &str,
    only_record_1: bool,
) {
    let report = verify_case(clients, bucket, PREFIX, case, None)
        .await
        .expect("verify case");
    let found = lines(&report);
    for line in &found {
        println!("{line}");
    }
    assert!(
        found
            .iter()
            .any(|l| l.starts_with("journal record 1: was altered")),
        "{found:#?}"
    );
    if only_record_1 {
        assert!(
            !found
                .iter()
                .any(|l| l.starts_with("journal record 0") || l.starts_with("journal record 2")),
            "{found:#?}"
        );
    }
    assert!(
        found
            .iter()
            .any(|l| l.starts_with(&format!("altered: {key}"))),
        "{found:#?}"
    );
}

#[tokio::test]
async fn init_meets_the_standard_and_a_bare_bucket_shows_each_gap() {
    let aws = emulator().await;
    let clients = aws.clients();

    let done = evidence_bucket::init(clients, "evidence-std", DEFAULT_KMS_ALIAS, None)
        .await
        .expect("init");
    assert!(done.created);
    // Re-running keeps the same key and still meets the standard.
    let again = evidence_bucket::init(clients, "evidence-std", DEFAULT_KMS_ALIAS, None)
        .await
        .expect("init again");
    assert!(!again.created);
    assert_eq!(again.kms_key_arn, done.kms_key_arn);
    let gaps = evidence_bucket::check(clients, "evidence-std")
        .await
        .expect("check");
    let real: Vec<String> = gaps
        .iter()
        .filter(|g| g.severity == Severity::Gap)
        .map(ToString::to_string)
        .collect();
    assert!(real.is_empty(), "{real:#?}");
    // Information only: TLS cannot be required of the plain-HTTP emulator, and
    // Object Lock was not asked for.
    assert_eq!(
        gaps.iter().map(|g| g.setting).collect::<Vec<_>>(),
        vec!["tls-only-policy", "object-lock"]
    );

    clients
        .s3
        .create_bucket()
        .bucket("bare")
        .send()
        .await
        .expect("CreateBucket");
    let gaps = evidence_bucket::check(clients, "bare")
        .await
        .expect("check");
    for gap in &gaps {
        println!("{gap}");
    }
    let settings: Vec<&str> = gaps
        .iter()
        .filter(|g| g.severity == Severity::Gap)
        .map(|g| g.setting)
        .collect();
    assert_eq!(
        settings,
        vec![
            "versioning",
            "encryption",
            "public-access-block",
            "deny-delete-policy"
        ],
        "{gaps:#?}"
    );
    let info: Vec<&str> = gaps
        .iter()
        .filter(|g| g.severity == Severity::Info)
        .map(|g| g.setting)
        .collect();
    assert_eq!(info, vec!["tls-only-policy", "object-lock"], "{gaps:#?}");

    // The full policy does refuse plain HTTP: the emulator (which ignores
    // conditions) refuses every object request once it is in place.
    clients
        .s3
        .put_bucket_policy()
        .bucket("bare")
        .policy(evidence_bucket::bucket_policy("bare", cordon_tests::REGION).to_string())
        .send()
        .await
        .expect("PutBucketPolicy");
    let refused = clients
        .s3
        .put_object()
        .bucket("bare")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert!(refused.is_err(), "plain-HTTP put must be refused");
    let gaps = evidence_bucket::check(clients, "bare")
        .await
        .expect("check");
    assert!(
        !gaps.iter().any(|g| g.setting.ends_with("policy")),
        "{gaps:#?}"
    );
}

#[tokio::test]
async fn stored_evidence_verifies_and_every_tampering_is_named() {
    let aws = emulator().await;
    let clients = aws.clients();
    let bucket = "evidence-case";
    let plan = evidence_case(clients, bucket).await;
    let case = plan.case_id.clone();
    let root = scratch_dir("verify");
    local_case(&root, &plan).await;

    let actions = AwsActions::new(clients.clone(), EvidenceStore::LocalDir(root.clone()));
    let mut life = Lifecycle::new(&actions, &plan, "store");
    let pre = life.pre_state().await.expect("pre-state");
    assert_eq!(pre.get("versions"), None, "{pre}");
    let calls = life.dry_run();
    assert!(
        calls.iter().any(|c| c.ends_with("/journal.jsonl")),
        "{calls:?}"
    );
    let outcome = life.apply().await.expect("apply");
    life.verify().await.expect("verify");
    let keys: BTreeSet<String> = outcome["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| o["key"].as_str().expect("key").to_string())
        .collect();
    let at = |name: &str| case_key(PREFIX, &case, name);
    assert_eq!(
        keys,
        BTreeSet::from([
            at("plan.json"),
            at(JOURNAL_NAME),
            at("console-output-i-0123.txt")
        ])
    );
    // Undo keeps the evidence.
    let undone = life.undo().await.expect("undo");
    assert_eq!(undone["kept"], json!(true));
    life.verify_undone().await.expect("verify undone");

    let report = verified_clean(clients, bucket, &case).await;
    assert_eq!(report.objects_checked, 3);
    assert_eq!(report.journal_records, 3);

    // Secrets: nothing uploaded carries the credentials the process holds.
    for key in &keys {
        let bytes = get(clients, bucket, key).await;
        assert!(
            !String::from_utf8_lossy(&bytes).contains(SECRET_ACCESS_KEY),
            "{key}"
        );
    }

    // An object rewritten with other bytes (a new version).
    let console = at("console-output-i-0123.txt");
    put(
        clients,
        bucket,
        &console,
        b"boot log: nothing to see".to_vec(),
    )
    .await;
    let report = verify_case(clients, bucket, PREFIX, &case, None)
        .await
        .expect("verify case");
    assert_eq!(lines(&report).len(), 1, "{:#?}", lines(&report));
    assert!(
        lines(&report)[0].starts_with(&format!("altered: {console}")),
        "{:#?}",
        lines(&report)
    );

    // One version deleted outright (the emulator does not enforce the bucket policy).
    let plan_key = at("plan.json");
    let plan_version = outcome["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| o["key"] == json!(plan_key))
        .and_then(|o| o["version-id"].as_str())
        .expect("plan version")
        .to_string();
    clients
        .s3
        .delete_object()
        .bucket(bucket)
        .key(&plan_key)
        .version_id(&plan_version)
        .send()
        .await
        .expect("DeleteObject version");
    let report = verify_case(clients, bucket, PREFIX, &case, None)
        .await
        .expect("verify case");
    let found = lines(&report);
    assert!(
        found
            .iter()
            .any(|l| l.starts_with(&format!("missing: {plan_key}"))),
        "{found:#?}"
    );

    // A journal record rewritten with a changed field: the chain breaks at it.
    let journal_key = at(JOURNAL_NAME);
    tamper(clients, bucket, &journal_key, |text| {
        let lines: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, line)| {
                if i == 1 {
                    line.replace("\"attempt\":1", "\"attempt\":7")
                } else {
                    line.to_string()
                }
            })
            .collect();
        lines.join("\n") + "\n"
    })
    .await;
    assert_record_1_altered(clients, bucket, &case, &journal_key, true).await;
}

#[tokio::test]
async fn a_retained_version_cannot_be_deleted() {
    let aws = emulator().await;
    let clients = aws.clients();
    for (bucket, mode) in [
        ("evidence-gov", LockMode::Governance),
        ("evidence-comp", LockMode::Compliance),
    ] {
        let done = evidence_bucket::init(clients, bucket, DEFAULT_KMS_ALIAS, Some((mode, 1)))
            .await
            .expect("init");
        assert_eq!(done.object_lock, Some((mode, 1)));
        let gaps = evidence_bucket::check(clients, bucket)
            .await
            .expect("check");
        let settings: Vec<&str> = gaps.iter().map(|g| g.setting).collect();
        assert_eq!(
            settings,
            vec!["tls-only-policy"],
            "only the plain-HTTP note: {gaps:#?}"
        );

        let store = s3_store(clients, bucket, true);
        let case =
            CaseId::parse("case-0123456789abcdef").unwrap_or_else(|_| store_plan(bucket).case_id);
        let stored = store
            .put(&case, "memory.txt", b"evidence".to_vec())
            .await
            .expect("put with retention");
        assert_eq!(
            stored.location,
            format!("s3://{bucket}/{}", case_key(PREFIX, &case, "memory.txt"))
        );
        assert_eq!(stored.size, 8);
        let version = stored.version_id.clone().expect("versioned");
        let key = case_key(PREFIX, &case, "memory.txt");
        let deleted = clients
            .s3
            .delete_object()
            .bucket(bucket)
            .key(&key)
            .version_id(&version)
            .send()
            .await;
        let err = deleted.expect_err("a retained version must not be deletable");
        println!("{mode}: {err:?}");
        let still = clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .version_id(&version)
            .send()
            .await;
        assert!(still.is_ok(), "the retained version is still there");
    }
}

#[tokio::test]
async fn s3_journal_lets_exactly_one_writer_claim_a_record() {
    let aws = emulator().await;
    let clients = aws.clients();
    let bucket = "evidence-journal";
    let plan = evidence_case(clients, bucket).await;
    let case = plan.case_id.clone();
    let a = S3Journal::new(clients.clone(), bucket, PREFIX);
    let b = S3Journal::new(clients.clone(), bucket, PREFIX);
    let _lock = a.lock(&case).await.expect("lock is a no-op");

    let mut prev = GENESIS_HASH.to_string();
    for seq in 0..5u64 {
        let mine = record(
            seq,
            &prev,
            JournalEvent::StepNotRun {
                step: "store".into(),
                reason: "writer a".into(),
            },
        );
        let theirs = record(
            seq,
            &prev,
            JournalEvent::StepNotRun {
                step: "store".into(),
                reason: "writer b".into(),
            },
        );
        let (ra, rb) = tokio::join!(a.append(&case, &mine), b.append(&case, &theirs));
        let winner = match (&ra, &rb) {
            (Ok(()), Err(JournalError::Conflict { seq: s, .. })) if *s == seq => &mine,
            (Err(JournalError::Conflict { seq: s, .. }), Ok(())) if *s == seq => &theirs,
            other => panic!("seq {seq}: expected one Ok and one Conflict, got {other:?}"),
        };
        prev = winner.hash();
    }
    let loaded = b.load(&case).await.expect("load");
    assert_eq!(loaded.len(), 5);
    assert!(cordon_core::journal::verify_chain(&loaded).is_ok());
    assert_eq!(a.cases().await.expect("cases"), vec![case.clone()]);
    // A stale writer appending another record at an existing seq is refused too.
    let stale = record(
        2,
        &loaded[1].hash(),
        JournalEvent::StepNotRun {
            step: "store".into(),
            reason: "a stale writer".into(),
        },
    );
    let err = a.append(&case, &stale).await.expect_err("conflict");
    assert!(
        matches!(err, JournalError::Conflict { seq: 2, .. }),
        "{err:?}"
    );
    // The very record already stored is this writer's own earlier attempt.
    a.append(&case, &loaded[2])
        .await
        .expect("the same bytes again");
}

/// Lets the first put of a journal record reach S3, then answers it with a
/// 503, as a connection lost after the write would: the SDK retries, and the
/// retry meets the record its own first attempt wrote.
#[derive(Debug, Clone)]
struct LostAnswer {
    /// What the object key contains: `/journal/` for records, `lease.json`.
    needle: &'static str,
    /// Operations (by their config bag's address) that put such an object.
    journal_puts: std::sync::Arc<std::sync::Mutex<BTreeSet<usize>>>,
    /// Answers to journal puts seen.
    answers: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl LostAnswer {
    fn on(needle: &'static str) -> Self {
        Self {
            needle,
            journal_puts: Default::default(),
            answers: Default::default(),
        }
    }
}

fn bag_key(cfg: &aws_sdk_s3::config::ConfigBag) -> usize {
    std::ptr::from_ref(cfg) as usize
}

impl aws_sdk_s3::config::Intercept for LostAnswer {
    fn name(&self) -> &'static str {
        "test.LostAnswer"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &aws_sdk_s3::config::RuntimeComponents,
        cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let request = context.request();
        if request.method() == "PUT" && request.uri().contains(self.needle) {
            self.journal_puts.lock().unwrap().insert(bag_key(cfg));
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextMut<
            '_,
        >,
        _runtime_components: &aws_sdk_s3::config::RuntimeComponents,
        cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let journal_put = self.journal_puts.lock().unwrap().contains(&bag_key(cfg));
        if journal_put
            && self
                .answers
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                == 0
        {
            *context.response_mut().status_mut() = 503u16.try_into()?;
        }
        Ok(())
    }
}

/// Fails on the old code: the retried put's 412 on its own record read as
/// another worker's (`Conflict`), and on its own lease as a lease held by
/// another (`Locked`: the Lambda's `Cordon.InProgress` until it expired),
/// stopping a case that had lost nothing.
#[tokio::test]
async fn s3_journal_writes_whose_answer_was_lost_are_not_conflicts() {
    let aws = emulator().await;
    for needle in ["/journal/", "lease.json"] {
        let lost = LostAnswer::on(needle);
        let clients = AwsClients::builder(aws.sdk_config())
            .interceptor(lost.clone())
            .build()
            .expect("clients");
        let bucket = format!(
            "evidence-lost-{}",
            if needle == "lease.json" {
                "lease"
            } else {
                "record"
            }
        );
        let plan = evidence_case(&clients, &bucket).await;
        let case = plan.case_id.clone();
        let journal = S3Journal::new(clients.clone(), &bucket, PREFIX);
        let _lease = journal
            .lock(&case)
            .await
            .expect("the retry found its own lease");
        let first = records(&plan).remove(0);
        journal
            .append(&case, &first)
            .await
            .expect("the retry found its own record");
        assert!(
            lost.answers.load(std::sync::atomic::Ordering::SeqCst) >= 2,
            "{needle}: the put was answered 503 once and retried"
        );
        let loaded = journal.load(&case).await.expect("load");
        assert_eq!(loaded, vec![first]);
    }
}

#[tokio::test]
async fn lambda_style_case_with_s3_journal_and_s3_captures_verifies() {
    let aws = emulator().await;
    let clients = aws.clients();
    let bucket = "evidence-s3mode";
    let plan = evidence_case(clients, bucket).await;
    let case = plan.case_id.clone();
    let journal = S3Journal::new(clients.clone(), bucket, PREFIX);
    // The worker holds the case's lease (beside the journal) while it runs.
    let lease = journal.lock(&case).await.expect("lease");
    for r in records(&plan) {
        journal.append(&case, &r).await.expect("append");
    }
    let store = s3_store(clients, bucket, false);
    let capture = store
        .put(&case, "console-output-i-0123.txt", b"boot log".to_vec())
        .await
        .expect("S3 capture");
    assert_eq!(
        capture.sha256,
        cordon_aws::evidence::sha256_hex(b"boot log")
    );

    // No local state: everything comes from the bucket.
    let actions = AwsActions::new(clients.clone(), store);
    assert!(actions.case_root.is_none());
    let mut life = Lifecycle::new(&actions, &plan, "store").counting(&clients.calls);
    let pre = life.pre_state().await.expect("pre-state");
    // No listing before the step: the apply lists alongside its uploads.
    assert_eq!(pre.get("versions"), None, "{pre}");
    assert!(life.last_calls().is_empty(), "{:?}", life.last_calls());
    let outcome = life.apply().await.expect("apply");
    life.verify().await.expect("verify");
    // The lease is not evidence: it is rewritten when the worker lets go.
    assert_eq!(outcome["objects"].as_array().map(Vec::len), Some(5));
    assert!(
        !outcome["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["key"].as_str().unwrap().ends_with("lease.json")),
        "{outcome}"
    );
    life.verify_undone()
        .await
        .expect("nothing that existed was touched");
    journal.release(&case, lease).await.expect("release");

    let report = verified_clean(clients, bucket, &case).await;
    assert_eq!(report.journal_records, 3);

    // Rewrite record 1 of the S3 journal with a changed field.
    let key = cordon_aws::s3_journal::record_key(PREFIX, &case, 1);
    tamper(clients, bucket, &key, |text| {
        text.replace("\"attempt\":1", "\"attempt\":2")
    })
    .await;
    assert_record_1_altered(clients, bucket, &case, &key, false).await;
    // The S3 journal itself now refuses to load past the broken link.
    let loaded = journal.load(&case).await.expect("load");
    assert!(cordon_core::journal::verify_chain(&loaded).is_err());

    // Rollback's check rests on the manifest: a version it pins that is
    // deleted (the S3 capture, which existed before the step) is named.
    let capture_key = capture
        .location
        .strip_prefix(&format!("s3://{bucket}/"))
        .expect("an s3:// location")
        .to_string();
    clients
        .s3
        .delete_object()
        .bucket(bucket)
        .key(&capture_key)
        .set_version_id(capture.version_id.clone())
        .send()
        .await
        .expect("DeleteObject version");
    let err = life
        .verify_undone()
        .await
        .expect_err("a pinned version is gone");
    assert!(
        err.to_string().contains(&capture_key)
            && err.to_string().contains("pinned by the manifest"),
        "{err}"
    );
}

/// A case opened by journal format 1 and continued in format 2: the uploaded
/// journal mixes both, the manifest pins each record by the hash of its stored
/// text, `evidence verify` re-walks the chain across the boundary, and an edit
/// to a format-1 line is still named.
#[tokio::test]
async fn a_journal_begun_in_format_1_verifies_in_the_bucket() {
    let aws = emulator().await;
    let clients = aws.clients();
    let bucket = "evidence-v1";
    let plan = evidence_case(clients, bucket).await;
    let case = plan.case_id.clone();
    let root = scratch_dir("format-1");
    let v1 = std::fs::read_to_string(
        repo_root().join("tests/fixtures/journals-v1/iam-temporary-credentials.jsonl"),
    )
    .expect("fixture");
    std::fs::create_dir_all(root.join(case.as_str())).expect("case dir");
    std::fs::write(root.join(case.as_str()).join(JOURNAL_NAME), &v1).expect("journal");
    let journal = LocalJournal::new(&root);
    let old = journal.load(&case).await.expect("format-1 journal loads");
    let last = old.last().expect("records");
    journal
        .append(
            &case,
            &record(
                last.seq + 1,
                &last.hash(),
                JournalEvent::RollbackStarted {
                    reason: "continued by format 2".into(),
                },
            ),
        )
        .await
        .expect("append in format 2");

    let actions = AwsActions::new(clients.clone(), EvidenceStore::LocalDir(root.clone()));
    Lifecycle::new(&actions, &plan, "store")
        .forward()
        .await
        .expect("store evidence");
    let report = verified_clean(clients, bucket, &case).await;
    assert_eq!(report.journal_records, old.len() + 1);

    // Edit a format-1 record of the uploaded journal: it is named.
    let key = case_key(PREFIX, &case, JOURNAL_NAME);
    let text = String::from_utf8(get(clients, bucket, &key).await).expect("utf-8");
    assert!(
        text.starts_with(&v1),
        "format-1 lines are uploaded as stored"
    );
    let edited = text.replacen("\"duration_ms\":4", "\"duration_ms\":40", 1);
    assert_ne!(edited, text);
    put(clients, bucket, &key, edited.into_bytes()).await;
    let report = verify_case(clients, bucket, PREFIX, &case, None)
        .await
        .expect("verify case");
    let found = lines(&report);
    assert!(
        found
            .iter()
            .any(|l| l.starts_with("journal record 3: was altered")),
        "{found:#?}"
    );
}

#[tokio::test]
async fn the_raw_finding_is_kept_byte_for_byte_from_the_caller_or_the_case_directory() {
    let aws = emulator().await;
    let clients = aws.clients();
    let bucket = "evidence-finding";
    let plan = evidence_case(clients, bucket).await;
    let case = plan.case_id.clone();
    let key = case_key(PREFIX, &case, "finding.json");
    // As received: CRLF line ends and a trailing newline, which any re-encoding would lose.
    let fixture =
        std::fs::read_to_string(repo_root().join("tests/fixtures/findings/ec2-medium.json"))
            .expect("fixture");
    let received = format!("{}\r\n", fixture.replace('\n', "\r\n"));

    // The Lambda: no case directory, the raw text comes with the actions.
    let root = scratch_dir("finding-lambda");
    let actions = AwsActions::new(clients.clone(), EvidenceStore::LocalDir(root.clone()))
        .with_case_root(None)
        .with_finding_raw(case.clone(), received.clone());
    let mut life = Lifecycle::new(&actions, &plan, "store");
    let (_, outcome) = life.forward().await.expect("store");
    assert_eq!(get(clients, bucket, &key).await, received.as_bytes());
    assert!(outcome.get("not-stored").is_none(), "{outcome}");
    verified_clean(clients, bucket, &case).await;

    // The CLI: each delivery kept in the case directory is what is kept.
    let root = scratch_dir("finding-cli");
    let case_dir = root.join(case.as_str());
    std::fs::create_dir_all(&case_dir).expect("case dir");
    let opened = format!("{fixture}\n");
    let kept = "finding-0123456789abcdef.json";
    std::fs::write(case_dir.join(kept), &opened).expect("finding file");
    let actions = AwsActions::new(clients.clone(), EvidenceStore::LocalDir(root.clone()))
        .with_finding_raw(case.clone(), "not what the case directory kept");
    Lifecycle::new(&actions, &plan, "store")
        .forward()
        .await
        .expect("store");
    assert_eq!(
        get(clients, bucket, &case_key(PREFIX, &case, kept)).await,
        opened.as_bytes()
    );

    // Neither: the step says so rather than pretending.
    let other = CaseId::parse("case-00000000000000000000").expect("id");
    let actions = AwsActions::new(
        clients.clone(),
        EvidenceStore::LocalDir(scratch_dir("finding-none")),
    )
    .with_finding_raw(other, "{}");
    let (_, without) = Lifecycle::new(&actions, &plan, "store")
        .forward()
        .await
        .expect("store");
    assert!(
        without["not-stored"][0].as_str().is_some_and(
            |n| n.starts_with("finding.json: the finding as received is not available")
        ),
        "{without}"
    );
}

#[tokio::test]
async fn without_a_bucket_the_evidence_is_kept_in_the_case_directory_and_the_case_completes() {
    let aws = emulator().await;
    let raw = std::fs::read_to_string(repo_root().join("tests/fixtures/findings/ec2-medium.json"))
        .expect("fixture");
    let plan = plan_steps(
        &raw,
        "keep-evidence",
        json!([{"id": "store", "action": "store-evidence"}]),
    );
    let case = plan.case_id.clone();
    let root = scratch_dir("local-store");
    let store = EvidenceStore::LocalDir(root.clone());
    store
        .put(&case, "console-output-i-0123.txt", b"boot log".to_vec())
        .await
        .expect("local evidence");
    let actions =
        AwsActions::new(aws.clients().clone(), store).with_finding_raw(case.clone(), raw.clone());
    let journal = LocalJournal::new(&root);
    let executor =
        cordon_core::executor::Executor::new(&actions, &journal, &cordon_tests::ApproveAll);

    let report = executor.run(&plan, &raw).await.expect("run");
    assert_eq!(
        report.status,
        cordon_core::journal::CaseStatus::Completed,
        "{}",
        report.message
    );
    let case_dir = root.join(case.as_str());
    assert_eq!(
        std::fs::read(case_dir.join("finding.json")).expect("finding kept"),
        raw.as_bytes()
    );
    let records = journal.load(&case).await.expect("journal");
    let outcome = records
        .iter()
        .find_map(|r| match &r.event {
            JournalEvent::StepApplied { outcome, .. } => Some(outcome.clone()),
            _ => None,
        })
        .expect("applied");
    assert_eq!(outcome["stored"], "locally", "{outcome}");
    let manifest: cordon_aws::manifest::Manifest =
        serde_json::from_slice(&std::fs::read(case_dir.join("manifest.json")).expect("manifest"))
            .expect("manifest parses");
    let keys: Vec<&str> = manifest.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "evidence/console-output-i-0123.txt",
            "finding.json",
            "plan.json"
        ]
    );
    for object in &manifest.objects {
        let bytes = std::fs::read(case_dir.join(&object.key)).expect("file");
        assert_eq!(
            cordon_aws::evidence::sha256_hex(&bytes),
            object.sha256,
            "{}",
            object.key
        );
    }
    // The journal is pinned by its chain, up to the record before the outcome.
    assert!(manifest.journal.len() >= 2);
    for entry in &manifest.journal {
        assert_eq!(
            entry.hash,
            records[entry.seq as usize].hash(),
            "record {}",
            entry.seq
        );
    }
}

/// Signed manifests (issue 10 item 5): `store-evidence` with a signing key
/// writes `manifest.sig.json`; `verify_case` with that key passes; a forged
/// newer manifest, a signature by another key, and an unsigned case fail.
#[tokio::test]
async fn a_signed_manifest_verifies_and_a_forged_newer_one_does_not() {
    let aws = emulator().await;
    let clients = aws.clients();
    let bucket = "evidence-signed";
    let plan = evidence_case(clients, bucket).await;
    let case = plan.case_id.clone();
    let key = cordon_tests::create_signing_key(clients).await;
    let other = cordon_tests::create_signing_key(clients).await;
    let journal = S3Journal::new(clients.clone(), bucket, PREFIX);
    for r in records(&plan) {
        journal.append(&case, &r).await.expect("append");
    }
    let actions = AwsActions::new(
        clients.clone(),
        signed_store(clients, bucket, false, Some(key.clone())),
    );
    let mut life = Lifecycle::new(&actions, &plan, "store");
    life.pre_state().await.expect("pre-state");
    let outcome = life.apply().await.expect("apply");
    assert!(
        outcome["signature"]["location"]
            .as_str()
            .is_some_and(|l| l.ends_with("manifest.sig.json")),
        "{outcome}"
    );
    let verify = |key: Option<String>| {
        let case = case.clone();
        async move {
            verify_case(clients, bucket, PREFIX, &case, key.as_deref())
                .await
                .expect("verify")
        }
    };
    let report = verify(Some(key.clone())).await;
    assert!(report.ok(), "{:?}", lines(&report));

    // Another key did not sign it.
    let report = verify(Some(other)).await;
    assert!(
        lines(&report)
            .iter()
            .any(|l| l.contains("was not signed by")),
        "{:?}",
        lines(&report)
    );

    // A forged newer manifest (same objects, a changed byte): readers get it,
    // and it is not the signed version.
    let manifest_key = cordon_aws::evidence::case_key(PREFIX, &case, "manifest.json");
    tamper(clients, bucket, &manifest_key, |text| format!("{text}\n")).await;
    let report = verify(Some(key.clone())).await;
    assert!(
        lines(&report)
            .iter()
            .any(|l| l.contains("is not the signed one")),
        "{:?}",
        lines(&report)
    );
    // Without a key to check, the forged manifest passes: the signature is the anchor.
    assert!(verify(None).await.ok());

    // An unsigned case fails when a signature is required.
    let signature_key = cordon_aws::evidence::case_key(PREFIX, &case, "manifest.sig.json");
    clients
        .s3
        .delete_object()
        .bucket(bucket)
        .key(&signature_key)
        .send()
        .await
        .ok();
    let report = verify(Some(key)).await;
    assert!(
        lines(&report).iter().any(|l| l.contains("is missing")),
        "{:?}",
        lines(&report)
    );
}

/// Objects the case's own steps wrote to the bucket and verified by reading
/// them back are pinned in the manifest from their journaled outcome, not
/// fetched again: `store-evidence` spends no round on them. An object the
/// journal does not vouch for (another writer's, or a newer version of a
/// captured key) is fetched and hashed as before, and verification re-reads
/// everything either way.
#[tokio::test]
async fn evidence_a_verified_step_wrote_is_pinned_from_the_journal_not_fetched_again() {
    let aws = emulator().await;
    let clients = aws.clients();
    let bucket = "evidence-pinned";
    let plan = evidence_case(clients, bucket).await;
    let case = plan.case_id.clone();
    let root = scratch_dir("pinned");
    let journal = LocalJournal::new(&root);
    let store = s3_store(clients, bucket, false);
    let captured = store
        .put(
            &case,
            "metadata-i-0123.json",
            b"{\"captured\": true}".to_vec(),
        )
        .await
        .expect("capture");
    let resent = store
        .put(&case, "console-i-0123.txt", b"first boot".to_vec())
        .await
        .expect("capture");
    let mut chain = records(&plan);
    for (step, evidence) in [
        ("capture-metadata", &captured),
        ("capture-console", &resent),
    ] {
        let prev = chain.last().expect("records").hash();
        let seq = chain.len() as u64;
        chain.push(record(
            seq,
            &prev,
            JournalEvent::StepApplied {
                step: step.to_string(),
                outcome: json!({"instance-id": "i-0123", "evidence": evidence}),
                duration_ms: 1,
            },
        ));
        let prev = chain.last().expect("records").hash();
        chain.push(record(
            seq + 1,
            &prev,
            JournalEvent::StepVerified {
                step: step.to_string(),
                duration_ms: 1,
            },
        ));
    }
    for r in &chain {
        journal.append(&case, r).await.expect("append");
    }
    // A newer version of one captured key, and an object no step wrote.
    put(
        clients,
        bucket,
        &case_key(PREFIX, &case, "console-i-0123.txt"),
        b"second boot".to_vec(),
    )
    .await;
    put(
        clients,
        bucket,
        &case_key(PREFIX, &case, "notes.txt"),
        b"a responder's notes".to_vec(),
    )
    .await;

    let actions = AwsActions::new(clients.clone(), EvidenceStore::LocalDir(root.clone()));
    let mut life = Lifecycle::new(&actions, &plan, "store").counting(&clients.calls);
    life.pre_state().await.expect("pre-state");
    let outcome = life.apply().await.expect("apply");
    assert_eq!(
        life.last_calls().get("S3.GetObject").copied().unwrap_or(0),
        2,
        "only the newer version and the unvouched object are fetched: {:?}",
        life.last_calls()
    );
    let pinned = |name: &str| {
        outcome["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .find(|o| o["key"] == case_key(PREFIX, &case, name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} is in the manifest: {outcome}"))
    };
    let metadata = pinned("metadata-i-0123.json");
    assert_eq!(metadata["sha256"], json!(captured.sha256));
    assert_eq!(metadata["version-id"], json!(captured.version_id));
    let console = pinned("console-i-0123.txt");
    assert_ne!(console["version-id"], json!(resent.version_id));
    assert_eq!(
        console["sha256"],
        json!(cordon_aws::evidence::sha256_hex(b"second boot"))
    );
    pinned("notes.txt");
    life.verify().await.expect("verify re-reads every object");
    verified_clean(clients, bucket, &case).await;
    let _ = std::fs::remove_dir_all(root);
}
