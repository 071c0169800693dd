//! What the filter tells clients and backends: local replies (blocks, refusals, no
//! configuration) and the decision header. None ever holds a personal-data value or the
//! user ID.

use serde::Serialize;

use crate::config::CompiledConfig;
use crate::decide::decision::{Decision, Outcome};
use crate::decide::reason::Reason;
use crate::decimal::push_decimal;
use crate::direction::{Direction, Mode};
use crate::policy::compiled::CompiledPolicy;
use crate::policy::routes::RouteTable;

#[derive(Serialize)]
struct BlockBody<'a> {
    error: &'a str,
    reason: &'a str,
    purpose: Option<&'a str>,
    policy: &'a str,
    policy_version: u32,
}

/// The JSON body of a block reply:
/// `{"error": ..., "reason": <code>, "purpose": <id or null>, "policy": ..., "policy_version": n}`.
///
/// `purpose` is set only when it is a purpose of the policy, so nothing the client sent
/// is echoed back.
pub fn block_body(policy: &CompiledPolicy, decision: &Decision) -> String {
    let body = BlockBody {
        error: decision.reason.message(),
        reason: decision.reason.as_str(),
        purpose: purpose_id(policy, decision),
        policy: &policy.id,
        policy_version: policy.version,
    };
    serde_json::to_string(&body).unwrap_or_else(|_| {
        String::from("{\"error\":\"blocked\",\"reason\":\"internal_error\",\"purpose\":null}")
    })
}

/// The value of the decision header, e.g.
/// `outcome=redact; reason=consent_granted; purpose=marketing.newsletters; party=tsunagu; party_kind=operator; rule=default; policy=saitama-minna-app; policy_version=1; redacted=device_id,location.gps`.
///
/// `party` is `-` for a caller no party claims (`party_kind=third_party`); `gpc=1` is added
/// when the request carried the signal.
pub fn decision_header_value(
    policy: &CompiledPolicy,
    rules: &RouteTable,
    decision: &Decision,
) -> String {
    let caller = decision.facts.caller;
    let party = caller
        .party
        .and_then(|p| policy.party(p))
        .map_or("-", |p| p.id.as_str());
    // Pushed piece by piece: this runs on every request, and `format!` here and in the bucket
    // key was about a seventh of the header path's instructions (callgrind, request_path).
    let mut out = String::with_capacity(512);
    for piece in [
        "outcome=",
        decision.outcome.as_str(),
        "; reason=",
        decision.reason.as_str(),
        "; purpose=",
        purpose_id(policy, decision).unwrap_or("-"),
        "; party=",
        party,
        "; party_kind=",
        caller.kind.as_str(),
        "; rule=",
        rules.rule(decision.facts.rule).name.as_str(),
    ] {
        out.push_str(piece);
    }
    if decision.facts.gpc {
        out.push_str("; gpc=1");
    }
    out.push_str("; policy=");
    out.push_str(&policy.id);
    out.push_str("; policy_version=");
    push_decimal(&mut out, u64::from(policy.version));
    if decision.outcome == Outcome::Redact {
        out.push_str("; redacted=");
        let mut first = true;
        for category in decision.redacted.iter() {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(policy.category_id(category));
        }
    }
    out
}

/// Status of the reply when the filter itself cannot evaluate a request.
pub const INTERNAL_ERROR_STATUS: u16 = 500;

/// A reply the filter sends in place of the backend: status, JSON body, and the decision
/// header (absent when there is no configuration to name one). To a gRPC call it is
/// gRPC-native instead: HTTP 200, no body, `grpc-status` and `grpc-message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u16,
    /// JSON body (empty for gRPC).
    pub body: String,
    /// The decision header's name and value.
    pub decision_header: Option<(String, String)>,
    /// The gRPC status of a reply to a gRPC call.
    pub grpc: Option<GrpcStatus>,
}

