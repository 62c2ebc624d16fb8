//! The replica as the cluster's pinset: pins in, pin events out, pages of pins.

mod support;

use cid::Cid;
use pinfold_core::codec::dagpb::dag_pb_cid;
use pinfold_core::codec::state_key::state_key;
use pinfold_core::crdt::{Config, MemoryStore, Output, PinEntryError, PinEvent, Replica};
use pinfold_core::pin::{Pin, UnixTime};
use support::{answer_fetches, peer, ready};

fn replica() -> Replica<MemoryStore> {
    ready(Replica::open(MemoryStore::new(), Config::default())).unwrap()
}

fn pin(i: u64) -> Pin {
    let mut pin = Pin::new(dag_pb_cid(&i.to_be_bytes()), UnixTime(1_700_000_000));
    pin.name = format!("pin-{i}");
    pin.replication_factor_min = 1;
    pin.replication_factor_max = 2;
    pin.allocations = vec![peer(i)];
    pin
}

/// Drains a writer's outputs, keeping its broadcasts.
fn broadcasts(writer: &mut Replica<MemoryStore>) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| writer.poll_output())
        .filter_map(|output| match output {
            Output::Broadcast(data) => Some(data),
            _ => None,
        })
        .collect()
}

/// Hands `writer`'s new heads to `follower` and returns the follower's pin events.
fn relay(writer: &mut Replica<MemoryStore>, follower: &mut Replica<MemoryStore>) -> Vec<PinEvent> {
    for data in broadcasts(writer) {
        ready(follower.receive_broadcast(&peer(0), &data, 0)).unwrap();
    }
    answer_fetches(follower, writer.store())
        .iter()
        .filter_map(PinEvent::from_output)
        .map(Result::unwrap)
        .collect()
}

#[test]
fn pins_reach_followers_as_events() {
    let mut writer = replica();
    let mut follower = replica();
    let pins: Vec<Pin> = (0..3).map(pin).collect();
    for p in &pins {
        ready(writer.add_pin(p, 0)).unwrap();
    }
    let events = relay(&mut writer, &mut follower);
    assert_eq!(events.len(), 3);
    for p in &pins {
        assert!(
            events.contains(&PinEvent::Pinned(Box::new(p.clone()))),
            "{p:?} not announced"
        );
        assert_eq!(ready(follower.pin(&p.cid)).unwrap().as_ref(), Some(p));
    }

    let mut renamed = pins[1].clone();
    renamed.name = "renamed".into();
    ready(writer.add_pin(&renamed, 0)).unwrap();
    assert_eq!(
        relay(&mut writer, &mut follower),
        vec![PinEvent::Pinned(Box::new(renamed.clone()))]
    );

    assert!(ready(writer.remove_pin(&pins[0].cid, 0)).unwrap());
    assert!(!ready(writer.remove_pin(&pins[0].cid, 0)).unwrap());
    assert_eq!(
        relay(&mut writer, &mut follower),
        vec![PinEvent::Unpinned(pins[0].cid)]
    );
    assert_eq!(ready(follower.pin(&pins[0].cid)).unwrap(), None);
    assert_eq!(
        ready(follower.pins(None, 10)).unwrap(),
        ready(writer.pins(None, 10)).unwrap()
    );
}

#[test]
fn entries_that_are_not_pins_are_reported_and_left_out() {
    let mut replica = replica();
    ready(replica.put("/not-base32!", b"x".to_vec(), 0)).unwrap();
    let cid = dag_pb_cid(b"garbage value");
    ready(replica.put(&state_key(&cid), vec![0xff, 0xff], 0)).unwrap();
    let outputs: Vec<Output> = std::iter::from_fn(|| replica.poll_output()).collect();
    let errors: Vec<PinEntryError> = outputs
        .iter()
        .filter_map(PinEvent::from_output)
        .map(|e| e.unwrap_err())
        .collect();
    assert!(matches!(errors[0], PinEntryError::Key(_)), "{errors:?}");
    assert!(
        matches!(&errors[1], PinEntryError::Value { cid: c, .. } if *c == cid),
        "{errors:?}"
    );
    assert!(errors[1].to_string().contains(&cid.to_string()));
    assert_eq!(ready(replica.pin(&cid)).unwrap(), None);
    assert!(ready(replica.pins(None, 10)).unwrap().is_empty());
}

#[test]
fn pins_page_through_the_set_past_runs_of_bad_entries() {
    let mut replica = replica();
    let mut expected = Vec::new();
    for i in 0..300 {
        if i % 3 == 0 {
            let p = pin(i);
            ready(replica.add_pin(&p, 0)).unwrap();
            expected.push(p);
        } else {
            let cid = dag_pb_cid(&i.to_be_bytes());
            ready(replica.put(&state_key(&cid), vec![0xff], 0)).unwrap();
        }
    }
    expected.sort_by_key(|p| state_key(&p.cid));
    let mut listed = Vec::new();
    let mut after: Option<Cid> = None;
    loop {
        let page = ready(replica.pins(after.as_ref(), 7)).unwrap();
        after = page.last().map(|p| p.cid);
        let last = page.len() < 7;
        listed.extend(page);
        if last {
            break;
        }
    }
    assert_eq!(listed, expected);
}

/// Whether each value change a follower reports is a new key or a changed one, in order.
fn added_flags(
    writer: &mut Replica<MemoryStore>,
    follower: &mut Replica<MemoryStore>,
) -> Vec<bool> {
    for data in broadcasts(writer) {
        ready(follower.receive_broadcast(&peer(0), &data, 0)).unwrap();
    }
    answer_fetches(follower, writer.store())
        .iter()
        .filter_map(|output| match output {
            Output::Put { added, .. } => Some(*added),
            _ => None,
        })
        .collect()
}

#[test]
fn puts_tell_a_new_pin_from_a_changed_one() {
    let mut writer = replica();
    let mut follower = replica();
    let mut p = pin(7);
    ready(writer.add_pin(&p, 0)).unwrap();
    assert_eq!(added_flags(&mut writer, &mut follower), vec![true]);
    p.name = "renamed".into();
    ready(writer.add_pin(&p, 0)).unwrap();
    assert_eq!(added_flags(&mut writer, &mut follower), vec![false]);
    assert!(ready(writer.remove_pin(&p.cid, 0)).unwrap());
    added_flags(&mut writer, &mut follower);
    ready(writer.add_pin(&p, 0)).unwrap();
    assert_eq!(
        added_flags(&mut writer, &mut follower),
        vec![true],
        "a pin added again after its removal is new again"
    );
}
