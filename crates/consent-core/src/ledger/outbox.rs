//! The drainer's outbox, without I/O: records taken from the filters' queue wait here
//! (bounded), go out in `POST /ledger` batches of at most `max_batch` records and 1 MiB,
//! and leave only when the consent source answered 2xx. A failed batch is sent again with
//! the same records (the source is idempotent by `request_id`, so nothing is stored twice).
//! A batch the source refuses as malformed (400, 413) is halved until the one bad record is
//! alone; that one is dropped and counted, so one bad record cannot stop the ledger.

use std::collections::VecDeque;

use crate::ledger::settings::{LedgerSettings, MAX_BATCH_BYTES};

const ENVELOPE_OPEN: &[u8] = b"{\"records\":[";
const ENVELOPE_CLOSE: &[u8] = b"]}";
/// First wait before a failed batch is sent again; doubled up to [`MAX_RETRY_MS`].
const FIRST_RETRY_MS: u64 = 250;
/// Longest wait between two tries.
const MAX_RETRY_MS: u64 = 5_000;

/// One record waiting, with when the drainer took it.
#[derive(Debug, Clone)]
struct Waiting {
    json: Vec<u8>,
    since_ms: u64,
}

/// What the drainer should do with a source answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answered {
    /// Records the source stored (or already had).
    pub sent: usize,
    /// The batch failed and stays.
    pub failed: bool,
    /// Records dropped (a record the source refuses on its own).
    pub dropped: usize,
}

/// Whether the ledger can take new records now, and how many wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// New provisions may proceed (the buffer has room and nothing waits too long).
    pub available: bool,
    /// Records waiting.
    pub buffered: usize,
}

/// The bounded buffer of records and the one batch out.
#[derive(Debug, Clone)]
pub struct Outbox {
    waiting: VecDeque<Waiting>,
    /// Records of the batch out (the first ones of `waiting`).
    out: Option<usize>,
    /// Records in the next batch (halved after a refused batch).
    limit: usize,
    failures: u32,
    retry_at_ms: u64,
    capacity: usize,
    max_batch: usize,
    max_age_ms: u64,
}

impl Outbox {
    /// An empty outbox for `settings`.
    pub fn new(settings: &LedgerSettings) -> Self {
        Outbox {
            waiting: VecDeque::new(),
            out: None,
            limit: settings.max_batch.max(1),
            failures: 0,
            retry_at_ms: 0,
            capacity: settings.buffer_records,
            max_batch: settings.max_batch.max(1),
            max_age_ms: settings.max_unsent_age_ms,
        }
    }

    /// Whether another record fits (the drainer stops taking records when not).
    pub fn has_room(&self) -> bool {
        self.waiting.len() < self.capacity
    }

    /// Records waiting, the batch out included.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Takes one queued record; false (and dropped) when it could never fit in a batch.
    pub fn push(&mut self, json: Vec<u8>, now_ms: u64) -> bool {
        if json.len() + ENVELOPE_OPEN.len() + ENVELOPE_CLOSE.len() > MAX_BATCH_BYTES {
            return false;
        }
        self.waiting.push_back(Waiting {
            json,
            since_ms: now_ms,
        });
        true
    }

