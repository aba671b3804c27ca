//! Client-side token buckets sized to EC2's published throttling buckets.
//!
//! EC2 throttles per account and region with token buckets (see AWS-NOTES,
//! "Throttling"). A burst of findings handled by one process would otherwise
//! run into `RequestLimitExceeded` and lean on the SDK's retries; waiting here
//! first keeps the process under the budget, and retries stay a safety net for
//! what other callers in the account spend.
//!
//! Waiting uses `tokio::time::sleep`, never blocking the runtime. A caller
//! takes its token when it asks and then sleeps until the bucket has earned it
//! back ("debt" model): waiters are served in arrival order and no task spins.
//! A cancelled waiter forfeits its token, which errs on the safe side.
//!
//! The published sizes are the defaults; an account whose limits AWS raised
//! (or a test that wants a tight budget) resizes a bucket with
//! [`RateLimits::resize`] (`cordon run --rate-limit BUCKET=CAPACITY/REFILL`).
//! Every token taken, every wait and every throttled answer that still came
//! back ([`ThrottleCounter`]) is counted per bucket, for a burst's summary.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::AfterDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde::Serialize;
use tokio::time::Instant;

use crate::ops::{self, Service};

/// Which budget an API call draws on. Each operation's bucket is fixed in
/// its row of [`crate::ops`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bucket {
    /// EC2 `Describe*`/`Get*` with a filter or pagination: 100, +20/s.
    Ec2NonMutating,
    /// EC2 `Describe*` without filter or pagination: 50, +10/s.
    Ec2Unfiltered,
    /// Every other mutating EC2 call: 50, +5/s.
    Ec2Mutating,
    /// `Authorize`/`RevokeSecurityGroupIngress`: 50, +5/s.
    Ec2ResourceIntensive,
    /// EC2 `CreateTags`: 100, +10/s.
    Ec2CreateTags,
    /// An EC2 operation with its own bucket (`ModifyNetworkInterfaceAttribute`,
    /// `CreateSnapshot(s)`, `Associate/DisassociateIamInstanceProfile`): 100, +5/s.
    Ec2Operation(&'static str),
    /// Any other service, one generous bucket each, so a runaway loop is
    /// slowed without getting in the way of normal work: 1000, +100/s.
    Service(Service),
}

impl Bucket {
    /// Tokens when full: how many calls may go at once after a quiet spell.
    pub const fn capacity(&self) -> u32 {
        match self {
            Bucket::Ec2NonMutating | Bucket::Ec2CreateTags | Bucket::Ec2Operation(_) => 100,
            Bucket::Ec2Unfiltered | Bucket::Ec2Mutating | Bucket::Ec2ResourceIntensive => 50,
            Bucket::Service(_) => 1000,
        }
    }

    /// Tokens added per second: the sustained call rate.
    pub const fn refill_per_second(&self) -> u32 {
        match self {
            Bucket::Ec2NonMutating => 20,
            Bucket::Ec2Unfiltered | Bucket::Ec2CreateTags => 10,
            Bucket::Ec2Mutating | Bucket::Ec2ResourceIntensive | Bucket::Ec2Operation(_) => 5,
            Bucket::Service(_) => 100,
        }
    }

    /// The published size, before any [`RateLimits::resize`].
    pub const fn published(&self) -> BucketSize {
        BucketSize {
            capacity: self.capacity(),
            refill_per_second: self.refill_per_second() as f64,
        }
    }

    /// The bucket's name on the command line and in summaries:
    /// `ec2-non-mutating`, `ec2-unfiltered`, `ec2-mutating`,
    /// `ec2-resource-intensive`, `ec2-create-tags`, `ec2:OPERATION` for an
    /// operation with its own bucket, and the IAM prefix (`sns`, `s3`) of
    /// another service.
    pub fn name(&self) -> String {
        match self {
            Bucket::Ec2NonMutating => "ec2-non-mutating".to_string(),
            Bucket::Ec2Unfiltered => "ec2-unfiltered".to_string(),
            Bucket::Ec2Mutating => "ec2-mutating".to_string(),
            Bucket::Ec2ResourceIntensive => "ec2-resource-intensive".to_string(),
            Bucket::Ec2CreateTags => "ec2-create-tags".to_string(),
            Bucket::Ec2Operation(operation) => format!("ec2:{operation}"),
            Bucket::Service(service) => service.iam_prefix().to_string(),
        }
    }

