//! Lever: a policy compiler and runtime that governs LLM agent runs.
//!
//! The pipeline, one module per stage: [`syntax`] (lex, parse) → [`check`] (resolve,
//! types, clause rules, analysis) → (compile, vm, runtime, evidence: later stages).
//! [`diag`] carries findings between stages; [`num`] is the one definition of arithmetic.

#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod alerts;
pub mod author;
pub mod base;
pub mod check;
pub mod cli;
pub mod compile;
pub mod evidence;
pub mod jit;
pub mod runtime;
pub mod server;
pub mod stdlib;
pub mod syntax;
pub mod vm;

/// The floor's parts most callers use, at the crate's root.
pub use base::{diag, num, source};
