//! The Redis side: N TCP connections speaking RESP2 ([`super::resp`]), each driven by
//! one task that keeps D commands in flight.
//!
//! Closed loop, as on the Ringcache side: each connection carries D request loops.
//! All D first commands are written at once; then, whenever replies arrive, each reply
//! completes the oldest command (Redis answers in order), its loop records the latency
//! and sends its next command, and the new commands of one read are written together
//! in one write (as the Ringcache client's writer task coalesces what is queued). So
//! D requests are outstanding per connection at all times, never a batch of D at a
//! time that waits for the slowest.
//!
//! This driver is deliberately lean (no task or channel per request, like
//! `redis-benchmark`), so Redis is measured with a client at least as cheap as
//! Ringcache's.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::recorder::{Recorder, Recorders, Shared, Window, run_connections};
use super::resp::{self, Reply};
use super::workload::{OpKind, Picker, Workload, next_batch, write_key};
use super::{Fill, FillProgress, System};

/// Time allowed to connect and answer PING.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);
/// Time allowed for one fill batch.
const FILL_BATCH_LIMIT: Duration = Duration::from_secs(30);
/// Read buffer growth step.
const READ_CHUNK: usize = 64 << 10;

/// One connection to Redis.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
}

/// A reply, as the load loops see it.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// `+OK` and other simple strings.
    Done,
    /// A GET's value (`true`) or null bulk (`false`).
    Value(bool),
    /// An error reply.
    Error(String),
    /// Anything else (not what GET, SET, MSET or PING answer).
    Unexpected(String),
}

fn classify(reply: &Reply<'_>) -> Answer {
    match reply {
        Reply::Simple(_) => Answer::Done,
        Reply::Bulk(v) => Answer::Value(v.is_some()),
        Reply::Error(e) => Answer::Error(String::from_utf8_lossy(e).into_owned()),
        other => Answer::Unexpected(format!("{other:?}")),
    }
}

/// `redis://host:port/` or `host:port` as `host:port`.
fn address(addr: &str) -> &str {
    addr.trim()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
}

impl Conn {
    async fn open(addr: &str) -> anyhow::Result<Self> {
        let addr = address(addr);
        let stream = tokio::time::timeout(CONNECT_LIMIT, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to Redis at {addr}: timed out"))?
            .with_context(|| format!("connecting to Redis at {addr}"))?;
        // Small requests must go out at once, as redis-benchmark sends them.
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let mut conn = Self {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: Vec::with_capacity(READ_CHUNK),
        };
        resp::command(&[b"PING"], &mut conn.wbuf);
        let answer = tokio::time::timeout(CONNECT_LIMIT, conn.round_trip())
            .await
            .map_err(|_| anyhow::anyhow!("Redis at {addr} did not answer PING"))??;
        match answer {
            Answer::Done => Ok(conn),
            Answer::Error(e) => bail!("Redis at {addr} refused PING: {e}"),
            other => bail!("{addr} answered PING with {other:?}: is it Redis?"),
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.stream.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        Ok(())
    }

    /// Reads more bytes; an error when the server closed the connection.
    async fn read_more(&mut self) -> anyhow::Result<()> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let n = self
            .stream
            .read_buf(&mut self.rbuf)
            .await
            .context("reading from Redis")?;
        if n == 0 {
            bail!("Redis closed the connection");
        }
        Ok(())
    }

    /// Writes what is buffered and reads one reply (outside the measured loop).
    async fn round_trip(&mut self) -> anyhow::Result<Answer> {
        self.flush().await.context("writing to Redis")?;
        loop {
            if let Some((reply, used)) = resp::parse(&self.rbuf).context("bad reply from Redis")? {
                let answer = classify(&reply);
                self.rbuf.advance(used);
                return Ok(answer);
            }
            self.read_more().await?;
        }
    }
}

/// Opens `n` connections at once.
pub(crate) async fn connect(addr: &str, n: u32) -> anyhow::Result<Vec<Conn>> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        let addr = addr.to_owned();
        set.spawn(async move { Conn::open(&addr).await });
    }
    let mut conns = Vec::with_capacity(n as usize);
    while let Some(joined) = set.join_next().await {
        conns.push(joined.context("connect task failed")??);
    }
    Ok(conns)
}

