//! What a decision means for one JSON body: which selectors apply, whether the body must
//! be read at all, and the redaction itself, with multi-subject elements decided one by
//! one through the same lookup as the request.

use crate::body::matcher::Matcher;
use crate::body::redactor::{
    redact, BodyOutcome, BodyReport, BodyRules, ElementRules, ElementVerdict,
};
use crate::body::scan::JsonError;
use crate::body::transform::CivilDate;
use crate::config::CompiledConfig;
use crate::decide::decision::{Decision, Outcome};
use crate::decide::entry::ConsentLookup;
use crate::decide::request::{HeaderValue, RequestContext, RequestView};
use crate::policy::categories::CategorySet;

impl CompiledConfig {
    /// The JSON selectors for a decision's bodies: the route rule's when it adds some,
    /// else the policy's.
    pub fn matcher(&self, decision: &Decision) -> &Matcher {
        self.routes
            .rule(decision.facts.rule)
            .matcher
            .as_ref()
            .unwrap_or(&self.policy.matcher)
    }

    /// Decides one element of a multi-subject body: the same purpose, caller, GPC signal
    /// and route rule as the request, the element's own subject, looked up through
    /// `lookup` as the request's was. A blocked subject (or a missing one, where users are
    /// required) drops the element.
    pub fn element_verdict(
        &self,
        request: &Decision,
        subject: Option<&str>,
        lookup: &(impl ConsentLookup + ?Sized),
    ) -> ElementVerdict {
        let Some(p) = request.purpose.and_then(|idx| self.policy.purpose(idx)) else {
            return ElementVerdict::Drop;
        };
        let view = RequestView {
            user: subject.map_or(HeaderValue::Absent, HeaderValue::One),
            purpose: HeaderValue::One(&p.id),
            context: RequestContext {
                caller: request.facts.caller,
                gpc: request.facts.gpc,
                rule: request.facts.rule,
            },
        };
        let decision = self.decide_view(&view, lookup);
        match decision.outcome {
            Outcome::Block => ElementVerdict::Drop,
            Outcome::Allow => ElementVerdict::Forbid(CategorySet::EMPTY),
            Outcome::Redact => ElementVerdict::Forbid(decision.redacted),
        }
    }

    /// Redacts one JSON body for `decision`: the decision's forbidden categories with the
    /// purpose's actions, and, when `body.subjects` is set, each multi-subject element
    /// decided for its own subject, looked up through `lookup` as the request's was.
    /// `record_paths` fills the report's field paths.
    pub fn redact_body(
        &self,
        decision: &Decision,
        body: &[u8],
        today: CivilDate,
        record_paths: bool,
        lookup: &(impl ConsentLookup + ?Sized),
    ) -> Result<(BodyOutcome, BodyReport), JsonError> {
        let actions = decision
            .purpose
            .and_then(|p| self.policy.purpose(p))
            .map_or(&[][..], |p| p.actions.as_slice());
        let rules = BodyRules {
            matcher: self.matcher(decision),
            actions,
            coarsen: &self.policy.coarsen,
            key: self.key.as_deref(),
            today,
            record_paths,
        };
        let forbidden = if decision.outcome == Outcome::Redact {
            decision.redacted
        } else {
            crate::policy::categories::CategorySet::EMPTY
        };
        if !self.body.has_elements() || decision.purpose.is_none() {
            return redact(body, &rules, forbidden, None);
        }
        let element_rules = ElementRules {
            elements: &self.body.elements,
            subject_paths: &self.body.subject_paths,
        };
        let mut verdict = |subject: Option<&str>| self.element_verdict(decision, subject, lookup);
        redact(
            body,
            &rules,
            forbidden,
            Some((&element_rules, &mut verdict)),
        )
    }

    /// Whether a decision needs the body read: it forbids a category some selector finds,
    /// or multi-subject elements must be decided one by one.
    pub fn body_needed(&self, decision: &Decision) -> bool {
        decision.outcome != Outcome::Block
            && (self.body.has_elements()
                || decision
                    .redacted
                    .intersects(self.matcher(decision).categories))
    }
}
