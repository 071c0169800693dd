//! Fixtures: the demo backend (the real upstream), the reference consent source and an
//! Envoy with the (edited) shipped demo config in front of them, started together.

use std::path::Path;
use std::time::{Duration, Instant};

use consent_tools::demo_backend::SnapshotState;
use consent_tools::signing::{Signer, DEMO_SIGNING_KEY};

use super::client::{send, Req};
use super::config::{localise, map_plugin_config, with_transport_socket};
use super::envoy::{free_port, repo_root, shipped_config, Envoy};
use super::pki::{ClientTls, TestPki};

/// The demo backend, the consent source and an Envoy in front of them.
pub struct Fixture {
    /// The real upstream.
    pub backend: consent_tools::demo_backend::DemoBackend,
    /// Envoy with the filter.
    pub envoy: Envoy,
    /// The reference consent source, when the fixture runs one.
    pub source: Option<consent_source::Source>,
    /// Client certificate every request presents by default (mTLS listeners only).
    pub client_tls: Option<ClientTls>,
}

impl Fixture {
    /// A URL on the consent source's API.
    pub fn source_url(&self, path: &str) -> String {
        let port = self.source.as_ref().and_then(|s| s.port()).unwrap_or(0);
        format!("http://127.0.0.1:{port}{path}")
    }
}

/// The demo backend and Envoy with the shipped demo config, started once per test binary.
pub fn shipped_demo() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| start_demo(|yaml| yaml.to_string()))
}

/// Whether the reference consent source (`consent_source::Source`) signs what it serves:
/// [`start_source`] starts it with [`demo_signing_key`], so the fixtures run the shipped
/// configuration with its `snapshot.public_key` and `snapshot.require_signature`.
pub const REFERENCE_SOURCE_SIGNS: bool = true;

/// The demo's (DEMO ONLY) signing key file, whose public key the shipped configs trust.
pub fn demo_signing_key() -> std::path::PathBuf {
    repo_root().join(DEMO_SIGNING_KEY)
}

/// A signer with the demo's key.
pub fn demo_signer() -> Signer {
    Signer::from_file(&demo_signing_key()).expect("the demo signing key")
}

/// `yaml` as the reference consent source can serve it: without the signature settings
/// while the source does not sign ([`REFERENCE_SOURCE_SIGNS`]).
pub fn for_reference_source(yaml: &str) -> String {
    if REFERENCE_SOURCE_SIGNS {
        return yaml.to_string();
    }
    let Ok(mut doc) = envoy_yaml::EnvoyYaml::parse(yaml) else {
        return yaml.to_string();
    };
    let edited = doc.map_plugin_config(super::config::CONSENT_FILTER, |json| {
        without_member(&without_member(json, "public_key"), "require_signature")
    });
    match (edited, doc.to_yaml()) {
        (Ok(_), Ok(out)) => out,
        // No consent filter in the chain (a control experiment): nothing to edit.
        _ => yaml.to_string(),
    }
}

/// The JSON text without the member `"name": value` (a string without quotes inside, or a
/// bare word), and the comma that joined it; the rest is left as written.
pub fn without_member(json: &str, name: &str) -> String {
    let key = format!("\"{name}\"");
    let Some(start) = json.find(&key) else {
        return json.to_string();
    };
    let rest = &json[start + key.len()..];
    let rest = rest[rest.find(':').expect("a colon after the key") + 1..].trim_start();
    let value_len = match rest.strip_prefix('"') {
        Some(text) => text.find('"').expect("a closing quote") + 2,
        None => rest
            .find(|c: char| c == ',' || c == '}' || c.is_whitespace())
            .unwrap_or(rest.len()),
    };
    let (before, after) = (&json[..start], &rest[value_len..]);
    match after.trim_start().strip_prefix(',') {
        Some(after) => format!("{before}{}", after.trim_start()),
        None => format!("{}{after}", before.trim_end().trim_end_matches(',')),
    }
}

/// The demo consent snapshot the shipped consent source is seeded with.
pub fn demo_consents() -> String {
    std::fs::read_to_string(repo_root().join("envoy-config/demo-consents.json"))
        .expect("demo consents")
}

/// Starts the demo backend, the reference consent source (in memory, seeded with the demo
/// consents) and Envoy with the shipped demo config edited by `edit`; waits until a
/// snapshot is in use.
pub fn start_demo(edit: impl Fn(&str) -> String) -> Fixture {
    start_demo_parts(edit, consent_source::store::DEFAULT_PART_SIZE)
}

/// The reference consent source in memory, seeded with the demo consents, and its port,
/// run as `make run` runs it: unauthenticated calls from loopback may do everything
/// (`--demo-allow-loopback`), so the fetcher in Envoy and the tests' curl need no token,
/// it signs with the demo key (`--signing-key`), which the shipped configs require, and
/// keeps the provision ledger with the demo ledger key.
pub fn start_source(part_size: usize) -> (consent_source::Source, u16) {
    start_source_with(consent_source::Options {
        part_size,
        signer: Some(
            consent_source::sign::Signer::from_file(&demo_signing_key())
                .expect("the demo signing key"),
        ),
        ledger_key: Some(DEMO_LEDGER_KEY.as_bytes().to_vec()),
        ..consent_source::Options::demo()
    })
}

/// The demo's ledger key (a demo value, not a secret): `make run`'s
/// `CONSENT_LEDGER_SUBJECT_KEY` and the shipped configs' `ledger.subject_key_secret`.
pub const DEMO_LEDGER_KEY: &str = "demo-ledger-key-not-a-secret";

