//! Per-attempt time budgets that grow with each retry of a call.
//!
//! A fixed per-attempt timeout serves one case well and another badly. Set
//! short (3 s for control-plane calls), it abandons a request that will never
//! be answered quickly and retries it, so one lost request does not hold
//! containment for the whole operation budget. But when the service is only
//! *slow* (an emulator or an endpoint under a burst's load, a region having a
//! bad minute), every attempt is abandoned just before its answer would have
//! come, the operation fails with a timeout it did not need to, and a case
//! that had contained its instance ends `needs-human` over a read.
//!
//! So the first attempt keeps its class's budget ([`crate::client::timeout_config`])
//! and each retry doubles it, up to [`GROWTH_CAP`] times the first and never
//! past the operation budget: 3 s, 6 s, 12 s, 12 s, … for control-plane
//! calls. A hung request still costs only the first attempt's budget.
//!
//! The SDK reads an attempt's timeout once per attempt from its config, and
//! no interceptor hook runs between a timed-out attempt and the next one's
//! timer, so the budget is applied where the request is sent:
//! [`GrowingAttempts`] (an interceptor) widens the SDK's own attempt timeout
//! to the largest budget (it still bounds reading a response body) and marks
//! each attempt's request with its budget; [`growing_attempts_client`] wraps the
//! HTTP client and answers a request still unanswered when its budget runs
//! out with the same timeout error the SDK's own timer gives, which the retry
//! strategy treats as transient, as before.

use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use aws_smithy_types::timeout::TimeoutConfig;

/// The most an attempt's budget grows: this many times the first attempt's.
pub const GROWTH_CAP: u32 = 4;

/// The budget of attempt `attempt` (1 for the first) of a call whose first
/// attempt has `first`: doubled per retry, at most [`GROWTH_CAP`] times
/// `first`, and never more than `operation`, the whole call's budget.
pub fn attempt_budget(first: Duration, attempt: u32, operation: Option<Duration>) -> Duration {
    let doublings = attempt.saturating_sub(1).min(GROWTH_CAP.ilog2());
    let budget = first.saturating_mul(1 << doublings);
    operation.map_or(budget, |whole| budget.min(whole))
}

/// The first attempt's budget of the call under way, kept when the SDK's
/// attempt timeout is widened.
#[derive(Debug, Clone, Copy)]
struct FirstAttempt {
    budget: Duration,
    operation: Option<Duration>,
}

impl Storable for FirstAttempt {
    type Storer = StoreReplace<Self>;
}

/// One attempt's budget, carried by its request to [`growing_attempts_client`]'s connector.
#[derive(Debug, Clone, Copy)]
struct AttemptBudget(Duration);

/// The interceptor half (see the module documentation); on every client.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrowingAttempts;

impl Intercept for GrowingAttempts {
    fn name(&self) -> &'static str {
        "cordon.GrowingAttempts"
    }

    fn modify_before_retry_loop(
        &self,
        _context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(timeouts) = cfg.load::<TimeoutConfig>().cloned() else {
            return Ok(());
        };
        let Some(first) = timeouts.operation_attempt_timeout() else {
            return Ok(());
        };
        let operation = timeouts.operation_timeout();
        let widest = attempt_budget(first, u32::MAX, operation);
        let widened = timeouts
            .to_builder()
            .operation_attempt_timeout(widest)
            .build();
        let state = cfg.interceptor_state();
        state.store_put(FirstAttempt {
            budget: first,
            operation,
        });
        state.store_put(widened);
        Ok(())
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(first) = cfg.load::<FirstAttempt>().copied() else {
            return Ok(());
        };
        let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        let budget = attempt_budget(first.budget, attempt, first.operation);
        context.request_mut().add_extension(AttemptBudget(budget));
        Ok(())
    }
}

/// The HTTP client half (see the module documentation): `inner`, the client
/// the SDK would otherwise use, with each marked request's attempt abandoned
/// when its budget runs out.
pub fn growing_attempts_client(inner: SharedHttpClient) -> SharedHttpClient {
    crate::wrapped_http::wrapped(inner, |inner| {
        SharedHttpConnector::new(GrowingAttemptsConnector { inner })
    })
}

#[derive(Debug)]
struct GrowingAttemptsConnector {
    inner: SharedHttpConnector,
}

/// Why an attempt was abandoned, in the timeout error the SDK classifies.
#[derive(Debug, thiserror::Error)]
#[error("no answer within this attempt's budget of {0:?}; retried with a longer one")]
struct AttemptBudgetSpent(Duration);

impl HttpConnector for GrowingAttemptsConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let Some(AttemptBudget(budget)) = request.extension::<AttemptBudget>().copied() else {
            return self.inner.call(request);
        };
        let answer = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            match tokio::time::timeout(budget, answer).await {
                Ok(answer) => answer,
                Err(_) => Err(ConnectorError::timeout(Box::new(AttemptBudgetSpent(
                    budget,
                )))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_retry_doubles_the_budget_up_to_the_cap_and_the_operation_budget() {
        let first = Duration::from_secs(3);
        let whole = Some(Duration::from_secs(30));
        let budgets: Vec<u64> = (1..=6)
            .map(|n| attempt_budget(first, n, whole).as_secs())
            .collect();
        assert_eq!(budgets, [3, 6, 12, 12, 12, 12]);
        assert_eq!(
            attempt_budget(Duration::from_secs(120), 3, Some(Duration::from_secs(300))),
            Duration::from_secs(300)
        );
        assert_eq!(attempt_budget(first, 0, None), first);
        assert_eq!(attempt_budget(first, u32::MAX, None), first * GROWTH_CAP);
    }
}