    /// The bucket named `name` (see [`Bucket::name`]); `None` for a name no
    /// operation in [`crate::ops`] draws on.
    pub fn from_name(name: &str) -> Option<Bucket> {
        let fixed = [
            Bucket::Ec2NonMutating,
            Bucket::Ec2Unfiltered,
            Bucket::Ec2Mutating,
            Bucket::Ec2ResourceIntensive,
            Bucket::Ec2CreateTags,
        ];
        fixed
            .into_iter()
            .chain(Service::ALL.into_iter().map(Bucket::Service))
            .chain(ops::ALL.iter().map(|op| op.bucket))
            .find(|bucket| bucket.name() == name)
    }

    /// Every bucket name an operation draws on, for error messages.
    pub fn known_names() -> Vec<String> {
        let mut names: Vec<String> = [
            Bucket::Ec2NonMutating,
            Bucket::Ec2Unfiltered,
            Bucket::Ec2Mutating,
            Bucket::Ec2ResourceIntensive,
            Bucket::Ec2CreateTags,
        ]
        .into_iter()
        .chain(ops::ALL.iter().map(|op| op.bucket))
        .chain(Service::ALL.into_iter().map(Bucket::Service))
        .map(|bucket| bucket.name())
        .collect();
        names.dedup();
        let mut seen = std::collections::BTreeSet::new();
        names.retain(|name| seen.insert(name.clone()));
        names
    }
}

/// A token bucket's size: a burst of `capacity` calls, then
/// `refill_per_second` calls a second sustained.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct BucketSize {
    pub capacity: u32,
    pub refill_per_second: f64,
}

/// Why a `BUCKET=CAPACITY/REFILL` setting was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RateLimitSpecError {
    #[error(
        "rate limit `{spec}`: write it BUCKET=CAPACITY/REFILL, e.g. ec2:ModifyNetworkInterfaceAttribute=100/5"
    )]
    Shape { spec: String },
    #[error(
        "rate limit `{spec}`: no operation draws on bucket `{bucket}`; the buckets are: {known}"
    )]
    UnknownBucket {
        spec: String,
        bucket: String,
        known: String,
    },
    #[error(
        "rate limit `{spec}`: the capacity must be a whole number of calls from 1 to 100000 and the refill a number of calls per second above 0 and at most 100000"
    )]
    Size { spec: String },
}

/// Parses `BUCKET=CAPACITY/REFILL` (`ec2-mutating=50/5`,
/// `ec2:ModifyNetworkInterfaceAttribute=200/10`, `sns=1000/100`).
pub fn parse_bucket_size(spec: &str) -> Result<(Bucket, BucketSize), RateLimitSpecError> {
    let shape = || RateLimitSpecError::Shape {
        spec: spec.to_string(),
    };
    let (name, size) = spec.split_once('=').ok_or_else(shape)?;
    let (capacity, refill) = size.split_once('/').ok_or_else(shape)?;
    let bucket =
        Bucket::from_name(name.trim()).ok_or_else(|| RateLimitSpecError::UnknownBucket {
            spec: spec.to_string(),
            bucket: name.trim().to_string(),
            known: Bucket::known_names().join(", "),
        })?;
    let bad_size = || RateLimitSpecError::Size {
        spec: spec.to_string(),
    };
    let capacity: u32 = capacity.trim().parse().map_err(|_| bad_size())?;
    let refill: f64 = refill.trim().parse().map_err(|_| bad_size())?;
    let capacity_ok = (1..=100_000).contains(&capacity);
    let refill_ok = refill > 0.0 && refill <= 100_000.0;
    if !(capacity_ok && refill_ok) {
        return Err(bad_size());
    }
    Ok((
        bucket,
        BucketSize {
            capacity,
            refill_per_second: refill,
        },
    ))
}

