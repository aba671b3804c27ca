//! Reads one phase of a step made that a later phase may reuse instead of
//! asking AWS again: "read once, reuse" on the critical path to containment.
//!
//! Two kinds of entry, both keyed by account and region:
//! - an instance's attached network interfaces, read for `isolate-instance`'s
//!   pre-state and taken (once) by its apply, which otherwise re-reads them
//!   one round trip later to plan each ENI's swap;
//! - cordon's isolation and untrack groups per VPC and name, looked up
//!   alongside the pre-state read (the finding names the VPCs) and kept for
//!   the process, present or known absent, so apply goes straight to the
//!   swaps (or to creating the groups).
//!
//! - one scan of a region's load-balancer target groups (which instance is a
//!   target of which group), shared by every case of a burst for
//!   [`TARGET_SCAN_REUSE_WINDOW`] ([`ReadCache::target_scan`]): ELBv2 cannot
//!   look a target up by instance, so without it each of N cases would ask
//!   every one of the region's groups for its targets — N² calls in a burst
//!   of N findings on N instances behind their own groups.
//!
//! - one read of an instance in flight, joined by the steps that ask for the
//!   same instance while it is under way ([`ReadCache::instance_read`]): the
//!   steps after isolation start together and each describes the instance
//!   for its pre-state; one request answers them all. Nothing is kept once
//!   the answer is in, so a later ask always reads afresh.
//!
//! An entry is only as good as the absence of changes since it was read: the
//! call path ([`crate::client::AwsClients`]) drops every entry that names the
//! resource of any mutating call it sends, and a read still in flight when
//! such a call goes out is not stored at all ([`ReadCache::begin`]). Changes
//! made outside this process are what any read-then-act races with; the
//! step's verification reads the result back in any case.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{Instance, NetworkInterface, SecurityGroup};
use aws_sdk_elasticloadbalancingv2::types::TargetHealthDescription;

/// How long an instance's ENIs read for a pre-state stand in for apply's
/// own read. Pre-state, journal write and apply follow each other within
/// milliseconds; a step that waited for approval in between reads again.
pub const INTERFACES_REUSE_WINDOW: Duration = Duration::from_secs(5);

/// How long one scan of a region's target groups stands in for another
/// case's own. It only names the groups to look at: the case that reuses it
/// reads those groups' targets afresh, so what a reuse can miss is an
/// instance registered in a *new* group during the window, by someone else
/// (cordon's own registrations, on rollback, drop the scan). A read-then-act
/// tool races with such changes at any window; this bounds the race at 10 s.
pub const TARGET_SCAN_REUSE_WINDOW: Duration = Duration::from_secs(10);

/// One scan of a region's target groups that can hold instance targets.
#[derive(Debug, Clone)]
pub struct TargetScan {
    /// When the scan began.
    pub taken: Instant,
    /// Every group (ARN, name) with its targets as `DescribeTargetHealth` listed them.
    pub groups: Vec<ScannedGroup>,
}

/// One target group as scanned.
#[derive(Debug, Clone)]
pub struct ScannedGroup {
    pub arn: String,
    pub name: Option<String>,
    pub targets: Vec<TargetHealthDescription>,
}

/// Where a scan is kept, and awaited while one is under way.
type ScanSlot = Arc<tokio::sync::Mutex<Option<Arc<TargetScan>>>>;

/// Where an entry lives: account, region, then what it is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Scope {
    /// The account the resources are in (the finding's).
    pub account: String,
    /// Their region.
    pub region: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    /// An instance's attached ENIs.
    Interfaces(Scope, String),
    /// A group by VPC and name.
    Group(Scope, String, String),
    /// An instance's description, read before its case opened.
    Instance(Scope, String),
}

#[derive(Debug, Clone)]
enum Value {
    Interfaces(Vec<NetworkInterface>),
    Group(Option<SecurityGroup>),
    Instance(Box<Instance>),
}

#[derive(Debug)]
struct Entry {
    /// Resource ids a mutating call may name that make the entry stale.
    ids: Vec<String>,
    value: Value,
    /// When the read that filled it was sent.
    sent: Instant,
    /// Read before the case opened ([`ReadCache::store_early`]) and not yet
    /// used for a pre-state.
    early: bool,
}

#[derive(Debug)]
struct Pending {
    ids: Vec<String>,
    stale: bool,
    sent: Instant,
}

/// An instance read in flight: its ticket (a mutating call about the
/// instance since it was sent makes it stale, and it is joined no more), and
/// where its answer will appear.
#[derive(Debug)]
struct InstanceFlight {
    ticket: u64,
    answer: tokio::sync::watch::Receiver<Option<Instance>>,
}

