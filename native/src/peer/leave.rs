//! Leaving the cluster on shutdown (`cluster.leave_on_shutdown`, `daemon --leave`): the
//! peer asks another trusted pinfold peer to remove it (`Cluster.PeerRemove`), which
//! re-allocates the pins allocated to it among the others and publishes that, so its
//! pins keep their replication though repinning is off. Go peers refuse removals under
//! CRDT consensus, so they are not asked.

use std::time::Duration;

use libp2p::futures::StreamExt;
use libp2p::PeerId;
use pinfold_core::monitor;

use super::{now_nanos, Peer};

/// How long a leaving peer waits for another to take its removal before it stops anyway.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(30);

impl Peer {
    /// Asks the other trusted pinfold peers, one after the other, to remove this peer,
    /// driving the swarm meanwhile; returns once one did, all refused, or
    /// [`LEAVE_TIMEOUT`] passed. Logs what happened.
    pub(super) async fn leave_cluster(&mut self) -> anyhow::Result<()> {
        let candidates = self.leave_candidates();
        if candidates.is_empty() {
            tracing::warn!("leaving: no other trusted pinfold peer is live to hand this peer's pins to; they stay allocated to it");
            return Ok(());
        }
        tracing::info!(
            peers = candidates.len(),
            "leaving the cluster: asking another peer to re-allocate this peer's pins"
        );
        let (rpc, local) = (self.rpc.clone(), self.node.local());
        let removal = async move {
            for peer in candidates {
                match rpc.peer_remove(peer, local).await {
                    Ok(()) => return Some(peer),
                    Err(error) => {
                        tracing::debug!(%peer, %error, "this peer did not take the removal")
                    }
                }
            }
            None
        };
        let removal = tokio::time::timeout(LEAVE_TIMEOUT, removal);
        tokio::pin!(removal);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await?,
                Some(report) = self.background.recv() => self.on_background(report).await?,
                outcome = &mut removal => {
                    match outcome {
                        Ok(Some(peer)) => tracing::info!(%peer, "left the cluster: that peer re-allocated this peer's pins"),
                        Ok(None) => tracing::warn!("could not leave the cluster: no peer took the removal; this peer's pins stay allocated to it"),
                        Err(_) => tracing::warn!("could not leave the cluster within {LEAVE_TIMEOUT:?}; this peer's pins stay allocated to it"),
                    }
                    return Ok(());
                }
            }
            self.apply_effects().await?;
        }
    }

    /// The live trusted peers besides this one that speak pinfold's peer requests.
    fn leave_candidates(&self) -> Vec<PeerId> {
        let (local, trust) = (self.node.local(), &self.node.config().trust);
        self.node
            .monitor()
            .latest_metrics(monitor::PING_METRIC, now_nanos())
            .into_iter()
            .map(|ping| ping.peer)
            .filter(|peer| *peer != local && trust.trusts(peer) && !self.rpc_only.contains(peer))
            .collect()
    }
}
