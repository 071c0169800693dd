//! The provision ledger: one row for every provision of a person's data to a recipient
//! outside the operator (a third party, a joint user, a processor), and for every such
//! provision the filter refused, as the filters report them in `POST /ledger` batches.
//!
//! Japan's APPI (Art. 29, 30) asks for a record of every provision to a third party (date,
//! recipient, person, items) kept one to three years, and the policy's §10 gives people the
//! right to know to whom their data went: [`crate::disclosure`] reads the ledger for that.
//!
//! - **Append-only.** Triggers refuse every UPDATE, every INSERT that would replace a row,
//!   and every DELETE, except the rows older than the cut-off of a retention purge that is
//!   being recorded in `ledger_purges` in the same transaction ([`Store::purge_ledger`]).
//!   `ledger_purges` itself is append-only. Anyone who can write the file can still drop
//!   the triggers: protect the volume.
//! - **Idempotent.** `request_id` is UNIQUE: a batch sent again stores nothing twice; a
//!   repeated `request_id` with other content is counted (never logged with its content).
//! - **No raw IDs.** `subject` must be the keyed subject (32 lowercase hex digits, the first
//!   16 bytes of HMAC-SHA-256(key, user ID)); the source computes the same from a raw ID
//!   with its ledger key ([`LedgerKey`]) to find a person's rows.
//! - **Durable.** One transaction per batch, in the store's WAL database (`synchronous =
//!   FULL`): an answered batch survives a crash and a restart.

use std::collections::{BTreeMap, BTreeSet};

use consent_core::live::SubjectKeying;
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

/// Most records in one `POST /ledger` batch (413 over it).
pub const MAX_BATCH_RECORDS: usize = 1000;
/// Largest `POST /ledger` body, in bytes (413 over it).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Default retention of ledger records: three years (APPI: one to three years).
pub const DEFAULT_RETENTION_DAYS: u32 = 1095;
/// Shortest retention accepted: one year.
pub const MIN_RETENTION_DAYS: u32 = 365;
/// Longest retention accepted: one hundred years.
pub const MAX_RETENTION_DAYS: u32 = 36_500;
/// How far ahead of the source's clock a record's `ts_ms` may be (clock skew).
pub const MAX_FUTURE_SKEW_MS: u64 = 60 * 60 * 1000;
/// The earliest `ts_ms` taken (2001-09-09): anything smaller is seconds, not milliseconds.
pub const MIN_TS_MS: u64 = 1_000_000_000_000;

const DAY_MS: u64 = 86_400_000;

/// The ledger's tables and triggers (created with the store's schema).
pub(crate) const LEDGER_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS ledger (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      request_id TEXT NOT NULL UNIQUE,
      ts_ms INTEGER NOT NULL,
      received_ms INTEGER NOT NULL,
      reporter TEXT NOT NULL,
      recipient TEXT NOT NULL,
      recipient_kind TEXT NOT NULL,
      recipient_identity TEXT,
      purpose TEXT NOT NULL,
      basis TEXT NOT NULL,
      categories TEXT NOT NULL,
      subject TEXT NOT NULL,
      outcome TEXT NOT NULL,
      reason TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS ledger_by_subject ON ledger(subject, ts_ms);
    CREATE INDEX IF NOT EXISTS ledger_by_ts ON ledger(ts_ms);
    CREATE TABLE IF NOT EXISTS ledger_purges (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      at_ms INTEGER NOT NULL,
      cutoff_ms INTEGER NOT NULL,
      retention_days INTEGER NOT NULL,
      deleted INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS ledger_purge_gate (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      purge_seq INTEGER NOT NULL,
      cutoff_ms INTEGER NOT NULL);
    CREATE TRIGGER IF NOT EXISTS ledger_no_update BEFORE UPDATE ON ledger
      BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
    -- The one way out: rows older than the cut-off of a purge recorded in ledger_purges.
    CREATE TRIGGER IF NOT EXISTS ledger_no_delete BEFORE DELETE ON ledger
      WHEN NOT EXISTS (SELECT 1 FROM ledger_purge_gate g JOIN ledger_purges p
                       ON p.seq = g.purge_seq AND p.cutoff_ms = g.cutoff_ms
                       WHERE OLD.ts_ms < g.cutoff_ms)
      BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: records leave only through the retention purge'); END;
    -- INSERT OR REPLACE deletes the row it replaces without firing delete triggers.
    CREATE TRIGGER IF NOT EXISTS ledger_no_replace BEFORE INSERT ON ledger
      WHEN EXISTS (SELECT 1 FROM ledger WHERE seq = NEW.seq OR request_id = NEW.request_id)
      BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
    CREATE TRIGGER IF NOT EXISTS ledger_purges_no_update BEFORE UPDATE ON ledger_purges
      BEGIN SELECT RAISE(ABORT, 'the purge log is append-only'); END;
    CREATE TRIGGER IF NOT EXISTS ledger_purges_no_delete BEFORE DELETE ON ledger_purges
      BEGIN SELECT RAISE(ABORT, 'the purge log is append-only'); END;
    CREATE TRIGGER IF NOT EXISTS ledger_purges_no_replace BEFORE INSERT ON ledger_purges
      WHEN EXISTS (SELECT 1 FROM ledger_purges WHERE seq = NEW.seq)
      BEGIN SELECT RAISE(ABORT, 'the purge log is append-only'); END;
";

/// Who received the data, as the policy's party kinds name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientKind {
    /// A party outside the operator and its joint users and processors (§7).
    ThirdParty,
    /// A joint user (§8).
    JointUser,
    /// A processor the operator entrusts data to.
    Processor,
}

impl RecipientKind {
    /// The kind as written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientKind::ThirdParty => "third_party",
            RecipientKind::JointUser => "joint_user",
            RecipientKind::Processor => "processor",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "third_party" => RecipientKind::ThirdParty,
            "joint_user" => RecipientKind::JointUser,
            "processor" => RecipientKind::Processor,
            _ => return None,
        })
    }
}

