//! A dial-only libp2p transport over the JavaScript `WebSocket` of the global scope.
//!
//! It needs no `window`: it runs in pages, Web Workers, Node >= 22 and Deno, wherever
//! `globalThis.WebSocket` exists. The dial resolves once the socket is open, or fails with
//! the socket's URL. Reads end (EOF) when the socket closes; a remote that sends more than
//! [`MAX_READ_BUFFER`] bytes the reader has not taken is cut off; writes wait while the
//! browser's send buffer holds more than [`MAX_WRITE_BUFFER`] bytes.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite, FutureExt};
use futures_timer::Delay;
use libp2p::core::multiaddr::{Multiaddr, Protocol};
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use send_wrapper::SendWrapper;
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, MessageEvent, WebSocket};

/// Bytes received and not yet read, past which the connection is closed.
pub const MAX_READ_BUFFER: usize = 4 * 1024 * 1024;
/// Bytes queued in the socket past which writes wait.
pub const MAX_WRITE_BUFFER: usize = 1024 * 1024;
/// How often a write waiting on a full send buffer looks again (sockets have no event
/// for a draining buffer).
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// Why a WebSocket dial or connection failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("there is no WebSocket in this JavaScript runtime (Node needs version 22 or later)")]
    Unsupported,
    #[error("could not open a WebSocket to {url}: {reason}")]
    Open { url: String, reason: String },
}

/// The transport: dials `/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>/(ws|wss|tls/ws)`.
#[derive(Default)]
pub struct Transport;

impl libp2p::core::Transport for Transport {
    type Output = Connection;
    type Error = Error;
    type ListenerUpgrade = futures::future::Pending<Result<Connection, Error>>;
    type Dial = Pin<Box<dyn Future<Output = Result<Connection, Error>> + Send>>;

