use proptest::prelude::*;

use super::api::*;
use super::*;
use crate::codec::msgpack::{decode, to_vec};
use crate::pin::UnixTime;
use crate::rest::{Id, IpfsId};
use crate::test_support::peer;
use crate::tracker::{PinInfo, PinInfoShort, StatusFilter, TrackerStatus};

fn cid(n: u8) -> cid::Cid {
    let digest = multihash::Multihash::<64>::wrap(0x12, &[n; 32]).unwrap();
    cid::Cid::new_v1(0x55, digest)
}

/// A request's first value, byte for byte as ugorji writes `ServiceID{"Cluster","ID"}`:
/// a fixmap of two fixstr keys and values, fields in declaration order.
#[test]
fn service_id_bytes() {
    let bytes = to_vec(&ServiceId::new("Cluster", "ID").to_value());
    let mut expected = vec![0x82, 0xa4];
    expected.extend_from_slice(b"Name");
    expected.push(0xa7);
    expected.extend_from_slice(b"Cluster");
    expected.push(0xa6);
    expected.extend_from_slice(b"Method");
    expected.push(0xa2);
    expected.extend_from_slice(b"ID");
    assert_eq!(bytes, expected);
}

#[test]
fn headers_leave_out_what_is_empty() {
    let service = ServiceId::new("PinTracker", "Status");
    let ok = ResponseHeader::ok(&service).to_value();
    assert!(ok.get("Error").is_none() && ok.get("ErrType").is_none());
    assert_eq!(
        ResponseHeader::from_value(&ok).unwrap(),
        ResponseHeader::ok(&service)
    );
    let denied = ResponseHeader::denied(&service);
    assert_eq!(
        denied.error,
        "client does not have permissions to call PinTracker.Status"
    );
    assert_eq!(denied.to_value().get("ErrType"), Some(&Value::Int(3)));
    assert_eq!(
        ResponseHeader::unknown(&ServiceId::new("Cluster", "Nope")).error,
        "rpc: can't find method Nope"
    );
    assert_eq!(
        ResponseHeader::unknown(&ServiceId::new("Pinfold", "X")).error,
        "rpc: can't find service Pinfold.X"
    );
}

#[test]
fn go_policy_and_streaming_methods() {
    let access_of = |s: &str, m: &str| access(&ServiceId::new(s, m));
    assert_eq!(access_of("Cluster", "IDStream"), Access::Open);
    assert_eq!(access_of("Cluster", "Version"), Access::Open);
    assert_eq!(access_of("PinTracker", "StatusAll"), Access::Trusted);
    assert_eq!(access_of("IPFSConnector", "BlockStream"), Access::Trusted);
    assert_eq!(access_of("PeerMonitor", "LatestMetrics"), Access::Closed);
    assert_eq!(access_of("Cluster", "Pin"), Access::Closed);
    assert_eq!(access_of("Nobody", "Nothing"), Access::Closed);
    assert!(is_streaming(&ServiceId::new("Cluster", "IDStream")));
    assert!(is_streaming(&ServiceId::new(
        "IPFSConnector",
        "BlockStream"
    )));
    assert!(!is_streaming(&ServiceId::new("PinTracker", "Status")));
}

/// Values arrive in pieces of any size; each comes out once whole.
#[test]
fn frames_come_out_whole_from_any_split() {
    let service = ServiceId::new("Cluster", "ID");
    let mut bytes = request_frame(&service, Some(&empty()));
    bytes.extend(ResponseHeader::ok(&service).frame(&version_value("1.1.6")));
    for piece in 1..bytes.len() {
        let mut reader = FrameReader::new(Limits::RPC_ARGUMENT);
        let mut values = Vec::new();
        for chunk in bytes.chunks(piece) {
            reader.push(chunk);
            while let Some(value) = reader.next_value().unwrap() {
                values.push(value);
            }
        }
        assert_eq!(values.len(), 4, "pieces of {piece}");
        assert_eq!(ServiceId::from_value(&values[0]).unwrap(), service);
        assert_eq!(version_from_value(&values[3]).unwrap(), "1.1.6");
        assert!(!reader.has_partial());
    }
}

