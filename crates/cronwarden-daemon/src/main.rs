//! The `cronwarden` binary: parses the command line and hands over to the library's commands.

use std::process::ExitCode;

use clap::Parser;

mod cli;

// Each run allocates and frees a handful of small objects; with thousands of runs due at one
// instant, glibc's allocator made their starts ~10 ms later at the 99th percentile than this
// one (BENCHMARKS.md, the scheduler's burst).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
