//! A re-signing proxy between the `cordon` binary and the emulator, so that
//! the emulator's IAM enforcement judges the *action*, not an encoding quirk.
//!
//! With authorization on, the emulator re-computes each request's SigV4
//! signature. For form-encoded (Query protocol: EC2, IAM, SNS, Auto Scaling,
//! ELB) requests it rebuilds the body from the parsed form, encoding spaces as
//! `+`, while aws-sdk-rust encodes them as `%20`: any such request with a space
//! in a parameter (a security group's or snapshot's description, an SNS
//! message) fails with `AuthFailure`/`SignatureDoesNotMatch` before its action
//! is even looked at. Both encodings mean the same to AWS, so the proxy
//! rewrites `%20` to `+` in those bodies and signs them again with the
//! caller's secret, which the test registers.
//!
//! The emulator also answers a denied request in EC2's error shape whatever
//! the service, which aws-sdk-rust cannot read for the Query services (IAM,
//! SNS, Auto Scaling, ELB) nor for JSON ones (Secrets Manager): the error
//! would surface as `Unknown`. The proxy re-shapes those answers the way each
//! protocol carries an error, code and message unchanged. Everything else
//! passes through byte for byte. It listens on 127.0.0.1 only.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// Access key id → secret, for the callers whose requests may be re-signed.
pub type Secrets = Arc<Mutex<BTreeMap<String, String>>>;

/// A running proxy; its accept thread ends with the test process.
#[derive(Debug)]
pub struct ResigningProxy {
    port: u16,
    secrets: Secrets,
}

