//! Signing what the source serves, in minisign's format: a detached `.minisig` text that
//! `minisign -V -p KEY.pub -m DOCUMENT -x DOCUMENT.minisig` verifies (prehashed Ed25519, the
//! default of minisign 0.10 and later), with the document's version in the trusted comment.
//!
//! The key is a minisign secret key file without a password (`minisign -G -W`). Nothing
//! about the key but its public key and key id is ever logged or returned.

use std::path::{Path, PathBuf};

use minisign::{PublicKey, SecretKey, SecretKeyBox};

/// The untrusted comment of every signature the source makes.
pub const UNTRUSTED_COMMENT: &str = "consent-source signature";

/// Bytes of a decoded minisign secret key: algorithms (6), KDF salt and limits (48),
/// key id (8), Ed25519 secret key (64), checksum (32).
const SECRET_KEY_LEN: usize = 158;
const CHECKSUM_LEN: usize = 32;

/// Why a signing key could not be loaded or used.
#[derive(Debug)]
pub enum SignError {
    /// The key file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// The key is password-protected; the source needs one made with `minisign -G -W`.
    Encrypted,
    /// The file is not a minisign secret key, or its checksum does not match.
    Malformed,
    /// Signing failed (the random source, or the key does not match its public half).
    Sign,
}

impl std::fmt::Display for SignError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignError::Read { path, error } => {
                write!(f, "cannot read the signing key {}: {error}", path.display())
            }
            SignError::Encrypted => write!(
                f,
                "the signing key is password-protected: make one with `minisign -G -W`"
            ),
            SignError::Malformed => write!(
                f,
                "the signing key is not an unencrypted minisign secret key (or it is corrupted)"
            ),
            SignError::Sign => write!(f, "signing failed"),
        }
    }
}

impl std::error::Error for SignError {}

/// A minisign secret key, ready to sign documents.
pub struct Signer {
    secret: SecretKey,
    public: PublicKey,
}

