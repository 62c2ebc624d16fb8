//! Putting an add's blocks on other peers' IPFS daemons, as Go ipfs-cluster's
//! `BlockStreamer`: one `IPFSConnector.BlockStream` call per destination (pinfold and Go
//! peers serve it alike), fed at the pace of the slowest destination that still takes them;
//! the blocks have been put where at least one destination holds them all.

use std::time::Duration;

use cid::Cid;
use futures::stream::{self, StreamExt};
use libp2p::PeerId;
use pinfold_core::codec::gorpc::api::NodeWithMeta;
use pinfold_core::codec::gorpc::ServiceId;
use pinfold_core::codec::msgpack::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::rest::{ApiError, ApiResult};
use crate::ipfs::Ipfs;
use crate::peer::PeerHandle;

/// Go's `adder.ErrBlockAdder`: no destination took the blocks.
pub(crate) const NO_DESTINATION_TOOK_THE_BLOCKS: &str = "failed to put block on all destinations";

/// Blocks queued for one destination before the slowest holds the others back.
const BLOCKS_QUEUED_PER_DESTINATION: usize = 16;

/// How long a destination may take nothing before it is left out.
const DESTINATION_STALL: Duration = Duration::from_secs(30);

/// Blocks on their way to remote destinations' daemons.
pub(crate) struct BlockFanout {
    senders: Vec<mpsc::Sender<Value>>,
    calls: Vec<(PeerId, JoinHandle<Result<(), String>>)>,
}

impl BlockFanout {
    /// Opens a `BlockStream` call to each of `remotes`.
    pub(crate) fn open(peer: &PeerHandle, remotes: &[PeerId]) -> Self {
        let mut senders = Vec::with_capacity(remotes.len());
        let mut calls = Vec::with_capacity(remotes.len());
        for &remote in remotes {
            let (sender, receiver) = mpsc::channel::<Value>(BLOCKS_QUEUED_PER_DESTINATION);
            let rpc = peer.rpc.clone();
            let call = tokio::spawn(async move {
                let blocks = Box::pin(stream::unfold(receiver, |mut receiver| async move {
                    receiver.recv().await.map(|block| (block, receiver))
                }));
                let service = ServiceId::new("IPFSConnector", "BlockStream");
                rpc.stream_from(remote, service, blocks, DESTINATION_STALL)
                    .await
            });
            senders.push(sender);
            calls.push((remote, call));
        }
        Self { senders, calls }
    }

    /// Sends a block to every destination still taking them; a destination that stalls
    /// or ended its call is left out of the rest. `false` once none is left.
    pub(crate) async fn send(&mut self, cid: Cid, data: Vec<u8>) -> bool {
        let value = NodeWithMeta {
            cumulative_size: data.len() as u64,
            data,
            cid,
        }
        .to_value();
        let mut next = 0;
        while next < self.senders.len() {
            let sent =
                tokio::time::timeout(DESTINATION_STALL, self.senders[next].send(value.clone()));
            if matches!(sent.await, Ok(Ok(()))) {
                next += 1;
            } else {
                self.senders.swap_remove(next);
            }
        }
        !self.senders.is_empty()
    }

    /// Ends the calls unfinished: dropping the senders instead would end them as if every
    /// block were sent.
    pub(crate) fn abort(self) {
        for (_, call) in &self.calls {
            call.abort();
        }
    }

    /// Ends the calls once every block is sent; the destinations that failed, with why.
    pub(crate) async fn finish(self) -> Vec<(PeerId, String)> {
        drop(self.senders);
        let mut failed = Vec::new();
        for (remote, call) in self.calls {
            match call.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => failed.push((remote, error)),
                Err(error) => failed.push((remote, error.to_string())),
            }
        }
        failed
    }
}

/// Whether the blocks of `what` were placed: at least one of `destinations` holds them,
/// this peer (whose daemon holds them already) or a remote not among the `failed` ones,
/// which are logged.
pub(crate) fn check_placed(
    local: PeerId,
    what: &str,
    destinations: &[PeerId],
    failed: &[(PeerId, String)],
) -> ApiResult<()> {
    for (destination, error) in failed {
        tracing::warn!(what, %destination, %error, "could not put the added blocks on a destination");
    }
    if destinations.is_empty() {
        return Err(ApiError::internal(format!(
            "{NO_DESTINATION_TOOK_THE_BLOCKS}: no peer to allocate {what} to"
        )));
    }
    let held = destinations
        .iter()
        .any(|d| *d == local || !failed.iter().any(|(f, _)| f == d));
    if !held {
        let reasons: Vec<String> = failed.iter().map(|(p, e)| format!("{p}: {e}")).collect();
        return Err(ApiError::internal(format!(
            "{NO_DESTINATION_TOOK_THE_BLOCKS} ({})",
            reasons.join("; ")
        )));
    }
    Ok(())
}

/// The blocks of `root`'s DAG, read back from this peer's daemon (`dag/export`: each once,
/// the root first).
pub(crate) async fn added_blocks(
    ipfs: &Ipfs,
    root: Cid,
) -> ApiResult<impl futures::Stream<Item = ApiResult<(Cid, Vec<u8>)>>> {
    let unreadable = move |error: crate::ipfs::IpfsError| {
        ApiError::bad_gateway(format!(
            "could not read the added blocks of {root} from this peer's IPFS daemon: {error}"
        ))
    };
    let blocks = ipfs.dag_export(&root).await.map_err(unreadable)?;
    Ok(blocks.map(move |block| block.map_err(unreadable)))
}

/// Puts the blocks of `root`'s DAG, which this peer's daemon holds, on the daemons of
/// `remotes` (the destinations other than this peer); fails when none of `destinations`
/// holds them at the end.
pub(crate) async fn place_blocks(
    peer: &PeerHandle,
    ipfs: &Ipfs,
    root: Cid,
    destinations: &[PeerId],
    remotes: &[PeerId],
) -> ApiResult<()> {
    let what = root.to_string();
    if destinations.is_empty() || remotes.is_empty() {
        return check_placed(peer.local, &what, destinations, &[]);
    }
    let mut fanout = BlockFanout::open(peer, remotes);
    let sent: Result<(), ApiError> = async {
        let mut blocks = std::pin::pin!(added_blocks(ipfs, root).await?);
        while let Some(block) = blocks.next().await {
            let (cid, data) = block?;
            if !fanout.send(cid, data).await {
                break;
            }
        }
        Ok(())
    }
    .await;
    if let Err(error) = sent {
        fanout.abort();
        return Err(error);
    }
    let failed = fanout.finish().await;
    check_placed(peer.local, &what, destinations, &failed)
}
