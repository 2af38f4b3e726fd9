//! Loading an artifact, as every command and the server do: from a path or from bytes,
//! refusing anything that is not a whole, honest, non-empty artifact.
//!
//! - A path that ends in `.lvc`, or any file that starts with the artifact magic, is an
//!   artifact: it must load and verify, whatever its length (a 0-byte or truncated `.lvc`
//!   is refused, never read as policy sources).
//! - An artifact whose embedded sources do not compile to its own program and policy
//!   hashes is refused, naming the policy: its bytecode could enforce `$9.00` while its
//!   sources and hashes say `$5.00`, and an auditor who follows a hash to the source would
//!   be deceived. Builds are reproducible, so the check is exact: the recompiled artifact
//!   must have the same id.
//! - An artifact with no policy governs nothing: refused unless the operator allows it.
//! - Given trust (`--trust`), an artifact must carry a signature by a trusted key (beside
//!   its file, or with its deploy): policy sources compiled on the spot have none, and are
//!   refused.

use super::artifact::{Artifact, ArtifactError, MAGIC};
use crate::base::source::{FileRole, SourceFile, SourceSet};
use std::path::Path;

/// Why an artifact was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {}", io_text(source))]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Artifact(#[from] ArtifactError),
    #[error(
        "the artifact holds no policy, so it would govern nothing: build it from policy files, or pass --allow-empty if that is meant"
    )]
    Empty,
    #[error("the artifact's embedded sources do not compile to its program: {0}")]
    Lies(String),
    #[error("{0}")]
    Untrusted(#[from] crate::base::trust::TrustError),
}

fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// A loader of the artifacts `deploy` events name.
pub(crate) type DeployLoader = dyn Fn(&Path) -> Result<Artifact, String> + Send + Sync;

/// What a loader accepts.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Accept an artifact with no policy.
    pub allow_empty: bool,
    /// Accept only artifacts signed by one of these keys. Given once per process (the
    /// command line or the server's config), so it lives as long as the process.
    pub trust: Option<&'static crate::base::trust::Trust>,
}

/// Why sources cannot be loaded under trust.
pub(crate) const SOURCES_UNSIGNED: &str = "policy sources carry no signature, and --trust accepts signed artifacts only: build a .lvc and sign it (lever build --sign KEY)";

/// Whether a path names an artifact (rather than policy sources): a `.lvc` file, or any
/// file that starts with the artifact magic.
pub fn is_artifact_path(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == "lvc") {
        return true;
    }
    let mut head = [0u8; 8];
    path.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .is_ok()
        && &head == MAGIC
}

/// Reads an artifact file and checks it whole.
pub(crate) fn load_file(path: &Path, options: LoadOptions) -> Result<Artifact, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let sig_path = crate::base::trust::signature_path(path);
    let signature = match options.trust {
        Some(_) => std::fs::read_to_string(&sig_path).ok(),
        None => None,
    };
    let place = sig_path.display().to_string();
    load_signed(bytes, signature.as_deref(), &place, options)
}

/// Checks an artifact's bytes whole: the hash, the body, the embedded sources against the
/// program, and that it holds a policy.
pub fn load_bytes(bytes: Vec<u8>, options: LoadOptions) -> Result<Artifact, LoadError> {
    load_signed(bytes, None, "signature", options)
}

/// [`load_bytes`], and under trust the signature (`place` says where it was looked for).
pub fn load_signed(
    bytes: Vec<u8>,
    signature: Option<&str>,
    place: &str,
    options: LoadOptions,
) -> Result<Artifact, LoadError> {
    if bytes.is_empty() {
        return Err(ArtifactError::Corrupt("the file is empty".into()).into());
    }
    let mut artifact = Artifact::from_bytes(bytes)?;
    if let Some(trust) = options.trust {
        artifact.signer = Some(trust.verify(&artifact.id, signature, place)?);
    }
    verify_sources(&artifact)?;
    if artifact.body.program.policies.is_empty() && !options.allow_empty {
        return Err(LoadError::Empty);
    }
    Ok(artifact)
}

