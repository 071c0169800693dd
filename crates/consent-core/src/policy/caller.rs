//! The `caller` block of the plugin configuration: where the identity of the party that
//! receives the data comes from, and this deployment's identities for the policy's parties.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::policy::compiled::{normalise_header_name, CompiledPolicy};
use crate::policy::gpc::GPC_HEADER;
use crate::policy::party::{party_for, CallerFrom, IdentityKind, IdentityPattern, Party, PartyIdx};

/// Where the caller's identity comes from (`caller`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallerDoc {
    /// `peer_certificate` (default: the mTLS peer's URI or DNS SAN) or `upstream_cluster`
    /// (egress: the destination cluster receives the data).
    #[serde(default)]
    pub from: CallerFrom,
    /// Party id for connections that carry no identity at all (no client certificate, no
    /// cluster). Absent: they are third parties. Only for listeners every client of which
    /// is that party (e.g. a local demo listener).
    #[serde(default)]
    pub unidentified_party: Option<String>,
    /// Development only: a request header naming the caller (matched against `header:`
    /// identities). Anyone can send a header, so never set this in production.
    #[serde(default)]
    pub dev_header: Option<String>,
    /// Identities by party id, replacing the policy's for that party (the trust domain
    /// and cluster names of one deployment).
    #[serde(default)]
    pub identities: std::collections::BTreeMap<String, Vec<String>>,
}

/// Checked caller settings.
#[derive(Debug, Clone, Default)]
pub struct CallerSettings {
    /// The policy's parties with this deployment's identities.
    pub parties: Vec<Party>,
    /// Identity source.
    pub from: CallerFrom,
    /// Party of unidentified connections.
    pub unidentified: Option<PartyIdx>,
    /// Lowercase development header name, when enabled.
    pub dev_header: Option<String>,
    /// Whether some party is named by a DNS SAN (else the glue need not read it).
    pub has_dns_identities: bool,
    /// Whether some party is named by a URI SAN.
    pub has_uri_identities: bool,
    /// Whether some party is named by a destination cluster.
    pub has_cluster_identities: bool,
}

impl CallerSettings {
    /// Checks the `caller` block; `reserved` are the identity and decision headers, which
    /// the development caller header must differ from.
    pub fn compile(
        doc: &CallerDoc,
        policy: &CompiledPolicy,
        reserved: [&str; 3],
    ) -> Result<Self, ConfigError> {
        let unidentified = match &doc.unidentified_party {
            None => None,
            Some(id) => Some(policy.party_idx(id).ok_or_else(|| {
                ConfigError::invalid("caller.unidentified_party", format!("unknown party `{id}`"))
            })?),
        };
        let dev_header = match &doc.dev_header {
            None => None,
            Some(name) => {
                let name = normalise_header_name(name, "caller.dev_header")?;
                if reserved.contains(&name.as_str()) || name == GPC_HEADER {
                    return Err(ConfigError::invalid(
                        "caller.dev_header",
                        "must differ from the user, purpose, decision and sec-gpc headers",
                    ));
                }
                Some(name)
            }
        };
        let mut parties = policy.parties.clone();
        for (id, texts) in &doc.identities {
            let at = format!("caller.identities.{id}");
            let idx = policy
                .party_idx(id)
                .ok_or_else(|| ConfigError::invalid(&at, format!("unknown party `{id}`")))?;
            let mut patterns = Vec::with_capacity(texts.len());
            for (j, text) in texts.iter().enumerate() {
                patterns.push(IdentityPattern::parse(text, &format!("{at}[{j}]"))?);
            }
            if let Some(party) = parties.get_mut(usize::from(idx.0)) {
                party.identities = patterns;
            }
        }
        // The same identity naming two parties would make the caller depend on list order.
        for (i, party) in parties.iter().enumerate() {
            for (j, pattern) in party.identities.iter().enumerate() {
                let twice = parties
                    .iter()
                    .take(i)
                    .any(|earlier| earlier.identities.contains(pattern));
                if twice {
                    return Err(ConfigError::invalid(
                        format!("caller.identities.{}[{j}]", party.id),
                        "the same identity already names another party",
                    ));
                }
            }
        }
        let names_by = |kind: IdentityKind| {
            parties
                .iter()
                .any(|p| p.identities.iter().any(|i| i.kind == kind))
        };
        Ok(CallerSettings {
            has_dns_identities: names_by(IdentityKind::DnsSan),
            has_uri_identities: names_by(IdentityKind::UriSan),
            has_cluster_identities: names_by(IdentityKind::Cluster),
            parties,
            from: doc.from,
            unidentified,
            dev_header,
        })
    }
}

