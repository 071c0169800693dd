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
    fn fnv1a_matches_the_published_test_vector() {
        let mut h = Fnv1a::default();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
    }
}
