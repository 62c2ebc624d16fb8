//! The bitswap behaviour between small in-memory swarms: a want is answered with the
//! block, a miss with don't-have, a peer without bitswap counts as a miss, and wants made
//! before a peer connects reach it once it does, and a burst of answers on streams of their
//! own, as Go peers send them, is read whole, wants whose stream the peer reset go again on
//! a new one, and withdrawn or answered wants reach each other asked peer as one message
//! of cancels.

use std::time::Duration;

use cid::Cid;
use futures::future::{select, Either};
use futures::{AsyncWriteExt, FutureExt, StreamExt};
use libp2p_identity::PeerId;
use libp2p_swarm::{dummy, StreamProtocol, Swarm};
use libp2p_swarm_test::SwarmExt;
use pinfold_core::codec::bitswap::{BitswapMessage, Presence, WantType, PROTOCOL};
use pinfold_core::codec::dagpb::dag_pb_cid;
use pinfold_core::net::bitswap::{Bitswap, Config, Event};
use pinfold_core::net::frame::{read_frame, write_frame};

fn bitswap_swarm() -> Swarm<Bitswap> {
    Swarm::new_ephemeral_tokio(|_| Bitswap::new(Config::default()))
}

fn block(n: u64) -> (Cid, Vec<u8>) {
    // A dag-pb node holding only Data (field 1): 8 bytes of `n`.
    let mut bytes = vec![0x0a, 8];
    bytes.extend_from_slice(&n.to_be_bytes());
    (dag_pb_cid(&bytes), bytes)
}

/// The next behaviour event of either swarm, polling both; bounded in time.
async fn next_event(a: &mut Swarm<Bitswap>, b: &mut Swarm<Bitswap>) -> Either<Event, Event> {
    let both = async {
        match select(
            a.next_behaviour_event().boxed(),
            b.next_behaviour_event().boxed(),
        )
        .await
        {
            Either::Left((event, _)) => Either::Left(event),
            Either::Right((event, _)) => Either::Right(event),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), both)
        .await
        .expect("no bitswap event within 10 s")
}

#[tokio::test]
async fn a_wanted_block_is_served_and_delivered() {
    let mut a = bitswap_swarm();
    let mut b = bitswap_swarm();
    b.listen().with_memory_addr_external().await;
    a.connect(&mut b).await;
    let (cid, data) = block(1);
    a.behaviour_mut().want(cid).unwrap();

    let Either::Right(Event::Wanted { peer, wants }) = next_event(&mut a, &mut b).await else {
        panic!("b should be asked for the block first");
    };
    assert_eq!(peer, *a.local_peer_id());
    assert_eq!(wants.len(), 1);
    assert_eq!(wants[0].cid, cid);
    assert_eq!(wants[0].want_type, WantType::Block);
    assert!(wants[0].send_dont_have);
    b.behaviour_mut()
        .respond(peer, vec![(cid, data.clone())], Vec::new());

    let Either::Left(Event::Block {
        peer,
        cid: got,
        data: bytes,
    }) = next_event(&mut a, &mut b).await
    else {
        panic!("a should receive the block");
    };
    assert_eq!((peer, got, bytes), (*b.local_peer_id(), cid, data));
    assert_eq!(a.behaviour().wanted(), 0);
    assert_eq!(a.behaviour().stats().blocks_received, 1);
}

#[tokio::test]
async fn dont_have_from_every_peer_makes_the_block_unavailable() {
    let mut a = bitswap_swarm();
    let mut b = bitswap_swarm();
    b.listen().with_memory_addr_external().await;
    a.connect(&mut b).await;
    let (cid, _) = block(2);
    a.behaviour_mut().want(cid).unwrap();

    let Either::Right(Event::Wanted { peer, .. }) = next_event(&mut a, &mut b).await else {
        panic!("b should be asked");
    };
    b.behaviour_mut()
        .respond(peer, Vec::new(), vec![(cid, Presence::DontHave)]);
    let Either::Left(event) = next_event(&mut a, &mut b).await else {
        panic!("a should learn the block is unavailable");
    };
    assert_eq!(event, Event::Unavailable { cid });
    assert_eq!(a.behaviour().wanted(), 0);
}

#[tokio::test]
async fn unsolicited_blocks_are_counted_and_dropped() {
    let mut a = bitswap_swarm();
    let mut b = bitswap_swarm();
    b.listen().with_memory_addr_external().await;
    a.connect(&mut b).await;
    let (stray, stray_data) = block(3);
    let (wanted, wanted_data) = block(4);
    let a_id = *a.local_peer_id();
    b.behaviour_mut()
        .respond(a_id, vec![(stray, stray_data)], Vec::new());
    a.behaviour_mut().want(wanted).unwrap();
    let Either::Right(Event::Wanted { .. }) = next_event(&mut a, &mut b).await else {
        panic!("b should be asked");
    };
    b.behaviour_mut()
        .respond(a_id, vec![(wanted, wanted_data)], Vec::new());
    let Either::Left(Event::Block { cid, .. }) = next_event(&mut a, &mut b).await else {
        panic!("a should receive only the wanted block");
    };
    assert_eq!(cid, wanted);
    assert_eq!(a.behaviour().stats().unsolicited_blocks, 1);
}

