//! The per-request context: decide on request headers, apply the plan to headers and
//! query, hand bodies to `body_flow`, and record everything for metrics and the decision
//! log. Any host failure blocks (fail closed), except in dry-run, where nothing is ever
//! changed and a failure is only recorded.

use std::rc::Rc;

use consent_core::body::BodyMode;
use consent_core::decide::{block_body, decision_header_value};
use consent_core::decide::{plan_request, plan_response, HeaderEdits};
use consent_core::decide::{Decision, Outcome};
use consent_core::observe::{safe_request_id, StreamFacts, Way};
use consent_core::{CompiledConfig, Reason};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, Status};

use crate::host::{self, Direction};
use crate::request_facts::HostFacts;
use crate::shared_snapshot::with_lookup;
use crate::{metrics, observe};

/// Status of the reply when the filter itself cannot evaluate a request.
const INTERNAL_ERROR_STATUS: u16 = 500;

/// State of one HTTP stream.
pub struct ConsentHttp {
    pub(crate) config: Option<Rc<CompiledConfig>>,
    pub(crate) decision: Option<Decision>,
    pub(crate) request_body: BodyMode,
    pub(crate) response_body: BodyMode,
    /// Decide and record, change nothing.
    pub(crate) dry_run: bool,
    /// What the stream did, for the decision log.
    pub(crate) stream: StreamFacts,
    /// The user ID, when decision logs are on: hashed at stream end for sampled lines only,
    /// never logged.
    user: Option<String>,
}

impl ConsentHttp {
    /// A context for one request; `config` is `None` only if configuration failed.
    pub fn new(config: Option<Rc<CompiledConfig>>) -> Self {
        ConsentHttp {
            config,
            decision: None,
            request_body: BodyMode::Skip,
            response_body: BodyMode::Skip,
            dry_run: false,
            stream: StreamFacts::default(),
            user: None,
        }
    }

    /// Answers locally with a JSON reason; the stream goes no further.
    fn reply(&mut self, config: &CompiledConfig, decision: &Decision, status: u16) -> Action {
        self.request_body = BodyMode::Skip;
        self.response_body = BodyMode::Skip;
        let body = block_body(&config.policy, decision);
        let header = decision_header_value(&config.policy, &config.routes, decision);
        observe::expose_decision(&header);
        let headers = vec![
            ("content-type", "application/json"),
            ("cache-control", "no-store"),
            (config.settings.decision_header.as_str(), header.as_str()),
        ];
        if let Err(status) = host::send_reply(status, headers, body.as_bytes()) {
            log::error!("consent filter: cannot send the block reply: {status:?}");
        }
        Action::Pause
    }

    /// Refuses the stream with `reason` after the decision (a body that cannot be checked,
    /// or holds a blocked category). In dry-run the refusal is only recorded.
    pub(crate) fn refuse(
        &mut self,
        config: &CompiledConfig,
        reason: Reason,
        direction: Direction,
    ) -> Action {
        metrics::refusal(reason, direction, self.dry_run);
        self.stream.refusal = Some((way(direction), reason));
        if self.dry_run {
            match direction {
                Direction::Request => self.request_body = BodyMode::Skip,
                Direction::Response => self.response_body = BodyMode::Skip,
            }
            return Action::Continue;
        }
        let purpose = self.decision.as_ref().and_then(|d| d.purpose);
        let mut decision = Decision::block(reason, purpose);
        if let Some(d) = &self.decision {
            decision = decision.with_facts(d.facts);
        }
        let status = refusal_status(config, reason, direction);
        self.reply(config, &decision, status)
    }

    /// The filter cannot do its job: block with `internal_error` (in dry-run: record it
    /// and let the request through unchanged).
    pub(crate) fn fail_closed(&mut self, config: &CompiledConfig, what: &str) -> Action {
        log::error!(
            "consent filter: {what}; {}",
            if self.dry_run {
                "dry-run: passing the request unchanged"
            } else {
                "blocking the request"
            }
        );
        self.stream.refusal = Some((Way::Request, Reason::InternalError));
        metrics::refusal(Reason::InternalError, Direction::Request, self.dry_run);
        if self.decision.is_none() {
            // Logged at stream end like any decision (blocks are always logged).
            self.decision = Some(Decision::block(Reason::InternalError, None));
        }
        if self.dry_run {
            self.request_body = BodyMode::Skip;
            self.response_body = BodyMode::Skip;
            return Action::Continue;
        }
        let decision = Decision::block(Reason::InternalError, None);
        self.reply(config, &decision, INTERNAL_ERROR_STATUS)
    }