#[test]
fn an_oversized_frame_is_refused_before_it_is_buffered_whole() {
    let mut reader = FrameReader::new(Limits::RPC_ARGUMENT);
    let mut header = vec![0xdb];
    header.extend_from_slice(&u32::MAX.to_be_bytes());
    reader.push(&header);
    assert!(matches!(
        reader.next_value(),
        Err(GorpcError::Msgpack(MsgpackError::TooLarge { .. }))
    ));
}

/// ugorji's three timestamp forms: 4 bytes for whole seconds below 2^32, 8 with
/// nanoseconds below 2^34 seconds, 12 otherwise.
#[test]
fn times_take_ugorjis_forms() {
    assert_eq!(
        time_value(1_700_000_000, 0),
        Value::Raw(1_700_000_000u32.to_be_bytes().to_vec())
    );
    let with_nanos = time_value(1_700_000_000, 5);
    assert_eq!(with_nanos.as_bytes().unwrap().len(), 8);
    assert_eq!(time_value(-1, 0).as_bytes().unwrap().len(), 12);
    for (secs, nanos) in [
        (1_700_000_000, 0),
        (1_700_000_000, 5),
        (-1, 7),
        (1 << 40, 1),
    ] {
        assert_eq!(
            time_from_value(&time_value(secs, nanos), "t").unwrap(),
            Some((secs, nanos))
        );
    }
    let ext = Value::Ext(-1, 1_700_000_000u32.to_be_bytes().to_vec());
    assert_eq!(
        time_from_value(&ext, "t").unwrap(),
        Some((1_700_000_000, 0))
    );
    assert_eq!(time_from_value(&Value::Nil, "t").unwrap(), None);
    assert!(time_from_value(&Value::Raw(vec![1, 2, 3]), "t").is_err());
}

#[test]
fn statuses_are_gos_bits() {
    assert_eq!(status_value(TrackerStatus::Pinned), Value::Int(16));
    assert_eq!(status_value(TrackerStatus::Remote), Value::Int(256));
    assert_eq!(
        status_value(TrackerStatus::UnexpectedlyUnpinned),
        Value::Int(4096)
    );
    for status in TrackerStatus::ALL {
        assert_eq!(status_from_value(&status_value(status)).unwrap(), status);
    }
    assert_eq!(
        filter_from_value(&Value::Int(0)).unwrap(),
        StatusFilter::ALL
    );
    assert_eq!(
        filter_from_value(&Value::Int(0b1110)).unwrap(),
        StatusFilter::ERROR
    );
}

#[test]
fn bad_fields_are_named() {
    let bad_peer = Value::Map(vec![
        (Value::str("c"), cid_value(Some(&cid(1)))),
        (Value::str("p"), Value::Raw(Vec::new())),
    ]);
    assert_eq!(
        pin_info_from_value(&bad_peer),
        Err(GorpcError::Field { field: "p" })
    );
    let no_cid = Value::Map(vec![(Value::str("p"), peer_value(&peer(1)))]);
    assert_eq!(
        pin_info_from_value(&no_cid),
        Err(GorpcError::Field { field: "c" })
    );
}

fn pin_infos() -> impl Strategy<Value = PinInfo> {
    let text = "[a-zé ]{0,10}";
    (
        (
            any::<u8>(),
            text,
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..3),
            proptest::option::of(1u64..4_000_000_000),
            proptest::collection::btree_map("[a-z]{1,5}", text, 0..3),
        ),
        (
            text,
            proptest::option::of(any::<u8>()),
            proptest::sample::select(TrackerStatus::ALL.to_vec()),
            proptest::option::of(0i64..4_000_000_000_000_000_000),
            text,
            0u32..100,
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (c, name, p, allocations, created, metadata),
                (peer_name, ipfs, status, timestamp, error, attempt_count, priority_pin),
            )| PinInfo {
                cid: cid(c),
                name,
                peer: peer(p),
                allocations: allocations.into_iter().map(peer).collect(),
                origins: vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()],
                created: created.map(UnixTime),
                metadata,
                short: PinInfoShort {
                    peer_name,
                    ipfs_peer_id: ipfs.map(peer),
                    ipfs_peer_addresses: Vec::new(),
                    status,
                    timestamp,
                    error,
                    attempt_count,
                    priority_pin,
                },
            },
        )
}

