//! The privacy policy as an operator writes it: purposes, data categories, parties, and
//! where each category travels (header names, query parameters, JSON selectors).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::body::redactor::FieldAction;
use crate::body::transform::CoarsenSpec;

/// A label in the policy's own language and in English.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// Japanese label, as the policy words it.
    pub ja: String,
    /// English label.
    pub en: String,
}

/// The legal basis on which a purpose processes personal data.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Opt-in: only with the person's consent for this purpose.
    Consent,
    /// Notified or published: allowed unless the person stopped use.
    Notice,
    /// Needed to perform a contract.
    Contract,
    /// Required by law or a public task; survives a stop-use request.
    Legal,
}

impl Basis {
    /// The basis as written in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Consent => "consent",
            Basis::Notice => "notice",
            Basis::Contract => "contract",
            Basis::Legal => "legal",
        }
    }
}

/// What happens to a request for an opt-in purpose the person has not consented to.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum WithoutConsent {
    /// Reject the request with the block status.
    #[default]
    Block,
    /// Let the request through with every personal-data category removed.
    Strip,
}

/// Who a party is with respect to the policy (§6, §7, §8).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PartyKind {
    /// The operator that wrote the policy.
    Operator,
    /// A processor acting for the operator (委託先).
    Processor,
    /// A joint user under §8 (共同利用者).
    JointUser,
    /// Anyone else (第三者).
    ThirdParty,
}

impl PartyKind {
    /// The stable snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            PartyKind::Operator => "operator",
            PartyKind::Processor => "processor",
            PartyKind::JointUser => "joint_user",
            PartyKind::ThirdParty => "third_party",
        }
    }
}

/// One data category as written in the policy file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryDoc {
    /// Stable id, e.g. `location.gps`; consent records and metrics carry it.
    pub id: String,
    /// Human labels.
    pub label: Label,
    /// Group the category belongs to (attributes, usage, location, ...), for display.
    #[serde(default)]
    pub group: Option<String>,
    /// Where the policy names it, e.g. `§8(2)①`.
    #[serde(default)]
    pub section: Option<String>,
    /// Whether the category needs an explicit grant for the purpose at hand, whatever the
    /// purpose's basis (location in the shipped policy).
    #[serde(default)]
    pub explicit_grant: bool,
    /// Request and response header names that carry this category.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Query parameter names that carry this category; form parameters and multipart
    /// part names are matched against them too.
    #[serde(default)]
    pub query: Vec<String>,
    /// Cookie names that carry this category (matched without regard to ASCII case):
    /// removed from `Cookie` request headers, and the `Set-Cookie` response headers that
    /// set them are dropped.
    #[serde(default)]
    pub cookies: Vec<String>,
    /// JSON field selectors that find this category in bodies (`$..gps`, `$.a[*].b`).
    #[serde(default)]
    pub json: Vec<String>,
    /// Protobuf field selectors that find this category in gRPC messages
    /// (`saitama.v1.Profile.email`, `..email`); see [`crate::grpc`].
    #[serde(default)]
    pub protobuf: Vec<String>,
    /// How to coarsen this category where a purpose's transform says `coarsen`.
    #[serde(default)]
    pub coarsen: Option<CoarsenSpec>,
}

/// One purpose of use as written in the policy file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PurposeDoc {
    /// Stable id sent by callers in the purpose header, e.g. `marketing.campaigns`.
    pub id: String,
    /// Human labels.
    pub label: Label,
    /// Where the policy states the purpose, e.g. `§3(1)ア①`.
    #[serde(default)]
    pub section: Option<String>,
    /// Legal basis.
    pub basis: Basis,
    /// For `consent` purposes: block or strip when consent is missing (default block).
    #[serde(default)]
    pub without_consent: Option<WithoutConsent>,
    /// Category ids this purpose may touch; everything else is removed.
    pub categories: Vec<String>,
    /// Policy version in which this purpose's terms last changed materially (§11).
    #[serde(default = "first_version")]
    pub changed_in: u32,
    /// Whether this is a joint-use purpose (§8).
    #[serde(default)]
    pub joint_use: bool,
    /// What happens in bodies to forbidden categories, by category id (default `remove`):
    /// `coarsen` or `pseudonymise` for anonymised use (§9), or `block`.
    #[serde(default)]
    pub transforms: BTreeMap<String, FieldAction>,
}

fn first_version() -> u32 {
    1
}

/// One party as written in the policy file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PartyDoc {
    /// Stable id.
    pub id: String,
    /// Human labels.
    pub label: Label,
    /// Role under the policy.
    pub kind: PartyKind,
    /// Identities that name this party: `spiffe://…` (peer URI SAN), `dns:…` (peer DNS
    /// SAN), `cluster:…` (destination cluster), `header:…` (development header); a
    /// trailing `*` matches any suffix. See [`crate::party`].
    #[serde(default)]
    pub identities: Vec<String>,
    /// Where the party handles the data: an ISO 3166-1 alpha-2 code (`JP`). A processor
    /// in another country than the operator's is a processor abroad (§6).
    #[serde(default)]
    pub country: Option<String>,
}

/// A policy document as an operator writes it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    /// Stable policy id.
    pub id: String,
    /// Policy version, counting up from 1 with every published change.
    pub version: u32,
    /// Date the version took effect, for display.
    #[serde(default)]
    pub effective: Option<String>,
    /// Title, for display.
    #[serde(default)]
    pub title: Option<Label>,
    /// Where the policy text comes from, for display.
    #[serde(default)]
    pub source: Option<String>,
    /// Data categories.
    pub categories: Vec<CategoryDoc>,
    /// Purposes of use; a request with a purpose outside this list is use beyond purpose (§4).
    pub purposes: Vec<PurposeDoc>,
    /// Parties that may receive data.
    #[serde(default)]
    pub parties: Vec<PartyDoc>,
    /// The consent-basis purpose whose grant is consent to provision to third parties
    /// (§7); its categories are all a third party may receive. Without it, third parties
    /// receive data only for purposes with a legal basis.
    #[serde(default)]
    pub third_party_provision: Option<String>,
    /// The consent-basis purpose whose grant is consent to entrusting the person's data to
    /// a processor abroad (§6: 外国にある第三者への委託). Without it, processors abroad get
    /// personal data only for purposes with a legal basis.
    #[serde(default)]
    pub foreign_outsourcing: Option<String>,
}
