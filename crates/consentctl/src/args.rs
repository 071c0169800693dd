//! The command line, declared with `clap` (derive): the commands, their options and help.
//!
//! Options take `--name value` or `--name=value`; `--` ends the options; `-` names stdin.
//! Rules clap cannot declare (one input at most from stdin) are checked by [`Cli::check`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::input::Input;

/// Printed after the main help.
const MAIN_AFTER_HELP: &str = "\
CFG is a plugin configuration in JSON, or an Envoy YAML file (.yaml/.yml) holding one.
FILE `-` reads stdin. Nothing printed holds a user ID or a personal-data value.

Examples:
  consentctl validate envoy envoy-config/envoy-demo.yaml
  consentctl explain --config CFG --purpose P --user U [--body FILE --json-out]
  consentctl policy --lang en
  consentctl sign --key minisign.key snapshot.json

Exit codes: 0 success (explain: allow or redact), 1 invalid input or bad arguments,
            2 explain: the filter would block the request";

/// Printed after `explain --help`.
const EXPLAIN_AFTER_HELP: &str = "\
The output names the outcome, reason, purpose (basis, clause), party and how it was
identified, rule, GPC, consent versions, rights, and each removed category with its
reason. It never holds the user ID.

A route rule in dry-run mode (`dry_run`) is shown as `mode dry_run`: the filter only
records the decision. The exit code still follows the decision.

Exit codes: 0 allow or redact, 2 block (including a body the filter would refuse),
            1 invalid input or bad arguments";

/// Printed after `disclosure --help`.
const DISCLOSURE_AFTER_HELP: &str = "\
The report is the person's own data: it shows the user ID asked for and the keyed
reference the provision ledger files them under. The token is never printed.

Exit codes: 0 printed, 1 bad arguments, the source unreachable or refusing";

