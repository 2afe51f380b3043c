//! `cluster status|members|ring|moves|init|join|drain|remove` and `locate`: the
//! cluster operations of the protocol (`Op::ClusterStatus`, ...) and the partition
//! table (`Op::ClusterInfo`), shown through [`crate::cluster_view`].

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ringcache_client::{Client, ClientConfig, ErrorCode};
use ringcache_proto::{ClusterStatus, NodeId, Op, Response};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::Status;
use crate::cli::{ClusterCommand, ClusterDrainArgs, ClusterRemoveArgs, LocateArgs};
use crate::cluster_view::{
    DrainState, LocateView, MemberRow, RingView, StatusView, members_table, membership_table,
    render_moves,
};
use crate::output::{print_json, print_line};

/// The least time the membership changes get: they answer once the change is committed.
pub(crate) const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Between two status polls of `cluster drain`.
const DRAIN_POLL: Duration = Duration::from_millis(500);
/// The longest a member gets to answer `cluster status`'s `Stats`.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `command` changes the membership (and gets [`CHANGE_TIMEOUT`]).
pub(crate) fn is_change(command: &ClusterCommand) -> bool {
    matches!(
        command,
        ClusterCommand::Init
            | ClusterCommand::Join(_)
            | ClusterCommand::Drain(_)
            | ClusterCommand::Remove(_)
    )
}

/// Runs one `cluster` command on `client`; `cfg` is its configuration (to reach each
/// member for `status`).
pub(crate) async fn run(
    client: &Client,
    cfg: &ClientConfig,
    command: &ClusterCommand,
    json: bool,
) -> anyhow::Result<Status> {
    match command {
        ClusterCommand::Status => {
            let st = status(client).await?;
            let view = with_memory(cfg, st).await;
            if json {
                print_json(&view)?;
            } else {
                print_line(&view.render())?;
            }
        }
        ClusterCommand::Members => {
            let st = status(client).await?;
            let view = with_memory(cfg, st).await;
            if json {
                print_json(&Members {
                    members: &view.members,
                })?;
            } else {
                print_line(&members_table(&view.members).render())?;
            }
        }
        ClusterCommand::Moves => {
            let st = status(client).await?;
            if json {
                print_json(&Moves { moves: &st.moves })?;
            } else {
                print_line(&render_moves(&st.moves))?;
            }
        }
        ClusterCommand::Ring => {
            let info = client.cluster_info().await.context("cluster info")?;
            let view = RingView::new(&info);
            if json {
                print_json(&view)?;
            } else {
                print_line(&view.render())?;
            }
        }
        ClusterCommand::Init => {
            let st = change(client, Op::ClusterInit, "cluster init").await?;
            report(&st, &format!("{} started a cluster", st.node), json)?;
        }
        ClusterCommand::Join(a) => {
            let op = Op::ClusterJoin {
                seeds: a.seeds.clone(),
            };
            let st = change(client, op, "cluster join").await?;
            report(
                &st,
                &format!(
                    "{} joined the cluster through {}",
                    st.node,
                    a.seeds.join(", ")
                ),
                json,
            )?;
        }
        ClusterCommand::Drain(a) => drain(client, a, json).await?,
        ClusterCommand::Remove(a) => remove(client, a, json).await?,
    }
    Ok(Status::Success)
}

#[derive(Serialize)]
struct Members<'a> {
    members: &'a [MemberRow],
}

#[derive(Serialize)]
struct Moves<'a> {
    moves: &'a [ringcache_proto::MoveStatus],
}

/// `Op::ClusterStatus`.
pub(crate) async fn status(client: &Client) -> anyhow::Result<ClusterStatus> {
    change(client, Op::ClusterStatus, "cluster status").await
}

/// A cluster operation answered by `Response::ClusterStatus`; a standalone node's
/// `unsupported` is said plainly.
async fn change(client: &Client, op: Op, what: &str) -> anyhow::Result<ClusterStatus> {
    match client.request(op).await {
        Ok(Response::ClusterStatus(st)) => Ok(st),
        Ok(other) => bail!(
            "{what}: unexpected answer from the node: {}",
            crate::data::brief(&other)
        ),
        Err(e) if e.code() == Some(ErrorCode::Unsupported) => {
            Err(anyhow::Error::new(e).context(format!(
                "{what}: the node is not in cluster mode (it needs a [cluster] section in \
                 its config, and a ringcached with cluster support)"
            )))
        }
        Err(e) => Err(anyhow::Error::new(e).context(what.to_owned())),
    }
}

/// The status with every member's memory, asked of each member at its address.
async fn with_memory(cfg: &ClientConfig, st: ClusterStatus) -> StatusView {
    let mut tasks = JoinSet::new();
    for (i, m) in st.members.iter().enumerate() {
        let mut cfg = cfg.clone();
        cfg.endpoints = vec![m.addr.clone()];
        cfg.connect_timeout = cfg.connect_timeout.min(MEMBER_TIMEOUT);
        cfg.request_timeout = cfg.request_timeout.min(MEMBER_TIMEOUT);
        tasks.spawn(async move { (i, member_memory(cfg).await) });
    }
    let mut memory: Vec<Result<(u64, u64), String>> =
        vec![Err("not asked".to_owned()); st.members.len()];
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, m)) = done
            && let Some(slot) = memory.get_mut(i)
        {
            *slot = m;
        }
    }
    let rows = st
        .members
        .iter()
        .cloned()
        .zip(memory)
        .map(|(m, mem)| MemberRow::new(m, mem))
        .collect();
    StatusView::new(st, rows)
}

