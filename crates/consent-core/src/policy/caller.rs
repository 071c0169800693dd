//! The `caller` block of the plugin configuration: where the identity of the party that
//! receives the data comes from, and this deployment's identities for the policy's parties.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::policy::compiled::{normalise_header_name, CompiledPolicy};
use crate::policy::gpc::GPC_HEADER;
use crate::policy::party::{CallerFrom, IdentityKind, IdentityPattern, Party, PartyIdx};

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
        let has_dns_identities = parties
            .iter()
            .any(|p| p.identities.iter().any(|i| i.kind == IdentityKind::DnsSan));
        Ok(CallerSettings {
            has_dns_identities,
            parties,
            from: doc.from,
            unidentified,
            dev_header,
        })
    }
}
