//! The Raft log a peer keeps: raft-rs's in-memory log, the latest snapshot with its data,
//! and what the driver must write to disk so that the peer restarts where it stopped.

use std::cell::Cell;

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage};

/// What the driver writes to disk, in this order, before it sends the messages that
/// came with it ([`super::RaftReady`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftWrite {
    /// Drop every entry from this index on (the log was overwritten or replaced).
    pub truncate_from: Option<u64>,
    /// Entries to store, by index (encoded `eraftpb.Entry`).
    pub entries: Vec<(u64, Vec<u8>)>,
    /// Drop every entry below this index (a snapshot covers them).
    pub compact_below: Option<u64>,
    /// The new hard state and configuration (see [`RaftDisk::meta`]).
    pub meta: Option<Vec<u8>>,
    /// The new latest snapshot (see [`RaftDisk::snapshot`]).
    pub snapshot: Option<Vec<u8>>,
}

impl RaftWrite {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What a peer kept on disk, as [`RaftWrite`]s left it.
#[derive(Clone, Debug, Default)]
pub struct RaftDisk {
    /// The hard state and the configuration: an opaque value of this module.
    pub meta: Option<Vec<u8>>,
    /// The latest snapshot, with its data (an encoded `eraftpb.Snapshot`).
    pub snapshot: Option<Vec<u8>>,
    /// The stored entries, in index order.
    pub entries: Vec<Vec<u8>>,
}

impl RaftDisk {
    pub fn is_empty(&self) -> bool {
        self.meta.is_none() && self.snapshot.is_none() && self.entries.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("unreadable Raft state on disk: {0}")]
    Unreadable(String),
}

/// raft-rs's log with the latest snapshot's data, which its memory storage does not keep.
pub struct LogStore {
    memory: MemStorage,
    snapshot: Snapshot,
    /// Raft asked for a snapshot later than the latest, or naming a peer it does not.
    wanted: Cell<bool>,
}

/// An empty log (a peer that waits to be added, or one a bootstrap snapshot starts).
impl Default for LogStore {
    fn default() -> Self {
        Self {
            memory: MemStorage::new(),
            snapshot: Snapshot::default(),
            wanted: Cell::new(false),
        }
    }
}

impl LogStore {
    /// The log `disk` holds.
    pub fn load(disk: &RaftDisk) -> Result<Self, DiskError> {
        let store = Self::default();
        let mut snapshot = Snapshot::default();
        if let Some(bytes) = &disk.snapshot {
            snapshot = parse(bytes)?;
            store
                .memory
                .wl()
                .apply_snapshot(snapshot.clone())
                .map_err(|e| DiskError::Unreadable(e.to_string()))?;
        }
        let first = snapshot.get_metadata().index + 1;
        let entries: Vec<Entry> = disk
            .entries
            .iter()
            .map(|bytes| parse::<Entry>(bytes))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|entry| entry.index >= first)
            .collect();
        let mut core = store.memory.wl();
        core.append(&entries)
            .map_err(|e| DiskError::Unreadable(e.to_string()))?;
        if let Some(meta) = &disk.meta {
            let (hard_state, conf_state) = decode_meta(meta)?;
            core.set_hardstate(hard_state);
            core.set_conf_state(conf_state);
        }
        drop(core);
        Ok(Self { snapshot, ..store })
    }

    pub fn hard_state(&self) -> HardState {
        self.memory.rl().hard_state().clone()
    }

    pub fn conf_state(&self) -> ConfState {
        self.memory
            .initial_state()
            .map(|s| s.conf_state)
            .unwrap_or_default()
    }

    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Whether Raft needs a newer snapshot than the latest to send a follower.
    pub fn snapshot_wanted(&self) -> bool {
        self.wanted.get()
    }

