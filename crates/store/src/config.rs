//! [`StoreConfig`]: the user-facing store section of a namespace, and its checked form
//! [`ValidStoreConfig`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::StoreError;

/// Which database backs a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// An embedded SQLite file (bundled: nothing to install). The default.
    #[default]
    Sqlite,
    /// A PostgreSQL server, through a connection pool.
    Postgres,
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        })
    }
}

/// A namespace's backing store, as written in TOML:
///
/// ```toml
/// kind = "postgres"                                  # or "sqlite" (default)
/// url = "postgres://app@db.internal:5432/app"        # postgres only
/// # path = "store/sessions.sqlite"                   # sqlite only
/// table = "sessions_cache"                           # default "ringcache_kv"
/// create_table = false                               # default true
/// pool_size = 16                                     # postgres only, default 8
/// timeout = "2s"                                     # default "5s"
/// ```
///
/// It serializes back to the same TOML (the timeout as milliseconds), so the node can
/// show and patch a namespace's settings.
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `"sqlite"` (default) or `"postgres"`.
    pub kind: StoreKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// SQLite only: the database file, created with its parent directories if missing.
    /// A relative path resolves against the directory given to
    /// [`StoreConfig::validate`] (the config file's). Required for SQLite.
    pub path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// PostgreSQL only: a libpq-style connection string, URL
    /// (`postgres://user:password@host:port/db?connect_timeout=..`) or `key=value`
    /// form. Required for PostgreSQL. The connection is not encrypted (TLS to the
    /// database is not supported yet): use it on a trusted network or a local socket.
    pub url: Option<String>,
    /// The table holding the namespace's rows: a plain identifier (letters, digits,
    /// `_`, not starting with a digit, at most 63 bytes), optionally qualified by a
    /// schema (`cache.sessions`). Used exactly as written (quoted), so it is
    /// case-sensitive. Default `ringcache_kv`. Two namespaces must not share a table.
    pub table: String,
    /// Create the table with the default shape when it is missing. Default true. Set it
    /// to false when the table is yours: a missing table is then an error at startup.
    pub create_table: bool,
    /// PostgreSQL only: the most connections the pool keeps open. Default 8.
    pub pool_size: u32,
    /// Per-operation timeout, e.g. `"500ms"`, `"5s"`, `"1m"` (units ms, s, m). Bounds
    /// waiting for a pool connection, connecting, each statement (also set as the
    /// server's `statement_timeout`) and SQLite's lock wait. Default `"5s"`.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub timeout: Duration,
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}ms", d.as_millis()))
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Sqlite,
            path: None,
            url: None,
            table: DEFAULT_TABLE.to_owned(),
            create_table: true,
            pool_size: 8,
            timeout: Duration::from_secs(5),
        }
    }
}

/// The default table name.
pub const DEFAULT_TABLE: &str = "ringcache_kv";

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password; Debug output ends up in logs.
        f.debug_struct("StoreConfig")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("table", &self.table)
            .field("create_table", &self.create_table)
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A checked table name: one or two plain identifiers, quoted when used in SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    schema: Option<String>,
    name: String,
}

impl TableName {
    /// Parses `name` or `schema.name`, each part a plain identifier.
    ///
    /// # Errors
    /// The reason the name is refused.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = s.split('.');
        let first = parts.next().unwrap_or_default();
        let second = parts.next();
        if parts.next().is_some() {
            return Err(format!(
                "{s:?} has more than one '.' (use `table` or `schema.table`)"
            ));
        }
        for part in std::iter::once(first).chain(second) {
            check_ident(part).map_err(|why| format!("{s:?}: {why}"))?;
        }
        Ok(match second {
            Some(name) => Self {
                schema: Some(first.to_owned()),
                name: name.to_owned(),
            },
            None => Self {
                schema: None,
                name: first.to_owned(),
            },
        })
    }

    /// The schema, if the name was qualified.
    #[must_use]
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The table's own name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name as an SQL identifier: `"name"` or `"schema"."name"`. Safe to splice
    /// into SQL because [`TableName::parse`] admits no quote characters.
    #[must_use]
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{}\"", self.name),
            None => format!("\"{}\"", self.name),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

fn check_ident(s: &str) -> Result<(), &'static str> {
    let mut chars = s.chars();
    match chars.next() {
        None => return Err("empty identifier"),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            return Err("identifiers start with a letter or '_'");
        }
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("identifiers are letters, digits and '_'");
    }
    if s.len() > 63 {
        return Err("identifiers are at most 63 bytes");
    }
    Ok(())
}

