//! Harness for end-to-end tests against the local AWS API emulator (moto).
//!
//! Tests call [`emulator`] to get an [`EmulatorGuard`]: a freshly reset
//! emulator, its endpoint, and clients already pointed at it. One emulator
//! process serves each test binary (starting moto takes about a second, per
//! test that would dominate the run); the guard serializes the tests of a
//! binary that touch AWS, so each sees a clean emulator while the rest of
//! the binary still runs in parallel.
//!
//! The emulator listens on 127.0.0.1 only and never outlives the test process:
//! it runs under a small `sh` wrapper that kills it as soon as the pipe the
//! test process holds on the wrapper's stdin closes, which the kernel does
//! however the test process ends.
//!
//! ```no_run
//! # async fn example() {
//! let aws = cordon_tests::emulator().await;
//! aws.clients().s3.create_bucket().bucket("evidence").send().await.expect("CreateBucket");
//! # }
//! ```
//!
//! Environments are built with `cordon-gameday`'s fixture builder (one
//! builder for tests, the demo and Game Days); [`lifecycle`] drives an
//! action through pre-state, dry run, apply, verify, undo and
//! verify-undone; [`plan_for`] plans a finding with a playbook written
//! inline.

pub mod fault_matrix;
pub mod lifecycle;
pub mod shipped;

pub use lifecycle::{Lifecycle, LifecycleReport, Phase, PhaseRecord, mutating, run_every_step};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{Region, SdkConfig};
use aws_credential_types::Credentials;
use cordon_aws::client::{AwsClients, ClientError};
use tokio::sync::{Mutex, MutexGuard, OnceCell};

/// Region every emulator test uses.
pub const REGION: &str = "us-east-1";
/// The emulator's fixed account id (moto's default).
pub const ACCOUNT_ID: &str = "123456789012";
/// Test credentials: the emulator accepts any, these are AWS's documented examples.
pub const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
/// Secret for [`ACCESS_KEY_ID`].
pub const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// How long moto may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness is polled while moto starts.
const READY_POLL: Duration = Duration::from_millis(50);
/// Timeout of one control request (readiness probe, reset).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// Set to a directory to keep moto's request logs there (for debugging a
/// test); by default a log lives in the temp dir and goes with its emulator.
pub const LOG_DIR_ENV: &str = "CORDON_EMULATOR_LOG_DIR";
/// Fresh ports tried when another process grabs the one we picked first.
const START_ATTEMPTS: usize = 3;

/// Runs moto in the background and ties its life to our stdin pipe.
///
/// `$0` is moto_server, `$1` the port, `$2` the log file, `$3` `keep` to keep
/// the log after a normal shutdown (it is always kept when moto fails to
/// start, so the harness can quote it). The wrapper prints
/// moto's pid, then waits for moto; a watcher subshell reads the inherited
/// pipe (fd 3) and kills moto at end of file, i.e. when the test process has
/// closed the pipe or died. The wrapper exits when moto does, so the harness
/// can tell a moto that failed to start from one still starting.
const WRAPPER: &str = r#"
exec 3<&0 </dev/null
"$0" -H 127.0.0.1 -p "$1" >"$2" 2>&1 3<&- &
moto=$!
echo "$moto"
{ read _ <&3; kill "$moto" 2>/dev/null; [ "$3" = keep ] || rm -f "$2"; } >/dev/null 2>&1 &
watcher=$!
exec 3<&-
trap 'kill "$moto" 2>/dev/null' TERM INT HUP
wait "$moto"
status=$?
kill "$watcher" 2>/dev/null
exit "$status"
"#;

