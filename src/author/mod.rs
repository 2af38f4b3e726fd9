//! Author tooling: what policy authors and reviewers run besides `check` and `build`:
//! [`diff`] (what changed between two artifacts) and [`explain`] (why a decision came out
//! as it did).

pub mod diff;
pub mod explain;
