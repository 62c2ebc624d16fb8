//! A node under Raft consensus: its writes become proposals, and the writes the cluster
//! commits are applied to the replica in log order, as local writes that are never
//! announced (Raft, not the CRDT heads, carries them to the other peers).
//!
//! The driver feeds Raft messages to [`Node::on_raft_message`], carries out the
//! [`RaftEffect`]s in order ([`Node::poll_raft`]: a disk write before the messages that
//! follow it), and after each group of write commands asks [`Node::take_proposal`] which
//! proposal their answers wait for.

use std::collections::VecDeque;

use libp2p_identity::PeerId;

use super::{ms, CommandError, Node, StoreResult};
use crate::consensus::{Committed, RaftConsensus, RaftError, RaftOp, RaftWrite};
use crate::crdt::Store;
use crate::pin::Pin;

/// What the driver does for Raft, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum RaftEffect {
    /// Write this to disk before carrying out what follows.
    Write(RaftWrite),
    Send {
        peer: PeerId,
        message: Vec<u8>,
    },
    /// A proposal of this peer was committed and applied to the pinset, or will not be.
    Done {
        proposal: u64,
        result: Result<(), String>,
    },
}

/// The Raft side of a node.
pub(super) struct NodeRaft {
    consensus: RaftConsensus,
    /// Writes of the current command group, proposed together when it ends.
    staged: Vec<RaftOp>,
    grouping: bool,
    proposed: Option<Result<u64, CommandError>>,
    effects: VecDeque<RaftEffect>,
}

impl From<RaftError> for CommandError {
    fn from(error: RaftError) -> Self {
        match error {
            RaftError::NoLeader { .. } | RaftError::NotCommitted { .. } => {
                CommandError::Unavailable(error.to_string())
            }
            RaftError::NotMember { .. } => CommandError::BadRequest(error.to_string()),
            other => CommandError::Store(other.to_string()),
        }
    }
}

impl<S: Store> Node<S> {
    /// Puts the node under Raft consensus (before any event).
    pub fn with_raft(mut self, consensus: RaftConsensus) -> Self {
        self.raft = Some(NodeRaft {
            consensus,
            staged: Vec::new(),
            grouping: false,
            proposed: None,
            effects: VecDeque::new(),
        });
        self
    }

    /// The node's Raft consensus, if it runs under Raft.
    pub fn raft(&self) -> Option<&RaftConsensus> {
        self.raft.as_ref().map(|r| &r.consensus)
    }

    /// The next thing to do for Raft.
    pub fn poll_raft(&mut self) -> Option<RaftEffect> {
        self.raft.as_mut()?.effects.pop_front()
    }

    /// The proposal the writes of the group that just ended wait for: `None` when they
    /// are done already (CRDT consensus, or nothing was written).
    pub fn take_proposal(&mut self) -> Option<Result<u64, CommandError>> {
        self.raft.as_mut()?.proposed.take()
    }

    /// A Raft message from `from`.
    pub async fn on_raft_message(
        &mut self,
        from: PeerId,
        message: &[u8],
        now: i64,
    ) -> StoreResult<(), S> {
        let Some(raft) = self.raft.as_mut() else {
            tracing::debug!(%from, "a Raft message reached a peer under CRDT consensus");
            return Ok(());
        };
        if let Err(error) = raft.consensus.receive(from, message) {
            tracing::debug!(%from, %error, "dropped a Raft message");
        }
        self.raft_work(now).await
    }

    /// `peer` could not be sent a Raft message.
    pub fn on_raft_unreachable(&mut self, peer: &PeerId) {
        if let Some(raft) = self.raft.as_mut() {
            raft.consensus.unreachable(peer);
        }
    }

    /// Asks the cluster to add `peer` to the Raft peers (any peer may ask; the leader
    /// changes the configuration), inside a write group as writes are. Under CRDT
    /// consensus there is nothing to add: the peerset is whoever pings.
    pub fn add_raft_peer(&mut self, peer: PeerId) -> Result<(), CommandError> {
        if let Some(raft) = self.raft.as_mut() {
            raft.staged.push(RaftOp::AddPeer(peer));
        }
        Ok(())
    }

    /// Asks the cluster to remove `peer` from the Raft peers (nothing under CRDT).
    pub fn remove_raft_peer(&mut self, peer: PeerId) -> Result<(), CommandError> {
        let Some(raft) = self.raft.as_mut() else {
            return Ok(());
        };
        if !raft.consensus.is_member(&peer) {
            return Err(RaftError::NotMember { peer }.into());
        }
        raft.staged.push(RaftOp::RemovePeer(peer));
        Ok(())
    }

    /// Stages `op` under Raft; `false` under CRDT, where the caller writes it.
    pub(super) fn stage(&mut self, op: impl FnOnce() -> RaftOp) -> bool {
        match self.raft.as_mut() {
            Some(raft) => {
                raft.staged.push(op());
                true
            }
            None => false,
        }
    }

    pub(super) fn raft_begin_group(&mut self) {
        if let Some(raft) = self.raft.as_mut() {
            raft.grouping = true;
            raft.proposed = None;
        }
    }

    /// Ends a command group: its writes become one proposal ([`Node::take_proposal`]).
    pub(super) fn raft_end_group(&mut self, now: i64) {
        if let Some(raft) = self.raft.as_mut() {
            raft.grouping = false;
            raft.proposed = raft.propose_staged(now);
        }
    }

