//! Datastore keys of the cluster state and of DAG blocks, as go-datastore's `dshelp` writes
//! them: `/` followed by RFC 4648 base32 (upper case, no padding).

use cid::Cid;
use data_encoding::BASE32_NOPAD;

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateKeyError {
    #[error("state key {0:?} does not start with '/'")]
    NoLeadingSlash(String),
    #[error("state key {key:?} is not base32: {detail}")]
    NotBase32 { key: String, detail: String },
    #[error("state key {key:?} does not hold a CID: {detail}")]
    NotACid { key: String, detail: String },
}

/// The state key of a pinned CID: `/` + base32 of the CID's binary form. This is the
/// `key` of the pin's CRDT elements.
pub fn state_key(cid: &Cid) -> String {
    format!("/{}", BASE32_NOPAD.encode(&cid.to_bytes()))
}

/// The CID a state key names (inverse of [`state_key`]).
pub fn cid_from_state_key(key: &str) -> Result<Cid, StateKeyError> {
    let body = key
        .strip_prefix('/')
        .ok_or_else(|| StateKeyError::NoLeadingSlash(key.to_owned()))?;
    let bytes = BASE32_NOPAD
        .decode(body.as_bytes())
        .map_err(|e| StateKeyError::NotBase32 {
            key: key.to_owned(),
            detail: e.to_string(),
        })?;
    Cid::try_from(bytes.as_slice()).map_err(|e| StateKeyError::NotACid {
        key: key.to_owned(),
        detail: e.to_string(),
    })
}

/// The id of a DAG block (`dshelp.MultihashToDsKey`): `/` + base32 of the block's multihash.
/// Elements merged from a delta node take this id of the node that carried them.
pub fn block_id(cid: &Cid) -> String {
    format!("/{}", BASE32_NOPAD.encode(&cid.hash().to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::dagpb::tests::arb_cid;
    use proptest::prelude::*;

    /// Golden vector: a CIDv0 is `12 20 <digest>`; base32 of `12 20 ...` starts with
    /// "CIQ", the prefix every v0 pin key in a Go cluster's datastore has. The full key
    /// was computed with Python's `base64.b32encode`, padding stripped.
    #[test]
    fn golden_state_keys() {
        let v0: Cid = "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR"
            .parse()
            .unwrap();
        assert_eq!(state_key(&v0), GOLDEN_V0_KEY);
        assert_eq!(cid_from_state_key(GOLDEN_V0_KEY).unwrap(), v0);
        // For a CIDv0 the block id equals the state key: its bytes are its multihash.
        assert_eq!(block_id(&v0), GOLDEN_V0_KEY);

        let v1: Cid = "bafybeicpynjs4kxvbraf5ynxoyjwabfzzcqa5oz6i2orc5h426qh362x6m"
            .parse()
            .unwrap();
        assert_eq!(state_key(&v1), GOLDEN_V1_KEY);
        assert_eq!(block_id(&v1), GOLDEN_V1_BLOCK_ID);
    }

    const GOLDEN_V0_KEY: &str = "/CIQMHRDTH3EK77IGZ6PJ75IP7RV42LWILJQXAACLW4EWNHBR32KDSGQ";
    const GOLDEN_V1_KEY: &str = "/AFYBEICPYNJS4KXVBRAF5YNXOYJWABFZZCQA5OZ6I2ORC5H426QH362X6M";
    const GOLDEN_V1_BLOCK_ID: &str = "/CIQE7Q2TFYVPKDCAL3Q3O5QTMACLTSFAB25T4RU5CF2PZV5APX5VP4Y";

    #[test]
    fn bad_keys_are_errors() {
        assert!(matches!(
            cid_from_state_key("CIQ"),
            Err(StateKeyError::NoLeadingSlash(_))
        ));
        assert!(matches!(
            cid_from_state_key("/ciqa"),
            Err(StateKeyError::NotBase32 { .. })
        ));
        assert!(matches!(
            cid_from_state_key("/AAAA"),
            Err(StateKeyError::NotACid { .. })
        ));
    }

    proptest! {
        #[test]
        fn state_key_round_trip(cid in arb_cid()) {
            prop_assert_eq!(cid_from_state_key(&state_key(&cid)).unwrap(), cid);
        }

        #[test]
        fn parser_never_panics(key in ".{0,80}") {
            let _ = cid_from_state_key(&key);
        }
    }
}
