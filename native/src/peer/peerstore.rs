//! Known peers' addresses, kept across restarts in ipfs-cluster's peerstore format: one
//! multiaddress with `/p2p/<peer id>` per line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// Addresses kept per peer; the oldest are dropped past it.
pub const MAX_ADDRESSES_PER_PEER: usize = 8;
/// Peers kept; new peers are not added past it.
pub const MAX_PEERS: usize = 1024;

/// The peerstore file and its contents.
pub struct Peerstore {
    path: PathBuf,
    peers: BTreeMap<PeerId, BTreeSet<Multiaddr>>,
    dirty: bool,
}

impl Peerstore {
    /// Reads the file; a missing file is an empty peerstore, unreadable lines are skipped.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let mut store = Self {
            path: path.to_owned(),
            peers: BTreeMap::new(),
            dirty: false,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    match line.parse::<Multiaddr>() {
                        Ok(address) => {
                            if let Some(Protocol::P2p(peer)) = address.iter().last() {
                                let bare: Multiaddr = address
                                    .iter()
                                    .filter(|p| !matches!(p, Protocol::P2p(_)))
                                    .collect();
                                store.add(peer, bare);
                            }
                        }
                        Err(error) => {
                            tracing::warn!(file = %path.display(), line, %error, "skipping a peerstore line")
                        }
                    }
                }
                store.dirty = false;
                Ok(store)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(store),
            Err(e) => Err(e),
        }
    }

    /// Records an address (without `/p2p/`) of `peer`.
    pub fn add(&mut self, peer: PeerId, address: Multiaddr) {
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEERS {
            return;
        }
        let address: Multiaddr = address
            .iter()
            .filter(|p| !matches!(p, Protocol::P2p(_)))
            .collect();
        let addresses = self.peers.entry(peer).or_default();
        if addresses.len() < MAX_ADDRESSES_PER_PEER && addresses.insert(address) {
            self.dirty = true;
        }
    }

    /// The addresses (without `/p2p/`) known of `peer`.
    pub fn addresses_of(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.peers
            .get(peer)
            .map(|a| a.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every address, with `/p2p/`.
    pub fn addresses(&self) -> Vec<Multiaddr> {
        self.peers
            .iter()
            .flat_map(|(peer, addresses)| {
                addresses
                    .iter()
                    .map(move |a| a.clone().with(Protocol::P2p(*peer)))
            })
            .collect()
    }

    /// Writes the file if anything changed since it was read or last written.
    pub fn save(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let mut text = String::new();
        for address in self.addresses() {
            text.push_str(&address.to_string());
            text.push('\n');
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_survive_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peerstore");
        let peer = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let mut store = Peerstore::load(&path).unwrap();
        store.add(peer, "/ip4/127.0.0.1/tcp/9096".parse().unwrap());
        store.add(
            peer,
            format!("/ip4/127.0.0.1/tcp/9096/p2p/{peer}")
                .parse()
                .unwrap(),
        );
        store.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("/ip4/127.0.0.1/tcp/9096/p2p/{peer}\n"));
        let again = Peerstore::load(&path).unwrap();
        assert_eq!(again.addresses(), store.addresses());
    }
}
