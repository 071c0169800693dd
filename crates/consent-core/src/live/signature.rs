//! Signed snapshot documents: every document the fetcher gets (full snapshot, parts,
//! deltas) carries a minisign signature (Ed25519; legacy `Ed` or BLAKE2b-prehashed `ED`,
//! as `minisign -S` writes them), checked against the configured public key before a byte
//! of the document is parsed.
//!
//! Where the signature comes from: the response header [`SIGNATURE_HEADER`] (base64 of the
//! whole `.minisig` file text), or, when a response has none, the same URL plus
//! [`SIGNATURE_SUFFIX`] (static files signed by the operator with `minisign -S`).

use base64::Engine as _;
use minisign_verify::{PublicKey, Signature};

use crate::error::ConfigError;

/// Response header carrying the signature: base64 of the `.minisig` file text.
pub const SIGNATURE_HEADER: &str = "consent-signature";

/// What is appended to a document's path to fetch its signature file.
pub const SIGNATURE_SUFFIX: &str = ".minisig";

/// A minisign public key the fetcher trusts. `Debug` prints only its key id.
#[derive(Clone)]
pub struct TrustedKey {
    key: PublicKey,
    /// The key id as minisign prints it (16 hex digits), for operators matching keys.
    id: String,
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustedKey(id {})", self.id)
    }
}

/// Why a document's signature was not accepted. The text names no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// Neither the header nor a signature file came with the document.
    Missing,
    /// The signature is not a minisign signature (or its header is not base64).
    Malformed,
    /// The signature was made with another key (its key id differs).
    OtherKey,
    /// The signature does not match the document's bytes (or its trusted comment).
    Mismatch,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignatureError::Missing => {
                "no signature (neither a consent-signature header nor a .minisig file)"
            }
            SignatureError::Malformed => "the signature is not in minisign format",
            SignatureError::OtherKey => "signed with another key than snapshot.public_key",
            SignatureError::Mismatch => "the signature does not match the document",
        })
    }
}

impl TrustedKey {
    /// Reads a minisign public key: the base64 line of a `.pub` file (`RW...`), or the
    /// whole file (untrusted comment line, then that line). `field` names it in errors.
    pub fn parse(text: &str, field: &str) -> Result<Self, ConfigError> {
        let text = text.trim();
        let key = if text.contains('\n') {
            PublicKey::decode(text)
        } else {
            PublicKey::from_base64(text)
        };
        let key = key.map_err(|_| {
            ConfigError::invalid(
                field,
                "not a minisign public key (the base64 line of a minisign .pub file, `RW...`)",
            )
        })?;
        let id = key_id(text).unwrap_or_default();
        Ok(TrustedKey { key, id })
    }

    /// The key id, 16 uppercase hex digits as `minisign` prints it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Checks `document` against the text of a `.minisig` file.
    pub fn verify(&self, document: &[u8], minisig: &str) -> Result<(), SignatureError> {
        let signature = Signature::decode(minisig).map_err(|_| SignatureError::Malformed)?;
        self.key
            .verify(document, &signature, true)
            .map_err(|e| match e {
                minisign_verify::Error::UnexpectedKeyId => SignatureError::OtherKey,
                minisign_verify::Error::InvalidEncoding
                | minisign_verify::Error::UnsupportedAlgorithm
                | minisign_verify::Error::UnexpectedAlgorithm => SignatureError::Malformed,
                _ => SignatureError::Mismatch,
            })
    }

    /// Checks `document` against a [`SIGNATURE_HEADER`] value (base64 of the `.minisig`).
    pub fn verify_header(&self, document: &[u8], header: &str) -> Result<(), SignatureError> {
        self.verify(document, &header_text(header)?)
    }
}

/// The `.minisig` text a [`SIGNATURE_HEADER`] value carries.
pub fn header_text(header: &str) -> Result<String, SignatureError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(header.trim())
        .map_err(|_| SignatureError::Malformed)?;
    String::from_utf8(bytes).map_err(|_| SignatureError::Malformed)
}

/// The [`SIGNATURE_HEADER`] value for a `.minisig` text.
pub fn header_value(minisig: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(minisig.as_bytes())
}

/// The key id of a public key's base64 line (or `.pub` text), as minisign prints it: the
/// 8 id bytes as a little-endian number in hex.
fn key_id(text: &str) -> Option<String> {
    let line = text.lines().last()?.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line)
        .ok()?;
    let id = bytes.get(2..10)?;
    Some(id.iter().rev().map(|b| format!("{b:02X}")).collect())
}

/// The snapshot's trust settings, compiled from `snapshot.public_key`,
/// `snapshot.next_public_key` and `snapshot.require_signature`.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The key signatures must verify against.
    pub key: TrustedKey,
    /// A second key also accepted, while the source's signing key is rotated.
    pub next: Option<TrustedKey>,
    /// Whether an unsigned document is refused (true unless the configuration says false).
    pub required: bool,
}

impl Trust {
    /// Checks `document` against a `.minisig` text, with the key whose id it names.
    pub fn verify(&self, document: &[u8], minisig: &str) -> Result<(), SignatureError> {
        match (self.key.verify(document, minisig), &self.next) {
            (Err(SignatureError::OtherKey), Some(next)) => next.verify(document, minisig),
            (result, _) => result,
        }
    }

