//! Bitswap messages, as boxo's `message.proto` defines them for `/ipfs/bitswap/1.2.0` (and
//! the 1.1.0 and 1.0.0 forms a peer may still send): wantlists, blocks and block presences.
//!
//! Go ipfs-cluster peers fetch and serve CRDT delta blocks this way. Decoding follows boxo's
//! `newMessageFromProto`: every CID must parse, 1.0.0 blocks are CIDv0, and a 1.1.0+ block's
//! CID is computed from its prefix and data (so a block always matches its CID). Unknown
//! want types read as block wants and unknown presence types are dropped, as Go reads them.

use cid::{Cid, Version};
use prost::encoding::{decode_varint, encode_varint};
use prost::Message as _;

use super::dagpb::{sha2_256_multihash, DAG_PB, SHA2_256};
use super::MAX_BLOCK_BYTES;

/// The protocol this codec speaks first.
pub const PROTOCOL: &str = "/ipfs/bitswap/1.2.0";
/// Older protocol ids whose messages decode the same way.
pub const LEGACY_PROTOCOLS: [&str; 3] = [
    "/ipfs/bitswap/1.1.0",
    "/ipfs/bitswap/1.0.0",
    "/ipfs/bitswap",
];
/// Largest message accepted: go-libp2p's `network.MessageSizeMax`, the length-prefixed
/// frame limit boxo reads with.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(bytes = "vec", tag = "1")]
        pub block: Vec<u8>,
        #[prost(int32, tag = "2")]
        pub priority: i32,
        #[prost(bool, tag = "3")]
        pub cancel: bool,
        #[prost(int32, tag = "4")]
        pub want_type: i32,
        #[prost(bool, tag = "5")]
        pub send_dont_have: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Wantlist {
        #[prost(message, repeated, tag = "1")]
        pub entries: Vec<Entry>,
        #[prost(bool, tag = "2")]
        pub full: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Block {
        #[prost(bytes = "vec", tag = "1")]
        pub prefix: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub data: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BlockPresence {
        #[prost(bytes = "vec", tag = "1")]
        pub cid: Vec<u8>,
        #[prost(int32, tag = "2")]
        pub r#type: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Message {
        #[prost(message, optional, tag = "1")]
        pub wantlist: Option<Wantlist>,
        #[prost(bytes = "vec", repeated, tag = "2")]
        pub blocks: Vec<Vec<u8>>,
        #[prost(message, repeated, tag = "3")]
        pub payload: Vec<Block>,
        #[prost(message, repeated, tag = "4")]
        pub block_presences: Vec<BlockPresence>,
        #[prost(int32, tag = "5")]
        pub pending_bytes: i32,
    }
}

/// What a want asks for: the block, or only whether the peer has it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WantType {
    #[default]
    Block,
    Have,
}

/// One wantlist entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantEntry {
    pub cid: Cid,
    /// Higher first.
    pub priority: i32,
    /// Withdraws an earlier want of this CID.
    pub cancel: bool,
    pub want_type: WantType,
    /// Asks for an explicit "don't have" rather than silence.
    pub send_dont_have: bool,
}

/// The wants a message carries; `full` replaces the sender's whole wantlist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wantlist {
    pub entries: Vec<WantEntry>,
    pub full: bool,
}

/// An answer to a have-want.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Have,
    DontHave,
}

/// A bitswap message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BitswapMessage {
    pub wantlist: Option<Wantlist>,
    /// Blocks with the CID their data hashes to.
    pub blocks: Vec<(Cid, Vec<u8>)>,
    pub presences: Vec<(Cid, Presence)>,
    /// Bytes the sender still has queued for the receiver.
    pub pending_bytes: i32,
}

