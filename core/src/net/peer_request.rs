//! The peer requests as a libp2p request-response behaviour (see
//! [`crate::codec::peer_request`]): ask a peer for its statuses of some CIDs, answer theirs.

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite};
use libp2p_request_response as request_response;
use libp2p_swarm::StreamProtocol;

use super::frame::{read_message, write_frame};
use crate::codec::peer_request::{
    PeerRequest, PeerResponse, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, PROTOCOL, REPO_GC_PROTOCOL,
};

/// Time a peer has to answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Time a peer has to answer over [`REPO_GC_PROTOCOL`]: as long as ipfs-cluster waits for a
/// daemon's garbage collection.
pub const REPO_GC_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Requests in flight per connection, each way.
pub const MAX_CONCURRENT_STREAMS: usize = 32;

/// The behaviour: `send_request(peer, PeerRequest)`, answer with `send_response`.
pub type Behaviour = request_response::Behaviour<PeerRequestCodec>;

/// Its events.
pub type Event = request_response::Event<PeerRequest, PeerResponse>;

/// What a driver does with an [`Event`].
pub enum Handling {
    /// A peer asks: give `request` to the node and answer over `channel`.
    Asked {
        request: PeerRequest,
        channel: request_response::ResponseChannel<PeerResponse>,
    },
    /// The answer to the request `id`, or why none came.
    Answered {
        id: request_response::OutboundRequestId,
        answer: Result<PeerResponse, String>,
    },
    /// Nothing: an answer went out, or one could not (logged here).
    Nothing,
}

/// Sorts an event for the driver, wording a request that failed as the node reports it.
pub fn handling(event: Event) -> Handling {
    use request_response::{Event as E, Message, OutboundFailure};
    match event {
        E::Message {
            message: Message::Request {
                request, channel, ..
            },
            ..
        } => Handling::Asked { request, channel },
        E::Message {
            message:
                Message::Response {
                    request_id,
                    response,
                },
            ..
        } => Handling::Answered {
            id: request_id,
            answer: Ok(response),
        },
        E::OutboundFailure {
            request_id, error, ..
        } => Handling::Answered {
            id: request_id,
            answer: Err(match error {
                OutboundFailure::UnsupportedProtocols => {
                    "the peer does not answer pinfold's peer requests (not a pinfold peer)"
                        .to_owned()
                }
                other => format!("the peer did not answer the request: {other}"),
            }),
        },
        E::InboundFailure { peer, error, .. } => {
            tracing::debug!(%peer, %error, "could not answer a peer request");
            Handling::Nothing
        }
        E::ResponseSent { .. } => Handling::Nothing,
    }
}

/// A behaviour that asks and answers, with pinfold's timeout and stream limit.
pub fn behaviour() -> Behaviour {
    with_protocol(PROTOCOL, REQUEST_TIMEOUT)
}

/// The behaviour for repository garbage collections, which may take hours (native peers).
pub fn repo_gc_behaviour() -> Behaviour {
    with_protocol(REPO_GC_PROTOCOL, REPO_GC_TIMEOUT)
}

fn with_protocol(protocol: &'static str, timeout: Duration) -> Behaviour {
    request_response::Behaviour::with_codec(
        PeerRequestCodec,
        [(
            StreamProtocol::new(protocol),
            request_response::ProtocolSupport::Full,
        )],
        request_response::Config::default()
            .with_request_timeout(timeout)
            .with_max_concurrent_streams(MAX_CONCURRENT_STREAMS),
    )
}

/// One bounded, varint-framed JSON message each way.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerRequestCodec;

fn invalid(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

impl request_response::Codec for PeerRequestCodec {
    type Protocol = StreamProtocol;
    type Request = PeerRequest;
    type Response = PeerResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<PeerRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        PeerRequest::decode(&read_message(io, MAX_REQUEST_BYTES).await?).map_err(invalid)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<PeerResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        PeerResponse::decode(&read_message(io, MAX_RESPONSE_BYTES).await?).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: PeerRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &request.encode()).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: PeerResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = response.encode().map_err(invalid)?;
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(invalid(format!(
                "status response of {} bytes is over the {MAX_RESPONSE_BYTES}-byte limit; ask for fewer CIDs",
                bytes.len()
            )));
        }
        write_frame(io, &bytes).await
    }
}
