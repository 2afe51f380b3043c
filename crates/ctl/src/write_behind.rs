//! `writebehind status` and `writebehind flush`: the write-behind queues of a node.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ringcache_client::Client;
use ringcache_proto::units::format_duration;
use ringcache_proto::{DeadLetter, Op, Response, WriteBehindStatus};
use serde::Serialize;

use crate::Status;
use crate::cli::WriteBehindCommand;
use crate::output::{Rendered, Table, hex, print_json, print_line, render_value};

/// How long a flush runs before the progress line appears.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);
/// The longest an error message is in the dead-letter table (`--json` has it whole).
const ERROR_CELL: usize = 80;

/// Runs one `writebehind` command. `global_ns` is `--ns`, the default namespace.
pub(crate) async fn run(
    client: &Client,
    global_ns: Option<&str>,
    command: &WriteBehindCommand,
    json: bool,
) -> anyhow::Result<Status> {
    match command {
        WriteBehindCommand::Status(a) => {
            let ns = a.namespace.as_deref().or(global_ns);
            let list = statuses(client, Op::WriteBehindStatus { ns: owned(ns) })
                .await
                .with_context(|| what("status", ns))?;
            print(&list, ns, None, json)
        }
        WriteBehindCommand::Flush(a) => {
            let ns = a.namespace.as_deref().or(global_ns);
            let start = Instant::now();
            let flush = statuses(client, Op::WriteBehindFlush { ns: owned(ns) });
            let list = match with_progress(client, ns, flush).await {
                Ok(list) => list,
                Err(e) if timed_out(&e) => {
                    return Err(e.context(format!(
                        "{}: not done within --wait {}; the node goes on flushing (see \
                         `ringctl writebehind status`)",
                        what("flush", ns),
                        format_duration(a.wait)
                    )));
                }
                Err(e) => return Err(e.context(what("flush", ns))),
            };
            print(&list, ns, Some(start.elapsed()), json)
        }
    }
}

fn timed_out(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<ringcache_client::Error>(),
            Some(ringcache_client::Error::Timeout { .. })
        )
    })
}

/// The command, for an error's context.
fn what(verb: &str, ns: Option<&str>) -> String {
    match ns {
        Some(ns) => format!("writebehind {verb} {ns:?}"),
        None => format!("writebehind {verb}"),
    }
}

fn owned(ns: Option<&str>) -> Option<String> {
    ns.map(str::to_owned)
}

async fn statuses(client: &Client, op: Op) -> anyhow::Result<Vec<WriteBehindStatus>> {
    match client.request(op).await? {
        Response::WriteBehind(mut list) => {
            list.sort_by(|a, b| a.ns.cmp(&b.ns));
            Ok(list)
        }
        other => bail!(
            "unexpected answer from the node: {}",
            crate::data::brief(&other)
        ),
    }
}

/// Awaits `flush`; when stderr is a terminal and it takes over [`PROGRESS_AFTER`],
/// keeps one line there up to date with the writes still queued, erased at the end.
async fn with_progress<T>(
    client: &Client,
    ns: Option<&str>,
    flush: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    if !std::io::stderr().is_terminal() {
        return flush.await;
    }
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval_at(start + PROGRESS_AFTER, Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown = false;
    let mut flush = std::pin::pin!(flush);
    loop {
        tokio::select! {
            out = &mut flush => {
                if shown {
                    eprint!("\r\x1b[2K");
                }
                return out;
            }
            _ = tick.tick() => {
                // The flush's answer waits on its own channel meanwhile; a slow status
                // only makes the line less precise.
                let op = Op::WriteBehindStatus { ns: owned(ns) };
                let queued = tokio::time::timeout(Duration::from_millis(800), client.request(op))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .and_then(|r| match r {
                        Response::WriteBehind(l) => Some(l.iter().map(|s| s.depth).sum::<u64>()),
                        _ => None,
                    });
                let queued = queued.map_or_else(String::new, |n| format!(", {n} writes queued"));
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[2Kflushing write-behind queues: {}{queued}",
                    format_duration(start.elapsed())
                );
                let _ = err.flush();
                shown = true;
            }
        }
    }
}

/// A dead letter in `--json`.
#[derive(Serialize)]
struct DeadLetterJson<'a> {
    /// The key: UTF-8 text, or hex (`key_encoding`).
    key: String,
    key_encoding: &'static str,
    version: u64,
    /// `"set"` or `"delete"`.
    op: &'static str,
    attempts: u32,
    error: &'a str,
}