/// Writes every key once with MSET batches of `batch` keys, one batch in flight per
/// connection.
pub(crate) async fn fill(
    conns: Vec<Conn>,
    workload: &Workload,
    batch: u64,
    progress: &FillProgress,
) -> (Fill, Vec<Conn>) {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Shared::default());
    let mut set = JoinSet::new();
    for mut conn in conns {
        let (next, shared, done) = (
            Arc::clone(&next),
            Arc::clone(&shared),
            Arc::clone(&progress.done),
        );
        let (keyspace, value) = (workload.keyspace, workload.value.clone());
        set.spawn(async move {
            let mut key = Vec::new();
            while let Some(range) = next_batch(&next, batch, keyspace) {
                let (first, last) = (range.start, range.end);
                let count = usize::try_from(last - first).expect("a batch fits in memory");
                resp::array_header(1 + 2 * count, &mut conn.wbuf);
                resp::bulk(b"MSET", &mut conn.wbuf);
                for n in first..last {
                    write_key(n, &mut key);
                    resp::bulk(&key, &mut conn.wbuf);
                    resp::bulk(&value, &mut conn.wbuf);
                }
                let answer = tokio::time::timeout(FILL_BATCH_LIMIT, conn.round_trip()).await;
                done.fetch_add(last - first, Ordering::Relaxed);
                match answer {
                    Ok(Ok(Answer::Done)) => {}
                    Ok(Ok(other)) => shared.error(last - first, || format!("MSET: {other:?}")),
                    Ok(Err(e)) => {
                        shared.error(last - first, || format!("MSET: {e:#}"));
                        return None;
                    }
                    Err(_) => {
                        shared.error(last - first, || "MSET: no answer in time".into());
                        return None;
                    }
                }
            }
            Some(conn)
        });
    }
    let mut conns = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(Some(c)) = joined {
            conns.push(c);
        }
    }
    let fill = Fill {
        system: System::Redis,
        keys: workload.keyspace,
        elapsed: started.elapsed(),
        errors: shared.errors(),
        first_error: shared.first_error(),
    };
    (fill, conns)
}

/// Runs the closed loops until `window.end`; returns every connection's measurements
/// merged.
pub(crate) async fn load(
    conns: Vec<Conn>,
    workload: &Arc<Workload>,
    depth: u32,
    seed: u64,
    window: Window,
    shared: &Arc<Shared>,
) -> Recorder {
    run_connections(
        conns,
        workload,
        depth,
        seed,
        &window,
        shared,
        |conn, pickers, recorders| {
            connection_loop(
                conn,
                pickers,
                Arc::clone(workload),
                window,
                Arc::clone(shared),
                recorders,
            )
        },
    )
    .await
}

/// A command waiting for its reply.
#[derive(Debug)]
struct InFlight {
    /// Which of the connection's loops sent it.
    lp: usize,
    op: OpKind,
    sent: Instant,
}

/// Appends loop `lp`'s next command to the write buffer.
fn queue(
    conn: &mut Conn,
    pickers: &mut [Picker],
    lp: usize,
    workload: &Workload,
    key: &mut Vec<u8>,
    sent: Instant,
    inflight: &mut VecDeque<InFlight>,
) {
    let (op, n) = pickers[lp].next();
    write_key(n, key);
    match op {
        OpKind::Get => resp::command(&[b"GET", key], &mut conn.wbuf),
        OpKind::Set => resp::command(&[b"SET", key, &workload.value], &mut conn.wbuf),
    }
    inflight.push_back(InFlight { lp, op, sent });
}

/// One connection's D loops (see the module docs).
async fn connection_loop(
    mut conn: Conn,
    mut pickers: Vec<Picker>,
    workload: Arc<Workload>,
    window: Window,
    shared: Arc<Shared>,
    recorders: Arc<Recorders>,
) {
    let mut inflight: VecDeque<InFlight> = VecDeque::with_capacity(pickers.len());
    let mut ready: Vec<usize> = (0..pickers.len()).collect();
    let mut key = Vec::with_capacity(24);
    loop {
        let sent = Instant::now();
        if sent < window.end {
            for &lp in &ready {
                queue(
                    &mut conn,
                    &mut pickers,
                    lp,
                    &workload,
                    &mut key,
                    sent,
                    &mut inflight,
                );
            }
            ready.clear();
            if let Err(e) = conn.flush().await {
                lost(&shared, inflight.len(), &format!("writing to Redis: {e}"));
                break;
            }
        }
        if inflight.is_empty() {
            break;
        }
        // Unbounded: a server that stops answering is abandoned at the hard stop.
        if let Err(e) = conn.read_more().await {
            lost(&shared, inflight.len(), &format!("{e:#}"));
            break;
        }
        let done = Instant::now();
        let mut rec = recorders.here();
        let mut used = 0;
        let broken = loop {
            let reply = match resp::parse(&conn.rbuf[used..]) {
                Ok(Some((reply, n))) => {
                    used += n;
                    reply
                }
                Ok(None) => break None,
                Err(e) => break Some(format!("bad reply from Redis: {e}")),
            };
            let Some(req) = inflight.pop_front() else {
                break Some("a reply from Redis that no command asked for".to_owned());
            };
            match (classify(&reply), req.op) {
                (Answer::Value(hit), OpKind::Get) => {
                    rec.record(req.op, req.sent, done, Some(hit), &window, &shared);
                }
                (Answer::Done, OpKind::Set) => {
                    rec.record(req.op, req.sent, done, None, &window, &shared);
                }
                (Answer::Error(e), op) => shared.error(1, || format!("{}: {e}", op.name())),
                (other, op) => shared.error(1, || format!("{}: unexpected {other:?}", op.name())),
            }
            ready.push(req.lp);
        };
        drop(rec);
        conn.rbuf.advance(used);
        if let Some(why) = broken {
            lost(&shared, inflight.len() + 1, &why);
            break;
        }
    }
}

