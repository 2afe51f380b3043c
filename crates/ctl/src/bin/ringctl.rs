//! `ringctl`: the Ringcache admin CLI (the commands live in the `ringcache_ctl` library).

use std::process::ExitCode;

use clap::Parser;
use ringcache_ctl::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return ringcache_ctl::usage_error(&e),
    };
    ringcache_ctl::init_tracing(cli.global.verbose);
    ringcache_ctl::run(cli)
}
