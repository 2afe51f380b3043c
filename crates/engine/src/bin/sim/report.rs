//! Result rows: the human table and the JSON schema shared with
//! `scripts/engine-bench/run_libcachesim.py`.

use std::fmt::Write as _;

use serde::Serialize;

/// One policy x capacity result. Field order and names are the JSON schema.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// The trace file's name without its format extension.
    pub(crate) trace: String,
    /// The cache's name.
    pub(crate) policy: &'static str,
    /// `objects` or `bytes`.
    pub(crate) mode: &'static str,
    /// Absolute capacity, entries or bytes.
    pub(crate) capacity: u64,
    /// The footprint fraction the capacity was given as, `null` if it was absolute.
    pub(crate) capacity_fraction: Option<f64>,
    /// Requests replayed.
    pub(crate) requests: u64,
    /// Hits.
    pub(crate) hits: u64,
    /// Misses.
    pub(crate) misses: u64,
    /// misses / requests.
    pub(crate) miss_ratio: f64,
    /// missed bytes / requested bytes.
    pub(crate) byte_miss_ratio: f64,
    /// Requests over the replay loop's wall time.
    pub(crate) requests_per_sec: f64,
}

/// The rows as an aligned text table.
pub(crate) fn table(rows: &[Row]) -> String {
    let header = [
        "policy",
        "mode",
        "capacity",
        "requests",
        "hits",
        "misses",
        "miss ratio",
        "byte miss",
        "Mreq/s",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            let capacity = match r.capacity_fraction {
                Some(f) => format!("{} ({}%)", r.capacity, trim_float(f * 100.0)),
                None => r.capacity.to_string(),
            };
            [
                r.policy.to_owned(),
                r.mode.to_owned(),
                capacity,
                r.requests.to_string(),
                r.hits.to_string(),
                r.misses.to_string(),
                format!("{:.4}", r.miss_ratio),
                format!("{:.4}", r.byte_miss_ratio),
                format!("{:.2}", r.requests_per_sec / 1e6),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let mut line = |cols: &[&str]| {
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            let sep = if i == 0 { "" } else { "  " };
            // Names left-aligned, numbers right-aligned.
            if i < 2 {
                let _ = write!(out, "{sep}{c:<w$}");
            } else {
                let _ = write!(out, "{sep}{c:>w$}");
            }
        }
        out.push('\n');
    };
    line(&header);
    for row in &cells {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

/// `1`, `0.1`, `12.5`: a percentage without trailing zeros.
fn trim_float(f: f64) -> String {
    let s = format!("{f:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fraction: Option<f64>) -> Row {
        Row {
            trace: "t.csv".into(),
            policy: "lru",
            mode: "objects",
            capacity: 10,
            capacity_fraction: fraction,
            requests: 4,
            hits: 1,
            misses: 3,
            miss_ratio: 0.75,
            byte_miss_ratio: 0.5,
            requests_per_sec: 2e6,
        }
    }

    #[test]
    fn json_schema() {
        let v = serde_json::to_value(vec![row(None), row(Some(0.01))]).unwrap();
        let keys: Vec<&str> = v[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = [
            "trace",
            "policy",
            "mode",
            "capacity",
            "capacity_fraction",
            "requests",
            "hits",
            "misses",
            "miss_ratio",
            "byte_miss_ratio",
            "requests_per_sec",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert!(v[0]["capacity_fraction"].is_null());
        assert_eq!(v[1]["capacity_fraction"], 0.01);
        assert!(v[0]["capacity"].is_u64());
    }

    #[test]
    fn table_shows_fraction() {
        let t = table(&[row(Some(0.001)), row(None)]);
        assert!(t.contains("10 (0.1%)"), "{t}");
        assert_eq!(t.lines().count(), 3);
        assert!(t.lines().next().unwrap().starts_with("policy"));
    }
}