/// Why the emulator could not be started or driven.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The virtualenv has not been created on this machine.
    #[error("the emulator is not installed ({path} is missing): run scripts/setup")]
    NotInstalled {
        /// Where moto_server was expected.
        path: PathBuf,
    },
    /// `sh` or the wrapper could not be run.
    #[error("could not start the emulator wrapper: {0}")]
    Spawn(#[source] std::io::Error),
    /// moto exited or never answered; the log tail says why.
    #[error(
        "the emulator did not start on 127.0.0.1:{port}: {reason}\n--- emulator log ---\n{log}"
    )]
    NotReady {
        /// Port moto was asked to listen on.
        port: u16,
        /// What went wrong, in a sentence.
        reason: String,
        /// The last lines moto wrote.
        log: String,
    },
    /// A control request (`/moto-api/reset`) failed.
    #[error("emulator control request {path} failed: {reason}")]
    Control {
        /// The moto-api path requested.
        path: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The clients could not be built from the emulator's config.
    #[error(transparent)]
    Clients(#[from] ClientError),
}

/// A running moto server on 127.0.0.1, stopped when dropped.
///
/// Most tests want the shared one through [`emulator`]; build your own with
/// [`Emulator::start`] for a test that must not share state or timing.
#[derive(Debug)]
pub struct Emulator {
    /// The `sh` wrapper; moto is its child.
    wrapper: Child,
    /// Held open for moto's lifetime; closing it stops moto.
    lifeline: Option<ChildStdin>,
    moto_pid: u32,
    port: u16,
    log: PathBuf,
    keep_log: bool,
}

impl Emulator {
    /// Starts moto on a free port and waits until it answers.
    pub async fn start() -> Result<Emulator, EmulatorError> {
        run_blocking(Emulator::start_blocking).await
    }

    /// [`Emulator::start`] for callers outside an async runtime.
    pub fn start_blocking() -> Result<Emulator, EmulatorError> {
        let bin = moto_server_path();
        if !bin.is_file() {
            return Err(EmulatorError::NotInstalled { path: bin });
        }
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port().map_err(EmulatorError::Spawn)?;
            match Emulator::spawn(&bin, port)?.wait_ready() {
                Ok(emulator) => return Ok(emulator),
                // Most likely someone else bound the port in between: retry.
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| EmulatorError::NotReady {
            port: 0,
            reason: "no start attempted".to_owned(),
            log: String::new(),
        }))
    }

    fn spawn(bin: &Path, port: u16) -> Result<Emulator, EmulatorError> {
        let kept_in = std::env::var_os(LOG_DIR_ENV).map(PathBuf::from);
        let keep = if kept_in.is_some() { "keep" } else { "remove" };
        let dir = kept_in.unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&dir).map_err(EmulatorError::Spawn)?;
        let log = dir.join(format!("cordon-emulator-{}-{port}.log", std::process::id()));
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg(bin)
            .arg(port.to_string())
            .arg(&log)
            .arg(keep)
            // The emulator's Step Functions calls its own Lambda (and other
            // services) at localhost:$MOTO_PORT; without it, port 5000.
            .env("MOTO_PORT", port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(EmulatorError::Spawn)?;
        let lifeline = wrapper.stdin.take();
        let moto_pid = wrapper
            .stdout
            .take()
            .and_then(|stdout| {
                let mut line = String::new();
                BufReader::new(stdout).read_line(&mut line).ok()?;
                line.trim().parse().ok()
            })
            .unwrap_or(0);
        let emulator = Emulator {
            wrapper,
            lifeline,
            moto_pid,
            port,
            log,
            keep_log: keep == "keep",
        };
        if emulator.moto_pid == 0 {
            return Err(emulator.not_ready("the wrapper did not report moto's pid"));
        }
        Ok(emulator)
    }

    fn wait_ready(mut self) -> Result<Emulator, EmulatorError> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.wrapper.try_wait() {
                return Err(self.not_ready(&format!("moto_server exited ({status})")));
            }
            if http(self.port, "GET", "/moto-api/").is_ok() {
                return Ok(self);
            }
            if started.elapsed() > READY_TIMEOUT {
                let reason = format!("no answer within {READY_TIMEOUT:?}");
                return Err(self.not_ready(&reason));
            }
            std::thread::sleep(READY_POLL);
        }
    }

    fn not_ready(&self, reason: &str) -> EmulatorError {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        EmulatorError::NotReady {
            port: self.port,
            reason: reason.to_owned(),
            log: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port moto listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// moto's process id.
    pub fn pid(&self) -> u32 {
        self.moto_pid
    }

    /// Turns on moto's IAM authorization after `requests` more unauthenticated
    /// requests (0: at once). Process-wide in moto and not undone by a reset,
    /// so only a private emulator should use it.
    pub fn enforce_auth_after(&self, requests: u32) -> std::io::Result<()> {
        match http_with_body(
            self.port(),
            "POST",
            "/moto-api/reset-auth",
            &requests.to_string(),
        )? {
            200 => Ok(()),
            status => Err(std::io::Error::other(format!(
                "moto refused reset-auth with HTTP {status}"
            ))),
        }
    }

    /// Drops every resource in every service, back to a fresh emulator.
    pub async fn reset(&self) -> Result<(), EmulatorError> {
        let port = self.port;
        run_blocking(move || reset_blocking(port)).await
    }

    /// A config pointed at this emulator with test credentials.
    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config_for(&self.endpoint()).await
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Closing the pipe makes the watcher kill moto (and remove the log);
        // the wrapper then exits.
        drop(self.lifeline.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.wrapper.try_wait() {
                if !self.keep_log {
                    let _ = std::fs::remove_file(&self.log);
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The wrapper is still waiting on moto, so the pid is still moto's.
        let _ = Command::new("kill")
            .args(["-KILL", &self.moto_pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.wrapper.kill();
        let _ = self.wrapper.wait();
    }
}

/// A private emulator whose IAM authorization is switched on once the test
/// has set it up: requests are then judged against the policies of the IAM
/// user whose key signed them, as AWS does (the emulator checks actions and
/// mostly ignores resources and conditions). The shared [`emulator`] never
/// enforces: authorization is process-wide in moto and survives a reset.
///
/// Set up with [`AuthEnforcedEmulator::root`] (the test credentials, which
/// stop working once enforcing) and [`AuthEnforcedEmulator::principal`], then
/// call [`AuthEnforcedEmulator::enforce`].
#[derive(Debug)]
pub struct AuthEnforcedEmulator {
    emulator: Emulator,
    root: AwsClients,
}

/// An IAM user of the emulator with an access key, to run as.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user's name.
    pub user_name: String,
    /// The user's ARN.
    pub arn: String,
    /// Its access key id.
    pub access_key_id: String,
    /// Its secret access key.
    pub secret_access_key: String,
}

impl Principal {
    /// Environment for a child process (the `cordon` binary) to call
    /// `endpoint` as this user, and nothing from the developer's own set-up.
    pub fn env(&self, endpoint: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", endpoint.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.clone()),
        ]
    }
}

impl AuthEnforcedEmulator {
    /// Starts a private emulator, authorization still off.
    pub async fn start() -> Result<Self, EmulatorError> {
        let emulator = Emulator::start().await?;
        let root = AwsClients::from_sdk_config(&emulator.sdk_config().await)?;
        Ok(Self { emulator, root })
    }

    /// Clients with the test credentials, for setting up before [`Self::enforce`].
    pub fn root(&self) -> &AwsClients {
        &self.root
    }

    /// The emulator itself (endpoint, port).
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Creates IAM user `name` holding the inline policy `statements` (a
    /// JSON array of IAM policy statements) and an access key for it.
    /// Panics with the emulator's answer if any step fails: the test is wrong.
    pub async fn principal(&self, name: &str, statements: serde_json::Value) -> Principal {
        let iam = &self.root.iam;
        let user = iam
            .create_user()
            .user_name(name)
            .send()
            .await
            .unwrap_or_else(|err| panic!("CreateUser {name}: {err:?}"));
        let arn = user
            .user()
            .map(|u| u.arn().to_owned())
            .unwrap_or_else(|| panic!("CreateUser {name} returned no user"));
        let document = serde_json::json!({"Version": "2012-10-17", "Statement": statements});
        iam.put_user_policy()
            .user_name(name)
            .policy_name(format!("{name}-policy"))
            .policy_document(document.to_string())
            .send()
            .await
            .unwrap_or_else(|err| panic!("PutUserPolicy {name}: {err:?}"));
        let key = iam
            .create_access_key()
            .user_name(name)
            .send()
            .await
            .unwrap_or_else(|err| panic!("CreateAccessKey {name}: {err:?}"));
        let key = key
            .access_key()
            .unwrap_or_else(|| panic!("CreateAccessKey {name} returned no key"));
        Principal {
            user_name: name.to_owned(),
            arn,
            access_key_id: key.access_key_id().to_owned(),
            secret_access_key: key.secret_access_key().to_owned(),
        }
    }

    /// Switches authorization on for every request from now on.
    pub fn enforce(&self) -> std::io::Result<()> {
        self.emulator.enforce_auth_after(0)
    }
}

/// Exclusive use of the shared, freshly reset emulator for one test.
///
/// Holding it keeps the other tests of this binary away from the emulator;
/// drop it (end the test) to let them in.
#[derive(Debug)]
pub struct EmulatorGuard {
    _exclusive: MutexGuard<'static, ()>,
    endpoint: String,
    sdk_config: SdkConfig,
    clients: AwsClients,
}

impl EmulatorGuard {
    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Config pointed at the emulator (region [`REGION`], test credentials).
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk_config
    }

    /// cordon's clients built from [`EmulatorGuard::sdk_config`], with a call
    /// counter that starts at zero for this test.
    pub fn clients(&self) -> &AwsClients {
        &self.clients
    }

    /// Environment for a child process (the `cordon` binary) to reach the
    /// emulator the same way production code reaches AWS.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
        ]
    }

    /// POSTs a JSON `body` to one of the emulator's control endpoints
    /// (`/moto-api/config`, `/moto-api/static/lambda-simple/response`, …);
    /// panics with the path unless it answers 2xx.
    pub async fn moto_api(&self, path: &'static str, body: serde_json::Value) {
        let port = port_of(&self.endpoint);
        let body = body.to_string();
        let status = run_blocking(move || {
            http_with_body(port, "POST", path, &body).map_err(|err| EmulatorError::Control {
                path,
                reason: err.to_string(),
            })
        })
        .await;
        match status {
            Ok(status) if (200..300).contains(&status) => {}
            Ok(status) => panic!("{path}: HTTP status {status}"),
            Err(err) => panic!("{err}"),
        }
    }

    /// Resets the emulator again, mid-test.
    pub async fn reset(&self) {
        if let Err(err) = self.try_reset().await {
            panic!("{err}");
        }
    }

    /// Resets the emulator again, mid-test, saying why it could not: a
    /// long-running test may retry a reset a loaded machine answered late.
    pub async fn try_reset(&self) -> Result<(), EmulatorError> {
        let port = port_of(&self.endpoint);
        run_blocking(move || reset_blocking(port)).await
    }
}

static SHARED: OnceCell<Result<Emulator, String>> = OnceCell::const_new();
static EXCLUSIVE: Mutex<()> = Mutex::const_new(());

/// The shared emulator of this test binary, started on first use and reset
/// for the caller, who has it to itself until the guard drops.
///
/// Panics with the reason (e.g. "run scripts/setup") when the emulator
/// cannot be started: a test cannot do anything useful without it.
pub async fn emulator() -> EmulatorGuard {
    let exclusive = EXCLUSIVE.lock().await;
    let shared = SHARED
        .get_or_init(|| async { Emulator::start().await.map_err(|err| err.to_string()) })
        .await;
    let emulator = match shared {
        Ok(emulator) => emulator,
        Err(reason) => panic!("{reason}"),
    };
    if let Err(err) = emulator.reset().await {
        panic!("{err}");
    }
    let endpoint = emulator.endpoint();
    let sdk_config = sdk_config_for(&endpoint).await;
    let clients = match AwsClients::from_sdk_config(&sdk_config) {
        Ok(clients) => clients,
        Err(err) => panic!("{err}"),
    };
    EmulatorGuard {
        _exclusive: exclusive,
        endpoint,
        sdk_config,
        clients,
    }
}

/// How many snapshots the account owns of each of `volume_ids` (zero
/// included), as the emulator reads now.
pub async fn snapshots_per_volume(
    clients: &AwsClients,
    volume_ids: &[&str],
) -> std::collections::BTreeMap<String, usize> {
    let out = clients
        .ec2
        .describe_snapshots()
        .owner_ids("self")
        .send()
        .await
        .expect("DescribeSnapshots");
    volume_ids
        .iter()
        .map(|id| {
            let taken = out
                .snapshots()
                .iter()
                .filter(|s| s.volume_id() == Some(*id))
                .count();
            (id.to_string(), taken)
        })
        .collect()
}

/// The commands SSM holds for `instance_id`, as the emulator recorded them.
pub async fn ssm_commands(
    clients: &AwsClients,
    instance_id: &str,
) -> Vec<aws_sdk_ssm::types::Command> {
    clients
        .ssm
        .list_commands()
        .instance_id(instance_id)
        .send()
        .await
        .expect("ListCommands")
        .commands()
        .to_vec()
}

/// Creates the responders' topic (`responders`) the `notify` steps publish
/// to; its ARN.
pub async fn responders_topic(clients: &AwsClients) -> String {
    clients
        .sns
        .create_topic()
        .name("responders")
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn()
        .expect("topic ARN")
        .to_string()
}

/// A latency proxy in front of the emulator at `emulator_endpoint`,
/// configured by `configure` (its delay per request, a request to hang), and
/// the SDK configuration that goes through it. Round counts are taken through
/// it: straight to the emulator, an answer can come back within the
/// microseconds between two calls sent together, and on a loaded machine the
/// second then counts as sent after the first's answer.
pub async fn latency_path(
    emulator_endpoint: &str,
    configure: impl FnOnce(&mut cordon_latency_proxy::ProxyConfig),
) -> (SdkConfig, tokio::task::JoinHandle<()>) {
    let upstream: SocketAddr = emulator_endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("emulator address");
    let mut config = cordon_latency_proxy::ProxyConfig::new(upstream);
    configure(&mut config);
    let proxy = cordon_latency_proxy::LatencyProxy::bind(config)
        .await
        .expect("proxy");
    let endpoint = format!("http://{}", proxy.local_addr());
    let served = tokio::spawn(proxy.serve());
    (sdk_config_for(&endpoint).await, served)
}

/// A config like production's ([`AwsClients::loader`]) but with the
/// emulator's endpoint, region and test credentials fixed, so nothing from
/// the developer's environment leaks in.
pub async fn sdk_config_for(endpoint: &str) -> SdkConfig {
    AwsClients::loader()
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "cordon-tests",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// `<repo>/.venv/bin/moto_server`, installed by `scripts/setup`.
pub fn moto_server_path() -> PathBuf {
    repo_root().join(".venv/bin/moto_server")
}

/// The workspace root.
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // This crate lives at `<root>/tests`, so it has a parent.
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.join(".."), Path::to_path_buf)
}

