//! What each fuzz target does with its input, shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/*.rs`) and by the stable replay test
//! (`crates/consent-core/tests/fuzz_regressions.rs`), which runs every committed seed and
//! regression input through these same functions.
//!
//! Each function must not panic on any input; the `assert!`s below are the properties a
//! finding breaks (a panic in the core, output that is not JSON, a forbidden field or
//! query parameter left in place, buckets that do not give back what was put in).

use consent_core::body::BodyOutcome;
use consent_core::body::CivilDate;
use consent_core::body::{body_mode, BodyError, BodyHeaders, EncodedBody, UnparsedBody};
use consent_core::config::CompiledConfig;
use consent_core::decide::{HeaderValue, RequestView};
use consent_core::grpc::demo::demo_descriptor_base64;
use consent_core::grpc::{rewrite_message, Framing, GrpcStream};
use consent_core::live::SubjectKeying;
use consent_core::live::{
    add_part, DeltaDoc, FullSnapshotDoc, KeyedDelta, KeyedSnapshot, PublishedMeta,
};
use consent_core::live::{
    bucket_of, bucket_version, decode_bucket, find_in_bucket, fingerprint, BucketBuilder,
};
use consent_core::policy::CallerFacts;
use consent_core::policy::RouteFacts;
use consent_core::{compile_config, Decision, Outcome};

/// The fuzz targets, by name (the directories under `fuzz/corpus/` and `fuzz/regressions/`).
pub const TARGETS: [&str; 8] = [
    "redact_body",
    "snapshot_parse",
    "config_parse",
    "headers",
    "grpc_walk",
    "form",
    "multipart",
    "cookies",
];

/// Runs the target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "redact_body" => redact_body(data),
        "snapshot_parse" => snapshot_parse(data),
        "config_parse" => config_parse(data),
        "headers" => headers(data),
        "grpc_walk" => grpc_walk(data),
        "form" => form(data),
        "multipart" => multipart(data),
        "cookies" => cookies(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

const TODAY: CivilDate = CivilDate {
    year: 2026,
    month: 11,
    day: 27,
};

const HMAC_SECRET: &[u8] = b"fuzz-subject-key-0123456789";

/// The shipped policy with the demo's settings, multi-subject elements, a route table,
/// route-level selectors of the exact-path kinds, and consents that give every kind of
/// decision.
const CONFIG: &str = r#"{
  "pseudonymisation_key": "fuzz-pseudonym-key-0123456789",
  "caller": {"unidentified_party": "tsunagu", "dev_header": "x-dev-caller"},
  "gpc": {"purposes": ["marketing.analysis"]},
  "body": {"subjects": [{"elements": "$.items[*]", "subject": "$.user_id"}]},
  "default_route": {"json": {"email": ["$.contacts[*].mail", "$['odd.name']"],
                             "location.gps": ["$..*.lat_e6", "$.pos[1]"]}},
  "routes": [
    {"name": "profile", "match": {"host": "api.example.jp", "path_prefix": "/users/"},
     "purposes": ["marketing.newsletters", "service.improvement", "marketing.analysis"]},
    {"name": "wild", "match": {"host": "*.example.jp"}, "require_user": false},
    {"name": "stats", "match": {"route_name": "stats"}, "dry_run": true,
     "json": {"device_id": ["$.devices[*].id"]}}
  ],
  "consents": {"version": 3, "records": [
    {"subject": "u-alice", "grants": {
      "marketing.newsletters": {"policy_version": 1},
      "marketing.third_party_offers": {"policy_version": 1},
      "service.improvement": {"policy_version": 1, "explicit": ["location.gps"]},
      "third_party.provision": {"policy_version": 1}}},
    {"subject": "u-bob", "grants": {}},
    {"subject": "u-carol", "stop_use": true, "grants": {"marketing.newsletters": {"policy_version": 1}}},
    {"subject": "u-dave", "withdrawn": ["service.improvement"], "grants": {}}
  ]}
}"#;

