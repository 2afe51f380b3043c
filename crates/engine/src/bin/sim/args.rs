//! The command line.
//!
//! Hand-written rather than clap: the flags are few, and a usage error must be one line
//! naming the flag (clap's reports span several lines and add a usage block).

use std::ffi::OsString;
use std::path::PathBuf;

use ringcache_engine::Policy;

/// `--help` text.
pub(crate) const HELP: &str = "\
ringcache-sim: replay a cache trace through Ringcache's eviction engine and report miss ratios.

Usage:
  ringcache-sim --trace FILE --policy NAME[,NAME..] --mode objects|bytes --capacity N[,N..]
                [--format oracle-general|csv] [--shards N] [--limit-requests N] [--json] [--check]

Options:
  --trace FILE          the trace to replay (loaded into memory once, then replayed once
                        per policy x capacity)
  --format F            oracle-general: libCacheSim's binary oracleGeneral records (24 packed
                          little-endian bytes: u32 time, u64 id, u32 size, i64 next access;
                          only id and size are used)
                        csv: `key,size` per line, key any string (split at the last comma),
                          size a non-negative integer; an optional header line is skipped
                        default: from the file name (*.csv, *oracleGeneral*)
  --policy LIST         comma-separated: adaptive, lru, lfu, fifo, random, ttl, s3fifo, or
                        `all` for those seven; quick_cache and moka replay the same trace
                        through those crates (needs a build with `--features compare`)
  --mode M              objects: every object weighs 1, capacity counts entries
                        bytes: every object weighs its size, capacity counts bytes
  --capacity LIST       comma-separated; an integer is absolute (entries or bytes), a value
                        with a decimal point in (0, 1] is a fraction of the trace footprint
                        (distinct objects, or the sum of the first-seen sizes of distinct
                        objects in bytes mode): max(1, floor(fraction * footprint))
  --shards N            engine shards, rounded up to a power of two (default 1, so the policy
                        is measured without the effects of splitting it per shard; the
                        engine's own default shards by capacity). Also quick_cache's shards.
  --limit-requests N    replay only the first N requests of the trace
  --json                print a JSON array of rows instead of a table
  --check               after each engine replay, check the engine's internal invariants
  -h, --help            this text

Every request is a get; a miss inserts the object with an empty value, charged 1 (objects)
or its size (bytes). An object larger than the cache is a miss and is not cached. The
trace's timestamps are ignored: nothing expires. moka evicts asynchronously; the simulator
calls its run_pending_tasks() after every insert so it stays within its bound like the
others (this slows moka's requests/s down, not its miss ratio).

Output rows: trace, policy, mode, capacity, capacity_fraction, requests, hits, misses,
miss_ratio, byte_miss_ratio (missed bytes / requested bytes), requests_per_sec (replay loop
only). Progress goes to stderr. Exit status: 0 ok, 1 runtime error, 2 usage error.
";

/// Trace file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// libCacheSim's oracleGeneral binary records.
    OracleGeneral,
    /// `key,size` lines.
    Csv,
}

/// What an object weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Every object weighs 1; capacity counts entries.
    Objects,
    /// Every object weighs its size; capacity counts bytes.
    Bytes,
}

impl Mode {
    /// The name used on the command line and in the output.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Objects => "objects",
            Mode::Bytes => "bytes",
        }
    }
}

/// One `--capacity` item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CapacitySpec {
    /// Entries or bytes, as given.
    Absolute(u64),
    /// A fraction in (0, 1] of the trace footprint.
    Fraction(f64),
}

