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

use crate::ops::Service;

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

    /// Waits for a token from `bucket`.
    pub async fn acquire(&self, bucket: Bucket) {
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
}
