//! The replica: go-ds-crdt's Merkle-CRDT datastore as a state machine.
//!
//! Callers hand it local writes, received head broadcasts, received blocks and the time; it
//! merges what it can through its [`Store`] and queues [`Output`]s: broadcasts to publish,
//! blocks to fetch, and value changes. It opens no socket, starts no task and reads no clock.

mod ancestors;
mod batching;
mod snapshots;
mod walk;

use batching::Batch;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use cid::Cid;
use libp2p_identity::PeerId;
use prost::Message;

use super::config::Config;
use super::set::{BlockId, KeyState, Version};
use super::store::{BlockKind, PendingBlock, Store, Transaction};
use crate::codec::dagpb::{verify_block, DeltaNode};
use crate::codec::delta::{decode_broadcast, encode_broadcast, Delta, Element};
use crate::codec::snapshot::{
    SnapshotChunk, SnapshotHeader, SnapshotIndex, SnapshotLinks, MAX_CHUNK_BYTES,
};

/// Highest priority accepted in a delta, far above any real DAG height; it keeps
/// `priority + 1` from overflowing however a forged DAG is built.
pub const MAX_PRIORITY: u64 = 1 << 53;

/// Something the caller must do, or learn, after feeding the replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Publish these bytes (a `CRDTBroadcast`) on the cluster's CRDT topic.
    Broadcast(Vec<u8>),
    /// Fetch these blocks and hand each to [`Replica::receive_block`] (or report
    /// [`Replica::block_unavailable`]).
    Fetch(Vec<Cid>),
    /// Ask a peer that answers ancestors requests for up to `limit` blocks: `from` and its
    /// ancestors, not going past `known`; hand its answer to [`Replica::receive_ancestors`]
    /// (an empty one when no peer answered). `from` was also asked for by a
    /// [`Output::Fetch`], so that a peer that does not answer these only slows the walk.
    FetchAncestors {
        from: Cid,
        known: Vec<Cid>,
        limit: u32,
    },
    /// A key got a new value (go-ds-crdt's put hook); `added` when it had none before.
    Put {
        key: String,
        value: Vec<u8>,
        added: bool,
    },
    /// A key lost its value (go-ds-crdt's delete hook).
    Delete { key: String },
}

/// Counters of what the replica did and what it refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Deltas merged, local and remote.
    pub merged: u64,
    /// Delta nodes written locally.
    pub committed: u64,
    /// Broadcasts ignored because their author is not trusted.
    pub untrusted_broadcasts: u64,
    /// Broadcasts that did not decode, or named heads that cannot be delta blocks.
    pub malformed_broadcasts: u64,
    /// Blocks whose bytes do not hash to their CID (dropped; fetched again).
    pub corrupt_blocks: u64,
    /// Blocks that hash right but are not valid delta nodes, or break the priority order
    /// (their branch is abandoned).
    pub invalid_blocks: u64,
    /// Blocks delivered without having been requested.
    pub unsolicited_blocks: u64,
    /// Requests that timed out or were reported unavailable.
    pub fetch_failures: u64,
    /// Heads dropped because their block could not be fetched.
    pub unavailable_heads: u64,
    /// Blocks set aside until the next repair after repeated fetch failures.
    pub parked_blocks: u64,
    /// Heads or blocks refused because `max_pending` was reached.
    pub over_capacity: u64,
    /// Blocks received in answers to ancestors requests.
    pub ancestor_blocks: u64,
    /// Snapshots refused because their announcer is not trusted.
    pub untrusted_snapshots: u64,
    /// Snapshot chunks merged, and snapshots fully loaded.
    pub snapshot_chunks: u64,
    pub snapshots_loaded: u64,
    /// Snapshots abandoned, with nothing merged, because an index node or chunk was
    /// malformed; the replica syncs through the DAG instead.
    pub failed_snapshots: u64,
}

/// Where a sync stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Blocks known and not yet merged (queued, requested or parked).
    pub pending: usize,
    /// Blocks requested and not yet delivered.
    pub in_flight: usize,
    /// Blocks parked after repeated fetch failures.
    pub parked: usize,
    /// Deltas merged since the replica opened.
    pub merged: u64,
    /// Number of heads and the greatest height.
    pub heads: usize,
    pub height: u64,
}

