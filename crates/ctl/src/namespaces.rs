//! `ns list`, `ns show`, `ns create`, `ns alter`: namespace settings, read and changed
//! at runtime through the node's namespace operations.

use anyhow::{Context, bail};
use ringcache_client::Client;
use ringcache_proto::units::format_bytes;
use ringcache_proto::{NamespaceInfo, Op, Response};
use serde::Serialize;

use crate::Status;
use crate::cli::NsCommand;
use crate::ns_config;
use crate::output::{Namespaces, Table, print_json, print_line};

/// An `ns create` or `ns alter`, its settings built and checked before connecting (a
/// bad `--set` or `--file` needs no node to be reported).
#[derive(Debug)]
pub(crate) struct Change {
    ns: String,
    /// The settings as the TOML text the node takes.
    config: String,
    create: bool,
}

impl Change {
    /// The change `command` asks for; `None` for the commands that only read.
    ///
    /// # Errors
    /// Settings that do not build (see [`ns_config::build`]), or an `ns alter` that
    /// names none.
    pub(crate) fn from_command(command: &NsCommand) -> anyhow::Result<Option<Self>> {
        let (args, create) = match command {
            NsCommand::Create(a) => (a, true),
            NsCommand::Alter(a) => (a, false),
            NsCommand::List | NsCommand::Show(_) => return Ok(None),
        };
        if !create && ns_config::is_empty(&args.settings) {
            bail!(
                "nothing to change in namespace {:?}: give --file, --set KEY=VALUE or a \
                 settings flag such as --policy (see `ringctl ns alter --help`)",
                args.name
            );
        }
        let table = ns_config::build(&args.settings)?;
        Ok(Some(Self {
            ns: args.name.clone(),
            config: ns_config::to_text(&table)?,
            create,
        }))
    }
}

/// Runs one `ns` command; `change` is [`Change::from_command`]'s answer for it.
pub(crate) async fn run(
    client: &Client,
    only: Option<&str>,
    command: &NsCommand,
    change: Option<Change>,
    json: bool,
) -> anyhow::Result<Status> {
    match command {
        NsCommand::List => list(client, only, json).await,
        NsCommand::Show(a) => {
            let info = one(client, Op::NsShow { ns: a.name.clone() }, &a.name)
                .await
                .with_context(|| format!("ns show {:?}", a.name))?;
            show(&info, None, json)
        }
        NsCommand::Create(_) | NsCommand::Alter(_) => {
            let Change { ns, config, create } =
                change.expect("data::run prepares the change of create and alter");
            let (op, what, done) = if create {
                let op = Op::NsCreate {
                    ns: ns.clone(),
                    config,
                };
                (op, "create", "created")
            } else {
                let op = Op::NsAlter {
                    ns: ns.clone(),
                    config,
                };
                (op, "alter", "altered")
            };
            let info = one(client, op, &ns)
                .await
                .with_context(|| format!("ns {what} {ns:?}"))?;
            show(&info, Some(done), json)
        }
    }
}

/// The namespaces an operation answered with.
async fn infos(client: &Client, op: Op) -> anyhow::Result<Vec<NamespaceInfo>> {
    match client.request(op).await? {
        Response::Namespaces(list) => Ok(list),
        other => bail!(
            "unexpected answer from the node: {}",
            crate::data::brief(&other)
        ),
    }
}

/// The one namespace an operation on `ns` answered with.
async fn one(client: &Client, op: Op, ns: &str) -> anyhow::Result<NamespaceInfo> {
    let list = infos(client, op).await?;
    let n = list.len();
    match <[NamespaceInfo; 1]>::try_from(list) {
        Ok([info]) if info.ns == ns => Ok(info),
        Ok([info]) => bail!("the node answered with namespace {:?}", info.ns),
        Err(_) => bail!("the node answered with {n} namespaces instead of one"),
    }
}

/// `{ns, config}` of `ns show --json` (and create, alter, and each of `ns list`).
#[derive(Serialize)]
struct InfoJson<'a> {
    ns: &'a str,
    /// The settings as a JSON object.
    config: serde_json::Value,
}

impl<'a> InfoJson<'a> {
    fn new(info: &'a NamespaceInfo) -> anyhow::Result<Self> {
        let table = ns_config::parse_table(&info.config)
            .with_context(|| format!("the node's settings of namespace {:?}", info.ns))?;
        Ok(Self {
            ns: &info.ns,
            config: ns_config::table_to_json(&table),
        })
    }
}

