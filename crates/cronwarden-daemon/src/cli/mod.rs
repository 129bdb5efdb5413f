//! The command line: `cronwarden next`, `cronwarden explain` and `cronwarden validate` (the
//! daemon and the job and run commands come with the scheduler).

mod inspect;
mod schedule;
mod serve;
mod source;
mod tokens;
mod validate;

use clap::{Parser, Subcommand};

/// cronwarden: a cron manager that runs scheduled jobs reliably.
#[derive(Debug, Parser)]
#[command(name = "cronwarden", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: fire the configured jobs until SIGTERM or SIGINT.
    Serve(serve::ServeArgs),
    /// Look at the stored jobs.
    Jobs(inspect::JobsArgs),
    /// Look at run history.
    Runs(inspect::RunsArgs),
    /// Manage the HTTP API's tokens.
    Tokens(tokens::TokensArgs),
    /// Print the next fire instants of a schedule expression.
    Next(schedule::NextArgs),
    /// Say in plain English what a schedule means and how it behaves on DST changes.
    Explain(schedule::ExplainArgs),
    /// Check a configuration file (settings and jobs) without running anything.
    Validate(validate::ValidateArgs),
}

/// A failure to report on stderr; the message is complete (it may span several lines).
#[derive(Debug)]
pub struct CliError(String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs the command the user asked for.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Jobs(args) => inspect::jobs(args),
        Command::Runs(args) => inspect::runs(args),
        Command::Tokens(args) => tokens::tokens(args),
        Command::Next(args) => schedule::next(args),
        Command::Explain(args) => schedule::explain(args),
        Command::Validate(args) => validate::validate(args),
    }
}
