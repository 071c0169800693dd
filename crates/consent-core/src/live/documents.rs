//! The documents a consent source serves: full snapshots (whole or in parts) and deltas.
//! They share the record format of the inline `consents` configuration.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::config::parse_json_doc;
use crate::error::ConfigError;
use crate::live::records::RecordDoc;

/// How a snapshot names people, as its source declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKeyKind {
    /// Raw user IDs.
    #[default]
    Plain,
    /// Hex of the first 16 bytes of HMAC-SHA-256(shared key, user ID).
    HmacSha256,
}

/// A full snapshot as served by a consent source.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FullSnapshotDoc {
    /// Snapshot version, counting up at the source.
    pub version: u64,
    /// When the source produced it (Unix seconds).
    #[serde(default)]
    pub generated_at: Option<u64>,
    /// How `subject` is written.
    #[serde(default)]
    pub subject_key: SubjectKeyKind,
    /// One record per person.
    #[serde(default)]
    pub records: Vec<RecordDoc>,
    /// How many parts the snapshot of this version is split into (part 0 is the document
    /// at the snapshot path, part i is served at `{path}/parts/{i}`); 1 when absent.
    #[serde(default)]
    pub parts: Option<u32>,
    /// Which part this is (0 when absent).
    #[serde(default)]
    pub part: Option<u32>,
}

/// The changes from one snapshot version to the next.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaDoc {
    /// The version this delta applies to.
    pub from_version: u64,
    /// The version it produces.
    pub version: u64,
    /// When the source produced it (Unix seconds).
    #[serde(default)]
    pub generated_at: Option<u64>,
    /// How `subject` is written.
    #[serde(default)]
    pub subject_key: SubjectKeyKind,
    /// New or replaced records.
    #[serde(default)]
    pub upserts: Vec<RecordDoc>,
    /// Subjects whose records are gone.
    #[serde(default)]
    pub deletes: Vec<String>,
}

impl FullSnapshotDoc {
    /// Parses a snapshot (or part) served by a source.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        parse_json_doc(bytes, "snapshot")
    }

    /// Parses a snapshot (or part) as [`FullSnapshotDoc::from_json`] does, with the same
    /// errors, but hands each record to `each` (with its position) as soon as it is read,
    /// so that the records are never all held at once; returns the other fields.
    pub fn stream(
        bytes: &[u8],
        each: impl FnMut(usize, RecordDoc),
    ) -> Result<PartHead, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let mut track = serde_path_to_error::Track::new();
        let seed = PartSeed { each };
        let head = seed
            .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
            .map_err(|e| {
                ConfigError::from_serde(
                    "snapshot",
                    serde_path_to_error::Error::new(track.path(), e),
                )
            })?;
        de.end().map_err(|_| {
            ConfigError::invalid("snapshot", "trailing characters after the JSON document")
        })?;
        Ok(head)
    }
}

/// The fields of a snapshot part besides its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartHead {
    /// Snapshot version.
    pub version: u64,
    /// When the source produced it (Unix seconds).
    pub generated_at: Option<u64>,
    /// How `subject` is written.
    pub subject_key: SubjectKeyKind,
    /// How many parts (1 when absent).
    pub parts: Option<u32>,
    /// Which part (0 when absent).
    pub part: Option<u32>,
}

/// The fields of [`FullSnapshotDoc`], in order (as the derived parser names them).
const FIELDS: &[&str] = &[
    "version",
    "generated_at",
    "subject_key",
    "records",
    "parts",
    "part",
];

/// Parses a [`FullSnapshotDoc`] handing records to `each`.
struct PartSeed<F> {
    each: F,
}

impl<'de, F: FnMut(usize, RecordDoc)> DeserializeSeed<'de> for PartSeed<F> {
    type Value = PartHead;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<PartHead, D::Error> {
        de.deserialize_struct("FullSnapshotDoc", FIELDS, self)
    }
}