/// Check and explain what the consent filter does, with the filter's own engine
/// (consent-core), outside Envoy.
#[derive(Debug, Parser)]
#[command(
    name = "consentctl",
    version,
    after_help = MAIN_AFTER_HELP,
    arg_required_else_help = false
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// One run of the tool.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a plugin configuration, an Envoy YAML file, a policy or a consent snapshot.
    #[command(
        subcommand,
        after_help = "Exit code 0 valid, 1 invalid or unreadable.",
        arg_required_else_help = false
    )]
    Validate(Validate),
    /// Decide one request as the filter would, and why.
    ///
    /// Decides one request exactly as the filter would: the purpose and user headers named
    /// by the configuration, `sec-gpc: 1` with --gpc, the caller from the peer certificate
    /// SANs or the destination cluster (as `caller.from` says), the route rule from route
    /// name, host and path; then the inline consents, or with --snapshot the record in that
    /// snapshot (as served by the consent source, compiled as the fetcher does).
    #[command(after_help = EXPLAIN_AFTER_HELP)]
    Explain(Box<ExplainArgs>),
    /// Print the policy as tables.
    ///
    /// Prints the policy as tables: purposes (labels, clause, basis, without consent, joint
    /// use, changed in, categories, transforms), categories (labels, explicit grant,
    /// headers, query parameters, JSON and protobuf selectors, coarsening), parties (labels, kind,
    /// identities; a configuration's caller.identities replace the policy's) and the
    /// third-party provision purpose. Default: the shipped policy; labels in both languages.
    Policy(PolicyArgs),
    /// Fetch a person's disclosure report (開示) from the consent source.
    ///
    /// Asks the consent source for GET /users/{U}/disclosure (the reader role) and prints
    /// it: the consents in force with the policy version each was given under, withdrawals
    /// and objections, rights requests, the history, and the provisions of the person's data
    /// by recipient and purpose (first, last, count, categories), with the policy's labels.
    /// --html prints the printable page as the source serves it, --json the JSON.
    /// The source speaks plain HTTP (reach it through its proxy or a port-forward).
    #[command(after_help = DISCLOSURE_AFTER_HELP)]
    Disclosure(DisclosureArgs),
    /// gRPC: build the descriptor set the configuration's `grpc.descriptor_set` holds.
    #[command(subcommand)]
    Grpc(Grpc),
    /// Make an unencrypted minisign key pair (for signing snapshots; demo and tests).
    ///
    /// Writes the secret key (mode 0600, unencrypted: keep it to the signer) and the public
    /// key in minisign's formats, and prints the `RW...` line `snapshot.public_key` takes.
    /// `minisign -G -W` makes the same kind of pair.
    Keygen {
        /// Where the secret key goes.
        #[arg(long, value_name = "FILE", default_value = "minisign.key")]
        secret_key: PathBuf,
        /// Where the public key goes.
        #[arg(long, value_name = "FILE", default_value = "minisign.pub")]
        public_key: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Sign snapshot or delta files: writes FILE.minisig next to each (minisign format).
    ///
    /// The signature is what `minisign -S` writes (Ed25519, BLAKE2b-prehashed), so
    /// `minisign -V -P KEY -m FILE` verifies it; the trusted comment holds the time, the file
    /// name and, for a snapshot or delta, `version=N`. With --header, prints the
    /// `consent-signature` header value (base64 of the .minisig text) instead.
    Sign {
        /// An unencrypted minisign secret key (`consentctl keygen`, `minisign -G -W`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Print each file's consent-signature header value instead of writing files.
        #[arg(long)]
        header: bool,
        /// The files to sign.
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
    /// Check a file's minisign signature as the fetcher does.
    ///
    /// Checks FILE against FILE.minisig (or --signature) with the filter's own code: a
    /// prehashed or legacy minisign signature made with the key, of these exact bytes.
    Verify {
        /// The public key: the `RW...` line of a minisign .pub file, or the file.
        #[arg(long, value_name = "KEY")]
        public_key: String,
        /// The signature file (default: FILE.minisig).
        #[arg(long, value_name = "FILE.minisig")]
        signature: Option<PathBuf>,
        /// The signed file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print a shell completion script (e.g. `consentctl completions bash`).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// What `validate` checks.
#[derive(Debug, Subcommand)]
pub enum Validate {
    /// A plugin configuration (JSON), as the filter's on_configure compiles it.
    ///
    /// Compiles a plugin configuration with consent_core::compile_config (what the filter's
    /// on_configure does) and prints a summary; an error prints the one line the filter
    /// would log, naming the field.
    Config {
        /// The configuration (`-` for stdin).
        #[arg(value_name = "FILE")]
        file: Input,
    },
    /// Every plugin configuration in an Envoy YAML file, by line.
    ///
    /// Finds every `configuration` whose "@type" is google.protobuf.StringValue and whose
    /// `value` holds the plugin configuration, and checks each, with its line; a YAML alias
    /// (*name) of an anchored configuration is reported as reusing it.
    Envoy {
        /// The Envoy YAML file (`-` for stdin).
        #[arg(value_name = "FILE.yaml")]
        file: Input,
    },
    /// A policy document (CompiledPolicy::from_json).
    Policy {
        /// The policy (`-` for stdin).
        #[arg(value_name = "FILE")]
        file: Input,
    },
    /// A consent snapshot as the source serves it, compiled as the fetcher does.
    ///
    /// Parses a full snapshot (FullSnapshotDoc) and compiles it as the fetcher does
    /// (KeyedSnapshot::compile) against CFG's policy and subject keying (default: the
    /// shipped policy, plain subjects); ids the policy does not know are warnings (the live
    /// path skips them). Prints counts only, never a subject.
    Snapshot {
        /// The snapshot (`-` for stdin).
        #[arg(value_name = "FILE")]
        file: Input,
        /// The configuration to check it against (JSON or Envoy YAML).
        #[arg(long, value_name = "CFG")]
        config: Option<Input>,
    },
}

/// What `grpc` does.
#[derive(Debug, Subcommand)]
pub enum Grpc {
    /// Compile .proto files into a serialized FileDescriptorSet (imports included).
    ///
    /// Compiles the files with protox (no protoc needed), every import included and no
    /// source info, as `grpc.descriptor_set` takes it (base64 with --base64). Without -o
    /// the set is printed, which needs --base64.
    Descriptors {
        /// Directory imports and FILEs are resolved against (repeatable; default `.`).
        #[arg(long, short = 'I', value_name = "DIR")]
        proto_path: Vec<PathBuf>,
        /// The .proto files, relative to a proto path.
        #[arg(value_name = "FILE.proto", required = true)]
        files: Vec<PathBuf>,
        /// Write (or print) the set as base64 text.
        #[arg(long)]
        base64: bool,
        /// Write the set to this file.
        #[arg(long, short = 'o', value_name = "OUT")]
        output: Option<PathBuf>,
    },
}

/// Everything `consentctl explain` takes.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The plugin configuration (JSON, or an Envoy YAML file holding one).
    #[arg(long, value_name = "CFG")]
    pub config: Input,
    /// Value of the purpose header.
    #[arg(long, value_name = "P")]
    pub purpose: String,
    /// Value of the user-ID header (absent: not sent).
    #[arg(long, value_name = "U")]
    pub user: Option<String>,
    /// Consent snapshot to look the user up in (instead of the inline consents).
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<Input>,
    /// Who calls.
    #[command(flatten)]
    pub caller: CallerArgs,
    /// Which route.
    #[command(flatten)]
    pub route: RouteArgs,
    /// Send Sec-GPC: 1.
    #[arg(long)]
    pub gpc: bool,
    /// A request body: enforce it for this decision, as the filter would, and list the
    /// field paths acted on (multi-subject elements decided for their own person).
    #[arg(long, value_name = "FILE")]
    pub body: Option<Input>,
    /// The body's content type (JSON, form, multipart with its boundary, or any other:
    /// read as JSON when it parses, else unread).
    #[arg(
        long,
        value_name = "TYPE",
        requires = "body",
        default_value = "application/json"
    )]
    pub content_type: String,
    /// Also print the redacted body.
    #[arg(long, requires = "body")]
    pub json_out: bool,
    /// Print the explanation as JSON (consent_core::explain).
    #[arg(long)]
    pub json: bool,
}