fn port_of(endpoint: &str) -> u16 {
    endpoint
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or(0)
}

/// Runs blocking socket and process work off the async runtime's workers.
async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, EmulatorError> + Send + 'static,
) -> Result<T, EmulatorError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        // Only happens while the runtime shuts down.
        Err(join) => Err(EmulatorError::Spawn(std::io::Error::other(join))),
    }
}

fn reset_blocking(port: u16) -> Result<(), EmulatorError> {
    const PATH: &str = "/moto-api/reset";
    match http(port, "POST", PATH) {
        Ok(200) => Ok(()),
        Ok(status) => Err(EmulatorError::Control {
            path: PATH,
            reason: format!("HTTP status {status}"),
        }),
        Err(err) => Err(EmulatorError::Control {
            path: PATH,
            reason: err.to_string(),
        }),
    }
}

/// A port nobody listens on right now (the OS picks it; we release it for moto).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// One bodiless HTTP/1.1 request to 127.0.0.1:`port`; returns the status code.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    http_with_body(port, method, path, "")
}

/// One HTTP/1.1 request with a small text body to 127.0.0.1:`port`; returns the status code.
fn http_with_body(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<u16> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, CONTROL_TIMEOUT)?;
    stream.set_read_timeout(Some(CONTROL_TIMEOUT))?;
    stream.set_write_timeout(Some(CONTROL_TIMEOUT))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let head = String::from_utf8_lossy(&response[..response.len().min(64)]).into_owned();
    head.split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .filter(|_| head.starts_with("HTTP/"))
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an HTTP response: {head:?}"),
            )
        })
}

