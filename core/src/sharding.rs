//! A sharded add's decisions, as Go ipfs-cluster's sharding adder makes them
//! (`adder/sharding`): the added blocks go, in the order they come, into shards of at most
//! the pin's `shard_size` bytes, each shard on peers allocated for it alone; each shard
//! gets a cluster DAG node linking its blocks and a shard pin (depth 1) on its peers; at
//! the end a cluster DAG root links the shards and is pinned directly everywhere, and the
//! content root gets a meta pin, which is never pinned itself.
//!
//! The driver puts the blocks and nodes where [`Sharder`] says and writes its pins; the
//! sharder does no IO.

use std::collections::HashSet;

use cid::Cid;
use libp2p_identity::PeerId;

use crate::codec::cluster_dag::{self, DagNode};
use crate::pin::{Pin, PinType};

/// The shard size when the request sets none, as Go's `api.DefaultShardSize`.
pub const DEFAULT_SHARD_SIZE: u64 = 100 * 1024 * 1024;

/// Why a block cannot be sharded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardingError {
    /// Go's message: a block alone is at least the shard size.
    #[error("block doesn't fit in empty shard: shard size too small? (block {block} bytes, shard size {limit})")]
    BlockTooBig { block: u64, limit: u64 },
}

/// A shard closed by [`Sharder::flush`]: the cluster DAG nodes to put with its blocks, and
/// its pin.
#[derive(Clone, Debug)]
pub struct Shard {
    /// Root first.
    pub nodes: Vec<DagNode>,
    pub pin: Pin,
}

/// What ends a sharded add: the cluster DAG's nodes (root first), its pin, and the meta pin
/// of the content root, to be written in that order after the shards'.
#[derive(Clone, Debug)]
pub struct Finished {
    pub nodes: Vec<DagNode>,
    pub cluster_dag: Pin,
    pub meta: Pin,
    /// The bytes of all the shards' blocks.
    pub total_size: u64,
}

/// Fills shards with blocks; see the module.
#[derive(Debug)]
pub struct Sharder {
    /// The options every pin of the add takes (its `shard_size` is the limit).
    template: Pin,
    seen: HashSet<Cid>,
    links: Vec<Cid>,
    size: u64,
    shards: Vec<Cid>,
    total_size: u64,
}

impl Sharder {
    /// A sharder for an add pinned with `template`'s options, its `shard_size` the limit
    /// ([`DEFAULT_SHARD_SIZE`] when 0).
    pub fn new(mut template: Pin) -> Self {
        if template.shard_size == 0 {
            template.shard_size = DEFAULT_SHARD_SIZE;
        }
        Self {
            template,
            seen: HashSet::new(),
            links: Vec::new(),
            size: 0,
            shards: Vec::new(),
            total_size: 0,
        }
    }

    /// Where a block of `size` bytes goes: `Ok(true)`, into the current shard (then
    /// [`Sharder::add`] it); `Ok(false)`, the current shard is full: [`Sharder::flush`] it
    /// first. As Go's, a shard holds less than the shard size.
    pub fn fits(&self, size: u64) -> Result<bool, ShardingError> {
        let limit = self.template.shard_size;
        if self.size.saturating_add(size) < limit {
            Ok(true)
        } else if self.links.is_empty() {
            Err(ShardingError::BlockTooBig { block: size, limit })
        } else {
            Ok(false)
        }
    }

    /// Whether `cid` is new to this add (a block is put in one shard only).
    pub fn is_new(&self, cid: &Cid) -> bool {
        !self.seen.contains(cid)
    }

    /// Puts the block `cid` of `size` bytes in the current shard (see [`Sharder::fits`]).
    pub fn add(&mut self, cid: Cid, size: u64) {
        if self.seen.insert(cid) {
            self.links.push(cid);
            self.size += size;
        }
    }

    /// Whether the current shard holds no block yet.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// How many shards were closed so far: the next one's number.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Closes the current shard, whose blocks went to `allocations`: its nodes and its pin
    /// (`<name>-shard-<n>`, depth 1, referencing the previous shard, `shard_size` its
    /// size), as Go's shard `Flush` makes them.
    pub fn flush(&mut self, allocations: Vec<PeerId>) -> Shard {
        let nodes = cluster_dag::nodes(&self.links);
        let root = nodes[0].cid;
        let number = self.shards.len();
        let pin = Pin {
            cid: root,
            pin_type: PinType::Shard,
            allocations,
            max_depth: if nodes.len() > 1 { 2 } else { 1 },
            reference: self.shards.last().copied(),
            name: format!("{}-shard-{number}", self.template.name),
            shard_size: self.size,
            user_allocations: Vec::new(),
            pin_update: None,
            ..self.template.clone()
        };
        self.shards.push(root);
        self.total_size += self.size;
        self.links.clear();
        self.size = 0;
        Shard { nodes, pin }
    }

