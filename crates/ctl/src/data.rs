//! The data commands (`ping`, `get`, `set`, `del`, `stats`), and the connection every
//! command that talks to a node runs on (`ns`, `writebehind`, `cluster`, `locate` too).

use std::time::{Duration, Instant};

use anyhow::Context;
use ringcache_client::{Client, Error, ErrorCode, NamespaceStats, SetOptions, WriteCondition};
use ringcache_proto::Response;
use serde::Serialize;

use crate::cli::{Command, DelArgs, GetArgs, GlobalArgs, SetArgs, WriteBehindCommand};
use crate::connect::client_config;
use crate::output::{Namespaces, Table, print_json, print_line, render_value};
use crate::{Status, cluster, namespaces, write_behind};
use ringcache_proto::units::{format_bytes, format_duration};

/// The namespace data commands use without `--ns`.
pub(crate) const DEFAULT_NAMESPACE: &str = "default";

/// Runs one command that talks to a node on a fresh connection, then closes it.
pub(crate) async fn run(g: &GlobalArgs, command: &Command) -> anyhow::Result<Status> {
    // Settings to send are checked before connecting: their mistakes need no node.
    let change = match command {
        Command::Ns(c) => namespaces::Change::from_command(c)?,
        _ => None,
    };
    let mut cfg = client_config(g)?;
    if let Command::WriteBehind(WriteBehindCommand::Flush(a)) = command {
        // A flush answers when the queue is written, which may take longer than a
        // request.
        cfg.request_timeout = a.wait;
    }
    let member_cfg = cfg.clone();
    if let Command::Cluster(c) = command
        && cluster::is_change(c)
    {
        // Membership changes answer once committed (a join waits for the leader).
        cfg.request_timeout = cfg.request_timeout.max(cluster::CHANGE_TIMEOUT);
    }
    let client = Client::connect(cfg).await?;
    let result = dispatch(&client, g, &member_cfg, command, change).await;
    client.close().await;
    result
}

async fn dispatch(
    client: &Client,
    g: &GlobalArgs,
    cfg: &ringcache_client::ClientConfig,
    command: &Command,
    change: Option<namespaces::Change>,
) -> anyhow::Result<Status> {
    let ns = g.ns.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    match command {
        Command::Ping => ping(client, g.json).await,
        Command::Get(a) => get(client, ns, a, g.json).await,
        Command::Set(a) => set(client, ns, a, g.json).await,
        Command::Del(a) => del(client, ns, a, g.json).await,
        Command::Stats => stats(client, g.ns.as_deref(), g.json).await,
        Command::Ns(c) => namespaces::run(client, g.ns.as_deref(), c, change, g.json).await,
        Command::WriteBehind(c) => write_behind::run(client, g.ns.as_deref(), c, g.json).await,
        Command::Cluster(c) => cluster::run(client, cfg, c, g.json).await,
        Command::Locate(a) => cluster::locate(client, ns, a, g.json).await,
        Command::Certs(_) | Command::Local(_) | Command::Bench(_) => {
            unreachable!("lib::execute routes only data commands here")
        }
    }
}

/// A response that was not the one expected, short enough for an error line.
pub(crate) fn brief(r: &Response) -> String {
    let mut s = format!("{r:?}");
    if s.len() > 120 {
        let end = s.floor_char_boundary(120);
        s.truncate(end);
        s.push_str("...");
    }
    s
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn ping(client: &Client, json: bool) -> anyhow::Result<Status> {
    let start = Instant::now();
    let node = client.ping().await.context("ping")?;
    let rtt = start.elapsed();
    if json {
        #[derive(Serialize)]
        struct Pong {
            node: u64,
            rtt_ms: f64,
        }
        print_json(&Pong {
            node: node.0,
            rtt_ms: millis(rtt),
        })?;
    } else {
        print_line(&format!("pong from {node} in {:.2}ms", millis(rtt)))?;
    }
    Ok(Status::Success)
}

#[derive(Serialize)]
struct GetOutput<'a> {
    ns: &'a str,
    key: &'a str,
    found: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    /// Time left to live; `null` for no expiry (omitted on a miss).
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_ms: Option<Option<u64>>,
}

