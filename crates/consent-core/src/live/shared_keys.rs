//! Where a live snapshot lives in Envoy shared data. Every policy, subject keying and
//! bucket layout gets its own namespace, `consent/<id>/...` (buckets under the shorter
//! `c/<id>/...`: they are many, and a short key costs Envoy no allocation), so that two configurations
//! that read records differently never share buckets: during a configuration reload that
//! changes the policy, the old filter keeps reading the old snapshot while the new one is
//! fetched into a new namespace, and neither ever decodes the other's records.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::live::subject_key::{to_hex, SubjectKeying};

/// The shared-data keys of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedKeys {
    prefix: String,
    /// `c/<id>`: the prefix of bucket keys, short (see [`SharedKeys::bucket`]).
    short: String,
    meta: String,
    changes: String,
}

/// The layout of what a namespace holds, hashed into its id. v2: buckets under `c/<id>/<n>`,
/// the change record, epochs and generations in the metadata. A filter of another layout in
/// the same Envoy (an older `.wasm` during an update) gets another namespace, so it never
/// takes a bucket key this layout does not write for a bucket that holds nobody: it finds no
/// metadata there and applies `snapshot.failure_mode` until its own fetcher publishes.
const LAYOUT: &[u8] = b"consent-filter shared keys v2\0";

/// The longest string Envoy's C++ standard library (libc++) keeps inline: a shared-data
/// key up to this long costs no allocation of its own.
pub const INLINE_KEY_BYTES: usize = 22;

impl SharedKeys {
    /// The namespace of a policy fingerprint, a subject keying and a bucket layout. The
    /// HMAC secret enters only through a hash.
    pub fn new(policy_fingerprint: [u8; 8], keying: &SubjectKeying, bucket_bits: u8) -> Self {
        let mut h = Sha256::new();
        h.update(LAYOUT);
        h.update(policy_fingerprint);
        match keying {
            SubjectKeying::Plain => h.update(b"plain"),
            SubjectKeying::Hmac(secret) => {
                h.update(b"hmac");
                h.update(Sha256::digest(secret));
            }
        }
        h.update([bucket_bits]);
        let digest = h.finalize();
        let id: Vec<u8> = digest.iter().take(8).copied().collect();
        let prefix = format!("consent/{}", to_hex(&id));
        let short = format!("c/{}", URL_SAFE_NO_PAD.encode(&id));
        SharedKeys {
            meta: format!("{prefix}/meta"),
            changes: format!("{prefix}/changes"),
            prefix,
            short,
        }
    }

    /// The snapshot metadata key, without allocating (read on the request path).
    pub fn meta_key(&self) -> &str {
        &self.meta
    }

    /// Which buckets the last publishes changed (`live::changes`).
    pub fn changes_key(&self) -> &str {
        &self.changes
    }

    /// One bucket (built without `format!`: it is on the path of requests whose bucket
    /// a worker has not copied).
    /// `c/<id in base64url>/<n>`: at most [`INLINE_KEY_BYTES`] long for every bucket of a
    /// 20-bit layout, so Envoy stores each of the 65,536 (or more) keys without an
    /// allocation (48 bytes each).
    pub fn bucket(&self, bucket: u32) -> String {
        let mut out = String::with_capacity(self.short.len() + 11);
        out.push_str(&self.short);
        out.push('/');
        crate::decimal::push_decimal(&mut out, u64::from(bucket));
        out
    }

    /// The fetcher lease (worker-lease mode).
    pub fn lease(&self) -> String {
        format!("{}/lease", self.prefix)
    }

    /// The namespace prefix, for logs.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The prefix of the namespace's bucket keys (`c/<id>`): a host that forgets a
    /// namespace removes the keys under both prefixes.
    pub fn bucket_prefix(&self) -> &str {
        &self.short
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn bucket_keys_read_as_format_would_write_them_and_fit_inline() {
        let keys = SharedKeys::new([1; 8], &SubjectKeying::Plain, 20);
        for n in [0u32, 7, 10, 65_535, (1 << 20) - 1, u32::MAX] {
            assert_eq!(keys.bucket(n), format!("{}/{n}", keys.short));
        }
        assert!(keys.bucket((1 << 20) - 1).len() <= INLINE_KEY_BYTES);
        assert_eq!(keys.short.len(), 13);
        assert!(keys.short.bytes().all(|b| b.is_ascii_graphic()));
    }

    #[test]
    fn policy_keying_and_layout_each_get_their_own_namespace() {
        let a = SharedKeys::new([1; 8], &SubjectKeying::Plain, 16);
        assert_eq!(a, SharedKeys::new([1; 8], &SubjectKeying::Plain, 16));
        let others = [
            SharedKeys::new([2; 8], &SubjectKeying::Plain, 16),
            SharedKeys::new(
                [1; 8],
                &SubjectKeying::Hmac(b"k1-0123456789abcdef".to_vec()),
                16,
            ),
            SharedKeys::new(
                [1; 8],
                &SubjectKeying::Hmac(b"k2-0123456789abcdef".to_vec()),
                16,
            ),
            SharedKeys::new([1; 8], &SubjectKeying::Plain, 12),
        ];
        for (i, o) in others.iter().enumerate() {
            assert_ne!(&a, o, "{i}");
        }
        assert!(a.meta_key().starts_with("consent/") && a.meta_key().ends_with("/meta"));
        assert!(a.bucket(7).starts_with("c/") && a.bucket(7).ends_with("/7"));
        assert!(others.iter().all(|o| o.bucket(7) != a.bucket(7)));
        assert!(!others[1].prefix().contains("k1"), "the secret never shows");
    }

    #[test]
    fn the_layout_before_change_records_gets_another_namespace() {
        // The namespace of the same settings under layout v1 (buckets at consent/<id>/b/<n>).
        let mut h = Sha256::new();
        h.update(b"consent-filter shared keys v1\0");
        h.update([1u8; 8]);
        h.update(b"plain");
        h.update([16u8]);
        let v1: Vec<u8> = h.finalize().iter().take(8).copied().collect();
        let v2 = SharedKeys::new([1; 8], &SubjectKeying::Plain, 16);
        assert_ne!(v2.prefix(), format!("consent/{}", to_hex(&v1)));
        assert!(!v2.bucket_prefix().contains(&URL_SAFE_NO_PAD.encode(&v1)));
    }
}
