//! The crate's errors. None holds a value from the document: a YAML file may carry keys
//! (`pseudonymisation_key`, `subject_key_secret`) and personal data.

use std::fmt;

/// Why a YAML text could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YamlError {
    /// Not valid YAML.
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's reason, which names no value.
        reason: String,
    },
    /// Not exactly one YAML document (an Envoy bootstrap is one).
    Documents(usize),
    /// The document could not be written out.
    Emit,
}

impl YamlError {
    /// The error of a parser failure.
    pub(crate) fn syntax(error: &saphyr_parser::ScanError) -> Self {
        YamlError::Syntax {
            line: error.marker().line(),
            column: error.marker().col() + 1,
            reason: error.info().to_string(),
        }
    }
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            YamlError::Syntax {
                line,
                column,
                reason,
            } => write!(f, "invalid YAML at line {line} column {column}: {reason}"),
            YamlError::Documents(n) => write!(f, "expected one YAML document, found {n}"),
            YamlError::Emit => f.write_str("cannot write the YAML document"),
        }
    }
}

impl std::error::Error for YamlError {}

/// Why an edit could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// The document has nothing the edit applies to; what was looked for.
    NotFound(&'static str),
    /// A YAML fragment given to the edit is not valid YAML.
    Fragment(YamlError),
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::NotFound(what) => write!(f, "the document has no {what}"),
            EditError::Fragment(e) => write!(f, "the YAML fragment to insert: {e}"),
        }
    }
}

impl std::error::Error for EditError {}
