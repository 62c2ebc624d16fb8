//! `/pinfold/psk-auth/1.0.0`: proof of the cluster secret on connections pnet cannot wrap
//! (WebRTC, relayed circuits).
//!
//! One stream, opened by the connection's dialer, carries three fixed-size messages:
//!
//! 1. dialer → listener: the dialer's fresh nonce (32 bytes);
//! 2. listener → dialer: its answer to that nonce, then its own fresh nonce (64 bytes);
//! 3. dialer → listener: its answer to the listener's nonce (32 bytes), then the stream closes.
//!
//! An answer is `HMAC-SHA256(secret, LABEL || challenger peer id || responder peer id ||
//! nonce)`, each part length-prefixed. The peer ids are the ones the connection's security
//! handshake authenticated, so an answer cannot be replayed on another connection, and the
//! fixed order (challenger first) means a peer cannot have its own challenge answered by
//! reflecting it: the listener's answer never serves as the dialer's.

use hmac::{Hmac, Mac};
use libp2p_identity::PeerId;
use sha2::Sha256;

use crate::codec::secret::ClusterSecret;

/// The protocol id.
pub const PROTOCOL: &str = "/pinfold/psk-auth/1.0.0";

/// Bytes of a challenge nonce.
pub const NONCE_BYTES: usize = 32;

/// Bytes of an answer.
pub const ANSWER_BYTES: usize = 32;

/// Bytes of the listener's reply: its answer, then its nonce.
pub const REPLY_BYTES: usize = ANSWER_BYTES + NONCE_BYTES;

/// Domain separation: these MACs are never valid anywhere else.
const LABEL: &[u8] = b"pinfold psk-auth v1 answer";

/// A challenge: a nonce the challenger drew for one connection.
pub type Nonce = [u8; NONCE_BYTES];

/// An answer to a challenge.
pub type Answer = [u8; ANSWER_BYTES];

fn mac(
    secret: &ClusterSecret,
    challenger: &PeerId,
    responder: &PeerId,
    nonce: &Nonce,
) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    for part in [
        LABEL,
        &challenger.to_bytes(),
        &responder.to_bytes(),
        nonce.as_slice(),
    ] {
        // Length prefixes keep the concatenation unambiguous.
        mac.update(&(part.len() as u32).to_be_bytes());
        mac.update(part);
    }
    mac
}

/// The responder's answer to `challenger`'s `nonce`.
pub fn answer(
    secret: &ClusterSecret,
    challenger: &PeerId,
    responder: &PeerId,
    nonce: &Nonce,
) -> Answer {
    mac(secret, challenger, responder, nonce)
        .finalize()
        .into_bytes()
        .into()
}

/// Whether `answer` proves that `responder` knows the secret (constant-time comparison).
pub fn verify(
    secret: &ClusterSecret,
    challenger: &PeerId,
    responder: &PeerId,
    nonce: &Nonce,
    answer: &Answer,
) -> bool {
    mac(secret, challenger, responder, nonce)
        .verify_slice(answer)
        .is_ok()
}

/// The listener's reply (message 2).
pub fn encode_reply(answer: &Answer, nonce: &Nonce) -> [u8; REPLY_BYTES] {
    let mut reply = [0u8; REPLY_BYTES];
    reply[..ANSWER_BYTES].copy_from_slice(answer);
    reply[ANSWER_BYTES..].copy_from_slice(nonce);
    reply
}

/// The answer and the nonce of a listener's reply.
pub fn decode_reply(reply: &[u8; REPLY_BYTES]) -> (Answer, Nonce) {
    let (answer, nonce) = reply.split_at(ANSWER_BYTES);
    (
        answer.try_into().expect("ANSWER_BYTES"),
        nonce.try_into().expect("NONCE_BYTES"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::peer;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn an_answer_verifies_only_for_its_secret_ids_and_nonce(
            secret in any::<[u8; 32]>(),
            other_secret in any::<[u8; 32]>(),
            nonce in any::<[u8; 32]>(),
            other_nonce in any::<[u8; 32]>(),
            flip in 0usize..ANSWER_BYTES * 8,
        ) {
            let secret = ClusterSecret::from_bytes(secret);
            let (a, b, c) = (peer(1), peer(2), peer(3));
            let given = answer(&secret, &a, &b, &nonce);
            prop_assert!(verify(&secret, &a, &b, &nonce, &given));
            // Reflected: the same ids in the other roles.
            prop_assert!(!verify(&secret, &b, &a, &nonce, &given));
            // Replayed to another challenger or from another responder.
            prop_assert!(!verify(&secret, &c, &b, &nonce, &given));
            prop_assert!(!verify(&secret, &a, &c, &nonce, &given));
            if other_nonce != nonce {
                prop_assert!(!verify(&secret, &a, &b, &other_nonce, &given));
            }
            if other_secret != *secret.as_bytes() {
                prop_assert!(!verify(&ClusterSecret::from_bytes(other_secret), &a, &b, &nonce, &given));
            }
            prop_assert_eq!(decode_reply(&encode_reply(&given, &other_nonce)), (given, other_nonce));
            let mut tampered = given;
            tampered[flip / 8] ^= 1 << (flip % 8);
            prop_assert!(!verify(&secret, &a, &b, &nonce, &tampered));
        }
    }

    /// An exchange recorded on one connection (dialer a, listener b) and replayed by a
    /// peer without the secret: to b on a new connection (b draws a fresh nonce), and to
    /// another listener c. Every replayed answer is refused.
    #[test]
    fn a_recorded_exchange_replayed_on_another_connection_is_refused() {
        let secret = ClusterSecret::from_bytes([3; 32]);
        let (a, b, c, m) = (peer(1), peer(2), peer(3), peer(4));
        // The recorded connection: a's nonce, b's reply, a's answer.
        let (a_nonce, b_nonce) = ([11; NONCE_BYTES], [12; NONCE_BYTES]);
        let reply = encode_reply(&answer(&secret, &a, &b, &a_nonce), &b_nonce);
        let a_answer = answer(&secret, &b, &a, &b_nonce);
        assert!(verify(&secret, &b, &a, &b_nonce, &a_answer));
        let (b_answer, _) = decode_reply(&reply);
        // m (its own peer id, which the security handshake authenticates) replays a's
        // messages to b, which draws a new nonce, and to c.
        let fresh = [13; NONCE_BYTES];
        for (listener, nonce) in [(b, fresh), (c, fresh), (b, b_nonce)] {
            assert!(!verify(&secret, &listener, &m, &nonce, &a_answer));
        }
        // Posing as the listener to a dialer: b's recorded reply answers a's old nonce only.
        assert!(!verify(&secret, &a, &m, &a_nonce, &b_answer));
        assert!(!verify(&secret, &c, &b, &[14; NONCE_BYTES], &b_answer));
    }

    /// A fixed vector, so that a change to the construction cannot pass unnoticed (browsers
    /// and native peers of different versions must agree).
    #[test]
    fn golden_answer() {
        let secret = ClusterSecret::from_bytes([7; 32]);
        let got = answer(&secret, &peer(1), &peer(2), &[9; 32]);
        assert_eq!(hex::encode(got), GOLDEN);
    }

    /// Computed independently: Python's `hmac` over the same length-prefixed parts.
    const GOLDEN: &str = "18ddea6413a747794bbf1ff5f4212a3f94a7c5ea20427f83b20577984851da68";
}
