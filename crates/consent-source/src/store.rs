//! Consent records in SQLite, with a global version that counts every change, so that
//! full snapshots and "changes since version N" deltas can be served, and an append-only
//! audit table written in the same transaction as each change.
//!
//! Durability: the database runs in WAL mode with `synchronous = FULL`, so a change is in
//! the (fsynced) log before [`Store::apply`] returns; the HTTP answer is sent after that.
//!
//! Subjects: records are kept by raw user ID (the API reads them back); what is served,
//! the tombstones of erased people and the audit table hold the subject as served (the
//! HMAC-keyed form with `--subject-key-secret`), so an erasure leaves no raw ID behind
//! when the source keys subjects. The keying of a database is fixed when it is created.

use std::path::Path;

use consent_core::decide::MAX_IDENTITY_LEN;
use consent_core::live::SubjectKeying;
use consent_core::live::{ConsentRecord, GrantDoc, RecordDoc};
use consent_core::live::{DeltaDoc, FullSnapshotDoc, SubjectKeyKind};
use consent_core::policy::CompiledPolicy;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;

/// Why a change or a read failed. Messages name fields, never values.
#[derive(Debug)]
pub enum StoreError {
    /// The database failed.
    Db(rusqlite::Error),
    /// The user ID is empty, too long, or holds control characters, commas or surrounding
    /// blanks.
    BadSubject,
    /// The purpose is not in the policy.
    UnknownPurpose,
    /// `explicit[index]` is not a category that takes an explicit grant.
    NotExplicit {
        /// Position in `explicit`.
        index: usize,
    },
    /// A grant's policy version is 0.
    PolicyVersion,
    /// The record does not compile against the policy (the field's path).
    Invalid(String),
    /// The database was written with another subject keying (or another key).
    KeyingChanged,
    /// The database did not switch to WAL mode (the journal mode it reports).
    NotWal(String),
    /// The database's ledger was written with another ledger key.
    LedgerKeyChanged,
    /// The ledger is off: the source has no key to write keyed subjects with.
    LedgerOff,
    /// A retention period outside the accepted range.
    Retention,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Db(e) => write!(f, "database error: {e}"),
            StoreError::BadSubject => write!(
                f,
                "malformed user id: 1 to {MAX_IDENTITY_LEN} bytes of UTF-8 without control characters, commas or surrounding blanks"
            ),
            StoreError::UnknownPurpose => write!(f, "unknown purpose"),
            StoreError::NotExplicit { index } => write!(
                f,
                "explicit[{index}] is not a category that takes an explicit grant"
            ),
            StoreError::PolicyVersion => write!(f, "policy_version must be 1 or more"),
            StoreError::Invalid(at) => write!(f, "invalid change at {at}"),
            StoreError::KeyingChanged => write!(
                f,
                "the database was written with another subject keying: keep the secret (or its absence) of its first start"
            ),
            StoreError::NotWal(mode) => {
                write!(f, "the database did not switch to WAL (journal mode {mode})")
            }
            StoreError::LedgerKeyChanged => write!(
                f,
                "the database's ledger was written with another ledger key: keep the key of its first start"
            ),
            StoreError::LedgerOff => write!(
                f,
                "the ledger is off: start the source with a ledger key (--subject-key-secret or --ledger-subject-key)"
            ),
            StoreError::Retention => write!(
                f,
                "the ledger retention must be {} to {} days",
                crate::ledger::MIN_RETENTION_DAYS,
                crate::ledger::MAX_RETENTION_DAYS
            ),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e)
    }
}

/// One change to a person's record, as the API asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Grant `purpose` (under `policy_version`, the source's policy when `None`), with
    /// the categories that need an explicit grant.
    Grant {
        /// The purpose id.
        purpose: String,
        /// The policy version the person agreed to.
        policy_version: Option<u32>,
        /// Categories granted explicitly.
        explicit: Vec<String>,
    },
    /// Withdraw consent to, or object to, `purpose`.
    Withdraw {
        /// The purpose id.
        purpose: String,
    },
    /// Ask (`true`) or stop asking (`false`) to stop use.
    StopUse(bool),
    /// Ask (`true`) or stop asking (`false`) to stop third-party provision.
    StopThirdParty(bool),
    /// Erase the record.
    Erase,
}

impl Change {
    /// The action's name in the audit table.
    pub fn action(&self) -> &'static str {
        match self {
            Change::Grant { .. } => "grant",
            Change::Withdraw { .. } => "withdraw",
            Change::StopUse(true) => "stop_use",
            Change::StopUse(false) => "lift_stop_use",
            Change::StopThirdParty(true) => "stop_third_party",
            Change::StopThirdParty(false) => "lift_stop_third_party",
            Change::Erase => "erase",
        }
    }
}

