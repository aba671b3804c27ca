//! A loopback HTTP/1.1 proxy that puts an AWS-like round trip in front of the
//! local emulator, so benchmarks measure what a user on a real network would
//! see (the emulator answers in about a millisecond; AWS in tens).
//!
//! Per request, also on keep-alive connections, it waits `delay` before
//! forwarding; it can hold one request forever (the Nth, or the first of an
//! operation) to test that a stuck call does not stall containment; it can
//! answer EC2 requests with `RequestLimitExceeded` when EC2's published
//! token buckets would ([`throttle`]); and it logs every request as one JSON
//! line (operation, times, outcome) so every tool is counted the same way.
//!
//! Both ends must be loopback addresses: this is a test instrument.

pub mod http;
pub mod throttle;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::http::{Framing, HttpError, RequestHead, ResponseHead, Wire};
use crate::throttle::{Ec2Bucket, Ec2Throttle, request_limit_exceeded_body};

/// The default added round trip: about what a client in the same region sees.
pub const DEFAULT_DELAY: Duration = Duration::from_millis(40);

/// Which request never gets an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HangRule {
    /// The Nth request the proxy receives (1-based, over all connections).
    Nth(u64),
    /// The first request for this operation (`CreateSecurityGroup`).
    Operation(String),
}

/// What happens to the request a [`HangRule`] picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HangMode {
    /// Held before it reaches the emulator: it never takes effect.
    #[default]
    Unsent,
    /// Forwarded, so it takes effect, and its answer is never relayed: the
    /// case that makes re-sending a creation dangerous (a lost answer).
    Unanswered,
}

/// What the proxy does.
#[derive(Debug)]
pub struct ProxyConfig {
    /// Where to listen (port 0: any free port).
    pub listen: SocketAddr,
    /// The emulator.
    pub upstream: SocketAddr,
    /// Added before each request is forwarded.
    pub delay: Duration,
    /// The request to hold forever, if any.
    pub hang: Option<HangRule>,
    /// Whether the held request reaches the emulator first.
    pub hang_mode: HangMode,
    /// Every request for this operation waits this much longer before it is
    /// forwarded: a service that is slow, not lost.
    pub slow: Option<(String, Duration)>,
    /// EC2 throttling, if wanted.
    pub throttle: Option<Ec2Throttle>,
    /// Where to append one JSON line per request.
    pub log: Option<PathBuf>,
}

impl ProxyConfig {
    /// A proxy on any free loopback port with the default delay and nothing else.
    pub fn new(upstream: SocketAddr) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream,
            delay: DEFAULT_DELAY,
            hang: None,
            hang_mode: HangMode::Unsent,
            slow: None,
            throttle: None,
            log: None,
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Only loopback addresses may be used, on either side.
    #[error(
        "{role} address {addr} is not a loopback address: the proxy only talks to this machine (use 127.0.0.1)"
    )]
    NotLoopback {
        /// `listen` or `upstream`.
        role: &'static str,
        /// The refused address.
        addr: SocketAddr,
    },
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source} (is the port taken?)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The request log could not be opened.
    #[error("cannot open the request log {}: {source} (check the directory exists and is writable)", path.display())]
    Log {
        /// The log path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A bound proxy, ready to serve.
#[derive(Debug)]
pub struct LatencyProxy {
    listener: TcpListener,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    delay: Duration,
    hang: Option<HangRule>,
    hang_mode: HangMode,
    hang_taken: AtomicBool,
    slow: Option<(String, Duration)>,
    throttle: Option<Ec2Throttle>,
    log: Option<tokio::sync::Mutex<tokio::fs::File>>,
    requests: AtomicU64,
    connections: AtomicU64,
}

impl LatencyProxy {
    /// Checks the addresses, opens the log and binds the listening socket.
    pub async fn bind(config: ProxyConfig) -> Result<Self, ProxyError> {
        for (role, addr) in [("listen", config.listen), ("upstream", config.upstream)] {
            if !addr.ip().is_loopback() {
                return Err(ProxyError::NotLoopback { role, addr });
            }
        }
        let log = match &config.log {
            Some(path) => Some(tokio::sync::Mutex::new(open_log(path).await?)),
            None => None,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ProxyError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                upstream: config.upstream,
                delay: config.delay,
                hang: config.hang,
                hang_mode: config.hang_mode,
                hang_taken: AtomicBool::new(false),
                slow: config.slow,
                throttle: config.throttle,
                log,
                requests: AtomicU64::new(0),
                connections: AtomicU64::new(0),
            }),
        })
    }

    /// The address clients should use (the actual port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        // A bound TCP listener always has a local address; fall back to the
        // unspecified port only if the OS says otherwise.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Accepts connections until the future is dropped; each is served on its own task.
    pub async fn serve(self) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    let shared = Arc::clone(&self.shared);
                    tokio::spawn(async move { serve_connection(shared, stream).await });
                }
                // Out of file descriptors or a connection reset before accept:
                // back off briefly instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }
}

