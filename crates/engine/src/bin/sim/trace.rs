//! Loading a trace into memory.
//!
//! A trace is loaded once and replayed many times, so it is kept in the cheapest form to
//! iterate: oracleGeneral ids as a `Vec<u64>` (the engine key is the id's 8
//! little-endian bytes), csv keys packed into one byte arena; sizes in a parallel
//! `Vec<u32>`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use hashbrown::HashSet;

use crate::args::{Format, Mode};

/// Bytes per oracleGeneral record: u32 time, u64 id, u32 size, i64 next access.
pub(crate) const RECORD_LEN: usize = 24;

/// Records read per `read` call (about 3 MiB).
const CHUNK_RECORDS: usize = 128 * 1024;

/// Why a trace could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TraceError {
    /// Opening or reading the file failed.
    #[error("reading trace {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// A csv line is not `key,size`.
    #[error("{path}:{line}: {reason}")]
    BadLine {
        /// The file.
        path: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The trace holds no request.
    #[error("trace {path} holds no requests")]
    Empty {
        /// The file.
        path: String,
    },
}

/// The keys of a trace, in request order.
#[derive(Debug, PartialEq, Eq)]
enum Keys {
    /// oracleGeneral object ids.
    Ids(Vec<u64>),
    /// csv keys: request `i` is `arena[ends[i - 1]..ends[i]]` (from 0 for `i == 0`).
    Text {
        /// All keys back to back.
        arena: Vec<u8>,
        /// End offset of each key in `arena`.
        ends: Vec<usize>,
    },
}

/// A trace in memory.
#[derive(Debug)]
pub(crate) struct Trace {
    /// The file's base name, for the output.
    pub(crate) name: String,
    keys: Keys,
    sizes: Vec<u32>,
    /// Bytes at the end of an oracleGeneral file too few for a record.
    pub(crate) trailing_bytes: usize,
    /// Distinct objects.
    pub(crate) distinct_objects: u64,
    /// Sum of the first-seen sizes of distinct objects.
    pub(crate) distinct_bytes: u64,
}