    /// The next `POST /ledger` body, if none is out, something waits and no retry wait runs.
    /// The records stay until [`Outbox::answered`] says they were stored.
    pub fn next_batch(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        if self.out.is_some() || self.waiting.is_empty() || now_ms < self.retry_at_ms {
            return None;
        }
        let mut body = ENVELOPE_OPEN.to_vec();
        let mut count = 0;
        for record in self.waiting.iter().take(self.limit) {
            let extra = record.json.len() + usize::from(count > 0);
            if body.len() + extra + ENVELOPE_CLOSE.len() > MAX_BATCH_BYTES {
                break;
            }
            if count > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&record.json);
            count += 1;
        }
        body.extend_from_slice(ENVELOPE_CLOSE);
        self.out = Some(count);
        Some(body)
    }

    /// Whether a batch is out.
    pub fn sending(&self) -> bool {
        self.out.is_some()
    }

    /// The host could not send the batch (the call was refused): it stays.
    pub fn not_sent(&mut self, now_ms: u64) {
        self.out = None;
        self.back_off(now_ms);
    }

    fn back_off(&mut self, now_ms: u64) {
        let wait = FIRST_RETRY_MS
            .saturating_mul(1u64 << self.failures.min(8))
            .min(MAX_RETRY_MS);
        self.failures = self.failures.saturating_add(1);
        self.retry_at_ms = now_ms.saturating_add(wait);
    }

    /// The source's answer to the batch out: `status` is `None` when the call failed
    /// (timeout, reset, no healthy host).
    pub fn answered(&mut self, status: Option<u16>, now_ms: u64) -> Answered {
        let Some(count) = self.out.take() else {
            return Answered::default();
        };
        match status {
            Some(200..=299) => {
                self.waiting.drain(..count.min(self.waiting.len()));
                self.limit = self.max_batch;
                self.failures = 0;
                self.retry_at_ms = 0;
                Answered {
                    sent: count,
                    ..Answered::default()
                }
            }
            Some(400 | 413) if count > 1 => {
                // Some record of it is refused: halve until it is alone.
                self.limit = (count / 2).max(1);
                Answered {
                    failed: true,
                    ..Answered::default()
                }
            }
            Some(400 | 413) => {
                self.waiting.pop_front();
                self.limit = self.max_batch;
                Answered {
                    failed: true,
                    dropped: 1,
                    ..Answered::default()
                }
            }
            _ => {
                self.back_off(now_ms);
                Answered {
                    failed: true,
                    ..Answered::default()
                }
            }
        }
    }

    /// The records waiting, one compact JSON record a line, oldest first: what a drainer
    /// keeps in shared data so that the next drainer (a new VM or root context after a
    /// reload, another lease holder) sends them. Records never hold a raw newline (compact
    /// JSON escapes it).
    pub fn to_lines(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, record) in self.waiting.iter().enumerate() {
            if i > 0 {
                out.push(b'\n');
            }
            out.extend_from_slice(&record.json);
        }
        out
    }

    /// Takes back records kept by [`Outbox::to_lines`] (before any other); returns how many
    /// did not fit and were dropped. Sending one twice is harmless: the source keeps a
    /// `request_id` once.
    pub fn restore(&mut self, lines: &[u8], now_ms: u64) -> usize {
        let mut dropped = 0;
        for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if !self.has_room() || !self.push(line.to_vec(), now_ms) {
                dropped += 1;
            }
        }
        dropped
    }

    /// Whether new provisions may proceed at `now_ms`.
    pub fn health(&self, now_ms: u64) -> Health {
        let too_old = self
            .waiting
            .front()
            .is_some_and(|w| now_ms.saturating_sub(w.since_ms) > self.max_age_ms);
        Health {
            available: self.has_room() && !too_old,
            buffered: self.waiting.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::settings::OnUnavailable;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn settings(capacity: usize, batch: usize) -> LedgerSettings {
        LedgerSettings {
            enabled: true,
            buffer_records: capacity,
            max_batch: batch,
            max_unsent_age_ms: 10_000,
            on_unavailable: OnUnavailable::Block,
            ..LedgerSettings::default()
        }
    }

    fn rec(i: usize) -> Vec<u8> {
        format!("{{\"request_id\":\"r-{i}\"}}").into_bytes()
    }

    fn ids(body: &[u8]) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["request_id"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn batches_hold_at_most_max_batch_records_in_order() {
        let mut o = Outbox::new(&settings(100, 3));
        for i in 0..7 {
            assert!(o.push(rec(i), 0));
        }
        let first = o.next_batch(0).unwrap();
        assert_eq!(ids(&first), ["r-0", "r-1", "r-2"]);
        assert!(o.next_batch(0).is_none(), "one batch out at a time");
        assert_eq!(o.answered(Some(200), 1).sent, 3);
        assert_eq!(ids(&o.next_batch(1).unwrap()), ["r-3", "r-4", "r-5"]);
        o.answered(Some(200), 2);
        assert_eq!(ids(&o.next_batch(2).unwrap()), ["r-6"]);
        o.answered(Some(200), 3);
        assert!(o.is_empty() && o.next_batch(3).is_none());
    }

    #[test]
    fn a_failed_batch_is_sent_again_with_the_same_records_after_a_wait() {
        let mut o = Outbox::new(&settings(100, 10));
        o.push(rec(1), 0);
        o.push(rec(2), 0);
        let body = o.next_batch(0).unwrap();
        let a = o.answered(None, 100);
        assert!(a.failed && a.sent == 0);
        assert!(o.next_batch(100).is_none(), "waits before retrying");
        let again = o.next_batch(100 + FIRST_RETRY_MS).unwrap();
        assert_eq!(again, body);
        o.answered(Some(503), 400);
        assert!(
            o.next_batch(400 + FIRST_RETRY_MS).is_none(),
            "the wait doubles"
        );
        assert_eq!(o.next_batch(400 + 2 * FIRST_RETRY_MS).unwrap(), body);
        assert_eq!(o.answered(Some(200), 1000).sent, 2);
        assert!(o.is_empty());
    }

    #[test]
    fn a_refused_batch_is_halved_until_the_bad_record_is_dropped_alone() {
        let mut o = Outbox::new(&settings(100, 4));
        for i in 0..4 {
            o.push(rec(i), 0);
        }
        o.next_batch(0).unwrap();
        assert_eq!(o.answered(Some(400), 0).dropped, 0);
        assert_eq!(ids(&o.next_batch(0).unwrap()), ["r-0", "r-1"]);
        o.answered(Some(400), 0);
        assert_eq!(ids(&o.next_batch(0).unwrap()), ["r-0"]);
        assert_eq!(o.answered(Some(400), 0).dropped, 1);
        assert_eq!(ids(&o.next_batch(0).unwrap()), ["r-1", "r-2", "r-3"]);
        assert_eq!(o.answered(Some(200), 0).sent, 3);
    }

    #[test]
    fn a_full_buffer_or_an_old_record_makes_the_ledger_unavailable() {
        let mut o = Outbox::new(&settings(2, 2));
        assert!(o.health(0).available);
        o.push(rec(1), 0);
        assert!(o.health(0).available);
        o.push(rec(2), 0);
        assert!(!o.has_room());
        assert_eq!(
            o.health(0),
            Health {
                available: false,
                buffered: 2
            }
        );
        o.next_batch(0).unwrap();
        o.answered(Some(200), 1);
        assert!(o.health(1).available);
        o.push(rec(3), 1_000);
        assert!(o.health(11_000).available, "at the bound");
        assert!(!o.health(11_001).available, "past the bound");
    }

    #[test]
    fn waiting_records_kept_as_lines_come_back_in_order_in_a_new_outbox() {
        let mut o = Outbox::new(&settings(3, 3));
        for i in 0..3 {
            o.push(rec(i), 0);
        }
        o.next_batch(0).unwrap();
        let kept = o.to_lines();
        let mut next = Outbox::new(&settings(2, 3));
        assert_eq!(next.restore(&kept, 5), 1, "one did not fit");
        assert_eq!(ids(&next.next_batch(5).unwrap()), ["r-0", "r-1"]);
        assert_eq!(Outbox::new(&settings(2, 2)).restore(b"", 0), 0);
        assert!(Outbox::new(&settings(2, 2)).to_lines().is_empty());
    }

    #[test]
    fn batches_stay_under_the_byte_limit_and_huge_records_are_refused() {
        let mut o = Outbox::new(&settings(10, 10));
        let big = vec![b'x'; MAX_BATCH_BYTES / 2];
        assert!(o.push(big.clone(), 0));
        assert!(o.push(big.clone(), 0));
        let body = o.next_batch(0).unwrap();
        assert!(body.len() <= MAX_BATCH_BYTES);
        o.answered(Some(200), 0);
        assert_eq!(o.len(), 1, "the second did not fit with the first");
        assert!(!o.push(vec![b'x'; MAX_BATCH_BYTES], 0));
    }
}
