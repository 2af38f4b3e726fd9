//! The floor every stage stands on: exact arithmetic (`num`), source files and spans
//! (`source`), diagnostics as data (`diag`), the words the language and its artifact
//! share (`lang`), how values and times are written (`format`), and small hashes (`hash`).
//!
//! Knows nothing of any stage above it.

pub mod diag;
pub mod format;
pub mod hash;
pub mod lang;
pub mod num;
pub mod source;
