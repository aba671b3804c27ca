//! The built `bootstrap` answers a real Lambda runtime API: a small one served
//! here on 127.0.0.1 (the three endpoints a runtime uses), with the emulator
//! behind the handler. One `plan` invocation, answered on the response endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BUCKET: &str = "cordon-runtime";

/// One HTTP request: method, path, body; `None` when the client closed the connection.
async fn read_request(stream: &mut TcpStream) -> Option<(String, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.unwrap();
        if n == 0 {
            assert!(
                buf.is_empty(),
                "the runtime closed the connection mid-request"
            );
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap().split(' ');
    let (method, path) = (
        first.next().unwrap().to_string(),
        first.next().unwrap().to_string(),
    );
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        body.extend_from_slice(&chunk[..n]);
    }
    Some((method, path, body))
}

async fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream.flush().await.unwrap();
}

/// Serves `payload` once as invocation `req-1` and returns what the runtime
/// posted back: (endpoint kind, body).
async fn serve_one(listener: TcpListener, payload: Value) -> (String, Value) {
    let mut served = false;
    loop {
        let (mut stream, _) = listener.accept().await.unwrap();
        while let Some((method, path, body)) = read_request(&mut stream).await {
            match (method.as_str(), path.as_str()) {
                ("GET", "/2018-06-01/runtime/invocation/next") if !served => {
                    served = true;
                    let deadline = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis()
                        + 60_000;
                    let headers = [
                        ("content-type", "application/json".to_string()),
                        ("lambda-runtime-aws-request-id", "req-1".to_string()),
                        ("lambda-runtime-deadline-ms", deadline.to_string()),
                        (
                            "lambda-runtime-invoked-function-arn",
                            "arn:aws:lambda:us-east-1:123456789012:function:cordon".to_string(),
                        ),
                        (
                            "lambda-runtime-trace-id",
                            "Root=1-00000000-000000000000000000000000".to_string(),
                        ),
                    ];
                    respond(
                        &mut stream,
                        "200 OK",
                        &headers,
                        payload.to_string().as_bytes(),
                    )
                    .await;
                }
                ("POST", p) if p.starts_with("/2018-06-01/runtime/invocation/req-1/") => {
                    respond(&mut stream, "202 Accepted", &[], b"{}").await;
                    let kind = p.rsplit('/').next().unwrap().to_string();
                    return (kind, serde_json::from_slice(&body).unwrap());
                }
                (m, p) => panic!("unexpected runtime API call {m} {p}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_answers_a_plan_invocation_over_the_runtime_api() {
    let aws = cordon_tests::emulator().await;
    let (_, raw) = cordon_tests::s3_journal_world(&aws, BUCKET).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap().to_string();
    let finding: Value = serde_json::from_str(&raw).unwrap();
    let payload = json!({"mode": "plan", "finding": finding});
    let server = tokio::spawn(serve_one(listener, payload));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_bootstrap"))
        .envs(aws.env())
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "cordon")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "test")
        .env("CORDON_JOURNAL", format!("s3://{BUCKET}/cases/"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (kind, body) = tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .expect("bootstrap answered within a minute")
        .unwrap();
    child.kill().await.unwrap();
    assert_eq!(kind, "response", "{body}");
    assert_eq!(body["format-version"], 1);
    assert_eq!(body["playbook"], "ec2-compromised-high");
    assert_eq!(body["status"], "running");
    assert!(body["case-id"].as_str().unwrap().starts_with("case-"));
    assert!(!body["steps"].as_array().unwrap().is_empty());
}
