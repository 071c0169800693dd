//! Stream stats on their way to Envoy: counted at once at low rates, summed in batches
//! under load.
//!
//! Envoy resolves a labelled counter's tags on every increment (about 4,000 instructions,
//! two or three increments per request), and a dynamic module cannot define a counter per
//! label combination after its configuration is loaded. So a stream's [`Increment`]s are
//! counted at once only while the configuration's rate allows it ([`DIRECT_PER_SECOND`],
//! with bursts of [`DIRECT_BURST`]: an operator or a test reading the stats after a few
//! requests sees them all at once); past that rate they go to one map per configuration (a
//! short lock, no Envoy call), and a small thread, woken by the first of them, waits
//! [`WINDOW`] and posts [`FLUSH_EVENT`] to the configuration's main-thread scheduler, where
//! the sums go to Envoy, one call per distinct increment. Under load one call then counts
//! many requests, and stats are in Envoy at most a few milliseconds late.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use consent_core::policy::Fnv1a;

use crate::envoy::{self, Scheduler};
use crate::metrics::Increment;

/// The scheduler event that flushes a configuration's batch (the fetcher's tick is 1).
pub const FLUSH_EVENT: u64 = 2;

/// How long the thread waits after the first increment before it asks for a flush.
pub const WINDOW: Duration = Duration::from_millis(2);

/// Streams a second whose stats are counted at once, on average.
pub const DIRECT_PER_SECOND: u64 = 100;

/// Streams in a burst whose stats are counted at once.
pub const DIRECT_BURST: u64 = 50;

/// One direct count, in the token bucket's thousandths.
const TOKEN: u64 = 1000;

/// Where a stream's increments went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Into the batch: they reach Envoy with the next flush.
    Batched,
    /// Nowhere: the caller counts them now (the rate allows it, or the batch is stopped).
    CountNow,
}

/// Sums by increment; FNV-hashed (the keys come from the policy and reason codes).
type Sums = HashMap<Increment, u64, BuildHasherDefault<Fnv1a>>;

#[derive(Debug, Default)]
struct Pending {
    sums: Sums,
    /// A flush was posted and has not run yet.
    requested: bool,
    /// The configuration is going: no more adds, the thread ends.
    stopped: bool,
    /// Direct counts left, in thousandths (a token bucket: [`DIRECT_PER_SECOND`] a second,
    /// up to [`DIRECT_BURST`]).
    tokens: u64,
    /// When the bucket was last filled (Unix ms; 0: never, so it starts full).
    filled_at_ms: u64,
}

impl Pending {
    /// Takes one direct count if the rate allows it at `now_ms`.
    fn take_token(&mut self, now_ms: u64) -> bool {
        let elapsed = if self.filled_at_ms == 0 {
            u64::MAX
        } else {
            now_ms.saturating_sub(self.filled_at_ms)
        };
        let refill = elapsed.saturating_mul(DIRECT_PER_SECOND);
        self.tokens = self.tokens.saturating_add(refill).min(DIRECT_BURST * TOKEN);
        if elapsed > 0 {
            self.filled_at_ms = now_ms;
        }
        if self.tokens >= TOKEN {
            self.tokens -= TOKEN;
            true
        } else {
            false
        }
    }
}

type Shared = Arc<(Mutex<Pending>, Condvar)>;

/// One configuration's batch, its flush thread and its scheduler.
#[derive(Debug)]
pub struct StatBatch {
    shared: Shared,
    thread: Mutex<Option<JoinHandle<()>>>,
    scheduler: Mutex<Option<Arc<Scheduler>>>,
}

