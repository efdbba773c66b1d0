//! Detached Ed25519 signatures in minisign's format, so an examiner can check a pack with the
//! stock `minisign -Vm tagmanifest-sha256.txt -p govlake.pub` as well as `govlake verify`.
//! Signatures are of the BLAKE2b-512 hash of the file (minisign's `ED` algorithm) with a
//! trusted comment that carries no clock: the same pack and key give the same signature.
//!
//! The secret key file is govlake's own (minisign's is password-encrypted): an untrusted
//! comment line and one base64 line of `Ed` ‖ key id (8 bytes) ‖ Ed25519 seed (32 bytes).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use blake2::Digest as _;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};

use super::{Error, Result};

/// A signing key with its minisign key id.
pub struct SecretKey {
    key_id: [u8; 8],
    key: SigningKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({}, <redacted>)", key_id_text(&self.key_id))
    }
}

/// A public key with its minisign key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// minisign key id.
    pub key_id: [u8; 8],
    key: VerifyingKey,
}

fn key_id_text(id: &[u8; 8]) -> String {
    format!("{:016X}", u64::from_le_bytes(*id))
}

/// A key file: an untrusted comment and base64 of `Ed` ‖ key id ‖ key bytes.
fn key_file(comment: &str, key_id: &[u8; 8], key: &[u8; 32]) -> String {
    let mut bytes = b"Ed".to_vec();
    bytes.extend_from_slice(key_id);
    bytes.extend_from_slice(key);
    format!("untrusted comment: {comment}\n{}\n", B64.encode(bytes))
}

/// The base64 payload line of a minisign-style file (the first line that is not a comment).
fn payload(text: &str) -> Option<Vec<u8>> {
    text.lines()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("untrusted comment:")
                && !l.starts_with("trusted comment:")
        })
        .and_then(|l| B64.decode(l).ok())
}

