//! The provision ledger, filter side, through real Envoy and the reference consent source:
//! provisions to third parties and joint users are recorded with the categories that
//! passed, operator traffic is not, a source that cannot take records for longer than the
//! bound blocks such provisions (`ledger_unavailable`) while operator traffic passes, and
//! records buffered while the source restarts all arrive once.
//!
//! A processor abroad without consent is blocked before anything is provided:
//! `tests/e2e_parties.rs` covers it (processors are not recorded, see README "Provision
//! ledger: the filter's side").

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{
    curl, demo_consents, demo_signing_key, free_port, localise, map_plugin_config, send,
    shipped_config, split_lds, start_backend, start_demo, start_demo_mtls, start_demo_on_source,
    wait_until, worker_lease, ClientTls, Envoy, Fixture, Req, TestPki, DEMO_LEDGER_KEY,
};

const OPERATOR_ID: &str = "spiffe://minna-app.example/ns/tsunagu/sa/app-api";
const CITY_ID: &str = "spiffe://minna-app.example/ns/saitama-city/sa/portal";
const STRANGER_ID: &str = "spiffe://ads.example/ns/default/sa/offers";

struct Mtls {
    f: Fixture,
    city: ClientTls,
    stranger: ClientTls,
    _pki: TestPki,
}

fn mtls() -> &'static Mtls {
    static FIXTURE: std::sync::OnceLock<Mtls> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let pki = TestPki::new();
        let operator = pki.client("operator", OPERATOR_ID);
        let city = pki.client("city", CITY_ID);
        let stranger = pki.client("stranger", STRANGER_ID);
        let f = start_demo_mtls(|y| y.to_string(), &pki, operator);
        Mtls {
            f,
            city,
            stranger,
            _pki: pki,
        }
    })
}

fn reason(resp: &support::Response) -> String {
    resp.json()["reason"].as_str().unwrap_or("").to_string()
}

/// The person's disclosure report from the consent source (JSON).
fn disclosure(f: &Fixture, user: &str) -> serde_json::Value {
    let resp = curl(&[&f.source_url(&format!("/users/{user}/disclosure"))]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

/// The ledger lines (`provisions` or `refused`) of `user` for `purpose`.
fn lines(f: &Fixture, user: &str, table: &str, purpose: &str) -> Vec<serde_json::Value> {
    disclosure(f, user)[table]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|l| l["purpose"]["id"] == purpose)
        .collect()
}

fn ids(line: &serde_json::Value, field: &str) -> Vec<String> {
    line[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c.get("id")
                .and_then(|v| v.as_str())
                .or_else(|| c.as_str())
                .unwrap()
                .to_string()
        })
        .collect()
}

fn grant(f: &Fixture, user: &str, purpose: &str) {
    let path = format!("/users/{user}/grants/{purpose}");
    assert_eq!(curl(&["-X", "PUT", &f.source_url(&path)]).status, 200);
}

