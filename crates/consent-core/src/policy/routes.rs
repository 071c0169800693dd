//! Per-route rules. Envoy gives wasm filters no per-route configuration, so the plugin
//! configuration carries a table of rules matched on the route name (`xds.route_name`),
//! the host and a path prefix. The most specific matching rule wins; a request that
//! matches none gets the default rule.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::body::matcher::Matcher;
use crate::body::selector::parse_selector;
use crate::error::ConfigError;
use crate::policy::compiled::{CompiledPolicy, PurposeIdx};

/// What a rule matches; every given field must match.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteMatchDoc {
    /// Envoy route name (`name` of the route in the route configuration).
    #[serde(default)]
    pub route_name: Option<String>,
    /// Host (`:authority` without port); `*.example.com` matches any subdomain.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix (the path before `?`).
    #[serde(default)]
    pub path_prefix: Option<String>,
}

/// One rule as written. In `default_route`, `match` and `name` are not allowed.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRuleDoc {
    /// Name used in decisions, logs and the explain tool; `routes[i]` when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// What the rule matches.
    #[serde(default, rename = "match")]
    pub matches: Option<RouteMatchDoc>,
    /// Purposes the route accepts; any other purpose is blocked (`purpose_not_on_route`).
    /// All purposes when absent.
    #[serde(default)]
    pub purposes: Option<Vec<String>>,
    /// Whether a user ID is required on this route; the top-level `require_user` when absent.
    #[serde(default)]
    pub require_user: Option<bool>,
    /// Extra JSON selectors for this route's bodies, by category id (added to the policy's).
    #[serde(default)]
    pub json: BTreeMap<String, Vec<String>>,
    /// Dry-run (shadow) mode for this route; the top-level `dry_run` when absent.
    #[serde(default)]
    pub dry_run: Option<bool>,
}

/// Index of a rule in the table; `None` in a request view means the default rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleIdx(pub u16);

/// The host, route and path of one request, as the rules see them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteFacts<'a> {
    /// `xds.route_name`, if the route has a name.
    pub route_name: Option<&'a str>,
    /// `:authority`.
    pub host: Option<&'a str>,
    /// `:path` (query included; it is cut here).
    pub path: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RouteMatch {
    route_name: Option<String>,
    host: Option<HostPattern>,
    path_prefix: Option<String>,
}

impl RouteMatch {
    fn matches(&self, route_name: Option<&str>, host: &str, path: &str) -> bool {
        let name_ok = match &self.route_name {
            Some(want) => route_name == Some(want.as_str()),
            None => true,
        };
        let host_ok = match &self.host {
            Some(HostPattern::Exact(h)) => host == h,
            Some(HostPattern::Suffix(s)) => host.len() > s.len() && host.ends_with(s.as_str()),
            None => true,
        };
        let path_ok = self
            .path_prefix
            .as_ref()
            .is_none_or(|p| path.starts_with(p.as_str()));
        name_ok && host_ok && path_ok
    }

