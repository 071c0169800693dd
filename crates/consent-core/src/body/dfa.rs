//! A lazily built DFA over the selector NFA: each distinct set of NFA states gets an id,
//! and each (set, key class) transition is computed once and then looked up. Bodies repeat
//! their shape (every transaction looks alike), so after the first few elements a step
//! costs a name lookup and a short scan.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::policy::categories::CategorySet;
use crate::policy::Fnv1a;

use super::matcher::{ChildKey, Matcher, NfaKey, State};

/// Transitions kept before the cache is cleared at the start of the next body.
const MAX_TRANSITIONS: usize = 65_536;

/// What distinguishes children for the general selectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyClass {
    /// A name some `Key` step waits for.
    Name(u16),
    /// Any other name.
    OtherName,
    /// An index some `[n]` step waits for.
    Index(usize),
    /// Any other index.
    OtherIndex,
}

/// Slots of the per-set memo of short keys.
const MEMO_SLOTS: usize = 64;

/// A remembered step on one exact short key (at most eight bytes, as a word).
#[derive(Debug, Clone, Copy, Default)]
struct Memo {
    head: u64,
    /// Key length + 1; 0 marks an empty slot.
    len: u8,
    next: u32,
    categories: CategorySet,
}

#[derive(Debug, Clone)]
struct SetInfo {
    states: Box<[State]>,
    index_constants: Vec<usize>,
    transitions: Vec<(KeyClass, u32, CategorySet)>,
    /// Exact short keys seen from this set: bodies repeat their keys, so most steps end here.
    memo: [Memo; MEMO_SLOTS],
    /// The step to any array element, once taken, when no `[n]` step waits here (every
    /// index is then alike).
    any_index: Option<(u32, CategorySet)>,
}

