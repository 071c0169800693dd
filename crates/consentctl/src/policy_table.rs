//! `consentctl policy`: the policy as plain-text tables (purposes, categories, parties,
//! third-party provision). The policy is compiled first (so only a policy the filter
//! would load is printed), and the tables are read from its `PolicyDoc`, which keeps the
//! labels and selectors as written.

use consent_core::body::CoarsenSpec;
use consent_core::body::FieldAction;
use consent_core::config::ConfigDoc;
use consent_core::policy::{PolicyDoc, WithoutConsent};
use consent_core::{CompiledPolicy, DEFAULT_POLICY_JSON};

use crate::args::{Lang, PolicySource};
use crate::config_source::load;
use crate::input::read_text;
use crate::report::{Failure, Report};
use crate::text::{list_or_dash, table};

fn parse_policy(text: &str, origin: &str) -> Result<PolicyDoc, Failure> {
    CompiledPolicy::from_json(text).map_err(|e| Failure::new(format!("invalid policy: {e}")))?;
    serde_json::from_str(text)
        .map_err(|e| Failure::new(format!("cannot read the policy of {origin}: {e}")))
}

/// The policy document and, from a configuration, `caller.identities` replacements.
fn policy_doc(source: &PolicySource) -> Result<(PolicyDoc, ConfigDoc, String), Failure> {
    let no_config = || serde_json::from_str::<ConfigDoc>("{}");
    match source {
        PolicySource::Shipped => {
            let doc = parse_policy(DEFAULT_POLICY_JSON, "the shipped policy")?;
            let config = no_config().map_err(|e| Failure::new(e.to_string()))?;
            Ok((doc, config, "the shipped policy".to_string()))
        }
        PolicySource::Policy(input) => {
            let doc = parse_policy(&read_text(input)?, &input.name())?;
            let config = no_config().map_err(|e| Failure::new(e.to_string()))?;
            Ok((doc, config, input.name()))
        }
        PolicySource::Config(input) => {
            let loaded = load(input)?;
            let json = if loaded.json.trim().is_empty() {
                "{}"
            } else {
                loaded.json.as_str()
            };
            let config: ConfigDoc = serde_json::from_str(json).map_err(|e| {
                Failure::new(format!(
                    "cannot read the configuration {}: {e}",
                    loaded.origin
                ))
            })?;
            let doc = match &config.policy {
                Some(doc) => doc.clone(),
                None => parse_policy(DEFAULT_POLICY_JSON, "the shipped policy")?,
            };
            Ok((doc, config, loaded.origin))
        }
    }
}

fn label_headers(lang: Lang) -> Vec<&'static str> {
    match lang {
        Lang::Ja => vec!["label (ja)"],
        Lang::En => vec!["label (en)"],
        Lang::Both => vec!["label (ja)", "label (en)"],
    }
}

fn labels(lang: Lang, label: &consent_core::policy::Label) -> Vec<String> {
    match lang {
        Lang::Ja => vec![label.ja.clone()],
        Lang::En => vec![label.en.clone()],
        Lang::Both => vec![label.ja.clone(), label.en.clone()],
    }
}

fn coarsen_text(spec: &Option<CoarsenSpec>) -> String {
    match spec {
        None => "-".to_string(),
        Some(CoarsenSpec::GridDegrees(d)) => format!("grid {d}°"),
        Some(CoarsenSpec::GeohashPrecision(p)) => format!("geohash {p}"),
        Some(CoarsenSpec::AgeBandYears(y)) => format!("age band {y} years"),
        Some(CoarsenSpec::TruncateAfter(m)) => format!("truncate after {}", m.join(" ")),
    }
}

fn action_text(a: &FieldAction) -> &'static str {
    match a {
        FieldAction::Remove => "remove",
        FieldAction::Coarsen => "coarsen",
        FieldAction::Pseudonymise => "pseudonymise",
        FieldAction::Block => "block",
    }
}

fn with_headers(first: &[&'static str], lang: Lang, rest: &[&'static str]) -> Vec<&'static str> {
    let mut h = first.to_vec();
    h.extend(label_headers(lang));
    h.extend_from_slice(rest);
    h
}

