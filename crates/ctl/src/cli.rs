//! The command line: nouns and verbs (clap derive).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use ringcache_proto::NodeId;
use ringcache_proto::units::{parse_bytes, parse_duration};

use crate::ns_config::Setting;

/// Ringcache admin CLI: certificates, a local node, and data commands.
#[derive(Debug, Parser)]
#[command(
    name = "ringctl",
    version,
    propagate_version = true,
    after_help = "Output is a human table; --json prints machine-readable JSON instead.\n\
                  Errors print one line `ringctl: <message>` on stderr. Exit status: 0 ok,\n\
                  1 error, 2 usage error, 3 `get` found no value, 4 a --if-absent or\n\
                  --if-version condition did not hold.\n\n\
                  Start here:\n  \
                  ringctl local up --detach     # a node on 127.0.0.1, certificates included\n  \
                  ringctl set greeting hello\n  \
                  ringctl get greeting\n  \
                  ringctl local down\n\n\
                  A local cluster:\n  \
                  ringctl local up --nodes 3 --detach\n  \
                  ringctl cluster status\n  \
                  ringctl local add                 # a fourth node joins\n  \
                  ringctl locate greeting           # its partition and replicas"
)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,

    /// More logging on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true, help_heading = "Global options")]
    pub verbose: u8,

    /// Client configuration (TOML, as `ringctl local up` writes it). Default:
    /// ./.ringcache/local/client.toml when it exists.
    #[arg(
        short,
        long,
        env = "RINGCACHE_CONFIG",
        global = true,
        value_name = "FILE",
        help_heading = "Connection"
    )]
    pub config: Option<PathBuf>,

    /// Node address (repeatable or comma-separated); replaces the file's endpoints.
    #[arg(
        long = "endpoint",
        value_name = "HOST:PORT",
        value_delimiter = ',',
        global = true,
        help_heading = "Connection"
    )]
    pub endpoints: Vec<String>,

    /// Cluster CA certificate (PEM); overrides the file's `ca_cert`.
    #[arg(
        long = "ca",
        value_name = "FILE",
        global = true,
        help_heading = "Connection"
    )]
    pub ca_cert: Option<PathBuf>,

    /// Client certificate (PEM); overrides the file's `client_cert`.
    #[arg(
        long = "cert",
        value_name = "FILE",
        global = true,
        help_heading = "Connection"
    )]
    pub client_cert: Option<PathBuf>,

    /// Client private key (PEM); overrides the file's `client_key`.
    // The id differs from the flag: `set KEY` has a positional `key`.
    #[arg(
        long = "key",
        value_name = "FILE",
        global = true,
        help_heading = "Connection"
    )]
    pub client_key: Option<PathBuf>,

    /// Cluster certificate domain [default: the file's, else ringcache.local].
    #[arg(
        long,
        value_name = "DOMAIN",
        global = true,
        help_heading = "Connection"
    )]
    pub cluster_domain: Option<String>,

    /// Connect and request timeout, e.g. 2s [default: the file's, else 5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, global = true, help_heading = "Connection")]
    pub timeout: Option<Duration>,

    /// Namespace [default: "default"; `stats`, `ns list` and `writebehind` show every
    /// namespace unless one is given].
    #[arg(
        short,
        long = "ns",
        value_name = "NS",
        env = "RINGCACHE_NS",
        global = true,
        help_heading = "Connection"
    )]
    pub ns: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make certificates for a cluster.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Run a node on this machine for development.
    #[command(subcommand)]
    Local(LocalCommand),
    /// Round trip to a node.
    Ping,
    /// Print the value under KEY (exit 3 when there is none).
    Get(GetArgs),
    /// Store VALUE under KEY.
    Set(SetArgs),
    /// Remove KEY.
    #[command(visible_alias = "delete")]
    Del(DelArgs),
    /// Namespace counters: entries, memory, hits and misses, evictions, and for
    /// namespaces with a backing store: loads from it, its errors, background refreshes,
    /// and misses that waited for another request's load (coalesced).
    Stats,
    /// Namespaces: list, show, create and alter their settings at runtime.
    #[command(subcommand)]
    Ns(NsCommand),
    /// Write-behind queues: status (depth, age, rates, dead letters) and flush.
    #[command(subcommand, name = "writebehind", alias = "write-behind")]
    WriteBehind(WriteBehindCommand),
    /// Closed-loop load generator: throughput and latency percentiles, optionally
    /// against Redis with the identical workload.
    Bench(BenchArgs),
    /// Cluster membership, the partition table and moves: status, members, ring, moves,
    /// init, join, drain, remove.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Which partition KEY (in --ns, default "default") belongs to, and the nodes that
    /// hold it.
    Locate(LocateArgs),
}

