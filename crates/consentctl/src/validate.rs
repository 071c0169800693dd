//! `consentctl validate config | envoy | policy`: the documents are checked by the core's
//! own compilers (`compile_config`, `CompiledPolicy::from_json`), so a file that passes
//! here loads in the filter, and an error names the same field the filter's log would.

use consent_core::live::SnapshotSource;
use consent_core::live::SubjectKeying;
use consent_core::policy::{Basis, PartyKind};
use consent_core::{compile_config_with_env, CompiledConfig, CompiledPolicy};
use envoy_yaml::{plugin_configurations, FoundKind};

use crate::input::read_text;
use crate::input::Input;
use crate::report::{Failure, Report, EXIT_FAILURE};
use crate::text::key_values;

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Route rules besides the default rule.
fn route_rules(config: &CompiledConfig) -> usize {
    config.routes.rules().count().saturating_sub(1)
}

fn keying_name(keying: &SubjectKeying) -> &'static str {
    match keying {
        SubjectKeying::Plain => "plain",
        SubjectKeying::Hmac(_) => "hmac_sha256",
    }
}

/// Where the configuration's consent records come from, in words (no secrets).
pub fn snapshot_line(config: &CompiledConfig) -> String {
    let s = &config.snapshot;
    match s.source {
        SnapshotSource::Inline => format!(
            "inline ({}, version {})",
            plural(config.consents.len(), "record", "records"),
            config.consents.version
        ),
        SnapshotSource::Shared => format!(
            "shared: cluster {}, path {}{}, subjects {}, refresh {} ms, max staleness {} ms",
            s.cluster,
            s.path,
            s.deltas_path
                .as_deref()
                .map(|d| format!(", deltas {d}"))
                .unwrap_or_default(),
            keying_name(&s.keying),
            s.refresh_ms,
            s.max_staleness_ms
        ),
    }
}

/// The configuration's summary as `key  value` lines.
pub fn config_summary(config: &CompiledConfig) -> String {
    let p = &config.policy;
    let caller = match config.caller.unidentified.and_then(|i| p.party(i)) {
        Some(party) => format!(
            "{}; callers without identity are `{}`",
            caller_from(config),
            party.id
        ),
        None => format!(
            "{}; callers without identity are third parties",
            caller_from(config)
        ),
    };
    key_values(&[
        ("policy", format!("{} version {}", p.id, p.version)),
        ("purposes", p.purposes.len().to_string()),
        ("categories", p.categories.len().to_string()),
        ("parties", p.parties.len().to_string()),
        (
            "route rules",
            format!("{} besides the default rule", route_rules(config)),
        ),
        ("snapshot", snapshot_line(config)),
        ("grpc", grpc_line(config)),
        ("caller", caller),
        (
            "headers",
            format!(
                "user {}, purpose {}, decision {}",
                config.settings.user_header,
                config.settings.purpose_header,
                config.settings.decision_header
            ),
        ),
    ])
}

fn grpc_line(config: &CompiledConfig) -> String {
    let g = &config.grpc;
    let unknown = match g.unknown_method {
        consent_core::grpc::UnknownMethod::Block => "refused",
        consent_core::grpc::UnknownMethod::Pass => "passed unread",
    };
    if g.schema.is_empty() {
        return format!("no descriptors (every method unknown: {unknown})");
    }
    format!(
        "{}, {}; unknown methods {unknown}",
        plural(g.schema.messages().len(), "message type", "message types"),
        plural(g.schema.method_count(), "method", "methods"),
    )
}

fn caller_from(config: &CompiledConfig) -> &'static str {
    match config.caller.from {
        consent_core::policy::CallerFrom::PeerCertificate => "from the peer certificate",
        consent_core::policy::CallerFrom::UpstreamCluster => "from the upstream cluster",
    }
}

/// The configuration's summary on one line.
pub fn config_one_line(config: &CompiledConfig) -> String {
    let p = &config.policy;
    let source = match config.snapshot.source {
        SnapshotSource::Inline => "inline",
        SnapshotSource::Shared => "shared",
    };
    format!(
        "policy {} version {}, {}, {}, {}, {}, snapshot {source}",
        p.id,
        p.version,
        plural(p.purposes.len(), "purpose", "purposes"),
        plural(p.categories.len(), "category", "categories"),
        plural(p.parties.len(), "party", "parties"),
        plural(route_rules(config), "route rule", "route rules"),
    )
}

/// `validate config FILE`.
pub fn config(input: &Input) -> Result<Report, Failure> {
    if crate::input::is_yaml(input) {
        return Err(Failure::new(format!(
            "{} is YAML: use `consentctl validate envoy {}` for the plugin configurations in an Envoy file",
            input.name(),
            input.name()
        )));
    }
    let text = read_text(input)?;
    let config = compile_config_with_env(text.as_bytes(), &crate::config_source::env)
        .map_err(|e| Failure::new(format!("invalid plugin configuration: {e}")))?;
    Ok(Report::ok(format!(
        "valid plugin configuration ({})\n{}",
        input.name(),
        config_summary(&config)
    )))
}

