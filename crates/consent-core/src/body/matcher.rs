//! Compiled selectors: which categories a JSON member or element belongs to.
//!
//! `$..name` selectors (the common case) go into a name table checked once per key;
//! every other selector runs as a small NFA whose states move one step per nesting level.

use crate::categories::{CategoryIdx, CategorySet};

use super::selector::{Segment, Selector};

/// A position in one general selector: (selector, next step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    sel: u16,
    pos: u16,
}

/// What a child of a container is called: its decoded key or its index.
#[derive(Debug, Clone, Copy)]
pub enum ChildKey<'k> {
    /// Object member (decoded key bytes).
    Key(&'k [u8]),
    /// Array element.
    Index(usize),
}

#[derive(Debug, Clone)]
enum Step {
    Key(Box<[u8]>),
    AnyKey,
    AnyIndex,
    Index(usize),
    /// Zero or more levels (an epsilon loop).
    AnyDepth,
}

#[derive(Debug, Clone)]
struct General {
    steps: Vec<Step>,
    category: CategoryIdx,
}

/// Selectors of every category, compiled for matching.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    /// `$..name` selectors by name length: (lowercase name, categories).
    by_len: Vec<Vec<(Box<[u8]>, CategorySet)>>,
    general: Vec<General>,
    /// Every category that has at least one selector.
    pub categories: CategorySet,
}

impl Matcher {
    /// Adds one selector for `category`.
    pub fn add(&mut self, selector: &Selector, category: CategoryIdx) -> Result<(), String> {
        self.categories.insert(category);
        if let [Segment::Descend(name)] = selector.segments.as_slice() {
            let len = name.len();
            if self.by_len.len() <= len {
                self.by_len.resize(len + 1, Vec::new());
            }
            if let Some(bucket) = self.by_len.get_mut(len) {
                match bucket
                    .iter_mut()
                    .find(|(n, _)| n.as_ref() == name.as_bytes())
                {
                    Some((_, cats)) => cats.insert(category),
                    None => {
                        let mut cats = CategorySet::EMPTY;
                        cats.insert(category);
                        bucket.push((name.as_bytes().into(), cats));
                    }
                }
            }
            return Ok(());
        }
        let mut steps = Vec::new();
        for seg in &selector.segments {
            match seg {
                Segment::Key(n) => steps.push(Step::Key(n.as_bytes().into())),
                Segment::AnyKey => steps.push(Step::AnyKey),
                Segment::AnyIndex => steps.push(Step::AnyIndex),
                Segment::Index(i) => steps.push(Step::Index(*i)),
                Segment::Descend(n) => {
                    steps.push(Step::AnyDepth);
                    steps.push(Step::Key(n.as_bytes().into()));
                }
                Segment::DescendAny => steps.push(Step::AnyDepth),
            }
        }
        if self.general.len() >= usize::from(u16::MAX) || steps.len() >= usize::from(u16::MAX) {
            return Err("too many selectors".to_string());
        }
        self.general.push(General { steps, category });
        Ok(())
    }

    /// Whether any selector exists.
    pub fn is_empty(&self) -> bool {
        self.categories.is_empty()
    }

    /// States at the root of a document.
    pub fn root_states(&self, out: &mut Vec<State>) {
        for (sel, _) in self.general.iter().enumerate() {
            if let Ok(sel) = u16::try_from(sel) {
                let mut ignored = CategorySet::EMPTY;
                self.enter(State { sel, pos: 0 }, out, &mut ignored);
            }
        }
    }

    /// Moves `parent` states to a child; pushes the child's states to `out` and returns the
    /// categories the child itself belongs to.
    pub fn step(&self, parent: &[State], key: ChildKey<'_>, out: &mut Vec<State>) -> CategorySet {
        let mut matched = match key {
            ChildKey::Key(k) => self.name_categories(k),
            ChildKey::Index(_) => CategorySet::EMPTY,
        };
        for &state in parent {
            let Some(general) = self.general.get(usize::from(state.sel)) else {
                continue;
            };
            let Some(step) = general.steps.get(usize::from(state.pos)) else {
                continue;
            };
            let advance = match (step, key) {
                (Step::Key(name), ChildKey::Key(k)) => name.as_ref().eq_ignore_ascii_case(k),
                (Step::AnyKey, ChildKey::Key(_)) | (Step::AnyIndex, ChildKey::Index(_)) => true,
                (Step::Index(n), ChildKey::Index(i)) => *n == i,
                (Step::AnyDepth, _) => {
                    // Stay at this step one level deeper, with its epsilon closure; the step
                    // after it was already tried on this level when the state was entered.
                    self.enter(state, out, &mut matched);
                    false
                }
                _ => false,
            };
            if advance {
                self.enter(
                    State {
                        sel: state.sel,
                        pos: state.pos + 1,
                    },
                    out,
                    &mut matched,
                );
            }
        }
        matched
    }

