//! Raft consensus, the alternative to the Merkle-CRDT (`consensus.raft`): one leader
//! orders every write, a write is acknowledged once a majority of the peers have it in
//! their logs, and each peer applies the committed writes to its pinset in log order.
//!
//! [`RaftConsensus`] is sans-IO around raft-rs's `RawNode`: the node feeds it ticks
//! ([`RaftConsensus::tick`]), other peers' messages ([`RaftConsensus::receive`]) and
//! proposals, and takes [`RaftReady`]s to carry out in order: write to disk, send the
//! messages, restore a snapshot, apply the committed writes. Raft peer ids are taken from
//! the libp2p peer ids ([`raft_id`]).
//!
//! This is pinfold's own protocol: Go ipfs-cluster's Raft (hashicorp/raft over
//! go-libp2p-raft) frames its messages differently, so pinfold and Go Raft peers cannot
//! share a cluster.

mod log;
mod op;

use std::collections::{BTreeMap, HashMap};

use libp2p_identity::PeerId;
use raft::prelude::{ConfChange, ConfChangeType, Entry, EntryType, Message, Snapshot};
use raft::{RawNode, StateRole};
use sha2::{Digest, Sha256};

pub use log::{DiskError, LogStore, RaftDisk, RaftWrite};
pub use op::{decode_ops, encode_ops, OpDecodeError, Proposal, RaftOp};

/// Raft's timing and log sizes (`consensus.raft` in `service.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftSettings {
    /// How often Raft's clock ticks.
    pub tick_ms: u64,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Ticks without a leader's word before a follower stands for election: a random
    /// number in `[election_ticks, 2 × election_ticks)`.
    pub election_ticks: usize,
    /// Applied entries after which a snapshot is taken (`snapshot_threshold`).
    pub snapshot_threshold: u64,
    /// Entries kept before a snapshot, for followers that lag (`trailing_logs`).
    pub trailing_logs: u64,
    /// How long a proposal may wait for its commit (`network_timeout`).
    pub commit_timeout_ms: u64,
}

impl Default for RaftSettings {
    /// ipfs-cluster's defaults: heartbeat 1 s, election 1 s, snapshots every 8,192
    /// entries keeping 10,240, network timeout 10 s; ticks of 100 ms.
    fn default() -> Self {
        Self {
            tick_ms: 100,
            heartbeat_ticks: 10,
            election_ticks: 10,
            snapshot_threshold: 8192,
            trailing_logs: 10_240,
            commit_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error(
        "no Raft leader: this peer cannot reach a majority of the cluster's {members} peers, \
         so it cannot commit writes"
    )]
    NoLeader { members: usize },
    #[error(
        "the write was not committed within {timeout_ms} ms: the leader could not reach a \
         majority of the cluster's peers"
    )]
    NotCommitted { timeout_ms: u64 },
    #[error("{peer} is not a Raft peer of this cluster")]
    NotMember { peer: PeerId },
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error("Raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("unreadable Raft message: {0}")]
    BadMessage(String),
}

/// A write committed by the cluster, to apply to the pinset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub ops: Vec<RaftOp>,
    /// This peer's proposal it answers, if it proposed it.
    pub proposal: Option<u64>,
}

/// The pinset a snapshot holds, to replace the peer's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restore {
    pub index: u64,
    pub pins: Vec<RaftOp>,
}

/// What to carry out, in field order.
#[derive(Debug, Default)]
pub struct RaftReady {
    pub write: RaftWrite,
    pub messages: Vec<(PeerId, Vec<u8>)>,
    pub restore: Option<Restore>,
    pub committed: Vec<Committed>,
    /// This peer's proposals that will not be committed, with why.
    pub failed: Vec<(u64, String)>,
}

/// A peer's Raft id: the first eight bytes of the SHA-256 of its peer id (never 0).
pub fn raft_id(peer: &PeerId) -> u64 {
    let digest = Sha256::digest(peer.to_bytes());
    let id = u64::from_be_bytes(digest[..8].try_into().expect("eight bytes"));
    id.max(1)
}