impl CallerSettings {
    /// Whether resolving a caller from the peer certificate needs its URI SAN: some party is
    /// named by one, or a connection without any identity gets `unidentified_party` (a URI
    /// SAN makes the caller identified). Otherwise the caller is the same whatever it is.
    pub fn needs_uri_san(&self) -> bool {
        self.from == CallerFrom::PeerCertificate
            && (self.has_uri_identities || self.unidentified.is_some())
    }

    /// Whether it then needs the DNS SAN, given the URI SAN read (`None`: absent or not
    /// read): not when the URI SAN named a party (it wins); otherwise when some party is
    /// named by a DNS SAN, or, without a URI SAN, to tell a certificate holder from a
    /// connection without identity when `unidentified_party` is set.
    pub fn needs_dns_san(&self, uri_san: Option<&str>) -> bool {
        if self.from != CallerFrom::PeerCertificate {
            return false;
        }
        let uri = uri_san.filter(|u| !u.is_empty());
        if uri.is_some_and(|u| party_for(&self.parties, IdentityKind::UriSan, u).is_some()) {
            return false;
        }
        self.has_dns_identities || (uri.is_none() && self.unidentified.is_some())
    }

    /// Whether resolving a caller from the destination cluster needs its name: some party
    /// is named by a cluster, or clusterless requests get `unidentified_party`.
    pub fn needs_cluster(&self) -> bool {
        self.from == CallerFrom::UpstreamCluster
            && (self.has_cluster_identities || self.unidentified.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile_config;
    use crate::policy::party::{resolve_caller, CallerFacts};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn settings(caller: &str) -> CallerSettings {
        compile_config(format!(r#"{{"caller": {caller}}}"#).as_bytes())
            .unwrap()
            .caller
    }

    /// Every combination of SANs resolves the same with the reads the settings ask for as
    /// with both SANs read.
    fn skipped_reads_change_nothing(c: &CallerSettings) {
        let values = [
            None,
            Some(""),
            Some("spiffe://minna-app.example/ns/tsunagu/web"),
            Some("spiffe://minna-app.example/ns/saitama-city/stats"),
            Some("spiffe://elsewhere.example/ns/x/sa/y"),
            Some("app.saitama.example"),
            Some("stranger.example"),
        ];
        for uri in values {
            for dns in values {
                let full = CallerFacts {
                    uri_san: uri,
                    dns_san: dns,
                    ..CallerFacts::default()
                };
                let uri_read = if c.needs_uri_san() { uri } else { None };
                let dns_read = if c.needs_dns_san(uri_read) { dns } else { None };
                let read = CallerFacts {
                    uri_san: uri_read,
                    dns_san: dns_read,
                    ..CallerFacts::default()
                };
                assert_eq!(
                    resolve_caller(&c.parties, c.from, c.unidentified, &full),
                    resolve_caller(&c.parties, c.from, c.unidentified, &read),
                    "{uri:?} {dns:?}"
                );
            }
        }
    }

    #[test]
    fn san_reads_follow_what_the_configuration_names() {
        let shipped = settings("{}");
        skipped_reads_change_nothing(&shipped);
        let unidentified = settings(r#"{"unidentified_party": "tsunagu"}"#);
        assert!(unidentified.needs_uri_san());
        assert!(unidentified.needs_dns_san(None));
        skipped_reads_change_nothing(&unidentified);
        let none = settings(
            r#"{"identities": {"tsunagu": [], "felica-pocket-marketing": [], "saitama-city": [], "aeon-financial-service": []}}"#,
        );
        assert!(!none.needs_uri_san() && !none.needs_dns_san(None));
        skipped_reads_change_nothing(&none);
        let by_dns = settings(
            r#"{"unidentified_party": "tsunagu", "identities": {"tsunagu": ["dns:app.saitama.example"]}}"#,
        );
        assert!(by_dns.needs_dns_san(Some("spiffe://elsewhere.example/ns/x/sa/y")));
        skipped_reads_change_nothing(&by_dns);
        assert!(
            shipped.needs_uri_san(),
            "the shipped parties are named by URI SANs"
        );
        assert!(!shipped.needs_dns_san(Some("spiffe://minna-app.example/ns/tsunagu/web")));
        assert!(
            !shipped.needs_dns_san(None),
            "no DNS identity, no unidentified party"
        );
        let cluster = settings(r#"{"from": "upstream_cluster"}"#);
        assert!(!cluster.needs_uri_san() && !cluster.needs_dns_san(None));
        assert!(cluster.needs_cluster(), "the shipped parties name clusters");
        let no_clusters = settings(
            r#"{"from": "upstream_cluster", "identities": {"saitama-city": [], "aeon-financial-service": []}}"#,
        );
        assert!(!no_clusters.needs_cluster());
        let unidentified_egress = settings(
            r#"{"from": "upstream_cluster", "unidentified_party": "tsunagu", "identities": {"saitama-city": [], "aeon-financial-service": []}}"#,
        );
        assert!(unidentified_egress.needs_cluster());
    }
}
