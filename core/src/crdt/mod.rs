//! The shared pinset: go-ds-crdt's Merkle-CRDT (v0.6.8 semantics and formats) as a sans-IO
//! state machine.
//!
//! - [`set`]: the add-wins observed-remove set, key by key, pure.
//! - [`store`]: the [`Store`] trait a replica persists through, and [`MemoryStore`].
//! - [`paging`]: merging many keys' states into a store's pages at once.
//! - [`pins`]: the replica as ipfs-cluster's state: pins by CID, and [`PinEvent`]s.
//! - [`replica`]: the [`Replica`]: local writes with batching, head broadcasts, the DAG
//!   walk with batched fetches, head bookkeeping, rebroadcast and repair, and compaction
//!   snapshots (written by [`Replica::create_snapshot`], loaded by [`Replica::load_snapshot`]).
//!
//! A replica never opens a socket, starts a task or reads a clock. The native peer, the
//! browser follower and the tests drive the same machine: feed it input, then drain
//! [`Replica::poll_output`].

pub mod config;
pub mod paging;
pub mod pins;
pub mod replica;
pub mod set;
pub mod store;

pub use config::{BatchConfig, Config, Trust, MAX_DELTA_BYTES};
pub use paging::{merge_by_key, page_of, run_at, PageMerge, PageWrites, Runs};
pub use pins::{PinEntryError, PinEvent};
pub use replica::{Output, Progress, Replica, ReplicaError, Stats, MAX_PRIORITY};
pub use set::{BlockId, KeyState, RecordDecodeError, Version};
pub use store::{
    count_live_keys, decode_key_page, encode_key_page, BlockKind, KeyStates, MemoryStore, PageRun,
    PendingBlock, Persisted, Store, Transaction,
};
