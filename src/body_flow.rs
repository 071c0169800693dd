//! Bodies of one stream: choose the body mode from the headers, buffer to the end, then
//! rewrite, strip or refuse. In dry-run the body is read and checked the same way, the
//! outcome recorded, and the original bytes forwarded untouched.

use consent_core::body::{body_mode, BodyHeaders, BodyMode, BodyOutcome, BodyReport, CivilDate};
use consent_core::observe::LoggedField;
use consent_core::{CompiledConfig, Direction, Reason};
use proxy_wasm::types::Action;

use crate::host;
use crate::http_context::ConsentHttp;
use crate::metrics;
use crate::shared_snapshot::with_lookup;

impl ConsentHttp {
    /// Chooses the body mode from the headers of one direction; pauses when the body must
    /// be read (content-length goes, as the body may change; not in dry-run).
    pub(crate) fn start_body(
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
                if !self.dry_run() {
                    let mut result = host::remove_header(direction, "content-length");
                    if mode == BodyMode::Strip {
                        result = result
                            .and_then(|()| host::remove_header(direction, "content-encoding"));
                    }
                    if result.is_err() {
                        return self.fail_closed(config, "cannot prepare the body for rewriting");
                    }
                }
                *self.body_mode(direction) = mode;
                // Without holding, the headers go on now; `on_body` still buffers the
                // whole body (Pause there is StopIterationAndBuffer) before any of it does.
                if config.body.hold_headers {
                    Action::Pause
                } else {
                    Action::Continue
                }
            }
        }
    }

    /// Buffers a body until its end, then rewrites or refuses it.
    pub(crate) fn on_body(
        &mut self,
        direction: Direction,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
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

    /// Whether the body of `direction` is being buffered.
    fn reading(&mut self, direction: Direction) -> bool {
        matches!(
            *self.body_mode(direction),
            BodyMode::Redact | BodyMode::Sniff | BodyMode::Strip
        )
    }

    /// Trailers end the body: finish it now (Envoy's decompressor, for one, adds trailers).
    pub(crate) fn on_trailers(&mut self, direction: Direction) -> Action {
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
        let mode = std::mem::replace(self.body_mode(direction), BodyMode::Skip);
        let body = match host::body(direction, size) {
            Ok(body) => body,
            Err(_) => return self.fail_closed(config, "cannot read the body"),
        };
        metrics::body_bytes(direction, body.len());
        if let Some(bytes) = self.stream.body_bytes.get_mut(direction.index()) {
            *bytes = body.len();
        }
        if body.len() > config.body.max_bytes {
            return self.refuse(config, Reason::BodyTooLarge, direction);
        }
        if mode == BodyMode::Strip {
            if self.dry_run() {
                return Action::Continue;
            }
            return match host::replace_body(direction, body.len(), b"") {
                Ok(()) => Action::Continue,
                Err(_) => self.fail_closed(config, "cannot strip the body"),
            };
        }
        let result = match self.decision.as_ref() {
            Some(decision) => {
                let today = CivilDate::from_unix_seconds(host::unix_seconds());
                let record_paths = config.decision_log.field_paths;
                with_lookup(config, |lookup| {
                    config.redact_body(decision, &body, today, record_paths, lookup)
                })
            }
            None => Ok((BodyOutcome::Unchanged, BodyReport::default())),
        };
        match result {
            Ok((outcome, report)) => {
                self.record_body(config, direction, &report);
                match outcome {
                    BodyOutcome::Unchanged => Action::Continue,
                    BodyOutcome::Rewritten(_) if self.dry_run() => Action::Continue,
                    BodyOutcome::Rewritten(new_body) => {
                        match host::replace_body(direction, body.len(), &new_body) {
                            Ok(()) => Action::Continue,
                            Err(_) => self.fail_closed(config, "cannot replace the body"),
                        }
                    }
                    BodyOutcome::Blocked(_) => {
                        self.refuse(config, Reason::ForbiddenDataPresent, direction)
                    }
                }
            }
            // An undeclared body that is not JSON carries no fields to find.
            Err(_) if mode == BodyMode::Sniff => Action::Continue,
            Err(_) => self.refuse(config, Reason::BodyInvalidJson, direction),
        }
    }

    /// Records what one body pass did, for metrics and the decision log.
    fn record_body(&mut self, config: &CompiledConfig, direction: Direction, report: &BodyReport) {
        self.stream
            .removed
            .add_body_fields(direction, report.removed + report.transformed);
        self.stream.removed.elements_dropped += report.dropped_elements;
        metrics::redactions(config, report.categories.iter(), direction, self.mode);
        self.stream.fields.extend(
            report
                .fields
                .iter()
                .map(|hit| LoggedField::from_hit(&config.policy, direction, hit)),
        );
        self.stream.fields_truncated |= report.fields_truncated;
    }
}
