//! Every integration test of this crate in one test binary: each file
//! here is a module of it (`cargo test --test suite <file>::`). One
//! binary links the AWS SDK crates once instead of once per file, which
//! keeps a debug build's target dir gigabytes smaller and its links few.

mod call_recorder;
mod ec2_attachments;
mod ec2_isolation;
mod evidence;
mod fast_path;
mod faults;
mod fixture_builder;
mod iam_credentials;
mod in_flight;
mod infra_deploy;
mod lambda_handler;
mod lifecycle;
mod memory_capture;
mod permissions_proven;
mod remediation;
mod s3_claims;
mod s3_lease;
mod smoke;
mod step_functions;