/// Plays the host of `capture-memory`: one HTTP/1.1 `PUT` of `body` to a
/// presigned `url` on the emulator (`http://127.0.0.1:PORT/…`). Returns the status code.
pub async fn put_presigned(url: &str, body: &str) -> u16 {
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("not a URL on the emulator: {url}"));
    let (port, path) = rest
        .split_once('/')
        .unwrap_or_else(|| panic!("no path in {url}"));
    let port: u16 = port
        .parse()
        .unwrap_or_else(|err| panic!("port of {url}: {err}"));
    let path = format!("/{path}");
    let body = body.to_string();
    run_blocking(move || http_with_body(port, "PUT", &path, &body).map_err(EmulatorError::Spawn))
        .await
        .unwrap_or_else(|err| panic!("PUT to the presigned URL: {err}"))
}

/// An approver that approves every step, for tests that drive the executor directly.
#[derive(Debug)]
pub struct ApproveAll;

impl cordon_core::executor::Approver for ApproveAll {
    async fn decide(
        &self,
        _plan: &cordon_core::plan::Plan,
        _step: &cordon_core::plan::PlannedStep,
    ) -> cordon_core::executor::Decision {
        cordon_core::executor::Decision::Approved {
            approver: "test".to_string(),
        }
    }
}

/// An approver that approves every step and, unlike [`ApproveAll`], every
/// gated undo (one that re-arms credentials or deletes evidence).
#[derive(Debug)]
pub struct ApproveUndo;

