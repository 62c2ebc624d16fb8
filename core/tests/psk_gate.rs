//! The secret gate between small in-memory swarms, with bitswap as the gated protocol:
//! peers that share the secret prove it and then exchange blocks; a wrong secret, a peer
//! without the gate, a listener that never answers and a dialer that never asks are
//! disconnected before any bitswap message crosses; uncovered connections run bitswap at once.
//! A listener whose transport loses the dialer's first stream (as libp2p-webrtc can) still
//! gets the proof.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use cid::Cid;
use futures::future::{select, Either};
use futures::FutureExt;
use libp2p_core::muxing::{StreamMuxer, StreamMuxerBox, StreamMuxerEvent};
use libp2p_core::transport::{MemoryTransport, PortUse};
use libp2p_core::upgrade::Version;
use libp2p_core::upgrade::{DeniedUpgrade, ReadyUpgrade};
use libp2p_core::{Endpoint, Multiaddr, Transport};
use libp2p_identity::{Keypair, PeerId};
use libp2p_swarm::handler::{ConnectionEvent, FullyNegotiatedInbound};
use libp2p_swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, Stream, StreamProtocol, SubstreamProtocol, Swarm, SwarmEvent, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p_swarm_test::SwarmExt;
use pinfold_core::codec::dagpb::dag_pb_cid;
use pinfold_core::codec::psk_auth::PROTOCOL;
use pinfold_core::codec::secret::ClusterSecret;
use pinfold_core::net::bitswap::{self, Bitswap};
use pinfold_core::net::psk_gate::{Config, Event, PskGate, Rejection};

type Gated = PskGate<Bitswap>;

fn gated(secret: [u8; 32], covers: fn(&Multiaddr) -> bool) -> Swarm<Gated> {
    Swarm::new_ephemeral_tokio(move |key: Keypair| {
        let config = Config {
            covers,
            timeout: Duration::from_secs(2),
            ..Config::new(Some(ClusterSecret::from_bytes(secret)))
        };
        PskGate::new(
            key.public().to_peer_id(),
            config,
            Bitswap::new(bitswap::Config::default()),
            Box::new(rand::rngs::OsRng),
        )
    })
}

fn everything(_: &Multiaddr) -> bool {
    true
}

fn nothing(_: &Multiaddr) -> bool {
    false
}

fn block() -> (Cid, Vec<u8>) {
    let bytes = vec![0x0a, 2, 0xbe, 0xef];
    (dag_pb_cid(&bytes), bytes)
}

/// The next swarm event of either swarm; bounded in time.
async fn next<A, B>(
    a: &mut Swarm<A>,
    b: &mut Swarm<B>,
    within: Duration,
) -> Option<Either<SwarmEvent<A::ToSwarm>, SwarmEvent<B::ToSwarm>>>
where
    A: NetworkBehaviour + Send,
    B: NetworkBehaviour + Send,
    A::ToSwarm: Send + std::fmt::Debug,
    B::ToSwarm: Send + std::fmt::Debug,
{
    let both = async {
        match select(a.next_swarm_event().boxed(), b.next_swarm_event().boxed()).await {
            Either::Left((event, _)) => Either::Left(event),
            Either::Right((event, _)) => Either::Right(event),
        }
    };
    tokio::time::timeout(within, both).await.ok()
}

#[tokio::test]
async fn peers_sharing_the_secret_prove_it_then_exchange_blocks() {
    let mut a = gated([1; 32], everything);
    let mut b = gated([1; 32], everything);
    b.listen().with_memory_addr_external().await;
    prove_then_exchange_a_block(&mut a, &mut b).await;
}

#[tokio::test]
async fn the_proof_survives_a_listener_losing_the_first_stream() {
    let mut a = gated([1; 32], everything);
    let mut b = losing_first_inbound_stream([1; 32]);
    b.listen_on("/memory/0".parse().unwrap()).unwrap();
    let address = b
        .wait(|event| match event {
            SwarmEvent::NewListenAddr { address, .. } => Some(address),
            _ => None,
        })
        .await;
    b.add_external_address(address);
    prove_then_exchange_a_block(&mut a, &mut b).await;
}

/// Connects `a` to `b` (which share the secret), checks both report the proof, and that a
/// block `a` wants crosses only after it.
async fn prove_then_exchange_a_block(a: &mut Swarm<Gated>, b: &mut Swarm<Gated>) {
    let (cid, data) = block();
    a.behaviour_mut().inner_mut().want(cid).unwrap();
    a.connect(b).await;

    let mut proven = (false, false);
    loop {
        match next(a, b, Duration::from_secs(10))
            .await
            .expect("no event in 10 s")
        {
            Either::Left(SwarmEvent::Behaviour(Event::Proven { peer, .. })) => {
                assert_eq!(peer, *b.local_peer_id());
                proven.0 = true;
            }
            Either::Right(SwarmEvent::Behaviour(Event::Proven { peer, .. })) => {
                assert_eq!(peer, *a.local_peer_id());
                proven.1 = true;
            }
            Either::Right(SwarmEvent::Behaviour(Event::Inner(bitswap::Event::Wanted {
                peer,
                ..
            }))) => {
                assert!(proven.1, "b heard a's want before a proved the secret");
                b.behaviour_mut()
                    .inner_mut()
                    .respond(peer, vec![(cid, data.clone())], Vec::new());
            }
            Either::Left(SwarmEvent::Behaviour(Event::Inner(bitswap::Event::Block {
                cid: got,
                data: bytes,
                ..
            }))) => {
                assert!(proven.0, "a took a block before b proved the secret");
                assert_eq!((got, bytes), (cid, data));
                break;
            }
            Either::Left(SwarmEvent::Behaviour(Event::Rejected { reason, .. }))
            | Either::Right(SwarmEvent::Behaviour(Event::Rejected { reason, .. })) => {
                panic!("rejected with the same secret: {reason}")
            }
            _ => {}
        }
    }
}

