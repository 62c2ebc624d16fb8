//! The peers a node keeps connected, and when to dial each again: a peer that dropped, or
//! could not be reached, is dialed after a back-off that starts at [`REDIAL_MIN_MS`] and
//! doubles to [`REDIAL_MAX_MS`]; a connection resets it.

use std::collections::HashMap;

use libp2p_identity::PeerId;

/// The first wait before dialing a dropped peer again.
pub const REDIAL_MIN_MS: u64 = 1_000;
/// The longest wait between dials of an unreachable peer.
pub const REDIAL_MAX_MS: u64 = 30_000;

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// When to dial next (Unix milliseconds).
    at: u64,
    backoff: u64,
    connected: bool,
}

/// The kept peers and their back-offs.
#[derive(Default)]
pub struct Redial {
    peers: HashMap<PeerId, Entry>,
}

impl Redial {
    /// Keeps `peer` connected from now on; a peer kept already keeps its back-off.
    pub fn keep(&mut self, peer: PeerId, now_ms: u64) {
        self.peers.entry(peer).or_insert(Entry {
            at: now_ms + REDIAL_MIN_MS,
            backoff: REDIAL_MIN_MS,
            connected: false,
        });
    }

    pub fn is_kept(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    pub fn connected(&mut self, peer: &PeerId) {
        if let Some(entry) = self.peers.get_mut(peer) {
            entry.connected = true;
            entry.backoff = REDIAL_MIN_MS;
        }
    }

    /// The last connection to `peer` closed: it is dialed after its back-off.
    pub fn disconnected(&mut self, peer: &PeerId, now_ms: u64) {
        if let Some(entry) = self.peers.get_mut(peer) {
            entry.connected = false;
            entry.at = now_ms + entry.backoff;
        }
    }

    /// The kept peers to dial now; each waits twice as long before the next try.
    pub fn due(&mut self, now_ms: u64) -> Vec<PeerId> {
        let mut due = Vec::new();
        for (peer, entry) in &mut self.peers {
            if !entry.connected && entry.at <= now_ms {
                entry.at = now_ms + entry.backoff;
                entry.backoff = (entry.backoff * 2).min(REDIAL_MAX_MS);
                due.push(*peer);
            }
        }
        due.sort_by_key(|p| p.to_bytes());
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_peer_is_dialed_after_a_doubling_back_off_reset_by_a_connection() {
        let peer = PeerId::random();
        let mut r = Redial::default();
        r.keep(peer, 0);
        assert!(r.due(999).is_empty());
        assert_eq!(r.due(1_000), [peer]);
        assert!(r.due(1_999).is_empty());
        assert_eq!(r.due(2_000), [peer]);
        assert!(r.due(3_999).is_empty());
        assert_eq!(r.due(4_000), [peer]);
        let mut now = 4_000;
        for _ in 0..10 {
            now += REDIAL_MAX_MS;
            assert_eq!(r.due(now), [peer]);
        }
        r.connected(&peer);
        assert!(r.due(now + REDIAL_MAX_MS).is_empty());
        r.disconnected(&peer, now);
        assert!(r.due(now + REDIAL_MIN_MS - 1).is_empty());
        assert_eq!(r.due(now + REDIAL_MIN_MS), [peer]);
    }
}
