//! One set of AWS clients per process, built the same way everywhere.
//!
//! Every front door (CLI, Lambda, Game Days, tests) builds its clients here so
//! that they all share the same endpoint override, retry and timeout policy,
//! call accounting ([`CallCounter`], [`CallRecorder`]) and rate limits
//! ([`RateLimits`]). Requests go out through the call path in [`crate::call`]
//! ([`AwsClients::call`]), never through the clients' own `send`.
//! Clients are cheap to clone (they share connection pools), so build one
//! [`AwsClients`] at start-up and pass clones down.

use aws_smithy_runtime_api::client::http::SharedHttpClient;

use crate::attempts::{GrowingAttempts, growing_attempts_client};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

use crate::faults::FaultInjector;
use crate::ops::{Op, OpClass};
use crate::ratelimit::RateLimits;
use crate::read_cache::ReadCache;
use crate::recorder::CallRecorder;

/// Attempts per operation, first try included: enough to ride out a burst of
/// throttling (`RequestLimitExceeded`) without hiding a dead endpoint for long.
pub const MAX_ATTEMPTS: u32 = 5;
/// First retry back-off; the SDK doubles it (with full jitter) per attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Ceiling for one back-off, so the worst case of all retries stays in seconds.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// TCP/TLS connect timeout: an unreachable endpoint fails fast.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Whole-operation budget (all attempts and back-offs) for API calls.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// One attempt of a control-plane call ([`OpClass::ControlPlane`]): AWS
/// answers those in tens to hundreds of milliseconds, so an attempt still
/// unanswered after this is stuck; it is abandoned and retried (or, for a
/// call sent once, reconciled by its caller) well inside [`OPERATION_TIMEOUT`],
/// instead of holding containment for the whole budget.
pub const CONTROL_PLANE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// S3 carries evidence objects that can be large, so it gets a longer budget.
pub const S3_OPERATION_TIMEOUT: Duration = Duration::from_secs(300);
/// One attempt of an object upload or download ([`OpClass::Transfer`]).
pub const TRANSFER_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why the clients could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Without a region the SDK cannot resolve any endpoint; say how to fix it.
    #[error("no AWS region configured: set AWS_REGION or AWS_DEFAULT_REGION")]
    NoRegion,
}

/// The AWS clients cordon talks through, built once per process.
///
/// Cloning is cheap and shares connection pools, the [`CallCounter`] and the
/// [`RateLimits`], so every case handled by the process draws on the same
/// budgets and is counted in the same place.
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// EC2: isolation, snapshots, tags, instance profiles.
    pub ec2: aws_sdk_ec2::Client,
    /// IAM: access keys, role sessions.
    pub iam: aws_sdk_iam::Client,
    /// S3: evidence and the journal store (path-style when an endpoint is set).
    pub s3: aws_sdk_s3::Client,
    /// STS: caller identity (account id) for rate-limit keys and evidence.
    pub sts: aws_sdk_sts::Client,
    /// Auto Scaling: detaching an instance before isolating it.
    pub autoscaling: aws_sdk_autoscaling::Client,
    /// ELBv2: deregistering an instance from target groups.
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    /// Secrets Manager: where a rotated key's secret goes (never the journal).
    pub secretsmanager: aws_sdk_secretsmanager::Client,
    /// KMS: the evidence bucket's key.
    pub kms: aws_sdk_kms::Client,
    /// SNS: the `notify` action.
    pub sns: aws_sdk_sns::Client,
    /// GuardDuty: finding intake.
    pub guardduty: aws_sdk_guardduty::Client,
    /// Detective: enrichment.
    pub detective: aws_sdk_detective::Client,
    /// SSM: the pause switch's parameter.
    pub ssm: aws_sdk_ssm::Client,
    /// Step Functions: the approver's SendTaskSuccess/SendTaskFailure.
    pub sfn: aws_sdk_sfn::Client,
    /// Every API call sent through any of the clients above (attempts on the wire).
    pub calls: CallCounter,
    /// Every call made through the call path, by the action that made it.
    pub recorder: CallRecorder,
    /// Token buckets shared by everything in this process.
    pub limits: RateLimits,
    /// Reads a later phase may reuse; every mutating call drops what it
    /// touches (see [`crate::read_cache`]).
    pub reads: ReadCache,
    /// The process's bound on requests in flight, shared by derived clients.
    pub in_flight: InFlight,
    /// Region the clients were built for.
    pub region: String,
    /// Endpoint override (`AWS_ENDPOINT_URL`), e.g. the local emulator.
    pub endpoint: Option<String>,
    /// The faults injected into every call, when a test or Game Day asked
    /// for them ([`AwsClientsBuilder::faults`]); derived clients share it.
    pub faults: Option<FaultInjector>,
    /// What the clients were built from, so [`AwsClients::derive`] can build
    /// the same clients for a finding's region and account.
    config: SdkConfig,
    /// Interceptors added through the builder (fault injection), kept for [`AwsClients::derive`].
    extra_interceptors: Vec<SharedInterceptor>,
}