impl cordon_core::executor::Approver for ApproveUndo {
    async fn decide(
        &self,
        plan: &cordon_core::plan::Plan,
        step: &cordon_core::plan::PlannedStep,
    ) -> cordon_core::executor::Decision {
        ApproveAll.decide(plan, step).await
    }

    async fn decide_undo(
        &self,
        plan: &cordon_core::plan::Plan,
        step: &cordon_core::plan::PlannedStep,
        _gate: cordon_core::action::UndoGate,
    ) -> cordon_core::executor::Decision {
        ApproveAll.decide(plan, step).await
    }
}

/// The requests sent since `clients`' counter was last reset, per
/// `Service.Operation`, printed under `label` for the test's log; resets
/// the counter so the next part of the test counts from zero.
pub fn take_calls(clients: &AwsClients, label: &str) -> std::collections::BTreeMap<String, u64> {
    let calls = clients.calls.snapshot();
    eprintln!(
        "calls {label} ({} in all): {calls:?}",
        calls.values().sum::<u64>()
    );
    clients.calls.reset();
    calls
}

/// A playbook written inline as JSON (the same kebab-case keys as YAML).
/// Panics with serde's message if it does not parse: the test is wrong.
pub fn playbook(document: serde_json::Value) -> cordon_core::playbook::Playbook {
    serde_json::from_value(document).unwrap_or_else(|err| panic!("test playbook: {err}"))
}

/// The plan of `finding` (GuardDuty JSON, as text) under an inline
/// `playbook`, routed "because the test says so".
pub fn plan_for(finding: &str, playbook: serde_json::Value) -> cordon_core::plan::Plan {
    let finding = cordon_core::finding::parse_single_finding(finding, "test finding")
        .unwrap_or_else(|err| panic!("test finding: {err}"));
    let playbook = self::playbook(playbook);
    let reason = cordon_core::route::RouteReason {
        playbook: playbook.name.clone(),
        priority: playbook.priority,
        matched: vec!["test".to_string()],
    };
    cordon_core::plan::plan(&finding, &playbook, reason)
}

/// The plan of `finding` under a test playbook `name` made of `steps` (a
/// JSON array of steps, as in YAML), rolling back on failure.
pub fn plan_steps(finding: &str, name: &str, steps: serde_json::Value) -> cordon_core::plan::Plan {
    plan_for(
        finding,
        serde_json::json!({"name": name, "match": {}, "on-failure": "rollback", "steps": steps}),
    )
}

/// A GuardDuty S3 finding (the shape of `tests/fixtures/findings/s3-bucket.json`)
/// about `bucket`, in the emulator's account and region, as text.
pub fn s3_bucket_finding(bucket: &str) -> String {
    let path = repo_root().join("tests/fixtures/findings/s3-bucket.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let mut finding: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    finding["accountId"] = serde_json::json!("123456789012");
    finding["region"] = serde_json::json!("us-east-1");
    finding["resource"]["s3BucketDetails"] = serde_json::json!([{
        "arn": format!("arn:aws:s3:::{bucket}"), "name": bucket, "type": "Destination"}]);
    finding.to_string()
}

/// An AWS Config `Config Rules Compliance Change` event (EventBridge) in the
/// emulator's account and region: `resource_id` of `resource_type`
/// (`AWS::EC2::SecurityGroup`, …) became NON_COMPLIANT with `rule`. As text.
pub fn config_event(rule: &str, resource_type: &str, resource_id: &str) -> String {
    let qualifier = serde_json::json!({
        "configRuleName": rule, "resourceType": resource_type,
        "resourceId": resource_id, "evaluationMode": "DETECTIVE"});
    serde_json::json!({
        "version": "0",
        "id": format!("config-{rule}-{resource_id}"),
        "detail-type": "Config Rules Compliance Change",
        "source": "aws.config",
        "account": "123456789012",
        "time": "2026-11-27T10:00:00.000Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "resourceId": resource_id,
            "awsRegion": "us-east-1",
            "awsAccountId": "123456789012",
            "configRuleName": rule,
            "recordVersion": "1.0",
            "configRuleARN": "arn:aws:config:us-east-1:123456789012:config-rule/config-rule-0a1b2c",
            "messageType": "ComplianceChangeNotification",
            "newEvaluationResult": {
                "evaluationResultIdentifier": {
                    "evaluationResultQualifier": qualifier,
                    "orderingTimestamp": "2026-11-27T10:00:00.000Z"
                },
                "complianceType": "NON_COMPLIANT",
                "resultRecordedTime": "2026-11-27T10:00:00.000Z",
                "configRuleInvokedTime": "2026-11-27T10:00:00.000Z"
            },
            "oldEvaluationResult": {
                "evaluationResultIdentifier": {
                    "evaluationResultQualifier": qualifier,
                    "orderingTimestamp": "2026-11-20T10:00:00.000Z"
                },
                "complianceType": "COMPLIANT",
                "resultRecordedTime": "2026-11-20T10:00:00.000Z",
                "configRuleInvokedTime": "2026-11-20T10:00:00.000Z"
            },
            "notificationCreationTime": "2026-11-27T10:00:00.000Z",
            "resourceType": resource_type
        }
    })
    .to_string()
}

