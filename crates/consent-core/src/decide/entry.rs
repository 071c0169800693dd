//! The one entry point for a request: read its headers once, resolve who receives the
//! data, the GPC signal and the route rule, look the person up through a
//! [`ConsentLookup`], and decide. When the lookup cannot be trusted (no snapshot yet, a
//! stale or unreadable one) the snapshot's failure mode decides instead. Every host (the
//! proxy-wasm glue, the CLI, the ext_authz service, the examples) calls
//! [`CompiledConfig::decide_request`]; none assembles the request path itself.

use std::borrow::Cow;

use crate::config::CompiledConfig;
use crate::decide::decision::{decide, decide_without_snapshot, Decision, Enforcement};
use crate::decide::reason::Reason;
use crate::decide::request::{HeaderScan, HeaderValue, RequestContext, RequestView};
use crate::live::records::{ConsentIndex, ConsentRecord};
use crate::live::subject_key::SubjectKeying;
use crate::policy::party::{resolve_caller, CallerFacts};
use crate::policy::routes::RouteFacts;

/// What a lookup found for the person a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found<'a> {
    /// The snapshot can be trusted; the person's record, if they have one.
    Record(Option<Cow<'a, ConsentRecord>>),
    /// The snapshot cannot be trusted: decide with the failure mode and this reason
    /// (`snapshot_unavailable` or `snapshot_stale`).
    Fault(Reason),
}

/// Where a request's consent record comes from: the inline `consents`, the live
/// snapshot's buckets, a snapshot file.
pub trait ConsentLookup {
    /// The record of `user`, the raw value of the user-ID header (`None`: the request
    /// names nobody, and only the snapshot's trustworthiness is asked).
    fn find(&self, user: Option<&str>) -> Found<'_>;
}

/// The inline `consents` of a configuration, keyed as its `snapshot.subject_key` says.
#[derive(Debug, Clone, Copy)]
pub struct InlineConsents<'c> {
    index: &'c ConsentIndex,
    keying: &'c SubjectKeying,
}

impl ConsentLookup for InlineConsents<'_> {
    fn find(&self, user: Option<&str>) -> Found<'_> {
        let record = user.and_then(|user| match self.keying {
            SubjectKeying::Plain => self.index.lookup(user),
            keyed => self.index.lookup(&keyed.subject_for(user)),
        });
        Found::Record(record.map(Cow::Borrowed))
    }
}

/// A decided request, with the view it was decided on (its user is what decision logs
/// hash).
#[derive(Debug, Clone)]
pub struct RequestDecision<'h> {
    /// The decision.
    pub decision: Decision,
    /// The identity headers and context it was decided on.
    pub view: RequestView<'h>,
}

impl CompiledConfig {
    /// Decides one request: `headers` as the host gives them (lowercase names, every
    /// occurrence), `caller` and `route` what the host knows besides them. A route's host
    /// and path, when not given, are read from `:authority` and `:path`.
    pub fn decide_request<'h, I>(
        &self,
        headers: I,
        caller: &CallerFacts<'_>,
        route: &RouteFacts<'_>,
        lookup: &(impl ConsentLookup + ?Sized),
    ) -> RequestDecision<'h>
    where
        I: IntoIterator<Item = (&'h str, &'h [u8])>,
    {
        let scan = HeaderScan::read(
            &self.settings.user_header,
            &self.settings.purpose_header,
            self.caller.dev_header.as_deref(),
            headers,
        );
        let route = RouteFacts {
            route_name: route.route_name,
            host: route.host.or(scan.authority),
            path: route.path.or(scan.path),
        };
        let context = self.resolve_context(caller, &route, scan.gpc, scan.dev_caller);
        let view = RequestView {
            user: scan.user,
            purpose: scan.purpose,
            context,
        };
        RequestDecision {
            decision: self.decide_view(&view, lookup),
            view,
        }
    }

    /// Decides a request view already read, looking its user up through `lookup`; a
    /// lookup fault gets the snapshot's failure mode.
    pub fn decide_view(
        &self,
        view: &RequestView<'_>,
        lookup: &(impl ConsentLookup + ?Sized),
    ) -> Decision {
        let user = match view.user {
            HeaderValue::One(user) => Some(user),
            _ => None,
        };
        let enforcement = self.enforcement(view);
        match lookup.find(user) {
            Found::Record(record) => decide(view, &self.policy, record.as_deref(), &enforcement),
            Found::Fault(reason) => decide_without_snapshot(
                view,
                &self.policy,
                &enforcement,
                reason,
                self.snapshot.failure_mode,
            ),
        }
    }

    /// The inline `consents` as a lookup.
    pub fn inline_consents(&self) -> InlineConsents<'_> {
        InlineConsents {
            index: &self.consents,
            keying: &self.snapshot.keying,
        }
    }

    /// Decides a request's identity headers against the inline consents, for a caller
    /// without identity on the default route (tests, tools).
    pub fn evaluate<'h, I>(&self, headers: I) -> Decision
    where
        I: IntoIterator<Item = (&'h str, &'h [u8])>,
    {
        let lookup = self.inline_consents();
        self.decide_request(
            headers,
            &CallerFacts::default(),
            &RouteFacts::default(),
            &lookup,
        )
        .decision
    }

    /// Decides a view against the inline consents (tests that build views by hand).
    pub fn decide(&self, view: &RequestView<'_>) -> Decision {
        self.decide_view(view, &self.inline_consents())
    }

    /// Resolves the caller, the GPC signal and the route rule of a request. `headers` are
    /// read for `Sec-GPC` and the development caller header (tests that build views by
    /// hand; the request path reads them in [`CompiledConfig::decide_request`]).
    pub fn context<'a, I>(
        &self,
        caller: &CallerFacts<'_>,
        route: &RouteFacts<'_>,
        headers: I,
    ) -> RequestContext
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let scan = HeaderScan::read("", "", self.caller.dev_header.as_deref(), headers);
        self.resolve_context(caller, route, scan.gpc, scan.dev_caller)
    }

    fn resolve_context(
        &self,
        caller: &CallerFacts<'_>,
        route: &RouteFacts<'_>,
        gpc: bool,
        dev_caller: HeaderValue<'_>,
    ) -> RequestContext {
        let facts = CallerFacts {
            header: dev_caller,
            ..*caller
        };
        RequestContext {
            caller: resolve_caller(
                &self.caller.parties,
                self.caller.from,
                self.caller.unidentified,
                &facts,
            ),
            gpc,
            rule: self.routes.select(route),
        }
    }

    /// Whether the request `decision` was made for runs in dry-run (shadow) mode.
    pub fn dry_run(&self, decision: &Decision) -> bool {
        self.routes.rule(decision.facts.rule).dry_run
    }

    /// The rule and GPC handling a request view is decided under.
    pub fn enforcement(&self, view: &RequestView<'_>) -> Enforcement<'_> {
        Enforcement {
            rule: self.routes.rule(view.context.rule),
            gpc: &self.gpc,
        }
    }
}
