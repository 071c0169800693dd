//! Signed snapshots and deltas: the `consent-signature` header and the `.minisig` URLs
//! verify with the `minisign-verify` crate and, when Debian's `minisign` is installed,
//! with `minisign -V` on a key made by `minisign -G -W`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use common::{call, temp_dir, Reply};
use consent_core::live::FullSnapshotDoc;
use consent_source::sign::Signer;
use consent_source::{Options, Source};

fn seed() -> FullSnapshotDoc {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../envoy-config/demo-consents.json");
    FullSnapshotDoc::from_json(&std::fs::read(path).unwrap()).unwrap()
}

/// A key made with the minisign crate, written as `minisign -G -W` writes one.
fn crate_key(dir: &Path) -> (PathBuf, minisign_verify::PublicKey) {
    let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let path = dir.join("source.key");
    std::fs::write(&path, pair.sk.to_box(None).unwrap().into_string()).unwrap();
    let pk = minisign_verify::PublicKey::from_base64(&pair.pk.to_base64()).unwrap();
    (path, pk)
}

fn start(key: Option<&Path>, part_size: usize) -> (Source, u16) {
    let options = Options {
        part_size,
        signer: key.map(|k| Signer::from_file(k).unwrap()),
        ..Options::demo()
    };
    let source =
        Source::start("127.0.0.1:0", Path::new(":memory:"), Some(&seed()), options).unwrap();
    let port = source.port().unwrap();
    (source, port)
}

fn header_signature(r: &Reply) -> minisign_verify::Signature {
    let b64 = r
        .header("consent-signature")
        .expect("a consent-signature header");
    let text = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    minisign_verify::Signature::decode(std::str::from_utf8(&text).unwrap()).unwrap()
}

fn detached(r: &Reply) -> minisign_verify::Signature {
    assert_eq!(r.status, 200, "{}", r.text());
    minisign_verify::Signature::decode(&r.text()).unwrap()
}

#[test]
fn every_document_is_signed_in_its_header_and_at_its_minisig_url() {
    let dir = temp_dir("sign");
    let (key, pk) = crate_key(&dir);
    let (_s, port) = start(Some(&key), 2);
    let first = call(port, "GET", "/snapshot", &[], b"");
    assert_eq!(first.status, 200);
    let version = first.json()["version"].as_u64().unwrap();
    let parts = first.json()["parts"].as_u64().unwrap();
    assert!(parts >= 2, "the demo consents in parts of 2");
    let sig = header_signature(&first);
    pk.verify(&first.body, &sig, false).unwrap();
    assert_eq!(
        sig.trusted_comment(),
        format!("consent-snapshot version={version} part=0")
    );
    let sig = detached(&call(port, "GET", "/snapshot.minisig", &[], b""));
    pk.verify(&first.body, &sig, false).unwrap();
    let sig = detached(&call(
        port,
        "GET",
        &format!("/snapshot.minisig?version={version}"),
        &[],
        b"",
    ));
    pk.verify(&first.body, &sig, false).unwrap();

    let part = call(port, "GET", "/snapshot/parts/1", &[], b"");
    pk.verify(&part.body, &header_signature(&part), false)
        .unwrap();
    let sig = detached(&call(port, "GET", "/snapshot/parts/1.minisig", &[], b""));
    assert_eq!(
        sig.trusted_comment(),
        format!("consent-snapshot version={version} part=1")
    );
    pk.verify(&part.body, &sig, false).unwrap();
    // A part's signature is not the first part's.
    assert!(pk.verify(&first.body, &sig, false).is_err());
    assert_eq!(
        call(port, "GET", "/snapshot/parts/99.minisig", &[], b"").status,
        404
    );

    assert_eq!(
        call(port, "PUT", "/users/u-bob/grants/surveys", &[], b"").status,
        200
    );
    let delta = call(port, "GET", &format!("/deltas/{version}"), &[], b"");
    assert_eq!(delta.status, 200);
    let sig = header_signature(&delta);
    pk.verify(&delta.body, &sig, false).unwrap();
    assert_eq!(
        sig.trusted_comment(),
        format!("consent-delta from={version} version={}", version + 1)
    );
    let url = format!("/deltas/{version}.minisig?version={}", version + 1);
    pk.verify(
        &delta.body,
        &detached(&call(port, "GET", &url, &[], b"")),
        false,
    )
    .unwrap();
    // Nothing newer: no document, no signature.
    assert_eq!(
        call(
            port,
            "GET",
            &format!("/deltas/{}.minisig", version + 1),
            &[],
            b""
        )
        .status,
        404
    );
}

#[test]
fn a_write_between_a_document_and_its_minisig_is_caught_by_the_version() {
    let dir = temp_dir("race");
    let (key, pk) = crate_key(&dir);
    let (_s, port) = start(Some(&key), 20_000);
    let doc = call(port, "GET", "/snapshot", &[], b"");
    let version = doc.json()["version"].as_u64().unwrap();
    // The same version serves the same bytes, so a later .minisig fits it...
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again = call(port, "GET", "/snapshot", &[], b"");
    assert_eq!(doc.body, again.body);
    assert_eq!(
        again.header("etag"),
        Some(format!("\"v{version}\"").as_str())
    );
    // ...until a write lands in between: ?version= answers 409 instead of a signature of
    // other bytes, and without it the signature names the new version and does not verify.
    assert_eq!(
        call(port, "PUT", "/users/u-bob/stop-use", &[], b"").status,
        200
    );
    let stale = call(
        port,
        "GET",
        &format!("/snapshot.minisig?version={version}"),
        &[],
        b"",
    );
    assert_eq!(stale.status, 409);
    assert_eq!(stale.json()["version"], version + 1);
    let newer = detached(&call(port, "GET", "/snapshot.minisig", &[], b""));
    assert!(newer
        .trusted_comment()
        .contains(&format!("version={}", version + 1)));
    assert!(pk.verify(&doc.body, &newer, false).is_err());
    assert_eq!(
        call(port, "GET", "/snapshot.minisig?version=x", &[], b"").status,
        400
    );
    assert_eq!(
        call(port, "GET", "/snapshot.minisig?v=1", &[], b"").status,
        400
    );
}

