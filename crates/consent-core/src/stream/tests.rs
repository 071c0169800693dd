use super::*;
use crate::body::CivilDate;
use crate::config::compile_config;
use crate::decide::decision::Outcome;
use crate::decide::header_plan::HeaderEdits;
use crate::policy::party::CallerFacts;
use crate::policy::routes::RouteFacts;
use crate::stream::{BodyStart, BodyStep, RequestStep, ResponseStep};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const TODAY: CivilDate = CivilDate {
    year: 2026,
    month: 12,
    day: 2,
};

fn config(extra: serde_json::Value) -> CompiledConfig {
    let mut doc = serde_json::json!({
        "caller": {"unidentified_party": "tsunagu"},
        "consents": {"records": [
            {"subject": "u-alice", "grants": {"marketing.newsletters": {"policy_version": 1}}},
            {"subject": "u-bob"}
        ]}
    });
    if let (Some(doc), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            doc.insert(k.clone(), v.clone());
        }
    }
    compile_config(doc.to_string().as_bytes()).unwrap()
}

/// Sends the request headers `x-user-id: user`, `x-data-purpose: purpose` and then `more`
/// through `stream`, from an unidentified caller on no named route.
fn request(
    stream: &mut Stream,
    c: &CompiledConfig,
    (user, purpose): (&str, &str),
    more: &[(&str, &[u8])],
    end_of_stream: bool,
) -> RequestStep {
    let ids = [
        ("x-user-id", user.as_bytes()),
        ("x-data-purpose", purpose.as_bytes()),
    ];
    stream.on_request_headers(
        c,
        ids.into_iter().chain(more.iter().copied()),
        &CallerFacts::default(),
        &RouteFacts::default(),
        &c.inline_consents(),
        end_of_stream,
    )
}

/// The parts of a `RequestStep::Forward`; panics with `why` on a reply.
fn forwarded(step: RequestStep, why: &str) -> (HeaderEdits, (String, String), BodyStart) {
    match step {
        RequestStep::Forward {
            edits,
            decision_header,
            body,
        } => (edits, decision_header, body),
        RequestStep::Reply(reply) => panic!("{why}, got {reply:?}"),
    }
}

const JSON: (&str, &[u8]) = ("content-type", b"application/json");

#[test]
fn a_blocked_request_is_answered_with_the_reason_and_counted() {
    let c = config(serde_json::json!({}));
    let mut s = Stream::new(&c);
    let RequestStep::Reply(reply) = request(&mut s, &c, ("u-bob", "surveys"), &[], true) else {
        panic!("expected a block reply");
    };
    assert_eq!(reply.status, 403);
    assert!(
        reply.body.contains("\"reason\":\"consent_missing\""),
        "{}",
        reply.body
    );
    assert!(!reply.body.contains("u-bob"));
    let stats = s.take_stats();
    assert!(matches!(stats.as_slice(), [Stat::Decision(d)] if d.outcome == Outcome::Block));
}

#[test]
fn a_redacted_request_forwards_with_edits_the_decision_header_and_a_body_to_read() {
    let c = config(serde_json::json!({}));
    let mut s = Stream::new(&c);
    let more: [(&str, &[u8]); 2] = [
        (":path", b"/echo?lat=35.86&page=2"),
        ("x-geo-position", b"35.8617,139.6455"),
    ];
    let step = request(&mut s, &c, ("u-bob", "service.improvement"), &more, false);
    let (edits, decision_header, body) = forwarded(step, "expected a forward");
    assert_eq!(edits.remove, vec!["x-geo-position".to_string()]);
    assert_eq!(edits.new_path.as_deref(), Some("/echo?page=2"));
    assert_eq!(decision_header.0, "x-consent-decision");
    assert!(decision_header.1.starts_with("outcome=redact;"));
    assert_eq!(
        body,
        BodyStart::Read {
            remove: &["content-length"],
            hold: true
        }
    );
    assert_eq!(s.facts().removed.query_params, 1);
    assert_eq!(s.facts().removed.request_headers, 1);
}

