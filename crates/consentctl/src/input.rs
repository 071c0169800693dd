//! Where documents come from (a file or stdin), and reading them with one-line errors.

use std::convert::Infallible;
use std::io::Read;
use std::path::PathBuf;
use std::str::FromStr;

use crate::report::Failure;

/// Where a document is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Standard input (`-`).
    Stdin,
    /// A file.
    File(PathBuf),
}

impl FromStr for Input {
    type Err = Infallible;

    /// `-` is stdin, anything else a path.
    fn from_str(text: &str) -> Result<Self, Infallible> {
        Ok(if text == "-" {
            Input::Stdin
        } else {
            Input::File(PathBuf::from(text))
        })
    }
}

impl Input {
    /// How messages name this input.
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "stdin".to_string(),
            Input::File(path) => path.display().to_string(),
        }
    }
}

/// The bytes of `input`.
pub fn read_bytes(input: &Input) -> Result<Vec<u8>, Failure> {
    match input {
        Input::Stdin => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| Failure::new(format!("cannot read stdin: {e}")))?;
            Ok(bytes)
        }
        Input::File(path) => std::fs::read(path)
            .map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display()))),
    }
}

/// The text of `input`, which must be UTF-8.
pub fn read_text(input: &Input) -> Result<String, Failure> {
    String::from_utf8(read_bytes(input)?)
        .map_err(|_| Failure::new(format!("{} is not UTF-8 text", input.name())))
}

/// Whether `input` is named like a YAML file (`.yaml` / `.yml`).
pub fn is_yaml(input: &Input) -> bool {
    match input {
        Input::Stdin => false,
        Input::File(path) => path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml")),
    }
}
