//! Bytes sent and received by libp2p protocol, as Go ipfs-cluster's `/health/bandwidth`
//! reports them: every stream of every connection is counted (after the transport's
//! encryption and multiplexing are taken off, as go-libp2p counts) under the protocol its
//! multistream-select negotiation names, read as the bytes go by
//! ([`pinfold_core::net::protocol_sniff`]); a stream that names none is `unknown`.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerBox, StreamMuxerEvent};
use pinfold_core::net::protocol_sniff::{ProtocolSniffer, Sniffed};
use serde::Serialize;

/// Protocols counted apart; streams of any further one are counted as `other`.
const MAX_PROTOCOLS: usize = 128;
/// Rates are averaged over about this long (the time constant of their moving average).
const RATE_WINDOW: Duration = Duration::from_secs(10);
/// Rates are sampled at most this often.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// One protocol's figures, with Go's `api.Bandwidth` field names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ProtocolBandwidth {
    pub total_in: u64,
    pub total_out: u64,
    /// Bytes per second received, averaged over about the last 10 s.
    pub rate_in: f64,
    pub rate_out: f64,
}

/// A protocol's byte counts, added to by its streams.
#[derive(Debug, Default)]
struct Counters {
    read: AtomicU64,
    written: AtomicU64,
}

/// A protocol's rates, and the counts they were last sampled at.
#[derive(Debug, Default)]
struct Rates {
    rate_in: f64,
    rate_out: f64,
    read: u64,
    written: u64,
}

/// The counts of every protocol of the swarm.
#[derive(Debug, Default)]
pub struct Bandwidth {
    protocols: Mutex<HashMap<String, Arc<Counters>>>,
    rates: Mutex<(Option<Instant>, HashMap<String, Rates>)>,
}

impl Bandwidth {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The counters of `protocol` (of `other` once [`MAX_PROTOCOLS`] are counted).
    fn counters(&self, protocol: &str) -> Arc<Counters> {
        let mut protocols = self.protocols.lock().expect("never poisoned");
        if let Some(counters) = protocols.get(protocol) {
            return counters.clone();
        }
        let name = if protocols.len() < MAX_PROTOCOLS {
            protocol
        } else {
            "other"
        };
        protocols.entry(name.to_owned()).or_default().clone()
    }

    /// Updates the rates from the counts, once [`SAMPLE_EVERY`] has passed since the last
    /// sample: an exponential moving average of the bytes per second since then.
    pub fn sample(&self, now: Instant) {
        let protocols: Vec<(String, u64, u64)> = self
            .protocols
            .lock()
            .expect("never poisoned")
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    c.read.load(Ordering::Relaxed),
                    c.written.load(Ordering::Relaxed),
                )
            })
            .collect();
        let mut rates = self.rates.lock().expect("never poisoned");
        let (sampled_at, by_protocol) = &mut *rates;
        let elapsed = match sampled_at {
            Some(at) if now.saturating_duration_since(*at) < SAMPLE_EVERY => return,
            Some(at) => now.saturating_duration_since(*at).as_secs_f64(),
            None => {
                *sampled_at = Some(now);
                for (name, read, written) in protocols {
                    by_protocol.insert(
                        name,
                        Rates {
                            read,
                            written,
                            ..Rates::default()
                        },
                    );
                }
                return;
            }
        };
        *sampled_at = Some(now);
        let weight = 1.0 - (-elapsed / RATE_WINDOW.as_secs_f64()).exp();
        for (name, read, written) in protocols {
            let rates = by_protocol.entry(name).or_default();
            let per_second = |now: u64, then: u64| now.saturating_sub(then) as f64 / elapsed;
            rates.rate_in += weight * (per_second(read, rates.read) - rates.rate_in);
            rates.rate_out += weight * (per_second(written, rates.written) - rates.rate_out);
            (rates.read, rates.written) = (read, written);
        }
    }

    /// Every protocol's totals and rates, sampled now first.
    pub fn by_protocol(&self) -> BTreeMap<String, ProtocolBandwidth> {
        self.sample(Instant::now());
        let rates = self.rates.lock().expect("never poisoned");
        self.protocols
            .lock()
            .expect("never poisoned")
            .iter()
            .map(|(name, counters)| {
                let rate = rates.1.get(name);
                (
                    name.clone(),
                    ProtocolBandwidth {
                        total_in: counters.read.load(Ordering::Relaxed),
                        total_out: counters.written.load(Ordering::Relaxed),
                        rate_in: rate.map_or(0.0, |r| r.rate_in),
                        rate_out: rate.map_or(0.0, |r| r.rate_out),
                    },
                )
            })
            .collect()
    }

    /// A connection's muxer whose streams are counted here.
    pub fn count(self: &Arc<Self>, muxer: StreamMuxerBox) -> StreamMuxerBox {
        StreamMuxerBox::new(CountingMuxer {
            inner: muxer,
            bandwidth: self.clone(),
        })
    }
}

/// A muxer whose streams count their bytes.
struct CountingMuxer {
    inner: StreamMuxerBox,
    bandwidth: Arc<Bandwidth>,
}

