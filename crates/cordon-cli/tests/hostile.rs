//! Hostile findings through the `cordon` binary.
//!
//! A finding whose ids are malformed (a path in an instance id, JSON in an ENI
//! id, a wildcard where a name goes, a newline in a user name) is refused by
//! `cordon plan` and `cordon run` with exit 2 and one escaped line naming the
//! field, and `run` makes **zero** AWS calls: `AWS_ENDPOINT_URL` points at a
//! 127.0.0.1 listener this test owns, which counts every connection. A
//! well-formed finding against the same listener does connect, so the count
//! is known to work. Text that is printed rather than used (a finding type, a
//! user type) is shown escaped: nothing forges a line or reaches the terminal
//! raw.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cordon-hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A TCP listener on 127.0.0.1 that counts connections and answers each
/// request with an access-denied error, so a client that does connect fails
/// fast instead of retrying.
struct CountingEndpoint {
    port: u16,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CountingEndpoint {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (connections, stop) = (connections.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            connections.fetch_add(1, Ordering::SeqCst);
                            deny(stream);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => break,
                    }
                }
            })
        };
        Self {
            port,
            connections,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for CountingEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request's head and answers 403 with a query-protocol error body.
fn deny(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut byte) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&byte[..n]),
        }
    }
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error>\
                <Code>UnauthorizedOperation</Code><Message>denied by the test endpoint</Message>\
                </Error></Errors><RequestID>test</RequestID></Response>";
    let response = format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

/// Runs `cordon` with AWS pointed at `endpoint` only (no profile, no instance
/// metadata), killing it if it outlives `limit`.
fn cordon(endpoint: &CountingEndpoint, state: &Path, args: &[&str]) -> Output {
    let home = state.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(args)
        .env_clear()
        .env("HOME", &home)
        .env("AWS_ENDPOINT_URL", endpoint.url())
        .env("AWS_ACCESS_KEY_ID", "AKIAHOSTILETEST00001")
        .env("AWS_SECRET_ACCESS_KEY", "hostile-test-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("CORDON_STATE_DIR", state.join("state"))
        .env(
            "CORDON_PLAYBOOKS",
            cordon_tests::repo_root().join("playbooks"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cordon starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cordon {args:?} ran for more than 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// No character a terminal would act on, or that reorders what it shows:
/// controls (but the line ends between lines) and bidi embeddings, overrides
/// and isolates. An oracle of its own, not the escaping code under test.
fn assert_terminal_safe(text: &str, what: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c)
        })
        .collect();
    assert!(bad.is_empty(), "{what} holds raw {bad:?}:\n{text}");
}

fn instance_finding() -> Value {
    json!({
        "schemaVersion": "2.0", "accountId": "111122223333", "region": "us-east-1", "partition": "aws",
        "id": "8ec6a1b2c3d4e5f60718293a4b5c6d7e",
        "arn": "arn:aws:guardduty:us-east-1:111122223333:detector/5ab6c7d8e9f00112233445566778899a/finding/8ec6a1b2c3d4e5f60718293a4b5c6d7e",
        "type": "Backdoor:EC2/C&CActivity.B!DNS", "severity": 8,
        "createdAt": "2026-11-23T10:00:00.000Z", "updatedAt": "2026-11-23T10:00:00.000Z",
        "title": "Command and control server domain name queried by EC2 instance",
        "resource": {"resourceType": "Instance", "instanceDetails": {
            "instanceId": "i-0a1b2c3d4e5f60718", "instanceType": "t3.micro",
            "iamInstanceProfile": {"arn": "arn:aws:iam::111122223333:instance-profile/web-app-profile", "id": "AIPAEXAMPLEPROFILE01"},
            "networkInterfaces": [{
                "networkInterfaceId": "eni-0a1b2c3d4e5f60711", "subnetId": "subnet-0a1b2c3d4e5f60721",
                "vpcId": "vpc-0a1b2c3d4e5f60731", "privateIpAddress": "10.0.1.15",
                "securityGroups": [{"groupId": "sg-0a1b2c3d4e5f60701", "groupName": "web"}]}]}},
        "service": {"serviceName": "guardduty", "detectorId": "5ab6c7d8e9f00112233445566778899a",
            "resourceRole": "TARGET", "eventFirstSeen": "2026-11-23T09:00:00.000Z",
            "eventLastSeen": "2026-11-23T09:30:00.000Z", "archived": false, "count": 1}
    })
}

fn key_finding(key_id: &str, user: &str, user_type: &str) -> Value {
    json!({
        "schemaVersion": "2.0", "accountId": "111122223333", "region": "us-east-1", "partition": "aws",
        "id": "1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f",
        "type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS", "severity": 8,
        "createdAt": "2026-11-23T10:00:00.000Z", "updatedAt": "2026-11-23T10:00:00.000Z",
        "resource": {"resourceType": "AccessKey", "accessKeyDetails": {
            "accessKeyId": key_id, "principalId": "AIDAEXAMPLEUSERID0042", "userName": user, "userType": user_type}},
        "service": {"serviceName": "guardduty", "detectorId": "5ab6c7d8e9f00112233445566778899a",
            "resourceRole": "TARGET", "archived": false, "count": 1}
    })
}

fn write(dir: &Path, name: &str, finding: &Value) -> String {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(finding).unwrap()).unwrap();
    path.display().to_string()
}