#[test]
fn a_body_is_buffered_to_its_end_then_rewritten() {
    let c = config(serde_json::json!({}));
    let mut s = Stream::new(&c);
    assert!(matches!(
        request(&mut s, &c, ("u-bob", "service.improvement"), &[JSON], false),
        RequestStep::Forward { .. }
    ));
    assert_eq!(
        s.on_body_data(&c, Direction::Request, 10, false),
        BodyStep::Buffer
    );
    assert_eq!(
        s.on_body_data(&c, Direction::Request, 40, true),
        BodyStep::ReadWhole
    );
    let body = br#"{"email":"b@example.jp","note":"hi"}"#;
    let step = s.on_whole_body(&c, Direction::Request, body, || TODAY, &c.inline_consents());
    assert_eq!(step, BodyStep::Replace(br#"{"note":"hi"}"#.to_vec()));
    assert!(!s.reading(Direction::Request));
    assert_eq!(s.facts().removed.request_body_fields, 1);
}

#[test]
fn oversize_and_invalid_bodies_are_refused_with_their_status() {
    let c = config(serde_json::json!({"body": {"max_bytes": 16}}));
    let ids = ("u-bob", "service.improvement");
    let mut s = Stream::new(&c);
    request(&mut s, &c, ids, &[JSON], false);
    let BodyStep::Reply(reply) = s.on_body_data(&c, Direction::Request, 17, false) else {
        panic!("expected a refusal");
    };
    assert_eq!(reply.status, 413);
    assert_eq!(
        s.facts().refusal,
        Some((Direction::Request, Reason::BodyTooLarge))
    );
    let mut s = Stream::new(&c);
    request(&mut s, &c, ids, &[JSON], false);
    let step = s.on_whole_body(
        &c,
        Direction::Request,
        b"{\"a\":",
        || TODAY,
        &c.inline_consents(),
    );
    assert!(matches!(step, BodyStep::Reply(r) if r.status == 400));
}

#[test]
fn a_response_body_that_cannot_be_vouched_for_is_a_502() {
    let c = config(serde_json::json!({}));
    let mut s = Stream::new(&c);
    assert!(matches!(
        request(&mut s, &c, ("u-alice", "marketing.newsletters"), &[], true),
        RequestStep::Forward { .. }
    ));
    assert!(s.reads_response(&c));
    let r: [(&str, &[u8]); 2] = [JSON, ("content-encoding", b"gzip")];
    let ResponseStep::Reply(reply) = s.on_response_headers(&c, r.iter().copied(), false) else {
        panic!("expected a refusal");
    };
    assert_eq!(reply.status, 502);
    assert!(reply.body.contains("body_encoding_unsupported"));
}

#[test]
fn dry_run_decides_and_records_but_plans_no_change() {
    let c = config(serde_json::json!({"dry_run": true}));
    let mut s = Stream::new(&c);
    let more: [(&str, &[u8]); 1] = [("x-geo-position", b"35.8617,139.6455")];
    // Blocked, but in dry-run it goes on, marked, and its body is not read.
    let step = request(&mut s, &c, ("u-bob", "surveys"), &more, false);
    let (edits, decision_header, body) = forwarded(step, "dry-run never answers locally");
    assert!(edits.is_empty());
    assert!(decision_header
        .1
        .starts_with("mode=dry_run; outcome=block;"));
    assert_eq!(body, BodyStart::None);
    assert_eq!(s.fail_closed(&c), Stop::Continue);
}

#[test]
fn a_host_failure_blocks_with_internal_error() {
    let c = config(serde_json::json!({}));
    let mut s = Stream::new(&c);
    let Stop::Reply(reply) = s.fail_closed(&c) else {
        panic!("enforced streams fail closed");
    };
    assert_eq!(reply.status, 500);
    assert!(reply.body.contains("internal_error"));
    assert_eq!(
        s.decision().map(|d| d.reason),
        Some(Reason::InternalError),
        "logged like any decision"
    );
}

#[test]
fn the_log_line_carries_a_keyed_subject_never_the_user_id() {
    let c = config(serde_json::json!({
        "decision_log": {"enabled": true, "subject_key_secret": "0123456789abcdef-log"}
    }));
    let mut s = Stream::new(&c);
    let more: [(&str, &[u8]); 1] = [("x-request-id", b"req-1")];
    request(&mut s, &c, ("u-bob", "surveys"), &more, true);
    let line = s
        .log_line(&c, 1, 1_000, || Some("r".to_string()), Some(3))
        .unwrap();
    assert!(line.contains("\"request_id\":\"req-1\""), "{line}");
    assert!(line.contains("\"subject\":\""), "{line}");
    assert!(!line.contains("u-bob"), "{line}");
}

/// A policy whose categories travel in one way each: a header, a cookie, a JSON body
/// field, or nowhere the filter looks (`ledger`); gRPC calls of unknown methods pass.
fn carriers_config() -> CompiledConfig {
    let label = serde_json::json!({"ja": "x", "en": "x"});
    let purpose = |id: &str, allowed: &[&str]| serde_json::json!({"id": id, "label": label, "basis": "contract", "categories": allowed});
    let doc = serde_json::json!({
        "require_user": false,
        "caller": {"unidentified_party": "op"},
        "grpc": {"unknown_method": "pass"},
        "policy": {"id": "carriers", "version": 1,
            "categories": [
                {"id": "geo", "label": label, "headers": ["x-geo"]},
                {"id": "ads", "label": label, "cookies": ["_ga"]},
                {"id": "mail", "label": label, "json": ["$.mail"]},
                {"id": "ledger", "label": label}
            ],
            "purposes": [
                purpose("no-geo", &["ads", "mail", "ledger"]),
                purpose("no-ads", &["geo", "mail", "ledger"]),
                purpose("no-mail", &["geo", "ads", "ledger"]),
                purpose("no-ledger", &["geo", "ads", "mail"]),
                purpose("all", &["geo", "ads", "mail", "ledger"])
            ],
            "parties": [{"id": "op", "label": label, "kind": "operator"}]}
    });
    compile_config(doc.to_string().as_bytes()).unwrap()
}

#[test]
fn response_headers_are_read_only_when_reading_them_could_change_something() {
    let c = carriers_config();
    let response: Vec<(&str, &[u8])> = vec![
        ("x-geo", b"35.8,139.6"),
        ("set-cookie", b"_ga=GA1.2; Path=/"),
        ("content-type", b"application/json"),
        ("content-length", b"20"),
    ];
    for (purpose, reads) in [
        ("no-geo", true),
        ("no-ads", true),
        ("no-mail", true),
        ("no-ledger", false),
        ("all", false),
    ] {
        let mut s = Stream::new(&c);
        forwarded(request(&mut s, &c, ("", purpose), &[], true), purpose);
        assert_eq!(s.reads_response(&c), reads, "{purpose}");
        if !reads {
            // What reading them would have planned: nothing.
            let d = *s.decision().unwrap();
            let edits = c.plan_response(&d, response.iter().copied());
            assert!(edits.is_empty() && edits.removed.is_empty(), "{purpose}");
            assert!(!c.body_needed(&d), "{purpose}");
            assert_eq!(
                s.on_response_headers(&c, response.iter().copied(), false),
                ResponseStep::Pass
            );
        }
    }
}

#[test]
fn a_response_that_may_be_a_refused_grpc_call_or_hold_elements_is_read() {
    let label = serde_json::json!({"ja": "x", "en": "x"});
    let doc = |extra: serde_json::Value| {
        let mut doc = serde_json::json!({
            "require_user": false,
            "caller": {"unidentified_party": "op"},
            "policy": {"id": "p", "version": 1,
                "categories": [{"id": "ledger", "label": label}],
                "purposes": [
                    {"id": "none", "label": label, "basis": "contract", "categories": []},
                    {"id": "all", "label": label, "basis": "contract", "categories": ["ledger"]}
                ],
                "parties": [{"id": "op", "label": label, "kind": "operator"}]}
        });
        if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
            d.extend(e.clone());
        }
        compile_config(doc.to_string().as_bytes()).unwrap()
    };
    let reads = |c: &CompiledConfig, purpose: &str| {
        let mut s = Stream::new(c);
        forwarded(request(&mut s, c, ("", purpose), &[], true), purpose);
        s.reads_response(c)
    };
    // Unknown gRPC methods are blocked by default: a response claiming to be gRPC is
    // refused whenever the decision removes something.
    let default = doc(serde_json::json!({}));
    assert!(reads(&default, "none"));
    assert!(!reads(&default, "all"));
    let pass = doc(serde_json::json!({"grpc": {"unknown_method": "pass"}}));
    assert!(!reads(&pass, "none"));
    // Multi-subject elements are decided in every response body.
    let elements = doc(serde_json::json!({
        "grpc": {"unknown_method": "pass"},
        "body": {"subjects": [{"elements": "$.items[*]", "subject": "$.user_id"}]}
    }));
    assert!(reads(&elements, "all"));
    assert!(reads(&elements, "none"));
}

#[test]
fn the_host_date_is_asked_only_by_transforms_that_read_it() {
    let label = serde_json::json!({"ja": "x", "en": "x"});
    let doc = serde_json::json!({
        "require_user": false,
        "caller": {"unidentified_party": "op"},
        "policy": {"id": "p", "version": 1,
            "categories": [{"id": "birth", "label": label, "json": ["$.birth"],
                            "coarsen": {"age_band_years": 10}}],
            "purposes": [
                {"id": "ages", "label": label, "basis": "contract", "categories": [],
                 "transforms": {"birth": "coarsen"}},
                {"id": "none", "label": label, "basis": "contract", "categories": []}
            ],
            "parties": [{"id": "op", "label": label, "kind": "operator"}]}
    });
    let c = compile_config(doc.to_string().as_bytes()).unwrap();
    let body = br#"{"birth":"1990-05-01","note":"hi"}"#;
    let run = |purpose: &str, today: &dyn Fn() -> CivilDate| {
        let mut s = Stream::new(&c);
        forwarded(request(&mut s, &c, ("", purpose), &[JSON], false), purpose);
        assert_eq!(
            s.on_body_data(&c, Direction::Request, body.len(), true),
            BodyStep::ReadWhole
        );
        s.on_whole_body(&c, Direction::Request, body, today, &c.inline_consents())
    };
    let asked = std::cell::Cell::new(0);
    let counted = || {
        asked.set(asked.get() + 1);
        TODAY
    };
    assert_eq!(
        run("ages", &counted),
        BodyStep::Replace(br#"{"birth":"30-39","note":"hi"}"#.to_vec())
    );
    assert_eq!(asked.get(), 1);
    assert_eq!(
        run("none", &counted),
        BodyStep::Replace(br#"{"note":"hi"}"#.to_vec())
    );
    assert_eq!(asked.get(), 1, "removing a field reads no date");
}

#[test]
fn a_decision_header_from_the_client_is_noticed_so_that_the_host_replaces_it() {
    let c = config(serde_json::json!({}));
    let mut s = Stream::new(&c);
    request(&mut s, &c, ("u-alice", "service.improvement"), &[], true);
    assert!(!s.decision_header_sent());
    let mut s = Stream::new(&c);
    let forged: [(&str, &[u8]); 1] = [("x-consent-decision", b"outcome=allow")];
    request(
        &mut s,
        &c,
        ("u-alice", "service.improvement"),
        &forged,
        true,
    );
    assert!(s.decision_header_sent());
}
