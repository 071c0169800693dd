//! The compiled policy: the checked, indexed form of a [`PolicyDoc`] that the decision
//! function reads, with where each category travels in a request (header names, query
//! parameters, JSON selectors).

use crate::policy::name_map::{NameFilter, NameMap};

use crate::body::matcher::Matcher;
use crate::body::redactor::FieldAction;
use crate::body::selector::parse_selector;
use crate::body::transform::CoarsenSpec;
use crate::error::ConfigError;
use crate::grpc::{parse_proto_selector, CategorySelector};
use crate::policy::categories::{CategoryIdx, CategorySet};
pub use crate::policy::document::{
    Basis, CategoryDoc, Label, PartyDoc, PartyKind, PolicyDoc, PurposeDoc, WithoutConsent,
};
use crate::policy::party::{IdentityPattern, Party, PartyIdx};

/// The shipped default policy: さいたま市みんなのアプリ's privacy policy (2024-07-29).
pub const DEFAULT_POLICY_JSON: &str =
    include_str!("../../../../envoy-config/policy/saitama-minna-app.json");

/// Index of a purpose in the compiled policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PurposeIdx(pub u16);

/// A checked data category.
#[derive(Debug, Clone)]
pub struct Category {
    /// Stable id.
    pub id: String,
    /// Human labels.
    pub label: Label,
    /// Whether it needs an explicit grant per purpose.
    pub explicit_grant: bool,
}

/// A checked purpose.
#[derive(Debug, Clone)]
pub struct Purpose {
    /// Stable id.
    pub id: String,
    /// Human labels.
    pub label: Label,
    /// The policy clause it comes from, e.g. `§3(1)ア②`.
    pub section: Option<String>,
    /// Legal basis.
    pub basis: Basis,
    /// Block or strip when an opt-in consent is missing.
    pub without_consent: WithoutConsent,
    /// Categories the purpose may touch.
    pub categories: CategorySet,
    /// Version of the last material change (§11).
    pub changed_in: u32,
    /// Joint-use purpose (§8).
    pub joint_use: bool,
    /// Actions for forbidden categories other than `remove`.
    pub actions: Vec<(CategoryIdx, FieldAction)>,
}

impl Purpose {
    /// Whether any category of `present` has the action `block` for this purpose.
    pub fn blocks_any(&self, present: CategorySet) -> Option<CategoryIdx> {
        self.actions
            .iter()
            .find(|(c, a)| *a == FieldAction::Block && present.contains(*c))
            .map(|(c, _)| *c)
    }
}

/// A policy checked and indexed for the request path.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    /// Stable policy id.
    pub id: String,
    /// Policy version.
    pub version: u32,
    /// Categories, indexed by [`CategoryIdx`].
    pub categories: Vec<Category>,
    /// Purposes, indexed by [`PurposeIdx`].
    pub purposes: Vec<Purpose>,
    /// Every declared category.
    pub all_categories: CategorySet,
    /// Categories that need an explicit grant.
    pub explicit_grant: CategorySet,
    /// JSON selectors of every category.
    pub matcher: Matcher,
    /// Protobuf selectors of every category, checked for syntax; compiled against the
    /// descriptors with the `grpc` block.
    pub protobuf: Vec<CategorySelector>,
    /// Categories with `query` names: they travel as query parameters, form parameters
    /// and multipart part names.
    pub param_categories: CategorySet,
    /// Categories with header or cookie names: the ones a response's headers (including
    /// `Set-Cookie`) can carry.
    pub header_borne: CategorySet,
    /// Coarsening per category (by position).
    pub coarsen: Vec<Option<CoarsenSpec>>,
    /// Parties with their identities (§6-§8).
    pub parties: Vec<Party>,
    third_party_provision: Option<PurposeIdx>,
    foreign_outsourcing: Option<PurposeIdx>,
    purpose_ids: NameMap<PurposeIdx>,
    party_ids: NameMap<PartyIdx>,
    category_ids: NameMap<CategoryIdx>,
    header_categories: NameMap<CategorySet>,
    /// Names of `header_categories`, for a quick miss.
    header_names: NameFilter,
    query_categories: NameMap<CategorySet>,
    cookie_categories: NameMap<CategorySet>,
}

