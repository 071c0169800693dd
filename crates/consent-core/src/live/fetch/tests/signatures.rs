//! Signed documents: checked before they are parsed; a tampered snapshot or delta, another
//! key's signature, a missing signature and a replayed older snapshot are refused, and the
//! published snapshot stays the last good one. The `.minisig` fallback for answers without
//! the header.

use super::*;
use crate::live::signature::header_value;
use crate::live::signature::tests::TestSigner;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// [`config`] (deltas, 16 buckets) trusting `signer`.
fn config_trusting(signer: &TestSigner) -> CompiledConfig {
    compile_config(
        format!(
            r#"{{"snapshot": {{"source": "shared", "cluster": "consent", "path": "/snapshot",
            "deltas_path": "/deltas", "bucket_bits": 4, "refresh_ms": 1000,
            "max_staleness_ms": 5000, "public_key": "{}"}}}}"#,
            signer.public_key()
        )
        .as_bytes(),
    )
    .unwrap()
}

/// A fetcher trusting its signer's key.
struct Signed {
    s: Sim,
    signer: TestSigner,
}

impl Signed {
    fn new() -> Self {
        let signer = TestSigner::new();
        let s = Sim::with(config_trusting(&signer), Host::default());
        Signed { s, signer }
    }

    /// Every refresh a full fetch.
    fn without_deltas() -> Self {
        let signer = TestSigner::new();
        let s = Sim::with(config_without_deltas_trusting(&signer), Host::default());
        Signed { s, signer }
    }

    /// Answers the last call 200 with `body` and `minisig` in the header; the next call.
    fn answer_signed_as(&mut self, body: &str, minisig: &str) -> Option<FetchRequest> {
        let header = header_value(minisig);
        self.s.respond(Response {
            status: Some(200),
            etag: None,
            signature: Some(&header),
            body: body.as_bytes(),
        })
    }

    /// Answers the last call 200 with `body`, signed in the header.
    fn answer_signed(&mut self, body: &str) -> Option<FetchRequest> {
        let minisig = self.signer.sign(body.as_bytes());
        self.answer_signed_as(body, &minisig)
    }

    /// A tick answered with `body`, signed.
    fn fetch_signed(&mut self, body: &str) {
        self.s.tick().unwrap();
        assert_eq!(self.answer_signed(body), None);
    }

    fn rejections(&self) -> (u64, u64) {
        (
            self.s.counter(Counter::Rejected),
            self.s.counter(Counter::SignatureRejected),
        )
    }

    /// No log line holds the key.
    fn logs_hold_no_key(&self) {
        let key = self.signer.public_key();
        for line in &self.s.host.logs {
            assert!(!line.message.contains(&key), "{line:?}");
        }
    }
}

/// bob granted newsletters; the names of [`snapshot`] records are `person-...`.
fn with_grant(version: u64) -> String {
    serde_json::json!({"version": version, "records": [
        {"subject": format!("{SUBJECT}alice")},
        {"subject": format!("{SUBJECT}bob"), "grants": {"marketing.newsletters": {"policy_version": 1}}},
    ]})
    .to_string()
}

fn has_grant(s: &Sim, name: &str) -> bool {
    s.record(name).is_some_and(|r| !r.grants.is_empty())
}

#[test]
fn a_signed_snapshot_and_a_signed_delta_publish() {
    let mut t = Signed::new();
    assert!(
        t.s.config.snapshot.trust.as_ref().unwrap().required,
        "a key requires signatures"
    );
    t.fetch_signed(&snapshot(1, &["alice"]));
    assert!(t.s.record("alice").is_some());
    assert_eq!(t.s.tick().unwrap().path, "/deltas/1");
    t.answer_signed(&delta(1, &["alice"], &[]));
    assert!(t.s.record("alice").unwrap().stop_use);
    assert_eq!(t.s.meta().map(|m| m.version), Some(2));
    assert_eq!(t.rejections(), (0, 0));
    t.logs_hold_no_key();
}