/// One namespace's queue in `--json`: the node's fields, keys rendered as text.
#[derive(Serialize)]
struct StatusJson<'a> {
    ns: &'a str,
    depth: u64,
    capacity: u64,
    /// Age of the oldest queued write; `null` when the queue is empty.
    oldest_ms: Option<u64>,
    enqueued: u64,
    flushed: u64,
    coalesced: u64,
    /// Flushed writes per second over the last ten seconds.
    flush_rate: u64,
    retries: u64,
    wal: bool,
    dead_letter_count: u64,
    /// The first dead letters (the node sends at most 100).
    dead_letters: Vec<DeadLetterJson<'a>>,
}

#[derive(Serialize)]
struct Output<'a> {
    namespaces: Vec<StatusJson<'a>>,
    /// How long the flush took (flush only).
    #[serde(skip_serializing_if = "Option::is_none")]
    elapsed_ms: Option<u64>,
}

fn op_name(d: &DeadLetter) -> &'static str {
    if d.delete { "delete" } else { "set" }
}

fn to_json(s: &WriteBehindStatus) -> StatusJson<'_> {
    StatusJson {
        ns: &s.ns,
        depth: s.depth,
        capacity: s.capacity,
        oldest_ms: s.oldest_ms,
        enqueued: s.enqueued,
        flushed: s.flushed,
        coalesced: s.coalesced,
        flush_rate: s.flush_rate,
        retries: s.retries,
        wal: s.wal,
        dead_letter_count: s.dead_letter_count,
        dead_letters: s
            .dead_letters
            .iter()
            .map(|d| {
                let Rendered { value, encoding } = render_value(&d.key);
                DeadLetterJson {
                    key: value,
                    key_encoding: encoding,
                    version: d.version,
                    op: op_name(d),
                    attempts: d.attempts,
                    error: &d.error,
                }
            })
            .collect(),
    }
}

fn print(
    list: &[WriteBehindStatus],
    ns: Option<&str>,
    flush_took: Option<Duration>,
    json: bool,
) -> anyhow::Result<Status> {
    if json {
        print_json(&Output {
            namespaces: list.iter().map(to_json).collect(),
            elapsed_ms: flush_took.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        })?;
        return Ok(Status::Success);
    }
    if let Some(took) = flush_took {
        print_line(&format!("flush finished in {}", format_duration(took)))?;
    }
    if list.is_empty() {
        print_line(&match ns {
            Some(ns) => format!("namespace {ns} has no write-behind queue"),
            None => "no write-behind namespaces".to_owned(),
        })?;
    } else {
        print_line(&render(list))?;
    }
    Ok(Status::Success)
}

/// The queue table, then the dead letters when there are any.
fn render(list: &[WriteBehindStatus]) -> String {
    let mut t = Table::new(&[
        "namespace",
        ">depth",
        ">capacity",
        ">oldest",
        ">enqueued",
        ">flushed",
        ">coalesced",
        ">flush/s",
        ">retries",
        ">dead letters",
    ]);
    for s in list {
        t.row(vec![
            s.ns.clone(),
            s.depth.to_string(),
            s.capacity.to_string(),
            s.oldest_ms.map_or_else(
                || "-".to_owned(),
                |ms| format_duration(Duration::from_millis(ms)),
            ),
            s.enqueued.to_string(),
            s.flushed.to_string(),
            s.coalesced.to_string(),
            s.flush_rate.to_string(),
            s.retries.to_string(),
            s.dead_letter_count.to_string(),
        ]);
    }
    let mut out = t.render();
    if list.iter().all(|s| s.dead_letters.is_empty()) {
        return out;
    }
    let mut d = Table::new(&["namespace", "key", ">version", "op", ">attempts", "error"]);
    let mut notes = Vec::new();
    for s in list {
        for l in &s.dead_letters {
            d.row(vec![
                s.ns.clone(),
                key_cell(&l.key),
                l.version.to_string(),
                op_name(l).to_owned(),
                l.attempts.to_string(),
                error_cell(&l.error),
            ]);
        }
        let shown = s.dead_letters.len() as u64;
        if s.dead_letter_count > shown {
            notes.push(format!(
                "{}: the first {shown} of {} dead letters",
                s.ns, s.dead_letter_count
            ));
        }
    }
    out.push('\n');
    out.push_str(&d.render());
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    out
}

/// A key in a table cell: as is when it is printable text, else `0x` and hex.
fn key_cell(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if !s.is_empty() && !s.chars().any(char::is_control) => s.to_owned(),
        _ => format!("0x{}", hex(key)),
    }
}

