//! One root context has one tick period, and up to two things that tick: the fetcher (a
//! bootstrap singleton, or a worker holding the lease) at the period its machine asks for,
//! and the worker's copy of the buckets at [`REPLICA_TICK_MS`](crate::live::REPLICA_TICK_MS).
//! The host ticks at the shorter period; each is due when its own period has (about)
//! passed.

/// The tick periods of one root context and when each last ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ticks {
    fetcher_ms: Option<u64>,
    replica_ms: Option<u64>,
    last_fetcher: Option<u64>,
    last_replica: Option<u64>,
}

/// What is due on one tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Due {
    /// The fetcher (and its lease check).
    pub fetcher: bool,
    /// The worker's copy.
    pub replica: bool,
}

impl Ticks {
    /// The fetcher asks for `period_ms`; returns the host's tick period.
    pub fn set_fetcher(&mut self, period_ms: u64) -> u64 {
        self.fetcher_ms = Some(period_ms.max(1));
        self.period().unwrap_or(period_ms)
    }

    /// The worker's copy starts ticking every `period_ms`; returns the host's tick period.
    pub fn set_replica(&mut self, period_ms: u64) -> u64 {
        self.replica_ms = Some(period_ms.max(1));
        self.period().unwrap_or(period_ms)
    }

    /// The host's tick period: the shorter of the two.
    pub fn period(&self) -> Option<u64> {
        match (self.fetcher_ms, self.replica_ms) {
            (Some(f), Some(r)) => Some(f.min(r)),
            (f, r) => f.or(r),
        }
    }

    /// A tick at `now_ms`: what is due (a period counts as passed within half a host
    /// period, so that a host tick a little early does not skip it).
    pub fn due(&mut self, now_ms: u64) -> Due {
        let slack = self.period().unwrap_or(0) / 2;
        let run = |period: Option<u64>, last: &mut Option<u64>| {
            let Some(period) = period else {
                return false;
            };
            let due = last.is_none_or(|l| now_ms.saturating_sub(l) + slack >= period);
            if due {
                *last = Some(now_ms);
            }
            due
        };
        Due {
            fetcher: run(self.fetcher_ms, &mut self.last_fetcher),
            replica: run(self.replica_ms, &mut self.last_replica),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn each_runs_at_its_own_period_on_the_shorter_tick() {
        let mut t = Ticks::default();
        assert_eq!(t.period(), None);
        assert_eq!(t.due(0), Due::default());
        assert_eq!(t.set_fetcher(1_000), 1_000);
        assert_eq!(t.set_replica(50), 50);
        assert_eq!(
            t.due(0),
            Due {
                fetcher: true,
                replica: true
            }
        );
        let mut fetcher_ticks = 0;
        let mut now = 0;
        for _ in 0..100 {
            // The host ticks every 50 ms, give or take a millisecond.
            now += if now % 3 == 0 { 49 } else { 51 };
            let due = t.due(now);
            assert!(due.replica, "at {now}");
            fetcher_ticks += usize::from(due.fetcher);
        }
        assert_eq!(fetcher_ticks, 5, "every second over 5 s");
        assert_eq!(t.set_fetcher(20), 20, "the fetcher's fast first ticks");
    }

    #[test]
    fn alone_each_runs_on_every_tick() {
        let mut t = Ticks::default();
        t.set_fetcher(1_000);
        assert!(
            (1..10).all(|i| t.due(i * 990).fetcher),
            "a tick a little early still runs"
        );
        let mut r = Ticks::default();
        r.set_replica(50);
        assert!((1..10).all(|i| r.due(i * 45)
            == Due {
                fetcher: false,
                replica: true
            }));
    }
}