    /// Route name beats host, exact host beats wildcard, then the longer path prefix.
    fn specificity(&self) -> (bool, u8, usize, usize) {
        let host = match &self.host {
            Some(HostPattern::Exact(_)) => 2,
            Some(HostPattern::Suffix(_)) => 1,
            None => 0,
        };
        let suffix_len = match &self.host {
            Some(HostPattern::Suffix(s)) => s.len(),
            _ => 0,
        };
        (
            self.route_name.is_some(),
            host,
            suffix_len,
            self.path_prefix.as_ref().map_or(0, String::len),
        )
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct RouteRule {
    /// Name for decisions and logs.
    pub name: String,
    matches: Option<RouteMatch>,
    /// Accepted purposes (sorted); `None` accepts every purpose.
    pub accepted: Option<Vec<PurposeIdx>>,
    /// Whether a user ID is required.
    pub require_user: bool,
    /// The policy's selectors plus this rule's; `None` when the rule adds none.
    pub matcher: Option<Matcher>,
    /// Decide and record, change nothing.
    pub dry_run: bool,
}

impl RouteRule {
    /// Whether the rule accepts `purpose`.
    pub fn accepts(&self, purpose: PurposeIdx) -> bool {
        self.accepted
            .as_ref()
            .is_none_or(|a| a.binary_search_by_key(&purpose.0, |p| p.0).is_ok())
    }
}

/// The rules, ready for matching.
#[derive(Debug, Clone)]
pub struct RouteTable {
    rules: Vec<RouteRule>,
    default: RouteRule,
    /// Whether any rule matches on the route name (so the glue must read it).
    pub uses_route_name: bool,
    /// Whether every rule, the default included, is in dry-run: only then may a failure
    /// before the rule is known pass a request unchanged.
    pub all_dry_run: bool,
}

impl RouteTable {
    /// Compiles `rules` and `default` (fields `routes` and `default_route`).
    pub fn compile(
        rules: &[RouteRuleDoc],
        default: &RouteRuleDoc,
        policy: &CompiledPolicy,
        require_user: bool,
        dry_run: bool,
    ) -> Result<Self, ConfigError> {
        if default.matches.is_some() || default.name.is_some() {
            return Err(ConfigError::invalid(
                "default_route",
                "the default rule takes no `match` or `name`",
            ));
        }
        let default = compile_rule(
            default,
            None,
            "default_route",
            "default",
            policy,
            require_user,
            dry_run,
        )?;
        let mut compiled: Vec<RouteRule> = Vec::with_capacity(rules.len());
        for (i, doc) in rules.iter().enumerate() {
            let at = format!("routes[{i}]");
            let matches = compile_match(doc.matches.as_ref(), &at)?;
            let name = doc.name.clone().unwrap_or_else(|| at.clone());
            if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                return Err(ConfigError::invalid(
                    format!("{at}.name"),
                    "must be 1 to 128 characters without control characters",
                ));
            }
            if let Some(j) = compiled
                .iter()
                .position(|r| r.matches.as_ref() == Some(&matches))
            {
                return Err(ConfigError::invalid(
                    format!("{at}.match"),
                    format!(
                        "matches exactly what routes[{j}] matches; one of them would never apply"
                    ),
                ));
            }
            if compiled.iter().any(|r| r.name == name) {
                return Err(ConfigError::invalid(
                    format!("{at}.name"),
                    format!("duplicate rule name `{name}`"),
                ));
            }
            compiled.push(compile_rule(
                doc,
                Some(matches),
                &at,
                &name,
                policy,
                require_user,
                dry_run,
            )?);
        }
        if compiled.len() > usize::from(u16::MAX) {
            return Err(ConfigError::invalid("routes", "too many rules"));
        }
        let uses_route_name = compiled
            .iter()
            .any(|r| r.matches.as_ref().is_some_and(|m| m.route_name.is_some()));
        let all_dry_run = default.dry_run && compiled.iter().all(|r| r.dry_run);
        Ok(RouteTable {
            rules: compiled,
            default,
            uses_route_name,
            all_dry_run,
        })
    }

    /// The most specific rule matching `facts`; `None` means the default rule.
    pub fn select(&self, facts: &RouteFacts<'_>) -> Option<RuleIdx> {
        if self.rules.is_empty() {
            return None;
        }
        let host = facts.host.map(normalise_host).unwrap_or_default();
        let path = facts.path.map(normalise_path).unwrap_or_default();
        let path = path.as_str();
        let mut best: Option<(usize, (bool, u8, usize, usize))> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            let Some(m) = &rule.matches else { continue };
            if m.matches(facts.route_name, &host, path)
                && best.is_none_or(|(_, s)| m.specificity() > s)
            {
                best = Some((i, m.specificity()));
            }
        }
        best.and_then(|(i, _)| u16::try_from(i).ok().map(RuleIdx))
    }

    /// The rule at `idx`, or the default rule.
    pub fn rule(&self, idx: Option<RuleIdx>) -> &RouteRule {
        idx.and_then(|i| self.rules.get(usize::from(i.0)))
            .unwrap_or(&self.default)
    }

    /// Every rule with its index, then the default.
    pub fn rules(&self) -> impl Iterator<Item = &RouteRule> {
        self.rules.iter().chain(std::iter::once(&self.default))
    }
}

