//! The provision ledger over HTTP: `POST /ledger` (roles, batching, idempotence,
//! validation, limits), the retention purge on its schedule with an injected clock,
//! records across a restart of the binary, and the disclosure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bearer, call, config_text, temp_dir, FETCHER, READER, WRITER};
use consent_core::live::SubjectKeying;
use consent_source::config::AccessConfig;
use consent_source::{Options, Source};

const KEY: &str = "ledger-key-for-tests-0123456789";
const DAY: u64 = 86_400_000;
/// 2026-03-01 00:00 UTC.
const T0: u64 = 1_772_323_200_000;

fn subject(user: &str) -> String {
    SubjectKeying::Hmac(KEY.as_bytes().to_vec()).subject_for(user)
}

fn record(id: &str, user: &str, ts: u64) -> serde_json::Value {
    serde_json::json!({
        "request_id": id,
        "ts_ms": ts,
        "recipient": "saitama-city",
        "recipient_kind": "joint_user",
        "recipient_identity": "spiffe://minna-app.example/ns/saitama-city/sa/portal",
        "purpose": "joint.ebpm",
        "basis": "notice",
        "categories": ["birth_date", "address"],
        "subject": subject(user),
        "outcome": "redact",
        "reason": "notice_basis",
    })
}

fn body(records: &[serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "records": records })).unwrap()
}

fn clock_at(now: &Arc<AtomicU64>) -> consent_source::Clock {
    let now = Arc::clone(now);
    Arc::new(move || now.load(Ordering::SeqCst))
}

fn options(now: &Arc<AtomicU64>) -> Options {
    Options {
        access: AccessConfig::from_toml(&config_text("")).unwrap(),
        ledger_key: Some(KEY.as_bytes().to_vec()),
        clock: clock_at(now),
        ..Options::default()
    }
}

fn start_with(db: &Path, options: Options) -> (Source, u16) {
    let source = Source::start("127.0.0.1:0", db, None, options).unwrap();
    let port = source.port().unwrap();
    (source, port)
}

fn post(port: u16, token: &str, body: &[u8]) -> common::Reply {
    let auth = bearer(token);
    call(
        port,
        "POST",
        "/ledger",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body,
    )
}

fn get(port: u16, path: &str, token: &str) -> common::Reply {
    let auth = bearer(token);
    call(port, "GET", path, &[("authorization", &auth)], b"")
}

fn provisions(port: u16, user: &str) -> serde_json::Value {
    let r = get(port, &format!("/users/{user}/disclosure"), READER);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[test]
fn only_fetchers_post_and_a_batch_is_stored_once() {
    let now = Arc::new(AtomicU64::new(T0));
    let (_s, port) = start_with(Path::new(":memory:"), options(&now));
    let batch = body(&[
        record("r-1", "u-hanako", T0 - 2000),
        record("r-2", "u-hanako", T0 - 1000),
        record("r-3", "u-taro", T0),
    ]);
    for token in [WRITER, READER] {
        let r = post(port, token, &batch);
        assert_eq!(r.status, 403, "{}", r.text());
        assert_eq!(r.json()["error"], "this credential lacks the fetcher role");
    }
    assert_eq!(call(port, "POST", "/ledger", &[], &batch).status, 401);
    let r = post(port, FETCHER, &batch);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "{\"duplicates\":0,\"stored\":3}");
    // The same batch again (a retry): nothing stored twice.
    let again = post(port, FETCHER, &batch);
    assert_eq!(
        again.json(),
        serde_json::json!({"stored": 0, "duplicates": 3})
    );
    // A partial overlap, with one repeated request_id whose content differs.
    let mut changed = record("r-3", "u-taro", T0);
    changed["reason"] = "legal_basis".into();
    let mixed = post(
        port,
        FETCHER,
        &body(&[record("r-4", "u-hanako", T0), changed]),
    );
    assert_eq!(
        mixed.json(),
        serde_json::json!({"stored": 1, "duplicates": 1})
    );
    let d = provisions(port, "u-hanako");
    assert_eq!(d["provisions"].as_array().unwrap().len(), 1);
    assert_eq!(d["provisions"][0]["count"], 3);
    assert_eq!(d["subject_ref"], subject("u-hanako"));
    assert_eq!(provisions(port, "u-taro")["provisions"][0]["count"], 1);
    // GET is not the way in.
    let r = get(port, "/ledger", FETCHER);
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
}

