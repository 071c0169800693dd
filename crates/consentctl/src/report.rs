//! What a command hands back to `main`: its output and exit code, or one failure line.

/// Exit code of a successful run, and of an explained request that is allowed or redacted.
pub const EXIT_OK: u8 = 0;
/// Exit code of bad arguments, unreadable files and invalid documents.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of an explained request the filter would block.
pub const EXIT_BLOCK: u8 = 2;

/// The output of a command that ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Printed on stdout.
    pub out: String,
    /// Printed on stderr, one line each (warnings and notes).
    pub notes: Vec<String>,
    /// Exit code.
    pub code: u8,
}

impl Report {
    /// A report that exits with [`EXIT_OK`].
    pub fn ok(out: String) -> Self {
        Report {
            out,
            notes: Vec::new(),
            code: EXIT_OK,
        }
    }
}

/// Why a command could not finish: printed as one line on stderr, exit [`EXIT_FAILURE`].
/// Never holds a user ID or a personal-data value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl Failure {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Failure(message.into())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
