//! Bad command lines as one line on stderr, in clap's wording, naming options and commands
//! but never a value the user typed (a value may be a user ID): clap's own rendering quotes
//! values and runs over several lines.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::CommandFactory;

use crate::args::Cli;

/// The context `kind` of `error` as text (lists joined with `, `).
fn context(error: &clap::Error, kind: ContextKind) -> Option<String> {
    match error.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(list) => Some(list.join(", ")),
        ContextValue::StyledStr(s) => Some(s.to_string()),
        ContextValue::StyledStrs(list) => Some(
            list.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    }
}

/// The (sub)command the arguments name, from the definitions only: `consentctl explain`.
fn command_path(args: &[String]) -> String {
    let mut command = Cli::command();
    let mut path = vec![command.get_name().to_string()];
    for arg in args {
        if !command.has_subcommands() {
            break;
        }
        if arg.starts_with('-') {
            continue;
        }
        let Some(sub) = command.find_subcommand(arg).cloned() else {
            break;
        };
        path.push(sub.get_name().to_string());
        command = sub;
    }
    path.join(" ")
}

/// An option as typed (`--usr=value` or `-x`), without any value; `None` for a value.
fn option_name(typed: &str) -> Option<&str> {
    typed
        .starts_with('-')
        .then(|| typed.split('=').next().unwrap_or(typed))
}

/// The message of `error`, without any value the user typed.
fn message(error: &clap::Error, command: &str) -> String {
    let arg = context(error, ContextKind::InvalidArg).unwrap_or_default();
    let suggestion = context(error, ContextKind::SuggestedArg)
        .or_else(|| context(error, ContextKind::SuggestedSubcommand))
        .map(|s| format!("; a similar one exists: '{s}'"))
        .unwrap_or_default();
    match error.kind() {
        ErrorKind::UnknownArgument => match option_name(&arg) {
            Some(name) => format!("unexpected argument '{name}' found{suggestion}"),
            None => "unexpected value found where none is expected".to_string(),
        },
        ErrorKind::InvalidSubcommand => format!("unrecognized subcommand{suggestion}"),
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            format!("'{command}' requires a subcommand")
        }
        ErrorKind::MissingRequiredArgument => {
            format!("the following required arguments were not provided: {arg}")
        }
        ErrorKind::InvalidValue => {
            let typed = context(error, ContextKind::InvalidValue).unwrap_or_default();
            let valid = context(error, ContextKind::ValidValue)
                .filter(|v| !v.is_empty())
                .map(|v| format!("; possible values: {v}"))
                .unwrap_or_default();
            if typed.is_empty() {
                format!("a value is required for '{arg}' but none was supplied{valid}")
            } else {
                format!("invalid value for '{arg}'{valid}")
            }
        }
        ErrorKind::ArgumentConflict => match context(error, ContextKind::PriorArg) {
            Some(prior) if prior != arg => {
                format!("the argument '{arg}' cannot be used with '{prior}'")
            }
            _ => format!("the argument '{arg}' cannot be used multiple times"),
        },
        ErrorKind::TooManyValues => {
            format!("unexpected value for '{arg}' found; no more were expected")
        }
        ErrorKind::TooFewValues | ErrorKind::WrongNumberOfValues => {
            format!("wrong number of values for '{arg}'")
        }
        ErrorKind::NoEquals => format!("'{arg}' needs `=` before its value"),
        ErrorKind::InvalidUtf8 => "an argument is not UTF-8".to_string(),
        _ => "invalid arguments".to_string(),
    }
}

/// `error` about the command line `args` (without the program name) as one line:
/// `error: MESSAGE (see `consentctl COMMAND --help`)`.
pub fn one_line(error: &clap::Error, args: &[String]) -> String {
    let command = command_path(args);
    format!(
        "error: {} (see `{command} --help`)",
        message(error, &command)
    )
}