/// An error message on one line, cut to [`ERROR_CELL`] characters.
fn error_cell(e: &str) -> String {
    let line = e.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= ERROR_CELL {
        return line;
    }
    let mut cut: String = line.chars().take(ERROR_CELL - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn status(ns: &str) -> WriteBehindStatus {
        WriteBehindStatus {
            ns: ns.into(),
            depth: 12,
            capacity: 10_000,
            oldest_ms: Some(1_500),
            enqueued: 340,
            flushed: 320,
            coalesced: 8,
            flush_rate: 25,
            retries: 3,
            wal: true,
            dead_letter_count: 0,
            dead_letters: Vec::new(),
        }
    }

    fn letter(key: &[u8], delete: bool, error: &str) -> DeadLetter {
        DeadLetter {
            key: Bytes::copy_from_slice(key),
            version: 7,
            delete,
            attempts: 5,
            error: error.into(),
        }
    }

    fn words(line: &str) -> Vec<&str> {
        line.split_whitespace().collect()
    }

    #[test]
    fn status_without_dead_letters_is_one_table() {
        let mut idle = status("a");
        idle.depth = 0;
        idle.oldest_ms = None;
        let text = render(&[idle, status("b")]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            words(lines[0]),
            [
                "NAMESPACE",
                "DEPTH",
                "CAPACITY",
                "OLDEST",
                "ENQUEUED",
                "FLUSHED",
                "COALESCED",
                "FLUSH/S",
                "RETRIES",
                "DEAD",
                "LETTERS"
            ]
        );
        assert_eq!(
            words(lines[1]),
            ["a", "0", "10000", "-", "340", "320", "8", "25", "3", "0"]
        );
        assert_eq!(
            words(lines[2]),
            [
                "b", "12", "10000", "1.5s", "340", "320", "8", "25", "3", "0"
            ]
        );
    }

    #[test]
    fn dead_letters_follow_in_their_own_table() {
        let mut orders = status("orders");
        orders.dead_letter_count = 3;
        orders.dead_letters = vec![
            letter(
                b"order:1",
                false,
                "store_error: connection refused\n(retried)",
            ),
            letter(&[0xff, 0x00, 0x01], true, &"x".repeat(200)),
        ];
        let text = render(&[status("idle"), orders]);
        let blocks: Vec<&str> = text.split("\n\n").collect();
        assert_eq!(blocks.len(), 2, "{text}");
        let dead: Vec<&str> = blocks[1].lines().collect();
        assert_eq!(
            words(dead[0]),
            ["NAMESPACE", "KEY", "VERSION", "OP", "ATTEMPTS", "ERROR"]
        );
        assert_eq!(
            words(dead[1]),
            [
                "orders",
                "order:1",
                "7",
                "set",
                "5",
                "store_error:",
                "connection",
                "refused",
                "(retried)"
            ]
        );
        let row = words(dead[2]);
        assert_eq!(row[..5], ["orders", "0xff0001", "7", "delete", "5"]);
        assert_eq!(row[5].chars().count(), ERROR_CELL, "{}", row[5]);
        assert!(row[5].ends_with('…'));
        assert_eq!(dead[3], "orders: the first 2 of 3 dead letters");
        assert_eq!(dead.len(), 4, "{text}");
        // The queue table still lists both namespaces.
        assert_eq!(blocks[0].lines().count(), 3, "{text}");
    }

    #[test]
    fn keys_are_text_when_printable() {
        assert_eq!(key_cell(b"user:42"), "user:42");
        assert_eq!(key_cell(b"a\tb"), "0x610962");
        assert_eq!(key_cell(b""), "0x");
    }

    #[test]
    fn json_renders_keys_and_ops() {
        let mut s = status("orders");
        s.dead_letter_count = 1;
        s.dead_letters = vec![letter(&[0xff], true, "boom")];
        let json = serde_json::to_value(Output {
            namespaces: vec![to_json(&s)],
            elapsed_ms: None,
        })
        .expect("JSON");
        assert!(json.get("elapsed_ms").is_none(), "{json}");
        let ns = &json["namespaces"][0];
        assert_eq!(ns["oldest_ms"], 1_500);
        assert_eq!(ns["wal"], true);
        assert_eq!(
            ns["dead_letters"][0],
            serde_json::json!({
                "key": "ff", "key_encoding": "hex", "version": 7, "op": "delete",
                "attempts": 5, "error": "boom"
            })
        );
    }
}