fn normalise_host(host: &str) -> String {
    let without_port = match host.rsplit_once(':') {
        // `[v6]:port` or `name:port`; a bare IPv6 address has more than one colon and no port.
        Some((h, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (h.ends_with(']') || !h.contains(':')) =>
        {
            h
        }
        _ => host,
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

/// The path as a lenient backend would read it, for prefix matching: query cut, unreserved
/// characters percent-decoded (`%76` is `v`), repeated slashes merged, `.` and `..`
/// segments resolved. A client cannot then dodge a rule with `//v1/`, `/%761/` or `/x/../v1/`.
fn normalise_path(raw: &str) -> String {
    let before_query = raw.split_once('?').map_or(raw, |(p, _)| p);
    let bytes = before_query.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(c)) if c.is_ascii_alphanumeric() || b"-._~/".contains(&c) => {
                decoded.push(c);
                i += 3;
            }
            _ => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let text = String::from_utf8_lossy(&decoded);
    let mut segments: Vec<&str> = Vec::new();
    for seg in text.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let trailing = text.ends_with('/') && !segments.is_empty();
    let mut out = String::with_capacity(text.len() + 1);
    for seg in &segments {
        out.push('/');
        out.push_str(seg);
    }
    if trailing || out.is_empty() {
        out.push('/');
    }
    out
}

fn compile_match(doc: Option<&RouteMatchDoc>, at: &str) -> Result<RouteMatch, ConfigError> {
    let Some(doc) = doc else {
        return Err(ConfigError::invalid(
            format!("{at}.match"),
            "a rule needs a `match` (use `default_route` for requests no rule matches)",
        ));
    };
    if doc.route_name.is_none() && doc.host.is_none() && doc.path_prefix.is_none() {
        return Err(ConfigError::invalid(
            format!("{at}.match"),
            "match at least one of route_name, host, path_prefix",
        ));
    }
    let host = match doc.host.as_deref() {
        None => None,
        Some(h) => Some(compile_host(h, &format!("{at}.match.host"))?),
    };
    if let Some(p) = &doc.path_prefix {
        if !p.starts_with('/') || p.contains('?') {
            return Err(ConfigError::invalid(
                format!("{at}.match.path_prefix"),
                "must start with `/` and hold no query",
            ));
        }
    }
    if doc.route_name.as_ref().is_some_and(String::is_empty) {
        return Err(ConfigError::invalid(
            format!("{at}.match.route_name"),
            "must not be empty",
        ));
    }
    Ok(RouteMatch {
        route_name: doc.route_name.clone(),
        host,
        path_prefix: doc.path_prefix.clone(),
    })
}

fn compile_host(h: &str, at: &str) -> Result<HostPattern, ConfigError> {
    let lower = h.to_ascii_lowercase();
    let (pattern, rest) = match lower.strip_prefix("*.") {
        Some(rest) => (HostPattern::Suffix(format!(".{rest}")), rest.to_string()),
        None => (HostPattern::Exact(lower.clone()), lower.clone()),
    };
    let ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    if ok {
        Ok(pattern)
    } else {
        Err(ConfigError::invalid(
            at,
            "a host name without port, or `*.` followed by a domain",
        ))
    }
}

fn compile_rule(
    doc: &RouteRuleDoc,
    matches: Option<RouteMatch>,
    at: &str,
    name: &str,
    policy: &CompiledPolicy,
    require_user: bool,
    dry_run: bool,
) -> Result<RouteRule, ConfigError> {
    let accepted = match &doc.purposes {
        None => None,
        Some(ids) => Some(policy.purpose_list(ids, &format!("{at}.purposes"))?),
    };
    let matcher = if doc.json.is_empty() {
        None
    } else {
        let mut m = policy.matcher.clone();
        for (cid, selectors) in &doc.json {
            let cat = policy.category_idx(cid).ok_or_else(|| {
                ConfigError::invalid(
                    format!("{at}.json.{cid}"),
                    format!("unknown category `{cid}`"),
                )
            })?;
            for (j, text) in selectors.iter().enumerate() {
                let path = format!("{at}.json.{cid}[{j}]");
                let selector = parse_selector(text).map_err(|e| ConfigError::invalid(&path, e))?;
                m.add(&selector, cat)
                    .map_err(|e| ConfigError::invalid(&path, e))?;
            }
        }
        Some(m)
    };
    Ok(RouteRule {
        name: name.to_string(),
        matches,
        accepted,
        require_user: doc.require_user.unwrap_or(require_user),
        matcher,
        dry_run: doc.dry_run.unwrap_or(dry_run),
    })
}

#[cfg(test)]
mod tests;
