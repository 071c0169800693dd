//! Who receives the data (§6, §7, §8): parties, the identities that name them, and how
//! the caller of one request is resolved to a party.
//!
//! An identity is written in the policy as a string with a scheme:
//! - `spiffe://…` or any other URI: the peer certificate's URI SAN (mTLS principal);
//! - `dns:<name>`: the peer certificate's DNS SAN;
//! - `cluster:<name>`: the destination cluster, for egress listeners;
//! - `header:<value>`: the development caller header (only when the configuration enables it).
//!
//! A trailing `*` matches any suffix (`spiffe://city.example/ns/portal/*`). A caller that
//! matches no identity is a third party; so is a caller with no identity at all, unless the
//! configuration names a party for unidentified callers.

use serde::Serialize;

use crate::error::ConfigError;
use crate::policy::compiled::PartyKind;

/// Index of a party in the compiled policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartyIdx(pub u16);

/// Where an identity comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    /// The peer certificate's URI SAN.
    UriSan,
    /// The peer certificate's DNS SAN.
    DnsSan,
    /// The destination (upstream) cluster.
    Cluster,
    /// The development caller header.
    Header,
}

impl IdentityKind {
    /// The stable snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::UriSan => "uri_san",
            IdentityKind::DnsSan => "dns_san",
            IdentityKind::Cluster => "cluster",
            IdentityKind::Header => "header",
        }
    }
}

/// One identity pattern of a party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityPattern {
    /// Which identity it matches.
    pub kind: IdentityKind,
    /// The text to match (without the trailing `*`).
    pub text: String,
    /// Whether `text` is a prefix (the pattern ended in `*`).
    pub prefix: bool,
}

impl IdentityPattern {
    /// Parses `spiffe://…`, `dns:…`, `cluster:…` or `header:…`; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let (kind, rest) = if let Some(rest) = text.strip_prefix("dns:") {
            (IdentityKind::DnsSan, rest)
        } else if let Some(rest) = text.strip_prefix("cluster:") {
            (IdentityKind::Cluster, rest)
        } else if let Some(rest) = text.strip_prefix("header:") {
            (IdentityKind::Header, rest)
        } else if text.contains("://") {
            (IdentityKind::UriSan, text)
        } else {
            return Err(ConfigError::invalid(
                path,
                "an identity is a URI SAN (spiffe://...), dns:<name>, cluster:<name> or header:<value>",
            ));
        };
        let (rest, prefix) = match rest.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (rest, false),
        };
        if rest.contains('*') {
            return Err(ConfigError::invalid(
                path,
                "`*` is only allowed at the end of an identity",
            ));
        }
        let empty_stem = rest.is_empty() || (kind == IdentityKind::UriSan && rest.ends_with("://"));
        if empty_stem {
            return Err(ConfigError::invalid(
                path,
                "the identity names nothing (a bare `*` would match every caller)",
            ));
        }
        let text = if kind == IdentityKind::DnsSan {
            rest.to_ascii_lowercase()
        } else {
            rest.to_string()
        };
        Ok(IdentityPattern { kind, text, prefix })
    }

    /// Whether `value` (an identity of this pattern's kind) matches.
    pub fn matches(&self, value: &str) -> bool {
        let value_matches = |v: &str| {
            if self.prefix {
                v.starts_with(&self.text)
            } else {
                v == self.text
            }
        };
        if self.kind == IdentityKind::DnsSan {
            value_matches(&value.to_ascii_lowercase())
        } else {
            value_matches(value)
        }
    }

    /// Specificity for choosing among several matches: exact beats prefix, longer beats shorter.
    fn specificity(&self) -> (bool, usize) {
        (!self.prefix, self.text.len())
    }
}

/// A party of the policy, compiled.
#[derive(Debug, Clone)]
pub struct Party {
    /// Stable id.
    pub id: String,
    /// Its role in the policy.
    pub kind: PartyKind,
    /// Identities that name it.
    pub identities: Vec<IdentityPattern>,
    /// Its country (ISO 3166-1 alpha-2), when the policy says.
    pub country: Option<String>,
    /// A processor in another country than the operator's (§6).
    pub abroad: bool,
}

/// How the caller was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerSource {
    /// The peer certificate's URI SAN.
    UriSan,
    /// The peer certificate's DNS SAN.
    DnsSan,
    /// The destination cluster.
    Cluster,
    /// The development caller header.
    Header,
    /// The connection carried no identity; the configured party for unidentified callers.
    Unidentified,
    /// No identity, or one no party claims: a third party.
    Unknown,
}

