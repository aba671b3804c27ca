//! Test hook for crash-safety tests (feature `crash-hooks`, never in a
//! release build): `CORDON_TEST_CRASH_AFTER_CALL=ssm:SendCommand` aborts the
//! process right after the first call of that operation AWS answered, before
//! the caller can journal what it did. The journal's own hook
//! (`CORDON_TEST_CRASH_AFTER_RECORD`) only lands between records; this one
//! lands between a call taking effect and its record.

use std::sync::OnceLock;

use crate::faults::operation_name;
use crate::ops::Op;

/// The operation named by `CORDON_TEST_CRASH_AFTER_CALL`, read once.
fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var("CORDON_TEST_CRASH_AFTER_CALL").ok())
        .as_deref()
}

/// Aborts the process when `op` is the armed operation: like a kill -9 right
/// after the answer arrived (no destructors, no flush).
pub(crate) fn after_answered(op: &Op) {
    if armed().is_some_and(|name| name == operation_name(op)) {
        std::process::abort();
    }
}
