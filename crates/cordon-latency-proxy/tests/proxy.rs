//! The proxy against a small in-process HTTP/1.1 server on 127.0.0.1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cordon_latency_proxy::http::{RequestHead, ResponseHead, Wire};
use cordon_latency_proxy::throttle::{Ec2Throttle, Limits};
use cordon_latency_proxy::{HangMode, HangRule, LatencyProxy, ProxyConfig};
use tokio::net::{TcpListener, TcpStream};

/// Answers every request with `METHOD TARGET expect=<yes|no> BODY`, as
/// Content-Length unless the request asks for a chunked (`X-Reply: chunked`)
/// or close-delimited (`X-Reply: close`) answer.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut wire = Wire::new(stream);
                while let Ok(Some(head)) = wire.read_head().await {
                    let req = RequestHead::parse(&head).expect("request head");
                    let body = wire
                        .read_body(req.framing().expect("framing"))
                        .await
                        .expect("body");
                    let expect = if req.expects_continue() { "yes" } else { "no" };
                    let text = format!(
                        "{} {} expect={expect} {}",
                        req.method,
                        req.target,
                        String::from_utf8_lossy(&body)
                    );
                    let reply = match req.headers.get("x-reply") {
                        Some("chunked") => format!(
                            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{text}\r\n0\r\n\r\n",
                            text.len()
                        ),
                        Some("close") => format!("HTTP/1.1 200 OK\r\n\r\n{text}"),
                        _ => format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                            text.len()
                        ),
                    };
                    if wire.write_parts(&[reply.as_bytes()]).await.is_err() {
                        return;
                    }
                    // `drop`: close after answering without saying so, as a
                    // server does with a keep-alive connection it finds idle.
                    if matches!(req.headers.get("x-reply"), Some("close" | "drop")) {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn start(configure: impl FnOnce(&mut ProxyConfig)) -> SocketAddr {
    let mut config = ProxyConfig::new(echo_server().await);
    config.delay = Duration::ZERO;
    configure(&mut config);
    let proxy = LatencyProxy::bind(config).await.expect("proxy");
    let addr = proxy.local_addr();
    tokio::spawn(proxy.serve());
    addr
}

fn temp_log(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "latency-proxy-{name}-{}-{}.jsonl",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

fn log_lines(path: &PathBuf) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

struct Client {
    wire: Wire<TcpStream>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        Self {
            wire: Wire::new(TcpStream::connect(addr).await.expect("connect")),
        }
    }

    async fn send(&mut self, raw: &[u8]) {
        self.wire.write_parts(&[raw]).await.expect("send");
    }

    async fn response(&mut self) -> (ResponseHead, String) {
        let head = self
            .wire
            .read_head()
            .await
            .expect("read")
            .expect("a response");
        let head = ResponseHead::parse(&head).expect("response head");
        let body = self
            .wire
            .read_body(head.framing("POST").expect("framing"))
            .await
            .expect("body");
        (head, String::from_utf8(body).expect("utf-8"))
    }

    async fn call(&mut self, raw: &[u8]) -> (ResponseHead, String) {
        self.send(raw).await;
        self.response().await
    }
}

fn ec2_request(action: &str) -> Vec<u8> {
    let body = format!("Action={action}&Version=2016-11-15");
    format!(
        "POST / HTTP/1.1\r\nHost: ec2\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0\r\n\
Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn every_request_on_a_keep_alive_connection_pays_the_delay() {
    let log = temp_log("keepalive");
    let delay = Duration::from_millis(60);
    let proxy = start(|c| {
        c.delay = delay;
        c.log = Some(log.clone());
    })
    .await;
    let mut client = Client::connect(proxy).await;
    let started = Instant::now();
    for i in 0..3 {
        let started_one = Instant::now();
        let (head, body) = client
            .call(format!("POST /r{i} HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello").as_bytes())
            .await;
        assert_eq!(head.status, 200);
        assert_eq!(body, format!("POST /r{i} expect=no hello"));
        assert!(
            started_one.elapsed() >= delay,
            "request {i} was not delayed"
        );
    }
    assert!(started.elapsed() >= delay * 3);
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 3);
    assert!(
        lines
            .iter()
            .all(|l| l["connection"] == lines[0]["connection"])
    );
    assert!(
        lines
            .iter()
            .all(|l| l["outcome"] == "forwarded" && l["status"] == 200)
    );
    let _ = std::fs::remove_file(log);
}

#[tokio::test]
async fn chunked_and_close_delimited_messages_are_relayed_whole() {
    let proxy = start(|_| {}).await;
    let mut client = Client::connect(proxy).await;
    let (_, body) = client
        .call(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Reply: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        .await;
    assert_eq!(
        body,
        format!(
            "{:x}\r\nPOST /c expect=no 3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n\r\n0\r\n\r\n",
            "POST /c expect=no 3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n".len()
        ),
        "the chunked request reached the server verbatim and the chunked answer came back verbatim"
    );
    let (_, body) = client.call(b"GET /after HTTP/1.1\r\n\r\n").await;
    assert_eq!(
        body, "GET /after expect=no ",
        "the connection is still usable"
    );

    client
        .send(b"GET /close HTTP/1.1\r\nX-Reply: close\r\n\r\n")
        .await;
    let (head, body) = client.response().await;
    assert_eq!(head.status, 200);
    assert_eq!(body, "GET /close expect=no ");
    assert!(
        client.wire.read_head().await.expect("eof").is_none(),
        "a close-delimited answer closes the client connection"
    );
}

#[tokio::test]
async fn an_upstream_connection_closed_while_idle_is_reopened() {
    let log = temp_log("reopen");
    let proxy = start(|c| c.log = Some(log.clone())).await;
    let mut client = Client::connect(proxy).await;
    let (_, body) = client
        .call(b"GET /one HTTP/1.1\r\nX-Reply: drop\r\n\r\n")
        .await;
    assert_eq!(body, "GET /one expect=no ");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (head, body) = client.call(b"GET /two HTTP/1.1\r\n\r\n").await;
    assert_eq!(head.status, 200);
    assert_eq!(
        body, "GET /two expect=no ",
        "sent again on a new upstream connection"
    );
    let lines = log_lines(&log);
    assert_eq!(
        lines.len(),
        2,
        "one log line per request, however many attempts upstream"
    );
    let _ = std::fs::remove_file(log);
}

#[tokio::test]
async fn expect_continue_is_answered_by_the_proxy() {
    let proxy = start(|_| {}).await;
    let mut client = Client::connect(proxy).await;
    client
        .send(b"PUT /obj HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        .await;
    let interim = client.wire.read_head().await.expect("read").expect("100");
    assert!(ResponseHead::parse(&interim).expect("head").is_interim());
    let (head, body) = client.call(b"data").await;
    assert_eq!(head.status, 200);
    assert_eq!(
        body, "PUT /obj expect=no data",
        "upstream got the body without Expect"
    );
}

#[tokio::test]
async fn the_nth_request_is_never_answered_and_the_others_are() {
    let log = temp_log("hang-nth");
    let proxy = start(|c| {
        c.hang = Some(HangRule::Nth(2));
        c.log = Some(log.clone());
    })
    .await;
    let mut first = Client::connect(proxy).await;
    assert_eq!(first.call(b"GET /1 HTTP/1.1\r\n\r\n").await.0.status, 200);
    first.send(b"GET /2 HTTP/1.1\r\n\r\n").await;
    let held = tokio::time::timeout(Duration::from_millis(400), first.wire.read_head()).await;
    assert!(held.is_err(), "the second request got an answer: {held:?}");
    let mut other = Client::connect(proxy).await;
    assert_eq!(other.call(b"GET /3 HTTP/1.1\r\n\r\n").await.0.status, 200);
    let lines = log_lines(&log);
    let outcomes: Vec<(u64, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["seq"].as_u64().expect("seq"),
                l["outcome"].as_str().expect("outcome"),
            )
        })
        .collect();
    assert!(outcomes.contains(&(2, "hung")), "{outcomes:?}");
    assert!(outcomes.contains(&(3, "forwarded")), "{outcomes:?}");
    let _ = std::fs::remove_file(log);
}

#[tokio::test]
async fn only_the_first_call_of_the_named_operation_hangs() {
    let proxy = start(|c| c.hang = Some(HangRule::Operation("CreateSecurityGroup".into()))).await;
    let mut client = Client::connect(proxy).await;
    assert_eq!(
        client
            .call(&ec2_request("DescribeSecurityGroups"))
            .await
            .0
            .status,
        200
    );
    client.send(&ec2_request("CreateSecurityGroup")).await;
    let held = tokio::time::timeout(Duration::from_millis(400), client.wire.read_head()).await;
    assert!(held.is_err(), "the first CreateSecurityGroup got an answer");
    let mut retry = Client::connect(proxy).await;
    let (head, body) = retry.call(&ec2_request("CreateSecurityGroup")).await;
    assert_eq!(head.status, 200);
    assert!(body.contains("Action=CreateSecurityGroup"));
}

#[tokio::test]
async fn an_unanswered_request_reaches_the_upstream_and_its_answer_is_dropped() {
    let log = temp_log("hang-unanswered");
    let proxy = start(|c| {
        c.hang = Some(HangRule::Operation("CreateSecurityGroup".into()));
        c.hang_mode = HangMode::Unanswered;
        c.log = Some(log.clone());
    })
    .await;
    let mut client = Client::connect(proxy).await;
    client.send(&ec2_request("CreateSecurityGroup")).await;
    let held = tokio::time::timeout(Duration::from_millis(400), client.wire.read_head()).await;
    assert!(held.is_err(), "the held request got an answer");
    let lines = log_lines(&log);
    let hung: Vec<&serde_json::Value> = lines.iter().filter(|l| l["outcome"] == "hung").collect();
    assert_eq!(hung.len(), 1, "{lines:?}");
    // The upstream answered it: it took effect there.
    assert_eq!(hung[0]["status"], 200, "{lines:?}");
    let _ = std::fs::remove_file(log);
}

fn two_per_bucket(_: &cordon_latency_proxy::throttle::Ec2Bucket) -> Limits {
    Limits {
        capacity: 2.0,
        refill_per_second: 0.001,
    }
}

#[tokio::test]
async fn ec2_calls_beyond_the_bucket_get_request_limit_exceeded() {
    let log = temp_log("throttle");
    let proxy = start(|c| {
        c.throttle = Some(Ec2Throttle::with_limits(two_per_bucket));
        c.log = Some(log.clone());
    })
    .await;
    let mut client = Client::connect(proxy).await;
    for _ in 0..2 {
        let (head, _) = client
            .call(&ec2_request("ModifyNetworkInterfaceAttribute"))
            .await;
        assert_eq!(head.status, 200);
    }
    let (head, body) = client
        .call(&ec2_request("ModifyNetworkInterfaceAttribute"))
        .await;
    assert_eq!(head.status, 503);
    assert!(body.contains("<Code>RequestLimitExceeded</Code>"), "{body}");
    let (head, _) = client.call(&ec2_request("CreateSnapshot")).await;
    assert_eq!(head.status, 200, "another bucket still has tokens");
    let (head, _) = client
        .call(b"POST / HTTP/1.1\r\nX-Amz-Target: secretsmanager.CreateSecret\r\nContent-Length: 0\r\n\r\n")
        .await;
    assert_eq!(head.status, 200, "only EC2 is throttled");
    let lines = log_lines(&log);
    assert_eq!(lines[2]["outcome"], "throttled");
    assert_eq!(lines[2]["bucket"], "own:ModifyNetworkInterfaceAttribute");
    let _ = std::fs::remove_file(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_connections_are_served_concurrently() {
    let delay = Duration::from_millis(200);
    let proxy = start(|c| c.delay = delay).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            tokio::spawn(async move {
                let mut client = Client::connect(proxy).await;
                client
                    .call(format!("GET /c{i} HTTP/1.1\r\n\r\n").as_bytes())
                    .await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let (head, body) = task.await.expect("task");
        assert_eq!(head.status, 200);
        assert_eq!(body, format!("GET /c{i} expect=no "));
    }
    // One at a time this would take 300 x 200 ms = 60 s.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}
