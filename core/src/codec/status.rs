//! `/pinfold/status/1.0.0`: one peer's statuses of the CIDs another peer names, so that a
//! peer can answer for the whole cluster (ipfs-cluster asks every peer's pin tracker over
//! its RPC; pinfold peers, and browsers, ask over this protocol).
//!
//! One request and one response per stream, each a varint-length-prefixed JSON document:
//! the request `{"cids": ["<cid>", ...]}` (at most [`MAX_CIDS`]), the response
//! `{"statuses": [<PinInfo>, ...]}` with one of ipfs-cluster's `PinInfo` JSON objects per
//! CID asked, or `{"error": "<why>"}`.

use cid::Cid;
use serde::{Deserialize, Serialize};

use crate::tracker::PinInfo;

/// The protocol id.
pub const PROTOCOL: &str = "/pinfold/status/1.0.0";

/// CIDs one request may name.
pub const MAX_CIDS: usize = 1000;

/// Largest request frame: [`MAX_CIDS`] CIDs of up to 100 characters, with room for JSON.
pub const MAX_REQUEST_BYTES: usize = 128 * 1024;

/// Largest response frame.
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// The CIDs whose statuses are asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusRequest {
    pub cids: Vec<Cid>,
}

/// The answer: the peer's view of each CID asked, or why it has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusResponse {
    Statuses(Vec<PinInfo>),
    Error(String),
}

