//! One HTTP stream, host-free: what the filter does at each step of a request and its
//! response, as plans the host carries out. The proxy-wasm glue (and any other host) only
//! reads what the stream asks for, executes the returned steps, reports host failures
//! back with [`Stream::fail_closed`], and turns [`Stat`]s into its own counters.
//!
//! The order of the checks is the filter's contract: decide on the request headers; block,
//! or remove forbidden headers and query parameters and set the decision header; then read
//! the bodies a decision needs, in both directions, and rewrite, strip or refuse them. In
//! dry-run every step is decided and recorded, and nothing is changed.

mod body;
mod grpc;
mod headers;
#[cfg(test)]
mod ledger_tests;
#[cfg(test)]
mod tests;

pub use body::{BodyStart, BodyStep};
pub use grpc::{ChunkStep, TrailerStep};
pub use headers::{RequestStep, ResponseStep};

use crate::body::{BodyHeaders, BodyMode, CivilDate};
use crate::config::CompiledConfig;
use crate::decide::decision::Decision;
use crate::decide::reason::Reason;
use crate::decide::reply::{block_reply, LocalReply, INTERNAL_ERROR_STATUS};
use crate::decide::reply::{decision_header_for, HeaderNotes};
use crate::direction::{Direction, Mode};
use crate::grpc::GrpcStream;
use crate::observe::decision_log::{log_line, StreamFacts};
use crate::policy::categories::CategoryIdx;

/// A counter event the host adds to its stats (labels come from the policy and reason
/// codes only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// One decision on request headers.
    Decision(Decision),
    /// A category removed (or, in dry-run, that would be) in one direction.
    Redaction(Direction, CategoryIdx),
    /// A refusal after the decision.
    Refusal(Direction, Reason),
    /// Body bytes inspected.
    BodyBytes(Direction, usize),
}

/// What the host does after a failure of its own, or a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Send this reply; the stream goes no further.
    Reply(LocalReply),
    /// Dry-run: let the message through unchanged.
    Continue,
}

/// The state of one stream.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    decision: Option<Decision>,
    mode: Mode,
    body: [BodyMode; 2],
    /// What each direction's headers say about its body (format, encoding, length).
    body_headers: [BodyHeaders; 2],
    /// The request is a gRPC call: replies are gRPC-native, in this content type.
    grpc_call: Option<&'static str>,
    /// The request's `:path` (a gRPC call's method).
    path: Option<String>,
    /// The gRPC message stream of each direction, while one is walked.
    grpc: [Option<GrpcStream>; 2],
    /// A gRPC response refused after its headers went on: the rest of its messages are
    /// dropped and its trailers carry this status.
    grpc_refused: Option<Reason>,
    /// The decision header sent said `body=unread`.
    header_said_unread: bool,
    /// The request came with a decision header of its own.
    decision_header_sent: bool,
    facts: StreamFacts,
    user: Option<String>,
    stats: Vec<Stat>,
    /// A provision the ledger records: what the record needs, kept until the stream ends.
    ledger: Option<crate::ledger::Draft>,
}

/// What the ledger gets from a finished stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerEmit {
    /// Nothing: not a provision the ledger records.
    Nothing,
    /// This record (compact JSON), to queue for the drainer.
    Record(Vec<u8>),
    /// A provision went ahead unrecorded: the ledger was unavailable and
    /// `ledger.on_unavailable` is `pass` (or the stream was in dry-run).
    Unrecorded,
}

impl Stream {
    /// A new stream under `config`: until a rule is chosen, a failure passes unchanged only
    /// if every rule is dry-run.
    pub fn new(config: &CompiledConfig) -> Self {
        Stream {
            mode: Mode::of(config.routes.all_dry_run),
            body: [BodyMode::Skip; 2],
            ..Stream::default()
        }
    }

    /// The decision on the request headers, once made.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }

    /// Enforce or dry-run.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the request came with a decision header of its own, which the host must
    /// replace; without one it can add the decision header, which Envoy does for a
    /// fraction of a replace's cost (about 600 against 4,300 instructions natively).
    pub fn decision_header_sent(&self) -> bool {
        self.decision_header_sent
    }

    /// What the stream did so far, for the decision log.
    pub fn facts(&self) -> &StreamFacts {
        &self.facts
    }

    /// The stats events since the last call.
    pub fn take_stats(&mut self) -> Vec<Stat> {
        std::mem::take(&mut self.stats)
    }

    fn dry_run(&self) -> bool {
        self.mode == Mode::DryRun
    }

    fn body_mode(&mut self, direction: Direction) -> &mut BodyMode {
        let [request, response] = &mut self.body;
        match direction {
            Direction::Request => request,
            Direction::Response => response,
        }
    }

    /// Today's date for the body transforms of this stream's decision: asked of the host
    /// (`today`) only when a transform reads it.
    fn today(&self, config: &CompiledConfig, today: impl FnOnce() -> CivilDate) -> CivilDate {
        match &self.decision {
            Some(decision) if config.needs_today(decision) => today(),
            _ => CivilDate::UNIX_EPOCH,
        }
    }

