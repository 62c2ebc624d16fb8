//! Where a pin goes: ipfs-cluster v1.1.6's allocation (`allocate.go`) and balanced allocator
//! (`allocator/balanced`), deterministic.
//!
//! Peers are partitioned by the first `allocate_by` metric (a partitionable metric such as a
//! tag groups equal values; any other metric makes one partition per peer), each partition
//! again by the next metric, and so on. Partitions are ordered by weight, then the weight of
//! their sub-partitions, then value; peers are then picked round-robin across the top-level
//! partitions, so that with `tag:group, freespace` pins spread over groups and, within a
//! group, go to the peer with the most free space first. Where Go leaves an order to map
//! iteration, peers are taken in peer-id order, so the same inputs give the same answer.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use cid::Cid;
use libp2p_identity::PeerId;

use crate::codec::metric::Metric;

/// The latest live metric of each peer, by metric name (the monitor's `LatestMetrics`).
pub type MetricsSet = BTreeMap<String, Vec<Metric>>;

/// The metrics the balanced allocator sorts by when not configured (`allocator.balanced`).
pub const DEFAULT_ALLOCATE_BY: [&str; 2] = ["tag:group", "freespace"];

/// The cluster's allocation settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocatorConfig {
    /// Metric names to partition and sort peers by, most significant first.
    pub allocate_by: Vec<String>,
    /// Replication used when a pin leaves its factors at 0 (-1/-1: every peer).
    pub replication_factor_min: i32,
    pub replication_factor_max: i32,
    /// Allocate to trusted peers only.
    pub pin_only_on_trusted_peers: bool,
    /// Allocate to untrusted peers only.
    pub pin_only_on_untrusted_peers: bool,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        Self {
            allocate_by: DEFAULT_ALLOCATE_BY.map(String::from).to_vec(),
            replication_factor_min: -1,
            replication_factor_max: -1,
            pin_only_on_trusted_peers: false,
            pin_only_on_untrusted_peers: false,
        }
    }
}

/// Why a pin could not be allocated. Messages are ipfs-cluster's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error("cluster.replication_factor_min and max must be set")]
    ReplicationUnset,
    #[error("cluster.replication_factor_min is larger than max")]
    ReplicationMinAboveMax,
    #[error("cluster.replication_factor_min is wrong")]
    ReplicationMinWrong,
    #[error("cluster.replication_factor_max is wrong")]
    ReplicationMaxWrong,
    #[error("cluster.replication_factor_min and max must be -1 when one of them is")]
    ReplicationEverywhereMismatch,
    #[error(
        "not enough peers to allocate CID. Needed at least: {needed}. Wanted at most: {wanted}. \
         Available candidates: {}. {}",
        available.len(),
        list_peers(available)
    )]
    NotEnoughPeers {
        needed: i32,
        wanted: i32,
        /// The peers that could have been chosen.
        available: Vec<PeerId>,
    },
}

fn list_peers(peers: &[PeerId]) -> String {
    if peers.is_empty() {
        return "No peer has every metric the allocator needs (allocate_by).".into();
    }
    let names: Vec<String> = peers.iter().map(|p| p.to_base58()).collect();
    format!("Candidates: {}.", names.join(", "))
}

/// A pin's replication factors with the cluster defaults filled in for 0, checked as
/// ipfs-cluster checks them (`setupReplicationFactor`).
pub fn replication_factors(
    pin_min: i32,
    pin_max: i32,
    config: &AllocatorConfig,
) -> Result<(i32, i32), AllocationError> {
    let min = if pin_min == 0 {
        config.replication_factor_min
    } else {
        pin_min
    };
    let max = if pin_max == 0 {
        config.replication_factor_max
    } else {
        pin_max
    };
    if min == 0 || max == 0 {
        return Err(AllocationError::ReplicationUnset);
    }
    if min > max {
        return Err(AllocationError::ReplicationMinAboveMax);
    }
    if min < -1 {
        return Err(AllocationError::ReplicationMinWrong);
    }
    if max < -1 {
        return Err(AllocationError::ReplicationMaxWrong);
    }
    if (min == -1) != (max == -1) {
        return Err(AllocationError::ReplicationEverywhereMismatch);
    }
    Ok((min, max))
}

/// What one allocation decision starts from.
#[derive(Clone, Copy, Debug)]
pub struct AllocationRequest<'a> {
    pub cid: &'a Cid,
    /// Replication factors after [`replication_factors`].
    pub replication_min: i32,
    pub replication_max: i32,
    /// The allocations of the pin already in the state, if any.
    pub current: &'a [PeerId],
    /// Peers the user asked for (`user_allocations`): chosen before any other.
    pub priority: &'a [PeerId],
    /// Peers that must not be chosen (the peer that went down, on a repin).
    pub blacklist: &'a [PeerId],
}

