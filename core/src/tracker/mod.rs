//! The stateless pin tracker: what this peer's IPFS daemon must pin and unpin, and where
//! each pin stands, as ipfs-cluster v1.1.6's `stateless` tracker and `optracker` decide it.
//!
//! The tracker keeps no pin list of its own. It holds only operations: pins and unpins
//! queued, running or failed. A pin's status is derived from the cluster's pinset, the
//! daemon's pin list and those operations ([`PinTracker::statuses`]).
//!
//! It is a state machine without IO: [`PinTracker::track`] and [`PinTracker::untrack`]
//! queue work, [`PinTracker::poll`] hands out [`TrackerAction`]s (start an operation on the
//! daemon, cancel one), and the caller reports each started operation's end with
//! [`PinTracker::complete`]. Failures are retried with exponential back-off.
//!
//! Where it differs from ipfs-cluster: unpinning a pin now allocated elsewhere goes through
//! the bounded unpin queue instead of running at once; an operation never starts while a
//! cancelled one on the same CID is still running; and failed operations are retried on
//! their own after a back-off instead of waiting for the next recover sweep.

pub(crate) mod info;
mod status;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use cid::Cid;
use libp2p_identity::PeerId;
use multiaddr::Multiaddr;

pub use info::{nanos_to_json, GlobalPinInfo, PinInfo, PinInfoShort};
pub use status::{DaemonPins, IpfsPinType, StatusFilter, StatusFilterError, TrackerStatus};

use crate::pin::{Pin, PinType, UnixTime};

/// Operations that may wait at once (`max_pin_queue_size`).
pub const DEFAULT_MAX_PIN_QUEUE_SIZE: usize = 1_000_000;
/// Pins that may run at once (`concurrent_pins`).
pub const DEFAULT_CONCURRENT_PINS: usize = 10;
/// Pins younger than this go to the priority queue (`priority_pin_max_age`), in seconds.
pub const DEFAULT_PRIORITY_PIN_MAX_AGE_SECS: u64 = 24 * 60 * 60;
/// Pins retried more often than this lose their priority (`priority_pin_max_retries`).
pub const DEFAULT_PRIORITY_PIN_MAX_RETRIES: u32 = 5;
/// The wait before the first retry of a failed operation, in milliseconds.
pub const DEFAULT_RETRY_BASE_DELAY_MS: u64 = 30_000;
/// The longest wait between retries, in milliseconds: ipfs-cluster's recover interval.
pub const DEFAULT_RETRY_MAX_DELAY_MS: u64 = 12 * 60_000;
/// Unpins (and removals of pins allocated elsewhere) that may run at once. They are
/// quick, and ipfs-cluster runs them one at a time too.
pub const UNPIN_CONCURRENCY: usize = 1;

/// The error text of a pin that should be pinned here and is not.
pub const UNEXPECTEDLY_UNPINNED_ERROR: &str = "the item should be pinned but it is not";

const NANOS_PER_MS: i64 = 1_000_000;
const NANOS_PER_SEC: i64 = 1_000_000_000;

/// How the tracker queues and retries operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerConfig {
    pub max_pin_queue_size: usize,
    pub concurrent_pins: usize,
    pub priority_pin_max_age_secs: u64,
    pub priority_pin_max_retries: u32,
    pub retry_base_delay_ms: u64,
    pub retry_max_delay_ms: u64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            max_pin_queue_size: DEFAULT_MAX_PIN_QUEUE_SIZE,
            concurrent_pins: DEFAULT_CONCURRENT_PINS,
            priority_pin_max_age_secs: DEFAULT_PRIORITY_PIN_MAX_AGE_SECS,
            priority_pin_max_retries: DEFAULT_PRIORITY_PIN_MAX_RETRIES,
            retry_base_delay_ms: DEFAULT_RETRY_BASE_DELAY_MS,
            retry_max_delay_ms: DEFAULT_RETRY_MAX_DELAY_MS,
        }
    }
}

/// A tracker setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pin_tracker.{field} must be greater than 0")]
pub struct TrackerConfigError {
    pub field: &'static str,
}

