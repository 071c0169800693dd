//! The source's access configuration: who may call what, the request size limit, and
//! whether snapshots are public. A small TOML file (`--config FILE`):
//!
//! ```toml
//! # Largest request body in bytes (413 over it); 65536 when absent.
//! max_body_bytes = 65536
//! # Snapshots and deltas (and their .minisig) without a credential; false when absent.
//! public_snapshots = false
//! # Believe the identity in `x-forwarded-client-cert` (set by an mTLS-terminating proxy in
//! # front of the source, e.g. its Istio sidecar); false when absent.
//! trust_forwarded_client_cert = false
//! # How long provision-ledger records are kept, in days (365 or more); 1095 when absent.
//! ledger_retention_days = 1095
//!
//! [[token]]
//! name = "consent-admin"        # who, in the audit table
//! sha256 = "<64 hex digits>"    # SHA-256 of the bearer token; the token is never stored
//! roles = ["writer", "reader"]
//!
//! [[client]]
//! identity = "spiffe://cluster.local/ns/minna-app/sa/minna-app-api"   # URI SAN
//! roles = ["fetcher"]
//! ```
//!
//! Errors name the entry and the field, never a value from the file: a clear token put
//! where its hash belongs must not reach a log.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default largest request body, in bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// What a credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Changes: grant, withdraw, stop-use, stop-third-party, erase.
    Writer,
    /// Single records (`GET /users/{id}`) and the audit table (`GET /audit`).
    Reader,
    /// Snapshots, their parts and deltas, with their signatures.
    Fetcher,
}

impl Role {
    /// The role's name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Role::Writer => "writer",
            Role::Reader => "reader",
            Role::Fetcher => "fetcher",
        }
    }
}

/// The configuration file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    public_snapshots: bool,
    #[serde(default)]
    trust_forwarded_client_cert: bool,
    #[serde(default)]
    ledger_retention_days: Option<u32>,
    #[serde(default, rename = "token")]
    tokens: Vec<TokenFile>,
    #[serde(default, rename = "client")]
    clients: Vec<ClientFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    name: String,
    // Read as text and checked here, so that a wrong value never appears in a parse error.
    sha256: String,
    roles: Vec<Role>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    identity: String,
    roles: Vec<Role>,
}

/// A bearer token the source accepts: its name and the SHA-256 of the token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// Who, in the audit table and the logs.
    pub name: String,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
    /// What it may do.
    pub roles: BTreeSet<Role>,
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// A client certificate identity (URI SAN, e.g. a SPIFFE ID) the source accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEntry {
    /// The URI SAN, compared exactly.
    pub identity: String,
    /// What it may do.
    pub roles: BTreeSet<Role>,
}

/// The access configuration, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessConfig {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Snapshots and deltas need no credential.
    pub public_snapshots: bool,
    /// The identity in `x-forwarded-client-cert` is believed.
    pub trust_forwarded_client_cert: bool,
    /// How long provision-ledger records are kept (days); `None`: the default.
    pub ledger_retention_days: Option<u32>,
    /// Accepted bearer tokens.
    pub tokens: Vec<TokenEntry>,
    /// Accepted client certificate identities.
    pub clients: Vec<ClientEntry>,
}