impl CallerSource {
    /// The stable snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            CallerSource::UriSan => "uri_san",
            CallerSource::DnsSan => "dns_san",
            CallerSource::Cluster => "cluster",
            CallerSource::Header => "header",
            CallerSource::Unidentified => "unidentified",
            CallerSource::Unknown => "unknown",
        }
    }

    fn of(kind: IdentityKind) -> Self {
        match kind {
            IdentityKind::UriSan => CallerSource::UriSan,
            IdentityKind::DnsSan => CallerSource::DnsSan,
            IdentityKind::Cluster => CallerSource::Cluster,
            IdentityKind::Header => CallerSource::Header,
        }
    }
}

/// The party receiving the data in one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The policy's party, if one was identified.
    pub party: Option<PartyIdx>,
    /// Its role; `ThirdParty` for anyone the policy does not name.
    pub kind: PartyKind,
    /// How it was identified.
    pub source: CallerSource,
}

impl Caller {
    /// A caller nobody vouches for: a third party (§7).
    pub const UNKNOWN: Caller = Caller {
        party: None,
        kind: PartyKind::ThirdParty,
        source: CallerSource::Unknown,
    };

    /// Whether the data leaves the operator and its joint users (third-party provision, §7).
    pub fn is_third_party(&self) -> bool {
        self.kind == PartyKind::ThirdParty
    }
}

impl Default for Caller {
    fn default() -> Self {
        Caller::UNKNOWN
    }
}

/// Where a listener finds its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerFrom {
    /// The downstream peer's certificate (inbound sidecars, gateways with mTLS).
    #[default]
    PeerCertificate,
    /// The destination cluster (egress listeners: the recipient is where the data goes).
    UpstreamCluster,
}

/// What the host knows about the other side of one request, as raw strings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallerFacts<'a> {
    /// Peer certificate URI SAN (Envoy: `connection.uri_san_peer_certificate`).
    pub uri_san: Option<&'a str>,
    /// Peer certificate DNS SAN (Envoy: `connection.dns_san_peer_certificate`).
    pub dns_san: Option<&'a str>,
    /// Destination cluster (Envoy: `xds.cluster_name`).
    pub cluster: Option<&'a str>,
    /// Development caller header, when the configuration enables it.
    pub header: crate::decide::request::HeaderValue<'a>,
}

/// Finds the party an identity of `kind` names; the most specific pattern wins.
pub fn party_for(parties: &[Party], kind: IdentityKind, value: &str) -> Option<PartyIdx> {
    let mut best: Option<((bool, usize), usize)> = None;
    for (i, party) in parties.iter().enumerate() {
        for pattern in party.identities.iter().filter(|p| p.kind == kind) {
            if pattern.matches(value) && best.is_none_or(|(s, _)| pattern.specificity() > s) {
                best = Some((pattern.specificity(), i));
            }
        }
    }
    best.and_then(|(_, i)| u16::try_from(i).ok().map(PartyIdx))
}

