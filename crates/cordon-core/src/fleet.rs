//! The fleet cap across the cases one process runs at once (a burst).
//!
//! The executor counts the instances isolated within the cap's window from
//! the journals (see [`crate::executor::Executor::fleet_cap`]). Cases run
//! concurrently each check the cap before any of them has journaled an
//! isolation, so the journals alone would let every case of a burst through.
//! A [`FleetLedger`] shared by the burst's executors holds the instances the
//! burst's cases were admitted to isolate: each admission counts them too,
//! and takes its own place under the same lock, so the cap holds for the
//! burst as a whole.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

/// Instances the cases of this process were admitted to isolate.
///
/// An admitted case keeps its place even if it ends up not isolating (it
/// failed, or another case held its instance): the cap errs on the side of
/// stopping automatic action.
#[derive(Debug, Default)]
pub struct FleetLedger {
    admitted: Mutex<BTreeSet<String>>,
}

impl FleetLedger {
    /// An empty ledger, for one burst.
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits `targets` when, together with `isolated` (counted from the
    /// journals) and the instances already admitted, no more than `max`
    /// distinct instances are isolated; else admits nothing. On return
    /// `isolated` also holds the admitted instances other than `targets`, for
    /// the trip's record.
    pub fn admit(
        &self,
        isolated: &mut BTreeSet<String>,
        targets: &BTreeSet<&str>,
        max: usize,
    ) -> bool {
        // The set is only ever extended, in one statement; a panic elsewhere
        // cannot leave it half-updated.
        let mut admitted = self.admitted.lock().unwrap_or_else(PoisonError::into_inner);
        isolated.extend(
            admitted
                .iter()
                .filter(|instance| !targets.contains(instance.as_str()))
                .cloned(),
        );
        if isolated.len() + targets.len() > max {
            return false;
        }
        admitted.extend(targets.iter().map(|t| (*t).to_string()));
        true
    }

    /// The instances admitted so far.
    pub fn admitted(&self) -> BTreeSet<String> {
        self.admitted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn admissions_count_together_up_to_the_cap() {
        let ledger = FleetLedger::new();
        let mut isolated = set(&["i-journaled"]);
        assert!(ledger.admit(&mut isolated, &BTreeSet::from(["i-a"]), 3));
        let mut isolated = set(&["i-journaled"]);
        assert!(ledger.admit(&mut isolated, &BTreeSet::from(["i-b"]), 3));
        let mut isolated = set(&["i-journaled"]);
        assert!(!ledger.admit(&mut isolated, &BTreeSet::from(["i-c"]), 3));
        assert_eq!(isolated, set(&["i-a", "i-b", "i-journaled"]));
        assert_eq!(ledger.admitted(), set(&["i-a", "i-b"]));
    }

    #[test]
    fn an_instance_admitted_before_is_not_counted_twice() {
        let ledger = FleetLedger::new();
        assert!(ledger.admit(&mut BTreeSet::new(), &BTreeSet::from(["i-a"]), 1));
        // A second case on the same instance (its claim will be refused) is no new instance.
        assert!(ledger.admit(&mut BTreeSet::new(), &BTreeSet::from(["i-a"]), 1));
        // An instance both journaled and admitted counts once.
        let mut isolated = set(&["i-a"]);
        assert!(!ledger.admit(&mut isolated, &BTreeSet::from(["i-b"]), 1));
        assert_eq!(isolated, set(&["i-a"]));
    }
}