/// The caller of an explained request, as Envoy would see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct CallerArgs {
    /// Peer certificate URI SAN, e.g. spiffe://ads.example/x.
    #[arg(long, value_name = "S")]
    pub uri_san: Option<String>,
    /// Peer certificate DNS SAN.
    #[arg(long, value_name = "S")]
    pub dns_san: Option<String>,
    /// Destination cluster (egress, caller.from: upstream_cluster).
    #[arg(long, value_name = "C", conflicts_with_all = ["uri_san", "dns_san"])]
    pub cluster: Option<String>,
    /// Value of the configuration's caller.dev_header.
    #[arg(long, value_name = "V")]
    pub dev_header_value: Option<String>,
}

/// The route of an explained request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct RouteArgs {
    /// Envoy route name (xds.route_name).
    #[arg(long, value_name = "R")]
    pub route_name: Option<String>,
    /// :authority.
    #[arg(long, value_name = "H")]
    pub host: Option<String>,
    /// :path.
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
}

/// Everything `consentctl policy` takes.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// The policy of this plugin configuration (JSON, or the one in an Envoy YAML file).
    #[arg(long, value_name = "CFG", conflicts_with = "policy")]
    config: Option<Input>,
    /// A policy document.
    #[arg(long, value_name = "FILE")]
    policy: Option<Input>,
    /// Which labels to show.
    #[arg(long, value_enum, default_value_t = Lang::Both)]
    pub lang: Lang,
}

impl PolicyArgs {
    /// Where the policy comes from.
    pub fn source(&self) -> PolicySource {
        match (&self.config, &self.policy) {
            (Some(config), _) => PolicySource::Config(config.clone()),
            (None, Some(policy)) => PolicySource::Policy(policy.clone()),
            (None, None) => PolicySource::Shipped,
        }
    }
}

/// Everything `consentctl disclosure` takes.
#[derive(Debug, Args)]
pub struct DisclosureArgs {
    /// The consent source's base URL, e.g. http://127.0.0.1:8082.
    #[arg(long, value_name = "URL")]
    pub source: String,
    /// The user ID to report on.
    #[arg(long, value_name = "U")]
    pub user: String,
    /// A bearer token with the reader role (prefer the environment variable).
    #[arg(
        long,
        value_name = "T",
        env = "CONSENTCTL_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Which labels to show.
    #[arg(long, value_enum, default_value_t = Lang::Both)]
    pub lang: Lang,
    /// Print the printable HTML page as the source serves it.
    #[arg(long, conflicts_with = "json")]
    pub html: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which labels the policy tables show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
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

impl Cli {
    /// The rule clap cannot declare: at most one input comes from stdin.
    pub fn check(&self) -> Result<(), &'static str> {
        let inputs: Vec<Option<&Input>> = match &self.command {
            Command::Validate(Validate::Snapshot { file, config }) => {
                vec![Some(file), config.as_ref()]
            }
            Command::Explain(args) => vec![
                Some(&args.config),
                args.snapshot.as_ref(),
                args.body.as_ref(),
            ],
            _ => Vec::new(),
        };
        let from_stdin = inputs.into_iter().flatten().filter(|i| **i == Input::Stdin);
        if from_stdin.count() > 1 {
            return Err("only one input can come from stdin");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]