    /// Proposes the writes the node made by itself (re-pins, expiries), outside groups.
    pub(super) fn raft_propose_own(&mut self, now: i64) {
        if let Some(raft) = self.raft.as_mut().filter(|r| !r.grouping) {
            if let Some(Err(error)) = raft.propose_staged(now) {
                tracing::warn!(%error, "could not propose this peer's own writes");
            }
        }
    }

    pub(super) fn raft_tick(&mut self, now: i64) {
        if let Some(raft) = self.raft.as_mut() {
            raft.consensus.tick(ms(now));
        }
    }

    pub(super) fn raft_has_work(&self) -> bool {
        self.raft.as_ref().is_some_and(|r| r.consensus.has_ready())
    }

    /// Carries Raft forward: queues its disk writes and messages, applies what the
    /// cluster committed to the replica (one flush per batch), answers this peer's
    /// proposals, and takes a snapshot when one is due.
    pub(super) async fn raft_work(&mut self, now: i64) -> StoreResult<(), S> {
        while let Some(raft) = self.raft.as_mut().filter(|r| r.consensus.has_ready()) {
            let ready = match raft.consensus.ready() {
                Ok(ready) => ready,
                Err(error) => {
                    tracing::error!(%error, "Raft could not go on");
                    return Ok(());
                }
            };
            if !ready.write.is_empty() {
                raft.effects.push_back(RaftEffect::Write(ready.write));
            }
            for (peer, message) in ready.messages {
                raft.effects.push_back(RaftEffect::Send { peer, message });
            }
            let answered: Vec<u64> = ready.committed.iter().filter_map(|c| c.proposal).collect();
            self.replica.begin_write_group();
            if let Some(restore) = ready.restore {
                tracing::info!(
                    index = restore.index,
                    pins = restore.pins.len(),
                    "loading the leader's Raft snapshot"
                );
                self.restore_pinset(restore.pins, now).await?;
            }
            for Committed { ops, .. } in ready.committed {
                self.apply_committed(ops, now).await?;
            }
            self.replica.end_write_group(ms(now)).await?;
            self.drain(now);
            let raft = self.raft.as_mut().expect("under Raft");
            for proposal in answered {
                raft.effects.push_back(RaftEffect::Done {
                    proposal,
                    result: Ok(()),
                });
            }
            for (proposal, error) in ready.failed {
                raft.effects.push_back(RaftEffect::Done {
                    proposal,
                    result: Err(error),
                });
            }
        }
        if self
            .raft
            .as_ref()
            .is_some_and(|r| r.consensus.wants_snapshot())
        {
            self.take_raft_snapshot().await?;
        }
        Ok(())
    }

    async fn apply_committed(&mut self, ops: Vec<RaftOp>, now: i64) -> StoreResult<(), S> {
        for op in ops {
            match op {
                RaftOp::Pin(pin) => self.replica.add_pin(&pin, ms(now)).await?,
                RaftOp::Unpin(cid) => {
                    self.replica.remove_pin(&cid, ms(now)).await?;
                }
                RaftOp::AddPeer(_) | RaftOp::RemovePeer(_) => {}
            }
        }
        Ok(())
    }

    /// Makes the pinset the snapshot's: pins it lacks are removed, the others written.
    async fn restore_pinset(&mut self, snapshot: Vec<RaftOp>, now: i64) -> StoreResult<(), S> {
        let kept: std::collections::HashMap<cid::Cid, Box<Pin>> = snapshot
            .into_iter()
            .filter_map(|op| match op {
                RaftOp::Pin(pin) => Some((pin.cid, pin)),
                _ => None,
            })
            .collect();
        let mut dropped = Vec::new();
        self.for_each_page(|page| {
            dropped.extend(page.iter().map(|p| p.cid).filter(|c| !kept.contains_key(c)));
            Ok::<_, crate::crdt::ReplicaError<S::Error>>(())
        })
        .await?;
        for cid in dropped {
            self.replica.remove_pin(&cid, ms(now)).await?;
        }
        for pin in kept.into_values() {
            if self.replica.pin(&pin.cid).await?.as_ref() != Some(&*pin) {
                self.replica.add_pin(&pin, ms(now)).await?;
            }
        }
        Ok(())
    }

    async fn take_raft_snapshot(&mut self) -> StoreResult<(), S> {
        let mut pins = Vec::new();
        self.for_each_page(|page| {
            pins.extend(page.iter().map(|p| RaftOp::Pin(Box::new(p.clone()))));
            Ok::<_, crate::crdt::ReplicaError<S::Error>>(())
        })
        .await?;
        let count = pins.len();
        let raft = self.raft.as_mut().expect("under Raft");
        match raft.consensus.take_snapshot(pins) {
            Ok(write) => {
                tracing::info!(pins = count, "took a Raft snapshot");
                raft.effects.push_back(RaftEffect::Write(write));
            }
            Err(error) => tracing::error!(%error, "could not take a Raft snapshot"),
        }
        Ok(())
    }
}

impl NodeRaft {
    fn propose_staged(&mut self, now: i64) -> Option<Result<u64, CommandError>> {
        if self.staged.is_empty() {
            return None;
        }
        let ops = std::mem::take(&mut self.staged);
        Some(
            self.consensus
                .propose(&ops, ms(now))
                .map_err(CommandError::from),
        )
    }
}