/// `ringctl cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Leader, term, epoch, partitions and replication; every member with its state,
    /// role, partitions and memory (asked of each member; `unreachable` if it does not
    /// answer); then the moves in progress.
    Status,
    /// The member table alone.
    Members,
    /// Primaries and backups per node, each node's share of the partitions, and the
    /// ratio of the busiest node to the mean.
    Ring,
    /// Partition moves in progress: partition, from, to, state, entries copied.
    Moves,
    /// Start a cluster with the connected node as its only member (once, on a node not
    /// yet in a cluster).
    Init,
    /// Make the connected node (not yet in a cluster) join the cluster of a seed.
    Join(ClusterJoinArgs),
    /// Move every partition off NODE, then remove it; waits and shows progress unless
    /// --no-wait.
    Drain(ClusterDrainArgs),
    /// Remove NODE at once (for a dead node): its partitions are placed elsewhere,
    /// empty. Needs --yes.
    Remove(ClusterRemoveArgs),
}

/// `ringctl cluster join`
#[derive(Debug, Args)]
pub struct ClusterJoinArgs {
    /// A member's address (repeatable or comma-separated).
    #[arg(long = "seed", value_name = "HOST:PORT", value_delimiter = ',', required = true, value_parser = host_port)]
    pub seeds: Vec<String>,
}

/// `ringctl cluster drain`
#[derive(Debug, Args)]
pub struct ClusterDrainArgs {
    /// The node: its id, e.g. 3 (or node-3).
    #[arg(value_name = "NODE", value_parser = parse_node)]
    pub node: NodeId,
    /// Return once the drain has started.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the drain to finish.
    #[arg(long, default_value = "30m", value_name = "DURATION", value_parser = parse_duration, conflicts_with = "no_wait")]
    pub wait: Duration,
}

/// `ringctl cluster remove`
#[derive(Debug, Args)]
pub struct ClusterRemoveArgs {
    /// The node: its id, e.g. 3 (or node-3).
    #[arg(value_name = "NODE", value_parser = parse_node)]
    pub node: NodeId,
    /// Yes, remove it: the copies it held are lost (partitions whose only copy it was
    /// start empty elsewhere).
    #[arg(long)]
    pub yes: bool,
}

/// `ringctl locate`
#[derive(Debug, Args)]
pub struct LocateArgs {
    /// The key (UTF-8).
    pub key: String,
}

/// A node id as typed: `3` or `node-3`.
pub(crate) fn parse_node(s: &str) -> Result<NodeId, String> {
    let t = s.trim();
    let digits = t.strip_prefix("node-").unwrap_or(t);
    match digits.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(NodeId(n)),
        _ => Err(format!(
            "{s:?} is not a node id (a number from 1, e.g. 3 or node-3)"
        )),
    }
}

fn host_port(s: &str) -> Result<String, String> {
    match s.trim().rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(s.trim().to_owned())
        }
        _ => Err(format!("{s:?} is not HOST:PORT")),
    }
}

/// `ringctl certs ...`
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a CA, node certificates and a client certificate in a new bundle.
    Init(CertsInitArgs),
}

