//! Prints an explained request: `consent_core::decide::explain` as JSON, or a text form
//! that answers "why": outcome and reason, the purpose with its basis and clause, who
//! received the data and how it was identified, the rule, GPC, the consent versions and
//! rights read, and each removed category with its reason and what bodies get instead.
//! Never prints the user ID or a value from the body other than the redacted body itself.

use consent_core::body::{BodyOutcome, FieldAction, FieldHit, HitAction};
use consent_core::decide::{block_body, decision_header_value};
use consent_core::decide::{explain, Explanation};
use consent_core::{Outcome, Reason};
use serde_json::{json, Value};

use crate::explain::{BodyResult, Explained};
use crate::report::Failure;
use crate::text::{key_values, table};

fn reason_message(code: &str) -> &'static str {
    Reason::ALL
        .iter()
        .find(|r| r.as_str() == code)
        .map_or("", |r| r.message())
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn version(v: Option<u32>) -> String {
    v.map_or("none".to_string(), |v| format!("version {v}"))
}

/// How the caller was identified, in words.
fn via_words(via: &str) -> &'static str {
    match via {
        "uri_san" => "peer certificate URI SAN",
        "dns_san" => "peer certificate DNS SAN",
        "cluster" => "destination cluster",
        "header" => "development caller header",
        "unidentified" => "no identity; caller.unidentified_party",
        _ => "no identity, or one no party claims",
    }
}

fn hit_action(a: HitAction) -> &'static str {
    match a {
        HitAction::Removed => "removed",
        HitAction::Coarsened => "coarsened",
        HitAction::Pseudonymised => "pseudonymised",
        HitAction::Blocked => "blocked",
        HitAction::ElementDropped => "element dropped",
    }
}