/// Recompiles the artifact's embedded sources and requires the very same artifact.
pub(crate) fn verify_sources(artifact: &Artifact) -> Result<(), LoadError> {
    let mut set = SourceSet::default();
    let mut stored = Vec::new();
    for entry in &artifact.body.sources {
        let role = entry
            .module
            .clone()
            .map_or(FileRole::User, FileRole::Stdlib);
        let path = match entry.path.strip_prefix("<embedded>/") {
            Some(rest) => rest.to_string(),
            None => {
                stored.push(entry.path.clone());
                entry.path.clone()
            }
        };
        set.add(SourceFile::new(path, entry.text.clone(), role));
    }
    let checked = crate::check::check(set);
    if checked.has_errors() {
        let n = checked.diagnostics.iter().filter(|d| d.is_error()).count();
        return Err(LoadError::Lies(format!(
            "they do not check ({n} errors), so no build of them made this program"
        )));
    }
    let rebuilt = super::build(&checked, &stored).map_err(|e| LoadError::Lies(e.to_string()))?;
    if rebuilt.id == artifact.id {
        return Ok(());
    }
    Err(LoadError::Lies(first_difference(artifact, &rebuilt)))
}

/// Names where an artifact differs from what its sources compile to.
fn first_difference(artifact: &Artifact, rebuilt: &Artifact) -> String {
    let (ours, theirs) = (&artifact.body.program, &rebuilt.body.program);
    for (p, q) in ours.policies.iter().zip(&theirs.policies) {
        if p.name != q.name || p.hash != q.hash {
            return format!(
                "policy `{}`: its hash is {}, its source compiles to {}",
                p.name, p.hash, q.hash
            );
        }
        if p != q {
            return format!(
                "policy `{}`: its limits, rules or actions differ from what its source compiles to (same hash {})",
                p.name, p.hash
            );
        }
    }
    if ours.policies.len() != theirs.policies.len() {
        return format!(
            "it holds {} policies, its sources {}",
            ours.policies.len(),
            theirs.policies.len()
        );
    }
    format!(
        "its program differs from what the sources compile to ({} is not {}): the monitors, fields or code were changed",
        artifact.id, rebuilt.id
    )
}

/// Loads what a `deploy` names: an artifact file, or policy sources compiled in memory;
/// errors as text, for a `bad_artifact` rejection.
pub(crate) fn load_path(path: &Path, options: LoadOptions) -> Result<Artifact, String> {
    if is_artifact_path(path) {
        return load_file(path, options).map_err(|e| match e {
            LoadError::Io { .. } => e.to_string(),
            _ => format!("{}: {e}", path.display()),
        });
    }
    if options.trust.is_some() {
        return Err(format!("{}: {SOURCES_UNSIGNED}", path.display()));
    }
    let files =
        crate::base::source::expand_paths(&[path.to_path_buf()]).map_err(|e| e.to_string())?;
    let sources = crate::base::source::load_files(&files).map_err(|e| e.to_string())?;
    let checked = crate::check::check(sources);
    if checked.has_errors() {
        let n = checked.diagnostics.iter().filter(|d| d.is_error()).count();
        return Err(format!("{} does not check ({n} errors)", path.display()));
    }
    let stored = super::artifact::stored_paths(&files);
    let artifact = super::build(&checked, &stored).map_err(|e| e.to_string())?;
    if artifact.body.program.policies.is_empty() && !options.allow_empty {
        return Err(format!("{}: {}", path.display(), LoadError::Empty));
    }
    Ok(artifact)
}

/// A loader for the artifacts `deploy` events name.
pub(crate) fn deploy_loader(options: LoadOptions) -> Box<DeployLoader> {
    Box::new(move |path| load_path(path, options))
}
