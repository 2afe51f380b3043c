//! What commands print: aligned tables for people, JSON for programs.

use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Context;
use serde::Serialize;

/// A plain text table: a header row, columns padded to their widest cell, numbers
/// right-aligned.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns; a column whose name starts with `>` is
    /// right-aligned (the `>` is not printed).
    pub(crate) fn new(columns: &[&'static str]) -> Self {
        Self {
            header: columns.iter().map(|c| c.trim_start_matches('>')).collect(),
            right: columns.iter().map(|c| c.starts_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len(), "one cell per column");
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .chain(std::iter::once(self.header[i].len()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_uppercase()).collect();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let w = widths[i];
                if self.right[i] {
                    let _ = write!(line, "{cell:>w$}");
                } else {
                    let _ = write!(line, "{cell:<w$}");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The JSON of commands about several namespaces: `{"namespaces": [...]}`.
#[derive(Debug, Serialize)]
pub(crate) struct Namespaces<T> {
    pub(crate) namespaces: Vec<T>,
}

/// A value as text: UTF-8 if it is, else lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Rendered {
    /// The text.
    pub(crate) value: String,
    /// `"utf8"` or `"hex"`.
    pub(crate) encoding: &'static str,
}

pub(crate) fn render_value(bytes: &[u8]) -> Rendered {
    match std::str::from_utf8(bytes) {
        Ok(s) => Rendered {
            value: s.to_owned(),
            encoding: "utf8",
        },
        Err(_) => Rendered {
            value: hex(bytes),
            encoding: "hex",
        },
    }
}

/// Lowercase hex, two digits a byte.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Prints `value` as one line of JSON on stdout.
pub(crate) fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string(value).context("encoding the JSON output")?;
    print_line(&text)
}

/// Prints text (a newline is added unless it ends with one). A closed stdout (`| head`)
/// is not an error worth a message.
pub(crate) fn print_line(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let res = if text.ends_with('\n') {
        out.write_all(text.as_bytes())
    } else {
        writeln!(out, "{text}")
    };
    match res.and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns() {
        let mut t = Table::new(&["name", ">n"]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["long".into(), "100".into()]);
        assert_eq!(t.render(), "NAME    N\na       1\nlong  100\n");
    }

    #[test]
    fn values() {
        assert_eq!(render_value(b"hi").value, "hi");
        let hex = render_value(&[0xff, 0x00]);
        assert_eq!((hex.value.as_str(), hex.encoding), ("ff00", "hex"));
    }
}
