//! Command-line arguments, parsed by hand into a [`Command`].
//!
//! Options take `--name value` or `--name=value`; `--` ends the options; `-` names stdin.
//! Error messages name options and commands, never an option's value (a value may be a
//! user ID).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Where a document is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Standard input (`-`).
    Stdin,
    /// A file.
    File(PathBuf),
}

impl Input {
    /// `-` is stdin, anything else a path.
    pub fn parse(text: &str) -> Input {
        if text == "-" {
            Input::Stdin
        } else {
            Input::File(PathBuf::from(text))
        }
    }

    /// How messages name this input.
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "stdin".to_string(),
            Input::File(path) => path.display().to_string(),
        }
    }
}

/// Which labels the policy tables show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// Japanese only.
    Ja,
    /// English only.
    En,
    /// Both (default).
    #[default]
    Both,
}

/// Where `consentctl policy` reads the policy from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// The shipped policy.
    Shipped,
    /// The policy of a plugin configuration (JSON, or the first one in an Envoy YAML).
    Config(Input),
    /// A policy document.
    Policy(Input),
}

/// The caller of an explained request, as Envoy would see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerArgs {
    /// Peer certificate URI SAN.
    pub uri_san: Option<String>,
    /// Peer certificate DNS SAN.
    pub dns_san: Option<String>,
    /// Destination cluster (egress).
    pub cluster: Option<String>,
    /// Value of the configuration's development caller header.
    pub dev_header_value: Option<String>,
}

/// The route of an explained request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteArgs {
    /// Envoy route name (`xds.route_name`).
    pub route_name: Option<String>,
    /// `:authority`.
    pub host: Option<String>,
    /// `:path`.
    pub path: Option<String>,
}

/// Everything `consentctl explain` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainArgs {
    /// The plugin configuration.
    pub config: Input,
    /// Value of the purpose header.
    pub purpose: String,
    /// Value of the user-ID header, if sent.
    pub user: Option<String>,
    /// A snapshot as served by the consent source, instead of the inline consents.
    pub snapshot: Option<Input>,
    /// Who calls.
    pub caller: CallerArgs,
    /// Which route.
    pub route: RouteArgs,
    /// Send `Sec-GPC: 1`.
    pub gpc: bool,
    /// A JSON body to redact.
    pub body: Option<Input>,
    /// Print the redacted body.
    pub json_out: bool,
    /// Print JSON instead of text.
    pub json: bool,
}

/// Which help text to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelpTopic {
    /// Every command.
    Main,
    /// `validate`.
    Validate,
    /// `explain`.
    Explain,
    /// `policy`.
    Policy,
}

/// One run of the tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print help.
    Help(HelpTopic),
    /// Print the version.
    Version,
    /// `validate config FILE`.
    ValidateConfig(Input),
    /// `validate envoy FILE`.
    ValidateEnvoy(Input),
    /// `validate policy FILE`.
    ValidatePolicy(Input),
    /// `validate snapshot FILE [--config CFG]`.
    ValidateSnapshot {
        /// The snapshot.
        snapshot: Input,
        /// The configuration it is checked against (the shipped policy when absent).
        config: Option<Input>,
    },
    /// `explain ...`.
    Explain(Box<ExplainArgs>),
    /// `policy [--config CFG | --policy FILE] [--lang ja|en|both]`.
    Policy {
        /// Where the policy comes from.
        source: PolicySource,
        /// Which labels to show.
        lang: Lang,
    },
}

/// A bad command line; the message names what is wrong, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// Options and positionals of one command line.
#[derive(Debug, Default)]
struct Scanned {
    positionals: Vec<String>,
    values: BTreeMap<&'static str, String>,
    flags: BTreeSet<&'static str>,
    help: bool,
}

impl Scanned {
    fn take(&mut self, name: &str) -> Option<String> {
        self.values.remove(name)
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.contains(name)
    }
}

