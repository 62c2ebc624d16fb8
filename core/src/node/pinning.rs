//! The node's pinset commands and the cluster decisions behind them: pinning with an
//! allocation, pin updates, removing a peer (its pins re-allocated), expired pins, the
//! recover sweep, and this peer's statuses page by page.

use cid::Cid;
use libp2p_identity::PeerId;

use crate::allocator;
use crate::codec::peer_request::StatusSummary;
use crate::crdt::{Replica, ReplicaError, Store};
use crate::pin::{Pin, PinType, UnixTime};
use crate::tracker::{
    DaemonPins, IpfsPinType, OpId, PinInfo, PinInfoShort, StatusFilter, TrackerStatus,
};

use super::{ms, plan, Node};

/// Pins read from the store per page.
pub const PAGE: usize = 1000;
// A page of pins is asked of other peers in one status request.
const _: () = assert!(PAGE <= crate::codec::peer_request::MAX_CIDS);

/// Why a pinset command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error(
        "this peer is a follower (cluster.role) and does not write to the pinset; send writes to a full peer"
    )]
    ReadOnly,
    #[error("{0} is not pinned in the cluster")]
    NotFound(Cid),
    #[error("{0}")]
    BadRequest(String),
    #[error("the pinset store failed: {0}")]
    Store(String),
    /// The cluster cannot take writes now (under Raft: no leader, or no majority).
    #[error("{0}")]
    Unavailable(String),
    /// The node's task is gone (the peer is shutting down).
    #[error("the peer is shutting down")]
    Stopped,
}

impl<E: std::error::Error + 'static> From<ReplicaError<E>> for CommandError {
    fn from(error: ReplicaError<E>) -> Self {
        CommandError::Store(error.to_string())
    }
}

/// How the IPFS daemon pins a CID, or why it could not tell.
pub type DaemonAnswer = Result<Option<IpfsPinType>, String>;

/// Where the page after a full [`PAGE`] of pins starts; `None` after the last page.
pub fn next_cursor(page: &[Pin]) -> Option<Cid> {
    page.last()
        .filter(|_| page.len() == PAGE)
        .map(|pin| pin.cid)
}

/// Calls `each` with every page of `replica`'s pinset, in key order; returns how many
/// pins there were.
pub async fn for_each_page<S: Store, E>(
    replica: &Replica<S>,
    mut each: impl FnMut(&[Pin]) -> Result<(), E>,
) -> Result<usize, E>
where
    E: From<ReplicaError<S::Error>>,
{
    let (mut count, mut after) = (0usize, None);
    loop {
        let page = replica.pins(after.as_ref(), PAGE).await?;
        each(&page)?;
        count += page.len();
        match next_cursor(&page) {
            Some(next) => after = Some(next),
            None => return Ok(count),
        }
    }
}

type StoreResult<T, S> = std::result::Result<T, ReplicaError<<S as Store>::Error>>;

impl<S: Store> Node<S> {
    /// A page of at most `limit` pins after `after`, in key order.
    pub async fn pins(&self, after: Option<&Cid>, limit: usize) -> StoreResult<Vec<Pin>, S> {
        self.replica.pins(after, limit).await
    }

    pub async fn pin(&self, cid: &Cid) -> StoreResult<Option<Pin>, S> {
        self.replica.pin(cid).await
    }

    /// Calls `each` with every page of the pinset (see [`for_each_page`]).
    pub async fn for_each_page<E>(
        &self,
        each: impl FnMut(&[Pin]) -> Result<(), E>,
    ) -> Result<usize, E>
    where
        E: From<ReplicaError<S::Error>>,
    {
        for_each_page(&self.replica, each).await
    }

