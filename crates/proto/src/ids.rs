//! Identifier newtypes: never bare integers across APIs.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl From<$inner> for $name {
            fn from(v: $inner) -> Self {
                Self(v)
            }
        }
    };
}

id!(
    /// A cluster member's identity (stable across restarts; also the name its
    /// certificate is checked against).
    NodeId(u64), "node-"
);
id!(
    /// One of the fixed partitions keys hash to (`0..partitions`).
    PartitionId(u32), "p"
);
id!(
    /// The version of the partition table: every committed change increments it.
    Epoch(u64), "e"
);
id!(
    /// Matches a response to its request on a connection; chosen by the requester.
    RequestId(u64), "r"
);
