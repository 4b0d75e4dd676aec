//! The `fal-proxy` binary: parse the command line and hand over to `cli::run`.

use clap::Parser;
use std::process::ExitCode;

// mimalloc: malloc/free were ~13% of CPU per small request under glibc's allocator in the
// S1 profile (bench/), and large request bodies (S3) churn big buffers. Built with `no_thp`:
// with transparent huge pages its arenas took 2 MB pages and the idle RSS went 13 -> 21 MB.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