/// (user, purpose): the fixed decisions bodies are redacted for.
const DECISIONS: [(&str, &str); 7] = [
    // remove only: email, location, device, payments...
    ("u-alice", "marketing.newsletters"),
    // coarsen location (no explicit grant)
    ("u-bob", "service.improvement"),
    // coarsen location and address, pseudonymise device IDs
    ("u-alice", "marketing.analysis"),
    // payment history blocks the body
    ("u-alice", "marketing.third_party_offers"),
    // consent missing with `without_consent: strip`: every category goes
    ("u-bob", "marketing.campaigns"),
    // notice basis, no record at all
    ("u-erin", "support.inquiries"),
    // precise location granted
    ("u-alice", "service.improvement"),
];

struct Fixtures {
    config: CompiledConfig,
    /// Each fixed decision, and whether every action it (and its elements) takes is `remove`.
    decisions: Vec<(Decision, bool)>,
}

fn fixtures() -> &'static Fixtures {
    // The compiled selectors build their DFA lazily (a RefCell), so the fixtures are
    // per thread; each thread compiles them once and keeps them.
    thread_local! {
        static F: &'static Fixtures = Box::leak(Box::new(make_fixtures()));
    }
    F.with(|f| *f)
}

/// The same configuration with the demo gRPC descriptors, for `grpc_walk`.
fn grpc_fixtures() -> &'static Fixtures {
    thread_local! {
        static F: &'static Fixtures = Box::leak(Box::new({
            let mut doc: serde_json::Value = match serde_json::from_str(CONFIG) {
                Ok(d) => d,
                Err(e) => panic!("the fuzz configuration is not JSON: {e}"),
            };
            doc["grpc"] = serde_json::json!({"descriptor_set": demo_descriptor_base64()});
            make_fixtures_from(&doc.to_string())
        }));
    }
    F.with(|f| *f)
}

fn make_fixtures() -> Fixtures {
    make_fixtures_from(CONFIG)
}

fn make_fixtures_from(text: &str) -> Fixtures {
    let config = match compile_config(text.as_bytes()) {
        Ok(c) => c,
        Err(e) => panic!("the fuzz configuration does not compile: {e}"),
    };
    let decisions = DECISIONS
        .iter()
        .map(|(user, purpose)| {
            let headers: [(&str, &[u8]); 2] = [
                ("x-user-id", user.as_bytes()),
                ("x-data-purpose", purpose.as_bytes()),
            ];
            let d = config.evaluate(headers);
            assert_ne!(d.outcome, Outcome::Block, "{user} {purpose} must not block");
            let remove_only = d
                .purpose
                .and_then(|p| config.policy.purpose(p))
                .is_some_and(|p| p.actions.is_empty());
            (d, remove_only)
        })
        .collect();
    Fixtures { config, decisions }
}

fn parses(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes).is_ok()
}

/// `redact_body`: the first byte picks a decision (and whether field paths are recorded),
/// the rest is the body.
pub fn redact_body(data: &[u8]) {
    let f = fixtures();
    let (selector, body) = data.split_first().map_or((0, data), |(s, r)| (*s, r));
    let (decision, remove_only) = &f.decisions[usize::from(selector) % f.decisions.len()];
    let config = &f.config;
    let record_paths = selector & 0x80 != 0;
    let result = config.redact_body(
        decision,
        body,
        TODAY,
        record_paths,
        &config.inline_consents(),
    );
    let valid = parses(body);
    let (outcome, report) = match result {
        Ok(r) => r,
        Err(e) => {
            assert!(
                !valid,
                "serde_json reads the body, the redactor refuses it: {e:?}"
            );
            return;
        }
    };
    assert!(report.fields.len() <= consent_core::body::MAX_FIELD_HITS);
    let BodyOutcome::Rewritten(out) = outcome else {
        return;
    };
    if valid {
        assert!(parses(&out), "valid JSON in, invalid JSON out");
    }
    if *remove_only {
        let again = config.redact_body(decision, &out, TODAY, true, &config.inline_consents());
        match again {
            Ok((BodyOutcome::Unchanged, _)) => {}
            Ok((BodyOutcome::Rewritten(_), report)) => second_pass_removes_nothing(&report),
            other => panic!(
                "a second pass over the output gives {:?}",
                other.map(|(o, _)| o)
            ),
        }
    }
}