/// The legal basis the provision was decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerBasis {
    /// The person's consent.
    Consent,
    /// Notice (published purposes, joint use).
    Notice,
    /// A contract.
    Contract,
    /// A legal obligation.
    Legal,
}

impl LedgerBasis {
    /// The basis as written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerBasis::Consent => "consent",
            LedgerBasis::Notice => "notice",
            LedgerBasis::Contract => "contract",
            LedgerBasis::Legal => "legal",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "consent" => LedgerBasis::Consent,
            "notice" => LedgerBasis::Notice,
            "contract" => LedgerBasis::Contract,
            "legal" => LedgerBasis::Legal,
            _ => return None,
        })
    }
}

/// What the filter did with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Passed whole.
    Allow,
    /// Passed with categories removed.
    Redact,
    /// Refused: nothing was provided.
    Block,
}

impl Outcome {
    /// The outcome as written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Redact => "redact",
            Outcome::Block => "block",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "allow" => Outcome::Allow,
            "redact" => Outcome::Redact,
            "block" => Outcome::Block,
            _ => return None,
        })
    }

    /// Whether data reached the recipient (`allow` or `redact`).
    pub fn provided(self) -> bool {
        !matches!(self, Outcome::Block)
    }
}

/// One checked ledger record, as the filter reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerRecord {
    /// The request's id (idempotence key).
    pub request_id: String,
    /// When the filter decided (Unix milliseconds).
    pub ts_ms: u64,
    /// The recipient's party id, or `-` for a third party no party claims.
    pub recipient: String,
    /// The recipient's kind.
    pub recipient_kind: RecipientKind,
    /// The caller's SPIFFE ID, DNS SAN or cluster, when known (no personal data).
    pub recipient_identity: Option<String>,
    /// The purpose id.
    pub purpose: String,
    /// The basis the provision was decided on.
    pub basis: LedgerBasis,
    /// The category ids that reached the recipient (after redaction); empty for a block.
    pub categories: Vec<String>,
    /// The keyed subject (hex HMAC), never a raw user ID.
    pub subject: String,
    /// What the filter did.
    pub outcome: Outcome,
    /// The decision's reason code.
    pub reason: String,
}

/// A record as sent, before its fields are checked (enums as text, so that a bad value is
/// never quoted back by serde).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    request_id: String,
    ts_ms: u64,
    recipient: String,
    recipient_kind: String,
    #[serde(default)]
    recipient_identity: Option<String>,
    purpose: String,
    basis: String,
    categories: Vec<String>,
    subject: String,
    outcome: String,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    records: Vec<RawRecord>,
}

/// Why a batch was refused: the HTTP status and a message naming the field path, never a
/// value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    /// 400 (malformed) or 413 (too many records).
    pub status: u16,
    /// What is wrong, e.g. `records[3].subject: must be ...`.
    pub message: String,
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BatchError {}

fn bad(path: String, message: &str) -> BatchError {
    BatchError {
        status: 400,
        message: format!("{path}: {message}"),
    }
}

/// RFC 9110 token characters.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// A policy id: 1 to 128 of `A-Z a-z 0-9 . _ -`.
fn is_id(text: &str) -> bool {
    (1..=128).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A keyed subject: 32 lowercase hex digits.
pub fn is_keyed_subject(text: &str) -> bool {
    text.len() == 32 && text.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
}

/// A caller identity as Envoy names it: a URI SAN, `dns:` name or cluster, printable ASCII
/// without blanks, quotes or angle brackets.
fn is_identity(text: &str) -> bool {
    (1..=512).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '<' | '>' | '\\' | '`'))
}

fn check(index: usize, raw: RawRecord, now_ms: u64) -> Result<LedgerRecord, BatchError> {
    let at = |field: &str| format!("records[{index}].{field}");
    if !(1..=128).contains(&raw.request_id.len()) || !raw.request_id.chars().all(is_tchar) {
        return Err(bad(at("request_id"), "must be 1 to 128 token characters"));
    }
    if raw.ts_ms < MIN_TS_MS {
        return Err(bad(
            at("ts_ms"),
            "must be Unix milliseconds (this is before 2001: seconds?)",
        ));
    }
    if raw.ts_ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
        return Err(bad(
            at("ts_ms"),
            "is more than an hour ahead of the source's clock",
        ));
    }
    let recipient_kind = RecipientKind::parse(&raw.recipient_kind).ok_or_else(|| {
        bad(
            at("recipient_kind"),
            "must be third_party, joint_user or processor",
        )
    })?;
    if raw.recipient != "-" && !is_id(&raw.recipient) {
        return Err(bad(
            at("recipient"),
            "must be a party id (1 to 128 of A-Z a-z 0-9 . _ -) or \"-\"",
        ));
    }
    if raw.recipient == "-" && recipient_kind != RecipientKind::ThirdParty {
        return Err(bad(
            at("recipient_kind"),
            "a recipient no party claims (\"-\") is a third_party",
        ));
    }
    if let Some(identity) = &raw.recipient_identity {
        if !is_identity(identity) {
            return Err(bad(
                at("recipient_identity"),
                "must be null or 1 to 512 printable ASCII characters (a URI SAN, DNS SAN or cluster) without blanks, quotes or angle brackets",
            ));
        }
    }
    if !is_id(&raw.purpose) {
        return Err(bad(
            at("purpose"),
            "must be a purpose id (1 to 128 of A-Z a-z 0-9 . _ -)",
        ));
    }
    let basis = LedgerBasis::parse(&raw.basis)
        .ok_or_else(|| bad(at("basis"), "must be consent, notice, contract or legal"))?;
    let outcome = Outcome::parse(&raw.outcome)
        .ok_or_else(|| bad(at("outcome"), "must be allow, redact or block"))?;
    if raw.categories.len() > 128 {
        return Err(bad(at("categories"), "holds more than 128 categories"));
    }
    let mut seen = BTreeSet::new();
    for (j, c) in raw.categories.iter().enumerate() {
        if !is_id(c) {
            return Err(bad(
                format!("records[{index}].categories[{j}]"),
                "must be a category id (1 to 128 of A-Z a-z 0-9 . _ -)",
            ));
        }
        if !seen.insert(c.as_str()) {
            return Err(bad(
                format!("records[{index}].categories[{j}]"),
                "repeats an earlier category",
            ));
        }
    }
    if outcome == Outcome::Block && !raw.categories.is_empty() {
        return Err(bad(
            at("categories"),
            "must be empty when the outcome is block (nothing was provided)",
        ));
    }
    if !is_keyed_subject(&raw.subject) {
        return Err(bad(
            at("subject"),
            "must be the keyed subject: 32 lowercase hex digits (never a raw user id)",
        ));
    }
    if !(1..=64).contains(&raw.reason.len())
        || !raw
            .reason
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(bad(
            at("reason"),
            "must be a reason code (1 to 64 of a-z 0-9 _)",
        ));
    }
    Ok(LedgerRecord {
        request_id: raw.request_id,
        ts_ms: raw.ts_ms,
        recipient: raw.recipient,
        recipient_kind,
        recipient_identity: raw.recipient_identity,
        purpose: raw.purpose,
        basis,
        categories: raw.categories,
        subject: raw.subject,
        outcome,
        reason: raw.reason,
    })
}