    /// The host could not do what a step asked (read headers, remove a header, replace a
    /// body, ...): block with `internal_error`, or, in dry-run, record it and go on. The
    /// host logs what failed (never a value).
    pub fn fail_closed(&mut self, config: &CompiledConfig) -> Stop {
        self.facts.refusal = Some((Direction::Request, Reason::InternalError));
        self.stats
            .push(Stat::Refusal(Direction::Request, Reason::InternalError));
        if self.decision.is_none() {
            // Logged at stream end like any decision (blocks are always logged).
            self.decision = Some(Decision::block(Reason::InternalError, None));
        }
        self.body = [BodyMode::Skip; 2];
        if self.dry_run() {
            return Stop::Continue;
        }
        let decision = Decision::block(Reason::InternalError, None);
        Stop::Reply(self.reply(config, &decision, INTERNAL_ERROR_STATUS, Direction::Request))
    }

    /// A block reply for `decision`: JSON with `status`, or gRPC-native to a gRPC call.
    fn reply(
        &self,
        config: &CompiledConfig,
        decision: &Decision,
        status: u16,
        direction: Direction,
    ) -> LocalReply {
        let reply = block_reply(config, decision, status);
        match self.grpc_call {
            Some(content_type) => reply.as_grpc(decision.reason, direction, content_type),
            None => reply,
        }
    }

    /// The decision header again, when it must now say `body=unread` and the one the host
    /// set did not (the request body was checked while its headers were held).
    pub fn header_update(&mut self, config: &CompiledConfig) -> Option<(String, String)> {
        let unread = self.facts.body_unread.first().copied().unwrap_or(false);
        if unread && !self.header_said_unread && config.body.hold_headers {
            self.header_said_unread = true;
            return self.decision_header(config);
        }
        None
    }

    /// The decision header as it stands now (dry-run mark, `body=unread`).
    pub fn decision_header(&self, config: &CompiledConfig) -> Option<(String, String)> {
        let decision = self.decision.as_ref()?;
        let notes = HeaderNotes {
            mode: self.mode,
            body_unread: self.facts.body_unread.iter().any(|u| *u),
        };
        Some((
            config.settings.decision_header.clone(),
            decision_header_for(&config.policy, &config.routes, decision, notes),
        ))
    }

    /// Refuses the stream with `reason` after the decision (a body that cannot be checked,
    /// or holds a blocked category). In dry-run the refusal is only recorded.
    fn refuse(&mut self, config: &CompiledConfig, reason: Reason, direction: Direction) -> Stop {
        self.stats.push(Stat::Refusal(direction, reason));
        self.facts.refusal = Some((direction, reason));
        if self.dry_run() {
            *self.body_mode(direction) = BodyMode::Skip;
            return Stop::Continue;
        }
        self.body = [BodyMode::Skip; 2];
        let purpose = self.decision.as_ref().and_then(|d| d.purpose);
        let mut decision = Decision::block(reason, purpose);
        if let Some(d) = &self.decision {
            decision = decision.with_facts(d.facts);
        }
        let status =
            crate::decide::reply::refusal_status(config.settings.block_status, reason, direction);
        Stop::Reply(self.reply(config, &decision, status, direction))
    }

    /// The ledger's part of the finished stream: its record (at `now_ms`, with `unique`, a
    /// suffix no other record of this Envoy has), only for a provision to a third party or
    /// joint user; asks nothing of the host otherwise.
    pub fn ledger_emit(
        &mut self,
        config: &CompiledConfig,
        now_ms: impl FnOnce() -> u64,
        unique: impl FnOnce() -> String,
    ) -> LedgerEmit {
        let (Some(draft), Some(decision)) = (self.ledger.take(), self.decision.as_ref()) else {
            return LedgerEmit::Nothing;
        };
        let refusal = self.facts.refusal.map(|(_, reason)| reason);
        if draft.unrecorded {
            // Only a provision that went ahead unrecorded counts; refusals (among them
            // `ledger_unavailable`) show in the decision stats.
            let blocked = decision.outcome == crate::decide::decision::Outcome::Block;
            let refused = !self.dry_run() && (refusal.is_some() || blocked);
            return if refused {
                LedgerEmit::Nothing
            } else {
                LedgerEmit::Unrecorded
            };
        }
        draft
            .record(
                config,
                decision,
                refusal,
                self.dry_run(),
                now_ms(),
                &unique(),
            )
            .and_then(|r| r.to_json())
            .map_or(LedgerEmit::Nothing, LedgerEmit::Record)
    }

    /// The decision-log line of the finished stream, if it is in the sample. `fallback`
    /// samples requests without a request id (a per-VM counter); `route_name` and
    /// `snapshot_version` are asked only for a line that is written.
    pub fn log_line(
        &mut self,
        config: &CompiledConfig,
        fallback: u64,
        now_ms: u64,
        route_name: impl FnOnce() -> Option<String>,
        snapshot_version: Option<u64>,
    ) -> Option<String> {
        let settings = &config.decision_log;
        let decision = self.decision.as_ref()?;
        if !settings.enabled {
            return None;
        }
        let blocked = decision.outcome == crate::decide::decision::Outcome::Block
            || self.facts.refusal.is_some();
        if !settings.sampled(self.facts.request_id.as_deref(), fallback, blocked) {
            return None;
        }
        self.facts.subject = self.user.as_deref().and_then(|u| settings.subject_hash(u));
        self.facts.route_name = route_name();
        self.facts.snapshot_version = snapshot_version;
        log_line(
            &config.policy,
            &config.routes,
            decision,
            &self.facts,
            now_ms,
        )
        .to_json()
    }
}