/// Splits `args` into options and positionals, checking option names against the lists.
fn scan(
    command: &str,
    args: &[String],
    value_opts: &[&'static str],
    flag_opts: &[&'static str],
) -> Result<Scanned, UsageError> {
    let mut out = Scanned::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            out.positionals.extend(rest.by_ref().cloned());
            break;
        }
        if arg == "--help" || arg == "-h" {
            out.help = true;
            continue;
        }
        if arg == "-" || !arg.starts_with('-') {
            out.positionals.push(arg.clone());
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (arg.as_str(), None),
        };
        if let Some(known) = value_opts.iter().find(|o| **o == name) {
            let value = match inline {
                Some(v) => v,
                None => match rest.next() {
                    Some(v) if !v.starts_with("--") => v.clone(),
                    _ => return Err(usage(format!("`{known}` needs a value"))),
                },
            };
            if out.values.insert(known, value).is_some() {
                return Err(usage(format!("`{known}` given twice")));
            }
        } else if let Some(known) = flag_opts.iter().find(|o| **o == name) {
            if inline.is_some() {
                return Err(usage(format!("`{known}` takes no value")));
            }
            if !out.flags.insert(known) {
                return Err(usage(format!("`{known}` given twice")));
            }
        } else {
            return Err(usage(format!(
                "unknown option `{name}` for `consentctl {command}`"
            )));
        }
    }
    Ok(out)
}

/// Checks the number of positionals; the message says what was expected.
fn positionals(scanned: &Scanned, want: usize, what: &str) -> Result<(), UsageError> {
    let got = scanned.positionals.len();
    if got < want {
        return Err(usage(format!("missing {what}")));
    }
    if got > want {
        return Err(usage(format!(
            "unexpected argument at position {} (expected {what})",
            want + 1
        )));
    }
    Ok(())
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    let Some((first, rest)) = args.split_first() else {
        return Err(usage("no command given"));
    };
    match first.as_str() {
        "-h" | "--help" => Ok(Command::Help(HelpTopic::Main)),
        "help" => match rest.first().map(String::as_str) {
            None => Ok(Command::Help(HelpTopic::Main)),
            Some("validate") => Ok(Command::Help(HelpTopic::Validate)),
            Some("explain") => Ok(Command::Help(HelpTopic::Explain)),
            Some("policy") => Ok(Command::Help(HelpTopic::Policy)),
            Some(other) => Err(usage(format!("no help for `{other}`"))),
        },
        "-V" | "--version" => Ok(Command::Version),
        "validate" => parse_validate(rest),
        "explain" => parse_explain(rest),
        "policy" => parse_policy(rest),
        other if other.starts_with('-') => Err(usage(format!("unknown option `{other}`"))),
        other => Err(usage(format!("unknown command `{other}`"))),
    }
}

fn parse_validate(args: &[String]) -> Result<Command, UsageError> {
    let mut s = scan("validate", args, &["--config"], &[])?;
    if s.help {
        return Ok(Command::Help(HelpTopic::Validate));
    }
    let Some((kind, files)) = s.positionals.split_first() else {
        return Err(usage(
            "missing what to validate: `config`, `envoy`, `policy` or `snapshot`",
        ));
    };
    let (kind, files) = (kind.clone(), files.to_vec());
    s.positionals = files;
    let config = s.take("--config");
    if config.is_some() && kind != "snapshot" {
        return Err(usage("`--config` only applies to `validate snapshot`"));
    }
    positionals(&s, 1, "one FILE (or `-` for stdin)")?;
    let file = Input::parse(s.positionals.first().map_or("-", String::as_str));
    match kind.as_str() {
        "config" => Ok(Command::ValidateConfig(file)),
        "envoy" => Ok(Command::ValidateEnvoy(file)),
        "policy" => Ok(Command::ValidatePolicy(file)),
        "snapshot" => {
            let config = config.as_deref().map(Input::parse);
            if file == Input::Stdin && config == Some(Input::Stdin) {
                return Err(usage("only one input can come from stdin"));
            }
            Ok(Command::ValidateSnapshot {
                snapshot: file,
                config,
            })
        }
        other => Err(usage(format!(
            "cannot validate `{other}`: use `config`, `envoy`, `policy` or `snapshot`"
        ))),
    }
}

const EXPLAIN_VALUES: &[&str] = &[
    "--config",
    "--purpose",
    "--user",
    "--snapshot",
    "--uri-san",
    "--dns-san",
    "--cluster",
    "--dev-header-value",
    "--route-name",
    "--host",
    "--path",
    "--body",
];