    fn decide_request(
        &mut self,
        config: &CompiledConfig,
        headers: &host::Headers,
    ) -> Result<Decision, &'static str> {
        let facts = HostFacts::read(config).map_err(|_| "cannot read the caller or route")?;
        let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
        let decided = with_lookup(config, |lookup| {
            config.decide_request(pairs, &facts.caller(), &facts.route(), lookup)
        });
        if config.decision_log.enabled {
            // Kept only until the stream ends; hashed there, and only if the line is sampled.
            self.user = match decided.view.user {
                consent_core::HeaderValue::One(user) => Some(user.to_string()),
                _ => None,
            };
        }
        Ok(decided.decision)
    }

    fn header_value(&self, config: &CompiledConfig, decision: &Decision) -> String {
        let value = decision_header_value(&config.policy, &config.routes, decision);
        if self.dry_run {
            format!("mode=dry_run; {value}")
        } else {
            value
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

/// The decision log's name for a direction.
pub(crate) fn way(direction: Direction) -> Way {
    match direction {
        Direction::Request => Way::Request,
        Direction::Response => Way::Response,
    }
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
        // Until a rule is chosen, a failure passes unchanged only if every rule is dry-run.
        self.dry_run = config.routes.all_dry_run;
        let headers = match host::request_headers() {
            Ok(headers) => headers,
            Err(_) => return self.fail_closed(&config, "cannot read request headers"),
        };
        let decision = match self.decide_request(&config, &headers) {
            Ok(decision) => decision,
            Err(what) => return self.fail_closed(&config, what),
        };
        self.dry_run = config.dry_run(&decision);
        self.stream.dry_run = self.dry_run;
        if config.decision_log.enabled {
            self.stream.request_id = headers
                .iter()
                .find(|(n, _)| n == "x-request-id")
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
                .and_then(safe_request_id)
                .map(str::to_string);
        }
        metrics::decision(&config, &decision, self.dry_run);
        if decision.outcome == Outcome::Block && !self.dry_run {
            self.decision = Some(decision.clone());
            return self.reply(&config, &decision, config.settings.block_status);
        }
        let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
        let edits = plan_request(&config.policy, &decision, pairs);
        self.stream.removed.request_headers =
            edits.removed_count.saturating_sub(edits.removed_params);
        self.stream.removed.query_params = edits.removed_params;
        metrics::redactions(
            &config,
            edits.removed.iter(),
            Direction::Request,
            self.dry_run,
        );
        let header = self.header_value(&config, &decision);
        self.decision = Some(decision);
        let purpose = self
            .decision
            .as_ref()
            .and_then(|d| d.purpose)
            .and_then(|p| config.policy.purpose(p));
        if purpose.and_then(|p| p.blocks_any(edits.removed)).is_some() {
            let action = self.refuse(&config, Reason::ForbiddenDataPresent, Direction::Request);
            if !self.dry_run {
                return action;
            }
        }
        if !self.dry_run && apply_request_edits(&edits).is_err() {
            return self.fail_closed(&config, "cannot remove forbidden request data");
        }
        if host::set_request_header(&config.settings.decision_header, &header).is_err() {
            return self.fail_closed(&config, "cannot set the decision header");
        }
        observe::expose_decision(&header);
        let blocked_in_dry_run = self
            .decision
            .as_ref()
            .is_some_and(|d| d.outcome == Outcome::Block);
        if end_of_stream || blocked_in_dry_run {
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
        if decision.outcome == Outcome::Block
            || (!decision.redacts() && !config.body.has_elements())
        {
            return Action::Continue;
        }
        let headers = match host::response_headers() {
            Ok(headers) => headers,
            Err(_) => return self.fail_closed(&config, "cannot read response headers"),
        };
        let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
        let edits = plan_response(&config.policy, decision, pairs);
        self.stream.removed.response_headers = edits.removed_count;
        metrics::redactions(
            &config,
            edits.removed.iter(),
            Direction::Response,
            self.dry_run,
        );
        if !self.dry_run {
            for name in &edits.remove {
                if host::remove_response_header(name).is_err() {
                    return self.fail_closed(&config, "cannot remove forbidden response headers");
                }
            }
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

    fn on_log(&mut self) {
        if let (Some(config), Some(decision)) = (self.config.as_ref(), self.decision.as_ref()) {
            observe::log_decision(config, decision, self.user.as_deref(), &mut self.stream);
        }
    }
}
