//! The follower as JavaScript sees it: `Follower.start(options, onEvent)` and a handle
//! whose methods return promises of JSON text (the npm package parses and types them).
//!
//! Errors are JavaScript `Error`s with a `code` (see [`ErrorCode`]).

use std::cell::Cell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use cid::Cid;
use futures::channel::{mpsc, oneshot};
use futures::SinkExt;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use pinfold_core::codec::peer_request::MAX_CIDS;
use pinfold_core::codec::pubsub::DEFAULT_CLUSTER_NAME;
use pinfold_core::codec::secret::ClusterSecret;
use pinfold_core::crdt::Trust;
use pinfold_core::pin::Pin;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::error_code::ErrorCode;
use crate::follower::{self, Command, Follower, Problem, Settings, Sink};
use crate::idb::{IdbError, IdbStore};
use crate::store::FollowerStore;
use libp2p::identity::Keypair;
use pinfold_core::crdt::MemoryStore;
use pinfold_core::node::SyncState;

/// The options `start` takes (the npm package's `follow` options, as JSON).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Options {
    #[serde(default)]
    cluster: Option<String>,
    secret: Option<String>,
    bootstrap: Vec<String>,
    #[serde(default)]
    trusted_peers: Option<Vec<String>>,
    #[serde(default)]
    connect_timeout_ms: Option<u64>,
    /// `"memory"` (the default) or `"indexeddb"`.
    #[serde(default)]
    storage: Option<String>,
    /// The IndexedDB database's name; default `pinfold-<cluster>`.
    #[serde(default)]
    storage_name: Option<String>,
}

/// Where the replica lives, as the options say.
enum Storage {
    Memory,
    IndexedDb(String),
}

/// The IndexedDB record of the follower's identity, so that it keeps its peer id.
const IDENTITY_KEY: &str = "identity";

/// The default bound on the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

fn invalid(message: impl std::fmt::Display) -> JsValue {
    ErrorCode::InvalidOptions.error(&message.to_string())
}

fn closed() -> JsValue {
    ErrorCode::Closed.error("the follower is closed")
}

impl Options {
    /// `crdt.cluster_name`: the option, or ipfs-cluster's default.
    fn cluster_name(&self) -> &str {
        self.cluster.as_deref().unwrap_or(DEFAULT_CLUSTER_NAME)
    }

    fn storage(&self) -> Result<Storage, JsValue> {
        match self.storage.as_deref() {
            None | Some("memory") => Ok(Storage::Memory),
            Some("indexeddb") => Ok(Storage::IndexedDb(
                self.storage_name
                    .clone()
                    .unwrap_or_else(|| format!("pinfold-{}", self.cluster_name())),
            )),
            Some(other) => Err(invalid(format!(
                "storage: {other:?} is not \"memory\" or \"indexeddb\""
            ))),
        }
    }

