//! A fast, clear failure for a wrong cluster secret on pnet links.
//!
//! Inside a private network both ends start with multistream-select's header
//! ([`MULTISTREAM_HEADER`]). With different secrets the other end's bytes decrypt to noise,
//! and without a check both ends would wait for a frame that never parses until the
//! upgrade times out. [`PnetGuard`] wraps the decrypted stream and fails the first read
//! that does not start with the header, with [`WrongSecret`] as the I/O error's source.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};

/// What every libp2p connection sends first: multistream-select 1.0.0's header.
pub const MULTISTREAM_HEADER: &[u8] = b"\x13/multistream/1.0.0\n";

/// The peer's first bytes were not libp2p's, or it hung up before sending them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the peer's first bytes inside the private network are not libp2p's: wrong cluster secret?"
)]
pub struct WrongSecret;

impl WrongSecret {
    /// Whether `error` or any of its sources is a [`WrongSecret`], or says it is one.
    pub fn is_cause_of(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut cause = Some(error);
        while let Some(error) = cause {
            // Some layers keep only the message of the error they wrap.
            if error.is::<WrongSecret>() || error.to_string().contains(&WrongSecret.to_string()) {
                return true;
            }
            // An I/O error's `source` skips the error it wraps: look at that one itself.
            cause = match error
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
            {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => error.source(),
            };
        }
        false
    }
}

/// A pnet-decrypted stream that checks the other end's first bytes.
#[derive(Debug)]
pub struct PnetGuard<S> {
    inner: S,
    /// Bytes of [`MULTISTREAM_HEADER`] checked so far.
    checked: usize,
}

impl<S> PnetGuard<S> {
    pub fn new(inner: S) -> Self {
        Self { inner, checked: 0 }
    }

    fn wrong_secret() -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, WrongSecret)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PnetGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let read = futures::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if this.checked < MULTISTREAM_HEADER.len() {
            if read == 0 {
                return Poll::Ready(Err(Self::wrong_secret()));
            }
            let expected = &MULTISTREAM_HEADER[this.checked..];
            let n = read.min(expected.len());
            if buf[..n] != expected[..n] {
                return Poll::Ready(Err(Self::wrong_secret()));
            }
            this.checked += n;
        }
        Poll::Ready(Ok(read))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PnetGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::{AsyncReadExt, Cursor};
    use proptest::prelude::*;

    fn read_all(bytes: Vec<u8>, chunk: usize) -> io::Result<Vec<u8>> {
        futures::executor::block_on(async {
            let mut guard = PnetGuard::new(Cursor::new(bytes));
            let mut out = Vec::new();
            let mut buf = vec![0; chunk];
            loop {
                match guard.read(&mut buf).await? {
                    0 => return Ok(out),
                    n => out.extend_from_slice(&buf[..n]),
                }
            }
        })
    }

    proptest! {
        #[test]
        fn libp2p_traffic_passes_whole(rest in proptest::collection::vec(any::<u8>(), 0..200), chunk in 1usize..64) {
            let mut bytes = MULTISTREAM_HEADER.to_vec();
            bytes.extend_from_slice(&rest);
            prop_assert_eq!(read_all(bytes.clone(), chunk).unwrap(), bytes);
        }

        #[test]
        fn anything_else_is_a_wrong_secret(bytes in proptest::collection::vec(any::<u8>(), 1..100), chunk in 1usize..64) {
            prop_assume!(!bytes.starts_with(MULTISTREAM_HEADER) && !MULTISTREAM_HEADER.starts_with(&bytes));
            let error = read_all(bytes, chunk).unwrap_err();
            prop_assert!(WrongSecret::is_cause_of(&error));
        }
    }

    #[test]
    fn a_hang_up_before_the_header_is_a_wrong_secret() {
        for len in 0..MULTISTREAM_HEADER.len() {
            let error = read_all(MULTISTREAM_HEADER[..len].to_vec(), 7).unwrap_err();
            assert!(WrongSecret::is_cause_of(&error), "after {len} bytes");
        }
    }
}
