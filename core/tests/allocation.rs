//! Allocation scenarios after ipfs-cluster's suite (replication, not enough peers, lowered
//! factors, lost peers, tag groups, user allocations, trust), and properties that hold for
//! any cluster.

mod support;

use std::collections::BTreeMap;

use cid::Cid;
use libp2p_identity::PeerId;
use pinfold_core::allocator::{
    allocate, must_repin, replication_factors, AllocationError, AllocationRequest, AllocatorConfig,
    MetricsSet,
};
use pinfold_core::codec::dagpb::dag_pb_cid;
use pinfold_core::codec::metric::Metric;
use pinfold_core::informer::{disk_metric, tag_metrics, DiskMetric, RepoStat};
use proptest::prelude::*;
use support::peer;

const NOW: i64 = 1_700_000_000_000_000_000;

/// A peer of the test cluster: its free space and its group tag.
struct Member {
    id: PeerId,
    free: u64,
    group: &'static str,
}

fn member(n: u64, free: u64, group: &'static str) -> Member {
    Member {
        id: peer(n),
        free,
        group,
    }
}

/// The metrics the monitor would hold for `members`, as the informers make them.
fn metrics(members: &[Member]) -> MetricsSet {
    let mut set = MetricsSet::new();
    for m in members {
        let stat = RepoStat {
            repo_size: 0,
            storage_max: m.free,
        };
        let free = disk_metric(DiskMetric::FreeSpace, Some(&stat), &m.id, 30_000, NOW);
        let tags = BTreeMap::from([("group".to_owned(), m.group.to_owned())]);
        for metric in std::iter::once(free).chain(tag_metrics(&tags, &m.id, 30_000, NOW)) {
            set.entry(metric.name.clone()).or_default().push(metric);
        }
    }
    set
}

fn cid() -> Cid {
    dag_pb_cid(b"allocated content")
}

fn request<'a>(cid: &'a Cid, min: i32, max: i32) -> AllocationRequest<'a> {
    AllocationRequest {
        cid,
        replication_min: min,
        replication_max: max,
        current: &[],
        priority: &[],
        blacklist: &[],
    }
}

fn run(request: &AllocationRequest<'_>, set: &MetricsSet) -> Result<Vec<PeerId>, AllocationError> {
    allocate(request, set, |_| true, &AllocatorConfig::default())
}

#[test]
fn replication_factors_default_and_are_checked() {
    let config = AllocatorConfig {
        replication_factor_min: 2,
        replication_factor_max: 3,
        ..AllocatorConfig::default()
    };
    assert_eq!(replication_factors(0, 0, &config), Ok((2, 3)));
    assert_eq!(replication_factors(1, 0, &config), Ok((1, 3)));
    assert_eq!(replication_factors(-1, -1, &config), Ok((-1, -1)));
    let everywhere = AllocatorConfig::default();
    assert_eq!(replication_factors(0, 0, &everywhere), Ok((-1, -1)));
    let unset = AllocatorConfig {
        replication_factor_min: 0,
        replication_factor_max: 0,
        ..AllocatorConfig::default()
    };
    assert_eq!(
        replication_factors(0, 0, &unset),
        Err(AllocationError::ReplicationUnset)
    );
    assert_eq!(
        replication_factors(3, 2, &config),
        Err(AllocationError::ReplicationMinAboveMax)
    );
    assert_eq!(
        replication_factors(-2, 2, &config),
        Err(AllocationError::ReplicationMinWrong)
    );
    assert_eq!(
        replication_factors(-1, 2, &config),
        Err(AllocationError::ReplicationEverywhereMismatch)
    );
}

#[test]
fn everywhere_is_no_allocation() {
    let c = cid();
    let set = metrics(&[member(1, 10, "a")]);
    assert_eq!(run(&request(&c, -1, -1), &set), Ok(vec![]));
    assert_eq!(
        run(&request(&c, 0, 0), &set),
        Err(AllocationError::ReplicationUnset)
    );
}

#[test]
fn the_peers_with_most_free_space_are_chosen_up_to_the_maximum() {
    let c = cid();
    let members: Vec<Member> = (1..=5).map(|n| member(n, n * 100, "default")).collect();
    let set = metrics(&members);
    let chosen = run(&request(&c, 2, 3), &set).unwrap();
    assert_eq!(chosen, vec![peer(5), peer(4), peer(3)]);
}