    /// Adds `state` (and what it reaches without consuming a level) to `out`, or records a
    /// match when the selector is complete.
    fn enter(&self, state: State, out: &mut Vec<State>, matched: &mut CategorySet) {
        let Some(general) = self.general.get(usize::from(state.sel)) else {
            return;
        };
        match general.steps.get(usize::from(state.pos)) {
            None => matched.insert(general.category),
            Some(Step::AnyDepth) => {
                push_unique(out, state);
                self.enter(
                    State {
                        sel: state.sel,
                        pos: state.pos + 1,
                    },
                    out,
                    matched,
                );
            }
            Some(_) => push_unique(out, state),
        }
    }

    fn name_categories(&self, key: &[u8]) -> CategorySet {
        let Some(bucket) = self.by_len.get(key.len()) else {
            return CategorySet::EMPTY;
        };
        let mut cats = CategorySet::EMPTY;
        for (name, c) in bucket {
            if name.as_ref().eq_ignore_ascii_case(key) {
                cats = cats.union(*c);
            }
        }
        cats
    }
}

fn push_unique(out: &mut Vec<State>, state: State) {
    if !out.contains(&state) {
        out.push(state);
    }
}

#[cfg(test)]
mod tests {
    use super::super::selector::parse_selector;
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn matcher(sels: &[(&str, u8)]) -> Matcher {
        let mut m = Matcher::default();
        for (s, c) in sels {
            m.add(&parse_selector(s).unwrap(), CategoryIdx(*c)).unwrap();
        }
        m
    }

    /// Walks a path of keys/indexes from the root, returning the categories of the last child.
    fn walk(m: &Matcher, path: &[ChildKey<'_>]) -> CategorySet {
        let mut states = Vec::new();
        m.root_states(&mut states);
        let mut cats = CategorySet::EMPTY;
        for key in path {
            let mut next = Vec::new();
            cats = m.step(&states, *key, &mut next);
            states = next;
        }
        cats
    }

    #[test]
    fn exact_paths_match_only_there() {
        let m = matcher(&[("$.user.email", 1)]);
        assert!(
            walk(&m, &[ChildKey::Key(b"user"), ChildKey::Key(b"email")]).contains(CategoryIdx(1))
        );
        assert!(walk(&m, &[ChildKey::Key(b"email")]).is_empty());
        assert!(walk(
            &m,
            &[
                ChildKey::Key(b"x"),
                ChildKey::Key(b"user"),
                ChildKey::Key(b"email")
            ]
        )
        .is_empty());
    }

    #[test]
    fn array_wildcards_match_every_element() {
        let m = matcher(&[("$.transactions[*].merchant", 2)]);
        for i in [0, 7] {
            let path = [
                ChildKey::Key(b"transactions"),
                ChildKey::Index(i),
                ChildKey::Key(b"merchant"),
            ];
            assert!(walk(&m, &path).contains(CategoryIdx(2)));
        }
        let path = [
            ChildKey::Key(b"transactions"),
            ChildKey::Key(b"x"),
            ChildKey::Key(b"merchant"),
        ];
        assert!(walk(&m, &path).is_empty());
    }

    #[test]
    fn recursive_names_match_at_any_depth_case_insensitively() {
        let m = matcher(&[("$..gps", 3)]);
        assert!(walk(&m, &[ChildKey::Key(b"GPS")]).contains(CategoryIdx(3)));
        let deep = [
            ChildKey::Key(b"a"),
            ChildKey::Index(4),
            ChildKey::Key(b"b"),
            ChildKey::Key(b"Gps"),
        ];
        assert!(walk(&m, &deep).contains(CategoryIdx(3)));
    }

    #[test]
    fn recursive_descent_followed_by_more_steps() {
        let m = matcher(&[("$..location.lat", 4), ("$..*.lng", 5)]);
        let p = [
            ChildKey::Key(b"a"),
            ChildKey::Key(b"location"),
            ChildKey::Key(b"lat"),
        ];
        assert!(walk(&m, &p).contains(CategoryIdx(4)));
        assert!(
            walk(&m, &[ChildKey::Key(b"location"), ChildKey::Key(b"lat")]).contains(CategoryIdx(4))
        );
        assert!(walk(&m, &[ChildKey::Key(b"lat")]).is_empty());
        assert!(walk(
            &m,
            &[
                ChildKey::Key(b"q"),
                ChildKey::Index(0),
                ChildKey::Key(b"lng")
            ]
        )
        .contains(CategoryIdx(5)));
    }

    #[test]
    fn specific_indexes_match_only_that_element() {
        let m = matcher(&[("$.a[1]", 6)]);
        assert!(walk(&m, &[ChildKey::Key(b"a"), ChildKey::Index(1)]).contains(CategoryIdx(6)));
        assert!(walk(&m, &[ChildKey::Key(b"a"), ChildKey::Index(0)]).is_empty());
    }
}