    fn listen_on(&mut self, _: ListenerId, addr: Multiaddr) -> Result<(), TransportError<Error>> {
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, _: ListenerId) -> bool {
        false
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Error>> {
        if opts.role.is_listener() {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        let Some(url) = websocket_url(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        Ok(SendWrapper::new(Connection::open(url)).boxed())
    }

    fn poll(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Error>> {
        Poll::Pending
    }
}

/// The `ws://` or `wss://` URL of a WebSocket multiaddr (a trailing `/p2p/...` is allowed).
pub fn websocket_url(addr: &Multiaddr) -> Option<String> {
    let mut protocols = addr.iter();
    let host = match protocols.next()? {
        Protocol::Ip4(ip) => ip.to_string(),
        Protocol::Ip6(ip) => format!("[{ip}]"),
        Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name) => name.to_string(),
        _ => return None,
    };
    let Protocol::Tcp(port) = protocols.next()? else {
        return None;
    };
    let (scheme, path) = match protocols.next()? {
        Protocol::Ws(path) => ("ws", path),
        Protocol::Wss(path) => ("wss", path),
        Protocol::Tls => match protocols.next()? {
            Protocol::Ws(path) => ("wss", path),
            _ => return None,
        },
        _ => return None,
    };
    match protocols.next() {
        None | Some(Protocol::P2p(_)) if protocols.next().is_none() => {}
        _ => return None,
    }
    Some(format!("{scheme}://{host}:{port}{path}"))
}

/// Bytes received and not yet read: a vector read from its front, moved down as messages
/// come (by the few bytes a reader left), so that each byte is copied once in and once out.
#[derive(Default)]
struct ReadBuffer {
    bytes: Vec<u8>,
    read: usize,
}

impl ReadBuffer {
    fn len(&self) -> usize {
        self.bytes.len() - self.read
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a message, copied straight from JavaScript's memory.
    fn push(&mut self, message: &js_sys::Uint8Array) {
        self.bytes.drain(..std::mem::take(&mut self.read));
        let start = self.bytes.len();
        self.bytes.resize(start + message.length() as usize, 0);
        message.copy_to(&mut self.bytes[start..]);
    }

    /// Moves the oldest bytes into `buf`; returns how many.
    fn read_into(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.len());
        buf[..n].copy_from_slice(&self.bytes[self.read..self.read + n]);
        self.read += n;
        if self.read == self.bytes.len() {
            self.bytes.clear();
            self.read = 0;
        }
        n
    }
}

/// What the socket's event handlers and the connection share.
#[derive(Default)]
struct Shared {
    received: ReadBuffer,
    open: bool,
    /// Closed by the remote, an error or the read limit; reads drain `received`, then end.
    closed: Option<String>,
    reader: Option<Waker>,
    opener: Option<Waker>,
}

impl Shared {
    fn wake(&mut self) {
        for waker in [self.reader.take(), self.opener.take()]
            .into_iter()
            .flatten()
        {
            waker.wake();
        }
    }
}

type Handler<T> = Closure<dyn FnMut(T)>;

/// One WebSocket as a byte stream (`Send` only to satisfy libp2p's bounds: it lives on
/// the JavaScript thread that made it, as everything in a wasm follower does).
pub struct Connection {
    inner: SendWrapper<Inner>,
}

struct Inner {
    socket: WebSocket,
    shared: Rc<RefCell<Shared>>,
    drain: Option<Delay>,
    _handlers: (
        Handler<web_sys::Event>,
        Handler<MessageEvent>,
        Handler<web_sys::Event>,
        Handler<web_sys::CloseEvent>,
    ),
}

impl Connection {
    async fn open(url: String) -> Result<Connection, Error> {
        if js_sys::Reflect::get(&js_sys::global(), &"WebSocket".into())
            .map_or(true, |value| value.is_undefined())
        {
            return Err(Error::Unsupported);
        }
        let socket = WebSocket::new(&url).map_err(|e| Error::Open {
            url: url.clone(),
            reason: js_message(&e),
        })?;
        socket.set_binary_type(BinaryType::Arraybuffer);
        let shared = Rc::new(RefCell::new(Shared::default()));
        let on_open = Closure::new({
            let shared = shared.clone();
            move |_: web_sys::Event| {
                let mut shared = shared.borrow_mut();
                shared.open = true;
                shared.wake();
            }
        });
        let on_message = Closure::new({
            let shared = shared.clone();
            let socket = socket.clone();
            move |event: MessageEvent| {
                let data = js_sys::Uint8Array::new(&event.data());
                let mut shared = shared.borrow_mut();
                if shared.received.len() + data.length() as usize > MAX_READ_BUFFER {
                    shared.closed = Some(format!(
                        "the peer sent more than {MAX_READ_BUFFER} bytes that were not read"
                    ));
                    let _ = socket.close();
                } else {
                    shared.received.push(&data);
                }
                shared.wake();
            }
        });
        let on_error = Closure::new({
            let shared = shared.clone();
            move |_: web_sys::Event| {
                let mut shared = shared.borrow_mut();
                shared
                    .closed
                    .get_or_insert_with(|| "WebSocket error".into());
                shared.wake();
            }
        });
        let on_close = Closure::new({
            let shared = shared.clone();
            move |event: web_sys::CloseEvent| {
                let mut shared = shared.borrow_mut();
                shared
                    .closed
                    .get_or_insert_with(|| format!("closed with code {}", event.code()));
                shared.wake();
            }
        });
        socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        socket.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        let connection = Connection {
            inner: SendWrapper::new(Inner {
                socket,
                shared: shared.clone(),
                drain: None,
                _handlers: (on_open, on_message, on_error, on_close),
            }),
        };
        futures::future::poll_fn(|cx| {
            let mut shared = shared.borrow_mut();
            if shared.open {
                Poll::Ready(Ok(()))
            } else if let Some(reason) = &shared.closed {
                Poll::Ready(Err(Error::Open {
                    url: url.clone(),
                    reason: reason.clone(),
                }))
            } else {
                shared.opener = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await?;
        Ok(connection)
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut shared = self.inner.shared.borrow_mut();
        if !shared.received.is_empty() {
            return Poll::Ready(Ok(shared.received.read_into(buf)));
        }
        if shared.closed.is_some() {
            return Poll::Ready(Ok(0));
        }
        shared.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let inner = &mut *self.inner;
        if let Some(reason) = &inner.shared.borrow().closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                reason.clone(),
            )));
        }
        let queued = inner.socket.buffered_amount() as usize;
        if queued >= MAX_WRITE_BUFFER {
            let drain = inner.drain.get_or_insert_with(|| Delay::new(DRAIN_POLL));
            if drain.poll_unpin(cx).is_ready() {
                inner.drain = None;
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        }
        let n = buf.len().min(MAX_WRITE_BUFFER - queued);
        inner
            .socket
            .send_with_u8_array(&buf[..n])
            .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, js_message(&e)))?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The socket sends what it was given on its own; waiting for its buffer to drain
        // would only delay the caller.
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = self.inner.socket.close();
        Poll::Ready(Ok(()))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onerror(None);
        self.socket.set_onclose(None);
        let _ = self.socket.close();
    }
}

/// The message of a thrown JavaScript value.
pub fn js_message(value: &JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use super::*;
    use wasm_bindgen_test::*;

    #[cfg(feature = "browser-tests")]
    wasm_bindgen_test_configure!(run_in_browser);

    #[wasm_bindgen_test]
    fn the_read_buffer_gives_bytes_back_in_order_across_messages_and_short_reads() {
        let mut buffer = ReadBuffer::default();
        buffer.push(&js_sys::Uint8Array::from(&[1u8, 2, 3, 4, 5][..]));
        let mut two = [0u8; 2];
        assert_eq!(buffer.read_into(&mut two), 2);
        assert_eq!(two, [1, 2]);
        buffer.push(&js_sys::Uint8Array::from(&[6u8, 7][..]));
        assert_eq!(buffer.len(), 5);
        let mut rest = [0u8; 8];
        assert_eq!(buffer.read_into(&mut rest), 5);
        assert_eq!(rest[..5], [3, 4, 5, 6, 7]);
        assert!(buffer.is_empty());
        assert_eq!(buffer.read_into(&mut rest), 0);
        buffer.push(&js_sys::Uint8Array::from(&[8u8][..]));
        assert_eq!(buffer.read_into(&mut rest), 1);
        assert_eq!(rest[0], 8);
    }
}
