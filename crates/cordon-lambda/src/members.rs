//! The actions of cases in other accounts or regions, cached per container.
//!
//! A warm container serves many invocations; assuming the responder role on
//! each would add an STS round trip to every step. So the actions (their
//! clients carry the assumed role's credentials) are kept per (partition,
//! account, region), at most [`CAPACITY`] of them (the oldest goes first),
//! each for [`FRESH_FOR`]: AssumeRole's credentials last an hour by default
//! (the member role's `MaxSessionDuration` is 3600 s) and one invocation at
//! most 15 minutes, so an entry taken at the start of an invocation still
//! has a quarter of an hour of credentials left when it ends. The
//! credentials stay inside the SDK's clients: nothing here logs or prints them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use cordon_aws::accounts::Scope;
use cordon_aws::actions::AwsActions;

/// The STS session name of the role assumed in member accounts (CloudTrail
/// there shows it); which case a call served is in the case's journal and
/// the `cordon:case-id` tags.
pub(crate) const SESSION_NAME: &str = "cordon-lambda";

/// How many (account, region) pairs one container keeps clients for.
pub(crate) const CAPACITY: usize = 32;

/// How long an entry is used before the role is assumed again.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(45 * 60);

/// Where a case acts: the finding's partition, account and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    pub partition: String,
    pub account: String,
    pub region: String,
}

#[derive(Debug)]
struct Entry {
    key: Key,
    actions: AwsActions,
    scope: Scope,
    made: Instant,
}

/// The bounded cache (a short list: a linear scan over 32 is nothing next
/// to one AWS call).
#[derive(Debug, Default)]
pub(crate) struct MemberActions {
    entries: Mutex<Vec<Entry>>,
}

impl MemberActions {
    /// The cached actions for `key`, unless absent or too old.
    pub(crate) fn get(&self, key: &Key) -> Option<(AwsActions, Scope)> {
        self.get_at(key, Instant::now())
    }

    fn get_at(&self, key: &Key, now: Instant) -> Option<(AwsActions, Scope)> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .find(|e| e.key == *key && now.duration_since(e.made) < FRESH_FOR)
            .map(|e| (e.actions.clone(), e.scope.clone()))
    }

    /// Keeps `actions` for `key`, replacing an older entry for it, and drops
    /// the oldest entry when full.
    pub(crate) fn insert(&self, key: Key, actions: AwsActions, scope: Scope) {
        self.insert_at(key, actions, scope, Instant::now());
    }

    fn insert_at(&self, key: Key, actions: AwsActions, scope: Scope, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| e.key != key);
        if entries.len() >= CAPACITY
            && let Some(oldest) = entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.made)
                .map(|(i, _)| i)
        {
            entries.swap_remove(oldest);
        }
        entries.push(Entry {
            key,
            actions,
            scope,
            made: now,
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use cordon_aws::client::AwsClients;
    use cordon_aws::evidence::EvidenceStore;

    fn actions() -> AwsActions {
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let clients = AwsClients::from_sdk_config(&config).unwrap();
        AwsActions::new(clients, EvidenceStore::LocalDir("/nonexistent".into()))
    }

    fn key(account: usize) -> Key {
        Key {
            partition: "aws".to_string(),
            account: format!("{account:012}"),
            region: "us-east-1".to_string(),
        }
    }

    fn scope(key: &Key) -> Scope {
        Scope {
            account: key.account.clone(),
            region: key.region.clone(),
            caller: "arn:aws:iam::123456789012:role/cordon-lambda".to_string(),
            assumed_role: Some(format!(
                "arn:aws:iam::{}:role/cordon-responder",
                key.account
            )),
            acting_as: "session".to_string(),
        }
    }

    #[test]
    fn entries_expire_before_the_credentials_do() {
        let cache = MemberActions::default();
        let start = Instant::now();
        cache.insert_at(key(1), actions(), scope(&key(1)), start);
        assert!(cache.get_at(&key(1), start).is_some());
        assert!(cache.get_at(&key(2), start).is_none());
        assert!(
            cache
                .get_at(&key(1), start + FRESH_FOR - Duration::from_secs(1))
                .is_some()
        );
        assert!(cache.get_at(&key(1), start + FRESH_FOR).is_none());
    }

    #[test]
    fn the_cache_is_bounded_and_drops_the_oldest() {
        let cache = MemberActions::default();
        let start = Instant::now();
        for n in 0..=CAPACITY {
            let at = start + Duration::from_secs(n as u64);
            cache.insert_at(key(n), actions(), scope(&key(n)), at);
        }
        assert_eq!(cache.len(), CAPACITY);
        let now = start + Duration::from_secs(CAPACITY as u64);
        assert!(
            cache.get_at(&key(0), now).is_none(),
            "the oldest went first"
        );
        assert!(cache.get_at(&key(1), now).is_some());
        assert!(cache.get_at(&key(CAPACITY), now).is_some());
        // Assuming again for a key replaces its entry, never duplicates it.
        cache.insert_at(key(1), actions(), scope(&key(1)), now);
        assert_eq!(cache.len(), CAPACITY);
    }
}
