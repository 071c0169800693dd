//! Unit tests of the gRPC schema, selectors, walker and framing, on the demo schema
//! (`envoy-config/grpc/profile.descriptor.binpb`) and small hand-built ones. Messages are
//! encoded by hand, so every byte of the expected output is known.

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet};

use super::*;
use crate::body::redactor::{BodyOutcome, BodyReport, FieldAction, HitAction, MAX_FIELD_HITS};
use crate::body::transform::{pseudonym, CivilDate, CoarsenSpec};
use crate::policy::categories::{CategoryIdx, CategorySet};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::demo::DEMO_DESCRIPTOR_SET as DEMO;
const TODAY: CivilDate = CivilDate {
    year: 2026,
    month: 11,
    day: 27,
};
const KEY: &[u8] = b"test-key-0123456789";

const EMAIL: CategoryIdx = CategoryIdx(0);
const GPS: CategoryIdx = CategoryIdx(1);
const MERCHANT: CategoryIdx = CategoryIdx(2);
const DEVICE: CategoryIdx = CategoryIdx(3);
const BIRTH: CategoryIdx = CategoryIdx(4);
const ADDRESS: CategoryIdx = CategoryIdx(5);
const ATTRS: CategoryIdx = CategoryIdx(6);
const USAGE: CategoryIdx = CategoryIdx(7);
const AMOUNT: CategoryIdx = CategoryIdx(8);

use super::demo::wire::{cat, dbl, frame, int, ld, s, tag, varint};

fn location(lat: f64, lng: f64) -> Vec<u8> {
    cat(&[dbl(1, lat), dbl(2, lng)])
}

fn transaction(i: u64, merchant: &str) -> Vec<u8> {
    cat(&[
        s(1, &format!("tx-{i}")),
        s(2, "2026-01-02"),
        int(3, 100 + i),
        s(4, merchant),
        s(5, "food"),
    ])
}

// ---- rules ---------------------------------------------------------------------------

fn demo_schema() -> Schema {
    Schema::decode(DEMO, "grpc.descriptor_set").unwrap()
}

fn msg(schema: &Schema, name: &str) -> MessageIdx {
    schema.message_idx(name).unwrap()
}

/// The selectors most tests use, by category.
const SELECTORS: &[(&str, CategoryIdx)] = &[
    ("..email", EMAIL),
    ("..gps", GPS),
    ("saitama.v1.Transaction.merchant", MERCHANT),
    ("..device_id", DEVICE),
    ("..birth_date", BIRTH),
    ("..address", ADDRESS),
    ("saitama.v1.Profile.AttributesEntry.value", ATTRS),
    ("..usage_log", USAGE),
    ("saitama.v1.Transaction.amount", AMOUNT),
];

fn selectors(list: &[(&str, CategoryIdx)]) -> Vec<CategorySelector> {
    list.iter()
        .enumerate()
        .map(|(j, (text, c))| CategorySelector {
            category: *c,
            selector: parse_proto_selector(text).unwrap(),
            at: format!("policy.categories[{}].protobuf[{j}]", c.0),
        })
        .collect()
}

struct Fixture {
    schema: Schema,
    tables: ProtoTables,
    coarsen: Vec<Option<CoarsenSpec>>,
}

fn fixture_with(list: &[(&str, CategoryIdx)]) -> Fixture {
    let schema = demo_schema();
    let tables = ProtoTables::compile(&schema, &selectors(list)).unwrap();
    let mut coarsen = vec![None; 9];
    coarsen[GPS.position()] = Some(CoarsenSpec::GridDegrees(0.01));
    coarsen[BIRTH.position()] = Some(CoarsenSpec::AgeBandYears(10));
    coarsen[ADDRESS.position()] = Some(CoarsenSpec::TruncateAfter(vec!["区".into()]));
    Fixture {
        schema,
        tables,
        coarsen,
    }
}

fn fixture() -> Fixture {
    fixture_with(SELECTORS)
}

fn set(cats: &[CategoryIdx]) -> CategorySet {
    let mut s = CategorySet::EMPTY;
    for c in cats {
        s.insert(*c);
    }
    s
}

impl Fixture {
    fn rules<'a>(
        &'a self,
        forbidden: &[CategoryIdx],
        actions: &'a [(CategoryIdx, FieldAction)],
    ) -> ProtoRules<'a> {
        ProtoRules {
            schema: &self.schema,
            tables: &self.tables,
            forbidden: set(forbidden),
            actions,
            coarsen: &self.coarsen,
            key: Some(KEY),
            today: TODAY,
            record_paths: true,
        }
    }

    fn run(
        &self,
        message: &str,
        input: &[u8],
        forbidden: &[CategoryIdx],
        actions: &[(CategoryIdx, FieldAction)],
    ) -> Result<(BodyOutcome, BodyReport), ProtoError> {
        let rules = self.rules(forbidden, actions);
        let with = rewrite_message(input, msg(&self.schema, message), &rules);
        let without = rewrite_message(
            input,
            msg(&self.schema, message),
            &ProtoRules {
                record_paths: false,
                ..rules
            },
        );
        assert_eq!(
            with.as_ref().map(|(o, _)| o),
            without.as_ref().map(|(o, _)| o),
            "recording paths changes nothing"
        );
        with
    }

    /// The output bytes (the input when unchanged).
    fn out(&self, message: &str, input: &[u8], forbidden: &[CategoryIdx]) -> Vec<u8> {
        self.out_with(message, input, forbidden, &[])
    }

    fn out_with(
        &self,
        message: &str,
        input: &[u8],
        forbidden: &[CategoryIdx],
        actions: &[(CategoryIdx, FieldAction)],
    ) -> Vec<u8> {
        match self.run(message, input, forbidden, actions).unwrap().0 {
            BodyOutcome::Unchanged => input.to_vec(),
            BodyOutcome::Rewritten(b) => b,
            BodyOutcome::Blocked(c) => panic!("blocked on {c:?}"),
        }
    }
}