/// Why a replica call failed. Bad input from the network is never an error: it is counted
/// in [`Stats`] and dropped.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError<E: std::error::Error + 'static> {
    #[error("the replica's store failed: {0}")]
    Store(#[source] E),
    #[error("a value of {len} bytes for key {key:?} cannot fit in a delta of at most {limit} bytes; store large data in IPFS and pin its CID")]
    ValueTooLarge {
        key: String,
        len: usize,
        limit: usize,
    },
    #[error("a snapshot loads only into an empty replica, and this one has merged deltas; it syncs through the DAG instead")]
    NotEmpty,
    #[error("a snapshot needs a synced replica, and {pending} blocks are still pending; try again once synced")]
    NotSynced { pending: usize },
    #[error("the state needs {chunks} snapshot chunks, more than the {max} two levels of index can link; raise snapshot_chunk_bytes")]
    SnapshotTooLarge { chunks: usize, max: usize },
}

type Result<T, E> = std::result::Result<T, ReplicaError<E>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FetchState {
    Queued,
    InFlight {
        since: u64,
    },
    Parked,
    /// A snapshot chunk decoded, or a delta, held in memory, waiting for [`Replica::work`].
    Held,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    block: PendingBlock,
    state: FetchState,
    attempts: u32,
}

/// A go-ds-crdt replica over a [`Store`].
pub struct Replica<S: Store> {
    store: S,
    config: Config,
    /// Heads by CID bytes: the order go-ds-crdt links them in.
    heads: BTreeMap<Vec<u8>, (Cid, u64)>,
    pending: HashMap<BlockId, Pending>,
    /// Walk roots that a merged node already descends from. That node's root is a head,
    /// so such a walk only retires the heads it meets: its root becoming a head again
    /// would leave a head that is an ancestor of another. Emptied whenever nothing is
    /// pending.
    covered_roots: HashSet<Cid>,
    queue: VecDeque<BlockId>,
    /// Requests in the order they were made, for timeouts.
    requests: VecDeque<(u64, BlockId)>,
    in_flight: usize,
    parked: usize,
    /// Pending snapshot blocks: while a snapshot loads, delta walks wait in `deferred`.
    snapshot_pending: usize,
    /// Snapshot chunks received and decoded that hold versions alone, in arrival
    /// order: merged while the rest still arrive, and counted as in flight until then, so
    /// that no more than `max_snapshot_blocks_in_flight` wait in memory.
    held_chunks: VecDeque<(BlockId, SnapshotChunk)>,
    /// Snapshot chunks received and decoded that name merged blocks: merged once
    /// every chunk is in, as marking blocks merged is what makes the later walks stop at
    /// them.
    held_last: VecDeque<(BlockId, SnapshotChunk)>,
    deferred: Vec<BlockId>,
    /// Deltas the walk reached whose bytes were here without a request of their own (from
    /// an ancestors answer, or the store on a resumed walk), in that order: merged one per
    /// [`Replica::work`] turn, so that a run of them never holds the caller for long.
    held_deltas: VecDeque<(BlockId, Vec<u8>)>,
    /// Blocks from ancestors answers that the walk has not reached yet.
    prefetched: HashMap<BlockId, Vec<u8>>,
    /// When the ancestors request that is out was made; no other is made until it is
    /// answered or `fetch_timeout_ms` has passed.
    ancestors_asked: Option<u64>,
    /// No ancestors request before this time: the last one brought nothing.
    ancestors_retry_at: u64,
    batch: Batch,
    /// Own writes are being gathered into one flush (see [`Replica::begin_write_group`]).
    write_group: bool,
    seen_heads: HashSet<Cid>,
    next_rebroadcast: Option<u64>,
    next_repair: Option<u64>,
    rng: u64,
    outputs: VecDeque<Output>,
    stats: Stats,
}

