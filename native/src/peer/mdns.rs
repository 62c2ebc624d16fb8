//! mDNS discovery (`cluster.mdns_interval`), on the wire as Go ipfs-cluster's (go-libp2p's
//! mdns service over zeroconf, service `_ipfs-cluster-discovery._udp`): peers on one
//! LAN find each other, pinfold's and Go's alike, without bootstrap addresses.
//!
//! A peer answers queries for the service with a PTR to its instance (a random name), and
//! in the additional section the instance's SRV (target `<instance>.local.`), a TXT of
//! `dnsaddr=<multiaddr>/p2p/<id>` strings and the A record of the interface it answers on;
//! it announces the same at start. It queries every `mdns_interval`, and reads the TXT
//! records of every packet it hears, whatever section they are in. IPv4 only.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use rand::Rng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

/// The DNS-SD service Go ipfs-cluster registers and browses.
pub const SERVICE: &str = "_ipfs-cluster-discovery._udp.local.";
/// DNS-SD's meta query, which lists the services on the link.
const META_QUERY: &str = "_services._dns-sd._udp.local.";
const MDNS_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
const MDNS_PORT: u16 = 5353;
/// The TTL of the PTR, SRV and TXT records, as Go's.
const RECORD_TTL: u32 = 3200;
/// The TTL of the A records, as Go's.
const HOST_TTL: u32 = 120;
/// The prefix of each address string in the TXT record.
const DNSADDR: &str = "dnsaddr=";
/// A character string of a TXT record holds at most this many bytes.
const MAX_TXT_STRING: usize = 255;
/// Addresses announced at most.
const MAX_ANNOUNCED: usize = 16;
/// The largest packet read.
const MAX_PACKET: usize = 9000;
/// A peer heard again within this long is not reported again.
const REPORT_AGAIN_AFTER: Duration = Duration::from_secs(60);
/// Peers remembered as reported; past it the memory starts over.
const MAX_REMEMBERED: usize = 1024;

/// Why mDNS could not start.
#[derive(Debug, thiserror::Error)]
pub enum MdnsError {
    #[error("could not open the mDNS socket (UDP {MDNS_PORT}): {0}")]
    Socket(#[from] std::io::Error),
}

/// A random instance name, as Go makes them: 32 to 63 characters of `[a-z0-9]`.
fn instance_label(rng: &mut impl Rng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let len = rng.gen_range(32..64);
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("a valid DNS name")
}

/// What this peer announces: its instance and the addresses for its TXT record.
#[derive(Clone, Debug)]
pub struct Announcement {
    instance: Name,
    host: Name,
    txt: Vec<String>,
}

impl Announcement {
    /// `label`'s instance of the service, with the TXT strings of `addresses` (each with
    /// `/p2p/<local>`): at most [`MAX_ANNOUNCED`], none over a TXT string's 255 bytes.
    pub fn new(label: &str, local: PeerId, addresses: &[Multiaddr]) -> Self {
        let txt = addresses
            .iter()
            .map(|a| format!("{DNSADDR}{}", with_peer(a, local)))
            .filter(|s| s.len() <= MAX_TXT_STRING)
            .take(MAX_ANNOUNCED)
            .collect();
        Self {
            instance: name(&format!("{label}.{SERVICE}")),
            host: name(&format!("{label}.local.")),
            txt,
        }
    }

