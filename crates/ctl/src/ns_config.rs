//! The settings `ns create` and `ns alter` send: a TOML table built from `--file`, the
//! settings flags and `--set KEY=VALUE`, and the JSON form `ns show --json` prints.
//!
//! Only the shape is checked here (dotted keys, one value per key, tables against
//! scalars); what the settings mean is the node's to validate, and it names the field
//! it refuses.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, bail};

use crate::cli::NsSettings;

/// One `--set KEY=VALUE`: a dotted key (`write_behind.batch_size`) and a TOML value.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    path: Vec<String>,
    value: toml::Value,
    /// As typed, for messages.
    text: String,
}

impl Setting {
    /// The dotted key, e.g. `store.kind`.
    #[must_use]
    pub fn key(&self) -> String {
        self.path.join(".")
    }

    /// The value: a TOML boolean, integer or float when VALUE reads as one, a string
    /// otherwise.
    #[must_use]
    pub fn value(&self) -> &toml::Value {
        &self.value
    }
}

impl FromStr for Setting {
    type Err = String;

    /// `KEY=VALUE`. KEY is bare TOML keys (letters, digits, `_`, `-`) joined by dots.
    /// VALUE is `true`/`false`, an integer, a finite float, a quoted TOML string (to
    /// force a string: `'"500"'`), or else the text as a string (`64MiB`, `lru`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((key, value)) = s.split_once('=') else {
            return Err(format!(
                "{s:?} is not KEY=VALUE (e.g. store.kind=sqlite or write_behind.batch_size=500)"
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("{s:?} has no key before '='"));
        }
        let mut path = Vec::new();
        for part in key.split('.') {
            if part.is_empty() {
                return Err(format!(
                    "{key:?} is not a dotted key: empty part (write keys like write_behind.batch_size)"
                ));
            }
            if let Some(c) = part
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
            {
                return Err(format!(
                    "{key:?} is not a dotted key: {c:?} is not allowed (letters, digits, '_', '-' and '.' between parts)"
                ));
            }
            path.push(part.to_owned());
        }
        Ok(Self {
            path,
            value: scalar(value.trim()),
            text: s.to_owned(),
        })
    }
}

/// A command-line value as TOML: boolean, integer, finite float or quoted string if it
/// reads as one, else the text itself as a string.
fn scalar(text: &str) -> toml::Value {
    match text.parse::<toml::Value>() {
        Ok(v @ (toml::Value::Boolean(_) | toml::Value::Integer(_))) => v,
        Ok(toml::Value::Float(f)) if f.is_finite() => toml::Value::Float(f),
        Ok(v @ toml::Value::String(_)) if text.starts_with(['"', '\'']) => v,
        _ => toml::Value::String(text.to_owned()),
    }
}

/// The table `ns create`/`ns alter` send: `--file`'s table, then the settings flags,
/// then each `--set`.
///
/// # Errors
/// An unreadable or invalid `--file`, a key given twice on the command line, or a value
/// where a table is (or the reverse).
pub(crate) fn build(s: &NsSettings) -> anyhow::Result<toml::Table> {
    let base = match &s.file {
        Some(path) => read_table(path)?,
        None => toml::Table::new(),
    };
    apply(base, s)
}

/// Whether the command line names any setting (`ns alter` needs one).
pub(crate) fn is_empty(s: &NsSettings) -> bool {
    s.file.is_none() && flags(s).next().is_none() && s.set.is_empty()
}

fn flags(s: &NsSettings) -> impl Iterator<Item = (&'static str, &'static str, &String)> {
    [
        ("--policy", "policy", &s.policy),
        ("--memory", "memory", &s.memory),
        ("--default-ttl", "default_ttl", &s.default_ttl),
        ("--read", "read", &s.read),
        ("--write", "write", &s.write),
    ]
    .into_iter()
    .filter_map(|(flag, key, v)| v.as_ref().map(|v| (flag, key, v)))
}

fn apply(mut table: toml::Table, s: &NsSettings) -> anyhow::Result<toml::Table> {
    // Which command-line argument set each key: a key given twice is a mistake, not an
    // override (the file's values are the ones to override).
    let mut given: BTreeMap<String, String> = BTreeMap::new();
    let mut claim = |key: String, by: String| match given.get(&key) {
        Some(first) => Err(anyhow::anyhow!(
            "{key} is given twice: {first} and {by} (give it once)"
        )),
        None => {
            given.insert(key, by);
            Ok(())
        }
    };
    for (flag, key, value) in flags(s) {
        claim(key.to_owned(), format!("{flag} {value}"))?;
        insert(
            &mut table,
            &[key.to_owned()],
            toml::Value::String(value.clone()),
        )?;
    }
    for setting in &s.set {
        claim(setting.key(), format!("--set {}", setting.text))?;
        insert(&mut table, &setting.path, setting.value.clone())?;
    }
    Ok(table)
}