/// A gated swarm on the memory transport whose muxer keeps the first stream the remote
/// opens without ever reading or answering it.
fn losing_first_inbound_stream(secret: [u8; 32]) -> Swarm<Gated> {
    let key = Keypair::generate_ed25519();
    let local = key.public().to_peer_id();
    let transport = MemoryTransport::default()
        .upgrade(Version::V1)
        .authenticate(libp2p_plaintext::Config::new(&key))
        .multiplex(libp2p_yamux::Config::default())
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(LosesFirstInbound::new(muxer))))
        .boxed();
    let config = Config {
        covers: everything,
        timeout: Duration::from_secs(2),
        ..Config::new(Some(ClusterSecret::from_bytes(secret)))
    };
    let behaviour = PskGate::new(
        local,
        config,
        Bitswap::new(bitswap::Config::default()),
        Box::new(rand::rngs::OsRng),
    );
    Swarm::new(
        transport,
        behaviour,
        local,
        libp2p_swarm::Config::with_tokio_executor(),
    )
}

/// Holds the first inbound stream unread, as a transport that lost it.
struct LosesFirstInbound<M: StreamMuxer> {
    inner: M,
    lost: Option<M::Substream>,
}

impl<M: StreamMuxer> LosesFirstInbound<M> {
    fn new(inner: M) -> Self {
        Self { inner, lost: None }
    }
}

impl<M> StreamMuxer for LosesFirstInbound<M>
where
    M: StreamMuxer + Unpin,
    M::Substream: Unpin,
{
    type Substream = M::Substream;
    type Error = M::Error;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        loop {
            let stream = std::task::ready!(Pin::new(&mut this.inner).poll_inbound(cx))?;
            if this.lost.is_some() {
                return Poll::Ready(Ok(stream));
            }
            this.lost = Some(stream);
        }
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll_outbound(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll(cx)
    }
}

/// Runs both swarms until `a` reports a rejection, failing if any bitswap message reaches
/// either side; then checks the connection is gone. Also says whether `b` reported a
/// rejection of its own.
async fn expect_rejection<B>(a: &mut Swarm<Gated>, b: &mut Swarm<B>) -> (Rejection, bool)
where
    B: NetworkBehaviour + Send,
    B::ToSwarm: Send + std::fmt::Debug,
{
    let (cid, _) = block();
    a.behaviour_mut().inner_mut().want(cid).unwrap();
    a.connect(b).await;
    let mut rejection = None;
    let mut closed = false;
    let mut other_rejected = false;
    while rejection.is_none() || !closed {
        match next(a, b, Duration::from_secs(10))
            .await
            .expect("no event in 10 s")
        {
            Either::Left(SwarmEvent::Behaviour(Event::Rejected { reason, .. })) => {
                rejection = Some(reason)
            }
            Either::Left(SwarmEvent::Behaviour(Event::Proven { .. })) => {
                panic!("a connection without the secret was proven")
            }
            Either::Left(SwarmEvent::Behaviour(Event::Inner(event))) => assert_no_exchange(&event),
            Either::Right(SwarmEvent::Behaviour(event)) => {
                let text = format!("{event:?}");
                assert!(
                    !text.contains("Wanted") && !text.contains("Inner"),
                    "the other side saw {text}"
                );
                other_rejected |= text.starts_with("Rejected");
            }
            Either::Left(SwarmEvent::ConnectionClosed { .. }) => closed = true,
            _ => {}
        }
    }
    // Nothing more crosses afterwards.
    while let Some(event) = next(a, b, Duration::from_millis(300)).await {
        match event {
            Either::Left(SwarmEvent::Behaviour(Event::Inner(event))) => assert_no_exchange(&event),
            Either::Right(SwarmEvent::Behaviour(event)) => {
                other_rejected |= format!("{event:?}").starts_with("Rejected")
            }
            _ => {}
        }
    }
    assert!(!a.is_connected(b.local_peer_id()));
    (rejection.unwrap(), other_rejected)
}

/// Fails on a bitswap event that only a message from the other side can cause. Once the
/// rejected connection is gone, the local want is reported unavailable: that is no exchange.
fn assert_no_exchange(event: &bitswap::Event) {
    assert!(
        matches!(event, bitswap::Event::Unavailable { .. }),
        "bitswap exchanged a message on an unproven connection: {event:?}"
    );
}

