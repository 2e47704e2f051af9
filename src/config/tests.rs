//! Unit and property tests of the config module.
