//! `consentctl`: operators' CLI for the consent filter. It validates plugin
//! configurations (JSON or inside Envoy YAML), policies and consent snapshots, explains
//! one request's decision, prints the policy as tables, and makes and checks the minisign
//! signatures of snapshot files, all with `consent-core`, the engine the filter itself
//! runs: nothing here decides, parses or verifies on its own. It also fetches a person's
//! disclosure report from the consent source.
//!
//! Exit codes: 0 success (explain: allow or redact), 1 invalid input or bad arguments,
//! 2 explain: block.

mod args;
mod config_source;
mod disclosure;
mod explain;
mod explain_render;
mod grpc;
mod input;
mod policy_table;
mod report;
mod signing;
mod snapshot_check;
mod text;
mod usage_error;
mod validate;

use std::io::Write;
use std::process::ExitCode;

use args::{Cli, Command, Grpc, Validate};
use clap::{CommandFactory, Parser};
use report::{Failure, Report, EXIT_FAILURE};

/// Runs one parsed command.
fn run(command: &Command) -> Result<Report, Failure> {
    match command {
        Command::Validate(Validate::Config { file }) => validate::config(file),
        Command::Validate(Validate::Envoy { file }) => validate::envoy(file),
        Command::Validate(Validate::Policy { file }) => validate::policy(file),
        Command::Validate(Validate::Snapshot { file, config }) => {
            snapshot_check::run(file, config.as_ref())
        }
        Command::Explain(args) => explain::run(args),
        Command::Grpc(Grpc::Descriptors {
            proto_path,
            files,
            base64,
            output,
        }) => grpc::descriptors(proto_path, files, *base64, output.as_ref()),
        Command::Policy(args) => policy_table::run(&args.source(), args.lang),
        Command::Disclosure(args) => disclosure::run(args),
        Command::Keygen {
            secret_key,
            public_key,
            force,
        } => signing::keygen(secret_key, public_key, *force),
        Command::Sign { key, header, files } => signing::sign(key, files, *header),
        Command::Verify {
            public_key,
            signature,
            file,
        } => signing::verify(public_key, file, signature.as_deref()),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "consentctl", &mut script);
            Ok(Report::ok(String::from_utf8_lossy(&script).into_owned()))
        }
    }
}

/// The parsed command line, or how the run ends without running a command: help and
/// the version (printed by clap on stdout, exit 0), or one line about bad arguments.
fn parse() -> Result<Cli, Result<(), Failure>> {
    let cli = Cli::try_parse().map_err(|e| {
        if e.use_stderr() {
            let args: Vec<String> = std::env::args_os()
                .skip(1)
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            Err(Failure::new(usage_error::one_line(&e, &args)))
        } else {
            // A closed pipe (`| head`) is not worth an error message.
            let _ = e.print();
            Ok(())
        }
    })?;
    cli.check().map_err(|rule| {
        Err(Failure::new(format!(
            "error: {rule} (see `consentctl --help`)"
        )))
    })?;
    Ok(cli)
}

fn main() -> ExitCode {
    let result = match parse() {
        Ok(cli) => run(&cli.command),
        Err(Ok(())) => return ExitCode::SUCCESS,
        Err(Err(failure)) => Err(failure),
    };
    match result {
        Ok(report) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not worth a panic or an error message.
            let _ = stdout.write_all(report.out.as_bytes());
            let _ = stdout.flush();
            let mut stderr = std::io::stderr().lock();
            for note in &report.notes {
                let _ = writeln!(stderr, "consentctl: {note}");
            }
            ExitCode::from(report.code)
        }
        Err(failure) => {
            let _ = writeln!(std::io::stderr().lock(), "consentctl: {failure}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
