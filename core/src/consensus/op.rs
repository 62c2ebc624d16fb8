//! What a Raft log entry carries: one write (the pins and unpins of one command, applied
//! together) and who proposed it, so that the proposer can answer its caller once the
//! entry is committed.
//!
//! Entry data: a sequence of operations, each a tag byte (`1` pin, `2` unpin, `3` add a
//! peer, `4` remove a peer), a varint length and the body (a pin's CRDT state value, as
//! the pinset stores it, a CID's bytes or a peer id's bytes). Entry context: the proposer's peer id bytes, length-prefixed, then a big-endian
//! `u64` proposal number.

use cid::Cid;
use libp2p_identity::PeerId;

use crate::codec::pin_pb::PinDecodeError;
use crate::pin::Pin;

const TAG_PIN: u8 = 1;
const TAG_UNPIN: u8 = 2;
const TAG_ADD_PEER: u8 = 3;
const TAG_REMOVE_PEER: u8 = 4;

/// One change to the pinset, or a request to change the Raft peers: any peer may propose
/// one (proposals reach the leader), and the leader that applies it proposes the
/// configuration change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RaftOp {
    Pin(Box<Pin>),
    Unpin(Cid),
    AddPeer(PeerId),
    RemovePeer(PeerId),
}

/// Who proposed an entry, and which of its proposals it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Proposal {
    pub origin: PeerId,
    pub number: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpDecodeError {
    #[error("truncated Raft entry")]
    Truncated,
    #[error("unknown Raft operation {0}")]
    UnknownTag(u8),
    #[error("Raft entry names an invalid CID: {0}")]
    BadCid(String),
    #[error("Raft entry holds an invalid pin: {0}")]
    BadPin(#[from] PinDecodeError),
    #[error("Raft entry names an invalid peer: {0}")]
    BadPeer(String),
}

/// The entry data of `ops`.
pub fn encode_ops(ops: &[RaftOp]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        let (tag, body) = match op {
            RaftOp::Pin(pin) => (TAG_PIN, pin.to_state_value()),
            RaftOp::Unpin(cid) => (TAG_UNPIN, cid.to_bytes()),
            RaftOp::AddPeer(peer) => (TAG_ADD_PEER, peer.to_bytes()),
            RaftOp::RemovePeer(peer) => (TAG_REMOVE_PEER, peer.to_bytes()),
        };
        out.push(tag);
        put_varint(&mut out, body.len() as u64);
        out.extend_from_slice(&body);
    }
    out
}

/// The operations of an entry's data.
pub fn decode_ops(mut data: &[u8]) -> Result<Vec<RaftOp>, OpDecodeError> {
    let mut ops = Vec::new();
    while let Some((&tag, rest)) = data.split_first() {
        let (len, rest) = take_varint(rest)?;
        let len = usize::try_from(len).map_err(|_| OpDecodeError::Truncated)?;
        if rest.len() < len {
            return Err(OpDecodeError::Truncated);
        }
        let (body, rest) = rest.split_at(len);
        ops.push(match tag {
            TAG_PIN => RaftOp::Pin(Box::new(Pin::from_state_value(body)?)),
            TAG_UNPIN => RaftOp::Unpin(
                Cid::try_from(body).map_err(|e| OpDecodeError::BadCid(e.to_string()))?,
            ),
            TAG_ADD_PEER => RaftOp::AddPeer(peer_of(body)?),
            TAG_REMOVE_PEER => RaftOp::RemovePeer(peer_of(body)?),
            other => return Err(OpDecodeError::UnknownTag(other)),
        });
        data = rest;
    }
    Ok(ops)
}

/// The entry context naming `proposal`.
pub fn encode_proposal(proposal: &Proposal) -> Vec<u8> {
    let peer = proposal.origin.to_bytes();
    let mut out = Vec::with_capacity(peer.len() + 10);
    put_varint(&mut out, peer.len() as u64);
    out.extend_from_slice(&peer);
    out.extend_from_slice(&proposal.number.to_be_bytes());
    out
}

/// The proposal an entry context names.
pub fn decode_proposal(context: &[u8]) -> Result<Proposal, OpDecodeError> {
    let (len, rest) = take_varint(context)?;
    let len = usize::try_from(len).map_err(|_| OpDecodeError::Truncated)?;
    if rest.len() != len + 8 {
        return Err(OpDecodeError::Truncated);
    }
    let (peer, number) = rest.split_at(len);
    let origin = peer_of(peer)?;
    let number = u64::from_be_bytes(number.try_into().map_err(|_| OpDecodeError::Truncated)?);
    Ok(Proposal { origin, number })
}

fn peer_of(bytes: &[u8]) -> Result<PeerId, OpDecodeError> {
    PeerId::from_bytes(bytes).map_err(|e| OpDecodeError::BadPeer(e.to_string()))
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(data: &[u8]) -> Result<(u64, &[u8]), OpDecodeError> {
    let mut value = 0u64;
    for (i, &byte) in data.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, &data[i + 1..]));
        }
    }
    Err(OpDecodeError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::peer;
    use multihash::Multihash;
    use proptest::prelude::*;

    fn cid(seed: u8) -> Cid {
        Cid::new_v1(0x55, Multihash::wrap(0x12, &[seed; 32]).unwrap())
    }

    proptest! {
        #[test]
        fn ops_round_trip(seeds in proptest::collection::vec((any::<u8>(), 0..4u8), 0..20)) {
            let ops: Vec<RaftOp> = seeds
                .iter()
                .map(|&(seed, kind)| match kind {
                    0 => {
                        let mut p = Pin::new(cid(seed), crate::pin::UnixTime(1_700_000_000 + u64::from(seed)));
                        p.allocations = vec![peer(seed)];
                        p.name = format!("pin {seed}");
                        RaftOp::Pin(Box::new(p))
                    }
                    1 => RaftOp::Unpin(cid(seed)),
                    2 => RaftOp::AddPeer(peer(seed)),
                    _ => RaftOp::RemovePeer(peer(seed)),
                })
                .collect();
            prop_assert_eq!(decode_ops(&encode_ops(&ops)).unwrap(), ops);
        }

        #[test]
        fn proposals_round_trip(seed in 1u8.., number in any::<u64>()) {
            let proposal = Proposal { origin: peer(seed), number };
            prop_assert_eq!(decode_proposal(&encode_proposal(&proposal)).unwrap(), proposal);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_ops(&data);
            let _ = decode_proposal(&data);
        }
    }

    #[test]
    fn truncated_entries_are_refused() {
        let data = encode_ops(&[RaftOp::Unpin(cid(1))]);
        assert_eq!(
            decode_ops(&data[..data.len() - 1]),
            Err(OpDecodeError::Truncated)
        );
        assert_eq!(decode_ops(&[9, 0]), Err(OpDecodeError::UnknownTag(9)));
    }
}
