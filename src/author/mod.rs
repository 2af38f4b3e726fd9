//! Author tooling: what policy authors and reviewers run besides `check` and `build`:
//! [`fmt`] (one canonical layout), [`diff`] (what changed between two artifacts) and
//! [`explain`] (why a decision came out as it did).

pub mod diff;
pub mod explain;
pub mod fmt;