impl std::fmt::Debug for Signer {
    /// The key id only: the secret key's own `Debug` prints its bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Loads an unencrypted minisign secret key file.
    pub fn from_file(path: &Path) -> Result<Signer, SignError> {
        let text = std::fs::read_to_string(path).map_err(|error| SignError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_text(&text)
    }

    /// Parses the text of an unencrypted minisign secret key file.
    ///
    /// `minisign -G -W` of minisign 0.11 (Debian's) leaves the key's checksum zeroed, which
    /// the minisign crate takes for corruption; such a key is read without it, and every
    /// key is checked by signing a probe and verifying it with the public half the key
    /// carries (a damaged seed or public key fails there).
    pub fn from_text(text: &str) -> Result<Signer, SignError> {
        use base64::Engine as _;
        let line = text.lines().nth(1).ok_or(SignError::Malformed)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(line.trim())
            .map_err(|_| SignError::Malformed)?;
        if bytes.len() != SECRET_KEY_LEN || bytes.get(..2) != Some(b"Ed".as_slice()) {
            return Err(SignError::Malformed);
        }
        if bytes.get(2..4) != Some([0u8, 0].as_slice()) {
            return Err(SignError::Encrypted);
        }
        let boxed = SecretKeyBox::from_string(text).map_err(|_| SignError::Malformed)?;
        let secret = match boxed.into_unencrypted_secret_key() {
            Ok(secret) => secret,
            Err(_) if bytes.iter().rev().take(CHECKSUM_LEN).all(|b| *b == 0) => {
                SecretKey::from_bytes(&bytes).map_err(|_| SignError::Malformed)?
            }
            Err(_) => return Err(SignError::Malformed),
        };
        let public = PublicKey::from_secret_key(&secret).map_err(|_| SignError::Malformed)?;
        minisign::sign(
            Some(&public),
            &secret,
            &b"consent-source key check"[..],
            None,
            None,
        )
        .map_err(|_| SignError::Malformed)?;
        Ok(Signer { secret, public })
    }

    /// The key id as minisign prints it (16 uppercase hex digits).
    pub fn key_id(&self) -> String {
        let keynum = self.public.keynum();
        let mut le = [0u8; 8];
        for (d, s) in le.iter_mut().zip(keynum) {
            *d = *s;
        }
        format!("{:016X}", u64::from_le_bytes(le))
    }

    /// The public key in minisign's one-line base64 form (`minisign -P`).
    pub fn public_key_base64(&self) -> String {
        self.public.to_base64()
    }

    /// The detached signature of `document` as the text of a `.minisig` file, with
    /// `trusted_comment` signed along (one line, no line breaks).
    pub fn sign(&self, document: &[u8], trusted_comment: &str) -> Result<String, SignError> {
        if trusted_comment.contains(['\n', '\r']) {
            return Err(SignError::Sign);
        }
        let signature = minisign::sign(
            Some(&self.public),
            &self.secret,
            document,
            Some(trusted_comment),
            Some(UNTRUSTED_COMMENT),
        )
        .map_err(|_| SignError::Sign)?;
        Ok(signature.into_string())
    }
}

/// The trusted comment of part `part` of the snapshot at `version`.
pub fn snapshot_comment(version: u64, part: usize) -> String {
    format!("consent-snapshot version={version} part={part}")
}

/// The trusted comment of the delta from `from` to `version`.
pub fn delta_comment(from: u64, version: u64) -> String {
    format!("consent-delta from={from} version={version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_text() -> String {
        let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        pair.sk.to_box(None).unwrap().into_string()
    }

    #[test]
    fn a_signature_verifies_and_carries_the_trusted_comment() {
        let signer = Signer::from_text(&key_text()).unwrap();
        let text = signer
            .sign(b"{\"version\":3}", &snapshot_comment(3, 0))
            .unwrap();
        let pk = minisign_verify::PublicKey::from_base64(&signer.public_key_base64()).unwrap();
        let sig = minisign_verify::Signature::decode(&text).unwrap();
        assert_eq!(sig.trusted_comment(), "consent-snapshot version=3 part=0");
        pk.verify(b"{\"version\":3}", &sig, false).unwrap();
        assert!(pk.verify(b"{\"version\":4}", &sig, false).is_err());
    }

    #[test]
    fn garbage_and_encrypted_keys_are_refused_without_their_bytes() {
        assert!(matches!(
            Signer::from_text("untrusted comment: x\nnot base64\n"),
            Err(SignError::Malformed)
        ));
        // An unencrypted key relabelled as scrypt-protected (as `minisign -G` writes them).
        let text = edited_key(|b| b[2..4].copy_from_slice(b"Sc"));
        assert!(matches!(
            Signer::from_text(&text),
            Err(SignError::Encrypted)
        ));
        let signer = Signer::from_text(&key_text()).unwrap();
        let shown = format!("{signer:?}");
        assert!(
            shown.contains(&signer.key_id()) && shown.len() < 60,
            "{shown}"
        );
    }

    /// `key_text()` with its decoded bytes changed by `edit`.
    fn edited_key(edit: impl FnOnce(&mut Vec<u8>)) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let plain = key_text();
        let mut lines = plain.lines();
        let comment = lines.next().unwrap();
        let mut bytes = b64.decode(lines.next().unwrap()).unwrap();
        edit(&mut bytes);
        format!("{comment}\n{}\n", b64.encode(&bytes))
    }

    #[test]
    fn a_key_with_a_zeroed_checksum_loads_but_a_damaged_one_does_not() {
        // What minisign 0.11's `minisign -G -W` writes.
        let zeroed = edited_key(|b| b[126..].fill(0));
        let signer = Signer::from_text(&zeroed).unwrap();
        let pk = minisign_verify::PublicKey::from_base64(&signer.public_key_base64()).unwrap();
        let sig = minisign_verify::Signature::decode(&signer.sign(b"doc", "c").unwrap()).unwrap();
        pk.verify(b"doc", &sig, false).unwrap();
        // The seed damaged: the probe signature does not verify with the embedded public key.
        let damaged = edited_key(|b| {
            b[126..].fill(0);
            b[70] ^= 1;
        });
        assert!(matches!(
            Signer::from_text(&damaged),
            Err(SignError::Malformed)
        ));
        // With a real checksum, any damage is caught by it.
        let damaged = edited_key(|b| b[100] ^= 1);
        assert!(matches!(
            Signer::from_text(&damaged),
            Err(SignError::Malformed)
        ));
        let short = edited_key(|b| b.truncate(100));
        assert!(matches!(
            Signer::from_text(&short),
            Err(SignError::Malformed)
        ));
    }

    #[test]
    fn a_comment_cannot_smuggle_lines() {
        let signer = Signer::from_text(&key_text()).unwrap();
        assert!(signer.sign(b"x", "a\ntrusted comment: b").is_err());
    }
}
