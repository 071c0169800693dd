//! The HTTP API of the reference consent source.
//!
//! | call | role | does |
//! |---|---|---|
//! | `GET /healthz` | none | `{"ok": true}` |
//! | `GET /snapshot` | fetcher¹ | part 0 of the full snapshot (`ETag: "v<version>"`, 304 on a match); `parts` says how many |
//! | `GET /snapshot/parts/{i}` | fetcher¹ | part i of the current version (404 past the last) |
//! | `GET /deltas/{from}` | fetcher¹ | the changes after version `from`; 404 when there are none |
//! | `GET /snapshot.minisig`, `/snapshot/parts/{i}.minisig`, `/deltas/{from}.minisig` | fetcher¹ | the detached minisign signature of the document at the same URL (with `--signing-key`; `?version=N`: 409 unless N is the current version) |
//! | `GET /users/{id}` | reader | the stored record, 404 when none |
//! | `GET /audit?subject=&since=&after=&limit=` | reader | audit rows, oldest first (`{"entries": [...], "next_after": seq or null}`) |
//! | `PUT /users/{id}/grants/{purpose}` | writer | grant (body optional: `{"policy_version": n, "explicit": [..]}`) |
//! | `DELETE /users/{id}/grants/{purpose}` | writer | withdraw consent to, or object to, a purpose (§10; recorded in `withdrawn` until a new grant) |
//! | `PUT` / `DELETE /users/{id}/stop-use` | writer | ask / stop asking to stop use (§10) |
//! | `PUT` / `DELETE /users/{id}/stop-third-party` | writer | the same for third-party provision |
//! | `DELETE /users/{id}` | writer | erase the record (the audit keeps that an erasure happened) |
//! | `GET /users/{id}/disclosure?lang=&format=` | reader | the disclosure report (開示): JSON, or a printable HTML page with `?format=html` or `Accept: text/html` (`lang`: `ja`, `en`, `both`) |
//! | `POST /ledger` | fetcher | a batch of provision records (`{"records": [...]}`, at most 1,000 / 1 MiB); answers `{"stored": n, "duplicates": m}` |
//! | `GET /ledger/purges` | reader | the retention purges so far (`{"retention_days": d, "purges": [...]}`) |
//!
//! ¹ Or no credential at all with `public_snapshots = true`.
//!
//! Credentials: `Authorization: Bearer <token>` (a token whose SHA-256 the configuration
//! lists), or a client certificate identity forwarded by a trusted mTLS proxy in
//! `x-forwarded-client-cert`. Changes answer `{"version": n}`. Errors are JSON
//! `{"error": "..."}` naming what is wrong, never a value: 400 malformed id, unknown
//! purpose, bad body or query; 401 no or a wrong credential (with `www-authenticate`);
//! 403 a credential without the role; 404 unknown path; 405 wrong method (with `allow`);
//! 409 a `.minisig` of a version that is no longer current; 413 a body over the limit.
//!
//! Signatures: with a signing key every document is served with `consent-signature:
//! <base64 of the .minisig text>`, signed over exactly the bytes of its body. The same
//! version always serves the same bytes (documents are dated with the time of their
//! version, not of the request), so the `.minisig` of a URL verifies the document fetched
//! there as long as the version has not moved on; `?version=N` makes that explicit.

use std::io::Read;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::auth::{Access, Credentials, Need};
use crate::config::Role;
use crate::disclosure::{self, Lang, LedgerState, PolicyLabels};
use crate::ledger::{self, PurgeEntry};
use crate::sign::{delta_comment, snapshot_comment, Signer};
use crate::store::{valid_subject, Actor, AuditQuery, Change, Store, StoreError};
use crate::Clock;

/// Default number of audit rows in one answer.
pub const AUDIT_PAGE: usize = 100;
/// Largest `limit` of `GET /audit`.
pub const AUDIT_PAGE_MAX: usize = 1000;

/// The header carrying a document's signature.
pub const SIGNATURE_HEADER: &str = "consent-signature";

/// Everything a request is answered from.
pub struct Api {
    store: Mutex<Store>,
    access: Access,
    signer: Option<Signer>,
    labels: PolicyLabels,
    retention_days: u32,
    clock: Clock,
}