/// The status a gRPC client sees: `grpc-status` and `grpc-message` (the reason code), in a
/// trailers-only reply of the call's content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcStatus {
    /// `grpc-status`, as text (`7` PERMISSION_DENIED, `3` INVALID_ARGUMENT, ...).
    pub code: String,
    /// `grpc-message`: the reason code.
    pub message: &'static str,
    /// The call's `content-type` (`application/grpc` or `application/grpc-web`).
    pub content_type: &'static str,
}

impl GrpcStatus {
    /// The status for a block or refusal with `reason` in `direction`.
    pub fn of(reason: Reason, direction: Direction, content_type: &'static str) -> Self {
        GrpcStatus {
            code: reason.grpc_status(direction).to_string(),
            message: reason.as_str(),
            content_type,
        }
    }
}

impl LocalReply {
    /// The reply headers: JSON (or the gRPC call's type and status), never cached, and
    /// the decision header.
    pub fn headers(&self) -> Vec<(&str, &str)> {
        let mut headers = match &self.grpc {
            None => vec![("content-type", "application/json")],
            Some(grpc) => vec![
                ("content-type", grpc.content_type),
                ("grpc-status", grpc.code.as_str()),
                ("grpc-message", grpc.message),
            ],
        };
        headers.push(("cache-control", "no-store"));
        if let Some((name, value)) = &self.decision_header {
            headers.push((name.as_str(), value.as_str()));
        }
        headers
    }

    /// The same reply as a gRPC client must see it: HTTP 200, no body, the status in
    /// `grpc-status` / `grpc-message`.
    pub fn as_grpc(
        mut self,
        reason: Reason,
        direction: Direction,
        content_type: &'static str,
    ) -> Self {
        self.status = 200;
        self.body.clear();
        self.grpc = Some(GrpcStatus::of(reason, direction, content_type));
        self
    }
}

/// The reply to a blocked request (or a refused body), with `status`.
pub fn block_reply(config: &CompiledConfig, decision: &Decision, status: u16) -> LocalReply {
    LocalReply {
        status,
        body: block_body(&config.policy, decision),
        decision_header: Some((
            config.settings.decision_header.clone(),
            decision_header_value(&config.policy, &config.routes, decision),
        )),
        grpc: None,
    }
}

/// The reply when the filter has no configuration (it was rejected): fail closed.
pub fn not_configured_reply() -> LocalReply {
    LocalReply {
        status: INTERNAL_ERROR_STATUS,
        body: String::from(
            "{\"error\":\"the consent filter is not configured\",\"reason\":\"internal_error\",\"purpose\":null}",
        ),
        decision_header: None,
        grpc: None,
    }
}

/// The status of a refusal after the decision: 413 for size, 415 for bodies the filter
/// cannot read (an encoding, a format, two declared formats), 400 for a request that is
/// not the JSON or multipart it says, 502 for a response the filter cannot vouch
/// for, and the configured block status for forbidden data.
pub fn refusal_status(block_status: u16, reason: Reason, direction: Direction) -> u16 {
    match (reason, direction) {
        (Reason::ForbiddenDataPresent, _) => block_status,
        (_, Direction::Response) => 502,
        (Reason::BodyTooLarge, Direction::Request) => 413,
        (
            Reason::BodyEncodingUnsupported
            | Reason::BodyNotJson
            | Reason::BodyUnreadable
            | Reason::BodyTypeAmbiguous,
            Direction::Request,
        ) => 415,
        (
            Reason::BodyInvalidJson | Reason::BodyInvalidMultipart | Reason::BodyInvalidProtobuf,
            Direction::Request,
        ) => 400,
        _ => block_status,
    }
}

/// What the decision header says besides the decision: the mode, and whether a body
/// passed unread (a format the filter cannot read, with `body.unparsed: pass`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderNotes {
    /// Enforced or dry-run.
    pub mode: Mode,
    /// A body of the stream passed without being read.
    pub body_unread: bool,
}

impl From<Mode> for HeaderNotes {
    fn from(mode: Mode) -> Self {
        HeaderNotes {
            mode,
            body_unread: false,
        }
    }
}

