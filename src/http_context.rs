//! The per-request context: decide on request headers, apply the plan to headers, query
//! and JSON bodies on the way in and on the way out. Any host failure blocks (fail closed).

use std::rc::Rc;

use consent_core::body::redactor::{redact, BodyOutcome, BodyReport, BodyRules, ElementRules};
use consent_core::body::transform::CivilDate;
use consent_core::body::{body_mode, BodyHeaders, BodyMode};
use consent_core::config::{FailureMode, SnapshotSource};
use consent_core::decision::decide_without_snapshot;
use consent_core::decision::{Decision, Outcome};
use consent_core::header_plan::{plan_request, plan_response, HeaderEdits};
use consent_core::party::{CallerFacts, CallerFrom};
use consent_core::reply::{block_body, decision_header_value};
use consent_core::routes::RouteFacts;
use consent_core::{CompiledConfig, Reason, RequestContext, RequestView};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, Status};

use crate::host::{self, Direction};
use crate::shared_snapshot::{self, Lookup};

/// Reads what the caller resolution and the route rules need from the host: peer
/// certificate SANs or the destination cluster, the route name, host and path.
fn request_context(
    config: &CompiledConfig,
    headers: &[(String, Vec<u8>)],
) -> Result<RequestContext, proxy_wasm::types::Status> {
    let (uri_san, dns_san, cluster) = match config.caller.from {
        CallerFrom::PeerCertificate => (
            host::string_property(&["connection", "uri_san_peer_certificate"])?,
            host::string_property(&["connection", "dns_san_peer_certificate"])?,
            None,
        ),
        CallerFrom::UpstreamCluster => {
            (None, None, host::string_property(&["xds", "cluster_name"])?)
        }
    };
    let route_name = if config.routes.uses_route_name {
        host::string_property(&["xds", "route_name"])?
    } else {
        None
    };
    let pseudo = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    };
    let (host_name, path) = if config.routes.uses_host_or_path {
        (pseudo(":authority"), pseudo(":path"))
    } else {
        (None, None)
    };
    let caller = CallerFacts {
        uri_san: uri_san.as_deref(),
        dns_san: dns_san.as_deref(),
        cluster: cluster.as_deref(),
        ..CallerFacts::default()
    };
    let route = RouteFacts {
        route_name: route_name.as_deref(),
        host: host_name,
        path,
    };
    let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
    Ok(config.context(&caller, &route, pairs))
}

/// Decides a request view against the configured snapshot source.
fn decide_view(config: &CompiledConfig, view: &RequestView<'_>) -> Decision {
    if config.snapshot.source == SnapshotSource::Inline {
        return config.decide(view);
    }
    let user = match view.user {
        consent_core::HeaderValue::One(u) => Some(u),
        _ => None,
    };
    match shared_snapshot::lookup(config, user) {
        Lookup::Record(record) => config.decide_with_record(view, record.as_ref()),
        Lookup::Fault(reason) => decide_without_snapshot(
            view,
            &config.policy,
            &config.enforcement(view),
            reason,
            config.snapshot.failure_mode == FailureMode::Strip,
        ),
    }
}

/// Status of the reply when the filter itself cannot evaluate a request.
const INTERNAL_ERROR_STATUS: u16 = 500;

/// State of one HTTP stream.
pub struct ConsentHttp {
    config: Option<Rc<CompiledConfig>>,
    decision: Option<Decision>,
    request_body: BodyMode,
    response_body: BodyMode,
}

impl ConsentHttp {
    /// A context for one request; `config` is `None` only if configuration failed.
    pub fn new(config: Option<Rc<CompiledConfig>>) -> Self {
        ConsentHttp {
            config,
            decision: None,
            request_body: BodyMode::Skip,
            response_body: BodyMode::Skip,
        }
    }

