//! Entry points shared by the cargo-fuzz targets (`core/fuzz`) and the regression test that
//! replays their corpus of past findings. Each decodes untrusted bytes; whatever decodes
//! must survive a re-encode/decode round trip unchanged. A panic is a finding.

use crate::codec::bitswap::BitswapMessage;
use crate::codec::dagpb::DeltaNode;
use crate::codec::delta::{decode_broadcast, encode_broadcast};
use crate::codec::metric::Metric;
use crate::codec::peer_request::{PeerRequest, PeerResponse};
use crate::codec::snapshot::{SnapshotChunk, SnapshotHeader, SnapshotIndex};
use crate::codec::state_key::{cid_from_state_key, state_key};
use crate::pin::Pin;

/// A delta block fetched from a peer.
pub fn delta_node(data: &[u8]) {
    if let Ok(node) = DeltaNode::decode(data) {
        let (_, bytes) = node.encode();
        assert_eq!(
            DeltaNode::decode(&bytes).expect("re-encoded node decodes"),
            node
        );
    }
}

/// A head broadcast received on the cluster topic.
pub fn broadcast(data: &[u8]) {
    if let Ok(heads) = decode_broadcast(data) {
        let again =
            decode_broadcast(&encode_broadcast(&heads)).expect("re-encoded broadcast decodes");
        assert_eq!(again, heads);
    }
}

/// A pin value found in a delta element.
pub fn pin_value(data: &[u8]) {
    if let Ok(pin) = Pin::from_state_value(data) {
        let again = Pin::from_state_value(&pin.to_state_value()).expect("re-encoded pin decodes");
        assert_eq!(again, pin);
        // Times past year 9999 have no JSON form (as in Go); everything else round-trips.
        if let Ok(json) = serde_json::to_string(&pin) {
            assert_eq!(
                serde_json::from_str::<Pin>(&json).expect("pin JSON parses"),
                pin
            );
        }
    }
}

/// A metric received on `monitor.metrics`.
pub fn metric(data: &[u8]) {
    if let Ok(metric) = Metric::from_msgpack(data) {
        let again = Metric::from_msgpack(&metric.to_msgpack()).expect("re-encoded metric decodes");
        assert_eq!(again, metric);
    }
}

/// An element key found in a delta.
pub fn state_key_text(data: &[u8]) {
    if let Ok(key) = std::str::from_utf8(data) {
        if let Ok(cid) = cid_from_state_key(key) {
            assert_eq!(
                cid_from_state_key(&state_key(&cid)).expect("re-encoded key parses"),
                cid
            );
        }
    }
}

/// A snapshot block fetched from a peer: a root, an index node or a chunk.
pub fn snapshot_block(data: &[u8]) {
    if let Ok(header) = SnapshotHeader::decode(data) {
        let (_, bytes) = header.encode();
        assert_eq!(
            SnapshotHeader::decode(&bytes).expect("re-encoded root decodes"),
            header
        );
    }
    if let Ok(index) = SnapshotIndex::decode(data) {
        let (_, bytes) = index.encode();
        assert_eq!(
            SnapshotIndex::decode(&bytes).expect("re-encoded index decodes"),
            index
        );
    }
    if let Ok(chunk) = SnapshotChunk::decode(data) {
        let (_, bytes) = chunk.encode();
        assert_eq!(
            SnapshotChunk::decode(&bytes).expect("re-encoded chunk decodes"),
            chunk
        );
    }
}

/// A bitswap message read from a peer's stream.
pub fn bitswap_message(data: &[u8]) {
    if let Ok(message) = BitswapMessage::decode(data) {
        let again = BitswapMessage::decode(&message.encode()).expect("re-encoded message decodes");
        assert_eq!(again, message);
    }
}

/// A fuzz entry point: takes arbitrary bytes, panics only on a bug.
pub type FuzzTarget = fn(&[u8]);

/// A status request or response from another peer (`/pinfold/status/1.0.0`).
pub fn status_message(data: &[u8]) {
    if let Ok(request) = PeerRequest::decode(data) {
        let again = PeerRequest::decode(&request.encode()).expect("re-encoded request decodes");
        assert_eq!(again, request);
    }
    if let Ok(response) = PeerResponse::decode(data) {
        // Times past year 9999 have no JSON form (as in Go); everything else round-trips.
        if let Ok(bytes) = response.encode() {
            let again = PeerResponse::decode(&bytes).expect("re-encoded response decodes");
            assert_eq!(again, response);
        }
    }
}