fn ids() -> impl Strategy<Value = Id> {
    (
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..3),
        "[a-z0-9.]{0,8}",
        proptest::option::of(any::<u8>()),
        "[a-z ]{0,12}",
    )
        .prop_map(|(p, cluster_peers, version, ipfs, peername)| Id {
            id: peer(p).to_base58(),
            addresses: vec![format!("/ip4/127.0.0.1/tcp/9096/p2p/{}", peer(p))],
            cluster_peers: cluster_peers
                .into_iter()
                .map(|n| peer(n).to_base58())
                .collect(),
            cluster_peers_addresses: Vec::new(),
            version,
            commit: String::new(),
            rpc_protocol_version: PROTOCOL.to_owned(),
            error: String::new(),
            ipfs: IpfsId {
                id: ipfs.map(|n| peer(n).to_base58()).unwrap_or_default(),
                addresses: Vec::new(),
                error: if ipfs.is_some() {
                    String::new()
                } else {
                    "the daemon is down".to_owned()
                },
            },
            peername,
        })
}

proptest! {
    #[test]
    fn pin_infos_round_trip(info in pin_infos()) {
        let bytes = to_vec(&pin_info_value(&info));
        let (value, _) = decode(&bytes, Limits::RPC_REPLY).unwrap();
        prop_assert_eq!(pin_info_from_value(&value), Ok(info));
    }

    #[test]
    fn ids_round_trip(id in ids()) {
        let bytes = to_vec(&id_value(&id));
        let (value, _) = decode(&bytes, Limits::RPC_REPLY).unwrap();
        prop_assert_eq!(id_from_value(&value), Ok(id));
    }

    #[test]
    fn blocks_round_trip(data in proptest::collection::vec(any::<u8>(), 1..2000), size in any::<u64>()) {
        let node = NodeWithMeta { data, cid: cid(3), cumulative_size: size };
        let (value, _) = decode(&to_vec(&node.to_value()), Limits::RPC_REPLY).unwrap();
        prop_assert_eq!(NodeWithMeta::from_value(&value), Ok(node));
    }

    /// No bytes make the frame reader panic or hold more than its limit.
    #[test]
    fn any_bytes_are_read_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut reader = FrameReader::new(Limits::RPC_ARGUMENT);
        reader.push(&bytes);
        while let Ok(Some(value)) = reader.next_value() {
            let _ = ServiceId::from_value(&value);
            let _ = ResponseHeader::from_value(&value);
            let _ = pin_info_from_value(&value);
            let _ = id_from_value(&value);
        }
    }
}

#[test]
fn metadata_and_repo_gc_round_trip() {
    let gc = crate::repo_gc::RepoGc {
        peer: peer(4),
        peername: "four".to_owned(),
        keys: vec![
            crate::repo_gc::GcKey {
                key: Some(cid(5)),
                error: String::new(),
            },
            crate::repo_gc::GcKey {
                key: None,
                error: "could not remove".to_owned(),
            },
        ],
        error: String::new(),
        keys_not_listed: 0,
    };
    let (value, _) = decode(&to_vec(&repo_gc_value(&gc)), Limits::RPC_REPLY).unwrap();
    assert_eq!(repo_gc_from_value(&value).unwrap(), gc);
    let empty_gc = crate::repo_gc::RepoGc {
        keys: Vec::new(),
        ..gc
    };
    // Go always writes `k`, nil for no keys.
    assert_eq!(repo_gc_value(&empty_gc).get("k"), Some(&Value::Nil));
}
