//! Contact leases: when this member last proved, by a round trip, that it is in touch
//! with a leader that is itself in touch with a quorum, with its own state machine
//! caught up to what that leader had applied.
//!
//! The node serves its partitions only while that proof is recent (`cluster.fence_after`),
//! so a member cut off from the cluster, or paused and resumed with an old table, stops
//! acknowledging writes before the leader gives its partitions to others.
//!
//! - The leader renews by confirming its leadership with a quorum (openraft's
//!   `ensure_linearizable`: a heartbeat round to a majority, and its state machine
//!   applied up to the read point); the contact time is when it started the round.
//! - Every other member asks the leader ([`crate::net::wire::PeerRequest::Lease`]) every
//!   heartbeat. The answer carries how old the leader's own confirmation is and the
//!   index the leader has applied; the member's contact time is when it sent the
//!   question minus that age (the earliest the leader's quorum could have been), and it
//!   counts only once this member has applied the same index, so a resumed member is
//!   not in contact until it has caught up with the table the cluster is on.

use std::collections::VecDeque;
use std::time::Instant;

/// Unconfirmed answers kept at most (one per heartbeat, confirmed as this member applies).
const PENDING: usize = 16;

/// A member's lease: the last confirmed contact and answers waiting for this member's
/// state machine to catch up.
#[derive(Debug, Default)]
pub(crate) struct Lease {
    confirmed: Option<Instant>,
    pending: VecDeque<(Instant, u64)>,
}

impl Lease {
    /// Records a contact at `at` that needs nothing applied (the leader's own).
    pub(crate) fn confirm(&mut self, at: Instant) {
        if self.confirmed.is_none_or(|c| c < at) {
            self.confirmed = Some(at);
        }
    }

    /// Records a leader's answer: contact at `at`, valid once `applied` is applied here.
    pub(crate) fn expect(&mut self, at: Instant, applied: Option<u64>, local: Option<u64>) {
        match applied {
            None => self.confirm(at),
            Some(index) => {
                if self.pending.len() == PENDING {
                    self.pending.pop_front();
                }
                self.pending.push_back((at, index));
                self.catch_up(local);
            }
        }
    }

    /// Confirms every waiting answer whose index is applied here (`local`), and returns
    /// the last confirmed contact.
    pub(crate) fn catch_up(&mut self, local: Option<u64>) -> Option<Instant> {
        let local = local.unwrap_or(0);
        while let Some(&(at, index)) = self.pending.front() {
            if index > local {
                break;
            }
            self.pending.pop_front();
            self.confirm(at);
        }
        self.confirmed
    }

    /// The last confirmed contact.
    pub(crate) fn confirmed(&self) -> Option<Instant> {
        self.confirmed
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn contact_counts_only_once_the_leaders_index_is_applied() {
        let t0 = Instant::now();
        let mut l = Lease::default();
        assert_eq!(l.catch_up(Some(100)), None);
        l.expect(t0, Some(10), Some(5));
        assert_eq!(l.confirmed(), None, "behind the leader: no contact yet");
        let t1 = t0 + Duration::from_millis(250);
        l.expect(t1, Some(12), Some(9));
        assert_eq!(l.catch_up(Some(10)), Some(t0));
        assert_eq!(l.catch_up(Some(12)), Some(t1));
    }

    #[test]
    fn the_leaders_own_contact_and_older_answers_never_move_it_back() {
        let t0 = Instant::now();
        let mut l = Lease::default();
        l.confirm(t0 + Duration::from_secs(1));
        l.expect(t0, None, None);
        assert_eq!(l.confirmed(), Some(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn a_member_that_never_catches_up_keeps_a_bounded_queue() {
        let t0 = Instant::now();
        let mut l = Lease::default();
        for i in 0..100 {
            l.expect(t0 + Duration::from_millis(i), Some(1000 + i), Some(0));
        }
        assert_eq!(l.pending.len(), PENDING);
        assert_eq!(l.confirmed(), None);
    }
}