async fn open_log(path: &Path) -> Result<tokio::fs::File, ProxyError> {
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(|source| ProxyError::Log {
            path: path.to_path_buf(),
            source,
        })
}

/// What a request is, as far as the logs and the rules care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The SigV4 signing name (`ec2`, `iam`, `s3`), or `unknown`.
    pub service: String,
    /// The API operation (`ModifyNetworkInterfaceAttribute`); for REST APIs
    /// such as S3, the HTTP method.
    pub operation: String,
    /// The form parameters of a query-protocol request (empty otherwise).
    pub form: String,
}

impl Call {
    /// Classifies a request from its head and body.
    pub fn classify(head: &RequestHead, body: &[u8]) -> Self {
        let service = head
            .headers
            .get("authorization")
            .and_then(|auth| auth.split("Credential=").nth(1))
            .and_then(|scope| scope.split('/').nth(3))
            .unwrap_or("unknown")
            .to_string();
        let query = head.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let form_body = head
            .headers
            .get("content-type")
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        let form = if form_body {
            String::from_utf8_lossy(body).into_owned()
        } else {
            query.to_string()
        };
        let operation = if let Some(target) = head.headers.get("x-amz-target") {
            target.rsplit('.').next().unwrap_or(target).to_string()
        } else if let Some(action) = form_value(&form, "Action") {
            action.to_string()
        } else if let Some((_, op)) = head
            .target
            .split('?')
            .next()
            .and_then(|p| p.split_once("/operation/"))
        {
            op.to_string()
        } else {
            head.method.clone()
        };
        Self {
            service,
            operation,
            form,
        }
    }
}

fn form_value<'a>(form: &'a str, name: &str) -> Option<&'a str> {
    form.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// One line of the request log.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct LogLine<'a> {
    seq: u64,
    connection: u64,
    service: &'a str,
    operation: &'a str,
    /// Unix time the whole request had arrived.
    start_unix: f64,
    /// Unix time the answer was complete (none for a held request).
    end_unix: Option<f64>,
    /// `forwarded`, `throttled`, `hung` or `upstream-error`.
    outcome: &'static str,
    status: Option<u16>,
    bucket: Option<String>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

impl Shared {
    fn should_hang(&self, seq: u64, call: &Call) -> bool {
        let matches = match &self.hang {
            None => false,
            Some(HangRule::Nth(n)) => seq == *n,
            Some(HangRule::Operation(op)) => call.operation == *op,
        };
        matches && !self.hang_taken.swap(true, Ordering::SeqCst)
    }

