//! Signed artifacts: Ed25519 keys as files, a detached signature over an artifact's id,
//! and the trust a runtime is given (the public keys whose signatures it accepts).
//!
//! - A secret key file holds `lever-ed25519-secret-v1 <base64 seed>`; its public key file
//!   `lever-ed25519-public-v1 <key id> <base64 key>`. The key id is `ed25519:` and the
//!   first 16 hex digits of the BLAKE3 hash of the public key.
//! - A signature is one line, kept beside the artifact as `NAME.lvc.sig` (or sent as the
//!   `Lever-Artifact-Signature` header of a deploy): `lever-sig-v1 <artifact id> <key id>
//!   <base64 signature>`. It signs `lever artifact signature v1\n` followed by the
//!   artifact id. The id is the hash of the artifact's bytes, checked on every load, so a
//!   signature covers every byte, and it stays outside them: signing never changes an id.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use std::path::{Path, PathBuf};

const SECRET_TAG: &str = "lever-ed25519-secret-v1";
const PUBLIC_TAG: &str = "lever-ed25519-public-v1";
const SIGNATURE_TAG: &str = "lever-sig-v1";
/// What a signature signs, before the artifact id (domain separation).
const CONTEXT: &[u8] = b"lever artifact signature v1\n";

/// Why an artifact is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error(
        "the artifact is not signed (no {0}): a runtime given --trust loads signed artifacts only"
    )]
    Unsigned(String),
    #[error("the artifact is signed by key {0}, which is not trusted")]
    UnknownKey(String),
    #[error("the signature by key {0} does not verify: the signature or the artifact was changed")]
    BadSignature(String),
    #[error("the signature is for artifact {signed}, not for this one ({artifact})")]
    OtherArtifact { signed: String, artifact: String },
    #[error("{0}")]
    Malformed(String),
}

/// A key pair to sign with.
pub struct SecretKey(SigningKey);

/// A public key, and its id.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub id: String,
    key: VerifyingKey,
}

/// The id of a public key: `ed25519:` and 16 hex digits of its BLAKE3 hash.
fn key_id(key: &VerifyingKey) -> String {
    let hash = blake3::hash(key.as_bytes());
    format!("ed25519:{}", &crate::base::hash::hex(hash.as_bytes())[..16])
}

impl SecretKey {
    /// A new key from the operating system's randomness.
    pub fn generate() -> Result<SecretKey, String> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| format!("no randomness: {e}"))?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    pub fn read(path: &Path) -> Result<SecretKey, String> {
        SecretKey::read_text(&read(path)?)
            .ok_or_else(|| format!("{}: not a lever secret key", path.display()))
    }

    fn read_text(text: &str) -> Option<SecretKey> {
        let [SECRET_TAG, seed] = text.split_whitespace().collect::<Vec<_>>()[..] else {
            return None;
        };
        Some(SecretKey(SigningKey::from_bytes(&decode::<32>(seed)?)))
    }

    /// The secret key file's text.
    pub fn to_text(&self) -> String {
        format!("{SECRET_TAG} {}\n", B64.encode(self.0.to_bytes()))
    }

    pub fn public(&self) -> PublicKey {
        let key = self.0.verifying_key();
        PublicKey {
            id: key_id(&key),
            key,
        }
    }

    /// An Ed25519 signature of `message`.
    pub fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// The signature line of an artifact id.
    pub fn sign(&self, artifact_id: &str) -> String {
        let sig = self.0.sign(&message(artifact_id));
        format!(
            "{SIGNATURE_TAG} {artifact_id} {} {}\n",
            self.public().id,
            B64.encode(sig.to_bytes())
        )
    }
}

impl PublicKey {
    /// The public key file's text.
    pub fn to_text(&self) -> String {
        format!(
            "{PUBLIC_TAG} {} {}\n",
            self.id,
            B64.encode(self.key.as_bytes())
        )
    }

