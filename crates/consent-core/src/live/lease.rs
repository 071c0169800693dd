//! The fetcher lease: with `snapshot.fetcher: worker_lease` every worker VM of the filter
//! may fetch, and a lease in Envoy shared data makes exactly one of them do it. The holder
//! renews it on every tick; when it stops (its VM is gone, or a configuration reload made
//! a new root context), the lease expires and another worker takes over.
//!
//! Writes go through shared data's compare-and-swap, so two workers can never both think
//! they won the same round.

/// Shared-data key of the counter that hands out holder ids (the lease itself is in the
/// snapshot's namespace, [`crate::live::shared_keys::SharedKeys::lease`]).
pub const LEASE_SEQ_KEY: &str = "consent/fetcher-lease-seq";

/// The lease as stored: holder id and expiry (ms since the epoch), 16 bytes little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Id of the holding root context.
    pub holder: u64,
    /// When it lapses unless renewed.
    pub expires_ms: u64,
}

impl Lease {
    /// The stored form.
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        let (a, b) = out.split_at_mut(8);
        a.copy_from_slice(&self.holder.to_le_bytes());
        b.copy_from_slice(&self.expires_ms.to_le_bytes());
        out
    }

    /// Reads the stored form; anything else is no lease.
    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        let (a, b) = bytes.split_first_chunk::<8>()?;
        let b = b.first_chunk::<8>().filter(|_| bytes.len() == 16)?;
        Some(Lease {
            holder: u64::from_le_bytes(*a),
            expires_ms: u64::from_le_bytes(*b),
        })
    }
}

/// What `me` should write to hold the lease at `now_ms`, given the stored `current` one:
/// `Some(lease)` to claim or renew it (with compare-and-swap), `None` when another holder's
/// lease is still running.
pub fn claim(current: Option<Lease>, me: u64, now_ms: u64, ttl_ms: u64) -> Option<Lease> {
    match current {
        Some(l) if l.holder != me && l.expires_ms > now_ms => None,
        _ => Some(Lease {
            holder: me,
            expires_ms: now_ms.saturating_add(ttl_ms),
        }),
    }
}

/// Next holder id from the stored counter (8 bytes little-endian; absent is 0).
pub fn next_holder_id(stored: Option<&[u8]>) -> u64 {
    stored
        .and_then(|b| b.first_chunk::<8>().filter(|_| b.len() == 8))
        .map_or(0, |b| u64::from_le_bytes(*b))
        .wrapping_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_free_or_expired_lease_is_claimed_and_a_running_one_is_respected() {
        assert_eq!(
            claim(None, 1, 100, 50),
            Some(Lease {
                holder: 1,
                expires_ms: 150
            })
        );
        let held = Lease {
            holder: 2,
            expires_ms: 150,
        };
        assert_eq!(claim(Some(held), 1, 149, 50), None);
        assert_eq!(
            claim(Some(held), 1, 150, 50),
            Some(Lease {
                holder: 1,
                expires_ms: 200
            })
        );
        assert_eq!(
            claim(Some(held), 2, 120, 50),
            Some(Lease {
                holder: 2,
                expires_ms: 170
            }),
            "the holder renews"
        );
    }

    #[test]
    fn leases_and_ids_round_trip_and_garbage_is_no_lease() {
        let l = Lease {
            holder: 7,
            expires_ms: u64::MAX,
        };
        assert_eq!(Lease::decode(&l.encode()), Some(l));
        assert_eq!(Lease::decode(b"short"), None);
        assert_eq!(Lease::decode(&[0u8; 17]), None);
        assert_eq!(next_holder_id(None), 1);
        assert_eq!(next_holder_id(Some(&41u64.to_le_bytes())), 42);
        assert_eq!(next_holder_id(Some(b"bad")), 1);
    }
}
