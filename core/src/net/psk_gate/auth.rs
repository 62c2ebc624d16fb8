//! One connection's side of `/pinfold/psk-auth/1.0.0`. On a connection that must prove the
//! secret, the connection's dialer opens the one proof stream and the listener waits for it;
//! both then run the three messages of [`crate::codec::psk_auth`] and report a verdict.
//!
//! Only the dialer opens a stream because some transports lose streams the listener opens
//! before the dialer has finished setting the connection up (libp2p-webrtc does).

use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt};
use futures_timer::Delay;
use libp2p_core::upgrade::ReadyUpgrade;
use libp2p_core::Endpoint;
use libp2p_identity::PeerId;
use libp2p_swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
};
use libp2p_swarm::{
    ConnectionHandler, ConnectionHandlerEvent, Stream, StreamProtocol, StreamUpgradeError,
    SubstreamProtocol,
};

use crate::codec::psk_auth::{
    answer, decode_reply, encode_reply, verify, Answer, Nonce, ANSWER_BYTES, PROTOCOL, REPLY_BYTES,
};
use crate::codec::secret::ClusterSecret;

use super::Rejection;

/// The outcome of the proof, reported once.
#[derive(Debug)]
pub enum Verdict {
    Proven,
    Rejected(Rejection),
}

/// The two peers of a connection, the secret they must share and this side's fresh nonce.
#[derive(Clone)]
pub struct Parties {
    pub secret: ClusterSecret,
    pub local: PeerId,
    pub remote: PeerId,
    pub nonce: Nonce,
}

type Exchange = BoxFuture<'static, Result<Verdict, std::io::Error>>;

enum State {
    /// The connection need not prove anything (it is inside pnet).
    Exempt,
    /// The dialer is to open the proof stream.
    Open,
    /// The dialer asked for its stream.
    Opening,
    /// The listener waits for the dialer's stream.
    Listening,
    Exchanging(Exchange),
    Decided,
}

pub struct AuthHandler {
    parties: Parties,
    state: State,
    deadline: Option<(Delay, Duration)>,
    verdict: Option<Verdict>,
}

impl AuthHandler {
    /// `deadline` is `Some` when the connection must prove the secret within that time;
    /// `role` is this side's role on the connection.
    pub fn new(parties: Parties, role: Endpoint, deadline: Option<Duration>) -> Self {
        let state = match (deadline, role) {
            (None, _) => State::Exempt,
            (Some(_), Endpoint::Dialer) => State::Open,
            (Some(_), Endpoint::Listener) => State::Listening,
        };
        Self {
            parties,
            state,
            deadline: deadline.map(|d| (Delay::new(d), d)),
            verdict: None,
        }
    }

    fn decide(&mut self, verdict: Verdict) {
        self.state = State::Decided;
        self.deadline = None;
        self.verdict = Some(verdict);
    }
}

/// The dialer's side: challenge, check the listener's answer, answer its challenge.
async fn as_dialer(mut stream: Stream, p: Parties) -> std::io::Result<Verdict> {
    stream.write_all(&p.nonce).await?;
    stream.flush().await?;
    let mut reply = [0u8; REPLY_BYTES];
    stream.read_exact(&mut reply).await?;
    let (given, their_nonce) = decode_reply(&reply);
    if !verify(&p.secret, &p.local, &p.remote, &p.nonce, &given) {
        return Ok(Verdict::Rejected(Rejection::WrongSecret));
    }
    let proof = answer(&p.secret, &p.remote, &p.local, &their_nonce);
    stream.write_all(&proof).await?;
    stream.close().await?;
    Ok(Verdict::Proven)
}

/// The listener's side: answer the dialer's challenge with a challenge of its own, then
/// check the dialer's answer.
async fn as_listener(mut stream: Stream, p: Parties) -> std::io::Result<Verdict> {
    let mut their_nonce = Nonce::default();
    stream.read_exact(&mut their_nonce).await?;
    let proof = answer(&p.secret, &p.remote, &p.local, &their_nonce);
    stream.write_all(&encode_reply(&proof, &p.nonce)).await?;
    stream.flush().await?;
    let mut given: Answer = [0u8; ANSWER_BYTES];
    stream.read_exact(&mut given).await?;
    Ok(
        if verify(&p.secret, &p.local, &p.remote, &p.nonce, &given) {
            Verdict::Proven
        } else {
            Verdict::Rejected(Rejection::WrongSecret)
        },
    )
}

fn protocol() -> ReadyUpgrade<StreamProtocol> {
    ReadyUpgrade::new(StreamProtocol::new(PROTOCOL))
}

impl ConnectionHandler for AuthHandler {
    type FromBehaviour = std::convert::Infallible;
    type ToBehaviour = Verdict;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, ()> {
        SubstreamProtocol::new(protocol(), ())
    }

    fn connection_keep_alive(&self) -> bool {
        !matches!(self.state, State::Exempt | State::Decided)
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        match event {
            // Only the first proof stream of a listener that waits for one is read; any
            // other is dropped, which the remote sees as a failed proof.
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: stream,
                ..
            }) if matches!(self.state, State::Listening) => {
                self.state = State::Exchanging(as_listener(stream, self.parties.clone()).boxed());
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: stream,
                ..
            }) if matches!(self.state, State::Opening) => {
                self.state = State::Exchanging(as_dialer(stream, self.parties.clone()).boxed());
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. })
                if matches!(self.state, State::Opening) =>
            {
                self.decide(Verdict::Rejected(match error {
                    StreamUpgradeError::NegotiationFailed => Rejection::NotPinfold,
                    other => Rejection::Stream(other.to_string()),
                }));
            }
            _ => {}
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Verdict>> {
        if let Some((delay, limit)) = &mut self.deadline {
            if delay.poll_unpin(cx).is_ready() {
                let limit = *limit;
                self.decide(Verdict::Rejected(Rejection::TimedOut(limit)));
            }
        }
        if let State::Exchanging(exchange) = &mut self.state {
            if let Poll::Ready(outcome) = exchange.poll_unpin(cx) {
                self.decide(outcome.unwrap_or_else(|error| {
                    Verdict::Rejected(Rejection::Stream(error.to_string()))
                }));
            }
        }
        if let Some(verdict) = self.verdict.take() {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(verdict));
        }
        if matches!(self.state, State::Open) {
            self.state = State::Opening;
            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(protocol(), ()),
            });
        }
        Poll::Pending
    }

    /// A connection that closes before its proof was decided (the remote gave up on it,
    /// say after finding our answer wrong) is still reported as rejected.
    fn poll_close(&mut self, _: &mut Context<'_>) -> Poll<Option<Verdict>> {
        if let Some(verdict) = self.verdict.take() {
            return Poll::Ready(Some(verdict));
        }
        Poll::Ready(match self.state {
            State::Open | State::Opening | State::Listening | State::Exchanging(_) => {
                self.state = State::Decided;
                Some(Verdict::Rejected(Rejection::Stream(
                    "the connection closed before the proof".into(),
                )))
            }
            State::Exempt | State::Decided => None,
        })
    }
}
