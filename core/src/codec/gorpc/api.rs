//! Go ipfs-cluster's `api` types as its RPC carries them: msgpack maps keyed by their
//! `codec` tags, fields in Go's declaration order, `omitempty` ones left out when empty,
//! embedded structs flattened (`PinInfo` holds `PinInfoShort`'s keys). Peer ids, CIDs and
//! multiaddrs are their binary forms in raw values; an undefined CID is nil; a time is
//! msgpack's timestamp payload in a raw value (ugorji without `WriteExt`), nil when zero.
//!
//! Writers take core's types; readers give them back and refuse what does not parse,
//! naming the field.

use std::collections::BTreeMap;

use cid::Cid;
use libp2p_identity::PeerId;
use multiaddr::Multiaddr;

use super::GorpcError;
use crate::codec::msgpack::{StructWriter, Value};
use crate::pin::UnixTime;
use crate::repo_gc::{GcKey, RepoGc};
use crate::rest::{Id, IpfsId};
use crate::tracker::{PinInfo, PinInfoShort, StatusFilter, TrackerStatus};

fn field_error(field: &'static str) -> GorpcError {
    GorpcError::Field { field }
}

/// A present, non-nil field of a map.
fn present<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.get(key).filter(|v| !v.is_nil())
}

fn text(value: &Value, key: &'static str) -> Result<String, GorpcError> {
    match present(value, key) {
        None => Ok(String::new()),
        Some(v) => v.as_str().map(str::to_owned).ok_or(field_error(key)),
    }
}

fn int(value: &Value, key: &'static str) -> Result<i64, GorpcError> {
    match present(value, key) {
        None => Ok(0),
        Some(v) => v.as_i64().ok_or(field_error(key)),
    }
}

fn uint(value: &Value, key: &'static str) -> Result<u64, GorpcError> {
    match present(value, key) {
        None => Ok(0),
        Some(v) => v.as_u64().ok_or(field_error(key)),
    }
}

fn boolean(value: &Value, key: &'static str) -> Result<bool, GorpcError> {
    match present(value, key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(field_error(key)),
    }
}

fn list<'a>(value: &'a Value, key: &'static str) -> Result<&'a [Value], GorpcError> {
    match present(value, key) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(field_error(key)),
    }
}

/// A peer id: its multihash bytes.
pub fn peer_value(peer: &PeerId) -> Value {
    Value::Raw(peer.to_bytes())
}

pub fn peer_from_value(value: &Value, field: &'static str) -> Result<PeerId, GorpcError> {
    value
        .as_bytes()
        .and_then(|b| PeerId::from_bytes(b).ok())
        .ok_or(field_error(field))
}

fn optional_peer(value: &Value, key: &'static str) -> Result<Option<PeerId>, GorpcError> {
    present(value, key)
        .map(|v| peer_from_value(v, key))
        .transpose()
}

/// Peer ids, or nil when there are none (a nil Go slice).
pub fn peers_value(peers: &[PeerId]) -> Value {
    if peers.is_empty() {
        return Value::Nil;
    }
    Value::Array(peers.iter().map(peer_value).collect())
}

pub fn peers_from_value(value: &Value, field: &'static str) -> Result<Vec<PeerId>, GorpcError> {
    match value {
        Value::Nil => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(|i| peer_from_value(i, field)).collect(),
        _ => Err(field_error(field)),
    }
}

/// A CID: its binary form; nil when undefined.
pub fn cid_value(cid: Option<&Cid>) -> Value {
    cid.map_or(Value::Nil, |c| Value::Raw(c.to_bytes()))
}

pub fn cid_from_value(value: &Value, field: &'static str) -> Result<Cid, GorpcError> {
    value
        .as_bytes()
        .and_then(|b| Cid::try_from(b).ok())
        .ok_or(field_error(field))
}

fn addresses_value(addresses: &[Multiaddr]) -> Value {
    if addresses.is_empty() {
        return Value::Nil;
    }
    Value::Array(addresses.iter().map(|a| Value::Raw(a.to_vec())).collect())
}

fn addresses(value: &Value, key: &'static str) -> Result<Vec<Multiaddr>, GorpcError> {
    list(value, key)?
        .iter()
        .map(|a| {
            a.as_bytes()
                .and_then(|b| Multiaddr::try_from(b.to_vec()).ok())
                .ok_or(field_error(key))
        })
        .collect()
}

/// Multiaddrs written as text (as the REST types keep them), in binary form; the ones
/// that do not parse are left out.
fn address_texts_value(addresses: &[String]) -> Value {
    let parsed: Vec<Multiaddr> = addresses.iter().filter_map(|a| a.parse().ok()).collect();
    addresses_value(&parsed)
}