/// What one bucket saw, summed over every account and region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct BucketStats {
    /// Tokens taken: calls let through, at once or after a wait.
    pub tokens: u64,
    /// Calls that had to wait for their token.
    pub waits: u64,
    /// Time spent waiting, all waiters together, in milliseconds.
    pub waited_ms: u64,
    /// Throttling answers AWS still sent (retried by the SDK with jittered
    /// back-off while attempts remain).
    pub throttled: u64,
}

/// Where a bucket applies: EC2's budgets are per account and region.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Scope {
    /// `None` when the caller does not know the account (one account per
    /// process is the common case).
    account: Option<String>,
    region: String,
}

#[derive(Debug)]
struct TokenBucket {
    capacity: f64,
    per_second: f64,
    /// Negative while callers are waiting on tokens not yet earned.
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    fn full(size: BucketSize, now: Instant) -> Self {
        let capacity = f64::from(size.capacity);
        TokenBucket {
            capacity,
            per_second: size.refill_per_second,
            tokens: capacity,
            updated: now,
        }
    }

    /// A new size; tokens already earned stay, up to the new capacity.
    fn resize(&mut self, size: BucketSize, now: Instant) {
        let earned = now.saturating_duration_since(self.updated).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + earned).min(self.capacity);
        self.updated = now;
        self.capacity = f64::from(size.capacity);
        self.per_second = size.refill_per_second;
        self.tokens = self.tokens.min(self.capacity);
    }

    /// Takes one token and says how long to wait until it has been earned.
    fn take(&mut self, now: Instant) -> Duration {
        let earned = now.saturating_duration_since(self.updated).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + earned).min(self.capacity);
        self.updated = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_second)
        }
    }
}

/// What every handle on the process's limits shares.
#[derive(Debug, Default)]
struct Shared {
    buckets: HashMap<(Scope, Bucket), TokenBucket>,
    /// Sizes other than the published ones.
    sizes: HashMap<Bucket, BucketSize>,
    stats: BTreeMap<Bucket, BucketStats>,
}

/// Token buckets shared by everything in the process, keyed by
/// (account, region, [`Bucket`]).
///
/// Clones, [`RateLimits::scoped`] and [`RateLimits::in_region`] handles share
/// the same buckets, sizes and counts: a burst of cases draws on one budget
/// per account and region however many client sets it builds.
#[derive(Debug, Clone)]
pub struct RateLimits {
    scope: Scope,
    shared: Arc<Mutex<Shared>>,
}

impl RateLimits {
    /// Limits for `region` in the process's (unnamed) account.
    pub fn new(region: impl Into<String>) -> Self {
        RateLimits {
            scope: Scope {
                account: None,
                region: region.into(),
            },
            shared: Arc::default(),
        }
    }

    /// A handle on the same buckets for another region of the same account.
    pub fn in_region(&self, region: impl Into<String>) -> Self {
        RateLimits {
            scope: Scope {
                account: self.scope.account.clone(),
                region: region.into(),
            },
            shared: Arc::clone(&self.shared),
        }
    }

    /// Sizes `bucket` (in every account and region) other than the published
    /// default, for buckets in use and those made later.
    pub fn resize(&self, bucket: Bucket, size: BucketSize) {
        let now = Instant::now();
        let mut shared = self.lock();
        shared.sizes.insert(bucket, size);
        for ((_, key), token_bucket) in shared.buckets.iter_mut() {
            if *key == bucket {
                token_bucket.resize(size, now);
            }
        }
    }

    /// The size `bucket` has in this process.
    pub fn size(&self, bucket: Bucket) -> BucketSize {
        self.lock()
            .sizes
            .get(&bucket)
            .copied()
            .unwrap_or_else(|| bucket.published())
    }

    /// What each bucket used so far saw, by bucket name.
    pub fn stats(&self) -> BTreeMap<String, BucketStats> {
        self.lock()
            .stats
            .iter()
            .map(|(bucket, stats)| (bucket.name(), *stats))
            .collect()
    }