fn parse_explain(args: &[String]) -> Result<Command, UsageError> {
    let mut s = scan(
        "explain",
        args,
        EXPLAIN_VALUES,
        &["--gpc", "--json-out", "--json"],
    )?;
    if s.help {
        return Ok(Command::Help(HelpTopic::Explain));
    }
    positionals(&s, 0, "options only")?;
    let config = s
        .take("--config")
        .ok_or_else(|| usage("`explain` needs `--config CFG`"))?;
    let purpose = s
        .take("--purpose")
        .ok_or_else(|| usage("`explain` needs `--purpose P`"))?;
    let caller = CallerArgs {
        uri_san: s.take("--uri-san"),
        dns_san: s.take("--dns-san"),
        cluster: s.take("--cluster"),
        dev_header_value: s.take("--dev-header-value"),
    };
    if caller.cluster.is_some() && (caller.uri_san.is_some() || caller.dns_san.is_some()) {
        return Err(usage(
            "`--cluster` (egress) cannot be combined with `--uri-san` / `--dns-san` (peer certificate)",
        ));
    }
    let route = RouteArgs {
        route_name: s.take("--route-name"),
        host: s.take("--host"),
        path: s.take("--path"),
    };
    let body = s.take("--body").as_deref().map(Input::parse);
    let json_out = s.flag("--json-out");
    if json_out && body.is_none() {
        return Err(usage("`--json-out` needs `--body FILE`"));
    }
    let args = ExplainArgs {
        config: Input::parse(&config),
        purpose,
        user: s.take("--user"),
        snapshot: s.take("--snapshot").as_deref().map(Input::parse),
        caller,
        route,
        gpc: s.flag("--gpc"),
        body,
        json_out,
        json: s.flag("--json"),
    };
    let stdin_inputs = [
        Some(&args.config),
        args.snapshot.as_ref(),
        args.body.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter(|i| **i == Input::Stdin)
    .count();
    if stdin_inputs > 1 {
        return Err(usage("only one input can come from stdin"));
    }
    Ok(Command::Explain(Box::new(args)))
}

fn parse_policy(args: &[String]) -> Result<Command, UsageError> {
    let mut s = scan("policy", args, &["--config", "--policy", "--lang"], &[])?;
    if s.help {
        return Ok(Command::Help(HelpTopic::Policy));
    }
    positionals(&s, 0, "options only")?;
    let source = match (s.take("--config"), s.take("--policy")) {
        (Some(_), Some(_)) => return Err(usage("give `--config` or `--policy`, not both")),
        (Some(c), None) => PolicySource::Config(Input::parse(&c)),
        (None, Some(p)) => PolicySource::Policy(Input::parse(&p)),
        (None, None) => PolicySource::Shipped,
    };
    let lang = match s.take("--lang").as_deref() {
        None | Some("both") => Lang::Both,
        Some("ja") => Lang::Ja,
        Some("en") => Lang::En,
        Some(_) => return Err(usage("`--lang` takes `ja`, `en` or `both`")),
    };
    Ok(Command::Policy { source, lang })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Command, UsageError> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&args)
    }

    fn explain(line: &str) -> ExplainArgs {
        match parse_str(line) {
            Ok(Command::Explain(args)) => *args,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn err(line: &str) -> String {
        match parse_str(line) {
            Err(UsageError(message)) => message,
            other => panic!("{line}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn validate_subcommands_take_one_file_and_dash_is_stdin() {
        assert_eq!(
            parse_str("validate config c.json"),
            Ok(Command::ValidateConfig(Input::File("c.json".into())))
        );
        assert_eq!(
            parse_str("validate config -"),
            Ok(Command::ValidateConfig(Input::Stdin))
        );
        assert_eq!(
            parse_str("validate envoy e.yaml"),
            Ok(Command::ValidateEnvoy(Input::File("e.yaml".into())))
        );
        assert_eq!(
            parse_str("validate snapshot s.json --config=c.json"),
            Ok(Command::ValidateSnapshot {
                snapshot: Input::File("s.json".into()),
                config: Some(Input::File("c.json".into())),
            })
        );
        assert_eq!(
            err("validate config"),
            "missing one FILE (or `-` for stdin)"
        );
        assert_eq!(
            err("validate config a b"),
            "unexpected argument at position 2 (expected one FILE (or `-` for stdin))"
        );
        assert!(err("validate nonsense f").contains("cannot validate `nonsense`"));
        assert!(err("validate config c.json --config x").contains("only applies"));
        assert!(err("validate snapshot - --config -").contains("stdin"));
    }

    #[test]
    fn explain_reads_every_option_in_either_form() {
        let a = explain(
            "explain --config c.json --purpose surveys --user=u-bob --snapshot s.json \
             --uri-san spiffe://ads.example/x --dns-san api.example.jp --route-name stats \
             --host h.example --path /p?q=1 --gpc --body b.json --json-out --json",
        );
        assert_eq!(a.config, Input::File("c.json".into()));
        assert_eq!(a.purpose, "surveys");
        assert_eq!(a.user.as_deref(), Some("u-bob"));
        assert_eq!(a.snapshot, Some(Input::File("s.json".into())));
        assert_eq!(a.caller.uri_san.as_deref(), Some("spiffe://ads.example/x"));
        assert_eq!(a.caller.dns_san.as_deref(), Some("api.example.jp"));
        assert_eq!(a.route.route_name.as_deref(), Some("stats"));
        assert_eq!(a.route.path.as_deref(), Some("/p?q=1"));
        assert!(a.gpc && a.json_out && a.json);
        assert_eq!(a.body, Some(Input::File("b.json".into())));
        let minimal = explain("explain --config c.json --purpose surveys");
        assert_eq!(minimal.user, None);
        assert!(!minimal.gpc && !minimal.json);
    }

    #[test]
    fn explain_errors_name_options_never_values() {
        assert_eq!(
            err("explain --purpose surveys"),
            "`explain` needs `--config CFG`"
        );
        assert_eq!(err("explain --config c"), "`explain` needs `--purpose P`");
        assert_eq!(
            err("explain --config c --purpose p --user u-1 --user u-2"),
            "`--user` given twice"
        );
        let e = err("explain --config c --purpose p --usr=u-secret");
        assert_eq!(e, "unknown option `--usr` for `consentctl explain`");
        let e = err("explain --config c --purpose p u-secret");
        assert!(!e.contains("u-secret"), "{e}");
        assert_eq!(
            err("explain --config c --purpose"),
            "`--purpose` needs a value"
        );
        assert_eq!(
            err("explain --config c --user --purpose p"),
            "`--user` needs a value"
        );
        assert!(
            err("explain --config c --purpose p --cluster x --uri-san y").contains("--cluster")
        );
        assert_eq!(
            err("explain --config c --purpose p --json-out"),
            "`--json-out` needs `--body FILE`"
        );
        assert_eq!(
            err("explain --config c --purpose p --gpc=1"),
            "`--gpc` takes no value"
        );
        assert!(err("explain --config - --purpose p --body -").contains("stdin"));
    }

    #[test]
    fn policy_takes_one_source_and_a_language() {
        assert_eq!(
            parse_str("policy"),
            Ok(Command::Policy {
                source: PolicySource::Shipped,
                lang: Lang::Both
            })
        );
        assert_eq!(
            parse_str("policy --policy p.json --lang ja"),
            Ok(Command::Policy {
                source: PolicySource::Policy(Input::File("p.json".into())),
                lang: Lang::Ja
            })
        );
        assert!(err("policy --config c --policy p").contains("not both"));
        assert!(err("policy --lang fr").contains("`--lang`"));
    }

    #[test]
    fn help_version_and_unknown_commands() {
        assert_eq!(parse_str("--help"), Ok(Command::Help(HelpTopic::Main)));
        assert_eq!(
            parse_str("help explain"),
            Ok(Command::Help(HelpTopic::Explain))
        );
        assert_eq!(
            parse_str("explain --help"),
            Ok(Command::Help(HelpTopic::Explain))
        );
        assert_eq!(
            parse_str("validate -h"),
            Ok(Command::Help(HelpTopic::Validate))
        );
        assert_eq!(
            parse_str("policy --help"),
            Ok(Command::Help(HelpTopic::Policy))
        );
        assert_eq!(parse_str("--version"), Ok(Command::Version));
        assert_eq!(err(""), "no command given");
        assert_eq!(err("frobnicate"), "unknown command `frobnicate`");
    }

    #[test]
    fn a_double_dash_ends_the_options() {
        assert_eq!(
            parse_str("validate config -- --odd-name.json"),
            Ok(Command::ValidateConfig(Input::File(
                "--odd-name.json".into()
            )))
        );
    }
}
