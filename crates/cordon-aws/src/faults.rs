//! Fault injection on cordon's one call path, for tests, benchmarks and Game
//! Days: AWS throttling, server errors, AccessDenied, timeouts and dropped
//! connections, on the Nth call of an operation, on every call, or at random
//! with a seed.
//!
//! A fault must look to cordon exactly like the real thing, so that what is
//! exercised is cordon's own handling (error classification in
//! [`crate::errors`], the SDK's retries, the per-attempt timeouts of
//! [`crate::client`], the reconciliation of calls sent once). So nothing here
//! raises an error of its own: the injector sits *under* the SDK, as the HTTP
//! client every attempt goes through, and answers the attempt the way AWS or
//! the network would.
//! - `throttling`, `server-error`, `access-denied`: an HTTP answer in the
//!   service's own protocol (EC2's `<Response><Errors>` with
//!   `RequestLimitExceeded` 503 / `UnauthorizedOperation` 403 /
//!   `InternalError` 500; the Query services' `<ErrorResponse>` with
//!   `Throttling` 400 / `AccessDenied` 403 / `ServiceUnavailable` 503; S3's
//!   `<Error>` with `SlowDown` 503 / `AccessDenied` 403 / `InternalError` 500;
//!   the JSON services' `__type` or `x-amzn-ErrorType` with
//!   `ThrottlingException` / `AccessDeniedException` / `ServiceUnavailable`).
//!   The SDK parses it like any answer, so the code, status and retry
//!   decision are the SDK's own.
//! - `connection-reset`: an I/O error (`ConnectionReset`) from the connector.
//! - `timeout`: the attempt never answers, so the per-attempt timeout fires.
//!
//! These five never reach AWS: AWS refuses a throttled or denied request
//! before acting on it, and a request lost on the way changed nothing. Two
//! more kinds model the other half of an unreliable network, the *lost
//! answer*: `timeout-after-send` and `connection-reset-after-send` send the
//! request (it takes effect) and then lose the answer, so cordon must find
//! out by reading what its call did (a snapshot, a security group or an
//! access key created by an attempt it never heard back from).
//!
//! Calls are counted per operation, at the injector, one per attempt on the
//! wire (an SDK retry is a new call: `nth: [1]` faults only the first
//! attempt), so "the Nth call of an operation" is well defined however the
//! calls of different operations interleave when steps run concurrently.
//! `random` draws from a hash of (seed, rule, operation, ordinal), never from
//! a shared stream, so the same seed gives the same faults whatever the
//! interleaving.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse, Metadata};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ops::{self, Op, Service};

/// One fault plan, as written in a Game Day scenario's `faults:` key and in
/// the JSON (or YAML) file given to `cordon --inject-faults FILE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FaultPlan {
    /// Seed for `random` rules (default 0); same seed + same calls = same faults.
    #[serde(default)]
    pub seed: u64,
    /// The rules, in order: a call takes the fault of the first rule that
    /// matches it (every call is counted, faulted or not).
    pub rules: Vec<FaultRule>,
}

/// Which calls get which fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FaultRule {
    /// What the call meets.
    pub kind: FaultKind,
    /// Operation as the call recorder names it, e.g.
    /// "ec2:ModifyNetworkInterfaceAttribute" (service prefix lower-case, as in
    /// IAM actions); absent = any operation.
    #[serde(default)]
    pub operation: Option<String>,
    /// Which of the operation's calls.
    pub when: FaultWhen,
}

/// What a faulted call meets. The first five never reach AWS; the
/// `…-after-send` kinds reach it, take effect, and lose the answer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// The service's throttling answer (EC2 `RequestLimitExceeded`, IAM/STS
    /// `Throttling`, S3 `SlowDown`, JSON services `ThrottlingException`).
    Throttling,
    /// An HTTP 500/503 answer (`InternalError`, `ServiceUnavailable`).
    ServerError,
    /// No answer: the attempt hangs until cordon's per-attempt timeout.
    Timeout,
    /// The connection drops before the request is sent (an I/O error).
    ConnectionReset,
    /// The service's AccessDenied (EC2 `UnauthorizedOperation`) answer.
    AccessDenied,
    /// A lost answer: AWS receives and carries out the request, then the
    /// answer never comes (the per-attempt timeout fires).
    TimeoutAfterSend,
    /// A lost answer: AWS receives and carries out the request, then the
    /// connection drops before the answer arrives.
    ConnectionResetAfterSend,
}

