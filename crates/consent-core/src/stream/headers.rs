//! The header steps of a stream: decide on the request headers, and plan the edits of
//! both header maps.

use crate::body::BodyHeaders;
use crate::config::CompiledConfig;
use crate::decide::decision::Outcome;
use crate::decide::entry::ConsentLookup;
use crate::decide::header_plan::{plan_request, plan_response, HeaderEdits};
use crate::decide::reason::Reason;
use crate::decide::reply::{block_reply, decision_header_for, LocalReply};
use crate::decide::request::HeaderValue;
use crate::direction::{Direction, Mode};
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
        let decided = config.decide_request(headers.clone(), caller, route, lookup);
        let decision = decided.decision;
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
            return RequestStep::Reply(block_reply(
                config,
                &decision,
                config.settings.block_status,
            ));
        }
        let mut edits = plan_request(&config.policy, &decision, headers.clone());
        self.record_edits(&edits, Direction::Request);
        let header = decision_header_for(&config.policy, &config.routes, &decision, self.mode);
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
        RequestStep::Forward {
            edits,
            decision_header: (config.settings.decision_header.clone(), header),
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
        let mut edits = plan_response(&config.policy, &decision, headers.clone());
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

    /// Whether the response headers need reading at all: the request was forwarded and
    /// something may have to be removed from the response, or elements decided.
    pub fn reads_response(&self, config: &CompiledConfig) -> bool {
        self.decision.is_some_and(|d| {
            d.outcome != Outcome::Block && (d.redacts() || config.body.has_elements())
        })
    }

    /// Records the header edits of one direction (stats, decision log).
    fn record_edits(&mut self, edits: &HeaderEdits, direction: Direction) {
        let removed = &mut self.facts.removed;
        match direction {
            Direction::Request => {
                removed.request_headers = edits.removed_count.saturating_sub(edits.removed_params);
                removed.query_params = edits.removed_params;
            }
            Direction::Response => removed.response_headers = edits.removed_count,
        }
        self.stats.extend(
            edits
                .removed
                .iter()
                .map(|category| Stat::Redaction(direction, category)),
        );
    }

    /// Chooses the body mode of one direction from its headers.
    fn start_body<'h, I>(
        &mut self,
        config: &CompiledConfig,
        direction: Direction,
        headers: I,
    ) -> BodyStart
    where
        I: IntoIterator<Item = (&'h str, &'h [u8])>,
    {
        let Some(decision) = self.decision else {
            return BodyStart::None;
        };
        let facts = BodyHeaders::from_headers(headers);
        let mode = crate::body::body_mode(
            config.body_needed(&decision),
            &facts,
            config.body.max_bytes,
            config.body.encoded,
            config.body.unparsed,
        );
        self.begin_body(config, direction, mode)
    }
}