    /// Appends `entries` (overwriting any that conflict) and says what to write.
    pub fn append(&mut self, entries: &[Entry], write: &mut RaftWrite) -> raft::Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.memory.last_index()? {
            write.truncate_from = Some(first.index);
        }
        self.memory.wl().append(entries)?;
        write
            .entries
            .extend(entries.iter().map(|e| (e.index, encode(e))));
        Ok(())
    }

    pub fn set_hard_state(&mut self, hard_state: HardState, write: &mut RaftWrite) {
        self.memory.wl().set_hardstate(hard_state);
        write.meta = Some(self.meta());
    }

    pub fn set_conf_state(&mut self, conf_state: ConfState, write: &mut RaftWrite) {
        self.memory.wl().set_conf_state(conf_state);
        write.meta = Some(self.meta());
    }

    /// Replaces the log with a snapshot received from the leader.
    pub fn apply_snapshot(
        &mut self,
        snapshot: Snapshot,
        write: &mut RaftWrite,
    ) -> raft::Result<()> {
        self.memory.wl().apply_snapshot(snapshot.clone())?;
        write.truncate_from = Some(0);
        write.entries.clear();
        write.snapshot = Some(encode(&snapshot));
        write.meta = Some(self.meta());
        self.snapshot = snapshot;
        Ok(())
    }

    /// Takes a snapshot at `index` (applied) with `data`, keeping `trailing` entries
    /// before it for followers that lag a little.
    pub fn take_snapshot(
        &mut self,
        index: u64,
        data: Vec<u8>,
        trailing: u64,
        write: &mut RaftWrite,
    ) -> raft::Result<()> {
        let mut snapshot = Snapshot::default();
        snapshot.set_data(data.into());
        let metadata = snapshot.mut_metadata();
        metadata.index = index;
        metadata.term = self.memory.term(index)?;
        metadata.set_conf_state(self.conf_state());
        let compact = index
            .saturating_sub(trailing)
            .max(self.memory.first_index()?);
        self.memory.wl().compact(compact)?;
        write.compact_below = Some(compact);
        write.snapshot = Some(encode(&snapshot));
        self.snapshot = snapshot;
        self.wanted.set(false);
        Ok(())
    }

    fn meta(&self) -> Vec<u8> {
        let state = self.memory.initial_state().unwrap_or_default();
        let hard_state = encode(&state.hard_state);
        let conf_state = encode(&state.conf_state);
        let mut out = Vec::with_capacity(hard_state.len() + conf_state.len() + 4);
        out.extend_from_slice(&(hard_state.len() as u32).to_be_bytes());
        out.extend_from_slice(&hard_state);
        out.extend_from_slice(&conf_state);
        out
    }
}

fn decode_meta(meta: &[u8]) -> Result<(HardState, ConfState), DiskError> {
    let short = || DiskError::Unreadable("truncated Raft meta".into());
    let (len, rest) = meta.split_at_checked(4).ok_or_else(short)?;
    let len = u32::from_be_bytes(len.try_into().map_err(|_| short())?) as usize;
    let (hard_state, conf_state) = rest.split_at_checked(len).ok_or_else(short)?;
    Ok((parse(hard_state)?, parse(conf_state)?))
}

pub(super) fn encode<M: protobuf::Message>(message: &M) -> Vec<u8> {
    message
        .write_to_bytes()
        .expect("Raft messages have no required fields")
}

pub(super) fn parse<M: protobuf::Message>(bytes: &[u8]) -> Result<M, DiskError> {
    M::parse_from_bytes(bytes).map_err(|e| DiskError::Unreadable(e.to_string()))
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.memory.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.memory.entries(low, high, max_size, context)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index == self.snapshot.get_metadata().index && index > 0 {
            return Ok(self.snapshot.get_metadata().term);
        }
        self.memory.term(index)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.memory.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.memory.last_index()
    }

    /// The latest snapshot taken (with its data). When it is older than `request_index`
    /// or its configuration lacks `to` (which would refuse it), it is not given: a newer
    /// one is wanted ([`LogStore::snapshot_wanted`]) and Raft asks again later.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let metadata = self.snapshot.get_metadata();
        let conf = metadata.get_conf_state();
        let usable = metadata.index > 0
            && metadata.index >= request_index
            && (conf.voters.contains(&to) || conf.learners.contains(&to));
        if !usable {
            self.wanted.set(true);
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}