/// Parses and checks a `POST /ledger` body (`{"records": [...]}`) at `now_ms`: every
/// field of every record, all or nothing. Errors name the field path, never a value.
pub fn parse_batch(body: &[u8], now_ms: u64) -> Result<Vec<LedgerRecord>, BatchError> {
    let raw: RawBatch = consent_core::config::parse_json_doc(body, "").map_err(|e| BatchError {
        status: 400,
        message: e.to_string(),
    })?;
    if raw.records.len() > MAX_BATCH_RECORDS {
        return Err(BatchError {
            status: 413,
            message: format!("too many records in one batch (at most {MAX_BATCH_RECORDS})"),
        });
    }
    raw.records
        .into_iter()
        .enumerate()
        .map(|(i, r)| check(i, r, now_ms))
        .collect()
}

/// What storing a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stored {
    /// Records stored now.
    pub stored: usize,
    /// Records whose `request_id` was already stored (nothing stored for them).
    pub duplicates: usize,
    /// Of the duplicates, how many differ from what is stored under their `request_id`.
    #[serde(skip)]
    pub conflicting: usize,
}

/// One row of the purge log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PurgeEntry {
    /// Position in the log.
    pub seq: u64,
    /// When the purge ran (Unix milliseconds).
    pub at_ms: u64,
    /// Records with `ts_ms` before this were deleted (Unix milliseconds).
    pub cutoff_ms: u64,
    /// The retention period in force.
    pub retention_days: u32,
    /// How many records were deleted.
    pub deleted: u64,
}

/// The key the source computes keyed subjects with, to find a person's ledger rows.
#[derive(Clone, PartialEq, Eq)]
pub struct LedgerKey(SubjectKeying);

impl std::fmt::Debug for LedgerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LedgerKey(<key>)")
    }
}

impl LedgerKey {
    /// A key of at least 16 bytes; `None` when shorter.
    pub fn new(key: Vec<u8>) -> Option<LedgerKey> {
        (key.len() >= 16).then_some(LedgerKey(SubjectKeying::Hmac(key)))
    }

    /// The keyed subject of `user`: hex of the first 16 bytes of HMAC-SHA-256(key, user),
    /// as the filter writes it.
    pub fn subject_for(&self, user: &str) -> String {
        self.0.subject_for(user)
    }

    /// What the database remembers of the key (a keyed check value, never the key).
    fn mark(&self) -> String {
        format!(
            "hmac_sha256:{}",
            self.0.subject_for("consent-source ledger keying check")
        )
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn parse_enum<T>(text: &str, parse: fn(&str) -> Option<T>, column: usize) -> rusqlite::Result<T> {
    parse(text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            "unknown value in the ledger".into(),
        )
    })
}

const RECORD_COLUMNS: &str = "request_id, ts_ms, recipient, recipient_kind, recipient_identity, purpose, basis, categories, subject, outcome, reason";

fn record_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<LedgerRecord> {
    let categories: String = r.get(7)?;
    Ok(LedgerRecord {
        request_id: r.get(0)?,
        ts_ms: to_u64(r.get(1)?),
        recipient: r.get(2)?,
        recipient_kind: parse_enum(&r.get::<_, String>(3)?, RecipientKind::parse, 3)?,
        recipient_identity: r.get(4)?,
        purpose: r.get(5)?,
        basis: parse_enum(&r.get::<_, String>(6)?, LedgerBasis::parse, 6)?,
        categories: serde_json::from_str(&categories).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, e.into())
        })?,
        subject: r.get(8)?,
        outcome: parse_enum(&r.get::<_, String>(9)?, Outcome::parse, 9)?,
        reason: r.get(10)?,
    })
}

/// The cut-off of a purge at `now_ms` keeping `retention_days`.
pub fn cutoff_ms(now_ms: u64, retention_days: u32) -> u64 {
    now_ms.saturating_sub(u64::from(retention_days).saturating_mul(DAY_MS))
}