impl CompiledPolicy {
    /// Parses and compiles the shipped default policy.
    pub fn default_policy() -> Result<Self, ConfigError> {
        Self::from_json(DEFAULT_POLICY_JSON)
    }

    /// Parses and compiles a policy document given as JSON text.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let doc: PolicyDoc = crate::config::parse_json_doc(text.as_bytes(), "policy")?;
        Self::compile(&doc, "policy")
    }

    /// Checks a parsed policy document and builds its indexes; `path` prefixes error paths.
    pub fn compile(doc: &PolicyDoc, path: &str) -> Result<Self, ConfigError> {
        if doc.id.trim().is_empty() {
            return Err(ConfigError::invalid(
                format!("{path}.id"),
                "must not be empty",
            ));
        }
        if doc.version == 0 {
            return Err(ConfigError::invalid(
                format!("{path}.version"),
                "must be 1 or more",
            ));
        }
        let mut categories = Vec::with_capacity(doc.categories.len());
        let mut category_ids = NameMap::default();
        let mut header_categories: NameMap<CategorySet> = NameMap::default();
        let mut query_categories: NameMap<CategorySet> = NameMap::default();
        let mut cookie_categories: NameMap<CategorySet> = NameMap::default();
        let mut explicit_grant = CategorySet::EMPTY;
        let mut param_categories = CategorySet::EMPTY;
        let mut header_borne = CategorySet::EMPTY;
        let mut matcher = Matcher::default();
        let mut protobuf = Vec::new();
        let mut coarsen = Vec::with_capacity(doc.categories.len());
        for (i, c) in doc.categories.iter().enumerate() {
            let at = format!("{path}.categories[{i}]");
            check_id(&c.id, &format!("{at}.id"))?;
            let idx = CategoryIdx::from_position(i)?;
            if category_ids.insert(c.id.clone(), idx).is_some() {
                return Err(ConfigError::invalid(
                    format!("{at}.id"),
                    format!("duplicate category id `{}`", c.id),
                ));
            }
            for (h, name) in c.headers.iter().enumerate() {
                let name = normalise_header_name(name, &format!("{at}.headers[{h}]"))?;
                header_categories.entry(name).or_default().insert(idx);
                header_borne.insert(idx);
            }
            for (q, name) in c.query.iter().enumerate() {
                if name.is_empty() {
                    return Err(ConfigError::invalid(
                        format!("{at}.query[{q}]"),
                        "must not be empty",
                    ));
                }
                query_categories
                    .entry(name.to_ascii_lowercase())
                    .or_default()
                    .insert(idx);
                param_categories.insert(idx);
            }
            for (k, name) in c.cookies.iter().enumerate() {
                if name.is_empty() || !name.bytes().all(is_token_byte) {
                    return Err(ConfigError::invalid(
                        format!("{at}.cookies[{k}]"),
                        "not a valid cookie name (token characters only)",
                    ));
                }
                cookie_categories
                    .entry(name.to_ascii_lowercase())
                    .or_default()
                    .insert(idx);
                header_borne.insert(idx);
            }
            if c.explicit_grant {
                explicit_grant.insert(idx);
            }
            for (j, text) in c.json.iter().enumerate() {
                let selector = parse_selector(text)
                    .map_err(|m| ConfigError::invalid(format!("{at}.json[{j}]"), m))?;
                matcher
                    .add(&selector, idx)
                    .map_err(|m| ConfigError::invalid(format!("{at}.json[{j}]"), m))?;
            }
            for (j, text) in c.protobuf.iter().enumerate() {
                let at_j = format!("{at}.protobuf[{j}]");
                let selector =
                    parse_proto_selector(text).map_err(|m| ConfigError::invalid(&at_j, m))?;
                protobuf.push(CategorySelector {
                    category: idx,
                    selector,
                    at: at_j,
                });
            }
            if let Some(spec) = &c.coarsen {
                spec.check()
                    .map_err(|m| ConfigError::invalid(format!("{at}.coarsen"), m))?;
            }
            coarsen.push(c.coarsen.clone());
            categories.push(Category {
                id: c.id.clone(),
                label: c.label.clone(),
                explicit_grant: c.explicit_grant,
            });
        }
        if doc.purposes.is_empty() {
            return Err(ConfigError::invalid(
                format!("{path}.purposes"),
                "a policy needs at least one purpose",
            ));
        }
        let mut purposes = Vec::with_capacity(doc.purposes.len());
        let mut purpose_ids = NameMap::default();
        for (i, p) in doc.purposes.iter().enumerate() {
            let at = format!("{path}.purposes[{i}]");
            check_id(&p.id, &format!("{at}.id"))?;
            let idx = u16::try_from(i).map(PurposeIdx).map_err(|_| {
                ConfigError::invalid(format!("{path}.purposes"), "too many purposes")
            })?;
            if purpose_ids.insert(p.id.clone(), idx).is_some() {
                return Err(ConfigError::invalid(
                    format!("{at}.id"),
                    format!("duplicate purpose id `{}`", p.id),
                ));
            }
            let mut set = CategorySet::EMPTY;
            for (j, cid) in p.categories.iter().enumerate() {
                let cat = category_ids.get(cid).ok_or_else(|| {
                    ConfigError::invalid(
                        format!("{at}.categories[{j}]"),
                        format!("unknown category `{cid}`"),
                    )
                })?;
                set.insert(*cat);
            }
            if p.changed_in == 0 || p.changed_in > doc.version {
                return Err(ConfigError::invalid(
                    format!("{at}.changed_in"),
                    format!("must be between 1 and the policy version {}", doc.version),
                ));
            }
            let without_consent = match (p.basis, p.without_consent) {
                (Basis::Consent, choice) => choice.unwrap_or_default(),
                (_, None) => WithoutConsent::Block,
                (basis, Some(_)) => {
                    return Err(ConfigError::invalid(
                        format!("{at}.without_consent"),
                        format!(
                            "only applies to purposes with basis `consent`, not `{}`",
                            basis.as_str()
                        ),
                    ))
                }
            };
            let mut actions = Vec::new();
            for (cid, action) in &p.transforms {
                let at_t = format!("{at}.transforms.{cid}");
                let cat = category_ids.get(cid).copied().ok_or_else(|| {
                    ConfigError::invalid(&at_t, format!("unknown category `{cid}`"))
                })?;
                let has_coarsen = coarsen.get(cat.position()).is_some_and(Option::is_some);
                if *action == FieldAction::Coarsen && !has_coarsen {
                    return Err(ConfigError::invalid(
                        at_t,
                        format!("category `{cid}` declares no `coarsen` rule"),
                    ));
                }
                if *action != FieldAction::Remove {
                    actions.push((cat, *action));
                }
            }
            purposes.push(Purpose {
                id: p.id.clone(),
                label: p.label.clone(),
                section: p.section.clone(),
                basis: p.basis,
                without_consent,
                categories: set,
                changed_in: p.changed_in,
                joint_use: p.joint_use,
                actions,
            });
        }
        let mut party_ids = NameMap::default();
        let mut parties = Vec::with_capacity(doc.parties.len());
        for (i, party) in doc.parties.iter().enumerate() {
            let at = format!("{path}.parties[{i}]");
            check_id(&party.id, &format!("{at}.id"))?;
            let idx = u16::try_from(i)
                .map(PartyIdx)
                .map_err(|_| ConfigError::invalid(format!("{path}.parties"), "too many parties"))?;
            if party_ids.insert(party.id.clone(), idx).is_some() {
                return Err(ConfigError::invalid(
                    format!("{at}.id"),
                    format!("duplicate party id `{}`", party.id),
                ));
            }
            let mut identities = Vec::with_capacity(party.identities.len());
            for (j, text) in party.identities.iter().enumerate() {
                let pattern = IdentityPattern::parse(text, &format!("{at}.identities[{j}]"))?;
                let claimed = parties
                    .iter()
                    .position(|p: &Party| p.identities.contains(&pattern));
                if let Some(k) = claimed {
                    return Err(ConfigError::invalid(
                        format!("{at}.identities[{j}]"),
                        format!("the same identity already names parties[{k}]"),
                    ));
                }
                identities.push(pattern);
            }
            let country = match &party.country {
                None => None,
                Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) => {
                    Some(c.clone())
                }
                Some(_) => {
                    return Err(ConfigError::invalid(
                        format!("{at}.country"),
                        "must be an ISO 3166-1 alpha-2 code in capitals, e.g. `JP`",
                    ))
                }
            };
            parties.push(Party {
                id: party.id.clone(),
                kind: party.kind,
                identities,
                country,
                abroad: false,
            });
        }
        mark_processors_abroad(&mut parties, path)?;
        let third_party_provision = match &doc.third_party_provision {
            None => None,
            Some(id) => Some(consent_purpose(
                &purpose_ids,
                &purposes,
                id,
                &format!("{path}.third_party_provision"),
            )?),
        };
        let foreign_outsourcing = match &doc.foreign_outsourcing {
            None => None,
            Some(id) => Some(consent_purpose(
                &purpose_ids,
                &purposes,
                id,
                &format!("{path}.foreign_outsourcing"),
            )?),
        };
        Ok(CompiledPolicy {
            id: doc.id.clone(),
            version: doc.version,
            all_categories: CategorySet::all(categories.len()),
            categories,
            purposes,
            explicit_grant,
            matcher,
            protobuf,
            param_categories,
            header_borne,
            coarsen,
            parties,
            third_party_provision,
            foreign_outsourcing,
            purpose_ids,
            party_ids,
            category_ids,
            header_names: {
                let mut filter = NameFilter::default();
                for name in header_categories.keys() {
                    filter.insert(name);
                }
                filter
            },
            header_categories,
            query_categories,
            cookie_categories,
        })
    }

    /// Whether some purpose pseudonymises (and so the configuration needs a key); returns
    /// the path of the first such transform.
    pub fn first_pseudonymising_purpose(&self) -> Option<String> {
        self.purposes.iter().find_map(|p| {
            p.actions
                .iter()
                .find(|(_, a)| *a == FieldAction::Pseudonymise)
                .map(|(c, _)| format!("{}.transforms.{}", p.id, self.category_id(*c)))
        })
    }

    /// Finds a purpose by id; `None` means use beyond purpose (§4).
    pub fn purpose_idx(&self, id: &str) -> Option<PurposeIdx> {
        self.purpose_ids.get(id).copied()
    }

    /// The purpose whose grant is consent to entrusting data to a processor abroad (§6),
    /// if the policy has one.
    pub fn foreign_outsourcing(&self) -> Option<(PurposeIdx, &Purpose)> {
        let idx = self.foreign_outsourcing?;
        self.purpose(idx).map(|p| (idx, p))
    }

    /// The purpose whose grant is consent to third-party provision, if the policy has one.
    pub fn third_party_provision(&self) -> Option<(PurposeIdx, &Purpose)> {
        let idx = self.third_party_provision?;
        self.purpose(idx).map(|p| (idx, p))
    }

    /// Finds a party by id.
    pub fn party_idx(&self, id: &str) -> Option<PartyIdx> {
        self.party_ids.get(id).copied()
    }

    /// The party at `idx`.
    pub fn party(&self, idx: PartyIdx) -> Option<&Party> {
        self.parties.get(usize::from(idx.0))
    }

    /// Purpose ids as a sorted list without repeats; an unknown id is an error at
    /// `path[i]`.
    pub fn purpose_list(&self, ids: &[String], path: &str) -> Result<Vec<PurposeIdx>, ConfigError> {
        let mut out = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let idx = self.purpose_idx(id).ok_or_else(|| {
                ConfigError::invalid(format!("{path}[{i}]"), format!("unknown purpose `{id}`"))
            })?;
            out.push(idx);
        }
        out.sort_by_key(|p| p.0);
        out.dedup();
        Ok(out)
    }

    /// The purpose at `idx`.
    pub fn purpose(&self, idx: PurposeIdx) -> Option<&Purpose> {
        self.purposes.get(usize::from(idx.0))
    }

    /// Finds a category by id.
    pub fn category_idx(&self, id: &str) -> Option<CategoryIdx> {
        self.category_ids.get(id).copied()
    }

    /// The category at `idx`.
    pub fn category(&self, idx: CategoryIdx) -> Option<&Category> {
        self.categories.get(idx.position())
    }

    /// The stable id of the category at `idx` (empty if out of range).
    pub fn category_id(&self, idx: CategoryIdx) -> &str {
        self.category(idx).map(|c| c.id.as_str()).unwrap_or("")
    }

    /// Categories carried by a header (name in lowercase).
    pub fn header_categories(&self, lowercase_name: &str) -> CategorySet {
        if !self.header_names.may_contain(lowercase_name) {
            return CategorySet::EMPTY;
        }
        self.header_categories
            .get(lowercase_name)
            .copied()
            .unwrap_or_default()
    }

    /// Categories carried by a query parameter (name in lowercase, already decoded).
    pub fn query_categories(&self, lowercase_name: &str) -> CategorySet {
        self.query_categories
            .get(lowercase_name)
            .copied()
            .unwrap_or_default()
    }

    /// Whether any query parameter is mapped to a category.
    pub fn has_query_mappings(&self) -> bool {
        !self.query_categories.is_empty()
    }

    /// Categories carried by a cookie (name in lowercase).
    pub fn cookie_categories(&self, lowercase_name: &str) -> CategorySet {
        self.cookie_categories
            .get(lowercase_name)
            .copied()
            .unwrap_or_default()
    }

    /// Whether any cookie is mapped to a category.
    pub fn has_cookie_mappings(&self) -> bool {
        !self.cookie_categories.is_empty()
    }
}