const PROFILE: &str = "saitama.v1.Profile";

// ---- the walker ------------------------------------------------------------------------

#[test]
fn a_forbidden_field_goes_and_every_other_byte_stays() {
    let f = fixture();
    let input = cat(&[s(1, "u-1"), s(7, "a@example.jp"), s(16, "hello")]);
    assert_eq!(
        f.out(PROFILE, &input, &[EMAIL]),
        cat(&[s(1, "u-1"), s(16, "hello")])
    );
}

#[test]
fn every_occurrence_goes_whatever_the_field_order() {
    let f = fixture();
    let input = cat(&[
        s(7, "first@x"),
        s(16, "n"),
        s(1, "u-1"),
        s(7, "second@x"),
        s(2, "name"),
        s(7, "third@x"),
    ]);
    let (outcome, report) = f.run(PROFILE, &input, &[EMAIL], &[]).unwrap();
    assert_eq!(
        outcome,
        BodyOutcome::Rewritten(cat(&[s(16, "n"), s(1, "u-1"), s(2, "name")]))
    );
    assert_eq!(report.removed, 3);
}

#[test]
fn nothing_forbidden_present_leaves_the_message_unchanged() {
    let f = fixture();
    let input = cat(&[s(1, "u-1"), s(16, "hello")]);
    let (outcome, report) = f.run(PROFILE, &input, &[EMAIL, GPS], &[]).unwrap();
    assert_eq!(outcome, BodyOutcome::Unchanged);
    assert_eq!(report, BodyReport::default());
    let with_email = cat(&[s(7, "a@x")]);
    assert_eq!(
        f.run(PROFILE, &with_email, &[], &[]).unwrap().0,
        BodyOutcome::Unchanged,
        "allowed categories pass"
    );
}

#[test]
fn unknown_fields_are_kept_byte_for_byte() {
    let f = fixture();
    // Field 99 varint written with a padded (non-minimal) varint, an unknown length-
    // delimited field, unknown fixed32 and fixed64, and an unknown field inside a nested
    // message that changes.
    let padded = cat(&[tag(99, 0), vec![0x85, 0x80, 0x00]]);
    let fixed32 = cat(&[tag(101, 5), vec![1, 2, 3, 4]]);
    let fixed64 = cat(&[tag(102, 1), vec![1, 2, 3, 4, 5, 6, 7, 8]]);
    let tx = cat(&[transaction(1, "m"), s(77, "unknown-in-tx")]);
    let input = cat(&[
        padded.clone(),
        s(100, "opaque"),
        s(7, "a@x"),
        fixed32.clone(),
        fixed64.clone(),
        ld(14, &tx),
    ]);
    let expected_tx = cat(&[
        s(1, "tx-1"),
        s(2, "2026-01-02"),
        int(3, 101),
        s(5, "food"),
        s(77, "unknown-in-tx"),
    ]);
    assert_eq!(
        f.out(PROFILE, &input, &[EMAIL, MERCHANT]),
        cat(&[
            padded,
            s(100, "opaque"),
            fixed32,
            fixed64,
            ld(14, &expected_tx)
        ])
    );
}

#[test]
fn packed_fields_pass_unchanged_and_a_selected_repeated_field_goes_whole() {
    let f = fixture();
    let mut packed = Vec::new();
    for x in [35.1f64, 35.2, 35.3] {
        packed.extend_from_slice(&x.to_le_bytes());
    }
    let input = cat(&[
        s(17, "log-1"),
        ld(21, &packed),
        s(17, "log-2"),
        dbl(21, 35.4),
        s(17, "log-3"),
    ]);
    let (outcome, report) = f.run(PROFILE, &input, &[USAGE], &[]).unwrap();
    assert_eq!(
        outcome,
        BodyOutcome::Rewritten(cat(&[ld(21, &packed), dbl(21, 35.4)]))
    );
    let paths: Vec<&str> = report.fields.iter().map(|h| h.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "saitama.v1.Profile.usage_log[0]",
            "saitama.v1.Profile.usage_log[1]",
            "saitama.v1.Profile.usage_log[2]"
        ]
    );
}

#[test]
fn nested_messages_that_change_get_new_lengths_and_others_are_copied_as_they_were() {
    let f = fixture();
    // The device message's length is written non-minimally (two bytes for 9): re-encoding
    // it would show.
    let device = s(3, "pixel-9");
    let odd_device = cat(&[tag(20, 2), vec![0x80 | device.len() as u8, 0x00], device]);
    let input = cat(&[
        s(1, "u-1"),
        ld(14, &transaction(1, "merchant-a")),
        odd_device.clone(),
        ld(14, &transaction(2, "merchant-b")),
    ]);
    let without = |i: u64| {
        cat(&[
            s(1, &format!("tx-{i}")),
            s(2, "2026-01-02"),
            int(3, 100 + i),
            s(5, "food"),
        ])
    };
    let (outcome, report) = f.run(PROFILE, &input, &[MERCHANT], &[]).unwrap();
    assert_eq!(
        outcome,
        BodyOutcome::Rewritten(cat(&[
            s(1, "u-1"),
            ld(14, &without(1)),
            odd_device,
            ld(14, &without(2)),
        ]))
    );
    let paths: Vec<&str> = report.fields.iter().map(|h| h.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "saitama.v1.Profile.history[0].merchant",
            "saitama.v1.Profile.history[1].merchant"
        ]
    );
    assert_eq!(report.fields[0].category, Some(MERCHANT));
}

