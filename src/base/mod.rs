//! The floor every stage stands on: exact arithmetic (`num`), source files and spans
//! (`source`), diagnostics as data (`diag`), the words the language and its artifact
//! share (`lang`), how values and times are written (`format`), small hashes (`hash`), and the wall clock operations read (`wall`).
//!
//! Knows nothing of any stage above it.

pub mod diag;
pub(crate) mod format;
pub mod hash;
pub(crate) mod lang;
pub mod num;
pub mod source;
pub mod trust;
pub(crate) mod wall;