/// Chooses the peers that must pin `request.cid`; an empty list means every peer.
///
/// `metrics` holds the latest live metric of each peer for every `allocate_by` name;
/// `is_trusted` says whether a peer is trusted. Only peers with every `allocate_by` metric,
/// not blacklisted and passing the trust filters count. Current allocations that count are
/// kept while at least `replication_min` of them do (the first `replication_max` of them);
/// otherwise new peers are added up to `replication_max`, user allocations first. The
/// result never holds more than `replication_max` peers.
pub fn allocate(
    request: &AllocationRequest<'_>,
    metrics: &MetricsSet,
    is_trusted: impl Fn(&PeerId) -> bool,
    config: &AllocatorConfig,
) -> Result<Vec<PeerId>, AllocationError> {
    let (min, max) = (request.replication_min, request.replication_max);
    if min + max == 0 {
        // Checked by replication_factors; kept for requests that skipped it.
        return Err(AllocationError::ReplicationUnset);
    }
    if min < 0 && max < 0 {
        return Ok(Vec::new());
    }

    let classified = classify(request, metrics, &is_trusted, config);
    let valid_current = classified.current.len() as i32;
    let needed = min - valid_current;
    let wanted = max - valid_current;
    if wanted < 0 {
        // More live allocations than wanted: keep the first `max` of them.
        let mut current = classified.current;
        current.truncate(max.max(0) as usize);
        return Ok(current);
    }
    if needed <= 0 {
        // Go keeps the whole current list here, dead and blacklisted peers included; the
        // live ones are enough, and keeping only them leaves no allocation to a lost peer.
        return Ok(classified.current);
    }
    let available = classified.priority.len() + classified.candidates.len();
    if (available as i32) < needed {
        let mut peers = classified.priority.clone();
        peers.extend(&classified.candidates);
        return Err(AllocationError::NotEnoughPeers {
            needed,
            wanted,
            available: peers,
        });
    }
    let mut ordered = balanced_order(&classified.priority, metrics, &config.allocate_by);
    ordered.extend(balanced_order(
        &classified.candidates,
        metrics,
        &config.allocate_by,
    ));
    ordered.truncate(wanted as usize);
    let mut result = classified.current;
    result.extend(ordered);
    Ok(result)
}

/// Peers that have every `allocate_by` metric, split as ipfs-cluster's `filterMetrics`
/// splits them.
struct Classified {
    /// Current allocations that are live, in the pin's order.
    current: Vec<PeerId>,
    /// User allocations that are live and not current.
    priority: Vec<PeerId>,
    /// Every other eligible peer, in peer-id order.
    candidates: Vec<PeerId>,
}

fn classify(
    request: &AllocationRequest<'_>,
    metrics: &MetricsSet,
    is_trusted: &impl Fn(&PeerId) -> bool,
    config: &AllocatorConfig,
) -> Classified {
    let mut counts: BTreeMap<PeerId, usize> = BTreeMap::new();
    for name in &config.allocate_by {
        let mut seen = HashSet::new();
        for metric in metrics.get(name).into_iter().flatten() {
            if seen.insert(metric.peer) {
                *counts.entry(metric.peer).or_default() += 1;
            }
        }
    }
    let eligible: HashSet<PeerId> = counts
        .into_iter()
        .filter(|(peer, count)| {
            let trust_allowed = match (
                config.pin_only_on_trusted_peers,
                config.pin_only_on_untrusted_peers,
            ) {
                (true, _) => is_trusted(peer),
                (_, true) => !is_trusted(peer),
                _ => true,
            };
            *count == config.allocate_by.len() && !request.blacklist.contains(peer) && trust_allowed
        })
        .map(|(peer, _)| peer)
        .collect();
    let mut taken = HashSet::new();
    let mut pick = |peers: &[PeerId]| -> Vec<PeerId> {
        peers
            .iter()
            .filter(|p| eligible.contains(*p) && taken.insert(**p))
            .copied()
            .collect()
    };
    let current = pick(request.current);
    let priority = pick(request.priority);
    let mut candidates: Vec<PeerId> = eligible.difference(&taken).copied().collect();
    candidates.sort_by_cached_key(|p| p.to_bytes());
    Classified {
        current,
        priority,
        candidates,
    }
}

/// The balanced allocator's order of `peers`.
fn balanced_order(peers: &[PeerId], metrics: &MetricsSet, allocate_by: &[String]) -> Vec<PeerId> {
    if peers.is_empty() || allocate_by.is_empty() {
        return Vec::new();
    }
    // Peers become indexes in byte order, so that sorting indexes sorts peers.
    let mut peers = peers.to_vec();
    peers.sort_by_cached_key(|p| p.to_bytes());
    let index: HashMap<PeerId, usize> = peers.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    // table[i][level]: the metric of peer i for allocate_by[level].
    let mut table: Vec<Vec<Option<&Metric>>> = vec![vec![None; allocate_by.len()]; peers.len()];
    for (level, name) in allocate_by.iter().enumerate() {
        for metric in metrics.get(name).into_iter().flatten() {
            if let Some(&i) = index.get(&metric.peer) {
                table[i][level].get_or_insert(metric);
            }
        }
    }
    let members: Vec<usize> = (0..peers.len())
        .filter(|&i| table[i].iter().all(Option::is_some))
        .collect();
    let mut tree = Partitioned::build(&table, 0, &members);
    std::iter::from_fn(|| tree.choose_next())
        .map(|i| peers[i])
        .collect()
}

