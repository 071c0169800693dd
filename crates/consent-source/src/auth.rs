//! Who is calling, and whether they may: bearer tokens (compared by SHA-256 in constant
//! time), client certificate identities forwarded by an mTLS-terminating proxy
//! (`x-forwarded-client-cert`, only when the configuration trusts it), and the demo's
//! unauthenticated loopback calls (only with `--demo-allow-loopback`).
//!
//! Precedence: a presented `Authorization` header decides alone (a wrong token is refused
//! even from loopback); then a trusted forwarded client certificate; then the demo's
//! loopback; then, for snapshots and deltas, `public_snapshots`.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AccessConfig, Role};

/// The name the audit table records for the demo's unauthenticated loopback calls.
pub const DEMO_LOOPBACK: &str = "demo-loopback";

/// Longest `Authorization` header value read, in bytes.
const MAX_AUTHORIZATION_LEN: usize = 4096;

/// Who made a call, as the audit table records it, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name, the client identity, [`DEMO_LOOPBACK`] or `anonymous`.
    pub who: String,
    roles: BTreeSet<Role>,
}

impl Caller {
    /// Whether the caller has `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing (`/healthz`).
    Nothing,
    /// A role.
    Role(Role),
    /// The fetcher role, unless snapshots are public.
    Snapshots,
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No credential (401).
    Missing,
    /// A credential that is not one of the configured ones, or is malformed (401).
    Invalid,
    /// A known credential without the role the call needs (403).
    Forbidden(Role),
    /// A client identity the configuration does not list (403).
    UnknownClient,
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Missing => write!(f, "credentials required"),
            AuthError::Invalid => write!(f, "invalid credentials"),
            AuthError::Forbidden(role) => {
                write!(f, "this credential lacks the {} role", role.name())
            }
            AuthError::UnknownClient => {
                write!(f, "this client identity has no role at this source")
            }
        }
    }
}

impl std::error::Error for AuthError {}

impl AuthError {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing | AuthError::Invalid => 401,
            AuthError::Forbidden(_) | AuthError::UnknownClient => 403,
        }
    }

    /// The `www-authenticate` value of a 401.
    pub fn challenge(&self) -> Option<&'static str> {
        match self {
            AuthError::Missing => Some("Bearer realm=\"consent-source\""),
            AuthError::Invalid => Some("Bearer realm=\"consent-source\", error=\"invalid_token\""),
            _ => None,
        }
    }
}

/// The headers of a call that matter here.
#[derive(Debug, Default, Clone, Copy)]
pub struct Credentials<'a> {
    /// Every `Authorization` value.
    pub authorization: &'a [&'a str],
    /// Every `x-forwarded-client-cert` value.
    pub forwarded_client_cert: &'a [&'a str],
    /// The peer's address.
    pub peer: Option<SocketAddr>,
}

/// The source's access rules.
#[derive(Debug, Clone)]
pub struct Access {
    config: AccessConfig,
    demo_allow_loopback: bool,
}

fn all_roles() -> BTreeSet<Role> {
    [Role::Writer, Role::Reader, Role::Fetcher]
        .into_iter()
        .collect()
}