impl StreamMuxer for CountingMuxer {
    type Substream = CountedStream<<StreamMuxerBox as StreamMuxer>::Substream>;
    type Error = <StreamMuxerBox as StreamMuxer>::Error;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        Pin::new(&mut this.inner)
            .poll_inbound(cx)
            .map_ok(|stream| CountedStream::new(stream, Side::Listener, this.bandwidth.clone()))
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        Pin::new(&mut this.inner)
            .poll_outbound(cx)
            .map_ok(|stream| CountedStream::new(stream, Side::Dialer, this.bandwidth.clone()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll(cx)
    }
}

/// Which end of a stream's negotiation this peer is: the listener's messages name the
/// protocol, so a dialer reads them and a listener writes them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Dialer,
    Listener,
}

/// A stream that counts its bytes under its protocol, once it knows it (the bytes before
/// are counted then).
struct CountedStream<S> {
    inner: S,
    side: Side,
    bandwidth: Arc<Bandwidth>,
    sniffer: ProtocolSniffer,
    counters: Option<Arc<Counters>>,
    /// Bytes (read, written) before the protocol was known.
    early: (u64, u64),
}

impl<S> CountedStream<S> {
    fn new(inner: S, side: Side, bandwidth: Arc<Bandwidth>) -> Self {
        Self {
            inner,
            side,
            bandwidth,
            sniffer: ProtocolSniffer::new(),
            counters: None,
            early: (0, 0),
        }
    }

    /// Counts `bytes`, read (`read`) or written.
    fn account(&mut self, bytes: &[u8], read: bool) {
        let n = bytes.len() as u64;
        if let Some(counters) = &self.counters {
            let counter = if read {
                &counters.read
            } else {
                &counters.written
            };
            counter.fetch_add(n, Ordering::Relaxed);
            return;
        }
        if read {
            self.early.0 += n;
        } else {
            self.early.1 += n;
        }
        let listener_bytes = read == (self.side == Side::Dialer);
        if !listener_bytes {
            return;
        }
        let protocol = match self.sniffer.feed(bytes) {
            Sniffed::Pending => return,
            Sniffed::Protocol(name) => name,
            Sniffed::Unknown => "unknown".to_owned(),
        };
        let counters = self.bandwidth.counters(&protocol);
        counters.read.fetch_add(self.early.0, Ordering::Relaxed);
        counters.written.fetch_add(self.early.1, Ordering::Relaxed);
        self.counters = Some(counters);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CountedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = read {
            this.account(&buf[..n], true);
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.account(&buf[..n], false);
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{AsyncReadExt, AsyncWriteExt};

    /// A stream that reads `incoming` and keeps what is written.
    struct Duplex {
        incoming: futures::io::Cursor<Vec<u8>>,
        outgoing: Vec<u8>,
    }

    impl Duplex {
        fn new(incoming: Vec<u8>) -> Self {
            Self {
                incoming: futures::io::Cursor::new(incoming),
                outgoing: Vec::new(),
            }
        }
    }

    impl AsyncRead for Duplex {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().incoming).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Duplex {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().outgoing.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn message(text: &str) -> Vec<u8> {
        let mut out = vec![u8::try_from(text.len()).unwrap()];
        out.extend_from_slice(text.as_bytes());
        out
    }

    #[test]
    fn a_dialer_counts_under_the_protocol_the_listener_names() {
        let bandwidth = Bandwidth::new();
        let mut answer = message("/multistream/1.0.0\n");
        answer.extend(message("/ipfs/id/1.0.0\n"));
        answer.extend_from_slice(&[7; 100]);
        let mut stream =
            CountedStream::new(Duplex::new(answer.clone()), Side::Dialer, bandwidth.clone());
        futures::executor::block_on(async {
            stream.write_all(b"proposal").await.unwrap();
            let mut read = Vec::new();
            stream.read_to_end(&mut read).await.unwrap();
        });
        let id = bandwidth.by_protocol()["/ipfs/id/1.0.0"];
        assert_eq!(id.total_in, answer.len() as u64);
        assert_eq!(id.total_out, 8, "written before the protocol was known");
    }

    #[test]
    fn a_listener_names_the_protocol_in_what_it_writes() {
        let bandwidth = Bandwidth::new();
        let mut stream =
            CountedStream::new(Duplex::new(Vec::new()), Side::Listener, bandwidth.clone());
        futures::executor::block_on(async {
            stream
                .write_all(&message("/multistream/1.0.0\n"))
                .await
                .unwrap();
            stream
                .write_all(&message("/meshsub/1.1.0\n"))
                .await
                .unwrap();
            stream.write_all(&[1; 50]).await.unwrap();
        });
        assert_eq!(
            bandwidth.by_protocol()["/meshsub/1.1.0"].total_out,
            20 + 16 + 50
        );
        let mut stray =
            CountedStream::new(Duplex::new(vec![0xff; 20]), Side::Dialer, bandwidth.clone());
        futures::executor::block_on(async {
            let mut read = Vec::new();
            stray.read_to_end(&mut read).await.unwrap();
        });
        assert_eq!(bandwidth.by_protocol()["unknown"].total_in, 20);
    }

    #[test]
    fn rates_follow_the_bytes_per_second() {
        let bandwidth = Bandwidth::new();
        let counters = bandwidth.counters("/p");
        let start = Instant::now();
        bandwidth.sample(start);
        for second in 1..=60 {
            counters.read.fetch_add(1000, Ordering::Relaxed);
            bandwidth.sample(start + Duration::from_secs(second));
        }
        let rates = bandwidth.rates.lock().unwrap();
        let rate = rates.1["/p"].rate_in;
        assert!((990.0..=1000.0).contains(&rate), "{rate}");
        assert_eq!(rates.1["/p"].rate_out, 0.0);
    }
}