#[test]
fn a_length_prefix_shrinks_when_its_varint_gets_shorter_and_grows_when_longer() {
    let f = fixture();
    // A transaction of 130 bytes (2-byte length) that drops under 128 without its merchant.
    let long = "m".repeat(110);
    let tx = transaction(1, &long);
    assert!(tx.len() >= 128);
    let input = cat(&[ld(14, &tx), s(16, "after")]);
    let expected_tx = cat(&[s(1, "tx-1"), s(2, "2026-01-02"), int(3, 101), s(5, "food")]);
    assert!(expected_tx.len() < 128);
    assert_eq!(
        f.out(PROFILE, &input, &[MERCHANT]),
        cat(&[ld(14, &expected_tx), s(16, "after")])
    );
    // A device of 120 bytes whose short id becomes a 35-byte pseudonym: over 127.
    let device = cat(&[s(1, "d1"), s(3, &"x".repeat(112))]);
    assert!(device.len() < 128);
    let input = cat(&[ld(20, &device), s(16, "after")]);
    let ps = pseudonym(KEY, b"d1").unwrap();
    let expected = cat(&[s(1, &ps), s(3, &"x".repeat(112))]);
    assert!(expected.len() >= 128);
    assert_eq!(
        f.out_with(
            PROFILE,
            &input,
            &[DEVICE],
            &[(DEVICE, FieldAction::Pseudonymise)]
        ),
        cat(&[ld(20, &expected), s(16, "after")])
    );
}

#[test]
fn map_values_are_reached_and_a_selector_on_the_map_takes_it_whole() {
    let f = fixture();
    let entry = |k: &str, v: &str| cat(&[s(1, k), s(2, v)]);
    let input = cat(&[
        ld(15, &entry("k1", "secret-1")),
        s(16, "n"),
        ld(15, &entry("k2", "secret-2")),
    ]);
    assert_eq!(
        f.out(PROFILE, &input, &[ATTRS]),
        cat(&[ld(15, &s(1, "k1")), s(16, "n"), ld(15, &s(1, "k2"))])
    );
    let whole = fixture_with(&[("saitama.v1.Profile.attributes", ATTRS)]);
    assert_eq!(whole.out(PROFILE, &input, &[ATTRS]), s(16, "n"));
}

#[test]
fn any_depth_selectors_reach_repeated_and_nested_messages() {
    let f = fixture();
    let tx = cat(&[transaction(1, "m"), ld(6, &location(35.8617, 139.6455))]);
    let input = cat(&[
        ld(10, &location(1.0, 2.0)),
        ld(14, &tx),
        ld(20, &s(1, "dev-1")),
    ]);
    assert_eq!(
        f.out(PROFILE, &input, &[GPS, DEVICE]),
        cat(&[ld(14, &transaction(1, "m")), ld(20, &[])])
    );
}

#[test]
fn a_position_message_is_coarsened_to_the_grid_and_removed_for_a_geohash() {
    let mut f = fixture();
    let actions = [(GPS, FieldAction::Coarsen)];
    let input = cat(&[
        s(1, "u"),
        ld(10, &cat(&[location(35.8617, 139.6455), s(9, "extra")])),
    ]);
    let (outcome, report) = f.run(PROFILE, &input, &[GPS], &actions).unwrap();
    assert_eq!(
        outcome,
        BodyOutcome::Rewritten(cat(&[s(1, "u"), ld(10, &location(35.86, 139.65))])),
        "coordinates rounded, fields that are no coordinate dropped"
    );
    assert_eq!(report.transformed, 1);
    assert_eq!(report.fields[0].action, HitAction::Coarsened);
    f.coarsen[GPS.position()] = Some(CoarsenSpec::GeohashPrecision(5));
    assert_eq!(
        f.out_with(PROFILE, &input, &[GPS], &actions),
        s(1, "u"),
        "a geohash does not fit a message field"
    );
}

#[test]
fn coordinates_strings_dates_and_addresses_use_the_json_transforms() {
    let f = fixture_with(&[
        ("..lat", GPS),
        ("..lng", GPS),
        ("..wifi_bssid", GPS),
        ("..recent_lat", GPS),
        ("..birth_date", BIRTH),
        ("..address", ADDRESS),
    ]);
    let actions = [
        (GPS, FieldAction::Coarsen),
        (BIRTH, FieldAction::Coarsen),
        (ADDRESS, FieldAction::Coarsen),
    ];
    let mut packed = Vec::new();
    for x in [35.8617f64, 139.6455] {
        packed.extend_from_slice(&x.to_le_bytes());
    }
    let mut rounded = Vec::new();
    for x in [35.86f64, 139.65] {
        rounded.extend_from_slice(&x.to_le_bytes());
    }
    let input = cat(&[
        ld(10, &location(35.8617, 139.6455)),
        s(11, "35.8617, 139.6455"),
        s(3, "1990-04-01"),
        s(5, "埼玉県さいたま市浦和区高砂3-1-1"),
        ld(21, &packed),
    ]);
    assert_eq!(
        f.out_with(PROFILE, &input, &[GPS, BIRTH, ADDRESS], &actions),
        cat(&[
            ld(10, &location(35.86, 139.65)),
            s(11, "35.86,139.65"),
            s(3, "30-39"),
            s(5, "埼玉県さいたま市浦和区"),
            ld(21, &rounded),
        ])
    );
    // A value the rule cannot coarsen is removed.
    let bad = cat(&[s(11, "somewhere"), s(3, "not a date"), s(16, "kept")]);
    assert_eq!(
        f.out_with(PROFILE, &bad, &[GPS, BIRTH], &actions),
        s(16, "kept")
    );
}

