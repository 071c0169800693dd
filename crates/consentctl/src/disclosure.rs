//! `consentctl disclosure`: a person's disclosure report (開示) from the consent source,
//! as plain-text tables with the policy's labels (aligned by display width), as the JSON
//! the source serves (`--json`), or as its printable HTML page (`--html`).
//!
//! The labels come from the source's own report (the policy it runs), so the text matches
//! the page the help desk prints. Errors never hold the user ID or the token: the URL,
//! which holds the ID, is never part of a message.

use std::time::Duration;

use serde_json::Value;

use crate::args::{DisclosureArgs, Lang};
use crate::report::{Failure, Report};
use crate::text::{key_values, table};

/// Largest report read, in bytes.
const MAX_REPORT_BYTES: u64 = 32 * 1024 * 1024;

/// Characters kept as they are in the path segment (RFC 3986 unreserved).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn lang_code(lang: Lang) -> &'static str {
    match lang {
        Lang::Ja => "ja",
        Lang::En => "en",
        Lang::Both => "both",
    }
}

/// The base URL without a trailing `/`, if it is plain HTTP.
fn base_url(source: &str) -> Result<String, Failure> {
    let base = source.trim().trim_end_matches('/');
    if base.starts_with("https://") {
        return Err(Failure::new(
            "--source: consentctl speaks plain HTTP (the source runs behind its mTLS proxy): use the proxy's plain-HTTP side or a port-forward",
        ));
    }
    if !base.starts_with("http://") || base.len() <= "http://".len() {
        return Err(Failure::new(
            "--source must be an http:// URL, e.g. http://127.0.0.1:8082",
        ));
    }
    Ok(base.to_string())
}

/// What went wrong reaching the source, without the URL.
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        ureq::Error::Timeout(_) => "timed out".to_string(),
        ureq::Error::BodyExceedsLimit(_) => "the report is too large".to_string(),
        _ => "the request failed".to_string(),
    }
}

/// GETs the report; returns the body of a 200, or a failure naming the status and the
/// source's error message (which never holds a value).
fn fetch(args: &DisclosureArgs, html: bool) -> Result<String, Failure> {
    let base = base_url(&args.source)?;
    let user = percent_encoding::utf8_percent_encode(&args.user, SEGMENT);
    let format = if html { "html" } else { "json" };
    let url = format!(
        "{base}/users/{user}/disclosure?format={format}&lang={}",
        lang_code(args.lang)
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut request = agent.get(&url).header(
        "accept",
        if html {
            "text/html"
        } else {
            "application/json"
        },
    );
    if let Some(token) = &args.token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let mut response = request.call().map_err(|e| {
        Failure::new(format!(
            "cannot reach the consent source at --source: {}",
            describe(&e)
        ))
    })?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_REPORT_BYTES)
        .read_to_string()
        .map_err(|e| {
            Failure::new(format!(
                "cannot read the consent source's answer: {}",
                describe(&e)
            ))
        })?;
    if status != 200 {
        let said = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(String::from))
            .unwrap_or_else(|| "no error message".to_string());
        return Err(Failure::new(format!(
            "the consent source answered {status}: {said}"
        )));
    }
    Ok(body)
}

static NULL: Value = Value::Null;

/// The value at `path` under `v` (object keys), or null.
fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().try_fold(v, |v, k| v.get(*k)).unwrap_or(&NULL)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The label columns of a `{"id", "label": {"ja", "en"}}` (the id when the policy does
/// not know it).
fn label_cells(named: &Value, lang: Lang) -> Vec<String> {
    let label = at(named, &["label"]);
    let pick = |k: &str| match label.get(k).and_then(Value::as_str) {
        Some(s) => s.to_string(),
        None => format!("({} not in the policy)", text(at(named, &["id"]))),
    };
    match lang {
        Lang::Ja => vec![pick("ja")],
        Lang::En => vec![pick("en")],
        Lang::Both => vec![pick("ja"), pick("en")],
    }
}

fn label_headers(what: &'static str, lang: Lang) -> Vec<String> {
    match lang {
        Lang::Ja => vec![format!("{what} (ja)")],
        Lang::En => vec![format!("{what} (en)")],
        Lang::Both => vec![format!("{what} (ja)"), format!("{what} (en)")],
    }
}

/// A list of named ids as labels in one language (Japanese for `both`), or ids.
fn names(list_of: &Value, lang: Lang) -> String {
    let items: Vec<String> = list(list_of)
        .iter()
        .map(|n| {
            let key = if lang == Lang::En { "en" } else { "ja" };
            n["label"]
                .get(key)
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| text(&n["id"]))
        })
        .collect();
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(", ")
    }
}