#[tokio::test]
async fn wants_made_before_connecting_are_sent_on_connection() {
    let mut a = bitswap_swarm();
    let mut b = bitswap_swarm();
    let (cid, _) = block(5);
    a.behaviour_mut().want(cid).unwrap();
    b.listen().with_memory_addr_external().await;
    a.connect(&mut b).await;
    let Either::Right(Event::Wanted { wants, .. }) = next_event(&mut a, &mut b).await else {
        panic!("b should be asked once connected");
    };
    assert_eq!(wants[0].cid, cid);
}

#[tokio::test]
async fn a_peer_without_bitswap_cannot_have_the_block() {
    let mut a = bitswap_swarm();
    let mut other: Swarm<dummy::Behaviour> = Swarm::new_ephemeral_tokio(|_| dummy::Behaviour);
    other.listen().with_memory_addr_external().await;
    a.connect(&mut other).await;
    let (cid, _) = block(6);
    a.behaviour_mut().want(cid).unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            tokio::select! {
                event = a.next_behaviour_event() => return event,
                _ = other.next_swarm_event() => {}
            }
        }
    })
    .await
    .expect("no event within 10 s");
    assert_eq!(event, Event::Unavailable { cid });
}

#[tokio::test]
async fn the_wantlist_is_bounded() {
    let mut a = Swarm::new_ephemeral_tokio(|_| {
        Bitswap::new(Config {
            max_wants: 2,
            ..Config::default()
        })
    });
    let bitswap: &mut Bitswap = a.behaviour_mut();
    bitswap.want(block(1).0).unwrap();
    bitswap.want(block(2).0).unwrap();
    bitswap.want(block(1).0).unwrap();
    let error = bitswap.want(block(3).0).unwrap_err();
    assert_eq!(error.wanted, 2);
    assert!(error.to_string().contains("wait for some to arrive"));
}

/// A dag-pb node whose Data holds `size` bytes derived from `n`.
fn large_block(n: u64, size: usize) -> (Cid, Vec<u8>) {
    let mut bytes = vec![0x0a];
    let mut length = size as u64;
    while length >= 0x80 {
        bytes.push((length as u8) | 0x80);
        length >>= 7;
    }
    bytes.push(length as u8);
    bytes.extend((0..size).map(|i| (n as usize + i) as u8));
    (dag_pb_cid(&bytes), bytes)
}

#[tokio::test]
async fn a_batch_of_wants_is_one_message_and_its_blocks_fit_the_queue() {
    // 100 blocks of 512 KiB asked one by one would be answered with 100 messages of 50 MiB
    // in all; asked together, they come back in a few full messages.
    let mut a = bitswap_swarm();
    let mut b = bitswap_swarm();
    b.listen().with_memory_addr_external().await;
    a.connect(&mut b).await;
    let blocks: Vec<(Cid, Vec<u8>)> = (0..100).map(|n| large_block(n, 512 * 1024)).collect();
    let cids: Vec<Cid> = blocks.iter().map(|(cid, _)| *cid).collect();
    assert_eq!(a.behaviour_mut().want_all(&cids), Vec::<Cid>::new());

    let Either::Right(Event::Wanted { peer, wants }) = next_event(&mut a, &mut b).await else {
        panic!("b should be asked first");
    };
    assert_eq!(wants.iter().map(|w| w.cid).collect::<Vec<_>>(), cids);
    b.behaviour_mut().respond(peer, blocks, Vec::new());

    let mut received = 0;
    while received < cids.len() {
        if let Either::Left(Event::Block { .. }) = next_event(&mut a, &mut b).await {
            received += 1;
        }
    }
    assert_eq!(a.behaviour().wanted(), 0);
    assert_eq!(b.behaviour().stats().dropped_messages, 0);
}

#[tokio::test]
async fn wants_past_the_limit_are_refused_and_the_rest_kept() {
    let mut a = Swarm::new_ephemeral_tokio(|_| {
        Bitswap::new(Config {
            max_wants: 3,
            ..Config::default()
        })
    });
    let cids: Vec<Cid> = (0..5).map(|n| block(n).0).collect();
    assert_eq!(a.behaviour_mut().want_all(&cids), cids[3..].to_vec());
    assert_eq!(a.behaviour().wanted(), 3);
    assert_eq!(a.behaviour().stats().refused_wants, 2);
}