/// Why a status message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusCodecError {
    #[error("status message is not valid JSON of its shape: {0}")]
    Json(String),
    #[error("status request names {0} CIDs; at most {MAX_CIDS} are allowed")]
    TooManyCids(usize),
    #[error("status request names {text:?}, which is not a CID: {reason}")]
    BadCid { text: String, reason: String },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestJson {
    cids: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    statuses: Option<Vec<PinInfo>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl StatusRequest {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&RequestJson {
            cids: self.cids.iter().map(Cid::to_string).collect(),
        })
        .expect("strings serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StatusCodecError> {
        let json: RequestJson =
            serde_json::from_slice(bytes).map_err(|e| StatusCodecError::Json(e.to_string()))?;
        if json.cids.len() > MAX_CIDS {
            return Err(StatusCodecError::TooManyCids(json.cids.len()));
        }
        let cids = json
            .cids
            .into_iter()
            .map(|text| {
                text.parse()
                    .map_err(|e: cid::Error| StatusCodecError::BadCid {
                        reason: e.to_string(),
                        text,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { cids })
    }
}

impl StatusResponse {
    /// Fails only for a pin whose time cannot be written (past year 9999), as the REST
    /// API's JSON does.
    pub fn encode(&self) -> Result<Vec<u8>, StatusCodecError> {
        let json = match self {
            StatusResponse::Statuses(infos) => ResponseJson {
                statuses: Some(infos.clone()),
                error: None,
            },
            StatusResponse::Error(error) => ResponseJson {
                statuses: None,
                error: Some(error.clone()),
            },
        };
        serde_json::to_vec(&json).map_err(|e| StatusCodecError::Json(e.to_string()))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StatusCodecError> {
        let json: ResponseJson =
            serde_json::from_slice(bytes).map_err(|e| StatusCodecError::Json(e.to_string()))?;
        match (json.statuses, json.error) {
            (Some(infos), None) => Ok(StatusResponse::Statuses(infos)),
            (None, Some(error)) => Ok(StatusResponse::Error(error)),
            _ => Err(StatusCodecError::Json(
                "a status response holds either statuses or an error".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::dagpb::dag_pb_cid;
    use crate::tracker::{PinInfoShort, TrackerStatus};
    use proptest::prelude::*;

    fn peer(seed: u8) -> libp2p_identity::PeerId {
        let key = libp2p_identity::ed25519::SecretKey::try_from_bytes([seed; 32]).unwrap();
        libp2p_identity::PublicKey::from(libp2p_identity::ed25519::Keypair::from(key).public())
            .to_peer_id()
    }

    fn info(cid: Cid, status: TrackerStatus, error: String, attempts: u32) -> PinInfo {
        PinInfo {
            cid,
            name: "a name".into(),
            peer: peer(1),
            allocations: vec![peer(2)],
            origins: Vec::new(),
            created: Some(crate::pin::UnixTime(1_700_000_000)),
            metadata: [("k".to_owned(), "v".to_owned())].into(),
            short: PinInfoShort {
                peer_name: "p1".into(),
                ipfs_peer_id: Some(peer(3)),
                ipfs_peer_addresses: Vec::new(),
                status,
                timestamp: Some(1_700_000_000_123_456_789),
                error,
                attempt_count: attempts,
                priority_pin: attempts.is_multiple_of(2),
            },
        }
    }

    proptest! {
        #[test]
        fn requests_round_trip(seeds in proptest::collection::vec(any::<[u8; 8]>(), 0..MAX_CIDS)) {
            let request = StatusRequest { cids: seeds.iter().map(|s| dag_pb_cid(s)).collect() };
            let bytes = request.encode();
            prop_assert!(bytes.len() <= MAX_REQUEST_BYTES);
            prop_assert_eq!(StatusRequest::decode(&bytes).unwrap(), request);
        }

        #[test]
        fn responses_round_trip(
            entries in proptest::collection::vec(
                (any::<[u8; 8]>(), 0..TrackerStatus::ALL.len(), ".{0,40}", 0u32..20), 0..50),
            error in ".{0,80}",
        ) {
            let infos: Vec<PinInfo> = entries
                .into_iter()
                .map(|(seed, status, error, attempts)| {
                    info(dag_pb_cid(&seed), TrackerStatus::ALL[status], error, attempts)
                })
                .collect();
            for response in [StatusResponse::Statuses(infos), StatusResponse::Error(error)] {
                let bytes = response.encode().unwrap();
                prop_assert_eq!(StatusResponse::decode(&bytes).unwrap(), response);
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = StatusRequest::decode(&bytes);
            let _ = StatusResponse::decode(&bytes);
        }
    }

    /// The request's bytes are fixed: peers of different versions must agree.
    #[test]
    fn golden_request() {
        let cid: Cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
            .parse()
            .unwrap();
        let bytes = StatusRequest { cids: vec![cid] }.encode();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"cids":["bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"]}"#
        );
    }

    /// The fuzz seeds are real messages, so that fuzzing starts from the shapes peers send.
    #[test]
    fn fuzz_seeds_decode() {
        let seeds = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/regressions/status_message/"
        );
        let read = |name: &str| std::fs::read(format!("{seeds}{name}")).unwrap();
        assert_eq!(
            StatusRequest::decode(&read("seed-request"))
                .unwrap()
                .cids
                .len(),
            1
        );
        match StatusResponse::decode(&read("seed-response")).unwrap() {
            StatusResponse::Statuses(infos) => {
                assert_eq!(infos[0].short.status, TrackerStatus::Pinned)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            StatusResponse::decode(&read("seed-error")).unwrap(),
            StatusResponse::Error("the daemon is down".into())
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let too_many = format!(
            r#"{{"cids":[{}]}}"#,
            vec![r#""bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi""#; MAX_CIDS + 1]
                .join(",")
        );
        assert_eq!(
            StatusRequest::decode(too_many.as_bytes()),
            Err(StatusCodecError::TooManyCids(MAX_CIDS + 1))
        );
        assert!(matches!(
            StatusRequest::decode(br#"{"cids":["nope"]}"#),
            Err(StatusCodecError::BadCid { .. })
        ));
        assert!(matches!(
            StatusResponse::decode(br#"{"statuses":[],"error":"x"}"#),
            Err(StatusCodecError::Json(_))
        ));
    }
}