async fn get(client: &Client, ns: &str, a: &GetArgs, json: bool) -> anyhow::Result<Status> {
    let entry = client
        .get(ns, &a.key)
        .await
        .with_context(|| format!("get {:?}", a.key))?;
    let Some(entry) = entry else {
        if json {
            print_json(&GetOutput {
                ns,
                key: &a.key,
                found: false,
                value: None,
                encoding: None,
                version: None,
                ttl_ms: None,
            })?;
        } else {
            eprintln!("ringctl: no value for key {:?} in namespace {ns:?}", a.key);
        }
        return Ok(Status::NotFound);
    };
    let shown = render_value(&entry.value);
    if json {
        print_json(&GetOutput {
            ns,
            key: &a.key,
            found: true,
            value: Some(shown.value),
            encoding: Some(shown.encoding),
            version: Some(entry.version),
            ttl_ms: Some(entry.ttl_ms),
        })?;
    } else {
        print_line(&shown.value)?;
    }
    Ok(Status::Success)
}

async fn set(client: &Client, ns: &str, a: &SetArgs, json: bool) -> anyhow::Result<Status> {
    if a.ttl == Some(Duration::ZERO) {
        anyhow::bail!("--ttl must be more than 0 (leave it out for the namespace default)");
    }
    let condition = match (a.if_absent, a.if_version) {
        (true, _) => WriteCondition::IfAbsent,
        (false, Some(v)) => WriteCondition::IfVersion(v),
        (false, None) => WriteCondition::Always,
    };
    let opts = SetOptions {
        ttl: a.ttl,
        condition,
    };
    let version = match client
        .set(ns, &a.key, a.value.clone().into_bytes(), opts)
        .await
    {
        Ok(v) => v,
        Err(e) => return Err(condition_failed(e, &a.key, ns, condition, "not stored")),
    };
    if json {
        #[derive(Serialize)]
        struct Stored<'a> {
            ns: &'a str,
            key: &'a str,
            version: u64,
            ttl_ms: Option<u64>,
        }
        print_json(&Stored {
            ns,
            key: &a.key,
            version,
            ttl_ms: a
                .ttl
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        })?;
    } else {
        let ttl = a
            .ttl
            .map(|t| format!(", expires in {}", format_duration(t)))
            .unwrap_or_default();
        print_line(&format!(
            "stored {:?} in {ns} at version {version}{ttl}",
            a.key
        ))?;
    }
    Ok(Status::Success)
}

async fn del(client: &Client, ns: &str, a: &DelArgs, json: bool) -> anyhow::Result<Status> {
    let deleted = match client.delete(ns, &a.key, a.if_version).await {
        Ok(d) => d,
        Err(e) => {
            let cond = a
                .if_version
                .map_or(WriteCondition::Always, WriteCondition::IfVersion);
            return Err(condition_failed(e, &a.key, ns, cond, "not deleted"));
        }
    };
    if json {
        #[derive(Serialize)]
        struct Deleted<'a> {
            ns: &'a str,
            key: &'a str,
            deleted: bool,
        }
        print_json(&Deleted {
            ns,
            key: &a.key,
            deleted,
        })?;
    } else if deleted {
        print_line(&format!("deleted {:?} from {ns}", a.key))?;
    } else {
        print_line(&format!("nothing to delete: no key {:?} in {ns}", a.key))?;
    }
    Ok(Status::Success)
}

/// A conditional write whose condition did not hold, said in terms of the key (the
/// exit code tells it apart from other failures: [`crate::EXIT_CONDITION_FAILED`]).
#[derive(Debug)]
pub(crate) struct ConditionNotMet(String);

impl std::fmt::Display for ConditionNotMet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConditionNotMet {}