/// One hostile finding: how it was made hostile and the field that must be named.
struct Case {
    name: &'static str,
    finding: Value,
    field: &'static str,
}

fn hostile_cases() -> Vec<Case> {
    let with = |mut finding: Value, pointer: &str, value: &str| {
        *finding.pointer_mut(pointer).unwrap() = json!(value);
        finding
    };
    let instance = instance_finding;
    let key = |id: &str, user: &str, kind: &str| key_finding(id, user, kind);
    vec![
        Case {
            name: "path-in-instance-id",
            finding: with(
                instance(),
                "/resource/instanceDetails/instanceId",
                "i-0123/../../x",
            ),
            field: "`resource.instanceDetails.instanceId`",
        },
        Case {
            name: "wildcard-instance-id",
            finding: with(instance(), "/resource/instanceDetails/instanceId", "*"),
            field: "`resource.instanceDetails.instanceId`",
        },
        Case {
            name: "json-in-eni-id",
            finding: with(
                instance(),
                "/resource/instanceDetails/networkInterfaces/0/networkInterfaceId",
                "eni-0aaa\"}]}",
            ),
            field: "`resource.instanceDetails.networkInterfaces[0].networkInterfaceId`",
        },
        Case {
            name: "path-in-account",
            finding: with(instance(), "/accountId", "111122223333/../../x"),
            field: "`accountId`",
        },
        Case {
            name: "escape-in-region",
            finding: with(instance(), "/region", "us-east-1\u{1b}[2J"),
            field: "`region`",
        },
        Case {
            name: "path-in-finding-id",
            finding: with(instance(), "/id", "../../../etc/passwd"),
            field: "`id`",
        },
        Case {
            name: "wildcard-access-key",
            finding: key("AKIA*", "alice", "IAMUser"),
            field: "`resource.accessKeyDetails.accessKeyId`",
        },
        Case {
            name: "newline-in-user-name",
            finding: key(
                "AKIAEXAMPLEDEPLOY042",
                "alice\ncordon: all clear\u{1b}[32m",
                "IAMUser",
            ),
            field: "`resource.accessKeyDetails.userName`",
        },
        Case {
            name: "wildcard-role-name",
            finding: key("ASIAEXAMPLETEMP00817", "*", "AssumedRole"),
            field: "`resource.accessKeyDetails.userName`",
        },
    ]
}

#[test]
fn hostile_ids_are_refused_with_one_line_and_zero_aws_calls() {
    let dir = temp_dir("refused");
    let endpoint = CountingEndpoint::start();
    for case in hostile_cases() {
        let file = write(&dir, case.name, &case.finding);
        for args in [
            vec!["plan", file.as_str()],
            vec!["plan", file.as_str(), "--output", "json"],
            vec!["run", file.as_str(), "--yes"],
            vec!["run", file.as_str(), "--dry-run"],
        ] {
            let out = cordon(&endpoint, &dir, &args);
            let err = stderr(&out);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{}: cordon {args:?} must refuse the finding\nstdout:\n{}\nstderr:\n{err}",
                case.name,
                stdout(&out)
            );
            assert_eq!(stdout(&out), "", "{}: {args:?} printed a plan", case.name);
            assert_eq!(
                err.lines().count(),
                1,
                "{}: {args:?} must fail with exactly one line:\n{err}",
                case.name
            );
            assert!(
                err.starts_with("cordon: ") && err.contains(case.field),
                "{}: the error must name {}:\n{err}",
                case.name,
                case.field
            );
            assert!(
                err.contains("expected") && err.contains("no AWS call was made"),
                "{}: the error must give the expected format:\n{err}",
                case.name
            );
            assert_terminal_safe(&err, case.name);
        }
    }
    assert_eq!(
        endpoint.connections(),
        0,
        "a refused finding must not reach AWS at all"
    );
}

