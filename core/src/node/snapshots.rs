//! Compaction snapshots of the pinset: when a peer makes one and offers it, and how a new
//! replica starts from one.
//!
//! A peer makes a snapshot when its replica is synced and its height grew by
//! [`SnapshotPolicy::every`] deltas since the last one, at most once per
//! [`SnapshotPolicy::min_interval_ms`]; only the latest is kept and offered.
//!
//! A replica that has merged nothing asks a trusted peer for its snapshot as soon as one
//! is connected ([`Bootstrap`]), holding the head broadcasts it hears meanwhile; it loads
//! the snapshot offered, then takes the held broadcasts, so that it walks only the deltas
//! above the snapshot. With no offer within [`BOOTSTRAP_WAIT_MS`], it walks the whole DAG.

use cid::Cid;
use libp2p_identity::PeerId;

use crate::codec::peer_request::SnapshotOffer;
use crate::codec::snapshot::SnapshotHeader;
use crate::crdt::{BlockId, Progress, Replica, ReplicaError, Store};

use super::gather::RequestId;

/// How long head broadcasts wait while a trusted peer is asked for its snapshot.
pub const BOOTSTRAP_WAIT_MS: u64 = 5_000;
/// Head broadcasts held meanwhile (later ones replace the oldest).
pub const MAX_HELD_BROADCASTS: usize = 64;

/// When to make snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Height growth between snapshots; 0 makes none.
    pub every: u64,
    pub min_interval_ms: u64,
}

impl SnapshotPolicy {
    pub const NEVER: SnapshotPolicy = SnapshotPolicy {
        every: 0,
        min_interval_ms: 0,
    };

    /// Whether a snapshot is due: the replica is synced and grew by `every` since `latest`,
    /// and the last one was made at least `min_interval_ms` ago.
    pub fn is_due(
        &self,
        progress: &Progress,
        latest: Option<&SnapshotOffer>,
        last_made_ms: Option<u64>,
        now_ms: u64,
    ) -> bool {
        if self.every == 0 || progress.pending > 0 || progress.heads == 0 {
            return false;
        }
        let grown = match latest {
            Some(offer) => progress.height >= offer.height.saturating_add(self.every),
            None => progress.height >= self.every,
        };
        grown && last_made_ms.is_none_or(|at| now_ms.saturating_sub(at) >= self.min_interval_ms)
    }
}

/// A snapshot just made, and how many blocks of the one it replaced were deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MadeSnapshot {
    pub offer: SnapshotOffer,
    pub removed_blocks: usize,
}

/// Makes a snapshot of `replica` and deletes the blocks of `replaced` it does not share.
pub async fn make_snapshot<S: Store>(
    replica: &mut Replica<S>,
    replaced: Option<&SnapshotOffer>,
) -> Result<Option<MadeSnapshot>, ReplicaError<S::Error>> {
    let Some(root) = replica.create_snapshot().await? else {
        return Ok(None);
    };
    let Some(offer) = offer_of(replica, root).await? else {
        return Ok(None);
    };
    let removed_blocks = match replaced {
        Some(old) if old.root != root => replica.remove_snapshot(&old.root, &root).await?,
        _ => 0,
    };
    Ok(Some(MadeSnapshot {
        offer,
        removed_blocks,
    }))
}

/// What the stored snapshot `root` says of itself; `None` when the store lacks it or it
/// is not a snapshot.
pub async fn offer_of<S: Store>(
    replica: &Replica<S>,
    root: Cid,
) -> Result<Option<SnapshotOffer>, ReplicaError<S::Error>> {
    let Ok(id) = BlockId::from_cid(&root) else {
        return Ok(None);
    };
    let Some(bytes) = replica
        .store()
        .block(&id)
        .await
        .map_err(ReplicaError::Store)?
    else {
        return Ok(None);
    };
    let Ok(header) = SnapshotHeader::decode(&bytes) else {
        return Ok(None);
    };
    Ok(Some(SnapshotOffer {
        root,
        height: header.heads.iter().map(|(_, h)| *h).max().unwrap_or(0),
        keys: header.keys,
    }))
}

/// A head broadcast held during the bootstrap: its author and bytes.
pub type HeldBroadcast = (PeerId, Vec<u8>);

/// The start of a replica's sync, see the module's documentation.
#[derive(Debug)]
pub enum Bootstrap {
    /// Until a trusted peer is connected, or `until`.
    Waiting {
        held: Vec<HeldBroadcast>,
        until: u64,
    },
    /// Asked `peer` with `request`, until `until`.
    Asking {
        request: RequestId,
        peer: PeerId,
        held: Vec<HeldBroadcast>,
        until: u64,
    },
    Done,
}