#[test]
fn a_tampered_snapshot_is_refused_and_the_last_good_one_kept() {
    let mut t = Signed::without_deltas();
    t.fetch_signed(&snapshot(1, &["alice", "bob"]));
    t.s.take_writes();
    t.s.tick().unwrap();
    // An attacker grants bob newsletters in version 2 and keeps the source's signature.
    let genuine = snapshot(2, &["alice", "bob"]);
    let signature = t.signer.sign(genuine.as_bytes());
    assert_eq!(t.answer_signed_as(&with_grant(2), &signature), None);
    assert_eq!(t.rejections(), (1, 1));
    assert!(t
        .s
        .logged("snapshot rejected: the signature does not match the document; keeping the last good snapshot"));
    assert!(!has_grant(&t.s, "bob"));
    assert_eq!(t.s.meta().map(|m| m.version), Some(1));
    assert_eq!(t.s.take_bucket_writes(), 0, "nothing published");
    t.logs_hold_no_key();
}

#[test]
fn a_tampered_delta_is_refused_and_the_next_fetch_is_a_full_one() {
    let mut t = Signed::new();
    t.fetch_signed(&snapshot(1, &["alice", "bob"]));
    t.s.take_writes();
    t.s.tick().unwrap();
    let genuine = delta(1, &["alice"], &[]);
    let forged = delta(1, &["alice"], &["bob"]);
    let signature = t.signer.sign(genuine.as_bytes());
    t.answer_signed_as(&forged, &signature);
    assert_eq!(t.rejections(), (1, 1));
    assert!(t
        .s
        .logged("delta rejected: the signature does not match the document"));
    assert!(
        t.s.record("bob").is_some(),
        "the forged deletion did not apply"
    );
    assert!(!t.s.record("alice").unwrap().stop_use);
    assert_eq!(t.s.take_writes(), Vec::<String>::new());
    assert_eq!(t.s.tick().unwrap().path, "/snapshot");
}

#[test]
fn a_document_signed_with_another_key_is_refused() {
    let mut t = Signed::new();
    let mallory = TestSigner::new();
    t.s.tick().unwrap();
    let body = snapshot(1, &["alice"]);
    t.answer_signed_as(&body, &mallory.sign(body.as_bytes()));
    assert_eq!(t.rejections(), (1, 1));
    assert!(t
        .s
        .logged("snapshot rejected: signed with another key than snapshot.public_key"));
    assert_eq!(t.s.meta(), None, "nothing published");
    t.fetch_signed(&body);
    assert!(t.s.record("alice").is_some());
    t.s.tick().unwrap();
    let d = delta(1, &["alice"], &[]);
    t.answer_signed_as(&d, &mallory.sign(d.as_bytes()));
    assert_eq!(t.rejections(), (2, 2));
    assert!(!t.s.record("alice").unwrap().stop_use);
}

#[test]
fn a_missing_signature_is_refused_after_asking_for_the_minisig_file() {
    let mut t = Signed::without_deltas();
    t.fetch_signed(&snapshot(1, &["alice", "bob"]));
    t.s.tick().unwrap();
    let next =
        t.s.answer(Some(200), Some("\"v2\""), &with_grant(2))
            .unwrap();
    assert_eq!(asks(&next), ("/snapshot.minisig", None));
    assert_eq!(t.s.tick(), None, "one call at a time");
    assert_eq!(t.s.answer(Some(404), None, ""), None);
    assert_eq!(t.rejections(), (1, 1));
    assert!(t.s.logged("snapshot rejected: no signature"));
    assert!(!has_grant(&t.s, "bob"));
    // A signature header that is not minisign is refused without a second call.
    t.s.tick().unwrap();
    let before = t.s.host.calls.len();
    t.answer_signed_as(&with_grant(2), "not a signature");
    assert_eq!(t.s.host.calls.len(), before);
    assert_eq!(t.rejections(), (2, 2));
    assert!(t.s.logged("the signature is not in minisign format"));
    assert_eq!(t.s.meta().map(|m| m.version), Some(1));
    assert_eq!(t.s.counter(Counter::FetchFailures), 0);
}

