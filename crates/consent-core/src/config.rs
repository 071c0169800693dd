//! The plugin configuration: typed, checked once, compiled into an immutable form.

use serde::{Deserialize, Serialize};

use crate::body::matcher::Matcher;
use crate::body::redactor::{
    redact, BodyOutcome, BodyReport, BodyRules, ElementRules, ElementVerdict,
};
use crate::body::scan::JsonError;
use crate::body::selector::{parse_selector, Segment};
use crate::body::transform::CivilDate;
use crate::body::{EncodedBody, UnparsedBody};
use crate::categories::CategoryIdx;
use crate::decision::{decide, Decision, Enforcement, Outcome};
use crate::decision_log::{DecisionLogDoc, DecisionLogSettings};
use crate::error::ConfigError;
use crate::gpc::{is_signal, GpcDoc, GpcSettings, GPC_HEADER};
use crate::keyed_snapshot::SubjectKeyKind;
use crate::party::{resolve_caller, CallerFacts, CallerFrom, IdentityPattern, Party, PartyIdx};
use crate::policy::{normalise_header_name, CompiledPolicy, PolicyDoc};
use crate::request::HeaderValue;
use crate::request::RequestContext;
use crate::request::RequestView;
use crate::routes::{RouteFacts, RouteRuleDoc, RouteTable};
use crate::shared_keys::SharedKeys;
use crate::snapshot::ConsentRecord as ConsentRecordRef;
use crate::snapshot::{ConsentIndex, SnapshotDoc};
use crate::subject_key::SubjectKeying;

/// Default header carrying who the data is about.
pub const DEFAULT_USER_HEADER: &str = "x-user-id";
/// Default header carrying why the data is used.
pub const DEFAULT_PURPOSE_HEADER: &str = "x-data-purpose";
/// Default header telling backends what the filter decided.
pub const DEFAULT_DECISION_HEADER: &str = "x-consent-decision";
/// Default status of a block reply.
pub const DEFAULT_BLOCK_STATUS: u16 = 403;

fn default_user_header() -> String {
    DEFAULT_USER_HEADER.to_string()
}
fn default_purpose_header() -> String {
    DEFAULT_PURPOSE_HEADER.to_string()
}
fn default_decision_header() -> String {
    DEFAULT_DECISION_HEADER.to_string()
}
fn default_require_user() -> bool {
    true
}
fn default_block_status() -> u16 {
    DEFAULT_BLOCK_STATUS
}
fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

/// Default largest body the filter buffers (Envoy's default buffer limit is 1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Shortest accepted pseudonymisation key, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// Where the filter gets consent records from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotSource {
    /// The `consents` block of this configuration.
    #[default]
    Inline,
    /// Envoy shared data, published by the `consent_fetcher` singleton (same `vm_id`).
    Shared,
}

/// What the filter does when it cannot trust its snapshot (none yet, or too old).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Block the request.
    #[default]
    Block,
    /// Pass it with every personal-data category removed.
    Strip,
}

fn default_snapshot_path() -> String {
    "/snapshot".to_string()
}
fn default_refresh_ms() -> u64 {
    5_000
}
fn default_timeout_ms() -> u64 {
    2_000
}
fn default_max_staleness_ms() -> u64 {
    30_000
}
fn default_bucket_bits() -> u8 {
    16
}

/// The live snapshot settings (`snapshot` in the plugin configuration).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSettingsDoc {
    /// `inline` (default) or `shared`.
    #[serde(default)]
    pub source: SnapshotSource,
    /// Envoy cluster of the consent source (fetcher).
    #[serde(default)]
    pub cluster: Option<String>,
    /// Path of the full snapshot at the source.
    #[serde(default = "default_snapshot_path")]
    pub path: String,
    /// `:authority` of the fetch (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// Where deltas are: `{deltas_path}/{version}` gives the changes after `version`
    /// (404: nothing newer). Without it every refresh asks for the full snapshot.
    #[serde(default)]
    pub deltas_path: Option<String>,
    /// How often the fetcher asks the source.
    #[serde(default = "default_refresh_ms")]
    pub refresh_ms: u64,
    /// How long one fetch may take.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Oldest snapshot the filter decides on; older ones get the failure mode.
    #[serde(default = "default_max_staleness_ms")]
    pub max_staleness_ms: u64,
    /// Buckets are 2^bits; each request reads one.
    #[serde(default = "default_bucket_bits")]
    pub bucket_bits: u8,
    /// How snapshot subjects are written: `plain` or `hmac_sha256`.
    #[serde(default)]
    pub subject_key: SubjectKeyKind,
    /// The HMAC key shared with the source (16+ bytes). Never logged.
    #[serde(default)]
    pub subject_key_secret: Option<String>,
    /// `block` (default) or `strip`, when the snapshot is missing or stale.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Who fetches: `singleton` (an `envoy.bootstrap.wasm` service with root id
    /// `consent_fetcher`, default) or `worker_lease` (one of the filter's own worker VMs,
    /// elected through a lease in shared data; for Istio and Envoy Gateway, which cannot
    /// add bootstrap extensions).
    #[serde(default)]
    pub fetcher: FetcherMode,
}