    /// Checks `document` against a [`SIGNATURE_HEADER`] value.
    pub fn verify_header(&self, document: &[u8], header: &str) -> Result<(), SignatureError> {
        self.verify(document, &header_text(header)?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Signs documents as `minisign -S` does (the `minisign` crate), for tests.
    pub(crate) struct TestSigner {
        pk: minisign::PublicKey,
        sk: minisign::SecretKey,
    }

    impl TestSigner {
        /// A new unencrypted key pair.
        pub(crate) fn new() -> Self {
            let minisign::KeyPair { pk, sk } =
                minisign::KeyPair::generate_unencrypted_keypair().unwrap();
            TestSigner { pk, sk }
        }

        /// The public key's base64 line (`RW...`).
        pub(crate) fn public_key(&self) -> String {
            self.pk.to_base64()
        }

        /// The `.minisig` text of `document`.
        pub(crate) fn sign(&self, document: &[u8]) -> String {
            minisign::sign(
                Some(&self.pk),
                &self.sk,
                document,
                Some("version=test"),
                None,
            )
            .unwrap()
            .into_string()
        }
    }

    /// A key pair made with Debian's `minisign -G -W` (0.11), and what `minisign -S`
    /// (prehashed) and `minisign -S -l` (legacy) wrote for [`DOCUMENT`].
    const DEBIAN_PUBLIC_KEY: &str = "untrusted comment: minisign public key C99733F7D029717F\nRWR/cSnQ9zOXyX6rAflH1aGIXaERh6oEXzT85B5qU5CM93/WEj/fpGQY\n";
    const DOCUMENT: &[u8] = b"{\"version\": 1, \"records\": []}\n";
    const DEBIAN_PREHASHED: &str = "untrusted comment: signature from minisign secret key\nRUR/cSnQ9zOXyTH4PVYhcyA4onvOl03ADLkdNMo6jrOKWpZDASP9f3mIjpPL8oUqw0YVc+SRtEyg6dJYoa7EPTudx2qhanjOJgU=\ntrusted comment: version=1\nZmcnQori42STn9XQyr1bzeMNR6YV+9p48qB5VddSIzTVdj5mr7yDPUO1CV8ZBnssObgtIy/vlii5HcK6AYDsCQ==\n";
    const DEBIAN_LEGACY: &str = "untrusted comment: signature from minisign secret key\nRWR/cSnQ9zOXyZZV5rjv6zMzL+ZI/QXyKEcTUAFj3B8cLcpDBBTDCXeqTLj7vN9XgZvl37WGBzuOSnNdx8PQX5Xu0oDjdqt5cQc=\ntrusted comment: version=1\nkl472qr4ns6uVN/47v3lsD4OnYhfPGS8vOboN2van9QDjYds5duxuTdr07iJ4YQCdC3tQcEKrrjBcedTnvwWAA==\n";

    fn field() -> &'static str {
        "snapshot.public_key"
    }

    #[test]
    fn signatures_of_debian_minisign_verify_prehashed_and_legacy() {
        let key = TrustedKey::parse(DEBIAN_PUBLIC_KEY, field()).unwrap();
        assert_eq!(key.id(), "C99733F7D029717F", "the id minisign prints");
        let line = TrustedKey::parse(DEBIAN_PUBLIC_KEY.lines().nth(1).unwrap(), field()).unwrap();
        assert_eq!(line.id(), key.id());
        assert_eq!(key.verify(DOCUMENT, DEBIAN_PREHASHED), Ok(()));
        assert_eq!(key.verify(DOCUMENT, DEBIAN_LEGACY), Ok(()));
        assert_eq!(
            key.verify_header(DOCUMENT, &header_value(DEBIAN_PREHASHED)),
            Ok(())
        );
        assert_eq!(
            format!("{key:?}"),
            "TrustedKey(id C99733F7D029717F)",
            "no key bytes"
        );
    }

    #[test]
    fn a_changed_byte_another_key_or_garbage_is_refused() {
        let key = TrustedKey::parse(DEBIAN_PUBLIC_KEY, field()).unwrap();
        let mut tampered = DOCUMENT.to_vec();
        tampered[12] = b'2';
        assert_eq!(
            key.verify(&tampered, DEBIAN_PREHASHED),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            key.verify(&tampered, DEBIAN_LEGACY),
            Err(SignatureError::Mismatch)
        );
        let other = TestSigner::new();
        assert_eq!(
            key.verify(DOCUMENT, &other.sign(DOCUMENT)),
            Err(SignatureError::OtherKey)
        );
        let trusted = DEBIAN_PREHASHED.replace("version=1", "version=9");
        assert_eq!(
            key.verify(DOCUMENT, &trusted),
            Err(SignatureError::Mismatch),
            "the trusted comment is signed too"
        );
        for garbage in ["", "untrusted comment: x\nAAAA\n", "<html>"] {
            assert_eq!(
                key.verify(DOCUMENT, garbage),
                Err(SignatureError::Malformed)
            );
        }
        assert_eq!(
            key.verify_header(DOCUMENT, "%%%"),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn the_test_signer_signs_as_minisign_does() {
        let signer = TestSigner::new();
        let key = TrustedKey::parse(&signer.public_key(), field()).unwrap();
        assert_eq!(key.verify(DOCUMENT, &signer.sign(DOCUMENT)), Ok(()));
    }

    #[test]
    fn a_public_key_that_is_not_minisign_names_the_field_only() {
        for bad in ["", "RWQ", "not a key at all", "Zm9v"] {
            let e = TrustedKey::parse(bad, field()).unwrap_err().to_string();
            assert!(
                e.starts_with("snapshot.public_key: not a minisign public key"),
                "{e}"
            );
            if !bad.is_empty() {
                assert!(!e.contains(bad), "{e}");
            }
        }
    }

    #[test]
    fn headers_round_trip_and_garbage_is_malformed() {
        assert_eq!(header_text(&header_value("abc\n")), Ok("abc\n".to_string()));
        assert_eq!(header_text("%%%"), Err(SignatureError::Malformed));
    }
}
