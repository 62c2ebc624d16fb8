//! The replica: go-ds-crdt's Merkle-CRDT datastore as a state machine.
//!
//! Callers hand it local writes, received head broadcasts, received blocks and the time; it
//! merges what it can through its [`Store`] and queues [`Output`]s: broadcasts to publish,
//! blocks to fetch, and value changes. It opens no socket, starts no task and reads no clock.

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
    /// A snapshot chunk stored and checked, merged once every chunk is in.
    Held,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    block: PendingBlock,
    state: FetchState,
    attempts: u32,
}

/// The local writes not yet committed.
#[derive(Default)]
struct Batch {
    delta: Delta,
    /// Position of each key's put in `delta.elements`: a key is put at most once per batch.
    puts: HashMap<String, usize>,
    started_at: Option<u64>,
    bytes: usize,
}

impl Batch {
    fn items(&self) -> usize {
        self.delta.elements.len() + self.delta.tombstones.len()
    }

    fn push_put(&mut self, element: Element, now: u64) {
        self.remove_put(&element.key);
        self.bytes += field_len(&element);
        self.started_at.get_or_insert(now);
        self.puts
            .insert(element.key.clone(), self.delta.elements.len());
        self.delta.elements.push(element);
    }

    fn push_tombstone(&mut self, tombstone: Element, now: u64) {
        self.bytes += field_len(&tombstone);
        self.started_at.get_or_insert(now);
        self.delta.tombstones.push(tombstone);
    }

    /// Drops the pending put of `key`; returns whether there was one.
    fn remove_put(&mut self, key: &str) -> bool {
        let Some(at) = self.puts.remove(key) else {
            return false;
        };
        let removed = self.delta.elements.swap_remove(at);
        self.bytes -= field_len(&removed);
        if let Some(moved) = self.delta.elements.get(at) {
            self.puts.insert(moved.key.clone(), at);
        }
        true
    }
}

/// The snapshot being written: finished chunks and the one being filled.
#[derive(Default)]
struct ChunkWriter {
    chunks: Vec<Cid>,
    chunk: SnapshotChunk,
    bytes: usize,
    keys: u64,
}

