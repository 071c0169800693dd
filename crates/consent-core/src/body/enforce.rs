//! What a decision means for one body: which selectors apply, whether the body must be
//! read at all, which reading it gets (JSON, form, multipart, or none the filter has), and
//! the redaction itself, with multi-subject elements decided one by one through the same
//! lookup as the request.

use crate::body::form::redact_form;
use crate::body::matcher::Matcher;
use crate::body::multipart::redact_multipart;
use crate::body::redactor::{
    redact, BodyOutcome, BodyReport, BodyRules, ElementRules, ElementVerdict, FieldAction,
};
use crate::body::scan::JsonError;
use crate::body::transform::{CivilDate, CoarsenSpec};
use crate::body::{BodyError, BodyFormat, BodyHeaders, UnparsedBody};
use crate::config::CompiledConfig;
use crate::decide::decision::{Decision, Outcome};
use crate::decide::entry::ConsentLookup;
use crate::decide::request::{HeaderValue, RequestContext, RequestView};
use crate::policy::categories::CategorySet;

/// Whether `body` can be a JSON text: after JSON whitespace, its first byte starts a value.
/// Where only "is it JSON?" matters (a body not labelled JSON), a body that fails this is
/// not handed to the redactor, which would reject it at that byte anyway: a 2-byte
/// `text/plain` answer costs a byte test, not a parse.
fn may_be_json(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .is_some_and(|b| {
            matches!(
                b,
                b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n'
            )
        })
}

impl CompiledConfig {
    /// The JSON selectors for a decision's bodies: the route rule's when it adds some,
    /// else the policy's.
    pub fn matcher(&self, decision: &Decision) -> &Matcher {
        self.routes
            .rule(decision.facts.rule)
            .matcher
            .as_ref()
            .unwrap_or(&self.policy.matcher)
    }

    /// Decides one element of a multi-subject body: the same purpose, caller, GPC signal
    /// and route rule as the request, the element's own subject, looked up through
    /// `lookup` as the request's was. A blocked subject (or a missing one, where users are
    /// required) drops the element.
    pub fn element_verdict(
        &self,
        request: &Decision,
        subject: Option<&str>,
        lookup: &(impl ConsentLookup + ?Sized),
    ) -> ElementVerdict {
        let Some(p) = request.purpose.and_then(|idx| self.policy.purpose(idx)) else {
            return ElementVerdict::Drop;
        };
        let view = RequestView {
            user: subject.map_or(HeaderValue::Absent, HeaderValue::One),
            purpose: HeaderValue::One(&p.id),
            context: RequestContext {
                caller: request.facts.caller,
                gpc: request.facts.gpc,
                rule: request.facts.rule,
            },
        };
        let decision = self.decide_view(&view, lookup);
        match decision.outcome {
            Outcome::Block => ElementVerdict::Drop,
            Outcome::Allow => ElementVerdict::Forbid(CategorySet::EMPTY),
            Outcome::Redact => ElementVerdict::Forbid(decision.redacted),
        }
    }

    /// Redacts one JSON body for `decision`: the decision's forbidden categories with the
    /// purpose's actions, and, when `body.subjects` is set, each multi-subject element
    /// decided for its own subject, looked up through `lookup` as the request's was.
    /// `record_paths` fills the report's field paths.
    pub fn redact_body(
        &self,
        decision: &Decision,
        body: &[u8],
        today: CivilDate,
        record_paths: bool,
        lookup: &(impl ConsentLookup + ?Sized),
    ) -> Result<(BodyOutcome, BodyReport), JsonError> {
        let rules = self.body_rules(decision, today, record_paths);
        let forbidden = forbidden(decision);
        if !self.body.has_elements() || decision.purpose.is_none() {
            return redact(body, &rules, forbidden, None);
        }
        let element_rules = ElementRules {
            elements: &self.body.elements,
            subject_paths: &self.body.subject_paths,
        };
        let mut verdict = |subject: Option<&str>| self.element_verdict(decision, subject, lookup);
        redact(
            body,
            &rules,
            forbidden,
            Some((&element_rules, &mut verdict)),
        )
    }