/// Bytes used and capacity, summed over the namespaces of the node `cfg` names.
async fn member_memory(cfg: ClientConfig) -> Result<(u64, u64), String> {
    let client = Client::connect(cfg).await.map_err(|e| e.to_string())?;
    let stats = client.stats(None).await.map_err(|e| e.to_string());
    client.close().await;
    let stats = stats?;
    Ok(stats.iter().fold((0, 0), |(u, c), s| {
        (
            u.saturating_add(s.used_bytes),
            c.saturating_add(s.capacity_bytes),
        )
    }))
}

/// After a change: a sentence and the status (or the status as JSON).
fn report(st: &ClusterStatus, done: &str, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(st);
    }
    // Memory is not asked after a change: the member table without it.
    let table = membership_table(&st.members).render();
    print_line(&format!(
        "{done}\n{}\n\n{table}",
        crate::cluster_view::header(
            st.leader,
            st.term,
            st.epoch,
            st.partitions,
            st.replication,
            st.node
        )
    ))
}

#[derive(Serialize)]
struct DrainReport<'a> {
    node: NodeId,
    /// Whether the node is removed (false with --no-wait).
    done: bool,
    status: &'a ClusterStatus,
}

async fn drain(client: &Client, a: &ClusterDrainArgs, json: bool) -> anyhow::Result<()> {
    let what = format!("cluster drain {}", a.node.0);
    let st = change(client, Op::ClusterDrain { node: a.node }, &what).await?;
    if a.no_wait {
        if json {
            return print_json(&DrainReport {
                node: a.node,
                done: DrainState::of(&st, a.node) == DrainState::Done,
                status: &st,
            });
        }
        return print_line(&format!(
            "draining {}; follow it with `ringctl cluster moves` or `ringctl cluster status`",
            a.node
        ));
    }
    let mut progress = Progress::stderr();
    let deadline = Instant::now() + a.wait;
    let mut last = st;
    let mut last_error: Option<String> = None;
    loop {
        match DrainState::of(&last, a.node) {
            DrainState::Done => break,
            DrainState::Going {
                state,
                primaries,
                backups,
                moves,
            } => {
                let err = last_error
                    .as_deref()
                    .map(|e| format!(" (last poll failed: {e})"))
                    .unwrap_or_default();
                progress.show(&format!(
                    "draining {}: {state}, {primaries} primaries and {backups} backups left, \
                     {moves} moves in progress{err}",
                    a.node
                ));
                if Instant::now() >= deadline {
                    progress.clear();
                    bail!(
                        "{} is not drained after {:?}: {state}, {primaries} primaries left{err}; \
                         the drain goes on on the cluster (`ringctl cluster moves`)",
                        a.node,
                        a.wait
                    );
                }
            }
        }
        tokio::time::sleep(DRAIN_POLL).await;
        match status(client).await {
            Ok(st) => {
                last = st;
                last_error = None;
            }
            // A poll may fail while leadership or the node's own connection moves; the
            // deadline bounds the retries.
            Err(e) => last_error = Some(crate::error_line(&e)),
        }
    }
    progress.clear();
    if json {
        return print_json(&DrainReport {
            node: a.node,
            done: true,
            status: &last,
        });
    }
    print_line(&format!(
        "{} is drained and removed; {} members left",
        a.node,
        last.members.iter().filter(|m| m.id != a.node).count()
    ))
}

async fn remove(client: &Client, a: &ClusterRemoveArgs, json: bool) -> anyhow::Result<()> {
    if !a.yes {
        bail!(
            "removing {} drops the copies it holds (partitions whose only copy it has start \
             empty elsewhere); `ringctl cluster drain {}` moves them first. Pass --yes to remove it",
            a.node,
            a.node.0
        );
    }
    let what = format!("cluster remove {}", a.node.0);
    let st = change(client, Op::ClusterRemove { node: a.node }, &what).await?;
    report(&st, &format!("removed {}", a.node), json)
}

/// `locate KEY`: the table from the connected node, the hash computed here.
pub(crate) async fn locate(
    client: &Client,
    ns: &str,
    a: &LocateArgs,
    json: bool,
) -> anyhow::Result<Status> {
    let info = client.cluster_info().await.context("cluster info")?;
    let view = LocateView::new(&info, ns, &a.key);
    if json {
        print_json(&view)?;
    } else {
        print_line(&view.render())?;
    }
    Ok(Status::Success)
}

/// One progress line on stderr, rewritten in place; silent unless stderr is a
/// terminal (scripts get the final result only).
pub(crate) struct Progress {
    tty: bool,
    shown: bool,
}

impl Progress {
    pub(crate) fn stderr() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    pub(crate) fn show(&mut self, line: &str) {
        if self.tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{line}");
            let _ = err.flush();
            self.shown = true;
        }
    }

    pub(crate) fn clear(&mut self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}
