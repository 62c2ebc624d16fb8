//! One connection's bitswap streams: a single outbound stream that carries queued messages
//! in order, and up to [`MAX_INBOUND_STREAMS`] inbound streams read frame by frame.
//!
//! Go peers (boxo) answer wants on a new stream per message, from several workers at once,
//! and count a message sent once it is written: a stream refused here loses its blocks
//! for good, so the limit leaves ample room for a burst of such answers.

use std::collections::VecDeque;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use libp2p_core::upgrade::{InboundUpgrade, OutboundUpgrade, UpgradeInfo};
use libp2p_swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
};
use libp2p_swarm::{
    ConnectionHandler, ConnectionHandlerEvent, Stream, StreamProtocol, StreamUpgradeError,
    SubstreamProtocol,
};

use crate::codec::bitswap::{BitswapMessage, LEGACY_PROTOCOLS, MAX_MESSAGE_BYTES, PROTOCOL};
use crate::net::frame::{read_frame, write_frame, FrameError};

/// Inbound streams read at once on one connection; further streams are refused (and
/// counted). A frame's memory follows the bytes that arrived, so open streams cost little.
pub const MAX_INBOUND_STREAMS: usize = 64;

/// The bitswap protocol ids a handler accepts (inbound) or offers (outbound).
#[derive(Clone, Debug)]
pub struct Protocols(Vec<StreamProtocol>);

impl Protocols {
    fn inbound() -> Self {
        let mut ids = vec![StreamProtocol::new(PROTOCOL)];
        ids.extend(LEGACY_PROTOCOLS.iter().map(|p| StreamProtocol::new(p)));
        Self(ids)
    }

    /// Outbound streams carry 1.1.0+ messages only (blocks with their CID prefix).
    fn outbound() -> Self {
        Self(vec![
            StreamProtocol::new(PROTOCOL),
            StreamProtocol::new(LEGACY_PROTOCOLS[0]),
        ])
    }
}

impl UpgradeInfo for Protocols {
    type Info = StreamProtocol;
    type InfoIter = std::vec::IntoIter<StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.0.clone().into_iter()
    }
}

impl InboundUpgrade<Stream> for Protocols {
    type Output = Stream;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Stream, Self::Error>>;

    fn upgrade_inbound(self, stream: Stream, _: StreamProtocol) -> Self::Future {
        std::future::ready(Ok(stream))
    }
}

impl OutboundUpgrade<Stream> for Protocols {
    type Output = Stream;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Stream, Self::Error>>;

    fn upgrade_outbound(self, stream: Stream, _: StreamProtocol) -> Self::Future {
        std::future::ready(Ok(stream))
    }
}

/// What the behaviour asks of a connection.
#[derive(Debug)]
pub enum Command {
    /// Send this encoded message.
    Send(Vec<u8>),
}

/// What a connection tells the behaviour.
#[derive(Debug)]
pub enum Report {
    Received(BitswapMessage),
    /// An inbound frame did not decode (the stream stays), or could not be read (the
    /// stream is dropped).
    Malformed(String),
    /// The peer does not speak bitswap: queued and future messages are dropped.
    Unsupported,
    /// Messages dropped: the outbound queue was full, or the stream failed twice.
    Dropped(usize),
    /// An inbound stream was refused: [`MAX_INBOUND_STREAMS`] were open.
    RefusedStream,
}

/// Messages written on the outbound stream; on failure they come back to be sent once
/// more on a new stream.
type Sending = BoxFuture<'static, Result<Stream, Vec<Vec<u8>>>>;

enum Outbound {
    /// No stream yet, or the last one failed.
    Closed,
    Opening,
    Idle(Stream),
    /// Writing a batch; `retry` says whether the batch already failed once.
    Sending {
        sending: Sending,
        retry: bool,
    },
    /// The peer has no bitswap protocol.
    Unsupported,
}

type Inbound = BoxFuture<'static, (Stream, Result<Option<Vec<u8>>, FrameError>)>;

/// A connection's bitswap handler.
pub struct Handler {
    queue: VecDeque<Vec<u8>>,
    /// A batch whose stream failed, sent first on the next stream, and dropped if that
    /// fails too. Wants and blocks are idempotent, so a batch the peer partly read is
    /// harmless to send again.
    resend: Option<Vec<Vec<u8>>>,
    /// Bytes in `queue`.
    queued_bytes: usize,
    /// Bytes of the batch being written or waiting in `resend`: still held, so they count
    /// against `max_queued_bytes` with the queue's.
    in_flight_bytes: usize,
    max_queued_bytes: usize,
    outbound: Outbound,
    inbound: FuturesUnordered<Inbound>,
    reports: VecDeque<Report>,
}