    /// Answers locally with a JSON reason; the stream goes no further.
    fn reply(&mut self, config: &CompiledConfig, decision: &Decision, status: u16) -> Action {
        self.request_body = BodyMode::Skip;
        self.response_body = BodyMode::Skip;
        let body = block_body(&config.policy, decision);
        let header = decision_header_value(&config.policy, &config.routes, decision);
        let headers = vec![
            ("content-type", "application/json"),
            ("cache-control", "no-store"),
            (config.settings.decision_header.as_str(), header.as_str()),
        ];
        log::debug!(
            "consent decision: outcome=block reason={} purpose={} status={status}",
            decision.reason.as_str(),
            purpose_label(config, decision)
        );
        if let Err(status) = host::send_reply(status, headers, body.as_bytes()) {
            log::error!("consent filter: cannot send the block reply: {status:?}");
        }
        Action::Pause
    }

    /// Blocks with `reason`, keeping the purpose of the request's decision.
    fn refuse(&mut self, config: &CompiledConfig, reason: Reason, direction: Direction) -> Action {
        let purpose = self.decision.as_ref().and_then(|d| d.purpose);
        let decision = Decision::block(reason, purpose);
        let status = refusal_status(config, reason, direction);
        self.reply(config, &decision, status)
    }

    fn fail_closed(&mut self, config: &CompiledConfig, what: &str) -> Action {
        log::error!("consent filter: {what}; blocking the request");
        let decision = Decision::block(Reason::InternalError, None);
        self.reply(config, &decision, INTERNAL_ERROR_STATUS)
    }