/// The decision header as backends see it: in dry-run prefixed `mode=dry_run; `, so that
/// nobody mistakes a recorded decision for an enforced one, and ending `; body=unread`
/// when a body passed without being read. `notes` is a [`Mode`] or [`HeaderNotes`].
pub fn decision_header_for(
    policy: &CompiledPolicy,
    rules: &RouteTable,
    decision: &Decision,
    notes: impl Into<HeaderNotes>,
) -> String {
    let notes = notes.into();
    let value = decision_header_value(policy, rules, decision);
    let mut out = String::with_capacity(value.len() + 32);
    if notes.mode == Mode::DryRun {
        out.push_str("mode=");
        out.push_str(notes.mode.as_str());
        out.push_str("; ");
    }
    out.push_str(&value);
    if notes.body_unread {
        out.push_str("; body=unread");
    }
    out
}

fn purpose_id<'p>(policy: &'p CompiledPolicy, decision: &Decision) -> Option<&'p str> {
    decision
        .purpose
        .and_then(|idx| policy.purpose(idx))
        .map(|p| p.id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile_config;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn block_body_names_reason_and_purpose_but_not_the_user() {
        let c = compile_config(br#"{"caller": {"unidentified_party": "tsunagu"}}"#).unwrap();
        let h: [(&str, &[u8]); 2] = [
            ("x-user-id", b"u-secret-42"),
            ("x-data-purpose", b"surveys"),
        ];
        let d = c.evaluate(h);
        let body = block_body(&c.policy, &d);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["reason"], "consent_missing");
        assert_eq!(v["purpose"], "surveys");
        assert_eq!(v["policy_version"], 1);
        assert!(!body.contains("u-secret-42"));
    }

    #[test]
    fn an_unknown_purpose_is_not_echoed_back() {
        let c = compile_config(b"").unwrap();
        let h: [(&str, &[u8]); 2] = [("x-user-id", b"u"), ("x-data-purpose", b"<script>")];
        let body = block_body(&c.policy, &c.evaluate(h));
        assert!(!body.contains("script"));
        assert!(body.contains("\"purpose\":null"));
    }

    #[test]
    fn decision_header_lists_redacted_categories() {
        let c = compile_config(
            br#"{"caller": {"unidentified_party": "tsunagu"}, "consents": {"records": [{"subject": "u", "grants": {"marketing.newsletters": {"policy_version": 1}}}]}}"#,
        )
        .unwrap();
        let h: [(&str, &[u8]); 2] = [
            ("x-user-id", b"u"),
            ("x-data-purpose", b"marketing.newsletters"),
        ];
        let value = decision_header_value(&c.policy, &c.routes, &c.evaluate(h));
        assert!(value.starts_with("outcome=redact; reason=consent_granted; purpose=marketing.newsletters; party=tsunagu; party_kind=operator; rule=default; policy=saitama-minna-app; policy_version=1; redacted="), "{value}");
        assert!(value.contains("location.gps"));
        assert!(!value.contains("email"));
    }

    #[test]
    fn the_header_says_when_a_body_passed_unread() {
        let c = compile_config(br#"{"caller": {"unidentified_party": "tsunagu"}}"#).unwrap();
        let h: [(&str, &[u8]); 2] = [
            ("x-user-id", b"u"),
            ("x-data-purpose", b"service.improvement"),
        ];
        let d = c.evaluate(h);
        let plain = decision_header_for(&c.policy, &c.routes, &d, Mode::Enforce);
        assert_eq!(plain, decision_header_value(&c.policy, &c.routes, &d));
        assert!(!plain.contains("body="));
        let notes = HeaderNotes {
            mode: Mode::DryRun,
            body_unread: true,
        };
        let noted = decision_header_for(&c.policy, &c.routes, &d, notes);
        assert!(noted.starts_with("mode=dry_run; outcome="), "{noted}");
        assert!(noted.ends_with("; body=unread"), "{noted}");
    }
}