/// One row of the audit table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Position in the table (counts up, never reused).
    pub seq: u64,
    /// When (Unix milliseconds).
    pub at_ms: u64,
    /// Who: the token's name or the client identity (never a token).
    pub actor: String,
    /// What: `grant`, `withdraw`, `stop_use`, `lift_stop_use`, `stop_third_party`,
    /// `lift_stop_third_party`, `erase` or `seed`.
    pub action: String,
    /// The subject as served (the keyed form under HMAC keying).
    pub subject: String,
    /// The purpose, for grants and withdrawals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The grant's policy version, else the source's policy version.
    pub policy_version: u32,
    /// Categories granted explicitly, for grants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explicit: Option<Vec<String>>,
    /// The version the change produced.
    pub version: u64,
}

/// Which audit rows to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this person (raw user ID; keyed here as stored).
    pub subject: Option<String>,
    /// Only rows at or after this time (Unix milliseconds).
    pub since_ms: Option<u64>,
    /// Only rows after this `seq` (the paging cursor).
    pub after: Option<u64>,
    /// At most this many rows.
    pub limit: usize,
}

/// Who made a change and when, for the audit table.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// The token's name or the client identity.
    pub who: &'a str,
    /// When (Unix milliseconds).
    pub at_ms: u64,
}

/// The store: a SQLite connection, the policy records are checked against, and how
/// subjects are written in what is served.
pub struct Store {
    pub(crate) db: Connection,
    policy: CompiledPolicy,
    keying: SubjectKeying,
    part_size: usize,
    pub(crate) ledger_key: Option<crate::ledger::LedgerKey>,
}