/// The group's ingress as `protocol from-to cidr description` lines, sorted:
/// what `revoke-open-ingress` changes, compared whole.
pub async fn ingress_rules(clients: &AwsClients, group_id: &str) -> Vec<String> {
    let out = clients
        .ec2
        .describe_security_groups()
        .group_ids(group_id)
        .send()
        .await
        .unwrap_or_else(|err| panic!("DescribeSecurityGroups {group_id}: {err:?}"));
    let mut rules = Vec::new();
    for group in out.security_groups() {
        for p in group.ip_permissions() {
            let head = format!(
                "{} {:?}-{:?}",
                p.ip_protocol().unwrap_or_default(),
                p.from_port(),
                p.to_port()
            );
            for r in p.ip_ranges() {
                rules.push(format!(
                    "{head} {} {:?}",
                    r.cidr_ip().unwrap_or_default(),
                    r.description()
                ));
            }
            for r in p.ipv6_ranges() {
                rules.push(format!(
                    "{head} {} {:?}",
                    r.cidr_ipv6().unwrap_or_default(),
                    r.description()
                ));
            }
            for g in p.user_id_group_pairs() {
                rules.push(format!(
                    "{head} {} {:?}",
                    g.group_id().unwrap_or_default(),
                    g.description()
                ));
            }
        }
    }
    rules.sort();
    rules
}

/// A group (`revoke-open-ingress`) with SSH open to the world (IPv4 with a description, and IPv6)
/// next to a private range on the same rule, HTTPS open to the world, and a
/// wide TCP range open to the world that covers RDP.
pub async fn open_security_group(clients: &AwsClients, name: &str) -> String {
    use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range};
    let vpc = clients
        .ec2
        .create_vpc()
        .cidr_block("10.50.0.0/16")
        .send()
        .await
        .unwrap_or_else(|err| panic!("CreateVpc: {err:?}"));
    let vpc_id = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .unwrap_or_else(|| panic!("CreateVpc returned no id"));
    let group = clients
        .ec2
        .create_security_group()
        .group_name(name)
        .description("bastion")
        .vpc_id(vpc_id)
        .send()
        .await
        .unwrap_or_else(|err| panic!("CreateSecurityGroup: {err:?}"));
    let group_id = group
        .group_id()
        .unwrap_or_else(|| panic!("CreateSecurityGroup returned no id"))
        .to_string();
    let tcp = |from: i32, to: i32| {
        IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(from)
            .to_port(to)
    };
    clients
        .ec2
        .authorize_security_group_ingress()
        .group_id(&group_id)
        .ip_permissions(
            tcp(22, 22)
                .ip_ranges(
                    IpRange::builder()
                        .cidr_ip("0.0.0.0/0")
                        .description("ssh from anywhere")
                        .build(),
                )
                .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/8").build())
                .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
                .build(),
        )
        .ip_permissions(
            tcp(443, 443)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .ip_permissions(
            tcp(3000, 3400)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|err| panic!("AuthorizeSecurityGroupIngress: {err:?}"));
    group_id
}

/// A snapshot (`make-snapshot-private`) that is public (group `all`) and
/// shared with account 111122223333. Returns its id.
pub async fn public_snapshot(clients: &AwsClients) -> String {
    shared_snapshot(clients, true, &["111122223333"]).await
}

/// A snapshot of a fresh 8 GiB volume, owned by the emulator's account,
/// public (group `all`) when `public` and shared with `accounts` by id.
/// Returns its id.
pub async fn shared_snapshot(clients: &AwsClients, public: bool, accounts: &[&str]) -> String {
    let volume = clients
        .ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(8)
        .send()
        .await
        .unwrap_or_else(|err| panic!("CreateVolume: {err:?}"));
    let snapshot = clients
        .ec2
        .create_snapshot()
        .set_volume_id(volume.volume_id().map(str::to_string))
        .send()
        .await
        .unwrap_or_else(|err| panic!("CreateSnapshot: {err:?}"));
    let snapshot_id = snapshot
        .snapshot_id()
        .unwrap_or_else(|| panic!("CreateSnapshot returned no id"))
        .to_string();
    share_snapshot(clients, &snapshot_id, public, accounts).await;
    snapshot_id
}

/// Adds group `all` (when `public`) and `accounts` to the snapshot's
/// `createVolumePermission`; nothing when there is nothing to add.
pub async fn share_snapshot(
    clients: &AwsClients,
    snapshot_id: &str,
    public: bool,
    accounts: &[&str],
) {
    use aws_sdk_ec2::types::{OperationType, SnapshotAttributeName};
    if !public && accounts.is_empty() {
        return;
    }
    let groups = public.then(|| vec!["all".to_string()]);
    clients
        .ec2
        .modify_snapshot_attribute()
        .snapshot_id(snapshot_id)
        .attribute(SnapshotAttributeName::CreateVolumePermission)
        .operation_type(OperationType::Add)
        .set_group_names(groups)
        .set_user_ids(Some(accounts.iter().map(|a| a.to_string()).collect()))
        .send()
        .await
        .unwrap_or_else(|err| panic!("share {snapshot_id}: {err:?}"));
}

/// A snapshot the emulator lists that another account owns (one of its
/// built-in AMIs' snapshots), made public: an account-wide sweep must leave
/// it alone. Returns its id.
pub async fn foreign_public_snapshot(clients: &AwsClients) -> String {
    let out = clients
        .ec2
        .describe_snapshots()
        .send()
        .await
        .unwrap_or_else(|err| panic!("DescribeSnapshots: {err:?}"));
    let snapshot_id = out
        .snapshots()
        .iter()
        .filter(|s| s.owner_id().is_some_and(|owner| owner != ACCOUNT_ID))
        .find_map(|s| s.snapshot_id())
        .unwrap_or_else(|| panic!("the emulator lists no snapshot of another account"))
        .to_string();
    share_snapshot(clients, &snapshot_id, true, &[]).await;
    snapshot_id
}