/// Who fetches the live snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FetcherMode {
    /// A bootstrap singleton with root id `consent_fetcher`.
    #[default]
    Singleton,
    /// The filter's worker VMs, one at a time under a lease.
    WorkerLease,
}

impl Default for SnapshotSettingsDoc {
    fn default() -> Self {
        SnapshotSettingsDoc {
            source: SnapshotSource::default(),
            cluster: None,
            path: default_snapshot_path(),
            authority: None,
            deltas_path: None,
            refresh_ms: default_refresh_ms(),
            timeout_ms: default_timeout_ms(),
            max_staleness_ms: default_max_staleness_ms(),
            bucket_bits: default_bucket_bits(),
            subject_key: SubjectKeyKind::default(),
            subject_key_secret: None,
            failure_mode: FailureMode::default(),
            fetcher: FetcherMode::default(),
        }
    }
}

/// Checked live snapshot settings.
#[derive(Debug, Clone)]
pub struct SnapshotSettings {
    /// Where records come from.
    pub source: SnapshotSource,
    /// Cluster of the consent source (empty when inline).
    pub cluster: String,
    /// Path of the full snapshot.
    pub path: String,
    /// `:authority` of the fetch.
    pub authority: String,
    /// Path prefix of deltas, if the source serves them.
    pub deltas_path: Option<String>,
    /// Refresh period.
    pub refresh_ms: u64,
    /// Fetch timeout.
    pub timeout_ms: u64,
    /// Staleness bound.
    pub max_staleness_ms: u64,
    /// Bucket bits.
    pub bucket_bits: u8,
    /// Subject keying.
    pub keying: SubjectKeying,
    /// Failure mode.
    pub failure_mode: FailureMode,
    /// Who fetches.
    pub fetcher: FetcherMode,
}

/// Where the subjects of a multi-subject body are.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectsDoc {
    /// Selector of the elements, each about one person (e.g. `$.items[*]`).
    pub elements: String,
    /// Path from an element to its subject id (e.g. `$.user_id`); exact keys only.
    pub subject: String,
}

/// Body handling settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BodyDoc {
    /// Largest body buffered; larger ones get 413 (request) or an error reply (response).
    #[serde(default = "default_max_body_bytes")]
    pub max_bytes: usize,
    /// Bodies with an unreadable `content-encoding`: `block` (default) or `strip`.
    #[serde(default)]
    pub encoded: EncodedBody,
    /// Bodies declared as something other than JSON when data must be checked: `pass`
    /// (default), `sniff` (redact them if they parse as JSON) or `block`.
    #[serde(default)]
    pub unparsed: UnparsedBody,
    /// Multi-subject bodies: each element is decided with its own subject's consent.
    #[serde(default)]
    pub subjects: Vec<SubjectsDoc>,
    /// Hold a message's headers until its body is checked (default). Needs Envoy's
    /// `allow_on_headers_stop_iteration: true`, which Istio's `WasmPlugin` and Envoy
    /// Gateway's `EnvoyExtensionPolicy` cannot set: there, use `false`. Then headers go on
    /// first and the body is buffered and checked before any of it goes on; a refused
    /// request body still gets its error reply, a refused response body resets the stream
    /// (the client gets the headers and no body, never the unchecked body).
    #[serde(default = "default_hold_headers")]
    pub hold_headers: bool,
}

fn default_hold_headers() -> bool {
    true
}

impl Default for BodyDoc {
    fn default() -> Self {
        BodyDoc {
            max_bytes: DEFAULT_MAX_BODY_BYTES,
            encoded: EncodedBody::default(),
            unparsed: UnparsedBody::default(),
            subjects: Vec::new(),
            hold_headers: default_hold_headers(),
        }
    }
}