/// A peer id written as text, in binary form; nil when empty or not a peer id.
fn peer_text_value(peer: &str) -> Value {
    peer.parse::<PeerId>()
        .map_or(Value::Nil, |p| peer_value(&p))
}

fn peer_texts_value(peers: &[String]) -> Value {
    let parsed: Vec<PeerId> = peers.iter().filter_map(|p| p.parse().ok()).collect();
    peers_value(&parsed)
}

/// A Go `time.Time` at `secs` and `nanos` past it, as ugorji writes it without
/// `WriteExt`: the 4-, 8- or 12-byte timestamp payload in a raw value.
pub fn time_value(secs: i64, nanos: u32) -> Value {
    let nanos = u64::from(nanos.min(999_999_999));
    if secs >= 0 && (secs as u64) >> 34 == 0 {
        let data = (nanos << 34) | secs as u64;
        if data & 0xffff_ffff_0000_0000 != 0 {
            Value::Raw(data.to_be_bytes().to_vec())
        } else {
            Value::Raw((data as u32).to_be_bytes().to_vec())
        }
    } else {
        let mut bytes = (nanos as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&secs.to_be_bytes());
        Value::Raw(bytes)
    }
}

/// A time in Unix nanoseconds; nil for Go's zero time.
fn nanos_value(nanos: Option<i64>) -> Value {
    match nanos {
        Some(n) => time_value(
            n.div_euclid(1_000_000_000),
            n.rem_euclid(1_000_000_000) as u32,
        ),
        None => Value::Nil,
    }
}

/// A time as (seconds, nanoseconds); `None` when nil. Reads the raw form and msgpack's
/// timestamp extension (-1) alike.
pub fn time_from_value(
    value: &Value,
    field: &'static str,
) -> Result<Option<(i64, u32)>, GorpcError> {
    let payload = match value {
        Value::Nil => return Ok(None),
        Value::Raw(bytes) => bytes.as_slice(),
        Value::Ext(-1, bytes) => bytes.as_slice(),
        _ => return Err(field_error(field)),
    };
    let be = |bytes: &[u8]| bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let (secs, nanos) = match payload.len() {
        4 => (be(payload) as i64, 0),
        8 => {
            let data = be(payload);
            ((data & 0x3_ffff_ffff) as i64, (data >> 34) as u32)
        }
        12 => (be(&payload[4..]) as i64, be(&payload[..4]) as u32),
        _ => return Err(field_error(field)),
    };
    if nanos > 999_999_999 {
        return Err(field_error(field));
    }
    Ok(Some((secs, nanos)))
}

fn nanos_from(value: &Value, key: &'static str) -> Result<Option<i64>, GorpcError> {
    let Some(v) = value.get(key) else {
        return Ok(None);
    };
    Ok(time_from_value(v, key)?.map(|(secs, nanos)| {
        secs.saturating_mul(1_000_000_000)
            .saturating_add(i64::from(nanos))
    }))
}

fn metadata_value(metadata: &BTreeMap<String, String>) -> Value {
    if metadata.is_empty() {
        return Value::Nil;
    }
    Value::Map(
        metadata
            .iter()
            .map(|(k, v)| (Value::str(k), Value::str(v)))
            .collect(),
    )
}

fn metadata(value: &Value, key: &'static str) -> Result<BTreeMap<String, String>, GorpcError> {
    match present(value, key) {
        None => Ok(BTreeMap::new()),
        Some(Value::Map(entries)) => entries
            .iter()
            .map(|(k, v)| match (k.as_str(), v.as_str()) {
                (Some(k), Some(v)) => Ok((k.to_owned(), v.to_owned())),
                _ => Err(field_error(key)),
            })
            .collect(),
        Some(_) => Err(field_error(key)),
    }
}

/// Go's `TrackerStatus`: its bit, an `int`.
pub fn status_value(status: TrackerStatus) -> Value {
    Value::Int(i64::from(StatusFilter::of(&[status]).bits()))
}

pub fn status_from_value(value: &Value) -> Result<TrackerStatus, GorpcError> {
    let bits = value.as_i64().ok_or(field_error("st"))?;
    Ok(u16::try_from(bits)
        .ok()
        .and_then(|bits| StatusFilter::from_bits(bits).single())
        .unwrap_or(TrackerStatus::Undefined))
}

/// A status filter as `PinTracker.StatusAll` takes it: a bit-or, 0 for every status.
pub fn filter_from_value(value: &Value) -> Result<StatusFilter, GorpcError> {
    let bits = value.as_i64().ok_or(field_error("TrackerStatus"))?;
    Ok(StatusFilter::from_bits(u16::try_from(bits).unwrap_or(0)))
}

