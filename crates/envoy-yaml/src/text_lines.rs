//! Where a plugin configuration's JSON text sits in the YAML file, and JSON error positions
//! moved to the file's lines.

/// The YAML lines a configuration's text spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextLines {
    /// 1-based line of the text's first line.
    pub first: usize,
    /// 1-based line of its last line.
    pub last: usize,
    /// Whether line `n` of the text is YAML line `first + n - 1`: true for a literal block
    /// (`value: |`) and a one-line scalar; folded blocks and quoted scalars over several
    /// lines join lines.
    pub exact: bool,
}

impl TextLines {
    /// Rewrites the trailing `at line L column C` of a JSON error: `at YAML line N (JSON
    /// column C)` when the lines are exact, `at JSON line L column C` otherwise. Any other
    /// message is returned as it is.
    pub fn error_position(&self, message: &str) -> String {
        let Some(at) = message.rfind(" at line ") else {
            return message.to_string();
        };
        let (head, tail) = message.split_at(at);
        let mut words = tail.split_whitespace().skip(2);
        let line = words.next().and_then(|w| w.parse::<usize>().ok());
        match (line, words.next(), words.next()) {
            (Some(line), Some("column"), Some(column)) if self.exact => format!(
                "{head} at YAML line {} (JSON column {column})",
                self.first + line.saturating_sub(1)
            ),
            (Some(line), Some("column"), Some(column)) => {
                format!("{head} at JSON line {line} column {column}")
            }
            _ => message.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXACT: TextLines = TextLines {
        first: 30,
        last: 40,
        exact: true,
    };

    #[test]
    fn json_error_positions_are_moved_to_yaml_lines() {
        assert_eq!(
            EXACT.error_position("(document): expected `,` or `}` at line 3 column 7"),
            "(document): expected `,` or `}` at YAML line 32 (JSON column 7)"
        );
        assert_eq!(EXACT.error_position("no position"), "no position");
        assert_eq!(
            EXACT.error_position("odd at line x column 7"),
            "odd at line x column 7"
        );
    }

    #[test]
    fn joined_lines_keep_the_json_position_and_say_so() {
        let joined = TextLines {
            exact: false,
            ..EXACT
        };
        assert_eq!(
            joined.error_position("expected value at line 1 column 12"),
            "expected value at JSON line 1 column 12"
        );
    }
}
