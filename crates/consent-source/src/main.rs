//! `consent-source`: the reference consent source.
//!
//! ```text
//! consent-source [--listen ADDR] [--db FILE] [--seed SNAPSHOT.json] [--policy FILE]
//!                [--config FILE] [--signing-key FILE] [--subject-key-secret S]
//!                [--ledger-subject-key S] [--ledger-retention-days N]
//!                [--part-size N] [--max-body-bytes N] [--demo-allow-loopback]
//! ```
//!
//! Defaults: 127.0.0.1:8082, consent-source.sqlite, no seed, the shipped policy, plain
//! subjects, no signing, no ledger (it needs a key: the subject key secret, or with plain
//! subjects the ledger subject key), ledger records kept 1095 days.
//! It needs `--config` (tokens and client identities with their roles, see README) or,
//! for a local demo only, `--demo-allow-loopback` (unauthenticated calls from this machine
//! may do everything); with neither it refuses to start. Environment: `CONSENT_SOURCE_CONFIG`,
//! `CONSENT_SIGNING_KEY_FILE`, `CONSENT_SUBJECT_KEY_SECRET`, `CONSENT_POLICY_FILE`,
//! `CONSENT_LEDGER_SUBJECT_KEY`, `CONSENT_LEDGER_RETENTION_DAYS` stand for the flags.

use std::path::PathBuf;

use clap::Parser;
use consent_core::live::FullSnapshotDoc;
use consent_core::live::SubjectKeying;
use consent_source::config::AccessConfig;
use consent_source::sign::Signer;
use consent_source::{Options, Source};

/// The reference consent source: consent records in SQLite, an HTTP API to change them,
/// snapshots and deltas for the filter's fetcher, an append-only audit table.
#[derive(Parser)]
#[command(name = "consent-source", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8082")]
    listen: String,
    /// SQLite database (created when missing).
    #[arg(long, default_value = "consent-source.sqlite")]
    db: PathBuf,
    /// Snapshot document loaded into an empty database.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// The policy (JSON) changes are checked against and the disclosure report's labels
    /// come from; default: the shipped envoy-config/policy/saitama-minna-app.json.
    #[arg(long, env = "CONSENT_POLICY_FILE")]
    policy: Option<PathBuf>,
    /// Access configuration (TOML): tokens (SHA-256) and client identities with roles.
    #[arg(long, env = "CONSENT_SOURCE_CONFIG")]
    config: Option<PathBuf>,
    /// Unencrypted minisign secret key (`minisign -G -W`): sign every snapshot part and delta.
    #[arg(long, env = "CONSENT_SIGNING_KEY_FILE")]
    signing_key: Option<PathBuf>,
    /// HMAC key (16+ bytes) for keyed subjects; prefer the environment variable.
    #[arg(long, env = "CONSENT_SUBJECT_KEY_SECRET", hide_env_values = true)]
    subject_key_secret: Option<String>,
    /// With plain subjects: the HMAC key (16+ bytes) the filters write the provision
    /// ledger's keyed subjects with (with --subject-key-secret the ledger uses that key).
    /// Without either key the ledger is off. Prefer the environment variable.
    #[arg(long, env = "CONSENT_LEDGER_SUBJECT_KEY", hide_env_values = true)]
    ledger_subject_key: Option<String>,
    /// Days provision-ledger records are kept (365 or more; default 1095, or the config's
    /// ledger_retention_days); older ones are purged at start and every hour.
    #[arg(long, env = "CONSENT_LEDGER_RETENTION_DAYS")]
    ledger_retention_days: Option<u32>,
    /// Records in one snapshot part.
    #[arg(long, default_value_t = consent_source::store::DEFAULT_PART_SIZE)]
    part_size: usize,
    /// Largest request body in bytes (overrides the config's max_body_bytes).
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// DEMO ONLY: calls from loopback (127.0.0.0/8, ::1) need no credential and may do
    /// everything. Never behind a proxy or sidecar on the same host.
    #[arg(long)]
    demo_allow_loopback: bool,
}

fn fail(code: i32, message: &str) -> ! {
    eprintln!("consent-source: {message}");
    std::process::exit(code)
}

