//! Signing what the demo consent source serves: minisign signatures (as `minisign -S`
//! writes them) with a key read from an unencrypted minisign secret key file, e.g. the
//! demo's `envoy-config/demo-signing/minisign.key`.

/// Where the demo's (DEMO ONLY) signing key is, relative to the repository root.
pub const DEMO_SIGNING_KEY: &str = "envoy-config/demo-signing/minisign.key";

/// A minisign secret key and its public key.
pub struct Signer {
    sk: minisign::SecretKey,
    pk: minisign::PublicKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret key (minisign's own Debug would).
        f.write_str("Signer(<key>)")
    }
}

impl Signer {
    /// Reads an unencrypted minisign secret key file.
    pub fn from_file(path: &std::path::Path) -> Result<Signer, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let sk = minisign::SecretKeyBox::from_string(&text)
            .and_then(minisign::SecretKeyBox::into_unencrypted_secret_key)
            .map_err(|_| {
                format!(
                    "{} is not an unencrypted minisign secret key",
                    path.display()
                )
            })?;
        let pk = minisign::PublicKey::from_secret_key(&sk)
            .map_err(|_| format!("{}: no public key in it", path.display()))?;
        Ok(Signer { sk, pk })
    }

    /// A new key pair (e.g. "another key" in tests).
    pub fn generate() -> Result<Signer, String> {
        let minisign::KeyPair { pk, sk } = minisign::KeyPair::generate_unencrypted_keypair()
            .map_err(|_| "cannot generate a key pair".to_string())?;
        Ok(Signer { sk, pk })
    }

    /// The public key's `RW...` line.
    pub fn public_key(&self) -> String {
        self.pk.to_base64()
    }

    /// The `.minisig` text of `document` (empty if signing failed).
    pub fn sign(&self, document: &[u8]) -> String {
        minisign::sign(Some(&self.pk), &self.sk, document, None, None)
            .map(minisign::SignatureBox::into_string)
            .unwrap_or_default()
    }
}
