//! `consentctl explain`: decides one request exactly as the filter would, with the
//! filter's own entry point, `CompiledConfig::decide_request`, looking the user up in the
//! inline consents or in a compiled snapshot file (by subject key, as the shared-snapshot
//! reader does), and `redact_body` for a body, each multi-subject element decided through
//! the same lookup.

use consent_core::body::CivilDate;
use consent_core::body::{BodyError, BodyHeaders, JsonError};
use consent_core::body::{BodyOutcome, BodyReport};
use consent_core::live::SnapshotSource;
use consent_core::policy::RouteFacts;
use consent_core::policy::GPC_HEADER;
use consent_core::policy::{CallerFacts, CallerFrom};
use consent_core::{CompiledConfig, ConsentLookup, Decision, Outcome};

use crate::args::ExplainArgs;
use crate::config_source::load;
use crate::explain_render::{render_json, render_text};
use crate::input::read_bytes;
use crate::report::{Failure, Report, EXIT_BLOCK, EXIT_OK};
use crate::snapshot_check::compile_snapshot;

/// What became of the request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyResult {
    /// The filter would not read it; why.
    NotRead(&'static str),
    /// Over `body.max_bytes`: refused with `body_too_large`.
    TooLarge {
        /// Body size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not valid JSON: refused with `body_invalid_json`.
    InvalidJson(String),
    /// Refused for another reason (multipart, unreadable, two formats).
    Refused {
        /// The reason code.
        reason: consent_core::Reason,
        /// What is wrong, without any value.
        why: String,
    },
    /// Read and redacted.
    Redacted {
        /// The outcome (unchanged, rewritten, or blocked by a category's `block` action).
        outcome: BodyOutcome,
        /// Counts and field paths.
        report: BodyReport,
    },
}

impl BodyResult {
    /// Whether the filter would refuse the request because of its body.
    pub fn refuses(&self) -> bool {
        matches!(
            self,
            BodyResult::TooLarge { .. }
                | BodyResult::InvalidJson(_)
                | BodyResult::Refused { .. }
                | BodyResult::Redacted {
                    outcome: BodyOutcome::Blocked(_),
                    ..
                }
        )
    }
}

/// Everything one explained request produced.
pub struct Explained<'c> {
    /// The configuration it was decided with.
    pub config: &'c CompiledConfig,
    /// The decision on the request headers.
    pub decision: Decision,
    /// The route rule runs in dry-run (shadow) mode: the filter only records the decision.
    pub dry_run: bool,
    /// The body, when one was given.
    pub body: Option<(String, BodyResult)>,
    /// The original body bytes (to print when the redactor left it unchanged).
    pub body_bytes: Vec<u8>,
}

/// Today's UTC date, for age bands.
fn today() -> CivilDate {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    CivilDate::from_unix_seconds(i64::try_from(secs).unwrap_or(0))
}

fn json_error(e: &JsonError) -> String {
    match e {
        JsonError::Syntax(offset) => format!("not valid JSON at byte {offset}"),
        JsonError::TooDeep => "nested deeper than the filter accepts".to_string(),
    }
}

/// Notes about options the configuration makes the filter ignore.
fn caller_notes(args: &ExplainArgs, config: &CompiledConfig) -> Vec<String> {
    let mut notes = Vec::new();
    let c = &args.caller;
    match config.caller.from {
        CallerFrom::PeerCertificate if c.cluster.is_some() => notes.push(
            "note: --cluster is ignored: the configuration reads callers from the peer certificate (caller.from)".to_string(),
        ),
        CallerFrom::UpstreamCluster if c.uri_san.is_some() || c.dns_san.is_some() => notes.push(
            "note: --uri-san / --dns-san are ignored: the configuration reads callers from the upstream cluster (caller.from)".to_string(),
        ),
        _ => {}
    }
    notes
}

/// Runs `explain`.
pub fn run(args: &ExplainArgs) -> Result<Report, Failure> {
    let loaded = load(&args.config)?;
    let config = &loaded.config;
    let mut notes = caller_notes(args, config);
    if args.caller.dev_header_value.is_some() && config.caller.dev_header.is_none() {
        return Err(Failure::new(
            "--dev-header-value needs `caller.dev_header` in the configuration",
        ));
    }
    let snapshot = match &args.snapshot {
        Some(input) => Some(compile_snapshot(input, config)?.1),
        None => {
            if config.snapshot.source == SnapshotSource::Shared {
                notes.push("note: the configuration reads consents from the live snapshot (snapshot.source: shared); without --snapshot only its inline consents are used".to_string());
            }
            None
        }
    };

    let mut headers: Vec<(&str, &[u8])> = Vec::new();
    if let Some(user) = &args.user {
        headers.push((&config.settings.user_header, user.as_bytes()));
    }
    headers.push((&config.settings.purpose_header, args.purpose.as_bytes()));
    if args.gpc {
        headers.push((GPC_HEADER, b"1"));
    }
    if let (Some(name), Some(value)) = (&config.caller.dev_header, &args.caller.dev_header_value) {
        headers.push((name, value.as_bytes()));
    }
    let caller = CallerFacts {
        uri_san: args.caller.uri_san.as_deref(),
        dns_san: args.caller.dns_san.as_deref(),
        cluster: args.caller.cluster.as_deref(),
        ..CallerFacts::default()
    };
    let route = RouteFacts {
        route_name: args.route.route_name.as_deref(),
        host: args.route.host.as_deref(),
        path: args.route.path.as_deref(),
    };
    let inline = config.inline_consents();
    let from_file = snapshot.as_ref().map(|s| s.lookup(&config.snapshot.keying));
    let lookup: &dyn ConsentLookup = match &from_file {
        Some(file) => file,
        None => &inline,
    };
    let decision = config
        .decide_request(headers.iter().copied(), &caller, &route, lookup)
        .decision;

    let (body, body_bytes) = match &args.body {
        None => (None, Vec::new()),
        Some(input) => {
            let bytes = read_bytes(input)?;
            let result = if decision.outcome == Outcome::Block {
                BodyResult::NotRead("the request is blocked before its body is read")
            } else if !config.body_needed(&decision) {
                BodyResult::NotRead(
                    "nothing forbidden has a JSON selector and no multi-subject elements are configured: the body passes unread",
                )
            } else if bytes.len() > config.body.max_bytes {
                BodyResult::TooLarge {
                    size: bytes.len(),
                    max: config.body.max_bytes,
                }
            } else {
                let headers =
                    BodyHeaders::from_headers([("content-type", args.content_type.as_bytes())]);
                match config.enforce_body(&decision, &headers, &bytes, today(), true, lookup) {
                    Ok((outcome, report)) => BodyResult::Redacted { outcome, report },
                    Err(BodyError::InvalidJson(e)) => BodyResult::InvalidJson(json_error(&e)),
                    Err(e) => BodyResult::Refused {
                        reason: e.reason(),
                        why: e.to_string(),
                    },
                }
            };
            (Some((input.name(), result)), bytes)
        }
    };

    let explained = Explained {
        config,
        dry_run: config.dry_run(&decision),
        decision,
        body,
        body_bytes,
    };
    let out = if args.json {
        render_json(&explained, args.json_out)?
    } else {
        render_text(&explained, args.json_out)
    };
    let blocked = explained.decision.outcome == Outcome::Block
        || explained.body.as_ref().is_some_and(|(_, b)| b.refuses());
    Ok(Report {
        out,
        notes,
        code: if blocked { EXIT_BLOCK } else { EXIT_OK },
    })
}
