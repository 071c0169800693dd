//! `consent-source [--listen ADDR] [--db FILE] [--seed SNAPSHOT.json] [--subject-key-secret S] [--part-size N]`:
//! the reference consent source (defaults: 127.0.0.1:8082, consent-source.sqlite, no seed,
//! plain subjects). The secret may also come from `CONSENT_SUBJECT_KEY_SECRET`.

use std::path::PathBuf;

use consent_core::live::FullSnapshotDoc;
use consent_core::live::SubjectKeying;
use consent_source::Source;

fn main() {
    let mut listen = "127.0.0.1:8082".to_string();
    let mut db = PathBuf::from("consent-source.sqlite");
    let mut seed = None;
    let mut secret = std::env::var("CONSENT_SUBJECT_KEY_SECRET").ok();
    let mut part_size = consent_source::store::DEFAULT_PART_SIZE;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            ("--db", Some(v)) => db = PathBuf::from(v),
            ("--seed", Some(v)) => seed = Some(v),
            ("--subject-key-secret", Some(v)) => secret = Some(v),
            ("--part-size", Some(v)) => match v.parse() {
                Ok(n) => part_size = n,
                Err(_) => {
                    eprintln!("--part-size takes a number of records");
                    std::process::exit(2);
                }
            },
            _ => {
                eprintln!("usage: consent-source [--listen ADDR] [--db FILE] [--seed SNAPSHOT.json] [--subject-key-secret S] [--part-size N]");
                std::process::exit(2);
            }
        }
    }
    let seed_doc = match seed.as_deref().map(std::fs::read) {
        None => None,
        Some(Ok(bytes)) => match FullSnapshotDoc::from_json(&bytes) {
            Ok(doc) => Some(doc),
            Err(e) => {
                eprintln!("seed rejected: {e}");
                std::process::exit(1);
            }
        },
        Some(Err(e)) => {
            eprintln!("cannot read the seed: {e}");
            std::process::exit(1);
        }
    };
    let keying = match secret {
        Some(s) if s.len() >= 16 => SubjectKeying::Hmac(s.into_bytes()),
        Some(_) => {
            eprintln!("the subject key secret needs at least 16 bytes");
            std::process::exit(2);
        }
        None => SubjectKeying::Plain,
    };
    match Source::start_with_parts(&listen, &db, seed_doc.as_ref(), keying, part_size) {
        Ok(source) => {
            eprintln!(
                "consent source listening on http://{listen} (database {})",
                db.display()
            );
            source.wait();
        }
        Err(e) => {
            eprintln!("consent source cannot start: {e}");
            std::process::exit(1);
        }
    }
}
