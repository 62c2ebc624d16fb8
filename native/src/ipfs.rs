//! The IPFS connector: the Kubo HTTP RPC calls ipfs-cluster's `ipfshttp` connector makes.
//!
//! Requests run at most [`MAX_CONCURRENT_REQUESTS`] at a time. After a failure to reach
//! the daemon, pin and unpin operations wait a back-off that doubles with each consecutive
//! failure (up to [`MAX_FAILURE_BACKOFF`]) and resets on the first success, so a daemon
//! that is down is not hammered by retries, while reads (statuses, `id`) still fail at
//! once; [`IpfsClient::health`] says it is down and since when.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cid::Cid;
use futures::StreamExt;
use libp2p::{Multiaddr, PeerId};
use pinfold_core::informer::RepoStat;
use pinfold_core::net::peer_request::REPO_GC_TIMEOUT;
use pinfold_core::pin::Pin;
use pinfold_core::repo_gc::GcKey;
use pinfold_core::tracker::{DaemonPins, IpfsPinType};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::endpoint::{http_url, EndpointError};

/// Requests in flight at once.
pub const MAX_CONCURRENT_REQUESTS: usize = 32;
/// Longest wait imposed before a request after consecutive failures.
pub const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
/// Origins connected to before pinning, as ipfs-cluster does.
pub const MAX_ORIGINS: usize = 10;
/// How long one listing of the daemon's recursive pins serves peers' status requests
/// (a cluster-wide status pages through the pinset); pins and unpins completed meanwhile
/// are recorded on it, so it never lags this peer's own operations.
pub const RECENT_PINS_MAX_AGE: Duration = Duration::from_secs(10);
/// Completed operations recorded on a listing before it is dropped and read again.
const MAX_RECORDED_CHANGES: usize = 200_000;

/// Why a call to the daemon failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IpfsError {
    #[error("IPFS daemon at {url} is unreachable: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("IPFS daemon: {0}")]
    Daemon(String),
    #[error("IPFS daemon answered {call} with something unreadable: {detail}")]
    Unreadable { call: &'static str, detail: String },
    #[error("pinning {cid} made no progress for {stall:?}; aborted (raise ipfs_connector.ipfshttp.pin_timeout for large DAGs)")]
    Stalled { cid: Cid, stall: Duration },
    #[error("ipfs_connector.ipfshttp.node_multiaddress: {0}")]
    Address(EndpointError),
    #[error("could not make the IPFS daemon's HTTP client: {0}")]
    Client(String),
    #[error("IPFS daemon did not answer {call} within {timeout:?}")]
    Timeout {
        call: &'static str,
        timeout: Duration,
    },
}

impl IpfsError {
    fn is_not_pinned(&self) -> bool {
        matches!(self, IpfsError::Daemon(message) if message.contains("not pinned"))
    }
}

/// The longest CAR section read from the daemon: a block (bitswap's limit, 4 MiB) and
/// its CID.
const MAX_CAR_SECTION: usize = 4 * 1024 * 1024 + 1024;

/// Timeouts of the connector (`ipfs_connector.ipfshttp`).
#[derive(Clone, Debug)]
pub struct IpfsConfig {
    pub request_timeout: Duration,
    pub pin_stall_timeout: Duration,
    pub unpin_timeout: Duration,
}

/// The daemon's identity (`id`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpfsId {
    pub peer: PeerId,
    pub addresses: Vec<Multiaddr>,
}

/// Whether the daemon answered lately.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Up,
    Down { since: Instant, error: String },
}

/// A client of one daemon's HTTP RPC API.
pub struct IpfsClient {
    base: String,
    http: reqwest::Client,
    config: IpfsConfig,
    limit: Semaphore,
    failures: AtomicU32,
    health: Mutex<Health>,
    /// `pin/add` requests made, and those that failed (ipfs-cluster's `pins/pin_add` and
    /// `pins/pin_add_errors`).
    pin_adds: AtomicU64,
    pin_add_errors: AtomicU64,
    pin_count: Mutex<Option<i64>>,
    recent_pins: Mutex<RecentPins>,
    /// One listing for peers' status requests at a time.
    listing: tokio::sync::Mutex<()>,
}