/// What bodies get for a removed category under the decision's purpose.
fn body_action(e: &Explained<'_>, category: &str) -> &'static str {
    let policy = &e.config.policy;
    let action = e
        .decision
        .purpose
        .and_then(|p| policy.purpose(p))
        .zip(policy.category_idx(category))
        .and_then(|(p, c)| p.actions.iter().find(|(x, _)| *x == c).map(|(_, a)| a));
    match action {
        None | Some(FieldAction::Remove) => "remove",
        Some(FieldAction::Coarsen) => "coarsen",
        Some(FieldAction::Pseudonymise) if e.config.key.is_some() => "pseudonymise",
        Some(FieldAction::Pseudonymise) => "remove (pseudonymise, no key)",
        Some(FieldAction::Block) => "block",
    }
}

fn field_category<'a>(e: &'a Explained<'_>, hit: &FieldHit) -> &'a str {
    hit.category.map_or("-", |c| e.config.policy.category_id(c))
}

fn purpose_lines(e: &Explained<'_>, x: &Explanation<'_>) -> Vec<(&'static str, String)> {
    let Some(p) = &x.purpose else {
        return vec![("purpose", "not one of the policy's purposes".to_string())];
    };
    let label = e
        .config
        .policy
        .purpose_idx(p.id)
        .and_then(|i| e.config.policy.purpose(i))
        .map(|p| format!(" ({} / {})", p.label.ja, p.label.en))
        .unwrap_or_default();
    vec![
        ("purpose", format!("{}{label}", p.id)),
        (
            "",
            format!(
                "basis {}, {}, terms last changed in version {}, {}",
                p.basis,
                p.section.unwrap_or("no section"),
                p.changed_in,
                if p.joint_use {
                    "joint use (§8)"
                } else {
                    "not joint use"
                }
            ),
        ),
    ]
}

/// The readable form.
pub fn render_text(e: &Explained<'_>, json_out: bool) -> String {
    let config = e.config;
    let x = explain(&config.policy, &config.routes, &e.decision);
    let mut rows: Vec<(&str, String)> = vec![
        ("outcome", x.outcome.to_string()),
        ("reason", format!("{}: {}", x.reason, x.message)),
    ];
    rows.extend(purpose_lines(e, &x));
    rows.push((
        "party",
        format!(
            "{} ({}), identified by: {}",
            x.party.id.unwrap_or("-"),
            x.party.kind,
            via_words(x.party.via)
        ),
    ));
    rows.push(("rule", x.rule.to_string()));
    rows.push(("gpc", yes_no(x.gpc).to_string()));
    let c = &x.consent;
    rows.push((
        "consent",
        format!(
            "record {}; grant for the purpose: {}; consent to provision: {}",
            if c.record { "found" } else { "not found" },
            version(c.grant_version),
            version(c.provision_grant_version)
        ),
    ));
    rows.push((
        "rights",
        format!(
            "stop use: {}; stop third-party provision: {}; withdrawn or objected: {}",
            yes_no(c.stop_use),
            yes_no(c.stop_third_party),
            yes_no(c.withdrawn)
        ),
    ));
    rows.push((
        "policy",
        format!("{} version {}", x.policy, x.policy_version),
    ));
    rows.push((
        "mode",
        if e.dry_run {
            "dry_run: the filter records this decision and passes the request unchanged"
        } else {
            "enforce"
        }
        .to_string(),
    ));
    if e.decision.outcome == Outcome::Block && !e.dry_run {
        rows.push((
            "reply",
            format!(
                "{} {}",
                config.settings.block_status,
                block_body(&config.policy, &e.decision)
            ),
        ));
    }
    rows.push((
        "header",
        format!(
            "{}: {}{}",
            config.settings.decision_header,
            if e.dry_run { "mode=dry_run; " } else { "" },
            decision_header_value(&config.policy, &config.routes, &e.decision)
        ),
    ));
    let mut out = key_values(&rows);
    if !x.redactions.is_empty() {
        out.push_str("\nremoved categories\n");
        let rows: Vec<Vec<String>> = x
            .redactions
            .iter()
            .map(|r| {
                vec![
                    r.category.to_string(),
                    r.reason.to_string(),
                    body_action(e, r.category).to_string(),
                    reason_message(r.reason).to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            Some(&["category", "reason", "in bodies", "why"]),
            &rows,
        ));
    }
    if let Some((name, body)) = &e.body {
        out.push('\n');
        out.push_str(&body_text(e, name, body, json_out));
    }
    out
}

fn body_text(e: &Explained<'_>, name: &str, body: &BodyResult, json_out: bool) -> String {
    match body {
        BodyResult::NotRead(why) => format!("body ({name}): not read: {why}\n"),
        BodyResult::TooLarge { size, max } => format!(
            "body ({name}): refused with body_too_large: {size} bytes, body.max_bytes is {max}\n"
        ),
        BodyResult::InvalidJson(why) => {
            format!("body ({name}): refused with body_invalid_json: {why}\n")
        }
        BodyResult::Refused { reason, why } => {
            format!("body ({name}): refused with {}: {why}\n", reason.as_str())
        }
        BodyResult::Redacted { outcome, report } => {
            let verdict = match outcome {
                BodyOutcome::Unchanged if report.unread => {
                    "passed unread (not a format the filter reads; body.unparsed: pass, the decision header says body=unread)".to_string()
                }
                BodyOutcome::Unchanged => "unchanged".to_string(),
                BodyOutcome::Rewritten(_) => "rewritten".to_string(),
                BodyOutcome::Blocked(c) => format!(
                    "refused with forbidden_data_present ({} may not reach this purpose)",
                    e.config.policy.category_id(*c)
                ),
            };
            let mut out = format!(
                "body ({name}): {verdict}: {} removed, {} transformed, {} elements dropped\n",
                report.removed, report.transformed, report.dropped_elements
            );
            if !report.fields.is_empty() {
                let rows: Vec<Vec<String>> = report
                    .fields
                    .iter()
                    .map(|f| {
                        vec![
                            f.path.clone(),
                            field_category(e, f).to_string(),
                            hit_action(f.action).to_string(),
                        ]
                    })
                    .collect();
                out.push_str(&table(Some(&["path", "category", "action"]), &rows));
                if report.fields_truncated {
                    out.push_str("(more fields were acted on than are listed)\n");
                }
            }
            if json_out {
                if let Some(bytes) = redacted_bytes(e, outcome) {
                    out.push_str("\nredacted body\n");
                    out.push_str(String::from_utf8_lossy(bytes).trim_end());
                    out.push('\n');
                }
            }
            out
        }
    }
}

/// The body the backend (or client) would get, if it gets one.
fn redacted_bytes<'a>(e: &'a Explained<'_>, outcome: &'a BodyOutcome) -> Option<&'a [u8]> {
    match outcome {
        BodyOutcome::Unchanged => Some(&e.body_bytes),
        BodyOutcome::Rewritten(b) => Some(b),
        BodyOutcome::Blocked(_) => None,
    }
}