    /// Whether `signature` is this key's over `message`.
    pub fn verify_bytes(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        self.key.verify(message, &sig).is_ok()
    }

    /// The key's 32 bytes.
    pub fn bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    fn parse(text: &str) -> Option<PublicKey> {
        let [PUBLIC_TAG, id, key] = text.split_whitespace().collect::<Vec<_>>()[..] else {
            return None;
        };
        let key = VerifyingKey::from_bytes(&decode::<32>(key)?).ok()?;
        (key_id(&key) == id).then(|| PublicKey {
            id: id.to_string(),
            key,
        })
    }
}

fn message(artifact_id: &str) -> Vec<u8> {
    [CONTEXT, artifact_id.as_bytes()].concat()
}

fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    B64.decode(text).ok()?.try_into().ok()
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Where an artifact file's signature is kept: beside it, `NAME.lvc.sig`.
pub fn signature_path(artifact: &Path) -> PathBuf {
    let mut name = artifact.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// The public keys a runtime accepts signatures of.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    keys: Vec<PublicKey>,
}

impl Trust {
    /// The keys of public key files, and of the `*.pub` files of directories.
    pub fn load(paths: &[PathBuf]) -> Result<Trust, String> {
        let mut keys = Vec::new();
        for path in paths {
            let files = if path.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "pub"))
                    .collect();
                files.sort();
                files
            } else {
                vec![path.clone()]
            };
            for file in files {
                let key = PublicKey::parse(&read(&file)?)
                    .ok_or_else(|| format!("{}: not a lever public key", file.display()))?;
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err("--trust names no public key".into());
        }
        Ok(Trust { keys })
    }

    /// The id of the trusted key whose signature `line` is, over `artifact_id`.
    pub fn verify(
        &self,
        artifact_id: &str,
        line: Option<&str>,
        place: &str,
    ) -> Result<String, TrustError> {
        let line = line.ok_or_else(|| TrustError::Unsigned(place.to_string()))?;
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [SIGNATURE_TAG, signed, id, sig] = parts[..] else {
            return Err(TrustError::Malformed(format!(
                "{place} is not a lever signature"
            )));
        };
        if signed != artifact_id {
            return Err(TrustError::OtherArtifact {
                signed: signed.into(),
                artifact: artifact_id.into(),
            });
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| TrustError::UnknownKey(id.into()))?;
        let sig = decode::<64>(sig).ok_or_else(|| TrustError::BadSignature(id.into()))?;
        key.key
            .verify(
                &message(artifact_id),
                &ed25519_dalek::Signature::from_bytes(&sig),
            )
            .map_err(|_| TrustError::BadSignature(id.into()))?;
        Ok(key.id.clone())
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_for_its_artifact_and_key_only() {
        let key = SecretKey::generate().unwrap();
        let other = SecretKey::generate().unwrap();
        let trust = Trust {
            keys: vec![PublicKey::parse(&key.public().to_text()).unwrap()],
        };
        let line = key.sign("blake3:aa");
        assert_eq!(
            trust.verify("blake3:aa", Some(&line), "x"),
            Ok(key.public().id)
        );
        assert!(matches!(
            trust.verify("blake3:bb", Some(&line), "x"),
            Err(TrustError::OtherArtifact { .. })
        ));
        assert!(matches!(
            trust.verify("blake3:aa", Some(&other.sign("blake3:aa")), "x"),
            Err(TrustError::UnknownKey(_))
        ));
        assert!(matches!(
            trust.verify("blake3:aa", None, "x"),
            Err(TrustError::Unsigned(_))
        ));
        // A signature of another artifact relabelled for this one does not verify.
        let forged = key.sign("blake3:bb").replace("blake3:bb", "blake3:aa");
        assert!(matches!(
            trust.verify("blake3:aa", Some(&forged), "x"),
            Err(TrustError::BadSignature(_))
        ));
        let secret = SecretKey::read_text(&key.to_text()).unwrap();
        assert_eq!(secret.public().id, key.public().id);
    }
}
