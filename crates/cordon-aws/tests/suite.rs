//! Every integration test of this crate in one test binary: each file
//! here is a module of it (`cargo test --test suite <file>::`). One
//! binary links the AWS SDK crates once instead of once per file, which
//! keeps a debug build's target dir gigabytes smaller and its links few.

// Support shared by the modules below.
#[path = "common/mod.rs"]
mod common;
#[path = "../../cordon-core/tests/support/golden.rs"]
mod golden;

mod accounts;
mod detective;
mod guardduty;
mod journal_compat;
mod manifest_format;
mod notify_limits;
mod probe_simulator;