/// Message types `grpc_walk` reads its input as.
const GRPC_MESSAGES: [&str; 4] = [
    "saitama.v1.Profile",
    "saitama.v1.Transaction",
    "saitama.v1.Location",
    "saitama.v1.Device",
];

/// `grpc_walk`: the first byte picks a decision (bit 7: record field paths, bit 6:
/// grpc-web framing), the second the message type (bits 0-1) and the chunk size the
/// stream is fed in (bits 2-7); the rest is a gRPC body (and, on its own, one message).
/// For remove-only decisions, a second pass over what came out removes nothing more.
pub fn grpc_walk(data: &[u8]) {
    let f = grpc_fixtures();
    let config = &f.config;
    let (selector, rest) = data.split_first().map_or((0, data), |(s, r)| (*s, r));
    let (shape, body) = rest.split_first().map_or((0, rest), |(s, r)| (*s, r));
    let (decision, remove_only) = &f.decisions[usize::from(selector & 0x3f) % f.decisions.len()];
    let framing = if selector & 0x40 != 0 {
        Framing::GrpcWeb
    } else {
        Framing::Grpc
    };
    let name = GRPC_MESSAGES[usize::from(shape & 3)];
    let Some(message) = config.grpc.schema.message_idx(name) else {
        panic!("the demo schema has no {name}");
    };
    let rules = config.proto_rules(decision, TODAY, selector & 0x80 != 0);

    if let Ok((BodyOutcome::Rewritten(out), report)) = rewrite_message(body, message, &rules) {
        assert!(report.fields.len() <= consent_core::body::MAX_FIELD_HITS);
        if *remove_only {
            let again = rewrite_message(&out, message, &rules);
            assert!(
                matches!(again, Ok((BodyOutcome::Unchanged, _))),
                "a second pass over the walker's output gives {:?}",
                again.map(|(o, _)| o)
            );
        }
    }

    let chunk = 1 + usize::from(shape >> 2);
    let mut stream = GrpcStream::new(message, framing, 4096);
    let mut out = Vec::new();
    for piece in body.chunks(chunk) {
        match stream.push(&rules, piece) {
            Ok(bytes) => out.extend(bytes),
            Err(_) => return,
        }
        assert!(
            stream.buffered() <= 4096 + 5,
            "more than one frame held back"
        );
    }
    if stream.finish().is_err() {
        return;
    }
    // What came out is well framed, and for remove-only decisions clean.
    let mut second = GrpcStream::new(message, framing, usize::MAX >> 1);
    let again = second.push(&rules, &out);
    assert!(
        again.is_ok(),
        "the stream's own output is refused: {again:?}"
    );
    assert!(second.finish().is_ok());
    if *remove_only {
        assert_eq!(
            second.rewritten(),
            0,
            "a second pass still rewrites a message"
        );
    }
}

/// Removing is idempotent, except for index selectors (`$.pos[1]` in CONFIG: after
/// element 1 goes, the old element 2 is element 1): a second pass that still finds a
/// member to remove means the first let a forbidden field through.
fn second_pass_removes_nothing(report: &consent_core::body::BodyReport) {
    let members: Vec<&str> = report
        .fields
        .iter()
        .map(|f| f.path.as_str())
        .filter(|p| !p.ends_with(']'))
        .collect();
    assert!(
        members.is_empty() && report.dropped_elements == 0,
        "a second pass still removes {members:?} (dropped elements: {})",
        report.dropped_elements
    );
}

