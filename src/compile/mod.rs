//! Compile: lower a checked policy set to bytecode and package it as a hashed artifact.
//!
//! Owns the bytecode (`bytecode`), lowering (`lower`), policy meaning hashes
//! (`meaning`), the artifact format ([`artifact`]) and its disassembly ([`disasm`]).
//! Reads only the checked program and the source texts; never the AST.

pub mod artifact;
pub(crate) mod bytecode;
pub mod disasm;
pub mod load;
pub(crate) mod lower;
pub(crate) mod meaning;
pub(crate) mod merge;

use crate::base::source::FileRole;
use crate::check::Checked;
use artifact::{Artifact, ArtifactBody, ArtifactError, SourceEntry};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the policy set has errors")]
    Errors,
    #[error(transparent)]
    Lower(#[from] lower::LowerError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
}

/// Builds an artifact from a checked set. `stored_paths` names the set's user-given files
/// (the first files of `checked.sources`, in order) as the artifact should record them.
pub fn build(checked: &Checked, stored_paths: &[String]) -> Result<Artifact, BuildError> {
    let program = checked.program.as_ref().ok_or(BuildError::Errors)?;
    let bytecode = lower::lower(program)?;
    let mut sources = Vec::new();
    for (i, file) in checked.sources.files.iter().enumerate() {
        let module = match &file.role {
            FileRole::Stdlib(m) => Some(m.clone()),
            FileRole::User => None,
        };
        let path = match stored_paths.get(i) {
            Some(p) => p.clone(),
            None => format!("<embedded>/{}", file.path),
        };
        sources.push(SourceEntry {
            path,
            module,
            text: file.text.clone(),
        });
    }
    Ok(Artifact::new(ArtifactBody {
        sources,
        program: bytecode,
    })?)
}