    /// Enforces one whole body, read as its headers say (see [`crate::body`]): JSON
    /// bodies with the JSON redactor, form bodies parameter by parameter, multipart bodies
    /// part by part, and any body that parses as JSON as JSON, whatever its label. A body
    /// the filter cannot read follows `body.unparsed`: an error with `block`, else it
    /// passes unchanged with [`BodyReport::unread`] set. The host treats the outcome of
    /// every format alike; an error is a refusal with [`BodyError::reason`].
    pub fn enforce_body(
        &self,
        decision: &Decision,
        headers: &BodyHeaders,
        body: &[u8],
        today: CivilDate,
        record_paths: bool,
        lookup: &(impl ConsentLookup + ?Sized),
    ) -> Result<(BodyOutcome, BodyReport), BodyError> {
        let mut json =
            |bytes: &[u8]| self.redact_body(decision, bytes, today, record_paths, lookup);
        let rules = self.body_rules(decision, today, record_paths);
        let refuse_unread = self.body.unparsed == UnparsedBody::Block;
        match headers.format {
            BodyFormat::Conflicting => Err(BodyError::AmbiguousType),
            BodyFormat::Json => json(body).map_err(BodyError::InvalidJson),
            BodyFormat::Multipart(None) => Err(BodyError::InvalidMultipart(
                crate::body::MultipartError::Boundary,
            )),
            BodyFormat::Multipart(Some(boundary)) => redact_multipart(
                body,
                &boundary,
                &rules,
                &self.policy,
                forbidden(decision),
                refuse_unread,
                &mut json,
            ),
            BodyFormat::Form => {
                // Read as JSON first when it is JSON (a backend may parse it so), then as
                // the form it says it is.
                let (first, mut report) = match may_be_json(body).then(|| json(body)) {
                    Some(Ok(done)) => done,
                    _ => (BodyOutcome::Unchanged, BodyReport::default()),
                };
                let after_json = match &first {
                    BodyOutcome::Blocked(_) => return Ok((first, report)),
                    BodyOutcome::Rewritten(bytes) => bytes.as_slice(),
                    BodyOutcome::Unchanged => body,
                };
                let semicolon = self.query.semicolon_separator;
                let (second, form_report) = redact_form(
                    after_json,
                    &rules,
                    &self.policy,
                    forbidden(decision),
                    semicolon,
                );
                report.merge(form_report);
                let outcome = match second {
                    BodyOutcome::Unchanged => first,
                    other => other,
                };
                Ok((outcome, report))
            }
            BodyFormat::Grpc | BodyFormat::Other | BodyFormat::Undeclared => {
                match may_be_json(body).then(|| json(body)) {
                    Some(Ok(done)) => Ok(done),
                    _ if refuse_unread => Err(BodyError::Unreadable),
                    _ => Ok((
                        BodyOutcome::Unchanged,
                        BodyReport {
                            unread: true,
                            ..BodyReport::default()
                        },
                    )),
                }
            }
        }
    }

    /// The purpose's actions, the coarsening rules and the key, for a decision's bodies.
    fn body_rules(
        &self,
        decision: &Decision,
        today: CivilDate,
        record_paths: bool,
    ) -> BodyRules<'_> {
        let actions = decision
            .purpose
            .and_then(|p| self.policy.purpose(p))
            .map_or(&[][..], |p| p.actions.as_slice());
        BodyRules {
            matcher: self.matcher(decision),
            actions,
            coarsen: &self.policy.coarsen,
            key: self.key.as_deref(),
            today,
            record_paths,
        }
    }

    /// Whether checking the bodies of a decision can need today's date: its purpose
    /// coarsens some category into an age band (a birth date becomes an age). Elements of
    /// a multi-subject body are decided for the same purpose, so this holds for them too.
    /// Otherwise no transform reads the date and the host need not read its clock.
    pub fn needs_today(&self, decision: &Decision) -> bool {
        decision
            .purpose
            .and_then(|p| self.policy.purpose(p))
            .is_some_and(|p| {
                p.actions.iter().any(|(category, action)| {
                    *action == FieldAction::Coarsen
                        && matches!(
                            self.policy.coarsen.get(category.position()),
                            Some(Some(CoarsenSpec::AgeBandYears(_)))
                        )
                })
            })
    }

    /// Whether a decision needs the body read: it forbids a category some selector finds
    /// or some parameter name carries (forms, multipart), or multi-subject elements must
    /// be decided one by one.
    pub fn body_needed(&self, decision: &Decision) -> bool {
        let found_in_bodies = self
            .matcher(decision)
            .categories
            .union(self.policy.param_categories);
        decision.outcome != Outcome::Block
            && (self.body.has_elements() || decision.redacted.intersects(found_in_bodies))
    }
}

/// The categories a decision forbids in its bodies.
fn forbidden(decision: &Decision) -> CategorySet {
    if decision.outcome == Outcome::Redact {
        decision.redacted
    } else {
        CategorySet::EMPTY
    }
}

#[cfg(test)]
mod tests {
    use crate::body::test_support::{config, enforce, forwarded};
    use crate::body::{BodyError, BodyHeaders, BodyOutcome};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const GPS: &str = r#"{"gps":{"lat":35.8617,"lng":139.6455},"note":"hi"}"#;