#[tokio::test]
async fn a_wrong_secret_is_rejected_before_any_cluster_message() {
    let mut a = gated([1; 32], everything);
    let mut b = gated([2; 32], everything);
    b.listen().with_memory_addr_external().await;
    let (reason, listener_rejected) = expect_rejection(&mut a, &mut b).await;
    assert!(
        matches!(reason, Rejection::WrongSecret | Rejection::Stream(_)),
        "{reason:?}"
    );
    assert!(
        listener_rejected,
        "the listener did not report the failed proof"
    );
    assert!(reason.to_string().contains("wrong cluster secret?"));
}

#[tokio::test]
async fn a_peer_without_the_gate_is_rejected() {
    let mut a = gated([1; 32], everything);
    let mut b = Swarm::new_ephemeral_tokio(|_| Bitswap::new(bitswap::Config::default()));
    b.listen().with_memory_addr_external().await;
    let (reason, _) = expect_rejection(&mut a, &mut b).await;
    assert_eq!(reason, Rejection::NotPinfold);
}

#[tokio::test]
async fn a_peer_that_never_answers_is_rejected_at_the_timeout() {
    let mut a = gated([1; 32], everything);
    let mut b = Swarm::new_ephemeral_tokio(|_| Silent);
    b.listen().with_memory_addr_external().await;
    let (reason, _) = expect_rejection(&mut a, &mut b).await;
    assert_eq!(reason, Rejection::TimedOut(Duration::from_secs(2)));
}

#[tokio::test]
async fn a_listener_closes_a_dialer_that_never_gives_the_proof_without_reading_it() {
    let mut gated_listener = gated([1; 32], everything);
    let mut plain = Swarm::new_ephemeral_tokio(|_| Bitswap::new(bitswap::Config::default()));
    gated_listener.listen().with_memory_addr_external().await;
    let (cid, _) = block();
    // The plain dialer sends its want as soon as it connects.
    plain.behaviour_mut().want(cid).unwrap();
    plain.connect(&mut gated_listener).await;
    let reason = loop {
        match next(&mut gated_listener, &mut plain, Duration::from_secs(10))
            .await
            .expect("no event in 10 s")
        {
            Either::Left(SwarmEvent::Behaviour(Event::Rejected { reason, .. })) => break reason,
            Either::Left(SwarmEvent::Behaviour(Event::Inner(event))) => {
                panic!("the listener read a message before any proof: {event:?}")
            }
            Either::Left(SwarmEvent::Behaviour(Event::Proven { .. })) => {
                panic!("a dialer without the gate was proven")
            }
            _ => {}
        }
    };
    assert_eq!(reason, Rejection::TimedOut(Duration::from_secs(2)));
    while let Some(event) = next(&mut gated_listener, &mut plain, Duration::from_millis(300)).await
    {
        if let Either::Left(SwarmEvent::Behaviour(Event::Inner(event))) = event {
            panic!("the listener read a message after the rejection: {event:?}");
        }
    }
    assert!(!gated_listener.is_connected(plain.local_peer_id()));
}

#[tokio::test]
async fn uncovered_connections_run_the_inner_protocols_at_once() {
    let mut a = gated([1; 32], nothing);
    let mut b = gated([2; 32], nothing);
    b.listen().with_memory_addr_external().await;
    let (cid, _) = block();
    a.behaviour_mut().inner_mut().want(cid).unwrap();
    a.connect(&mut b).await;
    loop {
        match next(&mut a, &mut b, Duration::from_secs(10))
            .await
            .expect("no event in 10 s")
        {
            Either::Right(SwarmEvent::Behaviour(Event::Inner(bitswap::Event::Wanted {
                ..
            }))) => break,
            Either::Left(SwarmEvent::Behaviour(Event::Proven { .. } | Event::Rejected { .. }))
            | Either::Right(SwarmEvent::Behaviour(Event::Proven { .. } | Event::Rejected { .. })) =>
            {
                panic!("an uncovered connection went through the proof")
            }
            _ => {}
        }
    }
}

/// A peer that accepts the proof protocol and never answers.
struct Silent;

struct SilentHandler(Vec<Stream>);

impl ConnectionHandler for SilentHandler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, ()> {
        SubstreamProtocol::new(ReadyUpgrade::new(StreamProtocol::new(PROTOCOL)), ())
    }

    fn connection_keep_alive(&self) -> bool {
        true
    }

    fn on_behaviour_event(&mut self, event: Infallible) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<'_, Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: stream,
            ..
        }) = event
        {
            self.0.push(stream);
        }
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<DeniedUpgrade, (), Infallible>> {
        Poll::Pending
    }
}

impl NetworkBehaviour for Silent {
    type ConnectionHandler = SilentHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(SilentHandler(Vec::new()))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(SilentHandler(Vec::new()))
    }

    fn on_swarm_event(&mut self, _: FromSwarm<'_>) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