    /// Pins `pin` in the cluster. With `pin_update`, the pin takes the options and the
    /// allocations of the pin it updates (its own name and expiry win when set), as
    /// ipfs-cluster's pin update does; the old pin stays.
    pub async fn add_pin(&mut self, pin: Pin, now: i64) -> Result<Pin, CommandError> {
        let mut pin = pin;
        if let Some(from) = pin.pin_update.filter(|from| *from != pin.cid) {
            let existing = self
                .replica
                .pin(&from)
                .await?
                .ok_or(CommandError::NotFound(from))?;
            pin = plan::updated_pin(pin, existing);
        }
        self.allocate_and_pin(pin, &[], now).await
    }

    /// Where an adder puts the blocks of what it adds, before pinning it with `template`'s
    /// options (Go's `BlockAllocate`): the allocations planned for it now or, for a pin on
    /// every peer (replication -1), every live peer that pins.
    pub fn add_destinations(&self, template: Pin, now: i64) -> Result<Vec<PeerId>, CommandError> {
        if !self.config.role.writes() {
            return Err(CommandError::ReadOnly);
        }
        let metrics = self.live_metrics(now);
        let trust = &self.config.trust;
        let planned = plan::plan_pin(
            template,
            None,
            &[],
            &metrics,
            |peer| trust.trusts(peer),
            &self.config.allocator,
        )
        .map_err(|e| CommandError::BadRequest(e.to_string()))?;
        if planned.replication_factor_min < 0 {
            return Ok(self.pinning_peers(now));
        }
        Ok(planned.allocations)
    }

    /// Allocates `pin` (keeping its current allocations where it can, never to a peer of
    /// `blacklist`) and writes it to the pinset.
    async fn allocate_and_pin(
        &mut self,
        pin: Pin,
        blacklist: &[PeerId],
        now: i64,
    ) -> Result<Pin, CommandError> {
        if !self.config.role.writes() {
            return Err(CommandError::ReadOnly);
        }
        if !self.config.trust.trusts(&self.config.local) {
            tracing::warn!("this peer is not in crdt.trusted_peers: other peers ignore its writes");
        }
        let existing = self.replica.pin(&pin.cid).await?;
        plan::check_pin_type(&pin, existing.as_ref()).map_err(CommandError::BadRequest)?;
        let metrics = self.live_metrics(now);
        let trust = &self.config.trust;
        let pin = plan::plan_pin(
            pin,
            existing.as_ref(),
            blacklist,
            &metrics,
            |peer| trust.trusts(peer),
            &self.config.allocator,
        )
        .map_err(|e| CommandError::BadRequest(e.to_string()))?;
        self.write_pin(&pin, now).await?;
        tracing::info!(cid = %pin.cid, allocations = ?pin.allocations, "pinned in the cluster");
        self.drain(now);
        Ok(pin)
    }

    /// Unpins `cid` from the cluster. The content root of a sharded add (a meta pin) goes
    /// with its cluster DAG's pin and the pins of `cluster_dag_links` (the links of that
    /// DAG's root, which the caller read from IPFS: the shards), as Go's unpin does; a
    /// shard or a cluster DAG is not unpinned by itself.
    pub async fn remove_pin(
        &mut self,
        cid: Cid,
        cluster_dag_links: &[Cid],
        now: i64,
    ) -> Result<Pin, CommandError> {
        if !self.config.role.writes() {
            return Err(CommandError::ReadOnly);
        }
        let pin = self
            .replica
            .pin(&cid)
            .await?
            .ok_or(CommandError::NotFound(cid))?;
        if let Some(refused) = plan::refuse_unpin(&pin) {
            return Err(CommandError::BadRequest(refused.into()));
        }
        if pin.pin_type == PinType::Meta {
            for part in cluster_dag_links.iter().chain(pin.reference.as_ref()) {
                if self.replica.pin(part).await?.is_some() {
                    self.write_unpin(part, now).await?;
                }
            }
        }
        self.write_unpin(&cid, now).await?;
        tracing::info!(%cid, "unpinned from the cluster");
        self.drain(now);
        Ok(pin)
    }