impl Access {
    /// Access as `config` says; `demo_allow_loopback` lets calls from 127.0.0.0/8 and ::1
    /// without a credential do everything (the demo's setting, never a deployment's).
    pub fn new(config: AccessConfig, demo_allow_loopback: bool) -> Access {
        Access {
            config,
            demo_allow_loopback,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AccessConfig {
        &self.config
    }

    /// Whether unauthenticated loopback calls are let through.
    pub fn demo_allow_loopback(&self) -> bool {
        self.demo_allow_loopback
    }

    fn token(&self, values: &[&str]) -> Result<Caller, AuthError> {
        let [value] = values else {
            return Err(AuthError::Invalid);
        };
        if value.len() > MAX_AUTHORIZATION_LEN {
            return Err(AuthError::Invalid);
        }
        let Some((scheme, token)) = value.trim().split_once(' ') else {
            return Err(AuthError::Invalid);
        };
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(AuthError::Invalid);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every entry is compared, each in constant time.
        let mut found = None;
        for entry in &self.config.tokens {
            if bool::from(entry.sha256.ct_eq(&digest)) {
                found = Some(entry);
            }
        }
        found
            .map(|e| Caller {
                who: e.name.clone(),
                roles: e.roles.clone(),
            })
            .ok_or(AuthError::Invalid)
    }

    fn client(&self, values: &[&str]) -> Result<Caller, AuthError> {
        let joined = values.join(",");
        let Some(uris) = forwarded_client_uris(&joined) else {
            return Err(AuthError::Invalid);
        };
        for entry in &self.config.clients {
            if uris.contains(&entry.identity) {
                return Ok(Caller {
                    who: entry.identity.clone(),
                    roles: entry.roles.clone(),
                });
            }
        }
        Err(AuthError::UnknownClient)
    }

    /// Who is calling, or why they may not make a call that needs `need`.
    pub fn authorize(&self, creds: &Credentials<'_>, need: Need) -> Result<Caller, AuthError> {
        let anonymous = || Caller {
            who: "anonymous".into(),
            roles: BTreeSet::new(),
        };
        let caller = if !creds.authorization.is_empty() {
            self.token(creds.authorization)
        } else if self.config.trust_forwarded_client_cert && !creds.forwarded_client_cert.is_empty()
        {
            self.client(creds.forwarded_client_cert)
        } else if self.demo_allow_loopback && creds.peer.is_some_and(|p| p.ip().is_loopback()) {
            Ok(Caller {
                who: DEMO_LOOPBACK.into(),
                roles: all_roles(),
            })
        } else {
            Err(AuthError::Missing)
        };
        match need {
            Need::Nothing => Ok(caller.unwrap_or_else(|_| anonymous())),
            Need::Snapshots if self.config.public_snapshots => {
                Ok(caller.unwrap_or_else(|_| anonymous()))
            }
            Need::Snapshots => check(caller?, Role::Fetcher),
            Need::Role(role) => check(caller?, role),
        }
    }
}

fn check(caller: Caller, role: Role) -> Result<Caller, AuthError> {
    if caller.has(role) {
        Ok(caller)
    } else {
        Err(AuthError::Forbidden(role))
    }
}

/// Splits `text` at `sep` outside double quotes (a backslash escapes the next character).
fn split_unquoted(text: &str, sep: char) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' && quoted {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(text.get(start..i)?);
            start = i + c.len_utf8();
        }
    }
    if quoted {
        return None;
    }
    parts.push(text.get(start..)?);
    Some(parts)
}

