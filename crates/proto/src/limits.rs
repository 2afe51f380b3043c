//! Size limits both sides check, with the errors a node sends when they are broken.

use serde::{Deserialize, Serialize};

use crate::{ErrorCode, Op, OpRef, WireError};

/// Longest namespace name, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 64;

/// The sizes a node accepts. Clients check them before sending, so a request the node
/// would refuse fails fast and locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest frame, in bytes after the length prefix.
    pub max_frame: u32,
    /// Largest key, in bytes.
    pub max_key: u32,
    /// Largest value, in bytes.
    pub max_value: u32,
    /// Most keys or items in one `GetMany`/`SetMany`.
    pub max_batch: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: crate::DEFAULT_MAX_FRAME,
            max_key: 16 << 10,
            max_value: 8 << 20,
            max_batch: 4096,
        }
    }
}

/// Whether `ns` is a valid namespace name: 1 to 64 bytes of ASCII letters, digits,
/// `_`, `-` and `.`.
#[must_use]
pub fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= MAX_NAMESPACE_LEN
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Limits {
    fn key(&self, key: &[u8]) -> Result<(), WireError> {
        if key.len() > self.max_key as usize {
            return Err(WireError::new(
                ErrorCode::KeyTooLarge,
                format!(
                    "key of {} bytes exceeds max_key = {}",
                    key.len(),
                    self.max_key
                ),
            ));
        }
        Ok(())
    }

    fn value(&self, value: &[u8]) -> Result<(), WireError> {
        if value.len() > self.max_value as usize {
            return Err(WireError::new(
                ErrorCode::ValueTooLarge,
                format!(
                    "value of {} bytes exceeds max_value = {}",
                    value.len(),
                    self.max_value
                ),
            ));
        }
        Ok(())
    }

    fn ns(ns: &str) -> Result<(), WireError> {
        if !valid_namespace(ns) {
            return Err(WireError::new(
                ErrorCode::Malformed,
                format!(
                    "invalid namespace {ns:?}: 1 to {MAX_NAMESPACE_LEN} bytes of letters, digits, '_', '-', '.'"
                ),
            ));
        }
        Ok(())
    }

    fn batch(&self, n: usize) -> Result<(), WireError> {
        if n > self.max_batch as usize {
            return Err(WireError::new(
                ErrorCode::Malformed,
                format!("batch of {n} items exceeds max_batch = {}", self.max_batch),
            ));
        }
        Ok(())
    }

    /// As [`Limits::check`], for an operation given by borrowed parts.
    ///
    /// # Errors
    /// As [`Limits::check`].
    pub fn check_ref(&self, op: OpRef<'_>) -> Result<(), WireError> {
        match op {
            OpRef::Get { ns, key } => {
                Self::ns(ns)?;
                self.key(key)
            }
            OpRef::Set { ns, key, value, .. } => {
                Self::ns(ns)?;
                self.key(key)?;
                self.value(value)
            }
            OpRef::Op(op) => self.check(op),
        }
    }

    /// Checks an operation's names and sizes.
    ///
    /// # Errors
    /// The [`WireError`] a node answers with: `KeyTooLarge`, `ValueTooLarge` or
    /// `Malformed` (bad namespace, batch too large), naming the limit.
    pub fn check(&self, op: &Op) -> Result<(), WireError> {
        match op {
            Op::With { op, .. } => match **op {
                Op::Get { .. }
                | Op::GetMany { .. }
                | Op::Set { .. }
                | Op::SetMany { .. }
                | Op::Delete { .. } => self.check(op),
                _ => Err(WireError::new(
                    ErrorCode::Malformed,
                    "a strategy override wraps a get, get_many, set, set_many or delete",
                )),
            },
            Op::Ping
            | Op::ClusterInfo
            | Op::NsList
            | Op::ClusterStatus
            | Op::ClusterInit
            | Op::ClusterJoin { .. }
            | Op::ClusterDrain { .. }
            | Op::ClusterRemove { .. }
            | Op::PartitionFence { .. }
            | Op::PartitionDump { .. }
            | Op::PartitionLoad { .. }
            | Op::PartitionRelease { .. } => Ok(()),
            Op::Stats { ns } | Op::WriteBehindStatus { ns } | Op::WriteBehindFlush { ns } => {
                ns.as_deref().map_or(Ok(()), Self::ns)
            }
            Op::NsShow { ns } => Self::ns(ns),
            Op::NsCreate { ns, config } | Op::NsAlter { ns, config } => {
                Self::ns(ns)?;
                self.value(config.as_bytes())
            }
            Op::Get { ns, key }
            | Op::Exists { ns, key }
            | Op::Touch { ns, key, .. }
            | Op::Increment { ns, key, .. }
            | Op::Delete { ns, key, .. } => {
                Self::ns(ns)?;
                self.key(key)
            }
            Op::Purge { ns, prefix } => {
                Self::ns(ns)?;
                self.key(prefix)
            }
            Op::GetMany { ns, keys } => {
                Self::ns(ns)?;
                self.batch(keys.len())?;
                keys.iter().try_for_each(|k| self.key(k))
            }
            Op::Set { ns, key, value, .. } => {
                Self::ns(ns)?;
                self.key(key)?;
                self.value(value)
            }
            Op::SetMany { ns, items } => {
                Self::ns(ns)?;
                self.batch(items.len())?;
                items.iter().try_for_each(|i| {
                    self.key(&i.key)?;
                    self.value(&i.value)
                })
            }
        }
    }
}