/// `ringctl certs init`
#[derive(Debug, Args)]
pub struct CertsInitArgs {
    /// Directory for the bundle (created; existing files are never replaced).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Node certificates to issue: node-1 .. node-N.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub nodes: u64,
    /// Name of the client certificate (lowercase letters, digits, '-').
    #[arg(long, default_value = "admin", value_name = "NAME")]
    pub client: String,
    /// The cluster's certificate domain.
    #[arg(long, default_value = "ringcache.local", value_name = "DOMAIN")]
    pub domain: String,
    /// Extra subject alternative name for node certificates (IP or DNS name;
    /// repeatable). 127.0.0.1 and localhost are always included.
    #[arg(long = "san", value_name = "NAME")]
    pub sans: Vec<String>,
}

/// `ringctl local ...`
#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Start a node on 127.0.0.1 (certificates and configs included). Runs in the
    /// foreground until Ctrl-C unless --detach.
    Up(LocalUpArgs),
    /// Stop the nodes `local up --detach` started.
    Down(LocalDownArgs),
    /// Add a node to the running local cluster: a certificate for the next id, a config
    /// with every current node as a seed; waits until it is an active member.
    Add(LocalAddArgs),
    /// Stop one node gracefully (SIGTERM) and wait for it to exit.
    Stop(LocalNodeArgs),
    /// Kill one node (SIGKILL), as a crash would.
    Kill(LocalNodeArgs),
    /// Start a stopped node again with its config and data.
    Start(LocalStartArgs),
}

/// `ringctl local up`
#[derive(Debug, Args)]
pub struct LocalUpArgs {
    /// Number of nodes: node-1 starts the cluster, the others join it.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub nodes: u64,
    /// State directory: certs/, node-K.toml and node-K/ (data, log, pid) per
    /// node K, client.toml.
    #[arg(long, default_value = crate::local::DEFAULT_DIR, value_name = "DIR")]
    pub dir: PathBuf,
    /// Leave the nodes running in the background and return.
    #[arg(long)]
    pub detach: bool,
    /// Memory bound of the `default` namespace, per node.
    #[arg(long, default_value = "256MiB", value_name = "SIZE", value_parser = parse_bytes)]
    pub memory: u64,
    /// UDP port of node-1; node-K listens on PORT+K-1 [default: the ports of an
    /// earlier run in DIR, else free ones].
    #[arg(long, default_value_t = 0, value_name = "PORT")]
    pub port: u16,
    /// How long to wait for every node to answer and (with a cluster) to be an active
    /// member.
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Duration,
    /// The ringcached binary [default: next to ringctl, else on PATH].
    #[arg(long, env = "RINGCACHED_BIN", value_name = "FILE")]
    pub ringcached: Option<PathBuf>,
}

/// `ringctl local down`
#[derive(Debug, Args)]
pub struct LocalDownArgs {
    /// State directory given to `local up`.
    #[arg(long, default_value = crate::local::DEFAULT_DIR, value_name = "DIR")]
    pub dir: PathBuf,
    /// How long to wait for a graceful stop.
    #[arg(long, default_value = "20s", value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Duration,
    /// Kill (SIGKILL) nodes still running after --wait.
    #[arg(long)]
    pub force: bool,
}

/// `ringctl local add`
#[derive(Debug, Args)]
pub struct LocalAddArgs {
    /// State directory given to `local up`.
    #[arg(long, default_value = crate::local::DEFAULT_DIR, value_name = "DIR")]
    pub dir: PathBuf,
    /// Memory bound of the `default` namespace on the new node.
    #[arg(long, default_value = "256MiB", value_name = "SIZE", value_parser = parse_bytes)]
    pub memory: u64,
    /// UDP port to listen on (0: a free one).
    #[arg(long, default_value_t = 0, value_name = "PORT")]
    pub port: u16,
    /// How long to wait for the node to be an active member.
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Duration,
    /// The ringcached binary [default: next to ringctl, else on PATH].
    #[arg(long, env = "RINGCACHED_BIN", value_name = "FILE")]
    pub ringcached: Option<PathBuf>,
}

/// `ringctl local stop` and `ringctl local kill`
#[derive(Debug, Args)]
pub struct LocalNodeArgs {
    /// The node: its id, e.g. 2 (or node-2).
    #[arg(value_name = "NODE", value_parser = parse_node)]
    pub node: NodeId,
    /// State directory given to `local up`.
    #[arg(long, default_value = crate::local::DEFAULT_DIR, value_name = "DIR")]
    pub dir: PathBuf,
    /// How long to wait for the node to exit.
    #[arg(long, default_value = "20s", value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Duration,
}