/// The snapshot's `createVolumePermission` as `group:…`/`user:…` entries, sorted.
pub async fn volume_permissions(clients: &AwsClients, snapshot_id: &str) -> Vec<String> {
    let out = clients
        .ec2
        .describe_snapshot_attribute()
        .snapshot_id(snapshot_id)
        .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
        .send()
        .await
        .unwrap_or_else(|err| panic!("DescribeSnapshotAttribute {snapshot_id}: {err:?}"));
    let mut entries: Vec<String> = out
        .create_volume_permissions()
        .iter()
        .map(|p| match (p.group(), p.user_id()) {
            (Some(g), _) => format!("group:{}", g.as_str()),
            (None, Some(u)) => format!("user:{u}"),
            (None, None) => "empty".to_string(),
        })
        .collect();
    entries.sort();
    entries
}

/// One instance (`app`, group `app`) in one subnet of a VPC of `cidr` (a
/// `/16`; its first `/24` is the subnet): the world of the instance
/// remediations and the memory capture.
pub fn one_instance_environment(cidr: &str) -> cordon_gameday::EnvironmentSpec {
    let subnet = cidr.replacen(".0.0/16", ".1.0/24", 1);
    serde_json::from_value(serde_json::json!({
        "vpcs": [{"name": "vpc", "cidr": cidr,
                  "subnets": [{"name": "subnet", "cidr": subnet}]}],
        "security-groups": [{"name": "app", "vpc": "vpc", "description": "app servers"}],
        "instances": [{"name": "app", "subnet": "subnet", "groups": ["app"],
                       "image-id": "ami-12345678"}]
    }))
    .unwrap_or_else(|err| panic!("environment spec: {err}"))
}

/// Sets all five metadata options of the instance (every one: the emulator
/// resets those a call leaves out): `tokens` (`optional`, `required`), the
/// hop limit, endpoint and IPv6 endpoint on and off, and tag access.
pub async fn set_metadata_options(
    clients: &AwsClients,
    instance_id: &str,
    tokens: &str,
    hop_limit: i32,
    tags: bool,
) {
    use aws_sdk_ec2::types::{
        HttpTokensState, InstanceMetadataEndpointState, InstanceMetadataProtocolState,
        InstanceMetadataTagsState,
    };
    let tags = if tags {
        InstanceMetadataTagsState::Enabled
    } else {
        InstanceMetadataTagsState::Disabled
    };
    clients
        .ec2
        .modify_instance_metadata_options()
        .instance_id(instance_id)
        .http_tokens(HttpTokensState::from(tokens))
        .http_put_response_hop_limit(hop_limit)
        .http_endpoint(InstanceMetadataEndpointState::Enabled)
        .http_protocol_ipv6(InstanceMetadataProtocolState::Disabled)
        .instance_metadata_tags(tags)
        .send()
        .await
        .unwrap_or_else(|err| panic!("set-up metadata options of {instance_id}: {err:?}"));
}

/// The instance's five metadata options (`enforce-imdsv2`), as a responder reads them.
pub async fn metadata_options(clients: &AwsClients, instance_id: &str) -> serde_json::Value {
    let out = clients
        .ec2
        .describe_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .unwrap_or_else(|err| panic!("DescribeInstances {instance_id}: {err:?}"));
    let instance = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .next()
        .unwrap_or_else(|| panic!("no instance {instance_id}"));
    let options = instance
        .metadata_options()
        .unwrap_or_else(|| panic!("{instance_id} has no metadata options"));
    serde_json::json!({
        "http-tokens": options.http_tokens().map(|v| v.as_str().to_string()),
        "hop-limit": options.http_put_response_hop_limit(),
        "http-endpoint": options.http_endpoint().map(|v| v.as_str().to_string()),
        "ipv6": options.http_protocol_ipv6().map(|v| v.as_str().to_string()),
        "tags": options.instance_metadata_tags().map(|v| v.as_str().to_string()),
    })
}

/// The bucket's own public access block (`block-bucket-public-access`) as
/// `[BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy, RestrictPublicBuckets]`,
/// `null` when it has none.
pub async fn public_access_block(clients: &AwsClients, bucket: &str) -> serde_json::Value {
    match clients
        .s3
        .get_public_access_block()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(out) => {
            let c = out
                .public_access_block_configuration()
                .unwrap_or_else(|| panic!("{bucket}: a block without configuration"));
            serde_json::json!([
                c.block_public_acls(),
                c.ignore_public_acls(),
                c.block_public_policy(),
                c.restrict_public_buckets()
            ])
        }
        Err(err) => {
            let code = err
                .as_service_error()
                .and_then(|e| aws_sdk_s3::error::ProvideErrorMetadata::code(e).map(str::to_string));
            assert_eq!(
                code.as_deref(),
                Some("NoSuchPublicAccessBlockConfiguration"),
                "GetPublicAccessBlock {bucket}: {err:?}"
            );
            serde_json::Value::Null
        }
    }
}

/// The playbooks cordon ships (`playbooks/`), validated.
pub fn shipped_playbooks() -> Vec<cordon_core::playbook::Playbook> {
    match cordon_core::validate::load_playbooks(&repo_root().join("playbooks")) {
        Ok(loaded) => loaded.into_iter().map(|l| l.playbook).collect(),
        Err(problems) => panic!("the shipped playbooks do not validate: {problems:#?}"),
    }
}