#[test]
fn without_the_header_the_minisig_file_next_to_the_document_is_used() {
    let mut t = Signed::new();
    t.s.tick().unwrap();
    let part0 = first_part(3, 2, &["alice"]);
    let next = t.s.answer(Some(200), Some("\"v3\""), &part0).unwrap();
    assert_eq!(asks(&next), ("/snapshot.minisig", None));
    let next =
        t.s.answer(Some(200), None, &t.signer.sign(part0.as_bytes()))
            .unwrap();
    assert_eq!(next.path, "/snapshot/parts/1");
    let part1 = part(3, 1, &["bob"]);
    let next = t.s.answer(Some(200), None, &part1).unwrap();
    assert_eq!(next.path, "/snapshot/parts/1.minisig");
    assert_eq!(
        t.s.answer(Some(200), None, &t.signer.sign(part1.as_bytes())),
        None
    );
    assert!(t.s.record("alice").is_some() && t.s.record("bob").is_some());
    assert_eq!(t.s.meta().map(|m| m.version), Some(3));
    assert_eq!(t.s.tick().unwrap().path, "/deltas/3");
    let d = delta(3, &["bob"], &[]);
    assert_eq!(
        t.s.answer(Some(200), None, &d).unwrap().path,
        "/deltas/3.minisig"
    );
    t.s.answer(Some(200), None, &t.signer.sign(d.as_bytes()));
    assert!(t.s.record("bob").unwrap().stop_use);
    assert_eq!(t.rejections(), (0, 0));
    // The ETag of part 0 is kept for the next conditional fetch.
    let mut u = Signed::without_deltas();
    let body = snapshot(1, &["alice"]);
    u.s.tick().unwrap();
    u.s.answer(Some(200), Some("\"v1\""), &body).unwrap();
    u.s.answer(Some(200), None, &u.signer.sign(body.as_bytes()));
    assert_eq!(asks(&u.s.tick().unwrap()), ("/snapshot", Some("\"v1\"")));
}

/// [`config_without_deltas`] trusting `signer`.
fn config_without_deltas_trusting(signer: &TestSigner) -> CompiledConfig {
    compile_config(
        format!(
            r#"{{"snapshot": {{"source": "shared", "cluster": "consent", "path": "/snapshot",
            "bucket_bits": 4, "refresh_ms": 1000, "max_staleness_ms": 5000,
            "public_key": "{}"}}}}"#,
            signer.public_key()
        )
        .as_bytes(),
    )
    .unwrap()
}

#[test]
fn a_signature_file_the_source_fails_to_serve_is_a_fetch_failure() {
    let mut t = Signed::without_deltas();
    t.fetch_signed(&snapshot(1, &["alice"]));
    t.s.tick().unwrap();
    t.s.answer(Some(200), None, &snapshot(2, &[])).unwrap();
    assert_eq!(t.s.answer(Some(503), None, ""), None);
    assert_eq!(t.s.counter(Counter::FetchFailures), 1);
    assert_eq!(t.rejections(), (0, 0));
    assert!(t.s.logged("source answered 503 for a signature file"));
    assert!(t.s.record("alice").is_some());
    assert_eq!(
        t.s.tick().unwrap().path,
        "/snapshot",
        "the answer waiting was dropped"
    );
}

#[test]
fn a_replayed_older_snapshot_is_refused_and_the_same_version_taken() {
    let mut t = Signed::without_deltas();
    let old = snapshot(1, &["alice", "bob"]);
    t.fetch_signed(&old);
    t.fetch_signed(&snapshot(2, &["alice"]));
    assert_eq!(t.s.record("bob"), None, "bob was erased in version 2");
    t.s.take_writes();
    // Version 1, genuinely signed, served again (a replay, or a source that went back).
    t.fetch_signed(&old);
    assert_eq!(t.rejections(), (1, 0));
    assert!(t.s.logged(
        "snapshot rejected: version 1 is older than version 2 already published (a replayed or rolled-back snapshot)"
    ));
    assert_eq!(t.s.record("bob"), None);
    assert_eq!(t.s.take_writes(), Vec::<String>::new());
    // The published version again is taken (and rewritten).
    t.fetch_signed(&snapshot(2, &["alice"]));
    assert_eq!(t.rejections(), (1, 0));
    assert_eq!(t.s.meta().map(|m| m.version), Some(2));
}

