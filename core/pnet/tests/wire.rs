//! The stream against rust-libp2p's own pnet, both ways, through a socket that takes few
//! bytes at a time.

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p_pnet::{PnetConfig, PreSharedKey};
use pinfold_pnet::{handshake, MAX_WRITE};
use proptest::prelude::*;
use tokio_util::compat::TokioAsyncReadCompatExt;

const KEY: [u8; 32] = [7; 32];

/// Sends `message` from a [`pinfold_pnet::PnetStream`] to rust-libp2p's pnet and back
/// again; returns what each end read. `buffer` bounds the bytes in flight each way.
async fn round_trip(message: &[u8], buffer: usize, their_key: [u8; 32]) -> (Vec<u8>, Vec<u8>) {
    let (ours, theirs) = tokio::io::duplex(buffer);
    let (ours, theirs) = futures::join!(
        handshake(Box::new(ours.compat()), &KEY),
        PnetConfig::new(PreSharedKey::new(their_key)).handshake(theirs.compat()),
    );
    let (mut ours, mut theirs) = (ours.unwrap(), theirs.unwrap());
    let len = message.len();
    let there = async {
        ours.write_all(message).await.unwrap();
        ours.flush().await.unwrap();
        let mut back = vec![0; len];
        ours.read_exact(&mut back).await.unwrap();
        back
    };
    let echo = async {
        let mut got = vec![0; len];
        theirs.read_exact(&mut got).await.unwrap();
        theirs.write_all(&got).await.unwrap();
        theirs.flush().await.unwrap();
        got
    };
    let (back, got) = futures::join!(there, echo);
    (got, back)
}

fn run<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn speaks_rust_libp2ps_pnet_both_ways_across_writes_larger_than_one() {
    let message: Vec<u8> = (0..3 * MAX_WRITE + 17)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let (got, back) = run(round_trip(&message, 1000, KEY));
    assert_eq!(got, message);
    assert_eq!(back, message);
}

#[test]
fn another_key_reads_noise() {
    let message = b"/multistream/1.0.0\n".repeat(10);
    let (got, back) = run(round_trip(&message, 4096, [8; 32]));
    assert_ne!(got, message);
    assert_ne!(back, message);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn any_message_arrives_whole_through_any_socket_buffer(
        message in proptest::collection::vec(any::<u8>(), 1..20_000),
        buffer in 1usize..5000,
    ) {
        let (got, back) = run(round_trip(&message, buffer, KEY));
        prop_assert_eq!(&got, &message);
        prop_assert_eq!(&back, &message);
    }
}