fn main() {
    let args = Args::parse();
    if args.config.is_none() && !args.demo_allow_loopback {
        fail(
            2,
            "no credentials configured: pass --config FILE (tokens or client identities with \
             roles, see README), or --demo-allow-loopback for a local demo",
        );
    }
    let mut access = match &args.config {
        Some(path) => AccessConfig::load(path).unwrap_or_else(|e| fail(2, &e.to_string())),
        None => AccessConfig::default(),
    };
    if let Some(n) = args.max_body_bytes {
        if n == 0 {
            fail(2, "--max-body-bytes must be 1 or more");
        }
        access.max_body_bytes = n;
    }
    let signer = args
        .signing_key
        .as_deref()
        .map(|path| Signer::from_file(path).unwrap_or_else(|e| fail(2, &e.to_string())));
    let seed = args.seed.as_deref().map(|path| {
        let bytes =
            std::fs::read(path).unwrap_or_else(|e| fail(1, &format!("cannot read the seed: {e}")));
        FullSnapshotDoc::from_json(&bytes)
            .unwrap_or_else(|e| fail(1, &format!("seed rejected: {e}")))
    });
    let keying = match args.subject_key_secret {
        Some(s) if s.len() >= 16 => SubjectKeying::Hmac(s.into_bytes()),
        Some(_) => fail(2, "the subject key secret needs at least 16 bytes"),
        None => SubjectKeying::Plain,
    };
    let keyed = matches!(keying, SubjectKeying::Hmac(_));
    let policy_json = args.policy.as_deref().map(|path| {
        std::fs::read_to_string(path).unwrap_or_else(|e| {
            fail(
                2,
                &format!("cannot read the policy {}: {e}", path.display()),
            )
        })
    });
    let ledger_key = match (keyed, args.ledger_subject_key) {
        (true, Some(_)) => fail(
            2,
            "--ledger-subject-key is for plain subjects: with --subject-key-secret the ledger uses that key",
        ),
        (false, Some(k)) if k.len() < 16 => fail(2, "the ledger subject key needs at least 16 bytes"),
        (_, k) => k.map(String::into_bytes),
    };
    let ledger_on = keyed || ledger_key.is_some();
    let retention_days = args
        .ledger_retention_days
        .or(access.ledger_retention_days)
        .unwrap_or(consent_source::ledger::DEFAULT_RETENTION_DAYS);
    if let Err(e) = consent_source::ledger::check_retention_days(retention_days) {
        fail(2, &format!("--ledger-retention-days: {e}"));
    }
    let summary = format!(
        "{} token(s), {} client identit(ies), snapshots {}, bodies up to {} bytes, subjects {}, {}, {}",
        access.tokens.len(),
        access.clients.len(),
        if access.public_snapshots {
            "public"
        } else {
            "for fetchers"
        },
        access.max_body_bytes,
        if keyed { "hmac_sha256" } else { "plain" },
        if ledger_on {
            format!("provision ledger on (records kept {retention_days} days)")
        } else {
            "provision ledger OFF (no key: POST /ledger answers 503; pass --ledger-subject-key or --subject-key-secret)".to_string()
        },
        match &signer {
            Some(s) => format!(
                "signing with minisign key {} (public key {})",
                s.key_id(),
                s.public_key_base64()
            ),
            None => "not signing".to_string(),
        },
    );
    if args.demo_allow_loopback {
        eprintln!(
            "consent-source: WARNING --demo-allow-loopback: any process on this machine may read \
             and change every consent without a credential. For the local demo only: never in a \
             deployment, and never behind a proxy or sidecar on the same host (its calls come \
             from loopback)."
        );
    }
    let options = Options {
        keying,
        part_size: args.part_size,
        access,
        demo_allow_loopback: args.demo_allow_loopback,
        signer,
        policy_json,
        ledger_key,
        ledger_retention_days: retention_days,
        ..Options::default()
    };
    match Source::start(&args.listen, &args.db, seed.as_ref(), options) {
        Ok(source) => {
            let port = source.port().unwrap_or(0);
            let host = args
                .listen
                .rsplit_once(':')
                .map_or(args.listen.as_str(), |(h, _)| h);
            eprintln!(
                "consent source listening on http://{host}:{port} (database {}; {summary})",
                args.db.display()
            );
            source.wait();
        }
        Err(e) => fail(1, &format!("cannot start: {e}")),
    }
}
