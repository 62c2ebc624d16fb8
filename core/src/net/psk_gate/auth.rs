//! One connection's side of `/pinfold/psk-auth/1.0.0`. On a connection that must prove the
//! secret, the connection's dialer opens the proof stream and the listener waits for it;
//! both then run the three messages of [`crate::codec::psk_auth`] and report a verdict.
//!
//! Only the dialer opens streams because some transports lose streams the listener opens
//! before the dialer has finished setting the connection up (libp2p-webrtc does). The
//! reverse happens too, more rarely: libp2p-webrtc's listener starts accepting data
//! channels only after its side of the Noise handshake, so a browser's first stream can
//! vanish unanswered. The dialer therefore opens another proof stream when none has been
//! negotiated after a fifth of the timeout, up to [`MAX_PROOF_STREAMS`]; the listener runs
//! each proof stream it gets, and the first exchange that succeeds decides.

use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
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

/// Proof streams one connection runs at most, on either side.
pub const MAX_PROOF_STREAMS: usize = 3;

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

/// The proof of a connection that must give one, until its verdict.
struct Proof {
    role: Endpoint,
    deadline: Delay,
    timeout: Duration,
    /// The dialer's timer for opening another stream.
    retry: Delay,
    /// Proof streams opened (dialer) or accepted (listener).
    streams: usize,
    /// Streams the dialer asked for that are not negotiated yet.
    negotiating: usize,
    exchanges: FuturesUnordered<Exchange>,
    /// Why the last stream failed, reported if no other succeeds.
    failure: Option<Rejection>,
}

impl Proof {
    fn retry_interval(&self) -> Duration {
        self.timeout / 5
    }

    /// Whether no stream is running or can still come, so the last failure decides.
    fn exhausted(&self) -> bool {
        self.exchanges.is_empty()
            && match self.role {
                Endpoint::Listener => self.failure.is_some(),
                Endpoint::Dialer => self.negotiating == 0 && self.streams >= MAX_PROOF_STREAMS,
            }
    }
}

enum State {
    /// The connection need not prove anything (it is inside pnet).
    Exempt,
    Proving(Box<Proof>),
    Decided,
}

pub struct AuthHandler {
    parties: Parties,
    state: State,
    verdict: Option<Verdict>,
}

impl AuthHandler {
    /// `deadline` is `Some` when the connection must prove the secret within that time;
    /// `role` is this side's role on the connection.
    pub fn new(parties: Parties, role: Endpoint, deadline: Option<Duration>) -> Self {
        let state = match deadline {
            None => State::Exempt,
            Some(timeout) => State::Proving(Box::new(Proof {
                role,
                deadline: Delay::new(timeout),
                timeout,
                retry: Delay::new(timeout / 5),
                streams: 0,
                negotiating: 0,
                exchanges: FuturesUnordered::new(),
                failure: None,
            })),
        };
        Self {
            parties,
            state,
            verdict: None,
        }
    }

    fn decide(&mut self, verdict: Verdict) {
        self.state = State::Decided;
        self.verdict = Some(verdict);
    }

    fn proof(&mut self) -> Option<&mut Proof> {
        match &mut self.state {
            State::Proving(proof) => Some(proof),
            State::Exempt | State::Decided => None,
        }
    }

    /// Records a failed stream; decides when nothing else can still succeed.
    fn stream_failed(&mut self, reason: Rejection) {
        let Some(proof) = self.proof() else { return };
        proof.failure = Some(reason);
        if proof.exhausted() {
            let reason = proof.failure.take().expect("just set");
            self.decide(Verdict::Rejected(reason));
        }
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
        matches!(self.state, State::Proving(_))
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<'_, Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        let parties = self.parties.clone();
        match event {
            // A listener runs up to MAX_PROOF_STREAMS proof streams; any other is dropped,
            // which the remote sees as a failed stream.
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: stream,
                ..
            }) => {
                if let Some(proof) = self.proof() {
                    if proof.role == Endpoint::Listener && proof.streams < MAX_PROOF_STREAMS {
                        proof.streams += 1;
                        proof.exchanges.push(as_listener(stream, parties).boxed());
                    }
                }
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: stream,
                ..
            }) => {
                if let Some(proof) = self.proof() {
                    proof.negotiating -= 1;
                    proof.exchanges.push(as_dialer(stream, parties).boxed());
                }
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => {
                let Some(proof) = self.proof() else { return };
                proof.negotiating -= 1;
                match error {
                    StreamUpgradeError::NegotiationFailed => {
                        self.decide(Verdict::Rejected(Rejection::NotPinfold))
                    }
                    other => self.stream_failed(Rejection::Stream(other.to_string())),
                }
            }
            _ => {}
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Verdict>> {
        if let Some(proof) = self.proof() {
            if proof.deadline.poll_unpin(cx).is_ready() {
                let limit = proof.timeout;
                self.decide(Verdict::Rejected(Rejection::TimedOut(limit)));
            }
        }
        while let Some(proof) = self.proof() {
            let Poll::Ready(Some(outcome)) = proof.exchanges.poll_next_unpin(cx) else {
                break;
            };
            match outcome {
                // A wrong answer is final: the remote does not hold the secret.
                Ok(verdict) => self.decide(verdict),
                Err(error) => self.stream_failed(Rejection::Stream(error.to_string())),
            }
        }
        if let Some(verdict) = self.verdict.take() {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(verdict));
        }
        if let Some(proof) = self.proof() {
            if proof.role == Endpoint::Dialer && proof.streams < MAX_PROOF_STREAMS {
                let first = proof.streams == 0;
                let unanswered =
                    proof.exchanges.is_empty() && proof.retry.poll_unpin(cx).is_ready();
                if first || unanswered {
                    if !first {
                        let interval = proof.retry_interval();
                        proof.retry.reset(interval);
                    }
                    proof.streams += 1;
                    proof.negotiating += 1;
                    return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                        protocol: SubstreamProtocol::new(protocol(), ()),
                    });
                }
            }
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
            State::Proving(_) => {
                self.state = State::Decided;
                Some(Verdict::Rejected(Rejection::Stream(
                    "the connection closed before the proof".into(),
                )))
            }
            State::Exempt | State::Decided => None,
        })
    }
}