/// `snapshot_parse`: the first byte picks what the rest is: a full snapshot, a delta
/// against the demo snapshot, a raw bucket, or small documents the fetcher reads.
pub fn snapshot_parse(data: &[u8]) {
    let f = fixtures();
    let policy = &f.config.policy;
    let fp = fingerprint(policy);
    let (mode, rest) = data.split_first().map_or((0, data), |(m, r)| (*m, r));
    let keyings = [
        SubjectKeying::Plain,
        SubjectKeying::Hmac(HMAC_SECRET.to_vec()),
    ];
    let keying = &keyings[usize::from(mode >> 7)];
    let bits = 1 + (mode >> 2) % 8;
    match mode % 4 {
        0 => {
            let Ok(doc) = FullSnapshotDoc::from_json(rest) else {
                return;
            };
            let compiled = KeyedSnapshot::compile(&doc, policy, keying);
            let mut builder = BucketBuilder::new(bits);
            let built = add_part(&doc, policy, keying, &mut builder)
                .ok()
                .and_then(|()| builder.finish(fp, doc.version).ok());
            assert_eq!(
                compiled.is_ok(),
                built.is_some(),
                "whole-snapshot and part-by-part loading disagree"
            );
            let Ok(snap) = compiled else { return };
            let buckets = snap.buckets(policy, bits, None);
            assert_eq!(
                built.as_ref(),
                Some(&buckets),
                "the builder and the snapshot encode different buckets"
            );
            check_buckets(&snap, &buckets, fp, bits);
        }
        1 => {
            let Ok(delta) = DeltaDoc::from_json(rest) else {
                return;
            };
            let Some(mut snap) = base_snapshot(keying) else {
                return;
            };
            let before = snap.buckets(policy, bits, None);
            let compiled = KeyedDelta::compile(&delta, policy, keying, bits);
            let applied = snap.apply(&delta, policy, keying);
            match (&compiled, &applied) {
                (Ok(kd), Ok(_)) => {
                    // Applying the delta bucket by bucket gives what the whole snapshot gives.
                    let after = snap.buckets(policy, bits, Some(&kd.buckets()));
                    for b in kd.buckets() {
                        let published = before.get(&b).map(Vec::as_slice);
                        let Ok((bytes, _)) = kd.apply_to_bucket(b, published, fp) else {
                            panic!("a bucket the snapshot published does not decode");
                        };
                        let got = decode_bucket(&bytes, fp).map(|(_, r)| r);
                        let want = after.get(&b).map(|w| decode_bucket(w, fp).map(|(_, r)| r));
                        assert_eq!(Some(got), want, "bucket {b}: delta and snapshot disagree");
                    }
                    let all = snap.buckets(policy, bits, None);
                    check_buckets(&snap, &all, fp, bits);
                }
                // A gap is only seen against a snapshot version; the rest must agree.
                (Ok(_), Err(consent_core::live::DeltaError::Gap { .. })) => {}
                (Err(_), Err(_)) => {}
                (c, a) => panic!(
                    "delta checks disagree: compile {:?}, apply {:?}",
                    c.as_ref().err(),
                    a.as_ref().err()
                ),
            }
        }
        2 => {
            // A bucket as read from shared data; its own fingerprint is used so that the
            // decoder gets past the policy check.
            let own_fp: [u8; 8] = rest
                .get(4..12)
                .and_then(|s| s.try_into().ok())
                .unwrap_or(fp);
            let _ = bucket_version(rest);
            let decoded = decode_bucket(rest, own_fp);
            let _ = decode_bucket(rest, fp);
            let key = SubjectKeying::Plain.key_of_user("u-alice");
            let _ = find_in_bucket(rest, own_fp, &key);
            if let Ok((_, records)) = decoded {
                for (k, r) in records.iter().take(64) {
                    if let Ok(Some(found)) = find_in_bucket(rest, own_fp, k) {
                        // Keys may repeat or be unsorted in a forged bucket: only a clean
                        // hit must be one of the records with that key.
                        assert!(
                            records.iter().any(|(k2, r2)| k2 == k && *r2 == found),
                            "find_in_bucket returned a record no entry of key {k:?} holds (entry had {r:?})"
                        );
                    }
                }
            }
        }
        _ => {
            let _ = PublishedMeta::from_json(rest);
            let _ = consent_core::live::Lease::decode(rest);
            if let Ok(text) = std::str::from_utf8(rest) {
                for k in &keyings {
                    let _ = k.key_of_subject(text);
                }
            }
        }
    }
}