impl AwsClients {
    /// A config loader with cordon's retry and timeout policy, so callers that
    /// need to add something (explicit credentials, a test endpoint) still get
    /// the same behaviour as [`AwsClients::from_env`].
    pub fn loader() -> ConfigLoader {
        aws_config::defaults(BehaviorVersion::latest())
            .retry_config(retry_config())
            .timeout_config(client_timeouts(OPERATION_TIMEOUT))
    }

    /// Builds the clients from the standard AWS environment (env vars, profile,
    /// instance/container role), honouring `AWS_ENDPOINT_URL`.
    pub async fn from_env() -> Result<Self, ClientError> {
        let config = Self::loader().load().await;
        Self::from_sdk_config(&config)
    }

    /// Builds the clients from an already loaded config.
    ///
    /// The config's retry and timeout settings are used as they are; build it
    /// with [`AwsClients::loader`] to get cordon's policy.
    pub fn from_sdk_config(config: &SdkConfig) -> Result<Self, ClientError> {
        Self::builder(config).build()
    }

    /// The same clients (endpoint, retries, timeouts, interceptors, call
    /// counter and recorder) in `region`, and with `credentials` when given:
    /// a finding is acted on in its own region, and one from another account
    /// through a role assumed there. Rate limits are per account and region,
    /// so the derived clients get their own unless region and account match.
    pub fn derive(
        &self,
        region: &str,
        credentials: Option<aws_credential_types::Credentials>,
    ) -> Result<AwsClients, ClientError> {
        let mut config = self
            .config
            .to_builder()
            .region(aws_config::Region::new(region.to_owned()));
        let same_identity = credentials.is_none();
        if let Some(credentials) = credentials {
            config = config.credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
            );
        }
        let mut builder = Self::builder(&config.build())
            .call_counter(self.calls.clone())
            .call_recorder(self.recorder.clone())
            .read_cache(self.reads.clone())
            .in_flight(self.in_flight.clone());
        if let Some(faults) = &self.faults {
            builder = builder.faults(faults.clone());
        }
        if same_identity && region == self.region {
            builder = builder.rate_limits(self.limits.clone());
        }
        for interceptor in &self.extra_interceptors {
            builder.interceptors.push(interceptor.clone());
        }
        builder.build()
    }

    /// Starts building clients that carry extra interceptors (fault
    /// injection for tests and Game Days) besides the call counter.
    pub fn builder(config: &SdkConfig) -> AwsClientsBuilder {
        AwsClientsBuilder {
            config: config.clone(),
            interceptors: Vec::new(),
            calls: None,
            recorder: None,
            limits: None,
            reads: None,
            in_flight: None,
            faults: None,
        }
    }
}

/// Builder for [`AwsClients`] when more than the defaults are needed.
#[derive(Debug)]
pub struct AwsClientsBuilder {
    config: SdkConfig,
    interceptors: Vec<SharedInterceptor>,
    calls: Option<CallCounter>,
    recorder: Option<CallRecorder>,
    limits: Option<RateLimits>,
    reads: Option<ReadCache>,
    in_flight: Option<InFlight>,
    faults: Option<FaultInjector>,
}

impl AwsClientsBuilder {
    /// Adds an interceptor to every client, after the call counter (so the
    /// counter sees attempts the interceptor later fails or alters).
    pub fn interceptor(mut self, interceptor: impl Intercept + 'static) -> Self {
        self.interceptors.push(SharedInterceptor::new(interceptor));
        self
    }

    /// Counts into an existing counter, e.g. to total calls across several
    /// client sets.
    pub fn call_counter(mut self, calls: CallCounter) -> Self {
        self.calls = Some(calls);
        self
    }