    /// The answer to a query for the service (or an unsolicited announcement, `id` 0), for
    /// a link on which this peer is at `ip`: the PTR, then the SRV, TXT and A records.
    pub fn response(&self, id: u16, ip: Ipv4Addr) -> Message {
        let mut message = Message::new(id, MessageType::Response, OpCode::Query);
        message.metadata.authoritative = true;
        message.add_answer(Record::from_rdata(
            name(SERVICE),
            RECORD_TTL,
            RData::PTR(PTR(self.instance.clone())),
        ));
        message.add_additional(Record::from_rdata(
            self.instance.clone(),
            RECORD_TTL,
            RData::SRV(SRV::new(0, 0, 4001, self.host.clone())),
        ));
        message.add_additional(Record::from_rdata(
            self.instance.clone(),
            RECORD_TTL,
            RData::TXT(TXT::new(self.txt.clone())),
        ));
        message.add_additional(Record::from_rdata(
            self.host.clone(),
            HOST_TTL,
            RData::A(A(ip)),
        ));
        message
    }
}

/// `address` ending in `/p2p/<peer>`.
fn with_peer(address: &Multiaddr, peer: PeerId) -> Multiaddr {
    match address.iter().last() {
        Some(Protocol::P2p(_)) => address.clone(),
        _ => address.clone().with(Protocol::P2p(peer)),
    }
}

/// A query for the service's instances, as Go's browser sends it (multicast answers).
pub fn query(id: u16) -> Message {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(name(SERVICE), RecordType::PTR));
    message
}

/// What a packet asks of this peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Asked {
    /// Nothing this peer answers.
    Nothing,
    /// The service's instances: answer with the announcement, by unicast to the sender
    /// when `unicast` (the question's QU bit).
    Instances { id: u16, unicast: bool },
    /// The services on the link: answer with a PTR to the service.
    Services { id: u16 },
}

/// What `message` asks, read as Go's responder reads it: queries with an authority
/// section (probes) are not answered; names compare without regard to case.
pub fn asked(message: &Message) -> Asked {
    if message.metadata.message_type != MessageType::Query || !message.authorities.is_empty() {
        return Asked::Nothing;
    }
    let id = message.metadata.id;
    for question in &message.queries {
        let asked = question.name().to_ascii();
        if asked.eq_ignore_ascii_case(SERVICE) {
            return Asked::Instances {
                id,
                unicast: question.mdns_unicast_response(),
            };
        }
        if asked.eq_ignore_ascii_case(META_QUERY) {
            return Asked::Services { id };
        }
    }
    Asked::Nothing
}

/// The answer to the meta query: a PTR to the service.
pub fn services_response(id: u16) -> Message {
    let mut message = Message::new(id, MessageType::Response, OpCode::Query);
    message.metadata.authoritative = true;
    message.add_answer(Record::from_rdata(
        name(META_QUERY),
        RECORD_TTL,
        RData::PTR(PTR(name(SERVICE))),
    ));
    message
}

/// The peers' addresses in a packet's records of the service: every `dnsaddr=` string of a
/// TXT record owned by an instance of the service (any section), that parses as a
/// multiaddress ending in `/p2p/`, other than `local`'s. Records with a TTL of 0 (goodbyes)
/// are passed over.
pub fn discovered(message: &Message, local: PeerId) -> Vec<Multiaddr> {
    let service = SERVICE.to_ascii_lowercase();
    let mut found = Vec::new();
    for record in message
        .answers
        .iter()
        .chain(&message.authorities)
        .chain(&message.additionals)
    {
        let RData::TXT(txt) = &record.data else {
            continue;
        };
        if record.ttl == 0
            || !record
                .name
                .to_ascii()
                .to_ascii_lowercase()
                .ends_with(&service)
        {
            continue;
        }
        for string in txt.txt_data.iter() {
            let Some(text) = std::str::from_utf8(string)
                .ok()
                .and_then(|s| s.strip_prefix(DNSADDR))
            else {
                continue;
            };
            let Ok(address) = text.parse::<Multiaddr>() else {
                continue;
            };
            match address.iter().last() {
                Some(Protocol::P2p(peer)) if peer != local => found.push(address),
                _ => {}
            }
        }
    }
    found
}

/// The addresses a peer announces from its listen addresses: TCP ones (not WebSocket or
/// WebRTC, which Go's mdns passes over too), not loopback or unspecified.
pub fn announced(listening: impl IntoIterator<Item = Multiaddr>) -> Vec<Multiaddr> {
    listening
        .into_iter()
        .filter(|address| {
            let mut protocols = address.iter();
            let ip_ok = match protocols.next() {
                Some(Protocol::Ip4(ip)) => !ip.is_loopback() && !ip.is_unspecified(),
                Some(Protocol::Ip6(ip)) => !ip.is_loopback() && !ip.is_unspecified(),
                _ => false,
            };
            ip_ok
                && matches!(protocols.next(), Some(Protocol::Tcp(_)))
                && protocols.all(|p| matches!(p, Protocol::P2p(_)))
        })
        .collect()
}

