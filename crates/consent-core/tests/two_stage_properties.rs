//! The two-stage redactor (`redact`: a SIMD structural index, then a walk over its tokens)
//! against the scalar one it replaced (`redact_scalar`, kept as its fallback and as the
//! reference): on random and hostile bodies, with every kind of rule, the two give the
//! same result, byte for byte, report for report, error for error; and the two-stage pass
//! itself (`redact_two_stage`) takes every valid body rather than handing it to the
//! scalar one.
//!
//! Bodies are written with random whitespace, escapes of every kind (`\"`, `\\`, `\/`,
//! `\n`, `\u00e9`, surrogate pairs, escaped keys), multi-byte UTF-8, numbers of every
//! form, and shifted by 0-130 bytes so that escapes, strings and characters straddle the
//! 64-byte blocks of stage 1.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use consent_core::body::{
    parse_selector, redact, redact_scalar, redact_two_stage, BodyOutcome, BodyReport, BodyRules,
    CivilDate, CoarsenSpec, ElementRules, ElementVerdict, FieldAction, JsonError, Matcher,
    MAX_DEPTH,
};
use consent_core::policy::{CategoryIdx, CategorySet};
use proptest::prelude::*;

const TODAY: CivilDate = CivilDate {
    year: 2026,
    month: 1,
    day: 1,
};

const SELECTORS: [(&str, u8); 9] = [
    ("$..gps", 0),
    ("$..email", 1),
    ("$.items[*].device_id", 2),
    ("$.a[1]", 3),
    ("$..*.lat", 4),
    ("$['odd.name']", 5),
    ("$..birth_date", 6),
    ("$..名前", 7),
    ("$..a_very_long_key_name", 1),
];

const KEYS: [&str; 18] = [
    "gps",
    "GPS",
    "email",
    "Email",
    "device_id",
    "items",
    "a",
    "lat",
    "lng",
    "odd.name",
    "birth_date",
    "user_id",
    "名前",
    "note",
    "id",
    "a_very_long_key_name",
    "x\"y",
    "",
];

fn matcher() -> Matcher {
    let mut m = Matcher::default();
    for (s, c) in SELECTORS {
        m.add(&parse_selector(s).unwrap(), CategoryIdx(c)).unwrap();
    }
    m
}

fn elements() -> Matcher {
    let mut m = Matcher::default();
    m.add(&parse_selector("$.items[*]").unwrap(), CategoryIdx(0))
        .unwrap();
    m
}

/// A JSON value to write out.
#[derive(Debug, Clone)]
enum Node {
    Null,
    Bool(bool),
    /// Written as is: integers, negatives, fractions, exponents.
    Number(String),
    Str(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (any::<i32>(), 0u32..1_000_000).prop_map(|(a, b)| format!("{a}.{b}")),
        (any::<i16>(), any::<bool>(), any::<bool>(), 0u8..40).prop_map(|(m, big, neg, e)| {
            format!(
                "{m}{}{}{e}",
                if big { 'E' } else { 'e' },
                if neg { "-" } else { "+" }
            )
        }),
        Just("0".to_string()),
        Just("-0.0".to_string()),
        Just("35.86123".to_string()),
        Just("139.60129999999998".to_string()),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z ]{0,12}",
        "[a-zA-Z0-9 \"\\\\/\n\t\u{7f}]{0,24}",
        "[日本語区市ー😀é]{0,8}",
        ".{0,20}",
        Just("35.86,139.65".to_string()),
        Just("1990-04-01".to_string()),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        Just(Node::Null),
        any::<bool>().prop_map(Node::Bool),
        number().prop_map(Node::Number),
        text().prop_map(Node::Str),
    ];
    leaf.prop_recursive(6, 80, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Node::Array),
            prop::collection::vec((prop::sample::select(KEYS.to_vec()), inner), 0..8).prop_map(
                |m| Node::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            ),
        ]
    })
}

/// How a body is written: the bits drive whitespace and escapes.
struct Writer {
    out: String,
    state: u64,
    /// 0: compact, else the odds (1 in n) of whitespace between tokens.
    spacing: u64,
    /// 0: no escapes, else the odds (1 in n) that a character is escaped.
    escaping: u64,
}

impl Writer {
    fn next(&mut self) -> u64 {
        self.state = self
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.state >> 33
    }

    fn one_in(&mut self, n: u64) -> bool {
        n != 0 && self.next() % n == 0
    }

