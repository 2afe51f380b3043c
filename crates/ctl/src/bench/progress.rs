//! The one-line progress indicator on stderr, and number formatting.
//!
//! On a terminal the line is redrawn about four times a second (`\r`, then erase to
//! the end of the line) and replaced by a final summary line. When stderr is not a
//! terminal (scripts, CI logs) only the summary lines are printed, so logs stay
//! readable.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// Between two redraws.
const TICK: Duration = Duration::from_millis(250);

/// A progress line being redrawn by a background task.
#[derive(Debug)]
pub(crate) struct Ticker {
    task: Option<JoinHandle<()>>,
    tty: bool,
}

impl Ticker {
    /// Starts redrawing `line(elapsed)` (on a terminal only).
    pub(crate) fn start(mut line: impl FnMut(Duration) -> String + Send + 'static) -> Self {
        let tty = std::io::stderr().is_terminal();
        let task = tty.then(|| {
            tokio::spawn(async move {
                let start = Instant::now();
                let mut tick = tokio::time::interval(TICK);
                loop {
                    tick.tick().await;
                    let text = line(start.elapsed());
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "\r\x1b[2K{text}");
                    let _ = err.flush();
                }
            })
        });
        Self { task, tty }
    }

    /// Stops redrawing and prints `summary` in place of the line.
    pub(crate) fn finish(mut self, summary: &str) {
        self.stop();
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(err, "{summary}");
    }

    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.stop();
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate rounded to a whole number, with separators.
pub(crate) fn rate(per_s: f64) -> String {
    // Display only; rates are far below 2^53.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = per_s.max(0.0).round() as u64;
    thousands(n)
}

/// Microseconds for people: `87µs`, `1.25ms`, `12.5ms`, `125ms`, `1.50s`.
pub(crate) fn micros(us: u64) -> String {
    // Display only.
    #[allow(clippy::cast_precision_loss)]
    let f = us as f64;
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..10_000 => format!("{:.2}ms", f / 1e3),
        10_000..100_000 => format!("{:.1}ms", f / 1e3),
        100_000..1_000_000 => format!("{:.0}ms", f / 1e3),
        _ => format!("{:.2}s", f / 1e6),
    }
}

/// Seconds with one decimal: `2.0s`.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// `n` of `total` as a ten-character bar.
pub(crate) fn bar(n: u64, total: u64) -> String {
    let filled = n
        .min(total)
        .saturating_mul(10)
        .checked_div(total)
        .map_or(10, |f| usize::try_from(f).unwrap_or(10));
    format!("[{}{}]", "#".repeat(filled), ".".repeat(10 - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(rate(99_999.6), "100,000");
        assert_eq!(micros(87), "87µs");
        assert_eq!(micros(1250), "1.25ms");
        assert_eq!(micros(12_500), "12.5ms");
        assert_eq!(micros(125_000), "125ms");
        assert_eq!(micros(1_500_000), "1.50s");
        assert_eq!(bar(0, 10), "[..........]");
        assert_eq!(bar(5, 10), "[#####.....]");
        assert_eq!(bar(20, 10), "[##########]");
    }
}
