//! etcd-health
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod balance;
pub mod checker;
pub mod config;
mod error;
pub mod health;
mod passive;
mod probe;
pub mod proto;

pub use balance::{Balance, HealthLayer, MakeMember, TonicConnector};
pub use checker::HealthChecker;
pub use error::Error;
