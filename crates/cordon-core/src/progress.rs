//! Progress of waits, for a terminal to show live.
//!
//! Anything that waits (approval, snapshot completion, a rate-limit token,
//! AWS throttling back-off) emits `tracing` events with target [`TARGET`]:
//! a `key` field naming what waits (one line or bar per key), the message
//! saying how far it is, and `done = true` on the last event of the wait.
//! The CLI renders them (a spinner per key on a terminal, plain lines
//! otherwise, nothing in JSON modes); other front doors ignore them, and the
//! ordinary log filters never show them.

/// The `tracing` target of progress events.
pub const TARGET: &str = "cordon::progress";
