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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::client::is_read_only;

/// EC2 operations with a bucket of their own: 100 tokens, refilled 5 per second.
const OWN_BUCKET_OPERATIONS: [&str; 5] = [
    "ModifyNetworkInterfaceAttribute",
    "CreateSnapshot",
    "CreateSnapshots",
    "AssociateIamInstanceProfile",
    "DisassociateIamInstanceProfile",
];

/// EC2 operations in the resource-intensive bucket.
const RESOURCE_INTENSIVE_OPERATIONS: [&str; 2] = [
    "AuthorizeSecurityGroupIngress",
    "RevokeSecurityGroupIngress",
];

/// Which budget an API call draws on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    Service(String),
}

impl Bucket {
    /// The bucket an operation draws on.
    ///
    /// `operation` is either a bare EC2 operation name (`CreateTags`) or
    /// `Service.Operation` as [`crate::client::CallCounter`] keys them
    /// (`EC2.CreateTags`, `S3.PutObject`).
    pub fn for_operation(operation: &str) -> Bucket {
        match split_service(operation) {
            (Some(service), _) if !service.eq_ignore_ascii_case("EC2") => {
                Bucket::Service(service.to_owned())
            }
            (_, name) => ec2_bucket(name),
        }
    }

    /// The bucket for an EC2 `Describe*` call made without a filter or
    /// pagination; anything else maps as in [`Bucket::for_operation`].
    pub fn for_unfiltered(operation: &str) -> Bucket {
        match Bucket::for_operation(operation) {
            Bucket::Ec2NonMutating if split_service(operation).1.starts_with("Describe") => {
                Bucket::Ec2Unfiltered
            }
            bucket => bucket,
        }
    }

    /// Tokens when full: how many calls may go at once after a quiet spell.
    pub fn capacity(&self) -> u32 {
        match self {
            Bucket::Ec2NonMutating | Bucket::Ec2CreateTags | Bucket::Ec2Operation(_) => 100,
            Bucket::Ec2Unfiltered | Bucket::Ec2Mutating | Bucket::Ec2ResourceIntensive => 50,
            Bucket::Service(_) => 1000,
        }
    }

    /// Tokens added per second: the sustained call rate.
    pub fn refill_per_second(&self) -> u32 {
        match self {
            Bucket::Ec2NonMutating => 20,
            Bucket::Ec2Unfiltered | Bucket::Ec2CreateTags => 10,
            Bucket::Ec2Mutating | Bucket::Ec2ResourceIntensive | Bucket::Ec2Operation(_) => 5,
            Bucket::Service(_) => 100,
        }
    }
}

fn split_service(operation: &str) -> (Option<&str>, &str) {
    match operation.split_once('.') {
        Some((service, name)) => (Some(service), name),
        None => (None, operation),
    }
}

