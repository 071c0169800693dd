//! Consent records in SQLite, with a global version that counts every change, so that
//! full snapshots and "changes since version N" deltas can be served.

use std::path::Path;

use consent_core::live::SubjectKeying;
use consent_core::live::{ConsentRecord, RecordDoc};
use consent_core::live::{DeltaDoc, FullSnapshotDoc, SubjectKeyKind};
use consent_core::policy::CompiledPolicy;
use rusqlite::{params, Connection, OptionalExtension};

/// Why a change or a read failed.
#[derive(Debug)]
pub enum StoreError {
    /// The database failed.
    Db(rusqlite::Error),
    /// The change would make an invalid record (unknown purpose, bad category, ...).
    Invalid(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Db(e) => write!(f, "database error: {e}"),
            StoreError::Invalid(m) => write!(f, "invalid change: {m}"),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e)
    }
}

/// The store: a SQLite connection, the policy records are checked against, and how
/// subjects are written in what is served.
pub struct Store {
    db: Connection,
    policy: CompiledPolicy,
    keying: SubjectKeying,
    part_size: usize,
}

/// Default number of records in one part of a served snapshot.
pub const DEFAULT_PART_SIZE: usize = 20_000;

impl Store {
    /// Opens (or creates) the database at `path` (`:memory:` for a throwaway one).
    pub fn open(
        path: &Path,
        policy: CompiledPolicy,
        keying: SubjectKeying,
    ) -> Result<Self, StoreError> {
        let db = Connection::open(path)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS records (
               subject TEXT PRIMARY KEY,
               doc TEXT NOT NULL,
               version INTEGER NOT NULL,
               deleted INTEGER NOT NULL DEFAULT 0);
             CREATE INDEX IF NOT EXISTS records_by_version ON records(version);
             CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
             INSERT OR IGNORE INTO state (id, version) VALUES (1, 0);",
        )?;
        Ok(Store {
            db,
            policy,
            keying,
            part_size: DEFAULT_PART_SIZE,
        })
    }

    /// The current version (0 for an empty store).
    pub fn version(&self) -> Result<u64, StoreError> {
        let v: i64 = self
            .db
            .query_row("SELECT version FROM state WHERE id = 1", [], |r| r.get(0))?;
        Ok(u64::try_from(v).unwrap_or(0))
    }

    /// The record of `subject` (raw user ID), if any.
    pub fn get(&self, subject: &str) -> Result<Option<RecordDoc>, StoreError> {
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

    /// Changes the record of `subject` with `change` (starting from an empty record), checks
    /// it against the policy and stores it under a new version. Returns the new version.
    pub fn update(
        &mut self,
        subject: &str,
        change: impl FnOnce(&mut RecordDoc),
    ) -> Result<u64, StoreError> {
        let mut record = self.get(subject)?.unwrap_or_else(|| RecordDoc {
            subject: subject.to_string(),
            grants: Default::default(),
            stop_use: false,
            stop_third_party: false,
            withdrawn: Vec::new(),
        });
        change(&mut record);
        record.subject = subject.to_string();
        ConsentRecord::compile(&record, &self.policy, "record")
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let doc = serde_json::to_string(&record).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let tx = self.db.transaction()?;
        tx.execute("UPDATE state SET version = version + 1 WHERE id = 1", [])?;
        let version: i64 =
            tx.query_row("SELECT version FROM state WHERE id = 1", [], |r| r.get(0))?;
        tx.execute(
            "INSERT INTO records (subject, doc, version, deleted) VALUES (?1, ?2, ?3, 0)
             ON CONFLICT(subject) DO UPDATE SET doc = excluded.doc, version = excluded.version, deleted = 0",
            params![subject, doc, version],
        )?;
        tx.commit()?;
        Ok(u64::try_from(version).unwrap_or(0))
    }

    /// Erases the record of `subject` (a tombstone stays, so deltas can say it is gone).
    pub fn erase(&mut self, subject: &str) -> Result<u64, StoreError> {
        let tx = self.db.transaction()?;
        tx.execute("UPDATE state SET version = version + 1 WHERE id = 1", [])?;
        let version: i64 =
            tx.query_row("SELECT version FROM state WHERE id = 1", [], |r| r.get(0))?;
        tx.execute(
            "UPDATE records SET deleted = 1, version = ?2, doc = '{}' WHERE subject = ?1",
            params![subject, version],
        )?;
        tx.commit()?;
        Ok(u64::try_from(version).unwrap_or(0))
    }

    /// Loads every record of a snapshot document (e.g. the demo consents) as one version.
    pub fn seed(&mut self, doc: &FullSnapshotDoc) -> Result<u64, StoreError> {
        let mut version = self.version()?;
        for record in &doc.records {
            let copy = record.clone();
            version = self.update(&record.subject, move |r| *r = copy)?;
        }
        Ok(version)
    }

    fn served_subject(&self, subject: &str) -> String {
        self.keying.subject_for(subject)
    }

    fn kind(&self) -> SubjectKeyKind {
        match self.keying {
            SubjectKeying::Plain => SubjectKeyKind::Plain,
            SubjectKeying::Hmac(_) => SubjectKeyKind::HmacSha256,
        }
    }

    fn rows_since(&self, from: u64) -> Result<Vec<(String, String, bool)>, StoreError> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let mut stmt = self.db.prepare(
            "SELECT subject, doc, deleted FROM records WHERE version > ?1 ORDER BY subject",
        )?;
        let rows = stmt
            .query_map(params![from], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn served_record(&self, subject: &str, doc: &str) -> Option<RecordDoc> {
        let mut record: RecordDoc = serde_json::from_str(doc).ok()?;
        record.subject = self.served_subject(subject);
        Some(record)
    }

    /// Sets how many records one part of a served snapshot holds (at least 1).
    pub fn set_part_size(&mut self, size: usize) {
        self.part_size = size.max(1);
    }

    /// The full snapshot in one document, subjects written as the keying says.
    pub fn snapshot(&self, now_secs: u64) -> Result<FullSnapshotDoc, StoreError> {
        let records: Vec<RecordDoc> = self
            .rows_since(0)?
            .into_iter()
            .filter(|(_, _, deleted)| !deleted)
            .filter_map(|(subject, doc, _)| self.served_record(&subject, &doc))
            .collect();
        Ok(FullSnapshotDoc {
            version: self.version()?,
            generated_at: Some(now_secs),
            subject_key: self.kind(),
            records,
            parts: None,
            part: None,
        })
    }

    /// Part `part` of the current snapshot (records in subject order, `part_size` each);
    /// `None` past the last part. Every part names the version and the number of parts.
    pub fn snapshot_part(
        &self,
        now_secs: u64,
        part: usize,
    ) -> Result<Option<FullSnapshotDoc>, StoreError> {
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
        let offset = i64::try_from(part * self.part_size).unwrap_or(i64::MAX);
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
            generated_at: Some(now_secs),
            subject_key: self.kind(),
            records,
            parts: Some(u32::try_from(parts).unwrap_or(u32::MAX)),
            part: Some(u32::try_from(part).unwrap_or(u32::MAX)),
        }))
    }

    /// What changed after version `from`, or `None` when nothing did.
    pub fn delta(&self, from: u64, now_secs: u64) -> Result<Option<DeltaDoc>, StoreError> {
        let version = self.version()?;
        if from >= version {
            return Ok(None);
        }
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for (subject, doc, deleted) in self.rows_since(from)? {
            if deleted {
                deletes.push(self.served_subject(&subject));
            } else if let Some(record) = self.served_record(&subject, &doc) {
                upserts.push(record);
            }
        }
        Ok(Some(DeltaDoc {
            from_version: from,
            version,
            generated_at: Some(now_secs),
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

#[cfg(test)]
mod tests {
    use super::*;
    use consent_core::live::GrantDoc;
    use consent_core::live::KeyedSnapshot;

    fn store() -> Store {
        Store::open(
            Path::new(":memory:"),
            CompiledPolicy::default_policy().unwrap(),
            SubjectKeying::Plain,
        )
        .unwrap()
    }

    fn grant(purpose: &str) -> impl FnOnce(&mut RecordDoc) + '_ {
        move |r| {
            r.grants.insert(
                purpose.to_string(),
                GrantDoc {
                    policy_version: 1,
                    explicit: vec![],
                },
            );
        }
    }

    #[test]
    fn every_change_gets_a_new_version_and_shows_in_the_snapshot() {
        let mut s = store();
        assert_eq!(s.update("u-1", grant("surveys")).unwrap(), 1);
        assert_eq!(s.update("u-2", |r| r.stop_use = true).unwrap(), 2);
        let snap = s.snapshot(0).unwrap();
        assert_eq!(snap.version, 2);
        assert_eq!(snap.records.len(), 2);
    }

    #[test]
    fn an_invalid_change_is_refused_and_stores_nothing() {
        let mut s = store();
        assert!(matches!(
            s.update("u-1", grant("no.such.purpose")),
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(s.version().unwrap(), 0);
        assert!(s.get("u-1").unwrap().is_none());
    }

    #[test]
    fn deltas_replayed_on_a_snapshot_give_the_current_snapshot() {
        let mut s = store();
        s.update("u-1", grant("surveys")).unwrap();
        s.update("u-2", grant("marketing.newsletters")).unwrap();
        let base = s.snapshot(0).unwrap();
        s.update("u-1", |r| {
            r.grants.remove("surveys");
        })
        .unwrap();
        s.erase("u-2").unwrap();
        s.update("u-3", |r| r.stop_third_party = true).unwrap();
        let policy = CompiledPolicy::default_policy().unwrap();
        let mut keyed = KeyedSnapshot::compile(&base, &policy, &SubjectKeying::Plain).unwrap();
        let delta = s.delta(base.version, 0).unwrap().unwrap();
        assert_eq!(delta.deletes, vec!["u-2".to_string()]);
        keyed.apply(&delta, &policy, &SubjectKeying::Plain).unwrap();
        let current =
            KeyedSnapshot::compile(&s.snapshot(0).unwrap(), &policy, &SubjectKeying::Plain)
                .unwrap();
        assert_eq!(keyed.version, current.version);
        assert_eq!(keyed.records, current.records);
        assert!(
            s.delta(current.version, 0).unwrap().is_none(),
            "nothing newer"
        );
    }

    #[test]
    fn parts_cover_every_record_once_and_name_the_version() {
        let mut s = store();
        for i in 0..25 {
            s.update(&format!("u-{i:02}"), grant("surveys")).unwrap();
        }
        s.set_part_size(10);
        let mut seen = Vec::new();
        for part in 0..3 {
            let doc = s.snapshot_part(0, part).unwrap().unwrap();
            assert_eq!(
                (doc.version, doc.parts, doc.part),
                (25, Some(3), Some(part as u32))
            );
            seen.extend(doc.records.into_iter().map(|r| r.subject));
        }
        assert!(s.snapshot_part(0, 3).unwrap().is_none());
        let expected: Vec<String> = (0..25).map(|i| format!("u-{i:02}")).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn hashed_keying_ships_no_raw_ids() {
        let keying = SubjectKeying::Hmac(b"0123456789abcdef-shared".to_vec());
        let mut s = Store::open(
            Path::new(":memory:"),
            CompiledPolicy::default_policy().unwrap(),
            keying.clone(),
        )
        .unwrap();
        s.update("u-alice", grant("surveys")).unwrap();
        let text = serde_json::to_string(&s.snapshot(0).unwrap()).unwrap();
        assert!(!text.contains("u-alice"));
        assert!(text.contains(&keying.subject_for("u-alice")));
    }

    #[test]
    fn records_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("consent-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.sqlite");
        {
            let mut s = Store::open(
                &path,
                CompiledPolicy::default_policy().unwrap(),
                SubjectKeying::Plain,
            )
            .unwrap();
            s.update("u-1", grant("surveys")).unwrap();
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
        let _ = std::fs::remove_dir_all(&dir);
    }
}