impl SecretKey {
    /// A new random key.
    pub fn generate() -> Result<Self> {
        let mut seed = [0u8; 32];
        let mut key_id = [0u8; 8];
        getrandom::fill(&mut seed)
            .and_then(|()| getrandom::fill(&mut key_id))
            .map_err(|e| Error::Invalid(format!("no randomness for a key: {e}")))?;
        Ok(Self {
            key_id,
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Parses a secret key file's text (or just its base64 line, as `GOVLAKE_SIGNING_KEY`
    /// may hold). The error never repeats the text.
    pub fn parse(text: &str) -> Result<Self> {
        let bytes = payload(text)
            .filter(|b| b.len() == 42 && &b[..2] == b"Ed")
            .ok_or_else(|| {
                Error::Invalid("not a govlake secret key (make one with `govlake keygen`)".into())
            })?;
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&bytes[2..10]);
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&bytes[10..42]);
        Ok(Self {
            key_id,
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The secret key file's text.
    pub fn to_file_text(&self) -> String {
        key_file(
            &format!(
                "govlake secret signing key {} (keep it secret)",
                key_id_text(&self.key_id)
            ),
            &self.key_id,
            self.key.as_bytes(),
        )
    }

    /// Its public key.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// A detached minisign signature of `message`, with `trusted_comment` (one line).
    pub fn sign(&self, message: &[u8], trusted_comment: &str) -> String {
        let hash = blake2::Blake2b512::digest(message);
        let signature = self.key.sign(&hash).to_bytes();
        let mut sig_line = b"ED".to_vec();
        sig_line.extend_from_slice(&self.key_id);
        sig_line.extend_from_slice(&signature);
        let mut global = signature.to_vec();
        global.extend_from_slice(trusted_comment.as_bytes());
        let global_sig = self.key.sign(&global).to_bytes();
        format!(
            "untrusted comment: signature from govlake secret key {}\n{}\ntrusted comment: {}\n{}\n",
            key_id_text(&self.key_id),
            B64.encode(sig_line),
            trusted_comment,
            B64.encode(global_sig)
        )
    }
}

/// The key id a minisign signature names (its second line), as minisign prints it.
pub fn signer_key_id(signature_text: &str) -> Option<String> {
    let sig = signature_text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .nth(1)
        .and_then(|l| B64.decode(l).ok())
        .filter(|b| b.len() == 74)?;
    Some(key_id_text(sig[2..10].try_into().ok()?))
}

impl PublicKey {
    /// Parses a minisign public key file (or its base64 line).
    pub fn parse(text: &str) -> Result<Self> {
        let bytes = payload(text)
            .filter(|b| b.len() == 42 && &b[..2] == b"Ed")
            .ok_or_else(|| Error::Invalid("not a minisign public key".into()))?;
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&bytes[2..10]);
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&bytes[10..42]);
        let key = VerifyingKey::from_bytes(&pk)
            .map_err(|_| Error::Invalid("the public key is not a valid Ed25519 point".into()))?;
        Ok(Self { key_id, key })
    }

    /// The public key file's text (minisign format).
    pub fn to_file_text(&self) -> String {
        key_file(
            &format!("minisign public key {}", key_id_text(&self.key_id)),
            &self.key_id,
            self.key.as_bytes(),
        )
    }

    /// The key id as minisign prints it.
    pub fn id_text(&self) -> String {
        key_id_text(&self.key_id)
    }

    /// Checks a detached signature of `message`; returns its trusted comment, or why it
    /// does not verify.
    pub fn verify(&self, message: &[u8], signature_text: &str) -> Result<String, SignatureError> {
        use SignatureError as E;
        let mut lines = signature_text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty());
        let _untrusted = lines.next().ok_or(E::Empty)?;
        let sig = lines
            .next()
            .and_then(|l| B64.decode(l).ok())
            .filter(|b| b.len() == 74)
            .ok_or(E::NotMinisign)?;
        let comment = lines
            .next()
            .and_then(|l| l.strip_prefix("trusted comment: "))
            .ok_or(E::NoTrustedComment)?;
        let global = lines
            .next()
            .and_then(|l| B64.decode(l).ok())
            .filter(|b| b.len() == 64)
            .ok_or(E::NoGlobalSignature)?;
        if sig[2..10] != self.key_id {
            return Err(E::OtherKey {
                signer: key_id_text(sig[2..10].try_into().unwrap_or(&[0; 8])),
                expected: self.id_text(),
            });
        }
        let signature = ed25519_dalek::Signature::from_slice(&sig[10..74])
            .map_err(|_| E::Malformed("signature"))?;
        let verified = match &sig[..2] {
            b"ED" => self
                .key
                .verify(&blake2::Blake2b512::digest(message), &signature),
            b"Ed" => self.key.verify(message, &signature),
            _ => return Err(E::UnknownAlgorithm),
        };
        verified.map_err(|_| E::Mismatch)?;
        let mut signed_comment = sig[10..74].to_vec();
        signed_comment.extend_from_slice(comment.as_bytes());
        let global = ed25519_dalek::Signature::from_slice(&global)
            .map_err(|_| E::Malformed("global signature"))?;
        self.key
            .verify(&signed_comment, &global)
            .map_err(|_| E::CommentAltered)?;
        Ok(comment.to_string())
    }
}

/// Why a detached minisign signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No lines at all.
    #[error("the signature file is empty")]
    Empty,
    /// The second line is not a minisign signature.
    #[error("the signature line is not a minisign signature")]
    NotMinisign,
    /// No `trusted comment:` line.
    #[error("the trusted comment is missing")]
    NoTrustedComment,
    /// No global signature line.
    #[error("the global signature is missing")]
    NoGlobalSignature,
    /// Made by another key.
    #[error("signed by key {signer}, not by the expected key {expected}")]
    OtherKey {
        /// The key id the signature names.
        signer: String,
        /// The key id checked against.
        expected: String,
    },
    /// Bytes that are not an Ed25519 signature.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Neither `Ed` nor `ED`.
    #[error("unknown signature algorithm")]
    UnknownAlgorithm,
    /// The file was changed after signing.
    #[error("the signature does not match the signed file")]
    Mismatch,
    /// The trusted comment was changed after signing.
    #[error("the trusted comment was altered")]
    CommentAltered,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_round_trip_and_catch_changes() {
        let key = SecretKey::generate().unwrap();
        let again = SecretKey::parse(&key.to_file_text()).unwrap();
        assert_eq!(again.public(), key.public());
        let public = PublicKey::parse(&key.public().to_file_text()).unwrap();
        let sig = key.sign(b"manifest", "govlake pack 2026Q3");
        assert_eq!(
            sig,
            key.sign(b"manifest", "govlake pack 2026Q3"),
            "deterministic"
        );
        assert_eq!(
            public.verify(b"manifest", &sig).unwrap(),
            "govlake pack 2026Q3"
        );
        assert!(public.verify(b"manifesT", &sig).is_err());
        let forged = sig.replace("govlake pack 2026Q3", "govlake pack 2026Q4");
        assert_eq!(
            public.verify(b"manifest", &forged).unwrap_err(),
            SignatureError::CommentAltered
        );
        let other = SecretKey::generate().unwrap().public();
        assert!(
            other
                .verify(b"manifest", &sig)
                .unwrap_err()
                .to_string()
                .contains("not by the expected key")
        );
        assert!(!format!("{key:?}").contains(&key.to_file_text().lines().nth(1).unwrap()[..20]));
    }
}