#[test]
fn malformed_batches_are_refused_whole_naming_the_field_never_the_value() {
    let now = Arc::new(AtomicU64::new(T0));
    let (_s, port) = start_with(Path::new(":memory:"), options(&now));
    let mut raw = record("r-2", "u-hanako", T0);
    raw["subject"] = "u-hanako-RAW-ID".into();
    let r = post(port, FETCHER, &body(&[record("r-1", "u-hanako", T0), raw]));
    assert_eq!(r.status, 400);
    let message = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        message.starts_with("records[1].subject: must be the keyed subject"),
        "{message}"
    );
    assert!(!r.text().contains("RAW-ID") && !r.text().contains("hanako"));
    // Nothing of the refused batch was stored, not even its valid first record.
    assert!(provisions(port, "u-hanako")["provisions"]
        .as_array()
        .unwrap()
        .is_empty());
    for (bad, expected) in [
        (b"not json".to_vec(), "(document)"),
        (b"{\"records\": {}}".to_vec(), "records: invalid type: map"),
        (
            b"{\"records\": [], \"extra\": 1}".to_vec(),
            "extra: unknown field",
        ),
    ] {
        let r = post(port, FETCHER, &bad);
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(
            r.json()["error"].as_str().unwrap().starts_with(expected),
            "{}",
            r.text()
        );
    }
    // Limits: more than 1,000 records, or more than 1 MiB.
    let many: Vec<serde_json::Value> = (0..1001)
        .map(|i| record(&format!("m-{i}"), "u-hanako", T0))
        .collect();
    let r = post(port, FETCHER, &body(&many));
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("at most 1000"));
    let mut big = record("big", "u-hanako", T0);
    big["recipient_identity"] = "x".repeat(512).into();
    let padded = format!("{{\"records\": [{}]{}}}", big, " ".repeat(1024 * 1024));
    let r = post(port, FETCHER, padded.as_bytes());
    assert_eq!(r.status, 413, "{}", r.text());
    // A body over the ordinary 64 KiB limit but under 1 MiB is fine for /ledger.
    let full: Vec<serde_json::Value> = (0..1000)
        .map(|i| record(&format!("f-{i}"), "u-hanako", T0))
        .collect();
    let full = body(&full);
    assert!(full.len() > 64 * 1024 && full.len() < 1024 * 1024);
    let r = post(port, FETCHER, &full);
    assert_eq!(r.json()["stored"], 1000, "{}", r.text());
}

#[test]
fn without_a_key_the_ledger_is_off_and_says_so() {
    let options = Options {
        access: AccessConfig::from_toml(&config_text("")).unwrap(),
        ..Options::default()
    };
    let (s, port) = start_with(Path::new(":memory:"), options);
    assert!(!s.ledger_on());
    let r = post(port, FETCHER, &body(&[record("r-1", "u-1", T0)]));
    assert_eq!(r.status, 503);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("the ledger is off"));
    let d = provisions(port, "u-1");
    assert_eq!(d["ledger"]["on"], false);
    assert_eq!(d["subject_ref"], serde_json::Value::Null);
    // Two keys, a short key or a retention under a year do not start.
    let both = Options {
        keying: SubjectKeying::Hmac(b"0123456789abcdef-snapshot".to_vec()),
        ledger_key: Some(KEY.as_bytes().to_vec()),
        ..Options::default()
    };
    let e = Source::start("127.0.0.1:0", Path::new(":memory:"), None, both)
        .err()
        .unwrap();
    assert!(e.to_string().contains("the ledger uses that key"), "{e}");
    let short = Options {
        ledger_key: Some(b"short".to_vec()),
        ..Options::default()
    };
    let e = Source::start("127.0.0.1:0", Path::new(":memory:"), None, short)
        .err()
        .unwrap();
    assert!(e.to_string().contains("at least 16 bytes"), "{e}");
    let brief = Options {
        ledger_key: Some(KEY.as_bytes().to_vec()),
        ledger_retention_days: 90,
        ..Options::default()
    };
    let e = Source::start("127.0.0.1:0", Path::new(":memory:"), None, brief)
        .err()
        .unwrap();
    assert!(e.to_string().contains("at least 365 days"), "{e}");
}