    /// Forgets `peer`: re-allocates the pins allocated to it to other peers and drops its
    /// metrics, so that it leaves the peerset until it pings again (ipfs-cluster's peer
    /// removal under CRDT consensus). Returns how many pins moved.
    pub async fn remove_peer(&mut self, peer: PeerId, now: i64) -> Result<usize, CommandError> {
        if !self.config.role.writes() {
            return Err(CommandError::ReadOnly);
        }
        if peer == self.config.local {
            return Err(CommandError::BadRequest(
                "a peer cannot remove itself; ask another peer of the cluster".into(),
            ));
        }
        let mut allocated = Vec::new();
        self.for_each_page(|page| {
            allocated.extend(
                page.iter()
                    .filter(|p| p.allocations.contains(&peer))
                    .cloned(),
            );
            Ok::<_, CommandError>(())
        })
        .await?;
        self.monitor.remove_peer(&peer);
        let moved = allocated.len();
        for pin in allocated {
            let cid = pin.cid;
            if let Err(error) = self.allocate_and_pin(pin, &[peer], now).await {
                tracing::warn!(%cid, %error, "could not re-allocate a pin of a removed peer");
            }
        }
        tracing::info!(%peer, moved, "peer removed: its pins were re-allocated");
        Ok(moved)
    }

    /// The trusted live peers besides this one, among which the closest to a CID acts for
    /// the cluster on it (re-pins, unpins when expired); `None` when this peer does not
    /// write or is not trusted, and so leaves that work to the trusted peers.
    fn fellow_deciders(&self, now: i64) -> Option<Vec<PeerId>> {
        let config = &self.config;
        (config.role.writes() && config.trust.trusts(&config.local)).then(|| {
            self.other_peers(now)
                .into_iter()
                .filter(|p| config.trust.trusts(p))
                .collect()
        })
    }

    /// Re-allocates away from the `lost` peers (whose pings expired) every pin allocated to
    /// one of them where this peer is the closest trusted live peer to the CID, as
    /// ipfs-cluster's `alertsHandler` does, in one pass over the pinset. Nothing when
    /// repinning is off, or this peer does not write or is not trusted. A pin that cannot
    /// be re-allocated (too few peers) is logged and left as it is. Returns how many pins
    /// were re-allocated.
    pub(super) async fn repin_from(&mut self, lost: &[PeerId], now: i64) -> StoreResult<usize, S> {
        let local = self.config.local;
        let Some(alive) = self
            .fellow_deciders(now)
            .filter(|_| self.config.repinning && !lost.is_empty())
        else {
            return Ok(0);
        };
        let mut affected = Vec::new();
        self.for_each_page(|page| {
            affected.extend(page.iter().filter_map(|p| {
                let gone: Vec<PeerId> = lost
                    .iter()
                    .filter(|l| allocator::must_repin(&p.allocations, &p.cid, l, &local, &alive))
                    .copied()
                    .collect();
                (!gone.is_empty()).then(|| (p.clone(), gone))
            }));
            Ok::<_, ReplicaError<S::Error>>(())
        })
        .await?;
        let mut moved = 0;
        for (pin, gone) in affected {
            let cid = pin.cid;
            match self.allocate_and_pin(pin, &gone, now).await {
                Ok(pin) => {
                    moved += 1;
                    tracing::info!(%cid, lost = ?gone, allocations = ?pin.allocations, "re-pinned away from a lost peer");
                }
                Err(error) => {
                    tracing::warn!(%cid, lost = ?gone, %error, "could not re-pin away from a lost peer")
                }
            }
        }
        if moved > 0 {
            tracing::info!(?lost, moved, "lost peers' pins were re-allocated");
        }
        Ok(moved)
    }