/// Checks a retention period: at least [`MIN_RETENTION_DAYS`], at most
/// [`MAX_RETENTION_DAYS`].
pub fn check_retention_days(days: u32) -> Result<u32, String> {
    if days < MIN_RETENTION_DAYS {
        return Err(format!(
            "the ledger retention must be at least {MIN_RETENTION_DAYS} days (APPI keeps provision records one to three years; the default is {DEFAULT_RETENTION_DAYS})"
        ));
    }
    if days > MAX_RETENTION_DAYS {
        return Err(format!(
            "the ledger retention must be at most {MAX_RETENTION_DAYS} days"
        ));
    }
    Ok(days)
}

impl Store {
    /// Turns the ledger on with `key`. A database remembers the ledger key it was first
    /// used with (as a keyed check value): a start with another key is refused, since the
    /// records written under the first could no longer be found.
    pub fn enable_ledger(&mut self, key: LedgerKey) -> Result<(), StoreError> {
        let mark = key.mark();
        let tx = self.db.transaction()?;
        let stored: Option<String> =
            tx.query_row("SELECT ledger_keying FROM state WHERE id = 1", [], |r| {
                r.get(0)
            })?;
        match stored {
            Some(stored) if stored != mark => return Err(StoreError::LedgerKeyChanged),
            Some(_) => {}
            None => {
                tx.execute(
                    "UPDATE state SET ledger_keying = ?1 WHERE id = 1",
                    params![mark],
                )?;
            }
        }
        tx.commit()?;
        self.ledger_key = Some(key);
        Ok(())
    }

    /// The ledger key, when the ledger is on.
    pub fn ledger_key(&self) -> Option<&LedgerKey> {
        self.ledger_key.as_ref()
    }

