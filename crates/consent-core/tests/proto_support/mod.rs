//! Random `saitama.v1.Profile` messages of the demo schema with planted sentinels, and an
//! oracle for them independent of the walker: prost-reflect reads the schema and decodes
//! messages, and the policy's protobuf selectors are matched on field descriptors here
//! (`..name` on the name or JSON name, ASCII case folded; qualified on the full name).
//! Shared by `grpc_properties.rs` and the protobuf section of `leak_oracle.rs`.
#![allow(dead_code)]

use std::collections::BTreeMap;

use consent_core::grpc::demo::wire::{dbl, int, ld, s, tag, varint};
use consent_core::grpc::demo::DEMO_DESCRIPTOR_SET;
use proptest::prelude::*;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value,
};

/// The demo schema as prost-reflect reads it.
pub fn pool() -> DescriptorPool {
    DescriptorPool::decode(DEMO_DESCRIPTOR_SET).expect("demo descriptors")
}

/// `saitama.v1.Profile`.
pub fn profile(pool: &DescriptorPool) -> MessageDescriptor {
    pool.get_message_by_name("saitama.v1.Profile")
        .expect("Profile")
}

/// A planted value: its bytes as they appear on the wire, and the fields from the root
/// down to it (full names), to find its categories.
#[derive(Debug, Clone)]
pub struct Sentinel {
    pub bytes: Vec<u8>,
    pub text: String,
    pub path: Vec<String>,
}

/// What to build: per message, choices of (field position, repeat count, shape seed).
#[derive(Debug, Clone)]
pub struct Plan {
    pub fields: Vec<(u8, u8, u16)>,
    pub nested: Vec<Plan>,
    pub unknown: Vec<u16>,
    pub shuffle: u64,
}

pub fn plan() -> impl Strategy<Value = Plan> {
    let leaf = (
        prop::collection::vec((any::<u8>(), 1u8..3, any::<u16>()), 0..8),
        prop::collection::vec(any::<u16>(), 0..2),
        any::<u64>(),
    )
        .prop_map(|(fields, unknown, shuffle)| Plan {
            fields,
            nested: Vec::new(),
            unknown,
            shuffle,
        });
    leaf.prop_recursive(3, 24, 4, |inner| {
        (
            prop::collection::vec((any::<u8>(), 1u8..3, any::<u16>()), 0..14),
            prop::collection::vec(inner, 0..4),
            prop::collection::vec(any::<u16>(), 0..3),
            any::<u64>(),
        )
            .prop_map(|(fields, nested, unknown, shuffle)| Plan {
                fields,
                nested,
                unknown,
                shuffle,
            })
    })
}

/// Builds one message from a plan: every field encoded on its own (so repeated and
/// singular fields may occur several times, in any order), the pieces shuffled.
pub struct Builder {
    next: u32,
    pub sentinels: Vec<Sentinel>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            next: 1,
            sentinels: Vec::new(),
        }
    }
}

impl Builder {
    fn mark(&mut self) -> u32 {
        self.next += 1;
        self.next
    }

    fn plant(&mut self, bytes: Vec<u8>, text: String, path: &[String]) {
        self.sentinels.push(Sentinel {
            bytes,
            text,
            path: path.to_vec(),
        });
    }

    pub fn message(&mut self, desc: &MessageDescriptor, plan: &Plan, path: &[String]) -> Vec<u8> {
        let fields: Vec<FieldDescriptor> = desc.fields().collect();
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        let mut nested = plan.nested.iter().cycle();
        for &(choice, repeats, seed) in &plan.fields {
            let Some(field) = fields.get(usize::from(choice) % fields.len().max(1)) else {
                continue;
            };
            let mut here = path.to_vec();
            here.push(field.full_name().to_string());
            for _ in 0..repeats {
                let piece = match field.kind() {
                    Kind::Message(m) if field.is_map() => {
                        let k = self.mark();
                        let v = self.mark();
                        let key = format!("KEY-{k:06}");
                        let value = format!("LEAK-{v:06}");
                        let value_field = m.get_field(2).expect("map value");
                        let mut value_path = here.clone();
                        value_path.push(value_field.full_name().to_string());
                        self.plant(key.clone().into_bytes(), key.clone(), &here);
                        self.plant(value.clone().into_bytes(), value.clone(), &value_path);
                        ld(field.number(), &[s(1, &key), s(2, &value)].concat())
                    }
                    Kind::Message(m) => {
                        let empty = Plan {
                            fields: Vec::new(),
                            nested: Vec::new(),
                            unknown: Vec::new(),
                            shuffle: 0,
                        };
                        let inner_plan = nested.next().unwrap_or(&empty);
                        let inner = if m.full_name() == "saitama.v1.Location" {
                            self.location(&m, seed, &here)
                        } else {
                            self.message(&m, inner_plan, &here)
                        };
                        ld(field.number(), &inner)
                    }
                    Kind::String => {
                        let text = self.string_value(field.name(), seed);
                        self.plant(
                            text.split("LEAK")
                                .nth(1)
                                .map_or(text.clone(), |t| format!("LEAK{t}"))
                                .into_bytes(),
                            text.clone(),
                            &here,
                        );
                        s(field.number(), &text)
                    }
                    Kind::Int64 | Kind::Int32 => {
                        let n = 7_000_000_000u64 + u64::from(self.mark()) * 977;
                        let n = if field.kind() == Kind::Int32 {
                            n % 1_000_000_000 + 100_000_000
                        } else {
                            n
                        };
                        self.plant(int(field.number(), n), n.to_string(), &here);
                        int(field.number(), n)
                    }
                    Kind::Double => {
                        let x = self.coordinate(seed);
                        let mut bytes = if field.is_packed() {
                            ld(field.number(), &x.to_le_bytes())
                        } else {
                            dbl(field.number(), x)
                        };
                        self.plant(x.to_le_bytes().to_vec(), x.to_string(), &here);
                        bytes.shrink_to_fit();
                        bytes
                    }
                    _ => continue,
                };
                pieces.push(piece);
            }
        }
        for &u in &plan.unknown {
            let n = self.mark();
            let text = format!("OPEN-{n:06}");
            let number = 900 + u32::from(u % 64);
            let piece = match u % 3 {
                0 => s(number, &text),
                1 => [tag(number, 5), vec![1, 2, 3, 4]].concat(),
                _ => [tag(number, 0), varint(u64::from(u))].concat(),
            };
            if u % 3 == 0 {
                // Unknown fields belong to no category: they must survive.
                let mut here = path.to_vec();
                here.push(format!("unknown.{number}"));
                self.plant(text.clone().into_bytes(), text, &here);
            }
            pieces.push(piece);
        }
        shuffle(&mut pieces, plan.shuffle);
        pieces.concat()
    }

