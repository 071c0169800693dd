//! `consentctl keygen`, `sign` and `verify` through the built binary, and their
//! interoperability with Debian's `minisign` both ways (skipped, saying so, when `minisign`
//! is not installed: `make system-deps` installs it). Also keys written `{"env": ...}` in a
//! configuration `validate config` reads.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_consentctl");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_in(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let out = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{program} starts: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn consentctl(args: &[&str]) -> Run {
    run_in(BIN, args, &[])
}

/// A fresh directory for one test.
fn dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("consentctl-signing-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The secret key's base64 line (what must never be printed).
fn secret_line(key: &Path) -> String {
    std::fs::read_to_string(key)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string()
}

fn keygen(d: &Path) -> (PathBuf, PathBuf) {
    let (sk, pk) = (d.join("minisign.key"), d.join("minisign.pub"));
    let r = consentctl(&["keygen", "--secret-key", s(&sk), "--public-key", s(&pk)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains(&secret_line(&sk)), "{}", r.stdout);
    (sk, pk)
}

fn public_line(pk: &Path) -> String {
    std::fs::read_to_string(pk)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string()
}

const SNAPSHOT: &str = r#"{"version": 12, "records": [{"subject": "u-1", "stop_use": true}]}"#;

#[test]
fn keygen_sign_and_verify_round_trip_and_refuse_tampering_and_other_keys() {
    let d = dir("round-trip");
    let (sk, pk) = keygen(&d);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sk).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the secret key is private: {mode:o}");
    }
    let again = consentctl(&["keygen", "--secret-key", s(&sk), "--public-key", s(&pk)]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("exists; pass --force"),
        "{}",
        again.stderr
    );
    let file = d.join("snapshot.json");
    std::fs::write(&file, SNAPSHOT).unwrap();
    let signed = consentctl(&["sign", "--key", s(&sk), s(&file)]);
    assert_eq!(signed.code, 0, "{}", signed.stderr);
    assert!(signed.stdout.contains("snapshot.json.minisig written"));
    let minisig = std::fs::read_to_string(d.join("snapshot.json.minisig")).unwrap();
    assert!(minisig.contains("\tversion=12\n"), "{minisig}");
    for key in [s(&pk).to_string(), public_line(&pk)] {
        let ok = consentctl(&["verify", "--public-key", &key, s(&file)]);
        assert_eq!(ok.code, 0, "{}", ok.stderr);
        assert!(
            ok.stdout.contains("signature valid (key id "),
            "{}",
            ok.stdout
        );
    }
    // One byte changed.
    std::fs::write(&file, SNAPSHOT.replace("true", "false")).unwrap();
    let bad = consentctl(&["verify", "--public-key", s(&pk), s(&file)]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr
            .contains("refused: the signature does not match the document"),
        "{}",
        bad.stderr
    );
    // Another key.
    let other = dir("round-trip-other");
    let (_, other_pk) = keygen(&other);
    std::fs::write(&file, SNAPSHOT).unwrap();
    let foreign = consentctl(&["verify", "--public-key", s(&other_pk), s(&file)]);
    assert_eq!(foreign.code, 1);
    assert!(
        foreign.stderr.contains("signed with another key"),
        "{}",
        foreign.stderr
    );
    // The header form verifies too, and nothing printed holds the secret key.
    let header = consentctl(&["sign", "--key", s(&sk), "--header", s(&file)]);
    assert_eq!(header.code, 0, "{}", header.stderr);
    assert!(header.stdout.contains(": consent-signature: dW50cnVzdGVk"));
    for r in [&signed, &bad, &foreign, &header] {
        assert!(!r.stdout.contains(&secret_line(&sk)) && !r.stderr.contains(&secret_line(&sk)));
    }
    let not_a_key = consentctl(&["sign", "--key", s(&pk), s(&file)]);
    assert_eq!(not_a_key.code, 1);
    assert!(
        not_a_key
            .stderr
            .contains("is not an unencrypted minisign secret key"),
        "{}",
        not_a_key.stderr
    );
}

/// Debian's `minisign`, if installed.
fn minisign() -> Option<&'static str> {
    let found = Command::new("minisign").arg("-v").output().is_ok();
    if !found {
        eprintln!(
            "SKIPPED: Debian's `minisign` is not installed (`make system-deps` or apt-get install minisign): interoperability not checked"
        );
    }
    found.then_some("minisign")
}

