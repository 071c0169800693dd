//! `consentctl keygen`, `sign` and `verify`: the minisign files the fetcher checks, made
//! and checked offline. `sign` writes what `minisign -S` writes (a prehashed `ED`
//! signature in a `.minisig` file); `verify` checks with the filter's own code
//! (`consent_core::live::TrustedKey`), so a file that verifies here verifies in the filter.
//! Secret keys are unencrypted minisign keys (`minisign -G -W`, or `keygen`); no key ever
//! appears in an output or an error.

use std::io::Write;
use std::path::{Path, PathBuf};

use consent_core::live::{header_value, TrustedKey, SIGNATURE_SUFFIX};

use crate::report::{Failure, Report};

/// `consentctl keygen`: a new unencrypted key pair in `secret` and `public`.
pub fn keygen(secret: &Path, public: &Path, force: bool) -> Result<Report, Failure> {
    for path in [secret, public] {
        if path.exists() && !force {
            return Err(Failure::new(format!(
                "{} exists; pass --force to replace it",
                path.display()
            )));
        }
    }
    let minisign::KeyPair { pk, sk } = minisign::KeyPair::generate_unencrypted_keypair()
        .map_err(|_| Failure::new("cannot generate a key pair"))?;
    let sk_box = sk
        .to_box(Some("consentctl secret key (unencrypted)"))
        .map_err(|_| Failure::new("cannot encode the secret key"))?;
    let pk_box = pk
        .to_box()
        .map_err(|_| Failure::new("cannot encode the public key"))?;
    write_private(secret, sk_box.to_string().as_bytes())?;
    std::fs::write(public, pk_box.to_string())
        .map_err(|e| Failure::new(format!("cannot write {}: {e}", public.display())))?;
    let id = TrustedKey::parse(&pk.to_base64(), "public key")
        .map(|k| k.id().to_string())
        .unwrap_or_default();
    Ok(Report::ok(format!(
        "secret key  {} (unencrypted: keep it to the signer)\npublic key  {} (key id {id})\n\
         snapshot.public_key: {}\n",
        secret.display(),
        public.display(),
        pk.to_base64()
    )))
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::new(format!("cannot write {}: {e}", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(bytes).map_err(fail)
}

/// Reads an unencrypted minisign secret key.
fn secret_key(path: &Path) -> Result<(minisign::SecretKey, minisign::PublicKey), Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))?;
    let boxed = minisign::SecretKeyBox::from_string(&text)
        .map_err(|_| Failure::new(format!("{} is not a minisign secret key", path.display())))?;
    let sk = boxed
        .into_unencrypted_secret_key()
        .ok()
        .or_else(|| unchecked_unencrypted(&text))
        .ok_or_else(|| {
            Failure::new(format!(
                "{} is not an unencrypted minisign secret key (make one with `consentctl keygen` or `minisign -G -W`)",
                path.display()
            ))
        })?;
    let pk = minisign::PublicKey::from_secret_key(&sk)
        .map_err(|_| Failure::new(format!("{}: cannot derive its public key", path.display())))?;
    Ok((sk, pk))
}

/// An unencrypted key whose checksum field is empty, as `minisign -G -W` 0.11 (Debian)
/// writes them: the key material is read as it is (signing checks it against the public
/// key it holds).
fn unchecked_unencrypted(text: &str) -> Option<minisign::SecretKey> {
    use base64::Engine as _;
    let line = text.lines().nth(1)?.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line)
        .ok()?;
    let kdf_none = bytes.get(2..4)? == [0, 0];
    kdf_none.then(|| minisign::SecretKey::from_bytes(&bytes).ok())?
}

/// The trusted comment of a signature: the time, the file's name, and `version=N` when
/// the file is a snapshot or delta (a JSON object with a numeric `version`).
fn trusted_comment(file: &Path, bytes: &[u8]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut comment = format!("timestamp:{now}\tfile:{name}");
    let version = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|doc| doc.get("version").and_then(serde_json::Value::as_u64));
    if let Some(version) = version {
        comment.push_str(&format!("\tversion={version}"));
    }
    comment
}

/// `consentctl sign`: writes `FILE.minisig` next to each file (or prints the
/// `consent-signature` header value with `header`).
pub fn sign(key: &Path, files: &[PathBuf], header: bool) -> Result<Report, Failure> {
    let (sk, pk) = secret_key(key)?;
    let mut out = String::new();
    for file in files {
        let bytes = std::fs::read(file)
            .map_err(|e| Failure::new(format!("cannot read {}: {e}", file.display())))?;
        let comment = trusted_comment(file, &bytes);
        let signature = minisign::sign(
            Some(&pk),
            &sk,
            bytes.as_slice(),
            Some(&comment),
            Some("signature from consentctl secret key"),
        )
        .map_err(|_| Failure::new(format!("cannot sign {}", file.display())))?
        .into_string();
        if header {
            out.push_str(&format!(
                "{}: consent-signature: {}\n",
                file.display(),
                header_value(&signature)
            ));
            continue;
        }
        let target = signature_path(file);
        std::fs::write(&target, &signature)
            .map_err(|e| Failure::new(format!("cannot write {}: {e}", target.display())))?;
        out.push_str(&format!("{} written\n", target.display()));
    }
    Ok(Report::ok(out))
}

/// `FILE.minisig`.
fn signature_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(SIGNATURE_SUFFIX);
    PathBuf::from(name)
}

/// `consentctl verify`: checks `file` against `signature` (default `FILE.minisig`) with
/// `public_key` (the `RW...` line, or a `.pub` file), as the fetcher checks documents.
pub fn verify(public_key: &str, file: &Path, signature: Option<&Path>) -> Result<Report, Failure> {
    let key_text = if Path::new(public_key).is_file() {
        std::fs::read_to_string(public_key)
            .map_err(|e| Failure::new(format!("cannot read {public_key}: {e}")))?
    } else {
        public_key.to_string()
    };
    let key =
        TrustedKey::parse(&key_text, "--public-key").map_err(|e| Failure::new(e.to_string()))?;
    let signature = signature.map_or_else(|| signature_path(file), Path::to_path_buf);
    let document = std::fs::read(file)
        .map_err(|e| Failure::new(format!("cannot read {}: {e}", file.display())))?;
    let minisig = std::fs::read_to_string(&signature)
        .map_err(|e| Failure::new(format!("cannot read {}: {e}", signature.display())))?;
    key.verify(&document, &minisig).map_err(|e| {
        Failure::new(format!(
            "{}: signature {} refused: {e}",
            file.display(),
            signature.display()
        ))
    })?;
    let trusted = minisig
        .lines()
        .find_map(|l| l.strip_prefix("trusted comment: "))
        .unwrap_or("");
    Ok(Report::ok(format!(
        "{}: signature valid (key id {}; trusted comment: {trusted})\n",
        file.display(),
        key.id()
    )))
}