    fn settings(self) -> Result<Settings, JsValue> {
        let cluster_name = self.cluster_name().to_owned();
        let secret = match self.secret.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) if text.starts_with("/key/") => Some(
                ClusterSecret::from_key_file(text.as_bytes())
                    .map_err(|e| invalid(format!("secret: {e}")))?,
            ),
            Some(hex) => {
                Some(ClusterSecret::from_hex(hex).map_err(|e| invalid(format!("secret: {e}")))?)
            }
        };
        let bootstrap = self
            .bootstrap
            .iter()
            .map(|text| {
                text.parse::<Multiaddr>()
                    .map_err(|e| invalid(format!("bootstrap: {text:?} is not a multiaddr: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        #[cfg(not(feature = "webrtc"))]
        if let Some(address) = bootstrap
            .iter()
            .find(|a| a.iter().any(|p| p == Protocol::WebRTCDirect))
        {
            return Err(invalid(format!(
                "bootstrap: {address} is a webrtc-direct address, and this build has no WebRTC \
                 (it is the build for Node, Deno, Bun and workerd, which have no \
                 RTCPeerConnection): give the peer's WebSocket address"
            )));
        }
        let trust = match self.trusted_peers {
            Some(peers) if peers.iter().any(|p| p == "*") => Trust::All,
            Some(peers) => Trust::Peers(
                peers
                    .iter()
                    .map(|p| {
                        p.parse::<PeerId>().map_err(|e| {
                            invalid(format!("trustedPeers: {p:?} is not a peer id: {e}"))
                        })
                    })
                    .collect::<Result<HashSet<_>, _>>()?,
            ),
            None => {
                let named: HashSet<PeerId> = bootstrap
                    .iter()
                    .filter_map(|a| match a.iter().last() {
                        Some(Protocol::P2p(peer)) => Some(peer),
                        _ => None,
                    })
                    .collect();
                if named.is_empty() {
                    return Err(invalid(
                        "trustedPeers: name the peers whose pinset to follow (or \"*\"), \
                         or end the bootstrap addresses with /p2p/<peer id> to trust those",
                    ));
                }
                Trust::Peers(named)
            }
        };
        Ok(Settings {
            cluster_name,
            secret,
            bootstrap,
            trust,
            connect_timeout: self
                .connect_timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(CONNECT_TIMEOUT),
        })
    }
}

/// Reports to the page's `onEvent(type, json)`: `pin` (the pin), `unpin` (`{cid}`),
/// `peer` (`{id, joined}`), `sync` (the sync state) and `error` (`{code, message}`). `pin`
/// and `unpin` come only while `pins_listened` (see [`FollowerHandle::listen_to_pins`]):
/// the follower asks [`Sink::wants_pins`] before each event.
struct JsSink {
    on_event: js_sys::Function,
    pins_listened: Rc<Cell<bool>>,
}

impl JsSink {
    fn emit(&self, kind: &str, payload: &impl Serialize) {
        let json = serde_json::to_string(payload).expect("events serialize");
        if let Err(error) = self
            .on_event
            .call2(&JsValue::NULL, &kind.into(), &json.into())
        {
            web_sys::console::error_2(&"pinfold: an event listener threw".into(), &error);
        }
    }
}

#[derive(Serialize)]
struct CidEvent {
    cid: String,
}

#[derive(Serialize)]
struct ErrorEvent<'a> {
    code: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct PeerEvent {
    id: String,
    joined: bool,
}

impl Sink for JsSink {
    fn wants_pins(&self) -> bool {
        self.pins_listened.get()
    }

    fn pin(&self, pin: &Pin) {
        self.emit("pin", pin);
    }

    fn unpin(&self, cid: &Cid) {
        self.emit(
            "unpin",
            &CidEvent {
                cid: cid.to_string(),
            },
        );
    }

    fn peer(&self, peer: &PeerId, joined: bool) {
        self.emit(
            "peer",
            &PeerEvent {
                id: peer.to_base58(),
                joined,
            },
        );
    }

    fn sync(&self, state: &SyncState) {
        self.emit("sync", state);
    }

    fn error(&self, problem: Problem, message: &str) {
        self.emit(
            "error",
            &ErrorEvent {
                code: problem.code().as_str(),
                message,
            },
        );
    }
}

/// A running follower. Dropping every handle (or `close`) stops it.
#[wasm_bindgen(js_name = Follower)]
pub struct FollowerHandle {
    commands: mpsc::Sender<Command>,
    peer_id: String,
    pins_listened: Rc<Cell<bool>>,
}

fn parse_cid(text: &str) -> Result<Cid, JsValue> {
    text.parse()
        .map_err(|e| ErrorCode::InvalidCid.error(&format!("{text:?} is not a CID: {e}")))
}

#[wasm_bindgen(js_class = Follower)]
impl FollowerHandle {
    /// Starts a follower with `options` (JSON) and resolves once a bootstrap peer is
    /// connected; rejects with `WRONG_SECRET`, `UNREACHABLE`, `INVALID_OPTIONS` or `STORAGE`.
    pub async fn start(
        options: String,
        #[wasm_bindgen(unchecked_param_type = "(type: string, json: string) => void")]
        on_event: js_sys::Function,
    ) -> Result<FollowerHandle, JsValue> {
        console_error_panic_hook::set_once();
        let options: Options = serde_json::from_str(&options).map_err(invalid)?;
        let storage = options.storage()?;
        let settings = options.settings()?;
        let connect_timeout = settings.connect_timeout;
        let (key, store) = open_storage(storage)
            .await
            .map_err(|e| ErrorCode::Storage.error(&e.to_string()))?;
        let (started_tx, started) = oneshot::channel();
        let pins_listened = Rc::new(Cell::new(false));
        let sink = JsSink {
            on_event,
            pins_listened: pins_listened.clone(),
        };
        let follower = Follower::new(key, settings, store, sink, started_tx)
            .await
            .map_err(|e| e.code().error(&e.to_string()))?;
        let peer_id = follower.local_peer_id().to_base58();
        let (commands, receiver) = mpsc::channel(follower::COMMAND_QUEUE);
        wasm_bindgen_futures::spawn_local(follower.run(receiver, connect_timeout));
        match started.await {
            Ok(Ok(())) => Ok(FollowerHandle {
                commands,
                peer_id,
                pins_listened,
            }),
            Ok(Err(error)) => Err(error.code().error(&error.to_string())),
            Err(_) => Err(ErrorCode::Unreachable.error("the follower stopped before connecting")),
        }
    }

    /// This follower's peer id.
    #[wasm_bindgen(getter, js_name = peerId)]
    pub fn peer_id(&self) -> String {
        self.peer_id.clone()
    }

    /// Up to `limit` pins (ipfs-cluster's pin JSON, an array), in state order after the
    /// pin of `after`.
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn pins(&self, after: Option<String>, limit: u32) -> Result<js_sys::Promise, JsValue> {
        let after = after.as_deref().map(parse_cid).transpose()?;
        Ok(
            self.ask_fallible(ErrorCode::Storage, move |reply| Command::Pins {
                after,
                limit: limit as usize,
                reply,
            }),
        )
    }

    /// The pin of `cid` (JSON), or `null`.
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn get(&self, cid: String) -> Result<js_sys::Promise, JsValue> {
        let cid = parse_cid(&cid)?;
        Ok(self.ask_fallible(ErrorCode::Storage, move |reply| Command::Get { cid, reply }))
    }

    /// The statuses of up to 1000 `cids` on every live cluster peer, in one request per
    /// peer (a JSON array of ipfs-cluster's `GlobalPinInfo`, in the order
    /// asked; a CID no peer reported on is left out).
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn statuses(&self, cids: Vec<String>) -> Result<js_sys::Promise, JsValue> {
        if cids.len() > MAX_CIDS {
            return Err(ErrorCode::InvalidOptions.error(&format!(
                "{} CIDs asked at once; ask at most {MAX_CIDS} per call",
                cids.len()
            )));
        }
        let cids = cids
            .iter()
            .map(|cid| parse_cid(cid))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(
            self.ask_fallible(ErrorCode::NoStatus, move |reply| Command::Statuses {
                cids,
                reply,
            }),
        )
    }

    /// Each live cluster peer's statuses of the whole pinset, counted (JSON array).
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn summaries(&self) -> js_sys::Promise {
        self.ask_fallible(ErrorCode::NoStatus, |reply| Command::Summaries { reply })
    }

    /// The cluster peers seen (JSON array).
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn peers(&self) -> js_sys::Promise {
        self.ask(|reply| Command::Peers { reply })
    }

    /// The latest live metrics called `name`, one per peer (JSON array).
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn metrics(&self, name: String) -> js_sys::Promise {
        self.ask(move |reply| Command::Metrics { name, reply })
    }

    /// The names of the metrics received (JSON array), for example `tag:group`.
    #[wasm_bindgen(js_name = metricNames, unchecked_return_type = "Promise<string>")]
    pub fn metric_names(&self) -> js_sys::Promise {
        self.ask(|reply| Command::MetricNames { reply })
    }

    /// Heads, height and progress of the sync (JSON).
    #[wasm_bindgen(js_name = syncState, unchecked_return_type = "Promise<string>")]
    pub fn sync_state(&self) -> js_sys::Promise {
        self.ask(|reply| Command::SyncState { reply })
    }

    /// Whether `pin` and `unpin` events are sent; off until a listener wants them, so that
    /// a sync of a million pins serializes no events nobody reads.
    #[wasm_bindgen(js_name = listenToPins)]
    pub fn listen_to_pins(&self, on: bool) {
        self.pins_listened.set(on);
    }

    /// Stops the follower: its connections close and later calls reject with `CLOSED`.
    pub fn close(&mut self) {
        self.commands.close_channel();
    }
}

impl FollowerHandle {
    /// Sends the command `make` builds and resolves with its answer as JSON text.
    fn ask<T: Serialize + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command + 'static,
    ) -> js_sys::Promise {
        let commands = self.commands.clone();
        wasm_bindgen_futures::future_to_promise(
            async move { Ok(json(&request(commands, make).await?)) },
        )
    }

    /// Like [`FollowerHandle::ask`] for commands that may fail: a failure rejects with an
    /// error of `code`.
    fn ask_fallible<T: Serialize + 'static>(
        &self,
        code: ErrorCode,
        make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Command + 'static,
    ) -> js_sys::Promise {
        let commands = self.commands.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            match request(commands, make).await? {
                Ok(value) => Ok(json(&value)),
                Err(error) => Err(code.error(&error)),
            }
        })
    }
}

