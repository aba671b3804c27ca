//! EC2's request throttling, as AWS documents it: token buckets per account
//! and region, one per class of operation (see AWS-NOTES, "Throttling").
//!
//! The emulator never throttles, so without this a burst benchmark could not
//! tell a client that stays inside the budgets from one that would be
//! answered `RequestLimitExceeded` by real EC2. This is an independent
//! implementation of the published table, not a copy of cordon's limiter, so
//! a mistake in one shows up against the other.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::time::Instant;

/// The throttling class of one EC2 request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ec2Bucket {
    /// `Describe*`/`Get*` with a filter, ids or pagination.
    NonMutating,
    /// `Describe*` with no filter, ids or pagination.
    Unfiltered,
    /// Any other mutating call.
    Mutating,
    /// `Authorize`/`RevokeSecurityGroupIngress`.
    ResourceIntensive,
    /// `CreateTags`.
    CreateTags,
    /// An operation with a bucket of its own.
    Own(String),
}

/// Operations that have a bucket of their own (100 tokens, +5/s).
const OWN_BUCKET: [&str; 5] = [
    "ModifyNetworkInterfaceAttribute",
    "CreateSnapshot",
    "CreateSnapshots",
    "AssociateIamInstanceProfile",
    "DisassociateIamInstanceProfile",
];

impl Ec2Bucket {
    /// The bucket of `operation`, given the request's form parameters
    /// (`Action=DescribeInstances&Filter.1.Name=...`) for the filtered test.
    pub fn classify(operation: &str, form: &str) -> Self {
        if OWN_BUCKET.contains(&operation) {
            return Self::Own(operation.to_string());
        }
        match operation {
            "CreateTags" => Self::CreateTags,
            "AuthorizeSecurityGroupIngress" | "RevokeSecurityGroupIngress" => {
                Self::ResourceIntensive
            }
            op if op.starts_with("Describe") && !narrowed(form) => Self::Unfiltered,
            op if op.starts_with("Describe") || op.starts_with("Get") => Self::NonMutating,
            _ => Self::Mutating,
        }
    }

    /// A short name for logs: `non-mutating`, `own:ModifyNetworkInterfaceAttribute`.
    pub fn name(&self) -> String {
        match self {
            Self::NonMutating => "non-mutating".to_string(),
            Self::Unfiltered => "unfiltered".to_string(),
            Self::Mutating => "mutating".to_string(),
            Self::ResourceIntensive => "resource-intensive".to_string(),
            Self::CreateTags => "create-tags".to_string(),
            Self::Own(op) => format!("own:{op}"),
        }
    }
}

/// Whether a Describe request names ids, filters or a page: the "filtered or
/// paginated" half of EC2's non-mutating budget.
fn narrowed(form: &str) -> bool {
    form.split('&').any(|pair| {
        let name = pair.split('=').next().unwrap_or_default();
        name.starts_with("Filter.")
            || name == "MaxResults"
            || name == "NextToken"
            || name.contains("Id.")
            || name.contains("Ids.")
    })
}

/// The size of one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Tokens when full.
    pub capacity: f64,
    /// Tokens added per second.
    pub refill_per_second: f64,
}

/// EC2's published defaults.
pub fn published_limits(bucket: &Ec2Bucket) -> Limits {
    let (capacity, refill_per_second) = match bucket {
        Ec2Bucket::NonMutating => (100.0, 20.0),
        Ec2Bucket::Unfiltered => (50.0, 10.0),
        Ec2Bucket::Mutating | Ec2Bucket::ResourceIntensive => (50.0, 5.0),
        Ec2Bucket::CreateTags => (100.0, 10.0),
        Ec2Bucket::Own(_) => (100.0, 5.0),
    };
    Limits {
        capacity,
        refill_per_second,
    }
}

#[derive(Debug)]
struct TokenBucket {
    limits: Limits,
    tokens: f64,
    at: Instant,
}