/// The demo consents as a keyed snapshot (version 1), for deltas to apply to.
fn base_snapshot(keying: &SubjectKeying) -> Option<KeyedSnapshot> {
    let users = ["u-alice", "u-bob", "u-carol"];
    let kind = match keying {
        SubjectKeying::Plain => "plain",
        SubjectKeying::Hmac(_) => "hmac_sha256",
    };
    let records: Vec<serde_json::Value> = users
        .iter()
        .map(|u| {
            serde_json::json!({
                "subject": keying.subject_for(u),
                "grants": {"marketing.newsletters": {"policy_version": 1}},
                "stop_use": *u == "u-carol",
            })
        })
        .collect();
    let doc = serde_json::json!({"version": 1, "subject_key": kind, "records": records});
    let doc = FullSnapshotDoc::from_json(doc.to_string().as_bytes()).ok()?;
    KeyedSnapshot::compile(&doc, &fixtures().config.policy, keying).ok()
}

/// Every record of `snap` is in its bucket and found by key; nothing else is.
fn check_buckets(
    snap: &KeyedSnapshot,
    buckets: &std::collections::BTreeMap<u32, Vec<u8>>,
    fp: [u8; 8],
    bits: u8,
) {
    let mut seen = 0;
    for (b, bytes) in buckets {
        let Ok((version, records)) = decode_bucket(bytes, fp) else {
            panic!("bucket {b} does not decode");
        };
        assert_eq!(version, snap.version);
        for (k, r) in &records {
            assert_eq!(bucket_of(k, bits), *b);
            assert_eq!(
                snap.records.get(k),
                Some(r),
                "bucket {b} holds a wrong record"
            );
        }
        seen += records.len();
    }
    assert_eq!(seen, snap.records.len());
    for (k, r) in snap.records.iter().take(256) {
        let bytes = buckets.get(&bucket_of(k, bits));
        let found = bytes.map(|b| find_in_bucket(b, fp, k));
        assert_eq!(
            found,
            Some(Ok(Some(r.clone()))),
            "a record is not found by its key"
        );
    }
}

/// `config_parse`: the bytes are a plugin configuration; when it compiles, a few requests
/// are decided and a small body redacted with it.
pub fn config_parse(data: &[u8]) {
    let Ok(config) = compile_config(data) else {
        return;
    };
    let purposes: Vec<String> = config
        .policy
        .purposes
        .iter()
        .map(|p| p.id.clone())
        .take(4)
        .collect();
    let user_header = config.settings.user_header.clone();
    let purpose_header = config.settings.purpose_header.clone();
    for purpose in purposes.iter().map(String::as_str).chain(["", "nope"]) {
        for user in ["u-alice", "u-bob", ""] {
            let headers: [(&str, &[u8]); 3] = [
                (&user_header, user.as_bytes()),
                (&purpose_header, purpose.as_bytes()),
                ("sec-gpc", b"1"),
            ];
            let decision = config.evaluate(headers);
            let _ = consent_core::decide::explain(&config.policy, &config.routes, &decision);
            let _ = consent_core::decide::block_body(&config.policy, &decision);
            let _ = consent_core::decide::decision_header_value(
                &config.policy,
                &config.routes,
                &decision,
            );
            if config.body_needed(&decision) {
                let body = br#"{"email":"a@b","gps":{"lat":35.8617,"lng":139.6455},"items":[{"user_id":"u-bob","email":"x"}],"birth_date":"1990-04-01"}"#;
                let r = config.redact_body(&decision, body, TODAY, true, &config.inline_consents());
                if let Ok((BodyOutcome::Rewritten(out), _)) = r {
                    assert!(parses(&out), "valid JSON in, invalid JSON out");
                }
            }
        }
    }
}