impl Trace {
    /// Loads at most `limit` requests of the trace at `path`.
    pub(crate) fn load(
        path: &Path,
        format: Format,
        limit: Option<u64>,
    ) -> Result<Self, TraceError> {
        let shown = path.display().to_string();
        let io_err = |source| TraceError::Io {
            path: shown.clone(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let limit = limit
            .and_then(|l| usize::try_from(l).ok())
            .unwrap_or(usize::MAX);
        let Parsed {
            keys,
            sizes,
            trailing_bytes,
        } = match format {
            Format::OracleGeneral => {
                let hint = file
                    .metadata()
                    .ok()
                    .and_then(|m| usize::try_from(m.len()).ok())
                    .map_or(0, |len| (len / RECORD_LEN).min(limit));
                read_oracle_general(file, limit, hint).map_err(io_err)?
            }
            Format::Csv => {
                let reader = BufReader::with_capacity(1 << 20, file);
                read_csv(reader, limit).map_err(|e| match e {
                    CsvError::Io(source) => TraceError::Io {
                        path: shown.clone(),
                        source,
                    },
                    CsvError::Line { line, reason } => TraceError::BadLine {
                        path: shown.clone(),
                        line,
                        reason,
                    },
                })?
            }
        };
        if sizes.is_empty() {
            return Err(TraceError::Empty { path: shown });
        }
        // The name rows are joined on across tools: the file stem (`zipf1.0` for
        // `zipf1.0.oracleGeneral`), as libCacheSim's runner writes it.
        let name = path
            .file_name()
            .map_or_else(|| shown.clone(), |n| n.to_string_lossy().into_owned());
        let name = [".oracleGeneral", ".oraclegeneral", ".csv"]
            .iter()
            .find_map(|ext| name.strip_suffix(ext))
            .map_or(name.clone(), str::to_owned);
        let mut trace = Trace {
            name,
            keys,
            sizes,
            trailing_bytes,
            distinct_objects: 0,
            distinct_bytes: 0,
        };
        (trace.distinct_objects, trace.distinct_bytes) = trace.footprints();
        Ok(trace)
    }

    /// Requests in the trace.
    pub(crate) fn len(&self) -> usize {
        self.sizes.len()
    }

    /// The footprint a capacity fraction refers to.
    pub(crate) fn footprint(&self, mode: Mode) -> u64 {
        match mode {
            Mode::Objects => self.distinct_objects,
            Mode::Bytes => self.distinct_bytes,
        }
    }

    /// Calls `f(index, key, size)` for every request in order, stopping at the first error.
    #[inline]
    pub(crate) fn try_for_each<E>(
        &self,
        mut f: impl FnMut(usize, &[u8], u32) -> Result<(), E>,
    ) -> Result<(), E> {
        match &self.keys {
            Keys::Ids(ids) => {
                for (i, (id, &size)) in ids.iter().zip(&self.sizes).enumerate() {
                    f(i, &id.to_le_bytes(), size)?;
                }
            }
            Keys::Text { arena, ends } => {
                let mut start = 0;
                for (i, (&end, &size)) in ends.iter().zip(&self.sizes).enumerate() {
                    f(i, &arena[start..end], size)?;
                    start = end;
                }
            }
        }
        Ok(())
    }

    /// (distinct objects, sum of their first-seen sizes).
    fn footprints(&self) -> (u64, u64) {
        let mut objects = 0u64;
        let mut bytes = 0u64;
        match &self.keys {
            Keys::Ids(ids) => {
                let mut seen = HashSet::with_capacity(ids.len() / 4);
                for (id, &size) in ids.iter().zip(&self.sizes) {
                    if seen.insert(*id) {
                        objects += 1;
                        bytes += u64::from(size);
                    }
                }
            }
            Keys::Text { arena, ends } => {
                let mut seen: HashSet<&[u8]> = HashSet::with_capacity(ends.len() / 4);
                let mut start = 0;
                for (&end, &size) in ends.iter().zip(&self.sizes) {
                    if seen.insert(&arena[start..end]) {
                        objects += 1;
                        bytes += u64::from(size);
                    }
                    start = end;
                }
            }
        }
        (objects, bytes)
    }
}

/// What a reader produced.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    keys: Keys,
    sizes: Vec<u32>,
    /// Bytes at the end too few for a record (oracleGeneral only).
    trailing_bytes: usize,
}

/// Reads oracleGeneral records until EOF or `limit` records.
fn read_oracle_general(mut r: impl Read, limit: usize, hint: usize) -> io::Result<Parsed> {
    let mut ids = Vec::with_capacity(hint);
    let mut sizes = Vec::with_capacity(hint);
    let mut buf = vec![0u8; CHUNK_RECORDS * RECORD_LEN];
    // buf[..filled] holds bytes read but not yet decoded (less than one record between reads).
    let mut filled = 0;
    loop {
        let n = match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        filled += n;
        let whole = filled - filled % RECORD_LEN;
        for rec in buf[..whole].chunks_exact(RECORD_LEN) {
            if ids.len() == limit {
                return Ok(Parsed {
                    keys: Keys::Ids(ids),
                    sizes,
                    trailing_bytes: 0,
                });
            }
            let rec: &[u8; RECORD_LEN] = rec.try_into().expect("chunks_exact yields whole records");
            let (id, size) = decode(rec);
            ids.push(id);
            sizes.push(size);
        }
        buf.copy_within(whole..filled, 0);
        filled -= whole;
    }
    Ok(Parsed {
        keys: Keys::Ids(ids),
        sizes,
        trailing_bytes: filled,
    })
}

/// The object id and size of one record (time and next access are not used).
#[inline]
fn decode(r: &[u8; RECORD_LEN]) -> (u64, u32) {
    let id = u64::from_le_bytes([r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11]]);
    let size = u32::from_le_bytes([r[12], r[13], r[14], r[15]]);
    (id, size)
}