fn ec2_bucket(name: &str) -> Bucket {
    if let Some(own) = OWN_BUCKET_OPERATIONS.iter().find(|own| **own == name) {
        Bucket::Ec2Operation(own)
    } else if name == "CreateTags" {
        Bucket::Ec2CreateTags
    } else if RESOURCE_INTENSIVE_OPERATIONS.contains(&name) {
        Bucket::Ec2ResourceIntensive
    } else if is_read_only(name) {
        Bucket::Ec2NonMutating
    } else {
        Bucket::Ec2Mutating
    }
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
    fn full(bucket: &Bucket, now: Instant) -> Self {
        let capacity = f64::from(bucket.capacity());
        TokenBucket {
            capacity,
            per_second: f64::from(bucket.refill_per_second()),
            tokens: capacity,
            updated: now,
        }
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

/// Token buckets shared by everything in the process, keyed by
/// (account, region, [`Bucket`]).
///
/// Clones and [`RateLimits::scoped`] handles share the same buckets.
#[derive(Debug, Clone)]
pub struct RateLimits {
    scope: Scope,
    buckets: Arc<Mutex<HashMap<(Scope, Bucket), TokenBucket>>>,
}

impl RateLimits {
    /// Limits for `region` in the process's (unnamed) account.
    pub fn new(region: impl Into<String>) -> Self {
        RateLimits {
            scope: Scope {
                account: None,
                region: region.into(),
            },
            buckets: Arc::default(),
        }
    }

    /// A handle on the same buckets for another account and region, for a
    /// process working several accounts at once.
    pub fn scoped(&self, account: impl Into<String>, region: impl Into<String>) -> Self {
        RateLimits {
            scope: Scope {
                account: Some(account.into()),
                region: region.into(),
            },
            buckets: Arc::clone(&self.buckets),
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

    /// Waits until `operation` may be sent (see [`Bucket::for_operation`]
    /// for how names map to buckets).
    pub async fn acquire(&self, operation: &str) {
        self.acquire_from(Bucket::for_operation(operation)).await;
    }

    /// Waits until an EC2 `Describe*` without filter or pagination may be
    /// sent; those draw on the smaller unfiltered bucket.
    pub async fn acquire_unfiltered(&self, operation: &str) {
        self.acquire_from(Bucket::for_unfiltered(operation)).await;
    }

    /// Waits for a token from `bucket`.
    pub async fn acquire_from(&self, bucket: Bucket) {
        let wait = {
            let now = Instant::now();
            // Buckets are plain numbers updated in one statement each; a panic
            // elsewhere cannot leave them inconsistent.
            let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
            buckets
                .entry((self.scope.clone(), bucket))
                .or_insert_with_key(|(_, bucket)| TokenBucket::full(bucket, now))
                .take(now)
        };
        if !wait.is_zero() {
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "waiting for an API rate-limit token"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within a microsecond: the clock is virtual, only float rounding differs.
    fn assert_near(actual: Duration, expected: Duration) {
        let diff = actual.abs_diff(expected);
        assert!(
            diff < Duration::from_micros(1),
            "{actual:?} != {expected:?}"
        );
    }

    #[test]
    fn maps_operations_to_published_buckets() {
        let cases = [
            ("DescribeInstances", Bucket::Ec2NonMutating, 100, 20),
            ("EC2.GetConsoleOutput", Bucket::Ec2NonMutating, 100, 20),
            ("ModifyInstanceAttribute", Bucket::Ec2Mutating, 50, 5),
            ("CreateSecurityGroup", Bucket::Ec2Mutating, 50, 5),
            ("RevokeSecurityGroupEgress", Bucket::Ec2Mutating, 50, 5),
            (
                "AuthorizeSecurityGroupIngress",
                Bucket::Ec2ResourceIntensive,
                50,
                5,
            ),
            (
                "RevokeSecurityGroupIngress",
                Bucket::Ec2ResourceIntensive,
                50,
                5,
            ),
            (
                "ModifyNetworkInterfaceAttribute",
                Bucket::Ec2Operation("ModifyNetworkInterfaceAttribute"),
                100,
                5,
            ),
            (
                "CreateSnapshots",
                Bucket::Ec2Operation("CreateSnapshots"),
                100,
                5,
            ),
            (
                "EC2.DisassociateIamInstanceProfile",
                Bucket::Ec2Operation("DisassociateIamInstanceProfile"),
                100,
                5,
            ),
            ("CreateTags", Bucket::Ec2CreateTags, 100, 10),
            ("S3.PutObject", Bucket::Service("S3".to_owned()), 1000, 100),
            (
                "IAM.CreateAccessKey",
                Bucket::Service("IAM".to_owned()),
                1000,
                100,
            ),
        ];
        for (operation, bucket, capacity, refill) in cases {
            let mapped = Bucket::for_operation(operation);
            assert_eq!(mapped, bucket, "{operation}");
            assert_eq!(mapped.capacity(), capacity, "{operation}");
            assert_eq!(mapped.refill_per_second(), refill, "{operation}");
        }
        assert_eq!(
            Bucket::for_unfiltered("DescribeInstances"),
            Bucket::Ec2Unfiltered
        );
        assert_eq!(Bucket::Ec2Unfiltered.capacity(), 50);
        assert_eq!(Bucket::Ec2Unfiltered.refill_per_second(), 10);
        assert_eq!(Bucket::for_unfiltered("CreateTags"), Bucket::Ec2CreateTags);
    }

    #[tokio::test(start_paused = true)]
    async fn full_bucket_serves_capacity_at_once_then_refills_at_published_rate() {
        let limits = RateLimits::new("us-east-1");
        let start = Instant::now();
        // ModifyNetworkInterfaceAttribute: 100 tokens, +5/s.
        for _ in 0..100 {
            limits.acquire("ModifyNetworkInterfaceAttribute").await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        limits.acquire("ModifyNetworkInterfaceAttribute").await;
        assert_near(start.elapsed(), Duration::from_millis(200));
        for _ in 0..9 {
            limits.acquire("ModifyNetworkInterfaceAttribute").await;
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
                    limits.acquire("CreateSecurityGroup").await;
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
            limits.acquire("CreateTags").await;
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let start = Instant::now();
        for _ in 0..100 {
            limits.acquire("CreateTags").await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        limits.acquire("CreateTags").await;
        assert_near(start.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_are_per_account_region_and_bucket() {
        let limits = RateLimits::new("us-east-1");
        let other_region = limits.scoped("123456789012", "eu-west-1");
        let start = Instant::now();
        for _ in 0..50 {
            limits.acquire("CreateSecurityGroup").await;
            other_region.acquire("CreateSecurityGroup").await;
            // Own buckets are not drawn down by the mutating bucket.
            limits.acquire("CreateSnapshot").await;
            limits.acquire("S3.PutObject").await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        // A clone shares the bucket that is now empty.
        limits.clone().acquire("CreateSecurityGroup").await;
        assert_near(start.elapsed(), Duration::from_millis(200));
    }
}