/// The daemon's recursive pins as last listed for peers' status requests, kept current with
/// the pins and unpins this client completed since.
#[derive(Default)]
struct RecentPins {
    listed: Option<(Instant, DaemonPins)>,
    /// Operations completed while a listing is being read: recorded on it once read, as
    /// the daemon may have streamed those pins before or after they changed.
    while_listing: Option<Vec<(Cid, Option<IpfsPinType>)>>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "Message")]
    message: String,
}

#[derive(Deserialize)]
struct IdBody {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Addresses", default)]
    addresses: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct PinLsLine {
    #[serde(rename = "Cid")]
    cid: String,
    #[serde(rename = "Type")]
    pin_type: String,
}

#[derive(Deserialize)]
struct PinLsKeys {
    #[serde(rename = "Keys")]
    keys: std::collections::HashMap<String, PinLsKeyType>,
}

#[derive(Deserialize)]
struct PinLsKeyType {
    #[serde(rename = "Type")]
    pin_type: String,
}

#[derive(Deserialize)]
struct PinProgress {
    #[serde(rename = "Progress", default)]
    progress: Option<u64>,
    #[serde(rename = "Pins", default)]
    pins: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct AddLine {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Hash")]
    hash: String,
    #[serde(
        rename = "Size",
        default,
        deserialize_with = "pinfold_core::informer::number_or_string"
    )]
    size: u64,
}

/// A file or directory the daemon added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Added {
    /// Its path in the upload (empty for a bare upload's root).
    pub name: String,
    pub cid: Cid,
    /// Its DAG's size in bytes, as the daemon reports it.
    pub size: u64,
}

/// The lines of a newline-delimited answer, as they arrive; blank lines are skipped.
fn lines(
    call: &'static str,
    response: reqwest::Response,
) -> impl futures::Stream<Item = Result<Vec<u8>, IpfsError>> {
    let chunks = response.bytes_stream().map(move |chunk| {
        chunk.map_err(|e| IpfsError::Unreadable {
            call,
            detail: e.to_string(),
        })
    });
    futures::stream::unfold(
        (Box::pin(chunks), Vec::<u8>::new(), false),
        |(mut chunks, mut buffer, mut ended)| async move {
            loop {
                if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Some((Ok(line), (chunks, buffer, ended)));
                }
                if ended {
                    if buffer.iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    let line = std::mem::take(&mut buffer);
                    return Some((Ok(line), (chunks, buffer, ended)));
                }
                match chunks.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    Some(Err(error)) => return Some((Err(error), (chunks, Vec::new(), true))),
                    None => ended = true,
                }
            }
        },
    )
}

/// `http://host:port/api/v0` from a `/ip4|ip6|dns*/.../tcp/port` multiaddress.
pub fn api_url(address: &Multiaddr) -> Result<String, EndpointError> {
    Ok(format!("{}/api/v0", http_url(address)?))
}

/// The daemon's pin type `pin` asks for: `direct` for depth 0, else `recursive`.
pub fn pin_type_name(pin: &Pin) -> &'static str {
    if pin.max_depth == 0 {
        "direct"
    } else {
        "recursive"
    }
}

fn pin_type_of(text: &str) -> Option<IpfsPinType> {
    match text {
        "recursive" => Some(IpfsPinType::Recursive),
        "direct" => Some(IpfsPinType::Direct),
        "indirect" => Some(IpfsPinType::Indirect),
        _ => None,
    }
}

