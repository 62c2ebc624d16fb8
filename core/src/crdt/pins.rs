//! The replica as ipfs-cluster's shared state: pins keyed by their CID's state key, stored
//! as the protobuf `api.Pin` (Go's `state/dsstate`), and the value changes of
//! [`Output::Put`] and [`Output::Delete`] read back as pins added and removed.

use cid::Cid;

use super::replica::{Output, Replica, ReplicaError};
use super::store::Store;
use crate::codec::pin_pb::PinDecodeError;
use crate::codec::state_key::{cid_from_state_key, state_key, StateKeyError};
use crate::pin::Pin;

/// A change of the shared pinset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinEvent {
    /// A pin was added, or its options changed.
    Pinned(Box<Pin>),
    /// A pin was removed.
    Unpinned(Cid),
}

/// Why a state entry could not be read as a pin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinEntryError {
    #[error(transparent)]
    Key(#[from] StateKeyError),
    #[error("the state value of {cid} is not a pin: {source}")]
    Value {
        cid: Cid,
        #[source]
        source: Box<PinDecodeError>,
    },
}

impl PinEvent {
    /// What a replica output means for the pinset; `None` for broadcasts and fetches.
    pub fn from_output(output: &Output) -> Option<Result<Self, PinEntryError>> {
        match output {
            Output::Put { key, value, .. } => {
                Some(read_pin(key, value).map(|pin| PinEvent::Pinned(Box::new(pin))))
            }
            Output::Delete { key } => Some(
                cid_from_state_key(key)
                    .map(PinEvent::Unpinned)
                    .map_err(Into::into),
            ),
            Output::Broadcast(_) | Output::Fetch(_) | Output::FetchAncestors { .. } => None,
        }
    }
}

/// The pin under a state key. As Go does, the CID comes from the key, whatever the value
/// says.
fn read_pin(key: &str, value: &[u8]) -> Result<Pin, PinEntryError> {
    let cid = cid_from_state_key(key)?;
    let mut pin = Pin::from_state_value(value).map_err(|source| PinEntryError::Value {
        cid,
        source: Box::new(source),
    })?;
    pin.cid = cid;
    Ok(pin)
}

impl<S: Store> Replica<S> {
    /// Adds or updates a pin (ipfs-cluster's `state.Add`).
    pub async fn add_pin(&mut self, pin: &Pin, now: u64) -> Result<(), ReplicaError<S::Error>> {
        self.put(&state_key(&pin.cid), pin.to_state_value(), now)
            .await
    }

    /// Removes a pin (ipfs-cluster's `state.Rm`); `false` if it was not pinned.
    pub async fn remove_pin(
        &mut self,
        cid: &Cid,
        now: u64,
    ) -> Result<bool, ReplicaError<S::Error>> {
        self.delete(&state_key(cid), now).await
    }

    /// The pin of `cid`, if the set holds one that reads as a pin.
    pub async fn pin(&self, cid: &Cid) -> Result<Option<Pin>, ReplicaError<S::Error>> {
        let key = state_key(cid);
        Ok(self
            .get(&key)
            .await?
            .and_then(|value| read_pin(&key, &value).ok()))
    }

    /// Up to `limit` pins in state-key order, after the pin of `after`. Page through the
    /// whole set by passing the last CID of each page; a page shorter than `limit` is the
    /// last. Entries that do not read as pins are left out, as Go's state listing does.
    pub async fn pins(
        &self,
        after: Option<&Cid>,
        limit: usize,
    ) -> Result<Vec<Pin>, ReplicaError<S::Error>> {
        let mut pins = Vec::new();
        let mut cursor = after.map(state_key);
        while pins.len() < limit {
            let wanted = limit - pins.len();
            let values = self.values(cursor.as_deref(), wanted).await?;
            let exhausted = values.len() < wanted;
            cursor = values.last().map(|(key, _)| key.clone());
            pins.extend(
                values
                    .iter()
                    .filter_map(|(key, value)| read_pin(key, value).ok()),
            );
            if exhausted {
                break;
            }
        }
        Ok(pins)
    }
}