    fn coordinate(&mut self, seed: u16) -> f64 {
        let n = self.mark();
        let base = if seed % 2 == 0 { 35.0 } else { 139.0 };
        base + f64::from(n % 1_000_000) * 1e-7 + 3e-9
    }

    fn location(&mut self, desc: &MessageDescriptor, seed: u16, path: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, field) in desc.fields().enumerate() {
            let x = self.coordinate(seed.wrapping_add(i as u16));
            let mut here = path.to_vec();
            here.push(field.full_name().to_string());
            self.plant(x.to_le_bytes().to_vec(), x.to_string(), &here);
            out.extend(dbl(field.number(), x));
        }
        out
    }

    /// A string whose planted part (`LEAK-nnnnnn`) no transform keeps: dates keep only
    /// their band, addresses their ward, coordinates their grid.
    fn string_value(&mut self, name: &str, seed: u16) -> String {
        let n = self.mark();
        let sentinel = format!("LEAK-{n:06}");
        match (name, seed % 3) {
            ("birth_date", 0) => format!("1990-04-01{sentinel}"),
            ("address", 0) => format!("埼玉県さいたま市浦和区{sentinel}"),
            ("wifi_bssid", 0) => {
                let x = 35.0 + f64::from(n % 1_000_000) * 1e-7 + 3e-9;
                format!("{x},{sentinel}")
            }
            _ => sentinel,
        }
    }
}

fn shuffle(pieces: &mut [Vec<u8>], mut seed: u64) {
    for i in (1..pieces.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = (seed >> 33) as usize % (i + 1);
        pieces.swap(i, j);
    }
}

/// Category ids by field full name, from the policy's protobuf selectors.
pub struct FieldCategories {
    by_field: BTreeMap<String, Vec<String>>,
}

impl FieldCategories {
    pub fn new(pool: &DescriptorPool, policy: &serde_json::Value) -> Self {
        let mut by_field: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in pool.all_messages() {
            for f in m.fields() {
                for c in policy["categories"].as_array().expect("categories") {
                    let id = c["id"].as_str().expect("id").to_string();
                    let selectors = c["protobuf"].as_array().cloned().unwrap_or_default();
                    let hit = selectors.iter().filter_map(|v| v.as_str()).any(|sel| {
                        match sel.strip_prefix("..") {
                            Some(name) => {
                                f.name().eq_ignore_ascii_case(name)
                                    || f.json_name().eq_ignore_ascii_case(name)
                            }
                            None => f.full_name() == sel,
                        }
                    });
                    if hit {
                        by_field
                            .entry(f.full_name().to_string())
                            .or_default()
                            .push(id);
                    }
                }
            }
        }
        FieldCategories { by_field }
    }

    /// The categories of a field.
    pub fn of(&self, full_name: &str) -> &[String] {
        self.by_field.get(full_name).map_or(&[], Vec::as_slice)
    }

    /// Whether a sentinel lies in (or below) a field of one of `forbidden`.
    pub fn forbidden(&self, sentinel: &Sentinel, forbidden: &[String]) -> bool {
        sentinel
            .path
            .iter()
            .any(|f| self.of(f).iter().any(|c| forbidden.contains(c)))
    }

    /// The message minus every field of a forbidden category, at any depth.
    pub fn strip(&self, m: &mut DynamicMessage, forbidden: &[String]) {
        let fields: Vec<FieldDescriptor> = m.descriptor().fields().collect();
        for f in fields {
            if self.of(f.full_name()).iter().any(|c| forbidden.contains(c)) {
                m.clear_field(&f);
                continue;
            }
            if !m.has_field(&f) {
                continue;
            }
            match m.get_field_mut(&f) {
                Value::Message(inner) => self.strip(inner, forbidden),
                Value::List(items) => {
                    for item in items {
                        if let Value::Message(inner) = item {
                            self.strip(inner, forbidden);
                        }
                    }
                }
                Value::Map(entries) => {
                    for value in entries.values_mut() {
                        if let Value::Message(inner) = value {
                            self.strip(inner, forbidden);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

use prost_reflect::ReflectMessage as _;

/// A message as prost-reflect decodes it (maps compare as maps, whatever their order).
pub fn decoded(desc: &MessageDescriptor, bytes: &[u8]) -> DynamicMessage {
    DynamicMessage::decode(desc.clone(), bytes).expect("decodes")
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