/// `ringctl local start`
#[derive(Debug, Args)]
pub struct LocalStartArgs {
    /// The node: its id, e.g. 2 (or node-2).
    #[arg(value_name = "NODE", value_parser = parse_node)]
    pub node: NodeId,
    /// State directory given to `local up`.
    #[arg(long, default_value = crate::local::DEFAULT_DIR, value_name = "DIR")]
    pub dir: PathBuf,
    /// How long to wait for the node to answer.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Duration,
    /// The ringcached binary [default: next to ringctl, else on PATH].
    #[arg(long, env = "RINGCACHED_BIN", value_name = "FILE")]
    pub ringcached: Option<PathBuf>,
}

/// `ringctl get`
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key (UTF-8).
    pub key: String,
}

/// `ringctl set`
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The key (UTF-8).
    pub key: String,
    /// The value (stored as the argument's UTF-8 bytes).
    pub value: String,
    /// Time to live, e.g. 30s, 10m [default: the namespace's].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ttl: Option<Duration>,
    /// Only store if KEY is absent.
    #[arg(long, conflicts_with = "if_version")]
    pub if_absent: bool,
    /// Only store if KEY's current version is V (compare-and-set).
    #[arg(long, value_name = "V")]
    pub if_version: Option<u64>,
}

/// `ringctl del`
#[derive(Debug, Args)]
pub struct DelArgs {
    /// The key (UTF-8).
    pub key: String,
    /// Only remove if KEY's current version is V.
    #[arg(long, value_name = "V")]
    pub if_version: Option<u64>,
}

/// `ringctl ns ...`
#[derive(Debug, Subcommand)]
pub enum NsCommand {
    /// List the namespaces with their main settings (policy, memory, read and write
    /// strategies, default TTL).
    List,
    /// Print a namespace's settings as TOML (--json: as a JSON object).
    Show(NsShowArgs),
    /// Create a namespace at runtime; settings not given take their defaults.
    #[command(after_help = NS_SETTINGS_HELP)]
    Create(NsConfigArgs),
    /// Change a namespace's settings at runtime; settings not given are kept.
    #[command(after_help = NS_SETTINGS_HELP)]
    Alter(NsConfigArgs),
}

/// The namespace schema, for `ns create --help` and `ns alter --help`.
const NS_SETTINGS_HELP: &str = "\
Settings (the node config's namespace table; the node checks them and names the field it
refuses):
  policy                  adaptive | lru | lfu | fifo | random | ttl
  memory                  e.g. \"64MiB\"
  default_ttl             e.g. \"10m\" (absent: no expiry)
  read                    cache-aside | read-through
  write                   cache-only | write-through | write-behind | write-around
  negative_ttl            how long a miss in the store is remembered
  refresh_ahead_factor    reload in the background after this share of the TTL (0 < f < 1)
  stale_while_revalidate  serve an expired value this long while reloading it
  store.kind              sqlite | postgres
  store.path | store.url | store.table | store.create_table | store.timeout | store.pool_size
  write_behind.queue_capacity | batch_size | batch_delay | max_attempts | retry_backoff
  write_behind.max_backoff | wal | fsync (always | interval | never) | fsync_interval

--file's table comes first, then the flags, then each --set. A --set VALUE is a TOML
boolean, integer or float when it reads as one, else a string (quote it to force a
string: --set 'store.table=\"500\"').

Examples:
  ringctl ns create users --read read-through --memory 256MiB --default-ttl 10m \\
      --set store.kind=sqlite --set store.path=/var/lib/ringcache/users.db
  ringctl ns create orders --file orders.toml --set write_behind.batch_size=500
  ringctl ns alter users --policy lru --set refresh_ahead_factor=0.8";