/// The consensus state of one peer; see the module's documentation.
pub struct RaftConsensus {
    node: RawNode<LogStore>,
    local: PeerId,
    settings: RaftSettings,
    /// The peer behind each Raft id met so far.
    peers: HashMap<u64, PeerId>,
    next_proposal: u64,
    /// This peer's proposals waiting for their commit, with their deadlines.
    pending: BTreeMap<u64, u64>,
    last_tick_ms: u64,
    applied: u64,
    failed: Vec<(u64, String)>,
    /// Committed requests to add or remove peers that the configuration does not reflect
    /// yet: whichever peer leads carries them out, one at a time.
    membership: Vec<RaftOp>,
    /// A new cluster's first snapshot, to write before anything else.
    bootstrap: RaftWrite,
}

impl RaftConsensus {
    /// The consensus of `local`, from what `disk` kept; a peer with nothing on disk starts
    /// a cluster of `initial_peers` (itself included), or of itself alone when that is
    /// empty and it does not `join` an existing one. A new cluster's first snapshot holds
    /// `pinset` (the pins its store held already: an imported state), which every peer
    /// of `initial_peers` must then hold too.
    pub fn open(
        local: PeerId,
        settings: RaftSettings,
        initial_peers: &[PeerId],
        join: bool,
        disk: &RaftDisk,
        pinset: &[RaftOp],
        now_ms: u64,
    ) -> Result<Self, RaftError> {
        let mut peers: HashMap<u64, PeerId> =
            initial_peers.iter().map(|p| (raft_id(p), *p)).collect();
        peers.insert(raft_id(&local), local);
        let mut bootstrap = RaftWrite::default();
        let (store, applied) = if disk.is_empty() && join {
            (LogStore::default(), 0)
        } else if disk.is_empty() {
            // A new cluster starts from a snapshot at index 1 holding its first peers and its
            // pinset: a peer added later gets it (or a later one) from the leader, and so
            // learns every peer of the configuration, not only those added since.
            let mut members: Vec<PeerId> = peers.values().copied().collect();
            members.sort();
            let mut snapshot = Snapshot::default();
            snapshot.set_data(encode_snapshot(&members, pinset).into());
            let metadata = snapshot.mut_metadata();
            metadata.index = 1;
            metadata.term = 1;
            metadata.mut_conf_state().voters = members.iter().map(raft_id).collect();
            let mut store = LogStore::default();
            store.apply_snapshot(snapshot, &mut bootstrap)?;
            (store, 1)
        } else {
            let store = LogStore::load(disk)?;
            let snapshot = store.latest_snapshot();
            if let Ok(restore) = decode_snapshot(snapshot) {
                peers.extend(restore.0.into_iter().map(|p| (raft_id(&p), p)));
            }
            // The pinset is re-applied from the snapshot's index on: each entry sets or
            // removes a pin, so replaying a suffix the pinset already holds changes nothing.
            let applied = snapshot.get_metadata().index;
            (store, applied)
        };
        let config = raft::Config {
            id: raft_id(&local),
            election_tick: settings.election_ticks,
            heartbeat_tick: settings.heartbeat_ticks,
            applied,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let node = RawNode::new(&config, store, &logger)?;
        Ok(Self {
            node,
            local,
            settings,
            peers,
            next_proposal: 1,
            pending: BTreeMap::new(),
            last_tick_ms: now_ms,
            applied,
            failed: Vec::new(),
            membership: Vec::new(),
            bootstrap,
        })
    }

    /// The leader this peer knows of.
    pub fn leader(&self) -> Option<PeerId> {
        match self.node.raft.leader_id {
            0 => None,
            id => self.peers.get(&id).copied(),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    /// The voting peers (those whose peer id this peer knows).
    pub fn members(&self) -> Vec<PeerId> {
        let conf = self.node.store().conf_state();
        let mut members: Vec<PeerId> = conf
            .voters
            .iter()
            .filter_map(|id| self.peers.get(id).copied())
            .collect();
        members.sort();
        members
    }

    pub fn is_member(&self, peer: &PeerId) -> bool {
        self.node
            .store()
            .conf_state()
            .voters
            .contains(&raft_id(peer))
    }

    /// Moves Raft's clock to `now_ms`, and fails the proposals that waited too long.
    pub fn tick(&mut self, now_ms: u64) {
        let tick = self.settings.tick_ms.max(1);
        while now_ms.saturating_sub(self.last_tick_ms) >= tick {
            self.node.tick();
            self.last_tick_ms += tick;
        }
        self.change_requested_members();
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, deadline)| **deadline <= now_ms)
            .map(|(number, _)| *number)
            .collect();
        for number in late {
            self.pending.remove(&number);
            self.failed.push((
                number,
                RaftError::NotCommitted {
                    timeout_ms: self.settings.commit_timeout_ms,
                }
                .to_string(),
            ));
        }
    }

    /// Proposes a write; its [`Committed`] names the returned number once the cluster
    /// has committed it, or [`RaftReady::failed`] does.
    pub fn propose(&mut self, ops: &[RaftOp], now_ms: u64) -> Result<u64, RaftError> {
        self.check_leader()?;
        let number = self.next_proposal;
        let context = op::encode_proposal(&Proposal {
            origin: self.local,
            number,
        });
        self.node
            .propose(context, encode_ops(ops))
            .map_err(|error| match error {
                raft::Error::ProposalDropped => self.no_leader(),
                other => other.into(),
            })?;
        self.next_proposal += 1;
        self.pending
            .insert(number, now_ms + self.settings.commit_timeout_ms);
        Ok(number)
    }

    /// Proposes adding `peer` as a voter. At the leader only (raft-rs forwards no
    /// configuration changes): elsewhere, propose [`RaftOp::AddPeer`].
    pub fn add_member(&mut self, peer: PeerId) -> Result<(), RaftError> {
        self.change_members(peer, ConfChangeType::AddNode)
    }

    /// Proposes removing `peer` (at the leader only, as [`RaftConsensus::add_member`]).
    pub fn remove_member(&mut self, peer: PeerId) -> Result<(), RaftError> {
        if !self.is_member(&peer) {
            return Err(RaftError::NotMember { peer });
        }
        self.change_members(peer, ConfChangeType::RemoveNode)
    }

    fn change_members(&mut self, peer: PeerId, change: ConfChangeType) -> Result<(), RaftError> {
        self.check_leader()?;
        self.peers.insert(raft_id(&peer), peer);
        let mut cc = ConfChange::default();
        cc.set_change_type(change);
        cc.node_id = raft_id(&peer);
        self.node
            .propose_conf_change(peer.to_bytes(), cc)
            .map_err(|error| match error {
                raft::Error::ProposalDropped => self.no_leader(),
                other => other.into(),
            })
    }

    fn check_leader(&self) -> Result<(), RaftError> {
        if self.node.raft.leader_id == 0 {
            return Err(self.no_leader());
        }
        Ok(())
    }

    fn no_leader(&self) -> RaftError {
        RaftError::NoLeader {
            members: self.node.store().conf_state().voters.len(),
        }
    }

    /// A message from `from`.
    pub fn receive(&mut self, from: PeerId, bytes: &[u8]) -> Result<(), RaftError> {
        let message: Message =
            log::parse(bytes).map_err(|e| RaftError::BadMessage(e.to_string()))?;
        if message.from != raft_id(&from) || message.to != raft_id(&self.local) {
            return Err(RaftError::BadMessage(format!(
                "a message from {from} names other peers"
            )));
        }
        self.peers.insert(message.from, from);
        match self.node.step(message) {
            // An answer from a peer no longer in the configuration: nothing to do.
            Err(raft::Error::StepPeerNotFound) => Ok(()),
            other => Ok(other?),
        }
    }

    /// A peer could not be reached: the leader sends it less until it answers.
    pub fn unreachable(&mut self, peer: &PeerId) {
        self.node.report_unreachable(raft_id(peer));
    }

    /// Whether [`RaftConsensus::ready`] has anything.
    pub fn has_ready(&self) -> bool {
        self.node.has_ready() || !self.failed.is_empty() || !self.bootstrap.is_empty()
    }

    /// What to carry out now, in field order.
    pub fn ready(&mut self) -> Result<RaftReady, RaftError> {
        let mut out = RaftReady {
            write: std::mem::take(&mut self.bootstrap),
            failed: std::mem::take(&mut self.failed),
            ..Default::default()
        };
        if !self.node.has_ready() {
            return Ok(out);
        }
        let mut ready = self.node.ready();
        self.send(ready.take_messages(), &mut out);
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            let (members, pins) = decode_snapshot(&snapshot)?;
            self.peers
                .extend(members.into_iter().map(|p| (raft_id(&p), p)));
            let index = snapshot.get_metadata().index;
            self.node
                .mut_store()
                .apply_snapshot(snapshot, &mut out.write)?;
            self.applied = index;
            out.restore = Some(Restore { index, pins });
        }
        let committed = ready.take_committed_entries();
        self.apply(committed, &mut out)?;
        self.node
            .mut_store()
            .append(ready.entries(), &mut out.write)?;
        if let Some(hard_state) = ready.hs() {
            self.node
                .mut_store()
                .set_hard_state(hard_state.clone(), &mut out.write);
        }
        self.send(ready.take_persisted_messages(), &mut out);
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            let mut hard_state = self.node.store().hard_state();
            hard_state.commit = commit;
            self.node
                .mut_store()
                .set_hard_state(hard_state, &mut out.write);
        }
        self.send(light.take_messages(), &mut out);
        self.apply(light.take_committed_entries(), &mut out)?;
        self.node.advance_apply();
        self.change_requested_members();
        Ok(out)
    }

    /// The leader proposes the configuration change the first committed request still
    /// asks for, once no other is pending (raft-rs takes one at a time). Every peer keeps
    /// the requests until the configuration reflects them, so that a new leader finishes
    /// what the old one left.
    fn change_requested_members(&mut self) {
        let voters = self.node.store().conf_state().voters;
        self.membership.retain(|request| match request {
            RaftOp::AddPeer(peer) => !voters.contains(&raft_id(peer)),
            RaftOp::RemovePeer(peer) => voters.contains(&raft_id(peer)),
            _ => false,
        });
        let raft = &self.node.raft;
        let pending = raft.pending_conf_index > raft.raft_log.applied;
        if !self.is_leader() || pending {
            return;
        }
        let result = match self.membership.first().cloned() {
            Some(RaftOp::AddPeer(peer)) => self.add_member(peer),
            Some(RaftOp::RemovePeer(peer)) => self.remove_member(peer),
            _ => Ok(()),
        };
        if let Err(error) = result {
            tracing::warn!(%error, "could not change the Raft peers");
        }
    }

    fn send(&mut self, messages: Vec<Message>, out: &mut RaftReady) {
        for message in messages {
            match self.peers.get(&message.to) {
                Some(peer) => out.messages.push((*peer, log::encode(&message))),
                None => tracing::debug!(to = message.to, "no peer id for a Raft message"),
            }
        }
    }

    fn apply(&mut self, entries: Vec<Entry>, out: &mut RaftReady) -> Result<(), RaftError> {
        for entry in entries {
            self.applied = entry.index;
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {}
                EntryType::EntryNormal => {
                    let proposal = op::decode_proposal(&entry.context)
                        .ok()
                        .filter(|p| p.origin == self.local)
                        .map(|p| p.number);
                    if let Some(number) = proposal {
                        self.pending.remove(&number);
                    }
                    match decode_ops(&entry.data) {
                        Ok(ops) => {
                            let (membership, ops) = ops.into_iter().partition(|op| {
                                matches!(op, RaftOp::AddPeer(_) | RaftOp::RemovePeer(_))
                            });
                            self.membership.extend::<Vec<RaftOp>>(membership);
                            out.committed.push(Committed { ops, proposal });
                        }
                        Err(error) => {
                            tracing::error!(index = entry.index, %error, "skipped an unreadable Raft entry");
                            if let Some(number) = proposal {
                                out.failed.push((number, error.to_string()));
                            }
                        }
                    }
                }
                EntryType::EntryConfChange => {
                    let cc: ConfChange = log::parse(&entry.data)?;
                    if let Ok(peer) = PeerId::from_bytes(&entry.context) {
                        self.peers.insert(raft_id(&peer), peer);
                    }
                    let conf_state = self.node.apply_conf_change(&cc)?;
                    self.node
                        .mut_store()
                        .set_conf_state(conf_state, &mut out.write);
                }
                EntryType::EntryConfChangeV2 => {
                    tracing::error!(
                        index = entry.index,
                        "skipped a joint configuration change, which pinfold never proposes"
                    );
                }
            }
        }
        Ok(())
    }

    /// Whether enough entries were applied since the latest snapshot to take another.
    /// Also when a follower needs a snapshot newer than the latest.
    pub fn wants_snapshot(&self) -> bool {
        let store = self.node.store();
        let taken = store.latest_snapshot().get_metadata().index;
        (store.snapshot_wanted() && self.applied > 0)
            || self.applied.saturating_sub(taken) >= self.settings.snapshot_threshold
    }

    /// Takes a snapshot of the pinset `pins` (every pin, as applied up to now) and drops
    /// the entries it covers but the trailing ones. Returns what to write.
    pub fn take_snapshot(&mut self, pins: Vec<RaftOp>) -> Result<RaftWrite, RaftError> {
        let data = encode_snapshot(&self.members(), &pins);
        let mut write = RaftWrite::default();
        let applied = self.applied;
        let trailing = self.settings.trailing_logs;
        self.node
            .mut_store()
            .take_snapshot(applied, data, trailing, &mut write)?;
        Ok(write)
    }
}