#[test]
fn with_keyed_subjects_the_ledger_uses_the_subject_key() {
    let now = Arc::new(AtomicU64::new(T0));
    let options = Options {
        keying: SubjectKeying::Hmac(KEY.as_bytes().to_vec()),
        ..options(&now)
    };
    let options = Options {
        ledger_key: None,
        ..options
    };
    let (s, port) = start_with(Path::new(":memory:"), options);
    assert!(s.ledger_on());
    assert_eq!(
        post(port, FETCHER, &body(&[record("r-1", "u-1", T0)])).status,
        200
    );
    assert_eq!(provisions(port, "u-1")["provisions"][0]["count"], 1);
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_purge_runs_on_its_schedule_by_the_clock_and_records_itself() {
    let dir = temp_dir("ledger-purge");
    let db = dir.join("l.sqlite");
    let now = Arc::new(AtomicU64::new(T0 + 400 * DAY));
    let (source, port) = start_with(
        &db,
        Options {
            ledger_retention_days: 365,
            ledger_purge_interval: Duration::from_millis(50),
            ..options(&now)
        },
    );
    let r = post(
        port,
        FETCHER,
        &body(&[
            record("old", "u-hanako", T0),
            record("mid", "u-hanako", T0 + 100 * DAY),
            record("new", "u-hanako", T0 + 399 * DAY),
        ]),
    );
    assert_eq!(r.json()["stored"], 3, "{}", r.text());
    // `old` is 400 days old: the next scheduled run purges it, and only it.
    wait_for("the first purge", || {
        get(port, "/ledger/purges", READER).json()["purges"]
            .as_array()
            .is_some_and(|p| p.len() == 1)
    });
    let log = get(port, "/ledger/purges", READER).json();
    assert_eq!(log["retention_days"], 365);
    let p = &log["purges"][0];
    assert_eq!(p["deleted"], 1);
    assert_eq!(p["cutoff_ms"], T0 + 35 * DAY);
    assert_eq!(p["retention_days"], 365);
    assert_eq!(provisions(port, "u-hanako")["provisions"][0]["count"], 2);
    // Runs with nothing due record nothing.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        get(port, "/ledger/purges", READER).json()["purges"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The reader role reads the log; a fetcher does not.
    assert_eq!(get(port, "/ledger/purges", FETCHER).status, 403);
    drop(source);

    // A start purges too: a year and a half later, on the same file, with the hourly
    // schedule (which does not get to run in this test).
    now.store(T0 + 600 * DAY, Ordering::SeqCst);
    let (_again, port) = start_with(
        &db,
        Options {
            ledger_retention_days: 365,
            ..options(&now)
        },
    );
    let log = get(port, "/ledger/purges", READER).json();
    let purges = log["purges"].as_array().unwrap();
    assert_eq!(purges.len(), 2, "{log}");
    assert_eq!(purges[1]["deleted"], 1);
    assert_eq!(purges[1]["at_ms"], T0 + 600 * DAY);
    assert_eq!(provisions(port, "u-hanako")["provisions"][0]["count"], 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_disclosure_report_is_json_or_a_page_for_readers_only() {
    let now = Arc::new(AtomicU64::new(T0 + DAY));
    let (_s, port) = start_with(Path::new(":memory:"), options(&now));
    let w = bearer(WRITER);
    let put = call(
        port,
        "PUT",
        "/users/u-hanako/grants/service.improvement",
        &[("authorization", &w)],
        b"{\"policy_version\": 1, \"explicit\": [\"location.gps\"]}",
    );
    assert_eq!(put.status, 200, "{}", put.text());
    call(
        port,
        "PUT",
        "/users/u-hanako/stop-third-party",
        &[("authorization", &w)],
        b"",
    );
    post(port, FETCHER, &body(&[record("r-1", "u-hanako", T0)]));
    for token in [WRITER, FETCHER] {
        assert_eq!(get(port, "/users/u-hanako/disclosure", token).status, 403);
    }
    let d = provisions(port, "u-hanako");
    assert_eq!(d["user"], "u-hanako");
    assert_eq!(d["consents"][0]["purpose"]["id"], "service.improvement");
    assert_eq!(d["consents"][0]["policy_version"], 1);
    assert_eq!(
        d["consents"][0]["explicit"][0]["label"]["ja"],
        "GPS位置情報"
    );
    assert_eq!(d["rights"]["stop_third_party"], true);
    assert_eq!(d["history"].as_array().unwrap().len(), 2);
    assert_eq!(d["provisions"][0]["recipient"]["label"]["ja"], "さいたま市");
    assert_eq!(d["provisions"][0]["first_ms"], T0);
    // HTML by Accept or by ?format=html, in the language asked.
    let r = call(
        port,
        "GET",
        "/users/u-hanako/disclosure",
        &[
            ("authorization", &bearer(READER)),
            ("accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"),
        ],
        b"",
    );
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));
    let page = r.text();
    assert!(page.contains("<html lang=\"ja\">") && page.contains("さいたま市"));
    assert!(page.contains("data-recipient=\"saitama-city\""));
    let en = get(
        port,
        "/users/u-hanako/disclosure?format=html&lang=en",
        READER,
    )
    .text();
    assert!(en.contains("Saitama City (joint user)") && !en.contains("さいたま市"));
    let json = get(port, "/users/u-hanako/disclosure?format=json", READER);
    assert_eq!(json.header("content-type"), Some("application/json"));
    for (query, error) in [
        ("lang=fr", "lang must be ja, en or both"),
        ("format=pdf", "format must be json or html"),
        ("who=me", "unknown query parameter"),
    ] {
        let r = get(port, &format!("/users/u-hanako/disclosure?{query}"), READER);
        assert_eq!(
            (r.status, r.json()["error"].as_str().unwrap()),
            (400, error)
        );
    }
    // The ID asked for is shown escaped, never as markup.
    let r = get(
        port,
        "/users/%3Cb%3Ex%3C%2Fb%3E/disclosure?format=html",
        READER,
    );
    assert_eq!(r.status, 200);
    assert!(r.text().contains("&lt;b&gt;x&lt;/b&gt;") && !r.text().contains("<b>x</b>"));
}

/// Starts the binary on `db` with a ledger key; returns it and its port.
fn spawn(db: &Path, config: &Path) -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_consent-source"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .arg("--config")
        .arg(config)
        .env("CONSENT_LEDGER_SUBJECT_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
                assert!(
                    line.contains("provision ledger on (records kept 1095 days)"),
                    "{line}"
                );
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

#[test]
fn records_sent_before_a_kill_are_all_there_after_a_restart_and_none_twice() {
    let dir = temp_dir("ledger-restart");
    let db = dir.join("l.sqlite");
    let config = dir.join("access.toml");
    std::fs::write(&config, config_text("")).unwrap();
    let now = consent_source::system_clock()();
    let (mut child, port) = spawn(&db, &config);
    let batches: Vec<Vec<u8>> = (0..5)
        .map(|b| {
            let records: Vec<serde_json::Value> = (0..200)
                .map(|i| record(&format!("b{b}-{i}"), "u-hanako", now - 1000 + i))
                .collect();
            body(&records)
        })
        .collect();
    for batch in &batches {
        assert_eq!(post(port, FETCHER, batch).json()["stored"], 200);
    }
    child.kill().unwrap(); // SIGKILL: no shutdown path runs.
    child.wait().unwrap();

    let (mut child, port) = spawn(&db, &config);
    let d = provisions(port, "u-hanako");
    assert_eq!(d["provisions"][0]["count"], 1000, "{d}");
    // The filter retries every batch (it never saw the answers): nothing is stored twice.
    for batch in &batches {
        assert_eq!(
            post(port, FETCHER, batch).json(),
            serde_json::json!({"stored": 0, "duplicates": 200})
        );
    }
    assert_eq!(provisions(port, "u-hanako")["provisions"][0]["count"], 1000);
    child.kill().unwrap();
    child.wait().unwrap();

    // Another ledger key on the same file is refused at start.
    let out = Command::new(env!("CARGO_BIN_EXE_consent-source"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .arg("--config")
        .arg(&config)
        .env(
            "CONSENT_LEDGER_SUBJECT_KEY",
            "another-ledger-key-0123456789",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("written with another ledger key"),
        "{stderr}"
    );
    assert!(!stderr.contains("another-ledger-key"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
