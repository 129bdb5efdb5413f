//! The `cronwarden` binary: parses the command line and hands over to the library's commands.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            // 2: the input was wrong (bad expression, zone or instant), as for clap's own errors.
            ExitCode::from(2)
        }
    }
}
