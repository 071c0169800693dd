//! Property tests of the streaming redactor: on generated JSON, no value under a forbidden
//! key survives in any form, every other value is unchanged, and the output agrees with
//! the plain `serde_json::Value` implementation.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use consent_core::body::parse_selector;
use consent_core::body::reference::redact_value;
use consent_core::body::CivilDate;
use consent_core::body::Matcher;
use consent_core::body::{redact, BodyOutcome, BodyRules};
use consent_core::policy::{CategoryIdx, CategorySet};
use proptest::prelude::*;
use serde_json::{Map, Value};

const FORBIDDEN_NAMES: [&str; 3] = ["gps", "email", "device_id"];
const KEYS: [&str; 9] = [
    "gps",
    "GPS",
    "email",
    "Email",
    "device_id",
    "note",
    "items",
    "id",
    "lat",
];
const TODAY: CivilDate = CivilDate {
    year: 2026,
    month: 1,
    day: 1,
};

fn matcher() -> Matcher {
    let mut m = Matcher::default();
    for (i, name) in FORBIDDEN_NAMES.iter().enumerate() {
        let idx = CategoryIdx(u8::try_from(i).unwrap());
        m.add(&parse_selector(&format!("$..{name}")).unwrap(), idx)
            .unwrap();
    }
    m
}

fn is_forbidden_key(key: &str) -> bool {
    FORBIDDEN_NAMES.iter().any(|f| f.eq_ignore_ascii_case(key))
}

/// JSON values whose leaves are later replaced by unique markers.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u32>().prop_map(Value::from),
        "[a-z ]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS.to_vec()), inner), 0..6).prop_map(
                |pairs| {
                    let mut map = Map::new();
                    for (k, v) in pairs {
                        map.insert(k.to_string(), v);
                    }
                    Value::Object(map)
                }
            ),
        ]
    })
}

/// Replaces every leaf by a unique marker string, remembering which are under a forbidden key.
fn mark(
    value: &mut Value,
    under_forbidden: bool,
    next: &mut usize,
    forbidden: &mut Vec<String>,
    allowed: &mut Vec<String>,
) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                mark(
                    v,
                    under_forbidden || is_forbidden_key(k),
                    next,
                    forbidden,
                    allowed,
                );
            }
        }
        Value::Array(items) => {
            for v in items {
                mark(v, under_forbidden, next, forbidden, allowed);
            }
        }
        leaf => {
            let marker = format!("M{:05}", *next);
            *next += 1;
            *leaf = Value::String(marker.clone());
            if under_forbidden {
                forbidden.push(marker);
            } else {
                allowed.push(marker);
            }
        }
    }
}

/// Writes some keys as `\u` escapes, to try to smuggle them past.
fn escape_keys(text: &str) -> String {
    text.replace("\"gps\":", "\"\\u0067ps\":")
        .replace("\"email\":", "\"em\\u0061il\":")
}

fn rules(m: &Matcher) -> BodyRules<'_> {
    BodyRules {
        matcher: m,
        actions: &[],
        coarsen: &[],
        key: None,
        today: TODAY,
        record_paths: false,
    }
}

fn run(input: &[u8], forbid_all: bool) -> Vec<u8> {
    let m = matcher();
    let forbidden = if forbid_all {
        CategorySet::all(FORBIDDEN_NAMES.len())
    } else {
        CategorySet::EMPTY
    };
    match redact(input, &rules(&m), forbidden, None)
        .expect("valid JSON in, valid JSON out")
        .0
    {
        BodyOutcome::Unchanged => input.to_vec(),
        BodyOutcome::Rewritten(out) => out,
        BodyOutcome::Blocked(_) => panic!("no block actions here"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn no_forbidden_value_survives_and_every_other_value_is_unchanged(mut v in value(), pretty in any::<bool>(), escaped in any::<bool>()) {
        let (mut forbidden, mut allowed) = (Vec::new(), Vec::new());
        mark(&mut v, false, &mut 0, &mut forbidden, &mut allowed);
        let mut text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { serde_json::to_string(&v).unwrap() };
        if escaped {
            text = escape_keys(&text);
        }
        let out = run(text.as_bytes(), true);
        let out_text = String::from_utf8(out.clone()).unwrap();
        let parsed: Value = serde_json::from_slice(&out).expect("output is JSON");
        for marker in &forbidden {
            prop_assert!(!out_text.contains(marker.as_str()), "{} leaked in {}", marker, out_text);
        }
        for marker in &allowed {
            prop_assert!(out_text.contains(marker.as_str()), "{} lost from {}", marker, out_text);
        }
        let m = matcher();
        let reference: Value = serde_json::from_slice(&redact_value(text.as_bytes(), &rules(&m), CategorySet::all(3)).unwrap()).unwrap();
        prop_assert_eq!(parsed, reference);
    }

    #[test]
    fn with_nothing_forbidden_the_body_is_byte_for_byte_the_same(v in value()) {
        let text = serde_json::to_string(&v).unwrap();
        prop_assert_eq!(run(text.as_bytes(), false), text.into_bytes());
    }

    #[test]
    fn validity_agrees_with_serde_json_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let m = matcher();
        let ours = redact(&bytes, &rules(&m), CategorySet::all(3), None);
        let serde = serde_json::from_slice::<Value>(&bytes);
        let out_of_range = serde.as_ref().err().is_some_and(|e| e.to_string().contains("number out of range"));
        if !out_of_range {
            prop_assert_eq!(ours.is_ok(), serde.is_ok());
        }
    }

    #[test]
    fn validity_agrees_with_serde_json_on_mangled_json(v in value(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = serde_json::to_vec(&v).unwrap();
        let at = cut.index(bytes.len().max(1));
        if at < bytes.len() { bytes[at] = byte; }
        let m = matcher();
        let ours = redact(&bytes, &rules(&m), CategorySet::all(3), None);
        let serde = serde_json::from_slice::<Value>(&bytes);
        // JSON's grammar allows numbers of any size; serde_json refuses those beyond f64.
        let out_of_range = serde.as_ref().err().is_some_and(|e| e.to_string().contains("number out of range"));
        if !out_of_range {
            prop_assert_eq!(ours.is_ok(), serde.is_ok(), "{}", String::from_utf8_lossy(&bytes));
        }
    }
}

#[test]
fn duplicate_keys_each_lose_their_value() {
    let input = br#"{"gps":"M1","note":"keep","gps":"M2","GPS":"M3","\u0067ps":"M4"}"#;
    let out = String::from_utf8(run(input, true)).unwrap();
    for m in ["M1", "M2", "M3", "M4"] {
        assert!(!out.contains(m), "{m} in {out}");
    }
    assert!(out.contains("keep"));
}

#[test]
fn numbers_as_strings_and_nulls_under_a_forbidden_key_go_too() {
    let input = br#"{"gps":{"lat":"35.86","lng":null},"email":["a@b",{"x":1}],"n":[null,"35.86"]}"#;
    let out: Value = serde_json::from_slice(&run(input, true)).unwrap();
    assert_eq!(out, serde_json::json!({"n": [null, "35.86"]}));
}
