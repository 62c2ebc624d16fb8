//! How a replica behaves: whom it trusts, how it batches, how hard it fetches.

use std::collections::HashSet;

use libp2p_identity::PeerId;

use crate::codec::snapshot::{MAX_CHUNK_BYTES, MAX_FANOUT};

/// go-ds-crdt's `MaxBatchDeltaSize`: a batch is committed before its delta passes 1 MiB.
pub const MAX_DELTA_BYTES: usize = 1024 * 1024;

/// Whose head broadcasts are followed (ipfs-cluster's `trusted_peers`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// `"*"`: every signed author.
    All,
    /// Only these authors.
    Peers(HashSet<PeerId>),
}

impl Trust {
    pub fn trusts(&self, author: &PeerId) -> bool {
        match self {
            Trust::All => true,
            Trust::Peers(peers) => peers.contains(author),
        }
    }
}

/// When local writes are committed as one delta node. A batch is committed when it holds
/// `max_items` writes, when its first write is `max_age_ms` old (checked on `tick`), or
/// before it would pass `max_delta_bytes`. With `max_items` 0 every write is its own node,
/// as in go-ds-crdt without batching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    pub max_items: usize,
    pub max_age_ms: u64,
    pub max_delta_bytes: usize,
}

impl BatchConfig {
    /// One node per write.
    pub const OFF: Self = Self {
        max_items: 0,
        max_age_ms: 0,
        max_delta_bytes: MAX_DELTA_BYTES,
    };

    /// Batches of up to `max_items` writes, committed at the latest `max_age_ms` after the first.
    pub fn new(max_items: usize, max_age_ms: u64) -> Self {
        Self {
            max_items,
            max_age_ms,
            max_delta_bytes: MAX_DELTA_BYTES,
        }
    }

    pub fn is_on(&self) -> bool {
        self.max_items > 1
    }
}

/// Replica settings. Times are milliseconds on the caller's clock.
#[derive(Clone, Debug)]
pub struct Config {
    pub trust: Trust,
    pub batch: BatchConfig,
    /// Own heads nobody else announced are broadcast again after this long (±30 %).
    pub rebroadcast_interval_ms: u64,
    /// A requested block not delivered within this long is requested again.
    pub fetch_timeout_ms: u64,
    /// Requests per block before it is parked until the next repair.
    pub max_fetch_attempts: u32,
    /// Parked blocks are requested again this often (go-ds-crdt's repair interval).
    pub repair_interval_ms: u64,
    /// Most block ids in one [`super::Output::Fetch`].
    pub fetch_batch: usize,
    /// Most blocks requested and not yet delivered.
    pub max_in_flight: usize,
    /// Most blocks requested at once while a snapshot loads. Its chunks are up to 1 MiB
    /// each and a peer answers a batch of wants whole, so this bounds what one request
    /// makes the serving peer queue for this one (pinfold's bitswap drops what passes
    /// 64 MiB a connection). Chunks of pins received and not yet merged count too.
    pub max_snapshot_blocks_in_flight: usize,
    /// Most blocks known and not yet merged. Bounds memory against absurdly wide DAGs.
    pub max_pending: usize,
    /// Blocks asked for at once, from a peer that answers ancestors requests, when a walk
    /// goes below the heads it started from ([`super::Output::FetchAncestors`]); 0 walks
    /// one block per fetch only, as go-ds-crdt does.
    pub ancestors_per_request: u32,
    /// Seeds the rebroadcast jitter, so runs are reproducible.
    pub seed: u64,
    /// Snapshot chunks are cut before their data passes this many bytes.
    pub snapshot_chunk_bytes: usize,
    /// Most links of one snapshot node (root or index), at most dag-pb's 4096.
    pub snapshot_fanout: usize,
    /// Whether merged delta blocks are kept, to be served to other peers. A replica nobody
    /// fetches from (a light follower) turns it off and keeps only its keys, the merged
    /// block ids and its heads. (A loaded snapshot's blocks are never kept: a peer offers
    /// only the snapshots it makes.)
    pub keep_blocks: bool,
}

impl Default for Config {
    /// ipfs-cluster's CRDT defaults: trust all, no batching, rebroadcast every minute,
    /// two-minute fetch timeout, one-hour repair.
    fn default() -> Self {
        Self {
            trust: Trust::All,
            batch: BatchConfig::OFF,
            rebroadcast_interval_ms: 60_000,
            fetch_timeout_ms: 120_000,
            max_fetch_attempts: 3,
            repair_interval_ms: 3_600_000,
            fetch_batch: 256,
            max_in_flight: 1024,
            max_snapshot_blocks_in_flight: 16,
            max_pending: 200_000,
            ancestors_per_request: 2_000,
            seed: 0,
            snapshot_chunk_bytes: MAX_CHUNK_BYTES,
            snapshot_fanout: MAX_FANOUT,
            keep_blocks: true,
        }
    }
}