/// Checked body settings.
#[derive(Debug, Clone)]
pub struct BodySettings {
    /// Largest body buffered.
    pub max_bytes: usize,
    /// What to do with encoded bodies.
    pub encoded: EncodedBody,
    /// What to do with non-JSON bodies.
    pub unparsed: UnparsedBody,
    /// Element selectors (the match id is the index into `subject_paths`).
    pub elements: Matcher,
    /// Key paths from an element to its subject.
    pub subject_paths: Vec<Vec<String>>,
    /// Hold headers until the body is checked.
    pub hold_headers: bool,
}

impl BodySettings {
    /// Whether multi-subject elements are configured.
    pub fn has_elements(&self) -> bool {
        !self.subject_paths.is_empty()
    }
}

/// The plugin configuration as an operator writes it (Envoy's `configuration` value).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigDoc {
    /// The policy to enforce; the shipped default policy when absent.
    #[serde(default)]
    pub policy: Option<PolicyDoc>,
    /// Header naming the data subject.
    #[serde(default = "default_user_header")]
    pub user_header: String,
    /// Header naming the data purpose.
    #[serde(default = "default_purpose_header")]
    pub purpose_header: String,
    /// Header set on the request to tell backends what was decided (any client value is replaced).
    #[serde(default = "default_decision_header")]
    pub decision_header: String,
    /// Whether a request without a user ID is blocked (`user_missing`).
    #[serde(default = "default_require_user")]
    pub require_user: bool,
    /// HTTP status of block replies (400-599).
    #[serde(default = "default_block_status")]
    pub block_status: u16,
    /// Inline consent snapshot.
    #[serde(default)]
    pub consents: SnapshotDoc,
    /// Body handling.
    #[serde(default)]
    pub body: BodyDoc,
    /// Key for pseudonyms (HMAC-SHA-256), at least 16 bytes. Without it, `pseudonymise`
    /// transforms remove the value instead. Never logged.
    #[serde(default)]
    pub pseudonymisation_key: Option<String>,
    /// Live snapshot: where records come from and how fresh they must be.
    #[serde(default)]
    pub snapshot: SnapshotSettingsDoc,
    /// Who receives the data: where the caller's identity comes from.
    #[serde(default)]
    pub caller: CallerDoc,
    /// Global Privacy Control handling.
    #[serde(default)]
    pub gpc: GpcDoc,
    /// Per-route rules, matched by route name, host and path prefix.
    #[serde(default)]
    pub routes: Vec<RouteRuleDoc>,
    /// The rule for requests no route rule matches.
    #[serde(default)]
    pub default_route: RouteRuleDoc,
    /// Shadow mode: decide and record everything, change nothing (rules may override).
    #[serde(default)]
    pub dry_run: bool,
    /// Decision log lines.
    #[serde(default)]
    pub decision_log: DecisionLogDoc,
}

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

/// Checked settings the request path reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Lowercase user-ID header name.
    pub user_header: String,
    /// Lowercase purpose header name.
    pub purpose_header: String,
    /// Lowercase decision header name.
    pub decision_header: String,
    /// Block requests without a user ID.
    pub require_user: bool,
    /// Status of block replies.
    pub block_status: u16,
}

/// A configuration ready for the request path: settings, policy and consents.
#[derive(Debug, Clone)]
pub struct CompiledConfig {
    /// Checked settings.
    pub settings: Settings,
    /// Compiled policy.
    pub policy: CompiledPolicy,
    /// Consent snapshot.
    pub consents: ConsentIndex,
    /// Body handling.
    pub body: BodySettings,
    /// Pseudonymisation key.
    pub key: Option<Vec<u8>>,
    /// Live snapshot settings.
    pub snapshot: SnapshotSettings,
    /// Fingerprint of the policy, checked against published buckets.
    pub policy_fingerprint: [u8; 8],
    /// Where the live snapshot of this policy, keying and layout is in shared data.
    pub shared_keys: SharedKeys,
    /// Caller identification.
    pub caller: CallerSettings,
    /// GPC handling.
    pub gpc: GpcSettings,
    /// Route rules.
    pub routes: RouteTable,
    /// Decision logging.
    pub decision_log: DecisionLogSettings,
}

