//! What the decision needs from the host besides the identity headers (caller identity,
//! route name, host and path), and the decision itself against the configured snapshot
//! source (inline, or the live snapshot in shared data).

use consent_core::config::{FailureMode, SnapshotSource};
use consent_core::decision::{decide_without_snapshot, Decision};
use consent_core::party::{CallerFacts, CallerFrom};
use consent_core::routes::RouteFacts;
use consent_core::{CompiledConfig, RequestContext, RequestView};

use crate::host;
use crate::shared_snapshot::{self, Lookup};

/// Reads what the caller resolution and the route rules need from the host: peer
/// certificate SANs or the destination cluster, the route name, host and path.
pub fn request_context(
    config: &CompiledConfig,
    headers: &[(String, Vec<u8>)],
) -> Result<RequestContext, proxy_wasm::types::Status> {
    let (uri_san, dns_san, cluster) = match config.caller.from {
        CallerFrom::PeerCertificate => {
            let uri = host::string_property(&["connection", "uri_san_peer_certificate"])?;
            // The DNS SAN matters only if some party is named by one, or, without a URI
            // SAN, to tell a certificate holder from a connection with no identity at all.
            let need_dns = config.caller.has_dns_identities
                || (uri.is_none() && config.caller.unidentified.is_some());
            let dns = if need_dns {
                host::string_property(&["connection", "dns_san_peer_certificate"])?
            } else {
                None
            };
            (uri, dns, None)
        }
        CallerFrom::UpstreamCluster => {
            (None, None, host::string_property(&["xds", "cluster_name"])?)
        }
    };
    let route_name = if config.routes.uses_route_name {
        host::string_property(&["xds", "route_name"])?
    } else {
        None
    };
    let pseudo = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    };
    let (host_name, path) = if config.routes.uses_host_or_path {
        (pseudo(":authority"), pseudo(":path"))
    } else {
        (None, None)
    };
    let caller = CallerFacts {
        uri_san: uri_san.as_deref(),
        dns_san: dns_san.as_deref(),
        cluster: cluster.as_deref(),
        ..CallerFacts::default()
    };
    let route = RouteFacts {
        route_name: route_name.as_deref(),
        host: host_name,
        path,
    };
    let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
    Ok(config.context(&caller, &route, pairs))
}

/// Decides a request view against the configured snapshot source.
pub fn decide_view(config: &CompiledConfig, view: &RequestView<'_>) -> Decision {
    if config.snapshot.source == SnapshotSource::Inline {
        return config.decide(view);
    }
    let user = match view.user {
        consent_core::HeaderValue::One(u) => Some(u),
        _ => None,
    };
    match shared_snapshot::lookup(config, user) {
        Lookup::Record(record) => config.decide_with_record(view, record.as_ref()),
        Lookup::Fault(reason) => decide_without_snapshot(
            view,
            &config.policy,
            &config.enforcement(view),
            reason,
            config.snapshot.failure_mode == FailureMode::Strip,
        ),
    }
}