impl TrackerConfig {
    fn validate(&self) -> Result<(), TrackerConfigError> {
        let zero = [
            ("max_pin_queue_size", self.max_pin_queue_size == 0),
            ("concurrent_pins", self.concurrent_pins == 0),
            ("priority_pin_max_age", self.priority_pin_max_age_secs == 0),
            (
                "priority_pin_max_retries",
                self.priority_pin_max_retries == 0,
            ),
            ("retry_base_delay", self.retry_base_delay_ms == 0),
            ("retry_max_delay", self.retry_max_delay_ms == 0),
        ];
        match zero.into_iter().find(|(_, is_zero)| *is_zero) {
            Some((field, _)) => Err(TrackerConfigError { field }),
            None => Ok(()),
        }
    }

    /// The wait before retrying an operation that failed after `attempts` attempts:
    /// the base delay, doubled per attempt after the first, up to the maximum.
    fn retry_delay_nanos(&self, attempts: u32) -> i64 {
        let doublings = attempts.saturating_sub(1).min(32);
        let ms = self
            .retry_base_delay_ms
            .saturating_mul(1 << doublings)
            .min(self.retry_max_delay_ms);
        i64::try_from(ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(NANOS_PER_MS)
    }
}

/// The peer the tracker speaks for, and its IPFS daemon, as statuses name them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub peer: PeerId,
    pub peer_name: String,
    pub ipfs_peer_id: Option<PeerId>,
    pub ipfs_peer_addresses: Vec<Multiaddr>,
}

impl PeerIdentity {
    /// A peer whose IPFS daemon is not known yet.
    pub fn new(peer: PeerId, peer_name: impl Into<String>) -> Self {
        Self {
            peer,
            peer_name: peer_name.into(),
            ipfs_peer_id: None,
            ipfs_peer_addresses: Vec::new(),
        }
    }
}

/// What an operation does to the IPFS daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationKind {
    /// Pin the content.
    Pin,
    /// Unpin content that left the cluster's pinset.
    Unpin,
    /// Unpin content that is in the pinset but allocated to other peers. The daemon should
    /// check that it holds the pin before removing it; its status stays `remote`.
    Remote,
}

/// Names one started operation, to report its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(u64);

/// Work for the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackerAction {
    /// Run this operation on the IPFS daemon, then report its end with
    /// [`PinTracker::complete`].
    Start(Box<Dispatch>),
    /// Abort this running operation: an opposite one replaced it. Its end must still be
    /// reported with [`PinTracker::complete`]; the result is then ignored.
    Cancel { cid: Cid, id: OpId },
}

/// An operation to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispatch {
    pub id: OpId,
    pub kind: OperationKind,
    /// The pin with its options (mode, origins) as the cluster holds it.
    pub pin: Pin,
}

/// Why the tracker refused work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackError {
    #[error(
        "pin/unpin operation queue is full ({capacity} operations waiting); wait for it to \
         drain or raise pin_tracker.max_pin_queue_size"
    )]
    QueueFull { capacity: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Queued,
    InProgress,
    Error,
}

struct Operation {
    id: OpId,
    kind: OperationKind,
    phase: Phase,
    pin: Pin,
    /// Starts so far, carried over when an operation of the same kind replaces this one.
    attempts: u32,
    priority: bool,
    error: String,
    /// When the phase last changed, Unix nanoseconds.
    timestamp: i64,
    /// Queued, but held out of its queue until a cancelled operation on the same CID ends.
    blocked: bool,
}

impl Operation {
    fn status(&self) -> TrackerStatus {
        match (self.kind, self.phase) {
            (OperationKind::Remote, _) => TrackerStatus::Remote,
            (OperationKind::Pin, Phase::Queued) => TrackerStatus::PinQueued,
            (OperationKind::Pin, Phase::InProgress) => TrackerStatus::Pinning,
            (OperationKind::Pin, Phase::Error) => TrackerStatus::PinError,
            (OperationKind::Unpin, Phase::Queued) => TrackerStatus::UnpinQueued,
            (OperationKind::Unpin, Phase::InProgress) => TrackerStatus::Unpinning,
            (OperationKind::Unpin, Phase::Error) => TrackerStatus::UnpinError,
        }
    }

