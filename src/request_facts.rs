//! What the decision needs from the host besides the request headers: the peer
//! certificate's SANs or the destination cluster, and the route name, each read only when
//! the configuration uses it.

use consent_core::policy::{CallerFacts, RouteFacts};
use consent_core::CompiledConfig;
use proxy_wasm::types::Status;

use crate::host;

/// Host properties of one request, owned (the core borrows them).
#[derive(Debug, Default)]
pub struct HostFacts {
    uri_san: Option<String>,
    dns_san: Option<String>,
    cluster: Option<String>,
    route_name: Option<String>,
}

impl HostFacts {
    /// Reads what the caller resolution and the route rules of `config` need: a SAN or the
    /// cluster only when a party is named by one or unidentified callers get a party (the
    /// caller is the same whatever the value otherwise), the DNS SAN not after a URI SAN
    /// that named a party, the route name only for route rules that match on it.
    pub fn read(config: &CompiledConfig) -> Result<Self, Status> {
        let mut facts = HostFacts::default();
        let caller = &config.caller;
        if caller.needs_uri_san() {
            facts.uri_san = host::string_property(&["connection", "uri_san_peer_certificate"])?;
        }
        if caller.needs_dns_san(facts.uri_san.as_deref()) {
            facts.dns_san = host::string_property(&["connection", "dns_san_peer_certificate"])?;
        }
        if caller.needs_cluster() {
            facts.cluster = host::string_property(&["xds", "cluster_name"])?;
        }
        if config.routes.uses_route_name {
            facts.route_name = host::string_property(&["xds", "route_name"])?;
        }
        Ok(facts)
    }

    /// The caller as the core reads it.
    pub fn caller(&self) -> CallerFacts<'_> {
        CallerFacts {
            uri_san: self.uri_san.as_deref(),
            dns_san: self.dns_san.as_deref(),
            cluster: self.cluster.as_deref(),
            ..CallerFacts::default()
        }
    }

    /// The route as the core reads it (host and path come from the headers).
    pub fn route(&self) -> RouteFacts<'_> {
        RouteFacts {
            route_name: self.route_name.as_deref(),
            ..RouteFacts::default()
        }
    }
}
