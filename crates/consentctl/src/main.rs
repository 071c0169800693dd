//! `consentctl`: operators' CLI for the consent filter. It validates plugin
//! configurations (JSON or inside Envoy YAML), policies and consent snapshots, explains
//! one request's decision, and prints the policy as tables, all with `consent-core`, the
//! engine the filter itself runs: nothing here decides or parses on its own.
//!
//! Exit codes: 0 success (explain: allow or redact), 1 invalid input or bad arguments,
//! 2 explain: block.

mod args;
mod config_source;
mod explain;
mod explain_render;
mod help;
mod input;
mod policy_table;
mod report;
mod snapshot_check;
mod text;
mod validate;
mod yaml_extract;

use std::io::Write;
use std::process::ExitCode;

use args::Command;
use report::{Failure, Report, EXIT_FAILURE};

/// Runs one parsed command.
fn run(command: &Command) -> Result<Report, Failure> {
    match command {
        Command::Help(topic) => Ok(Report::ok(help::text(*topic).to_string())),
        Command::Version => Ok(Report::ok(format!(
            "consentctl {}\n",
            env!("CARGO_PKG_VERSION")
        ))),
        Command::ValidateConfig(input) => validate::config(input),
        Command::ValidateEnvoy(input) => validate::envoy(input),
        Command::ValidatePolicy(input) => validate::policy(input),
        Command::ValidateSnapshot { snapshot, config } => {
            snapshot_check::run(snapshot, config.as_ref())
        }
        Command::Explain(args) => explain::run(args),
        Command::Policy { source, lang } => policy_table::run(source, *lang),
    }
}

/// Arguments as UTF-8 strings; a non-UTF-8 argument is an error (without echoing it).
fn utf8_args() -> Result<Vec<String>, Failure> {
    std::env::args_os()
        .skip(1)
        .enumerate()
        .map(|(i, a)| {
            a.into_string()
                .map_err(|_| Failure::new(format!("argument {} is not UTF-8", i + 1)))
        })
        .collect()
}

fn main() -> ExitCode {
    let result = utf8_args().and_then(|args| {
        let command = args::parse(&args)
            .map_err(|e| Failure::new(format!("{e} (see `consentctl --help`)")))?;
        run(&command)
    });
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
