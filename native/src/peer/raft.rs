//! The peer's side of Raft consensus: it opens the Raft store and the core's consensus,
//! carries out the node's [`RaftEffect`]s (disk writes, then messages), answers write
//! commands once the cluster committed their proposal, and asks the peer it bootstrapped
//! to for admission when it joins a Raft cluster.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::request_response;
use libp2p::PeerId;
use pinfold_core::consensus::{RaftConsensus, RaftOp};
use pinfold_core::net::raft as raft_net;
use pinfold_core::node::{CommandError, Node, RaftEffect};
use serde::Serialize;
use tokio::sync::oneshot;

use super::{gorpc, now_nanos, Peer};
use crate::config::ServiceConfig;
use crate::raft_store::{RaftStore, RAFT_FILE};
use crate::store::RedbStore;

/// Attempts, a second apart, to ask a bootstrap peer to add this one to its Raft cluster.
const JOIN_ATTEMPTS: u32 = 60;

/// An answer waiting for a proposal's commit: given `None` once it is, the error if not.
pub(super) type Parked = Box<dyn FnOnce(Option<CommandError>) + Send>;

/// The Raft side of the peer task.
pub(super) struct RaftDriver {
    store: RaftStore,
    /// Answers by the proposal they wait for.
    parked: HashMap<u64, Vec<Parked>>,
}

/// Where Raft stands, as `GET /state/raft` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct RaftStatus {
    pub leader: Option<String>,
    pub is_leader: bool,
    pub term: u64,
    pub peers: Vec<String>,
}

/// Opens the consensus of a peer whose configuration has a `consensus.raft` section:
/// from its Raft store if it has run before; otherwise a new cluster of `init_peerset`
/// (or of itself) holding the pins `node`'s store has (an imported state), or, with
/// `init_peerset` empty and `bootstrap` peers, a peer that waits to be added. Returns the
/// driver and whether the peer must ask to join.
pub(super) async fn open(
    config: &ServiceConfig,
    dir: &std::path::Path,
    node: &Node<RedbStore>,
    bootstrapping: bool,
) -> anyhow::Result<Option<(RaftDriver, RaftConsensus, bool)>> {
    let Some(section) = &config.consensus.raft else {
        return Ok(None);
    };
    let store = RaftStore::open(&dir.join(RAFT_FILE))?;
    let disk = store.load()?;
    let initial = section.initial_peers()?;
    let join = disk.is_empty() && initial.is_empty() && bootstrapping;
    let mut pinset = Vec::new();
    if disk.is_empty() && !join {
        node.for_each_page(|page| {
            pinset.extend(page.iter().map(|p| RaftOp::Pin(Box::new(p.clone()))));
            Ok::<_, anyhow::Error>(())
        })
        .await?;
    }
    let consensus = RaftConsensus::open(
        node.local(),
        section.settings(),
        &initial,
        join,
        &disk,
        &pinset,
        (now_nanos() / 1_000_000).max(0) as u64,
    )?;
    if !pinset.is_empty() {
        tracing::info!(
            pins = pinset.len(),
            "Raft: a new cluster starts with the pins this peer's store holds"
        );
    }
    if join {
        tracing::info!("Raft: this peer waits to be added to the cluster it bootstraps to");
    }
    let driver = RaftDriver {
        store,
        parked: HashMap::new(),
    };
    Ok(Some((driver, consensus, join)))
}

/// Asks each of `peers` in turn, until one answers, to add `local` to its Raft cluster
/// (`Cluster.PeerAdd`, as a Go peer that joins asks).
pub(super) async fn ask_to_join(client: gorpc::Client, local: PeerId, peers: Vec<PeerId>) {
    for attempt in 1..=JOIN_ATTEMPTS {
        for peer in &peers {
            match client.peer_add(*peer, local).await {
                Ok(()) => {
                    tracing::info!(through = %peer, "Raft: this peer was added to the cluster");
                    return;
                }
                Err(error) => {
                    tracing::debug!(%peer, attempt, %error, "Raft: could not ask to join yet")
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tracing::error!(
        "Raft: no bootstrap peer added this one to its cluster; ask a peer of the cluster to \
         add it (`pinfold ctl peers add <peer id>`)"
    );
}

impl Peer {
    /// Answers `reply` with `result`, or, when the write waits for a Raft proposal, once
    /// the cluster committed it (an error if it did not).
    pub(super) fn answer_write<T: Send + 'static>(
        &mut self,
        proposal: &Option<Result<u64, CommandError>>,
        reply: oneshot::Sender<Result<T, CommandError>>,
        result: Result<T, CommandError>,
    ) {
        match (proposal, result) {
            (Some(Ok(number)), Ok(value)) => {
                let Some(raft) = self.raft.as_mut() else {
                    let _ = reply.send(Ok(value));
                    return;
                };
                raft.parked
                    .entry(*number)
                    .or_default()
                    .push(Box::new(move |failed| {
                        let _ = reply.send(match failed {
                            None => Ok(value),
                            Some(error) => Err(error),
                        });
                    }));
            }
            (Some(Err(error)), Ok(_)) => {
                let _ = reply.send(Err(error.clone()));
            }
            (_, result) => {
                let _ = reply.send(result);
            }
        }
    }

    /// Carries out the node's Raft effects, in order.
    pub(super) fn apply_raft_effects(&mut self) -> anyhow::Result<()> {
        while let Some(effect) = self.node.poll_raft() {
            let Some(raft) = self.raft.as_mut() else {
                continue;
            };
            match effect {
                RaftEffect::Write(write) => raft.store.write(&write)?,
                RaftEffect::Send { peer, message } => {
                    if let Some(behaviour) = self.swarm.behaviour_mut().inner_mut().raft.as_mut() {
                        behaviour.send_request(&peer, message);
                    }
                }
                RaftEffect::Done { proposal, result } => {
                    let failed = result.err().map(CommandError::Unavailable);
                    for answer in raft.parked.remove(&proposal).unwrap_or_default() {
                        answer(failed.clone());
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) async fn on_raft_event(&mut self, event: raft_net::Event) -> anyhow::Result<()> {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                if let Some(behaviour) = self.swarm.behaviour_mut().inner_mut().raft.as_mut() {
                    let _ = behaviour.send_response(channel, ());
                }
                self.node
                    .on_raft_message(peer, &request, now_nanos())
                    .await?;
            }
            Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "a Raft message did not arrive");
                self.node.on_raft_unreachable(&peer);
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "could not take a Raft message");
            }
            Event::Message {
                message: Message::Response { .. },
                ..
            }
            | Event::ResponseSent { .. } => {}
        }
        Ok(())
    }

    /// Where Raft stands; `None` under CRDT consensus.
    pub(super) fn raft_status(&self) -> Option<RaftStatus> {
        let raft = self.node.raft()?;
        Some(RaftStatus {
            leader: raft.leader().map(|p| p.to_string()),
            is_leader: raft.is_leader(),
            term: raft.term(),
            peers: raft.members().iter().map(|p| p.to_string()).collect(),
        })
    }
}
