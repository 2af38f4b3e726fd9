//! The artifact: one content-hashed file holding a compiled policy set and its sources.
//!
//! Layout (DESIGN §5): 8 bytes of magic `LEVERLVC`, the format version as a little-endian
//! `u32`, the 32-byte blake3 hash, then the body encoded with postcard. The hash covers
//! magic, version and body; the artifact's id is `blake3:<hex>` of it. Loading recomputes
//! the hash and refuses a file whose stored hash differs, naming both.

use super::bytecode::Program;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"LEVERLVC";
pub const FORMAT_VERSION: u32 = 1;

/// The format of an artifact with budgets across runs: version 1's body followed by the
/// budget table (postcard). A build that reads only version 1 refuses it by name rather
/// than judging budgets as limits of each run; an artifact without budgets stays version 1,
/// byte for byte.
pub const BUDGETS_FORMAT_VERSION: u32 = 2;

/// The budgets of an artifact's limits: (policy, limit of that policy, budget).
type BudgetTable = Vec<(u16, u16, crate::base::lang::Budget)>;
const HEADER_LEN: usize = 8 + 4 + 32;

/// A source file as stored: path relative to the inputs' longest common directory, `/`
/// separated; embedded stdlib modules under `<embedded>/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceEntry {
    pub path: String,
    /// The stdlib module the file is, if any.
    pub module: Option<String>,
    pub text: String,
}

/// Everything the hash covers after the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactBody {
    pub sources: Vec<SourceEntry>,
    pub program: Program,
}

/// A verified artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// `blake3:<hex>`.
    pub id: String,
    pub body: ArtifactBody,
    /// The file's bytes, exactly as hashed and stored.
    pub bytes: Vec<u8>,
    /// The id of the trusted key whose signature it was loaded with (outside the hashed
    /// bytes: see [`crate::base::trust`]); `None` when no trust was asked for.
    pub signer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    #[error("not a Lever artifact (bad magic)")]
    BadMagic,
    #[error(
        "artifact format version {found} is not supported (this build reads versions {FORMAT_VERSION} and {BUDGETS_FORMAT_VERSION})"
    )]
    Version { found: u32 },
    #[error("artifact hash mismatch: the file says {stored}, its contents hash to {computed}")]
    HashMismatch { stored: String, computed: String },
    #[error("artifact body is corrupt: {0}")]
    Corrupt(String),
}

fn hash_of(version: u32, body: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update(MAGIC);
    h.update(&version.to_le_bytes());
    h.update(body);
    h.finalize()
}

fn id_of(hash: &[u8]) -> String {
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("blake3:{hex}")
}

impl Artifact {
    /// Encodes and hashes a body.
    pub fn new(body: ArtifactBody) -> Result<Artifact, ArtifactError> {
        let corrupt = |e: postcard::Error| ArtifactError::Corrupt(e.to_string());
        let mut encoded = postcard::to_allocvec(&body).map_err(corrupt)?;
        let budgets = budget_table(&body.program);
        let version = if budgets.is_empty() {
            FORMAT_VERSION
        } else {
            encoded.extend(postcard::to_allocvec(&budgets).map_err(corrupt)?);
            BUDGETS_FORMAT_VERSION
        };
        let hash = hash_of(version, &encoded);
        let mut bytes = Vec::with_capacity(HEADER_LEN + encoded.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(hash.as_bytes());
        bytes.extend_from_slice(&encoded);
        Ok(Artifact {
            id: id_of(hash.as_bytes()),
            body,
            bytes,
            signer: None,
        })
    }

    /// The format version the artifact's header names.
    pub fn format_version(&self) -> u32 {
        self.bytes
            .get(8..12)
            .and_then(|v| v.try_into().ok())
            .map_or(FORMAT_VERSION, u32::from_le_bytes)
    }

    /// Reads and verifies an artifact's bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Artifact, ArtifactError> {
        let (Some(magic), Some(version), Some(stored), Some(body)) = (
            bytes.get(..8),
            bytes.get(8..12),
            bytes.get(12..HEADER_LEN),
            bytes.get(HEADER_LEN..),
        ) else {
            return Err(ArtifactError::BadMagic);
        };
        if magic != MAGIC {
            return Err(ArtifactError::BadMagic);
        }
        let found = u32::from_le_bytes(version.try_into().map_err(|_| ArtifactError::BadMagic)?);
        if found != FORMAT_VERSION && found != BUDGETS_FORMAT_VERSION {
            return Err(ArtifactError::Version { found });
        }
        let computed = hash_of(found, body);
        if computed.as_bytes() != stored {
            return Err(ArtifactError::HashMismatch {
                stored: id_of(stored),
                computed: id_of(computed.as_bytes()),
            });
        }
        let corrupt = |e: postcard::Error| ArtifactError::Corrupt(e.to_string());
        let (mut decoded, rest): (ArtifactBody, &[u8]) =
            postcard::take_from_bytes(body).map_err(corrupt)?;
        if found == BUDGETS_FORMAT_VERSION {
            let budgets: BudgetTable = postcard::from_bytes(rest).map_err(corrupt)?;
            set_budgets(&mut decoded.program, budgets)?;
        }
        Ok(Artifact {
            id: id_of(computed.as_bytes()),
            body: decoded,
            bytes,
            signer: None,
        })
    }
}

fn budget_table(program: &Program) -> BudgetTable {
    let mut table = Vec::new();
    for (p, policy) in program.policies.iter().enumerate() {
        for (l, limit) in policy.limits.iter().enumerate() {
            if let (Some(b), Ok(p), Ok(l)) = (&limit.budget, u16::try_from(p), u16::try_from(l)) {
                table.push((p, l, b.clone()));
            }
        }
    }
    table
}

fn set_budgets(program: &mut Program, budgets: BudgetTable) -> Result<(), ArtifactError> {
    if budgets.is_empty() {
        return Err(ArtifactError::Corrupt("an empty budget table".into()));
    }
    for (p, l, budget) in budgets {
        let limit = program
            .policies
            .get_mut(usize::from(p))
            .and_then(|policy| policy.limits.get_mut(usize::from(l)))
            .ok_or_else(|| ArtifactError::Corrupt(format!("a budget of no limit ({p}, {l})")))?;
        limit.budget = Some(budget);
    }
    Ok(())
}

/// Paths relative to the longest common directory of `files` (made absolute first),
/// with `/` separators, so that the same sources named from anywhere store the same paths.
pub fn stored_paths(files: &[PathBuf]) -> Vec<String> {
    let absolute: Vec<PathBuf> = files
        .iter()
        .map(|f| {
            std::fs::canonicalize(f)
                .unwrap_or_else(|_| std::path::absolute(f).unwrap_or_else(|_| f.clone()))
        })
        .collect();
    let mut common: Option<PathBuf> = None;
    for path in &absolute {
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        common = Some(match common {
            None => dir,
            Some(c) => common_prefix(&c, &dir),
        });
    }
    let base = common.unwrap_or_default();
    absolute
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(&base).unwrap_or(p);
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            parts.join("/")
        })
        .collect()
}

fn common_prefix(a: &Path, b: &Path) -> PathBuf {
    a.components()
        .zip(b.components())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect()
}