fn ms_date(v: &Value) -> String {
    v.as_u64().map(jst).unwrap_or_else(|| "-".to_string())
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM`, Japan time (the page's dates).
fn jst(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX / 2) + 9 * 3600;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // H. Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn headers(first: &[&str], labels: Vec<String>, rest: &[&str]) -> Vec<String> {
    first
        .iter()
        .map(|s| s.to_string())
        .chain(labels)
        .chain(rest.iter().map(|s| s.to_string()))
        .collect()
}

fn rendered_table(header: &[String], rows: &[Vec<String>]) -> String {
    let h: Vec<&str> = header.iter().map(String::as_str).collect();
    table(Some(&h), rows)
}

fn provisions(d: &Value, key: &str, lang: Lang, with_categories: bool) -> String {
    let rows: Vec<Vec<String>> = list(&d[key])
        .iter()
        .map(|p| {
            let mut row = vec![text(at(p, &["recipient", "id"]))];
            if text(at(p, &["recipient", "id"])) == "-" {
                let who = match lang {
                    Lang::En => "a third party not named in the policy".to_string(),
                    _ => "ポリシーに記載のない第三者".to_string(),
                };
                row.push(who);
                if lang == Lang::Both {
                    row.push("a third party not named in the policy".to_string());
                }
            } else {
                row.extend(label_cells(at(p, &["recipient"]), lang));
            }
            row.push(text(at(p, &["recipient_kind"])));
            row.push(text(at(p, &["purpose", "id"])));
            if with_categories {
                row.push(names(at(p, &["categories"]), lang));
            }
            row.extend([
                ms_date(at(p, &["first_ms"])),
                ms_date(at(p, &["last_ms"])),
                text(at(p, &["count"])),
            ]);
            row
        })
        .collect();
    let mut rest = vec!["kind", "purpose"];
    if with_categories {
        rest.push("categories");
    }
    rest.extend(["first", "last", "count"]);
    rendered_table(
        &headers(&["recipient"], label_headers("recipient", lang), &rest),
        &rows,
    )
}

/// The report as plain-text tables.
pub fn render_text(d: &Value, lang: Lang) -> String {
    let mut out = String::new();
    let policy = at(d, &["policy"]);
    out.push_str(&key_values(&[
        ("disclosure for", text(at(d, &["user"]))),
        ("reference", text(at(d, &["subject_ref"]))),
        ("issued", format!("{} (UTC+9)", text(at(d, &["issued_at"])))),
        (
            "policy",
            format!(
                "{} version {}{}",
                text(at(policy, &["id"])),
                text(at(policy, &["version"])),
                at(policy, &["effective"])
                    .as_str()
                    .map(|e| format!(", effective {e}"))
                    .unwrap_or_default()
            ),
        ),
        (
            "record",
            if at(d, &["record"]).as_bool() == Some(true) {
                "consent record held".to_string()
            } else {
                "no consent record".to_string()
            },
        ),
    ]));

    let consents = list(at(d, &["consents"]));
    out.push_str(&format!("\nconsents in force ({})\n", consents.len()));
    if !consents.is_empty() {
        let rows: Vec<Vec<String>> = consents
            .iter()
            .map(|c| {
                let mut row = vec![text(at(c, &["purpose", "id"]))];
                row.extend(label_cells(at(c, &["purpose"]), lang));
                row.extend([
                    text(at(c, &["section"])),
                    text(at(c, &["policy_version"])),
                    names(at(c, &["explicit"]), lang),
                    ms_date(at(c, &["given_at_ms"])),
                ]);
                row
            })
            .collect();
        out.push_str(&rendered_table(
            &headers(
                &["purpose"],
                label_headers("label", lang),
                &["clause", "policy version", "explicit", "given"],
            ),
            &rows,
        ));
    }

    let withdrawals = list(at(d, &["withdrawals"]));
    out.push_str(&format!(
        "\nwithdrawals and objections ({})\n",
        withdrawals.len()
    ));
    if !withdrawals.is_empty() {
        let rows: Vec<Vec<String>> = withdrawals
            .iter()
            .map(|w| {
                let mut row = vec![text(at(w, &["purpose", "id"]))];
                row.extend(label_cells(at(w, &["purpose"]), lang));
                row.push(ms_date(at(w, &["at_ms"])));
                row
            })
            .collect();
        out.push_str(&rendered_table(
            &headers(&["purpose"], label_headers("label", lang), &["when"]),
            &rows,
        ));
    }

    let yes_no = |v: &Value| {
        if v.as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        }
    };
    out.push_str(&format!(
        "\nrights requests in force: stop use {}, stop third-party provision {}\n",
        yes_no(at(d, &["rights", "stop_use"])),
        yes_no(at(d, &["rights", "stop_third_party"]))
    ));

    let history = list(at(d, &["history"]));
    out.push_str(&format!("\nhistory ({})\n", history.len()));
    if !history.is_empty() {
        let rows: Vec<Vec<String>> = history
            .iter()
            .map(|h| {
                vec![
                    ms_date(at(h, &["at_ms"])),
                    text(at(h, &["action"])),
                    at(h, &["purpose"])
                        .get("id")
                        .map(text)
                        .unwrap_or_else(|| "-".to_string()),
                    text(at(h, &["policy_version"])),
                ]
            })
            .collect();
        out.push_str(&table(
            Some(&["when", "action", "purpose", "policy version"]),
            &rows,
        ));
    }

    if at(d, &["ledger", "on"]).as_bool() != Some(true) {
        out.push_str("\nprovisions: this source keeps no provision ledger\n");
    } else {
        let n = list(at(d, &["provisions"])).len();
        out.push_str(&format!(
            "\nprovisions to third parties, joint users and processors ({n})\n"
        ));
        if n > 0 {
            out.push_str(&provisions(d, "provisions", lang, true));
        }
        let refused = list(at(d, &["refused"])).len();
        if refused > 0 {
            out.push_str(&format!(
                "\nrefused requests for the data, nothing provided ({refused})\n"
            ));
            out.push_str(&provisions(d, "refused", lang, false));
        }
        out.push_str(&format!(
            "\nprovision records are kept {} days\n",
            text(at(d, &["ledger", "retention_days"]))
        ));
    }
    out
}

/// `consentctl disclosure`.
pub fn run(args: &DisclosureArgs) -> Result<Report, Failure> {
    if args.html {
        let mut page = fetch(args, true)?;
        if !page.ends_with('\n') {
            page.push('\n');
        }
        return Ok(Report::ok(page));
    }
    let body = fetch(args, false)?;
    let report: Value = serde_json::from_str(&body)
        .map_err(|_| Failure::new("the consent source's answer is not JSON"))?;
    if args.json {
        let mut out = serde_json::to_string_pretty(&report)
            .map_err(|_| Failure::new("cannot print the report"))?;
        out.push('\n');
        return Ok(Report::ok(out));
    }
    Ok(Report::ok(render_text(&report, args.lang)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]

    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use consent_core::live::SubjectKeying;
    use consent_source::{Options, Source};

    const KEY: &str = "consentctl-test-ledger-key-0123";
    /// 2026-03-01 00:00 UTC.
    const T0: u64 = 1_772_323_200_000;

    fn source(token_config: bool) -> (Source, u16) {
        let access = if token_config {
            consent_source::config::AccessConfig::from_toml(&format!(
                "[[token]]\nname = \"desk\"\nsha256 = \"{}\"\nroles = [\"reader\"]",
                consent_source::config::token_sha256_hex("desk-token-0123456789")
            ))
            .unwrap()
        } else {
            consent_source::config::AccessConfig::default()
        };
        let options = Options {
            demo_allow_loopback: !token_config,
            access,
            ledger_key: Some(KEY.as_bytes().to_vec()),
            clock: Arc::new(|| T0 + 86_400_000),
            ..Options::default()
        };
        let s = Source::start("127.0.0.1:0", Path::new(":memory:"), None, options).unwrap();
        let port = s.port().unwrap();
        (s, port)
    }

    fn send(port: u16, method: &str, path: &str, body: &str) -> u16 {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("http://127.0.0.1:{port}{path}");
        let r = match method {
            "PUT" => agent.put(&url).send(body.as_bytes()),
            _ => agent.post(&url).send(body.as_bytes()),
        };
        r.unwrap().status().as_u16()
    }

    fn seed(port: u16) {
        assert_eq!(
            send(
                port,
                "PUT",
                "/users/u-hanako/grants/marketing.newsletters",
                ""
            ),
            200
        );
        assert_eq!(send(port, "PUT", "/users/u-hanako/grants/surveys", ""), 200);
        let subject = SubjectKeying::Hmac(KEY.as_bytes().to_vec()).subject_for("u-hanako");
        let rec = |id: &str,
                   ts: u64,
                   recipient: &str,
                   kind: &str,
                   purpose: &str,
                   cats: &[&str],
                   outcome: &str| {
            serde_json::json!({
                "request_id": id, "ts_ms": ts, "recipient": recipient, "recipient_kind": kind,
                "recipient_identity": null, "purpose": purpose, "basis": "notice",
                "categories": cats, "subject": subject, "outcome": outcome, "reason": "notice_basis"
            })
        };
        let batch = serde_json::json!({"records": [
            rec("a", T0, "saitama-city", "joint_user", "joint.ebpm", &["birth_date", "address"], "redact"),
            rec("b", T0 + 3_600_000, "saitama-city", "joint_user", "joint.ebpm", &["gender"], "allow"),
            rec("c", T0, "-", "third_party", "marketing.third_party_offers", &[], "block"),
        ]});
        assert_eq!(send(port, "POST", "/ledger", &batch.to_string()), 200);
    }

    fn args(port: u16, lang: Lang) -> DisclosureArgs {
        DisclosureArgs {
            source: format!("http://127.0.0.1:{port}/"),
            user: "u-hanako".into(),
            token: None,
            lang,
            html: false,
            json: false,
        }
    }

    #[test]
    fn the_text_report_lists_provisions_with_the_policys_labels_aligned() {
        let (_s, port) = source(false);
        seed(port);
        let out = run(&args(port, Lang::Both)).unwrap().out;
        assert!(out.contains("consents in force (2)"), "{out}");
        assert!(
            out.contains("provisions to third parties, joint users and processors (1)"),
            "{out}"
        );
        let line = out
            .lines()
            .find(|l| l.starts_with("saitama-city"))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(
            line.contains("さいたま市") && line.contains("Saitama City (joint user)"),
            "{line}"
        );
        assert!(line.contains("生年月日, 性別, 住所"), "{line}");
        assert!(
            line.contains("2026-03-01 09:00") && line.contains("2026-03-01 10:00"),
            "{line}"
        );
        assert!(line.trim_end().ends_with(" 2"), "{line}");
        assert!(out.contains("refused requests for the data, nothing provided (1)"));
        // Columns line up by display width: the header's "kind" starts where each row's
        // kind does.
        let table: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.starts_with("provisions to"))
            .skip(1)
            .take(3)
            .collect();
        let col = |l: &str, word: &str| crate::text::width(l.split(word).next().unwrap());
        assert_eq!(
            col(table[0], "kind"),
            col(table[2], "joint_user"),
            "{table:?}"
        );
        let en = run(&args(port, Lang::En)).unwrap().out;
        assert!(en.contains("Saitama City (joint user)") && !en.contains("さいたま市"));
        assert!(en.contains("Birth date, Gender, Address"), "{en}");
    }

    #[test]
    fn html_and_json_are_printed_as_served() {
        let (_s, port) = source(false);
        seed(port);
        let html = run(&DisclosureArgs {
            html: true,
            ..args(port, Lang::Ja)
        })
        .unwrap()
        .out;
        assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<html lang=\"ja\">"));
        assert!(html.contains("data-recipient=\"saitama-city\""));
        let json = run(&DisclosureArgs {
            json: true,
            ..args(port, Lang::Ja)
        })
        .unwrap()
        .out;
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["provisions"][0]["count"], 2);
    }

    #[test]
    fn refusals_and_unreachable_sources_are_one_line_without_the_user_or_token() {
        let (_s, port) = source(true);
        let mut a = args(port, Lang::Ja);
        a.user = "u-secret-person".into();
        let e = run(&a).unwrap_err().0;
        assert_eq!(e, "the consent source answered 401: credentials required");
        a.token = Some("desk-token-0123456789".into());
        assert!(run(&a).unwrap().out.contains("consents in force (0)"));
        a.token = Some("wrong-token-SECRET".into());
        let e = run(&a).unwrap_err().0;
        assert_eq!(e, "the consent source answered 401: invalid credentials");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = closed.local_addr().unwrap().port();
        drop(closed);
        a.source = format!("http://127.0.0.1:{dead}");
        let e = run(&a).unwrap_err().0;
        assert!(
            e.starts_with("cannot reach the consent source at --source"),
            "{e}"
        );
        assert!(!e.contains("secret") && !e.contains("SECRET"), "{e}");
        a.source = "https://source.example".into();
        assert!(run(&a).unwrap_err().0.contains("plain HTTP"));
        a.source = "source.example".into();
        assert!(run(&a).unwrap_err().0.contains("http:// URL"));
    }

    #[test]
    fn dates_match_the_pages() {
        assert_eq!(jst(T0), "2026-03-01 09:00");
        assert_eq!(jst(0), "1970-01-01 09:00");
        assert_eq!(
            jst(1_709_218_800_000),
            consent_source::disclosure::format_jst(1_709_218_800_000)
        );
    }
}
