//! etcd-health
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod config;
pub mod proto;
#[cfg(feature = "testing")]
pub mod testing;