/// The metrics of the peers being ordered, by peer index, then `allocate_by` level.
type MetricTable<'a> = [Vec<Option<&'a Metric>>];

/// Peers split by one metric, each partition split again by the next.
struct Partitioned {
    partitions: Vec<Partition>,
    next: usize,
    exhausted: bool,
}

struct Partition {
    value: String,
    weight: i64,
    aggregated_weight: i64,
    /// Peers (indexes in byte order) of a bottom partition not yet chosen.
    peers: VecDeque<usize>,
    sub: Option<Partitioned>,
}

impl Partitioned {
    /// Partitions `members` by the metric at `level`, and each partition by the next levels.
    fn build(table: &MetricTable<'_>, level: usize, members: &[usize]) -> Self {
        let mut partitions = partition_values(
            members
                .iter()
                .map(|&i| (i, table[i][level].expect("members have every metric"))),
        );
        if level + 1 < table.first().map_or(0, Vec::len) {
            for partition in &mut partitions {
                let inside: Vec<usize> = partition.peers.iter().copied().collect();
                let sub = Partitioned::build(table, level + 1, &inside);
                partition.aggregated_weight += sub
                    .partitions
                    .iter()
                    .map(|p| p.aggregated_weight)
                    .sum::<i64>();
                partition.sub = Some(sub);
            }
        }
        partitions.sort_by(|a, b| {
            b.weight
                .cmp(&a.weight)
                .then(b.aggregated_weight.cmp(&a.aggregated_weight))
                .then_with(|| a.value.cmp(&b.value))
                .then_with(|| a.peers.front().cmp(&b.peers.front()))
        });
        Self {
            partitions,
            next: 0,
            exhausted: false,
        }
    }

    /// The next peer, taking from each partition in turn.
    fn choose_next(&mut self) -> Option<usize> {
        if self.partitions.is_empty() || self.exhausted {
            return None;
        }
        for _ in 0..self.partitions.len() {
            let partition = &mut self.partitions[self.next];
            let chosen = match &mut partition.sub {
                Some(sub) => sub.choose_next(),
                None => partition.peers.pop_front(),
            };
            self.next = (self.next + 1) % self.partitions.len();
            if chosen.is_some() {
                return chosen;
            }
        }
        self.exhausted = true;
        None
    }
}

/// One partition per peer for ordinary metrics; one per value, weights summed, for
/// partitionable ones. Peers arrive in index order and stay in it.
fn partition_values<'a>(metrics: impl Iterator<Item = (usize, &'a Metric)>) -> Vec<Partition> {
    let mut partitions = Vec::new();
    let mut by_value: BTreeMap<&str, Partition> = BTreeMap::new();
    for (peer, metric) in metrics {
        if !metric.partitionable {
            partitions.push(Partition {
                value: metric.value.clone(),
                weight: metric.weight,
                aggregated_weight: metric.weight,
                peers: VecDeque::from([peer]),
                sub: None,
            });
            continue;
        }
        let partition = by_value.entry(&metric.value).or_insert_with(|| Partition {
            value: metric.value.clone(),
            weight: 0,
            aggregated_weight: 0,
            peers: VecDeque::new(),
            sub: None,
        });
        partition.weight += metric.weight;
        partition.aggregated_weight += metric.weight;
        partition.peers.push_back(peer);
    }
    partitions.extend(by_value.into_values());
    partitions
}

/// Whether `local` is the peer that must act for `cid` when several could: the one whose
/// blake2b-256 hash of its id is closest, by XOR, to that of the CID's bytes, among `local`
/// and the trusted peers `others` (ipfs-cluster's `distanceChecker`). Only the closest peer
/// re-allocates a lost peer's pins or unpins an expired pin, so peers never race.
pub fn is_closest(cid: &Cid, local: &PeerId, others: &[PeerId]) -> bool {
    let target = blake2b_256(&cid.to_bytes());
    let distance = |peer: &PeerId| -> [u8; 32] {
        let mut d = blake2b_256(&peer.to_bytes());
        d.iter_mut().zip(target).for_each(|(d, t)| *d ^= t);
        d
    };
    let mine = distance(local);
    others.iter().all(|other| mine <= distance(other))
}

fn blake2b_256(bytes: &[u8]) -> [u8; 32] {
    Blake2b::<U32>::digest(bytes).into()
}

/// Whether this peer must re-allocate `pin` after `lost` went down: the pin is allocated
/// to `lost` and `local` is the closest of the trusted peers still alive
/// (`trusted_alive`, which may include `local` and `lost`). Re-allocate with
/// [`allocate`], the pin's allocations as `current` and `lost` in the blacklist.
pub fn must_repin(
    pin_allocations: &[PeerId],
    cid: &Cid,
    lost: &PeerId,
    local: &PeerId,
    trusted_alive: &[PeerId],
) -> bool {
    if !pin_allocations.contains(lost) {
        return false;
    }
    let others: Vec<PeerId> = trusted_alive
        .iter()
        .filter(|p| *p != local && *p != lost)
        .copied()
        .collect();
    is_closest(cid, local, &others)
}