/// Resolves the caller of one request. Pure.
///
/// The development header, when enabled and sent once, wins (it exists for local testing
/// without mTLS). Otherwise the configured source is read: peer certificate SANs (URI
/// first) or the destination cluster. An identity no party claims makes a third party;
/// no identity at all makes `unidentified` (the configured party) or a third party.
pub fn resolve_caller(
    parties: &[Party],
    from: CallerFrom,
    unidentified: Option<PartyIdx>,
    facts: &CallerFacts<'_>,
) -> Caller {
    let known = |idx: PartyIdx, source: CallerSource| Caller {
        party: Some(idx),
        kind: parties
            .get(usize::from(idx.0))
            .map_or(PartyKind::ThirdParty, |p| p.kind),
        source,
    };
    match facts.header {
        crate::decide::request::HeaderValue::One(value) => {
            return party_for(parties, IdentityKind::Header, value)
                .map_or(Caller::UNKNOWN, |i| known(i, CallerSource::Header));
        }
        crate::decide::request::HeaderValue::Absent => {}
        _ => return Caller::UNKNOWN,
    }
    let candidates: &[(IdentityKind, Option<&str>)] = match from {
        CallerFrom::PeerCertificate => &[
            (IdentityKind::UriSan, facts.uri_san),
            (IdentityKind::DnsSan, facts.dns_san),
        ],
        CallerFrom::UpstreamCluster => &[(IdentityKind::Cluster, facts.cluster)],
    };
    let mut identified = false;
    for (kind, value) in candidates {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            continue;
        };
        identified = true;
        if let Some(idx) = party_for(parties, *kind, value) {
            return known(idx, CallerSource::of(*kind));
        }
    }
    match (identified, unidentified) {
        (false, Some(idx)) => known(idx, CallerSource::Unidentified),
        _ => Caller::UNKNOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::request::HeaderValue;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn pattern(text: &str) -> IdentityPattern {
        IdentityPattern::parse(text, "p").unwrap()
    }

    fn parties() -> Vec<Party> {
        vec![
            Party {
                id: "operator".into(),
                kind: PartyKind::Operator,
                identities: vec![
                    pattern("spiffe://app.example/ns/app/*"),
                    pattern("dns:api.app.example"),
                ],
                country: None,
                abroad: false,
            },
            Party {
                id: "city".into(),
                kind: PartyKind::JointUser,
                identities: vec![
                    pattern("spiffe://app.example/ns/app/sa/city-bridge"),
                    pattern("cluster:city-api"),
                    pattern("header:city"),
                ],
                country: None,
                abroad: false,
            },
        ]
    }

    fn peer(uri: Option<&'static str>, dns: Option<&'static str>) -> CallerFacts<'static> {
        CallerFacts {
            uri_san: uri,
            dns_san: dns,
            ..CallerFacts::default()
        }
    }

    #[test]
    fn a_peer_uri_san_names_its_party_and_the_most_specific_pattern_wins() {
        let p = parties();
        let c = resolve_caller(
            &p,
            CallerFrom::PeerCertificate,
            None,
            &peer(Some("spiffe://app.example/ns/app/sa/city-bridge"), None),
        );
        assert_eq!((c.party, c.kind), (Some(PartyIdx(1)), PartyKind::JointUser));
        assert_eq!(c.source, CallerSource::UriSan);
        let c = resolve_caller(
            &p,
            CallerFrom::PeerCertificate,
            None,
            &peer(Some("spiffe://app.example/ns/app/sa/web"), None),
        );
        assert_eq!(c.party, Some(PartyIdx(0)));
    }

    #[test]
    fn an_identity_no_party_claims_is_a_third_party_even_with_an_unidentified_default() {
        let p = parties();
        let c = resolve_caller(
            &p,
            CallerFrom::PeerCertificate,
            Some(PartyIdx(0)),
            &peer(Some("spiffe://elsewhere.example/sa/x"), None),
        );
        assert_eq!(c, Caller::UNKNOWN);
    }

    #[test]
    fn no_identity_is_a_third_party_unless_configured_otherwise() {
        let p = parties();
        let none = CallerFacts::default();
        assert_eq!(
            resolve_caller(&p, CallerFrom::PeerCertificate, None, &none),
            Caller::UNKNOWN
        );
        let c = resolve_caller(&p, CallerFrom::PeerCertificate, Some(PartyIdx(0)), &none);
        assert_eq!(
            (c.kind, c.source),
            (PartyKind::Operator, CallerSource::Unidentified)
        );
    }

    #[test]
    fn dns_sans_match_case_insensitively_after_an_unclaimed_uri() {
        let p = parties();
        let c = resolve_caller(
            &p,
            CallerFrom::PeerCertificate,
            None,
            &peer(Some("spiffe://other/x"), Some("API.app.example")),
        );
        assert_eq!(
            (c.party, c.source),
            (Some(PartyIdx(0)), CallerSource::DnsSan)
        );
    }

    #[test]
    fn egress_listeners_name_the_recipient_by_destination_cluster() {
        let p = parties();
        let facts = CallerFacts {
            cluster: Some("city-api"),
            uri_san: Some("spiffe://app.example/ns/app/sa/web"),
            ..CallerFacts::default()
        };
        let c = resolve_caller(&p, CallerFrom::UpstreamCluster, None, &facts);
        assert_eq!(
            (c.party, c.source),
            (Some(PartyIdx(1)), CallerSource::Cluster)
        );
        let facts = CallerFacts {
            cluster: Some("ad-network"),
            ..CallerFacts::default()
        };
        assert_eq!(
            resolve_caller(&p, CallerFrom::UpstreamCluster, None, &facts),
            Caller::UNKNOWN
        );
    }

    #[test]
    fn the_development_header_wins_and_a_repeated_one_is_a_third_party() {
        let p = parties();
        let facts = CallerFacts {
            header: HeaderValue::One("city"),
            ..peer(Some("spiffe://app.example/ns/app/sa/web"), None)
        };
        let c = resolve_caller(&p, CallerFrom::PeerCertificate, None, &facts);
        assert_eq!(
            (c.party, c.source),
            (Some(PartyIdx(1)), CallerSource::Header)
        );
        let facts = CallerFacts {
            header: HeaderValue::Repeated,
            ..peer(Some("spiffe://app.example/ns/app/sa/web"), None)
        };
        assert_eq!(
            resolve_caller(&p, CallerFrom::PeerCertificate, None, &facts),
            Caller::UNKNOWN
        );
    }

    #[test]
    fn bad_identity_patterns_are_config_errors() {
        for bad in ["city", "spiffe://*", "cluster:", "dns:a*b", "header:*"] {
            assert!(IdentityPattern::parse(bad, "p").is_err(), "{bad}");
        }
        assert!(pattern("cluster:city-*").matches("city-api"));
    }
}