/// Every EC2 bucket of one account and region, full at start.
#[derive(Debug)]
pub struct Ec2Throttle {
    limits: fn(&Ec2Bucket) -> Limits,
    buckets: Mutex<HashMap<Ec2Bucket, TokenBucket>>,
}

impl Ec2Throttle {
    /// Buckets of EC2's published sizes.
    pub fn published() -> Self {
        Self::with_limits(published_limits)
    }

    /// Buckets of other sizes (tests use tiny ones).
    pub fn with_limits(limits: fn(&Ec2Bucket) -> Limits) -> Self {
        Self {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from `bucket`; `false` means EC2 would answer
    /// `RequestLimitExceeded` (a refused request costs no token).
    pub fn try_take(&self, bucket: &Ec2Bucket) -> bool {
        let now = Instant::now();
        // Plain numbers, never left half-updated: a poisoned lock is still sound.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let limits = (self.limits)(bucket);
        let entry = buckets.entry(bucket.clone()).or_insert(TokenBucket {
            limits,
            tokens: limits.capacity,
            at: now,
        });
        let earned = now.duration_since(entry.at).as_secs_f64() * entry.limits.refill_per_second;
        entry.tokens = (entry.tokens + earned).min(entry.limits.capacity);
        entry.at = now;
        if entry.tokens >= 1.0 {
            entry.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The body EC2 sends with a throttled request's HTTP 503.
pub fn request_limit_exceeded_body(request_id: u64) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code>\
<Message>Request limit exceeded.</Message></Error></Errors><RequestID>latency-proxy-{request_id}</RequestID></Response>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_map_to_the_published_buckets() {
        let cases = [
            (
                "ModifyNetworkInterfaceAttribute",
                "",
                "own:ModifyNetworkInterfaceAttribute",
                100.0,
                5.0,
            ),
            ("CreateSnapshot", "", "own:CreateSnapshot", 100.0, 5.0),
            ("CreateTags", "", "create-tags", 100.0, 10.0),
            (
                "RevokeSecurityGroupIngress",
                "",
                "resource-intensive",
                50.0,
                5.0,
            ),
            ("RevokeSecurityGroupEgress", "", "mutating", 50.0, 5.0),
            ("CreateSecurityGroup", "", "mutating", 50.0, 5.0),
            (
                "DescribeInstances",
                "Action=DescribeInstances&InstanceId.1=i-1",
                "non-mutating",
                100.0,
                20.0,
            ),
            (
                "DescribeSecurityGroups",
                "Action=DescribeSecurityGroups&Filter.1.Name=vpc-id",
                "non-mutating",
                100.0,
                20.0,
            ),
            (
                "DescribeIamInstanceProfileAssociations",
                "Action=DescribeIamInstanceProfileAssociations&Version=2016-11-15",
                "unfiltered",
                50.0,
                10.0,
            ),
            (
                "GetConsoleOutput",
                "Action=GetConsoleOutput&InstanceId=i-1",
                "non-mutating",
                100.0,
                20.0,
            ),
        ];
        for (op, form, name, capacity, refill) in cases {
            let bucket = Ec2Bucket::classify(op, form);
            assert_eq!(bucket.name(), name, "{op}");
            assert_eq!(
                published_limits(&bucket),
                Limits {
                    capacity,
                    refill_per_second: refill
                },
                "{op}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_serves_its_capacity_then_its_refill_rate() {
        let throttle = Ec2Throttle::published();
        let bucket = Ec2Bucket::classify("ModifyNetworkInterfaceAttribute", "");
        assert!((0..100).all(|_| throttle.try_take(&bucket)));
        assert!(!throttle.try_take(&bucket), "101st at once is throttled");
        tokio::time::advance(std::time::Duration::from_millis(200)).await;
        assert!(throttle.try_take(&bucket), "one token back after 1/5 s");
        assert!(!throttle.try_take(&bucket));
        let other = Ec2Bucket::classify("CreateSnapshot", "");
        assert!(throttle.try_take(&other), "buckets are independent");
    }
}