/// Counts the requests a broken connection took with it.
fn lost(shared: &Shared, n: usize, why: &str) {
    shared.error(n as u64, || why.to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_replies() {
        assert_eq!(address("redis://127.0.0.1:6379/"), "127.0.0.1:6379");
        assert_eq!(address(" localhost:7000 "), "localhost:7000");
        assert_eq!(classify(&Reply::Simple(b"OK")), Answer::Done);
        assert_eq!(classify(&Reply::Bulk(None)), Answer::Value(false));
        assert_eq!(classify(&Reply::Bulk(Some(b"v"))), Answer::Value(true));
        assert_eq!(
            classify(&Reply::Error(b"OOM command not allowed")),
            Answer::Error("OOM command not allowed".into())
        );
        assert!(matches!(
            classify(&Reply::Integer(1)),
            Answer::Unexpected(_)
        ));
    }

    /// A fake server that answers pipelined GETs in order, in pieces, proves the
    /// driver keeps D commands in flight and matches replies to commands.
    #[tokio::test]
    async fn pipelined_loops_against_a_fake_server() {
        use crate::cli::{BenchOp, KeyDist};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let max_pipelined = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&max_pipelined);
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = BytesMut::new();
            loop {
                if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                let mut out = Vec::new();
                let mut commands = 0;
                while let Ok(Some((Reply::Array(Some(args)), used))) = resp::parse(&buf) {
                    commands += 1;
                    match args.first() {
                        Some(Reply::Bulk(Some(b"PING"))) => out.extend_from_slice(b"+PONG\r\n"),
                        // Odd keys exist, even ones do not.
                        Some(Reply::Bulk(Some(b"GET"))) => match args.get(1) {
                            Some(Reply::Bulk(Some(k))) if k.last().is_some_and(|d| d % 2 == 1) => {
                                out.extend_from_slice(b"$3\r\nval\r\n");
                            }
                            _ => out.extend_from_slice(b"$-1\r\n"),
                        },
                        _ => out.extend_from_slice(b"-ERR unknown\r\n"),
                    }
                    buf.advance(used);
                }
                seen.fetch_max(commands, Ordering::Relaxed);
                // Answer in two pieces, split inside a reply.
                let mid = out.len() / 2;
                if s.write_all(&out[..mid]).await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
                if s.write_all(&out[mid..]).await.is_err() {
                    return;
                }
            }
        });

        let conns = connect(&addr, 1).await.expect("connect");
        let workload = Arc::new(Workload::new(
            1000,
            3,
            BenchOp::Get,
            1.0,
            KeyDist::Uniform,
            0.99,
        ));
        let window = Window::starting_now(Duration::ZERO, Duration::from_millis(300));
        let shared = Arc::new(Shared::default());
        let rec = load(conns, &workload, 8, 1, window, &shared).await;
        assert_eq!(shared.errors(), 0, "{:?}", shared.first_error());
        let n = rec.histogram(OpKind::Get).len();
        assert!(n > 100, "only {n} requests measured");
        assert_eq!(rec.hits + rec.misses, n);
        assert!(rec.hits > n / 4 && rec.misses > n / 4, "{rec:?}");
        // Never more than D commands outstanding, and more than one at a time.
        let most = max_pipelined.load(Ordering::Relaxed);
        assert!((2..=8).contains(&most), "{most} commands at once");
        server.abort();
    }
}