/// A csv reading failure, before the path is attached.
#[derive(Debug)]
enum CsvError {
    Io(io::Error),
    Line { line: u64, reason: String },
}

/// Reads `key,size` lines until EOF or `limit` requests. The key is everything before the
/// last comma (so keys may hold commas); blank lines are skipped, and so is a first line
/// whose size field holds no digit (a header).
fn read_csv(mut r: impl BufRead, limit: usize) -> Result<Parsed, CsvError> {
    let mut arena = Vec::new();
    let mut ends = Vec::new();
    let mut sizes = Vec::new();
    let mut line = Vec::new();
    let mut line_no = 0u64;
    let mut seen_content = false;
    while ends.len() < limit {
        line.clear();
        if r.read_until(b'\n', &mut line).map_err(CsvError::Io)? == 0 {
            break;
        }
        line_no += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.trim_ascii().is_empty() {
            continue;
        }
        let first = !seen_content;
        seen_content = true;
        let bad = |reason: String| CsvError::Line {
            line: line_no,
            reason,
        };
        let Some(comma) = text.iter().rposition(|&b| b == b',') else {
            return Err(bad("expected `key,size`, found no comma".to_owned()));
        };
        let (key, size_field) = (&text[..comma], text[comma + 1..].trim_ascii());
        if first && !size_field.iter().any(u8::is_ascii_digit) {
            continue; // a header such as `key,size`
        }
        let size = parse_size(size_field).map_err(bad)?;
        arena.extend_from_slice(key);
        ends.push(arena.len());
        sizes.push(size);
    }
    Ok(Parsed {
        keys: Keys::Text { arena, ends },
        sizes,
        trailing_bytes: 0,
    })
}