impl CompiledConfig {
    /// Reads a request's identity headers and decides it against this configuration, for
    /// a caller without identity on the default route (tests, tools).
    pub fn evaluate<'a, I>(&self, headers: I) -> Decision
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let headers: Vec<(&'a str, &'a [u8])> = headers.into_iter().collect();
        let view = RequestView::from_headers(
            &self.settings.user_header,
            &self.settings.purpose_header,
            headers.iter().copied(),
        );
        let context = self.context(
            &CallerFacts::default(),
            &RouteFacts::default(),
            headers.iter().copied(),
        );
        self.decide(&view.with_context(context))
    }

    /// Resolves the caller, the GPC signal and the route rule of a request. `headers` are
    /// read for `Sec-GPC` and the development caller header.
    pub fn context<'a, I>(
        &self,
        caller: &CallerFacts<'_>,
        route: &RouteFacts<'_>,
        headers: I,
    ) -> RequestContext
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let mut gpc = false;
        let mut dev = Vec::new();
        for (name, value) in headers {
            if name == GPC_HEADER {
                gpc |= is_signal(value);
            } else if self.caller.dev_header.as_deref() == Some(name) {
                dev.push(value);
            }
        }
        let facts = CallerFacts {
            header: HeaderValue::fold(dev),
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

    /// Looks up the request's user and decides.
    pub fn decide(&self, view: &RequestView<'_>) -> Decision {
        let record = match view.user {
            HeaderValue::One(user) => match &self.snapshot.keying {
                SubjectKeying::Plain => self.consents.lookup(user),
                keyed => self.consents.lookup(&keyed.subject_for(user)),
            },
            _ => None,
        };
        decide(view, &self.policy, record, &self.enforcement(view))
    }

    /// Decides with a record found elsewhere (e.g. in shared data) instead of `consents`.
    pub fn decide_with_record(
        &self,
        view: &RequestView<'_>,
        record: Option<&ConsentRecordRef>,
    ) -> Decision {
        decide(view, &self.policy, record, &self.enforcement(view))
    }

    /// The JSON selectors for a decision's bodies: the route rule's when it adds some,
    /// else the policy's.
    pub fn matcher(&self, decision: &Decision) -> &Matcher {
        self.routes
            .rule(decision.facts.rule)
            .matcher
            .as_ref()
            .unwrap_or(&self.policy.matcher)
    }

    /// Decides one element of a multi-subject body: the same purpose, the element's own
    /// subject. A blocked subject (or a missing one, where users are required) drops it.
    pub fn element_verdict(&self, request: &Decision, subject: Option<&str>) -> ElementVerdict {
        self.element_verdict_with(request, subject, |view| self.decide(view))
    }

    /// [`CompiledConfig::element_verdict`] with the decision made by `decide_view`. The
    /// element is decided for the request's purpose, caller, GPC signal and route rule.
    pub fn element_verdict_with(
        &self,
        request: &Decision,
        subject: Option<&str>,
        decide_view: impl FnOnce(&RequestView<'_>) -> Decision,
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
        let decision = decide_view(&view);
        match decision.outcome {
            Outcome::Block => ElementVerdict::Drop,
            Outcome::Allow => ElementVerdict::Forbid(crate::categories::CategorySet::EMPTY),
            Outcome::Redact => ElementVerdict::Forbid(decision.redacted),
        }
    }

    /// Redacts one JSON body for `decision`: the decision's forbidden categories with the
    /// purpose's actions, and, when `body.subjects` is set, each multi-subject element
    /// decided for its own subject with `decide_element` (which looks the subject up the
    /// same way the request was). `record_paths` fills the report's field paths.
    pub fn redact_body(
        &self,
        decision: &Decision,
        body: &[u8],
        today: CivilDate,
        record_paths: bool,
        decide_element: impl FnMut(&RequestView<'_>) -> Decision,
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
            crate::categories::CategorySet::EMPTY
        };
        if !self.body.has_elements() || decision.purpose.is_none() {
            return redact(body, &rules, forbidden, None);
        }
        let element_rules = ElementRules {
            elements: &self.body.elements,
            subject_paths: &self.body.subject_paths,
        };
        let mut decide_element = decide_element;
        let mut verdict = |subject: Option<&str>| {
            self.element_verdict_with(decision, subject, &mut decide_element)
        };
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

/// Parses and checks a plugin configuration. Empty input means every default.
pub fn compile_config(bytes: &[u8]) -> Result<CompiledConfig, ConfigError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ConfigError::invalid("(document)", "the configuration is not UTF-8"))?;
    let text = if text.trim().is_empty() { "{}" } else { text };
    let mut de = serde_json::Deserializer::from_str(text);
    let doc: ConfigDoc =
        serde_path_to_error::deserialize(&mut de).map_err(|e| ConfigError::from_serde("", e))?;
    de.end().map_err(|_| {
        ConfigError::invalid("(document)", "trailing characters after the JSON document")
    })?;
    compile_doc(&doc)
}

/// Checks a parsed configuration document.
pub fn compile_doc(doc: &ConfigDoc) -> Result<CompiledConfig, ConfigError> {
    let policy = match &doc.policy {
        Some(p) => CompiledPolicy::compile(p, "policy")?,
        None => CompiledPolicy::default_policy()?,
    };
    let user_header = normalise_header_name(&doc.user_header, "user_header")?;
    let purpose_header = normalise_header_name(&doc.purpose_header, "purpose_header")?;
    let decision_header = normalise_header_name(&doc.decision_header, "decision_header")?;
    if user_header == purpose_header
        || decision_header == user_header
        || decision_header == purpose_header
    {
        return Err(ConfigError::invalid(
            "decision_header",
            "user_header, purpose_header and decision_header must be three different headers",
        ));
    }
    for (field, name) in [
        ("user_header", &user_header),
        ("purpose_header", &purpose_header),
        ("decision_header", &decision_header),
    ] {
        if !policy.header_categories(name).is_empty() {
            return Err(ConfigError::invalid(
                field,
                format!("`{name}` is also mapped to a data category in the policy"),
            ));
        }
    }
    if !(400..=599).contains(&doc.block_status) {
        return Err(ConfigError::invalid(
            "block_status",
            "must be an HTTP error status (400-599)",
        ));
    }
    let consents = ConsentIndex::compile(&doc.consents, &policy, "consents")?;
    let body = compile_body(&doc.body)?;
    let snapshot = compile_snapshot(&doc.snapshot)?;
    let key = match &doc.pseudonymisation_key {
        Some(k) if k.len() < MIN_KEY_BYTES => {
            return Err(ConfigError::invalid(
                "pseudonymisation_key",
                format!("must be at least {MIN_KEY_BYTES} bytes"),
            ))
        }
        Some(k) => Some(k.as_bytes().to_vec()),
        None => None,
    };
    let policy_fingerprint = crate::buckets::fingerprint(&policy);
    let shared_keys = SharedKeys::new(policy_fingerprint, &snapshot.keying, snapshot.bucket_bits);
    let caller = compile_caller(
        &doc.caller,
        &policy,
        [&user_header, &purpose_header, &decision_header],
    )?;
    let gpc = GpcSettings::compile(&doc.gpc, &policy, "gpc")?;
    let routes = RouteTable::compile(
        &doc.routes,
        &doc.default_route,
        &policy,
        doc.require_user,
        doc.dry_run,
    )?;
    let log_key = doc
        .snapshot
        .subject_key_secret
        .as_ref()
        .or(doc.pseudonymisation_key.as_ref())
        .map(String::as_bytes);
    let decision_log = DecisionLogSettings::compile(&doc.decision_log, log_key)?;
    Ok(CompiledConfig {
        settings: Settings {
            user_header,
            purpose_header,
            decision_header,
            require_user: doc.require_user,
            block_status: doc.block_status,
        },
        policy,
        consents,
        body,
        key,
        snapshot,
        shared_keys,
        policy_fingerprint,
        caller,
        gpc,
        routes,
        decision_log,
    })
}

fn compile_caller(
    doc: &CallerDoc,
    policy: &CompiledPolicy,
    reserved: [&String; 3],
) -> Result<CallerSettings, ConfigError> {
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
            if reserved.contains(&&name) || name == GPC_HEADER {
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
    let has_dns_identities = parties.iter().any(|p| {
        p.identities
            .iter()
            .any(|i| i.kind == crate::party::IdentityKind::DnsSan)
    });
    Ok(CallerSettings {
        has_dns_identities,
        parties,
        from: doc.from,
        unidentified,
        dev_header,
    })
}

fn compile_snapshot(doc: &SnapshotSettingsDoc) -> Result<SnapshotSettings, ConfigError> {
    let cluster = doc.cluster.clone().unwrap_or_default();
    if doc.source == SnapshotSource::Shared && cluster.trim().is_empty() {
        return Err(ConfigError::invalid(
            "snapshot.cluster",
            "required when snapshot.source is shared (the Envoy cluster of the consent source)",
        ));
    }
    if !doc.path.starts_with('/') {
        return Err(ConfigError::invalid("snapshot.path", "must start with `/`"));
    }
    if doc
        .deltas_path
        .as_deref()
        .is_some_and(|p| !p.starts_with('/'))
    {
        return Err(ConfigError::invalid(
            "snapshot.deltas_path",
            "must start with `/`",
        ));
    }
    if doc.refresh_ms < 100 {
        return Err(ConfigError::invalid(
            "snapshot.refresh_ms",
            "must be at least 100",
        ));
    }
    if doc.max_staleness_ms < doc.refresh_ms {
        return Err(ConfigError::invalid(
            "snapshot.max_staleness_ms",
            "must be at least snapshot.refresh_ms",
        ));
    }
    if !(1..=20).contains(&doc.bucket_bits) {
        return Err(ConfigError::invalid(
            "snapshot.bucket_bits",
            "must be 1 to 20",
        ));
    }
    let keying = match (doc.subject_key, &doc.subject_key_secret) {
        (SubjectKeyKind::Plain, _) => SubjectKeying::Plain,
        (SubjectKeyKind::HmacSha256, Some(secret)) if secret.len() >= MIN_KEY_BYTES => {
            SubjectKeying::Hmac(secret.as_bytes().to_vec())
        }
        (SubjectKeyKind::HmacSha256, _) => {
            return Err(ConfigError::invalid(
                "snapshot.subject_key_secret",
                format!("required for hmac_sha256, at least {MIN_KEY_BYTES} bytes"),
            ))
        }
    };
    Ok(SnapshotSettings {
        source: doc.source,
        authority: doc.authority.clone().unwrap_or_else(|| cluster.clone()),
        cluster,
        deltas_path: doc
            .deltas_path
            .as_ref()
            .map(|p| p.trim_end_matches('/').to_string()),
        path: doc.path.clone(),
        refresh_ms: doc.refresh_ms,
        timeout_ms: doc.timeout_ms,
        max_staleness_ms: doc.max_staleness_ms,
        bucket_bits: doc.bucket_bits,
        keying,
        failure_mode: doc.failure_mode,
        fetcher: doc.fetcher,
    })
}

fn compile_body(doc: &BodyDoc) -> Result<BodySettings, ConfigError> {
    if doc.max_bytes == 0 || doc.max_bytes > 64 * 1024 * 1024 {
        return Err(ConfigError::invalid(
            "body.max_bytes",
            "must be between 1 and 67108864",
        ));
    }
    let mut elements = Matcher::default();
    let mut subject_paths = Vec::new();
    for (i, s) in doc.subjects.iter().enumerate() {
        let at = format!("body.subjects[{i}]");
        let selector = parse_selector(&s.elements)
            .map_err(|m| ConfigError::invalid(format!("{at}.elements"), m))?;
        let id = CategoryIdx::from_position(i)
            .map_err(|_| ConfigError::invalid(&at, "too many subject rules"))?;
        elements
            .add(&selector, id)
            .map_err(|m| ConfigError::invalid(format!("{at}.elements"), m))?;
        let subject = parse_selector(&s.subject)
            .map_err(|m| ConfigError::invalid(format!("{at}.subject"), m))?;
        let path: Option<Vec<String>> = subject
            .segments
            .iter()
            .map(|seg| match seg {
                Segment::Key(k) => Some(k.clone()),
                _ => None,
            })
            .collect();
        let path = path.ok_or_else(|| {
            ConfigError::invalid(format!("{at}.subject"), "only exact keys, e.g. `$.user_id`")
        })?;
        subject_paths.push(path);
    }
    Ok(BodySettings {
        max_bytes: doc.max_bytes,
        encoded: doc.encoded,
        unparsed: doc.unparsed,
        elements,
        subject_paths,
        hold_headers: doc.hold_headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Outcome;
    use crate::reason::Reason;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn empty_configuration_takes_every_default() {
        let c = compile_config(b"").unwrap();
        assert_eq!(c.settings.user_header, "x-user-id");
        assert_eq!(c.settings.purpose_header, "x-data-purpose");
        assert_eq!(c.settings.block_status, 403);
        assert!(c.settings.require_user);
        assert_eq!(c.policy.id, "saitama-minna-app");
        assert!(c.consents.is_empty());
    }

    #[test]
    fn a_typo_in_a_key_is_rejected_not_ignored() {
        let err = compile_config(br#"{"require_usr": false}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `require_usr`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_purpose_in_the_snapshot_names_the_field() {
        let err = compile_config(
            br#"{"consents": {"records": [{"subject": "u-1", "grants": {"marketing.campains": {"policy_version": 1}}}]}}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), "consents.records[0].grants.marketing.campains");
        assert!(err.to_string().contains("unknown purpose"), "{err}");
    }

    #[test]
    fn malformed_json_is_rejected() {
        let err = compile_config(br#"{"require_user": tru"#).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    }

    #[test]
    fn a_wrong_value_type_names_the_field_without_the_value() {
        let err = compile_config(
            br#"{"consents": {"records": [{"subject": "u-secret", "stop_use": "u-secret"}]}}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), "consents.records[0].stop_use");
        assert!(!err.to_string().contains("u-secret"), "{err}");
    }

    #[test]
    fn header_names_are_lowercased_and_must_differ() {
        let c = compile_config(br#"{"user_header": "X-Subject"}"#).unwrap();
        assert_eq!(c.settings.user_header, "x-subject");
        let err = compile_config(br#"{"user_header": "x-data-purpose"}"#).unwrap_err();
        assert_eq!(err.path(), "decision_header");
    }

    #[test]
    fn identity_headers_cannot_be_category_headers() {
        let err = compile_config(br#"{"user_header": "x-device-id"}"#).unwrap_err();
        assert_eq!(err.path(), "user_header");
    }

    #[test]
    fn block_status_must_be_an_error_status() {
        let err = compile_config(br#"{"block_status": 200}"#).unwrap_err();
        assert_eq!(err.path(), "block_status");
        assert!(compile_config(br#"{"block_status": 451}"#).is_ok());
    }

    #[test]
    fn bodies_are_read_only_when_a_forbidden_category_has_selectors() {
        let doc = serde_json::json!({"policy": {
            "id": "p", "version": 1,
            "categories": [
                {"id": "email", "label": {"ja": "a", "en": "b"}, "json": ["$..email"]},
                {"id": "device_id", "label": {"ja": "a", "en": "b"}, "headers": ["x-device-id"]}
            ],
            "purposes": [
                {"id": "headers-only", "label": {"ja": "a", "en": "b"}, "basis": "notice", "categories": ["email"]},
                {"id": "needs-body", "label": {"ja": "a", "en": "b"}, "basis": "notice", "categories": ["device_id"]}
            ],
            "parties": [{"id": "op", "label": {"ja": "a", "en": "b"}, "kind": "operator"}]
        }, "caller": {"unidentified_party": "op"}});
        let c = compile_config(doc.to_string().as_bytes()).unwrap();
        let h: [(&str, &[u8]); 2] = [("x-user-id", b"u"), ("x-data-purpose", b"headers-only")];
        assert!(
            !c.body_needed(&c.evaluate(h)),
            "device_id has no selector: skip the body"
        );
        let h: [(&str, &[u8]); 2] = [("x-user-id", b"u"), ("x-data-purpose", b"needs-body")];
        assert!(
            c.body_needed(&c.evaluate(h)),
            "email has a selector and is forbidden"
        );
        let with_elements = serde_json::json!({"policy": doc["policy"], "caller": doc["caller"], "body": {"subjects": [{"elements": "$.items[*]", "subject": "$.id"}]}});
        let c = compile_config(with_elements.to_string().as_bytes()).unwrap();
        let h: [(&str, &[u8]); 2] = [("x-user-id", b"u"), ("x-data-purpose", b"headers-only")];
        assert!(
            c.body_needed(&c.evaluate(h)),
            "elements are decided one by one"
        );
    }

    #[test]
    fn subject_paths_take_exact_keys_only() {
        let err = compile_config(
            br#"{"body": {"subjects": [{"elements": "$.items[*]", "subject": "$..id"}]}}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), "body.subjects[0].subject");
        let err = compile_config(br#"{"pseudonymisation_key": "short"}"#).unwrap_err();
        assert_eq!(err.path(), "pseudonymisation_key");
        assert!(
            !err.to_string().contains("short"),
            "the key is never repeated"
        );
    }

    #[test]
    fn a_shared_snapshot_needs_a_cluster_and_hmac_needs_a_secret() {
        let err = compile_config(br#"{"snapshot": {"source": "shared"}}"#).unwrap_err();
        assert_eq!(err.path(), "snapshot.cluster");
        let err = compile_config(br#"{"snapshot": {"subject_key": "hmac_sha256"}}"#).unwrap_err();
        assert_eq!(err.path(), "snapshot.subject_key_secret");
        let err =
            compile_config(br#"{"snapshot": {"refresh_ms": 5000, "max_staleness_ms": 1000}}"#)
                .unwrap_err();
        assert_eq!(err.path(), "snapshot.max_staleness_ms");
        let c =
            compile_config(br#"{"snapshot": {"source": "shared", "cluster": "consent_source"}}"#)
                .unwrap();
        assert_eq!(c.snapshot.authority, "consent_source");
    }

    #[test]
    fn inline_records_may_be_keyed_by_hmac() {
        let keying = SubjectKeying::Hmac(b"0123456789abcdef-key".to_vec());
        let doc = serde_json::json!({
            "snapshot": {"subject_key": "hmac_sha256", "subject_key_secret": "0123456789abcdef-key"},
            "caller": {"unidentified_party": "tsunagu"},
            "consents": {"records": [{"subject": keying.subject_for("u-1"), "grants": {"surveys": {"policy_version": 1}}}]}
        });
        let c = compile_config(doc.to_string().as_bytes()).unwrap();
        let h: [(&str, &[u8]); 2] = [("x-user-id", b"u-1"), ("x-data-purpose", b"surveys")];
        assert_eq!(c.evaluate(h).reason, Reason::ConsentGranted);
    }

    #[test]
    fn evaluate_reads_headers_and_looks_up_the_user() {
        let c = compile_config(
            br#"{"caller": {"unidentified_party": "tsunagu"}, "consents": {"records": [{"subject": "u-1", "grants": {"surveys": {"policy_version": 1}}}]}}"#,
        )
        .unwrap();
        let h: [(&str, &[u8]); 2] = [("x-user-id", b"u-1"), ("x-data-purpose", b"surveys")];
        let d = c.evaluate(h);
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Redact, Reason::ConsentGranted)
        );
        let h: [(&str, &[u8]); 2] = [("x-user-id", b"u-2"), ("x-data-purpose", b"surveys")];
        assert_eq!(c.evaluate(h).reason, Reason::ConsentMissing);
    }

    #[test]
    fn by_default_a_caller_without_identity_is_a_third_party() {
        let c = compile_config(br#"{"consents": {"records": [{"subject": "u-1", "grants": {"surveys": {"policy_version": 1}}}]}}"#).unwrap();
        let h: [(&str, &[u8]); 2] = [("x-user-id", b"u-1"), ("x-data-purpose", b"surveys")];
        let d = c.evaluate(h);
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Block, Reason::ThirdPartyConsentMissing)
        );
        assert!(d.facts.caller.is_third_party());
    }

    #[test]
    fn caller_settings_are_checked() {
        let err = compile_config(br#"{"caller": {"unidentified_party": "tsunagi"}}"#).unwrap_err();
        assert_eq!(err.path(), "caller.unidentified_party");
        let err = compile_config(br#"{"caller": {"dev_header": "x-user-id"}}"#).unwrap_err();
        assert_eq!(err.path(), "caller.dev_header");
        let err = compile_config(br#"{"caller": {"from": "peer"}}"#).unwrap_err();
        assert_eq!(err.path(), "caller.from");
        let err = compile_config(br#"{"gpc": {"purposes": ["nope"]}}"#).unwrap_err();
        assert_eq!(err.path(), "gpc.purposes[0]");
        let err = compile_config(br#"{"default_route": {"match": {"host": "a"}}}"#).unwrap_err();
        assert_eq!(err.path(), "default_route");
        let err = compile_config(br#"{"caller": {"identities": {"saitama-city": ["city"]}}}"#)
            .unwrap_err();
        assert_eq!(err.path(), "caller.identities.saitama-city[0]");
        let err = compile_config(br#"{"caller": {"identities": {"saitama": []}}}"#).unwrap_err();
        assert_eq!(err.path(), "caller.identities.saitama");
        let err = compile_config(
            br#"{"caller": {"identities": {"saitama-city": ["spiffe://minna-app.example/ns/tsunagu/*"]}}}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), "caller.identities.saitama-city[0]");
    }

    #[test]
    fn a_deployment_can_replace_a_party_s_identities() {
        let c = compile_config(
            br#"{"caller": {"identities": {"saitama-city": ["spiffe://city.example/*"]}}}"#,
        )
        .unwrap();
        let facts = CallerFacts {
            uri_san: Some("spiffe://city.example/sa/portal"),
            ..CallerFacts::default()
        };
        let ctx = c.context(&facts, &RouteFacts::default(), []);
        assert_eq!(ctx.caller.party, c.policy.party_idx("saitama-city"));
        let old = CallerFacts {
            uri_san: Some("spiffe://minna-app.example/ns/saitama-city/sa/x"),
            ..CallerFacts::default()
        };
        assert!(c
            .context(&old, &RouteFacts::default(), [])
            .caller
            .is_third_party());
    }
}