/// Default number of records in one part of a served snapshot.
pub const DEFAULT_PART_SIZE: usize = 20_000;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS records (
      subject TEXT PRIMARY KEY,
      doc TEXT NOT NULL,
      version INTEGER NOT NULL,
      deleted INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX IF NOT EXISTS records_by_version ON records(version);
    CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
    INSERT OR IGNORE INTO state (id, version) VALUES (1, 0);
    CREATE TABLE IF NOT EXISTS tombstones (
      subject TEXT PRIMARY KEY,
      version INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS tombstones_by_version ON tombstones(version);
    CREATE TABLE IF NOT EXISTS audit (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      at_ms INTEGER NOT NULL,
      actor TEXT NOT NULL,
      action TEXT NOT NULL,
      subject TEXT NOT NULL,
      purpose TEXT,
      policy_version INTEGER NOT NULL,
      explicit TEXT,
      version INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS audit_by_subject ON audit(subject, seq);
    CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
      BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
    CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
      BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
    -- INSERT OR REPLACE deletes the row it replaces without firing delete triggers.
    CREATE TRIGGER IF NOT EXISTS audit_no_replace BEFORE INSERT ON audit
      WHEN EXISTS (SELECT 1 FROM audit WHERE seq = NEW.seq)
      BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
";

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Whether `subject` may be a user ID: what the filter accepts in its user-ID header.
pub fn valid_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.len() <= MAX_IDENTITY_LEN
        && subject.trim_matches(|c| c == ' ' || c == '\t') == subject
        && !subject.contains(',')
        && !subject.chars().any(char::is_control)
}

/// What the store remembers of the keying of a database (never the key).
fn keying_mark(keying: &SubjectKeying) -> String {
    match keying {
        SubjectKeying::Plain => "plain".into(),
        SubjectKeying::Hmac(_) => format!(
            "hmac_sha256:{}",
            keying.subject_for("consent-source keying check")
        ),
    }
}

fn has_column(db: &Connection, table: &str, column: &str) -> Result<bool, StoreError> {
    let n: i64 = db.query_row(
        "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
        params![table, column],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

impl Store {
    /// Opens (or creates) the database at `path` (`:memory:` for a throwaway one).
    pub fn open(
        path: &Path,
        policy: CompiledPolicy,
        keying: SubjectKeying,
    ) -> Result<Self, StoreError> {
        let db = Connection::open(path)?;
        let mode: String = db.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
            return Err(StoreError::NotWal(mode));
        }
        db.execute_batch("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")?;
        db.execute_batch(SCHEMA)?;
        db.execute_batch(crate::ledger::LEDGER_SCHEMA)?;
        let mut store = Store {
            db,
            policy,
            keying,
            part_size: DEFAULT_PART_SIZE,
            ledger_key: None,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Brings a database of an earlier release up to this one: the `changed_at` and
    /// `keying` columns, and tombstones moved out of `records` into their served form.
    fn migrate(&mut self) -> Result<(), StoreError> {
        if !has_column(&self.db, "state", "changed_at")? {
            self.db.execute_batch(
                "ALTER TABLE state ADD COLUMN changed_at INTEGER NOT NULL DEFAULT 0",
            )?;
        }
        if !has_column(&self.db, "state", "keying")? {
            self.db
                .execute_batch("ALTER TABLE state ADD COLUMN keying TEXT")?;
        }
        if !has_column(&self.db, "state", "ledger_keying")? {
            self.db
                .execute_batch("ALTER TABLE state ADD COLUMN ledger_keying TEXT")?;
        }
        let mark = keying_mark(&self.keying);
        let tx = self.db.transaction()?;
        let stored: Option<String> =
            tx.query_row("SELECT keying FROM state WHERE id = 1", [], |r| r.get(0))?;
        match stored {
            Some(stored) if stored != mark => return Err(StoreError::KeyingChanged),
            Some(_) => {}
            None => {
                tx.execute("UPDATE state SET keying = ?1 WHERE id = 1", params![mark])?;
            }
        }
        tx.execute(
            "UPDATE state SET changed_at = ?1 WHERE id = 1 AND changed_at = 0",
            params![to_i64(now_secs())],
        )?;
        let legacy: Vec<(String, i64)> = {
            let mut stmt = tx.prepare("SELECT subject, version FROM records WHERE deleted != 0")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            rows
        };
        for (subject, version) in legacy {
            tx.execute(
                "INSERT INTO tombstones (subject, version) VALUES (?1, ?2)
                 ON CONFLICT(subject) DO UPDATE SET version = max(version, excluded.version)",
                params![self.keying.subject_for(&subject), version],
            )?;
            tx.execute("DELETE FROM records WHERE subject = ?1", params![subject])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The SQLite settings that make acknowledged changes durable:
    /// (`journal_mode`, `synchronous`), e.g. `("wal", 2)` (2 is FULL).
    pub fn durability(&self) -> Result<(String, i64), StoreError> {
        let mode: String = self.db.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        let sync: i64 = self.db.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        Ok((mode, sync))
    }

    /// The current version (0 for an empty store).
    pub fn version(&self) -> Result<u64, StoreError> {
        let v: i64 = self
            .db
            .query_row("SELECT version FROM state WHERE id = 1", [], |r| r.get(0))?;
        Ok(to_u64(v))
    }

    /// When the current version was made (Unix seconds): every document of one version is
    /// dated with it, so the same version always serves the same bytes.
    fn changed_at(&self) -> Result<u64, StoreError> {
        let v: i64 = self
            .db
            .query_row("SELECT changed_at FROM state WHERE id = 1", [], |r| {
                r.get(0)
            })?;
        Ok(to_u64(v))
    }

    /// The record of `subject` (raw user ID), if any.
    pub fn get(&self, subject: &str) -> Result<Option<RecordDoc>, StoreError> {
        if !valid_subject(subject) {
            return Err(StoreError::BadSubject);
        }
        let doc: Option<String> = self
            .db
            .query_row(
                "SELECT doc FROM records WHERE subject = ?1 AND deleted = 0",
                params![subject],
                |r| r.get(0),
            )
            .optional()?;
        Ok(doc.and_then(|d| serde_json::from_str(&d).ok()))
    }

    fn check_grant(
        &self,
        purpose: &str,
        policy_version: u32,
        explicit: &[String],
    ) -> Result<(), StoreError> {
        if self.policy.purpose_idx(purpose).is_none() {
            return Err(StoreError::UnknownPurpose);
        }
        if policy_version == 0 {
            return Err(StoreError::PolicyVersion);
        }
        for (index, id) in explicit.iter().enumerate() {
            let ok = self
                .policy
                .category_idx(id)
                .is_some_and(|c| self.policy.explicit_grant.contains(c));
            if !ok {
                return Err(StoreError::NotExplicit { index });
            }
        }
        Ok(())
    }

    /// Applies `change` to the record of `subject` (raw user ID; an absent record starts
    /// empty), checks the result against the policy and stores it under a new version,
    /// with its audit row, in one transaction. Returns the new version.
    pub fn apply(
        &mut self,
        subject: &str,
        change: &Change,
        actor: Actor<'_>,
    ) -> Result<u64, StoreError> {
        if !valid_subject(subject) {
            return Err(StoreError::BadSubject);
        }
        let mut row = AuditRow {
            action: change.action(),
            purpose: None,
            policy_version: self.policy.version,
            explicit: None,
        };
        if let Change::Erase = change {
            return self.erase_row(subject, &row, actor);
        }
        let mut record = self.get(subject)?.unwrap_or_else(|| empty_record(subject));
        match change {
            Change::Grant {
                purpose,
                policy_version,
                explicit,
            } => {
                let version = policy_version.unwrap_or(self.policy.version);
                self.check_grant(purpose, version, explicit)?;
                record.withdrawn.retain(|w| w != purpose);
                record.grants.insert(
                    purpose.clone(),
                    GrantDoc {
                        policy_version: version,
                        explicit: explicit.clone(),
                    },
                );
                row.purpose = Some(purpose.clone());
                row.policy_version = version;
                row.explicit = Some(explicit.clone());
            }
            Change::Withdraw { purpose } => {
                if self.policy.purpose_idx(purpose).is_none() {
                    return Err(StoreError::UnknownPurpose);
                }
                record.grants.remove(purpose);
                if !record.withdrawn.contains(purpose) {
                    record.withdrawn.push(purpose.clone());
                }
                row.purpose = Some(purpose.clone());
            }
            Change::StopUse(on) => record.stop_use = *on,
            Change::StopThirdParty(on) => record.stop_third_party = *on,
            Change::Erase => {}
        }
        self.put(subject, record, &row, actor)
    }

    /// Checks `record` and stores it for `subject` under a new version with its audit row.
    fn put(
        &mut self,
        subject: &str,
        mut record: RecordDoc,
        row: &AuditRow,
        actor: Actor<'_>,
    ) -> Result<u64, StoreError> {
        record.subject = subject.to_string();
        ConsentRecord::compile(&record, &self.policy, "record").map_err(|e| {
            StoreError::Invalid(match e {
                consent_core::error::ConfigError::Parse { path, .. }
                | consent_core::error::ConfigError::Invalid { path, .. } => path,
            })
        })?;
        let doc =
            serde_json::to_string(&record).map_err(|_| StoreError::Invalid("record".into()))?;
        let served = self.keying.subject_for(subject);
        let tx = self.db.transaction()?;
        let version = bump(&tx, actor.at_ms)?;
        tx.execute(
            "INSERT INTO records (subject, doc, version, deleted) VALUES (?1, ?2, ?3, 0)
             ON CONFLICT(subject) DO UPDATE SET doc = excluded.doc, version = excluded.version, deleted = 0",
            params![subject, doc, version],
        )?;
        tx.execute("DELETE FROM tombstones WHERE subject = ?1", params![served])?;
        audit(&tx, &served, row, actor, version)?;
        tx.commit()?;
        Ok(to_u64(version))
    }

    /// Erases the record of `subject`: the row goes, a tombstone in the served form stays
    /// so deltas can say it is gone, and the audit table records that an erasure happened.
    fn erase_row(
        &mut self,
        subject: &str,
        row: &AuditRow,
        actor: Actor<'_>,
    ) -> Result<u64, StoreError> {
        let served = self.keying.subject_for(subject);
        let tx = self.db.transaction()?;
        let version = bump(&tx, actor.at_ms)?;
        tx.execute("DELETE FROM records WHERE subject = ?1", params![subject])?;
        tx.execute(
            "INSERT INTO tombstones (subject, version) VALUES (?1, ?2)
             ON CONFLICT(subject) DO UPDATE SET version = excluded.version",
            params![served, version],
        )?;
        audit(&tx, &served, row, actor, version)?;
        tx.commit()?;
        Ok(to_u64(version))
    }

    /// Loads every record of a snapshot document (e.g. the demo consents), one version
    /// and one audit row (`seed`) each.
    pub fn seed(&mut self, doc: &FullSnapshotDoc, actor: Actor<'_>) -> Result<u64, StoreError> {
        let mut version = self.version()?;
        for record in &doc.records {
            if !valid_subject(&record.subject) {
                return Err(StoreError::BadSubject);
            }
            let row = AuditRow {
                action: "seed",
                purpose: None,
                policy_version: self.policy.version,
                explicit: None,
            };
            version = self.put(&record.subject.clone(), record.clone(), &row, actor)?;
        }
        Ok(version)
    }

    /// Rows of the audit table, oldest first.
    pub fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let subject = match &query.subject {
            Some(s) if !valid_subject(s) => return Err(StoreError::BadSubject),
            Some(s) => Some(self.keying.subject_for(s)),
            None => None,
        };
        let mut stmt = self.db.prepare(
            "SELECT seq, at_ms, actor, action, subject, purpose, policy_version, explicit, version
             FROM audit
             WHERE (?1 IS NULL OR subject = ?1) AND at_ms >= ?2 AND seq > ?3
             ORDER BY seq LIMIT ?4",
        )?;
        let rows = stmt
            .query_map(
                params![
                    subject,
                    to_i64(query.since_ms.unwrap_or(0)),
                    to_i64(query.after.unwrap_or(0)),
                    to_i64(u64::try_from(query.limit).unwrap_or(u64::MAX)),
                ],
                |r| {
                    let explicit: Option<String> = r.get(7)?;
                    Ok(AuditEntry {
                        seq: to_u64(r.get(0)?),
                        at_ms: to_u64(r.get(1)?),
                        actor: r.get(2)?,
                        action: r.get(3)?,
                        subject: r.get(4)?,
                        purpose: r.get(5)?,
                        policy_version: u32::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
                        explicit: explicit.and_then(|e| serde_json::from_str(&e).ok()),
                        version: to_u64(r.get(8)?),
                    })
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn kind(&self) -> SubjectKeyKind {
        match self.keying {
            SubjectKeying::Plain => SubjectKeyKind::Plain,
            SubjectKeying::Hmac(_) => SubjectKeyKind::HmacSha256,
        }
    }

    fn served_record(&self, subject: &str, doc: &str) -> Option<RecordDoc> {
        let mut record: RecordDoc = serde_json::from_str(doc).ok()?;
        record.subject = self.keying.subject_for(subject);
        Some(record)
    }

    /// Sets how many records one part of a served snapshot holds (at least 1).
    pub fn set_part_size(&mut self, size: usize) {
        self.part_size = size.max(1);
    }

    /// The full snapshot in one document, subjects written as the keying says.
    pub fn snapshot(&self) -> Result<FullSnapshotDoc, StoreError> {
        let mut stmt = self
            .db
            .prepare("SELECT subject, doc FROM records WHERE deleted = 0 ORDER BY subject")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        let records = rows
            .iter()
            .filter_map(|(subject, doc)| self.served_record(subject, doc))
            .collect();
        Ok(FullSnapshotDoc {
            version: self.version()?,
            generated_at: Some(self.changed_at()?),
            subject_key: self.kind(),
            records,
            parts: None,
            part: None,
        })
    }

    /// Part `part` of the current snapshot (records in subject order, `part_size` each);
    /// `None` past the last part. Every part names the version and the number of parts.
    pub fn snapshot_part(&self, part: usize) -> Result<Option<FullSnapshotDoc>, StoreError> {
        let version = self.version()?;
        let live: i64 =
            self.db
                .query_row("SELECT COUNT(*) FROM records WHERE deleted = 0", [], |r| {
                    r.get(0)
                })?;
        let live = usize::try_from(live).unwrap_or(0);
        let parts = live.div_ceil(self.part_size).max(1);
        if part >= parts {
            return Ok(None);
        }
        let mut stmt = self.db.prepare(
            "SELECT subject, doc FROM records WHERE deleted = 0 ORDER BY subject LIMIT ?1 OFFSET ?2",
        )?;
        let limit = i64::try_from(self.part_size).unwrap_or(i64::MAX);
        let offset = i64::try_from(part.saturating_mul(self.part_size)).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![limit, offset], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let records = rows
            .iter()
            .filter_map(|(subject, doc)| self.served_record(subject, doc))
            .collect();
        Ok(Some(FullSnapshotDoc {
            version,
            generated_at: Some(self.changed_at()?),
            subject_key: self.kind(),
            records,
            parts: Some(u32::try_from(parts).unwrap_or(u32::MAX)),
            part: Some(u32::try_from(part).unwrap_or(u32::MAX)),
        }))
    }

    /// What changed after version `from`, or `None` when nothing did.
    pub fn delta(&self, from: u64) -> Result<Option<DeltaDoc>, StoreError> {
        let version = self.version()?;
        if from >= version {
            return Ok(None);
        }
        let mut stmt = self.db.prepare(
            "SELECT subject, doc FROM records WHERE version > ?1 AND deleted = 0 ORDER BY subject",
        )?;
        let rows = stmt
            .query_map(params![to_i64(from)], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let upserts = rows
            .iter()
            .filter_map(|(subject, doc)| self.served_record(subject, doc))
            .collect();
        let mut stmt = self
            .db
            .prepare("SELECT subject FROM tombstones WHERE version > ?1 ORDER BY subject")?;
        let deletes = stmt
            .query_map(params![to_i64(from)], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(DeltaDoc {
            from_version: from,
            version,
            generated_at: Some(self.changed_at()?),
            subject_key: self.kind(),
            upserts,
            deletes,
        }))
    }

    /// The policy records are checked against.
    pub fn policy(&self) -> &CompiledPolicy {
        &self.policy
    }
}

/// What an audit row says besides who, when, the subject and the version.
struct AuditRow {
    action: &'static str,
    purpose: Option<String>,
    policy_version: u32,
    explicit: Option<Vec<String>>,
}

fn empty_record(subject: &str) -> RecordDoc {
    RecordDoc {
        subject: subject.to_string(),
        grants: Default::default(),
        stop_use: false,
        stop_third_party: false,
        withdrawn: Vec::new(),
    }
}

/// Counts the version up and dates it; returns the new version.
fn bump(tx: &Transaction<'_>, at_ms: u64) -> Result<i64, StoreError> {
    tx.execute(
        "UPDATE state SET version = version + 1, changed_at = ?1 WHERE id = 1",
        params![to_i64(at_ms / 1000)],
    )?;
    Ok(tx.query_row("SELECT version FROM state WHERE id = 1", [], |r| r.get(0))?)
}

fn audit(
    tx: &Transaction<'_>,
    served: &str,
    row: &AuditRow,
    actor: Actor<'_>,
    version: i64,
) -> Result<(), StoreError> {
    let explicit = match &row.explicit {
        Some(list) => {
            Some(serde_json::to_string(list).map_err(|_| StoreError::Invalid("explicit".into()))?)
        }
        None => None,
    };
    tx.execute(
        "INSERT INTO audit (at_ms, actor, action, subject, purpose, policy_version, explicit, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            to_i64(actor.at_ms),
            actor.who,
            row.action,
            served,
            row.purpose,
            i64::from(row.policy_version),
            explicit,
            version
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use consent_core::live::KeyedSnapshot;

    const ACTOR: Actor<'static> = Actor {
        who: "test",
        at_ms: 1_700_000_000_123,
    };

    fn store() -> Store {
        store_with(SubjectKeying::Plain)
    }

    fn store_with(keying: SubjectKeying) -> Store {
        Store::open(
            Path::new(":memory:"),
            CompiledPolicy::default_policy().unwrap(),
            keying,
        )
        .unwrap()
    }

    fn grant(purpose: &str) -> Change {
        Change::Grant {
            purpose: purpose.to_string(),
            policy_version: Some(1),
            explicit: vec![],
        }
    }

    fn temp_db(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("consent-source-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.sqlite");
        (dir, path)
    }

    #[test]
    fn every_change_gets_a_new_version_and_shows_in_the_snapshot() {
        let mut s = store();
        assert_eq!(s.apply("u-1", &grant("surveys"), ACTOR).unwrap(), 1);
        assert_eq!(s.apply("u-2", &Change::StopUse(true), ACTOR).unwrap(), 2);
        let snap = s.snapshot().unwrap();
        assert_eq!(snap.version, 2);
        assert_eq!(snap.records.len(), 2);
        assert_eq!(snap.generated_at, Some(1_700_000_000));
    }

    #[test]
    fn an_invalid_change_is_refused_and_stores_nothing() {
        let mut s = store();
        assert!(matches!(
            s.apply("u-1", &grant("no.such.purpose"), ACTOR),
            Err(StoreError::UnknownPurpose)
        ));
        assert!(matches!(
            s.apply(
                "u-1",
                &Change::Withdraw {
                    purpose: "nope".into()
                },
                ACTOR
            ),
            Err(StoreError::UnknownPurpose)
        ));
        let bad_category = Change::Grant {
            purpose: "surveys".into(),
            policy_version: None,
            explicit: vec!["location.gps".into(), "no.such.category".into()],
        };
        assert!(matches!(
            s.apply("u-1", &bad_category, ACTOR),
            Err(StoreError::NotExplicit { index: 1 })
        ));
        let zero = Change::Grant {
            purpose: "surveys".into(),
            policy_version: Some(0),
            explicit: vec![],
        };
        assert!(matches!(
            s.apply("u-1", &zero, ACTOR),
            Err(StoreError::PolicyVersion)
        ));
        for bad in ["", " u-1", "a,b", "u\n1", &"x".repeat(MAX_IDENTITY_LEN + 1)] {
            assert!(
                matches!(
                    s.apply(bad, &grant("surveys"), ACTOR),
                    Err(StoreError::BadSubject)
                ),
                "{bad:?}"
            );
        }
        assert_eq!(s.version().unwrap(), 0);
        assert!(s.get("u-1").unwrap().is_none());
        assert!(s.audit(&all()).unwrap().is_empty());
    }

    fn all() -> AuditQuery {
        AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        }
    }

    #[test]
    fn deltas_replayed_on_a_snapshot_give_the_current_snapshot() {
        let mut s = store();
        s.apply("u-1", &grant("surveys"), ACTOR).unwrap();
        s.apply("u-2", &grant("marketing.newsletters"), ACTOR)
            .unwrap();
        let base = s.snapshot().unwrap();
        s.apply(
            "u-1",
            &Change::Withdraw {
                purpose: "surveys".into(),
            },
            ACTOR,
        )
        .unwrap();
        s.apply("u-2", &Change::Erase, ACTOR).unwrap();
        s.apply("u-3", &Change::StopThirdParty(true), ACTOR)
            .unwrap();
        let policy = CompiledPolicy::default_policy().unwrap();
        let mut keyed = KeyedSnapshot::compile(&base, &policy, &SubjectKeying::Plain).unwrap();
        let delta = s.delta(base.version).unwrap().unwrap();
        assert_eq!(delta.deletes, vec!["u-2".to_string()]);
        keyed.apply(&delta, &policy, &SubjectKeying::Plain).unwrap();
        let current =
            KeyedSnapshot::compile(&s.snapshot().unwrap(), &policy, &SubjectKeying::Plain).unwrap();
        assert_eq!(keyed.version, current.version);
        assert_eq!(keyed.records, current.records);
        assert!(s.delta(current.version).unwrap().is_none(), "nothing newer");
    }

    #[test]
    fn a_person_erased_and_back_is_an_upsert_not_a_delete() {
        let mut s = store();
        s.apply("u-1", &grant("surveys"), ACTOR).unwrap();
        s.apply("u-1", &Change::Erase, ACTOR).unwrap();
        assert!(s.get("u-1").unwrap().is_none());
        s.apply("u-1", &grant("surveys"), ACTOR).unwrap();
        let delta = s.delta(0).unwrap().unwrap();
        assert!(delta.deletes.is_empty());
        assert_eq!(delta.upserts.len(), 1);
    }

    #[test]
    fn parts_cover_every_record_once_and_name_the_version() {
        let mut s = store();
        for i in 0..25 {
            s.apply(&format!("u-{i:02}"), &grant("surveys"), ACTOR)
                .unwrap();
        }
        s.set_part_size(10);
        let mut seen = Vec::new();
        for part in 0..3 {
            let doc = s.snapshot_part(part).unwrap().unwrap();
            assert_eq!(
                (doc.version, doc.parts, doc.part),
                (25, Some(3), Some(part as u32))
            );
            seen.extend(doc.records.into_iter().map(|r| r.subject));
        }
        assert!(s.snapshot_part(3).unwrap().is_none());
        let expected: Vec<String> = (0..25).map(|i| format!("u-{i:02}")).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn the_same_version_serves_the_same_bytes() {
        let mut s = store();
        s.apply("u-1", &grant("surveys"), ACTOR).unwrap();
        let a = serde_json::to_vec(&s.snapshot_part(0).unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let b = serde_json::to_vec(&s.snapshot_part(0).unwrap()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn hashed_keying_ships_no_raw_ids_and_erasure_leaves_none() {
        let keying = SubjectKeying::Hmac(b"0123456789abcdef-shared".to_vec());
        let mut s = store_with(keying.clone());
        s.apply("u-alice", &grant("surveys"), ACTOR).unwrap();
        let text = serde_json::to_string(&s.snapshot().unwrap()).unwrap();
        assert!(!text.contains("u-alice"));
        assert!(text.contains(&keying.subject_for("u-alice")));
        s.apply("u-alice", &Change::Erase, ACTOR).unwrap();
        let delta = s.delta(1).unwrap().unwrap();
        assert_eq!(delta.deletes, vec![keying.subject_for("u-alice")]);
        // Nothing in the database holds the raw ID any more.
        for table in ["records", "tombstones", "audit"] {
            let n: i64 =
                s.db.query_row(
                    &format!("SELECT COUNT(*) FROM {table} WHERE subject = 'u-alice'"),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 0, "{table}");
        }
        let rows = s
            .audit(&AuditQuery {
                subject: Some("u-alice".into()),
                ..all()
            })
            .unwrap();
        let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, ["grant", "erase"]);
        assert_eq!(rows[1].subject, keying.subject_for("u-alice"));
    }

    #[test]
    fn every_change_is_audited_with_who_what_and_the_version() {
        let mut s = store();
        let explicit = Change::Grant {
            purpose: "service.improvement".into(),
            policy_version: None,
            explicit: vec!["location.gps".into()],
        };
        s.apply("u-1", &explicit, ACTOR).unwrap();
        s.apply(
            "u-1",
            &Change::Withdraw {
                purpose: "service.improvement".into(),
            },
            Actor {
                who: "other",
                at_ms: 1_700_000_001_000,
            },
        )
        .unwrap();
        s.apply("u-2", &Change::StopUse(false), ACTOR).unwrap();
        let rows = s.audit(&all()).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            AuditEntry {
                seq: 1,
                at_ms: 1_700_000_000_123,
                actor: "test".into(),
                action: "grant".into(),
                subject: "u-1".into(),
                purpose: Some("service.improvement".into()),
                policy_version: 1,
                explicit: Some(vec!["location.gps".into()]),
                version: 1,
            }
        );
        assert_eq!(
            (
                rows[1].actor.as_str(),
                rows[1].action.as_str(),
                rows[1].version
            ),
            ("other", "withdraw", 2)
        );
        assert_eq!(rows[2].action, "lift_stop_use");
        // Paging and filters.
        let page = s
            .audit(&AuditQuery {
                after: Some(1),
                limit: 1,
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].seq, 2);
        let since = s
            .audit(&AuditQuery {
                since_ms: Some(1_700_000_000_500),
                ..all()
            })
            .unwrap();
        assert_eq!(since.len(), 1);
        let one = s
            .audit(&AuditQuery {
                subject: Some("u-2".into()),
                ..all()
            })
            .unwrap();
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn the_audit_table_refuses_updates_and_deletes() {
        let mut s = store();
        s.apply("u-1", &grant("surveys"), ACTOR).unwrap();
        for sql in [
            "UPDATE audit SET actor = 'someone else'",
            "DELETE FROM audit",
            "INSERT OR REPLACE INTO audit (seq, at_ms, actor, action, subject, policy_version, version) VALUES (1, 0, 'x', 'x', 'x', 1, 1)",
        ] {
            let e = s.db.execute(sql, []).unwrap_err();
            assert!(e.to_string().contains("append-only"), "{sql}: {e}");
        }
        assert_eq!(s.audit(&all()).unwrap()[0].actor, "test");
    }

    #[test]
    fn a_failed_change_writes_no_audit_row() {
        let mut s = store();
        s.apply("u-1", &grant("surveys"), ACTOR).unwrap();
        // A trigger that makes the record write fail: the version and the audit row that
        // the same transaction wrote must go with it.
        s.db.execute_batch(
            "CREATE TRIGGER fail BEFORE INSERT ON tombstones BEGIN SELECT RAISE(ABORT, 'boom'); END;",
        )
        .unwrap();
        assert!(s.apply("u-1", &Change::Erase, ACTOR).is_err());
        assert_eq!(s.version().unwrap(), 1);
        assert_eq!(s.audit(&all()).unwrap().len(), 1);
        assert!(s.get("u-1").unwrap().is_some());
    }

    #[test]
    fn records_survive_a_reopen_with_durable_settings() {
        let (dir, path) = temp_db("reopen");
        {
            let mut s = Store::open(
                &path,
                CompiledPolicy::default_policy().unwrap(),
                SubjectKeying::Plain,
            )
            .unwrap();
            assert_eq!(s.durability().unwrap(), ("wal".to_string(), 2));
            s.apply("u-1", &grant("surveys"), ACTOR).unwrap();
        }
        let s = Store::open(
            &path,
            CompiledPolicy::default_policy().unwrap(),
            SubjectKeying::Plain,
        )
        .unwrap();
        assert_eq!(s.version().unwrap(), 1);
        assert!(s
            .get("u-1")
            .unwrap()
            .unwrap()
            .grants
            .contains_key("surveys"));
        assert_eq!(s.audit(&all()).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_database_keeps_the_keying_it_was_made_with() {
        let (dir, path) = temp_db("keying");
        let policy = || CompiledPolicy::default_policy().unwrap();
        let key = |k: &[u8]| SubjectKeying::Hmac(k.to_vec());
        drop(Store::open(&path, policy(), key(b"0123456789abcdef-one")).unwrap());
        assert!(Store::open(&path, policy(), key(b"0123456789abcdef-one")).is_ok());
        for other in [SubjectKeying::Plain, key(b"0123456789abcdef-two")] {
            assert!(matches!(
                Store::open(&path, policy(), other),
                Err(StoreError::KeyingChanged)
            ));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_earlier_database_is_migrated() {
        let (dir, path) = temp_db("migrate");
        {
            let db = Connection::open(&path).unwrap();
            db.execute_batch(
                "CREATE TABLE records (subject TEXT PRIMARY KEY, doc TEXT NOT NULL, version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0);
                 CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
                 INSERT INTO state VALUES (1, 2);
                 INSERT INTO records VALUES ('u-1', '{\"subject\":\"u-1\",\"stop_use\":true}', 1, 0);
                 INSERT INTO records VALUES ('u-2', '{}', 2, 1);",
            )
            .unwrap();
        }
        let s = Store::open(
            &path,
            CompiledPolicy::default_policy().unwrap(),
            SubjectKeying::Plain,
        )
        .unwrap();
        assert_eq!(s.version().unwrap(), 2);
        assert!(s.get("u-1").unwrap().unwrap().stop_use);
        let delta = s.delta(0).unwrap().unwrap();
        assert_eq!(delta.deletes, vec!["u-2".to_string()]);
        assert_eq!(delta.upserts.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