impl CapacitySpec {
    /// Parses `1000` (absolute) or `0.01` (fraction).
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.contains(['.', 'e', 'E']) {
            let f: f64 = s
                .parse()
                .map_err(|_| format!("{s:?} is neither an integer nor a fraction like 0.01"))?;
            if !(f > 0.0 && f <= 1.0) {
                return Err(format!("fraction {s} is not in (0, 1]"));
            }
            Ok(CapacitySpec::Fraction(f))
        } else {
            let n: u64 = s
                .parse()
                .map_err(|_| format!("{s:?} is neither an integer nor a fraction like 0.01"))?;
            if n == 0 {
                return Err("capacity must be at least 1".to_owned());
            }
            Ok(CapacitySpec::Absolute(n))
        }
    }

    /// The absolute capacity for a trace with this footprint, and the fraction it was
    /// given as (if any).
    pub(crate) fn resolve(self, footprint: u64) -> (u64, Option<f64>) {
        match self {
            CapacitySpec::Absolute(n) => (n, None),
            // f64 multiply then floor, exactly like scripts/engine-bench/run_libcachesim.py,
            // so both simulators pick the same absolute sizes.
            CapacitySpec::Fraction(f) => (((f * footprint as f64).floor() as u64).max(1), Some(f)),
        }
    }
}

/// A cache the simulator can replay through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SimPolicy {
    /// Ringcache's engine with this policy.
    Engine(Policy),
    /// `quick_cache::sync::Cache` (S3-FIFO-like CLOCK-Pro variant).
    #[cfg(feature = "compare")]
    QuickCache,
    /// `moka::sync::Cache` (window TinyLFU).
    #[cfg(feature = "compare")]
    Moka,
}

impl SimPolicy {
    /// The name in the output.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SimPolicy::Engine(p) => p.name(),
            #[cfg(feature = "compare")]
            SimPolicy::QuickCache => "quick_cache",
            #[cfg(feature = "compare")]
            SimPolicy::Moka => "moka",
        }
    }

    /// Parses one name (`all` is handled by [`parse_policies`]).
    fn parse(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "quick_cache" | "quick-cache" | "quickcache" | "moka" => compare_policy(&lower),
            _ => s.parse::<Policy>().map(SimPolicy::Engine).map_err(|_| {
                let names: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "unknown policy {s:?} (expected one of: {}, all, quick_cache, moka)",
                    names.join(", ")
                )
            }),
        }
    }
}

#[cfg(feature = "compare")]
fn compare_policy(lower: &str) -> Result<SimPolicy, String> {
    Ok(if lower == "moka" {
        SimPolicy::Moka
    } else {
        SimPolicy::QuickCache
    })
}

#[cfg(not(feature = "compare"))]
fn compare_policy(lower: &str) -> Result<SimPolicy, String> {
    Err(format!(
        "{lower} is only available in a simulator built with `--features compare` \
         (cargo run --release -p ringcache-engine --features compare --bin ringcache-sim -- ...)"
    ))
}

/// Parses a comma-separated `--policy` list.
fn parse_policies(s: &str) -> Result<Vec<SimPolicy>, String> {
    let mut out = Vec::new();
    for item in s.split(',') {
        if item.trim().is_empty() {
            return Err(format!("empty policy name in {s:?}"));
        }
        if item.trim().eq_ignore_ascii_case("all") {
            out.extend(Policy::ALL.into_iter().map(SimPolicy::Engine));
        } else {
            out.push(SimPolicy::parse(item)?);
        }
    }
    Ok(out)
}

/// Parses a comma-separated `--capacity` list.
fn parse_capacities(s: &str) -> Result<Vec<CapacitySpec>, String> {
    s.split(',').map(CapacitySpec::parse).collect()
}

/// A validated command line.
#[derive(Debug, Clone)]
pub(crate) struct Args {
    /// `--trace`.
    pub(crate) trace: PathBuf,
    /// `--format`, or inferred from the file name.
    pub(crate) format: Format,
    /// `--policy`, in the order given.
    pub(crate) policies: Vec<SimPolicy>,
    /// `--mode`.
    pub(crate) mode: Mode,
    /// `--capacity`, in the order given.
    pub(crate) capacities: Vec<CapacitySpec>,
    /// `--json`.
    pub(crate) json: bool,
    /// `--shards` (default 1).
    pub(crate) shards: usize,
    /// `--limit-requests`.
    pub(crate) limit_requests: Option<u64>,
    /// `--check`.
    pub(crate) check: bool,
}