    /// Records into an existing recorder, e.g. to see the calls of several
    /// client sets together.
    pub fn call_recorder(mut self, recorder: CallRecorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Shares existing rate limits, e.g. between client sets for the same
    /// account and region.
    pub fn rate_limits(mut self, limits: RateLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Shares an existing read cache (its keys carry account and region).
    pub fn read_cache(mut self, reads: ReadCache) -> Self {
        self.reads = Some(reads);
        self
    }

    /// Shares (or sets) the bound on requests in flight.
    pub fn in_flight(mut self, in_flight: InFlight) -> Self {
        self.in_flight = Some(in_flight);
        self
    }

    /// Injects `injector`'s faults into every call of every client (see
    /// [`crate::faults`]): its interceptor counts each attempt per operation,
    /// and the HTTP client under the SDK answers the faulted ones the way AWS
    /// or the network would, so cordon's own retries, timeouts and
    /// reconciliation are what the faults exercise.
    pub fn faults(mut self, injector: FaultInjector) -> Self {
        self.faults = Some(injector);
        self
    }

    /// Builds every client with the same config and interceptors.
    pub fn build(self) -> Result<AwsClients, ClientError> {
        let config = &self.config;
        let region = config
            .region()
            .map(|region| region.as_ref().to_owned())
            .filter(|region| !region.is_empty())
            .ok_or(ClientError::NoRegion)?;
        let endpoint = config.endpoint_url().map(str::to_owned);
        let calls = self.calls.unwrap_or_default();
        let recorder = self.recorder.unwrap_or_default();
        let limits = self
            .limits
            .unwrap_or_else(|| RateLimits::new(region.clone()));
        let mut interceptors = vec![SharedInterceptor::new(calls.clone())];
        interceptors.extend(self.interceptors.iter().cloned());
        // Each retry of a call gets a longer attempt budget than the last
        // (crate::attempts): the HTTP client the config names, or the SDK's
        // default (the one each client would build for itself), wrapped.
        // Injected faults sit under it, so a faulted attempt that hangs is
        // cut by the same attempt budget as a real one.
        interceptors.push(SharedInterceptor::new(GrowingAttempts));
        let base = config.http_client().unwrap_or_else(default_http_client);
        let base = match &self.faults {
            Some(faults) => {
                interceptors.push(SharedInterceptor::new(faults.clone()));
                faults.http_client(base)
            }
            None => base,
        };
        let http_client = growing_attempts_client(base);

        // Each SDK crate has its own config type with the same builder methods.
        macro_rules! client {
            ($sdk:ident) => {{
                let mut builder = $sdk::config::Builder::from(config);
                for interceptor in &interceptors {
                    builder.push_interceptor(interceptor.clone());
                }
                builder.set_http_client(Some(http_client.clone()));
                $sdk::Client::from_conf(builder.build())
            }};
        }

        let s3 = {
            let mut builder = aws_sdk_s3::config::Builder::from(config)
                // Emulators (and most S3-compatible endpoints) serve buckets
                // under the path, not as virtual-host subdomains.
                .force_path_style(endpoint.is_some())
                .timeout_config(client_timeouts(S3_OPERATION_TIMEOUT));
            for interceptor in &interceptors {
                builder.push_interceptor(interceptor.clone());
            }
            builder.set_http_client(Some(http_client.clone()));
            aws_sdk_s3::Client::from_conf(builder.build())
        };

        Ok(AwsClients {
            ec2: client!(aws_sdk_ec2),
            iam: client!(aws_sdk_iam),
            s3,
            sts: client!(aws_sdk_sts),
            autoscaling: client!(aws_sdk_autoscaling),
            elbv2: client!(aws_sdk_elasticloadbalancingv2),
            secretsmanager: client!(aws_sdk_secretsmanager),
            kms: client!(aws_sdk_kms),
            sns: client!(aws_sdk_sns),
            guardduty: client!(aws_sdk_guardduty),
            detective: client!(aws_sdk_detective),
            ssm: client!(aws_sdk_ssm),
            sfn: client!(aws_sdk_sfn),
            calls,
            recorder,
            limits,
            reads: self.reads.unwrap_or_default(),
            in_flight: self.in_flight.unwrap_or_default(),
            region,
            endpoint,
            faults: self.faults,
            config: self.config,
            extra_interceptors: self.interceptors,
        })
    }
}

/// Requests one process keeps in flight at most, over every client set.
/// Past it a call waits *before* its attempt's clock starts, so the
/// per-attempt timeouts ([`CONTROL_PLANE_ATTEMPT_TIMEOUT`]) measure the
/// service and never cordon's own queue: a burst of many cases, each running
/// several steps at once, would otherwise put hundreds of requests on the
/// wire together, and the last of them would time out waiting behind the
/// first. AWS answers a control-plane call in tens of milliseconds, so 48 in
/// flight already carries far more calls per second than the throttling
/// buckets allow.
pub const MAX_IN_FLIGHT: usize = 48;

/// The bound on requests in flight ([`MAX_IN_FLIGHT`] by default); clones share it.
#[derive(Debug, Clone)]
pub struct InFlight(Arc<tokio::sync::Semaphore>);

impl Default for InFlight {
    fn default() -> Self {
        Self::new(MAX_IN_FLIGHT)
    }
}

impl InFlight {
    /// A bound of `slots` requests (at least one).
    pub fn new(slots: usize) -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(slots.max(1))))
    }

    /// Waits for a slot, held until the returned permit is dropped.
    pub async fn enter(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        // The semaphore is never closed, so this only fails if it were.
        Arc::clone(&self.0).acquire_owned().await.ok()
    }
}