impl IpfsClient {
    pub fn new(node: &Multiaddr, config: IpfsConfig) -> Result<Self, IpfsError> {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| IpfsError::Client(e.to_string()))?;
        Ok(Self {
            base: api_url(node).map_err(IpfsError::Address)?,
            http,
            config,
            limit: Semaphore::new(MAX_CONCURRENT_REQUESTS),
            failures: AtomicU32::new(0),
            pin_adds: AtomicU64::new(0),
            pin_add_errors: AtomicU64::new(0),
            pin_count: Mutex::new(None),
            recent_pins: Mutex::new(RecentPins::default()),
            listing: tokio::sync::Mutex::new(()),
            health: Mutex::new(Health::Up),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn health(&self) -> Health {
        self.health.lock().expect("not poisoned").clone()
    }

    /// Recursive pins on the daemon: its last full listing, moved by the pins added and
    /// removed since; `None` before the first listing.
    pub fn pin_count(&self) -> Option<i64> {
        *self.pin_count.lock().expect("not poisoned")
    }

    /// Accounts for a pin (`Some`) or unpin (`None`) the daemon completed: the pin count and
    /// the listing kept for status requests.
    fn completed(&self, cid: &Cid, now: Option<IpfsPinType>) {
        if let Some(count) = self.pin_count.lock().expect("not poisoned").as_mut() {
            *count = (*count + if now.is_some() { 1 } else { -1 }).max(0);
        }
        let mut recent = self.recent_pins.lock().expect("not poisoned");
        if let Some((at, pins)) = recent.listed.as_mut() {
            if at.elapsed() > RECENT_PINS_MAX_AGE || pins.changes() >= MAX_RECORDED_CHANGES {
                recent.listed = None;
            } else {
                pins.record(cid, now);
            }
        }
        if let Some(changes) = recent.while_listing.as_mut() {
            changes.push((*cid, now));
        }
    }

    /// `pin/add` requests made so far, and how many of them failed.
    pub fn pin_add_counts(&self) -> (u64, u64) {
        (
            self.pin_adds.load(Ordering::Relaxed),
            self.pin_add_errors.load(Ordering::Relaxed),
        )
    }

    fn record(&self, result: &Result<reqwest::Response, IpfsError>) {
        let reached = !matches!(result, Err(IpfsError::Unreachable { .. }));
        let mut health = self.health.lock().expect("not poisoned");
        if reached {
            self.failures.store(0, Ordering::Relaxed);
            if *health != Health::Up {
                tracing::info!(api = %self.base, "IPFS daemon is reachable again");
            }
            *health = Health::Up;
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
            if let (Health::Up, Err(error)) = (&*health, result) {
                tracing::warn!(api = %self.base, %error, "IPFS daemon is down; pins wait and are retried");
                *health = Health::Down {
                    since: Instant::now(),
                    error: error.to_string(),
                };
            }
        }
    }

    /// POSTs `call` with `query`; a non-2xx answer becomes [`IpfsError::Daemon`] with the
    /// daemon's message.
    async fn post(
        &self,
        call: &'static str,
        query: &[(&str, String)],
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, IpfsError> {
        self.post_body(call, query, timeout, None).await
    }

    /// [`Self::post`] with a request body and its content type.
    async fn post_body(
        &self,
        call: &'static str,
        query: &[(&str, String)],
        timeout: Option<Duration>,
        body: Option<(reqwest::Body, String)>,
    ) -> Result<reqwest::Response, IpfsError> {
        let _permit = self.limit.acquire().await.expect("never closed");
        let mut request = self.http.post(format!("{}/{call}", self.base)).query(query);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        if let Some((body, content_type)) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
        }
        let result = match request.send().await {
            Ok(response) => Ok(response),
            Err(e) if e.is_timeout() => Err(IpfsError::Timeout {
                call,
                timeout: timeout.unwrap_or_default(),
            }),
            Err(e) => Err(IpfsError::Unreachable {
                url: self.base.clone(),
                detail: e.to_string(),
            }),
        };
        self.record(&result);
        let response = result?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.message)
            .unwrap_or_else(|_| format!("{call}: HTTP {status}: {}", text.trim()));
        Err(IpfsError::Daemon(message))
    }

    /// The wait an operation takes after consecutive failures to reach the daemon.
    async fn failure_backoff(&self) {
        let failures = self.failures.load(Ordering::Relaxed);
        if failures > 0 {
            let backoff = Duration::from_millis(100u64 << failures.min(7)).min(MAX_FAILURE_BACKOFF);
            tokio::time::sleep(backoff).await;
        }
    }

    async fn json<T: for<'de> Deserialize<'de>>(
        &self,
        call: &'static str,
        query: &[(&str, String)],
    ) -> Result<T, IpfsError> {
        let response = self
            .post(call, query, Some(self.config.request_timeout))
            .await?;
        let bytes = response.bytes().await.map_err(|e| IpfsError::Unreadable {
            call,
            detail: e.to_string(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| IpfsError::Unreadable {
            call,
            detail: e.to_string(),
        })
    }

    /// The daemon's peer id and addresses (`id`).
    pub async fn id(&self) -> Result<IpfsId, IpfsError> {
        let body: IdBody = self.json("id", &[]).await?;
        let peer = body.id.parse().map_err(|e| IpfsError::Unreadable {
            call: "id",
            detail: format!("peer id {:?}: {e}", body.id),
        })?;
        let addresses = body
            .addresses
            .unwrap_or_default()
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        Ok(IpfsId { peer, addresses })
    }

    /// The repository's size and limit (`repo/stat?size-only=true`).
    pub async fn repo_stat(&self) -> Result<RepoStat, IpfsError> {
        self.json("repo/stat", &[("size-only", "true".into())])
            .await
    }

    /// How the daemon pins `cid`, if it does (`pin/ls?arg=..&type=..`).
    pub async fn pin_ls(
        &self,
        cid: &Cid,
        pin_type: &str,
    ) -> Result<Option<IpfsPinType>, IpfsError> {
        let query = [
            ("stream", "true".to_owned()),
            ("arg", cid.to_string()),
            ("type", pin_type.to_owned()),
        ];
        let response = match self
            .post("pin/ls", &query, Some(self.config.request_timeout))
            .await
        {
            Ok(response) => response,
            Err(e) if e.is_not_pinned() => return Ok(None),
            Err(e) => return Err(e),
        };
        let text = response.text().await.map_err(|e| IpfsError::Unreadable {
            call: "pin/ls",
            detail: e.to_string(),
        })?;
        Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str::<PinLsLine>(line).ok())
            .find_map(|line| pin_type_of(&line.pin_type)))
    }

    /// Every pin of `pin_type` (`recursive`, `direct`, ...), read as a stream.
    pub async fn pin_ls_all(&self, pin_type: &str) -> Result<DaemonPins, IpfsError> {
        let query = [("stream", "true".to_owned()), ("type", pin_type.to_owned())];
        let response = self
            .post("pin/ls", &query, Some(self.config.request_timeout))
            .await?;
        let mut pins = DaemonPins::new();
        let unreadable = |detail: String| IpfsError::Unreadable {
            call: "pin/ls",
            detail,
        };
        let add_line = |line: &[u8], pins: &mut DaemonPins| -> Result<(), IpfsError> {
            if let Ok(entry) = serde_json::from_slice::<PinLsLine>(line) {
                let cid: Cid = entry
                    .cid
                    .parse()
                    .map_err(|e| unreadable(format!("CID {:?}: {e}", entry.cid)))?;
                if let Some(t) = pin_type_of(&entry.pin_type) {
                    pins.insert(&cid, t);
                }
                return Ok(());
            }
            // A daemon that ignores `stream` answers with one `{"Keys": {...}}` object.
            let keys: PinLsKeys =
                serde_json::from_slice(line).map_err(|e| unreadable(e.to_string()))?;
            for (text, entry) in keys.keys {
                let cid: Cid = text
                    .parse()
                    .map_err(|e| unreadable(format!("CID {text:?}: {e}")))?;
                if let Some(t) = pin_type_of(&entry.pin_type) {
                    pins.insert(&cid, t);
                }
            }
            Ok(())
        };
        let mut lines = std::pin::pin!(lines("pin/ls", response));
        while let Some(line) = lines.next().await {
            add_line(&line?, &mut pins)?;
        }
        if pin_type == "recursive" {
            *self.pin_count.lock().expect("not poisoned") = Some(pins.len() as i64);
        }
        Ok(pins)
    }

    /// The daemon's recursive pins as listed at most [`RECENT_PINS_MAX_AGE`] ago, with every
    /// pin and unpin this client completed since: one listing serves the status requests
    /// that come meanwhile, and never lags this peer's own operations.
    pub async fn recent_recursive_pins(&self) -> Result<Arc<DaemonPins>, IpfsError> {
        let _one_listing = self.listing.lock().await;
        {
            let recent = self.recent_pins.lock().expect("not poisoned");
            if let Some((at, pins)) = recent.listed.as_ref() {
                if at.elapsed() <= RECENT_PINS_MAX_AGE {
                    return Ok(Arc::new(pins.clone()));
                }
            }
        }
        self.recent_pins.lock().expect("not poisoned").while_listing = Some(Vec::new());
        let listed = self.pin_ls_all("recursive").await;
        let mut recent = self.recent_pins.lock().expect("not poisoned");
        let changes = recent.while_listing.take().unwrap_or_default();
        let mut pins = listed?;
        for (cid, now) in changes {
            pins.record(&cid, now);
        }
        recent.listed = Some((Instant::now(), pins.clone()));
        Ok(Arc::new(pins))
    }

    /// Pins `pin` as ipfs-cluster does: nothing if already pinned; `pin/update` from the
    /// pin it updates when the daemon pins that one recursively; otherwise connect to its
    /// origins, then `pin/add` with progress, aborted when progress stalls for the pin
    /// timeout.
    pub async fn pin(&self, pin: &Pin) -> Result<(), IpfsError> {
        self.failure_backoff().await;
        let pin_type = pin_type_name(pin);
        let recursive = pin_type == "recursive";
        if self.pin_ls(&pin.cid, pin_type).await?.is_some() {
            return Ok(());
        }
        if let Some(from) = pin.pin_update.filter(|from| *from != pin.cid && recursive) {
            // As in ipfs-cluster, a failed check falls back to a plain pin.
            if let Ok(Some(_)) = self.pin_ls(&from, "recursive").await {
                return self.pin_update(&from, pin).await;
            }
        }
        for origin in pin.origins.iter().take(MAX_ORIGINS) {
            if let Err(error) = self.swarm_connect(origin).await {
                tracing::debug!(%origin, %error, "could not connect the IPFS daemon to an origin");
            }
        }
        let mut query = vec![
            ("arg", pin.cid.to_string()),
            ("recursive", recursive.to_string()),
            ("progress", "true".to_owned()),
        ];
        if pin.max_depth > 0 {
            query.push(("max-depth", pin.max_depth.to_string()));
        }
        self.pin_adds.fetch_add(1, Ordering::Relaxed);
        let result = self.pin_add(pin, &query).await;
        match result {
            Ok(()) => self.completed(
                &pin.cid,
                Some(if recursive {
                    IpfsPinType::Recursive
                } else {
                    IpfsPinType::Direct
                }),
            ),
            Err(_) => {
                self.pin_add_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    /// `pin/update` from `from` (pinned recursively) to `pin`, keeping `from` pinned: the
    /// daemon fetches only the blocks that differ. It reports no progress, so no stall can
    /// be seen: as in ipfs-cluster, the pin timeout does not apply, and the update is bounded
    /// as an unpin is (`unpin_timeout`).
    async fn pin_update(&self, from: &Cid, pin: &Pin) -> Result<(), IpfsError> {
        let query = [
            ("arg", from.to_string()),
            ("arg", pin.cid.to_string()),
            ("unpin", "false".to_owned()),
        ];
        self.pin_adds.fetch_add(1, Ordering::Relaxed);
        let result = self
            .post("pin/update", &query, Some(self.config.unpin_timeout))
            .await
            .map(drop);
        match result {
            Ok(()) => {
                tracing::debug!(cid = %pin.cid, %from, "pinned with pin/update");
                self.completed(&pin.cid, Some(IpfsPinType::Recursive));
            }
            Err(_) => {
                self.pin_add_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    /// `pin/add` with progress, aborted when progress stalls for the pin timeout.
    async fn pin_add(&self, pin: &Pin, query: &[(&str, String)]) -> Result<(), IpfsError> {
        let stall = self.config.pin_stall_timeout;
        // Until the daemon answers, the wait counts as a stall too.
        let mut response = tokio::time::timeout(stall, self.post("pin/add", query, None))
            .await
            .map_err(|_| IpfsError::Stalled {
                cid: pin.cid,
                stall,
            })??;
        let mut last_progress = 0u64;
        let mut advanced_at = Instant::now();
        let mut buffer = Vec::new();
        loop {
            let left = stall.saturating_sub(advanced_at.elapsed());
            let chunk = match tokio::time::timeout(left, response.chunk()).await {
                Err(_) => {
                    return Err(IpfsError::Stalled {
                        cid: pin.cid,
                        stall,
                    })
                }
                Ok(Err(e)) => {
                    return Err(IpfsError::Unreadable {
                        call: "pin/add",
                        detail: e.to_string(),
                    })
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => chunk,
            };
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                if let Ok(error) = serde_json::from_slice::<ErrorBody>(&line) {
                    return Err(IpfsError::Daemon(error.message));
                }
                if let Ok(update) = serde_json::from_slice::<PinProgress>(&line) {
                    if update.pins.is_some() {
                        return Ok(());
                    }
                    if let Some(progress) = update.progress.filter(|p| *p > last_progress) {
                        last_progress = progress;
                        advanced_at = Instant::now();
                    }
                }
            }
        }
        let tail: PinProgress =
            serde_json::from_slice(&buffer).map_err(|e| IpfsError::Unreadable {
                call: "pin/add",
                detail: e.to_string(),
            })?;
        match tail.pins {
            Some(_) => Ok(()),
            None => Err(IpfsError::Unreadable {
                call: "pin/add",
                detail: "the answer names no pins".into(),
            }),
        }
    }

    /// Unpins `cid` when the daemon pins it as one of `pin_types` (`recursive`, `direct`);
    /// "not pinned" is success. As ipfs-cluster does, it asks `pin/ls` of those types first
    /// (`type=all` would make the daemon walk every recursive pin) and sends `pin/rm` only
    /// for a pin it holds: every pin allocated elsewhere is unpinned here, and `pin/rm`
    /// waits on the lock `pin/add` holds.
    pub async fn unpin(&self, cid: &Cid, pin_types: &[&str]) -> Result<(), IpfsError> {
        self.failure_backoff().await;
        let mut pinned = false;
        for pin_type in pin_types {
            if self.pin_ls(cid, pin_type).await?.is_some() {
                pinned = true;
                break;
            }
        }
        if !pinned {
            return Ok(());
        }
        match self
            .post(
                "pin/rm",
                &[("arg", cid.to_string())],
                Some(self.config.unpin_timeout),
            )
            .await
        {
            Ok(_) => {
                self.completed(cid, None);
                Ok(())
            }
            Err(e) if e.is_not_pinned() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Collects the repository's garbage (`repo/gc?stream-errors=true`): the blocks it
    /// removed, and the errors it met on the way, line by line.
    pub async fn repo_gc(&self) -> Result<Vec<GcKey>, IpfsError> {
        #[derive(Deserialize)]
        struct Line {
            #[serde(rename = "Key", default)]
            key: Option<Link>,
            #[serde(rename = "Error", default)]
            error: Option<String>,
        }
        #[derive(Deserialize)]
        struct Link {
            #[serde(rename = "/")]
            cid: String,
        }
        let query = [("stream-errors", "true".to_owned())];
        let response = self.post("repo/gc", &query, Some(REPO_GC_TIMEOUT)).await?;
        let mut removed = Vec::new();
        let mut lines = std::pin::pin!(lines("repo/gc", response));
        while let Some(line) = lines.next().await {
            let line = line?;
            if let Ok(error) = serde_json::from_slice::<ErrorBody>(&line) {
                return Err(IpfsError::Daemon(error.message));
            }
            let line: Line = serde_json::from_slice(&line).map_err(|e| IpfsError::Unreadable {
                call: "repo/gc",
                detail: e.to_string(),
            })?;
            let key = match line.key {
                Some(link) => Some(link.cid.parse().map_err(|e| IpfsError::Unreadable {
                    call: "repo/gc",
                    detail: format!("CID {:?}: {e}", link.cid),
                })?),
                None => None,
            };
            removed.push(GcKey {
                key,
                error: line.error.unwrap_or_default(),
            });
        }
        Ok(removed)
    }

    /// Adds the files of a multipart body (`add`, never pinned there: the cluster pins the
    /// root). The answer streams one [`Added`] per file and directory, the root last;
    /// `query` carries the daemon's add options (chunker, cid-version, raw-leaves, ...).
    pub async fn add(
        &self,
        body: reqwest::Body,
        content_type: String,
        query: &[(&str, String)],
    ) -> Result<impl futures::Stream<Item = Result<Added, IpfsError>>, IpfsError> {
        let mut query = query.to_vec();
        query.extend([
            ("pin", "false".to_owned()),
            ("progress", "false".to_owned()),
            ("stream-channels", "true".to_owned()),
        ]);
        let response = self
            .post_body("add", &query, None, Some((body, content_type)))
            .await?;
        Ok(lines("add", response).map(|line| {
            let line = line?;
            if let Ok(error) = serde_json::from_slice::<ErrorBody>(&line) {
                return Err(IpfsError::Daemon(error.message));
            }
            let entry: AddLine =
                serde_json::from_slice(&line).map_err(|e| IpfsError::Unreadable {
                    call: "add",
                    detail: e.to_string(),
                })?;
            let cid = entry.hash.parse().map_err(|e| IpfsError::Unreadable {
                call: "add",
                detail: format!("CID {:?}: {e}", entry.hash),
            })?;
            Ok(Added {
                name: entry.name,
                cid,
                size: entry.size,
            })
        }))
    }

    /// Imports the blocks of the CAR file in a multipart body (`dag/import`), leaving its
    /// roots unpinned.
    pub async fn import_car(
        &self,
        body: reqwest::Body,
        content_type: String,
    ) -> Result<(), IpfsError> {
        let query = [("pin-roots", "false".to_owned())];
        let response = self
            .post_body("dag/import", &query, None, Some((body, content_type)))
            .await?;
        // Errors after the blocks started to arrive come as lines of their own.
        let mut lines = std::pin::pin!(lines("dag/import", response));
        while let Some(line) = lines.next().await {
            if let Ok(error) = serde_json::from_slice::<ErrorBody>(&line?) {
                return Err(IpfsError::Daemon(error.message));
            }
        }
        Ok(())
    }

    /// The blocks of the DAG under `root`, as the daemon exports them (`dag/export`, a
    /// CARv1 stream), one at a time as they arrive.
    pub async fn dag_export(
        &self,
        root: &Cid,
    ) -> Result<impl futures::Stream<Item = Result<(Cid, Vec<u8>), IpfsError>>, IpfsError> {
        const CALL: &str = "dag/export";
        let unreadable = |detail: String| IpfsError::Unreadable { call: CALL, detail };
        let response = self
            .post(
                CALL,
                &[("arg", root.to_string()), ("progress", "false".to_owned())],
                None,
            )
            .await?;
        let chunks = Box::pin(response.bytes_stream());
        let reader = crate::car::CarBlocks::new(MAX_CAR_SECTION);
        Ok(futures::stream::unfold(
            Some((chunks, reader)),
            move |state| async move {
                let (mut chunks, mut reader) = state?;
                loop {
                    match reader.next_block() {
                        Ok(Some(block)) => return Some((Ok(block), Some((chunks, reader)))),
                        Ok(None) => {}
                        Err(e) => return Some((Err(unreadable(e.to_string())), None)),
                    }
                    match chunks.next().await {
                        Some(Ok(bytes)) => reader.push(&bytes),
                        Some(Err(e)) => return Some((Err(unreadable(e.to_string())), None)),
                        None => {
                            return reader
                                .finish()
                                .err()
                                .map(|e| (Err(unreadable(e.to_string())), None));
                        }
                    }
                }
            },
        ))
    }

    /// The CID an `/ipfs`, `/ipns` or `/ipld` path ends at (`resolve`, recursively).
    pub async fn resolve(&self, path: &str) -> Result<Cid, IpfsError> {
        #[derive(Deserialize)]
        struct Resolved {
            #[serde(rename = "Path")]
            path: String,
        }
        let query = [("arg", path.to_owned()), ("recursive", "true".to_owned())];
        let resolved: Resolved = self.json("resolve", &query).await?;
        let rest = resolved
            .path
            .strip_prefix("/ipfs/")
            .ok_or_else(|| IpfsError::Unreadable {
                call: "resolve",
                detail: format!("{:?} is not an /ipfs/ path", resolved.path),
            })?;
        match rest.split_once('/') {
            None => rest.parse().map_err(|e| IpfsError::Unreadable {
                call: "resolve",
                detail: format!("CID {rest:?}: {e}"),
            }),
            Some((_, inside)) => Err(IpfsError::Daemon(format!(
                "{path} resolves to {inside:?} inside a block, not to a block of its own"
            ))),
        }
    }

    /// The peers the daemon is connected to (`swarm/peers`), each once.
    pub async fn swarm_peers(&self) -> Result<Vec<PeerId>, IpfsError> {
        #[derive(Deserialize)]
        struct Peers {
            #[serde(rename = "Peers", default)]
            peers: Option<Vec<SwarmPeer>>,
        }
        #[derive(Deserialize)]
        struct SwarmPeer {
            #[serde(rename = "Peer")]
            peer: String,
        }
        let answer: Peers = self.json("swarm/peers", &[]).await?;
        let mut peers: Vec<PeerId> = answer
            .peers
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.peer.parse().ok())
            .collect();
        peers.sort();
        peers.dedup();
        Ok(peers)
    }

    /// Stores a block the daemon is given (`block/put`), under `cid`'s codec and hash
    /// function, and checks the daemon computed the same multihash.
    pub async fn block_put(&self, cid: &Cid, data: Vec<u8>) -> Result<(), IpfsError> {
        let unsupported = |what: &str| IpfsError::Daemon(format!("block {cid}: {what}"));
        let codec = match cid.codec() {
            0x55 => "raw",
            0x70 => "dag-pb",
            0x71 => "dag-cbor",
            0x0129 => "dag-json",
            other => {
                return Err(unsupported(&format!(
                    "codec 0x{other:x} is not one Kubo stores"
                )))
            }
        };
        let hash = match cid.hash().code() {
            0x12 => "sha2-256",
            0x13 => "sha2-512",
            0x1e => "blake3",
            0xb220 => "blake2b-256",
            other => {
                return Err(unsupported(&format!(
                    "hash function 0x{other:x} is not one Kubo knows"
                )))
            }
        };
        const BOUNDARY: &str = "pinfold-block-boundary";
        let mut body = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"data\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&data);
        body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
        let query = [
            ("cid-codec", codec.to_owned()),
            ("mhtype", hash.to_owned()),
            ("mhlen", cid.hash().size().to_string()),
            ("pin", "false".to_owned()),
            ("allow-big-block", "true".to_owned()),
        ];
        let response = self
            .post_body(
                "block/put",
                &query,
                Some(self.config.request_timeout),
                Some((
                    reqwest::Body::from(body),
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )),
            )
            .await?;
        #[derive(Deserialize)]
        struct Stored {
            #[serde(rename = "Key")]
            key: String,
        }
        let bytes = response.bytes().await.map_err(|e| IpfsError::Unreadable {
            call: "block/put",
            detail: e.to_string(),
        })?;
        let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| IpfsError::Unreadable {
            call: "block/put",
            detail: e.to_string(),
        })?;
        let key: Cid = stored.key.parse().map_err(|e| IpfsError::Unreadable {
            call: "block/put",
            detail: format!("CID {:?}: {e}", stored.key),
        })?;
        if key.hash() != cid.hash() {
            return Err(IpfsError::Daemon(format!(
                "block {cid}: its data hashes to {key}, not to the CID it was sent with"
            )));
        }
        Ok(())
    }

    /// A block's bytes (`block/get`), within the request timeout (the daemon may look for
    /// it on the network meanwhile); checked against `cid`'s hash when it is SHA2-256.
    pub async fn block_get(&self, cid: &Cid) -> Result<Vec<u8>, IpfsError> {
        let query = [("arg", cid.to_string())];
        let response = self
            .post_body("block/get", &query, Some(self.config.request_timeout), None)
            .await?;
        let bytes = response.bytes().await.map_err(|e| IpfsError::Unreadable {
            call: "block/get",
            detail: e.to_string(),
        })?;
        if cid.hash().code() == 0x12 {
            use sha2::Digest;
            if sha2::Sha256::digest(&bytes).as_slice() != cid.hash().digest() {
                return Err(IpfsError::Daemon(format!(
                    "block {cid}: the daemon's bytes do not hash to it"
                )));
            }
        }
        Ok(bytes.to_vec())
    }

    /// Connects the daemon to another IPFS peer (`swarm/connect`).
    pub async fn swarm_connect(&self, address: &Multiaddr) -> Result<(), IpfsError> {
        self.json::<serde_json::Value>("swarm/connect", &[("arg", address.to_string())])
            .await
            .map(drop)
    }
}

/// A shared client.
pub type Ipfs = Arc<IpfsClient>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_url_is_the_daemons_http_endpoint() {
        let url = api_url(&"/ip4/127.0.0.1/tcp/5001".parse().unwrap());
        assert_eq!(url.unwrap(), "http://127.0.0.1:5001/api/v0");
    }
}
