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

/// Frames captured from a running Go ipfs-cluster v1.1.6 peer (`ipfs-cluster-service` as
/// scripts/setup builds it, next to its Kubo) talking to a pinfold peer on 2026-12-04,
/// logged by the pinfold peer at `pinfold_native::peer::gorpc=trace`: the calls
/// `ipfs-cluster-ctl status` and `add` made the Go peer send, and the Go peer's answers
/// to pinfold's `Cluster.ID` and `PinTracker.Status`. Each decodes, and writing back what
/// it decodes to gives the same bytes.
mod golden {
    use super::*;

    /// The Go peer calling `PinTracker.Status`: the service id, then the CID.
    const GO_STATUS_CALL: &str = "82a44e616d65aa50696e547261636b6572a64d6574686f64a6537461747573";
    const GO_STATUS_ARGUMENT: &str =
        "da0024015512205ac03da17d7d5241b49a9a94f86b08a431d7052c8585ca997b373f0bc7da0dcc";
    /// Its answer to pinfold's `PinTracker.Status`: the header, then the `PinInfo`.
    const GO_STATUS_HEADER: &str =
        "81a75365727669636582a44e616d65aa50696e547261636b6572a64d6574686f64a6537461747573";
    const GO_PIN_INFO: &str = "8aa163da0024015512205ac03da17d7d5241b49a9a94f86b08a431d7052c8585ca997b373f0bc7da0dcca16da6676f6c64656ea170da0026002408011220afc886f7db845abd1e0fac853277cd5fb0d6a968d48681a742786011807ef7f5a16f90a16790a174a46b12d1e3a2706ea26731a169da00260024080112208c30f5a19d04d4e3b8cf690978c13874e4b813de901fc5ee7451aae6caaa218ca2737410a27473a46b12d1e3";
    /// Its answer to pinfold's `Cluster.ID`.
    const GO_ID_HEADER: &str = "81a75365727669636582a44e616d65a7436c7573746572a64d6574686f64a24944";
    const GO_ID: &str = "88a169da0026002408011220afc886f7db845abd1e0fac853277cd5fb0d6a968d48681a742786011807ef7f5a16192da0033047f000001065464dd03a50326002408011220afc886f7db845abd1e0fac853277cd5fb0d6a968d48681a742786011807ef7f5da0031047f0000010664c4a50326002408011220afc886f7db845abd1e0fac853277cd5fb0d6a968d48681a742786011807ef7f5a2637092da00260024080112204cd6e8e4bd8d624ee841e3d37be37815e5cae72d69ea7902faf4a7d392dba5aada0026002408011220afc886f7db845abd1e0fac853277cd5fb0d6a968d48681a742786011807ef7f5a363706191da0031047f0000010671ffa503260024080112204cd6e8e4bd8d624ee841e3d37be37815e5cae72d69ea7902faf4a7d392dba5aaa176a5312e312e36a27276b42f69706673636c75737465722f312e302f727063a2697082a169da00260024080112208c30f5a19d04d4e3b8cf690978c13874e4b813de901fc5ee7451aae6caaa218ca16191da0031047f000001065cd7a503260024080112208c30f5a19d04d4e3b8cf690978c13874e4b813de901fc5ee7451aae6caaa218ca2706ea26731";
    /// Its adder calling `IPFSConnector.BlockStream`, then two of the blocks it streamed.
    const GO_BLOCK_STREAM_CALL: &str =
        "82a44e616d65ad49504653436f6e6e6563746f72a64d6574686f64ab426c6f636b53747265616d";
    const GO_BLOCK_RAW: &str = "83a164a574696e790aa163da00240155122036d25d3d80f8431614deece844a6def69fb24b92310156ce7847ba1d9595db57a17305";
    const GO_BLOCK_DAG_PB: &str = "83a164a40a020801a163da00240170122059948439065f29619ef41280cbb932be52c56d99c5966b65e0111239f098bbefa17304";

    fn value(hex_text: &str) -> Value {
        let bytes = hex::decode(hex_text).unwrap();
        let (value, used) = decode(&bytes, Limits::RPC_REPLY).unwrap();
        assert_eq!(used, bytes.len());
        value
    }

    #[test]
    fn service_ids_and_headers() {
        let status = ServiceId::new("PinTracker", "Status");
        assert_eq!(
            ServiceId::from_value(&value(GO_STATUS_CALL)).unwrap(),
            status
        );
        assert_eq!(hex::encode(to_vec(&status.to_value())), GO_STATUS_CALL);
        assert_eq!(
            hex::encode(to_vec(&ResponseHeader::ok(&status).to_value())),
            GO_STATUS_HEADER
        );
        let id = ServiceId::new("Cluster", "ID");
        assert_eq!(
            hex::encode(to_vec(&ResponseHeader::ok(&id).to_value())),
            GO_ID_HEADER
        );
        let blocks = ServiceId::new("IPFSConnector", "BlockStream");
        assert_eq!(
            hex::encode(to_vec(&blocks.to_value())),
            GO_BLOCK_STREAM_CALL
        );
    }

    #[test]
    fn a_cid_argument() {
        let cid = cid_from_value(&value(GO_STATUS_ARGUMENT), "Cid").unwrap();
        assert_eq!(
            cid.to_string(),
            "bafkreic2ya62c7l5kja3jgu2st4gwcfeghlqklefqxfjs6zxh4f4pwqnzq"
        );
        assert_eq!(
            hex::encode(to_vec(&cid_value(Some(&cid)))),
            GO_STATUS_ARGUMENT
        );
    }

    #[test]
    fn a_pin_info() {
        let info = pin_info_from_value(&value(GO_PIN_INFO)).unwrap();
        assert_eq!(info.name, "golden");
        assert_eq!(info.short.peer_name, "g1");
        assert_eq!(info.short.status, TrackerStatus::Pinned);
        assert!(info.created.is_some() && info.short.timestamp.is_some());
        assert_eq!(hex::encode(to_vec(&pin_info_value(&info))), GO_PIN_INFO);
    }

    #[test]
    fn an_id() {
        let id = id_from_value(&value(GO_ID)).unwrap();
        assert_eq!(id.peername, "g1");
        assert_eq!(id.version, "1.1.6");
        assert_eq!(id.rpc_protocol_version, PROTOCOL);
        assert_eq!(id.cluster_peers.len(), 2);
        assert!(!id.ipfs.id.is_empty());
        assert_eq!(hex::encode(to_vec(&id_value(&id))), GO_ID);
    }

    #[test]
    fn streamed_blocks() {
        let raw = NodeWithMeta::from_value(&value(GO_BLOCK_RAW)).unwrap();
        assert_eq!(raw.data, b"tiny\n");
        assert_eq!(raw.cid.codec(), 0x55);
        assert_eq!(hex::encode(to_vec(&raw.to_value())), GO_BLOCK_RAW);
        let node = NodeWithMeta::from_value(&value(GO_BLOCK_DAG_PB)).unwrap();
        assert_eq!(node.cid.codec(), 0x70);
        assert_eq!(hex::encode(to_vec(&node.to_value())), GO_BLOCK_DAG_PB);
    }
}
