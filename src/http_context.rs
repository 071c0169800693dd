//! The per-request context: decide on request headers, apply the plan to headers and
//! query, hand bodies to `body_flow`, and record everything for metrics and the decision
//! log. Any host failure blocks (fail closed), except in dry-run, where nothing is ever
//! changed and a failure is only recorded.

use std::rc::Rc;

use consent_core::body::BodyMode;
use consent_core::decide::{
    block_reply, decision_header_for, not_configured_reply, plan_request, plan_response,
    refusal_status, HeaderEdits, LocalReply, INTERNAL_ERROR_STATUS,
};
use consent_core::observe::{safe_request_id, StreamFacts};
use consent_core::{CompiledConfig, Decision, Direction, Mode, Outcome, Reason};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, Status};

use crate::host;
use crate::request_facts::HostFacts;
use crate::shared_snapshot::with_lookup;
use crate::{metrics, observe};

/// State of one HTTP stream.
pub struct ConsentHttp {
    pub(crate) config: Option<Rc<CompiledConfig>>,
    pub(crate) decision: Option<Decision>,
    /// What to do with each direction's body (by [`Direction::index`]).
    pub(crate) body: [BodyMode; 2],
    /// Decide and record, change nothing.
    pub(crate) mode: Mode,
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
            body: [BodyMode::Skip; 2],
            mode: Mode::Enforce,
            stream: StreamFacts::default(),
            user: None,
        }
    }

    /// Whether the stream only records (dry-run).
    pub(crate) fn dry_run(&self) -> bool {
        self.mode == Mode::DryRun
    }

    /// The body mode of one direction.
    pub(crate) fn body_mode(&mut self, direction: Direction) -> &mut BodyMode {
        // Both indexes exist: `Direction::index` is 0 or 1.
        let [request, response] = &mut self.body;
        match direction {
            Direction::Request => request,
            Direction::Response => response,
        }
    }

    /// Answers locally; the stream goes no further.
    fn send(&mut self, reply: &LocalReply) -> Action {
        self.body = [BodyMode::Skip; 2];
        if let Some((_, value)) = &reply.decision_header {
            observe::expose_decision(value);
        }
        if let Err(status) = host::send_reply(reply.status, reply.headers(), reply.body.as_bytes())
        {
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
        metrics::refusal(reason, direction, self.mode);
        self.stream.refusal = Some((direction, reason));
        if self.dry_run() {
            *self.body_mode(direction) = BodyMode::Skip;
            return Action::Continue;
        }
        let purpose = self.decision.as_ref().and_then(|d| d.purpose);
        let mut decision = Decision::block(reason, purpose);
        if let Some(d) = &self.decision {
            decision = decision.with_facts(d.facts);
        }
        let status = refusal_status(config.settings.block_status, reason, direction);
        self.send(&block_reply(config, &decision, status))
    }

    /// The filter cannot do its job: block with `internal_error` (in dry-run: record it
    /// and let the request through unchanged).
    pub(crate) fn fail_closed(&mut self, config: &CompiledConfig, what: &str) -> Action {
        log::error!(
            "consent filter: {what}; {}",
            if self.dry_run() {
                "dry-run: passing the request unchanged"
            } else {
                "blocking the request"
            }
        );
        self.stream.refusal = Some((Direction::Request, Reason::InternalError));
        metrics::refusal(Reason::InternalError, Direction::Request, self.mode);
        if self.decision.is_none() {
            // Logged at stream end like any decision (blocks are always logged).
            self.decision = Some(Decision::block(Reason::InternalError, None));
        }
        if self.dry_run() {
            self.body = [BodyMode::Skip; 2];
            return Action::Continue;
        }
        let decision = Decision::block(Reason::InternalError, None);
        self.send(&block_reply(config, &decision, INTERNAL_ERROR_STATUS))
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
            self.stream.request_id = host::header_str(headers, "x-request-id")
                .and_then(safe_request_id)
                .map(str::to_string);
        }
        Ok(decided.decision)
    }

    /// Records the header edits of one direction (stats, decision log).
    fn record_edits(&mut self, config: &CompiledConfig, edits: &HeaderEdits, direction: Direction) {
        let removed = &mut self.stream.removed;
        match direction {
            Direction::Request => {
                removed.request_headers = edits.removed_count.saturating_sub(edits.removed_params);
                removed.query_params = edits.removed_params;
            }
            Direction::Response => removed.response_headers = edits.removed_count,
        }
        metrics::redactions(config, edits.removed.iter(), direction, self.mode);
    }
}

fn apply_request_edits(edits: &HeaderEdits) -> Result<(), Status> {
    for name in &edits.remove {
        host::remove_header(Direction::Request, name)?;
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
            return self.send(&not_configured_reply());
        };
        // Until a rule is chosen, a failure passes unchanged only if every rule is dry-run.
        self.mode = Mode::of(config.routes.all_dry_run);
        let headers = match host::headers(Direction::Request) {
            Ok(headers) => headers,
            Err(_) => return self.fail_closed(&config, "cannot read request headers"),
        };
        let decision = match self.decide_request(&config, &headers) {
            Ok(decision) => decision,
            Err(what) => return self.fail_closed(&config, what),
        };
        self.mode = Mode::of(config.dry_run(&decision));
        self.stream.dry_run = self.dry_run();
        metrics::decision(&config, &decision, self.mode);
        if decision.outcome == Outcome::Block && !self.dry_run() {
            let reply = block_reply(&config, &decision, config.settings.block_status);
            self.decision = Some(decision);
            return self.send(&reply);
        }
        let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
        let edits = plan_request(&config.policy, &decision, pairs);
        self.record_edits(&config, &edits, Direction::Request);
        let header = decision_header_for(&config.policy, &config.routes, &decision, self.mode);
        let purpose = decision.purpose.and_then(|p| config.policy.purpose(p));
        let forbidden_present = purpose.and_then(|p| p.blocks_any(edits.removed)).is_some();
        let blocked_in_dry_run = decision.outcome == Outcome::Block;
        self.decision = Some(decision);
        if forbidden_present {
            let action = self.refuse(&config, Reason::ForbiddenDataPresent, Direction::Request);
            if !self.dry_run() {
                return action;
            }
        }
        if !self.dry_run() && apply_request_edits(&edits).is_err() {
            return self.fail_closed(&config, "cannot remove forbidden request data");
        }
        if host::set_request_header(&config.settings.decision_header, &header).is_err() {
            return self.fail_closed(&config, "cannot set the decision header");
        }
        observe::expose_decision(&header);
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
        let headers = match host::headers(Direction::Response) {
            Ok(headers) => headers,
            Err(_) => return self.fail_closed(&config, "cannot read response headers"),
        };
        let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
        let edits = plan_response(&config.policy, decision, pairs);
        self.record_edits(&config, &edits, Direction::Response);
        if !self.dry_run() {
            for name in &edits.remove {
                if host::remove_header(Direction::Response, name).is_err() {
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
