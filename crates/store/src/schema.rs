//! The table shape both stores need, checked once when a store opens so a wrong table
//! fails at startup with a message naming the column, not on the first write.

use crate::config::TableName;
use crate::error::StoreError;

/// One column of an existing table, as the database describes it.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) name: String,
    /// The declared type, lowercase (`bytea`, `bigint`, `integer`, ...).
    pub(crate) ty: String,
    pub(crate) not_null: bool,
    /// Has a default, or is generated/identity: an INSERT may leave it out.
    pub(crate) has_default: bool,
}

/// What a column's type must be; `Err` explains the expectation.
pub(crate) type TypeCheck = fn(column: &str, ty: &str) -> Result<(), String>;

/// Checks that `columns` has the shape Ringcache writes: `key` (unique), `value`
/// (nullable: deletes leave a NULL tombstone), `version` (NOT NULL), `updated_at`, and
/// no other NOT NULL column without a default.
pub(crate) fn check_shape(
    table: &TableName,
    columns: &[Column],
    key_unique: bool,
    type_ok: TypeCheck,
) -> Result<(), StoreError> {
    let err = |reason: String| Err(StoreError::schema(table.to_string(), reason));
    if columns.is_empty() {
        return err("has no columns".into());
    }
    for needed in ["key", "value", "version", "updated_at"] {
        let Some(col) = columns.iter().find(|c| c.name == needed) else {
            return err(format!(
                "missing column `{needed}` (the table needs key, value, version, updated_at; see the ringcache-store docs)"
            ));
        };
        if let Err(why) = type_ok(needed, &col.ty) {
            return err(format!("column `{needed}` has type {}: {why}", col.ty));
        }
    }
    if !key_unique {
        return err(
            "column `key` is neither the primary key nor covered by a unique index on it alone"
                .into(),
        );
    }
    if columns.iter().any(|c| c.name == "value" && c.not_null) {
        return err(
            "column `value` is NOT NULL; deletes store a NULL tombstone, so it must be nullable"
                .into(),
        );
    }
    if columns.iter().any(|c| c.name == "version" && !c.not_null) {
        return err(
            "column `version` must be NOT NULL (a NULL version never compares older, so its row could never be updated)"
                .into(),
        );
    }
    if let Some(extra) = columns.iter().find(|c| {
        !["key", "value", "version", "updated_at"].contains(&c.name.as_str())
            && c.not_null
            && !c.has_default
    }) {
        return err(format!(
            "column `{}` is NOT NULL without a default; Ringcache writes only key, value, version and updated_at",
            extra.name
        ));
    }
    Ok(())
}