/// The HTTP client the SDK builds by default (rustls with aws-lc), built
/// here so that cordon's wrappers (attempt budgets, injected faults) can hold it.
fn default_http_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build_https()
}

fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_max_backoff(MAX_BACKOFF)
}

/// The clients' own budgets, for requests sent outside the call path (the
/// fixture builder's, a test's): the whole operation only. The per-attempt
/// budget is the call path's ([`call_overrides`]), set per operation class
/// where the operation is known; a creation sent straight through the SDK
/// (`CreateVpc` on a cold emulator) must not be abandoned and re-sent.
fn client_timeouts(operation: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_timeout(operation)
        .build()
}

/// The budgets of one class of call: the whole operation, and each attempt in it.
pub fn timeout_config(class: OpClass) -> TimeoutConfig {
    let (operation, attempt) = match class {
        OpClass::ControlPlane => (OPERATION_TIMEOUT, CONTROL_PLANE_ATTEMPT_TIMEOUT),
        OpClass::Transfer => (S3_OPERATION_TIMEOUT, TRANSFER_ATTEMPT_TIMEOUT),
    };
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_timeout(operation)
        .operation_attempt_timeout(attempt)
        .build()
}

/// What one call overrides in its client's config: its class's time budgets,
/// and no SDK retry for an operation sent once ([`Op::send_once`]).
pub fn call_overrides(op: &Op) -> (TimeoutConfig, Option<RetryConfig>) {
    (
        timeout_config(op.class),
        op.send_once.then(RetryConfig::disabled),
    )
}

/// Whether an operation only reads: `Describe*`, `Get*`, `List*`, `Head*`,
/// IAM's `Simulate*` (it evaluates policies without changing them), and KMS
/// `Sign`/`Verify`.
///
/// Tests assert on mutating calls (a dry run or a no-op re-run must make none),
/// and EC2's non-mutating throttling bucket covers the same operations.
pub fn is_read_only(operation: &str) -> bool {
    // KMS Sign and Verify compute a signature and change no state.
    ["Describe", "Get", "List", "Head", "Simulate"]
        .iter()
        .any(|prefix| operation.starts_with(prefix))
        || matches!(operation, "Sign" | "Verify")
}

/// Counts the API calls the clients make, per `Service.Operation`
/// (e.g. `EC2.ModifyNetworkInterfaceAttribute`), so tests and benchmarks can
/// assert on exactly what reached AWS.
///
/// Attempts (every request put on the wire, retries included) and operations
/// (every SDK call, however many attempts it took) are counted separately.
/// Clones share the same counts.
#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    counts: Arc<Mutex<BTreeMap<String, Counts>>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    attempts: u64,
    operations: u64,
}

