//! libp2p's private networks (pnet, "PSK v1", as go-libp2p and rust-libp2p speak it): each
//! end first sends a random 24-byte nonce, then XSalsa20-encrypts everything it writes
//! under the network's 32-byte key and its own nonce, and decrypts what it reads under the
//! other end's nonce.
//!
//! A crate of its own so that the size-optimised wasm build can compile the cipher for
//! speed (`[profile.wasm.package.pinfold-pnet]` in the workspace manifest): the stream
//! holds its socket as a trait object, so no generic code on the byte path is instantiated
//! in the callers' crates, which are compiled for size. Writes go out whole (up to
//! [`MAX_WRITE`] bytes each), not cut into 1 KiB pieces that a WebSocket would carry as a
//! message each.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use salsa20::cipher::{KeyIvInit, StreamCipher};
use salsa20::XSalsa20;

/// The pre-shared key's length.
pub const KEY_LEN: usize = 32;
/// The length of the nonce each end sends first.
pub const NONCE_LEN: usize = 24;
/// Most bytes one write encrypts; the rest waits for the next write.
pub const MAX_WRITE: usize = 64 * 1024;

/// A byte stream pnet can run over.
pub trait Socket: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Socket for T {}

/// Sends this end's nonce and reads the other end's; the stream then encrypts and decrypts
/// under `key`. Fails when the socket fails or closes before the other end's nonce.
pub async fn handshake(mut socket: Box<dyn Socket>, key: &[u8; KEY_LEN]) -> io::Result<PnetStream> {
    let mut local = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut local).map_err(io::Error::other)?;
    socket.write_all(&local).await?;
    socket.flush().await?;
    let mut remote = [0u8; NONCE_LEN];
    socket.read_exact(&mut remote).await?;
    let key = (*key).into();
    Ok(PnetStream {
        socket,
        reader: XSalsa20::new(&key, &remote.into()),
        writer: XSalsa20::new(&key, &local.into()),
        unsent: Vec::new(),
        sent: 0,
    })
}

/// A socket inside a private network, after [`handshake`].
pub struct PnetStream {
    socket: Box<dyn Socket>,
    reader: XSalsa20,
    writer: XSalsa20,
    /// Bytes encrypted by a write that the socket has not yet taken, from `sent` on.
    unsent: Vec<u8>,
    sent: usize,
}

impl std::fmt::Debug for PnetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PnetStream")
            .field("unsent", &(self.unsent.len() - self.sent))
            .finish_non_exhaustive()
    }
}

impl PnetStream {
    /// Hands the socket the encrypted bytes it has not taken yet.
    fn poll_send_unsent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.unsent.len() {
            let n = ready!(Pin::new(&mut self.socket).poll_write(cx, &self.unsent[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.unsent.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for PnetStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.socket).poll_read(cx, buf))?;
        this.reader.apply_keystream(&mut buf[..n]);
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for PnetStream {
    /// Takes up to [`MAX_WRITE`] bytes once the earlier ones are sent; they are encrypted
    /// at once, so they are this stream's to send even if the socket is not ready now.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_send_unsent(cx))?;
        let taken = buf.len().min(MAX_WRITE);
        this.unsent.extend_from_slice(&buf[..taken]);
        this.writer.apply_keystream(&mut this.unsent);
        if let Poll::Ready(Err(error)) = this.poll_send_unsent(cx) {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_unsent(cx))?;
        Pin::new(&mut this.socket).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_unsent(cx))?;
        Pin::new(&mut this.socket).poll_close(cx)
    }
}