impl Bootstrap {
    /// Waits for a snapshot when the replica is empty; otherwise it is done already.
    pub fn new(replica_is_empty: bool, now_ms: u64) -> Self {
        if replica_is_empty {
            Bootstrap::Waiting {
                held: Vec::new(),
                until: now_ms + BOOTSTRAP_WAIT_MS,
            }
        } else {
            Bootstrap::Done
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, Bootstrap::Done)
    }

    /// Holds a head broadcast while waiting; gives it back once done.
    pub fn hold(&mut self, author: PeerId, data: Vec<u8>) -> Option<Vec<u8>> {
        match self {
            Bootstrap::Waiting { held, .. } | Bootstrap::Asking { held, .. } => {
                if held.len() == MAX_HELD_BROADCASTS {
                    held.remove(0);
                }
                held.push((author, data));
                None
            }
            Bootstrap::Done => Some(data),
        }
    }

    /// Whether the bootstrap should ask `peer` (trusted and connected) now.
    pub fn should_ask(&self) -> bool {
        matches!(self, Bootstrap::Waiting { .. })
    }

    /// Records the request sent to `peer`; the wait starts again.
    pub fn asked(&mut self, peer: PeerId, request: RequestId, now_ms: u64) {
        if let Bootstrap::Waiting { held, .. } = self {
            let held = std::mem::take(held);
            *self = Bootstrap::Asking {
                request,
                peer,
                held,
                until: now_ms + BOOTSTRAP_WAIT_MS,
            };
        }
    }

    /// The peer asked, if `request` is the bootstrap's.
    pub fn asked_with(&self, request: RequestId) -> Option<PeerId> {
        match self {
            Bootstrap::Asking {
                request: asked,
                peer,
                ..
            } if *asked == request => Some(*peer),
            _ => None,
        }
    }

    pub fn timed_out(&self, now_ms: u64) -> bool {
        match self {
            Bootstrap::Waiting { until, .. } | Bootstrap::Asking { until, .. } => now_ms >= *until,
            Bootstrap::Done => false,
        }
    }

    /// Ends the bootstrap: the held broadcasts, and the peer asked (whose offer, if any,
    /// is to be loaded).
    pub fn finish(&mut self) -> (Vec<HeldBroadcast>, Option<PeerId>) {
        match std::mem::replace(self, Bootstrap::Done) {
            Bootstrap::Waiting { held, .. } => (held, None),
            Bootstrap::Asking { held, peer, .. } => (held, Some(peer)),
            Bootstrap::Done => (Vec::new(), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(height: u64, pending: usize) -> Progress {
        Progress {
            heads: 1,
            height,
            pending,
            ..Progress::default()
        }
    }

    #[test]
    fn a_snapshot_is_due_when_synced_grown_and_not_too_soon() {
        let policy = SnapshotPolicy {
            every: 10,
            min_interval_ms: 1_000,
        };
        assert!(!policy.is_due(&progress(9, 0), None, None, 0));
        assert!(policy.is_due(&progress(10, 0), None, None, 0));
        assert!(
            !policy.is_due(&progress(10, 1), None, None, 0),
            "pending blocks"
        );
        let offer = SnapshotOffer {
            root: crate::codec::dagpb::dag_pb_cid(b"x"),
            height: 10,
            keys: 1,
        };
        assert!(!policy.is_due(&progress(19, 0), Some(&offer), Some(0), 5_000));
        assert!(!policy.is_due(&progress(20, 0), Some(&offer), Some(4_500), 5_000));
        assert!(policy.is_due(&progress(20, 0), Some(&offer), Some(4_000), 5_000));
        assert!(!SnapshotPolicy::NEVER.is_due(&progress(100, 0), None, None, 0));
    }

    #[test]
    fn the_bootstrap_holds_the_latest_broadcasts_until_it_ends() {
        let author = PeerId::random();
        let mut b = Bootstrap::new(true, 0);
        for i in 0..(MAX_HELD_BROADCASTS + 2) {
            assert_eq!(b.hold(author, vec![i as u8]), None);
        }
        assert!(b.should_ask());
        b.asked(author, RequestId(7), 1_000);
        assert_eq!(b.asked_with(RequestId(7)), Some(author));
        assert!(!b.timed_out(5_999));
        assert!(b.timed_out(6_000));
        let (held, asked) = b.finish();
        assert_eq!(asked, Some(author));
        assert_eq!(held.len(), MAX_HELD_BROADCASTS);
        assert_eq!(held[0].1, vec![2]);
        assert_eq!(b.hold(author, vec![1]), Some(vec![1]));
        assert!(Bootstrap::new(false, 0).is_done());
    }
}