impl<S: Store> Replica<S> {
    /// Opens a replica on `store`, resuming the walks a previous run left unfinished.
    pub async fn open(store: S, config: Config) -> Result<Self, S::Error> {
        let persisted = store.load().await.map_err(ReplicaError::Store)?;
        let rng = config.seed ^ 0x9e37_79b9_7f4a_7c15;
        let mut replica = Self {
            store,
            config,
            heads: BTreeMap::new(),
            pending: HashMap::new(),
            covered_roots: HashSet::new(),
            queue: VecDeque::new(),
            requests: VecDeque::new(),
            in_flight: 0,
            parked: 0,
            snapshot_pending: 0,
            held_chunks: VecDeque::new(),
            held_last: VecDeque::new(),
            deferred: Vec::new(),
            held_deltas: VecDeque::new(),
            prefetched: HashMap::new(),
            ancestors_asked: None,
            ancestors_retry_at: 0,
            batch: Batch::default(),
            write_group: false,
            seen_heads: HashSet::new(),
            next_rebroadcast: None,
            next_repair: None,
            rng,
            outputs: VecDeque::new(),
            stats: Stats::default(),
        };
        for (cid, height) in persisted.heads {
            replica.heads.insert(cid.to_bytes(), (cid, height));
        }
        for block in persisted.pending {
            if let Ok(id) = BlockId::from_cid(&block.cid) {
                replica.enqueue(id, block);
            }
        }
        Ok(replica)
    }

    /// The next thing to do, if any. Drain after every call.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, for upkeep that leaves what it holds as it is (such as compacting its
    /// file).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Closes the replica and returns its store. Uncommitted local writes are lost: call
    /// [`Replica::commit`] first.
    pub fn into_store(self) -> S {
        self.store
    }

    /// Current heads with their heights, in link order.
    pub fn heads(&self) -> Vec<(Cid, u64)> {
        self.heads.values().copied().collect()
    }

    pub fn progress(&self) -> Progress {
        Progress {
            pending: self.pending.len(),
            in_flight: self.in_flight,
            parked: self.parked,
            merged: self.stats.merged,
            heads: self.heads.len(),
            height: self.height(),
        }
    }

    /// Whether merge work waits for [`Replica::work`]: a held delta (a run of them comes
    /// with each ancestors answer), a snapshot chunk of versions alone, or every chunk of
    /// the snapshot being loaded. The caller calls `work` until this is false, yielding to
    /// its other tasks in between, so that neither a long walk nor a large snapshot stalls
    /// it for long.
    pub fn has_work(&self) -> bool {
        !self.held_deltas.is_empty() || self.has_snapshot_work()
    }

    /// One turn of merge work (nothing when [`Replica::has_work`] is false): a snapshot
    /// chunk if one is ready, else one held delta, each in one transaction.
    pub async fn work(&mut self, now: u64) -> Result<(), S::Error> {
        if self.has_snapshot_work() {
            return self.merge_held_chunk(now).await;
        }
        self.merge_held_delta(now).await
    }

    /// True when no block is waiting to be fetched or merged.
    pub fn is_synced(&self) -> bool {
        self.pending.is_empty()
    }

    fn height(&self) -> u64 {
        self.heads.values().map(|(_, h)| *h).max().unwrap_or(0)
    }

