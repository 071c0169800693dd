//! `consentctl validate snapshot FILE [--config CFG]`: a consent snapshot as a source
//! serves it, parsed with `FullSnapshotDoc::from_json` and compiled with
//! `KeyedSnapshot::compile` against the configuration's policy and subject keying (what
//! the fetcher does with each part), then each record compiled strictly
//! (`ConsentRecord::compile`) to warn about ids the live path would skip.
//!
//! Prints counts only: never a subject or any other value of a record.

use std::collections::BTreeMap;

use consent_core::live::{BucketBuilder, FullSnapshotDoc, KeyedSnapshot, SubjectKeyKind};
use consent_core::{CompiledConfig, ConsentRecord};

use crate::config_source::load_or_default;
use crate::input::read_bytes;
use crate::input::Input;
use crate::report::{Failure, Report};
use crate::text::key_values;

/// Most strict-mode warnings printed; the rest are counted.
const MAX_WARNINGS: usize = 20;

/// Parses and compiles a snapshot exactly as the fetcher does.
pub fn compile_snapshot(
    input: &Input,
    config: &CompiledConfig,
) -> Result<(FullSnapshotDoc, KeyedSnapshot), Failure> {
    let bytes = read_bytes(input)?;
    let doc = FullSnapshotDoc::from_json(&bytes)
        .map_err(|e| Failure::new(format!("invalid consent snapshot: {e}")))?;
    let keyed = KeyedSnapshot::compile(&doc, &config.policy, &config.snapshot.keying)
        .map_err(|e| Failure::new(format!("invalid consent snapshot: {e}")))?;
    Ok((doc, keyed))
}

/// Strict-mode findings: what inline consents would reject and the live path skips.
fn strict_warnings(doc: &FullSnapshotDoc, config: &CompiledConfig) -> Vec<String> {
    doc.records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            ConsentRecord::compile(r, &config.policy, &format!("snapshot.records[{i}]")).err()
        })
        .map(|e| {
            format!("warning: {e} (the live snapshot skips it; inline consents would reject it)")
        })
        .collect()
}

/// `validate snapshot`.
pub fn run(input: &Input, config: Option<&Input>) -> Result<Report, Failure> {
    let loaded = load_or_default(config)?;
    let config = &loaded.config;
    let (doc, keyed) = compile_snapshot(input, config)?;
    let mut grants_by_purpose: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut grants, mut explicit, mut stop_use, mut stop_third, mut withdrawn) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    for record in keyed.records.values() {
        for g in &record.grants {
            grants += 1;
            explicit += g.explicit.len();
            if let Some(p) = config.policy.purpose(g.purpose) {
                *grants_by_purpose.entry(p.id.as_str()).or_default() += 1;
            }
        }
        stop_use += usize::from(record.stop_use);
        stop_third += usize::from(record.stop_third_party);
        withdrawn += record.withdrawn.len();
    }
    let by_purpose = grants_by_purpose
        .iter()
        .map(|(p, n)| format!("{p} {n}"))
        .collect::<Vec<String>>()
        .join(", ");
    // The published form, built the way the fetcher builds it.
    let mut builder = BucketBuilder::new(config.snapshot.bucket_bits);
    for (key, record) in &keyed.records {
        builder.add(*key, record);
    }
    let buckets = builder
        .finish(config.policy_fingerprint, doc.version)
        .map_err(|_| Failure::new("invalid consent snapshot: a subject appears twice"))?;
    let bucket_bytes: usize = buckets.values().map(Vec::len).sum();
    let subjects = match doc.subject_key {
        SubjectKeyKind::Plain => "plain",
        SubjectKeyKind::HmacSha256 => "hmac_sha256",
    };
    let mut out = format!(
        "valid consent snapshot ({}), checked against policy {} version {} ({})\n",
        input.name(),
        config.policy.id,
        config.policy.version,
        loaded.origin
    );
    out.push_str(&key_values(&[
        ("version", doc.version.to_string()),
        (
            "generated at",
            doc.generated_at
                .map_or("-".to_string(), |t| format!("{t} (Unix seconds)")),
        ),
        ("subjects", subjects.to_string()),
        ("records", keyed.records.len().to_string()),
        (
            "grants",
            if grants == 0 {
                "0".to_string()
            } else {
                format!("{grants} ({by_purpose})")
            },
        ),
        ("explicit grants", explicit.to_string()),
        ("stop use", stop_use.to_string()),
        ("stop third party", stop_third.to_string()),
        ("withdrawals", withdrawn.to_string()),
        (
            "published form",
            format!(
                "{} of {} buckets, {bucket_bytes} bytes",
                buckets.len(),
                1u64 << config.snapshot.bucket_bits
            ),
        ),
    ]));
    let mut notes = Vec::new();
    if doc.parts.unwrap_or(1) > 1 {
        notes.push(format!(
            "note: this is part {} of {}; only its records were checked",
            doc.part.unwrap_or(0),
            doc.parts.unwrap_or(1)
        ));
    }
    let warnings = strict_warnings(&doc, config);
    let hidden = warnings.len().saturating_sub(MAX_WARNINGS);
    notes.extend(warnings.into_iter().take(MAX_WARNINGS));
    if hidden > 0 {
        notes.push(format!("warning: {hidden} more records with unknown ids"));
    }
    let mut report = Report::ok(out);
    report.notes = notes;
    Ok(report)
}