/// Sends the command `make` builds and waits for its answer.
async fn request<T>(
    mut commands: mpsc::Sender<Command>,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, JsValue> {
    let (reply, answer) = oneshot::channel();
    commands.send(make(reply)).await.map_err(|_| closed())?;
    answer.await.map_err(|_| closed())
}

/// The store, and the identity: kept in IndexedDB with the replica, new each time in memory.
async fn open_storage(storage: Storage) -> Result<(Keypair, FollowerStore), IdbError> {
    match storage {
        Storage::Memory => Ok((
            Keypair::generate_ed25519(),
            FollowerStore::Memory(MemoryStore::new()),
        )),
        Storage::IndexedDb(name) => {
            let store = IdbStore::open(&name).await?;
            let kept = store.meta(IDENTITY_KEY).await?;
            let key = match kept.map(|bytes| Keypair::from_protobuf_encoding(&bytes)) {
                Some(Ok(key)) => key,
                Some(Err(e)) => return Err(IdbError::Corrupt(format!("identity: {e}"))),
                None => {
                    let key = Keypair::generate_ed25519();
                    let bytes = key.to_protobuf_encoding().expect("ed25519 keys encode");
                    store.set_meta(IDENTITY_KEY, &bytes).await?;
                    key
                }
            };
            Ok((key, FollowerStore::IndexedDb(store)))
        }
    }
}

fn json(value: &impl Serialize) -> JsValue {
    serde_json::to_string(value)
        .expect("answers serialize")
        .into()
}