/// The IPv4 addresses of this host's interfaces that mDNS runs on: all but loopback.
fn interface_ips() -> Vec<Ipv4Addr> {
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces
            .into_iter()
            .filter_map(|i| match i.ip() {
                std::net::IpAddr::V4(ip) if !ip.is_loopback() => Some(ip),
                _ => None,
            })
            .collect(),
        Err(error) => {
            tracing::debug!(%error, "mDNS could not list the interfaces");
            Vec::new()
        }
    }
}

/// The socket on port 5353, shared with other mDNS responders on the host (as Go's, with
/// `SO_REUSEADDR`), its multicast sent back to this host too (peers on one host find each
/// other).
fn open_socket() -> Result<UdpSocket, MdnsError> {
    use socket2::{Domain, Protocol as IpProtocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(IpProtocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, MDNS_PORT)).into())?;
    socket.set_multicast_ttl_v4(255)?;
    socket.set_multicast_loop_v4(true)?;
    Ok(UdpSocket::from_std(socket.into())?)
}

/// The running discovery: its socket, what it announces, the interfaces it has joined
/// the group on, and the peers it reported lately.
struct Discovery<T> {
    socket: UdpSocket,
    local: PeerId,
    label: String,
    announcement: Announcement,
    joined: HashSet<Ipv4Addr>,
    reported: HashMap<PeerId, Instant>,
    found: mpsc::Sender<T>,
    report: fn(Vec<Multiaddr>) -> T,
}

impl<T> Discovery<T> {
    /// Joins the group on interfaces not joined yet (they may come up later).
    fn join_interfaces(&mut self) {
        for ip in interface_ips() {
            if self.joined.contains(&ip) {
                continue;
            }
            match self.socket.join_multicast_v4(MDNS_GROUP, ip) {
                Ok(()) => {
                    self.joined.insert(ip);
                }
                Err(error) => tracing::debug!(%ip, %error, "mDNS could not join the group here"),
            }
        }
    }

    /// Sends `make(ip)` out of every joined interface (`ip`: that interface's address).
    async fn multicast(&self, make: impl Fn(Ipv4Addr) -> Message) {
        let group = SocketAddr::V4(SocketAddrV4::new(MDNS_GROUP, MDNS_PORT));
        for ip in &self.joined {
            let bytes = match make(*ip).to_vec() {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::warn!(%error, "mDNS could not write a packet");
                    return;
                }
            };
            let sent = match socket2::SockRef::from(&self.socket).set_multicast_if_v4(ip) {
                Ok(()) => self.socket.send_to(&bytes, group).await.map(drop),
                Err(error) => Err(error),
            };
            if let Err(error) = sent {
                tracing::debug!(%ip, %error, "mDNS could not send on this interface");
            }
        }
    }

    /// Answers what `message` asks, then reports the peers it names.
    async fn on_packet(&mut self, message: Message, from: SocketAddr) {
        match asked(&message) {
            Asked::Nothing => {}
            Asked::Instances { id, unicast: true } => {
                let ip = match from {
                    SocketAddr::V4(from) => self
                        .joined
                        .iter()
                        .copied()
                        .find(|ip| same_subnet(*ip, *from.ip()))
                        .or_else(|| self.joined.iter().next().copied()),
                    SocketAddr::V6(_) => None,
                };
                if let Some(ip) = ip {
                    if let Ok(bytes) = self.announcement.response(id, ip).to_vec() {
                        let _ = self.socket.send_to(&bytes, from).await;
                    }
                }
            }
            Asked::Instances { id, unicast: false } => {
                let announcement = self.announcement.clone();
                self.multicast(|ip| announcement.response(id, ip)).await;
            }
            Asked::Services { id } => self.multicast(|_| services_response(id)).await,
        }
        let now = Instant::now();
        let fresh: Vec<Multiaddr> = discovered(&message, self.local)
            .into_iter()
            .filter(|address| match address.iter().last() {
                Some(Protocol::P2p(peer)) => self
                    .reported
                    .get(&peer)
                    .is_none_or(|at| now.duration_since(*at) >= REPORT_AGAIN_AFTER),
                _ => false,
            })
            .collect();
        if fresh.is_empty() {
            return;
        }
        if self.reported.len() >= MAX_REMEMBERED {
            self.reported.clear();
        }
        for address in &fresh {
            if let Some(Protocol::P2p(peer)) = address.iter().last() {
                self.reported.insert(peer, now);
            }
        }
        tracing::debug!(addresses = fresh.len(), "mDNS found peers");
        let _ = self.found.try_send((self.report)(fresh));
    }
}