/// Tag, then isolate: the smallest playbook whose containment mutates, for
/// tests of what happens around a case (bursts, trust boundaries).
pub const CONTAIN_SMALL_PLAYBOOK: &str = r#"
name: contain-small
description: Tag and isolate (tests).
priority: 200
match:
  finding-types: ["*:EC2/*"]
  resource-types: [Instance]
on-failure: stop
steps:
  - id: tag
    action: tag-resource
    with:
      tags:
        cordon:case-id: "{case_id}"
  - id: isolate
    action: isolate-instance
"#;

/// A fresh, empty directory for one test's local state (journal, evidence),
/// named after the test binary's process and `name`.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cordon-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(err) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {err}", dir.display());
    }
    dir
}

/// Actions on `clients` keeping evidence in a fresh [`scratch_dir`], and
/// that directory.
pub fn local_actions(
    clients: &AwsClients,
    name: &str,
) -> (cordon_aws::actions::AwsActions, PathBuf) {
    let dir = scratch_dir(name);
    let actions = cordon_aws::actions::AwsActions::new(
        clients.clone(),
        cordon_aws::evidence::EvidenceStore::LocalDir(dir.clone()),
    );
    (actions, dir)
}

/// Creates an asymmetric KMS key (ECC_NIST_P256, SIGN_VERIFY) as a responder
/// does for `--evidence-signing-key`. Returns its ARN.
pub async fn create_signing_key(clients: &AwsClients) -> String {
    use aws_sdk_kms::types::{KeySpec, KeyUsageType};
    clients
        .kms
        .create_key()
        .key_usage(KeyUsageType::SignVerify)
        .key_spec(KeySpec::EccNistP256)
        .send()
        .await
        .unwrap_or_else(|err| panic!("CreateKey (signing): {err}"))
        .key_metadata()
        .and_then(|m| m.arn())
        .unwrap_or_else(|| panic!("CreateKey returned no key ARN"))
        .to_string()
}

/// Creates cordon's managed quarantine policy (`/cordon/CordonQuarantineDenyAll`,
/// the document `cordon policy --quarantine-policy` prints), as a responder
/// does once per account before `quarantine-user` can run. Returns its ARN.
pub async fn create_quarantine_policy(clients: &AwsClients) -> String {
    let document = serde_json::to_string(&cordon_core::policy::quarantine_policy())
        .unwrap_or_else(|err| panic!("quarantine policy: {err}"));
    let created = clients
        .iam
        .create_policy()
        .path(cordon_core::policy::CORDON_IAM_PATH)
        .policy_name(cordon_core::policy::QUARANTINE_POLICY_NAME)
        .policy_document(document)
        .send()
        .await
        .unwrap_or_else(|err| panic!("CreatePolicy (quarantine): {err:?}"));
    created
        .policy()
        .and_then(|policy| policy.arn())
        .unwrap_or_else(|| panic!("CreatePolicy returned no ARN"))
        .to_string()
}

/// The ARNs of the managed policies attached to IAM user `user`.
pub async fn attached_user_policies(clients: &AwsClients, user: &str) -> Vec<String> {
    let out = clients
        .iam
        .list_attached_user_policies()
        .user_name(user)
        .send()
        .await
        .unwrap_or_else(|err| panic!("ListAttachedUserPolicies {user}: {err:?}"));
    out.attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_owned))
        .collect()
}

/// An S3-journal world: `bucket` set up as the evidence bucket (which holds
/// the S3 journal), and the compromised web server of
/// [`cordon_gameday::EnvironmentSpec::compromised_instance`] with a
/// GuardDuty finding about `web-01` (bare, not an EventBridge event).
pub async fn s3_journal_world(
    aws: &EmulatorGuard,
    bucket: &str,
) -> (cordon_gameday::Fixture, String) {
    cordon_aws::evidence_bucket::init(
        aws.clients(),
        bucket,
        cordon_aws::evidence_bucket::DEFAULT_KMS_ALIAS,
        None,
    )
    .await
    .unwrap_or_else(|err| panic!("evidence bucket {bucket}: {err}"));
    let fixture = cordon_gameday::provision(
        aws.clients(),
        &cordon_gameday::EnvironmentSpec::compromised_instance(),
    )
    .await
    .unwrap_or_else(|err| panic!("provision: {err}"));
    let raw = fixture
        .instance_finding("web-01")
        .unwrap_or_else(|err| panic!("finding: {err}"))
        .to_json(false)
        .to_string();
    (fixture, raw)
}

/// Plants a group named `cordon-isolation` in `vpc_id` that is no isolation
/// group (SSH open to the world): isolation refuses to use it, so a run fails
/// at its isolation step after the steps before it changed things. Its id.
pub async fn plant_open_isolation_group(clients: &AwsClients, vpc_id: &str) -> String {
    let ec2 = &clients.ec2;
    let group = match ec2
        .create_security_group()
        .vpc_id(vpc_id)
        .group_name("cordon-isolation")
        .description("not an isolation group")
        .send()
        .await
    {
        Ok(out) => out.group_id().unwrap_or_default().to_string(),
        Err(err) => panic!("create the fake isolation group: {err:?}"),
    };
    if let Err(err) = ec2
        .authorize_security_group_ingress()
        .group_id(&group)
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .cidr_ip("0.0.0.0/0")
        .send()
        .await
    {
        panic!("open the fake isolation group: {err:?}");
    }
    group
}

/// A URL-encoded (form) text decoded: IAM returns policy documents that way.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("a %XX escape");
            out.push(u8::from_str_radix(hex, 16).expect("a %XX escape"));
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).expect("UTF-8")
}