/// An account-level Config evaluation (`AWS::::Account`) acts on the account
/// it names, so that account must be the evaluation's own: another one, or
/// a malformed id in both places, is refused with one line and no AWS call.
#[test]
fn an_account_evaluation_naming_another_or_a_hostile_account_is_refused_with_zero_aws_calls() {
    let dir = temp_dir("account");
    let endpoint = CountingEndpoint::start();
    let event = |resource_id: &str, account: &str| -> Value {
        let mut event: Value = serde_json::from_str(&cordon_tests::config_event(
            "ebs-snapshot-public-restorable-check",
            "AWS::::Account",
            resource_id,
        ))
        .unwrap();
        event["detail"]["awsAccountId"] = json!(account);
        event
    };
    for (name, finding, words) in [
        (
            "other-account",
            event("444455556666", "123456789012"),
            "is not its `awsAccountId` 123456789012",
        ),
        (
            "newline-in-account",
            event("123456789012\ncordon: all clear", "123456789012"),
            "is not its `awsAccountId`",
        ),
        (
            "wildcard-account",
            event("1234*", "1234*"),
            "`awsAccountId`: \"1234*\" is not an AWS account id",
        ),
    ] {
        let file = write(&dir, name, &finding);
        for args in [
            vec!["plan", file.as_str()],
            vec!["run", file.as_str(), "--yes"],
        ] {
            let out = cordon(&endpoint, &dir, &args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{name}: {args:?}\n{err}");
            assert_eq!(stdout(&out), "", "{name}: {args:?} printed a plan");
            assert_eq!(err.lines().count(), 1, "{name}: {args:?}: one line:\n{err}");
            assert!(err.contains(words), "{name}: {args:?}:\n{err}");
            assert!(err.contains("no AWS call was made"), "{name}:\n{err}");
            assert_terminal_safe(&err, name);
        }
    }
    assert_eq!(
        endpoint.connections(),
        0,
        "a refused evaluation must not reach AWS"
    );
}

/// The control: the same endpoint does see a well-formed finding's calls, so
/// the zero above is a measurement, not a listener nobody could reach.
#[test]
fn well_formed_finding_reaches_the_counting_endpoint() {
    let dir = temp_dir("control");
    let endpoint = CountingEndpoint::start();
    let file = write(&dir, "clean", &instance_finding());
    let out = cordon(&endpoint, &dir, &["run", &file, "--yes"]);
    assert_ne!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        endpoint.connections() > 0,
        "the run never connected:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn bidi_overrides_in_a_finding_type_are_shown_escaped() {
    let dir = temp_dir("bidi");
    let endpoint = CountingEndpoint::start();
    let clean = cordon(
        &endpoint,
        &dir,
        &["plan", &write(&dir, "clean", &instance_finding())],
    );
    assert_eq!(clean.status.code(), Some(0), "{}", stderr(&clean));
    let mut finding = instance_finding();
    finding["type"] = json!("Backdoor:EC2/C&CActivity.B\u{202e}SND\u{2066}!DNS\u{2069}");
    let file = write(&dir, "bidi", &finding);
    for command in ["plan", "route"] {
        let out = cordon(&endpoint, &dir, &[command, &file]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        assert_terminal_safe(&text, command);
        assert!(
            text.contains("C&CActivity.B\\u{202e}SND\\u{2066}!DNS\\u{2069}"),
            "{command}: the type must be shown escaped:\n{text}"
        );
        if command == "plan" {
            // Same plan, same lines: only the type's line differs, and only by the escapes.
            let clean = stdout(&clean);
            assert_eq!(text.lines().count(), clean.lines().count(), "{text}");
            let differing: Vec<(&str, &str)> = text
                .lines()
                .zip(clean.lines())
                .filter(|(a, b)| a != b)
                .collect();
            assert!(
                differing
                    .iter()
                    .all(|(a, _)| a.starts_with("finding ") || a.starts_with("  because type")),
                "{differing:#?}"
            );
        }
    }
    assert_eq!(endpoint.connections(), 0);
}

#[test]
fn control_characters_in_printed_fields_cannot_forge_lines() {
    let dir = temp_dir("forge");
    let endpoint = CountingEndpoint::start();
    // The user type is GuardDuty's word, printed but never sent to AWS: the plan
    // goes ahead (the user step is skipped) and shows it escaped on one line.
    let finding = key_finding(
        "AKIAEXAMPLEDEPLOY042",
        "alice",
        "IAMUser\n  quarantine-user  REQUIRED\u{1b}[8m",
    );
    let out = cordon(
        &endpoint,
        &dir,
        &["plan", &write(&dir, "user-type", &finding)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_terminal_safe(&text, "plan");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("  quarantine-user  REQUIRED")),
        "a forged line reached the plan:\n{text}"
    );
    assert!(
        text.contains("IAMUser\\n  quarantine-user  REQUIRED\\u{1b}[8m"),
        "{text}"
    );
    assert_eq!(endpoint.connections(), 0);
}
