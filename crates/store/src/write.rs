//! The values that go in and out of a store: [`Write`], [`Row`], [`StoredValue`],
//! [`Applied`], [`BatchOutcome`], and the batch coalescing rule.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::error::StoreError;

/// A live value read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredValue {
    /// The bytes.
    pub value: Bytes,
    /// The version it was written with.
    pub version: u64,
}

/// A row as stored: a live value, or a tombstone left by a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The value; `None` is a tombstone (the key was deleted at `version`).
    pub value: Option<Bytes>,
    /// The version of the last applied write or delete.
    pub version: u64,
}

/// Whether a version-guarded write changed the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Applied {
    /// The row was absent or held an older version; it now holds this write.
    Written,
    /// The row already held this version or a newer one (live or tombstone); nothing
    /// changed. Not an error: it is what a replayed write looks like.
    Stale,
}

impl Applied {
    /// True for [`Applied::Written`].
    #[must_use]
    pub fn is_written(self) -> bool {
        self == Self::Written
    }
}

/// One write of a batch: a value, or a delete (tombstone) when `value` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The key.
    pub key: Bytes,
    /// The new value, or `None` to delete.
    pub value: Option<Bytes>,
    /// The write's version; it applies only over an absent row or an older version.
    pub version: u64,
}

impl Write {
    /// Sets `key` to `value` at `version`.
    pub fn put(key: impl Into<Bytes>, value: impl Into<Bytes>, version: u64) -> Self {
        Self {
            key: key.into(),
            value: Some(value.into()),
            version,
        }
    }

    /// Deletes `key` at `version` (leaves a tombstone).
    pub fn delete(key: impl Into<Bytes>, version: u64) -> Self {
        Self {
            key: key.into(),
            value: None,
            version,
        }
    }
}

/// What a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchOutcome {
    /// Keys whose row now holds the batch's write.
    pub written: usize,
    /// Keys whose row already held that version or a newer one.
    pub stale: usize,
    /// Writes dropped before reaching the database because the same batch held a
    /// newer (or an earlier, equal-version) write to the same key.
    pub coalesced: usize,
}

/// Checks that a version fits the store's signed 64-bit column.
pub(crate) fn to_db_version(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| StoreError::VersionOutOfRange { version })
}

/// Reduces a batch to one write per key, sorted by key: the highest version wins and,
/// between equal versions, the earliest (what applying the batch in order would leave,
/// since an equal version is a no-op). Sorting gives concurrent batches one lock order,
/// so they cannot deadlock each other in PostgreSQL.
///
/// # Errors
/// [`StoreError::VersionOutOfRange`] for the first version that does not fit.
pub(crate) fn coalesce(writes: &[Write]) -> Result<Vec<&Write>, StoreError> {
    let mut by_key: BTreeMap<&[u8], &Write> = BTreeMap::new();
    for w in writes {
        to_db_version(w.version)?;
        by_key
            .entry(&w.key[..])
            .and_modify(|kept| {
                if w.version > kept.version {
                    *kept = w;
                }
            })
            .or_insert(w);
    }
    Ok(by_key.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_keeps_highest_then_earliest() {
        let ws = [
            Write::put("k", "a", 1),
            Write::put("k", "c", 3),
            Write::put("j", "x", 7),
            Write::put("k", "b", 2),
            Write::delete("k", 3),
        ];
        let c = coalesce(&ws).unwrap();
        assert_eq!(c, vec![&ws[2], &ws[1]]);
    }

    #[test]
    fn versions_above_i64_are_refused() {
        assert_eq!(to_db_version(i64::MAX as u64).unwrap(), i64::MAX);
        assert!(matches!(
            coalesce(&[Write::put("k", "v", u64::MAX)]),
            Err(StoreError::VersionOutOfRange { version: u64::MAX })
        ));
    }
}
