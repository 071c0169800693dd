//! Property tests of the gRPC walker on random `saitama.v1.Profile` messages of the demo
//! schema (fields in any order, repeated, nested, maps, unknown fields): with the
//! forbidden categories removed, the output decodes (prost-reflect) to the input minus
//! exactly the forbidden fields; no planted value of a forbidden field is left in the
//! output bytes and every other one is; framing and chunking change nothing; and no
//! input makes it panic.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod proto_support;

use consent_core::body::BodyOutcome;
use consent_core::grpc::demo::wire::frame;
use consent_core::grpc::demo::{demo_config, removing};
use consent_core::grpc::{rewrite_message, Framing, GrpcStream, ProtoRules};
use consent_core::policy::CategorySet;
use consent_core::{CompiledConfig, DEFAULT_POLICY_JSON};
use proptest::prelude::*;
use prost_reflect::DynamicMessage;
use proto_support::{contains, decoded, plan, pool, profile, Builder, FieldCategories, Plan};

fn config() -> &'static CompiledConfig {
    // The JSON selectors' DFA is built lazily (a RefCell): one configuration per thread.
    thread_local! {
        static C: &'static CompiledConfig = Box::leak(Box::new(demo_config().unwrap()));
    }
    C.with(|c| *c)
}

fn forbidden_ids(mask: u32) -> (CategorySet, Vec<String>) {
    let policy = &config().policy;
    let mut set = CategorySet::EMPTY;
    let mut ids = Vec::new();
    for (i, c) in policy.categories.iter().enumerate() {
        if mask & (1 << (i % 32)) != 0 {
            set.insert(policy.category_idx(&c.id).unwrap());
            ids.push(c.id.clone());
        }
    }
    (set, ids)
}

fn rules(forbidden: CategorySet) -> ProtoRules<'static> {
    ProtoRules {
        forbidden,
        ..removing(config(), &[], true)
    }
}

fn build(plan: &Plan) -> (Vec<u8>, Builder) {
    let pool = pool();
    let mut b = Builder::default();
    let bytes = b.message(&profile(&pool), plan, &[]);
    (bytes, b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn removing_gives_the_input_minus_exactly_the_forbidden_fields(plan in plan(), mask in any::<u32>()) {
        let pool = pool();
        let desc = profile(&pool);
        let policy: serde_json::Value = serde_json::from_str(DEFAULT_POLICY_JSON).unwrap();
        let cats = FieldCategories::new(&pool, &policy);
        let (input, built) = build(&plan);
        let (forbidden, ids) = forbidden_ids(mask);
        let message = config().grpc.schema.message_idx("saitama.v1.Profile").unwrap();
        let (outcome, report) = rewrite_message(&input, message, &rules(forbidden)).unwrap();
        let out = match outcome {
            BodyOutcome::Unchanged => input.clone(),
            BodyOutcome::Rewritten(out) => out,
            BodyOutcome::Blocked(c) => panic!("blocked on {c:?} without a block action"),
        };
        let mut expected = DynamicMessage::decode(desc.clone(), input.as_slice()).unwrap();
        cats.strip(&mut expected, &ids);
        prop_assert_eq!(decoded(&desc, &out), expected);
        for s in &built.sentinels {
            if cats.forbidden(s, &ids) {
                prop_assert!(!contains(&out, &s.bytes), "{} leaked ({:?})", s.text, s.path);
            } else {
                prop_assert!(contains(&out, &s.bytes), "{} was lost ({:?})", s.text, s.path);
            }
        }
        prop_assert!(report.categories.difference(forbidden).is_empty());
    }

    #[test]
    fn framing_and_chunking_change_nothing(
        plans in prop::collection::vec(plan(), 1..4),
        cuts in prop::collection::vec(any::<u16>(), 0..6),
        mask in any::<u32>(),
    ) {
        let (forbidden, _) = forbidden_ids(mask);
        let r = rules(forbidden);
        let message = config().grpc.schema.message_idx("saitama.v1.Profile").unwrap();
        let mut stream_in = Vec::new();
        let mut expected = Vec::new();
        for p in &plans {
            let (bytes, _) = build(p);
            stream_in.extend(frame(0, &bytes));
            let out = match rewrite_message(&bytes, message, &r).unwrap().0 {
                BodyOutcome::Rewritten(out) => out,
                _ => bytes,
            };
            expected.extend(frame(0, &out));
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| usize::from(*c) % (stream_in.len() + 1)).collect();
        points.sort_unstable();
        let mut stream = GrpcStream::new(message, Framing::Grpc, 1 << 20);
        let mut out = Vec::new();
        let mut from = 0;
        for p in points.into_iter().chain([stream_in.len()]) {
            out.extend(stream.push(&r, &stream_in[from..p]).unwrap());
            from = p;
        }
        prop_assert!(stream.finish().is_ok());
        prop_assert_eq!(out, expected);
        prop_assert_eq!(stream.messages(), plans.len());
    }

    #[test]
    fn no_input_makes_the_walker_or_the_framing_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        mask in any::<u32>(),
    ) {
        let (forbidden, _) = forbidden_ids(mask | 1);
        let r = rules(forbidden);
        let schema = &config().grpc.schema;
        for name in ["saitama.v1.Profile", "saitama.v1.Transaction", "saitama.v1.Location"] {
            let _ = rewrite_message(&bytes, schema.message_idx(name).unwrap(), &r);
        }
        let mut stream = GrpcStream::new(schema.message_idx("saitama.v1.Profile").unwrap(), Framing::GrpcWeb, 128);
        let _ = stream.push(&r, &bytes);
        let _ = stream.finish();
    }
}