/// The `URI=` values of the last element of an `x-forwarded-client-cert` header (the one
/// the nearest proxy added: with Envoy's `APPEND_FORWARD` earlier elements come from
/// further away and are not believed). `None` when the header does not parse.
pub fn forwarded_client_uris(header: &str) -> Option<Vec<String>> {
    let elements = split_unquoted(header, ',')?;
    let last = elements.last()?;
    let mut uris = Vec::new();
    for pair in split_unquoted(last, ';')? {
        let (key, value) = pair.trim().split_once('=')?;
        if key.trim().eq_ignore_ascii_case("uri") {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            uris.push(value.replace("\\\"", "\""));
        }
    }
    Some(uris)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
        trust_forwarded_client_cert = true
        [[token]]
        name = "admin"
        # sha256("admin-token")
        sha256 = "HASH_ADMIN"
        roles = ["writer", "reader"]
        [[token]]
        name = "fetcher"
        sha256 = "HASH_FETCHER"
        roles = ["fetcher"]
        [[client]]
        identity = "spiffe://cluster.local/ns/app/sa/api"
        roles = ["fetcher"]
    "#;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn access(demo: bool, public: bool) -> Access {
        let text = CONFIG
            .replace("HASH_ADMIN", &hex(&Sha256::digest(b"admin-token")))
            .replace("HASH_FETCHER", &hex(&Sha256::digest(b"fetch-token")));
        let mut config = AccessConfig::from_toml(&text).unwrap();
        config.public_snapshots = public;
        Access::new(config, demo)
    }

    fn with_auth<'a>(auth: &'a [&'a str], peer: &str) -> Credentials<'a> {
        Credentials {
            authorization: auth,
            forwarded_client_cert: &[],
            peer: Some(peer.parse().unwrap()),
        }
    }

    #[test]
    fn tokens_give_their_roles_and_nothing_else() {
        let a = access(false, false);
        let admin = ["Bearer admin-token"];
        let c = a
            .authorize(&with_auth(&admin, "10.0.0.1:1"), Need::Role(Role::Writer))
            .unwrap();
        assert_eq!(c.who, "admin");
        assert_eq!(
            a.authorize(&with_auth(&admin, "10.0.0.1:1"), Need::Snapshots),
            Err(AuthError::Forbidden(Role::Fetcher))
        );
        let fetch = ["bearer fetch-token"];
        assert!(a
            .authorize(&with_auth(&fetch, "10.0.0.1:1"), Need::Snapshots)
            .is_ok());
        assert_eq!(
            a.authorize(&with_auth(&fetch, "10.0.0.1:1"), Need::Role(Role::Reader)),
            Err(AuthError::Forbidden(Role::Reader))
        );
    }

    #[test]
    fn missing_wrong_and_malformed_credentials_are_401() {
        let a = access(false, false);
        for auth in [
            &["Bearer nope"][..],
            &["Basic YWRtaW4tdG9rZW4="],
            &["admin-token"],
            &["Bearer "],
            &["Bearer admin-token", "Bearer admin-token"],
        ] {
            assert_eq!(
                a.authorize(&with_auth(auth, "10.0.0.1:1"), Need::Role(Role::Writer)),
                Err(AuthError::Invalid),
                "{auth:?}"
            );
        }
        assert_eq!(
            a.authorize(&with_auth(&[], "10.0.0.1:1"), Need::Role(Role::Writer)),
            Err(AuthError::Missing)
        );
        // No loopback exception without the demo setting.
        assert_eq!(
            a.authorize(&with_auth(&[], "127.0.0.1:1"), Need::Snapshots),
            Err(AuthError::Missing)
        );
        assert!(a
            .authorize(&with_auth(&[], "10.0.0.1:1"), Need::Nothing)
            .is_ok());
    }

    #[test]
    fn the_demo_setting_opens_loopback_only_and_a_wrong_token_still_fails() {
        let a = access(true, false);
        let c = a
            .authorize(&with_auth(&[], "127.0.0.1:5"), Need::Role(Role::Writer))
            .unwrap();
        assert_eq!(c.who, DEMO_LOOPBACK);
        assert!(a
            .authorize(&with_auth(&[], "[::1]:5"), Need::Role(Role::Reader))
            .is_ok());
        assert_eq!(
            a.authorize(&with_auth(&[], "192.168.1.2:5"), Need::Role(Role::Writer)),
            Err(AuthError::Missing)
        );
        assert_eq!(
            a.authorize(
                &with_auth(&["Bearer wrong"], "127.0.0.1:5"),
                Need::Role(Role::Writer)
            ),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn public_snapshots_need_nothing_but_writes_still_do() {
        let a = access(false, true);
        assert!(a
            .authorize(&with_auth(&[], "10.0.0.1:1"), Need::Snapshots)
            .is_ok());
        assert_eq!(
            a.authorize(&with_auth(&[], "10.0.0.1:1"), Need::Role(Role::Writer)),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn forwarded_client_certificates_name_the_nearest_client() {
        let a = access(false, false);
        let good = ["By=spiffe://cluster.local/ns/cs/sa/source;Hash=ab12;Subject=\"CN=x,O=y\";URI=spiffe://cluster.local/ns/app/sa/api"];
        let creds = Credentials {
            authorization: &[],
            forwarded_client_cert: &good,
            peer: None,
        };
        assert_eq!(
            a.authorize(&creds, Need::Snapshots).unwrap().who,
            "spiffe://cluster.local/ns/app/sa/api"
        );
        // A client cannot claim an identity by sending its own element first.
        let spoofed = ["URI=spiffe://cluster.local/ns/app/sa/api,By=spiffe://x;URI=spiffe://cluster.local/ns/evil/sa/e"];
        let creds = Credentials {
            forwarded_client_cert: &spoofed,
            ..creds
        };
        assert_eq!(
            a.authorize(&creds, Need::Snapshots),
            Err(AuthError::UnknownClient)
        );
        let broken = ["URI=\"unterminated"];
        let creds = Credentials {
            forwarded_client_cert: &broken,
            ..creds
        };
        assert_eq!(
            a.authorize(&creds, Need::Snapshots),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn forwarded_client_certificates_are_ignored_unless_trusted() {
        let mut config = access(false, false).config().clone();
        config.trust_forwarded_client_cert = false;
        let a = Access::new(config, false);
        let good = ["URI=spiffe://cluster.local/ns/app/sa/api"];
        let creds = Credentials {
            authorization: &[],
            forwarded_client_cert: &good,
            peer: None,
        };
        assert_eq!(
            a.authorize(&creds, Need::Snapshots),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn quoted_values_keep_their_separators() {
        assert_eq!(
            forwarded_client_uris("Hash=1;URI=\"spiffe://a/b\";DNS=x").unwrap(),
            vec!["spiffe://a/b".to_string()]
        );
        assert_eq!(
            forwarded_client_uris("Subject=\"CN=a;b,c\";URI=u:1;URI=u:2").unwrap(),
            vec!["u:1".to_string(), "u:2".to_string()]
        );
    }
}