/// Snapshot data: the member count (varint-free `u32`), each member's peer id
/// (length-prefixed `u16`), then the pins as entry data.
fn encode_snapshot(members: &[PeerId], pins: &[RaftOp]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(members.len() as u32).to_be_bytes());
    for member in members {
        let bytes = member.to_bytes();
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(&encode_ops(pins));
    out
}

fn decode_snapshot(snapshot: &Snapshot) -> Result<(Vec<PeerId>, Vec<RaftOp>), RaftError> {
    let bad = |why: &str| RaftError::BadMessage(format!("snapshot: {why}"));
    let data: &[u8] = &snapshot.data;
    if data.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let (count, mut rest) = data.split_at_checked(4).ok_or_else(|| bad("truncated"))?;
    let count = u32::from_be_bytes(count.try_into().map_err(|_| bad("truncated"))?);
    let mut members = Vec::new();
    for _ in 0..count {
        let (len, after) = rest.split_at_checked(2).ok_or_else(|| bad("truncated"))?;
        let len = u16::from_be_bytes(len.try_into().map_err(|_| bad("truncated"))?) as usize;
        let (peer, after) = after
            .split_at_checked(len)
            .ok_or_else(|| bad("truncated"))?;
        members.push(PeerId::from_bytes(peer).map_err(|e| bad(&e.to_string()))?);
        rest = after;
    }
    let pins = decode_ops(rest).map_err(|e| bad(&e.to_string()))?;
    Ok((members, pins))
}
