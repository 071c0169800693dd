//! The body steps of a stream: buffer a body the decision needs to the end, then rewrite,
//! strip or refuse it. In dry-run the body is read and checked the same way, the outcome
//! recorded, and the original bytes forwarded untouched.

use crate::body::{BodyMode, BodyOutcome, BodyReport, CivilDate};
use crate::config::CompiledConfig;
use crate::decide::entry::ConsentLookup;
use crate::decide::reason::Reason;
use crate::decide::reply::LocalReply;
use crate::direction::Direction;
use crate::observe::decision_log::LoggedField;
use crate::stream::{Stat, Stop, Stream};

/// Headers that go when a body is read: its length may change, and a stripped body has no
/// encoding.
const REWRITE_REMOVES: &[&str] = &["content-length"];
const STRIP_REMOVES: &[&str] = &["content-length", "content-encoding"];

/// What to do about a body when its headers pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyStart {
    /// Nothing to read: let it flow.
    None,
    /// Read it: remove these headers first, and hold the headers until the body is checked
    /// when `hold` is set (else headers go on now and the body is still buffered whole).
    Read {
        /// Header names to remove (none in dry-run).
        remove: &'static [&'static str],
        /// Pause the headers until the body is checked.
        hold: bool,
    },
    /// Walk it chunk by chunk as it passes ([`Stream::on_chunk`]): remove these headers
    /// first; the headers go on at once.
    Stream {
        /// Header names to remove (none in dry-run).
        remove: &'static [&'static str],
    },
    /// Refuse before reading.
    Refuse(LocalReply),
}

/// What to do with body data as it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyStep {
    /// Let it go on (nothing to check, or the check is done).
    Continue,
    /// Keep buffering: the body is not complete.
    Buffer,
    /// The body is complete: hand all of it to [`Stream::on_whole_body`].
    ReadWhole,
    /// Replace the whole buffered body by these bytes.
    Replace(Vec<u8>),
    /// Answer locally (a refusal); nothing more goes on.
    Reply(LocalReply),
}

impl From<Stop> for BodyStep {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::Reply(reply) => BodyStep::Reply(reply),
            Stop::Continue => BodyStep::Continue,
        }
    }
}

impl Stream {
    /// Sets the body mode of one direction and says what the host must do now.
    pub(crate) fn begin_body(
        &mut self,
        config: &CompiledConfig,
        direction: Direction,
        mode: BodyMode,
    ) -> BodyStart {
        match mode {
            BodyMode::Skip => BodyStart::None,
            BodyMode::Refuse(reason) => match self.refuse(config, reason, direction) {
                Stop::Reply(reply) => BodyStart::Refuse(reply),
                Stop::Continue => BodyStart::None,
            },
            BodyMode::Redact | BodyMode::Sniff | BodyMode::Strip => {
                *self.body_mode(direction) = mode;
                let remove = match (self.dry_run(), mode) {
                    (true, _) => &[][..],
                    (false, BodyMode::Strip) => STRIP_REMOVES,
                    (false, _) => REWRITE_REMOVES,
                };
                BodyStart::Read {
                    remove,
                    hold: config.body.hold_headers,
                }
            }
        }
    }

    /// Whether the body of `direction` is being buffered.
    pub fn reading(&mut self, direction: Direction) -> bool {
        matches!(
            *self.body_mode(direction),
            BodyMode::Redact | BodyMode::Sniff | BodyMode::Strip
        )
    }

    /// Body data arrived: `buffered` bytes so far, `end_of_stream` when it is complete.
    pub fn on_body_data(
        &mut self,
        config: &CompiledConfig,
        direction: Direction,
        buffered: usize,
        end_of_stream: bool,
    ) -> BodyStep {
        if !self.reading(direction) {
            return BodyStep::Continue;
        }
        if buffered > config.body.max_bytes {
            return self.refuse(config, Reason::BodyTooLarge, direction).into();
        }
        if end_of_stream {
            BodyStep::ReadWhole
        } else {
            BodyStep::Buffer
        }
    }

    /// Trailers arrived: they end the body (Envoy's decompressor, for one, adds trailers).
    pub fn on_trailers(&mut self, direction: Direction) -> BodyStep {
        if self.reading(direction) {
            BodyStep::ReadWhole
        } else {
            BodyStep::Continue
        }
    }

    /// The whole buffered body of `direction`: rewrite, strip or refuse it. `lookup` decides
    /// multi-subject elements the way the request was decided; `today` (the host's date)
    /// is asked only when the decision's transforms read it.
    pub fn on_whole_body(
        &mut self,
        config: &CompiledConfig,
        direction: Direction,
        body: &[u8],
        today: impl FnOnce() -> CivilDate,
        lookup: &(impl ConsentLookup + ?Sized),
    ) -> BodyStep {
        let mode = std::mem::replace(self.body_mode(direction), BodyMode::Skip);
        self.stats.push(Stat::BodyBytes(direction, body.len()));
        if let Some(bytes) = self.facts.body_bytes.get_mut(direction.index()) {
            *bytes = body.len();
        }
        if body.len() > config.body.max_bytes {
            return self.refuse(config, Reason::BodyTooLarge, direction).into();
        }
        if mode == BodyMode::Strip {
            return if self.dry_run() {
                BodyStep::Continue
            } else {
                BodyStep::Replace(Vec::new())
            };
        }
        let Some(decision) = self.decision else {
            return BodyStep::Continue;
        };
        let record_paths = config.decision_log.field_paths;
        let today = self.today(config, today);
        let headers = self
            .body_headers
            .get(direction.index())
            .copied()
            .unwrap_or_default();
        match config.enforce_body(&decision, &headers, body, today, record_paths, lookup) {
            Ok((outcome, report)) => {
                self.record_body(config, direction, &report);
                if report.unread {
                    self.mark_unread(direction);
                }
                match outcome {
                    BodyOutcome::Unchanged => BodyStep::Continue,
                    BodyOutcome::Rewritten(_) if self.dry_run() => BodyStep::Continue,
                    BodyOutcome::Rewritten(new_body) => BodyStep::Replace(new_body),
                    BodyOutcome::Blocked(_) => self
                        .refuse(config, Reason::ForbiddenDataPresent, direction)
                        .into(),
                }
            }
            Err(error) => self.refuse(config, error.reason(), direction).into(),
        }
    }

    /// Records what one body pass did, for stats and the decision log.
    fn record_body(&mut self, config: &CompiledConfig, direction: Direction, report: &BodyReport) {
        self.facts
            .removed
            .add_body_fields(direction, report.removed + report.transformed);
        self.facts.removed.elements_dropped += report.dropped_elements;
        self.stats.extend(
            report
                .categories
                .iter()
                .map(|category| Stat::Redaction(direction, category)),
        );
        self.facts.fields.extend(
            report
                .fields
                .iter()
                .map(|hit| LoggedField::from_hit(&config.policy, direction, hit)),
        );
        self.facts.fields_truncated |= report.fields_truncated;
    }
}
