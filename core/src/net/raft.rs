//! Raft messages between peers ([`crate::consensus`]) as a libp2p request-response
//! behaviour on `/pinfold/raft/1.0.0`: the request is one varint-framed `eraftpb.Message`,
//! the answer an empty frame that says it arrived. Raft copes with lost and reordered
//! messages, so a failed request is only reported, never retried here.

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite};
use libp2p_request_response as request_response;
use libp2p_swarm::StreamProtocol;

use super::frame::{read_message, write_frame};

pub const PROTOCOL: &str = "/pinfold/raft/1.0.0";

/// The largest message: a snapshot carries the whole pinset (about 100 bytes a pin).
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// Time a peer has to take a message (a large snapshot included).
pub const TIMEOUT: Duration = Duration::from_secs(120);

pub type Behaviour = request_response::Behaviour<RaftCodec>;
pub type Event = request_response::Event<Vec<u8>, ()>;

pub fn behaviour() -> Behaviour {
    request_response::Behaviour::with_codec(
        RaftCodec,
        [(
            StreamProtocol::new(PROTOCOL),
            request_response::ProtocolSupport::Full,
        )],
        request_response::Config::default()
            .with_request_timeout(TIMEOUT)
            .with_max_concurrent_streams(256),
    )
}

#[derive(Clone, Copy, Debug, Default)]
pub struct RaftCodec;

impl request_response::Codec for RaftCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io, MAX_MESSAGE_BYTES).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io, 0).await.map(drop)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        message: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &message).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, (): ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &[]).await
    }
}
