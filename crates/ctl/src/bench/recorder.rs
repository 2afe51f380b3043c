//! What a run measures: its time line ([`Window`]), the counters every loop shares
//! ([`Shared`]: progress and errors), and each loop's own latencies ([`Recorder`],
//! merged at the end, so the hot path takes no lock).

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use super::workload::{OpKind, Picker, Workload};

/// How long requests still unanswered at the end of the measurement may take before
/// they are abandoned (so a stuck server cannot hold the run open).
const GRACE: Duration = Duration::from_secs(2);
/// A loop adds its completed requests to the shared count this often (progress only).
const FLUSH_EVERY: u64 = 32;

/// The time line of one system's run: warm-up, then the measured part.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Requests sent from here on and answered by `end` are measured.
    pub(crate) measure_from: Instant,
    /// No request is sent from here on.
    pub(crate) end: Instant,
    /// Requests still unanswered here are abandoned.
    pub(crate) hard_stop: Instant,
}

impl Window {
    pub(crate) fn starting_now(warmup: Duration, duration: Duration) -> Self {
        let start = Instant::now();
        let measure_from = start + warmup;
        let end = measure_from + duration;
        Self {
            measure_from,
            end,
            hard_stop: end + GRACE,
        }
    }

    pub(crate) fn measured(&self) -> Duration {
        self.end - self.measure_from
    }
}

/// The measurements of every loop of a run, one [`Recorder`] per thread: a loop
/// records into the recorder of the thread it runs on, so only a few histograms are
/// written and they stay in cache (one per loop would not: 50 x 16 loops would spread
/// every record over megabytes of counters). Outliving the loops, they also keep the
/// measurements of loops abandoned at the hard stop. This replaces a timer per request
/// too, which costs the load generator far more.
#[derive(Debug)]
pub(crate) struct Recorders {
    slots: Box<[Mutex<Recorder>]>,
}

/// More than any runtime here has threads; a collision only costs some contention.
const SLOTS: usize = 64;

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_SLOT: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed) % SLOTS;
}

impl Default for Recorders {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS)
                .map(|_| Mutex::new(Recorder::default()))
                .collect(),
        }
    }
}

impl Recorders {
    /// The recorder of the calling thread. Hold it only between awaits.
    pub(crate) fn here(&self) -> MutexGuard<'_, Recorder> {
        let i = THREAD_SLOT.with(|i| *i);
        // A panicking loop cannot leave a recorder half-updated in a way that matters
        // for a report.
        self.slots[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything recorded, merged; the progress counts are published.
    pub(crate) fn merged(&self, shared: &Shared) -> Recorder {
        let mut total = Recorder::default();
        for slot in &self.slots {
            let mut r = slot.lock().unwrap_or_else(PoisonError::into_inner);
            r.flush(shared);
            total.merge(&r);
        }
        total
    }
}

/// Runs a run's request loops: for each connection, `start(conn, pickers, recorders)`
/// with the connection's `depth` pickers (one per loop, seeded by connection and loop)
/// spawned as one task; then [`collect`]s them.
pub(crate) async fn run_connections<C, Fut>(
    conns: impl IntoIterator<Item = C>,
    workload: &Arc<Workload>,
    depth: u32,
    seed: u64,
    window: &Window,
    shared: &Shared,
    mut start: impl FnMut(C, Vec<Picker>, Arc<Recorders>) -> Fut,
) -> Recorder
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut loops = JoinSet::new();
    let recorders = Arc::new(Recorders::default());
    for (c, conn) in (0u64..).zip(conns) {
        let pickers = (0..u64::from(depth))
            .map(|lp| workload.picker(seed, c, lp))
            .collect();
        loops.spawn(start(conn, pickers, Arc::clone(&recorders)));
    }
    collect(loops, &recorders, window, shared, u64::from(depth)).await
}

/// Waits for the loops until `window.hard_stop`, abandons those still waiting for an
/// answer (counting `in_flight_each` failed requests for each), and merges what they
/// recorded.
pub(crate) async fn collect(
    mut loops: JoinSet<()>,
    recorders: &Recorders,
    window: &Window,
    shared: &Shared,
    in_flight_each: u64,
) -> Recorder {
    let all_done = async {
        while let Some(joined) = loops.join_next().await {
            if let Err(e) = joined {
                shared.error(1, || format!("a request loop failed: {e}"));
            }
        }
    };
    if tokio::time::timeout_at(window.hard_stop.into(), all_done)
        .await
        .is_err()
    {
        let left = loops.len() as u64;
        loops.abort_all();
        shared.error(left * in_flight_each, || {
            format!("{left} request loops were still waiting for an answer when the run ended")
        });
    }
    recorders.merged(shared)
}

/// Counters every loop of a run shares.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Requests answered, warm-up included (the progress line).
    done: AtomicU64,
    /// Failed requests, warm-up included.
    errors: AtomicU64,
    first_error: OnceLock<String>,
}