/// Why bytes are not a bitswap message this codec accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitswapError {
    #[error("bitswap message of {len} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge { len: usize },
    #[error("malformed bitswap message: {0}")]
    Malformed(String),
    #[error("bitswap {what} has no CID")]
    CidMissing { what: &'static str },
    #[error("bitswap {what} has an invalid CID: {detail}")]
    InvalidCid { what: &'static str, detail: String },
    #[error("bitswap block prefix is invalid: {0}")]
    InvalidPrefix(String),
    #[error("bitswap block hashed with multihash 0x{code:x} of {len} bytes; only sha2-256 blocks are accepted")]
    UnsupportedHash { code: u64, len: u64 },
    #[error("bitswap block of {len} bytes is over the {MAX_BLOCK_BYTES}-byte block limit")]
    BlockTooLarge { len: usize },
}

impl BitswapMessage {
    /// The protobuf body (without the length prefix of the stream framing). Blocks go in
    /// the 1.1.0+ `payload` form, with their CID's prefix.
    pub fn encode(&self) -> Vec<u8> {
        pb::Message {
            wantlist: self.wantlist.as_ref().map(|w| pb::Wantlist {
                entries: w
                    .entries
                    .iter()
                    .map(|e| pb::Entry {
                        block: e.cid.to_bytes(),
                        priority: e.priority,
                        cancel: e.cancel,
                        want_type: match e.want_type {
                            WantType::Block => 0,
                            WantType::Have => 1,
                        },
                        send_dont_have: e.send_dont_have,
                    })
                    .collect(),
                full: w.full,
            }),
            blocks: Vec::new(),
            payload: self
                .blocks
                .iter()
                .map(|(cid, data)| pb::Block {
                    prefix: prefix_of(cid),
                    data: data.clone(),
                })
                .collect(),
            block_presences: self
                .presences
                .iter()
                .map(|(cid, presence)| pb::BlockPresence {
                    cid: cid.to_bytes(),
                    r#type: match presence {
                        Presence::Have => 0,
                        Presence::DontHave => 1,
                    },
                })
                .collect(),
            pending_bytes: self.pending_bytes,
        }
        .encode_to_vec()
    }

    /// Reads a protobuf body.
    pub fn decode(body: &[u8]) -> Result<Self, BitswapError> {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(BitswapError::TooLarge { len: body.len() });
        }
        let message =
            pb::Message::decode(body).map_err(|e| BitswapError::Malformed(e.to_string()))?;
        let wantlist = message
            .wantlist
            .map(|w| {
                let entries = w
                    .entries
                    .into_iter()
                    .map(|e| {
                        Ok(WantEntry {
                            cid: cid_from_bytes("want", &e.block)?,
                            priority: e.priority,
                            cancel: e.cancel,
                            want_type: if e.want_type == 1 {
                                WantType::Have
                            } else {
                                WantType::Block
                            },
                            send_dont_have: e.send_dont_have,
                        })
                    })
                    .collect::<Result<_, BitswapError>>()?;
                Ok::<_, BitswapError>(Wantlist {
                    entries,
                    full: w.full,
                })
            })
            .transpose()?;
        let mut blocks = Vec::with_capacity(message.blocks.len() + message.payload.len());
        for data in message.blocks {
            let cid = block_cid(Version::V0, DAG_PB, SHA2_256, 32, &data)?;
            blocks.push((cid, data));
        }
        for block in message.payload {
            let (version, codec, code, len) = parse_prefix(&block.prefix)?;
            let cid = block_cid(version, codec, code, len, &block.data)?;
            blocks.push((cid, block.data));
        }
        let presences = message
            .block_presences
            .into_iter()
            .filter_map(|p| {
                let presence = match p.r#type {
                    0 => Presence::Have,
                    1 => Presence::DontHave,
                    _ => return None,
                };
                Some(cid_from_bytes("block presence", &p.cid).map(|cid| (cid, presence)))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            wantlist,
            blocks,
            presences,
            pending_bytes: message.pending_bytes,
        })
    }
}

fn cid_from_bytes(what: &'static str, bytes: &[u8]) -> Result<Cid, BitswapError> {
    if bytes.is_empty() {
        return Err(BitswapError::CidMissing { what });
    }
    Cid::try_from(bytes).map_err(|e| BitswapError::InvalidCid {
        what,
        detail: e.to_string(),
    })
}

