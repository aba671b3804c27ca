//! cordon's AWS side: the actions, client set-up, the one call path to AWS
//! (operations table, rate limits, call recorder) and the S3 journal store.

pub mod accounts;
pub mod actions;
pub mod attempts;
pub mod call;
pub mod client;
#[cfg(feature = "crash-hooks")]
mod crash;
pub mod errors;
pub mod evidence;
pub mod evidence_bucket;
pub mod faults;
pub mod guardduty;
pub mod manifest;
pub mod ops;
pub mod pause;
pub mod probe;
pub mod protected;
pub mod ratelimit;
pub mod read_cache;
pub mod recorder;
pub mod s3_journal;
pub mod signing;
pub mod task_token;
mod wrapped_http;