#[test]
fn identifiers_get_the_json_pseudonym_and_other_types_are_removed() {
    let f = fixture_with(&[("..device_id", DEVICE), ("..amount", AMOUNT)]);
    let actions = [
        (DEVICE, FieldAction::Pseudonymise),
        (AMOUNT, FieldAction::Pseudonymise),
    ];
    let input = cat(&[s(8, "dev-7f3a9c"), ld(14, &transaction(1, "m"))]);
    let ps = pseudonym(KEY, b"dev-7f3a9c").unwrap();
    let tx_without_amount = cat(&[s(1, "tx-1"), s(2, "2026-01-02"), s(4, "m"), s(5, "food")]);
    let (outcome, report) = f.run(PROFILE, &input, &[DEVICE, AMOUNT], &actions).unwrap();
    assert_eq!(
        outcome,
        BodyOutcome::Rewritten(cat(&[s(8, &ps), ld(14, &tx_without_amount)]))
    );
    assert_eq!((report.transformed, report.removed), (1, 1));
    // The same pseudonym as a JSON body gets.
    let json = crate::body::transform::pseudonymise(KEY, br#""dev-7f3a9c""#).unwrap();
    assert_eq!(json, format!("\"{ps}\"").into_bytes());
    // Without a key: removed.
    let rules = ProtoRules {
        key: None,
        ..f.rules(&[DEVICE], &actions)
    };
    let (outcome, _) = rewrite_message(&input, msg(&f.schema, PROFILE), &rules).unwrap();
    assert_eq!(
        outcome,
        BodyOutcome::Rewritten(ld(14, &transaction(1, "m")))
    );
}

#[test]
fn a_block_category_present_blocks_and_absent_does_not() {
    let f = fixture();
    let actions = [(MERCHANT, FieldAction::Block)];
    let input = cat(&[s(7, "a@x"), ld(14, &transaction(1, "m"))]);
    let (outcome, report) = f
        .run(PROFILE, &input, &[EMAIL, MERCHANT], &actions)
        .unwrap();
    assert_eq!(outcome, BodyOutcome::Blocked(MERCHANT));
    assert_eq!(
        report.fields.last().map(|h| h.action),
        Some(HitAction::Blocked)
    );
    let no_merchant = cat(&[s(7, "a@x"), s(16, "n")]);
    assert_eq!(
        f.out_with(PROFILE, &no_merchant, &[EMAIL, MERCHANT], &actions),
        s(16, "n")
    );
}

#[test]
fn field_paths_are_bounded() {
    let f = fixture();
    let input: Vec<u8> = (0..MAX_FIELD_HITS + 10)
        .flat_map(|i| s(7, &format!("{i}@x")))
        .collect();
    let (_, report) = f.run(PROFILE, &input, &[EMAIL], &[]).unwrap();
    assert_eq!(report.fields.len(), MAX_FIELD_HITS);
    assert!(report.fields_truncated);
    assert_eq!(report.removed, MAX_FIELD_HITS + 10);
    assert!(report
        .fields
        .iter()
        .all(|h| h.path == "saitama.v1.Profile.email"));
}

#[test]
fn malformed_wire_is_an_error_never_a_panic_or_a_pass() {
    let f = fixture();
    type Check = fn(&ProtoError) -> bool;
    let cases: Vec<(Vec<u8>, Check)> = vec![
        (vec![0x80; 11], |e| matches!(e, ProtoError::Varint(0))),
        (vec![0xff, 0xff], |e| matches!(e, ProtoError::Truncated(_))),
        (cat(&[tag(7, 2), vec![10], b"short".to_vec()]), |e| {
            matches!(e, ProtoError::Truncated(1))
        }),
        (cat(&[tag(7, 2), vec![0xff, 0xff, 0xff, 0xff, 0x0f]]), |e| {
            matches!(e, ProtoError::Truncated(_))
        }),
        (vec![0x00, 0x01], |e| matches!(e, ProtoError::FieldZero(0))),
        (tag(7, 6), |e| matches!(e, ProtoError::WireType(0))),
        (tag(7, 7), |e| matches!(e, ProtoError::WireType(0))),
        (tag(7, 3), |e| matches!(e, ProtoError::Group(0))),
        (cat(&[s(1, "u"), tag(99, 4)]), |e| {
            matches!(e, ProtoError::Group(3))
        }),
        (cat(&[tag(3, 1), vec![1, 2, 3]]), |e| {
            matches!(e, ProtoError::Truncated(_))
        }),
        (varint(1u64 << 35), |e| {
            matches!(e, ProtoError::FieldNumber(0))
        }),
        // Inside a nested message the walker enters: the nested length bounds the read.
        (ld(14, &cat(&[tag(4, 2), vec![50]])), |e| {
            matches!(e, ProtoError::Truncated(_))
        }),
    ];
    for (input, expected) in cases {
        let got = f.run(PROFILE, &input, &[EMAIL, MERCHANT], &[]);
        match got {
            Err(e) => assert!(expected(&e), "{input:?}: {e:?}"),
            Ok(o) => panic!("{input:?} was accepted: {o:?}"),
        }
    }
    // Errors are lowercase sentences without message bytes.
    assert_eq!(
        ProtoError::Truncated(4).to_string(),
        "value past the end of its message at byte 4"
    );
}

fn field(name: &str, number: i32, ty: Type, type_name: Option<&str>) -> FieldDescriptorProto {
    FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        label: Some(Label::Optional as i32),
        r#type: Some(ty as i32),
        type_name: type_name.map(String::from),
        ..Default::default()
    }
}