/// Prints one namespace: its TOML as the node wrote it (after a `# created ...` comment
/// line for a change, so the output is still a TOML file), or `{ns, config}`.
fn show(info: &NamespaceInfo, verb: Option<&str>, json: bool) -> anyhow::Result<Status> {
    if json {
        print_json(&InfoJson::new(info)?)?;
    } else {
        if let Some(verb) = verb {
            print_line(&format!("# {verb} namespace {}", info.ns))?;
        }
        print_line(&info.config)?;
    }
    Ok(Status::Success)
}

async fn list(client: &Client, only: Option<&str>, json: bool) -> anyhow::Result<Status> {
    let mut list = match only {
        Some(ns) => vec![
            one(client, Op::NsShow { ns: ns.to_owned() }, ns)
                .await
                .context("ns list")?,
        ],
        None => infos(client, Op::NsList).await.context("ns list")?,
    };
    list.sort_by(|a, b| a.ns.cmp(&b.ns));
    if json {
        let namespaces = list
            .iter()
            .map(InfoJson::new)
            .collect::<anyhow::Result<Vec<_>>>()?;
        print_json(&Namespaces { namespaces })?;
        return Ok(Status::Success);
    }
    print_line(&list_table(&list).render())?;
    Ok(Status::Success)
}

/// The columns of `ns list`, by the TOML key they show.
const LIST_COLUMNS: [(&str, &str); 5] = [
    ("policy", "policy"),
    ("memory", ">memory"),
    ("read", "read"),
    ("write", "write"),
    ("default_ttl", ">default ttl"),
];

fn list_table(list: &[NamespaceInfo]) -> Table {
    let mut header = vec!["namespace"];
    header.extend(LIST_COLUMNS.iter().map(|(_, h)| *h));
    let mut t = Table::new(&header);
    for info in list {
        // Settings the node sent that are not TOML are a node bug; the row still names
        // the namespace, and `ns show` reports the parse error.
        let table = ns_config::parse_table(&info.config).ok();
        let mut row = vec![info.ns.clone()];
        row.extend(LIST_COLUMNS.iter().map(|(key, _)| {
            table
                .as_ref()
                .and_then(|t| t.get(*key))
                .map_or_else(|| "-".to_owned(), |v| cell(key, v))
        }));
        t.row(row);
    }
    t
}

/// A setting in a table cell: strings without quotes, a byte count as a size.
fn cell(key: &str, v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(n) if key == "memory" => {
            u64::try_from(*n).map_or_else(|_| n.to_string(), format_bytes)
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(ns: &str, config: &str) -> NamespaceInfo {
        NamespaceInfo {
            ns: ns.into(),
            config: config.into(),
        }
    }

    #[test]
    fn list_shows_the_main_settings_and_dashes_for_missing_ones() {
        let list = [
            info(
                "default",
                "policy = \"adaptive\"\nmemory = \"64MiB\"\nread = \"cache-aside\"\nwrite = \"cache-only\"\n",
            ),
            info(
                "users",
                "policy = \"lru\"\nmemory = 1048576\nread = \"read-through\"\n\
                 write = \"write-behind\"\ndefault_ttl = \"10m\"\n[store]\nkind = \"sqlite\"\n",
            ),
            info("broken", "this is not TOML"),
        ];
        let text = list_table(&list).render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "NAMESPACE",
                "POLICY",
                "MEMORY",
                "READ",
                "WRITE",
                "DEFAULT",
                "TTL"
            ]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "default",
                "adaptive",
                "64MiB",
                "cache-aside",
                "cache-only",
                "-"
            ]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            [
                "users",
                "lru",
                "1.0",
                "MiB",
                "read-through",
                "write-behind",
                "10m"
            ]
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["broken", "-", "-", "-", "-", "-"]
        );
    }

    #[test]
    fn show_json_is_the_settings_as_an_object() {
        let i = info(
            "users",
            "policy = \"lru\"\n[write_behind]\nbatch_size = 500\n",
        );
        let json = serde_json::to_value(InfoJson::new(&i).expect("TOML")).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({
                "ns": "users",
                "config": {"policy": "lru", "write_behind": {"batch_size": 500}}
            })
        );
        let msg = format!(
            "{:#}",
            InfoJson::new(&info("x", "= 1")).err().expect("not TOML")
        );
        assert!(
            msg.contains("namespace \"x\"") && msg.contains("invalid TOML"),
            "{msg}"
        );
    }
}