/// Puts `value` at the dotted `path`, creating the tables on the way.
fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) -> anyhow::Result<()> {
    let (last, parents) = path.split_last().expect("a parsed key has a part");
    let mut here = table;
    for (i, part) in parents.iter().enumerate() {
        let entry = here
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        here = match entry {
            toml::Value::Table(t) => t,
            other => bail!(
                "cannot set {}: {} is already {} ({}, not a table)",
                path.join("."),
                path[..=i].join("."),
                other,
                other.type_str()
            ),
        };
    }
    match here.get(last) {
        Some(toml::Value::Table(_)) if !value.is_table() => bail!(
            "cannot set {} = {value}: {} is a table of settings; set its fields, e.g. --set {}.KEY=VALUE",
            path.join("."),
            path.join("."),
            path.join(".")
        ),
        _ => {
            here.insert(last.clone(), value);
            Ok(())
        }
    }
}

/// The namespace table in `path`, with a one-line error naming the file and line.
fn read_table(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --file {}", path.display()))?;
    parse_table(&text).with_context(|| format!("--file {}", path.display()))
}

/// TOML text as a table; the error says where (line) and what, on one line.
pub(crate) fn parse_table(text: &str) -> anyhow::Result<toml::Table> {
    text.parse::<toml::Table>().map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let what = e.message().trim();
        match line {
            Some(l) => anyhow::anyhow!("invalid TOML at line {l}: {what}"),
            None => anyhow::anyhow!("invalid TOML: {what}"),
        }
    })
}

/// The table as the TOML text the node takes.
pub(crate) fn to_text(table: &toml::Table) -> anyhow::Result<String> {
    toml::to_string(table).context("writing the settings as TOML")
}

/// A TOML value as JSON: datetimes and non-finite floats (which JSON lacks) as strings.
pub(crate) fn to_json(v: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or_else(|| J::String(f.to_string()), J::Number)
        }
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.iter().map(to_json).collect()),
        toml::Value::Table(t) => table_to_json(t),
    }
}