/// Go's `api.ID` (`i,a,cp,cpa,v,c,rv,e,ip,pn`).
pub fn id_value(id: &Id) -> Value {
    let ipfs = ipfs_id_value(&id.ipfs);
    let ipfs_empty = matches!(&ipfs, Value::Map(entries) if entries.is_empty());
    StructWriter::new()
        .omit_empty("i", peer_text_value(&id.id))
        .omit_empty("a", address_texts_value(&id.addresses))
        .omit_empty("cp", peer_texts_value(&id.cluster_peers))
        .omit_empty("cpa", address_texts_value(&id.cluster_peers_addresses))
        .omit_empty("v", Value::str(&id.version))
        .omit_empty("c", Value::str(&id.commit))
        .omit_empty("rv", Value::str(&id.rpc_protocol_version))
        .omit_empty("e", Value::str(&id.error))
        .omit_empty("ip", if ipfs_empty { Value::Nil } else { ipfs })
        .omit_empty("pn", Value::str(&id.peername))
        .build()
}

/// Go's `api.IPFSID` (`i,a,e`).
fn ipfs_id_value(ipfs: &IpfsId) -> Value {
    StructWriter::new()
        .omit_empty("i", peer_text_value(&ipfs.id))
        .omit_empty("a", address_texts_value(&ipfs.addresses))
        .omit_empty("e", Value::str(&ipfs.error))
        .build()
}

pub fn id_from_value(value: &Value) -> Result<Id, GorpcError> {
    let peer_text = |key: &'static str, from: &Value| -> Result<String, GorpcError> {
        Ok(optional_peer(from, key)?
            .map(|p| p.to_base58())
            .unwrap_or_default())
    };
    let address_texts = |key: &'static str, from: &Value| -> Result<Vec<String>, GorpcError> {
        Ok(addresses(from, key)?
            .iter()
            .map(Multiaddr::to_string)
            .collect())
    };
    let ipfs = present(value, "ip")
        .cloned()
        .unwrap_or(Value::Map(Vec::new()));
    Ok(Id {
        id: peer_text("i", value)?,
        addresses: address_texts("a", value)?,
        cluster_peers: peers_from_value(present(value, "cp").unwrap_or(&Value::Nil), "cp")?
            .iter()
            .map(|p| p.to_base58())
            .collect(),
        cluster_peers_addresses: address_texts("cpa", value)?,
        version: text(value, "v")?,
        commit: text(value, "c")?,
        rpc_protocol_version: text(value, "rv")?,
        error: text(value, "e")?,
        ipfs: IpfsId {
            id: peer_text("i", &ipfs)?,
            addresses: address_texts("a", &ipfs)?,
            error: text(&ipfs, "e")?,
        },
        peername: text(value, "pn")?,
    })
}

/// Go's `api.PinInfo` with its `PinInfoShort` flattened
/// (`c,m,p,o,g,t,md` then `pn,i,ia,st,ts,e,a,y`).
pub fn pin_info_value(info: &PinInfo) -> Value {
    let short = &info.short;
    StructWriter::new()
        .field("c", cid_value(Some(&info.cid)))
        .omit_empty("m", Value::str(&info.name))
        .omit_empty("p", peer_value(&info.peer))
        // Go's tracker copies these slices from the pin, so they come as arrays even
        // when empty.
        .field(
            "o",
            Value::Array(info.allocations.iter().map(peer_value).collect()),
        )
        .field(
            "g",
            Value::Array(
                info.origins
                    .iter()
                    .map(|a| Value::Raw(a.to_vec()))
                    .collect(),
            ),
        )
        .omit_empty(
            "t",
            nanos_value(info.created.map(|t| t.0 as i64 * 1_000_000_000)),
        )
        .omit_empty("md", metadata_value(&info.metadata))
        .omit_empty("pn", Value::str(&short.peer_name))
        .omit_empty(
            "i",
            short.ipfs_peer_id.as_ref().map_or(Value::Nil, peer_value),
        )
        .omit_empty("ia", addresses_value(&short.ipfs_peer_addresses))
        .omit_empty("st", status_value(short.status))
        .omit_empty("ts", nanos_value(short.timestamp))
        .omit_empty("e", Value::str(&short.error))
        .omit_empty("a", Value::Int(i64::from(short.attempt_count)))
        .omit_empty("y", Value::Bool(short.priority_pin))
        .build()
}