/// The values of a Go ipfs-cluster RPC stream: whatever decodes as one of the types the
/// RPC carries re-encodes to a value that decodes the same.
pub fn gorpc_frame(data: &[u8]) {
    use crate::codec::gorpc::api::{self, NodeWithMeta};
    use crate::codec::gorpc::{FrameReader, ResponseHeader, ServiceId};
    use crate::codec::msgpack::{to_vec, Limits};
    let mut reader = FrameReader::new(Limits::RPC_ARGUMENT);
    reader.push(data);
    let again = |value: &crate::codec::msgpack::Value| {
        crate::codec::msgpack::decode(&to_vec(value), Limits::RPC_REPLY)
            .expect("a written value reads back")
            .0
    };
    while let Ok(Some(value)) = reader.next_value() {
        if let Ok(service) = ServiceId::from_value(&value) {
            assert_eq!(
                ServiceId::from_value(&again(&service.to_value())).unwrap(),
                service
            );
        }
        if let Ok(header) = ResponseHeader::from_value(&value) {
            let back = ResponseHeader::from_value(&again(&header.to_value())).unwrap();
            assert_eq!(back, header);
        }
        if let Ok(info) = api::pin_info_from_value(&value) {
            let back = api::pin_info_from_value(&again(&api::pin_info_value(&info))).unwrap();
            assert_eq!(back, info);
        }
        if let Ok(id) = api::id_from_value(&value) {
            assert_eq!(api::id_from_value(&again(&api::id_value(&id))).unwrap(), id);
        }
        if let Ok(node) = NodeWithMeta::from_value(&value) {
            assert_eq!(
                NodeWithMeta::from_value(&again(&node.to_value())).unwrap(),
                node
            );
        }
        if let Ok(gc) = api::repo_gc_from_value(&value) {
            assert_eq!(
                api::repo_gc_from_value(&again(&api::repo_gc_value(&gc))).unwrap(),
                gc
            );
        }
    }
}

/// Every target by name, for the corpus replay test and the fuzz crate.
/// The messages of a psk-auth exchange as a peer without the secret would send them: the
/// first 32 bytes a nonce, the next 64 a listener's reply, the next 32 a dialer's answer.
/// Each verifies exactly when it is the true answer, and a reply reads back as written.
pub fn psk_auth(data: &[u8]) {
    use crate::codec::psk_auth::{answer, decode_reply, encode_reply, verify, REPLY_BYTES};
    use crate::codec::secret::ClusterSecret;
    let secret = ClusterSecret::from_bytes([0x5a; 32]);
    let (dialer, listener) = (
        libp2p_identity::PeerId::from_bytes(&[0, 2, 8, 1]).expect("an identity peer id"),
        libp2p_identity::PeerId::from_bytes(&[0, 2, 8, 2]).expect("an identity peer id"),
    );
    let mut padded = data.to_vec();
    padded.resize(128, 0);
    let nonce: [u8; 32] = padded[..32].try_into().expect("32 bytes");
    let reply: [u8; REPLY_BYTES] = padded[32..96].try_into().expect("64 bytes");
    let final_answer: [u8; 32] = padded[96..128].try_into().expect("32 bytes");
    let (given, their_nonce) = decode_reply(&reply);
    assert_eq!(encode_reply(&given, &their_nonce), reply);
    // The listener's answer to the dialer's nonce, and the dialer's to the listener's.
    assert_eq!(
        verify(&secret, &dialer, &listener, &nonce, &given),
        given == answer(&secret, &dialer, &listener, &nonce)
    );
    assert_eq!(
        verify(&secret, &listener, &dialer, &their_nonce, &final_answer),
        final_answer == answer(&secret, &listener, &dialer, &their_nonce)
    );
}

pub const TARGETS: &[(&str, FuzzTarget)] = &[
    ("delta_node", delta_node),
    ("broadcast", broadcast),
    ("pin_value", pin_value),
    ("metric", metric),
    ("state_key", state_key_text),
    ("snapshot_block", snapshot_block),
    ("bitswap_message", bitswap_message),
    ("status_message", status_message),
    ("gorpc_frame", gorpc_frame),
    ("psk_auth", psk_auth),
];