/// The reference consent source in memory, seeded with the demo consents, with `options`.
pub fn start_source_with(options: consent_source::Options) -> (consent_source::Source, u16) {
    let seed = consent_core::live::FullSnapshotDoc::from_json(demo_consents().as_bytes())
        .expect("demo consents parse");
    let source =
        consent_source::Source::start("127.0.0.1:0", Path::new(":memory:"), Some(&seed), options)
            .expect("consent source");
    let port = source.port().expect("source port");
    (source, port)
}

/// The shipped policy as version 2, with `purpose`'s terms changed in it (§11).
pub fn policy_v2_changing(purpose: &str) -> String {
    let mut doc: serde_json::Value =
        serde_json::from_str(consent_core::DEFAULT_POLICY_JSON).expect("shipped policy");
    doc["version"] = serde_json::json!(2);
    for p in doc["purposes"].as_array_mut().expect("purposes") {
        if p["id"] == purpose {
            p["changed_in"] = serde_json::json!(2);
        }
    }
    doc.to_string()
}

/// [`start_demo`] with the consent source serving its snapshot in parts of `part_size`.
pub fn start_demo_parts(edit: impl Fn(&str) -> String, part_size: usize) -> Fixture {
    let (source, source_port) = start_source(part_size);
    launch(
        edit,
        SnapshotState::Fail(503),
        Some(source),
        source_port,
        true,
        None,
    )
}

/// [`start_demo`] in front of a consent source the test started (e.g. one that wants
/// credentials); `wait_for_snapshot` as in [`start_demo_with`].
pub fn start_demo_on_source(
    edit: impl Fn(&str) -> String,
    source: consent_source::Source,
    source_port: u16,
    wait_for_snapshot: bool,
) -> Fixture {
    launch(
        edit,
        SnapshotState::Fail(503),
        Some(source),
        source_port,
        wait_for_snapshot,
        None,
    )
}

/// [`start_demo`] with the listener turned into an mTLS listener that requires a client
/// certificate from `pki`'s CA; requests present `default_client` unless they name another.
pub fn start_demo_mtls(
    edit: impl Fn(&str) -> String,
    pki: &TestPki,
    default_client: ClientTls,
) -> Fixture {
    let (source, source_port) = start_source(consent_source::store::DEFAULT_PART_SIZE);
    let tls = pki.server_transport_socket();
    let with_tls = |yaml: &str| with_transport_socket(&edit(yaml), &tls);
    launch(
        with_tls,
        SnapshotState::Fail(503),
        Some(source),
        source_port,
        true,
        Some(default_client),
    )
}

/// Like [`start_demo`], but the demo backend plays the consent source in `state` (full
/// snapshots only, so faults can be staged); `wait_for_snapshot` waits until requests are
/// no longer decided as `snapshot_unavailable`.
pub fn start_demo_with(
    edit: impl Fn(&str) -> String,
    state: SnapshotState,
    wait_for_snapshot: bool,
) -> Fixture {
    let without_deltas = |yaml: &str| {
        map_plugin_config(&edit(yaml), |json| {
            json.replace("\"deltas_path\": \"/deltas\",", "")
        })
    };
    launch(without_deltas, state, None, 0, wait_for_snapshot, None)
}

/// Like [`start_demo_with`], with deltas: the demo backend plays the consent source,
/// serving `state` at `/snapshot` and what the test sets at `/deltas/{from}`
/// (`DemoBackend::set_delta`), signed with the demo key (header and `.minisig`).
pub fn start_demo_signed(
    edit: impl Fn(&str) -> String,
    state: SnapshotState,
    wait_for_snapshot: bool,
) -> Fixture {
    launch(edit, state, None, 0, wait_for_snapshot, None)
}

fn launch(
    edit: impl Fn(&str) -> String,
    state: SnapshotState,
    source: Option<consent_source::Source>,
    source_port: u16,
    wait_for_snapshot: bool,
    client_tls: Option<ClientTls>,
) -> Fixture {
    let backend =
        consent_tools::demo_backend::DemoBackend::start_with_snapshot("127.0.0.1:0", state)
            .expect("backend");
    // When it plays the consent source, it signs what it serves with the demo key.
    backend.sign_with(Some(demo_signer()));
    let backend_port = backend.addr().expect("backend addr").port();
    let source_port = if source.is_some() {
        source_port
    } else {
        backend_port
    };
    let (port, admin) = (free_port(), free_port());
    let edited = edit(&shipped_config("envoy-demo.yaml"));
    let edited = if source.is_some() {
        for_reference_source(&edited)
    } else {
        edited
    };
    let yaml = localise(&edited, port, admin, backend_port, source_port);
    let envoy = Envoy::start(&yaml, port, admin).unwrap_or_else(|e| panic!("{e}"));
    let fixture = Fixture {
        backend,
        envoy,
        source,
        client_tls,
    };
    if wait_for_snapshot {
        let published = wait_until(Duration::from_secs(15), || {
            let (r, _) = send(
                &fixture,
                Req::get("/probe").who("u-alice", "support.inquiries"),
            );
            r.status != 0 && !r.text().contains("snapshot_unavailable")
        });
        assert!(published, "no consent snapshot in use after 15 s");
    }
    fixture
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The demo backend (not playing a consent source), and its port.
pub fn start_backend() -> (consent_tools::demo_backend::DemoBackend, u16) {
    let backend = consent_tools::demo_backend::DemoBackend::start_with_snapshot(
        "127.0.0.1:0",
        SnapshotState::Fail(503),
    )
    .expect("backend");
    let port = backend.addr().expect("backend addr").port();
    (backend, port)
}
