//! Checkpoints as C2SP signed notes (`tlog-checkpoint`): the origin line, the tree size in
//! decimal, the root hash in base64, each ending in a newline; then a blank line and one
//! signature line per signer, `— <key name> <base64(key hash ‖ signature)>`. The key
//! name is the key id; the key hash is the first 4 bytes of SHA-256 of the key name, a
//! newline, the byte 0x01 (Ed25519) and the public key. A witness cosigns by adding its
//! own signature line over the same text.

use crate::base::trust::{PublicKey, SecretKey, Trust};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

/// A tree head: the log's origin, its size and its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: [u8; 32],
}

fn key_hash(name: &str, key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n\x01");
    h.update(key);
    let d: [u8; 32] = h.finalize().into();
    let [a, b, c, e, ..] = d;
    [a, b, c, e]
}

impl Checkpoint {
    /// The signed part of the note.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// A signature line of `key` over `body`.
    pub fn signature_line(body: &str, key: &SecretKey) -> String {
        let public = key.public();
        let mut blob = key_hash(&public.id, &public.bytes()).to_vec();
        blob.extend_from_slice(&key.sign_bytes(body.as_bytes()));
        format!("— {} {}\n", public.id, B64.encode(blob))
    }

    /// The note, signed by `key` (or unsigned: the body alone).
    pub fn note(&self, key: Option<&SecretKey>) -> String {
        let body = self.body();
        match key {
            Some(k) => format!("{body}\n{}", Checkpoint::signature_line(&body, k)),
            None => body,
        }
    }

    /// Reads a note: the checkpoint and the signature lines after its body.
    pub fn parse(note: &str) -> Result<(Checkpoint, Vec<String>), String> {
        let (body, sigs) = note
            .split_once("\n\n")
            .unwrap_or((note.trim_end_matches('\n'), ""));
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root, ..] = lines[..] else {
            return Err("a checkpoint has an origin, a size and a root, a line each".into());
        };
        let size = size
            .parse()
            .map_err(|_| format!("tree size {size:?} is not a number"))?;
        let root: [u8; 32] = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| format!("root {root:?} is not a base64 SHA-256 hash"))?;
        let checkpoint = Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        };
        Ok((checkpoint, sigs.lines().map(str::to_string).collect()))
    }

    /// The ids of the trusted keys whose signatures on `note` verify; an error when none
    /// does.
    pub fn verify(note: &str, trust: &Trust) -> Result<(Checkpoint, Vec<String>), String> {
        let (checkpoint, lines) = Checkpoint::parse(note)?;
        let body = checkpoint.body();
        let signers: Vec<String> = lines
            .iter()
            .filter_map(|line| trusted_signer(&body, line, trust.keys()))
            .collect();
        if signers.is_empty() {
            return Err(if lines.is_empty() {
                "the checkpoint is not signed".into()
            } else {
                "no signature on the checkpoint is by a trusted key, or none verifies".into()
            });
        }
        Ok((checkpoint, signers))
    }
}

fn trusted_signer(body: &str, line: &str, keys: &[PublicKey]) -> Option<String> {
    let rest = line.strip_prefix("— ")?;
    let (name, blob) = rest.split_once(' ')?;
    let blob = B64.decode(blob.trim()).ok()?;
    let (hash, sig) = blob.split_at_checked(4)?;
    let sig: [u8; 64] = sig.try_into().ok()?;
    let key = keys.iter().find(|k| k.id == name)?;
    (hash == key_hash(name, &key.bytes()) && key.verify_bytes(body.as_bytes(), &sig))
        .then(|| name.to_string())
}