/// `validate envoy FILE`: every plugin configuration in an Envoy YAML file.
pub fn envoy(input: &Input) -> Result<Report, Failure> {
    let yaml = read_text(input)?;
    let found =
        plugin_configurations(&yaml).map_err(|e| Failure::new(format!("{}: {e}", input.name())))?;
    let mut out = String::new();
    let mut notes = Vec::new();
    let (mut checked, mut invalid) = (0usize, 0usize);
    for f in &found {
        let line = f.line;
        match &f.kind {
            FoundKind::Text {
                anchor,
                lines,
                text,
            } => {
                checked += 1;
                let name = anchor
                    .as_deref()
                    .map(|a| format!(" &{a}"))
                    .unwrap_or_default();
                let verdict = match compile_config_with_env(text.as_bytes(), &crate::config_source::env) {
                    Ok(config) => format!("valid: {}", config_one_line(&config)),
                    Err(e) => {
                        invalid += 1;
                        format!("INVALID: {}", lines.error_position(&e.to_string()))
                    }
                };
                out.push_str(&format!(
                    "line {line}: configuration{name} (JSON on lines {}-{}): {verdict}\n",
                    lines.first, lines.last
                ));
            }
            FoundKind::Alias {
                name,
                anchor_line: Some(at),
            } => out.push_str(&format!(
                "line {line}: configuration *{name}: reuses the configuration of line {at} (checked there)\n"
            )),
            FoundKind::Alias {
                name,
                anchor_line: None,
            } => notes.push(format!(
                "warning: line {line}: configuration *{name}: the anchor is not a configuration read here; not checked"
            )),
            FoundKind::OtherType => notes.push(format!(
                "note: line {line}: configuration is not a google.protobuf.StringValue; skipped"
            )),
            FoundKind::NoValue => notes.push(format!(
                "warning: line {line}: configuration not read: a StringValue without a `value` string"
            )),
        }
    }
    if checked == 0 {
        return Err(Failure::new(format!(
            "no plugin configuration (StringValue `value: |`) found in {}",
            input.name()
        )));
    }
    let mut report = Report::ok(format!(
        "{}: {}\n{out}",
        input.name(),
        if invalid == 0 {
            format!(
                "{} valid",
                plural(checked, "plugin configuration", "plugin configurations")
            )
        } else {
            format!("{invalid} of {checked} plugin configurations INVALID")
        }
    ));
    report.notes = notes;
    if invalid > 0 {
        report.code = EXIT_FAILURE;
    }
    Ok(report)
}

/// `validate policy FILE`.
pub fn policy(input: &Input) -> Result<Report, Failure> {
    let text = read_text(input)?;
    let policy = CompiledPolicy::from_json(&text)
        .map_err(|e| Failure::new(format!("invalid policy: {e}")))?;
    Ok(Report::ok(format!(
        "valid policy ({})\n{}",
        input.name(),
        policy_summary(&policy)
    )))
}

/// A policy's summary as `key  value` lines.
pub fn policy_summary(p: &CompiledPolicy) -> String {
    let bases = [Basis::Consent, Basis::Notice, Basis::Contract, Basis::Legal]
        .iter()
        .map(|b| {
            let n = p.purposes.iter().filter(|x| x.basis == *b).count();
            format!("{} {n}", b.as_str())
        })
        .collect::<Vec<String>>()
        .join(", ");
    let joint = p.purposes.iter().filter(|x| x.joint_use).count();
    let kinds = [
        PartyKind::Operator,
        PartyKind::Processor,
        PartyKind::JointUser,
        PartyKind::ThirdParty,
    ]
    .iter()
    .map(|k| {
        let n = p.parties.iter().filter(|x| x.kind == *k).count();
        format!("{} {n}", k.as_str())
    })
    .collect::<Vec<String>>()
    .join(", ");
    let explicit = p.categories.iter().filter(|c| c.explicit_grant).count();
    key_values(&[
        ("policy", format!("{} version {}", p.id, p.version)),
        (
            "purposes",
            format!("{} ({bases}; joint use {joint})", p.purposes.len()),
        ),
        (
            "categories",
            format!("{} ({explicit} need an explicit grant)", p.categories.len()),
        ),
        ("parties", format!("{} ({kinds})", p.parties.len())),
        (
            "third-party provision",
            p.third_party_provision().map_or(
                "none (third parties get legal purposes only)".to_string(),
                |(_, x)| x.id.clone(),
            ),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use consent_core::compile_config;

    #[test]
    fn the_one_line_summary_counts_what_the_policy_holds() {
        let c = compile_config(br#"{"routes": [{"match": {"route_name": "r"}}]}"#).unwrap();
        assert_eq!(
            config_one_line(&c),
            "policy saitama-minna-app version 1, 18 purposes, 21 categories, 4 parties, 1 route rule, snapshot inline"
        );
    }

    #[test]
    fn the_snapshot_line_never_shows_the_secret() {
        let c = compile_config(
            br#"{"snapshot": {"source": "shared", "cluster": "src", "subject_key": "hmac_sha256", "subject_key_secret": "very-secret-key-0123"}}"#,
        )
        .unwrap();
        let line = snapshot_line(&c);
        assert!(line.contains("hmac_sha256"), "{line}");
        assert!(!line.contains("very-secret"), "{line}");
    }
}