#[test]
fn not_enough_peers_names_needed_wanted_and_available() {
    let c = cid();
    let set = metrics(&[member(1, 10, "a"), member(2, 20, "a"), member(3, 30, "a")]);
    let error = run(&request(&c, 4, 5), &set).unwrap_err();
    assert!(matches!(
        &error,
        AllocationError::NotEnoughPeers { needed: 4, wanted: 5, available } if available.len() == 3
    ));
    let text = error.to_string();
    assert!(
        text.starts_with("not enough peers to allocate CID. Needed at least: 4. Wanted at most: 5. Available candidates: 3."),
        "{text}"
    );
    assert!(text.contains(&peer(2).to_base58()), "{text}");
    // Between min and max, what there is suffices.
    assert_eq!(run(&request(&c, 2, 5), &set).unwrap().len(), 3);
}

#[test]
fn live_allocations_are_kept_while_enough_and_trimmed_when_the_factor_drops() {
    let c = cid();
    let members: Vec<Member> = (1..=6).map(|n| member(n, n * 100, "default")).collect();
    let set = metrics(&members);
    let current = [peer(1), peer(2), peer(3)];
    let mut req = request(&c, 2, 3);
    req.current = &current;
    assert_eq!(
        run(&req, &set).unwrap(),
        current,
        "enough live allocations: kept as they are"
    );
    let mut lowered = request(&c, 1, 2);
    lowered.current = &current;
    assert_eq!(run(&lowered, &set).unwrap(), vec![peer(1), peer(2)]);
    let mut raised = request(&c, 5, 5);
    raised.current = &current;
    assert_eq!(
        run(&raised, &set).unwrap(),
        vec![peer(1), peer(2), peer(3), peer(6), peer(5)],
        "current allocations first, then the freest peers"
    );
}

#[test]
fn a_lost_peer_is_replaced_only_when_too_few_remain() {
    let c = cid();
    // Peer 3 went down: its metrics expired, so the monitor no longer lists it.
    let alive: Vec<Member> = [1, 2, 4, 5].map(|n| member(n, n * 100, "default")).into();
    let set = metrics(&alive);
    let current = [peer(1), peer(2), peer(3)];
    let lost = [peer(3)];
    let mut req = request(&c, 3, 3);
    req.current = &current;
    req.blacklist = &lost;
    assert_eq!(run(&req, &set).unwrap(), vec![peer(1), peer(2), peer(5)]);
    let mut relaxed = request(&c, 2, 3);
    relaxed.current = &current;
    relaxed.blacklist = &lost;
    assert_eq!(
        run(&relaxed, &set).unwrap(),
        vec![peer(1), peer(2)],
        "two live allocations meet the minimum: nothing new, and the lost peer is dropped"
    );
}

#[test]
fn exactly_one_trusted_peer_repins_each_pin() {
    let trusted: Vec<PeerId> = (1..=5).map(peer).collect();
    let lost = peer(9);
    for i in 0..200u64 {
        let c = dag_pb_cid(&i.to_be_bytes());
        let allocations = [peer(1), lost];
        let deciders = trusted
            .iter()
            .filter(|local| must_repin(&allocations, &c, &lost, local, &trusted))
            .count();
        assert_eq!(deciders, 1, "pin {i}");
        assert!(!must_repin(&[peer(1)], &c, &lost, &peer(1), &trusted));
    }
}

#[test]
fn pins_spread_across_tag_groups_freest_first_within_each() {
    let c = cid();
    let members = [
        member(1, 500, "eu"),
        member(2, 900, "eu"),
        member(3, 100, "eu"),
        member(4, 300, "us"),
        member(5, 800, "us"),
        member(6, 50, "asia"),
    ];
    let set = metrics(&members);
    let chosen = run(&request(&c, 3, 3), &set).unwrap();
    let groups: Vec<&str> = chosen
        .iter()
        .map(|p| members.iter().find(|m| m.id == *p).unwrap().group)
        .collect();
    let mut sorted = groups.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["asia", "eu", "us"],
        "one peer per group: {groups:?}"
    );
    assert!(chosen.contains(&peer(2)) && chosen.contains(&peer(5)));
    // A fourth copy goes back to the first group's next freest peer.
    let four = run(&request(&c, 4, 4), &set).unwrap();
    assert_eq!(&four[..3], &chosen[..]);
    assert!(four[3] == peer(1) || four[3] == peer(4), "{four:?}");
}

#[test]
fn user_allocations_come_first() {
    let c = cid();
    let members: Vec<Member> = (1..=5).map(|n| member(n, n * 100, "default")).collect();
    let set = metrics(&members);
    let wanted = [peer(1)];
    let mut req = request(&c, 2, 2);
    req.priority = &wanted;
    assert_eq!(run(&req, &set).unwrap(), vec![peer(1), peer(5)]);
}