/// A CID's prefix: version, codec, multihash code and digest length, as varints.
fn prefix_of(cid: &Cid) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    for n in [
        u64::from(cid.version()),
        cid.codec(),
        cid.hash().code(),
        u64::from(cid.hash().size()),
    ] {
        encode_varint(n, &mut out);
    }
    out
}

fn parse_prefix(prefix: &[u8]) -> Result<(Version, u64, u64, u64), BitswapError> {
    let invalid = |e: &dyn std::fmt::Display| BitswapError::InvalidPrefix(e.to_string());
    let mut rest = prefix;
    let mut next = || decode_varint(&mut rest).map_err(|e| invalid(&e));
    let version = Version::try_from(next()?).map_err(|e| invalid(&e))?;
    let (codec, code, len) = (next()?, next()?, next()?);
    Ok((version, codec, code, len))
}

/// The CID of `data` under a prefix; only sha2-256 (the hash of every CRDT block) is
/// computed.
fn block_cid(
    version: Version,
    codec: u64,
    code: u64,
    len: u64,
    data: &[u8],
) -> Result<Cid, BitswapError> {
    if data.len() > MAX_BLOCK_BYTES {
        return Err(BitswapError::BlockTooLarge { len: data.len() });
    }
    if code != SHA2_256 || len != 32 {
        return Err(BitswapError::UnsupportedHash { code, len });
    }
    Cid::new(version, codec, sha2_256_multihash(data))
        .map_err(|e| BitswapError::InvalidPrefix(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::dagpb::dag_pb_cid;
    use proptest::prelude::*;

    fn arb_entry() -> impl Strategy<Value = WantEntry> {
        (
            any::<[u8; 4]>(),
            any::<i32>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(seed, priority, cancel, have, send_dont_have)| WantEntry {
                cid: dag_pb_cid(&seed),
                priority,
                cancel,
                want_type: if have {
                    WantType::Have
                } else {
                    WantType::Block
                },
                send_dont_have,
            })
    }

    fn arb_message() -> impl Strategy<Value = BitswapMessage> {
        (
            proptest::option::of(
                (proptest::collection::vec(arb_entry(), 0..5), any::<bool>())
                    .prop_map(|(entries, full)| Wantlist { entries, full }),
            ),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4),
            proptest::collection::vec((any::<[u8; 4]>(), any::<bool>()), 0..4),
            any::<i32>(),
            any::<bool>(),
        )
            .prop_map(
                |(wantlist, blocks, presences, pending_bytes, v0)| BitswapMessage {
                    wantlist,
                    blocks: blocks
                        .into_iter()
                        .map(|data| {
                            let cid = dag_pb_cid(&data);
                            let cid = if v0 {
                                Cid::new_v0(*cid.hash()).unwrap()
                            } else {
                                cid
                            };
                            (cid, data)
                        })
                        .collect(),
                    presences: presences
                        .into_iter()
                        .map(|(seed, have)| {
                            let p = if have {
                                Presence::Have
                            } else {
                                Presence::DontHave
                            };
                            (dag_pb_cid(&seed), p)
                        })
                        .collect(),
                    pending_bytes,
                },
            )
    }

    proptest! {
        #[test]
        fn messages_round_trip(message in arb_message()) {
            prop_assert_eq!(BitswapMessage::decode(&message.encode()), Ok(message));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = BitswapMessage::decode(&bytes);
        }
    }

    /// A message as boxo writes it, encoded by hand from `message.proto`: a want-have for
    /// one CID with send-dont-have, and one block in the 1.1.0 payload form.
    #[test]
    fn reads_the_protobuf_boxo_writes() {
        let cid = dag_pb_cid(b"delta");
        let cid_bytes = cid.to_bytes();
        let mut entry = vec![0x0a, cid_bytes.len() as u8];
        entry.extend_from_slice(&cid_bytes);
        entry.extend_from_slice(&[0x10, 0x05, 0x20, 0x01, 0x28, 0x01]); // priority 5, have, sdh
        let mut wantlist = vec![0x0a, entry.len() as u8];
        wantlist.extend_from_slice(&entry);
        let data = b"hello";
        let mut block = vec![0x0a, 0x04, 0x01, 0x70, 0x12, 0x20, 0x12, data.len() as u8];
        block.extend_from_slice(data);
        let mut body = vec![0x0a, wantlist.len() as u8];
        body.extend_from_slice(&wantlist);
        body.extend_from_slice(&[0x1a, block.len() as u8]);
        body.extend_from_slice(&block);

        let message = BitswapMessage::decode(&body).unwrap();
        assert_eq!(
            message.wantlist,
            Some(Wantlist {
                entries: vec![WantEntry {
                    cid,
                    priority: 5,
                    cancel: false,
                    want_type: WantType::Have,
                    send_dont_have: true,
                }],
                full: false,
            })
        );
        assert_eq!(message.blocks, vec![(dag_pb_cid(data), data.to_vec())]);
        assert_eq!(message.encode(), body, "and writes it back byte for byte");
    }

    /// The fuzzer's seed decodes to what it was written as.
    #[test]
    fn fuzz_seed_decodes() {
        let seed = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/regressions/bitswap_message/seed-want-block-presence"),
        )
        .unwrap();
        let message = BitswapMessage::decode(&seed).unwrap();
        assert_eq!(message.wantlist.unwrap().entries.len(), 1);
        assert_eq!(message.blocks.len(), 1);
        assert_eq!(
            message.presences,
            vec![(dag_pb_cid(b"delta"), Presence::DontHave)]
        );
        assert_eq!(message.pending_bytes, 7);
    }

    #[test]
    fn legacy_blocks_are_cid_v0() {
        let body = pb::Message {
            blocks: vec![b"old".to_vec()],
            ..Default::default()
        }
        .encode_to_vec();
        let message = BitswapMessage::decode(&body).unwrap();
        let expected = Cid::new_v0(*dag_pb_cid(b"old").hash()).unwrap();
        assert_eq!(message.blocks, vec![(expected, b"old".to_vec())]);
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let empty_want = pb::Message {
            wantlist: Some(pb::Wantlist {
                entries: vec![pb::Entry::default()],
                full: true,
            }),
            ..Default::default()
        };
        assert_eq!(
            BitswapMessage::decode(&empty_want.encode_to_vec()),
            Err(BitswapError::CidMissing { what: "want" })
        );
        let blake3 = pb::Message {
            payload: vec![pb::Block {
                prefix: vec![0x01, 0x55, 0x1e, 0x20],
                data: b"x".to_vec(),
            }],
            ..Default::default()
        };
        assert_eq!(
            BitswapMessage::decode(&blake3.encode_to_vec()),
            Err(BitswapError::UnsupportedHash {
                code: 0x1e,
                len: 32
            })
        );
        let truncated_prefix = pb::Message {
            payload: vec![pb::Block {
                prefix: vec![0x01, 0x70],
                data: b"x".to_vec(),
            }],
            ..Default::default()
        };
        assert!(matches!(
            BitswapMessage::decode(&truncated_prefix.encode_to_vec()),
            Err(BitswapError::InvalidPrefix(_))
        ));
        let huge = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert_eq!(
            BitswapMessage::decode(&huge),
            Err(BitswapError::TooLarge {
                len: MAX_MESSAGE_BYTES + 1
            })
        );
        let unknown_presence = pb::Message {
            block_presences: vec![pb::BlockPresence {
                cid: dag_pb_cid(b"p").to_bytes(),
                r#type: 7,
            }],
            ..Default::default()
        };
        assert_eq!(
            BitswapMessage::decode(&unknown_presence.encode_to_vec())
                .unwrap()
                .presences,
            vec![]
        );
    }
}