/// A csv size field: a non-negative integer that fits in u32 (oracleGeneral's width).
fn parse_size(field: &[u8]) -> Result<u32, String> {
    let shown = String::from_utf8_lossy(field);
    let n: u64 = std::str::from_utf8(field)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("size {shown:?} is not a non-negative integer"))?;
    u32::try_from(n).map_err(|_| format!("size {n} does not fit in 32 bits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, size: u32) -> Vec<u8> {
        let mut r = Vec::with_capacity(RECORD_LEN);
        r.extend_from_slice(&7u32.to_le_bytes());
        r.extend_from_slice(&id.to_le_bytes());
        r.extend_from_slice(&size.to_le_bytes());
        r.extend_from_slice(&(-1i64).to_le_bytes());
        r
    }

    /// A reader that hands out at most `step` bytes per call, to split records across reads.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn ids(p: &Parsed) -> &[u64] {
        match &p.keys {
            Keys::Ids(ids) => ids,
            Keys::Text { .. } => panic!("expected ids"),
        }
    }

    fn text_keys(p: &Parsed) -> Vec<&[u8]> {
        let Keys::Text { arena, ends } = &p.keys else {
            panic!("expected text keys")
        };
        let mut start = 0;
        ends.iter()
            .map(|&e| {
                let k = &arena[start..e];
                start = e;
                k
            })
            .collect()
    }

    #[test]
    fn oracle_general_records() {
        let data: Vec<u8> = [(1, 100), (u64::MAX, 7), (1, 100)]
            .iter()
            .flat_map(|&(id, size)| record(id, size))
            .collect();
        let p = read_oracle_general(&data[..], usize::MAX, 0).unwrap();
        assert_eq!(ids(&p), [1, u64::MAX, 1]);
        assert_eq!(p.sizes, [100, 7, 100]);
        assert_eq!(p.trailing_bytes, 0);
        // Records split across reads decode the same.
        let trickled = read_oracle_general(
            Trickle {
                data: &data,
                step: 5,
            },
            usize::MAX,
            0,
        )
        .unwrap();
        assert_eq!(trickled, p);
    }

    #[test]
    fn oracle_general_truncated() {
        let mut data = record(5, 10);
        data.extend_from_slice(&record(6, 11)[..13]);
        let p = read_oracle_general(&data[..], usize::MAX, 0).unwrap();
        assert_eq!(
            (ids(&p), &p.sizes[..], p.trailing_bytes),
            (&[5][..], &[10][..], 13)
        );
        // Shorter than one record: nothing decoded, nothing panics.
        let p = read_oracle_general(&data[..3], usize::MAX, 0).unwrap();
        assert!(ids(&p).is_empty());
        assert_eq!(p.trailing_bytes, 3);
    }

    #[test]
    fn oracle_general_limit() {
        let data: Vec<u8> = (0..10).flat_map(|i| record(i, 1)).collect();
        let p = read_oracle_general(&data[..], 4, 0).unwrap();
        assert_eq!(ids(&p), [0, 1, 2, 3]);
        assert_eq!(p.trailing_bytes, 0);
    }

    #[test]
    fn csv_lines() {
        let text = "key,size\r\na,1\n\nb,c,20\n  a , 3 \nlast,0";
        let p = read_csv(text.as_bytes(), usize::MAX).unwrap();
        assert_eq!(p.sizes, [1, 20, 3, 0]);
        assert_eq!(text_keys(&p), [&b"a"[..], b"b,c", b"  a ", b"last"]);
    }

    #[test]
    fn csv_bad_lines_name_the_line() {
        let err = |text: &str| match read_csv(text.as_bytes(), usize::MAX) {
            Err(CsvError::Line { line, reason }) => (line, reason),
            other => panic!("expected a line error, got {other:?}"),
        };
        let (line, reason) = err("a,1\nb,2\nc,-4\n");
        assert_eq!(line, 3);
        assert!(reason.contains("\"-4\""), "{reason}");
        assert_eq!(err("a,1\n\nnocomma\n").0, 3);
        assert_eq!(err("a,1\nb,\n").0, 2);
        assert!(err("a,99999999999\n").1.contains("32 bits"));
        // Only the first line may be a header, and only if its size holds no digit.
        assert_eq!(err("a,1\nkey,size\n").0, 2);
        assert_eq!(err("a,-1\n").0, 1);
    }

    #[test]
    fn csv_limit_and_empty() {
        let p = read_csv("a,1\nb,2\nc,3\n".as_bytes(), 2).unwrap();
        assert_eq!(text_keys(&p), [b"a", b"b"]);
        let p = read_csv("key,size\n".as_bytes(), usize::MAX).unwrap();
        assert!(p.sizes.is_empty());
    }

    #[test]
    fn load_reports_truncation_and_footprint() {
        let dir = std::env::temp_dir().join(format!("ringcache-sim-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.oracleGeneral");
        let mut data: Vec<u8> = [(1, 10), (2, 20), (1, 99), (3, 30)]
            .iter()
            .flat_map(|&(id, size)| record(id, size))
            .collect();
        data.extend_from_slice(&[0; 5]);
        std::fs::write(&path, &data).unwrap();
        let t = Trace::load(&path, Format::OracleGeneral, None).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t.trailing_bytes, 5);
        assert_eq!(t.name, "t");
        // First-seen size of object 1 counts: 10 + 20 + 30.
        assert_eq!((t.distinct_objects, t.distinct_bytes), (3, 60));
        let limited = Trace::load(&path, Format::OracleGeneral, Some(2)).unwrap();
        assert_eq!((limited.len(), limited.footprint(Mode::Bytes)), (2, 30));

        let empty = dir.join("empty.csv");
        std::fs::write(&empty, "key,size\n").unwrap();
        assert!(matches!(
            Trace::load(&empty, Format::Csv, None),
            Err(TraceError::Empty { .. })
        ));
        let missing = Trace::load(&dir.join("nope.csv"), Format::Csv, None);
        assert!(matches!(missing, Err(TraceError::Io { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
