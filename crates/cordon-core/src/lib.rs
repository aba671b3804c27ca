//! cordon's pure domain: findings, playbooks, routing, planning, the journal
//! and the executor. No AWS SDK here: the AWS side implements this crate's
//! traits in `cordon-aws`.

pub mod action;
pub mod asl;
pub mod claims;
pub mod executor;
pub mod finding;
pub mod fleet;
pub mod format;
pub mod ids;
pub mod journal;
pub mod local_store;
pub mod plan;
pub mod playbook;
pub mod policy;
pub mod progress;
pub mod provenance;
pub mod route;
pub mod summary;
pub mod text;
pub mod validate;
pub mod yaml;