    /// Unpins the pins whose `expire_at` has passed, where this peer is the closest trusted
    /// live peer to the CID (so that one peer does it). Peers that do not write, or are
    /// not trusted, leave it to the trusted peers.
    pub(super) async fn unpin_expired(&mut self, now: i64) -> StoreResult<(), S> {
        let Some(others) = self.fellow_deciders(now) else {
            return Ok(());
        };
        // In the cluster's time: a peer whose clock is off neither unpins early nor late.
        let expiry = UnixTime(ms(self.cluster_time(now)) / 1000);
        let local = self.config.local;
        let mut expired = Vec::new();
        self.for_each_page(|page| {
            expired.extend(
                page.iter()
                    .filter(|p| plan::expires_here(p, expiry, &local, &others))
                    .map(|p| p.cid),
            );
            Ok::<_, ReplicaError<S::Error>>(())
        })
        .await?;
        // Each pin goes by itself, whatever its type: the parts of a sharded add (its
        // shards, cluster DAG and meta pin) carry the same expiry.
        for cid in &expired {
            tracing::info!(%cid, "the pin expired: unpinning it from the cluster");
            self.write_unpin(cid, now).await?;
        }
        if !expired.is_empty() {
            self.drain(now);
        }
        Ok(())
    }

    /// The recover sweep: given the daemon's recursive pins, re-queues the pins in error
    /// or missing on the daemon. Returns how many were queued.
    pub async fn recover_all(&mut self, daemon: &DaemonPins, now: i64) -> StoreResult<usize, S> {
        let Some(tracker) = self.tracker.as_mut() else {
            return Ok(0);
        };
        let (mut queued, mut after) = (0usize, None);
        loop {
            let page = self.replica.pins(after.as_ref(), PAGE).await?;
            let errors: Vec<(Cid, TrackerStatus)> = tracker
                .statuses(page.iter().cloned(), daemon, StatusFilter::ERROR)
                .map(|info| (info.cid, info.short.status))
                .collect();
            for (cid, status) in errors {
                let pin = page.iter().find(|p| p.cid == cid).cloned();
                match tracker.recover(cid, status, pin, now) {
                    Ok(true) => queued += 1,
                    Ok(false) => {}
                    Err(error) => tracing::error!(%cid, %error, "could not re-queue a pin"),
                }
            }
            match next_cursor(&page) {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        if queued > 0 {
            tracing::info!(
                queued,
                "recover: re-queued pins in error or missing on the daemon"
            );
        }
        self.drain(now);
        Ok(queued)
    }

    /// An operation the driver ran on the daemon finished.
    pub fn operation_done(&mut self, cid: Cid, id: OpId, result: Result<(), String>, now: i64) {
        if let Some(tracker) = self.tracker.as_mut() {
            tracker.complete(&cid, id, result, now);
        }
        self.drain(now);
    }

    /// This peer's status of `cid`. A peer that pins nothing (a relay) has every pin
    /// `remote`.
    pub async fn status(
        &self,
        cid: Cid,
        daemon: DaemonAnswer,
        now: i64,
    ) -> StoreResult<PinInfo, S> {
        let pin = self.replica.pin(&cid).await?;
        Ok(match self.tracker.as_ref() {
            Some(tracker) => tracker.status(cid, pin.as_ref(), daemon, now),
            None => {
                let status = if pin.is_some() {
                    TrackerStatus::Remote
                } else {
                    TrackerStatus::Unpinned
                };
                let pin = pin.unwrap_or_else(|| Pin::new(cid, UnixTime(0)));
                PinInfo::of_pin(
                    &pin,
                    self.config.local,
                    PinInfoShort {
                        peer_name: self.config.peername.clone(),
                        status,
                        timestamp: Some(now),
                        ..PinInfoShort::default()
                    },
                )
            }
        })
    }

    /// This peer's statuses of `cids`, given the daemon's answer for each; with `recover`,
    /// each pin in error here is re-queued first and its status after is given.
    pub async fn statuses_of(
        &mut self,
        cids: Vec<(Cid, DaemonAnswer)>,
        recover: bool,
        now: i64,
    ) -> StoreResult<Vec<PinInfo>, S> {
        let mut infos = Vec::with_capacity(cids.len());
        for (cid, daemon) in cids {
            if recover {
                let info = self.status(cid, daemon.clone(), now).await?;
                let pin = self.replica.pin(&cid).await?;
                if let Some(tracker) = self.tracker.as_mut() {
                    if let Err(error) = tracker.recover(cid, info.short.status, pin, now) {
                        tracing::error!(%cid, %error, "could not re-queue a pin");
                    }
                }
            }
            infos.push(self.status(cid, daemon, now).await?);
        }
        self.drain(now);
        Ok(infos)
    }

    /// This peer's statuses of the page of pins after `after` that pass `filter`, and
    /// where the next page starts.
    pub async fn status_page(
        &self,
        after: Option<&Cid>,
        daemon: &DaemonPins,
        filter: StatusFilter,
    ) -> StoreResult<(Vec<PinInfo>, Option<Cid>), S> {
        let page = self.replica.pins(after, PAGE).await?;
        let next = next_cursor(&page);
        let infos = match self.tracker.as_ref() {
            Some(tracker) => tracker.statuses(page, daemon, filter).collect(),
            None => Vec::new(),
        };
        Ok((infos, next))
    }

    /// This peer's statuses of the page of pins after `after`, counted, and where the next
    /// page starts. A peer that pins nothing counts its pins `remote`.
    pub async fn count_page(
        &self,
        after: Option<&Cid>,
        daemon: &DaemonPins,
    ) -> StoreResult<(StatusSummary, Option<Cid>), S> {
        let page = self.replica.pins(after, PAGE).await?;
        let next = next_cursor(&page);
        let mut summary = StatusSummary::default();
        match self.tracker.as_ref() {
            Some(tracker) => tracker
                .statuses(page, daemon, StatusFilter::ALL)
                .for_each(|info| summary.count(info.short.status)),
            None => page
                .iter()
                .for_each(|_| summary.count(TrackerStatus::Remote)),
        }
        Ok((summary, next))
    }

    /// Starts a write group (see [`Replica::begin_write_group`]): the pins added and
    /// removed until [`Node::end_write_group`] reach the disk with one flush (under Raft,
    /// the cluster's log as one proposal).
    pub fn begin_write_group(&mut self) {
        self.replica.begin_write_group();
        #[cfg(feature = "raft")]
        self.raft_begin_group();
    }

    /// Ends the write group; its writes are on disk once this returns, and may be
    /// acknowledged. Under Raft they are proposed: their answers wait for the proposal
    /// [`Node::take_proposal`] names.
    pub async fn end_write_group(&mut self, now: i64) -> StoreResult<(), S> {
        let result = self.replica.end_write_group(ms(now)).await;
        #[cfg(feature = "raft")]
        {
            self.raft_end_group(now);
            self.raft_work(now).await?;
        }
        self.drain(now);
        result
    }

    /// Writes `pin` to the pinset: now under CRDT; under Raft, in the proposal that ends
    /// the command.
    async fn write_pin(&mut self, pin: &Pin, now: i64) -> StoreResult<(), S> {
        #[cfg(feature = "raft")]
        if self.stage(|| crate::consensus::RaftOp::Pin(Box::new(pin.clone()))) {
            return Ok(());
        }
        self.replica.add_pin(pin, ms(now)).await?;
        Ok(())
    }

    /// Removes `cid` from the pinset, as [`Node::write_pin`] writes.
    async fn write_unpin(&mut self, cid: &Cid, now: i64) -> StoreResult<(), S> {
        #[cfg(feature = "raft")]
        if self.stage(|| crate::consensus::RaftOp::Unpin(*cid)) {
            return Ok(());
        }
        self.replica.remove_pin(cid, ms(now)).await?;
        Ok(())
    }

    /// Commits pending writes (at shutdown).
    pub async fn commit(&mut self, now: i64) -> StoreResult<(), S> {
        self.replica.commit(ms(now)).await?;
        self.drain(now);
        Ok(())
    }
}
