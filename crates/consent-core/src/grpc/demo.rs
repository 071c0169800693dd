//! The demo schema (`envoy-config/grpc/saitama/v1/profile.proto`) and messages built on
//! it by hand, for tests, benches, examples and the fuzz harness (feature `reference`).

use crate::body::transform::CivilDate;
use crate::config::{compile_config, CompiledConfig};
use crate::error::ConfigError;
use crate::policy::categories::CategorySet;

use super::walk::ProtoRules;

/// The compiled demo descriptor set (`envoy-config/grpc/profile.descriptor.binpb`).
pub const DEMO_DESCRIPTOR_SET: &[u8] =
    include_bytes!("../../../../envoy-config/grpc/profile.descriptor.binpb");

/// The demo descriptor set as `grpc.descriptor_set` holds it.
pub fn demo_descriptor_base64() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(DEMO_DESCRIPTOR_SET)
}

/// The date the tests, benches and examples coarsen birth dates against.
pub const DEMO_TODAY: CivilDate = CivilDate {
    year: 2026,
    month: 11,
    day: 27,
};

/// The shipped policy with the demo descriptors (and no other setting).
pub fn demo_config() -> Result<CompiledConfig, ConfigError> {
    let doc = format!(
        r#"{{"grpc": {{"descriptor_set": "{}"}}}}"#,
        demo_descriptor_base64()
    );
    compile_config(doc.as_bytes())
}

/// Rules that remove the categories `ids` (no transforms, no pseudonym key).
pub fn removing<'c>(
    config: &'c CompiledConfig,
    ids: &[&str],
    record_paths: bool,
) -> ProtoRules<'c> {
    let mut forbidden = CategorySet::EMPTY;
    for id in ids {
        if let Some(c) = config.policy.category_idx(id) {
            forbidden.insert(c);
        }
    }
    ProtoRules {
        schema: &config.grpc.schema,
        tables: &config.grpc.tables,
        forbidden,
        actions: &[],
        coarsen: &config.policy.coarsen,
        key: None,
        today: DEMO_TODAY,
        record_paths,
    }
}

/// Hand encoding of the protobuf wire format, so that every byte is known.
pub mod wire {
    /// A varint.
    pub fn varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        out
    }

    /// A tag.
    pub fn tag(number: u32, wire: u8) -> Vec<u8> {
        varint((u64::from(number) << 3) | u64::from(wire))
    }

    /// A length-delimited field.
    pub fn ld(number: u32, content: &[u8]) -> Vec<u8> {
        let mut out = tag(number, 2);
        out.extend(varint(content.len() as u64));
        out.extend_from_slice(content);
        out
    }

    /// A string field.
    pub fn s(number: u32, text: &str) -> Vec<u8> {
        ld(number, text.as_bytes())
    }

    /// A varint field.
    pub fn int(number: u32, v: u64) -> Vec<u8> {
        let mut out = tag(number, 0);
        out.extend(varint(v));
        out
    }

    /// A double field.
    pub fn dbl(number: u32, x: f64) -> Vec<u8> {
        let mut out = tag(number, 1);
        out.extend_from_slice(&x.to_le_bytes());
        out
    }

    /// Fields one after another.
    pub fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }

    /// A gRPC frame (flags, big-endian length, payload).
    pub fn frame(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![flags];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }
}

use wire::{cat, dbl, int, ld, s};

/// `saitama.v1.Transaction` number `i`: id, date, amount, merchant, category, a `gps`
/// location and points (nine fields counting the location's two).
pub fn transaction(i: usize) -> Vec<u8> {
    cat(&[
        s(1, &format!("tx-{i:07}")),
        s(2, &format!("2026-{:02}-{:02}", 1 + i % 12, 1 + i % 28)),
        int(3, 100 + (i as u64 * 37) % 9000),
        s(4, &format!("merchant-{}", i % 97)),
        s(5, "food"),
        ld(
            6,
            &cat(&[
                dbl(1, 35.8 + (i % 100) as f64 * 0.0011),
                dbl(2, 139.6 + (i % 50) as f64 * 0.0013),
            ]),
        ),
        int(7, (i % 5) as u64),
    ])
}

/// A `saitama.v1.Profile` of at least `target` bytes: a user id, a note and a payment
/// history. With `payment.merchant` forbidden about 11% of its fields go.
pub fn history_profile(target: usize) -> Vec<u8> {
    let mut out = cat(&[s(1, "u-bench"), s(16, "JPY")]);
    let mut i = 0;
    while out.len() < target {
        out.extend(ld(14, &transaction(i)));
        i += 1;
    }
    out
}