#[inline]
fn memo_slot(head: u64) -> usize {
    ((head ^ (head >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize & (MEMO_SLOTS - 1)
}

/// The cache.
#[derive(Debug, Clone, Default)]
pub struct Dfa {
    sets: Vec<SetInfo>,
    /// Set ids by states; FNV-hashed (the states come from the policy's selectors, and the
    /// map is bounded by `MAX_TRANSITIONS`).
    ids: HashMap<Box<[State]>, u32, BuildHasherDefault<Fnv1a>>,
    transitions: usize,
    /// The id of the root state set, once interned (it is the same for every body).
    root: Option<u32>,
}

impl Dfa {
    /// Clears the cache when it has grown past its bound (call between bodies only).
    pub fn trim(&mut self) {
        if self.transitions > MAX_TRANSITIONS || self.sets.len() > MAX_TRANSITIONS {
            *self = Dfa::default();
        }
    }

    /// The root set's id, if interned since the last clear.
    pub fn root(&self) -> Option<u32> {
        self.root
    }

    /// Remembers the root set's id.
    pub fn set_root(&mut self, id: u32) {
        self.root = Some(id);
    }

    /// The id of a state set (sorted and deduplicated here).
    pub fn intern(&mut self, matcher: &Matcher, mut states: Vec<State>) -> u32 {
        states.sort_unstable();
        states.dedup();
        if let Some(id) = self.ids.get(states.as_slice()) {
            return *id;
        }
        let id = u32::try_from(self.sets.len()).unwrap_or(u32::MAX);
        let states: Box<[State]> = states.into_boxed_slice();
        self.sets.push(SetInfo {
            index_constants: matcher.index_constants(&states),
            states: states.clone(),
            transitions: Vec::new(),
            memo: [Memo::default(); MEMO_SLOTS],
            any_index: None,
        });
        self.ids.insert(states, id);
        id
    }

    /// The remembered step from set `from` on the short key (at most eight bytes) whose
    /// head word is `head` and length `len`, if this set has seen it.
    #[inline(always)]
    pub fn memo(&self, from: u32, head: u64, len: usize) -> Option<(u32, CategorySet)> {
        let m = self.sets.get(from as usize)?.memo.get(memo_slot(head))?;
        (usize::from(m.len) == len + 1 && m.head == head).then_some((m.next, m.categories))
    }

    /// One step from set `from` on `key`. A short key seen before from this set is one
    /// memo compare, inlined into the caller; anything else goes out of line.
    #[inline]
    pub fn step(&mut self, matcher: &Matcher, from: u32, key: ChildKey<'_>) -> (u32, CategorySet) {
        if let ChildKey::Index(_) = key {
            if let Some(known) = self.sets.get(from as usize).and_then(|set| set.any_index) {
                return known;
            }
        }
        if let ChildKey::KeyWithHead(k, head) = key {
            if k.len() <= 8 {
                let len = k.len() as u8 + 1;
                let memo = self
                    .sets
                    .get(from as usize)
                    .and_then(|set| set.memo.get(memo_slot(head)));
                if let Some(m) = memo {
                    if m.len == len && m.head == head {
                        return (m.next, m.categories);
                    }
                }
            }
        }
        self.step_memo_miss(matcher, from, key)
    }

    /// [`Dfa::step`] past the memo: the transition table (or the NFA), then the memo is
    /// filled.
    #[inline(never)]
    fn step_memo_miss(
        &mut self,
        matcher: &Matcher,
        from: u32,
        key: ChildKey<'_>,
    ) -> (u32, CategorySet) {
        let short = match key {
            ChildKey::KeyWithHead(k, head) if k.len() <= 8 => Some((head, k.len() as u8 + 1)),
            _ => None,
        };
        let (next, categories) = self.step_slow(matcher, from, key);
        if let (ChildKey::Index(_), Some(set)) = (key, self.sets.get_mut(from as usize)) {
            if set.index_constants.is_empty() {
                set.any_index = Some((next, categories));
            }
        }
        if let (Some((head, len)), Some(set)) = (short, self.sets.get_mut(from as usize)) {
            if let Some(m) = set.memo.get_mut(memo_slot(head)) {
                *m = Memo {
                    head,
                    len,
                    next,
                    categories,
                };
            }
        }
        (next, categories)
    }

    fn step_slow(&mut self, matcher: &Matcher, from: u32, key: ChildKey<'_>) -> (u32, CategorySet) {
        let (name_categories, name_id) = matcher.classify(key);
        let Some(set) = self.sets.get(from as usize) else {
            return (from, name_categories);
        };
        let class = match key {
            ChildKey::Key(_) | ChildKey::KeyWithHead(..) => {
                name_id.map_or(KeyClass::OtherName, KeyClass::Name)
            }
            ChildKey::Index(i) if set.index_constants.contains(&i) => KeyClass::Index(i),
            ChildKey::Index(_) => KeyClass::OtherIndex,
        };
        if let Some((_, next, categories)) = set.transitions.iter().find(|t| t.0 == class) {
            return (*next, categories.union(name_categories));
        }
        let parent = set.states.clone();
        let mut out = Vec::new();
        matcher.carry(&parent, &mut out);
        let nfa_key = match class {
            KeyClass::Name(id) => NfaKey::Name(Some(id)),
            KeyClass::OtherName => NfaKey::Name(None),
            KeyClass::Index(i) => NfaKey::Index(i),
            KeyClass::OtherIndex => NfaKey::Index(usize::MAX),
        };
        let categories = matcher.advance_general(&parent, nfa_key, &mut out);
        let next = self.intern(matcher, out);
        if let Some(set) = self.sets.get_mut(from as usize) {
            set.transitions.push((class, next, categories));
            self.transitions += 1;
        }
        (next, categories.union(name_categories))
    }
}

#[cfg(test)]
mod tests {
    use super::super::selector::parse_selector;
    use super::*;
    use crate::policy::categories::CategoryIdx;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The DFA walk must give the same categories as the NFA walk on every path.
    #[test]
    fn dfa_steps_agree_with_nfa_steps() {
        let mut m = Matcher::default();
        for (i, s) in ["$..gps", "$.a[*].b", "$..x.y", "$.a[1]", "$.*.z", "$..*.w"]
            .iter()
            .enumerate()
        {
            m.add(
                &parse_selector(s).unwrap(),
                CategoryIdx(u8::try_from(i).unwrap()),
            )
            .unwrap();
        }
        let names: [&[u8]; 9] = [b"a", b"b", b"x", b"y", b"z", b"w", b"gps", b"GPS", b"other"];
        let mut paths: Vec<Vec<ChildKey<'_>>> = vec![vec![]];
        for _ in 0..4 {
            let mut next = Vec::new();
            for p in &paths {
                for n in names {
                    let mut q = p.clone();
                    q.push(ChildKey::Key(n));
                    next.push(q);
                }
                for i in [0, 1, 2] {
                    let mut q = p.clone();
                    q.push(ChildKey::Index(i));
                    next.push(q);
                }
            }
            paths.extend(next.iter().cloned());
            paths.retain(|p| p.len() <= 4);
            if paths.len() > 30_000 {
                break;
            }
        }
        for path in &paths {
            let mut states = Vec::new();
            m.root_states(&mut states);
            let mut id = m.root_id();
            for key in path {
                let mut next = Vec::new();
                let nfa = m.step(&states, *key, &mut next);
                states = next;
                let (next_id, dfa) = m.step_id(id, *key);
                id = next_id;
                assert_eq!(nfa, dfa, "path {path:?}");
            }
        }
    }
}