#[test]
fn without_a_key_nothing_is_signed() {
    let (_s, port) = start(None, 20_000);
    let doc = call(port, "GET", "/snapshot", &[], b"");
    assert_eq!(doc.status, 200);
    assert!(doc.header("consent-signature").is_none());
    let sig = call(port, "GET", "/snapshot.minisig", &[], b"");
    assert_eq!(
        (sig.status, sig.json()["error"].as_str()),
        (404, Some("this source does not sign"))
    );
}

#[test]
fn a_304_carries_no_body_and_the_signature_url_needs_the_fetcher_role() {
    let dir = temp_dir("roles");
    let (key, _) = crate_key(&dir);
    let options = Options {
        signer: Some(Signer::from_file(&key).unwrap()),
        access: consent_source::config::AccessConfig::from_toml(&common::config_text("")).unwrap(),
        ..Options::default()
    };
    let source =
        Source::start("127.0.0.1:0", Path::new(":memory:"), Some(&seed()), options).unwrap();
    let port = source.port().unwrap();
    assert_eq!(call(port, "GET", "/snapshot.minisig", &[], b"").status, 401);
    let w = common::bearer(common::WRITER);
    assert_eq!(
        call(
            port,
            "GET",
            "/snapshot.minisig",
            &[("authorization", &w)],
            b""
        )
        .status,
        403
    );
    let f = common::bearer(common::FETCHER);
    let doc = call(port, "GET", "/snapshot", &[("authorization", &f)], b"");
    let etag = doc.header("etag").unwrap().to_string();
    let not_modified = call(
        port,
        "GET",
        "/snapshot",
        &[("authorization", &f), ("if-none-match", &etag)],
        b"",
    );
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
}

/// `minisign -V` on files: the document, its signature, the public key.
fn minisign_verifies(
    dir: &Path,
    public: &Path,
    doc: &[u8],
    sig: &[u8],
    name: &str,
) -> (bool, String) {
    let doc_path = dir.join(name);
    let sig_path = dir.join(format!("{name}.minisig"));
    std::fs::write(&doc_path, doc).unwrap();
    std::fs::write(&sig_path, sig).unwrap();
    let out = Command::new("minisign")
        .arg("-V")
        .arg("-p")
        .arg(public)
        .arg("-m")
        .arg(&doc_path)
        .arg("-x")
        .arg(&sig_path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn debian_minisign_verifies_what_the_source_serves() {
    if Command::new("minisign").arg("-v").output().is_err() {
        eprintln!(
            "SKIPPED: no `minisign` command (apt-get install -y minisign; `make deps` installs it)"
        );
        return;
    }
    let dir = temp_dir("minisign-tool");
    let (public, secret) = (dir.join("source.pub"), dir.join("source.key"));
    let made = Command::new("minisign")
        .args(["-G", "-W", "-f"])
        .arg("-p")
        .arg(&public)
        .arg("-s")
        .arg(&secret)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "minisign -G -W: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (_s, port) = start(Some(&secret), 2);

    let doc = call(port, "GET", "/snapshot", &[], b"");
    let version = doc.json()["version"].as_u64().unwrap();
    let sig = call(
        port,
        "GET",
        &format!("/snapshot.minisig?version={version}"),
        &[],
        b"",
    );
    assert_eq!(sig.status, 200);
    let (ok, text) = minisign_verifies(&dir, &public, &doc.body, &sig.body, "snapshot");
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!(
            "Trusted comment: consent-snapshot version={version} part=0"
        )),
        "{text}"
    );

    // The header form is the same file, base64-encoded.
    let header = base64::engine::general_purpose::STANDARD
        .decode(doc.header("consent-signature").unwrap())
        .unwrap();
    let (ok, text) = minisign_verifies(&dir, &public, &doc.body, &header, "snapshot-header");
    assert!(ok, "{text}");

    let part = call(port, "GET", "/snapshot/parts/1", &[], b"");
    let part_sig = call(port, "GET", "/snapshot/parts/1.minisig", &[], b"");
    assert!(minisign_verifies(&dir, &public, &part.body, &part_sig.body, "part1").0);

    assert_eq!(
        call(port, "PUT", "/users/u-bob/grants/surveys", &[], b"").status,
        200
    );
    let delta = call(port, "GET", &format!("/deltas/{version}"), &[], b"");
    let delta_sig = call(port, "GET", &format!("/deltas/{version}.minisig"), &[], b"");
    let (ok, text) = minisign_verifies(&dir, &public, &delta.body, &delta_sig.body, "delta");
    assert!(ok, "{text}");
    assert!(text.contains("consent-delta from="), "{text}");

    // And the tool refuses a changed byte.
    let mut tampered = doc.body.clone();
    let at = tampered.iter().position(|b| *b == b'u').unwrap();
    tampered[at] = b'v';
    let (ok, _) = minisign_verifies(&dir, &public, &tampered, &sig.body, "tampered");
    assert!(!ok, "minisign accepted a tampered snapshot");
    let _ = std::fs::remove_dir_all(&dir);
}
