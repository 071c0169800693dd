//! The header steps of a stream: decide on the request headers, and plan the edits of
//! both header maps.

use crate::body::{BodyFormat, BodyHeaders, BodyMode, UnparsedBody};
use crate::config::CompiledConfig;
use crate::decide::decision::{Decision, Outcome};
use crate::decide::entry::ConsentLookup;
use crate::decide::header_plan::HeaderEdits;
use crate::decide::reason::Reason;
use crate::decide::reply::LocalReply;
use crate::decide::request::HeaderValue;
use crate::direction::{Direction, Mode};
use crate::grpc::{grpc_content, Framing, GrpcContent};
use crate::ledger::{Draft, OnUnavailable};
use crate::observe::decision_log::safe_request_id;
use crate::policy::party::CallerFacts;
use crate::policy::routes::RouteFacts;
use crate::stream::body::BodyStart;
use crate::stream::{Stat, Stop, Stream};

/// What to do with the request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestStep {
    /// Answer locally (a block, or a refusal); the stream goes no further.
    Reply(LocalReply),
    /// Forward the request after these changes.
    Forward {
        /// Headers to remove and the new `:path` (empty in dry-run).
        edits: HeaderEdits,
        /// The decision header to set (name, value), replacing any client value.
        decision_header: (String, String),
        /// What to do about the body.
        body: BodyStart,
    },
}

/// What to do with the response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseStep {
    /// Nothing to change or read.
    Pass,
    /// Forward the response after these changes.
    Forward {
        /// Headers to remove (empty in dry-run).
        edits: HeaderEdits,
        /// What to do about the body.
        body: BodyStart,
    },
    /// Answer locally instead.
    Reply(LocalReply),
}