    #[test]
    fn json_is_enforced_as_json_whatever_its_label() {
        let c = config("pass");
        for ct in [
            None,
            Some("text/plain"),
            Some("application/octet-stream"),
            Some("application/grpc"),
        ] {
            let (outcome, report) = enforce(&c, "strict", ct, GPS.as_bytes()).unwrap();
            assert_eq!(
                forwarded(GPS.as_bytes(), &outcome),
                r#"{"note":"hi"}"#,
                "{ct:?}"
            );
            assert!(!report.unread);
        }
    }

    #[test]
    fn an_unreadable_body_passes_marked_unread_or_is_refused() {
        let text = b"lat=35.86 in plain words";
        let (outcome, report) =
            enforce(&config("pass"), "strict", Some("text/plain"), text).unwrap();
        assert_eq!(outcome, BodyOutcome::Unchanged);
        assert!(report.unread, "the outcome says it passed unread");
        assert_eq!(
            enforce(&config("block"), "strict", Some("text/plain"), text),
            Err(BodyError::Unreadable)
        );
        assert_eq!(
            enforce(&config("sniff"), "strict", None, text).map(|(_, r)| r.unread),
            Ok(true),
            "the old `sniff` means pass"
        );
    }

    #[test]
    fn the_json_precheck_only_skips_bodies_the_redactor_would_reject() {
        // Every first byte, bare and after whitespace: where the precheck says "not JSON",
        // the scalar redactor must fail too (so skipping it changes no outcome).
        let c = config("pass");
        let d = c.evaluate([("x-data-purpose", b"strict".as_slice())]);
        let today = crate::body::test_support::TODAY;
        for byte in 0u8..=255 {
            for prefix in [&b""[..], b" \t\r\n"] {
                let mut body = prefix.to_vec();
                body.push(byte);
                body.extend_from_slice(b"rue");
                if !super::may_be_json(&body) {
                    assert!(
                        c.redact_body(&d, &body, today, false, &c.inline_consents())
                            .is_err(),
                        "{body:?} was skipped but the redactor reads it"
                    );
                }
            }
        }
        assert!(super::may_be_json(b" {}") && super::may_be_json(b"\"ok\""));
        assert!(
            !super::may_be_json(b"ok") && !super::may_be_json(b"  ") && !super::may_be_json(b"")
        );
    }

    #[test]
    fn a_json_scalar_labelled_text_is_still_read_as_json() {
        let (outcome, report) =
            enforce(&config("pass"), "strict", Some("text/plain"), b" \"ok\"").unwrap();
        assert_eq!(outcome, BodyOutcome::Unchanged);
        assert!(!report.unread, "a JSON string is JSON");
        let (_, report) = enforce(&config("pass"), "strict", Some("text/plain"), b"ok").unwrap();
        assert!(report.unread);
    }

    #[test]
    fn declared_json_that_is_not_json_is_refused() {
        let c = config("pass");
        let err = enforce(&c, "strict", Some("application/json"), b"lat=1").unwrap_err();
        assert_eq!(err.reason(), crate::Reason::BodyInvalidJson);
    }

    #[test]
    fn two_declared_formats_are_refused_after_reading_too() {
        let c = config("pass");
        let d = c.evaluate([("x-data-purpose", b"strict".as_slice())]);
        let headers = BodyHeaders::from_headers([
            ("content-type", b"application/json".as_slice()),
            (
                "content-type",
                b"application/x-www-form-urlencoded".as_slice(),
            ),
        ]);
        let result = c.enforce_body(
            &d,
            &headers,
            GPS.as_bytes(),
            crate::body::test_support::TODAY,
            false,
            &c.inline_consents(),
        );
        assert_eq!(result, Err(BodyError::AmbiguousType));
    }

    #[test]
    fn forms_need_the_body_even_without_json_selectors() {
        let doc = serde_json::json!({
            "require_user": false,
            "caller": {"unidentified_party": "op"},
            "policy": {"id": "p", "version": 1,
                "categories": [{"id": "email", "label": {"ja": "e", "en": "e"}, "query": ["email"]}],
                "purposes": [{"id": "s", "label": {"ja": "s", "en": "s"}, "basis": "contract", "categories": []}],
                "parties": [{"id": "op", "label": {"ja": "o", "en": "o"}, "kind": "operator"}]}
        });
        let c = crate::compile_config(doc.to_string().as_bytes()).unwrap();
        let d = c.evaluate([("x-data-purpose", b"s".as_slice())]);
        assert!(c.body_needed(&d));
    }
}
