//! The process's bound on requests in flight, against the emulator: a burst
//! of calls never has more attempts on the wire than the bound, so the
//! per-attempt timeouts measure the service, not cordon's own queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_ec2::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ec2::error::BoxError;
use cordon_aws::client::{AwsClients, InFlight};
use cordon_aws::ops;
use cordon_tests::emulator;

/// Attempts on the wire now, and the most seen at once.
#[derive(Debug, Clone, Default)]
struct OnTheWire {
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl Intercept for OnTheWire {
    fn name(&self) -> &'static str {
        "test.OnTheWire"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        Ok(())
    }

    fn read_after_attempt(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.now.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Fails on the old code, which had no bound: all 24 calls went out at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_calls_keeps_at_most_the_bound_on_the_wire_and_all_succeed() {
    let aws = emulator().await;
    let wire = OnTheWire::default();
    let clients = AwsClients::builder(aws.sdk_config())
        .interceptor(wire.clone())
        .in_flight(InFlight::new(3))
        .build()
        .expect("clients");
    // A derived client set (another region) shares the same bound.
    let other = clients.derive("eu-west-3", None).expect("derived clients");
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..24 {
        let clients = if i % 2 == 0 {
            clients.clone()
        } else {
            other.clone()
        };
        calls.spawn(async move {
            clients
                .call(
                    &ops::EC2_DESCRIBE_INSTANCES,
                    "burst",
                    clients.ec2.describe_instances(),
                )
                .await
                .map(|_| ())
        });
    }
    while let Some(done) = calls.join_next().await {
        done.expect("task").expect("DescribeInstances");
    }
    let most = wire.most.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&most),
        "at most 3 attempts on the wire at once, saw {most}"
    );
    assert_eq!(wire.now.load(Ordering::SeqCst), 0);
}