impl FaultKind {
    /// Every kind, in a stable order (for fault matrices).
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Throttling,
        FaultKind::ServerError,
        FaultKind::Timeout,
        FaultKind::ConnectionReset,
        FaultKind::AccessDenied,
        FaultKind::TimeoutAfterSend,
        FaultKind::ConnectionResetAfterSend,
    ];

    /// Whether a call with this fault reaches AWS (and may take effect).
    pub const fn reaches_aws(self) -> bool {
        matches!(
            self,
            FaultKind::TimeoutAfterSend | FaultKind::ConnectionResetAfterSend
        )
    }

    /// The kind as plans spell it (`connection-reset`).
    pub const fn name(self) -> &'static str {
        match self {
            FaultKind::Throttling => "throttling",
            FaultKind::ServerError => "server-error",
            FaultKind::Timeout => "timeout",
            FaultKind::ConnectionReset => "connection-reset",
            FaultKind::AccessDenied => "access-denied",
            FaultKind::TimeoutAfterSend => "timeout-after-send",
            FaultKind::ConnectionResetAfterSend => "connection-reset-after-send",
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which calls of the rule's operation are faulted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum FaultWhen {
    /// The Nth call (1-based) of `operation` in this process (per operation,
    /// so deterministic when steps run concurrently). `nth` may list several
    /// ordinals. YAML: `when: { nth: [2] }`.
    Nth(Vec<u32>),
    /// Every call. YAML: `when: every`.
    Every,
    /// Each call with this probability (0 to 1), drawn from the plan's seed,
    /// the operation and the ordinal. YAML: `when: { random: { probability: 0.2 } }`.
    Random {
        /// The chance of a fault per call.
        probability: f64,
    },
}

/// What was injected, in injection order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct InjectedFault {
    /// The operation, named as in the plan (`ec2:CreateSnapshot`).
    pub operation: String,
    /// Which call of the operation (1-based, retries counted).
    pub ordinal: u32,
    /// The fault.
    pub kind: FaultKind,
    /// Milliseconds since the injector was created.
    pub at_ms: u64,
}

/// Why a fault plan cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FaultPlanError {
    /// The text is neither JSON nor YAML.
    #[error("the fault plan is not valid JSON or YAML: {0}")]
    Syntax(String),
    /// The document does not have the fault-plan shape.
    #[error("the fault plan does not match its format: {0}; see docs/formats.md, \"Fault plans\"")]
    Format(String),
    /// A rule names an operation cordon never calls.
    #[error(
        "fault rule {rule}: cordon has no operation `{operation}`; name one as the call recorder does, \
         service prefix and API name, e.g. `ec2:ModifyNetworkInterfaceAttribute`"
    )]
    UnknownOperation {
        /// The rule's position (1-based).
        rule: usize,
        /// The name as written.
        operation: String,
    },
    /// A `random` rule whose probability is not between 0 and 1.
    #[error("fault rule {rule}: probability {probability} is not between 0 and 1")]
    Probability {
        /// The rule's position (1-based).
        rule: usize,
        /// The probability as written.
        probability: f64,
    },
    /// An `nth` rule with no ordinal, or ordinal 0 (ordinals start at 1).
    #[error(
        "fault rule {rule}: `nth` needs at least one ordinal, each 1 or more (the first call is 1)"
    )]
    Ordinal {
        /// The rule's position (1-based).
        rule: usize,
    },
    /// The fault log cannot be opened for appending.
    #[error("cannot open the fault log {}: {source}; check its directory exists and is writable", path.display())]
    Log {
        /// The log's path.
        path: PathBuf,
        /// Why it could not be opened.
        #[source]
        source: std::io::Error,
    },
}