/// What the API needs besides the store, the access rules and the signer.
pub struct ApiSettings {
    /// The policy's labels, for the disclosure report.
    pub labels: PolicyLabels,
    /// How long ledger records are kept (days).
    pub retention_days: u32,
    /// Now, in Unix milliseconds (injected in tests).
    pub clock: Clock,
}

impl Api {
    /// The API over `store`, with `access` rules, signing with `signer` when given.
    pub fn new(store: Store, access: Access, signer: Option<Signer>, settings: ApiSettings) -> Api {
        Api {
            store: Mutex::new(store),
            access,
            signer,
            labels: settings.labels,
            retention_days: settings.retention_days,
            clock: settings.clock,
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the ledger's retention purge now (by the injected clock); `None` when nothing
    /// was past the retention period or the ledger is off.
    pub fn purge_ledger(&self) -> Result<Option<PurgeEntry>, StoreError> {
        let now = (self.clock)();
        self.store().purge_ledger(now, self.retention_days)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    #[serde(default)]
    policy_version: Option<u32>,
    #[serde(default)]
    explicit: Vec<String>,
}

/// An answer before it becomes a tiny_http response.
struct Reply {
    status: u16,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            body: value.to_string().into_bytes(),
            headers: vec![("content-type", "application/json".into())],
        }
    }

    fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, &json!({ "error": message }))
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    fn into_response(self) -> Response<std::io::Cursor<Vec<u8>>> {
        let mut response = Response::from_data(self.body).with_status_code(self.status);
        for (name, value) in self.headers {
            if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                response = response.with_header(h);
            }
        }
        response
    }
}

/// Which right a `stop-*` path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Right {
    StopUse,
    StopThirdParty,
}

/// A document the fetchers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Doc {
    /// `/snapshot` (part 0) or `/snapshot/parts/{i}`.
    Part(usize),
    /// `/deltas/{from}`.
    Delta(u64),
}

/// What a path names, with its raw parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resource<'a> {
    Health,
    /// A document (`raw` the number in the path), or its `.minisig`.
    Document {
        delta: bool,
        raw: &'a str,
        signature: bool,
    },
    User(&'a str),
    Grant(&'a str, &'a str),
    Right(&'a str, Right),
    Audit,
    Disclosure(&'a str),
    Ledger,
    LedgerPurges,
}

impl Resource<'_> {
    fn parse(path: &str) -> Option<Resource<'_>> {
        let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        Some(match segments.as_slice() {
            ["healthz"] => Resource::Health,
            ["snapshot"] => Resource::Document {
                delta: false,
                raw: "0",
                signature: false,
            },
            ["snapshot.minisig"] => Resource::Document {
                delta: false,
                raw: "0",
                signature: true,
            },
            ["snapshot", "parts", part] => Self::document(false, part),
            ["deltas", from] => Self::document(true, from),
            ["users", id] => Resource::User(id),
            ["users", id, "grants", purpose] => Resource::Grant(id, purpose),
            ["users", id, "stop-use"] => Resource::Right(id, Right::StopUse),
            ["users", id, "stop-third-party"] => Resource::Right(id, Right::StopThirdParty),
            ["users", id, "disclosure"] => Resource::Disclosure(id),
            ["audit"] => Resource::Audit,
            ["ledger"] => Resource::Ledger,
            ["ledger", "purges"] => Resource::LedgerPurges,
            _ => return None,
        })
    }

    fn document(delta: bool, segment: &str) -> Resource<'_> {
        match segment.strip_suffix(".minisig") {
            Some(raw) => Resource::Document {
                delta,
                raw,
                signature: true,
            },
            None => Resource::Document {
                delta,
                raw: segment,
                signature: false,
            },
        }
    }

    /// The methods the resource answers.
    fn allowed(&self) -> &'static [Method] {
        match self {
            Resource::Health
            | Resource::Document { .. }
            | Resource::Audit
            | Resource::Disclosure(_)
            | Resource::LedgerPurges => &[Method::Get],
            Resource::Ledger => &[Method::Post],
            Resource::User(_) => &[Method::Get, Method::Delete],
            Resource::Grant(..) | Resource::Right(..) => &[Method::Put, Method::Delete],
        }
    }

    /// What `method` on the resource needs.
    fn need(&self, method: &Method) -> Need {
        match (self, method) {
            (Resource::Health, _) => Need::Nothing,
            (Resource::Document { .. }, _) => Need::Snapshots,
            (Resource::User(_), Method::Get)
            | (Resource::Audit, _)
            | (Resource::Disclosure(_), _)
            | (Resource::LedgerPurges, _) => Need::Role(Role::Reader),
            (Resource::Ledger, _) => Need::Role(Role::Fetcher),
            _ => Need::Role(Role::Writer),
        }
    }

    /// A short name for logs (never the path: it can hold a user ID).
    fn name(&self) -> &'static str {
        match self {
            Resource::Health => "healthz",
            Resource::Document { delta: false, .. } => "snapshot",
            Resource::Document { delta: true, .. } => "delta",
            Resource::User(_) => "user",
            Resource::Grant(..) => "grant",
            Resource::Right(..) => "right",
            Resource::Audit => "audit",
            Resource::Disclosure(_) => "disclosure",
            Resource::Ledger => "ledger",
            Resource::LedgerPurges => "ledger_purges",
        }
    }
}