/// Bytes an element adds to an encoded delta (tag, length, message).
fn field_len(element: &Element) -> usize {
    let len = element.encoded_len();
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// A go-ds-crdt replica over a [`Store`].
pub struct Replica<S: Store> {
    store: S,
    config: Config,
    /// Heads by CID bytes: the order go-ds-crdt links them in.
    heads: BTreeMap<Vec<u8>, (Cid, u64)>,
    pending: HashMap<BlockId, Pending>,
    queue: VecDeque<BlockId>,
    /// Requests in the order they were made, for timeouts.
    requests: VecDeque<(u64, BlockId)>,
    in_flight: usize,
    parked: usize,
    /// Pending snapshot blocks: while a snapshot loads, delta walks wait in `deferred`.
    snapshot_pending: usize,
    /// Snapshot chunks received and checked, in arrival order.
    held_chunks: VecDeque<BlockId>,
    deferred: Vec<BlockId>,
    batch: Batch,
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
            queue: VecDeque::new(),
            requests: VecDeque::new(),
            in_flight: 0,
            parked: 0,
            snapshot_pending: 0,
            held_chunks: VecDeque::new(),
            deferred: Vec::new(),
            batch: Batch::default(),
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

    // ----- local writes -------------------------------------------------------------------

    /// Sets `key` to `value`. Without batching the write is committed (and broadcast) now;
    /// with batching it joins the current batch.
    pub async fn put(&mut self, key: &str, value: Vec<u8>, now: u64) -> Result<(), S::Error> {
        let element = Element {
            key: key.to_owned(),
            id: String::new(),
            value,
        };
        let len = field_len(&element);
        let limit = self.config.batch.max_delta_bytes;
        if len + 16 > limit {
            return Err(ReplicaError::ValueTooLarge {
                key: key.to_owned(),
                len: element.value.len(),
                limit,
            });
        }
        if self.batch.bytes + len + 16 > limit {
            self.commit(now).await?;
        }
        self.batch.push_put(element, now);
        self.commit_if_full(now).await
    }

    /// Removes `key`: tombstones every version this replica knows. Returns false when there
    /// was nothing to remove (then nothing is written, as in go-ds-crdt).
    pub async fn delete(&mut self, key: &str, now: u64) -> Result<bool, S::Error> {
        let had_batched_put = self.batch.remove_put(key);
        let state = self.key_state(key).await?.unwrap_or_default();
        let already: HashSet<&str> = self
            .batch
            .delta
            .tombstones
            .iter()
            .filter(|t| t.key == key)
            .map(|t| t.id.as_str())
            .collect();
        let new: Vec<Element> = state
            .live_blocks()
            .map(|b| b.to_element_id())
            .filter(|id| !already.contains(id.as_str()))
            .map(|id| Element {
                key: key.to_owned(),
                id,
                value: Vec::new(),
            })
            .collect();
        if new.is_empty() {
            return Ok(had_batched_put);
        }
        let bytes: usize = new.iter().map(field_len).sum();
        if self.batch.bytes + bytes + 16 > self.config.batch.max_delta_bytes {
            self.commit(now).await?;
        }
        for tombstone in new {
            self.batch.push_tombstone(tombstone, now);
        }
        self.commit_if_full(now).await?;
        Ok(true)
    }

    async fn commit_if_full(&mut self, now: u64) -> Result<(), S::Error> {
        let batch = self.config.batch;
        if !batch.is_on() || self.batch.items() >= batch.max_items {
            self.commit(now).await?;
        }
        Ok(())
    }

    /// Writes the batched writes as one delta node on top of the current heads, merges it
    /// and broadcasts it. Returns the node's CID, or `None` if there was nothing to write.
    pub async fn commit(&mut self, now: u64) -> Result<Option<Cid>, S::Error> {
        if self.batch.items() == 0 {
            return Ok(None);
        }
        let mut delta = std::mem::take(&mut self.batch).delta;
        delta.priority = self.height() + 1;
        let node = DeltaNode {
            delta,
            parents: self.heads.values().map(|(cid, _)| *cid).collect(),
        };
        let (cid, bytes) = node.encode();
        let id = BlockId::from_cid(&cid).expect("own nodes are dag-pb sha2-256");
        let own = PendingBlock {
            kind: BlockKind::Delta,
            cid,
            root: cid,
            root_priority: node.delta.priority,
            parent_priority: u64::MAX,
        };
        self.apply(id, bytes, node, own).await?;
        self.stats.committed += 1;
        self.outputs
            .push_back(Output::Broadcast(encode_broadcast(&[cid])));
        self.pump(now).await?;
        Ok(Some(cid))
    }

    // ----- network input ------------------------------------------------------------------

    /// Handles a head broadcast whose pubsub signature says `author` sent it.
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
        let mut tx = Transaction::default();
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
            tx.pending_added.push(block);
            self.enqueue(id, block);
        }
        self.commit_tx(tx).await?;
        self.pump(now).await
    }

    /// Handles a fetched block. Blocks that were not requested are ignored; blocks that do
    /// not match their CID are dropped and requested again; blocks that are not valid delta
    /// nodes end their branch of the walk.
    pub async fn receive_block(
        &mut self,
        cid: &Cid,
        bytes: Vec<u8>,
        now: u64,
    ) -> Result<(), S::Error> {
        let Some(id) = BlockId::from_cid(cid)
            .ok()
            .filter(|id| self.pending.contains_key(id))
        else {
            self.stats.unsolicited_blocks += 1;
            return Ok(());
        };
        if verify_block(cid, &bytes).is_err() {
            self.stats.corrupt_blocks += 1;
            return Ok(());
        }
        self.handle_block(id, bytes).await?;
        self.pump(now).await
    }

    /// The caller could not fetch `cid` (no provider, or its request failed).
    pub async fn block_unavailable(&mut self, cid: &Cid, now: u64) -> Result<(), S::Error> {
        if let Ok(id) = BlockId::from_cid(cid) {
            if matches!(self.pending.get(&id), Some(p) if matches!(p.state, FetchState::InFlight { .. }))
            {
                self.fetch_failed(id).await?;
            }
        }
        self.pump(now).await
    }

    /// Advances time: commits an old batch, retries timed-out requests, retries parked
    /// blocks after the repair interval, and rebroadcasts heads nobody else announced.
    pub async fn tick(&mut self, now: u64) -> Result<(), S::Error> {
        let batch = self.config.batch;
        if let Some(started) = self.batch.started_at {
            if batch.is_on() && now.saturating_sub(started) >= batch.max_age_ms {
                self.commit(now).await?;
            }
        }
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

    // ----- the walk -----------------------------------------------------------------------

    fn enqueue(&mut self, id: BlockId, block: PendingBlock) {
        if block.kind.is_snapshot() {
            self.snapshot_pending += 1;
        }
        self.pending.insert(
            id,
            Pending {
                block,
                state: FetchState::Queued,
                attempts: 0,
            },
        );
        self.queue.push_back(id);
    }

    async fn is_processed(&self, id: &BlockId) -> Result<bool, S::Error> {
        self.store
            .is_processed(id)
            .await
            .map_err(ReplicaError::Store)
    }

    async fn commit_tx(&mut self, tx: Transaction) -> Result<(), S::Error> {
        if tx.is_empty() {
            return Ok(());
        }
        self.store.commit(tx).await.map_err(ReplicaError::Store)
    }

    /// Requests queued blocks, up to the in-flight limit, in batches. Blocks the store
    /// already holds (a walk resumed after a restart) are merged without a request.
    async fn pump(&mut self, now: u64) -> Result<(), S::Error> {
        let mut batch = Vec::new();
        while let Some(id) = self.queue.pop_front() {
            let Some(pending) = self.pending.get(&id) else {
                continue;
            };
            if pending.state != FetchState::Queued {
                continue;
            }
            if pending.block.kind == BlockKind::Delta && self.snapshot_pending > 0 {
                self.deferred.push(id);
                continue;
            }
            if let Some(bytes) = self.store.block(&id).await.map_err(ReplicaError::Store)? {
                self.handle_block(id, bytes).await?;
                continue;
            }
            if self.in_flight >= self.config.max_in_flight {
                self.queue.push_front(id);
                break;
            }
            let pending = self.pending.get_mut(&id).expect("checked above");
            pending.state = FetchState::InFlight { since: now };
            pending.attempts += 1;
            self.in_flight += 1;
            self.requests.push_back((now, id));
            batch.push(pending.block.cid);
            if batch.len() >= self.config.fetch_batch {
                self.outputs
                    .push_back(Output::Fetch(std::mem::take(&mut batch)));
            }
        }
        if !batch.is_empty() {
            self.outputs.push_back(Output::Fetch(batch));
        }
        Ok(())
    }

    fn settle(&mut self, id: &BlockId) -> Option<Pending> {
        let pending = self.pending.remove(id)?;
        if pending.block.kind.is_snapshot() {
            self.snapshot_pending -= 1;
            if self.snapshot_pending == 0 {
                self.queue.extend(self.deferred.drain(..));
            }
        }
        match pending.state {
            FetchState::InFlight { .. } => self.in_flight -= 1,
            FetchState::Parked => self.parked -= 1,
            FetchState::Queued | FetchState::Held => {}
        }
        Some(pending)
    }

    async fn fetch_failed(&mut self, id: BlockId) -> Result<(), S::Error> {
        self.stats.fetch_failures += 1;
        let pending = *self.pending.get(&id).expect("caller checked");
        self.in_flight -= 1;
        if pending.attempts < self.config.max_fetch_attempts {
            self.pending.get_mut(&id).expect("present").state = FetchState::Queued;
            self.queue.push_back(id);
        } else if pending.block.parent_priority == u64::MAX {
            // A head that cannot be fetched and that no merged node links to left nothing
            // half-done: forget it.
            self.stats.unavailable_heads += 1;
            self.pending.get_mut(&id).expect("present").state = FetchState::Queued;
            self.settle(&id);
            self.commit_tx(Transaction {
                pending_removed: vec![id],
                ..Default::default()
            })
            .await?;
        } else {
            self.stats.parked_blocks += 1;
            self.parked += 1;
            self.pending.get_mut(&id).expect("present").state = FetchState::Parked;
        }
        Ok(())
    }

    /// A requested block arrived with the right hash: decode, check and merge it.
    async fn handle_block(&mut self, id: BlockId, bytes: Vec<u8>) -> Result<(), S::Error> {
        let pending = self.pending[&id];
        match pending.block.kind {
            BlockKind::SnapshotRoot => return self.apply_snapshot_root(id, &bytes).await,
            BlockKind::SnapshotIndex => return self.apply_snapshot_index(id, &bytes).await,
            BlockKind::SnapshotChunk => return self.hold_snapshot_chunk(id, bytes).await,
            BlockKind::Delta if self.snapshot_pending > 0 => {
                if let FetchState::InFlight { .. } = pending.state {
                    self.in_flight -= 1;
                }
                self.pending.get_mut(&id).expect("present").state = FetchState::Queued;
                self.deferred.push(id);
                return Ok(());
            }
            BlockKind::Delta => {}
        }
        if self.is_processed(&id).await? {
            // Merged since it was queued (it was in a loaded snapshot).
            self.settle(&id);
            return self.remove_pending(id).await;
        }
        let node = match DeltaNode::decode(&bytes) {
            Ok(node)
                if node.delta.priority > 0
                    && node.delta.priority <= MAX_PRIORITY
                    && node.delta.priority < pending.block.parent_priority =>
            {
                node
            }
            _ => return self.reject_block(id).await,
        };
        self.apply(id, bytes, node, pending.block).await
    }

    /// Drops a block that is not what its walk expects, and its branch.
    async fn reject_block(&mut self, id: BlockId) -> Result<(), S::Error> {
        self.stats.invalid_blocks += 1;
        self.settle(&id);
        self.remove_pending(id).await
    }

    async fn remove_pending(&mut self, id: BlockId) -> Result<(), S::Error> {
        self.commit_tx(Transaction {
            pending_removed: vec![id],
            ..Default::default()
        })
        .await
    }

    // ----- snapshots ----------------------------------------------------------------------

    /// Writes a snapshot of everything merged so far: chunks of the live versions and of
    /// the merged block ids, then a root naming the current heads. The blocks go to the
    /// store (serve them like delta blocks); returns the root's CID, `None` without heads.
    /// Pages through the store, so the whole set is never in memory at once.
    ///
    /// The replica must be synced: a loader stops its walks at the snapshot's merged
    /// blocks, so every block below them must be merged too.
    pub async fn create_snapshot(&mut self) -> Result<Option<Cid>, S::Error> {
        if self.heads.is_empty() {
            return Ok(None);
        }
        if !self.pending.is_empty() {
            return Err(ReplicaError::NotSynced {
                pending: self.pending.len(),
            });
        }
        let mut writer = ChunkWriter::default();
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .scan(cursor.as_deref(), 1024)
                .await
                .map_err(ReplicaError::Store)?;
            let Some((last, _)) = page.last() else { break };
            cursor = Some(last.clone());
            for (key, state) in page {
                if let (false, Ok(key)) = (state.live.is_empty(), String::from_utf8(key)) {
                    let len = SnapshotChunk::entry_len(&key, &state.live);
                    self.flush_chunk_if_full(&mut writer, len).await?;
                    writer.keys += 1;
                    writer.chunk.entries.push((key, state.live));
                }
            }
        }
        let mut after = None;
        loop {
            let page = self
                .store
                .processed_after(after.as_ref(), 4096)
                .await
                .map_err(ReplicaError::Store)?;
            let Some(last) = page.last() else { break };
            after = Some(*last);
            for id in page {
                self.flush_chunk_if_full(&mut writer, SnapshotChunk::PROCESSED_LEN)
                    .await?;
                writer.chunk.processed.push(id);
            }
        }
        self.flush_chunk_if_full(&mut writer, usize::MAX).await?;
        let chunks = writer.chunks.len();
        let (links, indexes) = SnapshotLinks::build(writer.chunks, self.config.snapshot_fanout)
            .map_err(|max| ReplicaError::SnapshotTooLarge { chunks, max })?;
        let (cid, bytes) = SnapshotHeader {
            heads: self.heads(),
            keys: writer.keys,
            links,
        }
        .encode();
        let mut blocks: Vec<(BlockId, Vec<u8>)> = indexes
            .into_iter()
            .map(|(cid, bytes)| {
                let id = BlockId::from_cid(&cid).expect("snapshot indexes are dag-pb sha2-256");
                (id, bytes)
            })
            .collect();
        let id = BlockId::from_cid(&cid).expect("snapshot roots are dag-pb sha2-256");
        blocks.push((id, bytes));
        self.commit_tx(Transaction {
            blocks,
            ..Default::default()
        })
        .await?;
        Ok(Some(cid))
    }

    /// The stored blocks of snapshot `root`: the root, its index nodes and its chunks.
    /// Blocks the store lacks or cannot decode are left out.
    pub async fn snapshot_blocks(&self, root: &Cid) -> Result<Vec<BlockId>, S::Error> {
        let Ok(root_id) = BlockId::from_cid(root) else {
            return Ok(Vec::new());
        };
        let Some(bytes) = self
            .store
            .block(&root_id)
            .await
            .map_err(ReplicaError::Store)?
        else {
            return Ok(Vec::new());
        };
        let Ok(header) = SnapshotHeader::decode(&bytes) else {
            return Ok(Vec::new());
        };
        let mut cids = Vec::new();
        match &header.links {
            SnapshotLinks::Chunks(chunks) => cids.extend_from_slice(chunks),
            SnapshotLinks::Indexes(indexes) => {
                for index in indexes {
                    cids.push(*index);
                    let Ok(id) = BlockId::from_cid(index) else {
                        continue;
                    };
                    let stored = self.store.block(&id).await.map_err(ReplicaError::Store)?;
                    if let Some(Ok(index)) = stored.map(|b| SnapshotIndex::decode(&b)) {
                        cids.extend_from_slice(&index.chunks);
                    }
                }
            }
        }
        let mut ids = vec![root_id];
        ids.extend(cids.iter().filter_map(|cid| BlockId::from_cid(cid).ok()));
        Ok(ids)
    }

    /// Forgets the blocks of snapshot `old` that snapshot `kept` does not share (chunks
    /// are content-addressed, so two snapshots may hold the same one); returns how many.
    pub async fn remove_snapshot(&mut self, old: &Cid, kept: &Cid) -> Result<usize, S::Error> {
        let kept: std::collections::HashSet<BlockId> =
            self.snapshot_blocks(kept).await?.into_iter().collect();
        let removed: Vec<BlockId> = self
            .snapshot_blocks(old)
            .await?
            .into_iter()
            .filter(|id| !kept.contains(id))
            .collect();
        let count = removed.len();
        self.commit_tx(Transaction {
            blocks_removed: removed,
            ..Default::default()
        })
        .await?;
        Ok(count)
    }

    /// Stores the current chunk if `adding` more bytes would pass the chunk limit.
    async fn flush_chunk_if_full(
        &mut self,
        writer: &mut ChunkWriter,
        adding: usize,
    ) -> Result<(), S::Error> {
        let limit = self.config.snapshot_chunk_bytes.min(MAX_CHUNK_BYTES);
        let empty = writer.chunk.entries.is_empty() && writer.chunk.processed.is_empty();
        if empty || writer.bytes.saturating_add(adding) <= limit {
            writer.bytes += adding.min(limit);
            return Ok(());
        }
        let (cid, bytes) = std::mem::take(&mut writer.chunk).encode();
        writer.chunks.push(cid);
        writer.bytes = adding.min(limit);
        let id = BlockId::from_cid(&cid).expect("snapshot chunks are dag-pb sha2-256");
        self.commit_tx(Transaction {
            blocks: vec![(id, bytes)],
            ..Default::default()
        })
        .await
    }

    /// Starts loading the snapshot `root` announced by `author`, instead of walking the
    /// whole DAG. Only a replica that has merged nothing can load one (a snapshot leaves
    /// out removed versions, which a replica with history may still hold). Head broadcasts
    /// received meanwhile are walked once the snapshot is in, from above it.
    pub async fn load_snapshot(
        &mut self,
        author: &PeerId,
        root: &Cid,
        now: u64,
    ) -> Result<(), S::Error> {
        if !self.config.trust.trusts(author) {
            self.stats.untrusted_snapshots += 1;
            return Ok(());
        }
        let merged = !self
            .store
            .processed_after(None, 1)
            .await
            .map_err(ReplicaError::Store)?
            .is_empty();
        if merged || !self.heads.is_empty() || self.snapshot_pending > 0 {
            return Err(ReplicaError::NotEmpty);
        }
        let Ok(id) = BlockId::from_cid(root) else {
            self.stats.invalid_blocks += 1;
            return Ok(());
        };
        let block = PendingBlock {
            kind: BlockKind::SnapshotRoot,
            cid: *root,
            root: *root,
            root_priority: 0,
            parent_priority: u64::MAX,
        };
        self.commit_tx(Transaction {
            pending_added: vec![block],
            ..Default::default()
        })
        .await?;
        self.enqueue(id, block);
        self.pump(now).await
    }

    async fn apply_snapshot_root(&mut self, id: BlockId, bytes: &[u8]) -> Result<(), S::Error> {
        let Ok(header) = SnapshotHeader::decode(bytes) else {
            return self.reject_block(id).await;
        };
        let (kind, links) = match header.links {
            SnapshotLinks::Chunks(links) => (BlockKind::SnapshotChunk, links),
            SnapshotLinks::Indexes(links) => (BlockKind::SnapshotIndex, links),
        };
        self.expand_snapshot_node(id, bytes, kind, &links).await
    }

    async fn apply_snapshot_index(&mut self, id: BlockId, bytes: &[u8]) -> Result<(), S::Error> {
        match SnapshotIndex::decode(bytes) {
            Ok(index) => {
                self.expand_snapshot_node(id, bytes, BlockKind::SnapshotChunk, &index.chunks)
                    .await
            }
            Err(_) => self.fail_snapshot().await,
        }
    }

    /// Replaces a pending root or index node by the `kind` blocks it links, in one
    /// transaction. A node linking nothing, or anything but sha2-256 dag-pb, is refused.
    async fn expand_snapshot_node(
        &mut self,
        id: BlockId,
        bytes: &[u8],
        kind: BlockKind,
        links: &[Cid],
    ) -> Result<(), S::Error> {
        let node = self.pending[&id].block;
        let ids: Option<Vec<BlockId>> = links.iter().map(|c| BlockId::from_cid(c).ok()).collect();
        let Some(ids) = ids.filter(|ids| !ids.is_empty()) else {
            return if node.kind == BlockKind::SnapshotRoot {
                self.reject_block(id).await
            } else {
                self.fail_snapshot().await
            };
        };
        let blocks: Vec<PendingBlock> = links
            .iter()
            .map(|cid| PendingBlock {
                kind,
                cid: *cid,
                root: node.root,
                root_priority: 0,
                parent_priority: u64::MAX,
            })
            .collect();
        self.commit_tx(Transaction {
            blocks: vec![(id, bytes.to_vec())],
            pending_removed: vec![id],
            pending_added: blocks.clone(),
            ..Default::default()
        })
        .await?;
        // Children first, so that the count of snapshot blocks never drops to zero between.
        for (child, block) in ids.into_iter().zip(blocks) {
            if !self.pending.contains_key(&child) {
                self.enqueue(child, block);
            }
        }
        self.settle(&id);
        Ok(())
    }

    /// Stores a chunk that decodes, to be merged once every chunk is in; a malformed one
    /// abandons the snapshot before anything of it is merged.
    async fn hold_snapshot_chunk(&mut self, id: BlockId, bytes: Vec<u8>) -> Result<(), S::Error> {
        if SnapshotChunk::decode(&bytes).is_err() {
            return self.fail_snapshot().await;
        }
        self.commit_tx(Transaction {
            blocks: vec![(id, bytes)],
            ..Default::default()
        })
        .await?;
        let pending = self.pending.get_mut(&id).expect("caller checked");
        match pending.state {
            FetchState::InFlight { .. } => self.in_flight -= 1,
            FetchState::Parked => self.parked -= 1,
            FetchState::Queued | FetchState::Held => {}
        }
        pending.state = FetchState::Held;
        self.held_chunks.push_back(id);
        Ok(())
    }

    /// Whether merge work waits for [`Replica::work`]: every chunk of the snapshot being
    /// loaded has arrived. The caller calls `work` until this is false, yielding to its
    /// other tasks in between, so that a large snapshot never stalls it for long.
    pub fn has_work(&self) -> bool {
        !self.held_chunks.is_empty() && self.held_chunks.len() == self.snapshot_pending
    }

    /// Merges one held snapshot chunk, in one transaction (nothing when
    /// [`Replica::has_work`] is false). The last chunk adopts the snapshot's heads, and the
    /// delta walks that waited for it resume. A restart part-way finds the rest still
    /// pending and their blocks stored.
    pub async fn work(&mut self, now: u64) -> Result<(), S::Error> {
        if !self.has_work() {
            return Ok(());
        }
        let id = self.held_chunks.pop_front().expect("has_work checked");
        let root = self.pending[&id].block.root;
        let bytes = self
            .store
            .block(&id)
            .await
            .map_err(ReplicaError::Store)?
            .expect("held chunks are stored");
        let chunk = SnapshotChunk::decode(&bytes).expect("held chunks decode");
        let mut tx = Transaction::default();
        let mut events = Vec::new();
        let keys: Vec<&[u8]> = chunk.entries.iter().map(|(k, _)| k.as_bytes()).collect();
        let states = self
            .store
            .key_states(&keys)
            .await
            .map_err(ReplicaError::Store)?;
        for ((key, versions), state) in chunk.entries.into_iter().zip(states) {
            let mut state = state.unwrap_or_default();
            let before = state.value().map(|v| v.value.clone());
            for version in versions {
                state.apply_element(version);
            }
            if let Some(after) = state.value().filter(|v| before.as_ref() != Some(&v.value)) {
                tx.live_keys += i64::from(before.is_none());
                events.push(Output::Put {
                    key: key.clone(),
                    value: after.value.clone(),
                    added: before.is_none(),
                });
            }
            tx.keys.push((key.into_bytes(), state));
        }
        tx.processed = chunk.processed;
        tx.pending_removed.push(id);
        let last = self.held_chunks.is_empty();
        if last {
            let root_id = BlockId::from_cid(&root).expect("checked when loading");
            let header = self
                .store
                .block(&root_id)
                .await
                .map_err(ReplicaError::Store)?
                .and_then(|b| SnapshotHeader::decode(&b).ok())
                .expect("the root is stored before its chunks are fetched");
            tx.heads_added.clone_from(&header.heads);
            self.heads = header
                .heads
                .into_iter()
                .map(|(c, h)| (c.to_bytes(), (c, h)))
                .collect();
        }
        self.store.commit(tx).await.map_err(ReplicaError::Store)?;
        self.stats.snapshot_chunks += 1;
        self.stats.snapshots_loaded += u64::from(last);
        self.settle(&id);
        self.outputs.extend(events);
        self.pump(now).await
    }

    /// Drops every pending block of the snapshot being loaded, which merged nothing yet,
    /// so that the replica syncs through the DAG instead.
    async fn fail_snapshot(&mut self) -> Result<(), S::Error> {
        self.stats.invalid_blocks += 1;
        self.stats.failed_snapshots += 1;
        let ids: Vec<BlockId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.block.kind.is_snapshot())
            .map(|(id, _)| *id)
            .collect();
        self.held_chunks.clear();
        for id in &ids {
            self.settle(id);
        }
        self.commit_tx(Transaction {
            pending_removed: ids,
            ..Default::default()
        })
        .await
    }

    /// Merges one node in one transaction: its delta, its block, the head changes it
    /// causes, and the children still to walk (go-ds-crdt `processNode`).
    async fn apply(
        &mut self,
        id: BlockId,
        bytes: Vec<u8>,
        node: DeltaNode,
        block: PendingBlock,
    ) -> Result<(), S::Error> {
        let priority = node.delta.priority;
        let root = block.root;
        let root_priority = if block.root_priority == 0 {
            priority
        } else {
            block.root_priority
        };
        let mut heads = self.heads.clone();
        if heads.is_empty() && root == block.cid {
            // A replica without heads adopts a received head at once, so that its own
            // writes build on it rather than on an orphan branch (go-ds-crdt handleNext).
            heads.insert(root.to_bytes(), (root, root_priority));
        }
        let mut children = Vec::new();
        let mut root_is_head = false;
        if node.parents.is_empty() {
            heads.insert(root.to_bytes(), (root, root_priority));
            root_is_head = true;
        }
        let mut seen = HashSet::new();
        let mut linked = Vec::new();
        for child in &node.parents {
            if !seen.insert(*child) {
                continue;
            }
            let Ok(child_id) = BlockId::from_cid(child) else {
                self.stats.invalid_blocks += 1;
                continue;
            };
            let processed = child_id == id || self.is_processed(&child_id).await?;
            if heads.remove(&child.to_bytes()).is_some() {
                heads.insert(root.to_bytes(), (root, root_priority));
                root_is_head = true;
                if processed {
                    continue;
                }
            }
            if let Some(queued) = self.pending.get(&child_id) {
                if queued.block.parent_priority == u64::MAX {
                    // A head still being fetched is now an ancestor of this node: it may no
                    // longer be forgotten if it cannot be fetched (see `fetch_failed`).
                    linked.push(PendingBlock {
                        parent_priority: priority,
                        ..queued.block
                    });
                }
            }
            if processed || self.pending.contains_key(&child_id) {
                if !root_is_head {
                    heads.insert(root.to_bytes(), (root, root_priority));
                    root_is_head = true;
                }
                continue;
            }
            children.push((
                child_id,
                PendingBlock {
                    kind: BlockKind::Delta,
                    cid: *child,
                    root,
                    root_priority,
                    parent_priority: priority,
                },
            ));
        }
        let was_pending = self.pending.contains_key(&id);
        if self.pending.len() + children.len() > self.config.max_pending + usize::from(was_pending)
        {
            // Too wide to walk now: keep the block for later, merge nothing.
            self.stats.over_capacity += 1;
            if let Some(p) = self.pending.get_mut(&id) {
                if let FetchState::InFlight { .. } = p.state {
                    self.in_flight -= 1;
                }
                if p.state != FetchState::Parked {
                    p.state = FetchState::Parked;
                    self.parked += 1;
                }
            }
            return Ok(());
        }

        let mut tx = Transaction::default();
        let mut events = Vec::new();
        self.merge(&node.delta, id, &mut tx, &mut events).await?;
        tx.blocks.push((id, bytes));
        tx.processed.push(id);
        for (key, (cid, _)) in &self.heads {
            if !heads.contains_key(key) {
                tx.heads_removed.push(*cid);
            }
        }
        for (key, (cid, height)) in &heads {
            if self.heads.get(key) != Some(&(*cid, *height)) {
                tx.heads_added.push((*cid, *height));
            }
        }
        if was_pending {
            tx.pending_removed.push(id);
        }
        tx.pending_added = children.iter().map(|(_, b)| *b).collect();
        tx.pending_added.extend(linked.iter().copied());
        self.store.commit(tx).await.map_err(ReplicaError::Store)?;

        self.heads = heads;
        self.settle(&id);
        for (child_id, child) in children {
            self.enqueue(child_id, child);
        }
        for block in linked {
            if let Some(queued) = BlockId::from_cid(&block.cid)
                .ok()
                .and_then(|id| self.pending.get_mut(&id))
            {
                queued.block = block;
            }
        }
        self.stats.merged += 1;
        self.outputs.extend(events);
        Ok(())
    }

    /// Applies a delta to the touched keys: tombstones first, then elements.
    async fn merge(
        &mut self,
        delta: &Delta,
        id: BlockId,
        tx: &mut Transaction,
        events: &mut Vec<Output>,
    ) -> Result<(), S::Error> {
        let ops = delta
            .tombstones
            .iter()
            .map(|t| (t, true))
            .chain(delta.elements.iter().map(|e| (e, false)));
        let keys: BTreeSet<&str> = ops.clone().map(|(e, _)| e.key.as_str()).collect();
        let keys: Vec<&str> = keys.into_iter().collect();
        let states = self
            .store
            .key_states(&keys.iter().map(|k| k.as_bytes()).collect::<Vec<_>>())
            .await
            .map_err(ReplicaError::Store)?;
        let mut touched: BTreeMap<&str, (Option<Vec<u8>>, KeyState)> = keys
            .into_iter()
            .zip(states)
            .map(|(key, state)| {
                let state = state.unwrap_or_default();
                (key, (state.value().map(|v| v.value.clone()), state))
            })
            .collect();
        for (element, is_tombstone) in ops {
            let key = element.key.as_str();
            let (_, state) = touched.get_mut(key).expect("read above");
            if is_tombstone {
                match BlockId::from_element_id(&element.id) {
                    Ok(block) => state.apply_tombstone(block),
                    // No version can carry a foreign id: the tombstone removes nothing.
                    Err(_) => continue,
                }
            } else {
                state.apply_element(Version {
                    block: id,
                    priority: delta.priority,
                    value: element.value.clone(),
                });
            }
        }
        for (key, (before, state)) in touched {
            let after = state.value().map(|v| &v.value);
            match (before, after) {
                (before, Some(after)) if before.as_ref() != Some(after) => {
                    tx.live_keys += i64::from(before.is_none());
                    events.push(Output::Put {
                        key: key.to_owned(),
                        value: after.clone(),
                        added: before.is_none(),
                    })
                }
                (Some(_), None) => {
                    tx.live_keys -= 1;
                    events.push(Output::Delete {
                        key: key.to_owned(),
                    })
                }
                _ => {}
            }
            tx.keys.push((key.as_bytes().to_vec(), state));
        }
        Ok(())
    }
}
