//! Which protocol a libp2p stream speaks, read from the multistream-select 1.0 messages at
//! its start as they go by, for counting a stream's bytes by protocol (Go ipfs-cluster's
//! `/health/bandwidth`). Only the listener's side is read: it says `/multistream/1.0.0`,
//! then `na` for each protocol it refuses and the protocol's name for the one it takes.
//!
//! A message is a uvarint length, then that many bytes ending in `\n`.

/// The multistream-select header, which both sides send first.
const HEADER: &[u8] = b"/multistream/1.0.0\n";
/// The listener's refusal of a proposed protocol.
const REFUSED: &[u8] = b"na\n";
/// The longest message read; multistream-select's own limit is far above any protocol name.
const MAX_MESSAGE: usize = 1024;
/// Messages read before giving up (a dialer proposing protocol after protocol).
const MAX_MESSAGES: usize = 16;

/// What the bytes seen so far say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sniffed {
    /// Not known yet: feed more of the listener's bytes.
    Pending,
    /// The protocol the listener took.
    Protocol(String),
    /// Not a multistream-select negotiation (or one past the bounds): counted as unknown.
    Unknown,
}

/// Reads the listener's side of a negotiation, fed in the pieces it comes in.
#[derive(Debug, Default)]
pub struct ProtocolSniffer {
    buffered: Vec<u8>,
    messages: usize,
    outcome: Option<Sniffed>,
}

impl ProtocolSniffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes the listener sent; says what they tell once they tell it, and
    /// the same from then on. Buffers at most one message.
    pub fn feed(&mut self, bytes: &[u8]) -> Sniffed {
        if let Some(outcome) = &self.outcome {
            return outcome.clone();
        }
        self.buffered.extend_from_slice(bytes);
        loop {
            let (length, used) = match read_uvarint(&self.buffered) {
                Varint::Incomplete => return self.pending(),
                Varint::Invalid => return self.conclude(Sniffed::Unknown),
                Varint::Value(length, used) => (length, used),
            };
            let Ok(length) = usize::try_from(length) else {
                return self.conclude(Sniffed::Unknown);
            };
            if length == 0 || length > MAX_MESSAGE {
                return self.conclude(Sniffed::Unknown);
            }
            if self.buffered.len() < used + length {
                return self.pending();
            }
            let message: Vec<u8> = self.buffered.drain(..used + length).skip(used).collect();
            self.messages += 1;
            if message == HEADER || message == REFUSED {
                if self.messages >= MAX_MESSAGES {
                    return self.conclude(Sniffed::Unknown);
                }
                continue;
            }
            let protocol = message
                .strip_suffix(b"\n")
                .filter(|name| name.starts_with(b"/"))
                .and_then(|name| std::str::from_utf8(name).ok());
            return self.conclude(match protocol {
                Some(name) => Sniffed::Protocol(name.to_owned()),
                None => Sniffed::Unknown,
            });
        }
    }

    fn pending(&mut self) -> Sniffed {
        if self.buffered.len() > MAX_MESSAGE + 10 {
            return self.conclude(Sniffed::Unknown);
        }
        Sniffed::Pending
    }

    fn conclude(&mut self, outcome: Sniffed) -> Sniffed {
        self.buffered = Vec::new();
        self.outcome = Some(outcome.clone());
        outcome
    }
}

enum Varint {
    Value(u64, usize),
    Incomplete,
    Invalid,
}

/// An unsigned LEB128 varint of at most 9 bytes at the start of `bytes`.
fn read_uvarint(bytes: &[u8]) -> Varint {
    let mut value = 0u64;
    for (n, byte) in bytes.iter().enumerate().take(9) {
        value |= u64::from(byte & 0x7f) << (7 * n);
        if byte & 0x80 == 0 {
            return Varint::Value(value, n + 1);
        }
    }
    if bytes.len() >= 9 {
        Varint::Invalid
    } else {
        Varint::Incomplete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message(text: &[u8]) -> Vec<u8> {
        let mut out = vec![u8::try_from(text.len()).unwrap()];
        out.extend_from_slice(text);
        out
    }

    /// The listener's side of a negotiation in which it refused `refused` protocols before
    /// taking `taken`, followed by some of the protocol's own bytes.
    fn listener_side(refused: usize, taken: &str) -> Vec<u8> {
        let mut bytes = message(HEADER);
        for _ in 0..refused {
            bytes.extend(message(REFUSED));
        }
        bytes.extend(message(format!("{taken}\n").as_bytes()));
        bytes.extend_from_slice(b"\x00\x01payload");
        bytes
    }

    #[test]
    fn the_protocol_the_listener_takes_is_read() {
        let mut sniffer = ProtocolSniffer::new();
        assert_eq!(
            sniffer.feed(&listener_side(2, "/meshsub/1.1.0")),
            Sniffed::Protocol("/meshsub/1.1.0".into())
        );
        assert_eq!(
            sniffer.feed(b"more"),
            Sniffed::Protocol("/meshsub/1.1.0".into()),
            "and stays known"
        );
    }

    #[test]
    fn streams_that_do_not_negotiate_are_unknown() {
        assert_eq!(ProtocolSniffer::new().feed(b"\x05hello"), Sniffed::Unknown);
        assert_eq!(ProtocolSniffer::new().feed(&[0xff; 12]), Sniffed::Unknown);
        assert_eq!(
            ProtocolSniffer::new().feed(&message(b"no slash\n")),
            Sniffed::Unknown
        );
        let mut refusals = message(HEADER);
        for _ in 0..MAX_MESSAGES {
            refusals.extend(message(REFUSED));
        }
        assert_eq!(ProtocolSniffer::new().feed(&refusals), Sniffed::Unknown);
    }

    #[test]
    fn a_partial_message_is_pending() {
        let whole = listener_side(0, "/ipfs/id/1.0.0");
        assert_eq!(ProtocolSniffer::new().feed(&whole[..5]), Sniffed::Pending);
        assert_eq!(ProtocolSniffer::new().feed(&[0x80]), Sniffed::Pending);
    }

    proptest! {
        /// However the listener's bytes are cut into pieces, the same protocol comes out.
        #[test]
        fn any_split_reads_the_same_protocol(
            refused in 0usize..4,
            name in "/[a-z0-9/._-]{1,60}",
            cuts in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let bytes = listener_side(refused, &name);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
            cuts.sort_unstable();
            let mut sniffer = ProtocolSniffer::new();
            let mut last = Sniffed::Pending;
            let mut start = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                last = sniffer.feed(&bytes[start..cut.max(start)]);
                start = cut.max(start);
            }
            prop_assert_eq!(last, Sniffed::Protocol(name));
        }

        /// Arbitrary bytes never panic, and never leave more than a message buffered.
        #[test]
        fn arbitrary_bytes_are_read_within_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut sniffer = ProtocolSniffer::new();
            for chunk in bytes.chunks(97) {
                sniffer.feed(chunk);
                prop_assert!(sniffer.buffered.len() <= MAX_MESSAGE + 10 + 97);
            }
        }
    }
}