fn body_json(e: &Explained<'_>, name: &str, body: &BodyResult, json_out: bool) -> Value {
    match body {
        BodyResult::NotRead(why) => json!({"file": name, "result": "not_read", "why": why}),
        BodyResult::TooLarge { size, max } => json!({
            "file": name, "result": "refused", "reason": Reason::BodyTooLarge.as_str(),
            "size": size, "max_bytes": max
        }),
        BodyResult::InvalidJson(why) => json!({
            "file": name, "result": "refused", "reason": Reason::BodyInvalidJson.as_str(), "why": why
        }),
        BodyResult::Refused { reason, why } => json!({
            "file": name, "result": "refused", "reason": reason.as_str(), "why": why
        }),
        BodyResult::Redacted { outcome, report } => {
            let fields: Vec<Value> = report
                .fields
                .iter()
                .map(|f| {
                    json!({
                        "path": f.path,
                        "category": f.category.map(|c| e.config.policy.category_id(c)),
                        "action": f.action,
                    })
                })
                .collect();
            let mut v = json!({
                "file": name,
                "result": match outcome {
                    BodyOutcome::Unchanged => "unchanged",
                    BodyOutcome::Rewritten(_) => "rewritten",
                    BodyOutcome::Blocked(_) => "refused",
                },
                "removed": report.removed,
                "transformed": report.transformed,
                "dropped_elements": report.dropped_elements,
                "fields": fields,
                "fields_truncated": report.fields_truncated,
            });
            if let (BodyOutcome::Blocked(c), Value::Object(map)) = (outcome, &mut v) {
                map.insert(
                    "reason".into(),
                    Value::from(Reason::ForbiddenDataPresent.as_str()),
                );
                map.insert(
                    "category".into(),
                    Value::from(e.config.policy.category_id(*c)),
                );
            }
            if json_out {
                let redacted = redacted_bytes(e, outcome)
                    .and_then(|b| serde_json::from_slice::<Value>(b).ok());
                if let (Some(redacted), Value::Object(map)) = (redacted, &mut v) {
                    map.insert("redacted".into(), redacted);
                }
            }
            v
        }
    }
}

/// The JSON form: the explanation's fields, then `mode` (`enforce` or `dry_run`) and,
/// when a body was given, `body`.
pub fn render_json(e: &Explained<'_>, json_out: bool) -> Result<String, Failure> {
    let failed = |err: serde_json::Error| Failure::new(format!("cannot write JSON: {err}"));
    let x = explain(&e.config.policy, &e.config.routes, &e.decision);
    // Serialised directly (not through a `Value`) to keep the explanation's field order;
    // the extra members are appended to the object's text.
    let mut out = serde_json::to_string_pretty(&x).map_err(failed)?;
    let mut extra = vec![(
        "mode",
        Value::from(if e.dry_run { "dry_run" } else { "enforce" }),
    )];
    if let Some((name, body)) = &e.body {
        extra.push(("body", body_json(e, name, body, json_out)));
    }
    for (key, value) in extra {
        let value = serde_json::to_string_pretty(&value).map_err(failed)?;
        // Raw newlines only occur between tokens, so re-indenting by lines is exact.
        let open = out.strip_suffix('}').unwrap_or(&out).trim_end().to_string();
        out = format!("{open},\n  \"{key}\": {}\n}}", value.replace('\n', "\n  "));
    }
    out.push('\n');
    Ok(out)
}