impl Shared {
    pub(crate) fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub(crate) fn add_done(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` failed requests; the first message is kept.
    pub(crate) fn error(&self, n: u64, message: impl FnOnce() -> String) {
        if self.errors.fetch_add(n, Ordering::Relaxed) == 0 {
            let _ = self.first_error.set(message());
        }
    }

    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub(crate) fn first_error(&self) -> Option<String> {
        self.first_error.get().cloned()
    }
}

/// One loop's measurements (a Ringcache request loop, or a Redis connection with all
/// its pipelined loops).
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    /// Latency in microseconds per [`OpKind`], measured requests only.
    hist: [Histogram<u64>; 2],
    /// GETs that found a value / found none (measured requests only).
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    unflushed: u64,
}

fn histogram() -> Histogram<u64> {
    // Auto-resizing from a small range: a loop holds only the range it saw.
    Histogram::new(3).expect("3 significant digits is a valid precision")
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            hist: [histogram(), histogram()],
            hits: 0,
            misses: 0,
            unflushed: 0,
        }
    }
}

impl Recorder {
    /// Records a request answered at `done`; `hit` is whether a GET found a value.
    pub(crate) fn record(
        &mut self,
        op: OpKind,
        sent: Instant,
        done: Instant,
        hit: Option<bool>,
        window: &Window,
        shared: &Shared,
    ) {
        if sent >= window.measure_from && done <= window.end {
            let us = u64::try_from(done.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
            let h = &mut self.hist[op.index()];
            // `record` grows the range as needed (`saturating_record` would clamp to
            // the current range instead); it fails only beyond what a u64 can count.
            if h.record(us.max(1)).is_err() {
                h.saturating_record(us);
            }
            match hit {
                Some(true) => self.hits += 1,
                Some(false) => self.misses += 1,
                None => {}
            }
        }
        self.unflushed += 1;
        if self.unflushed >= FLUSH_EVERY {
            self.flush(shared);
        }
    }

    /// Publishes the loop's count of answered requests.
    pub(crate) fn flush(&mut self, shared: &Shared) {
        shared.add_done(self.unflushed);
        self.unflushed = 0;
    }

    pub(crate) fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.hist.iter_mut().zip(&other.hist) {
            mine.add(theirs)
                .expect("auto-resizing histograms of the same precision always merge");
        }
        self.hits += other.hits;
        self.misses += other.misses;
    }

    pub(crate) fn histogram(&self, op: OpKind) -> &Histogram<u64> {
        &self.hist[op.index()]
    }

    /// Both operations in one histogram.
    pub(crate) fn combined(&self) -> Histogram<u64> {
        let mut all = self.hist[0].clone();
        all.add(&self.hist[1])
            .expect("auto-resizing histograms of the same precision always merge");
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_measured_part_is_recorded() {
        let start = Instant::now();
        let w = Window::starting_now(Duration::from_millis(100), Duration::from_millis(100));
        let shared = Shared::default();
        let mut r = Recorder::default();
        let us = Duration::from_micros;
        // In the warm-up: counted for progress, not measured.
        r.record(OpKind::Get, start, start + us(50), Some(true), &w, &shared);
        // Measured.
        let at = w.measure_from;
        r.record(OpKind::Get, at, at + us(250), Some(false), &w, &shared);
        r.record(OpKind::Set, at, at + us(1000), None, &w, &shared);
        // Answered after the end: not measured.
        r.record(
            OpKind::Get,
            w.end - us(1),
            w.end + us(5),
            Some(true),
            &w,
            &shared,
        );
        r.flush(&shared);
        assert_eq!(shared.done(), 4);
        assert_eq!(r.histogram(OpKind::Get).len(), 1);
        assert_eq!(r.histogram(OpKind::Set).len(), 1);
        assert_eq!((r.hits, r.misses), (0, 1));
        assert_eq!(r.combined().len(), 2);

        let mut total = Recorder::default();
        total.merge(&r);
        total.merge(&r);
        assert_eq!(total.combined().len(), 4);
        assert!(total.histogram(OpKind::Set).max() >= 1000);
        // Far beyond the initial range: recorded, not clamped.
        let mut big = Recorder::default();
        let t = w.measure_from;
        big.record(
            OpKind::Get,
            t,
            t + Duration::from_millis(90),
            None,
            &w,
            &shared,
        );
        assert!(big.histogram(OpKind::Get).max() >= 89_000);
        assert_eq!(total.misses, 2);

        shared.error(1, || "first".into());
        shared.error(2, || "second".into());
        assert_eq!(shared.errors(), 3);
        assert_eq!(shared.first_error().as_deref(), Some("first"));
    }

    #[tokio::test]
    async fn loops_still_waiting_at_the_hard_stop_are_abandoned_with_their_records_kept() {
        let w = Window::starting_now(Duration::ZERO, Duration::from_millis(10));
        let shared = Shared::default();
        let recorders = std::sync::Arc::new(Recorders::default());
        let mut loops = JoinSet::new();
        for _ in 0..3 {
            let recorders = std::sync::Arc::clone(&recorders);
            loops.spawn(async move {
                let t = w.measure_from;
                let shared = Shared::default();
                recorders.here().record(
                    OpKind::Get,
                    t,
                    t + Duration::from_micros(5),
                    Some(true),
                    &w,
                    &shared,
                );
                // A server that never answers.
                std::future::pending::<()>().await;
            });
        }
        let started = Instant::now();
        let total = collect(loops, &recorders, &w, &shared, 4).await;
        assert!(started.elapsed() < GRACE + Duration::from_secs(2));
        assert_eq!(total.histogram(OpKind::Get).len(), 3);
        assert_eq!(shared.errors(), 12, "3 loops x 4 requests in flight");
        assert!(
            shared
                .first_error()
                .is_some_and(|e| e.contains("3 request loops"))
        );
    }
}
