//! Every integration test of this crate in one test binary: each file
//! here is a module of it (`cargo test --test suite <file>::`). One
//! binary links the AWS SDK crates once instead of once per file, which
//! keeps a debug build's target dir gigabytes smaller and its links few.

// Support shared by the modules below.
#[path = "emulator_proxy/mod.rs"]
mod emulator_proxy;
#[path = "../../cordon-core/tests/support/golden.rs"]
mod golden;
#[path = "support/schema_check.rs"]
mod schema_check;

mod access_denied;
mod burst;
mod containment;
mod credentials;
mod defaults;
mod doctor;
mod embedded_playbooks;
mod export_asl;
mod export_infra;
mod fault_matrix;
mod gameday;
mod gameday_aws;
mod hostile;
mod json_live;
mod json_output;
mod least_privilege;
mod policy;
mod remediation;
mod report;
mod shell;
mod task_token;
mod trust;