impl Default for AccessConfig {
    /// Nothing but `/healthz` is open: no token, no client identity, private snapshots.
    fn default() -> Self {
        AccessConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            public_snapshots: false,
            trust_forwarded_client_cert: false,
            ledger_retention_days: None,
            tokens: Vec::new(),
            clients: Vec::new(),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// The file is not TOML of the expected shape.
    Parse {
        /// Line of the problem (1-based), when known.
        line: Option<usize>,
        /// What is wrong (field names, never values).
        message: String,
    },
    /// An entry breaks a rule.
    Invalid {
        /// Which entry and field, e.g. `token[1].sha256`.
        at: String,
        /// What is wrong.
        message: &'static str,
    },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Read { path, error } => {
                write!(f, "cannot read the config {}: {error}", path.display())
            }
            ConfigError::Parse {
                line: Some(line),
                message,
            } => write!(f, "config, line {line}: {message}"),
            ConfigError::Parse {
                line: None,
                message,
            } => write!(f, "config: {message}"),
            ConfigError::Invalid { at, message } => write!(f, "config {at}: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// serde's messages quote the offending value for a few kinds of error ("invalid type:
/// string \"...\""); keep only the part before the value.
fn without_values(message: &str) -> String {
    let first = message.lines().next().unwrap_or("").trim();
    for marker in ["invalid type:", "invalid value:", "invalid length"] {
        if first.starts_with(marker) {
            if let Some((_, expected)) = first.split_once(", expected") {
                return format!("{marker} expected{expected}");
            }
            return marker.trim_end_matches(':').to_string();
        }
    }
    first.to_string()
}

/// What the configuration's `sha256` holds for `token`: the lowercase hex of its SHA-256
/// (the same as `printf '%s' "$TOKEN" | sha256sum`).
pub fn token_sha256_hex(token: &str) -> String {
    use sha2::Digest;
    consent_core::live::to_hex(&sha2::Sha256::digest(token.as_bytes()))
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let digit = |b: u8| char::from(b).to_digit(16);
        match pair {
            [hi, lo] => *o = u8::try_from(digit(*hi)? * 16 + digit(*lo)?).ok()?,
            _ => return None,
        }
    }
    Some(out)
}

fn roles(at: &str, list: Vec<Role>) -> Result<BTreeSet<Role>, ConfigError> {
    if list.is_empty() {
        return Err(ConfigError::Invalid {
            at: format!("{at}.roles"),
            message: "needs at least one of writer, reader, fetcher",
        });
    }
    Ok(list.into_iter().collect())
}

impl AccessConfig {
    /// Parses and checks a configuration document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            line: e
                .span()
                .and_then(|s| text.get(..s.start))
                .map(|before| before.matches('\n').count() + 1),
            message: without_values(e.message()),
        })?;
        let max_body_bytes = file.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 {
            return Err(ConfigError::Invalid {
                at: "max_body_bytes".into(),
                message: "must be 1 or more",
            });
        }
        if let Some(days) = file.ledger_retention_days {
            if crate::ledger::check_retention_days(days).is_err() {
                return Err(ConfigError::Invalid {
                    at: "ledger_retention_days".into(),
                    message: "must be 365 to 36500 days (APPI keeps provision records one to three years; the default is 1095)",
                });
            }
        }
        let mut tokens: Vec<TokenEntry> = Vec::with_capacity(file.tokens.len());
        for (i, t) in file.tokens.into_iter().enumerate() {
            let at = format!("token[{i}]");
            if t.name.trim().is_empty()
                || t.name.len() > 128
                || t.name.chars().any(char::is_control)
            {
                return Err(ConfigError::Invalid {
                    at: format!("{at}.name"),
                    message: "must be 1 to 128 bytes without control characters",
                });
            }
            let Some(sha256) = hex32(t.sha256.trim()) else {
                return Err(ConfigError::Invalid {
                    at: format!("{at}.sha256"),
                    message: "must be 64 hex digits: the SHA-256 of the token, not the token",
                });
            };
            if tokens.iter().any(|o| o.name == t.name) {
                return Err(ConfigError::Invalid {
                    at: format!("{at}.name"),
                    message: "an earlier token has the same name",
                });
            }
            if tokens.iter().any(|o| o.sha256 == sha256) {
                return Err(ConfigError::Invalid {
                    at: format!("{at}.sha256"),
                    message: "an earlier token has the same hash",
                });
            }
            tokens.push(TokenEntry {
                name: t.name,
                sha256,
                roles: roles(&at, t.roles)?,
            });
        }
        let mut clients: Vec<ClientEntry> = Vec::with_capacity(file.clients.len());
        for (i, c) in file.clients.into_iter().enumerate() {
            let at = format!("client[{i}]");
            let identity = c.identity.trim().to_string();
            if identity.is_empty()
                || identity.len() > 512
                || !identity.contains(':')
                || identity.chars().any(|ch| {
                    ch.is_control() || ch.is_whitespace() || matches!(ch, ',' | ';' | '"')
                })
            {
                return Err(ConfigError::Invalid {
                    at: format!("{at}.identity"),
                    message: "must be a URI SAN (e.g. spiffe://...) without spaces, commas, semicolons or quotes",
                });
            }
            if clients.iter().any(|o| o.identity == identity) {
                return Err(ConfigError::Invalid {
                    at: format!("{at}.identity"),
                    message: "an earlier client has the same identity",
                });
            }
            clients.push(ClientEntry {
                identity,
                roles: roles(&at, c.roles)?,
            });
        }
        if !clients.is_empty() && !file.trust_forwarded_client_cert {
            return Err(ConfigError::Invalid {
                at: "client".into(),
                message: "client identities arrive in x-forwarded-client-cert: set trust_forwarded_client_cert = true (only behind a proxy that sets it)",
            });
        }
        Ok(AccessConfig {
            max_body_bytes,
            public_snapshots: file.public_snapshots,
            trust_forwarded_client_cert: file.trust_forwarded_client_cert,
            ledger_retention_days: file.ledger_retention_days,
            tokens,
            clients,
        })
    }

    /// Reads and checks the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_toml(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn a_full_config_parses() {
        let c = AccessConfig::from_toml(&format!(
            r#"
            max_body_bytes = 1024
            public_snapshots = true
            trust_forwarded_client_cert = true
            [[token]]
            name = "admin"
            sha256 = "{HASH}"
            roles = ["writer", "reader"]
            [[client]]
            identity = "spiffe://cluster.local/ns/a/sa/b"
            roles = ["fetcher"]
            "#
        ))
        .unwrap();
        assert_eq!(c.max_body_bytes, 1024);
        assert!(c.public_snapshots);
        assert_eq!(c.tokens.len(), 1);
        assert_eq!(c.tokens[0].sha256[0], 0x9f);
        assert!(c.tokens[0].roles.contains(&Role::Writer));
        assert_eq!(c.clients[0].roles.len(), 1);
    }

    #[test]
    fn a_token_hash_is_sha256sum_of_the_token() {
        // printf '%s' test | sha256sum
        assert_eq!(token_sha256_hex("test"), HASH);
    }

    #[test]
    fn the_default_opens_nothing() {
        let c = AccessConfig::from_toml("").unwrap();
        assert_eq!(c, AccessConfig::default());
        assert!(c.tokens.is_empty() && !c.public_snapshots);
    }

    #[test]
    fn unknown_fields_and_roles_are_refused() {
        assert!(AccessConfig::from_toml("public = true").is_err());
        let e = AccessConfig::from_toml(&format!(
            "[[token]]\nname = \"a\"\nsha256 = \"{HASH}\"\nroles = [\"admin\"]"
        ))
        .unwrap_err();
        assert!(matches!(e, ConfigError::Parse { line: Some(4), .. }), "{e}");
    }

    #[test]
    fn a_clear_token_in_place_of_its_hash_is_never_echoed() {
        let e = AccessConfig::from_toml(
            "[[token]]\nname = \"a\"\nsha256 = \"s3cret-clear-token\"\nroles = [\"writer\"]",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("token[0].sha256"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        let e = AccessConfig::from_toml(
            "[[token]]\nname = \"a\"\nsha256 = [\"s3cret-clear-token\"]\nroles = [\"writer\"]",
        )
        .unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn duplicates_empty_roles_and_untrusted_clients_are_refused() {
        let two = format!(
            "[[token]]\nname = \"a\"\nsha256 = \"{HASH}\"\nroles = [\"writer\"]\n[[token]]\nname = \"b\"\nsha256 = \"{HASH}\"\nroles = [\"reader\"]"
        );
        assert!(AccessConfig::from_toml(&two).is_err());
        let none = format!("[[token]]\nname = \"a\"\nsha256 = \"{HASH}\"\nroles = []");
        assert!(AccessConfig::from_toml(&none).is_err());
        let untrusted = "[[client]]\nidentity = \"spiffe://x/y\"\nroles = [\"fetcher\"]";
        assert!(AccessConfig::from_toml(untrusted).is_err());
        assert!(AccessConfig::from_toml("max_body_bytes = 0").is_err());
    }

    #[test]
    fn the_ledger_retention_is_a_year_or_more() {
        assert_eq!(
            AccessConfig::from_toml("ledger_retention_days = 365")
                .unwrap()
                .ledger_retention_days,
            Some(365)
        );
        let e = AccessConfig::from_toml("ledger_retention_days = 30").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config ledger_retention_days: must be 365 to 36500 days"),
            "{e}"
        );
        assert!(AccessConfig::from_toml("ledger_retention_days = -1").is_err());
    }
}