impl Handler {
    /// A handler that holds at most `max_queued_bytes` of outbound messages, queued or
    /// being written (always at least one message, whatever its size).
    pub fn new(max_queued_bytes: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            resend: None,
            queued_bytes: 0,
            in_flight_bytes: 0,
            max_queued_bytes,
            outbound: Outbound::Closed,
            inbound: FuturesUnordered::new(),
            reports: VecDeque::new(),
        }
    }

    fn read_next(stream: Stream) -> Inbound {
        async move {
            let mut stream = stream;
            let frame = read_frame(&mut stream, MAX_MESSAGE_BYTES).await;
            (stream, frame)
        }
        .boxed()
    }

    fn has_outbound(&self) -> bool {
        self.resend.is_some() || !self.queue.is_empty()
    }

    /// Writes the batch to resend, if any, else everything queued.
    fn send_next(&mut self, stream: Stream) -> Outbound {
        let (messages, retry) = match self.resend.take() {
            Some(messages) => (messages, true),
            None => {
                self.in_flight_bytes = std::mem::take(&mut self.queued_bytes);
                (self.queue.drain(..).collect(), false)
            }
        };
        let sending = async move {
            let mut stream = stream;
            for message in &messages {
                if write_frame(&mut stream, message).await.is_err() {
                    return Err(messages);
                }
            }
            Ok(stream)
        }
        .boxed();
        Outbound::Sending { sending, retry }
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Command;
    type ToBehaviour = Report;
    type InboundProtocol = Protocols;
    type OutboundProtocol = Protocols;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Protocols, ()> {
        SubstreamProtocol::new(Protocols::inbound(), ())
    }

    fn connection_keep_alive(&self) -> bool {
        self.has_outbound()
            || matches!(self.outbound, Outbound::Opening | Outbound::Sending { .. })
            || !self.inbound.is_empty()
    }

    fn on_behaviour_event(&mut self, command: Command) {
        match command {
            Command::Send(message) => {
                let held = self.queued_bytes + self.in_flight_bytes;
                let full = held > 0 && held + message.len() > self.max_queued_bytes;
                if matches!(self.outbound, Outbound::Unsupported) || full {
                    self.reports.push_back(Report::Dropped(1));
                } else {
                    self.queued_bytes += message.len();
                    self.queue.push_back(message);
                }
            }
        }
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<'_, Protocols, Protocols, (), ()>) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: stream,
                ..
            }) => {
                if self.inbound.len() < MAX_INBOUND_STREAMS {
                    self.inbound.push(Self::read_next(stream));
                } else {
                    self.reports.push_back(Report::RefusedStream);
                }
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: stream,
                ..
            }) => {
                self.outbound = Outbound::Idle(stream);
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => {
                let dropped = self.queue.len() + self.resend.take().map_or(0, |b| b.len());
                self.queue.clear();
                self.queued_bytes = 0;
                self.in_flight_bytes = 0;
                if matches!(error, StreamUpgradeError::NegotiationFailed) {
                    self.outbound = Outbound::Unsupported;
                    self.reports.push_back(Report::Unsupported);
                } else {
                    self.outbound = Outbound::Closed;
                }
                if dropped > 0 {
                    self.reports.push_back(Report::Dropped(dropped));
                }
            }
            _ => {}
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Protocols, (), Report>> {
        loop {
            if let Some(report) = self.reports.pop_front() {
                return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(report));
            }
            match std::mem::replace(&mut self.outbound, Outbound::Closed) {
                Outbound::Closed if self.has_outbound() => {
                    self.outbound = Outbound::Opening;
                    return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                        protocol: SubstreamProtocol::new(Protocols::outbound(), ()),
                    });
                }
                Outbound::Idle(stream) if self.has_outbound() => {
                    self.outbound = self.send_next(stream);
                    continue;
                }
                Outbound::Sending { mut sending, retry } => match sending.poll_unpin(cx) {
                    Poll::Ready(Ok(stream)) => {
                        self.in_flight_bytes = 0;
                        self.outbound = Outbound::Idle(stream);
                        continue;
                    }
                    Poll::Ready(Err(messages)) => {
                        // The stream failed (the peer reset or refused it): its batch goes
                        // once more on a new stream, then is given up.
                        self.outbound = Outbound::Closed;
                        if retry {
                            self.in_flight_bytes = 0;
                            self.reports.push_back(Report::Dropped(messages.len()));
                        } else {
                            self.resend = Some(messages);
                        }
                        continue;
                    }
                    Poll::Pending => self.outbound = Outbound::Sending { sending, retry },
                },
                other => self.outbound = other,
            }
            match self.inbound.poll_next_unpin(cx) {
                Poll::Ready(Some((stream, Ok(Some(frame))))) => {
                    self.inbound.push(Self::read_next(stream));
                    match BitswapMessage::decode(&frame) {
                        Ok(message) => self.reports.push_back(Report::Received(message)),
                        Err(error) => self.reports.push_back(Report::Malformed(error.to_string())),
                    }
                    continue;
                }
                Poll::Ready(Some((_, Ok(None)))) => continue,
                Poll::Ready(Some((_, Err(error)))) => {
                    self.reports.push_back(Report::Malformed(error.to_string()));
                    continue;
                }
                Poll::Ready(None) | Poll::Pending => {}
            }
            return Poll::Pending;
        }
    }
}