/// A TOML table as a JSON object.
pub(crate) fn table_to_json(t: &toml::Table) -> serde_json::Value {
    serde_json::Value::Object(t.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn settings(set: &[&str]) -> NsSettings {
        NsSettings {
            file: None,
            set: set
                .iter()
                .map(|s| s.parse().expect("a valid setting"))
                .collect(),
            policy: None,
            memory: None,
            default_ttl: None,
            read: None,
            write: None,
        }
    }

    fn built(set: &[&str]) -> toml::Table {
        apply(toml::Table::new(), &settings(set)).expect("builds")
    }

    #[test]
    fn values_take_their_toml_type_else_a_string() {
        let t = built(&[
            "write_behind.batch_size=500",
            "write_behind.wal=true",
            "refresh_ahead_factor=0.8",
            "store.kind=postgres",
            "memory=64MiB",
            "negative_ttl=-5",
            "store.table=\"500\"",
            "store.path=nan",
            "stale_while_revalidate=",
        ]);
        let wb = t["write_behind"].as_table().expect("a table");
        assert_eq!(wb["batch_size"].as_integer(), Some(500));
        assert_eq!(wb["wal"].as_bool(), Some(true));
        assert_eq!(t["refresh_ahead_factor"].as_float(), Some(0.8));
        assert_eq!(t["memory"].as_str(), Some("64MiB"));
        assert_eq!(t["negative_ttl"].as_integer(), Some(-5));
        assert_eq!(t["stale_while_revalidate"].as_str(), Some(""));
        let store = t["store"].as_table().expect("a table");
        assert_eq!(store["kind"].as_str(), Some("postgres"));
        // A quoted value forces a string; a non-finite float is not meant as a number.
        assert_eq!(store["table"].as_str(), Some("500"));
        assert_eq!(store["path"].as_str(), Some("nan"));
    }

    #[test]
    fn nested_keys_build_tables_that_round_trip_as_toml() {
        let t = built(&["a.b.c=1", "a.b.d=x", "a.e=false"]);
        let text = to_text(&t).expect("TOML");
        let back = parse_table(&text).expect("parses");
        assert_eq!(back, t);
        assert_eq!(back["a"]["b"]["c"].as_integer(), Some(1));
        assert_eq!(back["a"]["e"].as_bool(), Some(false));
    }

    #[test]
    fn bad_keys_are_refused_with_the_reason() {
        for (bad, why) in [
            ("a..b=1", "empty part"),
            (".a=1", "empty part"),
            ("a.=1", "empty part"),
            ("=x", "no key"),
            ("  =x", "no key"),
            ("store kind=x", "' ' is not allowed"),
            ("store.\"kind\"=x", "'\"' is not allowed"),
            ("novalue", "not KEY=VALUE"),
        ] {
            let err = bad.parse::<Setting>().expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
        // The value may contain '=' (a URL's query string).
        let s: Setting = "store.url=postgres://h/db?sslmode=require"
            .parse()
            .expect("parses");
        assert_eq!(s.key(), "store.url");
        assert_eq!(s.value().as_str(), Some("postgres://h/db?sslmode=require"));
    }

    #[test]
    fn a_value_and_a_table_at_one_key_conflict() {
        let err = apply(toml::Table::new(), &settings(&["store=1", "store.kind=x"]))
            .expect_err("store is not a table");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("cannot set store.kind") && msg.contains("store is already 1"),
            "{msg}"
        );

        let err = apply(toml::Table::new(), &settings(&["store.kind=x", "store=1"]))
            .expect_err("store is a table");
        let msg = format!("{err:#}");
        assert!(msg.contains("store is a table"), "{msg}");

        let err = apply(
            toml::Table::new(),
            &settings(&["write_behind.wal=true", "write_behind.wal.x=1"]),
        )
        .expect_err("wal is a bool");
        assert!(
            format!("{err:#}").contains("wal is already true (boolean, not a table)"),
            "{err:#}"
        );
    }

    #[test]
    fn a_key_given_twice_on_the_command_line_is_refused() {
        let err =
            apply(toml::Table::new(), &settings(&["policy=lru", "policy=lfu"])).expect_err("twice");
        assert!(
            format!("{err:#}").contains("policy is given twice"),
            "{err:#}"
        );

        let mut s = settings(&["policy=lfu"]);
        s.policy = Some("lru".into());
        let err = apply(toml::Table::new(), &s).expect_err("flag and --set");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("--policy lru") && msg.contains("--set policy=lfu"),
            "{msg}"
        );
    }

    #[test]
    fn flags_and_sets_override_the_file() {
        let base = parse_table(
            "policy = \"lfu\"\nmemory = \"32MiB\"\n[store]\nkind = \"sqlite\"\npath = \"a.db\"\n",
        )
        .expect("parses");
        let mut s = settings(&["store.path=b.db", "write_behind.batch_size=10"]);
        s.policy = Some("lru".into());
        s.default_ttl = Some("10m".into());
        s.read = Some("read-through".into());
        s.write = Some("write-behind".into());
        let t = apply(base, &s).expect("builds");
        assert_eq!(t["policy"].as_str(), Some("lru"));
        assert_eq!(t["memory"].as_str(), Some("32MiB"), "kept from the file");
        assert_eq!(t["default_ttl"].as_str(), Some("10m"));
        assert_eq!(t["read"].as_str(), Some("read-through"));
        assert_eq!(t["write"].as_str(), Some("write-behind"));
        assert_eq!(t["store"]["kind"].as_str(), Some("sqlite"));
        assert_eq!(t["store"]["path"].as_str(), Some("b.db"));
        assert_eq!(t["write_behind"]["batch_size"].as_integer(), Some(10));
    }

    #[test]
    fn the_file_is_read_and_its_errors_name_file_and_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let good = dir.path().join("ns.toml");
        std::fs::write(
            &good,
            "read = \"read-through\"\n[store]\nkind = \"sqlite\"\n",
        )
        .expect("write");
        let mut s = settings(&["store.path=x.db"]);
        s.file = Some(good);
        let t = build(&s).expect("builds");
        assert_eq!(t["read"].as_str(), Some("read-through"));
        assert_eq!(t["store"]["path"].as_str(), Some("x.db"));

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "policy = \"lru\"\nmemory = 64MiB\n").expect("write");
        s.file = Some(bad);
        let msg = format!("{:#}", build(&s).expect_err("bad TOML"));
        assert!(
            msg.contains("bad.toml") && msg.contains("line 2") && !msg.contains('\n'),
            "{msg}"
        );

        s.file = Some(PathBuf::from("/nonexistent/ns.toml"));
        let msg = format!("{:#}", build(&s).expect_err("missing"));
        assert!(
            msg.contains("cannot read --file /nonexistent/ns.toml"),
            "{msg}"
        );
    }

    #[test]
    fn empty_means_nothing_named() {
        assert!(is_empty(&settings(&[])));
        assert!(!is_empty(&settings(&["policy=lru"])));
        let mut s = settings(&[]);
        s.memory = Some("1GiB".into());
        assert!(!is_empty(&s));
    }

    #[test]
    fn toml_becomes_json() {
        let t = parse_table(
            "a = 1\nb = 0.5\nc = true\nd = \"x\"\ne = [1, 2]\nf = 1979-05-27\ng = inf\n[h]\ni = \"j\"\n",
        )
        .expect("parses");
        assert_eq!(
            table_to_json(&t),
            serde_json::json!({
                "a": 1, "b": 0.5, "c": true, "d": "x", "e": [1, 2], "f": "1979-05-27",
                "g": "inf", "h": {"i": "j"}
            })
        );
    }
}