/// Rewords a failed condition as what it means for this key; other errors pass through
/// with the operation named.
fn condition_failed(
    e: Error,
    key: &str,
    ns: &str,
    condition: WriteCondition,
    what: &str,
) -> anyhow::Error {
    let wire = match &e {
        Error::Server(wire) if wire.code == ErrorCode::ConditionFailed => wire,
        _ => return anyhow::Error::new(e).context(format!("{what}: {key:?}")),
    };
    let why = match (condition, wire.hints.current_version) {
        (WriteCondition::IfAbsent, Some(v)) => {
            format!("{key:?} already exists in {ns} (version {v})")
        }
        (WriteCondition::IfVersion(want), Some(v)) => {
            format!("{key:?} in {ns} is at version {v}, not {want}")
        }
        (WriteCondition::IfVersion(_), None) => format!("{key:?} does not exist in {ns}"),
        _ => wire.to_string(),
    };
    ConditionNotMet(format!("{what}: {why}")).into()
}

#[derive(Serialize)]
struct StatsRow<'a> {
    #[serde(flatten)]
    stats: &'a NamespaceStats,
    /// hits / (hits + misses); `null` before the first read.
    hit_ratio: Option<f64>,
}

fn hit_ratio(s: &NamespaceStats) -> Option<f64> {
    let reads = s.hits.saturating_add(s.misses);
    // Display only: the f64 rounding of huge counts does not matter.
    #[allow(clippy::cast_precision_loss)]
    (reads > 0).then(|| s.hits as f64 / reads as f64)
}

async fn stats(client: &Client, ns: Option<&str>, json: bool) -> anyhow::Result<Status> {
    let mut list = client.stats(ns).await.context("stats")?;
    list.sort_by(|a, b| a.ns.cmp(&b.ns));
    if json {
        print_json(&Namespaces {
            namespaces: stats_rows(&list),
        })?;
    } else {
        print_line(&stats_table(&list).render())?;
    }
    Ok(Status::Success)
}

fn stats_rows(list: &[NamespaceStats]) -> Vec<StatsRow<'_>> {
    list.iter()
        .map(|s| StatsRow {
            stats: s,
            hit_ratio: hit_ratio(s),
        })
        .collect()
}

fn stats_table(list: &[NamespaceStats]) -> Table {
    let mut t = Table::new(&[
        "namespace",
        ">entries",
        ">used",
        ">capacity",
        ">hits",
        ">misses",
        ">hit ratio",
        ">evicted",
        ">expired",
        ">loads",
        ">store errors",
        ">refreshes",
        ">coalesced",
    ]);
    for s in list {
        t.row(vec![
            s.ns.clone(),
            s.entries.to_string(),
            format_bytes(s.used_bytes),
            format_bytes(s.capacity_bytes),
            s.hits.to_string(),
            s.misses.to_string(),
            hit_ratio(s).map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0)),
            s.evicted.to_string(),
            s.expired.to_string(),
            s.store_loads.to_string(),
            s.store_errors.to_string(),
            s.refreshes.to_string(),
            s.coalesced_loads.to_string(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NamespaceStats {
        NamespaceStats {
            ns: "users".into(),
            hits: 3,
            misses: 1,
            entries: 2,
            used_bytes: 2048,
            capacity_bytes: 1 << 20,
            evicted: 4,
            expired: 5,
            store_loads: 6,
            store_errors: 7,
            refreshes: 8,
            coalesced_loads: 9,
        }
    }

    #[test]
    fn stats_show_the_store_counters() {
        let list = [sample()];
        let text = stats_table(&list).render();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].ends_with("LOADS  STORE ERRORS  REFRESHES  COALESCED"),
            "{text}"
        );
        assert!(
            lines[1].ends_with(" 6             7          8          9"),
            "{text}"
        );

        let json = serde_json::to_value(Namespaces {
            namespaces: stats_rows(&list),
        })
        .expect("JSON");
        let row = &json["namespaces"][0];
        assert_eq!(row["hit_ratio"], 0.75);
        for (field, n) in [
            ("store_loads", 6),
            ("store_errors", 7),
            ("refreshes", 8),
            ("coalesced_loads", 9),
        ] {
            assert_eq!(row[field], n, "{field}: {row}");
        }
    }
}