impl StatBatch {
    /// Starts the batch of a configuration (main thread); `None` when Envoy gives no
    /// scheduler or the thread cannot start (the caller then counts at once).
    pub fn start(config: envoy::Config) -> Option<StatBatch> {
        let scheduler = Arc::new(config.scheduler()?);
        let shared: Shared = Arc::new((Mutex::new(Pending::default()), Condvar::new()));
        let (thread_shared, thread_scheduler) = (Arc::clone(&shared), Arc::clone(&scheduler));
        let thread = std::thread::Builder::new()
            .name("consent-stats".to_string())
            .spawn(move || flush_loop(&thread_shared, |event| thread_scheduler.commit(event)));
        let Ok(thread) = thread else {
            if let Ok(scheduler) = Arc::try_unwrap(scheduler) {
                scheduler.delete();
            }
            return None;
        };
        Some(StatBatch {
            shared,
            thread: Mutex::new(Some(thread)),
            scheduler: Mutex::new(Some(scheduler)),
        })
    }

    /// Adds a stream's increments at `now_ms` (any thread), or says to count them now.
    pub fn add(
        &self,
        now_ms: u64,
        increments: impl IntoIterator<Item = (Increment, u64)>,
    ) -> Added {
        add_to(&self.shared, now_ms, increments)
    }

    /// What is pending, for the flush (main thread, on [`FLUSH_EVENT`]).
    pub fn take(&self) -> Vec<(Increment, u64)> {
        take_from(&self.shared)
    }

    /// Stops the thread and deletes the scheduler (main thread, when Envoy destroys the
    /// configuration); returns what was still pending, for the caller to count.
    pub fn stop(&self) -> Vec<(Increment, u64)> {
        let (lock, wake) = &*self.shared;
        if let Ok(mut pending) = lock.lock() {
            pending.stopped = true;
            wake.notify_all();
        }
        if let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = thread.join();
        }
        let scheduler = self.scheduler.lock().ok().and_then(|mut s| s.take());
        if let Some(Ok(scheduler)) = scheduler.map(Arc::try_unwrap) {
            scheduler.delete();
        }
        take_from(&self.shared)
    }
}

fn add_to(
    shared: &Shared,
    now_ms: u64,
    increments: impl IntoIterator<Item = (Increment, u64)>,
) -> Added {
    let (lock, wake) = &**shared;
    let Ok(mut pending) = lock.lock() else {
        return Added::CountNow;
    };
    if pending.stopped || pending.take_token(now_ms) {
        return Added::CountNow;
    }
    let idle = pending.sums.is_empty() && !pending.requested;
    for (increment, by) in increments {
        let sum = pending.sums.entry(increment).or_insert(0);
        *sum = sum.saturating_add(by);
    }
    let wake_thread = idle && !pending.sums.is_empty();
    drop(pending);
    if wake_thread {
        wake.notify_one();
    }
    Added::Batched
}

fn take_from(shared: &Shared) -> Vec<(Increment, u64)> {
    let (lock, _) = &**shared;
    match lock.lock() {
        Ok(mut pending) => {
            pending.requested = false;
            pending.sums.drain().collect()
        }
        Err(_) => Vec::new(),
    }
}