    /// Counts a throttling answer from AWS on `bucket`.
    pub fn record_throttled(&self, bucket: Bucket) {
        self.lock().stats.entry(bucket).or_default().throttled += 1;
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // Buckets and counts are plain numbers updated in one statement
        // each; a panic elsewhere cannot leave them inconsistent.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A handle on the same buckets for another account and region, for a
    /// process working several accounts at once.
    pub fn scoped(&self, account: impl Into<String>, region: impl Into<String>) -> Self {
        RateLimits {
            scope: Scope {
                account: Some(account.into()),
                region: region.into(),
            },
            shared: Arc::clone(&self.shared),
        }
    }

    /// The region these limits apply to.
    pub fn region(&self) -> &str {
        &self.scope.region
    }

    /// The account these limits apply to, when known.
    pub fn account(&self) -> Option<&str> {
        self.scope.account.as_deref()
    }

    /// Waits for a token from `bucket`.
    pub async fn acquire(&self, bucket: Bucket) {
        let wait = {
            let now = Instant::now();
            let mut guard = self.lock();
            let shared = &mut *guard;
            let size = shared
                .sizes
                .get(&bucket)
                .copied()
                .unwrap_or_else(|| bucket.published());
            let wait = shared
                .buckets
                .entry((self.scope.clone(), bucket))
                .or_insert_with(|| TokenBucket::full(size, now))
                .take(now);
            let stats = shared.stats.entry(bucket).or_default();
            stats.tokens += 1;
            if !wait.is_zero() {
                stats.waits += 1;
                stats.waited_ms += wait.as_millis() as u64;
            }
            wait
        };
        if !wait.is_zero() {
            tracing::debug!(
                bucket = %bucket.name(),
                wait_ms = wait.as_millis() as u64,
                "waiting for an API rate-limit token"
            );
            // Only a wait a human would notice is worth a progress line.
            let key =
                (wait >= Duration::from_secs(1)).then(|| format!("rate limit {}", bucket.name()));
            if let Some(key) = &key {
                tracing::info!(
                    target: cordon_core::progress::TARGET,
                    key = %key,
                    "waiting {:.1}s for a {} token (the account's API budget)",
                    wait.as_secs_f64(),
                    bucket.name()
                );
            }
            tokio::time::sleep(wait).await;
            if let Some(key) = &key {
                tracing::info!(
                    target: cordon_core::progress::TARGET,
                    key = %key,
                    done = true,
                    "{} token taken",
                    bucket.name()
                );
            }
        }
    }
}

/// Error codes AWS throttles with, across protocols (the SDK's retry
/// classifier retries the same ones as throttling, with jittered back-off).
const THROTTLING_CODES: [&str; 13] = [
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "RequestThrottled",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "BandwidthLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Whether an error answer's body names a throttling code, as the Query and
/// REST-XML protocols (`<Code>RequestLimitExceeded</Code>`) and the JSON
/// ones (`"__type":"...#ThrottlingException"`, `"code":"..."`) carry it.
pub fn is_throttling_answer(status: u16, body: &[u8]) -> bool {
    if status < 400 {
        return false;
    }
    let text = String::from_utf8_lossy(body);
    THROTTLING_CODES.iter().any(|code| {
        text.contains(&format!(">{code}<"))
            || text.contains(&format!("\"{code}\""))
            || text.contains(&format!("#{code}\""))
    })
}

/// Counts throttling answers per bucket (see [`RateLimits::stats`]) and
/// logs each: throttling that slips past the limiter (other callers in the
/// account spend the same budgets) is retried by the SDK with jittered
/// back-off, and a burst's summary says how often that happened.
///
/// Added to every client as an interceptor; it sees every attempt, so a
/// call retried twice after throttling counts two.
#[derive(Debug, Clone)]
pub struct ThrottleCounter {
    limits: RateLimits,
}

impl ThrottleCounter {
    /// Counts into `limits`' shared statistics.
    pub fn new(limits: RateLimits) -> Self {
        Self { limits }
    }
}

/// The bucket of the operation `metadata` names, from the operations table;
/// an operation cordon does not call draws on its service's bucket.
fn bucket_of(metadata: Option<&Metadata>) -> Option<Bucket> {
    let metadata = metadata?;
    let service: String = metadata
        .service()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    ops::ALL
        .iter()
        .find(|op| op.service.sdk_name() == service && op.name == metadata.name())
        .map(|op| op.bucket)
        .or_else(|| {
            Service::ALL
                .into_iter()
                .find(|s| s.sdk_name() == service)
                .map(Bucket::Service)
        })
}

impl Intercept for ThrottleCounter {
    fn name(&self) -> &'static str {
        "cordon.ThrottleCounter"
    }

    // After deserialization: the first hook where a non-streaming answer's
    // body is buffered (see `crate::call::RawBodyCapture`).
    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response();
        let status = response.status().as_u16();
        let throttled = response
            .body()
            .bytes()
            .is_some_and(|body| is_throttling_answer(status, body));
        if throttled {
            let metadata = cfg.load::<Metadata>();
            let operation = metadata.map_or("unknown", |m| m.name());
            tracing::info!(
                target: cordon_core::progress::TARGET,
                key = %format!("throttling {operation}"),
                done = true,
                "AWS throttled {operation}: backing off and retrying (jittered)"
            );
            match bucket_of(metadata) {
                Some(bucket) => {
                    self.limits.record_throttled(bucket);
                    tracing::warn!(
                        operation,
                        bucket = %bucket.name(),
                        "AWS throttled a call; the SDK retries it with jittered back-off"
                    );
                }
                None => tracing::warn!(operation, "AWS throttled a call of an unknown service"),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{
        EC2_CREATE_SECURITY_GROUP, EC2_CREATE_SNAPSHOT, EC2_CREATE_TAGS,
        EC2_MODIFY_NETWORK_INTERFACE_ATTRIBUTE, S3_PUT_OBJECT, SNS_PUBLISH,
    };

    /// Within a microsecond: the clock is virtual, only float rounding differs.
    fn assert_near(actual: Duration, expected: Duration) {
        let diff = actual.abs_diff(expected);
        assert!(
            diff < Duration::from_micros(1),
            "{actual:?} != {expected:?}"
        );
    }

    #[test]
    fn bucket_sizes_are_the_published_ones() {
        let cases = [
            (Bucket::Ec2NonMutating, 100, 20),
            (Bucket::Ec2Unfiltered, 50, 10),
            (Bucket::Ec2Mutating, 50, 5),
            (Bucket::Ec2ResourceIntensive, 50, 5),
            (Bucket::Ec2CreateTags, 100, 10),
            (Bucket::Ec2Operation("CreateSnapshot"), 100, 5),
            (Bucket::Service(Service::Sns), 1000, 100),
        ];
        for (bucket, capacity, refill) in cases {
            assert_eq!(bucket.capacity(), capacity, "{bucket:?}");
            assert_eq!(bucket.refill_per_second(), refill, "{bucket:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn full_bucket_serves_capacity_at_once_then_refills_at_published_rate() {
        let limits = RateLimits::new("us-east-1");
        let start = Instant::now();
        // ModifyNetworkInterfaceAttribute: 100 tokens, +5/s.
        for _ in 0..100 {
            limits
                .acquire(EC2_MODIFY_NETWORK_INTERFACE_ATTRIBUTE.bucket)
                .await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        limits
            .acquire(EC2_MODIFY_NETWORK_INTERFACE_ATTRIBUTE.bucket)
            .await;
        assert_near(start.elapsed(), Duration::from_millis(200));
        for _ in 0..9 {
            limits
                .acquire(EC2_MODIFY_NETWORK_INTERFACE_ATTRIBUTE.bucket)
                .await;
        }
        assert_near(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_waiters_are_spaced_by_the_refill_rate() {
        let limits = RateLimits::new("us-east-1");
        let start = Instant::now();
        let tasks: Vec<_> = (0..60)
            .map(|_| {
                let limits = limits.clone();
                tokio::spawn(async move {
                    // Mutating bucket: 50 tokens, +5/s.
                    limits.acquire(EC2_CREATE_SECURITY_GROUP.bucket).await;
                    start.elapsed()
                })
            })
            .collect();
        let mut done = Vec::new();
        for task in tasks {
            done.push(task.await.expect("waiter task"));
        }
        done.sort();
        assert!(done[..50].iter().all(|elapsed| elapsed.is_zero()));
        for (extra, elapsed) in done[50..].iter().enumerate() {
            assert_near(*elapsed, Duration::from_millis(200) * (extra as u32 + 1));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn refill_stops_at_capacity() {
        let limits = RateLimits::new("us-east-1");
        for _ in 0..100 {
            limits.acquire(EC2_CREATE_TAGS.bucket).await;
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let start = Instant::now();
        for _ in 0..100 {
            limits.acquire(EC2_CREATE_TAGS.bucket).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        limits.acquire(EC2_CREATE_TAGS.bucket).await;
        assert_near(start.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_are_per_account_region_and_bucket() {
        let limits = RateLimits::new("us-east-1");
        let other_region = limits.scoped("123456789012", "eu-west-1");
        let start = Instant::now();
        for _ in 0..50 {
            limits.acquire(EC2_CREATE_SECURITY_GROUP.bucket).await;
            other_region.acquire(EC2_CREATE_SECURITY_GROUP.bucket).await;
            // Own buckets are not drawn down by the mutating bucket.
            limits.acquire(EC2_CREATE_SNAPSHOT.bucket).await;
            limits.acquire(S3_PUT_OBJECT.bucket).await;
            // SNS has its own bucket: notifying never spends EC2's budget.
            limits.acquire(SNS_PUBLISH.bucket).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        // A clone shares the bucket that is now empty.
        limits
            .clone()
            .acquire(EC2_CREATE_SECURITY_GROUP.bucket)
            .await;
        assert_near(start.elapsed(), Duration::from_millis(200));
    }

    /// A burst: many cases at once, each with its own handle on the
    /// process's limits (a clone, a region handle, as each case's clients
    /// get), all drawing on one bucket. The bucket, not the number of cases,
    /// sets the pace: capacity at once, then exactly the refill rate.
    #[tokio::test(start_paused = true)]
    async fn a_burst_of_cases_sharing_the_limits_is_held_to_one_bucket_s_rate() {
        let process = RateLimits::new("us-east-1");
        let mnia = EC2_MODIFY_NETWORK_INTERFACE_ATTRIBUTE.bucket;
        process.resize(
            mnia,
            BucketSize {
                capacity: 10,
                refill_per_second: 5.0,
            },
        );
        let start = Instant::now();
        let cases: Vec<_> = (0..20)
            .map(|case| {
                let limits = if case % 2 == 0 {
                    process.clone()
                } else {
                    process.in_region("us-east-1")
                };
                tokio::spawn(async move {
                    let mut done = Vec::new();
                    for _ in 0..10 {
                        limits.acquire(mnia).await;
                        done.push(start.elapsed());
                    }
                    done
                })
            })
            .collect();
        let mut times = Vec::new();
        for case in cases {
            times.extend(case.await.expect("case task"));
        }
        times.sort();
        // 200 calls: 10 at once, then one every 200 ms: the last at 38 s.
        assert_near(*times.last().expect("calls"), Duration::from_secs(38));
        for (n, at) in times.iter().enumerate() {
            let earned_by_then = 10.0 + at.as_secs_f64() * 5.0;
            assert!(
                (n as f64) < earned_by_then + 1e-6,
                "call {n} at {at:?} beat the bucket"
            );
        }
        let stats = process.stats()["ec2:ModifyNetworkInterfaceAttribute"];
        assert_eq!(stats.tokens, 200);
        assert_eq!(stats.waits, 190);
        assert_eq!(stats.throttled, 0);
        // From 2 s (the capacity spent) to 38 s someone is always waiting.
        assert!(stats.waited_ms >= 36_000, "waited {} ms", stats.waited_ms);
    }

    #[tokio::test(start_paused = true)]
    async fn a_region_handle_keeps_its_own_budget_and_a_resize_reaches_buckets_in_use() {
        let limits = RateLimits::new("us-east-1");
        let bucket = EC2_CREATE_SECURITY_GROUP.bucket;
        let west = limits.in_region("eu-west-1");
        for _ in 0..50 {
            limits.acquire(bucket).await;
            west.acquire(bucket).await;
        }
        let start = Instant::now();
        // Both empty now; a resize to 1/s slows the next call to a second.
        limits.resize(
            bucket,
            BucketSize {
                capacity: 5,
                refill_per_second: 1.0,
            },
        );
        limits.acquire(bucket).await;
        assert_near(start.elapsed(), Duration::from_secs(1));
        west.acquire(bucket).await;
        assert_near(start.elapsed(), Duration::from_secs(1));
        assert_eq!(limits.size(bucket).capacity, 5);
        assert_eq!(limits.stats()["ec2-mutating"].tokens, 102);
    }

    #[test]
    fn bucket_names_round_trip_and_sizes_parse() {
        for op in crate::ops::ALL {
            assert_eq!(
                Bucket::from_name(&op.bucket.name()),
                Some(op.bucket),
                "{op}"
            );
        }
        assert_eq!(
            parse_bucket_size("ec2:ModifyNetworkInterfaceAttribute=200/7.5"),
            Ok((
                EC2_MODIFY_NETWORK_INTERFACE_ATTRIBUTE.bucket,
                BucketSize {
                    capacity: 200,
                    refill_per_second: 7.5
                }
            ))
        );
        assert_eq!(
            parse_bucket_size(" sns = 10/1 ").map(|(b, _)| b),
            Ok(SNS_PUBLISH.bucket)
        );
        for bad in [
            "ec2-mutating",
            "ec2-mutating=5",
            "ec2-mutating=0/1",
            "ec2-mutating=5/0",
            "ec2-mutating=5/NaN",
            "ec2-mutating=5/inf",
        ] {
            assert!(parse_bucket_size(bad).is_err(), "{bad}");
        }
        let unknown = parse_bucket_size("ec2:DeleteEverything=1/1").unwrap_err();
        assert!(
            unknown.to_string().contains("ec2-non-mutating"),
            "{unknown}"
        );
    }

    #[test]
    fn throttling_answers_are_told_from_other_errors() {
        let ec2 = b"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors></Response>";
        assert!(is_throttling_answer(503, ec2));
        let json = br#"{"__type":"com.amazonaws.guardduty#TooManyRequestsException","message":"slow down"}"#;
        assert!(is_throttling_answer(429, json));
        let s3 = b"<Error><Code>SlowDown</Code></Error>";
        assert!(is_throttling_answer(503, s3));
        let denied = b"<Response><Errors><Error><Code>UnauthorizedOperation</Code></Error></Errors></Response>";
        assert!(!is_throttling_answer(403, denied));
        // A success that mentions the word is no throttling.
        assert!(!is_throttling_answer(200, ec2));
    }

    /// The counter on a real client: EC2 answers RequestLimitExceeded twice,
    /// the SDK retries, the call succeeds, and both answers are counted
    /// under the operation's bucket.
    #[tokio::test]
    async fn throttled_attempts_are_counted_per_bucket_and_retried() {
        use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
        use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
        use aws_smithy_runtime_api::http::StatusCode;
        use aws_smithy_types::body::SdkBody;
        let event = |status: u16, body: &str| {
            let mut request = HttpRequest::new(SdkBody::empty());
            request
                .set_uri("https://ec2.us-east-1.amazonaws.com/")
                .expect("uri");
            let mut response = HttpResponse::new(
                StatusCode::try_from(status).expect("status"),
                SdkBody::from(body.to_owned()),
            );
            response.headers_mut().insert("content-type", "text/xml");
            ReplayEvent::new(request, response)
        };
        let throttled = || {
            event(
                503,
                "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>r</RequestID></Response>",
            )
        };
        let ok = event(
            200,
            "<ModifyNetworkInterfaceAttributeResponse><requestId>r</requestId><return>true</return></ModifyNetworkInterfaceAttributeResponse>",
        );
        let http = StaticReplayClient::new(vec![throttled(), throttled(), ok]);
        let limits = RateLimits::new("us-east-1");
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ec2::config::Credentials::for_tests())
            .http_client(http.clone())
            .retry_config(
                aws_smithy_types::retry::RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(1)),
            )
            .interceptor(ThrottleCounter::new(limits.clone()))
            .build();
        let ec2 = aws_sdk_ec2::Client::from_conf(config);
        ec2.modify_network_interface_attribute()
            .network_interface_id("eni-0123456789abcdef0")
            .groups("sg-0123456789abcdef0")
            .send()
            .await
            .expect("succeeds on the third attempt");
        assert_eq!(http.actual_requests().count(), 3);
        let stats = limits.stats();
        assert_eq!(
            stats["ec2:ModifyNetworkInterfaceAttribute"].throttled, 2,
            "{stats:?}"
        );
    }
}