/// What the command line asks for.
#[derive(Debug, Clone)]
pub(crate) enum Command {
    /// Print [`HELP`].
    Help,
    /// Run the simulation.
    Run(Args),
}

/// A bad command line; the message names the argument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UsageError {
    /// Not a known flag.
    #[error("unknown argument {arg:?}")]
    Unknown {
        /// What was given.
        arg: String,
    },
    /// A flag without its value.
    #[error("{arg} needs a value")]
    MissingValue {
        /// The flag.
        arg: String,
    },
    /// A required flag is absent.
    #[error("{arg} is required")]
    Missing {
        /// The flag.
        arg: &'static str,
    },
    /// A flag given twice.
    #[error("{arg} is given more than once")]
    Repeated {
        /// The flag.
        arg: String,
    },
    /// A value that does not parse.
    #[error("{arg}: {reason}")]
    Invalid {
        /// The flag.
        arg: String,
        /// Why.
        reason: String,
    },
}

fn invalid(arg: &str, reason: impl Into<String>) -> UsageError {
    UsageError::Invalid {
        arg: arg.to_owned(),
        reason: reason.into(),
    }
}

/// Sets a single-valued option, refusing a repeat.
fn set_once<T>(slot: &mut Option<T>, arg: &str, value: T) -> Result<(), UsageError> {
    if slot.is_some() {
        return Err(UsageError::Repeated {
            arg: arg.to_owned(),
        });
    }
    *slot = Some(value);
    Ok(())
}

fn parse_count(arg: &str, v: &str) -> Result<u64, UsageError> {
    match v.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(invalid(arg, format!("{v:?} is not a positive integer"))),
    }
}

/// The format a file name suggests.
fn infer_format(path: &std::path::Path) -> Option<Format> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".csv") {
        Some(Format::Csv)
    } else if name.contains("oraclegeneral") {
        Some(Format::OracleGeneral)
    } else {
        None
    }
}