/// Where the rows live, checked.
#[derive(Clone)]
pub enum Backend {
    /// An SQLite file (absolute or relative to the process's working directory).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL server.
    Postgres {
        /// The parsed connection settings.
        pg: Box<tokio_postgres::Config>,
        /// The configured pool size (at least 1).
        pool_size: usize,
    },
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            // tokio_postgres::Config's Debug already redacts the password.
            Self::Postgres { pg, pool_size } => f
                .debug_struct("Postgres")
                .field("hosts", &pg.get_hosts())
                .field("ports", &pg.get_ports())
                .field("dbname", &pg.get_dbname())
                .field("user", &pg.get_user())
                .field("pool_size", pool_size)
                .finish(),
        }
    }
}

/// A checked store configuration: the only form [`crate::Store::open`] takes.
#[derive(Debug, Clone)]
pub struct ValidStoreConfig {
    /// Database and connection settings.
    pub backend: Backend,
    /// The table.
    pub table: TableName,
    /// Create the table if missing.
    pub create_table: bool,
    /// Per-operation timeout (at least 1 ms).
    pub timeout: Duration,
}

impl ValidStoreConfig {
    /// The kind of store.
    #[must_use]
    pub fn kind(&self) -> StoreKind {
        match self.backend {
            Backend::Sqlite { .. } => StoreKind::Sqlite,
            Backend::Postgres { .. } => StoreKind::Postgres,
        }
    }
}

/// The largest accepted `pool_size`.
const MAX_POOL: u32 = 1024;
/// The largest accepted `timeout`.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