/// A value of Envoy's stats (`wasmcustom.<name>`, or `dynamicmodulescustom.<name>` from
/// the native module), 0 when absent.
fn stat(f: &Fixture, name: &str) -> u64 {
    let url = format!("http://127.0.0.1:{}/stats?filter={name}", f.envoy.admin);
    curl(&[&url])
        .text()
        .lines()
        .filter_map(|l| l.split_once(": "))
        .find(|(n, _)| n.rsplit_once('.').map(|(_, last)| last) == Some(name))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_consented_third_party_is_recorded_with_exactly_the_categories_that_passed() {
    let m = mtls();
    grant(&m.f, "u-led-a", "third_party.provision");
    grant(&m.f, "u-led-a", "marketing.third_party_offers");
    let ask = || {
        send(
            &m.f,
            Req::get("/echo?email=a@example.jp&lat=35.9")
                .who("u-led-a", "marketing.third_party_offers")
                .header("x-device-id", "dev-1")
                .with_client(&m.stranger),
        )
    };
    assert!(wait_until(Duration::from_secs(10), || ask().0.status == 200));
    let (resp, seen) = ask();
    assert_eq!(resp.status, 200);
    let seen = seen.expect("reached the backend");
    assert!(!seen.path.contains("lat="), "location did not pass");
    assert_eq!(seen.header("x-device-id"), None, "nor the device id");
    let mut line = None;
    assert!(wait_until(Duration::from_secs(10), || {
        line = lines(
            &m.f,
            "u-led-a",
            "provisions",
            "marketing.third_party_offers",
        )
        .into_iter()
        .next();
        line.as_ref()
            .is_some_and(|l| l["count"].as_u64() >= Some(2))
    }));
    let line = line.unwrap();
    assert_eq!(line["recipient"]["id"], "-");
    assert_eq!(line["recipient_kind"], "third_party");
    assert_eq!(
        ids(&line, "categories"),
        ["name", "address", "phone", "email"],
        "the purpose's categories the provision consent covers, nothing removed"
    );
    assert_eq!(ids(&line, "identities"), [STRANGER_ID]);
    // The ledger files the person under the keyed subject, never the raw id.
    let report = disclosure(&m.f, "u-led-a");
    let subject = report["subject_ref"].as_str().unwrap();
    assert_eq!(
        subject,
        consent_core::live::SubjectKeying::Hmac(DEMO_LEDGER_KEY.as_bytes().to_vec())
            .subject_for("u-led-a")
    );
}

#[test]
fn a_joint_users_joint_use_is_recorded() {
    let m = mtls();
    let (resp, _) = send(
        &m.f,
        Req::get("/echo")
            .who("u-led-b", "joint.ebpm")
            .with_client(&m.city),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let mut found = Vec::new();
    assert!(wait_until(Duration::from_secs(10), || {
        found = lines(&m.f, "u-led-b", "provisions", "joint.ebpm");
        !found.is_empty()
    }));
    let line = &found[0];
    assert_eq!(line["recipient"]["id"], "saitama-city");
    assert_eq!(line["recipient_kind"], "joint_user");
    assert_eq!(line["count"], 1);
    let categories = ids(line, "categories");
    assert!(categories.contains(&"address".to_string()));
    assert!(
        !categories.contains(&"location.gps".to_string()),
        "an explicit-grant category without the grant did not pass: {categories:?}"
    );
    assert_eq!(ids(line, "identities"), [CITY_ID]);
}

#[test]
fn a_refused_third_party_provision_is_recorded_as_refused() {
    let m = mtls();
    let (resp, _) = send(
        &m.f,
        Req::get("/echo")
            .who("u-led-r", "marketing.third_party_offers")
            .with_client(&m.stranger),
    );
    assert_eq!(
        (resp.status, reason(&resp)),
        (403, "third_party_consent_missing".into())
    );
    let mut found = Vec::new();
    assert!(wait_until(Duration::from_secs(10), || {
        found = lines(&m.f, "u-led-r", "refused", "marketing.third_party_offers");
        !found.is_empty()
    }));
    assert!(ids(&found[0], "categories").is_empty());
    assert!(lines(
        &m.f,
        "u-led-r",
        "provisions",
        "marketing.third_party_offers"
    )
    .is_empty());
}

#[test]
fn operator_traffic_is_not_recorded() {
    let m = mtls();
    let (resp, _) = send(&m.f, Req::get("/echo").who("u-led-c", "support.inquiries"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    // A joint user's request right after it: once that one is in, the drainer has sent
    // everything queued before it.
    let (resp, _) = send(
        &m.f,
        Req::get("/echo")
            .who("u-led-c", "joint.ebpm")
            .with_client(&m.city),
    );
    assert_eq!(resp.status, 200);
    assert!(wait_until(Duration::from_secs(10), || {
        !lines(&m.f, "u-led-c", "provisions", "joint.ebpm").is_empty()
    }));
    let report = disclosure(&m.f, "u-led-c");
    let purposes: Vec<&str> = report["provisions"]
        .as_array()
        .unwrap()
        .iter()
        .chain(report["refused"].as_array().unwrap())
        .map(|l| l["purpose"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        purposes,
        ["joint.ebpm"],
        "the operator's use is not a provision"
    );
}

/// A consent source on a database file (so that it can be restarted on it).
fn file_source(db: &Path, port: u16) -> Result<consent_source::Source, String> {
    let seed = consent_core::live::FullSnapshotDoc::from_json(demo_consents().as_bytes())
        .expect("demo consents parse");
    let options = consent_source::Options {
        signer: Some(
            consent_source::sign::Signer::from_file(&demo_signing_key()).expect("signing key"),
        ),
        ledger_key: Some(DEMO_LEDGER_KEY.as_bytes().to_vec()),
        ..consent_source::Options::demo()
    };
    let fresh = !db.exists();
    consent_source::Source::start(
        &format!("127.0.0.1:{port}"),
        db,
        fresh.then_some(&seed),
        options,
    )
    .map_err(|e| e.to_string())
}

/// The same source again on the same port and file (the old socket may linger briefly).
fn restart(db: &Path, port: u16) -> consent_source::Source {
    for _ in 0..100 {
        if let Ok(s) = file_source(db, port) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the consent source did not restart on port {port}");
}

fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(support::tag(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("source.sqlite")
}

/// The demo in front of a file-backed source, with the ledger's age bound `age_ms`; the
/// snapshot may be a minute old, so that only the ledger reacts to the source going away.
fn restartable(db: &Path, age_ms: u64) -> (Fixture, u16) {
    let source = file_source(db, 0).expect("consent source");
    let port = source.port().unwrap();
    let ledger = format!(
        "\"ledger\": {{ \"enabled\": true, \"subject_key_secret\": \"{DEMO_LEDGER_KEY}\", \"max_unsent_age_ms\": {age_ms}, \"timeout_ms\": 500 }}"
    );
    let edit = move |yaml: &str| {
        map_plugin_config(yaml, |json| {
            json.replace(
                &format!(
                    "\"ledger\": {{ \"enabled\": true, \"subject_key_secret\": \"{DEMO_LEDGER_KEY}\" }}"
                ),
                &ledger,
            )
            .replace("\"max_staleness_ms\": 10000", "\"max_staleness_ms\": 60000")
        })
    };
    (start_demo_on_source(edit, source, port, true), port)
}

/// A joint user's request through the demo's development caller header.
fn as_city(f: &Fixture, user: &str) -> support::Response {
    send(
        f,
        Req::get("/echo")
            .who(user, "joint.ebpm")
            .header("x-demo-caller", "saitama-city"),
    )
    .0
}

#[test]
fn a_source_down_beyond_the_bound_blocks_provisions_while_operator_traffic_passes() {
    let db = temp_db("ledger-down");
    let (mut f, port) = restartable(&db, 2000);
    assert_eq!(as_city(&f, "u-led-d").status, 200);
    drop(f.source.take());
    // The next provision is buffered, and after the bound the ledger is unavailable.
    assert_eq!(as_city(&f, "u-led-d").status, 200, "within the bound");
    let mut blocked = None;
    assert!(
        wait_until(Duration::from_secs(15), || {
            let resp = as_city(&f, "u-led-d");
            let stop = resp.status == 403;
            blocked = Some(resp);
            stop
        }),
        "never blocked"
    );
    let blocked = blocked.unwrap();
    assert_eq!(reason(&blocked), "ledger_unavailable", "{}", blocked.text());
    // A third party (no party claims `ads`) is blocked alike; the operator is served.
    let (resp, _) = send(
        &f,
        Req::get("/echo")
            .who("u-alice", "government.benefits")
            .header("x-demo-caller", "ads"),
    );
    assert_eq!(reason(&resp), "ledger_unavailable");
    let (resp, _) = send(&f, Req::get("/echo").who("u-alice", "support.inquiries"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(stat(&f, "consent_ledger_send_failures") > 0);
    assert!(stat(&f, "consent_ledger_buffered") >= 1);
    // The source is back: the buffered records go, and provisions pass again.
    f.source = Some(restart(&db, port));
    assert!(wait_until(Duration::from_secs(15), || {
        as_city(&f, "u-led-d").status == 200
    }));
    assert!(wait_until(Duration::from_secs(10), || {
        stat(&f, "consent_ledger_buffered") == 0
    }));
    let line = &lines(&f, "u-led-d", "provisions", "joint.ebpm")[0];
    assert!(line["count"].as_u64().unwrap() >= 3, "{line}");
}

#[test]
fn records_sent_before_a_source_restart_are_all_there_after_it_and_none_twice() {
    let db = temp_db("ledger-restart");
    let (mut f, port) = restartable(&db, 60_000);
    for _ in 0..5 {
        assert_eq!(as_city(&f, "u-led-e").status, 200);
    }
    let count = |f: &Fixture| {
        lines(f, "u-led-e", "provisions", "joint.ebpm")
            .first()
            .and_then(|l| l["count"].as_u64())
            .unwrap_or(0)
    };
    assert!(wait_until(Duration::from_secs(10), || count(&f) == 5));
    // Down: three more wait in the drainer's buffer (within the bound: they pass).
    drop(f.source.take());
    for _ in 0..3 {
        assert_eq!(as_city(&f, "u-led-e").status, 200);
    }
    assert!(wait_until(Duration::from_secs(10), || {
        stat(&f, "consent_ledger_send_failures") > 0
    }));
    f.source = Some(restart(&db, port));
    assert!(wait_until(Duration::from_secs(15), || count(&f) == 8));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&f), 8, "nothing stored twice");
    assert_eq!(stat(&f, "consent_ledger_records_sent"), 8);
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

#[test]
fn with_a_worker_lease_the_lease_holder_drains_every_workers_records() {
    let f = start_demo(worker_lease);
    for _ in 0..4 {
        assert_eq!(as_city(&f, "u-led-w").status, 200);
    }
    let count = || {
        lines(&f, "u-led-w", "provisions", "joint.ebpm")
            .first()
            .and_then(|l| l["count"].as_u64())
            .unwrap_or(0)
    };
    assert!(wait_until(Duration::from_secs(15), || count() == 4));
    assert_eq!(stat(&f, "consent_ledger_records_sent"), 4);
}

/// Replaces the listener file atomically (Envoy watches for moves into the directory).
fn publish(dir: &Path, lds: &str, version: u32) {
    let text = lds.replacen(
        "version_info: \"1\"",
        &format!("version_info: \"{version}\""),
        1,
    );
    let tmp = dir.join("lds.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("lds.yaml")).unwrap();
}

#[test]
fn records_unsent_by_a_drainer_that_is_gone_are_sent_by_the_next_one_once() {
    // Worker-lease drainers in the filter's own root contexts, the listener from LDS: a
    // new plugin configuration brings new root contexts; the old ones go when the old
    // listener has drained (one second here), the lease holder's outbox with it. Its
    // unsent records are in shared data, and the next holder sends them.
    let db = temp_db("ledger-reload");
    let source = file_source(&db, 0).expect("consent source");
    let source_port = source.port().unwrap();
    let (backend, backend_port) = start_backend();
    let (port, admin) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(support::tag("ledger-lds"));
    std::fs::create_dir_all(&dir).unwrap();
    let demo = map_plugin_config(&worker_lease(&shipped_config("envoy-demo.yaml")), |json| {
        json.replace("\"max_staleness_ms\": 10000", "\"max_staleness_ms\": 60000")
    });
    let (boot, lds) = split_lds(&demo, &dir);
    let boot = localise(&boot, port, admin, backend_port, source_port);
    let lds = localise(&lds, port, admin, backend_port, source_port);
    publish(&dir, &lds, 1);
    let drain = ["--drain-time-s", "1", "--drain-strategy", "immediate"];
    let envoy =
        Envoy::start_with_args(&boot, port, admin, &[], &drain).unwrap_or_else(|e| panic!("{e}"));
    let mut f = Fixture {
        backend,
        envoy,
        source: Some(source),
        client_tls: None,
    };
    assert!(wait_until(Duration::from_secs(15), || {
        as_city(&f, "u-led-l").status == 200
    }));
    let count = |f: &Fixture| {
        lines(f, "u-led-l", "provisions", "joint.ebpm")
            .first()
            .and_then(|l| l["count"].as_u64())
            .unwrap_or(0)
    };
    assert!(wait_until(Duration::from_secs(10), || count(&f) == 1));
    // The source goes away; three records wait in the lease holder's outbox.
    drop(f.source.take());
    for _ in 0..3 {
        assert_eq!(as_city(&f, "u-led-l").status, 200);
    }
    assert!(wait_until(Duration::from_secs(10), || {
        stat(&f, "consent_ledger_buffered") == 3
    }));
    // A new configuration (another block status) replaces the root contexts.
    let reloaded = map_plugin_config(&lds, |json| {
        json.replacen("\"block_status\": 403", "\"block_status\": 451", 1)
    });
    assert_ne!(reloaded, lds);
    publish(&dir, &reloaded, 2);
    assert!(
        wait_until(Duration::from_secs(10), || {
            send(&f, Req::get("/echo").who("u-bob", "surveys")).0.status == 451
        }),
        "the new configuration never applied"
    );
    // (The native module's outbox is process memory: nothing to take back there.)
    if support::build() == support::Build::Wasm {
        assert!(
            wait_until(Duration::from_secs(20), || {
                f.envoy.log_text().contains("took back 3 unsent record(s)")
            }),
            "no drainer took the records back:\n{}",
            f.envoy.log_text()
        );
    }
    f.source = Some(restart(&db, source_port));
    assert!(wait_until(Duration::from_secs(20), || count(&f) == 4));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&f), 4, "each once");
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}
