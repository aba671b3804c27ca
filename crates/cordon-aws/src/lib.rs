//! cordon's AWS side: the actions, client set-up, rate limits and the S3 journal store.

pub mod actions;
pub mod client;
pub mod errors;
pub mod evidence;
pub mod evidence_bucket;
pub mod guardduty;
pub mod manifest;
pub mod ratelimit;
pub mod s3_journal;