#[derive(Debug, Default)]
struct Reads {
    entries: BTreeMap<Key, Entry>,
    /// Instance reads in flight, by scope and instance id.
    instances: BTreeMap<(Scope, String), InstanceFlight>,
    /// Reads in flight, by ticket: the ids they are about, and whether a
    /// mutating call named one of them since they were sent.
    pending: BTreeMap<u64, Pending>,
    next_ticket: u64,
}

/// The cache; clones share it. Built with the clients, one per process.
#[derive(Debug, Clone, Default)]
pub struct ReadCache {
    reads: Arc<Mutex<Reads>>,
    /// One target-group scan per scope (see [`ReadCache::target_scan`]).
    target_scans: Arc<Mutex<BTreeMap<Scope, ScanSlot>>>,
}

/// What [`ReadCache::store_early`] keeps: reads made before a case opened.
#[derive(Debug)]
pub struct EarlyAnswers {
    /// The instance they are about.
    pub instance_id: String,
    /// Its description, when the read succeeded.
    pub instance: Option<Instance>,
    /// Its attached ENIs, when the read succeeded.
    pub interfaces: Option<Vec<NetworkInterface>>,
    /// (VPC, group name, the group or `None` when absent) for every lookup made.
    pub groups: Vec<(String, String, Option<SecurityGroup>)>,
}

/// A read in flight, from [`ReadCache::begin`]; its result is stored only if
/// nothing it is about changed while it was in flight.
#[derive(Debug)]
#[must_use = "a read's result is stored by passing its ticket to a `store_*` method"]
pub struct ReadTicket {
    id: u64,
}

/// What a read of `instance_id`'s ENIs is about: the instance and each ENI.
fn interface_ids<'a>(
    instance_id: &str,
    eni_ids: impl Iterator<Item = Option<&'a str>>,
) -> Vec<String> {
    std::iter::once(instance_id.to_string())
        .chain(eni_ids.flatten().map(str::to_string))
        .collect()
}

/// What a lookup of a group in `vpc_id` is about: the VPC and the group found.
fn group_ids(vpc_id: &str, group: Option<&SecurityGroup>) -> Vec<String> {
    std::iter::once(vpc_id.to_string())
        .chain(group.and_then(|g| g.group_id()).map(str::to_string))
        .collect()
}

