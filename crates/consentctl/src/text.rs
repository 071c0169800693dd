//! Plain-text layout: display width (Japanese characters count double) and aligned
//! columns.

/// Whether a terminal shows `c` two columns wide: Hangul, CJK punctuation, kana and
/// ideographs, full-width forms. Characters of ambiguous width (`①`, `§`) count 1, as in
/// most locales. Simple on purpose; close enough for tables.
fn is_wide(c: char) -> bool {
    matches!(
        u32::from(c),
        0x1100..=0x115F
            | 0x2E80..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6
            | 0x20000..=0x3FFFD
    )
}

/// Display width of `text` in a terminal (see [`is_wide`]).
pub fn width(text: &str) -> usize {
    text.chars().map(|c| if is_wide(c) { 2 } else { 1 }).sum()
}

/// `text` followed by spaces up to `columns` display columns.
pub fn pad(text: &str, columns: usize) -> String {
    let mut out = String::with_capacity(text.len() + columns);
    out.push_str(text);
    for _ in width(text)..columns {
        out.push(' ');
    }
    out
}

/// Rows with aligned columns, two spaces apart; the last column is not padded, and no
/// line ends in spaces. With `header`, a header line and a rule of dashes come first.
pub fn table(header: Option<&[&str]>, rows: &[Vec<String>]) -> String {
    let header_row: Option<Vec<String>> =
        header.map(|h| h.iter().map(|c| (*c).to_string()).collect());
    let all: Vec<&Vec<String>> = header_row.iter().chain(rows.iter()).collect();
    let columns = all.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            all.iter()
                .filter_map(|r| r.get(i))
                .map(|c| width(c))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: &[String]| -> String {
        let mut out = String::new();
        for (i, cell) in row.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == row.len() {
                out.push_str(cell);
            } else {
                out.push_str(&pad(cell, w));
                out.push_str("  ");
            }
        }
        out.trim_end().to_string()
    };
    let mut out = String::new();
    if let Some(h) = &header_row {
        out.push_str(&line(h));
        out.push('\n');
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat((*w).max(1))).collect();
        out.push_str(&line(&rule));
        out.push('\n');
    }
    for row in rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

/// `key  value` lines with the values aligned.
pub fn key_values(rows: &[(&str, String)]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(k, v)| vec![(*k).to_string(), v.clone()])
        .collect();
    table(None, &rows)
}

/// `items` joined with `, `, or `-` when there are none.
pub fn list_or_dash<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items
            .iter()
            .map(|s| s.as_ref())
            .collect::<Vec<&str>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_characters_are_double_width() {
        assert_eq!(width("abc"), 3);
        assert_eq!(width("さいたま市"), 10);
        assert_eq!(width("§3(1)ア①"), 8);
        assert_eq!(width("（EBPM）"), 8);
        assert_eq!(pad("市", 4), "市  ");
    }

    #[test]
    fn columns_line_up_by_display_width() {
        let out = table(
            Some(&["id", "label", "n"]),
            &[
                vec!["a".into(), "さいたま市".into(), "1".into()],
                vec!["bbb".into(), "City".into(), "22".into()],
            ],
        );
        assert_eq!(
            out,
            "id   label       n\n\
             ---  ----------  --\n\
             a    さいたま市  1\n\
             bbb  City        22\n"
        );
    }

    #[test]
    fn lists_join_or_show_a_dash() {
        assert_eq!(list_or_dash::<&str>(&[]), "-");
        assert_eq!(list_or_dash(&["a", "b"]), "a, b");
    }
}