    /// Chooses the body mode from the headers of one direction; pauses when the body must
    /// be read (content-length goes, as the body may change).
    fn start_body(
        &mut self,
        config: &CompiledConfig,
        direction: Direction,
        headers: &host::Headers,
    ) -> Action {
        let Some(decision) = self.decision.as_ref() else {
            return Action::Continue;
        };
        let facts =
            BodyHeaders::from_headers(headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
        let mode = body_mode(
            config.body_needed(decision),
            &facts,
            config.body.max_bytes,
            config.body.encoded,
            config.body.unparsed,
        );
        match mode {
            BodyMode::Skip => Action::Continue,
            BodyMode::Refuse(reason) => self.refuse(config, reason, direction),
            BodyMode::Redact | BodyMode::Sniff | BodyMode::Strip => {
                let mut result = host::remove_header(direction, "content-length");
                if mode == BodyMode::Strip {
                    result =
                        result.and_then(|()| host::remove_header(direction, "content-encoding"));
                }
                if result.is_err() {
                    return self.fail_closed(config, "cannot prepare the body for rewriting");
                }
                match direction {
                    Direction::Request => self.request_body = mode,
                    Direction::Response => self.response_body = mode,
                }
                Action::Pause
            }
        }
    }

    /// Buffers a body until its end, then rewrites or refuses it.
    fn on_body(&mut self, direction: Direction, body_size: usize, end_of_stream: bool) -> Action {
        if !self.reading(direction) {
            return Action::Continue;
        }
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        if body_size > config.body.max_bytes {
            return self.refuse(&config, Reason::BodyTooLarge, direction);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.finish_body(&config, direction, body_size)
    }

    /// Whether the body of `direction` is being buffered for a rewrite.
    fn reading(&self, direction: Direction) -> bool {
        let mode = match direction {
            Direction::Request => self.request_body,
            Direction::Response => self.response_body,
        };
        matches!(mode, BodyMode::Redact | BodyMode::Sniff | BodyMode::Strip)
    }

    /// Trailers end the body: finish it now (Envoy's decompressor, for one, adds trailers).
    fn on_trailers(&mut self, direction: Direction) -> Action {
        if !self.reading(direction) {
            return Action::Continue;
        }
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        self.finish_body(&config, direction, usize::MAX)
    }

    /// Reads the whole buffered body (at most `size` bytes) and rewrites, strips or refuses it.
    fn finish_body(
        &mut self,
        config: &CompiledConfig,
        direction: Direction,
        size: usize,
    ) -> Action {
        let mode = match direction {
            Direction::Request => std::mem::replace(&mut self.request_body, BodyMode::Skip),
            Direction::Response => std::mem::replace(&mut self.response_body, BodyMode::Skip),
        };
        let body = match host::body(direction, size) {
            Ok(body) => body,
            Err(_) => return self.fail_closed(config, "cannot read the body"),
        };
        if body.len() > config.body.max_bytes {
            return self.refuse(config, Reason::BodyTooLarge, direction);
        }
        if mode == BodyMode::Strip {
            return match host::replace_body(direction, body.len(), b"") {
                Ok(()) => Action::Continue,
                Err(_) => self.fail_closed(config, "cannot strip the body"),
            };
        }
        match self.redact_body(config, &body) {
            Ok((BodyOutcome::Unchanged, _)) => Action::Continue,
            Ok((BodyOutcome::Rewritten(new_body), report)) => {
                log::debug!(
                    "consent body: direction={direction:?} removed={} transformed={} dropped_elements={} bytes_in={} bytes_out={}",
                    report.removed,
                    report.transformed,
                    report.dropped_elements,
                    body.len(),
                    new_body.len()
                );
                match host::replace_body(direction, body.len(), &new_body) {
                    Ok(()) => Action::Continue,
                    Err(_) => self.fail_closed(config, "cannot replace the body"),
                }
            }
            Ok((BodyOutcome::Blocked(category), _)) => {
                log::debug!(
                    "consent body: direction={direction:?} blocked on category {}",
                    config.policy.category_id(category)
                );
                self.refuse(config, Reason::ForbiddenDataPresent, direction)
            }
            // An undeclared body that is not JSON carries no fields to find.
            Err(_) if mode == BodyMode::Sniff => Action::Continue,
            Err(_) => self.refuse(config, Reason::BodyInvalidJson, direction),
        }
    }

    fn redact_body(
        &self,
        config: &CompiledConfig,
        body: &[u8],
    ) -> Result<(BodyOutcome, BodyReport), consent_core::body::scan::JsonError> {
        let Some(decision) = self.decision.as_ref() else {
            return Ok((BodyOutcome::Unchanged, BodyReport::default()));
        };
        let actions = decision
            .purpose
            .and_then(|p| config.policy.purpose(p))
            .map_or(&[][..], |p| p.actions.as_slice());
        let rules = BodyRules {
            matcher: config.matcher(decision),
            actions,
            coarsen: &config.policy.coarsen,
            key: config.key.as_deref(),
            today: CivilDate::from_unix_seconds(host::unix_seconds()),
        };
        let forbidden = if decision.outcome == Outcome::Redact {
            decision.redacted
        } else {
            consent_core::categories::CategorySet::EMPTY
        };
        match (config.body.has_elements(), decision.purpose) {
            (true, Some(_)) => {
                let element_rules = ElementRules {
                    elements: &config.body.elements,
                    subject_paths: &config.body.subject_paths,
                };
                let mut verdict = |subject: Option<&str>| {
                    config.element_verdict_with(decision, subject, |view| decide_view(config, view))
                };
                redact(
                    body,
                    &rules,
                    forbidden,
                    Some((&element_rules, &mut verdict)),
                )
            }
            _ => redact(body, &rules, forbidden, None),
        }
    }
}

/// The status of a refusal: 413 for size, 415 for unreadable bodies, 400 for a request
/// that is not the JSON it says, 502 for a response the filter cannot vouch for.
fn refusal_status(config: &CompiledConfig, reason: Reason, direction: Direction) -> u16 {
    match (reason, direction) {
        (Reason::ForbiddenDataPresent, _) => config.settings.block_status,
        (_, Direction::Response) => 502,
        (Reason::BodyTooLarge, Direction::Request) => 413,
        (Reason::BodyEncodingUnsupported | Reason::BodyNotJson, Direction::Request) => 415,
        (Reason::BodyInvalidJson, Direction::Request) => 400,
        _ => config.settings.block_status,
    }
}

fn purpose_label<'c>(config: &'c CompiledConfig, decision: &Decision) -> &'c str {
    decision
        .purpose
        .and_then(|p| config.policy.purpose(p))
        .map_or("-", |p| p.id.as_str())
}