    fn ws(&mut self) {
        if self.one_in(self.spacing) {
            for _ in 0..1 + self.next() % 3 {
                let c = [' ', '\n', '\t', '\r'][(self.next() % 4) as usize];
                self.out.push(c);
            }
        }
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            let escape = self.one_in(self.escaping);
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\t' => self.out.push_str("\\t"),
                c if (c as u32) < 0x20 => self.out.push_str(&format!("\\u{:04x}", c as u32)),
                '/' if escape => self.out.push_str("\\/"),
                c if escape => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        if self.next() % 2 == 0 {
                            self.out.push_str(&format!("\\u{u:04x}"));
                        } else {
                            self.out.push_str(&format!("\\u{u:04X}"));
                        }
                    }
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    fn node(&mut self, n: &Node) {
        self.ws();
        match n {
            Node::Null => self.out.push_str("null"),
            Node::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Node::Number(s) => self.out.push_str(s),
            Node::Str(s) => self.string(s),
            Node::Array(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.ws();
                        self.out.push(',');
                    }
                    self.node(item);
                }
                self.ws();
                self.out.push(']');
            }
            Node::Object(members) => {
                self.out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        self.ws();
                        self.out.push(',');
                    }
                    self.ws();
                    self.string(k);
                    self.ws();
                    self.out.push(':');
                    self.node(v);
                }
                self.ws();
                self.out.push('}');
            }
        }
        self.ws();
    }
}

fn write(n: &Node, seed: u64, shift: usize, spacing: u64, escaping: u64) -> Vec<u8> {
    let mut w = Writer {
        out: " ".repeat(shift),
        state: seed,
        spacing,
        escaping,
    };
    w.node(n);
    w.out.into_bytes()
}

/// The rule sets every body is redacted under.
fn rule_sets<'m>(m: &'m Matcher, coarsen: &'m [Option<CoarsenSpec>]) -> Vec<BodyRules<'m>> {
    const ACTIONS: [&[(CategoryIdx, FieldAction)]; 3] = [
        &[],
        &[
            (CategoryIdx(0), FieldAction::Coarsen),
            (CategoryIdx(2), FieldAction::Pseudonymise),
            (CategoryIdx(6), FieldAction::Coarsen),
        ],
        &[(CategoryIdx(1), FieldAction::Block)],
    ];
    let mut sets = Vec::new();
    for actions in ACTIONS {
        for record_paths in [false, true] {
            sets.push(BodyRules {
                matcher: m,
                actions,
                coarsen,
                key: Some(b"two-stage-test-key"),
                today: TODAY,
                record_paths,
            });
        }
    }
    sets
}

fn forbidden_sets() -> [CategorySet; 3] {
    let mut some = CategorySet::EMPTY;
    some.insert(CategoryIdx(0));
    some.insert(CategoryIdx(1));
    some.insert(CategoryIdx(2));
    let mut wide = CategorySet::all(8);
    wide.insert(CategoryIdx(100));
    [CategorySet::all(8), some, wide]
}

/// A verdict per subject that exercises every outcome.
fn verdict_for(subject: Option<&str>) -> ElementVerdict {
    match subject.map(str::len) {
        None => ElementVerdict::Drop,
        Some(n) if n % 3 == 0 => ElementVerdict::Drop,
        Some(n) if n % 3 == 1 => ElementVerdict::Forbid(CategorySet::EMPTY),
        Some(_) => {
            let mut s = CategorySet::EMPTY;
            s.insert(CategoryIdx(1));
            s.insert(CategoryIdx(4));
            ElementVerdict::Forbid(s)
        }
    }
}

type Outcome = Result<(BodyOutcome, BodyReport), JsonError>;