/// `ringctl ns show`
#[derive(Debug, Args)]
pub struct NsShowArgs {
    /// The namespace.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// `ringctl ns create` and `ringctl ns alter`
#[derive(Debug, Args)]
pub struct NsConfigArgs {
    /// The namespace.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The settings.
    #[command(flatten)]
    pub settings: NsSettings,
}

/// Namespace settings on the command line: a TOML file, common settings as flags, and
/// any setting as `--set KEY=VALUE`.
#[derive(Debug, Clone, Args)]
pub struct NsSettings {
    /// Start from this TOML file (a namespace table: `policy = "lru"`, `[store]`, ...).
    #[arg(long, value_name = "FILE.toml", help_heading = "Settings")]
    pub file: Option<PathBuf>,
    /// Set a setting by its dotted key, e.g. store.kind=postgres,
    /// write_behind.batch_size=500, write_behind.wal=true (repeatable).
    #[arg(long, value_name = "KEY=VALUE", help_heading = "Settings")]
    pub set: Vec<Setting>,
    /// Eviction policy: adaptive, lru, lfu, fifo, random, ttl.
    #[arg(long, value_name = "POLICY", help_heading = "Settings")]
    pub policy: Option<String>,
    /// Memory bound on each node, e.g. 64MiB.
    #[arg(long, value_name = "SIZE", value_parser = size_text, help_heading = "Settings")]
    pub memory: Option<String>,
    /// TTL of writes that give none, e.g. 10m.
    #[arg(long, value_name = "DURATION", value_parser = duration_text, help_heading = "Settings")]
    pub default_ttl: Option<String>,
    /// Read strategy: cache-aside, read-through.
    #[arg(long, value_name = "MODE", help_heading = "Settings")]
    pub read: Option<String>,
    /// Write strategy: cache-only, write-through, write-behind, write-around.
    #[arg(long, value_name = "MODE", help_heading = "Settings")]
    pub write: Option<String>,
}

/// A size as typed (the node parses it), once it reads as one.
fn size_text(s: &str) -> Result<String, String> {
    parse_bytes(s).map(|_| s.trim().to_owned())
}

/// A duration as typed (the node parses it), once it reads as one.
fn duration_text(s: &str) -> Result<String, String> {
    parse_duration(s).map(|_| s.trim().to_owned())
}

/// `ringctl writebehind ...`
#[derive(Debug, Subcommand)]
pub enum WriteBehindCommand {
    /// Queue depth and capacity, age of the oldest write, counters, flush rate, and the
    /// dead-letter list.
    Status(WriteBehindStatusArgs),
    /// Write every queued write to the store now; prints the status once done.
    Flush(WriteBehindFlushArgs),
}

/// `ringctl writebehind status`
#[derive(Debug, Args)]
pub struct WriteBehindStatusArgs {
    /// One namespace [default: --ns, else every write-behind namespace].
    #[arg(value_name = "NS")]
    pub namespace: Option<String>,
}

/// `ringctl writebehind flush`
#[derive(Debug, Args)]
pub struct WriteBehindFlushArgs {
    /// One namespace [default: --ns, else every write-behind namespace].
    #[arg(value_name = "NS")]
    pub namespace: Option<String>,
    /// How long to wait for the flush (replaces --timeout for this request). A flush
    /// still running then goes on on the node.
    #[arg(long, default_value = "2m", value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Duration,
}

/// How `ringctl bench` drives the Ringcache side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchDriver {
    /// Through `ringcache-client`: one `Client` per connection.
    Client,
    /// Raw request frames over one QUIC stream per connection, no client library.
    Lean,
}

