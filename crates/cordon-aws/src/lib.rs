//! cordon's AWS side: the actions, client set-up, rate limits and the S3 journal store.

pub mod actions;
pub mod client;
pub mod errors;
pub mod evidence;
pub mod ratelimit;