/// The purpose `id` names, which must have basis `consent` outside joint use (a purpose
/// whose grant is a consent the policy asks for: provision, outsourcing abroad).
fn consent_purpose(
    purpose_ids: &NameMap<PurposeIdx>,
    purposes: &[Purpose],
    id: &str,
    at: &str,
) -> Result<PurposeIdx, ConfigError> {
    let idx = purpose_ids
        .get(id)
        .copied()
        .ok_or_else(|| ConfigError::invalid(at, format!("unknown purpose `{id}`")))?;
    let ok = purposes
        .get(usize::from(idx.0))
        .is_some_and(|p| p.basis == Basis::Consent && !p.joint_use);
    if !ok {
        return Err(ConfigError::invalid(
            at,
            "must name a purpose with basis `consent` outside joint use",
        ));
    }
    Ok(idx)
}

/// Marks the processors in another country than the operator's (§6). A policy that gives
/// a processor a country must give the operator one.
fn mark_processors_abroad(parties: &mut [Party], path: &str) -> Result<(), ConfigError> {
    let home = parties
        .iter()
        .find(|p| p.kind == PartyKind::Operator)
        .and_then(|p| p.country.clone());
    for (i, party) in parties.iter_mut().enumerate() {
        if party.kind != PartyKind::Processor {
            continue;
        }
        match (&home, &party.country) {
            (_, None) => {}
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    format!("{path}.parties[{i}].country"),
                    "a processor's country needs the operator's country to compare with",
                ))
            }
            (Some(home), Some(country)) => party.abroad = country != home,
        }
    }
    Ok(())
}

fn check_id(id: &str, path: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            path,
            "ids use lowercase ascii letters, digits, '.', '_' and '-' (at most 128)",
        ))
    }
}

/// Whether a byte may stand in an HTTP token (header and cookie names).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks an HTTP header name and returns it in lowercase, as Envoy presents it.
pub fn normalise_header_name(name: &str, path: &str) -> Result<String, ConfigError> {
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(ConfigError::invalid(
            path,
            "not a valid HTTP header name (pseudo-headers such as :path cannot be mapped)",
        ));
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests;
