//! Which way a message travels, and whether the filter enforces or only records: the two
//! words every host, stat and log line shares.

use serde::Serialize;

/// Which way a message (headers or body) travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client to backend.
    Request,
    /// Backend to client.
    Response,
}

impl Direction {
    /// Both directions, in index order.
    pub const BOTH: [Direction; 2] = [Direction::Request, Direction::Response];

    /// `request` or `response`, as stats and logs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
        }
    }

    /// 0 for requests, 1 for responses: the index of per-direction state.
    pub fn index(self) -> usize {
        match self {
            Direction::Request => 0,
            Direction::Response => 1,
        }
    }
}

/// Whether a request is enforced or only recorded (dry-run, shadow mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Decide and act.
    #[default]
    Enforce,
    /// Decide and record; change nothing.
    DryRun,
}

impl Mode {
    /// The mode of a request whose rule says `dry_run`.
    pub fn of(dry_run: bool) -> Self {
        if dry_run {
            Mode::DryRun
        } else {
            Mode::Enforce
        }
    }

    /// `enforce` or `dry_run`, as stats, logs and the decision header spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::DryRun => "dry_run",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn words_are_spelled_as_serde_writes_them() {
        for d in Direction::BOTH {
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                format!("\"{}\"", d.as_str())
            );
            assert_eq!(Direction::BOTH[d.index()], d);
        }
        for m in [Mode::Enforce, Mode::DryRun] {
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.as_str())
            );
        }
        assert_eq!(Mode::of(true), Mode::DryRun);
    }
}