    fn queue(&self) -> usize {
        match (self.kind, self.priority) {
            (OperationKind::Pin, true) => PRIORITY_QUEUE,
            (OperationKind::Pin, false) => PIN_QUEUE,
            _ => UNPIN_QUEUE,
        }
    }
}

const PRIORITY_QUEUE: usize = 0;
const PIN_QUEUE: usize = 1;
const UNPIN_QUEUE: usize = 2;

/// The operation tracker and its queues.
pub struct PinTracker {
    config: TrackerConfig,
    identity: PeerIdentity,
    /// The current operation of each CID.
    ops: HashMap<Cid, Operation>,
    /// Priority pins, other pins, unpins. Entries whose operation was replaced stay until
    /// popped or compacted.
    queues: [VecDeque<(Cid, OpId)>; 3],
    stale_entries: usize,
    /// Operations in the queued phase, and of those, pins.
    queued: usize,
    queued_pins: usize,
    /// Started operations not yet reported ended, by CID (at most one per CID).
    running: HashMap<Cid, (OpId, OperationKind)>,
    running_pins: usize,
    running_unpins: usize,
    /// Failed operations by the time of their next attempt.
    retries: BinaryHeap<Reverse<(i64, OpId, Cid)>>,
    outbox: Vec<TrackerAction>,
    next_id: u64,
}