pub fn pin_info_from_value(value: &Value) -> Result<PinInfo, GorpcError> {
    let created = nanos_from(value, "t")?.and_then(|n| u64::try_from(n / 1_000_000_000).ok());
    Ok(PinInfo {
        cid: cid_from_value(value.get("c").unwrap_or(&Value::Nil), "c")?,
        name: text(value, "m")?,
        peer: optional_peer(value, "p")?.ok_or(field_error("p"))?,
        allocations: peers_from_value(present(value, "o").unwrap_or(&Value::Nil), "o")?,
        origins: addresses(value, "g")?,
        created: created.filter(|&s| s > 0).map(UnixTime),
        metadata: metadata(value, "md")?,
        short: PinInfoShort {
            peer_name: text(value, "pn")?,
            ipfs_peer_id: optional_peer(value, "i")?,
            ipfs_peer_addresses: addresses(value, "ia")?,
            status: match present(value, "st") {
                Some(st) => status_from_value(st)?,
                None => TrackerStatus::Undefined,
            },
            timestamp: nanos_from(value, "ts")?,
            error: text(value, "e")?,
            attempt_count: u32::try_from(int(value, "a")?).unwrap_or(0),
            priority_pin: boolean(value, "y")?,
        },
    })
}

/// Go's `api.RepoGC` (`p,pn,k,e`; `k` always written) with its `IPFSRepoGC` keys (`k,e`).
pub fn repo_gc_value(gc: &RepoGc) -> Value {
    let keys = gc
        .keys
        .iter()
        .map(|key| {
            StructWriter::new()
                .omit_empty("k", cid_value(key.key.as_ref()))
                .omit_empty("e", Value::str(&key.error))
                .build()
        })
        .collect();
    StructWriter::new()
        .omit_empty("p", peer_value(&gc.peer))
        .omit_empty("pn", Value::str(&gc.peername))
        .field(
            "k",
            if gc.keys.is_empty() {
                Value::Nil
            } else {
                Value::Array(keys)
            },
        )
        .omit_empty("e", Value::str(&gc.error))
        .build()
}

pub fn repo_gc_from_value(value: &Value) -> Result<RepoGc, GorpcError> {
    let keys = list(value, "k")?
        .iter()
        .map(|key| {
            Ok(GcKey {
                key: present(key, "k")
                    .map(|k| cid_from_value(k, "k"))
                    .transpose()?,
                error: text(key, "e")?,
            })
        })
        .collect::<Result<_, GorpcError>>()?;
    let peer = optional_peer(value, "p")?.ok_or(field_error("p"))?;
    Ok(RepoGc {
        error: text(value, "e")?,
        ..RepoGc::collected(peer, text(value, "pn")?, keys)
    })
}

/// Go's `api.NodeWithMeta` (`d,c,s`): a block an adder streams to the peers it allocates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeWithMeta {
    pub data: Vec<u8>,
    pub cid: Cid,
    pub cumulative_size: u64,
}

impl NodeWithMeta {
    pub fn to_value(&self) -> Value {
        StructWriter::new()
            .omit_empty("d", Value::Raw(self.data.clone()))
            .omit_empty("c", cid_value(Some(&self.cid)))
            .omit_empty("s", Value::Uint(self.cumulative_size))
            .build()
    }

    pub fn from_value(value: &Value) -> Result<Self, GorpcError> {
        Ok(Self {
            data: match present(value, "d") {
                None => Vec::new(),
                Some(d) => d.as_bytes().ok_or(field_error("d"))?.to_vec(),
            },
            cid: cid_from_value(present(value, "c").unwrap_or(&Value::Nil), "c")?,
            cumulative_size: uint(value, "s")?,
        })
    }
}

/// Go's `api.IPFSRepoStat` (`r`, and `s` always: its tag `"s, omitempty"` has a space).
pub fn repo_stat_value(repo_size: u64, storage_max: u64) -> Value {
    StructWriter::new()
        .omit_empty("r", Value::Uint(repo_size))
        .field("s", Value::Uint(storage_max))
        .build()
}

/// (repo size, storage max) of an `api.IPFSRepoStat`.
pub fn repo_stat_from_value(value: &Value) -> Result<(u64, u64), GorpcError> {
    Ok((uint(value, "r")?, uint(value, "s")?))
}

/// Go's `api.Version` (`v`).
pub fn version_value(version: &str) -> Value {
    StructWriter::new().field("v", Value::str(version)).build()
}

pub fn version_from_value(value: &Value) -> Result<String, GorpcError> {
    text(value, "v")
}

/// Go's `struct{}`: an empty map.
pub fn empty() -> Value {
    Value::Map(Vec::new())
}
