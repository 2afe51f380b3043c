//! `ringctl`, the Ringcache admin CLI, as a library: the binary only parses arguments,
//! sets up logging and calls [`run`].
//!
//! Commands are nouns and verbs (clap derive). Each prints a human table by default
//! and one line of JSON with `--json`; on failure it prints one line `ringctl:
//! <message>` on stderr and exits non-zero ([`Status`] lists the codes). This crate
//! holds no cluster logic: data commands go through `ringcache-client`, certificates
//! through `ringcache-tls`, and `local up` runs the real `ringcached` binary.
//!
//! # Layout
//! - `cli`: the argument types ([`Cli`]).
//! - `certs`: `certs init`, and the bundle `local up` creates or reuses.
//! - `local`: `local up` (write configs, start and supervise `ringcached` nodes, wait
//!   for each to answer and for the cluster to form), `local add|stop|kill|start` and
//!   `local down`.
//! - `process`: finding `ringcached`, pid liveness, signals (via `kill(1)`).
//! - `connect`: the client configuration from `-c FILE`, flags, or the local default.
//! - `data`: `ping`, `get`, `set`, `del`, `stats`; the connection for every command
//!   that talks to a node.
//! - `namespaces`: `ns list`, `ns show`, `ns create`, `ns alter`.
//! - `ns_config`: the settings `ns create`/`ns alter` send (`--file`, flags, `--set`).
//! - `write_behind`: `writebehind status` and `writebehind flush`.
//! - `cluster`: `cluster status|members|ring|moves|init|join|drain|remove` and `locate`.
//! - `cluster_view`: what those show (tables, ring balance, a key's replicas), pure.
//! - `bench`: `bench`, the closed-loop load generator (Ringcache, and Redis with
//!   `--redis`).
//! - `output`: tables, value rendering (UTF-8 or hex), JSON.
//!
//! # Example
//! Run with: `cargo run -p ringcache-ctl --bin ringctl -- local up --detach`
//! ```no_run
//! use clap::Parser;
//! use ringcache_ctl::{Cli, Status, error_line, execute};
//!
//! let cli = Cli::parse_from(["ringctl", "--json", "get", "greeting"]);
//! match execute(cli) {
//!     Ok(Status::NotFound) => eprintln!("a miss"),
//!     Ok(_) => {} // the JSON is on stdout
//!     Err(e) => eprintln!("ringctl: {}", error_line(&e)),
//! }
//! ```

mod bench;
mod certs;
mod cli;
mod cluster;
mod cluster_view;
mod connect;
mod data;
mod local;
mod namespaces;
mod ns_config;
mod output;
mod process;
mod write_behind;

use std::process::ExitCode;

pub use cli::{
    BenchArgs, BenchOp, CertsCommand, CertsInitArgs, Cli, ClusterCommand, ClusterDrainArgs,
    ClusterJoinArgs, ClusterRemoveArgs, Command, DelArgs, GetArgs, GlobalArgs, KeyDist,
    LocalAddArgs, LocalCommand, LocalDownArgs, LocalNodeArgs, LocalStartArgs, LocalUpArgs,
    LocateArgs, NsCommand, NsConfigArgs, NsSettings, NsShowArgs, SetArgs, WriteBehindCommand,
    WriteBehindFlushArgs, WriteBehindStatusArgs,
};
pub use ns_config::Setting;

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Done (exit 0).
    Success,
    /// `get` found no value (exit [`EXIT_NOT_FOUND`]).
    NotFound,
}

/// Exit code of a failed command.
pub const EXIT_ERROR: u8 = 1;
/// Exit code of a command line clap refused.
pub const EXIT_USAGE: u8 = 2;
/// Exit code of `get` when there is no value.
pub const EXIT_NOT_FOUND: u8 = 3;
/// Exit code of a conditional write whose condition did not hold (`--if-absent`,
/// `--if-version`).
pub const EXIT_CONDITION_FAILED: u8 = 4;

impl From<Status> for ExitCode {
    fn from(s: Status) -> Self {
        match s {
            Status::Success => ExitCode::SUCCESS,
            Status::NotFound => ExitCode::from(EXIT_NOT_FOUND),
        }
    }
}

/// Runs one command.
///
/// # Errors
/// Whatever stopped the command, with context; [`error_line`] renders it.
pub fn execute(cli: Cli) -> anyhow::Result<Status> {
    let Cli { global, command } = cli;
    match &command {
        Command::Certs(CertsCommand::Init(a)) => {
            certs::init(a, global.json)?;
            Ok(Status::Success)
        }
        Command::Local(LocalCommand::Down(a)) => local::down(a, global.json),
        Command::Local(LocalCommand::Up(a)) => runtime()?.block_on(local::up(a, global.json)),
        Command::Local(LocalCommand::Add(a)) => runtime()?.block_on(local::add(a, global.json)),
        Command::Local(LocalCommand::Stop(a)) => local::stop(a, "TERM", global.json),
        Command::Local(LocalCommand::Kill(a)) => local::stop(a, "KILL", global.json),
        Command::Local(LocalCommand::Start(a)) => runtime()?.block_on(local::start(a, global.json)),
        Command::Bench(a) => bench::execute(&global, a),
        Command::Ping
        | Command::Get(_)
        | Command::Set(_)
        | Command::Del(_)
        | Command::Stats
        | Command::Ns(_)
        | Command::WriteBehind(_)
        | Command::Cluster(_)
        | Command::Locate(_) => runtime()?.block_on(data::run(&global, &command)),
    }
}

/// Runs one command and reports the outcome the CLI way: one line `ringctl: <message>`
/// on stderr for an error, and the exit code.
pub fn run(cli: Cli) -> ExitCode {
    match execute(cli) {
        Ok(status) => status.into(),
        Err(e) => {
            eprintln!("ringctl: {}", error_line(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The exit code for an error: [`EXIT_CONDITION_FAILED`] for a failed condition,
/// [`EXIT_ERROR`] otherwise.
#[must_use]
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let condition_failed = e.chain().any(|c| {
        c.is::<data::ConditionNotMet>()
            || c.downcast_ref::<ringcache_client::Error>()
                .is_some_and(|c| c.code() == Some(ringcache_client::ErrorCode::ConditionFailed))
    });
    if condition_failed {
        EXIT_CONDITION_FAILED
    } else {
        EXIT_ERROR
    }
}

/// The error and its causes on one line.
#[must_use]
pub fn error_line(e: &anyhow::Error) -> String {
    one_line(&format!("{e:#}"))
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reports a command line clap refused as one line on stderr (help and version print
/// as usual) and returns the exit code.
#[must_use]
pub fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.print().ok();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE));
    }
    let text = e.to_string();
    // clap's message, without the usage and the "try --help" footer.
    let end = ["\nUsage:", "\nFor more information"]
        .iter()
        .filter_map(|m| text.find(m))
        .min()
        .unwrap_or(text.len());
    let message = one_line(text[..end].trim_start().trim_start_matches("error: "));
    eprintln!(
        "ringctl: {} (see `ringctl --help`)",
        message.replace(" tip: ", "; tip: ")
    );
    ExitCode::from(EXIT_USAGE)
}

/// Logs to stderr: nothing by default (errors are reported by [`run`]), info with `-v`,
/// debug with `-vv`; `RUST_LOG` overrides.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "off",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
