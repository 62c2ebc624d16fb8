//! Listening through relays. A listen address `<relay address>/p2p/<relay>/p2p-circuit`
//! takes a reservation on that relay, so that peers and browsers that cannot dial this peer
//! reach it through the relay. libp2p's relay client asks for the reservation on a
//! connection it dials itself, and gives up at once when another dial to the relay is under
//! way (the bootstrap's, at start); so the peer dials each relay first, listens once it is
//! connected, and listens again when a lost reservation's relay comes back.

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{Multiaddr, PeerId, Swarm};

/// The circuit listen addresses and their listeners.
#[derive(Debug, Default)]
pub struct CircuitListens {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    relay: PeerId,
    address: Multiaddr,
    listener: Option<ListenerId>,
}

/// The relay a circuit listen address goes through, or `None` for other addresses.
fn relay_of(address: &Multiaddr) -> Option<PeerId> {
    let mut relay = None;
    for protocol in address.iter() {
        match protocol {
            Protocol::P2p(peer) => relay = Some(peer),
            Protocol::P2pCircuit => return relay,
            _ => {}
        }
    }
    None
}

/// A circuit listen address that does not say which relay to listen through.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}: a circuit listen address names its relay: <relay address>/p2p/<relay peer id>/p2p-circuit")]
pub struct RelayMissing(pub Multiaddr);

impl CircuitListens {
    /// Keeps the circuit addresses of `addresses` and returns the others.
    pub fn split(addresses: &[Multiaddr]) -> Result<(Self, Vec<Multiaddr>), RelayMissing> {
        let mut listens = Self::default();
        let mut others = Vec::new();
        for address in addresses {
            if !address.iter().any(|p| p == Protocol::P2pCircuit) {
                others.push(address.clone());
                continue;
            }
            let relay = relay_of(address).ok_or_else(|| RelayMissing(address.clone()))?;
            listens.entries.push(Entry {
                relay,
                address: address.clone(),
                listener: None,
            });
        }
        Ok((listens, others))
    }

    /// The relays to dial, with the addresses to dial them at.
    pub fn relays(&self) -> impl Iterator<Item = (PeerId, Multiaddr)> + '_ {
        self.entries.iter().map(|entry| {
            let mut address = entry.address.clone();
            while address.pop().is_some_and(|p| p != Protocol::P2pCircuit) {}
            (entry.relay, address)
        })
    }

    /// `peer` is connected: listens through it where this peer is not listening yet.
    pub fn on_connected<B: NetworkBehaviour>(&mut self, peer: PeerId, swarm: &mut Swarm<B>) {
        for entry in &mut self.entries {
            if entry.relay != peer || entry.listener.is_some() {
                continue;
            }
            match swarm.listen_on(entry.address.clone()) {
                Ok(listener) => entry.listener = Some(listener),
                Err(error) => {
                    tracing::warn!(address = %entry.address, %error, "could not listen through the relay")
                }
            }
        }
    }

    /// A listener closed; a circuit one listens again at the next connection to its
    /// relay. Returns the circuit address when it was one.
    pub fn on_listener_closed(&mut self, listener: ListenerId) -> Option<&Multiaddr> {
        let entry = self
            .entries
            .iter_mut()
            .find(|entry| entry.listener == Some(listener))?;
        entry.listener = None;
        Some(&entry.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_addresses_are_kept_with_their_relay_and_the_rest_returned() {
        let relay = PeerId::random();
        let circuit: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit")
            .parse()
            .unwrap();
        let tcp: Multiaddr = "/ip4/0.0.0.0/tcp/9096".parse().unwrap();
        let (listens, others) = CircuitListens::split(&[tcp.clone(), circuit]).unwrap();
        assert_eq!(others, vec![tcp]);
        let relays: Vec<_> = listens.relays().collect();
        assert_eq!(
            relays,
            vec![(
                relay,
                format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}")
                    .parse()
                    .unwrap()
            )]
        );
    }

    #[test]
    fn a_circuit_address_without_its_relay_is_refused_with_the_form_to_use() {
        let error =
            CircuitListens::split(&["/ip4/127.0.0.1/tcp/4001/p2p-circuit".parse().unwrap()])
                .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("<relay address>/p2p/<relay peer id>/p2p-circuit"),
            "{error}"
        );
    }
}