impl FaultPlan {
    /// Reads a plan from JSON or YAML text (JSON is YAML, but JSON errors are
    /// clearer as JSON's, so a text starting with `{` is read as JSON).
    pub fn parse(text: &str) -> Result<FaultPlan, FaultPlanError> {
        let value = if text.trim_start().starts_with('{') {
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| FaultPlanError::Syntax(e.to_string()))?
        } else {
            cordon_core::yaml::parse(text)
                .map_err(|e| {
                    FaultPlanError::Syntax(format!(
                        "line {} column {}: {}",
                        e.location.line, e.location.column, e.message
                    ))
                })?
                .value
        };
        let plan: FaultPlan =
            serde_json::from_value(value).map_err(|e| FaultPlanError::Format(e.to_string()))?;
        plan.validate()?;
        Ok(plan)
    }

    /// Checks every rule: known operation names, ordinals from 1, probabilities in 0..=1.
    pub fn validate(&self) -> Result<(), FaultPlanError> {
        let known: BTreeSet<String> = ops::ALL.iter().map(|op| operation_name(op)).collect();
        for (index, rule) in self.rules.iter().enumerate() {
            let rule_no = index + 1;
            if let Some(operation) = &rule.operation
                && !known.contains(operation)
            {
                return Err(FaultPlanError::UnknownOperation {
                    rule: rule_no,
                    operation: operation.clone(),
                });
            }
            match &rule.when {
                FaultWhen::Nth(ordinals) if ordinals.is_empty() || ordinals.contains(&0) => {
                    return Err(FaultPlanError::Ordinal { rule: rule_no });
                }
                FaultWhen::Random { probability } if !(0.0..=1.0).contains(probability) => {
                    return Err(FaultPlanError::Probability {
                        rule: rule_no,
                        probability: *probability,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// An operation as fault plans (and the call recorder's sequence) name it:
/// the service's IAM prefix and the API name, `ec2:CreateSnapshot`. Two rows
/// of one API operation (S3 `GetObject` with and without a version) share it.
pub fn operation_name(op: &Op) -> String {
    format!("{}:{}", op.service.iam_prefix(), op.name)
}

/// Injects the faults of one [`FaultPlan`] into every client built with it
/// ([`crate::client::AwsClientsBuilder::faults`]). Clones share the counts
/// and the record of what was injected.
#[derive(Debug, Clone)]
pub struct FaultInjector {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    plan: FaultPlan,
    created: Instant,
    state: Mutex<State>,
    log: Arc<Mutex<Option<File>>>,
}

#[derive(Debug, Default)]
struct State {
    /// Calls seen per operation, faulted or not.
    ordinals: HashMap<String, u32>,
    injected: Vec<InjectedFault>,
}

/// The decision for one attempt, handed from the interceptor (which knows
/// the operation) to the connector (which can answer in AWS's place).
#[derive(Debug, Clone)]
struct Injection {
    service: Service,
    fault: InjectedFault,
}

impl FaultInjector {
    /// An injector for `plan`, after checking it ([`FaultPlan::validate`]).
    pub fn new(plan: FaultPlan) -> Result<Self, FaultPlanError> {
        plan.validate()?;
        Ok(FaultInjector {
            shared: Arc::new(Shared {
                plan,
                created: Instant::now(),
                state: Mutex::new(State::default()),
                log: Arc::new(Mutex::new(None)),
            }),
        })
    }

    /// Appends every fault injected from now on to `path`, one JSON line
    /// ([`InjectedFault`]) each, synced to disk before the fault takes
    /// effect, so a process killed mid-run keeps the record of what it met.
    pub fn log_to(&self, path: &Path) -> Result<(), FaultPlanError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| FaultPlanError::Log {
                path: path.to_owned(),
                source,
            })?;
        *self
            .shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(file);
        Ok(())
    }

    /// The plan being injected.
    pub fn plan(&self) -> &FaultPlan {
        &self.shared.plan
    }

    /// Every fault injected so far, in injection order.
    pub fn injected(&self) -> Vec<InjectedFault> {
        self.state().injected.clone()
    }

    /// Counts one call of `operation` and says which fault it meets, if any
    /// (recorded as injected).
    fn decide(&self, operation: &str) -> Option<InjectedFault> {
        let mut state = self.state();
        let ordinal = state.ordinals.entry(operation.to_owned()).or_insert(0);
        *ordinal = ordinal.saturating_add(1);
        let ordinal = *ordinal;
        let plan = &self.shared.plan;
        let kind = plan.rules.iter().enumerate().find_map(|(index, rule)| {
            let applies = rule.operation.as_deref().is_none_or(|o| o == operation)
                && match &rule.when {
                    FaultWhen::Nth(ordinals) => ordinals.contains(&ordinal),
                    FaultWhen::Every => true,
                    FaultWhen::Random { probability } => {
                        draw(plan.seed, index, operation, ordinal) < *probability
                    }
                };
            applies.then_some(rule.kind)
        })?;
        let fault = InjectedFault {
            operation: operation.to_owned(),
            ordinal,
            kind,
            at_ms: u64::try_from(self.shared.created.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        state.injected.push(fault.clone());
        Some(fault)
    }

    /// The HTTP client that answers faulted attempts in `inner`'s place.
    pub(crate) fn http_client(&self, inner: SharedHttpClient) -> SharedHttpClient {
        let injector = self.clone();
        crate::wrapped_http::wrapped(inner, move |inner| {
            SharedHttpConnector::new(FaultyConnector {
                inner,
                injector: injector.clone(),
            })
        })
    }

    async fn write_log(&self, fault: &InjectedFault) {
        let log = Arc::clone(&self.shared.log);
        let line = match serde_json::to_string(fault) {
            Ok(line) => line,
            Err(error) => {
                tracing::warn!(%error, "could not write an injected fault to the fault log");
                return;
            }
        };
        let written = tokio::task::spawn_blocking(move || {
            let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
            match log.as_mut() {
                Some(file) => {
                    writeln!(file, "{line}")?;
                    file.sync_data()
                }
                None => Ok(()),
            }
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not write an injected fault to the fault log")
            }
            Err(error) => {
                tracing::warn!(%error, "could not write an injected fault to the fault log")
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Each update is a counter bump and a push: never left half-done.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A number in [0, 1) from (seed, rule, operation, ordinal) alone: FNV-1a
/// over the operation's name, mixed with the rest by SplitMix64's finaliser.
/// Stable across platforms and Rust versions (no `DefaultHasher`).
fn draw(seed: u64, rule: usize, operation: &str, ordinal: u32) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in operation.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut x = seed
        ^ hash.rotate_left(17)
        ^ (rule as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ u64::from(ordinal).rotate_left(40);
    for _ in 0..2 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
    }
    // The top 53 bits, exactly representable: uniform in [0, 1).
    (x >> 11) as f64 / (1u64 << 53) as f64
}

impl Intercept for FaultInjector {
    fn name(&self) -> &'static str {
        "cordon.FaultInjector"
    }

    // Per attempt, after signing: every attempt on the wire is one call.
    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(metadata) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        let sdk_name: String = metadata
            .service()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        // Only cordon's services: their error shapes are known here.
        let Some(service) = Service::ALL.into_iter().find(|s| s.sdk_name() == sdk_name) else {
            return Ok(());
        };
        let operation = format!("{}:{}", service.iam_prefix(), metadata.name());
        if let Some(fault) = self.decide(&operation) {
            tracing::debug!(operation, ordinal = fault.ordinal, kind = %fault.kind, "injecting a fault");
            context
                .request_mut()
                .add_extension(Injection { service, fault });
        }
        Ok(())
    }
}

#[derive(Debug)]
struct FaultyConnector {
    inner: SharedHttpConnector,
    injector: FaultInjector,
}

impl HttpConnector for FaultyConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let Some(injection) = request.extension::<Injection>().cloned() else {
            return self.inner.call(request);
        };
        let inner = self.inner.clone();
        let injector = self.injector.clone();
        HttpConnectorFuture::new(async move {
            injector.write_log(&injection.fault).await;
            let kind = injection.fault.kind;
            match kind {
                FaultKind::Throttling | FaultKind::ServerError | FaultKind::AccessDenied => Ok(
                    error_answer(injection.service, kind, request.method() == "HEAD"),
                ),
                FaultKind::ConnectionReset => Err(reset()),
                FaultKind::Timeout => std::future::pending().await,
                FaultKind::TimeoutAfterSend | FaultKind::ConnectionResetAfterSend => {
                    // AWS gets the request and acts on it; only the answer is lost.
                    drop(inner.call(request).await);
                    if kind == FaultKind::TimeoutAfterSend {
                        std::future::pending().await
                    } else {
                        Err(reset())
                    }
                }
            }
        })
    }
}

fn reset() -> ConnectorError {
    ConnectorError::io(Box::new(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "connection reset by peer (injected fault)",
    )))
}

/// The wire protocols of cordon's services: each words its errors its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// EC2: `<Response><Errors><Error>`.
    Ec2Query,
    /// IAM, STS, Auto Scaling, ELBv2, SNS: `<ErrorResponse><Error>`.
    AwsQuery,
    /// S3: `<Error>`.
    RestXml,
    /// Secrets Manager, KMS, SSM, Step Functions: `{"__type": …}`.
    AwsJson,
    /// GuardDuty, Detective: `x-amzn-ErrorType` header.
    RestJson,
}

fn protocol(service: Service) -> Protocol {
    match service {
        Service::Ec2 => Protocol::Ec2Query,
        Service::Iam | Service::Sts | Service::AutoScaling | Service::Elbv2 | Service::Sns => {
            Protocol::AwsQuery
        }
        Service::S3 => Protocol::RestXml,
        Service::SecretsManager | Service::Kms | Service::Ssm | Service::StepFunctions => {
            Protocol::AwsJson
        }
        Service::GuardDuty | Service::Detective => Protocol::RestJson,
    }
}

/// Status, code and message AWS answers a `kind` fault with on `service`.
fn error_shape(service: Service, kind: FaultKind) -> (u16, &'static str, &'static str) {
    use FaultKind::{AccessDenied, Throttling};
    use Protocol::{AwsJson, AwsQuery, Ec2Query, RestJson, RestXml};
    match (protocol(service), kind) {
        (Ec2Query, Throttling) => (503, "RequestLimitExceeded", "Request limit exceeded."),
        (Ec2Query, AccessDenied) => (
            403,
            "UnauthorizedOperation",
            "You are not authorized to perform this operation.",
        ),
        (Ec2Query, _) => (
            500,
            "InternalError",
            "An internal error has occurred. Retry your request.",
        ),
        (AwsQuery, Throttling) if service == Service::Sns => (429, "Throttled", "Rate exceeded"),
        (AwsQuery, Throttling) => (400, "Throttling", "Rate exceeded"),
        (AwsQuery, AccessDenied) => (
            403,
            "AccessDenied",
            "User is not authorized to perform this action",
        ),
        (AwsQuery, _) => (
            503,
            "ServiceUnavailable",
            "Service is unable to handle request.",
        ),
        (RestXml, Throttling) => (503, "SlowDown", "Please reduce your request rate."),
        (RestXml, AccessDenied) => (403, "AccessDenied", "Access Denied"),
        (RestXml, _) => (
            500,
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
        (AwsJson, Throttling) => (400, "ThrottlingException", "Rate exceeded"),
        (AwsJson, AccessDenied) => (
            400,
            "AccessDeniedException",
            "User is not authorized to perform this action",
        ),
        (AwsJson, _) => (
            503,
            "ServiceUnavailable",
            "Service is unable to handle request.",
        ),
        (RestJson, Throttling) => (429, "TooManyRequestsException", "Rate exceeded"),
        (RestJson, AccessDenied) => (
            403,
            "AccessDeniedException",
            "User is not authorized to perform this action",
        ),
        (RestJson, _) => (500, "InternalServerErrorException", "Internal server error"),
    }
}

/// The HTTP answer AWS gives a `kind` fault on `service`, in its protocol.
/// A HEAD request's answer has no body, as S3's has not.
fn error_answer(service: Service, kind: FaultKind, head: bool) -> HttpResponse {
    const REQUEST_ID: &str = "cordon-injected-fault";
    let (status, code, message) = error_shape(service, kind);
    let message = format!("{message} (injected fault)");
    let (content_type, body) = match protocol(service) {
        Protocol::Ec2Query => (
            "text/xml;charset=UTF-8",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
                 <Message>{message}</Message></Error></Errors><RequestID>{REQUEST_ID}</RequestID></Response>"
            ),
        ),
        Protocol::AwsQuery => (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>{}</Type><Code>{code}</Code><Message>{message}</Message>\
                 </Error><RequestId>{REQUEST_ID}</RequestId></ErrorResponse>",
                if status >= 500 { "Receiver" } else { "Sender" }
            ),
        ),
        Protocol::RestXml => (
            "application/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>\
                 <RequestId>{REQUEST_ID}</RequestId><HostId>{REQUEST_ID}</HostId></Error>"
            ),
        ),
        Protocol::AwsJson => (
            "application/x-amz-json-1.1",
            serde_json::json!({"__type": code, "message": message}).to_string(),
        ),
        Protocol::RestJson => (
            "application/json",
            serde_json::json!({"message": message}).to_string(),
        ),
    };
    let body = if head {
        SdkBody::empty()
    } else {
        SdkBody::from(body)
    };
    // Every status in `error_shape` is between 400 and 503: a valid HTTP status.
    let status = StatusCode::try_from(status).expect("a valid HTTP status");
    let mut response = HttpResponse::new(status, body);
    let headers = response.headers_mut();
    headers.insert("content-type", content_type);
    headers.insert("x-amzn-requestid", REQUEST_ID);
    headers.insert("x-amz-request-id", REQUEST_ID);
    if protocol(service) == Protocol::RestJson {
        headers.insert("x-amzn-errortype", code);
    }
    response
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_config::Region;
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_smithy_runtime_api::client::http::http_client_fn;
    use cordon_core::executor::ErrorKind;

    use super::*;
    use crate::client::AwsClients;
    use crate::errors::CallError;
    use crate::ops::{
        EC2_CREATE_SECURITY_GROUP, EC2_DESCRIBE_INSTANCES, GUARDDUTY_LIST_DETECTORS,
        IAM_LIST_ACCESS_KEYS, S3_HEAD_BUCKET, S3_LIST_OBJECTS_V2, SECRETSMANAGER_DESCRIBE_SECRET,
    };

    fn plan(rules: Vec<FaultRule>) -> FaultPlan {
        FaultPlan { seed: 7, rules }
    }

    fn rule(kind: FaultKind, operation: Option<&str>, when: FaultWhen) -> FaultRule {
        FaultRule {
            kind,
            operation: operation.map(str::to_owned),
            when,
        }
    }

    fn kinds(injector: &FaultInjector, operation: &str, calls: usize) -> Vec<Option<FaultKind>> {
        (0..calls)
            .map(|_| injector.decide(operation).map(|fault| fault.kind))
            .collect()
    }

    #[test]
    fn reads_the_contract_spellings_in_yaml_and_json() {
        let yaml = "seed: 3\nrules:\n\
            - kind: throttling\n  operation: ec2:ModifyNetworkInterfaceAttribute\n  when: { nth: [2] }\n\
            - kind: server-error\n  when: every\n\
            - kind: connection-reset-after-send\n  operation: iam:CreateAccessKey\n  when: { random: { probability: 0.2 } }\n";
        let plan = FaultPlan::parse(yaml).expect("yaml plan");
        assert_eq!(
            plan,
            FaultPlan {
                seed: 3,
                rules: vec![
                    rule(
                        FaultKind::Throttling,
                        Some("ec2:ModifyNetworkInterfaceAttribute"),
                        FaultWhen::Nth(vec![2])
                    ),
                    rule(FaultKind::ServerError, None, FaultWhen::Every),
                    rule(
                        FaultKind::ConnectionResetAfterSend,
                        Some("iam:CreateAccessKey"),
                        FaultWhen::Random { probability: 0.2 }
                    ),
                ],
            }
        );
        let json = serde_json::to_string(&plan).expect("json");
        assert!(json.contains(r#""when":{"nth":[2]}"#), "{json}");
        assert!(json.contains(r#""when":"every""#), "{json}");
        assert_eq!(FaultPlan::parse(&json).expect("json plan"), plan);
        // The seed defaults to 0.
        let plain = FaultPlan::parse(r#"{"rules": [{"kind": "timeout", "when": "every"}]}"#)
            .expect("plain");
        assert_eq!(plain.seed, 0);
        let fault = InjectedFault {
            operation: "ec2:CreateSnapshot".into(),
            ordinal: 2,
            kind: FaultKind::TimeoutAfterSend,
            at_ms: 5,
        };
        assert_eq!(
            serde_json::to_value(&fault).expect("json"),
            serde_json::json!({"operation": "ec2:CreateSnapshot", "ordinal": 2,
                "kind": "timeout-after-send", "at-ms": 5})
        );
    }

    #[test]
    fn refuses_plans_that_cannot_mean_what_they_say() {
        let cases = [
            (
                r#"{"rules": [{"kind": "throttling", "operation": "ec2:ModifyNetworkInterface", "when": "every"}]}"#,
                "fault rule 1: cordon has no operation `ec2:ModifyNetworkInterface`",
            ),
            (
                r#"{"rules": [{"kind": "timeout", "when": "every"}, {"kind": "timeout", "when": {"nth": [0]}}]}"#,
                "fault rule 2: `nth` needs at least one ordinal",
            ),
            (
                r#"{"rules": [{"kind": "timeout", "when": {"nth": []}}]}"#,
                "fault rule 1: `nth` needs",
            ),
            (
                r#"{"rules": [{"kind": "timeout", "when": {"random": {"probability": 1.5}}}]}"#,
                "probability 1.5 is not between 0 and 1",
            ),
            (
                r#"{"rules": [{"kind": "timeout", "when": "every", "extra": 1}]}"#,
                "does not match its format: unknown field `extra`",
            ),
            (
                r#"{"rules": [{"kind": "meteor", "when": "every"}]}"#,
                "unknown variant `meteor`",
            ),
            ("rules: [", "not valid JSON or YAML: line"),
        ];
        for (text, expected) in cases {
            let err = FaultPlan::parse(text).expect_err(text).to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        // Names are the call recorder's: service prefix, API name.
        for op in ops::ALL {
            let name = operation_name(op);
            assert!(
                FaultPlan::parse(&format!(
                    r#"{{"rules": [{{"kind": "timeout", "operation": "{name}", "when": "every"}}]}}"#
                ))
                .is_ok(),
                "{name}"
            );
        }
        assert_eq!(
            operation_name(&EC2_CREATE_SECURITY_GROUP),
            "ec2:CreateSecurityGroup"
        );
    }

    #[test]
    fn ordinals_are_per_operation_and_the_first_matching_rule_wins() {
        let injector = FaultInjector::new(plan(vec![
            rule(
                FaultKind::Throttling,
                Some("ec2:CreateTags"),
                FaultWhen::Nth(vec![2, 4]),
            ),
            rule(FaultKind::AccessDenied, None, FaultWhen::Nth(vec![1])),
        ]))
        .expect("injector");
        use FaultKind::{AccessDenied, Throttling};
        // Calls of another operation in between change nothing.
        assert_eq!(
            injector.decide("ec2:CreateTags").map(|f| f.kind),
            Some(AccessDenied)
        );
        assert_eq!(
            kinds(&injector, "iam:ListAccessKeys", 2),
            [Some(AccessDenied), None]
        );
        assert_eq!(
            kinds(&injector, "ec2:CreateTags", 4),
            [Some(Throttling), None, Some(Throttling), None]
        );
        let injected = injector.clone().injected();
        let summary: Vec<(&str, u32, FaultKind)> = injected
            .iter()
            .map(|f| (f.operation.as_str(), f.ordinal, f.kind))
            .collect();
        assert_eq!(
            summary,
            [
                ("ec2:CreateTags", 1, AccessDenied),
                ("iam:ListAccessKeys", 1, AccessDenied),
                ("ec2:CreateTags", 2, Throttling),
                ("ec2:CreateTags", 4, Throttling),
            ]
        );
        let every = FaultInjector::new(plan(vec![rule(
            FaultKind::Timeout,
            Some("ec2:CreateTags"),
            FaultWhen::Every,
        )]))
        .expect("injector");
        assert_eq!(
            kinds(&every, "ec2:CreateTags", 3),
            [Some(FaultKind::Timeout); 3]
        );
        assert_eq!(kinds(&every, "ec2:DeleteTags", 2), [None, None]);
    }

    #[test]
    fn random_faults_depend_on_seed_operation_and_ordinal_not_on_interleaving() {
        let random = |seed| {
            let mut plan = plan(vec![rule(
                FaultKind::ServerError,
                None,
                FaultWhen::Random { probability: 0.3 },
            )]);
            plan.seed = seed;
            FaultInjector::new(plan).expect("injector")
        };
        let ops = [
            "ec2:CreateTags",
            "ec2:DescribeInstances",
            "iam:UpdateAccessKey",
        ];
        let faulted = |injector: &FaultInjector| -> BTreeSet<(String, u32)> {
            injector
                .injected()
                .into_iter()
                .map(|f| (f.operation, f.ordinal))
                .collect()
        };
        // One operation after another, then round-robin: the same faults.
        let (serial, interleaved) = (random(11), random(11));
        for op in ops {
            for _ in 0..200 {
                serial.decide(op);
            }
        }
        for _ in 0..200 {
            for op in ops.iter().rev() {
                interleaved.decide(op);
            }
        }
        assert_eq!(faulted(&serial), faulted(&interleaved));
        let share = faulted(&serial).len() as f64 / 600.0;
        assert!((0.25..0.35).contains(&share), "{share}");
        // Another seed, other faults.
        let other = random(12);
        for op in ops {
            for _ in 0..200 {
                other.decide(op);
            }
        }
        assert_ne!(faulted(&serial), faulted(&other));
        // 0 never, 1 always.
        assert!((0..1000).all(|ordinal| draw(5, 0, "ec2:CreateTags", ordinal) < 1.0));
        assert!((0..1000).all(|ordinal| draw(5, 0, "ec2:CreateTags", ordinal) >= 0.0));
    }

    /// A stand-in for the network: answers every request it gets with an
    /// empty `DescribeInstances` answer and counts them, so a test sees
    /// whether a fault reached AWS.
    #[derive(Debug, Clone, Default)]
    struct Wire(Arc<AtomicUsize>);

    impl HttpConnector for Wire {
        fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
            self.0.fetch_add(1, Ordering::SeqCst);
            HttpConnectorFuture::ready(Ok(HttpResponse::new(
                StatusCode::try_from(200).expect("200"),
                SdkBody::from(
                    "<DescribeInstancesResponse><requestId>1</requestId><reservationSet/>\
                     </DescribeInstancesResponse>",
                ),
            )))
        }
    }

    async fn clients_with(plan: FaultPlan) -> (AwsClients, FaultInjector, Wire) {
        let wire = Wire::default();
        let connector = SharedHttpConnector::new(wire.clone());
        let config = AwsClients::loader()
            .region(Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            )))
            .http_client(http_client_fn(move |_, _| connector.clone()))
            .load()
            .await;
        let injector = FaultInjector::new(plan).expect("injector");
        let clients = AwsClients::builder(&config)
            .faults(injector.clone())
            .build()
            .expect("clients");
        (clients, injector, wire)
    }

    fn every(kind: FaultKind) -> FaultPlan {
        plan(vec![rule(kind, None, FaultWhen::Every)])
    }

    /// One call of an operation per protocol, through the call path.
    async fn call(clients: &AwsClients, service: Service) -> CallError {
        let result = match service {
            Service::Ec2 => clients
                .call(
                    &EC2_DESCRIBE_INSTANCES,
                    "i-1",
                    clients.ec2.describe_instances(),
                )
                .await
                .map(drop),
            Service::Iam => clients
                .call(
                    &IAM_LIST_ACCESS_KEYS,
                    "alice",
                    clients.iam.list_access_keys(),
                )
                .await
                .map(drop),
            Service::S3 => clients
                .call(
                    &S3_LIST_OBJECTS_V2,
                    "s3://bucket",
                    clients.s3.list_objects_v2().bucket("bucket"),
                )
                .await
                .map(drop),
            Service::SecretsManager => clients
                .call(
                    &SECRETSMANAGER_DESCRIBE_SECRET,
                    "secret",
                    clients.secretsmanager.describe_secret().secret_id("secret"),
                )
                .await
                .map(drop),
            Service::GuardDuty => clients
                .call(
                    &GUARDDUTY_LIST_DETECTORS,
                    "detectors",
                    clients.guardduty.list_detectors(),
                )
                .await
                .map(drop),
            other => unreachable!("no call for {other:?}"),
        };
        result.expect_err("the fault fails the call")
    }

    const PROTOCOLS: [Service; 5] = [
        Service::Ec2,
        Service::Iam,
        Service::S3,
        Service::SecretsManager,
        Service::GuardDuty,
    ];

    #[tokio::test(start_paused = true)]
    async fn answers_look_like_aws_and_never_reach_it() {
        let expected = [
            (FaultKind::Throttling, ErrorKind::Throttled),
            (FaultKind::AccessDenied, ErrorKind::AccessDenied),
        ];
        for (kind, class) in expected {
            for service in PROTOCOLS {
                let (clients, injector, wire) = clients_with(every(kind)).await;
                let err = call(&clients, service).await;
                assert_eq!(err.kind, class, "{service:?} {kind}: {err}");
                let (_, code, _) = error_shape(service, kind);
                assert_eq!(err.code, code, "{service:?} {kind}");
                assert!(err.detail.contains("(injected fault)"), "{err}");
                assert_eq!(wire.0.load(Ordering::SeqCst), 0, "{service:?} {kind}");
                // Throttling is retried by the SDK, each retry a call; a denial is not.
                let attempts = injector.injected().len();
                let retried = kind == FaultKind::Throttling;
                assert_eq!(
                    attempts,
                    if retried {
                        crate::client::MAX_ATTEMPTS as usize
                    } else {
                        1
                    },
                    "{service:?} {kind}"
                );
                assert_eq!(
                    clients.calls.total(),
                    attempts as u64,
                    "the call counter sees every attempt"
                );
            }
        }
        for service in PROTOCOLS {
            let (clients, injector, wire) = clients_with(every(FaultKind::ServerError)).await;
            let err = call(&clients, service).await;
            let (status, code, _) = error_shape(service, FaultKind::ServerError);
            assert_eq!(
                (err.status, err.code.as_str()),
                (Some(status), code),
                "{service:?}"
            );
            assert!(status >= 500);
            assert_eq!(wire.0.load(Ordering::SeqCst), 0);
            // 5xx is transient: retried to the last attempt.
            assert_eq!(
                injector.injected().len(),
                crate::client::MAX_ATTEMPTS as usize
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_request_gets_a_bodiless_answer_classified_by_status() {
        let (clients, _, wire) = clients_with(every(FaultKind::AccessDenied)).await;
        let err = clients
            .call(
                &S3_HEAD_BUCKET,
                "s3://bucket",
                clients.s3.head_bucket().bucket("bucket"),
            )
            .await
            .expect_err("denied");
        assert_eq!((err.kind, err.status), (ErrorKind::AccessDenied, Some(403)));
        assert_eq!(wire.0.load(Ordering::SeqCst), 0);
    }

    /// How many attempts of a control-plane call that never answers start
    /// within the operation budget: each runs out its own budget (the
    /// back-offs between them are well under a second here).
    fn attempts_that_start_in_time() -> usize {
        use crate::client::{CONTROL_PLANE_ATTEMPT_TIMEOUT, MAX_ATTEMPTS, OPERATION_TIMEOUT};
        let mut started = 0;
        let mut spent = std::time::Duration::ZERO;
        while started < MAX_ATTEMPTS && spent < OPERATION_TIMEOUT {
            started += 1;
            spent += crate::attempts::attempt_budget(
                CONTROL_PLANE_ATTEMPT_TIMEOUT,
                started,
                Some(OPERATION_TIMEOUT),
            );
        }
        started as usize
    }

    #[tokio::test(start_paused = true)]
    async fn network_faults_are_timeouts_and_resets_before_or_after_sending() {
        let cases = [
            (FaultKind::Timeout, ErrorKind::Timeout, false),
            (FaultKind::ConnectionReset, ErrorKind::Other, false),
            (FaultKind::TimeoutAfterSend, ErrorKind::Timeout, true),
            (FaultKind::ConnectionResetAfterSend, ErrorKind::Other, true),
        ];
        for (kind, class, reaches) in cases {
            let (clients, injector, wire) = clients_with(every(kind)).await;
            let err = call(&clients, Service::Ec2).await;
            assert_eq!(err.kind, class, "{kind}: {err}");
            let attempts = injector.injected().len();
            // A reset is retried to the last attempt; an attempt that never
            // answers is retried while the operation budget lasts, each
            // retry with a longer attempt budget (crate::attempts).
            let expected = match kind {
                FaultKind::Timeout | FaultKind::TimeoutAfterSend => attempts_that_start_in_time(),
                _ => crate::client::MAX_ATTEMPTS as usize,
            };
            assert_eq!(attempts, expected, "{kind}: retried");
            assert_eq!(kind.reaches_aws(), reaches);
            assert_eq!(
                wire.0.load(Ordering::SeqCst),
                if reaches { attempts } else { 0 },
                "{kind}"
            );
        }
        // A call sent once is not retried: one attempt, reaching AWS or not.
        let (clients, injector, wire) = clients_with(every(FaultKind::TimeoutAfterSend)).await;
        let failed = clients
            .try_call(
                &EC2_CREATE_SECURITY_GROUP,
                "vpc-1",
                clients
                    .ec2
                    .create_security_group()
                    .group_name("g")
                    .description("d")
                    .vpc_id("vpc-1"),
            )
            .await
            .expect_err("timed out");
        assert!(failed.may_have_taken_effect());
        assert_eq!(
            (injector.injected().len(), wire.0.load(Ordering::SeqCst)),
            (1, 1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn nth_one_faults_only_the_first_attempt_and_the_retry_goes_through() {
        let (clients, injector, wire) = clients_with(plan(vec![rule(
            FaultKind::Throttling,
            Some("ec2:DescribeInstances"),
            FaultWhen::Nth(vec![1]),
        )]))
        .await;
        clients
            .call(
                &EC2_DESCRIBE_INSTANCES,
                "i-1",
                clients.ec2.describe_instances(),
            )
            .await
            .expect("the retry is answered");
        assert_eq!(wire.0.load(Ordering::SeqCst), 1);
        assert_eq!(injector.injected().len(), 1);
        assert_eq!(clients.calls.total(), 2);
        // Derived clients (another region) share the injector and its counts.
        let derived = clients.derive("eu-west-1", None).expect("derived");
        derived
            .call(
                &EC2_DESCRIBE_INSTANCES,
                "i-1",
                derived.ec2.describe_instances(),
            )
            .await
            .expect("the third call is not faulted");
        assert_eq!(wire.0.load(Ordering::SeqCst), 2);
        assert_eq!(injector.injected().len(), 1);
    }

    #[tokio::test]
    async fn the_log_holds_one_json_line_per_fault() {
        let dir = std::env::temp_dir().join(format!("cordon-fault-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("faults.jsonl");
        let (clients, injector, _) = clients_with(every(FaultKind::AccessDenied)).await;
        injector.log_to(&path).expect("log");
        call(&clients, Service::Ec2).await;
        call(&clients, Service::Iam).await;
        let lines: Vec<InjectedFault> = std::fs::read_to_string(&path)
            .expect("log")
            .lines()
            .map(|line| serde_json::from_str(line).expect("a fault per line"))
            .collect();
        assert_eq!(lines, injector.injected());
        assert_eq!(lines.len(), 2);
        std::fs::remove_dir_all(&dir).expect("clean up");
        let err = injector
            .log_to(&dir.join("missing").join("faults.jsonl"))
            .expect_err("no directory");
        assert!(
            err.to_string().contains("cannot open the fault log"),
            "{err}"
        );
    }
}