impl PinTracker {
    pub fn new(config: TrackerConfig, identity: PeerIdentity) -> Result<Self, TrackerConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            identity,
            ops: HashMap::new(),
            queues: Default::default(),
            stale_entries: 0,
            queued: 0,
            queued_pins: 0,
            running: HashMap::new(),
            running_pins: 0,
            running_unpins: 0,
            retries: BinaryHeap::new(),
            outbox: Vec::new(),
            next_id: 0,
        })
    }

    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    /// Records the IPFS daemon's id and addresses, for the statuses.
    pub fn set_ipfs(&mut self, peer: Option<PeerId>, addresses: Vec<Multiaddr>) {
        self.identity.ipfs_peer_id = peer;
        self.identity.ipfs_peer_addresses = addresses;
    }

    /// A pin entered (or changed in) the cluster's pinset: queue pinning it here, or
    /// removing it here when it is allocated elsewhere. Meta pins are never pinned. An
    /// operation of the same kind already under way keeps its place, with the new options.
    pub fn track(&mut self, pin: Pin, now: i64) -> Result<(), TrackError> {
        if pin.pin_type == PinType::Meta {
            return Ok(());
        }
        let kind = if pin.is_remote_pin(&self.identity.peer) {
            OperationKind::Remote
        } else {
            OperationKind::Pin
        };
        self.enqueue(pin, kind, now)
    }

    /// A pin left the cluster's pinset: queue unpinning it here.
    pub fn untrack(&mut self, cid: Cid, now: i64) -> Result<(), TrackError> {
        let seconds = u64::try_from(now / NANOS_PER_SEC).unwrap_or(0);
        self.enqueue(Pin::new(cid, UnixTime(seconds)), OperationKind::Unpin, now)
    }

    /// Queues a failed or missing pin again now: pin errors and unexpectedly unpinned
    /// pins (given the pin from the pinset, `None` if it left it) are tracked again, unpin
    /// errors unpinned again. Returns whether anything was queued.
    pub fn recover(
        &mut self,
        cid: Cid,
        status: TrackerStatus,
        state_pin: Option<Pin>,
        now: i64,
    ) -> Result<bool, TrackError> {
        match (status, state_pin) {
            (TrackerStatus::PinError | TrackerStatus::UnexpectedlyUnpinned, Some(pin)) => {
                self.track(pin, now)?;
                Ok(true)
            }
            (TrackerStatus::UnpinError, _) => {
                self.untrack(cid, now)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Queues failed operations whose back-off has passed, starts queued operations while
    /// slots are free (priority pins first), and returns the actions to carry out.
    pub fn poll(&mut self, now: i64) -> Vec<TrackerAction> {
        self.retry_due(now);
        while self.running_pins < self.config.concurrent_pins {
            match self.pop_queued(&[PRIORITY_QUEUE, PIN_QUEUE]) {
                Some(cid) => self.start(cid, now),
                None => break,
            }
        }
        while self.running_unpins < UNPIN_CONCURRENCY {
            match self.pop_queued(&[UNPIN_QUEUE]) {
                Some(cid) => self.start(cid, now),
                None => break,
            }
        }
        self.compact_queues();
        std::mem::take(&mut self.outbox)
    }

    /// Reports the end of a started operation: `Err` carries the daemon's error text.
    /// A successful operation is forgotten (its effect shows in the daemon's pin list); a
    /// failed one turns into an error status and is retried after its back-off. The end of
    /// an operation that was cancelled or replaced only frees its slot.
    pub fn complete(&mut self, cid: &Cid, id: OpId, result: Result<(), String>, now: i64) {
        match self.running.get(cid) {
            Some(&(running, kind)) if running == id => {
                self.running.remove(cid);
                match kind {
                    OperationKind::Pin => self.running_pins -= 1,
                    OperationKind::Unpin | OperationKind::Remote => self.running_unpins -= 1,
                }
            }
            _ => return,
        }
        let Some(op) = self.ops.get_mut(cid) else {
            return;
        };
        if op.id == id {
            match result {
                Ok(()) => {
                    self.ops.remove(cid);
                }
                Err(error) => {
                    let retry = fail(op, error, now, &self.config);
                    self.retries.push(retry);
                }
            }
        } else if op.blocked {
            op.blocked = false;
            self.queues[op.queue()].push_front((*cid, op.id));
        }
    }

    /// Pins waiting in the queue: the pinqueue informer's figure.
    pub fn pin_queue_size(&self) -> u64 {
        self.queued_pins as u64
    }

    /// Operations waiting, of every kind.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Operations started and not yet reported ended.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// The earliest time a failed operation is due for retry, for the caller's timer.
    pub fn next_retry_at(&self) -> Option<i64> {
        self.retries.peek().map(|Reverse((at, _, _))| *at)
    }

    /// This peer's view of the operation on `cid`, if there is one.
    pub fn operation_status(&self, cid: &Cid) -> Option<PinInfo> {
        self.ops.get(cid).map(|op| self.operation_info(op))
    }

    /// Operations whose status passes the filter: the whole listing when the filter only
    /// asks for queued, running or failed operations (see [`StatusFilter::needs_pinset`]).
    pub fn operations(&self, filter: StatusFilter) -> impl Iterator<Item = PinInfo> + '_ {
        self.ops
            .values()
            .filter(move |op| filter.matches(op.status()))
            .map(|op| self.operation_info(op))
    }

    /// The status of one CID: its operation's if it has one; `unpinned` when it is not in
    /// the pinset (`state_pin` is `None`); otherwise derived from the pin and the daemon's
    /// answer for it (`Err` with the error text when the daemon could not be asked).
    pub fn status(
        &self,
        cid: Cid,
        state_pin: Option<&Pin>,
        daemon: Result<Option<IpfsPinType>, String>,
        now: i64,
    ) -> PinInfo {
        if let Some(op) = self.ops.get(&cid) {
            return self.operation_info(op);
        }
        match state_pin {
            None => PinInfo::of_pin(
                &Pin {
                    timestamp: None,
                    ..Pin::new(cid, UnixTime(0))
                },
                self.identity.peer,
                self.short(TrackerStatus::Unpinned, Some(now), String::new()),
            ),
            Some(pin) => self.derive(pin, daemon),
        }
    }

    /// This peer's status of every pin in `pins` (the cluster's pinset, streamed) that
    /// passes the filter. An operation's status wins; then meta pins are `sharded`, pins
    /// allocated elsewhere `remote`, pins in the daemon's list `pinned`, and the rest
    /// `unexpectedly_unpinned`. When the filter does not need the daemon's list
    /// ([`StatusFilter::needs_daemon_pins`]), an empty one gives the same listing.
    pub fn statuses<'a, I>(
        &'a self,
        pins: I,
        daemon: &'a DaemonPins,
        filter: StatusFilter,
    ) -> impl Iterator<Item = PinInfo> + 'a
    where
        I: IntoIterator<Item = Pin>,
        I::IntoIter: 'a,
    {
        pins.into_iter().filter_map(move |pin| {
            let info = match self.ops.get(&pin.cid) {
                Some(op) => self.operation_info(op),
                None => self.derive(&pin, Ok(daemon.get(&pin.cid))),
            };
            filter.matches(info.short.status).then_some(info)
        })
    }

    fn derive(&self, pin: &Pin, daemon: Result<Option<IpfsPinType>, String>) -> PinInfo {
        let (status, error) = if pin.pin_type == PinType::Meta {
            (TrackerStatus::Sharded, String::new())
        } else if pin.is_remote_pin(&self.identity.peer) {
            (TrackerStatus::Remote, String::new())
        } else {
            match daemon {
                Err(error) => (TrackerStatus::ClusterError, error),
                Ok(pinned) => match pinned.map(IpfsPinType::tracker_status) {
                    Some(TrackerStatus::Pinned) => (TrackerStatus::Pinned, String::new()),
                    _ => (
                        TrackerStatus::UnexpectedlyUnpinned,
                        UNEXPECTEDLY_UNPINNED_ERROR.to_owned(),
                    ),
                },
            }
        };
        let timestamp = pin
            .timestamp
            .and_then(|t| i64::try_from(t.0).ok())
            .map(|secs| secs.saturating_mul(NANOS_PER_SEC));
        PinInfo::of_pin(
            pin,
            self.identity.peer,
            self.short(status, timestamp, error),
        )
    }

    fn operation_info(&self, op: &Operation) -> PinInfo {
        let mut short = self.short(op.status(), Some(op.timestamp), op.error.clone());
        short.attempt_count = op.attempts;
        short.priority_pin = op.priority;
        PinInfo::of_pin(&op.pin, self.identity.peer, short)
    }

    fn short(&self, status: TrackerStatus, timestamp: Option<i64>, error: String) -> PinInfoShort {
        PinInfoShort {
            peer_name: self.identity.peer_name.clone(),
            ipfs_peer_id: self.identity.ipfs_peer_id,
            ipfs_peer_addresses: self.identity.ipfs_peer_addresses.clone(),
            status,
            timestamp,
            error,
            attempt_count: 0,
            priority_pin: false,
        }
    }

    /// Makes `kind` on `pin` the CID's current operation, queued, unless one of the same
    /// kind is already queued or running (ipfs-cluster's `TrackNewOperation`).
    fn enqueue(&mut self, pin: Pin, kind: OperationKind, now: i64) -> Result<(), TrackError> {
        let cid = pin.cid;
        let mut attempts = 0;
        if let Some(op) = self.ops.get_mut(&cid) {
            if op.kind == kind && op.phase != Phase::Error {
                op.pin = pin;
                return Ok(());
            }
            if op.kind == kind {
                attempts = op.attempts;
            }
        }
        if let Some(old) = self.ops.remove(&cid) {
            self.retire(cid, old);
        }
        self.next_id += 1;
        let mut op = Operation {
            id: OpId(self.next_id),
            kind,
            phase: Phase::Queued,
            pin,
            attempts,
            priority: false,
            error: String::new(),
            timestamp: now,
            blocked: false,
        };
        if self.queued >= self.config.max_pin_queue_size {
            let error = TrackError::QueueFull {
                capacity: self.config.max_pin_queue_size,
            };
            let retry = fail(&mut op, error.to_string(), now, &self.config);
            self.retries.push(retry);
            self.ops.insert(cid, op);
            return Err(error);
        }
        op.priority = kind == OperationKind::Pin && self.is_priority(&op.pin, attempts, now);
        self.queues[op.queue()].push_back((cid, op.id));
        self.count_queued(kind, 1);
        self.ops.insert(cid, op);
        Ok(())
    }

    /// Takes a replaced operation out of the counts; a running one is cancelled.
    fn retire(&mut self, cid: Cid, old: Operation) {
        match old.phase {
            Phase::Queued => {
                self.count_queued(old.kind, -1);
                if !old.blocked {
                    self.stale_entries += 1;
                }
            }
            Phase::InProgress => self.outbox.push(TrackerAction::Cancel { cid, id: old.id }),
            Phase::Error => {}
        }
    }

    fn count_queued(&mut self, kind: OperationKind, delta: isize) {
        self.queued = self.queued.wrapping_add_signed(delta);
        if kind == OperationKind::Pin {
            self.queued_pins = self.queued_pins.wrapping_add_signed(delta);
        }
    }

    /// Young pins not retried too often go first (ipfs-cluster's priority pins).
    fn is_priority(&self, pin: &Pin, attempts: u32, now: i64) -> bool {
        let max_age = i64::try_from(self.config.priority_pin_max_age_secs).unwrap_or(i64::MAX);
        let young = pin.timestamp.is_some_and(|t| {
            let deadline = i64::try_from(t.0)
                .unwrap_or(i64::MAX)
                .saturating_add(max_age)
                .saturating_mul(NANOS_PER_SEC);
            now < deadline
        });
        young && attempts <= self.config.priority_pin_max_retries
    }

    /// The next live queued operation from the first non-empty queue of `order`. An
    /// operation whose CID still has a cancelled operation running is set aside until
    /// that one ends.
    fn pop_queued(&mut self, order: &[usize]) -> Option<Cid> {
        for &queue in order {
            while let Some((cid, id)) = self.queues[queue].pop_front() {
                let Some(op) = self.ops.get_mut(&cid).filter(|op| op.id == id) else {
                    self.stale_entries -= 1;
                    continue;
                };
                if self.running.contains_key(&cid) {
                    op.blocked = true;
                    continue;
                }
                return Some(cid);
            }
        }
        None
    }

    fn start(&mut self, cid: Cid, now: i64) {
        let op = self
            .ops
            .get_mut(&cid)
            .expect("popped operations are current");
        op.phase = Phase::InProgress;
        op.attempts += 1;
        op.timestamp = now;
        let (id, kind) = (op.id, op.kind);
        let dispatch = Dispatch {
            id,
            kind,
            pin: op.pin.clone(),
        };
        self.count_queued(kind, -1);
        self.running.insert(cid, (id, kind));
        match kind {
            OperationKind::Pin => self.running_pins += 1,
            OperationKind::Unpin | OperationKind::Remote => self.running_unpins += 1,
        }
        self.outbox.push(TrackerAction::Start(Box::new(dispatch)));
    }

    fn retry_due(&mut self, now: i64) {
        while let Some(Reverse((at, id, cid))) = self.retries.peek().copied() {
            if at > now {
                break;
            }
            self.retries.pop();
            let due = self
                .ops
                .get(&cid)
                .filter(|op| op.id == id && op.phase == Phase::Error)
                .map(|op| (op.pin.clone(), op.kind));
            if let Some((pin, kind)) = due {
                // A full queue fails the operation again, with a later retry.
                let _ = self.enqueue(pin, kind, now);
            }
        }
    }

    /// Drops replaced entries once they outnumber the live ones.
    fn compact_queues(&mut self) {
        let entries: usize = self.queues.iter().map(VecDeque::len).sum();
        if self.stale_entries * 2 <= entries {
            return;
        }
        let ops = &self.ops;
        for queue in &mut self.queues {
            queue.retain(|(cid, id)| ops.get(cid).is_some_and(|op| op.id == *id));
        }
        self.stale_entries = 0;
    }
}

/// Turns an operation into a failed one and returns its retry entry.
fn fail(
    op: &mut Operation,
    error: String,
    now: i64,
    config: &TrackerConfig,
) -> Reverse<(i64, OpId, Cid)> {
    op.phase = Phase::Error;
    op.error = error;
    op.timestamp = now;
    let at = now.saturating_add(config.retry_delay_nanos(op.attempts));
    Reverse((at, op.id, op.pin.cid))
}
