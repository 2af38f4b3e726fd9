//! Lever: a policy compiler and runtime that governs LLM agent runs.
//!
//! One module per pipeline stage, on floors (`docs/architecture.md`; `tests/it/tidy.rs`
//! holds them): [`base`] (arithmetic, sources, diagnostics, the language's shared words)
//! → [`syntax`], [`stdlib`], [`evidence`] → [`check`] → [`compile`] → [`vm`] → [`jit`] →
//! [`runtime`] → [`alerts`], [`author`] → the faces, [`server`] and [`cli`]. What is `pub`
//! is the library's face (what the binary, tests, benches and docs use); the rest is
//! `pub(crate)`.

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