fn header_values<'a>(request: &'a Request, name: &'static str) -> Vec<&'a str> {
    request
        .headers()
        .iter()
        .filter(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
        .collect()
}

/// A path segment naming a person: percent-decoded UTF-8, as the filter's header carries it.
fn user_id(segment: &str) -> Result<String, Reply> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
        .filter(|s| valid_subject(s))
        .ok_or_else(|| Reply::error(400, &StoreError::BadSubject.to_string()))
}

fn purpose_id(segment: &str) -> Result<String, Reply> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| Reply::error(400, "unknown purpose"))
}

fn store_error(what: &str, e: &StoreError) -> Reply {
    match e {
        StoreError::LedgerOff => Reply::error(503, &e.to_string()),
        StoreError::Db(_)
        | StoreError::KeyingChanged
        | StoreError::NotWal(_)
        | StoreError::LedgerKeyChanged
        | StoreError::Retention => {
            eprintln!("consent-source: {what} failed: {e}");
            Reply::error(500, "database error")
        }
        StoreError::NotExplicit { .. } | StoreError::PolicyVersion => {
            Reply::error(400, &format!("grant body: {e}"))
        }
        _ => Reply::error(400, &e.to_string()),
    }
}

/// `key=value` pairs of a query, refusing unknown and repeated keys.
fn query_pairs(query: &str, known: &[&str]) -> Result<Vec<(String, String)>, Reply> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if !known.contains(&k.as_ref()) {
            return Err(Reply::error(400, "unknown query parameter"));
        }
        if pairs.iter().any(|(seen, _)| *seen == k) {
            return Err(Reply::error(400, "repeated query parameter"));
        }
        pairs.push((k.into_owned(), v.into_owned()));
    }
    Ok(pairs)
}

fn number<T: std::str::FromStr>(value: &str, message: &str) -> Result<T, Reply> {
    value.parse().map_err(|_| Reply::error(400, message))
}