/// Parses the arguments after the program name.
pub(crate) fn parse(argv: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut it = argv.into_iter();
    let mut trace: Option<PathBuf> = None;
    let mut format = None;
    let mut policies: Vec<SimPolicy> = Vec::new();
    let mut mode = None;
    let mut capacities: Vec<CapacitySpec> = Vec::new();
    let mut json = false;
    let mut shards = None;
    let mut limit_requests = None;
    let mut check = false;

    while let Some(raw) = it.next() {
        let Some(s) = raw.to_str() else {
            return Err(UsageError::Unknown {
                arg: raw.to_string_lossy().into_owned(),
            });
        };
        // `--flag=value` or `--flag value`.
        let (flag, inline) = match s.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(OsString::from(v))),
            _ => (s.to_owned(), None),
        };
        let takes_value = matches!(
            flag.as_str(),
            "--trace"
                | "--format"
                | "--policy"
                | "--mode"
                | "--capacity"
                | "--shards"
                | "--limit-requests"
        );
        if !takes_value {
            if inline.is_some() {
                return Err(invalid(&flag, "takes no value"));
            }
            match flag.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "--json" => json = true,
                "--check" => check = true,
                _ => return Err(UsageError::Unknown { arg: flag }),
            }
            continue;
        }
        let value = inline
            .or_else(|| it.next())
            .ok_or_else(|| UsageError::MissingValue { arg: flag.clone() })?;
        if flag == "--trace" {
            set_once(&mut trace, &flag, PathBuf::from(value))?;
            continue;
        }
        let v = value
            .to_str()
            .ok_or_else(|| invalid(&flag, "value is not valid UTF-8"))?;
        match flag.as_str() {
            "--format" => {
                let f = match v.trim().to_ascii_lowercase().as_str() {
                    "oracle-general" | "oraclegeneral" | "oracle_general" => Format::OracleGeneral,
                    "csv" => Format::Csv,
                    _ => {
                        return Err(invalid(
                            &flag,
                            format!("{v:?} is not oracle-general or csv"),
                        ));
                    }
                };
                set_once(&mut format, &flag, f)?;
            }
            "--policy" => policies.extend(parse_policies(v).map_err(|r| invalid(&flag, r))?),
            "--mode" => {
                let m = match v.trim().to_ascii_lowercase().as_str() {
                    "objects" => Mode::Objects,
                    "bytes" => Mode::Bytes,
                    _ => return Err(invalid(&flag, format!("{v:?} is not objects or bytes"))),
                };
                set_once(&mut mode, &flag, m)?;
            }
            "--capacity" => capacities.extend(parse_capacities(v).map_err(|r| invalid(&flag, r))?),
            "--shards" => {
                let n = parse_count(&flag, v)?;
                let n = usize::try_from(n)
                    .ok()
                    .filter(|n| *n <= 1 << 16)
                    .ok_or_else(|| invalid(&flag, format!("{v} is more than 65536")))?;
                set_once(&mut shards, &flag, n)?;
            }
            "--limit-requests" => {
                let n = parse_count(&flag, v)?;
                set_once(&mut limit_requests, &flag, n)?;
            }
            _ => unreachable!("takes_value lists exactly the flags handled above"),
        }
    }

    let trace = trace.ok_or(UsageError::Missing { arg: "--trace" })?;
    let format = match format {
        Some(f) => f,
        None => infer_format(&trace).ok_or_else(|| {
            invalid(
                "--format",
                "required: the file name is neither *.csv nor *oracleGeneral*",
            )
        })?,
    };
    if policies.is_empty() {
        return Err(UsageError::Missing { arg: "--policy" });
    }
    let mode = mode.ok_or(UsageError::Missing { arg: "--mode" })?;
    if capacities.is_empty() {
        return Err(UsageError::Missing { arg: "--capacity" });
    }
    Ok(Command::Run(Args {
        trace,
        format,
        policies,
        mode,
        capacities,
        json,
        shards: shards.unwrap_or(1),
        limit_requests,
        check,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Args, UsageError> {
        match parse(args.iter().map(OsString::from))? {
            Command::Run(a) => Ok(a),
            Command::Help => panic!("unexpected help"),
        }
    }

    #[test]
    fn capacity_integer_and_fraction() {
        assert_eq!(
            CapacitySpec::parse("1000"),
            Ok(CapacitySpec::Absolute(1000))
        );
        assert_eq!(
            CapacitySpec::parse(" 0.01 "),
            Ok(CapacitySpec::Fraction(0.01))
        );
        assert_eq!(CapacitySpec::parse("1.0"), Ok(CapacitySpec::Fraction(1.0)));
        assert_eq!(
            CapacitySpec::parse("1e-3"),
            Ok(CapacitySpec::Fraction(0.001))
        );
        for bad in ["0", "0.0", "1.5", "-3", "abc", "", "10%", "-0.1", "NaN"] {
            assert!(
                CapacitySpec::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn capacity_resolves_like_libcachesim() {
        // floor(0.01 * 12345) = 123; tiny fractions still give 1.
        assert_eq!(
            CapacitySpec::Fraction(0.01).resolve(12_345),
            (123, Some(0.01))
        );
        assert_eq!(CapacitySpec::Fraction(0.001).resolve(10), (1, Some(0.001)));
        assert_eq!(CapacitySpec::Fraction(1.0).resolve(77), (77, Some(1.0)));
        assert_eq!(CapacitySpec::Absolute(5).resolve(1_000), (5, None));
        // 0.1 * 30 is 3.0000000000000004 in f64: floor gives 3, as numpy/math.floor do.
        assert_eq!(CapacitySpec::Fraction(0.1).resolve(30), (3, Some(0.1)));
    }

    #[test]
    fn full_command_line() {
        let a = run(&[
            "--trace",
            "t.oracleGeneral",
            "--policy",
            "lru,s3fifo",
            "--policy=fifo",
            "--mode",
            "bytes",
            "--capacity",
            "100,0.5",
            "--json",
            "--shards",
            "4",
            "--limit-requests=10",
        ])
        .unwrap();
        assert_eq!(a.format, Format::OracleGeneral);
        assert_eq!(
            a.policies,
            vec![
                SimPolicy::Engine(Policy::Lru),
                SimPolicy::Engine(Policy::S3Fifo),
                SimPolicy::Engine(Policy::Fifo)
            ]
        );
        assert_eq!(a.mode, Mode::Bytes);
        assert_eq!(
            a.capacities,
            vec![CapacitySpec::Absolute(100), CapacitySpec::Fraction(0.5)]
        );
        assert!(a.json);
        assert_eq!(a.shards, 4);
        assert_eq!(a.limit_requests, Some(10));
    }

    #[test]
    fn defaults_and_all() {
        let a = run(&[
            "--trace",
            "x.csv",
            "--policy",
            "all",
            "--mode",
            "objects",
            "--capacity",
            "9",
        ])
        .unwrap();
        assert_eq!(a.format, Format::Csv);
        assert_eq!(a.policies.len(), Policy::ALL.len());
        assert_eq!(a.shards, 1);
        assert!(!a.json);
        assert_eq!(a.limit_requests, None);
    }

    #[test]
    fn errors_name_the_argument() {
        let base = [
            "--trace",
            "x.csv",
            "--policy",
            "lru",
            "--mode",
            "objects",
            "--capacity",
            "10",
        ];
        let with = |extra: &[&str]| {
            let mut v: Vec<&str> = base.to_vec();
            v.extend_from_slice(extra);
            run(&v).unwrap_err().to_string()
        };
        assert!(with(&["--capacity", "0"]).starts_with("--capacity:"));
        assert!(with(&["--policy", "nope"]).starts_with("--policy:"));
        assert!(with(&["--mode", "x"]).contains("--mode"));
        assert!(with(&["--shards", "0"]).starts_with("--shards:"));
        assert!(with(&["--limit-requests", "-1"]).starts_with("--limit-requests:"));
        assert!(with(&["--bogus"]).contains("--bogus"));
        assert!(with(&["--json=1"]).starts_with("--json:"));
        assert!(with(&["--format", "parquet"]).starts_with("--format:"));
        assert_eq!(
            run(&["--trace"]).unwrap_err(),
            UsageError::MissingValue {
                arg: "--trace".into()
            }
        );
        assert_eq!(
            run(&["--trace", "x.csv", "--mode", "objects", "--capacity", "1"]).unwrap_err(),
            UsageError::Missing { arg: "--policy" }
        );
        let unknown_ext = run(&[
            "--trace",
            "x.bin",
            "--policy",
            "lru",
            "--mode",
            "objects",
            "--capacity",
            "1",
        ]);
        assert!(
            unknown_ext
                .unwrap_err()
                .to_string()
                .starts_with("--format:")
        );
        // One line each: main prints them after a prefix.
        assert!(!with(&["--policy", "nope"]).contains('\n'));
    }

    #[test]
    fn compare_policies_need_the_feature() {
        let r = parse_policies("moka");
        if cfg!(feature = "compare") {
            assert_eq!(r.map(|v| v.len()), Ok(1));
        } else {
            assert!(r.unwrap_err().contains("--features compare"));
        }
    }

    #[test]
    fn help() {
        assert!(matches!(
            parse([OsString::from("--help")]),
            Ok(Command::Help)
        ));
        assert!(matches!(parse([OsString::from("-h")]), Ok(Command::Help)));
    }
}