    /// Ends the add of the content `root` once every shard is flushed: the cluster DAG
    /// linking the shards, its pin (`<name>-clusterDAG`, directly, everywhere, referencing
    /// the root) and the root's meta pin (referencing the cluster DAG), as Go's `Finalize`.
    pub fn finish(self, root: Cid) -> Finished {
        debug_assert!(self.links.is_empty(), "the last shard is flushed first");
        let nodes = cluster_dag::nodes(&self.shards);
        let cluster_dag = Pin {
            cid: nodes[0].cid,
            pin_type: PinType::ClusterDag,
            allocations: Vec::new(),
            max_depth: 0,
            reference: Some(root),
            replication_factor_min: -1,
            replication_factor_max: -1,
            name: format!("{}-clusterDAG", self.template.name),
            user_allocations: Vec::new(),
            pin_update: None,
            ..self.template.clone()
        };
        let meta = Pin {
            cid: root,
            pin_type: PinType::Meta,
            allocations: Vec::new(),
            max_depth: 0,
            reference: Some(nodes[0].cid),
            user_allocations: Vec::new(),
            pin_update: None,
            ..self.template
        };
        Finished {
            nodes,
            cluster_dag,
            meta,
            total_size: self.total_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::dagpb::dag_pb_cid;
    use crate::node::plan::check_pin_type;
    use crate::pin::UnixTime;
    use crate::test_support::peer;

    fn template(shard_size: u64) -> Pin {
        let mut pin = Pin::new(Cid::default(), UnixTime(1));
        pin.name = "big".into();
        pin.shard_size = shard_size;
        pin.replication_factor_min = 1;
        pin.replication_factor_max = 2;
        pin
    }

    /// Shards `blocks` (sizes) as a driver would, each shard on `peer(n)`.
    fn shard(sharder: &mut Sharder, blocks: &[u64]) -> Vec<Shard> {
        let mut shards = Vec::new();
        for (n, &size) in blocks.iter().enumerate() {
            let cid = dag_pb_cid(format!("block {n}").as_bytes());
            if !sharder.fits(size).unwrap() {
                let number = sharder.shards() as u8;
                shards.push(sharder.flush(vec![peer(number)]));
            }
            sharder.add(cid, size);
        }
        let number = sharder.shards() as u8;
        shards.push(sharder.flush(vec![peer(number)]));
        shards
    }

    #[test]
    fn blocks_fill_shards_below_the_size_and_the_pins_chain_as_go_s() {
        let mut sharder = Sharder::new(template(600));
        let shards = shard(&mut sharder, &[262, 262, 262, 262, 262, 100]);
        let sizes: Vec<u64> = shards.iter().map(|s| s.pin.shard_size).collect();
        assert_eq!(sizes, [524, 524, 362]);
        assert_eq!(shards[0].pin.name, "big-shard-0");
        assert_eq!(shards[0].pin.reference, None);
        assert_eq!(shards[2].pin.reference, Some(shards[1].pin.cid));
        assert_eq!(shards[1].pin.allocations, [peer(1)]);
        for shard in &shards {
            assert_eq!(shard.pin.pin_type, PinType::Shard);
            assert_eq!(shard.pin.max_depth, 1);
            assert_eq!(shard.nodes.len(), 1);
            assert_eq!(
                (
                    shard.pin.replication_factor_min,
                    shard.pin.replication_factor_max
                ),
                (1, 2)
            );
            check_pin_type(&shard.pin, None).unwrap();
        }
        let root = dag_pb_cid(b"root");
        let finished = sharder.finish(root);
        assert_eq!(finished.total_size, 524 + 524 + 362);
        let linked = cluster_dag::links(&finished.nodes[0].bytes).unwrap();
        assert_eq!(linked, shards.iter().map(|s| s.pin.cid).collect::<Vec<_>>());
        assert_eq!(finished.cluster_dag.name, "big-clusterDAG");
        assert_eq!(finished.cluster_dag.reference, Some(root));
        assert_eq!(finished.cluster_dag.replication_factor_min, -1);
        assert_eq!(finished.meta.cid, root);
        assert_eq!(finished.meta.reference, Some(finished.cluster_dag.cid));
        assert_eq!(finished.meta.name, "big");
        check_pin_type(&finished.cluster_dag, None).unwrap();
        check_pin_type(&finished.meta, None).unwrap();
    }

    #[test]
    fn a_block_is_sharded_once_and_one_too_big_is_refused() {
        let mut sharder = Sharder::new(template(1000));
        let cid = dag_pb_cid(b"twice");
        sharder.add(cid, 10);
        assert!(!sharder.is_new(&cid));
        sharder.add(cid, 10);
        assert_eq!(sharder.flush(Vec::new()).pin.shard_size, 10);
        assert_eq!(
            sharder.fits(1000),
            Err(ShardingError::BlockTooBig {
                block: 1000,
                limit: 1000
            })
        );
        assert_eq!(
            Sharder::new(template(0)).template.shard_size,
            DEFAULT_SHARD_SIZE
        );
    }
}
