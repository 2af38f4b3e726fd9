//! Author tooling: what policy authors and reviewers run besides `check` and `build`:
//! [`fmt`] (one canonical layout), `diff` (what changed between two artifacts),
//! `explain` (why a decision came out as it did) and `testing` (running a set's
//! policy tests and reporting them).

pub(crate) mod diff;
pub(crate) mod explain;
pub mod fmt;
pub(crate) mod lsp;
pub(crate) mod testing;
pub mod versions;