    /// The current value of `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, S::Error> {
        let state = self.key_state(key).await?;
        Ok(state.and_then(|s| s.value().map(|v| v.value.clone())))
    }

    /// Up to `limit` keys with a value, in key order, after `after`. Page through the whole
    /// set by passing the last key of each page.
    pub async fn values(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, S::Error> {
        let mut out = Vec::with_capacity(limit.min(4096));
        let mut cursor: Option<Vec<u8>> = after.map(|a| a.as_bytes().to_vec());
        while out.len() < limit {
            let page = self
                .store
                .scan(cursor.as_deref(), limit - out.len())
                .await
                .map_err(ReplicaError::Store)?;
            let Some((last, _)) = page.last() else { break };
            cursor = Some(last.clone());
            for (key, state) in page {
                if let (Some(version), Ok(key)) = (state.value(), String::from_utf8(key)) {
                    out.push((key, version.value.clone()));
                }
            }
        }
        Ok(out)
    }

    async fn key_state(&self, key: &str) -> Result<Option<KeyState>, S::Error> {
        self.store
            .key_state(key.as_bytes())
            .await
            .map_err(ReplicaError::Store)
    }

    // ----- network input ------------------------------------------------------------------

    /// Handles a head broadcast whose pubsub signature says `author` sent it. Announced
    /// heads wait in memory only, as in go-ds-crdt: the store learns of a block when a
    /// merge links it, and a head lost to a restart is announced again by the peers'
    /// rebroadcasts. (A store write per broadcast halved a reader's merge rate.)
    pub async fn receive_broadcast(
        &mut self,
        author: &PeerId,
        data: &[u8],
        now: u64,
    ) -> Result<(), S::Error> {
        if !self.config.trust.trusts(author) {
            self.stats.untrusted_broadcasts += 1;
            return Ok(());
        }
        let Ok(heads) = decode_broadcast(data) else {
            self.stats.malformed_broadcasts += 1;
            return Ok(());
        };
        for head in heads {
            self.seen_heads.insert(head);
            let Ok(id) = BlockId::from_cid(&head) else {
                self.stats.malformed_broadcasts += 1;
                continue;
            };
            if self.pending.contains_key(&id) || self.is_processed(&id).await? {
                continue;
            }
            if self.pending.len() >= self.config.max_pending {
                self.stats.over_capacity += 1;
                continue;
            }
            let block = PendingBlock {
                kind: BlockKind::Delta,
                cid: head,
                root: head,
                root_priority: 0,
                parent_priority: u64::MAX,
            };
            self.enqueue(id, block);
        }
        self.pump(now).await
    }

    /// Advances time: commits an old batch, retries timed-out requests, retries parked
    /// blocks after the repair interval, and rebroadcasts heads nobody else announced.
    pub async fn tick(&mut self, now: u64) -> Result<(), S::Error> {
        self.commit_if_old(now).await?;
        while let Some(&(since, id)) = self.requests.front() {
            if now.saturating_sub(since) < self.config.fetch_timeout_ms {
                break;
            }
            self.requests.pop_front();
            if matches!(self.pending.get(&id), Some(p) if p.state == FetchState::InFlight { since })
            {
                self.fetch_failed(id).await?;
            }
        }
        let repair_at = *self
            .next_repair
            .get_or_insert(now + self.config.repair_interval_ms);
        if now >= repair_at {
            self.next_repair = Some(now + self.config.repair_interval_ms);
            self.unpark();
        }
        let interval = self.config.rebroadcast_interval_ms;
        let jittered = self.jitter(interval);
        let rebroadcast_at = *self.next_rebroadcast.get_or_insert(now + jittered);
        if now >= rebroadcast_at {
            self.next_rebroadcast = Some(now + jittered);
            self.rebroadcast();
        }
        self.pump(now).await
    }

    /// Requests every parked block again now, instead of at the next repair.
    pub async fn repair(&mut self, now: u64) -> Result<(), S::Error> {
        self.unpark();
        self.pump(now).await
    }

    fn unpark(&mut self) {
        for (id, pending) in self.pending.iter_mut() {
            if pending.state == FetchState::Parked {
                pending.state = FetchState::Queued;
                pending.attempts = 0;
                self.queue.push_back(*id);
            }
        }
        self.parked = 0;
    }

    fn rebroadcast(&mut self) {
        let unseen: Vec<Cid> = self
            .heads
            .values()
            .map(|(cid, _)| *cid)
            .filter(|cid| !self.seen_heads.contains(cid))
            .collect();
        self.seen_heads.clear();
        if !unseen.is_empty() {
            self.outputs
                .push_back(Output::Broadcast(encode_broadcast(&unseen)));
        }
    }

    /// `interval` ±30 %, from a seeded xorshift (no clock, no OS randomness).
    fn jitter(&mut self, interval: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let spread = interval / 10 * 6;
        interval - interval / 10 * 3 + if spread == 0 { 0 } else { self.rng % spread }
    }

    async fn commit_tx(&mut self, tx: Transaction) -> Result<(), S::Error> {
        if tx.is_empty() {
            return Ok(());
        }
        self.store.commit(tx).await.map_err(ReplicaError::Store)
    }
}
