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
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    #[error("not a Lever artifact (bad magic)")]
    BadMagic,
    #[error(
        "artifact format version {found} is not supported (this build reads version {FORMAT_VERSION})"
    )]
    Version { found: u32 },
    #[error("artifact hash mismatch: the file says {stored}, its contents hash to {computed}")]
    HashMismatch { stored: String, computed: String },
    #[error("artifact body is corrupt: {0}")]
    Corrupt(String),
}

fn hash_of(body: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update(MAGIC);
    h.update(&FORMAT_VERSION.to_le_bytes());
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
        let encoded =
            postcard::to_allocvec(&body).map_err(|e| ArtifactError::Corrupt(e.to_string()))?;
        let hash = hash_of(&encoded);
        let mut bytes = Vec::with_capacity(HEADER_LEN + encoded.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(hash.as_bytes());
        bytes.extend_from_slice(&encoded);
        Ok(Artifact {
            id: id_of(hash.as_bytes()),
            body,
            bytes,
        })
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
        if found != FORMAT_VERSION {
            return Err(ArtifactError::Version { found });
        }
        let computed = hash_of(body);
        if computed.as_bytes() != stored {
            return Err(ArtifactError::HashMismatch {
                stored: id_of(stored),
                computed: id_of(computed.as_bytes()),
            });
        }
        let decoded: ArtifactBody =
            postcard::from_bytes(body).map_err(|e| ArtifactError::Corrupt(e.to_string()))?;
        Ok(Artifact {
            id: id_of(computed.as_bytes()),
            body: decoded,
            bytes,
        })
    }
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