#[test]
fn consentctl_and_debian_minisign_read_each_others_keys_and_signatures() {
    let Some(minisign) = minisign() else {
        return;
    };
    let d = dir("interop");
    let file = d.join("snapshot.json");
    std::fs::write(&file, SNAPSHOT).unwrap();
    // consentctl signs, minisign -V verifies.
    let (sk, pk) = keygen(&d);
    assert_eq!(consentctl(&["sign", "--key", s(&sk), s(&file)]).code, 0);
    let v = run_in(minisign, &["-V", "-p", s(&pk), "-m", s(&file)], &[]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    assert!(v
        .stdout
        .contains("Signature and comment signature verified"));
    // minisign makes the key and signs (prehashed, then legacy), consentctl verifies.
    let (msk, mpk) = (d.join("debian.key"), d.join("debian.pub"));
    let g = run_in(
        minisign,
        &["-G", "-W", "-f", "-p", s(&mpk), "-s", s(&msk)],
        &[],
    );
    assert_eq!(g.code, 0, "{}{}", g.stdout, g.stderr);
    for legacy in [false, true] {
        let mut args = vec!["-S", "-s", s(&msk), "-m", s(&file), "-t", "version=12"];
        if legacy {
            args.push("-l");
        }
        let signed = run_in(minisign, &args, &[]);
        assert_eq!(signed.code, 0, "{}{}", signed.stdout, signed.stderr);
        let ok = consentctl(&["verify", "--public-key", s(&mpk), s(&file)]);
        assert_eq!(ok.code, 0, "legacy {legacy}: {}", ok.stderr);
        assert!(
            ok.stdout.contains("trusted comment: version=12"),
            "{}",
            ok.stdout
        );
    }
    // consentctl signs with minisign's key, minisign verifies.
    assert_eq!(consentctl(&["sign", "--key", s(&msk), s(&file)]).code, 0);
    let v = run_in(minisign, &["-V", "-p", s(&mpk), "-m", s(&file)], &[]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    // A tampered file fails in both.
    std::fs::write(&file, SNAPSHOT.replace("12", "13")).unwrap();
    assert_ne!(
        run_in(minisign, &["-V", "-p", s(&mpk), "-m", s(&file)], &[]).code,
        0
    );
    assert_eq!(
        consentctl(&["verify", "--public-key", s(&mpk), s(&file)]).code,
        1
    );
}

#[test]
fn validate_config_reads_keys_from_the_environment_and_names_missing_variables() {
    let d = dir("env");
    let config = d.join("config.json");
    std::fs::write(
        &config,
        r#"{"pseudonymisation_key": {"env": "CTL_TEST_PSEUDONYM_KEY"},
            "snapshot": {"subject_key": "hmac_sha256", "subject_key_secret": {"env": "CTL_TEST_SUBJECT_KEY"}}}"#,
    )
    .unwrap();
    let key = "a-long-enough-test-key-4242";
    let ok = run_in(
        BIN,
        &["validate", "config", s(&config)],
        &[
            ("CTL_TEST_PSEUDONYM_KEY", key),
            ("CTL_TEST_SUBJECT_KEY", key),
        ],
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let short = run_in(
        BIN,
        &["validate", "config", s(&config)],
        &[
            ("CTL_TEST_PSEUDONYM_KEY", "short-4242"),
            ("CTL_TEST_SUBJECT_KEY", key),
        ],
    );
    assert_eq!(short.code, 1);
    assert!(
        short.stderr.contains("pseudonymisation_key")
            && short.stderr.contains("`CTL_TEST_PSEUDONYM_KEY`"),
        "{}",
        short.stderr
    );
    let missing = run_in(BIN, &["validate", "config", s(&config)], &[]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("`CTL_TEST_SUBJECT_KEY` is not set")
            || missing
                .stderr
                .contains("`CTL_TEST_PSEUDONYM_KEY` is not set"),
        "{}",
        missing.stderr
    );
    for r in [&ok, &short, &missing] {
        assert!(!r.stdout.contains("4242") && !r.stderr.contains("4242"));
    }
}
