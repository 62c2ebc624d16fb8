//! The cluster's pinset decisions as pure functions: what a request, the pin already in
//! the pinset, the live metrics and the time make of a pin. The node reads the store and
//! the monitor, calls these, and writes what they decide.

use libp2p_identity::PeerId;

use crate::allocator::{self, AllocationError, AllocationRequest, AllocatorConfig, MetricsSet};
use crate::pin::{Pin, PinType, UnixTime};

/// Whether `pin` is well formed for its type and may replace `existing`, as Go
/// ipfs-cluster's `setupPin` and `checkPinType` decide (with Go's messages): a CID keeps
/// its type, and a recursive pin does not turn direct; a data pin references nothing; a
/// shard pins to depth 1 (2 through an indirect node); a cluster DAG pins directly and references its meta pin; a meta
/// pin has no allocations and references its cluster DAG.
pub fn check_pin_type(pin: &Pin, existing: Option<&Pin>) -> Result<(), String> {
    if let Some(existing) = existing {
        if existing.pin_type != pin.pin_type {
            return Err(format!(
                "cannot repin CID with different tracking method, clear state with pin rm to proceed. New: {}. Was: {}",
                pin.pin_type.as_str(),
                existing.pin_type.as_str()
            ));
        }
        if existing.max_depth < 0 && pin.max_depth >= 0 {
            return Err(
                "cannot repin a CID which is already pinned in recursive mode (new pin is pinned as direct). Unpin it first."
                    .into(),
            );
        }
    }
    match pin.pin_type {
        PinType::Data if pin.reference.is_some() => {
            Err("data pins should not reference other pins".into())
        }
        // Go allows depth 1 only, though its adder pins a shard whose node needed a level
        // of indirection (over 5984 blocks) to depth 2: both are taken here.
        PinType::Shard if !(1..=2).contains(&pin.max_depth) => {
            Err("must pin shards go depth 1".into())
        }
        PinType::ClusterDag if pin.max_depth != 0 => Err("must pin roots directly".into()),
        PinType::ClusterDag if pin.reference.is_none() => {
            Err("clusterDAG pins should reference a Meta pin".into())
        }
        PinType::Meta if !pin.allocations.is_empty() => {
            Err("meta pin should not specify allocations".into())
        }
        PinType::Meta if pin.reference.is_none() => {
            Err("metaPins should reference a ClusterDAG".into())
        }
        PinType::Bad => Err("unrecognized pin type".into()),
        _ => Ok(()),
    }
}

/// Why `pin` cannot be unpinned by its own CID, as Go refuses it: shards and cluster DAGs
/// go with the content root's (meta) pin.
pub fn refuse_unpin(pin: &Pin) -> Option<&'static str> {
    match pin.pin_type {
        PinType::Shard => Some("cannot unpin a shard directly. Unpin content root CID instead"),
        PinType::ClusterDag => {
            Some("cannot unpin a Cluster DAG directly. Unpin content root CID instead")
        }
        PinType::Bad => Some("unrecognized pin type"),
        PinType::Data | PinType::Meta => None,
    }
}

/// The pin a `pin update` request makes of the pin `from` it updates, as ipfs-cluster's
/// pin update does: `from`'s options and allocations, with the request's CID and time,
/// and its name and expiry where it sets them.
pub fn updated_pin(request: Pin, from: Pin) -> Pin {
    Pin {
        cid: request.cid,
        timestamp: request.timestamp,
        pin_update: Some(from.cid),
        name: if request.name.is_empty() {
            from.name.clone()
        } else {
            request.name
        },
        expire_at: request.expire_at.or(from.expire_at),
        ..from
    }
}

/// Plans `pin` for the pinset: its replication factors (the request's, or the cluster's
/// defaults), and its allocations: those of `existing` (the pin already in the pinset, if
/// any; else the request's own) that still count, never a peer of `blacklist`, then new
/// peers chosen from `metrics`, user allocations first.
pub fn plan_pin(
    mut pin: Pin,
    existing: Option<&Pin>,
    blacklist: &[PeerId],
    metrics: &MetricsSet,
    is_trusted: impl Fn(&PeerId) -> bool,
    config: &AllocatorConfig,
) -> Result<Pin, AllocationError> {
    let (min, max) = allocator::replication_factors(
        pin.replication_factor_min,
        pin.replication_factor_max,
        config,
    )?;
    pin.replication_factor_min = min;
    pin.replication_factor_max = max;
    if pin.pin_type == PinType::Meta {
        // Never pinned itself (its shards are): nothing to allocate, as in Go.
        return Ok(pin);
    }
    let current: Vec<PeerId> = match existing {
        Some(existing) => existing.allocations.clone(),
        None => std::mem::take(&mut pin.allocations),
    }
    .into_iter()
    .filter(|p| !blacklist.contains(p))
    .collect();
    pin.allocations = allocator::allocate(
        &AllocationRequest {
            cid: &pin.cid,
            replication_min: min,
            replication_max: max,
            current: &current,
            priority: &pin.user_allocations,
            blacklist,
        },
        metrics,
        is_trusted,
        config,
    )?;
    Ok(pin)
}

