//! Maps from the policy's names (purposes, parties, categories, header and query names) to
//! their positions, hashed with FNV-1a instead of SipHash. The maps are built once from the
//! operator's policy and only read on the request path, so a request cannot grow them:
//! keyed hashing, which guards maps that untrusted input fills, buys nothing here and cost about
//! a seventh of the header path's instructions (callgrind, `examples/request_path.rs`). A request
//! choosing names that collide only makes its own lookup compare a few more entries.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A read-mostly map keyed by policy names.
pub type NameMap<V> = HashMap<String, V, BuildHasherDefault<Fnv1a>>;

/// The 64-bit FNV-1a hash.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// A quick "certainly not a key" test in front of a [`NameMap`]: a bit per name length
/// (lengths of 63 and more share one) and a bit per last byte of the names inserted. Most
/// of a request's headers (`:path`, `user-agent`, `accept`, ...) fail it, so they skip the
/// hash and the probe; a name that passes is looked up as before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NameFilter {
    lengths: u64,
    last: [u64; 4],
}

impl NameFilter {
    fn bits(name: &[u8]) -> (u64, usize, u64) {
        let len = 1u64 << name.len().min(63);
        let last = name.last().copied().unwrap_or(0);
        (len, usize::from(last >> 6), 1u64 << (last & 63))
    }

    /// Lets `name` through from now on.
    pub fn insert(&mut self, name: &str) {
        let (len, word, bit) = Self::bits(name.as_bytes());
        self.lengths |= len;
        if let Some(w) = self.last.get_mut(word) {
            *w |= bit;
        }
    }

    /// False when `name` was certainly never inserted.
    pub fn may_contain(&self, name: &str) -> bool {
        let (len, word, bit) = Self::bits(name.as_bytes());
        self.lengths & len != 0 && self.last.get(word).is_some_and(|w| w & bit != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn names_are_found_and_strangers_are_not() {
        let mut map: NameMap<u8> = NameMap::default();
        map.insert("x-geo-position".to_string(), 1);
        map.insert("x-device-id".to_string(), 2);
        assert_eq!(map.get("x-geo-position"), Some(&1));
        assert_eq!(map.get("x-device-id"), Some(&2));
        assert_eq!(map.get("x-device-i"), None);
        assert_eq!(map.get(""), None);
    }

    #[test]
    fn the_filter_lets_every_inserted_name_through_and_stops_most_others() {
        let mut filter = NameFilter::default();
        assert!(!filter.may_contain("x-device-id") && !filter.may_contain(""));
        let names = [
            "x-device-id",
            "x-user-email",
            "",
            "x-a-name-longer-than-sixty-three-bytes-which-shares-the-last-length-bit",
        ];
        for name in names {
            filter.insert(name);
        }
        for name in names {
            assert!(filter.may_contain(name), "{name}");
        }
        for stranger in [
            ":path",
            "user-agent",
            "accept",
            "x-user-emaix",
            "x-device-ie",
        ] {
            assert!(!filter.may_contain(stranger), "{stranger}");
        }
        assert!(
            filter.may_contain("x-other-idd"),
            "same length and last byte as x-device-id: looked up in the map"
        );
    }

    #[test]
    fn fnv1a_matches_the_published_test_vector() {
        let mut h = Fnv1a::default();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
    }
}
