//! How snapshot records name their person: by the raw user ID, or by a keyed hash of it,
//! so that raw IDs need not be shipped to every sidecar (privacy of the snapshot).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// A fixed-size key for one person: 128 bits of SHA-256 (plain subjects) or of
/// HMAC-SHA-256 (hashed subjects).
pub type SubjectKey = [u8; 16];

/// How subjects are written in a snapshot and found from the user-ID header.
#[derive(Clone, PartialEq, Eq)]
pub enum SubjectKeying {
    /// `subject` is the raw user ID.
    Plain,
    /// `subject` is the lowercase hex of the first 16 bytes of HMAC-SHA-256(key, user ID).
    Hmac(Vec<u8>),
}

impl std::fmt::Debug for SubjectKeying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        match self {
            SubjectKeying::Plain => f.write_str("Plain"),
            SubjectKeying::Hmac(_) => f.write_str("Hmac(<key>)"),
        }
    }
}

fn first16(bytes: &[u8]) -> SubjectKey {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = *b;
    }
    out
}

impl SubjectKeying {
    /// The key of the person a request names.
    pub fn key_of_user(&self, user: &str) -> SubjectKey {
        match self {
            SubjectKeying::Plain => first16(&Sha256::digest(user.as_bytes())),
            SubjectKeying::Hmac(key) => match Hmac::<Sha256>::new_from_slice(key) {
                Ok(mut mac) => {
                    mac.update(user.as_bytes());
                    first16(&mac.finalize().into_bytes())
                }
                // HMAC takes keys of any length; this arm cannot be reached.
                Err(_) => first16(&Sha256::digest(user.as_bytes())),
            },
        }
    }

    /// The key of a snapshot record's `subject`; `None` when a hashed subject is not 32
    /// lowercase hex digits.
    pub fn key_of_subject(&self, subject: &str) -> Option<SubjectKey> {
        match self {
            SubjectKeying::Plain => Some(self.key_of_user(subject)),
            SubjectKeying::Hmac(_) => parse_hex16(subject),
        }
    }

    /// What a source writes as `subject` for `user` under this keying.
    pub fn subject_for(&self, user: &str) -> String {
        match self {
            SubjectKeying::Plain => user.to_string(),
            SubjectKeying::Hmac(_) => to_hex(&self.key_of_user(user)),
        }
    }
}

/// Lowercase hex of bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            if let Some(d) = DIGITS.get(usize::from(nibble)) {
                out.push(char::from(*d));
            }
        }
    }
    out
}

fn parse_hex16(text: &str) -> Option<SubjectKey> {
    if text.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let pair = text.get(2 * i..2 * i + 2)?;
        if pair.bytes().any(|c| c.is_ascii_uppercase()) {
            return None;
        }
        *o = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn hashed_subjects_round_trip_and_depend_on_the_key() {
        let a = SubjectKeying::Hmac(b"source-and-filter-share-this-key".to_vec());
        let b = SubjectKeying::Hmac(b"some-other-key-0123456789abcdef".to_vec());
        let subject = a.subject_for("u-alice");
        assert_eq!(subject.len(), 32);
        assert!(!subject.contains("alice"));
        assert_eq!(a.key_of_subject(&subject), Some(a.key_of_user("u-alice")));
        assert_ne!(a.key_of_user("u-alice"), b.key_of_user("u-alice"));
        assert_ne!(a.key_of_user("u-alice"), a.key_of_user("u-bob"));
    }

    #[test]
    fn plain_subjects_are_the_user_id() {
        let p = SubjectKeying::Plain;
        assert_eq!(p.subject_for("u-alice"), "u-alice");
        assert_eq!(p.key_of_subject("u-alice"), Some(p.key_of_user("u-alice")));
    }

    #[test]
    fn malformed_hashed_subjects_are_rejected() {
        let k = SubjectKeying::Hmac(b"k".to_vec());
        assert_eq!(k.key_of_subject("u-alice"), None);
        assert_eq!(
            k.key_of_subject(&"AB".repeat(16)),
            None,
            "uppercase hex is not the canonical form"
        );
        assert_eq!(k.key_of_subject(&"zz".repeat(16)), None);
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let k = SubjectKeying::Hmac(b"super-secret-key".to_vec());
        assert!(!format!("{k:?}").contains("secret"));
    }
}