#[test]
fn the_newest_version_outlives_a_handover_and_comes_from_shared_data() {
    let mut t = Signed::new();
    t.s.lease(true);
    t.fetch_signed(&snapshot(4, &["alice"]));
    t.s.lease(false);
    t.s.lease(true);
    t.fetch_signed(&snapshot(3, &["bob"]));
    assert_eq!(
        t.rejections(),
        (1, 0),
        "forgetting what it published keeps the version"
    );
    // A new fetcher learns the version from the metadata in shared data.
    let config = Rc::clone(&t.s.config);
    let mut fresh = FetchMachine::new(config, true, EPOCH);
    fresh.published_version(4);
    let effects = fresh.start();
    fresh.run(effects, &mut t.s.host);
    t.s.machine = fresh;
    t.fetch_signed(&snapshot(2, &["bob"]));
    assert_eq!(t.rejections(), (2, 0));
    assert!(t.s.record("alice").is_some() && t.s.record("bob").is_none());
}

#[test]
fn a_replayed_older_delta_is_not_applied() {
    let mut t = Signed::new();
    t.fetch_signed(&snapshot(1, &["alice"]));
    t.s.tick().unwrap();
    let first = delta(1, &["alice"], &[]);
    t.answer_signed(&first);
    assert_eq!(t.s.meta().map(|m| m.version), Some(2));
    t.s.take_writes();
    assert_eq!(t.s.tick().unwrap().path, "/deltas/2");
    t.answer_signed(&first);
    assert_eq!(t.s.take_writes(), Vec::<String>::new());
    assert!(t.s.logged("delta starts at version 1, published is 2"));
    assert_eq!(t.s.meta().map(|m| m.version), Some(2));
}

#[test]
fn with_require_signature_false_unsigned_documents_are_taken_but_bad_signatures_are_not() {
    let signer = TestSigner::new();
    let config = compile_config(
        format!(
            r#"{{"snapshot": {{"source": "shared", "cluster": "consent", "bucket_bits": 4,
            "refresh_ms": 1000, "max_staleness_ms": 5000, "public_key": "{}",
            "require_signature": false}}}}"#,
            signer.public_key()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut t = Signed {
        s: Sim::with(config, Host::default()),
        signer,
    };
    assert!(!t.s.config.snapshot.trust.as_ref().unwrap().required);
    t.s.tick().unwrap();
    let body = snapshot(1, &["alice"]);
    assert_eq!(
        t.s.answer(Some(200), None, &body).unwrap().path,
        "/snapshot.minisig"
    );
    t.s.answer(Some(404), None, "");
    assert!(t.s.record("alice").is_some());
    assert!(t
        .s
        .logged("/snapshot is not signed; taken because snapshot.require_signature is false"));
    t.s.tick().unwrap();
    let genuine = snapshot(2, &["alice"]);
    let signature = t.signer.sign(genuine.as_bytes());
    t.answer_signed_as(&with_grant(2), &signature);
    assert_eq!(t.rejections(), (1, 1));
    assert_eq!(t.s.meta().map(|m| m.version), Some(1));
}

#[test]
fn without_a_key_nothing_is_checked() {
    let mut s = Sim::new();
    assert!(s.config.snapshot.trust.is_none());
    s.fetch(&snapshot(1, &["alice"]));
    assert!(s.record("alice").is_some());
    assert_eq!(s.host.calls.len(), 1, "no signature file asked for");
}

#[test]
fn during_a_key_rotation_documents_signed_with_either_key_are_taken() {
    let (old, new, mallory) = (TestSigner::new(), TestSigner::new(), TestSigner::new());
    let config = compile_config(
        format!(
            r#"{{"snapshot": {{"source": "shared", "cluster": "consent", "bucket_bits": 4,
            "refresh_ms": 1000, "max_staleness_ms": 5000, "public_key": "{}",
            "next_public_key": "{}"}}}}"#,
            old.public_key(),
            new.public_key()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut t = Signed {
        s: Sim::with(config, Host::default()),
        signer: old,
    };
    t.fetch_signed(&snapshot(1, &["alice"]));
    t.signer = new;
    t.fetch_signed(&snapshot(2, &["bob"]));
    assert!(t.s.record("bob").is_some());
    assert_eq!(t.rejections(), (0, 0));
    t.s.tick().unwrap();
    let body = snapshot(3, &["carol"]);
    t.answer_signed_as(&body, &mallory.sign(body.as_bytes()));
    assert_eq!(t.rejections(), (1, 1));
    assert!(t.s.logged("signed with another key"));
}
