//! One connection's side of `/pinfold/psk-auth/1.0.0`: it challenges the remote on an
//! outbound stream when the connection must prove the secret, and answers the remote's
//! challenges on inbound streams.

use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use futures_timer::Delay;
use libp2p_core::upgrade::ReadyUpgrade;
use libp2p_identity::PeerId;
use libp2p_swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
};
use libp2p_swarm::{
    ConnectionHandler, ConnectionHandlerEvent, Stream, StreamProtocol, StreamUpgradeError,
    SubstreamProtocol,
};

use crate::codec::psk_auth::{answer, verify, Answer, Nonce, ANSWER_BYTES, PROTOCOL};
use crate::codec::secret::ClusterSecret;

use super::Rejection;

/// Challenges answered per connection; further inbound streams are dropped.
pub const MAX_ANSWERS: usize = 2;

/// The outcome of the challenge, reported once.
#[derive(Debug)]
pub enum Verdict {
    Proven,
    Rejected(Rejection),
}

enum Challenge {
    /// The connection need not prove anything (it is inside pnet).
    None,
    Start,
    Opening,
    Awaiting(BoxFuture<'static, std::io::Result<Answer>>),
    Decided,
}

/// The two peers of a connection and the secret they must share.
#[derive(Clone)]
pub struct Parties {
    pub secret: ClusterSecret,
    pub local: PeerId,
    pub remote: PeerId,
}

pub struct AuthHandler {
    parties: Parties,
    nonce: Nonce,
    challenge: Challenge,
    deadline: Option<(Delay, Duration)>,
    answering: FuturesUnordered<BoxFuture<'static, ()>>,
    answered: usize,
    verdict: Option<Verdict>,
}

impl AuthHandler {
    /// `deadline` is `Some` when the connection must prove the secret within that time.
    pub fn new(parties: Parties, nonce: Nonce, deadline: Option<Duration>) -> Self {
        Self {
            parties,
            nonce,
            challenge: if deadline.is_some() {
                Challenge::Start
            } else {
                Challenge::None
            },
            deadline: deadline.map(|d| (Delay::new(d), d)),
            answering: FuturesUnordered::new(),
            answered: 0,
            verdict: None,
        }
    }

    fn decide(&mut self, verdict: Verdict) {
        self.challenge = Challenge::Decided;
        self.deadline = None;
        self.verdict = Some(verdict);
    }
}

async fn ask(mut stream: Stream, nonce: Nonce) -> std::io::Result<Answer> {
    stream.write_all(&nonce).await?;
    stream.flush().await?;
    let mut reply = [0u8; ANSWER_BYTES];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}

async fn reply(mut stream: Stream, parties: Parties) {
    let mut nonce = Nonce::default();
    if stream.read_exact(&mut nonce).await.is_err() {
        return;
    }
    let proof = answer(&parties.secret, &parties.remote, &parties.local, &nonce);
    if stream.write_all(&proof).await.is_ok() {
        let _ = stream.close().await;
    }
}

impl ConnectionHandler for AuthHandler {
    type FromBehaviour = std::convert::Infallible;
    type ToBehaviour = Verdict;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, ()> {
        SubstreamProtocol::new(ReadyUpgrade::new(StreamProtocol::new(PROTOCOL)), ())
    }

    fn connection_keep_alive(&self) -> bool {
        !matches!(self.challenge, Challenge::None | Challenge::Decided)
            || !self.answering.is_empty()
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: stream,
                ..
            }) if self.answered < MAX_ANSWERS => {
                self.answered += 1;
                self.answering
                    .push(reply(stream, self.parties.clone()).boxed());
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: stream,
                ..
            }) => {
                if matches!(self.challenge, Challenge::Opening) {
                    self.challenge = Challenge::Awaiting(ask(stream, self.nonce).boxed());
                }
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => {
                if matches!(self.challenge, Challenge::Opening) {
                    self.decide(Verdict::Rejected(match error {
                        StreamUpgradeError::NegotiationFailed => Rejection::NotPinfold,
                        other => Rejection::Stream(other.to_string()),
                    }));
                }
            }
            _ => {}
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Verdict>> {
        while let Poll::Ready(Some(())) = self.answering.poll_next_unpin(cx) {}
        if let Some(verdict) = self.verdict.take() {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(verdict));
        }
        if let Some((delay, limit)) = &mut self.deadline {
            if delay.poll_unpin(cx).is_ready() {
                let limit = *limit;
                self.decide(Verdict::Rejected(Rejection::TimedOut(limit)));
                return self.poll(cx);
            }
        }
        match std::mem::replace(&mut self.challenge, Challenge::Decided) {
            Challenge::Start => {
                self.challenge = Challenge::Opening;
                Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                    protocol: SubstreamProtocol::new(
                        ReadyUpgrade::new(StreamProtocol::new(PROTOCOL)),
                        (),
                    ),
                })
            }
            Challenge::Awaiting(mut asking) => match asking.poll_unpin(cx) {
                Poll::Ready(Ok(given)) => {
                    let proven = verify(
                        &self.parties.secret,
                        &self.parties.local,
                        &self.parties.remote,
                        &self.nonce,
                        &given,
                    );
                    self.decide(if proven {
                        Verdict::Proven
                    } else {
                        Verdict::Rejected(Rejection::WrongSecret)
                    });
                    self.poll(cx)
                }
                Poll::Ready(Err(error)) => {
                    self.decide(Verdict::Rejected(Rejection::Stream(error.to_string())));
                    self.poll(cx)
                }
                Poll::Pending => {
                    self.challenge = Challenge::Awaiting(asking);
                    Poll::Pending
                }
            },
            other => {
                self.challenge = other;
                Poll::Pending
            }
        }
    }
}