impl ReadCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `self` and `other` are one cache (clones of each other).
    pub fn shares(&self, other: &ReadCache) -> bool {
        Arc::ptr_eq(&self.reads, &other.reads)
    }

    /// Announces a read about `ids` (an instance id, a VPC id), before it is sent.
    pub fn begin(&self, ids: &[&str]) -> ReadTicket {
        let mut reads = self.lock();
        reads.next_ticket += 1;
        let id = reads.next_ticket;
        reads.pending.insert(
            id,
            Pending {
                ids: ids.iter().map(|s| s.to_string()).collect(),
                stale: false,
                sent: Instant::now(),
            },
        );
        ReadTicket { id }
    }

    /// Stores the ENIs attached to `instance_id`, read under `ticket`.
    pub fn store_interfaces(
        &self,
        ticket: ReadTicket,
        scope: &Scope,
        instance_id: &str,
        enis: &[NetworkInterface],
    ) {
        let ids = interface_ids(instance_id, enis.iter().map(|e| e.network_interface_id()));
        let key = Key::Interfaces(scope.clone(), instance_id.to_string());
        self.store(ticket, key, ids, Value::Interfaces(enis.to_vec()));
    }

    /// The ENIs attached to `instance_id` as read within the last
    /// [`INTERFACES_REUSE_WINDOW`], if nothing changed them since; taken, so
    /// a later attempt reads afresh.
    pub fn take_interfaces(
        &self,
        scope: &Scope,
        instance_id: &str,
    ) -> Option<Vec<NetworkInterface>> {
        let key = Key::Interfaces(scope.clone(), instance_id.to_string());
        match self.take_fresh(&key)? {
            Value::Interfaces(enis) => Some(enis),
            Value::Group(_) | Value::Instance(_) => None,
        }
    }

    /// The entry under `key`, removed, if it was read within the last
    /// [`INTERFACES_REUSE_WINDOW`].
    fn take_fresh(&self, key: &Key) -> Option<Value> {
        let entry = self.lock().entries.remove(key)?;
        (entry.sent.elapsed() <= INTERFACES_REUSE_WINDOW).then_some(entry.value)
    }

    /// Stores, under one ticket begun before any of them was sent, the reads
    /// a case's first steps need that were made alongside the caller-identity
    /// check, before the case opened ([`crate::actions::ec2::isolate::EarlyReads`]):
    /// the instance, its attached ENIs, and its VPCs' isolation groups by name.
    /// Nothing is stored if a mutating call named any of them since.
    pub fn store_early(&self, ticket: ReadTicket, scope: &Scope, early: EarlyAnswers) {
        let mut reads = self.lock();
        let Some(pending) = reads.pending.remove(&ticket.id).filter(|p| !p.stale) else {
            return;
        };
        let sent = pending.sent;
        let mut entry = |key: Key, ids: Vec<String>, value: Value, early: bool| {
            reads.entries.insert(
                key,
                Entry {
                    ids,
                    value,
                    sent,
                    early,
                },
            );
        };
        let instance_id = early.instance_id;
        if let Some(instance) = early.instance {
            let attached = interface_ids(
                &instance_id,
                instance
                    .network_interfaces()
                    .iter()
                    .map(|n| n.network_interface_id()),
            );
            entry(
                Key::Instance(scope.clone(), instance_id.clone()),
                attached,
                Value::Instance(Box::new(instance)),
                true,
            );
        }
        if let Some(enis) = early.interfaces {
            entry(
                Key::Interfaces(scope.clone(), instance_id.clone()),
                interface_ids(&instance_id, enis.iter().map(|e| e.network_interface_id())),
                Value::Interfaces(enis),
                true,
            );
        }
        for (vpc_id, name, group) in early.groups {
            entry(
                Key::Group(scope.clone(), vpc_id.clone(), name),
                group_ids(&vpc_id, group.as_ref()),
                Value::Group(group),
                false,
            );
        }
    }

    /// The instance as read before its case opened, within the last
    /// [`INTERFACES_REUSE_WINDOW`] and if nothing changed it (or its ENIs)
    /// since; taken, so only the first describe of it uses it.
    pub fn take_early_instance(&self, scope: &Scope, instance_id: &str) -> Option<Instance> {
        let key = Key::Instance(scope.clone(), instance_id.to_string());
        match self.take_fresh(&key)? {
            Value::Instance(instance) => Some(*instance),
            Value::Interfaces(_) | Value::Group(_) => None,
        }
    }

    /// The instance's ENIs as read before its case opened, for a pre-state:
    /// once (a second pre-state attempt reads afresh), within the last
    /// [`INTERFACES_REUSE_WINDOW`], if nothing changed them since. The entry
    /// stays for apply's [`ReadCache::take_interfaces`].
    pub fn take_early_interfaces(
        &self,
        scope: &Scope,
        instance_id: &str,
    ) -> Option<Vec<NetworkInterface>> {
        let key = Key::Interfaces(scope.clone(), instance_id.to_string());
        let mut reads = self.lock();
        let entry = reads.entries.get_mut(&key).filter(|e| e.early)?;
        entry.early = false;
        if entry.sent.elapsed() > INTERFACES_REUSE_WINDOW {
            return None;
        }
        match &entry.value {
            Value::Interfaces(enis) => Some(enis.clone()),
            Value::Group(_) | Value::Instance(_) => None,
        }
    }

    /// Stores what a lookup of group `name` in `vpc_id` found (`None`: no such group).
    pub fn store_group(
        &self,
        ticket: &ReadTicket,
        scope: &Scope,
        vpc_id: &str,
        name: &str,
        group: Option<&SecurityGroup>,
    ) {
        let ids = group_ids(vpc_id, group);
        let key = Key::Group(scope.clone(), vpc_id.to_string(), name.to_string());
        let mut reads = self.lock();
        let Some(pending) = reads.pending.get(&ticket.id).filter(|p| !p.stale) else {
            return;
        };
        let sent = pending.sent;
        reads.entries.insert(
            key,
            Entry {
                ids,
                value: Value::Group(group.cloned()),
                sent,
                early: false,
            },
        );
    }

    /// Ends a read whose results were stored with [`ReadCache::store_group`]
    /// (or that failed).
    pub fn end(&self, ticket: ReadTicket) {
        self.lock().pending.remove(&ticket.id);
    }

    /// Group `name` of `vpc_id` as last looked up: `Some(None)` when it was
    /// known absent, `None` when it was never looked up or changed since.
    pub fn group(&self, scope: &Scope, vpc_id: &str, name: &str) -> Option<Option<SecurityGroup>> {
        let key = Key::Group(scope.clone(), vpc_id.to_string(), name.to_string());
        match &self.lock().entries.get(&key)?.value {
            Value::Group(group) => Some(group.clone()),
            Value::Interfaces(_) | Value::Instance(_) => None,
        }
    }

    /// Forgets every entry and poisons every read in flight about `resource`
    /// (the resource a mutating call names: one id, or several joined by commas).
    pub fn invalidate(&self, resource: &str) {
        let named: Vec<&str> = resource.split(',').map(str::trim).collect();
        let names = |ids: &[String]| ids.iter().any(|id| named.contains(&id.as_str()));
        let mut reads = self.lock();
        reads.entries.retain(|_, entry| !names(&entry.ids));
        for pending in reads.pending.values_mut() {
            if names(&pending.ids) {
                pending.stale = true;
            }
        }
    }

    /// Forgets everything about `scope`'s group `name` in `vpc_id`, e.g. after
    /// a call with it failed in a way that suggests it is gone.
    pub fn forget_group(&self, scope: &Scope, vpc_id: &str, name: &str) {
        let key = Key::Group(scope.clone(), vpc_id.to_string(), name.to_string());
        self.lock().entries.remove(&key);
    }

    /// The scope's target-group scan: the last one if younger than
    /// [`TARGET_SCAN_REUSE_WINDOW`], else a new one made by `scan`. One scan
    /// at a time per scope: the cases of a burst that need it together wait
    /// for the first one's instead of each scanning. The flag is true when
    /// this call made the scan (its data is as fresh as a read of one's own).
    /// A failed scan is not kept.
    pub async fn target_scan<E, F, Fut>(
        &self,
        scope: &Scope,
        scan: F,
    ) -> Result<(Arc<TargetScan>, bool), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<TargetScan, E>>,
    {
        let slot = {
            let mut scans = self
                .target_scans
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(scans.entry(scope.clone()).or_default())
        };
        let mut kept = slot.lock().await;
        if let Some(last) = kept.as_ref()
            && last.taken.elapsed() < TARGET_SCAN_REUSE_WINDOW
        {
            return Ok((Arc::clone(last), false));
        }
        let fresh = Arc::new(scan().await?);
        *kept = Some(Arc::clone(&fresh));
        Ok((fresh, true))
    }

    /// Drops the scope's target-group scan, e.g. after registering a target
    /// (a rollback), so the next case scans again.
    pub fn forget_target_scan(&self, scope: &Scope) {
        self.target_scans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(scope);
    }

    fn store(&self, ticket: ReadTicket, key: Key, ids: Vec<String>, value: Value) {
        let mut reads = self.lock();
        if let Some(pending) = reads.pending.remove(&ticket.id).filter(|p| !p.stale) {
            reads.entries.insert(
                key,
                Entry {
                    ids,
                    value,
                    sent: pending.sent,
                    early: false,
                },
            );
        }
    }

    /// Joins the read of `instance_id` under way, if one is and nothing
    /// changed the instance (or the `related` ids: its ENIs, its volumes)
    /// since it was sent; else makes the caller the one that reads.
    pub fn instance_read(
        &self,
        scope: &Scope,
        instance_id: &str,
        related: &[&str],
    ) -> InstanceRead {
        let key = (scope.clone(), instance_id.to_string());
        {
            let reads = self.lock();
            if let Some(flight) = reads.instances.get(&key)
                && reads.pending.get(&flight.ticket).is_some_and(|p| !p.stale)
            {
                return InstanceRead::Join(flight.answer.clone());
            }
        }
        let mut ids = vec![instance_id];
        ids.extend_from_slice(related);
        let ticket = self.begin(&ids);
        let (send, answer) = tokio::sync::watch::channel(None);
        self.lock().instances.insert(
            key.clone(),
            InstanceFlight {
                ticket: ticket.id,
                answer,
            },
        );
        InstanceRead::Lead(InstanceLead {
            cache: self.clone(),
            key,
            ticket: Some(ticket),
            send,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Reads> {
        // Every update replaces or removes whole entries: a panic elsewhere
        // cannot leave one half-written.
        self.reads.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What [`ReadCache::instance_read`] made of the caller.
#[derive(Debug)]
pub enum InstanceRead {
    /// Another caller's read is under way: wait for its answer
    /// ([`joined_answer`]); `None` means it failed or was abandoned, and the
    /// caller reads for itself.
    Join(tokio::sync::watch::Receiver<Option<Instance>>),
    /// The caller reads, and hands the answer to whoever joined.
    Lead(InstanceLead),
}

/// The answer of a joined instance read, or `None` if there will be none.
pub async fn joined_answer(
    mut answer: tokio::sync::watch::Receiver<Option<Instance>>,
) -> Option<Instance> {
    match answer.wait_for(Option::is_some).await {
        Ok(instance) => instance.clone(),
        Err(_) => None,
    }
}

/// The caller that reads an instance for everyone who joins; dropping it
/// without [`InstanceLead::answer`] (a failed or abandoned read) lets the
/// joiners read for themselves.
#[derive(Debug)]
pub struct InstanceLead {
    cache: ReadCache,
    key: (Scope, String),
    ticket: Option<ReadTicket>,
    send: tokio::sync::watch::Sender<Option<Instance>>,
}

impl InstanceLead {
    /// Hands `instance` to the callers that joined.
    pub fn answer(self, instance: &Instance) {
        self.send.send_replace(Some(instance.clone()));
    }
}

impl Drop for InstanceLead {
    fn drop(&mut self) {
        let mut reads = self.cache.lock();
        if let Some(ticket) = self.ticket.take() {
            if reads
                .instances
                .get(&self.key)
                .is_some_and(|flight| flight.ticket == ticket.id)
            {
                reads.instances.remove(&self.key);
            }
            reads.pending.remove(&ticket.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
        }
    }

    fn eni(id: &str) -> NetworkInterface {
        NetworkInterface::builder().network_interface_id(id).build()
    }

    #[test]
    fn interfaces_are_taken_once_and_dropped_by_a_change_to_any_of_them() {
        let cache = ReadCache::new();
        let ticket = cache.begin(&["i-1"]);
        cache.store_interfaces(ticket, &scope(), "i-1", &[eni("eni-1"), eni("eni-2")]);
        assert_eq!(
            cache.take_interfaces(&scope(), "i-1").map(|e| e.len()),
            Some(2)
        );
        assert!(
            cache.take_interfaces(&scope(), "i-1").is_none(),
            "taken once"
        );

        let ticket = cache.begin(&["i-1"]);
        cache.store_interfaces(ticket, &scope(), "i-1", &[eni("eni-1"), eni("eni-2")]);
        cache.invalidate("eni-2");
        assert!(
            cache.take_interfaces(&scope(), "i-1").is_none(),
            "eni-2 changed"
        );

        let ticket = cache.begin(&["i-1"]);
        cache.store_interfaces(ticket, &scope(), "i-1", &[eni("eni-1")]);
        cache.invalidate("eni-9,vol-1");
        assert!(
            cache.take_interfaces(&scope(), "i-1").is_some(),
            "other resources"
        );
    }

    #[test]
    fn a_read_in_flight_during_a_change_is_not_kept() {
        let cache = ReadCache::new();
        let ticket = cache.begin(&["i-1"]);
        cache.invalidate("i-1");
        cache.store_interfaces(ticket, &scope(), "i-1", &[eni("eni-1")]);
        assert!(cache.take_interfaces(&scope(), "i-1").is_none());

        let ticket = cache.begin(&["vpc-1"]);
        cache.invalidate("vpc-1");
        cache.store_group(&ticket, &scope(), "vpc-1", "cordon-isolation", None);
        cache.end(ticket);
        assert_eq!(cache.group(&scope(), "vpc-1", "cordon-isolation"), None);
    }

    #[test]
    fn groups_are_kept_present_or_absent_per_account_region_and_vpc() {
        let cache = ReadCache::new();
        let group = SecurityGroup::builder()
            .group_id("sg-iso")
            .vpc_id("vpc-1")
            .build();
        let ticket = cache.begin(&["vpc-1", "vpc-2"]);
        cache.store_group(&ticket, &scope(), "vpc-1", "iso", Some(&group));
        cache.store_group(&ticket, &scope(), "vpc-2", "iso", None);
        cache.end(ticket);
        assert_eq!(cache.group(&scope(), "vpc-1", "iso"), Some(Some(group)));
        assert_eq!(cache.group(&scope(), "vpc-2", "iso"), Some(None));
        let other = Scope {
            account: "444455556666".into(),
            ..scope()
        };
        assert_eq!(cache.group(&other, "vpc-1", "iso"), None);
        // A rule changed on the group, or a group created in the VPC: looked up again.
        cache.invalidate("sg-iso");
        cache.invalidate("vpc-2");
        assert_eq!(cache.group(&scope(), "vpc-1", "iso"), None);
        assert_eq!(cache.group(&scope(), "vpc-2", "iso"), None);
    }
}
