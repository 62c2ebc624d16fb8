//! Catching up in runs of blocks: the replica asks for a block's ancestors when its walk is
//! behind (see [`crate::crdt::Replica::receive_ancestors`]); the node picks the peer to
//! ask, sends the request, hands the answer back, and answers other peers' requests.

use cid::Cid;
use libp2p_identity::PeerId;

use crate::codec::peer_request::PeerRequest;
use crate::crdt::Store;

use super::{ms, Effect, Node, NodeRole, RequestId};

/// The ancestors request that is out, and whose turn it is to be asked next.
#[derive(Debug, Default)]
pub struct CatchUp {
    asked: Option<RequestId>,
    turn: usize,
}

impl CatchUp {
    /// The next of `sources` to ask: they take turns, so that one lacking the blocks (it
    /// was cut off too) costs one empty answer, not the rest of the walk.
    fn next(&mut self, sources: &[PeerId]) -> Option<PeerId> {
        let source = *sources.get(self.turn % sources.len().max(1))?;
        self.turn = self.turn.wrapping_add(1);
        Some(source)
    }

    /// Whether `id` answers the request that is out; it is out no longer if so.
    pub(super) fn is_answer(&mut self, id: RequestId) -> bool {
        if self.asked == Some(id) {
            self.asked = None;
            return true;
        }
        false
    }
}

impl<S: Store> Node<S> {
    /// The peers that can answer an ancestors request: connected, trusted, and pinfold
    /// peers that keep the pinset (their `ping` names such a role; Go peers name none).
    fn ancestor_sources(&self, now: i64) -> Vec<PeerId> {
        let mut sources = self.peers_whose_ping(now, |peer, info| {
            self.connected.contains(&peer)
                && self.config.trust.trusts(&peer)
                && NodeRole::from_name(&info.role).is_some_and(NodeRole::is_peer)
        });
        sources.sort_by_cached_key(|p| p.to_bytes());
        sources
    }

    /// Sends the replica's ancestors request to the next source, or tells the replica that
    /// none will answer.
    pub(super) fn ask_ancestors(&mut self, from: Cid, known: Vec<Cid>, limit: u32, now: i64) {
        let sources = self.ancestor_sources(now);
        let Some(peer) = self.catch_up.next(&sources) else {
            self.replica.ancestors_unanswered(ms(now));
            return;
        };
        let id = self.gatherings.next_request_id();
        self.catch_up.asked = Some(id);
        self.effects.push_back(Effect::Request {
            id,
            peer,
            request: PeerRequest::Ancestors { from, known, limit },
        });
    }
}