impl StoreConfig {
    /// A SQLite store in `path` with defaults for everything else.
    #[must_use]
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        Self {
            kind: StoreKind::Sqlite,
            path: Some(path.into()),
            ..Self::default()
        }
    }

    /// A PostgreSQL store at `url` with defaults for everything else.
    #[must_use]
    pub fn postgres(url: impl Into<String>) -> Self {
        Self {
            kind: StoreKind::Postgres,
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// Checks every value. A relative SQLite `path` resolves against `base` (the
    /// config file's directory).
    ///
    /// # Errors
    /// [`StoreError::Config`] naming the first bad field.
    pub fn validate(self, base: &Path) -> Result<ValidStoreConfig, StoreError> {
        let table =
            TableName::parse(&self.table).map_err(|why| StoreError::config("table", why))?;
        if self.timeout.is_zero() {
            return Err(StoreError::config("timeout", "must be at least 1ms"));
        }
        if self.timeout > MAX_TIMEOUT {
            return Err(StoreError::config("timeout", "must be at most 1h"));
        }
        let backend = match self.kind {
            StoreKind::Sqlite => {
                if self.url.is_some() {
                    return Err(StoreError::config(
                        "url",
                        "is for kind = \"postgres\"; SQLite takes `path`",
                    ));
                }
                let path = self.path.ok_or_else(|| {
                    StoreError::config("path", "kind = \"sqlite\" needs the database file")
                })?;
                if path.as_os_str().is_empty() {
                    return Err(StoreError::config("path", "must not be empty"));
                }
                let path = if path.is_absolute() {
                    path
                } else {
                    base.join(path)
                };
                Backend::Sqlite { path }
            }
            StoreKind::Postgres => {
                if self.path.is_some() {
                    return Err(StoreError::config(
                        "path",
                        "is for kind = \"sqlite\"; PostgreSQL takes `url`",
                    ));
                }
                let url = self.url.ok_or_else(|| {
                    StoreError::config("url", "kind = \"postgres\" needs a connection URL")
                })?;
                // tokio-postgres's parse errors do not echo the string (no password
                // in logs).
                let pg = tokio_postgres::Config::from_str(&url)
                    .map_err(|e| StoreError::config("url", e.to_string()))?;
                if pg.get_hosts().is_empty() {
                    return Err(StoreError::config("url", "names no host"));
                }
                if !(1..=MAX_POOL).contains(&self.pool_size) {
                    return Err(StoreError::config(
                        "pool_size",
                        format!("must be between 1 and {MAX_POOL}"),
                    ));
                }
                let pool_size =
                    usize::try_from(self.pool_size).expect("pool_size <= 1024 fits usize");
                Backend::Postgres {
                    pg: Box::new(pg),
                    pool_size,
                }
            }
        };
        Ok(ValidStoreConfig {
            backend,
            table,
            create_table: self.create_table,
            timeout: self.timeout,
        })
    }
}

/// Replaces the password of a connection string with `***`, in both URL
/// (`postgres://user:pw@host`) and `key=value` (`password=pw`) forms.
#[must_use]
pub fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|kv| {
            if kv.to_ascii_lowercase().starts_with("password=") {
                "password=***".to_owned()
            } else {
                kv.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses a per-operation timeout: `"250ms"`, `"5s"`, `"1m"` (the shared duration
/// syntax of configs and the CLI).
pub use ringcache_proto::units::parse_duration as parse_timeout;

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_timeout(&s).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StoreConfig, String> {
        toml::from_str(text).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn defaults_are_documented_values() {
        let c = parse("path = \"x.sqlite\"").unwrap();
        assert_eq!(c.kind, StoreKind::Sqlite);
        assert_eq!(c.table, "ringcache_kv");
        assert!(c.create_table);
        assert_eq!(c.pool_size, 8);
        assert_eq!(c.timeout, Duration::from_secs(5));
        let v = c.validate(Path::new("/etc/ringcache")).unwrap();
        assert!(
            matches!(&v.backend, Backend::Sqlite { path } if path == Path::new("/etc/ringcache/x.sqlite"))
        );
    }

    #[test]
    fn postgres_section_parses() {
        let c = parse(
            r#"
            kind = "postgres"
            url = "postgres://app:secret@db:5433/app"
            table = "cache.sessions"
            create_table = false
            pool_size = 3
            timeout = "250ms"
            "#,
        )
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("secret"), "{dbg}");
        let v = c.validate(Path::new(".")).unwrap();
        assert_eq!(v.kind(), StoreKind::Postgres);
        assert_eq!(v.table.quoted(), "\"cache\".\"sessions\"");
        assert_eq!(v.timeout, Duration::from_millis(250));
        assert!(!v.create_table);
        assert!(matches!(v.backend, Backend::Postgres { pool_size: 3, .. }));
        assert!(!format!("{v:?}").contains("secret"));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        assert!(
            parse("path = \"a\"\ntabel = \"x\"")
                .unwrap_err()
                .contains("tabel")
        );
        assert!(parse("kind = \"mysql\"").unwrap_err().contains("mysql"));
        assert!(
            parse("timeout = \"5 parsecs\"")
                .unwrap_err()
                .contains("unit")
        );
        assert!(parse("timeout = 5").is_err());
    }

    fn refused(c: StoreConfig) -> (&'static str, String) {
        match c.validate(Path::new(".")) {
            Err(StoreError::Config { field, reason }) => (field, reason),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn validate_names_the_field() {
        for bad in [
            "",
            "1abc",
            "a-b",
            "a\"b",
            "a.b.c",
            "robert'); drop",
            &"x".repeat(64),
        ] {
            let c = StoreConfig {
                table: bad.to_owned(),
                ..StoreConfig::sqlite("x")
            };
            assert_eq!(refused(c).0, "table", "{bad:?}");
        }
        assert_eq!(refused(StoreConfig::default()).0, "path");
        let c = StoreConfig {
            kind: StoreKind::Postgres,
            ..StoreConfig::default()
        };
        assert_eq!(refused(c).0, "url");
        let c = StoreConfig {
            url: Some("postgres://h/db".into()),
            ..StoreConfig::sqlite("x")
        };
        assert_eq!(refused(c).0, "url");
        let c = StoreConfig {
            path: Some("x".into()),
            ..StoreConfig::postgres("postgres://h/db")
        };
        assert_eq!(refused(c).0, "path");
        let c = StoreConfig {
            pool_size: 0,
            ..StoreConfig::postgres("postgres://h/db")
        };
        assert_eq!(refused(c).0, "pool_size");
        let c = StoreConfig {
            timeout: Duration::ZERO,
            ..StoreConfig::sqlite("x")
        };
        assert_eq!(refused(c).0, "timeout");
        assert_eq!(
            refused(StoreConfig::postgres("postgres://h:notaport/db")).0,
            "url"
        );
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("postgres://u:p%40ss@h:1/db?x=1"),
            "postgres://u:***@h:1/db?x=1"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("host=h password=pw user=u"),
            "host=h password=*** user=u"
        );
    }

    #[test]
    fn table_names() {
        let t = TableName::parse("ringcache_kv").unwrap();
        assert_eq!((t.schema(), t.name()), (None, "ringcache_kv"));
        assert_eq!(t.to_string(), "ringcache_kv");
        let t = TableName::parse("_s1.T2").unwrap();
        assert_eq!((t.schema(), t.name()), (Some("_s1"), "T2"));
    }
}