    /// Appends the line before the answer is relayed, so anyone who has seen
    /// a client finish can read every line of its requests.
    async fn log(&self, line: LogLine<'_>) {
        let Some(file) = &self.log else { return };
        let Ok(mut text) = serde_json::to_vec(&line) else {
            return;
        };
        text.push(b'\n');
        let mut file = file.lock().await;
        // A failing log must not fail the traffic it describes.
        if file.write_all(&text).await.is_ok() {
            let _ = file.flush().await;
        }
    }
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream) {
    let connection = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
    let _ = stream.set_nodelay(true);
    let mut client = Wire::new(stream);
    let mut upstream: Option<Wire<TcpStream>> = None;
    loop {
        let head = match client.read_head().await {
            Ok(Some(head)) => head,
            Ok(None) | Err(_) => return,
        };
        let Ok(request) = RequestHead::parse(&head) else {
            let _ = client
                .write_parts(&[
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ])
                .await;
            return;
        };
        let Ok(framing) = request.framing() else {
            return;
        };
        if request.expects_continue()
            && framing != Framing::Empty
            && client
                .write_parts(&[b"HTTP/1.1 100 Continue\r\n\r\n"])
                .await
                .is_err()
        {
            return;
        }
        let Ok(body) = client.read_body(framing).await else {
            return;
        };
        let seq = shared.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let start_unix = unix_now();
        let call = Call::classify(&request, &body);
        let mut line = LogLine {
            seq,
            connection,
            service: &call.service,
            operation: &call.operation,
            start_unix,
            end_unix: None,
            outcome: "forwarded",
            status: None,
            bucket: None,
        };

        let hang = shared.should_hang(seq, &call);
        if hang && shared.hang_mode == HangMode::Unsent {
            line.outcome = "hung";
            shared.log(line).await;
            client.drain_until_closed().await;
            return;
        }
        tokio::time::sleep(shared.delay).await;
        if let Some((operation, extra)) = &shared.slow
            && call.operation == *operation
        {
            tokio::time::sleep(*extra).await;
        }

        if let (Some(throttle), "ec2") = (&shared.throttle, call.service.as_str()) {
            let bucket = Ec2Bucket::classify(&call.operation, &call.form);
            line.bucket = Some(bucket.name());
            if !throttle.try_take(&bucket) {
                let body = request_limit_exceeded_body(seq);
                let head = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                line.outcome = "throttled";
                line.status = Some(503);
                line.end_unix = Some(unix_now());
                shared.log(line).await;
                if client
                    .write_parts(&[head.as_bytes(), body.as_bytes()])
                    .await
                    .is_err()
                    || !request.keep_alive()
                {
                    return;
                }
                continue;
            }
        }

        let relayed = forward(&mut upstream, shared.upstream, &request, &body).await;
        if hang {
            // Taken effect upstream; the answer is dropped.
            line.outcome = "hung";
            line.status = relayed.as_ref().ok().map(|r| r.status);
            shared.log(line).await;
            client.drain_until_closed().await;
            return;
        }
        line.end_unix = Some(unix_now());
        match relayed {
            Ok(relayed) => {
                line.status = Some(relayed.status);
                shared.log(line).await;
                if client
                    .write_parts(&[&relayed.head, &relayed.body])
                    .await
                    .is_err()
                    || relayed.close_client
                    || !request.keep_alive()
                {
                    return;
                }
            }
            Err(_) => {
                line.outcome = "upstream-error";
                line.status = Some(502);
                shared.log(line).await;
                let _ = client
                    .write_parts(&[b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"])
                    .await;
                return;
            }
        }
    }
}

/// A response to relay to the client.
struct Relayed {
    status: u16,
    head: Vec<u8>,
    body: Vec<u8>,
    /// The body ran to the end of the connection: the client learns where it
    /// ends only when its connection closes too.
    close_client: bool,
}

/// Failure of one exchange; `stale` when nothing came back on a reused
/// connection (the emulator closed it while idle), which is safe to resend.
struct ExchangeError {
    stale: bool,
}

impl From<HttpError> for ExchangeError {
    fn from(_: HttpError) -> Self {
        Self { stale: false }
    }
}

async fn forward(
    slot: &mut Option<Wire<TcpStream>>,
    addr: SocketAddr,
    request: &RequestHead,
    body: &[u8],
) -> Result<Relayed, ExchangeError> {
    let head = request.to_upstream();
    loop {
        let reused = slot.is_some();
        let wire = match slot {
            Some(wire) => wire,
            None => {
                let stream = TcpStream::connect(addr)
                    .await
                    .map_err(|_| ExchangeError { stale: false })?;
                let _ = stream.set_nodelay(true);
                slot.insert(Wire::new(stream))
            }
        };
        match exchange(wire, &head, body, &request.method).await {
            Ok((relayed, keep)) => {
                if !keep {
                    *slot = None;
                }
                return Ok(relayed);
            }
            Err(e) => {
                *slot = None;
                if !(e.stale && reused) {
                    return Err(e);
                }
            }
        }
    }
}

async fn exchange(
    wire: &mut Wire<TcpStream>,
    head: &[u8],
    body: &[u8],
    method: &str,
) -> Result<(Relayed, bool), ExchangeError> {
    wire.write_parts(&[head, body])
        .await
        .map_err(|_| ExchangeError { stale: true })?;
    let (raw, response) = loop {
        let raw = match wire.read_head().await {
            Ok(Some(raw)) => raw,
            // Closed or reset before a single byte of an answer: the server
            // dropped the idle connection, and did not see this request.
            Ok(None) => return Err(ExchangeError { stale: true }),
            Err(HttpError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                ) =>
            {
                return Err(ExchangeError { stale: true });
            }
            Err(e) => return Err(e.into()),
        };
        let response = ResponseHead::parse(&raw)?;
        if !response.is_interim() {
            break (raw, response);
        }
    };
    let framing = response.framing(method)?;
    let body = wire.read_body(framing).await?;
    let close_client = framing == Framing::UntilClose;
    let keep = response.keep_alive() && !close_client;
    Ok((
        Relayed {
            status: response.status,
            head: raw,
            body,
            close_client,
        },
        keep,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(raw: &[u8], body: &[u8]) -> Call {
        Call::classify(&RequestHead::parse(raw).expect("head"), body)
    }

    #[test]
    fn classifies_query_json_and_rest_requests() {
        let auth = "Authorization: AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=x\r\n";
        let ec2 = call(
            format!("POST / HTTP/1.1\r\n{auth}Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n\r\n").as_bytes(),
            b"Action=ModifyNetworkInterfaceAttribute&Version=2016-11-15&NetworkInterfaceId=eni-1",
        );
        assert_eq!(ec2.service, "ec2");
        assert_eq!(ec2.operation, "ModifyNetworkInterfaceAttribute");
        let json = call(
            b"POST / HTTP/1.1\r\nX-Amz-Target: secretsmanager.CreateSecret\r\n\r\n",
            b"{}",
        );
        assert_eq!(json.operation, "CreateSecret");
        assert_eq!(json.service, "unknown");
        let get = call(
            b"GET /?Action=ListUsers&Version=2010-05-08 HTTP/1.1\r\n\r\n",
            b"",
        );
        assert_eq!(get.operation, "ListUsers");
        let cbor = call(
            b"POST /service/GraniteServiceVersion20100801/operation/GetMetricData HTTP/1.1\r\n\r\n",
            b"",
        );
        assert_eq!(cbor.operation, "GetMetricData");
        let s3 = call(b"PUT /bucket/key HTTP/1.1\r\n\r\n", b"Action=NotAForm");
        assert_eq!(s3.operation, "PUT", "a raw S3 body is not read as a form");
    }

    #[tokio::test]
    async fn refuses_addresses_off_this_machine() {
        let mut config = ProxyConfig::new(SocketAddr::from(([192, 0, 2, 1], 80)));
        let err = LatencyProxy::bind(config).await.expect_err("not loopback");
        assert!(err.to_string().contains("192.0.2.1:80"), "{err}");
        config = ProxyConfig::new(SocketAddr::from(([127, 0, 0, 1], 80)));
        config.listen = SocketAddr::from(([0, 0, 0, 0], 0));
        assert!(matches!(
            LatencyProxy::bind(config).await,
            Err(ProxyError::NotLoopback { role: "listen", .. })
        ));
    }
}
