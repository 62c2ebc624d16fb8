//! The upgrade every stream transport of the cluster swarm goes through, natively and in
//! the browser: pnet with the cluster secret (when there is one), checked by
//! [`PnetGuard`], then Noise and yamux, all within a time bound. TCP, WebSocket and relayed
//! circuits share it, as in go-libp2p, whose upgrader puts every connection of a private
//! network inside pnet, circuits included.

use std::time::Duration;

use futures::future::Either;
use futures::{AsyncRead, AsyncWrite};
use libp2p_core::muxing::StreamMuxerBox;
use libp2p_core::transport::Boxed;
use libp2p_core::upgrade::Version;
use libp2p_core::Transport;
use libp2p_identity::PeerId;

use crate::codec::secret::ClusterSecret;
use crate::net::pnet_guard::PnetGuard;

/// An authenticated, multiplexed connection.
pub type Muxed = (PeerId, StreamMuxerBox);

/// `base`'s connections inside pnet when `secret` is set, then Noise and yamux; dialing
/// and upgrading one connection fails after `timeout`.
pub fn secure<T>(
    base: T,
    secret: Option<&ClusterSecret>,
    noise: libp2p_noise::Config,
    timeout: Duration,
) -> Boxed<Muxed>
where
    T: Transport + Send + Unpin + 'static,
    T::Output: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T::Error: Send + Sync + 'static,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
{
    // One chain whatever the secret, so that Noise, yamux and multistream-select are built
    // once over a stream that is pnet or plain (a size matter in the .wasm).
    let key = secret.map(|s| *s.as_bytes());
    base.and_then(move |socket, _| async move {
        match key {
            Some(key) => pinfold_pnet::handshake(Box::new(socket), &key)
                .await
                .map(|private| Either::Left(PnetGuard::new(private))),
            None => Ok(Either::Right(socket)),
        }
    })
    .upgrade(Version::V1Lazy)
    .authenticate(noise)
    .multiplex(libp2p_yamux::Config::default())
    .timeout(timeout)
    .boxed()
}
