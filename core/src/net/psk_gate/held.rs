//! A connection handler held back until its connection proves the cluster secret.

use std::task::{Context, Poll};

use libp2p_swarm::handler::{ConnectionEvent, FullyNegotiatedInbound};
use libp2p_swarm::{ConnectionHandler, ConnectionHandlerEvent, SubstreamProtocol};

/// Inbound streams negotiated before the proof that are kept for the inner handler; later
/// ones are dropped.
pub const MAX_HELD_STREAMS: usize = 16;

/// What the gate tells a held handler.
#[derive(Debug)]
pub enum Command<T> {
    /// The connection proved the secret: start the inner handler.
    Release,
    /// A command of the inner behaviour for its handler.
    Inner(T),
}

type HeldStream<H> = FullyNegotiatedInbound<
    <H as ConnectionHandler>::InboundProtocol,
    <H as ConnectionHandler>::InboundOpenInfo,
>;

/// Wraps a handler that must not run before the proof: until [`Command::Release`] it is
/// never polled, so it opens no stream and sends nothing, and the streams the remote opens
/// are kept unread. Commands of its behaviour are passed on and wait in its own queues.
pub struct Held<H: ConnectionHandler> {
    inner: H,
    released: bool,
    streams: Vec<HeldStream<H>>,
}

impl<H: ConnectionHandler> Held<H> {
    pub fn new(inner: H, released: bool) -> Self {
        Self {
            inner,
            released,
            streams: Vec::new(),
        }
    }
}

impl<H: ConnectionHandler> ConnectionHandler for Held<H> {
    type FromBehaviour = Command<H::FromBehaviour>;
    type ToBehaviour = H::ToBehaviour;
    type InboundProtocol = H::InboundProtocol;
    type OutboundProtocol = H::OutboundProtocol;
    type InboundOpenInfo = H::InboundOpenInfo;
    type OutboundOpenInfo = H::OutboundOpenInfo;

    fn listen_protocol(&self) -> SubstreamProtocol<H::InboundProtocol, H::InboundOpenInfo> {
        self.inner.listen_protocol()
    }

    fn connection_keep_alive(&self) -> bool {
        // Before the release the gate's own handler decides.
        self.released && self.inner.connection_keep_alive()
    }

    fn on_behaviour_event(&mut self, command: Self::FromBehaviour) {
        match command {
            Command::Release if !self.released => {
                self.released = true;
                for stream in self.streams.drain(..) {
                    self.inner
                        .on_connection_event(ConnectionEvent::FullyNegotiatedInbound(stream));
                }
            }
            Command::Release => {}
            Command::Inner(command) => self.inner.on_behaviour_event(command),
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            '_,
            H::InboundProtocol,
            H::OutboundProtocol,
            H::InboundOpenInfo,
            H::OutboundOpenInfo,
        >,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(stream) if !self.released => {
                if self.streams.len() < MAX_HELD_STREAMS {
                    self.streams.push(stream);
                }
            }
            event => self.inner.on_connection_event(event),
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<H::OutboundProtocol, H::OutboundOpenInfo, H::ToBehaviour>>
    {
        // The connection's task polls its handler again after every command it delivers,
        // so a release needs no waker.
        if self.released {
            self.inner.poll(cx)
        } else {
            Poll::Pending
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Option<H::ToBehaviour>> {
        if self.released {
            self.inner.poll_close(cx)
        } else {
            Poll::Ready(None)
        }
    }
}