/// Whether `a` and `b` share a /24 (the sender's link, for a unicast answer's A record).
fn same_subnet(a: Ipv4Addr, b: Ipv4Addr) -> bool {
    a.octets()[..3] == b.octets()[..3]
}

/// Runs discovery until `found` closes: announces this peer's TCP listen addresses (from
/// `listening`, kept current) twice at start and whenever they change, queries every
/// `interval`, and sends the addresses of the peers it hears of to `found`, as `report`
/// makes them (dropped when `found` is full: they come again).
pub async fn run<T>(
    local: PeerId,
    interval: Duration,
    mut listening: watch::Receiver<Vec<Multiaddr>>,
    found: mpsc::Sender<T>,
    report: fn(Vec<Multiaddr>) -> T,
) -> Result<(), MdnsError> {
    let label = instance_label(&mut rand::thread_rng());
    let announcement = Announcement::new(&label, local, &announced(listening.borrow().clone()));
    let mut discovery = Discovery {
        socket: open_socket()?,
        local,
        label,
        announcement,
        joined: HashSet::new(),
        reported: HashMap::new(),
        found,
        report,
    };
    discovery.join_interfaces();
    tracing::info!(
        interfaces = discovery.joined.len(),
        service = SERVICE,
        "mDNS discovery on"
    );
    let mut ticks = tokio::time::interval(interval);
    let mut announce_again = Some(Box::pin(tokio::time::sleep(Duration::from_secs(1))));
    let mut buffer = vec![0u8; MAX_PACKET];
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                discovery.join_interfaces();
                let id = rand::thread_rng().gen();
                discovery.multicast(|_| query(id)).await;
            }
            _ = async { announce_again.as_mut().expect("guarded").await }, if announce_again.is_some() => {
                announce_again = None;
                let announcement = discovery.announcement.clone();
                discovery.multicast(|ip| announcement.response(0, ip)).await;
            }
            changed = listening.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let addresses = announced(listening.borrow_and_update().clone());
                discovery.announcement = Announcement::new(&discovery.label, local, &addresses);
                let announcement = discovery.announcement.clone();
                discovery.multicast(|ip| announcement.response(0, ip)).await;
            }
            received = discovery.socket.recv_from(&mut buffer) => {
                let (len, from) = match received {
                    Ok(received) => received,
                    Err(error) => {
                        tracing::debug!(%error, "mDNS could not read a packet");
                        continue;
                    }
                };
                match Message::from_vec(&buffer[..len]) {
                    Ok(message) => discovery.on_packet(message, from).await,
                    Err(error) => tracing::trace!(%from, %error, "not an mDNS packet pinfold reads"),
                }
            }
            _ = discovery.found.closed() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(seed: u8) -> PeerId {
        let mut bytes = [0u8; 32];
        bytes[0] = seed;
        libp2p::identity::Keypair::ed25519_from_bytes(bytes)
            .unwrap()
            .public()
            .to_peer_id()
    }

    #[test]
    fn an_announcement_round_trips_to_the_peer_s_addresses() {
        let (local, other) = (peer(1), peer(2));
        let listening: Vec<Multiaddr> = [
            "/ip4/10.0.0.2/tcp/9096",
            "/ip4/127.0.0.1/tcp/9096",
            "/ip4/10.0.0.2/tcp/9098/ws",
            "/ip4/10.0.0.2/udp/9096/webrtc-direct",
            "/ip4/0.0.0.0/tcp/9096",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let announced = announced(listening);
        assert_eq!(
            announced,
            ["/ip4/10.0.0.2/tcp/9096".parse::<Multiaddr>().unwrap()]
        );
        let label = instance_label(&mut rand::thread_rng());
        assert!((32..64).contains(&label.len()));
        let packet = Announcement::new(&label, other, &announced)
            .response(7, Ipv4Addr::new(10, 0, 0, 2))
            .to_vec()
            .unwrap();
        let message = Message::from_vec(&packet).unwrap();
        assert!(message.queries.is_empty(), "Go answers questions it finds");
        assert_eq!(
            discovered(&message, local),
            [format!("/ip4/10.0.0.2/tcp/9096/p2p/{other}")
                .parse::<Multiaddr>()
                .unwrap()]
        );
        assert!(discovered(&message, other).is_empty(), "not itself");
    }

    #[test]
    fn queries_for_the_service_and_the_services_are_answered_probes_are_not() {
        let packet = query(42).to_vec().unwrap();
        let message = Message::from_vec(&packet).unwrap();
        assert_eq!(
            asked(&message),
            Asked::Instances {
                id: 42,
                unicast: false
            }
        );
        let mut meta = Message::new(3, MessageType::Query, OpCode::Query);
        meta.add_query(Query::query(name(META_QUERY), RecordType::PTR));
        assert_eq!(asked(&meta), Asked::Services { id: 3 });
        let mut probe = query(5);
        probe.add_authority(Record::from_rdata(
            name(&format!("x.{SERVICE}")),
            RECORD_TTL,
            RData::TXT(TXT::new(vec!["x".into()])),
        ));
        assert_eq!(asked(&probe), Asked::Nothing);
        let answered = Announcement::new("y", peer(3), &[]).response(5, Ipv4Addr::LOCALHOST);
        assert_eq!(
            asked(&answered),
            Asked::Nothing,
            "responses are not questions"
        );
    }

    #[test]
    fn txt_strings_that_are_not_peer_addresses_are_passed_over() {
        let other = peer(4);
        let mut message = Message::new(0, MessageType::Response, OpCode::Query);
        let strings = vec![
            format!("dnsaddr=/ip4/10.0.0.3/tcp/4001/p2p/{other}"),
            "dnsaddr=/ip4/10.0.0.3/tcp/4001".into(),
            "dnsaddr=not a multiaddr".into(),
            format!("other=/ip4/10.0.0.3/tcp/4001/p2p/{other}"),
        ];
        message.add_answer(Record::from_rdata(
            name(&format!("abc.{SERVICE}")),
            RECORD_TTL,
            RData::TXT(TXT::new(strings.clone())),
        ));
        message.add_answer(Record::from_rdata(
            name("abc._other._udp.local."),
            RECORD_TTL,
            RData::TXT(TXT::new(strings.clone())),
        ));
        message.add_answer(Record::from_rdata(
            name(&format!("gone.{SERVICE}")),
            0,
            RData::TXT(TXT::new(strings)),
        ));
        let message = Message::from_vec(&message.to_vec().unwrap()).unwrap();
        assert_eq!(
            discovered(&message, peer(5)),
            [format!("/ip4/10.0.0.3/tcp/4001/p2p/{other}")
                .parse::<Multiaddr>()
                .unwrap()]
        );
    }

    #[test]
    fn addresses_too_long_for_a_txt_string_are_left_out() {
        let long: Multiaddr = format!("/dns4/{}.local/tcp/1", "a".repeat(230))
            .parse()
            .unwrap();
        let short: Multiaddr = "/ip4/10.0.0.2/tcp/1".parse().unwrap();
        let announcement = Announcement::new("z", peer(6), &[long, short]);
        assert_eq!(announcement.txt.len(), 1);
    }
}
