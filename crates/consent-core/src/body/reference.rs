//! The plain approach, kept as a baseline and a test oracle: parse the body into a
//! `serde_json::Value`, edit the tree, serialise it again. Same selectors and actions as
//! the streaming redactor (without multi-subject elements); slower and it reorders keys.

use serde_json::Value;

use crate::policy::categories::CategorySet;

use super::matcher::{ChildKey, State};
use super::redactor::{BodyRules, FieldAction};
use super::transform::{coarsen, pseudonymise};

/// Parses, redacts and re-serialises `input`; `None` when it is not JSON or a `block`
/// category is present.
pub fn redact_value(
    input: &[u8],
    rules: &BodyRules<'_>,
    forbidden: CategorySet,
) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(input).ok()?;
    let mut states = Vec::new();
    rules.matcher.root_states(&mut states);
    walk(&mut value, &states, rules, forbidden)?;
    serde_json::to_vec(&value).ok()
}

fn action_for(
    rules: &BodyRules<'_>,
    hit: CategorySet,
) -> Option<(FieldAction, Option<crate::policy::categories::CategoryIdx>)> {
    let mut chosen: Option<(FieldAction, Option<crate::policy::categories::CategoryIdx>)> = None;
    for c in hit.iter() {
        let a = rules
            .actions
            .iter()
            .find(|(x, _)| *x == c)
            .map(|(_, a)| *a)
            .unwrap_or(FieldAction::Remove);
        match a {
            FieldAction::Block => return None,
            FieldAction::Remove => chosen = Some((FieldAction::Remove, None)),
            other => match &chosen {
                None => chosen = Some((other, Some(c))),
                Some((prev, _)) if *prev != other => chosen = Some((FieldAction::Remove, None)),
                Some(_) => {}
            },
        }
        if matches!(chosen, Some((FieldAction::Remove, _))) {
            break;
        }
    }
    chosen
}

/// Returns `None` when a `block` category is present.
fn walk(
    value: &mut Value,
    states: &[State],
    rules: &BodyRules<'_>,
    forbidden: CategorySet,
) -> Option<()> {
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let mut child = Vec::new();
                let hit = rules
                    .matcher
                    .step(states, ChildKey::Key(key.as_bytes()), &mut child)
                    .intersection(forbidden);
                if hit.is_empty() {
                    if let Some(v) = map.get_mut(&key) {
                        walk(v, &child, rules, forbidden)?;
                    }
                    continue;
                }
                let replacement = apply(map.get(&key)?, rules, hit)?;
                match replacement {
                    Some(v) => {
                        map.insert(key, v);
                    }
                    None => {
                        map.remove(&key);
                    }
                }
            }
        }
        Value::Array(items) => {
            let mut kept = Vec::with_capacity(items.len());
            for (i, mut item) in std::mem::take(items).into_iter().enumerate() {
                let mut child = Vec::new();
                let hit = rules
                    .matcher
                    .step(states, ChildKey::Index(i), &mut child)
                    .intersection(forbidden);
                if hit.is_empty() {
                    walk(&mut item, &child, rules, forbidden)?;
                    kept.push(item);
                } else if let Some(v) = apply(&item, rules, hit)? {
                    kept.push(v);
                }
            }
            *items = kept;
        }
        _ => {}
    }
    Some(())
}

/// `None`: block. `Some(None)`: remove. `Some(Some(v))`: replace.
fn apply(value: &Value, rules: &BodyRules<'_>, hit: CategorySet) -> Option<Option<Value>> {
    let (action, category) = action_for(rules, hit)?;
    let raw = serde_json::to_vec(value).ok()?;
    let bytes = match (action, category) {
        (FieldAction::Coarsen, Some(c)) => rules
            .coarsen
            .get(c.position())
            .and_then(Option::as_ref)
            .and_then(|spec| coarsen(spec, &raw, rules.today)),
        (FieldAction::Pseudonymise, Some(_)) => rules.key.and_then(|k| pseudonymise(k, &raw)),
        _ => None,
    };
    Some(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
}
