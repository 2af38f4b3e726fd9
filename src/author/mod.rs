//! Author tooling: what policy authors and reviewers run besides `check` and `build`:
//! [`diff`] (what changed between two artifacts).

pub mod diff;
