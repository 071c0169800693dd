use super::*;
use crate::decide::decision::Outcome;
use crate::decide::reason::Reason;
use crate::live::SubjectKeying;
use crate::policy::{CallerFacts, RouteFacts};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn empty_configuration_takes_every_default() {
    let c = compile_config(b"").unwrap();
    assert_eq!(c.settings.user_header, "x-user-id");
    assert_eq!(c.settings.purpose_header, "x-data-purpose");
    assert_eq!(c.settings.block_status, 403);
    assert!(c.settings.require_user);
    assert_eq!(c.policy.id, "saitama-minna-app");
    assert!(c.consents.is_empty());
}

#[test]
fn a_typo_in_a_key_is_rejected_not_ignored() {
    let err = compile_config(br#"{"require_usr": false}"#).unwrap_err();
    assert!(
        err.to_string().contains("unknown field `require_usr`"),
        "{err}"
    );
}

#[test]
fn unknown_purpose_in_the_snapshot_names_the_field() {
    let err = compile_config(
        br#"{"consents": {"records": [{"subject": "u-1", "grants": {"marketing.campains": {"policy_version": 1}}}]}}"#,
    )
    .unwrap_err();
    assert_eq!(err.path(), "consents.records[0].grants.marketing.campains");
    assert!(err.to_string().contains("unknown purpose"), "{err}");
}

#[test]
fn malformed_json_is_rejected() {
    let err = compile_config(br#"{"require_user": tru"#).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
}

#[test]
fn a_wrong_value_type_names_the_field_without_the_value() {
    let err = compile_config(
        br#"{"consents": {"records": [{"subject": "u-secret", "stop_use": "u-secret"}]}}"#,
    )
    .unwrap_err();
    assert_eq!(err.path(), "consents.records[0].stop_use");
    assert!(!err.to_string().contains("u-secret"), "{err}");
}

#[test]
fn header_names_are_lowercased_and_must_differ() {
    let c = compile_config(br#"{"user_header": "X-Subject"}"#).unwrap();
    assert_eq!(c.settings.user_header, "x-subject");
    let err = compile_config(br#"{"user_header": "x-data-purpose"}"#).unwrap_err();
    assert_eq!(err.path(), "decision_header");
}

#[test]
fn identity_headers_cannot_be_category_headers() {
    let err = compile_config(br#"{"user_header": "x-device-id"}"#).unwrap_err();
    assert_eq!(err.path(), "user_header");
}

#[test]
fn block_status_must_be_an_error_status() {
    let err = compile_config(br#"{"block_status": 200}"#).unwrap_err();
    assert_eq!(err.path(), "block_status");
    assert!(compile_config(br#"{"block_status": 451}"#).is_ok());
}

#[test]
fn bodies_are_read_only_when_a_forbidden_category_has_selectors() {
    let doc = serde_json::json!({"policy": {
        "id": "p", "version": 1,
        "categories": [
            {"id": "email", "label": {"ja": "a", "en": "b"}, "json": ["$..email"]},
            {"id": "device_id", "label": {"ja": "a", "en": "b"}, "headers": ["x-device-id"]}
        ],
        "purposes": [
            {"id": "headers-only", "label": {"ja": "a", "en": "b"}, "basis": "notice", "categories": ["email"]},
            {"id": "needs-body", "label": {"ja": "a", "en": "b"}, "basis": "notice", "categories": ["device_id"]}
        ],
        "parties": [{"id": "op", "label": {"ja": "a", "en": "b"}, "kind": "operator"}]
    }, "caller": {"unidentified_party": "op"}});
    let c = compile_config(doc.to_string().as_bytes()).unwrap();
    let h: [(&str, &[u8]); 2] = [("x-user-id", b"u"), ("x-data-purpose", b"headers-only")];
    assert!(
        !c.body_needed(&c.evaluate(h)),
        "device_id has no selector: skip the body"
    );
    let h: [(&str, &[u8]); 2] = [("x-user-id", b"u"), ("x-data-purpose", b"needs-body")];
    assert!(
        c.body_needed(&c.evaluate(h)),
        "email has a selector and is forbidden"
    );
    let with_elements = serde_json::json!({"policy": doc["policy"], "caller": doc["caller"], "body": {"subjects": [{"elements": "$.items[*]", "subject": "$.id"}]}});
    let c = compile_config(with_elements.to_string().as_bytes()).unwrap();
    let h: [(&str, &[u8]); 2] = [("x-user-id", b"u"), ("x-data-purpose", b"headers-only")];
    assert!(
        c.body_needed(&c.evaluate(h)),
        "elements are decided one by one"
    );
}

#[test]
fn subject_paths_take_exact_keys_only() {
    let err = compile_config(
        br#"{"body": {"subjects": [{"elements": "$.items[*]", "subject": "$..id"}]}}"#,
    )
    .unwrap_err();
    assert_eq!(err.path(), "body.subjects[0].subject");
    let err = compile_config(br#"{"pseudonymisation_key": "short"}"#).unwrap_err();
    assert_eq!(err.path(), "pseudonymisation_key");
    assert!(
        !err.to_string().contains("short"),
        "the key is never repeated"
    );
}

#[test]
fn a_shared_snapshot_needs_a_cluster_and_hmac_needs_a_secret() {
    let err = compile_config(br#"{"snapshot": {"source": "shared"}}"#).unwrap_err();
    assert_eq!(err.path(), "snapshot.cluster");
    let err = compile_config(br#"{"snapshot": {"subject_key": "hmac_sha256"}}"#).unwrap_err();
    assert_eq!(err.path(), "snapshot.subject_key_secret");
    let err = compile_config(br#"{"snapshot": {"refresh_ms": 5000, "max_staleness_ms": 1000}}"#)
        .unwrap_err();
    assert_eq!(err.path(), "snapshot.max_staleness_ms");
    let c = compile_config(br#"{"snapshot": {"source": "shared", "cluster": "consent_source"}}"#)
        .unwrap();
    assert_eq!(c.snapshot.authority, "consent_source");
}

#[test]
fn inline_records_may_be_keyed_by_hmac() {
    let keying = SubjectKeying::Hmac(b"0123456789abcdef-key".to_vec());
    let doc = serde_json::json!({
        "snapshot": {"subject_key": "hmac_sha256", "subject_key_secret": "0123456789abcdef-key"},
        "caller": {"unidentified_party": "tsunagu"},
        "consents": {"records": [{"subject": keying.subject_for("u-1"), "grants": {"surveys": {"policy_version": 1}}}]}
    });
    let c = compile_config(doc.to_string().as_bytes()).unwrap();
    let h: [(&str, &[u8]); 2] = [("x-user-id", b"u-1"), ("x-data-purpose", b"surveys")];
    assert_eq!(c.evaluate(h).reason, Reason::ConsentGranted);
}

#[test]
fn evaluate_reads_headers_and_looks_up_the_user() {
    let c = compile_config(
        br#"{"caller": {"unidentified_party": "tsunagu"}, "consents": {"records": [{"subject": "u-1", "grants": {"surveys": {"policy_version": 1}}}]}}"#,
    )
    .unwrap();
    let h: [(&str, &[u8]); 2] = [("x-user-id", b"u-1"), ("x-data-purpose", b"surveys")];
    let d = c.evaluate(h);
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Redact, Reason::ConsentGranted)
    );
    let h: [(&str, &[u8]); 2] = [("x-user-id", b"u-2"), ("x-data-purpose", b"surveys")];
    assert_eq!(c.evaluate(h).reason, Reason::ConsentMissing);
}

#[test]
fn by_default_a_caller_without_identity_is_a_third_party() {
    let c = compile_config(br#"{"consents": {"records": [{"subject": "u-1", "grants": {"surveys": {"policy_version": 1}}}]}}"#).unwrap();
    let h: [(&str, &[u8]); 2] = [("x-user-id", b"u-1"), ("x-data-purpose", b"surveys")];
    let d = c.evaluate(h);
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Block, Reason::ThirdPartyConsentMissing)
    );
    assert!(d.facts.caller.is_third_party());
}

#[test]
fn caller_settings_are_checked() {
    let err = compile_config(br#"{"caller": {"unidentified_party": "tsunagi"}}"#).unwrap_err();
    assert_eq!(err.path(), "caller.unidentified_party");
    let err = compile_config(br#"{"caller": {"dev_header": "x-user-id"}}"#).unwrap_err();
    assert_eq!(err.path(), "caller.dev_header");
    let err = compile_config(br#"{"caller": {"from": "peer"}}"#).unwrap_err();
    assert_eq!(err.path(), "caller.from");
    let err = compile_config(br#"{"gpc": {"purposes": ["nope"]}}"#).unwrap_err();
    assert_eq!(err.path(), "gpc.purposes[0]");
    let err = compile_config(br#"{"default_route": {"match": {"host": "a"}}}"#).unwrap_err();
    assert_eq!(err.path(), "default_route");
    let err =
        compile_config(br#"{"caller": {"identities": {"saitama-city": ["city"]}}}"#).unwrap_err();
    assert_eq!(err.path(), "caller.identities.saitama-city[0]");
    let err = compile_config(br#"{"caller": {"identities": {"saitama": []}}}"#).unwrap_err();
    assert_eq!(err.path(), "caller.identities.saitama");
    let err = compile_config(
        br#"{"caller": {"identities": {"saitama-city": ["spiffe://minna-app.example/ns/tsunagu/*"]}}}"#,
    )
    .unwrap_err();
    assert_eq!(err.path(), "caller.identities.saitama-city[0]");
}

#[test]
fn a_deployment_can_replace_a_party_s_identities() {
    let c = compile_config(
        br#"{"caller": {"identities": {"saitama-city": ["spiffe://city.example/*"]}}}"#,
    )
    .unwrap();
    let facts = CallerFacts {
        uri_san: Some("spiffe://city.example/sa/portal"),
        ..CallerFacts::default()
    };
    let ctx = c.context(&facts, &RouteFacts::default(), []);
    assert_eq!(ctx.caller.party, c.policy.party_idx("saitama-city"));
    let old = CallerFacts {
        uri_san: Some("spiffe://minna-app.example/ns/saitama-city/sa/x"),
        ..CallerFacts::default()
    };
    assert!(c
        .context(&old, &RouteFacts::default(), [])
        .caller
        .is_third_party());
}

#[test]
fn the_query_block_is_checked_and_defaults_to_semicolons() {
    assert!(compile_config(b"").unwrap().query.semicolon_separator);
    let off = compile_config(br#"{"query": {"semicolon_separator": false}}"#).unwrap();
    assert!(!off.query.semicolon_separator);
    let err = compile_config(br#"{"query": {"semicolon_separatr": false}}"#).unwrap_err();
    assert_eq!(err.path(), "query.semicolon_separatr");
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn the_decision_reaches_filter_state_only_when_observe_asks_for_it() {
    assert!(!compile_config(b"").unwrap().observe.access_log_decision);
    let on = compile_config(br#"{"observe": {"access_log_decision": true}}"#).unwrap();
    assert!(on.observe.access_log_decision);
    let err = compile_config(br#"{"observe": {"access_log_decison": true}}"#).unwrap_err();
    assert_eq!(err.path(), "observe.access_log_decison");
    assert!(err.to_string().contains("unknown field"), "{err}");
    let err = compile_config(br#"{"observe": {"access_log_decision": "yes"}}"#).unwrap_err();
    assert_eq!(err.path(), "observe.access_log_decision");
}

/// A minisign public key (Debian's `minisign -G`), for the trust settings.
const PUBLIC_KEY: &str = "RWR/cSnQ9zOXyX6rAflH1aGIXaERh6oEXzT85B5qU5CM93/WEj/fpGQY";

fn test_env(name: &str) -> Option<String> {
    match name {
        "SUBJECT_KEY" => Some("subject-key-0123456789".to_string()),
        "PSEUDONYM_KEY" => Some("pseudonym-key-0123456789".to_string()),
        "LOG_KEY" => Some("decision-log-key-0123456789".to_string()),
        "SIGNING_PUB" => Some(PUBLIC_KEY.to_string()),
        "SHORT_KEY" => Some("0123456789".to_string()),
        _ => None,
    }
}

#[test]
fn a_public_key_requires_signatures_unless_told_otherwise() {
    let with_key = |extra: &str| {
        compile_config(
            format!(r#"{{"snapshot": {{"public_key": "{PUBLIC_KEY}"{extra}}}}}"#).as_bytes(),
        )
    };
    let trust = with_key("").unwrap().snapshot.trust.unwrap();
    assert!(trust.required);
    assert_eq!(trust.key.id(), "C99733F7D029717F");
    assert!(
        with_key(r#", "require_signature": true"#)
            .unwrap()
            .snapshot
            .trust
            .unwrap()
            .required
    );
    assert!(
        !with_key(r#", "require_signature": false"#)
            .unwrap()
            .snapshot
            .trust
            .unwrap()
            .required
    );
    assert!(compile_config(b"{}").unwrap().snapshot.trust.is_none());
    assert!(
        compile_config(br#"{"snapshot": {"require_signature": false}}"#)
            .unwrap()
            .snapshot
            .trust
            .is_none()
    );
}

#[test]
fn requiring_signatures_without_a_key_is_an_error_naming_the_field() {
    let err = compile_config(br#"{"snapshot": {"require_signature": true}}"#).unwrap_err();
    assert_eq!(err.path(), "snapshot.require_signature");
    assert!(
        err.to_string().contains("needs snapshot.public_key"),
        "{err}"
    );
}

#[test]
fn a_typo_in_the_trust_settings_is_rejected_not_ignored() {
    for typo in [
        format!(r#"{{"snapshot": {{"public_key": "{PUBLIC_KEY}", "require_signatures": false}}}}"#),
        r#"{"snapshot": {"publickey": "RWQ"}}"#.to_string(),
    ] {
        let err = compile_config(typo.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
    let err = compile_config(br#"{"snapshot": {"public_key": "RWQnot-a-key"}}"#).unwrap_err();
    assert_eq!(err.path(), "snapshot.public_key");
    assert!(!err.to_string().contains("RWQnot-a-key"), "{err}");
}

#[test]
fn keys_can_come_from_the_environment() {
    let config = br#"{
        "pseudonymisation_key": {"env": "PSEUDONYM_KEY"},
        "decision_log": {"enabled": true, "subject_key_secret": {"env": "LOG_KEY"}},
        "snapshot": {"subject_key": "hmac_sha256", "subject_key_secret": {"env": "SUBJECT_KEY"},
                     "public_key": {"env": "SIGNING_PUB"}}
    }"#;
    let c = compile_config_with_env(config, &test_env).unwrap();
    assert_eq!(c.key.as_deref(), Some(&b"pseudonym-key-0123456789"[..]));
    assert_eq!(
        c.snapshot.keying,
        SubjectKeying::Hmac(b"subject-key-0123456789".to_vec())
    );
    assert_eq!(
        c.decision_log.subject_key.as_deref(),
        Some(&b"decision-log-key-0123456789"[..])
    );
    assert!(c.snapshot.trust.unwrap().required);
    assert!(c.inline_secrets.is_empty());
    // Without an environment, the first variable is missing.
    let err = compile_config(config).unwrap_err();
    assert_eq!(err.path(), "snapshot.subject_key_secret");
    assert!(
        err.to_string().contains("`SUBJECT_KEY` is not set"),
        "{err}"
    );
}

#[test]
fn the_decision_log_falls_back_on_the_snapshot_key_from_the_environment() {
    let c = compile_config_with_env(
        br#"{"decision_log": {"enabled": true}, "snapshot": {"subject_key": "hmac_sha256",
             "subject_key_secret": {"env": "SUBJECT_KEY"}}}"#,
        &test_env,
    )
    .unwrap();
    assert_eq!(
        c.decision_log.subject_key.as_deref(),
        Some(&b"subject-key-0123456789"[..])
    );
}

#[test]
fn a_missing_or_short_variable_names_the_field_and_the_variable_never_a_value() {
    for (config, field, var) in [
        (
            r#"{"pseudonymisation_key": {"env": "SHORT_KEY"}}"#,
            "pseudonymisation_key",
            "SHORT_KEY",
        ),
        (
            r#"{"snapshot": {"subject_key": "hmac_sha256", "subject_key_secret": {"env": "SHORT_KEY"}}}"#,
            "snapshot.subject_key_secret",
            "SHORT_KEY",
        ),
        (
            r#"{"decision_log": {"subject_key_secret": {"env": "NOT_SET"}}}"#,
            "decision_log.subject_key_secret",
            "NOT_SET",
        ),
        (
            r#"{"snapshot": {"public_key": {"env": "SHORT_KEY"}}}"#,
            "snapshot.public_key",
            "SHORT_KEY",
        ),
        (
            r#"{"snapshot": {"public_key": {"env": "NOT_SET"}}}"#,
            "snapshot.public_key",
            "NOT_SET",
        ),
    ] {
        let err = compile_config_with_env(config.as_bytes(), &test_env).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.path(), field, "{text}");
        assert!(text.contains(&format!("`{var}`")), "{text}");
        assert!(!text.contains("0123456789"), "{text}");
    }
    let err = compile_config_with_env(
        br#"{"pseudonymisation_key": {"env": "SHORT_KEY", "default": "x"}}"#,
        &test_env,
    )
    .unwrap_err();
    assert_eq!(err.path(), "pseudonymisation_key");
}

#[test]
fn inline_secrets_are_listed_for_a_warning_the_public_key_is_not_a_secret() {
    let c = compile_config(
        format!(
            r#"{{"pseudonymisation_key": "pseudonym-key-0123456789",
                "decision_log": {{"subject_key_secret": "decision-log-key-0123456789"}},
                "snapshot": {{"subject_key": "hmac_sha256", "subject_key_secret": "subject-key-0123456789",
                              "public_key": "{PUBLIC_KEY}"}}}}"#
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        c.inline_secrets,
        [
            "snapshot.subject_key_secret",
            "pseudonymisation_key",
            "decision_log.subject_key_secret"
        ]
    );
}

#[test]
fn a_next_public_key_needs_a_public_key_and_must_be_a_key() {
    let err = compile_config(
        format!(r#"{{"snapshot": {{"next_public_key": "{PUBLIC_KEY}"}}}}"#).as_bytes(),
    )
    .unwrap_err();
    assert_eq!(err.path(), "snapshot.next_public_key");
    let err = compile_config(
        format!(r#"{{"snapshot": {{"public_key": "{PUBLIC_KEY}", "next_public_key": "RWQx"}}}}"#)
            .as_bytes(),
    )
    .unwrap_err();
    assert_eq!(err.path(), "snapshot.next_public_key");
    let trust = compile_config(
        format!(
            r#"{{"snapshot": {{"public_key": "{PUBLIC_KEY}", "next_public_key": "{PUBLIC_KEY}"}}}}"#
        )
        .as_bytes(),
    )
    .unwrap()
    .snapshot
    .trust
    .unwrap();
    assert!(trust.next.is_some() && trust.required);
}