#[tokio::test]
async fn a_burst_of_single_wants_and_answers_is_not_dropped() {
    // A writer's unbatched pins broadcast one head each, and a reader asks for each head
    // on its own: thousands of small messages queue on one connection at once.
    const BLOCKS: u64 = 5_000;
    let mut a = bitswap_swarm();
    let mut b = bitswap_swarm();
    b.listen().with_memory_addr_external().await;
    a.connect(&mut b).await;
    let blocks: std::collections::HashMap<Cid, Vec<u8>> = (0..BLOCKS).map(block).collect();
    for cid in blocks.keys() {
        a.behaviour_mut().want(*cid).unwrap();
    }
    let mut received = 0;
    while received < BLOCKS {
        match next_event(&mut a, &mut b).await {
            Either::Right(Event::Wanted { peer, wants }) => {
                for want in wants {
                    let data = blocks[&want.cid].clone();
                    b.behaviour_mut()
                        .respond(peer, vec![(want.cid, data)], Vec::new());
                }
            }
            Either::Left(Event::Block { .. }) => received += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(a.behaviour().wanted(), 0);
    assert_eq!(a.behaviour().stats().dropped_messages, 0);
    assert_eq!(b.behaviour().stats().dropped_messages, 0);
}

#[tokio::test]
async fn a_burst_of_answers_each_on_its_own_stream_is_read_whole() {
    // Go peers (boxo) answer each want on a new stream, from several workers at once, and
    // count a block sent once it is written: a stream refused here loses its block.
    const STREAMS: u64 = 24;
    let mut a = bitswap_swarm();
    let mut b = Swarm::new_ephemeral_tokio(|_| libp2p_stream::Behaviour::new());
    a.listen().with_memory_addr_external().await;
    b.connect(&mut a).await;
    let peer = *a.local_peer_id();
    let mut control = b.behaviour().new_control();
    tokio::spawn(b.loop_on_next());
    let writer = tokio::spawn(async move {
        let mut streams = Vec::new();
        for n in 0..STREAMS {
            let mut stream = control
                .open_stream(peer, StreamProtocol::new(PROTOCOL))
                .await
                .expect("a accepts bitswap streams");
            let message = BitswapMessage {
                blocks: vec![block(n)],
                ..Default::default()
            };
            let _ = write_frame(&mut stream, &message.encode()).await;
            streams.push(stream);
        }
        // All open at once, then closed, as boxo's workers leave them.
        for mut stream in streams {
            let _ = stream.close().await;
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.behaviour().stats().unsolicited_blocks < STREAMS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {STREAMS} blocks read in 10 s; {} streams refused",
            a.behaviour().stats().unsolicited_blocks,
            a.behaviour().stats().refused_streams,
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), a.next_swarm_event()).await;
    }
    writer.await.expect("the writer finishes");
    assert_eq!(a.behaviour().stats().refused_streams, 0);
}

/// Runs `until` while polling `swarm`, for at most 10 s.
async fn driving<T>(swarm: &mut Swarm<Bitswap>, until: impl std::future::Future<Output = T>) -> T {
    let run = async {
        tokio::pin!(until);
        loop {
            tokio::select! {
                out = &mut until => return out,
                _ = swarm.next_swarm_event() => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("done within 10 s")
}

/// A peer without the bitswap behaviour, connected to `a`, that takes the bitswap streams
/// `a` opens so that a test reads them frame by frame: its id, and those streams.
async fn raw_peer_of(a: &mut Swarm<Bitswap>) -> (PeerId, libp2p_stream::IncomingStreams) {
    let mut raw = Swarm::new_ephemeral_tokio(|_| libp2p_stream::Behaviour::new());
    raw.listen().with_memory_addr_external().await;
    a.connect(&mut raw).await;
    let incoming = raw
        .behaviour()
        .new_control()
        .accept(StreamProtocol::new(PROTOCOL))
        .expect("first registration");
    let peer = *raw.local_peer_id();
    tokio::spawn(raw.loop_on_next());
    (peer, incoming)
}

/// The next frame on `stream` as a wantlist: its CIDs and whether each is a cancel.
async fn next_wantlist(stream: &mut libp2p_swarm::Stream) -> Vec<(Cid, bool)> {
    let frame = read_frame(stream, 1 << 20)
        .await
        .expect("a frame")
        .expect("not the end");
    let message = BitswapMessage::decode(&frame).expect("a bitswap message");
    let entries = message.wantlist.expect("wants").entries;
    entries.into_iter().map(|e| (e.cid, e.cancel)).collect()
}

/// The first want of the next frame on `stream`.
async fn next_want(stream: &mut libp2p_swarm::Stream) -> Cid {
    next_wantlist(stream).await[0].0
}

#[tokio::test]
async fn wants_on_a_stream_the_peer_reset_are_sent_again_on_a_new_one() {
    let mut a = bitswap_swarm();
    let (_, mut incoming) = raw_peer_of(&mut a).await;
    let (first, second) = (block(1).0, block(2).0);

    a.behaviour_mut().want(first).unwrap();
    let (_, mut stream) = driving(&mut a, incoming.next()).await.expect("a stream");
    assert_eq!(driving(&mut a, next_want(&mut stream)).await, first);
    // b resets the stream; a learns it on its next write.
    drop(stream);
    driving(&mut a, tokio::time::sleep(Duration::from_millis(200))).await;

    a.behaviour_mut().want(second).unwrap();
    let (_, mut stream) = driving(&mut a, incoming.next())
        .await
        .expect("a new stream");
    assert_eq!(driving(&mut a, next_want(&mut stream)).await, second);
    assert_eq!(a.behaviour().stats().dropped_messages, 0);
}

#[tokio::test]
async fn withdrawn_wants_reach_each_asked_peer_as_one_message_of_cancels() {
    let mut a = bitswap_swarm();
    let (_, mut incoming) = raw_peer_of(&mut a).await;
    let cids: Vec<Cid> = (0..100).map(|n| block(n).0).collect();

    assert_eq!(a.behaviour_mut().want_all(&cids), Vec::<Cid>::new());
    let (_, mut stream) = driving(&mut a, incoming.next()).await.expect("a stream");
    let wants = driving(&mut a, next_wantlist(&mut stream)).await;
    assert_eq!(wants, cids.iter().map(|c| (*c, false)).collect::<Vec<_>>());

    a.behaviour_mut().cancel_all(&cids);
    let cancels = driving(&mut a, next_wantlist(&mut stream)).await;
    assert_eq!(cancels, cids.iter().map(|c| (*c, true)).collect::<Vec<_>>());
    assert_eq!(a.behaviour().wanted(), 0);
}

#[tokio::test]
async fn blocks_that_came_are_cancelled_at_the_other_peers_in_one_message() {
    let mut a = bitswap_swarm();
    let mut b = bitswap_swarm();
    b.listen().with_memory_addr_external().await;
    a.connect(&mut b).await;
    let (_, mut incoming) = raw_peer_of(&mut a).await;
    let blocks: Vec<(Cid, Vec<u8>)> = (0..50).map(block).collect();
    let cids: Vec<Cid> = blocks.iter().map(|(cid, _)| *cid).collect();
    assert_eq!(a.behaviour_mut().want_all(&cids), Vec::<Cid>::new());

    // b answers with every block in one message; c, asked too, hears one cancel message.
    let mut received = 0;
    while received < cids.len() {
        match next_event(&mut a, &mut b).await {
            Either::Right(Event::Wanted { peer, .. }) => {
                b.behaviour_mut().respond(peer, blocks.clone(), Vec::new())
            }
            Either::Left(Event::Block { .. }) => received += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let (_, mut stream) = driving(&mut a, incoming.next()).await.expect("a stream");
    let wants = driving(&mut a, next_wantlist(&mut stream)).await;
    assert_eq!(wants, cids.iter().map(|c| (*c, false)).collect::<Vec<_>>());
    let cancels = driving(&mut a, next_wantlist(&mut stream)).await;
    assert_eq!(cancels, cids.iter().map(|c| (*c, true)).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_peer_that_does_not_read_holds_at_most_the_queue_bound_of_answers() {
    const BLOCK: usize = 100 * 1024;
    let mut a = Swarm::new_ephemeral_tokio(|_| {
        Bitswap::new(Config {
            max_queued_bytes: 10 * BLOCK + 10 * 1024,
            ..Config::default()
        })
    });
    let (peer, mut incoming) = raw_peer_of(&mut a).await;
    let answer = |a: &mut Swarm<Bitswap>, from: u64, to: u64| {
        for n in from..to {
            a.behaviour_mut()
                .respond(peer, vec![large_block(n, BLOCK)], Vec::new());
        }
    };

    // Fifteen answers: ten fit, five are dropped; the ten go out on a stream b never reads.
    answer(&mut a, 0, 15);
    let (_, _unread) = driving(&mut a, incoming.next()).await.expect("a stream");
    driving(&mut a, tokio::time::sleep(Duration::from_millis(300))).await;
    assert_eq!(a.behaviour().stats().dropped_messages, 5);
    // Those ten are still held, being written: ten more do not fit beside them.
    answer(&mut a, 15, 25);
    driving(&mut a, tokio::time::sleep(Duration::from_millis(300))).await;
    assert_eq!(a.behaviour().stats().dropped_messages, 15);
}