/// Up to 64 header lines, `name: value`: names lowercased, values as raw bytes.
fn header_lines(data: &[u8]) -> Vec<(String, &[u8])> {
    let mut owned = Vec::new();
    for line in data.split(|b| *b == b'\n').take(64) {
        let split = line.iter().skip(1).position(|b| *b == b':').map(|p| p + 1);
        let (name, value) = match split {
            Some(at) => (&line[..at], &line[at + 1..]),
            None => (line, &b""[..]),
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        owned.push((String::from_utf8_lossy(name).to_ascii_lowercase(), value));
    }
    owned
}

/// `headers`: one header a line, `name: value` (names are lowercased as Envoy gives them;
/// values are raw bytes). Pseudo-headers `:authority`, `:path` and `:route` feed route
/// selection; `:uri-san`, `:dns-san` and `:cluster` the caller's identity.
pub fn headers(data: &[u8]) {
    let f = fixtures();
    let config = &f.config;
    let owned = header_lines(data);
    let list: Vec<(&str, &[u8])> = owned.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let text = |name: &str| {
        list.iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    };
    let facts = RouteFacts {
        route_name: text(":route"),
        host: text(":authority"),
        path: text(":path"),
    };
    let caller = CallerFacts {
        uri_san: text(":uri-san"),
        dns_san: text(":dns-san"),
        cluster: text(":cluster"),
        header: HeaderValue::Absent,
    };
    let rule = config.routes.select(&facts);
    let view = RequestView::from_headers(
        &config.settings.user_header,
        &config.settings.purpose_header,
        list.iter().copied(),
    );
    let context = config.context(&caller, &facts, list.iter().copied());
    assert_eq!(context.rule, rule);
    let decision = config.decide(&view.with_context(context));
    for (_, v) in &list {
        let _ = consent_core::policy::is_signal(v);
    }
    let _ = HeaderValue::fold(list.iter().map(|(_, v)| *v));
    let body_headers = BodyHeaders::from_headers(list.iter().copied());
    let _ = body_mode(
        true,
        &body_headers,
        1024,
        EncodedBody::Block,
        UnparsedBody::Pass,
    );
    let _ = consent_core::decide::decision_header_value(&config.policy, &config.routes, &decision);

    let policy = &config.policy;
    let edits = consent_core::decide::plan_request(policy, &decision, list.iter().copied());
    let _ = consent_core::decide::plan_response(policy, &decision, list.iter().copied());
    if !decision.redacts() {
        return;
    }
    let forbidden = decision.redacted;
    let param_forbidden = |name: &str| {
        !policy
            .query_categories(name)
            .intersection(forbidden)
            .is_empty()
    };
    // No forbidden header stays.
    for (name, _) in &list {
        if !name.starts_with(':')
            && !policy
                .header_categories(name)
                .intersection(forbidden)
                .is_empty()
        {
            assert!(
                edits.remove.iter().any(|r| r == name),
                "forbidden header {name} kept"
            );
        }
    }
    // No forbidden query parameter stays, in the rewritten path or the untouched one.
    let paths: Vec<&str> = list
        .iter()
        .filter(|(n, _)| *n == ":path")
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .collect();
    if let [path] = paths.as_slice() {
        let left = edits.new_path.as_deref().unwrap_or(path);
        if let Some((_, query)) = left.split_once('?') {
            for param in query.split(['&', ';']).filter(|p| !p.is_empty()) {
                let raw = param.split_once('=').map_or(param, |(n, _)| n);
                let name = consent_core::decide::decode_name(raw);
                let name = name.strip_suffix("[]").unwrap_or(&name);
                assert!(
                    !param_forbidden(name),
                    "forbidden query parameter {raw} kept"
                );
            }
        }
        if let Some(new_path) = &edits.new_path {
            assert_eq!(
                consent_core::decide::strip_params(
                    new_path,
                    consent_core::decide::QuerySettings::default(),
                    param_forbidden
                ),
                None,
                "stripping is not idempotent"
            );
        }
    }
}

/// Enforces `body` under the decision the first byte of `data` picks, declared as
/// `content_type`; a remove-only decision's output must come through a second pass
/// unchanged (nothing forbidden left) and without an error.
fn enforce_twice(data: &[u8], content_type: &str) {
    let f = fixtures();
    let (selector, body) = data.split_first().map_or((0, data), |(s, r)| (*s, r));
    let (decision, remove_only) = &f.decisions[usize::from(selector) % f.decisions.len()];
    let config = &f.config;
    let headers = BodyHeaders::from_headers([("content-type", content_type.as_bytes())]);
    let lookup = config.inline_consents();
    let result = config.enforce_body(decision, &headers, body, TODAY, true, &lookup);
    let Ok((outcome, report)) = result else {
        return;
    };
    assert!(report.fields.len() <= consent_core::body::MAX_FIELD_HITS);
    let BodyOutcome::Rewritten(out) = outcome else {
        return;
    };
    if *remove_only {
        let again = config.enforce_body(decision, &headers, &out, TODAY, true, &lookup);
        match again {
            Ok((BodyOutcome::Unchanged, _)) => {}
            Ok((BodyOutcome::Rewritten(_), report)) => second_pass_removes_nothing(&report),
            other => panic!(
                "a second pass over the output gives {:?}",
                other.map(|(o, r)| (o, r.fields))
            ),
        }
    }
}

/// `form`: the first byte picks a decision, the rest is an
/// `application/x-www-form-urlencoded` body.
pub fn form(data: &[u8]) {
    enforce_twice(data, "application/x-www-form-urlencoded");
}

/// `multipart`: the first byte picks a decision, the rest is a `multipart/form-data` body
/// with the boundary `fuzz`. Malformed bodies must be errors, never panics.
pub fn multipart(data: &[u8]) {
    enforce_twice(data, "multipart/form-data; boundary=fuzz");
    let f = fixtures();
    let headers = BodyHeaders::from_headers([(
        "content-type",
        b"multipart/form-data; boundary=fuzz".as_slice(),
    )]);
    let (decision, _) = &f.decisions[0];
    let config = &f.config;
    let body = data.get(1..).unwrap_or_default();
    if let Err(e) = config.enforce_body(
        decision,
        &headers,
        body,
        TODAY,
        false,
        &config.inline_consents(),
    ) {
        let _ = (
            e.reason(),
            e.to_string(),
            matches!(e, BodyError::Unreadable),
        );
    }
}

/// `cookies`: header lines as for `headers`; the `cookie` and `set-cookie` values are
/// planned for every fixed decision, and what a plan keeps must plan to nothing again.
pub fn cookies(data: &[u8]) {
    let f = fixtures();
    let config = &f.config;
    let owned = header_lines(data);
    let list: Vec<(&str, &[u8])> = owned.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    for (decision, _) in &f.decisions {
        for request in [true, false] {
            let edits = if request {
                config.plan_request(decision, list.iter().copied())
            } else {
                config.plan_response(decision, list.iter().copied())
            };
            let Some(edit) = edits.cookies else {
                continue;
            };
            let kept: Vec<(&str, &[u8])> = edit
                .keep
                .iter()
                .map(|v| (edit.header, v.as_slice()))
                .collect();
            let again = if request {
                config.plan_request(decision, kept.iter().copied())
            } else {
                config.plan_response(decision, kept.iter().copied())
            };
            assert!(
                again.cookies.is_none(),
                "a forbidden cookie is left in {:?}",
                edit.keep
            );
        }
    }
}