impl ResigningProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream_port`.
    pub fn start(upstream_port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        let secrets: Secrets = Arc::default();
        let shared = Arc::clone(&secrets);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let secrets = Arc::clone(&shared);
                std::thread::spawn(move || {
                    // A broken connection fails the request it carried; the run reports it.
                    let _ = serve(client, upstream_port, &secrets);
                });
            }
        });
        Ok(Self { port, secrets })
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Lets the proxy re-sign requests made with this key.
    pub fn register(&self, access_key_id: &str, secret: &str) {
        if let Ok(mut secrets) = self.secrets.lock() {
            secrets.insert(access_key_id.to_string(), secret.to_string());
        }
    }
}

fn serve(client: TcpStream, upstream_port: u16, secrets: &Secrets) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            headers.push((name.to_string(), value.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let form =
        header("content-type").is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let length = header("content-length").and_then(|l| l.parse::<usize>().ok());
    let protocol = Protocol::of(&headers);
    let mut upstream = TcpStream::connect(("127.0.0.1", upstream_port))?;
    match (form, length) {
        (true, Some(length)) => {
            let mut body = vec![0; length];
            reader.read_exact(&mut body)?;
            let body = match String::from_utf8(body) {
                Ok(text) if text.contains("%20") => {
                    let text = text.replace("%20", "+");
                    resign(&request_line, &mut headers, &text, secrets);
                    text.into_bytes()
                }
                Ok(text) => text.into_bytes(),
                Err(e) => e.into_bytes(),
            };
            upstream.write_all(&head(&request_line, &headers))?;
            upstream.write_all(&body)?;
        }
        _ => {
            upstream.write_all(&head(&request_line, &headers))?;
            let mut to_upstream = upstream.try_clone()?;
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut reader, &mut to_upstream);
            });
        }
    }
    // The emulator closes the connection after each response.
    let mut response = Vec::new();
    upstream.read_to_end(&mut response)?;
    let response = protocol.reshape_error(response);
    let mut to_client = client.try_clone()?;
    to_client.write_all(&response)?;
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
    Ok(())
}

/// How the request's service carries errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// EC2, S3 and anything else: the emulator's answer is already right.
    AsIs,
    /// awsQuery: `<ErrorResponse><Error><Code>`.
    Query,
    /// awsJson: `{"__type": ...}` and `x-amzn-ErrorType`.
    Json,
}

impl Protocol {
    fn of(headers: &[(String, String)]) -> Self {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .unwrap_or_default()
        };
        let service = header("authorization")
            .split("Credential=")
            .nth(1)
            .and_then(|c| c.split('/').nth(3))
            .unwrap_or_default();
        let content_type = header("content-type");
        if content_type.starts_with("application/x-amz-json") {
            Protocol::Json
        } else if content_type.starts_with("application/x-www-form-urlencoded") && service != "ec2"
        {
            Protocol::Query
        } else {
            Protocol::AsIs
        }
    }

    /// Rewrites an EC2-shaped error response into this protocol's shape.
    fn reshape_error(self, response: Vec<u8>) -> Vec<u8> {
        let text = String::from_utf8_lossy(&response);
        let between = |open: &str, close: &str| {
            let start = text.find(open)? + open.len();
            let end = start + text[start..].find(close)?;
            Some(text[start..end].to_string())
        };
        let status = text.lines().next().unwrap_or_default().to_string();
        let ec2_shaped = text.contains("<ErrorResponse><Errors><Error>");
        let (Some(code), Some(message), true) = (
            between("<Code>", "</Code>"),
            between("<Message>", "</Message>"),
            ec2_shaped,
        ) else {
            return response;
        };
        let (content_type, extra, body) = match self {
            Protocol::AsIs => return response,
            Protocol::Query => (
                "text/xml",
                String::new(),
                format!(
                    "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>cordon-test-proxy</RequestId></ErrorResponse>"
                ),
            ),
            Protocol::Json => {
                let code = if code == "AccessDenied" {
                    "AccessDeniedException".to_string()
                } else {
                    code
                };
                let body = serde_json::json!({"__type": code, "message": message}).to_string();
                (
                    "application/x-amz-json-1.1",
                    format!("x-amzn-ErrorType: {code}\r\n"),
                    body,
                )
            }
        };
        format!(
            "{status}\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

fn head(request_line: &str, headers: &[(String, String)]) -> Vec<u8> {
    let mut head = request_line.to_string();
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Replaces the SigV4 signature for the new `body`, keeping the caller's
/// signed headers, date and scope. Unknown callers are left as they are.
fn resign(request_line: &str, headers: &mut [(String, String)], body: &str, secrets: &Secrets) {
    let Some(auth_at) = headers
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case("authorization"))
    else {
        return;
    };
    let auth = headers[auth_at].1.clone();
    let field = |name: &str| {
        auth.split(&format!("{name}="))
            .nth(1)
            .map(|rest| rest.split(',').next().unwrap_or(rest).trim().to_string())
    };
    let (Some(credential), Some(signed)) = (field("Credential"), field("SignedHeaders")) else {
        return;
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let secret = match (scope.first(), secrets.lock()) {
        (Some(key), Ok(secrets)) => secrets.get(*key).cloned(),
        _ => None,
    };
    let Some(secret) = secret else { return };
    if scope.len() != 5 {
        return;
    }
    let payload = hex::encode(Sha256::digest(body.as_bytes()));
    for (name, value) in headers.iter_mut() {
        if name.eq_ignore_ascii_case("content-length") {
            *value = body.len().to_string();
        } else if name.eq_ignore_ascii_case("x-amz-content-sha256") {
            value.clone_from(&payload);
        }
    }
    let value_of = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("POST"), parts.next().unwrap_or("/"));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let canonical_headers: String = signed
        .split(';')
        .map(|name| format!("{name}:{}\n", value_of(name)))
        .collect();
    let canonical = format!("{method}\n{path}\n{query}\n{canonical_headers}\n{signed}\n{payload}");
    let date = value_of("x-amz-date");
    let scope_text = scope[1..].join("/");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope_text}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), scope[1].as_bytes());
    for part in &scope[2..] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
    headers[auth_at].1 = format!(
        "AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed}, Signature={signature}"
    );
}

/// HMAC-SHA256 (RFC 2104).
fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

#[test]
fn hmac_matches_rfc_4231_test_case_2() {
    assert_eq!(
        hex::encode(hmac(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