/// Both redactors under every rule set, forbidden set and with and without element rules;
/// returns how many runs the two-stage pass took itself.
fn same_everywhere(body: &[u8], must_take: bool) -> Result<usize, TestCaseError> {
    let m = matcher();
    let em = elements();
    let paths = vec![vec!["user_id".to_string()]];
    let coarsen = vec![
        Some(CoarsenSpec::GridDegrees(0.01)),
        None,
        None,
        None,
        None,
        None,
        Some(CoarsenSpec::AgeBandYears(10)),
    ];
    let er = ElementRules {
        elements: &em,
        subject_paths: &paths,
    };
    let mut taken = 0;
    for rules in rule_sets(&m, &coarsen) {
        for forbidden in forbidden_sets() {
            for with_elements in [false, true] {
                let (mut v1, mut v2, mut v3) = (verdict_for, verdict_for, verdict_for);
                let (a, b, c): (Outcome, Outcome, Option<(BodyOutcome, BodyReport)>) =
                    if with_elements {
                        (
                            redact(body, &rules, forbidden, Some((&er, &mut v1))),
                            redact_scalar(body, &rules, forbidden, Some((&er, &mut v2))),
                            redact_two_stage(body, &rules, forbidden, Some((&er, &mut v3))),
                        )
                    } else {
                        (
                            redact(body, &rules, forbidden, None),
                            redact_scalar(body, &rules, forbidden, None),
                            redact_two_stage(body, &rules, forbidden, None),
                        )
                    };
                prop_assert_eq!(
                    &a,
                    &b,
                    "two-stage and scalar differ on {:?}",
                    String::from_utf8_lossy(body)
                );
                if let Some(c) = c {
                    prop_assert_eq!(Ok(c), b.clone(), "the two-stage pass alone differs");
                    taken += 1;
                } else if must_take {
                    prop_assert!(
                        b.is_err(),
                        "the two-stage pass gave up on a body the scalar one takes: {:?} -> {:?}",
                        String::from_utf8_lossy(body),
                        b
                    );
                }
            }
        }
    }
    Ok(taken)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn both_redactors_agree_on_random_bodies(
        n in node(),
        seed in any::<u64>(),
        shift in 0usize..131,
        spacing in prop::sample::select(vec![0u64, 1, 3, 8]),
        escaping in prop::sample::select(vec![0u64, 1, 4, 16]),
    ) {
        let body = write(&n, seed, shift, spacing, escaping);
        prop_assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok(), "{:?}", String::from_utf8_lossy(&body));
        same_everywhere(&body, true)?;
    }

    #[test]
    fn both_redactors_agree_on_mangled_bodies(
        n in node(),
        seed in any::<u64>(),
        shift in 0usize..131,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut body = write(&n, seed, shift, 3, 4);
        for (at, byte, kind) in edits {
            let i = at.index(body.len() + 1);
            match kind {
                0 if i < body.len() => body[i] = byte,
                1 => body.insert(i, byte),
                _ => body.truncate(i),
            }
        }
        same_everywhere(&body, false)?;
    }

    #[test]
    fn both_redactors_agree_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        same_everywhere(&bytes, false)?;
    }

    #[test]
    fn both_redactors_agree_on_bytes_from_the_json_alphabet(
        bytes in prop::collection::vec(prop::sample::select(b"{}[]:,\"\\ \n0123456789.-+eEtrufalsn\x01\xc3\xa9".to_vec()), 0..300)
    ) {
        same_everywhere(&bytes, false)?;
    }
}

#[test]
fn escapes_and_characters_across_every_block_boundary() {
    let pieces: [&str; 8] = [
        r#"{"gps":"a\"b","x":1}"#,
        r#"{"\u0067ps":[1,2],"e\\":"\\\\\""}"#,
        r#"{"名前":"日本語😀","k":"\ud83d\ude00"}"#,
        r#"{"a":[0,{"email":"\/\b\f\n\r\t"}]}"#,
        r#"{"items":[{"user_id":"u1","device_id":"d"},{"user_id":"u22","email":"e"}]}"#,
        r#"[1e5,-0.5E-3,true,false,null,"\u00e9"]"#,
        r#"{"x":"\\","gps":{"lat":35.8617,"lng":139.6455}}"#,
        r#"{"odd.name":"é","a_very_long_key_name":"v","A_Very_Long_Key_Name":"w"}"#,
    ];
    for piece in pieces {
        for shift in 0..140 {
            let body = format!("{}{piece}", " ".repeat(shift));
            let taken = same_everywhere(body.as_bytes(), true).unwrap();
            assert!(taken > 0, "{body}");
        }
    }
}

#[test]
fn broken_escapes_and_strings_across_every_block_boundary() {
    let pieces: [&str; 9] = [
        r#"{"a":"\x"}"#,
        r#"{"a":"\u12G4"}"#,
        r#"{"a":"\u123"}"#,
        "{\"a\":\"\x01\"}",
        r#"{"a":"open}"#,
        r#"{"a":"\"#,
        "{\"a\":\"\u{e9}\"}\u{ff}",
        r#"{"a" "b"}"#,
        r#"{"a":1,}"#,
    ];
    for piece in pieces {
        for shift in 0..140 {
            let body = format!("{}{piece}", " ".repeat(shift));
            same_everywhere(body.as_bytes(), false).unwrap();
            assert!(redact_scalar(
                body.as_bytes(),
                &rule_sets(&matcher(), &[])[0],
                CategorySet::all(8),
                None
            )
            .is_err());
        }
    }
}

#[test]
fn depth_at_and_beyond_the_limit_is_decided_alike() {
    for depth in [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 2, 300] {
        for inner in ["", "1", r#"{"gps":1}"#, "[]", "{}"] {
            let body = format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth));
            same_everywhere(body.as_bytes(), true).unwrap();
            let body = format!("{}{inner}{}", r#"{"gps":"#.repeat(depth), "}".repeat(depth));
            same_everywhere(body.as_bytes(), false).unwrap();
        }
    }
}

#[test]
fn a_block_before_a_later_error_is_decided_alike() {
    // The scalar pass stops at the first `block` field; what follows is never read.
    for tail in ["", "x", "]", r#","a":"\q""#, "\u{1}"] {
        let body = format!(r#"{{"email":"b","n":1{tail}}}"#);
        same_everywhere(body.as_bytes(), false).unwrap();
    }
    // Invalid UTF-8 anywhere is refused first.
    let mut body = br#"{"email":"b","n":"#.to_vec();
    body.extend_from_slice(b"\"\xff\"}");
    same_everywhere(&body, false).unwrap();
}