/// Whether `pin` has expired at `now` and `local` is the one to unpin it: the peer closest
/// to its CID among itself and the other trusted live peers (`others`), so that one peer
/// does it.
pub fn expires_here(pin: &Pin, now: UnixTime, local: &PeerId, others: &[PeerId]) -> bool {
    pin.expire_at.is_some_and(|at| at <= now) && allocator::is_closest(&pin.cid, local, others)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cid::Cid;

    use super::*;
    use crate::codec::metric::Metric;
    use crate::test_support::peer;

    fn cid(n: u8) -> Cid {
        Cid::new_v1(
            0x55,
            multihash::Multihash::<64>::wrap(0x12, &[n; 32]).unwrap(),
        )
    }

    fn freespace(peers: &[(PeerId, i64)]) -> MetricsSet {
        let metrics = peers
            .iter()
            .map(|&(peer, free)| Metric {
                name: "freespace".into(),
                peer,
                value: free.to_string(),
                expire: i64::MAX,
                valid: true,
                weight: free,
                partitionable: false,
                received_at: 0,
            })
            .collect();
        BTreeMap::from([("freespace".to_owned(), metrics)])
    }

    fn config() -> AllocatorConfig {
        AllocatorConfig {
            allocate_by: vec!["freespace".into()],
            replication_factor_min: 1,
            replication_factor_max: 2,
            ..AllocatorConfig::default()
        }
    }

    #[test]
    fn an_update_takes_the_old_pins_options_and_its_own_name() {
        let mut from = Pin::new(cid(1), UnixTime(100));
        from.name = "old".into();
        from.allocations = vec![peer(1)];
        from.replication_factor_min = 1;
        from.replication_factor_max = 1;
        from.expire_at = Some(UnixTime(500));
        let mut request = Pin::new(cid(2), UnixTime(200));
        let unnamed = updated_pin(request.clone(), from.clone());
        assert_eq!((unnamed.cid, unnamed.name.as_str()), (cid(2), "old"));
        assert_eq!(unnamed.allocations, vec![peer(1)]);
        assert_eq!(unnamed.timestamp, Some(UnixTime(200)));
        assert_eq!(unnamed.pin_update, Some(cid(1)));
        assert_eq!(unnamed.expire_at, Some(UnixTime(500)));
        request.name = "new".into();
        assert_eq!(updated_pin(request, from).name, "new");
    }

    #[test]
    fn a_new_pin_goes_to_the_peers_with_most_free_space() {
        let metrics = freespace(&[(peer(1), 10), (peer(2), 30), (peer(3), 20)]);
        let pin = plan_pin(
            Pin::new(cid(1), UnixTime(0)),
            None,
            &[],
            &metrics,
            |_| true,
            &config(),
        )
        .unwrap();
        assert_eq!(
            (pin.replication_factor_min, pin.replication_factor_max),
            (1, 2)
        );
        assert_eq!(pin.allocations, vec![peer(2), peer(3)]);
    }

    #[test]
    fn a_removed_peers_pin_moves_and_keeps_its_other_allocation() {
        let metrics = freespace(&[(peer(1), 10), (peer(2), 30), (peer(3), 20)]);
        let mut existing = Pin::new(cid(1), UnixTime(0));
        existing.allocations = vec![peer(2), peer(3)];
        existing.replication_factor_min = 2;
        existing.replication_factor_max = 2;
        let moved = plan_pin(
            existing.clone(),
            Some(&existing),
            &[peer(2)],
            &metrics,
            |_| true,
            &config(),
        )
        .unwrap();
        assert_eq!(moved.allocations, vec![peer(3), peer(1)]);
    }

    #[test]
    fn too_few_peers_is_an_error_that_names_them() {
        let metrics = freespace(&[(peer(1), 10)]);
        let mut pin = Pin::new(cid(1), UnixTime(0));
        pin.replication_factor_min = 2;
        pin.replication_factor_max = 2;
        let error = plan_pin(pin, None, &[], &metrics, |_| true, &config()).unwrap_err();
        assert!(
            matches!(error, AllocationError::NotEnoughPeers { needed: 2, .. }),
            "{error}"
        );
    }

    #[test]
    fn one_peer_unpins_an_expired_pin() {
        let mut pin = Pin::new(cid(7), UnixTime(0));
        pin.expire_at = Some(UnixTime(1000));
        let peers = [peer(1), peer(2), peer(3)];
        let here = |pin: &Pin, now: u64| {
            peers
                .iter()
                .filter(|local| {
                    let others: Vec<PeerId> =
                        peers.iter().filter(|p| p != local).copied().collect();
                    expires_here(pin, UnixTime(now), local, &others)
                })
                .count()
        };
        assert_eq!(here(&pin, 999), 0, "not yet expired");
        assert_eq!(here(&pin, 1000), 1, "exactly one peer unpins it");
        pin.expire_at = None;
        assert_eq!(here(&pin, 10_000), 0, "a pin without expiry stays");
    }
}
