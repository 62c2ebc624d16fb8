//! Kademlia as Go ipfs-cluster's dual DHT speaks it (`/ipfs/kad/1.0.0` for the WAN table,
//! `/ipfs/lan/kad/1.0.0` for the LAN one), in server mode and for routing only. A Go peer
//! that cannot dial a cluster peer asks its DHT for the peer's addresses; a Go peer that
//! joined through a pinfold peer has only pinfold peers in its tables, so pinfold answers
//! those lookups from the peers it is connected to. pinfold looks nothing up itself (it
//! learns addresses from pings and `Cluster.ID`), and keeps no records: Go's provider
//! records for CRDT blocks are dropped, since bitswap asks connected peers directly.

use std::time::Duration;

use libp2p::kad::{self, store::MemoryStore, Mode, StoreInserts};
use libp2p::{identify, PeerId, StreamProtocol};

/// The protocol of the WAN table of go-libp2p-kad-dht's dual DHT.
pub const WAN_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/kad/1.0.0");

/// The protocol of its LAN table (`dual.LanExtension`), which holds peers on private
/// addresses.
pub const LAN_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/lan/kad/1.0.0");

/// One table of the DHT.
pub type Dht = kad::Behaviour<MemoryStore>;

/// A DHT table over `protocol` that answers lookups and stores nothing.
pub fn dht(local: PeerId, protocol: StreamProtocol) -> Dht {
    let mut config = kad::Config::new(protocol);
    config
        .set_record_filtering(StoreInserts::FilterBoth)
        .set_periodic_bootstrap_interval(None)
        .set_query_timeout(Duration::from_secs(30));
    let mut dht = Dht::with_config(local, MemoryStore::new(local), config);
    dht.set_mode(Some(Mode::Server));
    dht
}

/// Puts an identified peer into a table, at the addresses it listens on, whether or not it
/// serves the DHT itself: a Go peer whose DHT is in client mode (until it finds itself
/// publicly reachable) serves none, yet the others look it up. (A table learns on its own
/// only the address of a server it dialled.)
pub fn learn(dht: &mut Dht, peer: PeerId, info: &identify::Info) {
    for address in &info.listen_addrs {
        dht.add_address(&peer, address.clone());
    }
}