/// `t.Node { Node child = 1; string email = 2; Node opaque = 3; int32 n = 4; }`, with
/// `..email` selected for the category `EMAIL` except in `opaque`, which is another type.
fn recursive_schema() -> (Schema, ProtoTables) {
    let set = FileDescriptorSet {
        file: vec![FileDescriptorProto {
            name: Some("t.proto".into()),
            package: Some("t".into()),
            syntax: Some("proto3".into()),
            message_type: vec![
                DescriptorProto {
                    name: Some("Node".into()),
                    field: vec![
                        field("child", 1, Type::Message, Some(".t.Node")),
                        field("email", 2, Type::String, None),
                        field("opaque", 3, Type::Message, Some(".t.Leaf")),
                    ],
                    ..Default::default()
                },
                DescriptorProto {
                    name: Some("Leaf".into()),
                    field: vec![field("n", 1, Type::Int32, None)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
    };
    let schema = Schema::decode(&set.encode_to_vec(), "grpc.descriptor_set").unwrap();
    let tables = ProtoTables::compile(&schema, &selectors(&[("..email", EMAIL)])).unwrap();
    (schema, tables)
}

fn nested(depth: usize, leaf: &[u8]) -> Vec<u8> {
    let mut m = leaf.to_vec();
    for _ in 0..depth {
        m = ld(1, &m);
    }
    m
}

#[test]
fn nesting_deeper_than_the_bound_is_an_error_and_opaque_subtrees_are_not_read() {
    let (schema, tables) = recursive_schema();
    let node = schema.message_idx("t.Node").unwrap();
    let rules = ProtoRules {
        schema: &schema,
        tables: &tables,
        forbidden: set(&[EMAIL]),
        actions: &[],
        coarsen: &[],
        key: None,
        today: TODAY,
        record_paths: false,
    };
    let ok = nested(MAX_DEPTH, &s(2, "deep@x"));
    let (outcome, report) = rewrite_message(&ok, node, &rules).unwrap();
    assert_eq!(outcome, BodyOutcome::Rewritten(nested(MAX_DEPTH, &[])));
    assert_eq!(report.removed, 1);
    let too_deep = nested(MAX_DEPTH + 1, &s(2, "deep@x"));
    assert_eq!(
        rewrite_message(&too_deep, node, &rules).unwrap_err(),
        ProtoError::TooDeep
    );
    // `opaque` (a Leaf) cannot hold an e-mail: it is copied unread, garbage included.
    let input = cat(&[ld(3, &[0xff, 0xff]), s(2, "a@x")]);
    let (outcome, _) = rewrite_message(&input, node, &rules).unwrap();
    assert_eq!(outcome, BodyOutcome::Rewritten(ld(3, &[0xff, 0xff])));
}

// ---- schema and selectors --------------------------------------------------------

#[test]
fn the_demo_schema_has_its_messages_methods_and_map_entry() {
    let schema = demo_schema();
    let profile = schema.message(msg(&schema, PROFILE)).unwrap();
    let email = profile.field(7).unwrap();
    assert_eq!(
        (email.name.as_str(), email.kind),
        ("email", FieldKind::String)
    );
    let history = profile.field_named("history").unwrap();
    assert!(history.repeated && !history.packed);
    assert_eq!(
        history.kind,
        FieldKind::Message(msg(&schema, "saitama.v1.Transaction"))
    );
    assert!(profile.field_named("recent_lat").unwrap().packed);
    let device = profile.field_named("device_id").unwrap();
    assert_eq!(device.json_name, "deviceId");
    let entry = schema
        .message(msg(&schema, "saitama.v1.Profile.AttributesEntry"))
        .unwrap();
    assert!(entry.map_entry);
    let get = schema
        .method("/saitama.v1.ProfileService/GetProfile")
        .unwrap();
    assert_eq!(get.input, msg(&schema, "saitama.v1.ProfileRequest"));
    assert_eq!(get.output, msg(&schema, PROFILE));
    let list = schema
        .method("/saitama.v1.ProfileService/ListHistory")
        .unwrap();
    assert!(list.server_streaming && !list.client_streaming);
    assert!(schema.method("/saitama.v1.ProfileService/Nope").is_none());
    assert_eq!(schema.method_count(), 3);
}

#[test]
fn tables_know_what_can_occur_below_each_message() {
    let f = fixture();
    let request = msg(&f.schema, "saitama.v1.ProfileRequest");
    let profile = msg(&f.schema, PROFILE);
    let tx = msg(&f.schema, "saitama.v1.Transaction");
    assert!(f.tables.reach(request).is_empty());
    assert!(f.tables.reach(profile).contains(MERCHANT));
    assert!(f.tables.reach(tx).contains(MERCHANT) && !f.tables.reach(tx).contains(EMAIL));
    let history = f.tables.message(profile).unwrap().get(14).unwrap();
    assert!(history.cats.is_empty() && history.any.contains(AMOUNT));
    assert!(f.tables.message(profile).unwrap().get(999).is_none());
}

#[test]
fn any_depth_selectors_match_names_case_folded_and_json_names() {
    let f = fixture_with(&[("..DeviceId", DEVICE)]);
    let input = cat(&[s(8, "d"), ld(20, &s(1, "d2"))]);
    assert_eq!(f.out(PROFILE, &input, &[DEVICE]), ld(20, &[]));
}

#[test]
fn a_qualified_selector_must_name_a_message_and_field_of_the_descriptors() {
    let schema = demo_schema();
    for (text, message) in [
        ("saitama.v1.Profle.email", "no message `saitama.v1.Profle`"),
        ("saitama.v1.Profile.emial", "has no field `emial`"),
    ] {
        let err = ProtoTables::compile(&schema, &selectors(&[(text, EMAIL)])).unwrap_err();
        assert_eq!(err.path(), "policy.categories[0].protobuf[0]");
        assert!(err.to_string().contains(message), "{err}");
    }
    // Without descriptors they are accepted: nothing is read until a set is configured.
    let none = ProtoTables::compile(
        &Schema::default(),
        &selectors(&[("saitama.v1.Profle.email", EMAIL)]),
    )
    .unwrap();
    assert!(none.categories.is_empty());
}

#[test]
fn broken_descriptor_sets_are_errors_at_the_field() {
    assert_eq!(
        Schema::decode(b"\xff\xff", "grpc.descriptor_set")
            .unwrap_err()
            .path(),
        "grpc.descriptor_set"
    );
    let set = FileDescriptorSet {
        file: vec![FileDescriptorProto {
            name: Some("b.proto".into()),
            package: Some("b".into()),
            message_type: vec![DescriptorProto {
                name: Some("M".into()),
                field: vec![field("x", 1, Type::Message, Some(".b.Missing"))],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let err = Schema::decode(&set.encode_to_vec(), "grpc.descriptor_set").unwrap_err();
    assert!(
        err.to_string().contains("unknown type `.b.Missing`"),
        "{err}"
    );
    let mut twice = set.clone();
    twice.file[0].message_type[0].field = vec![
        field("a", 1, Type::Int32, None),
        field("b", 1, Type::Int32, None),
    ];
    let err = Schema::decode(&twice.encode_to_vec(), "grpc.descriptor_set").unwrap_err();
    assert!(
        err.to_string().contains("field number 1 is used twice"),
        "{err}"
    );
}

// ---- framing ------------------------------------------------------------------------

fn profile_with_email(i: usize) -> Vec<u8> {
    cat(&[s(1, &format!("u-{i}")), s(7, "a@example.jp"), s(16, "note")])
}

fn profile_without_email(i: usize) -> Vec<u8> {
    cat(&[s(1, &format!("u-{i}")), s(16, "note")])
}

#[test]
fn several_messages_in_one_chunk_are_each_rewritten() {
    let f = fixture();
    let rules = f.rules(&[EMAIL], &[]);
    let mut stream = GrpcStream::new(msg(&f.schema, PROFILE), Framing::Grpc, 1024);
    let input: Vec<u8> = (0..3)
        .flat_map(|i| frame(0, &profile_with_email(i)))
        .collect();
    let out = stream.push(&rules, &input).unwrap();
    let expected: Vec<u8> = (0..3)
        .flat_map(|i| frame(0, &profile_without_email(i)))
        .collect();
    assert_eq!(out, expected);
    assert_eq!((stream.messages(), stream.rewritten()), (3, 3));
    assert_eq!(stream.report().removed, 3);
    assert!(stream.finish().is_ok());
}

#[test]
fn a_message_split_at_every_byte_boundary_gives_the_same_output() {
    let f = fixture();
    let rules = f.rules(&[EMAIL], &[]);
    let input = cat(&[
        frame(0, &profile_with_email(1)),
        frame(0, &profile_with_email(2)),
    ]);
    let expected = cat(&[
        frame(0, &profile_without_email(1)),
        frame(0, &profile_without_email(2)),
    ]);
    for a in 0..=input.len() {
        for b in a..=input.len() {
            let mut stream = GrpcStream::new(msg(&f.schema, PROFILE), Framing::Grpc, 1024);
            let mut out = Vec::new();
            for chunk in [&input[..a], &input[a..b], &input[b..]] {
                out.extend(stream.push(&rules, chunk).unwrap());
                assert!(stream.buffered() < input.len(), "never the whole stream");
            }
            assert!(stream.finish().is_ok(), "split at {a}, {b}");
            assert_eq!(out, expected, "split at {a}, {b}");
        }
    }
    // One byte at a time: output only when a frame completes.
    let mut stream = GrpcStream::new(msg(&f.schema, PROFILE), Framing::Grpc, 1024);
    let mut out = Vec::new();
    let first_end = frame(0, &profile_with_email(1)).len();
    for (i, byte) in input.iter().enumerate() {
        let got = stream.push(&rules, std::slice::from_ref(byte)).unwrap();
        assert_eq!(!got.is_empty(), i + 1 == first_end || i + 1 == input.len());
        out.extend(got);
    }
    assert_eq!(out, expected);
}

#[test]
fn a_compressed_message_is_refused_and_the_refusal_sticks() {
    let f = fixture();
    let rules = f.rules(&[EMAIL], &[]);
    let mut stream = GrpcStream::new(msg(&f.schema, PROFILE), Framing::Grpc, 1024);
    let input = cat(&[frame(0, &profile_with_email(1)), frame(1, b"gzipped")]);
    assert_eq!(stream.push(&rules, &input), Err(GrpcRefusal::Compressed));
    assert_eq!(
        stream.push(&rules, &frame(0, &profile_with_email(2))),
        Err(GrpcRefusal::Compressed)
    );
    assert_eq!(stream.finish(), Err(GrpcRefusal::Compressed));
    assert_eq!(
        GrpcRefusal::Compressed.reason(),
        crate::Reason::BodyEncodingUnsupported
    );
}

#[test]
fn a_stream_ending_inside_a_message_is_refused_as_truncated() {
    let f = fixture();
    let rules = f.rules(&[EMAIL], &[]);
    let whole = frame(0, &profile_with_email(1));
    for cut in [1, 4, 5, whole.len() - 1] {
        let mut stream = GrpcStream::new(msg(&f.schema, PROFILE), Framing::Grpc, 1024);
        assert_eq!(stream.push(&rules, &whole[..cut]), Ok(Vec::new()));
        assert_eq!(stream.finish(), Err(GrpcRefusal::Truncated), "cut at {cut}");
    }
    assert_eq!(
        GrpcRefusal::Truncated.reason(),
        crate::Reason::BodyInvalidProtobuf
    );
}

#[test]
fn a_declared_length_over_the_limit_is_refused_before_its_bytes_arrive() {
    let f = fixture();
    let rules = f.rules(&[EMAIL], &[]);
    let mut stream = GrpcStream::new(msg(&f.schema, PROFILE), Framing::Grpc, 100);
    let mut prefix = vec![0];
    prefix.extend_from_slice(&101u32.to_be_bytes());
    assert_eq!(stream.push(&rules, &prefix), Err(GrpcRefusal::TooLarge));
    let mut at_limit = GrpcStream::new(msg(&f.schema, PROFILE), Framing::Grpc, 100);
    let ok = frame(0, &s(16, &"n".repeat(97)));
    assert_eq!(ok.len(), 105);
    assert_eq!(at_limit.push(&rules, &ok), Ok(ok.clone()));
}

#[test]
fn malformed_messages_and_unknown_flags_are_refused() {
    let f = fixture();
    let rules = f.rules(&[EMAIL], &[]);
    let mut stream = GrpcStream::new(msg(&f.schema, PROFILE), Framing::Grpc, 1024);
    assert!(matches!(
        stream.push(&rules, &frame(0, &tag(7, 7))),
        Err(GrpcRefusal::Malformed(ProtoError::WireType(0)))
    ));
    for flags in [0x02, 0x80] {
        let mut stream = GrpcStream::new(msg(&f.schema, PROFILE), Framing::Grpc, 1024);
        assert_eq!(
            stream.push(&rules, &frame(flags, b"")),
            Err(GrpcRefusal::BadFlags(flags))
        );
    }
    let actions = [(EMAIL, FieldAction::Block)];
    let blocking = f.rules(&[EMAIL], &actions);
    let mut stream = GrpcStream::new(msg(&f.schema, PROFILE), Framing::Grpc, 1024);
    assert_eq!(
        stream.push(&blocking, &frame(0, &profile_with_email(1))),
        Err(GrpcRefusal::Blocked(EMAIL))
    );
    assert_eq!(
        GrpcRefusal::Blocked(EMAIL).reason(),
        crate::Reason::ForbiddenDataPresent
    );
}

#[test]
fn grpc_web_trailer_frames_pass_unchanged() {
    let f = fixture();
    let rules = f.rules(&[EMAIL], &[]);
    let mut stream = GrpcStream::new(msg(&f.schema, PROFILE), Framing::GrpcWeb, 1024);
    let trailers = frame(0x80, b"grpc-status: 0\r\nemail: a@x\r\n");
    let input = cat(&[frame(0, &profile_with_email(1)), trailers.clone()]);
    assert_eq!(
        stream.push(&rules, &input).unwrap(),
        cat(&[frame(0, &profile_without_email(1)), trailers])
    );
    assert_eq!(stream.messages(), 1);
    assert_eq!(
        stream.push(&rules, &frame(0x81, b"x")),
        Err(GrpcRefusal::Compressed)
    );
}

// ---- configuration and the host's helpers ------------------------------------------

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn config(extra: serde_json::Value) -> Result<crate::CompiledConfig, crate::ConfigError> {
    crate::compile_config(extra.to_string().as_bytes())
}

fn demo_config(unknown: &str) -> crate::CompiledConfig {
    config(serde_json::json!({
        "grpc": {"descriptor_set": b64(DEMO), "unknown_method": unknown},
        "consents": {"records": [{"subject": "u-bob", "grants": {}}]},
        "caller": {"unidentified_party": "tsunagu"}
    }))
    .unwrap()
}

fn decide(c: &crate::CompiledConfig, purpose: &str) -> crate::Decision {
    let headers: [(&str, &[u8]); 2] = [
        ("x-user-id", b"u-bob"),
        ("x-data-purpose", purpose.as_bytes()),
    ];
    c.evaluate(headers)
}

#[test]
fn the_shipped_policy_compiles_with_and_without_the_demo_descriptors() {
    let without = config(serde_json::json!({})).unwrap();
    assert!(without.grpc.schema.is_empty());
    assert!(!without.policy.protobuf.is_empty());
    let with = demo_config("block");
    let profile = msg(&with.grpc.schema, PROFILE);
    let email = with.policy.category_idx("email").unwrap();
    let amount = with.policy.category_idx("payment.amount").unwrap();
    assert!(with.grpc.tables.reach(profile).contains(email));
    assert!(with.grpc.tables.reach(profile).contains(amount));
    assert_eq!(with.grpc.unknown_method, UnknownMethod::Block);
}

#[test]
fn grpc_config_mistakes_name_the_field() {
    for (doc, path) in [
        (
            serde_json::json!({"grpc": {"descriptor_set": "not base64!"}}),
            "grpc.descriptor_set",
        ),
        (
            serde_json::json!({"grpc": {"descriptor_set": b64(b"\xff\xff")}}),
            "grpc.descriptor_set",
        ),
        (
            serde_json::json!({"grpc": {"descriptor_set": ""}}),
            "grpc.descriptor_set",
        ),
        (
            serde_json::json!({"grpc": {"unknown_method": "allow"}}),
            "grpc.unknown_method",
        ),
        (
            serde_json::json!({"grpc": {"descriptors": "x"}}),
            "grpc.descriptors",
        ),
    ] {
        let err = config(doc.clone()).unwrap_err();
        assert_eq!(err.path(), path, "{doc}: {err}");
    }
    let mut policy: serde_json::Value = serde_json::from_str(crate::DEFAULT_POLICY_JSON).unwrap();
    policy["categories"][5]["protobuf"] =
        serde_json::json!(["..email", "saitama.v1.Profile.e_mail"]);
    let err = config(
        serde_json::json!({"policy": policy.clone(), "grpc": {"descriptor_set": b64(DEMO)}}),
    )
    .unwrap_err();
    assert_eq!(err.path(), "policy.categories[5].protobuf[1]");
    assert!(
        config(serde_json::json!({"policy": policy.clone()})).is_ok(),
        "no descriptors: accepted"
    );
    policy["categories"][5]["protobuf"] = serde_json::json!(["$..email"]);
    let err = config(serde_json::json!({"policy": policy})).unwrap_err();
    assert_eq!(err.path(), "policy.categories[5].protobuf[0]");
}

#[test]
fn plans_walk_known_methods_and_refuse_unknown_ones_by_default() {
    use crate::Direction;
    let c = demo_config("block");
    let d = decide(&c, "service.improvement");
    assert_eq!(d.outcome, crate::Outcome::Redact);
    let get = "/saitama.v1.ProfileService/GetProfile";
    let profile = msg(&c.grpc.schema, PROFILE);
    assert_eq!(
        c.grpc_plan(&d, Some(get), Direction::Response),
        GrpcPlan::Walk(profile)
    );
    assert_eq!(
        c.grpc_plan(&d, Some(get), Direction::Request),
        GrpcPlan::Skip,
        "a ProfileRequest holds no category"
    );
    let unknown = GrpcPlan::Refuse(crate::Reason::GrpcMethodUnknown);
    assert_eq!(c.grpc_plan(&d, Some("/x.Y/Z"), Direction::Request), unknown);
    assert_eq!(c.grpc_plan(&d, None, Direction::Request), unknown);
    let pass = demo_config("pass");
    assert_eq!(
        pass.grpc_plan(&d, Some("/x.Y/Z"), Direction::Request),
        GrpcPlan::Skip
    );
    let without =
        config(serde_json::json!({"consents": {"records": [{"subject": "u-bob", "grants": {}}]}}))
            .unwrap();
    assert_eq!(
        without.grpc_plan(&d, Some(get), Direction::Response),
        unknown
    );
    // The walk for that decision: email removed, gps coarsened (service.improvement).
    let rules = c.proto_rules(&d, TODAY, true);
    let mut stream = c.grpc_stream(profile, Framing::Grpc);
    let body = cat(&[
        s(7, "b@example.jp"),
        ld(10, &location(35.8617, 139.6455)),
        s(16, "hi"),
    ]);
    let out = stream.push(&rules, &frame(0, &body)).unwrap();
    assert_eq!(
        out,
        frame(0, &cat(&[ld(10, &location(35.86, 139.65)), s(16, "hi")]))
    );
    let paths: Vec<&str> = stream
        .report()
        .fields
        .iter()
        .map(|h| h.path.as_str())
        .collect();
    assert_eq!(
        paths,
        ["saitama.v1.Profile.email", "saitama.v1.Profile.gps"]
    );
}

#[test]
fn content_types_and_encodings_are_read_for_grpc() {
    assert_eq!(
        grpc_content(b"application/grpc"),
        Some(GrpcContent::Proto(Framing::Grpc))
    );
    assert_eq!(
        grpc_content(b"Application/GRPC+proto; charset=x"),
        Some(GrpcContent::Proto(Framing::Grpc))
    );
    assert_eq!(
        grpc_content(b"application/grpc-web+proto"),
        Some(GrpcContent::Proto(Framing::GrpcWeb))
    );
    assert_eq!(
        grpc_content(b"application/grpc+json"),
        Some(GrpcContent::Unsupported)
    );
    assert_eq!(
        grpc_content(b"application/grpc-web-text"),
        Some(GrpcContent::Unsupported)
    );
    assert_eq!(grpc_content(b"application/json"), None);
    assert!(grpc_encoding_readable(None));
    assert!(grpc_encoding_readable(Some(b"identity")));
    assert!(!grpc_encoding_readable(Some(b"gzip")));
    assert_eq!(
        crate::Reason::GrpcMethodUnknown.grpc_status(crate::Direction::Request),
        7
    );
    assert_eq!(
        crate::Reason::BodyInvalidProtobuf.grpc_status(crate::Direction::Request),
        3
    );
    assert_eq!(
        crate::Reason::BodyInvalidProtobuf.grpc_status(crate::Direction::Response),
        13
    );
    assert_eq!(
        crate::Reason::BodyTooLarge.grpc_status(crate::Direction::Response),
        8
    );
}