fn purposes_table(doc: &PolicyDoc, lang: Lang) -> String {
    let rows: Vec<Vec<String>> = doc
        .purposes
        .iter()
        .map(|p| {
            let without = match (p.basis, p.without_consent) {
                (consent_core::policy::Basis::Consent, w) => match w.unwrap_or_default() {
                    WithoutConsent::Block => "block",
                    WithoutConsent::Strip => "strip",
                },
                _ => "-",
            };
            let transforms: Vec<String> = p
                .transforms
                .iter()
                .map(|(c, a)| format!("{c}: {}", action_text(a)))
                .collect();
            let mut row = vec![
                p.id.clone(),
                p.section.clone().unwrap_or_else(|| "-".to_string()),
                p.basis.as_str().to_string(),
                without.to_string(),
                if p.joint_use { "yes" } else { "-" }.to_string(),
                p.changed_in.to_string(),
            ];
            row.extend(labels(lang, &p.label));
            row.extend([list_or_dash(&p.categories), list_or_dash(&transforms)]);
            row
        })
        .collect();
    table(
        Some(&with_headers(
            &[
                "id",
                "section",
                "basis",
                "without consent",
                "joint use",
                "changed in",
            ],
            lang,
            &["categories", "transforms"],
        )),
        &rows,
    )
}

fn categories_table(doc: &PolicyDoc, lang: Lang) -> String {
    let rows: Vec<Vec<String>> = doc
        .categories
        .iter()
        .map(|c| {
            let mut row = vec![
                c.id.clone(),
                if c.explicit_grant { "yes" } else { "-" }.to_string(),
                coarsen_text(&c.coarsen),
            ];
            row.extend(labels(lang, &c.label));
            row.extend([
                list_or_dash(&c.headers),
                list_or_dash(&c.query),
                list_or_dash(&c.json),
                list_or_dash(&c.protobuf),
            ]);
            row
        })
        .collect();
    table(
        Some(&with_headers(
            &["id", "explicit grant", "coarsen"],
            lang,
            &["headers", "query", "json", "protobuf"],
        )),
        &rows,
    )
}

fn parties_table(doc: &PolicyDoc, config: &ConfigDoc, lang: Lang) -> String {
    let rows: Vec<Vec<String>> = doc
        .parties
        .iter()
        .map(|p| {
            let mut row = vec![
                p.id.clone(),
                p.kind.as_str().to_string(),
                p.country.clone().unwrap_or_else(|| "-".to_string()),
            ];
            row.extend(labels(lang, &p.label));
            let identities = match config.caller.identities.get(&p.id) {
                Some(replaced) => format!("{} (caller.identities)", list_or_dash(replaced)),
                None => list_or_dash(&p.identities),
            };
            row.push(identities);
            row
        })
        .collect();
    table(
        Some(&with_headers(
            &["id", "kind", "country"],
            lang,
            &["identities"],
        )),
        &rows,
    )
}

/// `consentctl policy`.
pub fn run(source: &PolicySource, lang: Lang) -> Result<Report, Failure> {
    let (doc, config, origin) = policy_doc(source)?;
    let mut out = format!("policy {} version {}", doc.id, doc.version);
    if let Some(effective) = &doc.effective {
        out.push_str(&format!(", effective {effective}"));
    }
    out.push_str(&format!(" ({origin})\n"));
    if let Some(title) = &doc.title {
        for line in labels(lang, title) {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out.push_str(&format!("\npurposes ({})\n", doc.purposes.len()));
    out.push_str(&purposes_table(&doc, lang));
    out.push_str(&format!("\ncategories ({})\n", doc.categories.len()));
    out.push_str(&categories_table(&doc, lang));
    out.push_str(&format!("\nparties ({})\n", doc.parties.len()));
    out.push_str(&parties_table(&doc, &config, lang));
    out.push_str("\nthird-party provision (§7): ");
    match doc
        .third_party_provision
        .as_ref()
        .and_then(|id| doc.purposes.iter().find(|p| &p.id == id))
    {
        Some(p) => out.push_str(&format!(
            "consent to `{}` is consent to provision; third parties may receive only: {}\n",
            p.id,
            list_or_dash(&p.categories)
        )),
        None => {
            out.push_str("none: third parties receive data only for purposes with a legal basis\n")
        }
    }
    Ok(Report::ok(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_policy_prints_both_languages_by_default() {
        let out = run(&PolicySource::Shipped, Lang::Both).unwrap().out;
        assert!(out.contains("さいたま市"), "{out}");
        assert!(out.contains("Saitama City"), "{out}");
        assert!(out.contains("third_party.provision"), "{out}");
        let ja = run(&PolicySource::Shipped, Lang::Ja).unwrap().out;
        assert!(!ja.contains("label (en)"));
        assert!(ja.contains("label (ja)"));
    }

    #[test]
    fn coarsen_rules_read_as_words() {
        assert_eq!(
            coarsen_text(&Some(CoarsenSpec::GridDegrees(0.01))),
            "grid 0.01°"
        );
        assert_eq!(
            coarsen_text(&Some(CoarsenSpec::TruncateAfter(vec![
                "区".into(),
                "市".into()
            ]))),
            "truncate after 区 市"
        );
        assert_eq!(coarsen_text(&None), "-");
    }
}