fn grant_body(body: &[u8]) -> Result<GrantBody, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(GrantBody::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => {
                "takes policy_version (a number) and explicit (a list of category ids)"
            }
            _ => "is not JSON",
        };
        Reply::error(
            400,
            &format!(
                "grant body {what} (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

impl Api {
    /// A document of the fetchers, or its signature.
    fn document(
        &self,
        doc: Doc,
        signature: bool,
        query: &str,
        if_none_match: Option<&str>,
    ) -> Result<Reply, Reply> {
        let pairs = query_pairs(query, if signature { &["version"] } else { &[] })?;
        let wanted: Option<u64> = match pairs.first() {
            Some((_, v)) => Some(number(v, "the version must be a number")?),
            None => None,
        };
        if signature && self.signer.is_none() {
            return Err(Reply::error(404, "this source does not sign"));
        }
        let store = self.store();
        let (bytes, version, comment) = match doc {
            Doc::Part(part) => match store.snapshot_part(part) {
                Ok(Some(d)) => (
                    serde_json::to_vec(&d).unwrap_or_default(),
                    d.version,
                    snapshot_comment(d.version, part),
                ),
                Ok(None) => return Err(Reply::error(404, "no such part")),
                Err(e) => return Err(store_error("snapshot", &e)),
            },
            Doc::Delta(from) => match store.delta(from) {
                Ok(Some(d)) => (
                    serde_json::to_vec(&d).unwrap_or_default(),
                    d.version,
                    delta_comment(from, d.version),
                ),
                Ok(None) => return Err(Reply::error(404, "no changes after this version")),
                Err(e) => return Err(store_error("delta", &e)),
            },
        };
        drop(store);
        let etag = format!("\"v{version}\"");
        if let Some(wanted) = wanted {
            if wanted != version {
                return Err(Reply::json(
                    409,
                    &json!({"error": "the current version is not the one asked for", "version": version}),
                ));
            }
        }
        if !signature && if_none_match == Some(etag.as_str()) {
            return Ok(Reply {
                status: 304,
                body: Vec::new(),
                headers: Vec::new(),
            }
            .with("etag", etag));
        }
        let signed = match &self.signer {
            Some(signer) => match signer.sign(&bytes, &comment) {
                Ok(text) => Some(text),
                Err(e) => {
                    eprintln!("consent-source: {e}");
                    return Err(Reply::error(500, "signing failed"));
                }
            },
            None => None,
        };
        let reply = match (signature, signed) {
            (true, Some(text)) => Reply {
                status: 200,
                body: text.into_bytes(),
                headers: vec![("content-type", "text/plain; charset=utf-8".into())],
            },
            (_, signed) => {
                let mut reply = Reply {
                    status: 200,
                    body: bytes,
                    headers: vec![("content-type", "application/json".into())],
                };
                if let Some(text) = signed {
                    reply = reply.with(
                        SIGNATURE_HEADER,
                        base64::engine::general_purpose::STANDARD.encode(text),
                    );
                }
                reply
            }
        };
        Ok(reply.with("etag", etag))
    }

    fn audit(&self, query: &str) -> Result<Reply, Reply> {
        let mut q = AuditQuery {
            limit: AUDIT_PAGE,
            ..AuditQuery::default()
        };
        for (k, v) in query_pairs(query, &["subject", "since", "after", "limit"])? {
            match k.as_str() {
                "subject" => {
                    if !valid_subject(&v) {
                        return Err(Reply::error(400, &StoreError::BadSubject.to_string()));
                    }
                    q.subject = Some(v);
                }
                "since" => q.since_ms = Some(number(&v, "since takes Unix milliseconds")?),
                "after" => q.after = Some(number(&v, "after takes an audit seq")?),
                _ => {
                    q.limit = number(&v, "limit takes a number")?;
                    if q.limit == 0 || q.limit > AUDIT_PAGE_MAX {
                        return Err(Reply::error(400, "limit must be 1 to 1000"));
                    }
                }
            }
        }
        let entries = self
            .store()
            .audit(&q)
            .map_err(|e| store_error("audit", &e))?;
        let next = if entries.len() == q.limit {
            entries.last().map(|e| e.seq)
        } else {
            None
        };
        Ok(
            Reply::json(200, &json!({"entries": entries, "next_after": next}))
                .with("cache-control", "no-store"),
        )
    }

    /// `POST /ledger`: a batch of provision records, in one transaction.
    fn ledger(&self, body: &[u8], reporter: &str) -> Result<Reply, Reply> {
        let now = (self.clock)();
        if self.store().ledger_key().is_none() {
            return Err(store_error("ledger", &StoreError::LedgerOff));
        }
        let records =
            ledger::parse_batch(body, now).map_err(|e| Reply::error(e.status, &e.message))?;
        let mut store = self.store();
        let policy = store.policy();
        let unknown = records
            .iter()
            .filter(|r| {
                policy.purpose_idx(&r.purpose).is_none()
                    || (r.recipient != "-" && policy.party_idx(&r.recipient).is_none())
                    || r.categories
                        .iter()
                        .any(|c| policy.category_idx(c).is_none())
            })
            .count();
        let out = store
            .append_ledger(&records, reporter, now)
            .map_err(|e| store_error("ledger", &e))?;
        drop(store);
        if out.conflicting > 0 {
            eprintln!(
                "consent-source: ledger: {} record(s) repeat a stored request_id with other content (the first kept, counted as duplicates)",
                out.conflicting
            );
        }
        if unknown > 0 {
            eprintln!(
                "consent-source: ledger: stored {unknown} record(s) naming a purpose, category or party the loaded policy does not know (another policy version?)"
            );
        }
        Ok(Reply::json(
            200,
            &json!({"stored": out.stored, "duplicates": out.duplicates}),
        ))
    }

    fn ledger_purges(&self) -> Result<Reply, Reply> {
        let purges = self
            .store()
            .ledger_purges()
            .map_err(|e| store_error("ledger_purges", &e))?;
        Ok(Reply::json(
            200,
            &json!({"retention_days": self.retention_days, "purges": purges}),
        )
        .with("cache-control", "no-store"))
    }

    /// `GET /users/{id}/disclosure`.
    fn disclosure(&self, id: &str, query: &str, accept: &[&str]) -> Result<Reply, Reply> {
        let id = user_id(id)?;
        let mut lang = Lang::default();
        let mut html = accept.iter().any(|a| {
            a.split(',')
                .any(|m| m.split(';').next().map(str::trim) == Some("text/html"))
        });
        for (k, v) in query_pairs(query, &["lang", "format"])? {
            if k == "lang" {
                lang = Lang::parse(&v)
                    .ok_or_else(|| Reply::error(400, "lang must be ja, en or both"))?;
            } else {
                html = match v.as_str() {
                    "html" => true,
                    "json" => false,
                    _ => return Err(Reply::error(400, "format must be json or html")),
                };
            }
        }
        let now = (self.clock)();
        let store = self.store();
        let fail = |e: StoreError| store_error("disclosure", &e);
        let record = store.get(&id).map_err(fail)?;
        let mut audit = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .audit(&AuditQuery {
                    subject: Some(id.clone()),
                    since_ms: None,
                    after,
                    limit: AUDIT_PAGE_MAX,
                })
                .map_err(fail)?;
            let full = page.len() == AUDIT_PAGE_MAX;
            after = page.last().map(|e| e.seq);
            audit.extend(page);
            if !full {
                break;
            }
        }
        let subject_ref = store.ledger_key().map(|k| k.subject_for(&id));
        let ledger = match &subject_ref {
            Some(s) => store.ledger_of(s).map_err(fail)?,
            None => Vec::new(),
        };
        drop(store);
        let report = disclosure::build(
            &self.labels,
            &disclosure::Input {
                user: &id,
                subject_ref: subject_ref.clone(),
                record: record.as_ref(),
                audit: &audit,
                ledger: &ledger,
                ledger_state: LedgerState {
                    on: subject_ref.is_some(),
                    retention_days: self.retention_days,
                },
                now_ms: now,
            },
        );
        let reply = if html {
            Reply {
                status: 200,
                body: disclosure::render_html(&report, lang).into_bytes(),
                headers: vec![
                    ("content-type", "text/html; charset=utf-8".into()),
                    (
                        "content-security-policy",
                        "default-src 'none'; style-src 'unsafe-inline'".into(),
                    ),
                    ("x-content-type-options", "nosniff".into()),
                    ("referrer-policy", "no-referrer".into()),
                ],
            }
        } else {
            Reply::json(200, &serde_json::to_value(&report).unwrap_or_default())
        };
        Ok(reply.with("cache-control", "no-store"))
    }

    fn change(
        &self,
        resource: &Resource<'_>,
        id: &str,
        change: Change,
        who: &str,
    ) -> Result<Reply, Reply> {
        let id = user_id(id)?;
        let version = self
            .store()
            .apply(
                &id,
                &change,
                Actor {
                    who,
                    at_ms: (self.clock)(),
                },
            )
            .map_err(|e| store_error(resource.name(), &e))?;
        Ok(Reply::json(200, &json!({ "version": version })))
    }

    fn answer(&self, request: &mut Request) -> Result<Reply, Reply> {
        let url = request.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
        let resource = Resource::parse(path).ok_or_else(|| Reply::error(404, "no such call"))?;
        let method = request.method().clone();
        let allowed = resource.allowed();
        if !allowed.contains(&method) {
            let allow: Vec<&str> = allowed.iter().map(Method::as_str).collect();
            return Err(Reply::error(405, "method not allowed").with("allow", allow.join(", ")));
        }
        let authorization = header_values(request, "authorization");
        let forwarded = header_values(request, "x-forwarded-client-cert");
        let creds = Credentials {
            authorization: &authorization,
            forwarded_client_cert: &forwarded,
            peer: request.remote_addr().copied(),
        };
        let caller = self
            .access
            .authorize(&creds, resource.need(&method))
            .map_err(|e| {
                let reply = Reply::error(e.status(), &e.to_string());
                match e.challenge() {
                    Some(c) => reply.with("www-authenticate", c),
                    None => reply,
                }
            })?;
        let accept: Vec<String> = header_values(request, "accept")
            .into_iter()
            .map(String::from)
            .collect();
        let if_none_match = header_values(request, "if-none-match")
            .first()
            .map(|s| s.to_string());

        let limit = if resource == Resource::Ledger {
            ledger::MAX_BATCH_BYTES
        } else {
            self.access.config().max_body_bytes
        };
        if request.body_length().is_some_and(|n| n > limit) {
            return Err(Reply::error(413, "request body too large"));
        }
        let mut body = Vec::new();
        let read = request
            .as_reader()
            .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
            .read_to_end(&mut body);
        if read.is_err() {
            return Err(Reply::error(400, "unreadable request body"));
        }
        if body.len() > limit {
            return Err(Reply::error(413, "request body too large"));
        }

        let who = caller.who.as_str();
        match (&resource, &method) {
            (Resource::Health, _) => Ok(Reply::json(200, &json!({"ok": true}))),
            (
                Resource::Document {
                    delta,
                    raw,
                    signature,
                },
                _,
            ) => {
                let doc = if *delta {
                    Doc::Delta(number(raw, "the version must be a number")?)
                } else {
                    Doc::Part(number(raw, "the part must be a number")?)
                };
                self.document(doc, *signature, query, if_none_match.as_deref())
            }
            (Resource::Audit, _) => self.audit(query),
            (Resource::Ledger, _) => self.ledger(&body, who),
            (Resource::LedgerPurges, _) => self.ledger_purges(),
            (Resource::Disclosure(id), _) => {
                let accept: Vec<&str> = accept.iter().map(String::as_str).collect();
                self.disclosure(id, query, &accept)
            }
            (Resource::User(id), Method::Get) => {
                let id = user_id(id)?;
                match self.store().get(&id) {
                    Ok(Some(record)) => Ok(Reply::json(
                        200,
                        &serde_json::to_value(&record).unwrap_or_default(),
                    )
                    .with("cache-control", "no-store")),
                    Ok(None) => Err(Reply::error(404, "no record")),
                    Err(e) => Err(store_error(resource.name(), &e)),
                }
            }
            (Resource::User(id), _) => self.change(&resource, id, Change::Erase, who),
            (Resource::Grant(id, purpose), Method::Put) => {
                let g = grant_body(&body)?;
                let change = Change::Grant {
                    purpose: purpose_id(purpose)?,
                    policy_version: g.policy_version,
                    explicit: g.explicit,
                };
                self.change(&resource, id, change, who)
            }
            (Resource::Grant(id, purpose), _) => {
                let change = Change::Withdraw {
                    purpose: purpose_id(purpose)?,
                };
                self.change(&resource, id, change, who)
            }
            (Resource::Right(id, right), method) => {
                let on = *method == Method::Put;
                let change = match right {
                    Right::StopUse => Change::StopUse(on),
                    Right::StopThirdParty => Change::StopThirdParty(on),
                };
                self.change(&resource, id, change, who)
            }
        }
    }
}

/// Answers one request.
pub fn handle(mut request: Request, api: &Api) {
    let reply = api.answer(&mut request).unwrap_or_else(|e| e);
    let _ = request.respond(reply.into_response());
}

/// Serves the API on `server` with a few threads, until the server is unblocked.
pub fn serve(
    server: Arc<Server>,
    api: Arc<Api>,
    threads: usize,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads.max(1))
        .map(|_| {
            let server = Arc::clone(&server);
            let api = Arc::clone(&api);
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    handle(request, &api);
                }
            })
        })
        .collect()
}