fn apply_request_edits(edits: &HeaderEdits) -> Result<(), Status> {
    for name in &edits.remove {
        host::remove_request_header(name)?;
    }
    if let Some(path) = &edits.new_path {
        host::set_request_header(":path", path)?;
    }
    Ok(())
}

impl Context for ConsentHttp {}

impl HttpContext for ConsentHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            log::error!("consent filter: no configuration; blocking the request");
            let _ = host::send_reply(
                INTERNAL_ERROR_STATUS,
                vec![("content-type", "application/json")],
                b"{\"error\":\"the consent filter is not configured\",\"reason\":\"internal_error\",\"purpose\":null}",
            );
            return Action::Pause;
        };
        let headers = match host::request_headers() {
            Ok(headers) => headers,
            Err(_) => return self.fail_closed(&config, "cannot read request headers"),
        };
        let pairs = || headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
        let context = match request_context(&config, &headers) {
            Ok(context) => context,
            Err(_) => return self.fail_closed(&config, "cannot read the caller or route"),
        };
        let view = RequestView::from_headers(
            &config.settings.user_header,
            &config.settings.purpose_header,
            pairs(),
        )
        .with_context(context);
        let decision = decide_view(&config, &view);
        if decision.outcome == Outcome::Block {
            return self.reply(&config, &decision, config.settings.block_status);
        }
        let edits = plan_request(&config.policy, &decision, pairs());
        let purpose = decision.purpose.and_then(|p| config.policy.purpose(p));
        if purpose.and_then(|p| p.blocks_any(edits.removed)).is_some() {
            self.decision = Some(decision);
            return self.refuse(&config, Reason::ForbiddenDataPresent, Direction::Request);
        }
        if apply_request_edits(&edits).is_err() {
            return self.fail_closed(&config, "cannot remove forbidden request data");
        }
        let header = decision_header_value(&config.policy, &config.routes, &decision);
        if host::set_request_header(&config.settings.decision_header, &header).is_err() {
            return self.fail_closed(&config, "cannot set the decision header");
        }
        log::debug!(
            "consent decision: outcome={} reason={} purpose={} removed_from_request={}",
            decision.outcome.as_str(),
            decision.reason.as_str(),
            purpose_label(&config, &decision),
            edits.removed_count
        );
        self.decision = Some(decision);
        if end_of_stream {
            return Action::Continue;
        }
        self.start_body(&config, Direction::Request, &headers)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Request, body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.on_trailers(Direction::Request)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let (Some(config), Some(decision)) = (self.config.clone(), self.decision.as_ref()) else {
            return Action::Continue;
        };
        if !decision.redacts() && !config.body.has_elements() {
            return Action::Continue;
        }
        let headers = match host::response_headers() {
            Ok(headers) => headers,
            Err(_) => return self.fail_closed(&config, "cannot read response headers"),
        };
        let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
        let edits = plan_response(&config.policy, decision, pairs);
        for name in &edits.remove {
            if host::remove_response_header(name).is_err() {
                return self.fail_closed(&config, "cannot remove forbidden response headers");
            }
        }
        if edits.removed_count > 0 {
            log::debug!(
                "consent decision: removed_from_response={}",
                edits.removed_count
            );
        }
        if end_of_stream {
            return Action::Continue;
        }
        self.start_body(&config, Direction::Response, &headers)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Response, body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.on_trailers(Direction::Response)
    }
}