impl CallCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attempts sent per `Service.Operation`, retries included.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.collect(|counts| counts.attempts)
    }

    /// SDK operations started per `Service.Operation`, one per call however
    /// many attempts it needed.
    pub fn operations(&self) -> BTreeMap<String, u64> {
        self.collect(|counts| counts.operations)
    }

    /// All attempts sent.
    pub fn total(&self) -> u64 {
        self.lock().values().map(|counts| counts.attempts).sum()
    }

    /// All operations started.
    pub fn operations_total(&self) -> u64 {
        self.lock().values().map(|counts| counts.operations).sum()
    }

    /// Attempts of operations that may change something (see [`is_read_only`]).
    pub fn mutating_total(&self) -> u64 {
        self.lock()
            .iter()
            .filter(|(key, _)| !is_read_only(operation_of(key)))
            .map(|(_, counts)| counts.attempts)
            .sum()
    }

    /// Back to zero, e.g. between the set-up and the part of a test under scrutiny.
    pub fn reset(&self) {
        self.lock().clear();
    }

    fn collect(&self, field: impl Fn(&Counts) -> u64) -> BTreeMap<String, u64> {
        self.lock()
            .iter()
            .map(|(key, counts)| (key.clone(), field(counts)))
            .filter(|(_, count)| *count > 0)
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Counts>> {
        // The map holds plain counters that are never left half-updated, so
        // a panic elsewhere while holding the lock cannot corrupt it.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, cfg: &ConfigBag, bump: impl FnOnce(&mut Counts)) {
        let key = operation_key(cfg.load::<Metadata>());
        bump(self.lock().entry(key).or_default());
    }
}

/// `Service.Operation`, with the SDK's service name made a single word
/// (`Auto Scaling` becomes `AutoScaling`).
fn operation_key(metadata: Option<&Metadata>) -> String {
    match metadata {
        Some(metadata) => {
            let service: String = metadata
                .service()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            format!("{service}.{}", metadata.name())
        }
        None => "Unknown.Unknown".to_owned(),
    }
}

fn operation_of(key: &str) -> &str {
    key.split_once('.').map_or(key, |(_, operation)| operation)
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "cordon.CallCounter"
    }

    // Not `read_before_execution`: client interceptors run that hook before
    // the operation's config (holding its `Metadata`) is in the bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.record(cfg, |counts| counts.operations += 1);
        Ok(())
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.record(cfg, |counts| counts.attempts += 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::Region;
    use aws_credential_types::Credentials;

    fn config(region: Option<&'static str>, endpoint: Option<&str>) -> SdkConfig {
        let mut builder = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                    "AKIDTEST", "secret", None, None, "test",
                )),
            );
        if let Some(region) = region {
            builder = builder.region(Region::new(region));
        }
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        builder.build()
    }

    #[test]
    fn missing_region_is_one_clear_error() {
        let err = AwsClients::from_sdk_config(&config(None, None)).expect_err("no region");
        assert_eq!(
            err.to_string(),
            "no AWS region configured: set AWS_REGION or AWS_DEFAULT_REGION"
        );
    }

    #[test]
    fn records_region_and_endpoint() {
        let clients =
            AwsClients::from_sdk_config(&config(Some("eu-west-1"), Some("http://127.0.0.1:1")))
                .expect("clients");
        assert_eq!(clients.region, "eu-west-1");
        assert_eq!(clients.endpoint.as_deref(), Some("http://127.0.0.1:1"));
        let plain = AwsClients::from_sdk_config(&config(Some("eu-west-1"), None)).expect("clients");
        assert_eq!(plain.endpoint, None);
    }

    #[test]
    fn classifies_reads() {
        for read in ["DescribeInstances", "GetObject", "ListUsers", "HeadObject"] {
            assert!(is_read_only(read), "{read}");
        }
        for write in ["ModifyNetworkInterfaceAttribute", "CreateTags", "PutObject"] {
            assert!(!is_read_only(write), "{write}");
        }
    }

    #[test]
    fn counter_keys_and_totals() {
        let calls = CallCounter::new();
        let mut cfg = ConfigBag::base();
        let mut layer = aws_smithy_types::config_bag::Layer::new("test");
        layer.store_put(Metadata::new(
            "DescribeLoadBalancerTargetGroups",
            "Auto Scaling",
        ));
        cfg.push_layer(layer);
        calls.record(&cfg, |c| c.operations += 1);
        calls.record(&cfg, |c| c.attempts += 1);
        calls.record(&cfg, |c| c.attempts += 1);
        let mut layer = aws_smithy_types::config_bag::Layer::new("test2");
        layer.store_put(Metadata::new("CreateTags", "EC2"));
        cfg.push_layer(layer);
        calls.record(&cfg, |c| c.attempts += 1);
        assert_eq!(
            calls.snapshot(),
            BTreeMap::from([
                ("AutoScaling.DescribeLoadBalancerTargetGroups".to_owned(), 2),
                ("EC2.CreateTags".to_owned(), 1),
            ])
        );
        assert_eq!(calls.total(), 3);
        assert_eq!(calls.operations_total(), 1);
        assert_eq!(calls.mutating_total(), 1);
        let clone = calls.clone();
        clone.reset();
        assert_eq!(calls.total(), 0);
    }
}