/// The flush thread: waits for increments, lets [`WINDOW`] pass, posts one flush, and
/// waits for it to run before it posts another.
fn flush_loop(shared: &Shared, post: impl Fn(u64)) {
    let (lock, wake) = &**shared;
    let Ok(mut pending) = lock.lock() else {
        return;
    };
    loop {
        while !pending.stopped && (pending.sums.is_empty() || pending.requested) {
            pending = match wake.wait(pending) {
                Ok(p) => p,
                Err(_) => return,
            };
        }
        if pending.stopped {
            return;
        }
        drop(pending);
        std::thread::sleep(WINDOW);
        pending = match lock.lock() {
            Ok(p) => p,
            Err(_) => return,
        };
        if pending.stopped {
            return;
        }
        pending.requested = true;
        post(FLUSH_EVENT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consent_core::Direction;
    use std::sync::mpsc;
    use std::time::Instant;

    /// A batch whose token bucket is empty at `NOW` (so every add is batched).
    fn shared() -> Shared {
        let pending = Pending {
            filled_at_ms: NOW,
            ..Pending::default()
        };
        Arc::new((Mutex::new(pending), Condvar::new()))
    }

    const NOW: u64 = 1_000_000;

    fn bytes(direction: Direction, n: u64) -> (Increment, u64) {
        (Increment::BodyBytes(direction), n)
    }

    #[test]
    fn increments_of_many_streams_are_summed_by_counter() {
        let s = shared();
        assert_eq!(
            add_to(&s, NOW, [bytes(Direction::Request, 3)]),
            Added::Batched
        );
        add_to(
            &s,
            NOW,
            [bytes(Direction::Request, 4), bytes(Direction::Response, 1)],
        );
        let mut taken = take_from(&s);
        taken.sort_by_key(|(_, n)| *n);
        assert_eq!(
            taken,
            vec![bytes(Direction::Response, 1), bytes(Direction::Request, 7)]
        );
        assert!(take_from(&s).is_empty(), "a flush empties the batch");
    }

    #[test]
    fn a_burst_is_counted_at_once_then_batched_and_the_rate_refills() {
        let s = Arc::new((Mutex::new(Pending::default()), Condvar::new()));
        let one = [bytes(Direction::Request, 1)];
        for i in 0..DIRECT_BURST {
            assert_eq!(add_to(&s, NOW, one), Added::CountNow, "stream {i}");
        }
        assert_eq!(add_to(&s, NOW, one), Added::Batched, "past the burst");
        assert_eq!(take_from(&s), vec![bytes(Direction::Request, 1)]);
        // One stream's worth of time later, one more is counted at once.
        let later = NOW + 1000 / DIRECT_PER_SECOND;
        assert_eq!(add_to(&s, later, one), Added::CountNow);
        assert_eq!(add_to(&s, later, one), Added::Batched);
        // After a quiet spell the whole burst is back, and no more.
        let quiet = later + 3_600_000;
        for _ in 0..DIRECT_BURST {
            assert_eq!(add_to(&s, quiet, one), Added::CountNow);
        }
        assert_eq!(add_to(&s, quiet, one), Added::Batched);
    }

    #[test]
    fn the_thread_posts_one_flush_per_window_and_waits_for_it() {
        let s = shared();
        let (tx, rx) = mpsc::channel();
        let thread_shared = Arc::clone(&s);
        let thread = std::thread::spawn(move || {
            flush_loop(&thread_shared, |event| {
                let _ = tx.send((event, Instant::now()));
            })
        });
        let added = Instant::now();
        add_to(&s, NOW, [bytes(Direction::Request, 1)]);
        let (event, at) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(event, FLUSH_EVENT);
        assert!(at.duration_since(added) >= WINDOW, "it waits the window");
        // More increments before the flush ran: no second post.
        add_to(&s, NOW, [bytes(Direction::Request, 1)]);
        assert!(rx.recv_timeout(WINDOW * 5).is_err(), "one flush at a time");
        assert_eq!(take_from(&s), vec![bytes(Direction::Request, 2)]);
        // After the flush, the next increment asks for the next one.
        add_to(&s, NOW, [bytes(Direction::Response, 1)]);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap().0,
            FLUSH_EVENT
        );
        {
            let (lock, wake) = &*s;
            lock.lock().unwrap().stopped = true;
            wake.notify_all();
        }
        thread.join().unwrap();
    }

    #[test]
    fn a_stopped_batch_refuses_increments_so_the_caller_counts_them() {
        let s = shared();
        s.0.lock().unwrap().stopped = true;
        assert_eq!(
            add_to(&s, NOW, [bytes(Direction::Request, 1)]),
            Added::CountNow
        );
        assert!(take_from(&s).is_empty());
    }

    #[test]
    fn an_idle_thread_posts_nothing() {
        let s = shared();
        let (tx, rx) = mpsc::channel();
        let thread_shared = Arc::clone(&s);
        let thread = std::thread::spawn(move || {
            flush_loop(&thread_shared, |event| {
                let _ = tx.send(event);
            })
        });
        assert!(rx.recv_timeout(WINDOW * 10).is_err());
        {
            let (lock, wake) = &*s;
            lock.lock().unwrap().stopped = true;
            wake.notify_all();
        }
        thread.join().unwrap();
    }
}