impl<'de, F: FnMut(usize, RecordDoc)> Visitor<'de> for PartSeed<F> {
    type Value = PartHead;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("struct FullSnapshotDoc")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<PartHead, A::Error> {
        let expected = "struct FullSnapshotDoc with 6 elements";
        let version = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &expected))?;
        let generated_at = seq.next_element()?.unwrap_or_default();
        let subject_key = seq.next_element()?.unwrap_or_default();
        seq.next_element_seed(RecordsSeed {
            each: &mut self.each,
        })?;
        let parts = seq.next_element()?.unwrap_or_default();
        let part = seq.next_element()?.unwrap_or_default();
        Ok(PartHead {
            version,
            generated_at,
            subject_key,
            parts,
            part,
        })
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<PartHead, A::Error> {
        let mut version = None;
        let mut generated_at = None;
        let mut subject_key = None;
        let mut records = false;
        let mut parts = None;
        let mut part = None;
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            let name = FIELDS.get(field).copied().unwrap_or_default();
            let duplicate = match field {
                0 => version.is_some(),
                1 => generated_at.is_some(),
                2 => subject_key.is_some(),
                3 => records,
                4 => parts.is_some(),
                _ => part.is_some(),
            };
            if duplicate {
                return Err(de::Error::duplicate_field(name));
            }
            match field {
                0 => version = Some(map.next_value()?),
                1 => generated_at = Some(map.next_value()?),
                2 => subject_key = Some(map.next_value()?),
                3 => {
                    map.next_value_seed(RecordsSeed {
                        each: &mut self.each,
                    })?;
                    records = true;
                }
                4 => parts = Some(map.next_value()?),
                _ => part = Some(map.next_value()?),
            }
        }
        Ok(PartHead {
            version: version.ok_or_else(|| de::Error::missing_field("version"))?,
            generated_at: generated_at.unwrap_or_default(),
            subject_key: subject_key.unwrap_or_default(),
            parts: parts.unwrap_or_default(),
            part: part.unwrap_or_default(),
        })
    }
}

/// A field name of [`FullSnapshotDoc`], as its position in [`FIELDS`]; an unknown name is
/// an error while the key is read, as the derived parser reports it.
struct FieldSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<usize, D::Error> {
        de.deserialize_identifier(self)
    }
}

impl Visitor<'_> for FieldSeed {
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field identifier")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<usize, E> {
        FIELDS
            .iter()
            .position(|f| *f == name)
            .ok_or_else(|| de::Error::unknown_field(name, FIELDS))
    }
}

/// The `records` array, each record handed on as it is read.
struct RecordsSeed<'f, F> {
    each: &'f mut F,
}

impl<'de, F: FnMut(usize, RecordDoc)> DeserializeSeed<'de> for RecordsSeed<'_, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(usize, RecordDoc)> Visitor<'de> for RecordsSeed<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while let Some(record) = seq.next_element::<RecordDoc>()? {
            (self.each)(i, record);
            i += 1;
        }
        Ok(())
    }
}

impl DeltaDoc {
    /// Parses a delta served by a source.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        parse_json_doc(bytes, "delta")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn streaming_a_part_reads_what_parsing_it_whole_reads_with_the_same_errors() {
        let docs = [
            r#"{"version": 3, "generated_at": 9, "subject_key": "plain", "parts": 2, "part": 1,
                "records": [{"subject": "u-1", "stop_use": true}, {"subject": "u-2"}]}"#,
            r#"{"records": [{"subject": "u-1"}], "version": 3}"#,
            r#"{"version": 1, "generated_at": null, "records": []}"#,
            r#"[4, 7, "hmac_sha256", [{"subject": "u-1"}], 3, 2]"#,
            r#"[4]"#,
            r#"[]"#,
            r#"[4, null, "plain", [], null, null, 1]"#,
            r#"{"records": [{"subject": "u-1"}]}"#,
            r#"{"version": 1, "records": [{"subject": 4242}]}"#,
            r#"{"version": 1, "records": [{"subject": "u", "grants": {"x": {"policy_version": "1"}}}]}"#,
            r#"{"version": 1, "records": null}"#,
            r#"{"version": 1, "records": {}}"#,
            r#"{"version": 1, "record": []}"#,
            r#"{"version": 1, "version": 2}"#,
            r#"{"version": 1, "records": [], "records": []}"#,
            r#"{"version": 1, "subject_key": "sha1"}"#,
            r#"{"version": -1}"#,
            r#"{"version": 1} trailing"#,
            r#"<html>"#,
            r#""#,
            r#"{"version": 1, "records": [{"subject": "u-1"}, 5]}"#,
        ];
        for text in docs {
            let whole = FullSnapshotDoc::from_json(text.as_bytes());
            let mut records = Vec::new();
            let streamed = FullSnapshotDoc::stream(text.as_bytes(), |i, r| {
                assert_eq!(i, records.len());
                records.push(r);
            });
            match (whole, streamed) {
                (Ok(doc), Ok(head)) => {
                    assert_eq!(
                        head,
                        PartHead {
                            version: doc.version,
                            generated_at: doc.generated_at,
                            subject_key: doc.subject_key,
                            parts: doc.parts,
                            part: doc.part,
                        },
                        "{text}"
                    );
                    assert_eq!(
                        serde_json::to_value(&records).unwrap(),
                        serde_json::to_value(&doc.records).unwrap(),
                        "{text}"
                    );
                }
                (Err(a), Err(b)) => {
                    assert_eq!(a.to_string(), b.to_string(), "{text}");
                    assert_eq!(a.path(), b.path(), "{text}");
                }
                (a, b) => panic!("{text}: {a:?} vs {b:?}"),
            }
        }
    }
}
