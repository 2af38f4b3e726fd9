//! `lever check --against OLD.lvc`: a policy whose meaning changed since a previous
//! artifact but whose `version` did not is a warning, as a semver check warns of a changed
//! API under an unchanged version. Auditors cite a policy by name and version; two
//! meanings under one version would make that citation ambiguous.

use crate::base::diag::{Code, Diagnostic};
use crate::check::Checked;
use crate::compile::artifact::Artifact;

/// The warnings for `new` (built from `checked`) against `old`: one per policy of both
/// whose hash differs under the same version.
pub fn unbumped(checked: &Checked, new: &Artifact, old: &Artifact) -> Vec<Diagnostic> {
    let Some(program) = &checked.program else {
        return Vec::new();
    };
    let old_policies = &old.body.program.policies;
    new.body
        .program
        .policies
        .iter()
        .filter_map(|p| {
            let before = old_policies.iter().find(|o| o.name == p.name)?;
            if before.version != p.version || before.hash == p.hash {
                return None;
            }
            let span = program.policies.iter().find(|h| h.name == p.name)?.span;
            Some(
                Diagnostic::new(
                    Code::VersionNotBumped,
                    span,
                    format!(
                        "policy `{}` changed since the previous artifact but is still version {}",
                        p.name, p.version
                    ),
                )
                .with_help(format!(
                    "raise its version to {} so that decisions cite which meaning judged them \
                     (`lever diff` lists what changed)",
                    p.version.saturating_add(1)
                )),
            )
        })
        .collect()
}
