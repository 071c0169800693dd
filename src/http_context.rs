//! The per-request context: decide on request headers, apply the plan on the way in and
//! on the way out. Any host failure blocks the request (fail closed).

use std::rc::Rc;

use consent_core::decision::{Decision, Outcome};
use consent_core::header_plan::{plan_request, plan_response, HeaderEdits};
use consent_core::reply::{block_body, decision_header_value};
use consent_core::{CompiledConfig, Reason};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::host;

/// Status of the reply when the filter itself cannot evaluate a request.
const INTERNAL_ERROR_STATUS: u16 = 500;

/// State of one HTTP stream.
pub struct ConsentHttp {
    config: Option<Rc<CompiledConfig>>,
    decision: Option<Decision>,
}

impl ConsentHttp {
    /// A context for one request; `config` is `None` only if configuration failed.
    pub fn new(config: Option<Rc<CompiledConfig>>) -> Self {
        ConsentHttp {
            config,
            decision: None,
        }
    }

    fn block(&self, config: &CompiledConfig, decision: &Decision, status: u16) -> Action {
        let body = block_body(&config.policy, decision);
        let header = decision_header_value(&config.policy, decision);
        let headers = vec![
            ("content-type", "application/json"),
            ("cache-control", "no-store"),
            (config.settings.decision_header.as_str(), header.as_str()),
        ];
        log::debug!(
            "consent decision: outcome=block reason={} purpose={}",
            decision.reason.as_str(),
            purpose_label(config, decision)
        );
        if let Err(status) = host::send_reply(status, headers, body.as_bytes()) {
            log::error!("consent filter: cannot send the block reply: {status:?}");
        }
        Action::Pause
    }

    fn fail_closed(&self, config: &CompiledConfig, what: &str) -> Action {
        log::error!("consent filter: {what}; blocking the request");
        let decision = Decision::block(Reason::InternalError, None);
        self.block(config, &decision, INTERNAL_ERROR_STATUS)
    }
}

fn purpose_label<'c>(config: &'c CompiledConfig, decision: &Decision) -> &'c str {
    decision
        .purpose
        .and_then(|p| config.policy.purpose(p))
        .map_or("-", |p| p.id.as_str())
}

fn apply_request_edits(edits: &HeaderEdits) -> Result<(), proxy_wasm::types::Status> {
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
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
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
        let decision = config.evaluate(pairs());
        if decision.outcome == Outcome::Block {
            return self.block(&config, &decision, config.settings.block_status);
        }
        let edits = plan_request(&config.policy, &decision, pairs());
        if apply_request_edits(&edits).is_err() {
            return self.fail_closed(&config, "cannot remove forbidden request data");
        }
        let header = decision_header_value(&config.policy, &decision);
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
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let (Some(config), Some(decision)) = (self.config.clone(), self.decision.as_ref()) else {
            return Action::Continue;
        };
        if !decision.redacts() {
            return Action::Continue;
        }
        let removal = host::response_headers().and_then(|headers| {
            let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
            let edits = plan_response(&config.policy, decision, pairs);
            for name in &edits.remove {
                host::remove_response_header(name)?;
            }
            Ok(edits.removed_count)
        });
        match removal {
            Ok(count) => {
                if count > 0 {
                    log::debug!("consent decision: removed_from_response={count}");
                }
                Action::Continue
            }
            Err(_) => self.fail_closed(&config, "cannot remove forbidden response headers"),
        }
    }
}