/// `ringctl bench`
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Each of the N connections carries D request loops: a loop sends one \
    request, waits for its answer, records the latency and sends the next (closed loop), \
    so N x D requests are outstanding. Ringcache: one Client (one QUIC connection) per \
    connection. Redis (--redis): one TCP connection each, D commands pipelined, a new \
    one written as each reply arrives. The systems run one after the other, each with \
    its own warm-up. Keys are key:0 .. key:<K-1> on both.\n\n\
    Example:\n  \
    ringctl bench --fill --redis 127.0.0.1:6379 --depth 16 --duration 10s"
)]
pub struct BenchArgs {
    /// Connections (Ringcache: one Client, i.e. one QUIC connection, each).
    #[arg(long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: u32,
    /// Requests outstanding per connection (pipeline depth): D request loops share
    /// each connection.
    #[arg(long, default_value_t = 1, value_name = "D", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub depth: u32,
    /// Distinct keys: key:0 to key:K-1.
    #[arg(long, default_value_t = 1_000_000, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub keyspace: u64,
    /// Size of every value written (fill and SETs), e.g. 100 or 4KiB.
    #[arg(long, default_value = "100", value_name = "BYTES", value_parser = parse_bytes)]
    pub value_size: u64,
    /// What each request is.
    #[arg(long, value_enum, default_value_t = BenchOp::Get)]
    pub op: BenchOp,
    /// Share of GETs with --op mixed (the rest are SETs) [default: 0.9].
    #[arg(long, value_name = "RATIO", value_parser = parse_ratio)]
    pub get_ratio: Option<f64>,
    /// Which keys are asked for.
    #[arg(long, value_enum, default_value_t = KeyDist::Uniform)]
    pub dist: KeyDist,
    /// Zipf exponent with --dist zipf (key:0 is the most popular) [default: 0.99].
    #[arg(long, value_name = "ALPHA", value_parser = parse_alpha)]
    pub zipf_alpha: Option<f64>,
    /// Measured time, per system.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time before the measurement, per system.
    #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = parse_duration)]
    pub warmup: Duration,
    /// First write every key of the keyspace once (batched: set_many, Redis MSET),
    /// then measure.
    #[arg(long)]
    pub fill: bool,
    /// Also run the identical workload against the Redis server at HOST:PORT (after
    /// Ringcache) and print Ringcache's throughput as a ratio of Redis'.
    #[arg(long, value_name = "HOST:PORT")]
    pub redis: Option<String>,
    /// Run only the Redis side (no Ringcache connection needed), e.g. to profile the
    /// load generator or Redis alone.
    #[arg(long, requires = "redis")]
    pub redis_only: bool,
    /// How the Ringcache side is driven: `client`, through the client library (what an
    /// application pays); `lean`, raw protocol frames on one stream per connection, as
    /// lean as the Redis side's driver (what the node alone can do; one-node
    /// deployments only).
    #[arg(long, value_enum, default_value_t = BenchDriver::Client)]
    pub driver: BenchDriver,
    /// Load generator threads [default: one per CPU].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: Option<u32>,
    /// Seed of the key and operation choices (the same on both systems).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seed: u64,
}

/// `ringctl bench --op`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchOp {
    /// Only GETs.
    Get,
    /// Only SETs.
    Set,
    /// GETs and SETs, by --get-ratio.
    Mixed,
}

/// `ringctl bench --dist`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyDist {
    /// Every key equally likely.
    Uniform,
    /// Zipf: key:n has weight 1/(n+1)^alpha.
    Zipf,
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not a ratio from 0 to 1 (e.g. 0.9)")),
    }
}