    use super::*;
    use crate::usage_error::one_line;

    fn parse_str(line: &str) -> Result<Cli, String> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        let cli =
            Cli::try_parse_from(std::iter::once("consentctl".to_string()).chain(args.clone()))
                .map_err(|e| one_line(&e, &args))?;
        cli.check().map_err(|e| format!("error: {e}"))?;
        Ok(cli)
    }

    fn command(line: &str) -> Command {
        match parse_str(line) {
            Ok(cli) => cli.command,
            Err(e) => panic!("{line}: {e}"),
        }
    }

    fn validate(line: &str) -> Validate {
        match command(line) {
            Command::Validate(v) => v,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn explain(line: &str) -> ExplainArgs {
        match command(line) {
            Command::Explain(args) => *args,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn policy(line: &str) -> (PolicySource, Lang) {
        match command(line) {
            Command::Policy(args) => (args.source(), args.lang),
            other => panic!("{line}: {other:?}"),
        }
    }

    fn err(line: &str) -> String {
        match parse_str(line) {
            Err(message) => message,
            Ok(cli) => panic!("{line}: expected an error, got {cli:?}"),
        }
    }

    fn file(path: &str) -> Input {
        Input::File(path.into())
    }

    #[test]
    fn validate_subcommands_take_one_file_and_dash_is_stdin() {
        assert!(matches!(
            validate("validate config c.json"),
            Validate::Config { file: f } if f == file("c.json")
        ));
        assert!(matches!(
            validate("validate config -"),
            Validate::Config { file: Input::Stdin }
        ));
        assert!(matches!(
            validate("validate envoy e.yaml"),
            Validate::Envoy { file: f } if f == file("e.yaml")
        ));
        assert!(matches!(
            validate("validate snapshot s.json --config=c.json"),
            Validate::Snapshot { file: f, config: Some(c) } if f == file("s.json") && c == file("c.json")
        ));
        assert!(
            err("validate config").contains("required arguments were not provided: <FILE>"),
            "{}",
            err("validate config")
        );
        assert!(err("validate config a b").contains("unexpected value"));
        assert!(err("validate nonsense f").contains("unrecognized subcommand"));
        assert!(err("validate config c.json --config x").contains("'--config'"));
        assert!(err("validate snapshot - --config -").contains("stdin"));
    }

    #[test]
    fn explain_reads_every_option_in_either_form() {
        let a = explain(
            "explain --config c.json --purpose surveys --user=u-bob --snapshot s.json \
             --uri-san spiffe://ads.example/x --dns-san api.example.jp --route-name stats \
             --host h.example --path /p?q=1 --gpc --body b.json --json-out --json",
        );
        assert_eq!(a.config, file("c.json"));
        assert_eq!(a.purpose, "surveys");
        assert_eq!(a.user.as_deref(), Some("u-bob"));
        assert_eq!(a.snapshot, Some(file("s.json")));
        assert_eq!(a.caller.uri_san.as_deref(), Some("spiffe://ads.example/x"));
        assert_eq!(a.caller.dns_san.as_deref(), Some("api.example.jp"));
        assert_eq!(a.route.route_name.as_deref(), Some("stats"));
        assert_eq!(a.route.host.as_deref(), Some("h.example"));
        assert_eq!(a.route.path.as_deref(), Some("/p?q=1"));
        assert!(a.gpc && a.json_out && a.json);
        assert_eq!(a.body, Some(file("b.json")));
        let minimal = explain("explain --config c.json --purpose surveys");
        assert_eq!(minimal.user, None);
        assert!(!minimal.gpc && !minimal.json);
        let egress =
            explain("explain --config - --purpose p --cluster saitama-city --dev-header-value d");
        assert_eq!(egress.config, Input::Stdin);
        assert_eq!(egress.caller.cluster.as_deref(), Some("saitama-city"));
        assert_eq!(egress.caller.dev_header_value.as_deref(), Some("d"));
    }

    #[test]
    fn explain_errors_name_options_never_values() {
        assert!(err("explain --purpose surveys").contains("--config <CFG>"));
        assert!(err("explain --config c").contains("--purpose <P>"));
        let twice = err("explain --config c --purpose p --user u-1 --user u-2");
        assert!(
            twice.contains("'--user <U>' cannot be used multiple times"),
            "{twice}"
        );
        assert!(!twice.contains("u-1") && !twice.contains("u-2"), "{twice}");
        let e = err("explain --config c --purpose p --usr=u-secret");
        assert!(e.contains("unexpected argument '--usr'"), "{e}");
        assert!(!e.contains("u-secret"), "{e}");
        let e = err("explain --config c --purpose p u-secret");
        assert!(!e.contains("u-secret"), "{e}");
        assert!(
            err("explain --config c --purpose").contains("a value is required for '--purpose <P>'")
        );
        assert!(err("explain --config c --user --purpose p").contains("'--user <U>'"));
        let e = err("explain --config c --purpose p --cluster x --uri-san y");
        assert!(e.contains("--cluster") && e.contains("--uri-san"), "{e}");
        assert!(!e.contains(" x ") && !e.contains(" y"), "{e}");
        assert!(err("explain --config c --purpose p --json-out").contains("--body <FILE>"));
        let e = err("explain --config c --purpose p --gpc=secret-1");
        assert!(e.contains("'--gpc'") && !e.contains("secret-1"), "{e}");
        assert!(err("explain --config - --purpose p --body -").contains("stdin"));
    }

    #[test]
    fn policy_takes_one_source_and_a_language() {
        assert_eq!(policy("policy"), (PolicySource::Shipped, Lang::Both));
        assert_eq!(
            policy("policy --policy p.json --lang ja"),
            (PolicySource::Policy(file("p.json")), Lang::Ja)
        );
        assert_eq!(
            policy("policy --config c.yaml --lang=en"),
            (PolicySource::Config(file("c.yaml")), Lang::En)
        );
        assert!(err("policy --config c --policy p").contains("cannot be used with"));
        let e = err("policy --lang fr");
        assert!(
            e.contains("'--lang <LANG>'") && e.contains("ja, en, both"),
            "{e}"
        );
        assert!(!e.contains("fr"), "{e}");
    }

    #[test]
    fn disclosure_takes_a_source_a_user_and_one_output() {
        let a = match command("disclosure --source http://h:1 --user u-1 --lang ja --html") {
            Command::Disclosure(a) => a,
            other => panic!("{other:?}"),
        };
        assert_eq!((a.source.as_str(), a.user.as_str()), ("http://h:1", "u-1"));
        assert_eq!(a.lang, Lang::Ja);
        assert!(a.html && !a.json);
        let e = err("disclosure --source http://h:1 --user u-secret --html --json");
        assert!(e.contains("cannot be used with"), "{e}");
        assert!(!e.contains("u-secret"), "{e}");
        assert!(err("disclosure --user u-1").contains("--source <URL>"));
        let e = err("disclosure --source http://h:1 --user u-1 --token");
        assert!(e.contains("'--token <T>'"), "{e}");
    }

    #[test]
    fn help_version_and_unknown_commands() {
        for line in [
            "--help",
            "-h",
            "help explain",
            "explain --help",
            "validate -h",
            "policy --help",
            "--version",
        ] {
            let args = std::iter::once("consentctl").chain(line.split_whitespace());
            let e = Cli::try_parse_from(args).err();
            assert!(
                e.as_ref().is_some_and(|e| !e.use_stderr()),
                "{line} prints on stdout: {e:?}"
            );
        }
        assert!(err("").contains("'consentctl' requires a subcommand"));
        assert!(err("validate").contains("'consentctl validate' requires a subcommand"));
        assert!(err("policy --lang fr").ends_with("(see `consentctl policy --help`)"));
        let e = err("frobnicate-4711");
        assert!(
            e.contains("unrecognized subcommand") && !e.contains("4711"),
            "{e}"
        );
        assert!(matches!(
            command("completions bash"),
            Command::Completions { .. }
        ));
    }

    #[test]
    fn a_double_dash_ends_the_options() {
        assert!(matches!(
            validate("validate config -- --odd-name.json"),
            Validate::Config { file: f } if f == file("--odd-name.json")
        ));
    }
}
