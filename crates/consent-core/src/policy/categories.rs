//! A fixed-size set of data categories, indexed by their position in the policy.

use crate::error::ConfigError;

/// Most categories one policy may declare (the width of [`CategorySet`]).
pub const MAX_CATEGORIES: usize = 128;

/// Index of a data category in the compiled policy's category list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CategoryIdx(pub u8);

impl CategoryIdx {
    /// Builds an index from a position in the category list, failing beyond [`MAX_CATEGORIES`].
    pub fn from_position(position: usize) -> Result<Self, ConfigError> {
        if position >= MAX_CATEGORIES {
            return Err(ConfigError::invalid(
                "policy.categories",
                format!("a policy may declare at most {MAX_CATEGORIES} categories"),
            ));
        }
        u8::try_from(position)
            .map(CategoryIdx)
            .map_err(|_| ConfigError::invalid("policy.categories", "too many categories"))
    }

    /// The position of this category in the policy's category list.
    pub fn position(self) -> usize {
        usize::from(self.0)
    }
}

/// A set of data categories as a bit set; copying it is free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CategorySet(u128);

impl CategorySet {
    /// The empty set.
    pub const EMPTY: CategorySet = CategorySet(0);

    /// A set holding every category of a policy with `count` categories.
    pub fn all(count: usize) -> Self {
        if count >= MAX_CATEGORIES {
            CategorySet(u128::MAX)
        } else {
            CategorySet((1u128 << count) - 1)
        }
    }

    /// The set as a 128-bit word (bit `i` is category `i`), for compact encodings.
    pub fn bits(self) -> u128 {
        self.0
    }

    /// A set from its 128-bit word.
    pub fn from_bits(bits: u128) -> Self {
        CategorySet(bits)
    }

    /// Adds one category.
    pub fn insert(&mut self, category: CategoryIdx) {
        self.0 |= 1u128 << category.0;
    }

    /// Whether the set holds `category`.
    pub fn contains(self, category: CategoryIdx) -> bool {
        self.0 & (1u128 << category.0) != 0
    }

    /// Categories in both sets.
    pub fn intersection(self, other: CategorySet) -> CategorySet {
        CategorySet(self.0 & other.0)
    }

    /// Categories in either set.
    pub fn union(self, other: CategorySet) -> CategorySet {
        CategorySet(self.0 | other.0)
    }

    /// Categories of `self` that are not in `other`.
    pub fn difference(self, other: CategorySet) -> CategorySet {
        CategorySet(self.0 & !other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether the two sets share a category.
    pub fn intersects(self, other: CategorySet) -> bool {
        self.0 & other.0 != 0
    }

    /// Number of categories in the set.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The categories in ascending index order.
    pub fn iter(self) -> impl Iterator<Item = CategoryIdx> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let idx = bits.trailing_zeros();
            bits &= bits - 1;
            u8::try_from(idx).ok().map(CategoryIdx)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn set_operations_follow_set_algebra() {
        let mut a = CategorySet::EMPTY;
        a.insert(CategoryIdx(1));
        a.insert(CategoryIdx(127));
        let mut b = CategorySet::EMPTY;
        b.insert(CategoryIdx(1));
        b.insert(CategoryIdx(5));
        assert_eq!(
            a.intersection(b).iter().collect::<Vec<_>>(),
            vec![CategoryIdx(1)]
        );
        assert_eq!(a.union(b).len(), 3);
        assert_eq!(
            a.difference(b).iter().collect::<Vec<_>>(),
            vec![CategoryIdx(127)]
        );
        assert!(a.intersects(b));
        assert!(!a.difference(b).intersects(b));
    }

    #[test]
    fn all_covers_exactly_the_declared_categories() {
        assert_eq!(CategorySet::all(3).len(), 3);
        assert!(!CategorySet::all(3).contains(CategoryIdx(3)));
        assert_eq!(CategorySet::all(MAX_CATEGORIES).len(), MAX_CATEGORIES);
    }

    #[test]
    fn index_beyond_the_limit_is_a_config_error() {
        assert!(CategoryIdx::from_position(MAX_CATEGORIES).is_err());
        assert!(CategoryIdx::from_position(MAX_CATEGORIES - 1).is_ok());
    }
}