fn parse_alpha(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(a) if a > 0.0 && a <= 10.0 => Ok(a),
        _ => Err(format!(
            "{s:?} is not a Zipf exponent: a number above 0 and at most 10 (e.g. 0.99)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        // Catches clashing ids (a global `--key` against `set KEY`), bad defaults, ...
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_command() {
        let a =
            Cli::try_parse_from(["ringctl", "-c", "x.toml", "--json", "get", "k"]).expect("before");
        let b =
            Cli::try_parse_from(["ringctl", "get", "k", "-c", "x.toml", "--json"]).expect("after");
        for cli in [a, b] {
            assert!(cli.global.json);
            assert_eq!(
                cli.global.config.as_deref(),
                Some(std::path::Path::new("x.toml"))
            );
            assert!(matches!(cli.command, Command::Get(GetArgs { ref key }) if key == "k"));
        }
    }

    #[test]
    fn the_key_flag_and_the_key_argument_are_distinct() {
        let cli =
            Cli::try_parse_from(["ringctl", "set", "k", "v", "--key", "c.key"]).expect("parse");
        assert_eq!(
            cli.global.client_key.as_deref(),
            Some(std::path::Path::new("c.key"))
        );
        assert!(matches!(cli.command, Command::Set(SetArgs { ref key, .. }) if key == "k"));
    }

    #[test]
    fn set_conditions_exclude_each_other() {
        let r = Cli::try_parse_from([
            "ringctl",
            "set",
            "k",
            "v",
            "--if-absent",
            "--if-version",
            "3",
        ]);
        assert!(r.is_err());
    }

    #[test]
    fn ns_settings_parse_from_flags_and_sets() {
        let cli = Cli::try_parse_from([
            "ringctl",
            "ns",
            "create",
            "users",
            "--file",
            "users.toml",
            "--set",
            "store.kind=sqlite",
            "--set",
            "write_behind.batch_size=500",
            "--policy",
            "lru",
            "--memory",
            "64MiB",
            "--default-ttl",
            "10m",
            "--read",
            "read-through",
            "--write",
            "write-behind",
        ])
        .expect("parse");
        let Command::Ns(NsCommand::Create(a)) = cli.command else {
            panic!("not ns create: {cli:?}");
        };
        assert_eq!(a.name, "users");
        let s = &a.settings;
        assert_eq!(s.file.as_deref(), Some(std::path::Path::new("users.toml")));
        let keys: Vec<String> = s.set.iter().map(Setting::key).collect();
        assert_eq!(keys, ["store.kind", "write_behind.batch_size"]);
        assert_eq!(s.set[1].value().as_integer(), Some(500));
        assert_eq!(s.policy.as_deref(), Some("lru"));
        // Sizes and durations are checked here and sent as typed.
        assert_eq!(s.memory.as_deref(), Some("64MiB"));
        assert_eq!(s.default_ttl.as_deref(), Some("10m"));
        assert_eq!(
            (s.read.as_deref(), s.write.as_deref()),
            (Some("read-through"), Some("write-behind"))
        );

        let cli = Cli::try_parse_from(["ringctl", "ns", "alter", "users", "--policy", "lfu"])
            .expect("parse");
        assert!(matches!(cli.command, Command::Ns(NsCommand::Alter(ref a)) if a.name == "users"));
        let cli = Cli::try_parse_from(["ringctl", "--json", "ns", "show", "users"]).expect("parse");
        assert!(matches!(cli.command, Command::Ns(NsCommand::Show(ref a)) if a.name == "users"));

        for bad in [
            &["ns", "create"][..],
            &["ns", "create", "x", "--set", "a..b=1"],
            &["ns", "create", "x", "--memory", "lots"],
            &["ns", "show"],
        ] {
            let args = [&["ringctl"][..], bad].concat();
            assert!(Cli::try_parse_from(&args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn writebehind_takes_an_optional_namespace() {
        let cli = Cli::try_parse_from(["ringctl", "writebehind", "status"]).expect("parse");
        assert!(matches!(
            cli.command,
            Command::WriteBehind(WriteBehindCommand::Status(WriteBehindStatusArgs {
                namespace: None
            }))
        ));
        let cli = Cli::try_parse_from([
            "ringctl",
            "write-behind",
            "flush",
            "orders",
            "--wait",
            "30s",
        ])
        .expect("the alias");
        let Command::WriteBehind(WriteBehindCommand::Flush(a)) = cli.command else {
            panic!("not flush: {cli:?}");
        };
        assert_eq!(a.namespace.as_deref(), Some("orders"));
        assert_eq!(a.wait, Duration::from_secs(30));
        let cli = Cli::try_parse_from(["ringctl", "writebehind", "flush"]).expect("parse");
        let Command::WriteBehind(WriteBehindCommand::Flush(a)) = cli.command else {
            panic!("not flush: {cli:?}");
        };
        assert_eq!(a.wait, Duration::from_secs(120));
    }

    #[test]
    fn cluster_commands_parse() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["ringctl"][..], args].concat());
        let cli =
            parse(&["cluster", "join", "--seed", "10.0.0.1:7700,10.0.0.2:7700"]).expect("seeds");
        let Command::Cluster(ClusterCommand::Join(a)) = cli.command else {
            panic!("not join: {cli:?}");
        };
        assert_eq!(a.seeds, ["10.0.0.1:7700", "10.0.0.2:7700"]);

        let cli = parse(&["cluster", "drain", "node-3", "--no-wait"]).expect("drain");
        let Command::Cluster(ClusterCommand::Drain(a)) = cli.command else {
            panic!("not drain: {cli:?}");
        };
        assert_eq!((a.node, a.no_wait), (NodeId(3), true));
        let cli = parse(&["cluster", "remove", "2", "--yes"]).expect("remove");
        assert!(matches!(
            cli.command,
            Command::Cluster(ClusterCommand::Remove(ClusterRemoveArgs {
                node: NodeId(2),
                yes: true
            }))
        ));
        let cli = parse(&["locate", "k", "--ns", "users", "--json"]).expect("locate");
        assert_eq!(cli.global.ns.as_deref(), Some("users"));
        assert!(matches!(cli.command, Command::Locate(LocateArgs { ref key }) if key == "k"));

        let cli = parse(&["local", "up", "--nodes", "3", "--port", "7700"]).expect("up");
        let Command::Local(LocalCommand::Up(a)) = cli.command else {
            panic!("not up: {cli:?}");
        };
        assert_eq!((a.nodes, a.port), (3, 7700));
        for (args, node) in [
            (&["local", "stop", "2"][..], 2),
            (&["local", "kill", "node-2"], 2),
            (&["local", "start", "4"], 4),
        ] {
            let cli = parse(args).expect("local NODE");
            let got = match cli.command {
                Command::Local(LocalCommand::Stop(a) | LocalCommand::Kill(a)) => a.node,
                Command::Local(LocalCommand::Start(a)) => a.node,
                other => panic!("{other:?}"),
            };
            assert_eq!(got, NodeId(node), "{args:?}");
        }

        for bad in [
            &["cluster", "join"][..],
            &["cluster", "join", "--seed", "nohost"],
            &["cluster", "join", "--seed", "h:0"],
            &["cluster", "drain", "0"],
            &["cluster", "drain", "x"],
            &["cluster", "drain", "3", "--no-wait", "--wait", "1s"],
            &["cluster", "remove"],
            &["local", "up", "--nodes", "0"],
            &["local", "up", "--nodes", "65"],
            &["local", "stop"],
            &["locate"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bench_defaults_and_bad_values() {
        let cli = Cli::try_parse_from(["ringctl", "bench"]).expect("defaults");
        let Command::Bench(b) = cli.command else {
            panic!("not bench: {cli:?}");
        };
        assert_eq!((b.connections, b.depth, b.keyspace), (50, 1, 1_000_000));
        assert_eq!(b.value_size, 100);
        assert_eq!((b.op, b.dist), (BenchOp::Get, KeyDist::Uniform));
        assert_eq!(
            (b.duration, b.warmup),
            (Duration::from_secs(10), Duration::from_secs(2))
        );
        assert!(!b.fill && b.redis.is_none() && !b.redis_only);
        assert_eq!(b.driver, BenchDriver::Client);

        let cli = Cli::try_parse_from([
            "ringctl",
            "--json",
            "bench",
            "--op",
            "mixed",
            "--get-ratio",
            "0.5",
            "--dist",
            "zipf",
            "--zipf-alpha",
            "1.2",
            "--value-size",
            "1KiB",
            "--redis",
            "127.0.0.1:6379",
        ])
        .expect("parse");
        assert!(cli.global.json);
        let Command::Bench(b) = cli.command else {
            panic!("not bench");
        };
        assert_eq!((b.get_ratio, b.zipf_alpha), (Some(0.5), Some(1.2)));
        assert_eq!(b.value_size, 1024);

        for bad in [
            &["--get-ratio", "1.5"][..],
            &["--zipf-alpha", "0"],
            &["--connections", "0"],
            &["--depth", "0"],
            &["--op", "delete"],
            &["--redis-only"],
        ] {
            let args = [&["ringctl", "bench"][..], bad].concat();
            assert!(Cli::try_parse_from(&args).is_err(), "{bad:?}");
        }
    }
}
