//! A `kill -9` of the consent-source binary in the middle of a burst of writes loses no
//! acknowledged change: every write answered 200 is in the records and in the audit table
//! after a restart on the same database.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bearer, call, config_text, temp_dir, try_call, READER, WRITER};

/// Starts the binary on `db`; returns it and its port (read from its start-up line).
fn spawn(db: &Path, config: &Path) -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_consent-source"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--db")
        .arg(db)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
                let port: u16 = rest.split(' ').next().unwrap().parse().unwrap();
                let _ = tx.send(port);
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the source prints its address");
    (child, port)
}

/// What a write did, as the acknowledgement told it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Acked {
    subject: String,
    action: &'static str,
    version: u64,
}

fn write_of(i: usize) -> (&'static str, &'static str, &'static str) {
    match i % 4 {
        0 => ("PUT", "grants/surveys", "grant"),
        1 => ("PUT", "stop-use", "stop_use"),
        2 => ("DELETE", "grants/surveys", "withdraw"),
        _ => ("DELETE", "stop-use", "lift_stop_use"),
    }
}

#[test]
fn a_kill_9_mid_burst_loses_no_acknowledged_change() {
    let dir = temp_dir("durability");
    let db = dir.join("consents.sqlite");
    let config = dir.join("access.toml");
    std::fs::write(&config, config_text("")).unwrap();
    let (mut child, port) = spawn(&db, &config);

    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(60);
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (acked, count, stop) = (Arc::clone(&acked), Arc::clone(&count), Arc::clone(&stop));
            std::thread::spawn(move || {
                let auth = bearer(WRITER);
                for i in 0..50_000usize {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    let subject = format!("u-w{t}-{}", (i / 4) % 8);
                    let (method, what, action) = write_of(i);
                    let path = format!("/users/{subject}/{what}");
                    match try_call(port, method, &path, &[("authorization", &auth)], b"") {
                        Ok(r) if r.status == 200 => {
                            let version = r.json()["version"].as_u64().unwrap();
                            acked.lock().unwrap().push(Acked {
                                subject,
                                action,
                                version,
                            });
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => panic!("{method} {path}: {} {}", r.status, r.text()),
                        // The source is gone: this write was never acknowledged.
                        Err(_) => {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();

    // Kill it hard once a few hundred writes are acknowledged, with all four writers busy.
    while count.load(Ordering::Relaxed) < 400 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    stop.store(true, Ordering::Relaxed);
    let _ = child.wait();
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 400,
        "only {} writes acknowledged",
        acked.len()
    );

    let (mut child, port) = spawn(&db, &config);
    let reader = bearer(READER);
    let ra = [("authorization", reader.as_str())];
    let mut audit: BTreeMap<u64, (String, String, String)> = BTreeMap::new();
    let mut after = 0u64;
    loop {
        let page = call(
            port,
            "GET",
            &format!("/audit?limit=1000&after={after}"),
            &ra,
            b"",
        )
        .json();
        for e in page["entries"].as_array().unwrap() {
            let version = e["version"].as_u64().unwrap();
            let row = (
                e["subject"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            );
            assert!(
                audit.insert(version, row).is_none(),
                "version {version} twice"
            );
        }
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    for a in &acked {
        let row = audit
            .get(&a.version)
            .unwrap_or_else(|| panic!("acknowledged version {} is not in the audit", a.version));
        assert_eq!(
            (row.0.as_str(), row.1.as_str(), row.2.as_str()),
            (a.subject.as_str(), a.action, "admin")
        );
    }
    // Every version up to the last one is there, once: nothing half-written either.
    let last = *audit.keys().last().unwrap();
    assert_eq!(audit.len() as u64, last, "versions 1..={last} each once");
    let max_acked = acked.iter().map(|a| a.version).max().unwrap();
    assert!(last >= max_acked);

    // And the records hold the latest change of each person (acknowledged or, for the
    // writes cut off by the kill, committed but unanswered).
    let mut latest: BTreeMap<&str, &str> = BTreeMap::new();
    for (subject, action, _) in audit.values() {
        latest.insert(subject, action);
    }
    let mut surveys: BTreeMap<&str, bool> = BTreeMap::new();
    let mut stopped: BTreeMap<&str, bool> = BTreeMap::new();
    for (subject, action, _) in audit.values() {
        match action.as_str() {
            "grant" => drop(surveys.insert(subject, true)),
            "withdraw" => drop(surveys.insert(subject, false)),
            "stop_use" => drop(stopped.insert(subject, true)),
            _ => drop(stopped.insert(subject, false)),
        }
    }
    for subject in latest.keys() {
        let record = call(port, "GET", &format!("/users/{subject}"), &ra, b"").json();
        assert_eq!(
            record["grants"].get("surveys").is_some(),
            surveys.get(subject).copied().unwrap_or(false),
            "{subject}"
        );
        assert_eq!(
            record["stop_use"].as_bool().unwrap_or(false),
            stopped.get(subject).copied().unwrap_or(false),
            "{subject}"
        );
    }
    eprintln!(
        "{} writes acknowledged before the kill, {} committed; all acknowledged ones survived",
        acked.len(),
        audit.len()
    );
    child.kill().unwrap();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