#[test]
fn trust_filters_choose_among_trusted_or_untrusted_peers() {
    let c = cid();
    let members: Vec<Member> = (1..=4).map(|n| member(n, n * 100, "default")).collect();
    let set = metrics(&members);
    let trusted = |p: &PeerId| *p == peer(1) || *p == peer(2);
    let only_trusted = AllocatorConfig {
        pin_only_on_trusted_peers: true,
        ..AllocatorConfig::default()
    };
    assert_eq!(
        allocate(&request(&c, 1, 4), &set, trusted, &only_trusted).unwrap(),
        vec![peer(2), peer(1)]
    );
    let only_untrusted = AllocatorConfig {
        pin_only_on_untrusted_peers: true,
        ..AllocatorConfig::default()
    };
    assert_eq!(
        allocate(&request(&c, 1, 4), &set, trusted, &only_untrusted).unwrap(),
        vec![peer(4), peer(3)]
    );
    assert!(allocate(&request(&c, 3, 3), &set, trusted, &only_trusted).is_err());
}

#[test]
fn peers_without_every_metric_are_never_chosen() {
    let c = cid();
    let mut set = metrics(&[member(1, 100, "a"), member(2, 900, "a")]);
    set.get_mut("tag:group")
        .unwrap()
        .retain(|m| m.peer != peer(2));
    assert_eq!(run(&request(&c, 1, 2), &set).unwrap(), vec![peer(1)]);
}

/// One peer of a random cluster: (number, free space, group, which metric it lacks: 0
/// none, 1 its tag, 2 its free space).
type PeerSpec = (u64, u64, u8, u8);

/// A random cluster and request: peers, replication factors, and how many of the peers
/// are current allocations, user allocations and blacklisted.
#[derive(Debug, Clone)]
struct Scenario {
    peers: Vec<PeerSpec>,
    min: i32,
    max: i32,
    current: usize,
    priority: usize,
    blacklisted: usize,
}

fn arb_scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec((0u64..40, 1u64..1_000, 0u8..4, 0u8..6), 0..25),
        1i32..8,
        0i32..4,
        0usize..6,
        0usize..4,
        0usize..4,
    )
        .prop_map(
            |(peers, min, extra, current, priority, blacklisted)| Scenario {
                peers,
                min,
                max: min + extra,
                current,
                priority,
                blacklisted,
            },
        )
}

fn cluster_metrics(peers: &[PeerSpec]) -> MetricsSet {
    const GROUPS: [&str; 4] = ["a", "b", "c", "d"];
    let mut set = MetricsSet::new();
    let mut seen = std::collections::HashSet::new();
    for &(n, free, group, missing) in peers {
        if !seen.insert(n) {
            continue;
        }
        let m = member(n, free, GROUPS[group as usize]);
        for metric in metrics(&[m]).into_values().flatten() {
            let skip = (missing == 1 && metric.name == "tag:group")
                || (missing == 2 && metric.name == "freespace");
            if !skip {
                set.entry(metric.name.clone()).or_default().push(metric);
            }
        }
    }
    set
}

fn has_all_metrics(set: &MetricsSet, p: &PeerId) -> bool {
    set.values()
        .all(|ms: &Vec<Metric>| ms.iter().any(|m| m.peer == *p))
}

proptest! {
    #[test]
    fn allocations_respect_the_maximum_the_blacklist_and_the_metrics(
        scenario in arb_scenario(),
        shuffle_seed in any::<u64>(),
    ) {
        let c = cid();
        let set = cluster_metrics(&scenario.peers);
        let ids: Vec<PeerId> = scenario.peers.iter().map(|(n, ..)| peer(*n)).collect();
        let current: Vec<PeerId> = ids.iter().take(scenario.current).copied().collect();
        let priority: Vec<PeerId> = ids.iter().rev().take(scenario.priority).copied().collect();
        let blacklist: Vec<PeerId> = ids.iter().skip(1).take(scenario.blacklisted).copied().collect();
        let (min, max) = (scenario.min, scenario.max);
        let req = AllocationRequest {
            cid: &c,
            replication_min: min,
            replication_max: max,
            current: &current,
            priority: &priority,
            blacklist: &blacklist,
        };
        let result = run(&req, &set);
        if let Ok(chosen) = &result {
            prop_assert!(chosen.len() <= max as usize);
            let unique: std::collections::HashSet<_> = chosen.iter().collect();
            prop_assert_eq!(unique.len(), chosen.len(), "a peer chosen twice");
            for p in chosen {
                prop_assert!(!blacklist.contains(p), "blacklisted peer chosen");
                prop_assert!(has_all_metrics(&set, p), "peer without every metric chosen");
            }
        }
        // The same inputs, in another order, give the same answer.
        let mut shuffled = set.clone();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(shuffle_seed);
        for metrics in shuffled.values_mut() {
            rand::seq::SliceRandom::shuffle(&mut metrics[..], &mut rng);
        }
        prop_assert_eq!(run(&req, &shuffled), result);
    }
}