    /// Stores a checked batch in one transaction, reported by `reporter` (the fetcher's
    /// credential name) and received at `received_ms`. A `request_id` already stored, or
    /// repeated in the batch, stores nothing.
    pub fn append_ledger(
        &mut self,
        records: &[LedgerRecord],
        reporter: &str,
        received_ms: u64,
    ) -> Result<Stored, StoreError> {
        if self.ledger_key.is_none() {
            return Err(StoreError::LedgerOff);
        }
        let tx = self
            .db
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Stored::default();
        {
            let mut find = tx.prepare(&format!(
                "SELECT {RECORD_COLUMNS} FROM ledger WHERE request_id = ?1"
            ))?;
            let mut insert = tx.prepare(
                "INSERT INTO ledger (request_id, ts_ms, received_ms, reporter, recipient, recipient_kind,
                   recipient_identity, purpose, basis, categories, subject, outcome, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            for record in records {
                if let Some(existing) = find
                    .query_row(params![record.request_id], record_of)
                    .optional()?
                {
                    out.duplicates += 1;
                    if existing != *record {
                        out.conflicting += 1;
                    }
                    continue;
                }
                let categories = serde_json::to_string(&record.categories)
                    .map_err(|_| StoreError::Invalid("categories".into()))?;
                insert.execute(params![
                    record.request_id,
                    to_i64(record.ts_ms),
                    to_i64(received_ms),
                    reporter,
                    record.recipient,
                    record.recipient_kind.as_str(),
                    record.recipient_identity,
                    record.purpose,
                    record.basis.as_str(),
                    categories,
                    record.subject,
                    record.outcome.as_str(),
                    record.reason,
                ])?;
                out.stored += 1;
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Every ledger record of the keyed `subject`, oldest first.
    pub fn ledger_of(&self, subject: &str) -> Result<Vec<LedgerRecord>, StoreError> {
        let mut stmt = self.db.prepare(&format!(
            "SELECT {RECORD_COLUMNS} FROM ledger WHERE subject = ?1 ORDER BY ts_ms, seq"
        ))?;
        let rows = stmt
            .query_map(params![subject], record_of)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// How many records the ledger holds.
    pub fn ledger_len(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .db
            .query_row("SELECT COUNT(*) FROM ledger", [], |r| r.get(0))?;
        Ok(to_u64(n))
    }

    /// Deletes the ledger records older than `retention_days` before `now_ms`, and records
    /// the purge (when, the cut-off, how many) in `ledger_purges`, in one transaction. A
    /// purge with nothing to delete records nothing and returns `None`.
    pub fn purge_ledger(
        &mut self,
        now_ms: u64,
        retention_days: u32,
    ) -> Result<Option<PurgeEntry>, StoreError> {
        let retention_days =
            check_retention_days(retention_days).map_err(|_| StoreError::Retention)?;
        let cutoff = cutoff_ms(now_ms, retention_days);
        let tx = self
            .db
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let due: i64 = tx.query_row(
            "SELECT COUNT(*) FROM ledger WHERE ts_ms < ?1",
            params![to_i64(cutoff)],
            |r| r.get(0),
        )?;
        if due == 0 {
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO ledger_purges (at_ms, cutoff_ms, retention_days, deleted) VALUES (?1, ?2, ?3, ?4)",
            params![to_i64(now_ms), to_i64(cutoff), i64::from(retention_days), due],
        )?;
        let seq = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO ledger_purge_gate (id, purge_seq, cutoff_ms) VALUES (1, ?1, ?2)",
            params![seq, to_i64(cutoff)],
        )?;
        let deleted = tx.execute(
            "DELETE FROM ledger WHERE ts_ms < ?1",
            params![to_i64(cutoff)],
        )?;
        tx.execute("DELETE FROM ledger_purge_gate", [])?;
        if i64::try_from(deleted).ok() != Some(due) {
            // Cannot happen inside one IMMEDIATE transaction; roll back rather than record
            // a count that is not true.
            return Err(StoreError::Invalid("ledger purge count".into()));
        }
        tx.commit()?;
        Ok(Some(PurgeEntry {
            seq: to_u64(seq),
            at_ms: now_ms,
            cutoff_ms: cutoff,
            retention_days,
            deleted: to_u64(due),
        }))
    }

    /// The purge log, oldest first.
    pub fn ledger_purges(&self) -> Result<Vec<PurgeEntry>, StoreError> {
        let mut stmt = self.db.prepare(
            "SELECT seq, at_ms, cutoff_ms, retention_days, deleted FROM ledger_purges ORDER BY seq",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(PurgeEntry {
                    seq: to_u64(r.get(0)?),
                    at_ms: to_u64(r.get(1)?),
                    cutoff_ms: to_u64(r.get(2)?),
                    retention_days: u32::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                    deleted: to_u64(r.get(4)?),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

/// A person's provisions to one recipient for one purpose, of one kind (provided or
/// refused), as the disclosure report lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvisionGroup {
    /// The recipient's party id, or `-`.
    pub recipient: String,
    /// The recipient's kind.
    pub recipient_kind: RecipientKind,
    /// The purpose id.
    pub purpose: String,
    /// Whether data reached the recipient (`allow`/`redact`) or the filter refused it.
    pub provided: bool,
    /// The first provision (Unix milliseconds).
    pub first_ms: u64,
    /// The last provision (Unix milliseconds).
    pub last_ms: u64,
    /// How many.
    pub count: u64,
    /// Every category that reached the recipient in any of them, in first-seen order.
    pub categories: Vec<String>,
    /// The bases they were decided on.
    pub bases: Vec<LedgerBasis>,
    /// The caller identities seen (at most [`MAX_GROUP_IDENTITIES`]).
    pub identities: Vec<String>,
}

/// Most distinct caller identities listed per group.
pub const MAX_GROUP_IDENTITIES: usize = 8;

/// Groups a person's records by recipient, recipient kind, purpose and whether data was
/// provided: first and last time, count, the union of the categories passed. Groups come
/// provided first, then by recipient, purpose and kind.
pub fn group_provisions<'a>(
    records: impl IntoIterator<Item = &'a LedgerRecord>,
) -> Vec<ProvisionGroup> {
    let mut groups: BTreeMap<(bool, String, String, RecipientKind), ProvisionGroup> =
        BTreeMap::new();
    for r in records {
        let provided = r.outcome.provided();
        let key = (
            !provided,
            r.recipient.clone(),
            r.purpose.clone(),
            r.recipient_kind,
        );
        let g = groups.entry(key).or_insert_with(|| ProvisionGroup {
            recipient: r.recipient.clone(),
            recipient_kind: r.recipient_kind,
            purpose: r.purpose.clone(),
            provided,
            first_ms: r.ts_ms,
            last_ms: r.ts_ms,
            count: 0,
            categories: Vec::new(),
            bases: Vec::new(),
            identities: Vec::new(),
        });
        g.count += 1;
        g.first_ms = g.first_ms.min(r.ts_ms);
        g.last_ms = g.last_ms.max(r.ts_ms);
        for c in &r.categories {
            if !g.categories.contains(c) {
                g.categories.push(c.clone());
            }
        }
        if !g.bases.contains(&r.basis) {
            g.bases.push(r.basis);
        }
        if let Some(id) = &r.recipient_identity {
            if !g.identities.contains(id) && g.identities.len() < MAX_GROUP_IDENTITIES {
                g.identities.push(id.clone());
            }
        }
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use consent_core::policy::CompiledPolicy;
    use std::path::Path;

    const NOW: u64 = 1_760_000_000_000;
    const KEY: &[u8] = b"ledger-test-key-0123456789";

    fn key() -> LedgerKey {
        LedgerKey::new(KEY.to_vec()).unwrap()
    }

    fn store_at(path: &Path) -> Store {
        let mut s = Store::open(
            path,
            CompiledPolicy::default_policy().unwrap(),
            SubjectKeying::Plain,
        )
        .unwrap();
        s.enable_ledger(key()).unwrap();
        s
    }

    fn store() -> Store {
        store_at(Path::new(":memory:"))
    }

    fn record(id: &str, user: &str, ts_ms: u64) -> serde_json::Value {
        serde_json::json!({
            "request_id": id,
            "ts_ms": ts_ms,
            "recipient": "saitama-city",
            "recipient_kind": "joint_user",
            "recipient_identity": "spiffe://minna-app.example/ns/saitama-city/sa/portal",
            "purpose": "joint.ebpm",
            "basis": "notice",
            "categories": ["birth_date", "address"],
            "subject": key().subject_for(user),
            "outcome": "redact",
            "reason": "notice_basis",
        })
    }

    fn batch(records: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "records": records })).unwrap()
    }

    fn parse(records: Vec<serde_json::Value>) -> Vec<LedgerRecord> {
        parse_batch(&batch(records), NOW).unwrap()
    }

    fn error_of(mut value: serde_json::Value, field: &str, bad: serde_json::Value) -> String {
        value[field] = bad;
        parse_batch(&batch(vec![record("ok-0", "u-1", NOW), value]), NOW)
            .unwrap_err()
            .message
    }

    #[test]
    fn a_batch_is_stored_in_one_go_and_read_back_by_person() {
        let mut s = store();
        let records = parse(vec![
            record("r-1", "u-1", NOW - 3),
            record("r-2", "u-2", NOW - 2),
            record("r-3", "u-1", NOW - 1),
        ]);
        let out = s.append_ledger(&records, "sidecars", NOW).unwrap();
        assert_eq!((out.stored, out.duplicates), (3, 0));
        let mine = s.ledger_of(&key().subject_for("u-1")).unwrap();
        let ids: Vec<&str> = mine.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(ids, ["r-1", "r-3"]);
        assert_eq!(mine[0], records[0]);
        assert_eq!(s.ledger_len().unwrap(), 3);
    }

    #[test]
    fn a_batch_sent_again_stores_nothing_twice() {
        let mut s = store();
        let records = parse(vec![record("r-1", "u-1", NOW), record("r-2", "u-1", NOW)]);
        s.append_ledger(&records, "sidecars", NOW).unwrap();
        let again = s.append_ledger(&records, "sidecars", NOW + 5).unwrap();
        assert_eq!(
            (again.stored, again.duplicates, again.conflicting),
            (0, 2, 0)
        );
        // Repeated inside one batch, and a repeat with other content.
        let mut changed = record("r-2", "u-1", NOW);
        changed["outcome"] = "block".into();
        changed["categories"] = serde_json::json!([]);
        let mixed = parse(vec![
            record("r-3", "u-1", NOW),
            record("r-3", "u-1", NOW),
            changed,
        ]);
        let out = s.append_ledger(&mixed, "sidecars", NOW).unwrap();
        assert_eq!((out.stored, out.duplicates, out.conflicting), (1, 2, 1));
        assert_eq!(s.ledger_len().unwrap(), 3);
        // The first content stays.
        let r2 = s.ledger_of(&key().subject_for("u-1")).unwrap();
        assert!(r2
            .iter()
            .any(|r| r.request_id == "r-2" && r.outcome == Outcome::Redact));
    }

    #[test]
    fn a_failed_batch_stores_none_of_its_records() {
        let mut s = store();
        s.db.execute_batch(
            "CREATE TRIGGER fail BEFORE INSERT ON ledger WHEN NEW.request_id = 'r-2'
             BEGIN SELECT RAISE(ABORT, 'boom'); END;",
        )
        .unwrap();
        let records = parse(vec![record("r-1", "u-1", NOW), record("r-2", "u-1", NOW)]);
        assert!(s.append_ledger(&records, "sidecars", NOW).is_err());
        assert_eq!(s.ledger_len().unwrap(), 0);
    }

    #[test]
    fn every_malformed_field_is_named_by_its_path_never_by_its_value() {
        let base = record("r-1", "u-1", NOW);
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            (
                "request_id",
                "".into(),
                "records[1].request_id: must be 1 to 128",
            ),
            (
                "request_id",
                "has space-SECRET".into(),
                "records[1].request_id",
            ),
            (
                "request_id",
                "x".repeat(129).into(),
                "records[1].request_id",
            ),
            (
                "ts_ms",
                1_760_000_000u64.into(),
                "records[1].ts_ms: must be Unix milliseconds",
            ),
            (
                "ts_ms",
                (NOW + MAX_FUTURE_SKEW_MS + 1).into(),
                "records[1].ts_ms: is more than an hour ahead",
            ),
            (
                "ts_ms",
                "SECRET".into(),
                "records[1].ts_ms: invalid type: string, expected u64",
            ),
            ("ts_ms", (-5).into(), "records[1].ts_ms"),
            (
                "recipient",
                "SECRET party".into(),
                "records[1].recipient: must be a party id",
            ),
            (
                "recipient_kind",
                "SECRET".into(),
                "records[1].recipient_kind: must be third_party, joint_user or processor",
            ),
            (
                "recipient_kind",
                "operator".into(),
                "records[1].recipient_kind",
            ),
            (
                "recipient_identity",
                "spiffe://x/<SECRET>".into(),
                "records[1].recipient_identity",
            ),
            (
                "recipient_identity",
                5.into(),
                "records[1].recipient_identity: invalid type",
            ),
            (
                "purpose",
                "SECRET purpose".into(),
                "records[1].purpose: must be a purpose id",
            ),
            (
                "basis",
                "SECRET".into(),
                "records[1].basis: must be consent, notice, contract or legal",
            ),
            (
                "categories",
                serde_json::json!(["ok", "SECRET cat"]),
                "records[1].categories[1]: must be a category id",
            ),
            (
                "categories",
                serde_json::json!(["email", "email"]),
                "records[1].categories[1]: repeats",
            ),
            (
                "categories",
                "SECRET".into(),
                "records[1].categories: invalid type: string, expected a sequence",
            ),
            (
                "subject",
                "u-SECRET".into(),
                "records[1].subject: must be the keyed subject",
            ),
            (
                "subject",
                "0123456789ABCDEF0123456789ABCDEF".into(),
                "records[1].subject",
            ),
            (
                "outcome",
                "SECRET".into(),
                "records[1].outcome: must be allow, redact or block",
            ),
            (
                "reason",
                "SECRET".into(),
                "records[1].reason: must be a reason code",
            ),
        ];
        for (field, value, expected) in cases {
            let message = error_of(base.clone(), field, value.clone());
            assert!(
                message.starts_with(expected),
                "{field} = {value}: {message}"
            );
            assert!(!message.contains("SECRET"), "{message}");
        }
        // Cross-field rules.
        let mut block = base.clone();
        block["outcome"] = "block".into();
        assert_eq!(
            parse_batch(&batch(vec![block]), NOW).unwrap_err().message,
            "records[0].categories: must be empty when the outcome is block (nothing was provided)"
        );
        let mut unclaimed = base.clone();
        unclaimed["recipient"] = "-".into();
        assert!(parse_batch(&batch(vec![unclaimed.clone()]), NOW)
            .unwrap_err()
            .message
            .starts_with("records[0].recipient_kind: a recipient no party claims"));
        unclaimed["recipient_kind"] = "third_party".into();
        unclaimed["recipient_identity"] = serde_json::Value::Null;
        assert_eq!(parse_batch(&batch(vec![unclaimed]), NOW).unwrap().len(), 1);
        // Shape errors.
        let mut missing = base.clone();
        missing.as_object_mut().unwrap().remove("subject");
        let m = parse_batch(&batch(vec![missing]), NOW).unwrap_err();
        assert_eq!(m.status, 400);
        assert!(
            m.message.starts_with("records[0]: missing field `subject`"),
            "{}",
            m.message
        );
        let mut extra = base.clone();
        extra["name"] = "SECRET".into();
        let e = parse_batch(&batch(vec![extra]), NOW).unwrap_err().message;
        assert!(
            e.starts_with("records[0].name: unknown field `name`"),
            "{e}"
        );
        assert!(!e.contains("SECRET"));
        let syntax = parse_batch(b"{\"records\": [}", NOW).unwrap_err();
        assert_eq!(syntax.status, 400);
        assert!(parse_batch(b"{}", NOW)
            .unwrap_err()
            .message
            .contains("missing field `records`"));
        assert!(parse_batch(b"{\"records\": []} x", NOW)
            .unwrap_err()
            .message
            .contains("trailing"));
    }

    #[test]
    fn a_batch_over_the_record_limit_is_413() {
        let records: Vec<serde_json::Value> = (0..=MAX_BATCH_RECORDS)
            .map(|i| record(&format!("r-{i}"), "u-1", NOW))
            .collect();
        let e = parse_batch(&batch(records), NOW).unwrap_err();
        assert_eq!(e.status, 413);
        let records: Vec<serde_json::Value> = (0..MAX_BATCH_RECORDS)
            .map(|i| record(&format!("r-{i}"), "u-1", NOW))
            .collect();
        let body = batch(records);
        assert!(
            body.len() <= MAX_BATCH_BYTES,
            "a full batch fits in the byte limit"
        );
        assert_eq!(parse_batch(&body, NOW).unwrap().len(), MAX_BATCH_RECORDS);
    }

    #[test]
    fn records_survive_a_reopen_and_none_is_stored_twice() {
        let dir =
            std::env::temp_dir().join(format!("consent-ledger-reopen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("l.sqlite");
        let first = parse(
            (0..50)
                .map(|i| record(&format!("r-{i}"), "u-1", NOW))
                .collect(),
        );
        {
            let mut s = store_at(&path);
            assert_eq!(s.append_ledger(&first, "sidecars", NOW).unwrap().stored, 50);
        }
        let mut s = store_at(&path);
        assert_eq!(s.ledger_of(&key().subject_for("u-1")).unwrap(), first);
        let again = s.append_ledger(&first, "sidecars", NOW).unwrap();
        assert_eq!((again.stored, again.duplicates), (0, 50));
        // Another key is refused: its subjects would not find the rows written so far.
        drop(s);
        let mut other = Store::open(
            &path,
            CompiledPolicy::default_policy().unwrap(),
            SubjectKeying::Plain,
        )
        .unwrap();
        assert!(matches!(
            other.enable_ledger(LedgerKey::new(b"another-key-0123456789".to_vec()).unwrap()),
            Err(StoreError::LedgerKeyChanged)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_ledger_refuses_updates_deletes_and_replacements() {
        let mut s = store();
        s.append_ledger(&parse(vec![record("r-1", "u-1", NOW)]), "sidecars", NOW)
            .unwrap();
        for sql in [
            "UPDATE ledger SET recipient = 'someone-else'",
            "DELETE FROM ledger",
            "INSERT OR REPLACE INTO ledger (request_id, ts_ms, received_ms, reporter, recipient, recipient_kind, purpose, basis, categories, subject, outcome, reason)
             VALUES ('r-1', 1, 1, 'x', 'x', 'processor', 'p', 'notice', '[]', 's', 'block', 'r')",
        ] {
            let e = s.db.execute(sql, []).unwrap_err();
            assert!(e.to_string().contains("append-only"), "{sql}: {e}");
        }
        // A gate without its purge-log row opens nothing.
        s.db.execute(
            "INSERT INTO ledger_purge_gate (id, purge_seq, cutoff_ms) VALUES (1, 99, 9223372036854775807)",
            [],
        )
        .unwrap();
        assert!(s.db.execute("DELETE FROM ledger", []).is_err());
        s.db.execute("DELETE FROM ledger_purge_gate", []).unwrap();
        assert_eq!(s.ledger_len().unwrap(), 1);
    }

    #[test]
    fn the_purge_deletes_only_what_is_past_retention_and_records_itself() {
        let mut s = store();
        let day = DAY_MS;
        let start = NOW;
        let records = parse_batch(
            &batch(vec![
                record("old-1", "u-1", start),
                record("old-2", "u-2", start + day),
                record("new-1", "u-1", start + 400 * day),
            ]),
            start + 400 * day,
        )
        .unwrap();
        s.append_ledger(&records, "sidecars", start + 400 * day)
            .unwrap();
        // An injected clock: 365 days after the first record, nothing is past a year yet.
        assert_eq!(s.purge_ledger(start + 365 * day, 365).unwrap(), None);
        assert!(
            s.ledger_purges().unwrap().is_empty(),
            "an empty purge records nothing"
        );
        // One millisecond later the first is past the cut-off.
        let p = s.purge_ledger(start + 365 * day + 1, 365).unwrap().unwrap();
        assert_eq!(
            (p.deleted, p.cutoff_ms, p.retention_days),
            (1, start + 1, 365)
        );
        // 500 days on with the default retention: the rest stays.
        assert_eq!(
            s.purge_ledger(start + 500 * day, DEFAULT_RETENTION_DAYS)
                .unwrap(),
            None
        );
        let p2 = s.purge_ledger(start + 800 * day, 365).unwrap().unwrap();
        assert_eq!(p2.deleted, 2);
        assert_eq!(s.ledger_len().unwrap(), 0);
        let log = s.ledger_purges().unwrap();
        assert_eq!(log, vec![p, p2]);
        assert_eq!(log[0].at_ms, start + 365 * day + 1);
        // The purge log is append-only too, and the gate is closed again.
        for sql in [
            "UPDATE ledger_purges SET deleted = 0",
            "DELETE FROM ledger_purges",
        ] {
            assert!(s
                .db
                .execute(sql, [])
                .unwrap_err()
                .to_string()
                .contains("append-only"));
        }
        let open: i64 =
            s.db.query_row("SELECT COUNT(*) FROM ledger_purge_gate", [], |r| r.get(0))
                .unwrap();
        assert_eq!(open, 0);
        // Below the minimum retention nothing is purged.
        assert!(matches!(
            s.purge_ledger(start, 364),
            Err(StoreError::Retention)
        ));
    }

    #[test]
    fn retention_below_a_year_is_refused_with_a_clear_message() {
        assert!(check_retention_days(364)
            .unwrap_err()
            .contains("at least 365 days"));
        assert_eq!(check_retention_days(365), Ok(365));
        assert_eq!(check_retention_days(DEFAULT_RETENTION_DAYS), Ok(1095));
        assert!(check_retention_days(MAX_RETENTION_DAYS + 1).is_err());
    }

    #[test]
    fn the_ledger_is_off_without_a_key() {
        let mut s = Store::open(
            Path::new(":memory:"),
            CompiledPolicy::default_policy().unwrap(),
            SubjectKeying::Plain,
        )
        .unwrap();
        let records = parse(vec![record("r-1", "u-1", NOW)]);
        assert!(matches!(
            s.append_ledger(&records, "x", NOW),
            Err(StoreError::LedgerOff)
        ));
        assert!(LedgerKey::new(b"too-short".to_vec()).is_none());
    }

    #[test]
    fn the_ledger_key_is_the_filters_hmac_subject() {
        // SubjectKeying::Hmac(key).subject_for(user): hex of the first 16 bytes of
        // HMAC-SHA-256(key, user). RFC 4231 test case 2: key "Jefe" is too short for a
        // ledger key, so check against the core directly with a 16+ byte key.
        let k = LedgerKey::new(KEY.to_vec()).unwrap();
        assert_eq!(
            k.subject_for("u-alice"),
            SubjectKeying::Hmac(KEY.to_vec()).subject_for("u-alice")
        );
        assert!(is_keyed_subject(&k.subject_for("u-alice")));
        assert_ne!(k.subject_for("u-alice"), k.subject_for("u-bob"));
    }

    fn rec(
        recipient: &str,
        purpose: &str,
        outcome: Outcome,
        ts: u64,
        cats: &[&str],
    ) -> LedgerRecord {
        LedgerRecord {
            request_id: format!("{recipient}-{purpose}-{ts}"),
            ts_ms: ts,
            recipient: recipient.into(),
            recipient_kind: if recipient == "-" {
                RecipientKind::ThirdParty
            } else {
                RecipientKind::JointUser
            },
            recipient_identity: Some(format!("cluster:{recipient}")),
            purpose: purpose.into(),
            basis: LedgerBasis::Notice,
            categories: cats.iter().map(|c| c.to_string()).collect(),
            subject: "0".repeat(32),
            outcome,
            reason: "notice_basis".into(),
        }
    }

    type Summary<'a> = (bool, &'a str, &'a str, u64, u64, u64, Vec<&'a str>);

    #[test]
    fn provisions_group_by_recipient_and_purpose_with_first_last_count_and_categories() {
        let records = vec![
            rec(
                "saitama-city",
                "joint.ebpm",
                Outcome::Redact,
                300,
                &["address"],
            ),
            rec(
                "saitama-city",
                "joint.ebpm",
                Outcome::Allow,
                100,
                &["birth_date", "address"],
            ),
            rec(
                "saitama-city",
                "joint.troubleshooting",
                Outcome::Allow,
                200,
                &["email"],
            ),
            rec("saitama-city", "joint.ebpm", Outcome::Block, 400, &[]),
            rec("-", "marketing.third_party_offers", Outcome::Block, 50, &[]),
            rec("-", "marketing.third_party_offers", Outcome::Block, 60, &[]),
            rec(
                "aeon-financial-service",
                "joint.ebpm",
                Outcome::Redact,
                250,
                &["payment.amount"],
            ),
        ];
        let groups = group_provisions(&records);
        let summary: Vec<Summary<'_>> = groups
            .iter()
            .map(|g| {
                (
                    g.provided,
                    g.recipient.as_str(),
                    g.purpose.as_str(),
                    g.first_ms,
                    g.last_ms,
                    g.count,
                    g.categories.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    true,
                    "aeon-financial-service",
                    "joint.ebpm",
                    250,
                    250,
                    1,
                    vec!["payment.amount"]
                ),
                (
                    true,
                    "saitama-city",
                    "joint.ebpm",
                    100,
                    300,
                    2,
                    vec!["address", "birth_date"]
                ),
                (
                    true,
                    "saitama-city",
                    "joint.troubleshooting",
                    200,
                    200,
                    1,
                    vec!["email"]
                ),
                (
                    false,
                    "-",
                    "marketing.third_party_offers",
                    50,
                    60,
                    2,
                    vec![]
                ),
                (false, "saitama-city", "joint.ebpm", 400, 400, 1, vec![]),
            ]
        );
        assert_eq!(
            groups[1].identities,
            vec!["cluster:saitama-city".to_string()]
        );
        assert_eq!(groups[1].bases, vec![LedgerBasis::Notice]);
        assert!(group_provisions(&[]).is_empty());
    }
}
