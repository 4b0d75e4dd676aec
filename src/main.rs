//! The `fal-proxy` binary: parse the command line and hand over to `cli::run`.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = fal_proxy::cli::Cli::parse();
    match fal_proxy::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fal-proxy: {message}");
            ExitCode::from(2)
        }
    }
}
