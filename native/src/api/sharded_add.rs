//! `/add?shard=true`: the added DAG spread over the cluster in shards, as Go ipfs-cluster's
//! sharding adder does and in its formats ([`pinfold_core::sharding`] decides). The files
//! are added through this peer's daemon first (unpinned there); its blocks are then read
//! back in order and each shard's go, with the shard's cluster DAG node, to the peers
//! allocated for that shard before its shard pin is written; the cluster DAG root goes to
//! this peer's daemon, then its pin and the content root's meta pin are written.

use cid::Cid;
use futures::StreamExt;
use libp2p::PeerId;
use pinfold_core::pin::Pin;
use pinfold_core::rest::AddedOutput;
use pinfold_core::sharding::{Shard, Sharder};

use super::block_fanout::{added_blocks, check_placed, BlockFanout};
use super::rest::{pin_in_cluster, ApiError, ApiResult};
use crate::ipfs::Ipfs;
use crate::peer::{Command, PeerHandle};

/// The shard being filled: the peers allocated for it and the calls putting its blocks
/// on the remote ones.
struct OpenShard {
    destinations: Vec<PeerId>,
    fanout: BlockFanout,
}

impl OpenShard {
    /// Allocates a new shard with `template`'s options (Go's `BlockAllocate`).
    async fn open(peer: &PeerHandle, template: &Pin) -> ApiResult<Self> {
        let destinations = {
            let template = Box::new(template.clone());
            peer.ask(|reply| Command::AddDestinations { template, reply })
                .await??
        };
        let remotes: Vec<PeerId> = destinations
            .iter()
            .copied()
            .filter(|p| *p != peer.local)
            .collect();
        let fanout = BlockFanout::open(peer, &remotes);
        Ok(Self {
            destinations,
            fanout,
        })
    }

    /// Puts a block on the shard's destinations (this peer's daemon holds the added ones).
    async fn put(
        &mut self,
        peer: &PeerHandle,
        ipfs: &Ipfs,
        cid: Cid,
        data: Vec<u8>,
        local_copy: bool,
    ) -> ApiResult<()> {
        if local_copy && self.destinations.contains(&peer.local) {
            ipfs.block_put(&cid, data.clone()).await.map_err(|e| {
                ApiError::bad_gateway(format!(
                    "could not put {cid} on this peer's IPFS daemon: {e}"
                ))
            })?;
        }
        self.fanout.send(cid, data).await;
        Ok(())
    }
}

/// Puts the current shard's cluster DAG nodes with its blocks, waits until its peers hold
/// them, and writes its pin; its output (`shard-<n>`, as Go's).
async fn close_shard(
    peer: &PeerHandle,
    ipfs: &Ipfs,
    sharder: &mut Sharder,
    mut open: OpenShard,
) -> ApiResult<AddedOutput> {
    let number = sharder.shards();
    let Shard { nodes, pin } = sharder.flush(open.destinations.clone());
    for node in nodes {
        if let Err(error) = open.put(peer, ipfs, node.cid, node.bytes, true).await {
            open.fanout.abort();
            return Err(error);
        }
    }
    let failed = open.fanout.finish().await;
    check_placed(peer.local, &pin.name, &open.destinations, &failed)?;
    let (cid, size) = (pin.cid, pin.shard_size);
    let pin = pin_in_cluster(peer, pin).await?;
    tracing::info!(shard = number, %cid, size, allocations = ?pin.allocations, "shard completed");
    Ok(AddedOutput {
        name: format!("shard-{number}"),
        cid: cid.to_string(),
        bytes: 0,
        size,
        allocations: pin.allocations.iter().map(PeerId::to_string).collect(),
    })
}

/// Shards the DAG of `root`, which this peer's daemon holds, with `template`'s pin options
/// (its `shard_size` the limit) and writes the add's pins: the shards', the cluster DAG's
/// and the root's meta pin. Returns an output per shard, then the cluster DAG's.
pub(crate) async fn shard_dag(
    peer: &PeerHandle,
    ipfs: &Ipfs,
    root: Cid,
    template: &Pin,
) -> ApiResult<Vec<AddedOutput>> {
    let mut sharder = Sharder::new(template.clone());
    let mut outputs = Vec::new();
    let mut current: Option<OpenShard> = None;
    let read: ApiResult<()> = async {
        let mut blocks = std::pin::pin!(added_blocks(ipfs, root).await?);
        while let Some(block) = blocks.next().await {
            let (cid, data) = block?;
            if !sharder.is_new(&cid) {
                continue;
            }
            let size = data.len() as u64;
            if !sharder
                .fits(size)
                .map_err(|e| ApiError::bad_request(e.to_string()))?
            {
                let full = current.take().expect("a shard with blocks is open");
                outputs.push(close_shard(peer, ipfs, &mut sharder, full).await?);
            }
            if current.is_none() {
                current = Some(OpenShard::open(peer, template).await?);
            }
            sharder.add(cid, size);
            let open = current.as_mut().expect("opened above");
            open.put(peer, ipfs, cid, data, false).await?;
        }
        Ok(())
    }
    .await;
    if let Err(error) = read {
        if let Some(open) = current {
            open.fanout.abort();
        }
        return Err(error);
    }
    if let Some(last) = current.take() {
        outputs.push(close_shard(peer, ipfs, &mut sharder, last).await?);
    }
    let finished = sharder.finish(root);
    for node in &finished.nodes {
        ipfs.block_put(&node.cid, node.bytes.clone())
            .await
            .map_err(|e| {
                ApiError::bad_gateway(format!(
                    "could not put the cluster DAG on this peer's IPFS daemon: {e}"
                ))
            })?;
    }
    let cluster_dag = pin_in_cluster(peer, finished.cluster_dag).await?;
    pin_in_cluster(peer, finished.meta).await?;
    tracing::info!(%root, cluster_dag = %cluster_dag.cid, shards = outputs.len(), size = finished.total_size, "sharded add completed");
    outputs.push(AddedOutput {
        name: cluster_dag.name.clone(),
        cid: cluster_dag.cid.to_string(),
        bytes: 0,
        size: finished.total_size,
        allocations: Vec::new(),
    });
    Ok(outputs)
}