impl Stream {
    /// Decides on the request headers (lowercase names, every occurrence) and plans what
    /// to do. `caller` and `route` are what the host knows besides the headers; `lookup`
    /// finds the person's record.
    ///
    /// A host without a ledger drainer: with `ledger.enabled` every provision the ledger
    /// would record finds it unavailable (see [`Stream::on_request_headers_with_ledger`]).
    pub fn on_request_headers<'h, I>(
        &mut self,
        config: &CompiledConfig,
        headers: I,
        caller: &CallerFacts<'_>,
        route: &RouteFacts<'_>,
        lookup: &(impl ConsentLookup + ?Sized),
        end_of_stream: bool,
    ) -> RequestStep
    where
        I: IntoIterator<Item = (&'h str, &'h [u8])> + Clone,
    {
        self.on_request_headers_with_ledger(
            config,
            headers,
            caller,
            route,
            lookup,
            end_of_stream,
            || false,
        )
    }

    /// [`Stream::on_request_headers`] with the provision ledger: `ledger_available` is
    /// asked only for a provision to a third party or joint user under `ledger.enabled`.
    /// While it says no, such a provision is blocked with `ledger_unavailable`
    /// (`ledger.on_unavailable: block`) or passes unrecorded (`pass`).
    #[allow(clippy::too_many_arguments)]
    pub fn on_request_headers_with_ledger<'h, I>(
        &mut self,
        config: &CompiledConfig,
        headers: I,
        caller: &CallerFacts<'_>,
        route: &RouteFacts<'_>,
        lookup: &(impl ConsentLookup + ?Sized),
        end_of_stream: bool,
        ledger_available: impl FnOnce() -> bool,
    ) -> RequestStep
    where
        I: IntoIterator<Item = (&'h str, &'h [u8])> + Clone,
    {
        for (name, value) in headers.clone() {
            match name {
                "content-type" => {
                    if let Some(content) = grpc_content(value) {
                        self.grpc_call = Some(match content {
                            GrpcContent::Proto(Framing::GrpcWeb) => "application/grpc-web",
                            _ => "application/grpc",
                        });
                    }
                }
                ":path" => self.path = std::str::from_utf8(value).ok().map(str::to_string),
                name if name == config.settings.decision_header => {
                    self.decision_header_sent = true;
                }
                _ => {}
            }
        }
        let decided = config.decide_request(headers.clone(), caller, route, lookup);
        let mut decision = decided.decision;
        if config.ledger.enabled && crate::ledger::is_recorded(&decision.facts.caller) {
            self.ledger = Draft::of(
                &decision,
                match decided.view.user {
                    HeaderValue::One(user) => Some(user),
                    _ => None,
                },
                headers
                    .clone()
                    .into_iter()
                    .find(|(n, _)| *n == "x-request-id")
                    .and_then(|(_, v)| std::str::from_utf8(v).ok())
                    .and_then(safe_request_id),
                caller,
            );
            if let Some(draft) = self.ledger.as_mut() {
                if !ledger_available() {
                    draft.unrecorded = true;
                    if decision.outcome != Outcome::Block
                        && config.ledger.on_unavailable == OnUnavailable::Block
                    {
                        decision = Decision::block(Reason::LedgerUnavailable, decision.purpose)
                            .with_facts(decision.facts);
                    }
                }
            }
        }
        if config.decision_log.enabled {
            // Kept only until the stream ends; hashed there, and only if the line is sampled.
            self.user = match decided.view.user {
                HeaderValue::One(user) => Some(user.to_string()),
                _ => None,
            };
            self.facts.request_id = headers
                .clone()
                .into_iter()
                .find(|(n, _)| *n == "x-request-id")
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
                .and_then(safe_request_id)
                .map(str::to_string);
        }
        self.mode = Mode::of(config.dry_run(&decision));
        self.facts.dry_run = self.dry_run();
        self.stats.push(Stat::Decision(decision));
        if decision.outcome == Outcome::Block && !self.dry_run() {
            self.decision = Some(decision);
            return RequestStep::Reply(self.reply(
                config,
                &decision,
                config.settings.block_status,
                Direction::Request,
            ));
        }
        let mut edits = config.plan_request(&decision, headers.clone());
        self.record_edits(&edits, Direction::Request);
        let purpose = decision.purpose.and_then(|p| config.policy.purpose(p));
        let forbidden_present = purpose.and_then(|p| p.blocks_any(edits.removed)).is_some();
        let blocked_in_dry_run = decision.outcome == Outcome::Block;
        self.decision = Some(decision);
        if forbidden_present {
            if let Stop::Reply(reply) =
                self.refuse(config, Reason::ForbiddenDataPresent, Direction::Request)
            {
                return RequestStep::Reply(reply);
            }
        }
        if self.dry_run() {
            edits = HeaderEdits::default();
        }
        let body = if end_of_stream || blocked_in_dry_run {
            BodyStart::None
        } else {
            self.start_body(config, Direction::Request, headers)
        };
        // After the body start: a body that will pass unread is already said to.
        let decision_header = self.decision_header(config).unwrap_or_default();
        self.header_said_unread = self.facts.body_unread.first().copied().unwrap_or(false);
        RequestStep::Forward {
            edits,
            decision_header,
            body,
        }
    }

    /// Plans the response headers of a forwarded request.
    pub fn on_response_headers<'h, I>(
        &mut self,
        config: &CompiledConfig,
        headers: I,
        end_of_stream: bool,
    ) -> ResponseStep
    where
        I: IntoIterator<Item = (&'h str, &'h [u8])> + Clone,
    {
        let Some(decision) = self.decision else {
            return ResponseStep::Pass;
        };
        if !self.reads_response(config) {
            return ResponseStep::Pass;
        }
        let mut edits = config.plan_response(&decision, headers.clone());
        self.record_edits(&edits, Direction::Response);
        if self.dry_run() {
            edits = HeaderEdits::default();
        }
        let body = if end_of_stream {
            BodyStart::None
        } else {
            self.start_body(config, Direction::Response, headers)
        };
        if let BodyStart::Refuse(reply) = body {
            return ResponseStep::Reply(reply);
        }
        ResponseStep::Forward { edits, body }
    }

    /// Whether the response headers need reading at all (one host call that copies the
    /// whole map): the request was forwarded and something in the response may have to
    /// go or be checked. That is when the decision removes a category that headers or
    /// `Set-Cookie` can carry, when the body must be checked (it needs the content type,
    /// encoding and length), or when a gRPC response of this call would be walked or
    /// refused. Otherwise reading them would plan nothing: no edit, no body, no stat.
    pub fn reads_response(&self, config: &CompiledConfig) -> bool {
        self.decision.is_some_and(|d| {
            d.outcome != Outcome::Block
                && (d.redacts() || config.body.has_elements())
                && (config.body_needed(&d)
                    || (d.redacts() && d.redacted.intersects(config.policy.header_borne))
                    || config.grpc_plan(&d, self.path.as_deref(), Direction::Response)
                        != crate::grpc::GrpcPlan::Skip)
        })
    }

    /// Records the header edits of one direction (stats, decision log).
    fn record_edits(&mut self, edits: &HeaderEdits, direction: Direction) {
        let removed = &mut self.facts.removed;
        match direction {
            Direction::Request => {
                removed.request_headers = edits.removed_count.saturating_sub(edits.removed_params);
                removed.query_params = edits.removed_params;
                removed.request_cookies = edits.removed_cookies;
            }
            Direction::Response => {
                removed.response_headers = edits.removed_count;
                removed.response_cookies = edits.removed_cookies;
            }
        }
        self.stats.extend(
            edits
                .removed
                .iter()
                .map(|category| Stat::Redaction(direction, category)),
        );
    }

    /// Chooses what to do with one direction's body from its headers: walk gRPC messages
    /// as they pass, buffer and enforce the body, or let it flow.
    fn start_body<'h, I>(
        &mut self,
        config: &CompiledConfig,
        direction: Direction,
        headers: I,
    ) -> BodyStart
    where
        I: IntoIterator<Item = (&'h str, &'h [u8])> + Clone,
    {
        let Some(decision) = self.decision else {
            return BodyStart::None;
        };
        let mut grpc = None;
        let mut grpc_encoding = None;
        for (name, value) in headers.clone() {
            match name {
                "content-type" => grpc = grpc.or(grpc_content(value)),
                "grpc-encoding" => grpc_encoding = Some(value),
                _ => {}
            }
        }
        if let Some(content) = grpc {
            return self.start_grpc(config, direction, content, grpc_encoding);
        }
        let facts = BodyHeaders::from_headers(headers);
        if let Some(slot) = self.body_headers.get_mut(direction.index()) {
            *slot = facts;
        }
        let mode = crate::body::body_mode(
            config.body_needed(&decision),
            &facts,
            config.body.max_bytes,
            config.body.encoded,
            config.body.unparsed,
        );
        if mode == BodyMode::Refuse(Reason::BodyTooLarge) && self.passes_unread(config, &facts) {
            // Too large to read, and of a kind the filter could not read anyway: it
            // passes, said to be unread.
            self.mark_unread(direction);
            return BodyStart::None;
        }
        self.begin_body(config, direction, mode)
    }

    /// Whether a body of this kind that cannot be read passes (marked unread): it declares
    /// no format the filter reads, and `body.unparsed` is `pass`.
    pub(crate) fn passes_unread(&self, config: &CompiledConfig, facts: &BodyHeaders) -> bool {
        config.body.unparsed == UnparsedBody::Pass
            && matches!(
                facts.format,
                BodyFormat::Undeclared | BodyFormat::Other | BodyFormat::Grpc
            )
    }

    /// Records that a body of `direction` passed without being read.
    pub(crate) fn mark_unread(&mut self, direction: Direction) {
        if let Some(flag) = self.facts.body_unread.get_mut(direction.index()) {
            *flag = true;
        }
    }
}
