//! Separated lists edited in place: a query string or form body split on `&` (and `;`), a
//! `Cookie` header split on `;`. Pieces are cut out or replaced and every other byte, the
//! separators included, stays as it was.

use std::ops::Range;

/// The byte ranges of the pieces of `input` between separators (empty pieces included, so
/// `a&&b` has three).
pub(crate) fn split(input: &[u8], is_separator: impl Fn(u8) -> bool) -> Vec<Range<usize>> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, b) in input.iter().enumerate() {
        if is_separator(*b) {
            pieces.push(start..i);
            start = i + 1;
        }
    }
    pieces.push(start..input.len());
    pieces
}

/// What becomes of one piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Edit {
    /// Kept as it was.
    Keep,
    /// Cut out, with one separator next to it.
    Drop,
    /// Replaced by these bytes.
    Replace(Vec<u8>),
}

/// Rebuilds `input` from its `pieces` (as [`split`] gave them) and one edit per piece. A
/// kept piece is preceded by the separator that preceded it in the input, except the first
/// piece kept, so that removing the first, a middle or the last piece leaves no stray
/// separator and keeps the others' separators as they were.
pub(crate) fn rebuild(input: &[u8], pieces: &[Range<usize>], edits: &[Edit]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut first = true;
    let mut previous_end = None;
    for (piece, edit) in pieces.iter().zip(edits) {
        let separator_start = previous_end;
        previous_end = Some(piece.end);
        let bytes = match edit {
            Edit::Drop => continue,
            Edit::Keep => input.get(piece.clone()).unwrap_or_default(),
            Edit::Replace(bytes) => bytes.as_slice(),
        };
        if !first {
            if let Some(at) = separator_start {
                out.extend_from_slice(input.get(at..piece.start).unwrap_or_default());
            }
        }
        first = false;
        out.extend_from_slice(bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn edit(input: &str, drop: &[usize]) -> String {
        let pieces = split(input.as_bytes(), |b| b == b'&' || b == b';');
        let edits: Vec<Edit> = (0..pieces.len())
            .map(|i| {
                if drop.contains(&i) {
                    Edit::Drop
                } else {
                    Edit::Keep
                }
            })
            .collect();
        String::from_utf8(rebuild(input.as_bytes(), &pieces, &edits)).unwrap()
    }

    #[test]
    fn dropping_first_middle_or_last_keeps_the_other_separators() {
        assert_eq!(edit("a=1;b=2&c=3", &[0]), "b=2&c=3");
        assert_eq!(edit("a=1;b=2&c=3", &[1]), "a=1&c=3");
        assert_eq!(edit("a=1;b=2&c=3", &[2]), "a=1;b=2");
        assert_eq!(edit("a=1;b=2&c=3", &[0, 1, 2]), "");
        assert_eq!(edit("a&&b", &[]), "a&&b");
        assert_eq!(edit("a&&b", &[2]), "a&");
    }

    #[test]
    fn replaced_pieces_keep_their_place() {
        let input = b"a=1&b=2&c=3";
        let pieces = split(input, |b| b == b'&');
        let edits = [Edit::Keep, Edit::Replace(b"b=x".to_vec()), Edit::Drop];
        assert_eq!(rebuild(input, &pieces, &edits), b"a=1&b=x");
    }
}
