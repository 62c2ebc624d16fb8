//! The peer's configuration: `service.json` with ipfs-cluster's sections and keys where
//! they exist, `identity.json` as ipfs-cluster writes it, and environment overrides named
//! as ipfs-cluster names them (`CLUSTER_SECRET`, `CLUSTER_CRDT_TRUSTEDPEERS`, ...).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use pinfold_core::codec::pubsub::DEFAULT_CLUSTER_NAME;
use pinfold_core::codec::secret::ClusterSecret;
use serde::{Deserialize, Serialize};

pub use pinfold_core::go_duration::{GoDuration, GoDurationError};

/// The configuration file in a peer's folder.
pub const CONFIG_FILE: &str = "service.json";
/// The identity file in a peer's folder.
pub const IDENTITY_FILE: &str = "identity.json";
/// The durable pinset in a peer's folder.
pub const PINSET_FILE: &str = "pinset.redb";
/// Known peers' addresses, kept across restarts.
pub const PEERSTORE_FILE: &str = "peerstore";
/// The webrtc-direct certificate (PEM), made at the first start.
pub const WEBRTC_CERTIFICATE_FILE: &str = "webrtc.pem";

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid pinfold configuration: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} already exists; remove it or pass --force to overwrite it")]
    Exists { path: PathBuf },
    #[error("{field}: {detail}")]
    Invalid { field: String, detail: String },
}

/// One warning naming the keys of the configuration from `source` that are ignored.
pub fn warn_ignored(source: &str, ignored: &[String]) {
    if !ignored.is_empty() {
        tracing::warn!(
            "{source}: {} key(s) that pinfold does not implement are ignored: {}",
            ignored.len(),
            ignored.join(", ")
        );
    }
}

fn invalid(field: &str, detail: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        detail: detail.to_string(),
    }
}

/// What a peer does in the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Keeps the pinset, accepts writes (when trusted), pins on its IPFS daemon, relays.
    #[default]
    Full,
    /// Routes for browsers (relay, bootstrap), keeps the pinset to serve it and accepts
    /// writes; pins nothing and is never allocated pins.
    Relay,
    /// Keeps the pinset and pins what is allocated to it; never writes (ipfs-cluster's
    /// `follower_mode`).
    Follower,
}

impl Role {
    /// Its name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Full => "full",
            Role::Relay => "relay",
            Role::Follower => "follower",
        }
    }

    pub fn pins(self) -> bool {
        self != Role::Relay
    }

    pub fn writes(self) -> bool {
        self != Role::Follower
    }
}

fn secs(s: u64) -> GoDuration {
    GoDuration(Duration::from_secs(s))
}

/// `service.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceConfig {
    pub cluster: ClusterSection,
    pub consensus: ConsensusSection,
    pub api: ApiSection,
    pub ipfs_connector: IpfsConnectorSection,
    pub pin_tracker: PinTrackerSection,
    pub allocator: AllocatorSection,
    pub informer: InformerSection,
    pub relay: RelaySection,
    pub observations: ObservationsSection,
    /// Go ipfs-cluster's datastore section, kept as it is: pinfold keeps its pinset in
    /// redb and reads nothing in it, but Go's `ipfs-cluster-follow` needs one in the
    /// follow template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datastore: Option<serde_json::Value>,
}

/// The datastore a follow template names when its peer's configuration names none: Go's
/// default (pebble), with its defaults.
fn default_datastore() -> serde_json::Value {
    serde_json::json!({ "pebble": {} })
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterSection {
    pub peername: String,
    /// 64 hex characters; empty means no private network (refused unless explicitly allowed).
    pub secret: String,
    pub role: Role,
    pub listen_multiaddress: Vec<Multiaddr>,
    /// The addresses other peers and relay clients are told to reach this peer at; empty
    /// announces the listen addresses.
    pub announce_multiaddress: Vec<Multiaddr>,
    /// Addresses (with `/p2p/`) dialed at start, besides the peerstore's.
    pub peer_addresses: Vec<Multiaddr>,
    pub replication_factor_min: i32,
    pub replication_factor_max: i32,
    pub monitor_ping_interval: GoDuration,
    pub pin_recover_interval: GoDuration,
    /// How often expired pins are looked for (and unpinned by the closest trusted peer).
    pub state_sync_interval: GoDuration,
    pub dial_peer_timeout: GoDuration,
    /// Most established connections, inbound and outbound together.
    pub max_connections: u32,
    /// When false, a peer whose ping expires has its pins re-allocated to the others.
    pub disable_repinning: bool,
    /// Allocate only to trusted peers (`consensus.crdt.trusted_peers`).
    pub pin_only_on_trusted_peers: bool,
    /// Allocate only to peers that are not trusted.
    pub pin_only_on_untrusted_peers: bool,
    /// On shutdown, have another trusted pinfold peer re-allocate this peer's pins
    /// (`daemon --leave`).
    pub leave_on_shutdown: bool,
    /// How often to look for peers on the local network over mDNS (Go's service, so Go
    /// peers are found too); 0 turns mDNS off.
    pub mdns_interval: GoDuration,
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            peername: String::new(),
            secret: String::new(),
            role: Role::Full,
            listen_multiaddress: vec![
                "/ip4/0.0.0.0/tcp/9096".parse().expect("valid"),
                "/ip4/0.0.0.0/tcp/9098/ws".parse().expect("valid"),
                "/ip4/0.0.0.0/udp/9096/webrtc-direct"
                    .parse()
                    .expect("valid"),
            ],
            announce_multiaddress: Vec::new(),
            peer_addresses: Vec::new(),
            replication_factor_min: -1,
            replication_factor_max: -1,
            monitor_ping_interval: secs(15),
            pin_recover_interval: secs(12 * 60),
            state_sync_interval: secs(5 * 60),
            dial_peer_timeout: secs(3),
            max_connections: 400,
            disable_repinning: true,
            pin_only_on_trusted_peers: false,
            pin_only_on_untrusted_peers: false,
            leave_on_shutdown: false,
            mdns_interval: secs(10),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsensusSection {
    pub crdt: CrdtSection,
    /// Present: the peer runs Raft consensus instead of the CRDT (`init --consensus raft`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raft: Option<RaftSection>,
}

/// Raft consensus, with Go ipfs-cluster's keys for what pinfold's Raft does (Go's other
/// keys, for hashicorp/raft's internals, are read and ignored).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct RaftSection {
    /// The peer ids of the cluster's first peers, this one among them. Empty: this peer
    /// starts a cluster alone or, started with `--bootstrap`, asks to join one.
    pub init_peerset: Vec<String>,
    /// How long a write may wait for a majority of the peers to commit it.
    pub network_timeout: GoDuration,
    /// How long a follower waits without word from the leader before it stands for
    /// election; the leader sends a heartbeat ten times as often.
    pub heartbeat_timeout: GoDuration,
    /// The shortest wait before an election (the longer of this and `heartbeat_timeout`
    /// counts).
    pub election_timeout: GoDuration,
    /// Entries applied between two snapshots of the pinset.
    pub snapshot_threshold: u64,
    /// Entries kept in the log after a snapshot, for followers that lag.
    pub trailing_logs: u64,
}

impl Default for RaftSection {
    /// Go ipfs-cluster's defaults.
    fn default() -> Self {
        Self {
            init_peerset: Vec::new(),
            network_timeout: secs(10),
            heartbeat_timeout: secs(1),
            election_timeout: secs(1),
            snapshot_threshold: 8192,
            trailing_logs: 10_240,
        }
    }
}

impl RaftSection {
    /// The core's settings: Raft's clock ticks every 100 ms.
    pub fn settings(&self) -> pinfold_core::consensus::RaftSettings {
        const TICK_MS: u64 = 100;
        let election_ms = self
            .heartbeat_timeout
            .millis()
            .max(self.election_timeout.millis());
        let election_ticks = (election_ms / TICK_MS).max(3) as usize;
        pinfold_core::consensus::RaftSettings {
            tick_ms: TICK_MS,
            heartbeat_ticks: (election_ticks / 10).max(1),
            election_ticks,
            snapshot_threshold: self.snapshot_threshold.max(1),
            trailing_logs: self.trailing_logs,
            commit_timeout_ms: self.network_timeout.millis().max(TICK_MS),
        }
    }

    /// `init_peerset` as peer ids.
    pub fn initial_peers(&self) -> Result<Vec<PeerId>, ConfigError> {
        self.init_peerset
            .iter()
            .map(|p| {
                p.parse::<PeerId>()
                    .map_err(|e| invalid("consensus.raft.init_peerset", format!("{p:?}: {e}")))
            })
            .collect()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct CrdtSection {
    pub cluster_name: String,
    /// Peer ids whose writes are accepted, or `"*"` for every peer.
    pub trusted_peers: Vec<String>,
    pub batching: BatchingSection,
    pub repair_interval: GoDuration,
    pub rebroadcast_interval: GoDuration,
    /// pinfold's addition: a compaction snapshot is made each time the DAG grew by this
    /// many deltas (0: never), for new replicas to load instead of walking the DAG.
    pub snapshot_every: u64,
    /// The least time between two snapshots.
    pub snapshot_min_interval: GoDuration,
}

impl Default for CrdtSection {
    fn default() -> Self {
        Self {
            cluster_name: DEFAULT_CLUSTER_NAME.to_owned(),
            trusted_peers: vec!["*".to_owned()],
            batching: BatchingSection::default(),
            repair_interval: secs(3600),
            rebroadcast_interval: secs(60),
            snapshot_every: 10_000,
            snapshot_min_interval: secs(600),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchingSection {
    pub max_batch_size: usize,
    pub max_batch_age: GoDuration,
}

impl Default for BatchingSection {
    fn default() -> Self {
        Self {
            max_batch_size: 0,
            max_batch_age: secs(0),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiSection {
    pub restapi: RestApiSection,
    pub pinsvcapi: PinSvcApiSection,
    pub ipfsproxy: IpfsProxySection,
}

/// The IPFS proxy API (`api.ipfsproxy`), as Go ipfs-cluster's: the IPFS daemon's RPC API,
/// whose pin, add, repository and put commands act on the cluster instead.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct IpfsProxySection {
    /// Where it listens: one address or a list, as Go writes it; empty turns it off.
    #[serde(deserialize_with = "one_or_many")]
    pub listen_multiaddress: Vec<Multiaddr>,
    /// The daemon's RPC API that requests are passed to; `null`: the IPFS connector's
    /// (`ipfs_connector.ipfshttp.node_multiaddress`).
    pub node_multiaddress: Option<Multiaddr>,
    /// Headers of the daemon's answers (besides `Access-Control-Expose-Headers`) copied
    /// into the proxy's own answers: those set in the daemon's `API.HTTPHeaders`.
    pub extract_headers_extra: Vec<String>,
    /// The daemon's route those headers are read from.
    pub extract_headers_path: String,
    /// How long they are kept before they are read again (0: read for every answer).
    pub extract_headers_ttl: GoDuration,
}

impl Default for IpfsProxySection {
    fn default() -> Self {
        Self {
            listen_multiaddress: vec!["/ip4/127.0.0.1/tcp/9095".parse().expect("valid")],
            node_multiaddress: None,
            extract_headers_extra: Vec::new(),
            extract_headers_path: "/api/v0/version".into(),
            extract_headers_ttl: secs(5 * 60),
        }
    }
}

/// Go's `config.Strings` of addresses: a list, or one address as a string (empty: none).
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Multiaddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<Multiaddr>),
    }
    match OneOrMany::deserialize(deserializer)? {
        OneOrMany::Many(addresses) => Ok(addresses),
        OneOrMany::One(text) if text.trim().is_empty() => Ok(Vec::new()),
        OneOrMany::One(text) => text
            .parse()
            .map(|address| vec![address])
            .map_err(serde::de::Error::custom),
    }
}

/// The IPFS Pinning Services API (`api.pinsvcapi`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct PinSvcApiSection {
    /// Where it listens; `null` turns it off.
    pub http_listen_multiaddress: Option<Multiaddr>,
    /// Users and passwords for basic authentication and `POST /token` (whose bearer
    /// tokens pinning clients send); `null` leaves the API open.
    pub basic_auth_credentials: Option<BTreeMap<String, String>>,
    /// PEM certificate chain and private key for HTTPS, as for the REST API.
    pub ssl_cert_file: Option<PathBuf>,
    pub ssl_key_file: Option<PathBuf>,
}

impl Default for PinSvcApiSection {
    fn default() -> Self {
        Self {
            http_listen_multiaddress: Some("/ip4/127.0.0.1/tcp/9097".parse().expect("valid")),
            basic_auth_credentials: None,
            ssl_cert_file: None,
            ssl_key_file: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct RestApiSection {
    pub http_listen_multiaddress: Multiaddr,
    /// Users and passwords for basic authentication (and `POST /token`); `null` leaves the
    /// API open.
    pub basic_auth_credentials: Option<BTreeMap<String, String>>,
    /// Origins browsers may call the API from (`*`: any).
    pub cors_allowed_origins: Vec<String>,
    pub cors_allowed_methods: Vec<String>,
    pub cors_allowed_headers: Vec<String>,
    pub cors_exposed_headers: Vec<String>,
    pub cors_allow_credentials: bool,
    /// How long browsers may keep a preflight answer.
    pub cors_max_age: GoDuration,
    /// Serve `GET /follow/template.json`, the configuration `pinfold follow` followers
    /// run with. It holds the cluster secret, and is served without credentials, so that
    /// followers need nothing but its URL: turn it on only where followers may read it.
    pub serve_follow_template: bool,
    /// PEM certificate chain and private key: with both, the API speaks HTTPS only.
    /// Relative paths are read from the peer's folder.
    pub ssl_cert_file: Option<PathBuf>,
    pub ssl_key_file: Option<PathBuf>,
    /// The built web dashboard (`web/dist`, made by `scripts/build-web`), served at `/ui/`
    /// without credentials: it holds no cluster data, it joins the swarm from the browser.
    /// A relative path is read from the peer's folder; `null` serves no dashboard.
    pub dashboard_dir: Option<PathBuf>,
}

impl Default for RestApiSection {
    fn default() -> Self {
        let strings = |texts: &[&str]| texts.iter().map(|t| t.to_string()).collect();
        Self {
            http_listen_multiaddress: "/ip4/127.0.0.1/tcp/9094".parse().expect("valid"),
            basic_auth_credentials: None,
            cors_allowed_origins: strings(&["*"]),
            cors_allowed_methods: strings(&["GET"]),
            cors_allowed_headers: Vec::new(),
            cors_exposed_headers: strings(&[
                "Content-Type",
                "X-Stream-Output",
                "X-Chunked-Output",
                "X-Content-Length",
            ]),
            cors_allow_credentials: true,
            cors_max_age: GoDuration(Duration::ZERO),
            serve_follow_template: false,
            ssl_cert_file: None,
            ssl_key_file: None,
            dashboard_dir: None,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IpfsConnectorSection {
    pub ipfshttp: IpfsHttpSection,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct IpfsHttpSection {
    pub node_multiaddress: Multiaddr,
    /// Wait before connecting the daemon to the other peers' daemons.
    pub connect_swarms_delay: GoDuration,
    pub ipfs_request_timeout: GoDuration,
    /// A pin whose progress stalls this long is aborted.
    pub pin_timeout: GoDuration,
    pub unpin_timeout: GoDuration,
}

impl Default for IpfsHttpSection {
    fn default() -> Self {
        Self {
            node_multiaddress: "/ip4/127.0.0.1/tcp/5001".parse().expect("valid"),
            connect_swarms_delay: secs(30),
            ipfs_request_timeout: secs(300),
            pin_timeout: secs(120),
            unpin_timeout: secs(3 * 3600),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PinTrackerSection {
    pub stateless: StatelessSection,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct StatelessSection {
    pub max_pin_queue_size: usize,
    pub concurrent_pins: usize,
    pub priority_pin_max_age: GoDuration,
    pub priority_pin_max_retries: u32,
    /// First wait before retrying a failed operation; it doubles up to `retry_max_delay`.
    pub retry_base_delay: GoDuration,
    pub retry_max_delay: GoDuration,
}

impl Default for StatelessSection {
    fn default() -> Self {
        Self {
            max_pin_queue_size: 1_000_000,
            concurrent_pins: 10,
            priority_pin_max_age: secs(24 * 3600),
            priority_pin_max_retries: 5,
            retry_base_delay: secs(30),
            retry_max_delay: secs(12 * 60),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AllocatorSection {
    pub balanced: BalancedSection,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct BalancedSection {
    pub allocate_by: Vec<String>,
}

impl Default for BalancedSection {
    fn default() -> Self {
        Self {
            allocate_by: pinfold_core::allocator::DEFAULT_ALLOCATE_BY
                .map(String::from)
                .to_vec(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InformerSection {
    pub disk: DiskSection,
    pub tags: TagsSection,
    pub pinqueue: PinqueueSection,
    /// The pin count informer (`numpin`): on when the section is present, as Go's
    /// informers are. Its metric weighs peers with fewer pins first, for
    /// `allocator.balanced.allocate_by: ["numpin"]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numpin: Option<NumpinSection>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct NumpinSection {
    pub metric_ttl: GoDuration,
}

impl Default for NumpinSection {
    fn default() -> Self {
        Self {
            metric_ttl: secs(10),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct DiskSection {
    pub metric_ttl: GoDuration,
    /// `freespace` or `reposize`.
    pub metric_type: String,
}

impl Default for DiskSection {
    fn default() -> Self {
        Self {
            metric_ttl: secs(30),
            metric_type: "freespace".into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct TagsSection {
    pub metric_ttl: GoDuration,
    pub tags: BTreeMap<String, String>,
}

impl Default for TagsSection {
    fn default() -> Self {
        Self {
            metric_ttl: secs(30),
            tags: pinfold_core::informer::default_tags(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct PinqueueSection {
    pub metric_ttl: GoDuration,
    pub weight_bucket_size: u64,
}

impl Default for PinqueueSection {
    fn default() -> Self {
        Self {
            metric_ttl: secs(30),
            weight_bucket_size: pinfold_core::informer::DEFAULT_PINQUEUE_BUCKET,
        }
    }
}

/// Circuit relay v2 limits (pinfold's own section). Only members of the private network
/// reach the relay, so circuits are long-lived and carry any amount of data by default,
/// unlike a public relay's few kilobytes for hole punching.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct RelaySection {
    pub enabled: bool,
    pub max_reservations: usize,
    pub max_circuits: usize,
    /// A circuit is closed after this long (the client may open another).
    pub max_circuit_duration: GoDuration,
    /// A circuit is closed after carrying this many bytes; 0 for no limit.
    pub max_circuit_bytes: u64,
}

impl Default for RelaySection {
    fn default() -> Self {
        Self {
            enabled: true,
            max_reservations: 128,
            max_circuits: 16,
            max_circuit_duration: secs(3600),
            max_circuit_bytes: 0,
        }
    }
}

/// ipfs-cluster's `observations` section: only its `metrics` part (tracing is not built,
/// so its keys are refused rather than ignored).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ObservationsSection {
    pub metrics: MetricsSection,
}

/// The Prometheus endpoint, as ipfs-cluster configures it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsSection {
    /// Serve `/metrics` (also `pinfold service daemon --stats`).
    pub enable_stats: bool,
    pub prometheus_endpoint: Multiaddr,
    /// How often the figures that are computed rather than counted (tracker queues, peers,
    /// the CRDT's heads, memory) are refreshed.
    pub reporting_interval: GoDuration,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            enable_stats: false,
            prometheus_endpoint: "/ip4/127.0.0.1/tcp/8888".parse().expect("valid"),
            reporting_interval: secs(30),
        }
    }
}

/// An environment override: the variable, and how it changes the configuration.
type Override = (
    &'static str,
    fn(&mut ServiceConfig, &str) -> Result<(), EnvValueError>,
);

/// Why an environment variable's value does not apply.
#[derive(Debug, thiserror::Error)]
pub enum EnvValueError {
    #[error("{text:?}: {source}")]
    Address {
        text: String,
        source: libp2p::multiaddr::Error,
    },
    #[error("{0:?} is not a number")]
    NotANumber(String),
    #[error(transparent)]
    Duration(#[from] GoDurationError),
    #[error("{0:?} is not true or false")]
    NotABoolean(String),
    #[error("{0:?} is not a role: full, relay or follower")]
    NotARole(String),
    #[error("{0:?} is not user:password")]
    NotCredentials(String),
}

fn address(text: &str) -> Result<Multiaddr, EnvValueError> {
    text.trim()
        .parse()
        .map_err(|source| EnvValueError::Address {
            text: text.to_owned(),
            source,
        })
}

fn addresses(text: &str) -> Result<Vec<Multiaddr>, EnvValueError> {
    text.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(address)
        .collect()
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, EnvValueError> {
    text.trim()
        .parse()
        .map_err(|_| EnvValueError::NotANumber(text.to_owned()))
}

fn duration(text: &str) -> Result<GoDuration, EnvValueError> {
    Ok(GoDuration::parse(text)?)
}

/// Go's `strconv.ParseBool` spellings, which ipfs-cluster's environment variables take.
fn boolean(text: &str) -> Result<bool, EnvValueError> {
    match text.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(EnvValueError::NotABoolean(other.to_owned())),
    }
}

/// The variables read by [`ServiceConfig::apply_env`], as ipfs-cluster names them.
const OVERRIDES: &[Override] = &[
    ("CLUSTER_SECRET", |c, v| {
        c.cluster.secret = v.trim().to_owned();
        Ok(())
    }),
    ("CLUSTER_PEERNAME", |c, v| {
        c.cluster.peername = v.to_owned();
        Ok(())
    }),
    ("CLUSTER_ROLE", |c, v| {
        c.cluster.role = serde_json::from_value(serde_json::Value::String(v.trim().into()))
            .map_err(|_| EnvValueError::NotARole(v.to_owned()))?;
        Ok(())
    }),
    ("CLUSTER_LISTENMULTIADDRESS", |c, v| {
        c.cluster.listen_multiaddress = addresses(v)?;
        Ok(())
    }),
    ("CLUSTER_ANNOUNCEMULTIADDRESS", |c, v| {
        c.cluster.announce_multiaddress = addresses(v)?;
        Ok(())
    }),
    ("CLUSTER_PEERADDRESSES", |c, v| {
        c.cluster.peer_addresses = addresses(v)?;
        Ok(())
    }),
    ("CLUSTER_DISABLEREPINNING", |c, v| {
        c.cluster.disable_repinning = boolean(v)?;
        Ok(())
    }),
    ("CLUSTER_PINONLYONTRUSTEDPEERS", |c, v| {
        c.cluster.pin_only_on_trusted_peers = boolean(v)?;
        Ok(())
    }),
    ("CLUSTER_MDNSINTERVAL", |c, v| {
        c.cluster.mdns_interval = duration(v)?;
        Ok(())
    }),
    ("CLUSTER_LEAVEONSHUTDOWN", |c, v| {
        c.cluster.leave_on_shutdown = boolean(v)?;
        Ok(())
    }),
    ("CLUSTER_PINONLYONUNTRUSTEDPEERS", |c, v| {
        c.cluster.pin_only_on_untrusted_peers = boolean(v)?;
        Ok(())
    }),
    ("CLUSTER_REPLICATIONFACTORMIN", |c, v| {
        c.cluster.replication_factor_min = number(v)?;
        Ok(())
    }),
    ("CLUSTER_REPLICATIONFACTORMAX", |c, v| {
        c.cluster.replication_factor_max = number(v)?;
        Ok(())
    }),
    ("CLUSTER_MONITORPINGINTERVAL", |c, v| {
        c.cluster.monitor_ping_interval = duration(v)?;
        Ok(())
    }),
    // Go's informers read `cluster_<informer>_<key>`.
    ("CLUSTER_DISK_METRICTTL", |c, v| {
        c.informer.disk.metric_ttl = duration(v)?;
        Ok(())
    }),
    ("CLUSTER_TAGS_METRICTTL", |c, v| {
        c.informer.tags.metric_ttl = duration(v)?;
        Ok(())
    }),
    ("CLUSTER_NUMPIN_METRICTTL", |c, v| {
        c.informer.numpin = Some(NumpinSection {
            metric_ttl: duration(v)?,
        });
        Ok(())
    }),
    ("CLUSTER_PINQUEUE_METRICTTL", |c, v| {
        c.informer.pinqueue.metric_ttl = duration(v)?;
        Ok(())
    }),
    ("CLUSTER_CRDT_CLUSTERNAME", |c, v| {
        c.consensus.crdt.cluster_name = v.trim().to_owned();
        Ok(())
    }),
    ("CLUSTER_CRDT_TRUSTEDPEERS", |c, v| {
        c.consensus.crdt.trusted_peers = v
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
        Ok(())
    }),
    ("CLUSTER_IPFSHTTP_NODEMULTIADDRESS", |c, v| {
        c.ipfs_connector.ipfshttp.node_multiaddress = address(v)?;
        Ok(())
    }),
    ("CLUSTER_IPFSHTTP_CONNECTSWARMSDELAY", |c, v| {
        c.ipfs_connector.ipfshttp.connect_swarms_delay = duration(v)?;
        Ok(())
    }),
    ("CLUSTER_IPFSHTTP_PINTIMEOUT", |c, v| {
        c.ipfs_connector.ipfshttp.pin_timeout = duration(v)?;
        Ok(())
    }),
    ("CLUSTER_IPFSHTTP_IPFSREQUESTTIMEOUT", |c, v| {
        c.ipfs_connector.ipfshttp.ipfs_request_timeout = duration(v)?;
        Ok(())
    }),
    ("CLUSTER_STATELESS_RETRYBASEDELAY", |c, v| {
        c.pin_tracker.stateless.retry_base_delay = duration(v)?;
        Ok(())
    }),
    ("CLUSTER_STATELESS_RETRYMAXDELAY", |c, v| {
        c.pin_tracker.stateless.retry_max_delay = duration(v)?;
        Ok(())
    }),
    ("CLUSTER_STATELESS_CONCURRENTPINS", |c, v| {
        c.pin_tracker.stateless.concurrent_pins = number(v)?;
        Ok(())
    }),
    ("CLUSTER_CRDT_BATCHING_MAXBATCHSIZE", |c, v| {
        c.consensus.crdt.batching.max_batch_size = number(v)?;
        Ok(())
    }),
    ("CLUSTER_CRDT_BATCHING_MAXBATCHAGE", |c, v| {
        c.consensus.crdt.batching.max_batch_age = duration(v)?;
        Ok(())
    }),
    ("CLUSTER_CRDT_REBROADCASTINTERVAL", |c, v| {
        c.consensus.crdt.rebroadcast_interval = duration(v)?;
        Ok(())
    }),
    ("CLUSTER_CRDT_SNAPSHOTEVERY", |c, v| {
        c.consensus.crdt.snapshot_every = number(v)?;
        Ok(())
    }),
    ("CLUSTER_CRDT_SNAPSHOTMININTERVAL", |c, v| {
        c.consensus.crdt.snapshot_min_interval = duration(v)?;
        Ok(())
    }),
    ("CLUSTER_PINRECOVERINTERVAL", |c, v| {
        c.cluster.pin_recover_interval = duration(v)?;
        Ok(())
    }),
    ("CLUSTER_STATESYNCINTERVAL", |c, v| {
        c.cluster.state_sync_interval = duration(v)?;
        Ok(())
    }),
    ("CLUSTER_METRICS_ENABLESTATS", |c, v| {
        c.observations.metrics.enable_stats = boolean(v)?;
        Ok(())
    }),
    ("CLUSTER_METRICS_PROMETHEUSENDPOINT", |c, v| {
        c.observations.metrics.prometheus_endpoint = address(v)?;
        Ok(())
    }),
    ("CLUSTER_METRICS_REPORTINGINTERVAL", |c, v| {
        c.observations.metrics.reporting_interval = duration(v)?;
        Ok(())
    }),
    ("CLUSTER_RESTAPI_BASICAUTHCREDENTIALS", |c, v| {
        c.api.restapi.basic_auth_credentials = credentials(v)?;
        Ok(())
    }),
    ("CLUSTER_RESTAPI_SERVEFOLLOWTEMPLATE", |c, v| {
        c.api.restapi.serve_follow_template = boolean(v)?;
        Ok(())
    }),
    ("CLUSTER_RESTAPI_DASHBOARDDIR", |c, v| {
        c.api.restapi.dashboard_dir = optional_path(v);
        Ok(())
    }),
    ("CLUSTER_RESTAPI_SSLCERTFILE", |c, v| {
        c.api.restapi.ssl_cert_file = optional_path(v);
        Ok(())
    }),
    ("CLUSTER_RESTAPI_SSLKEYFILE", |c, v| {
        c.api.restapi.ssl_key_file = optional_path(v);
        Ok(())
    }),
    ("CLUSTER_PINSVCAPI_SSLCERTFILE", |c, v| {
        c.api.pinsvcapi.ssl_cert_file = optional_path(v);
        Ok(())
    }),
    ("CLUSTER_PINSVCAPI_SSLKEYFILE", |c, v| {
        c.api.pinsvcapi.ssl_key_file = optional_path(v);
        Ok(())
    }),
    ("CLUSTER_PINSVCAPI_BASICAUTHCREDENTIALS", |c, v| {
        c.api.pinsvcapi.basic_auth_credentials = credentials(v)?;
        Ok(())
    }),
    ("CLUSTER_PINSVCAPI_HTTPLISTENMULTIADDRESS", |c, v| {
        c.api.pinsvcapi.http_listen_multiaddress = match v.trim() {
            "" => None,
            text => Some(address(text)?),
        };
        Ok(())
    }),
    ("CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS", |c, v| {
        c.api.restapi.http_listen_multiaddress = address(v)?;
        Ok(())
    }),
    ("CLUSTER_IPFSPROXY_LISTENMULTIADDRESS", |c, v| {
        c.api.ipfsproxy.listen_multiaddress = addresses(v)?;
        Ok(())
    }),
    ("CLUSTER_IPFSPROXY_NODEMULTIADDRESS", |c, v| {
        c.api.ipfsproxy.node_multiaddress = match v.trim() {
            "" => None,
            text => Some(address(text)?),
        };
        Ok(())
    }),
    ("CLUSTER_IPFSPROXY_EXTRACTHEADERSEXTRA", |c, v| {
        c.api.ipfsproxy.extract_headers_extra = v
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(String::from)
            .collect();
        Ok(())
    }),
    ("CLUSTER_IPFSPROXY_EXTRACTHEADERSPATH", |c, v| {
        c.api.ipfsproxy.extract_headers_path = v.trim().to_owned();
        Ok(())
    }),
    ("CLUSTER_IPFSPROXY_EXTRACTHEADERSTTL", |c, v| {
        c.api.ipfsproxy.extract_headers_ttl = duration(v)?;
        Ok(())
    }),
];

/// `address` with each TCP and UDP port replaced by a free one on its IP (all interfaces
/// when it names a host), whose socket goes to `held`.
fn with_free_ports(
    address: &Multiaddr,
    held: &mut Vec<std::os::fd::OwnedFd>,
) -> std::io::Result<Multiaddr> {
    use libp2p::multiaddr::Protocol;
    use std::net::{IpAddr, Ipv4Addr};
    let mut ip = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let mut picked = Multiaddr::empty();
    for protocol in address.iter() {
        let protocol = match protocol {
            Protocol::Ip4(a) => {
                ip = IpAddr::V4(a);
                protocol
            }
            Protocol::Ip6(a) => {
                ip = IpAddr::V6(a);
                protocol
            }
            Protocol::Tcp(_) => {
                let socket = std::net::TcpListener::bind((ip, 0))?;
                let port = socket.local_addr()?.port();
                held.push(socket.into());
                Protocol::Tcp(port)
            }
            Protocol::Udp(_) => {
                let socket = std::net::UdpSocket::bind((ip, 0))?;
                let port = socket.local_addr()?.port();
                held.push(socket.into());
                Protocol::Udp(port)
            }
            other => other,
        };
        picked.push(protocol);
    }
    Ok(picked)
}

/// A file path from the environment; empty means none.
fn optional_path(text: &str) -> Option<PathBuf> {
    let text = text.trim();
    (!text.is_empty()).then(|| PathBuf::from(text))
}

/// envconfig's map form of users: `user:password,user2:password2` (empty: none).
fn credentials(text: &str) -> Result<Option<BTreeMap<String, String>>, EnvValueError> {
    let mut users = BTreeMap::new();
    for entry in text.split(',').filter(|e| !e.trim().is_empty()) {
        let (user, password) = entry
            .split_once(':')
            .ok_or_else(|| EnvValueError::NotCredentials(entry.to_owned()))?;
        users.insert(user.trim().to_owned(), password.to_owned());
    }
    Ok((!users.is_empty()).then_some(users))
}

impl ServiceConfig {
    /// A new configuration with a fresh secret.
    pub fn generate(peername: &str) -> Self {
        let mut config = Self::default();
        config.cluster.peername = peername.to_owned();
        config.cluster.secret = ClusterSecret::generate(&mut rand::rngs::OsRng).to_hex();
        config
    }

    /// Gives every listen address of the peer (swarm, REST API, Pinning Services API, IPFS
    /// proxy) a free port the system picks now instead of its own (`init --randomports`).
    /// Each port is held until all are picked, so no two addresses share one.
    pub fn randomize_ports(&mut self) -> std::io::Result<()> {
        let mut held = Vec::new();
        let c = &mut self.cluster;
        for address in c.listen_multiaddress.iter_mut() {
            *address = with_free_ports(address, &mut held)?;
        }
        let api = &mut self.api;
        api.restapi.http_listen_multiaddress =
            with_free_ports(&api.restapi.http_listen_multiaddress, &mut held)?;
        if let Some(address) = &mut api.pinsvcapi.http_listen_multiaddress {
            *address = with_free_ports(address, &mut held)?;
        }
        for address in api.ipfsproxy.listen_multiaddress.iter_mut() {
            *address = with_free_ports(address, &mut held)?;
        }
        Ok(())
    }

    /// This cluster's configuration as a follower runs it (`pinfold follow`): the cluster's
    /// secret, name, trust, timings and `peer_addresses` kept; the role a follower's, the
    /// REST API on a loopback port of the system's choosing, no Pinning Services API or IPFS
    /// proxy, no Prometheus endpoint, no relay, swarm listeners on ports of the system's choosing,
    /// the IPFS daemon and the peer name left to the follower's own defaults.
    pub fn for_follower(&self) -> Self {
        let datastore = Some(self.datastore.clone().unwrap_or_else(default_datastore));
        let mut follower = self.clone();
        follower.cluster.peername = String::new();
        follower.cluster.role = Role::Follower;
        follower.cluster.announce_multiaddress = Vec::new();
        follower.cluster.listen_multiaddress = vec!["/ip4/0.0.0.0/tcp/0".parse().expect("valid")];
        follower.api = ApiSection {
            restapi: RestApiSection {
                http_listen_multiaddress: "/ip4/127.0.0.1/tcp/0".parse().expect("valid"),
                ..RestApiSection::default()
            },
            pinsvcapi: PinSvcApiSection {
                http_listen_multiaddress: None,
                ..PinSvcApiSection::default()
            },
            ipfsproxy: IpfsProxySection {
                listen_multiaddress: Vec::new(),
                ..IpfsProxySection::default()
            },
        };
        follower.ipfs_connector = IpfsConnectorSection::default();
        follower.observations = ObservationsSection::default();
        follower.relay.enabled = false;
        follower.datastore = datastore;
        follower
    }

    /// Reads `path`, warning once (naming each) of the keys in it that pinfold does not
    /// implement, such as those of a Go ipfs-cluster `service.json`: they are ignored.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let (config, ignored) = Self::from_json(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        warn_ignored(&path.display().to_string(), &ignored);
        Ok(config)
    }

    /// The configuration in `text`, and the paths (`cluster.leave_on_shutdown`) of the
    /// keys in it that pinfold does not implement, in the order they came.
    pub fn from_json(text: &str) -> Result<(Self, Vec<String>), serde_json::Error> {
        let mut ignored = Vec::new();
        let mut reader = serde_json::Deserializer::from_str(text);
        let config = serde_ignored::deserialize(&mut reader, |path| {
            // An optional section's keys read `consensus.raft.?.key`.
            ignored.push(path.to_string().replace(".?", ""))
        })?;
        reader.end()?;
        Ok((config, ignored))
    }

    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let text = serde_json::to_string_pretty(self).expect("a config always serializes");
        write_private(path, text.as_bytes())
    }

    /// Applies the environment overrides that are set, through `lookup` (the process
    /// environment in the binary).
    pub fn apply_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for (name, apply) in OVERRIDES {
            if let Some(value) = lookup(name) {
                apply(self, &value).map_err(|detail| invalid(name, detail))?;
            }
        }
        Ok(())
    }

    /// The cluster secret; `None` only when the configuration leaves it empty.
    pub fn secret(&self) -> Result<Option<ClusterSecret>, ConfigError> {
        if self.cluster.secret.is_empty() {
            return Ok(None);
        }
        ClusterSecret::from_hex(&self.cluster.secret)
            .map(Some)
            .map_err(|e| invalid("cluster.secret", e))
    }

    /// `crdt.trusted_peers` as the replica's trust.
    /// Under Raft every peer of the cluster is trusted, as in Go ipfs-cluster.
    pub fn trust(&self) -> Result<pinfold_core::crdt::Trust, ConfigError> {
        if self.consensus.raft.is_some() {
            return Ok(pinfold_core::crdt::Trust::All);
        }
        let peers = &self.consensus.crdt.trusted_peers;
        if peers.iter().any(|p| p == "*") {
            return Ok(pinfold_core::crdt::Trust::All);
        }
        let ids = peers
            .iter()
            .map(|p| {
                p.parse::<PeerId>()
                    .map_err(|e| invalid("consensus.crdt.trusted_peers", format!("{p:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(pinfold_core::crdt::Trust::Peers(ids))
    }

    /// Checks what serde cannot: values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.secret()?;
        self.trust()?;
        if let Some(raft) = &self.consensus.raft {
            raft.initial_peers()?;
            if self.cluster.role != Role::Full {
                return Err(invalid(
                    "consensus.raft",
                    format!(
                        "a {} peer cannot run Raft consensus, whose peers all keep and write \
                         the pinset: use the CRDT consensus for followers and relays",
                        self.cluster.role.as_str()
                    ),
                ));
            }
        }
        for (api, cert, key) in [
            (
                "restapi",
                &self.api.restapi.ssl_cert_file,
                &self.api.restapi.ssl_key_file,
            ),
            (
                "pinsvcapi",
                &self.api.pinsvcapi.ssl_cert_file,
                &self.api.pinsvcapi.ssl_key_file,
            ),
        ] {
            if cert.is_some() != key.is_some() {
                return Err(invalid(
                    &format!("api.{api}.ssl_cert_file/ssl_key_file"),
                    "HTTPS needs both the certificate and the private key".to_owned(),
                ));
            }
        }
        let c = &self.cluster;
        if c.replication_factor_min + c.replication_factor_max == 0
            || (c.replication_factor_max > 0 && c.replication_factor_min > c.replication_factor_max)
        {
            return Err(invalid(
                "cluster.replication_factor_min/max",
                format!(
                    "{} / {} cannot work: use -1/-1 (every peer) or 1 <= min <= max",
                    c.replication_factor_min, c.replication_factor_max
                ),
            ));
        }
        if c.pin_only_on_trusted_peers && c.pin_only_on_untrusted_peers {
            return Err(invalid(
                "cluster.pin_only_on_trusted_peers/pin_only_on_untrusted_peers",
                "cannot both be true",
            ));
        }
        if c.monitor_ping_interval.millis() == 0 {
            return Err(invalid(
                "cluster.monitor_ping_interval",
                "must be more than 0",
            ));
        }
        if !matches!(
            self.informer.disk.metric_type.as_str(),
            "freespace" | "reposize"
        ) {
            return Err(invalid(
                "informer.disk.metric_type",
                format!(
                    "{:?} is not freespace or reposize",
                    self.informer.disk.metric_type
                ),
            ));
        }
        let m = &self.observations.metrics;
        if m.enable_stats && m.reporting_interval.millis() == 0 {
            return Err(invalid(
                "observations.metrics.reporting_interval",
                "must be more than 0",
            ));
        }
        Ok(())
    }
}

/// `identity.json`, as ipfs-cluster writes it: the peer id and the base64 protobuf key.
#[derive(Serialize, Deserialize)]
struct IdentityFile {
    id: String,
    private_key: String,
}

/// Writes a new ed25519 identity.
pub fn generate_identity(path: &Path) -> Result<Keypair, ConfigError> {
    let key = Keypair::generate_ed25519();
    let file = IdentityFile {
        id: key.public().to_peer_id().to_string(),
        private_key: base64::engine::general_purpose::STANDARD
            .encode(key.to_protobuf_encoding().expect("ed25519 keys encode")),
    };
    let text = serde_json::to_string_pretty(&file).expect("serializes");
    write_private(path, text.as_bytes())?;
    Ok(key)
}

/// Reads an identity and checks that its id matches its key.
pub fn load_identity(path: &Path) -> Result<Keypair, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let file: IdentityFile = serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(file.private_key.trim())
        .map_err(|e| invalid("identity.private_key", e))?;
    let key =
        Keypair::from_protobuf_encoding(&bytes).map_err(|e| invalid("identity.private_key", e))?;
    let id = key.public().to_peer_id();
    if id.to_string() != file.id {
        return Err(invalid(
            "identity.id",
            format!(
                "{} does not match the private key (whose id is {id})",
                file.id
            ),
        ));
    }
    Ok(key)
}

/// Writes a file only its owner can read, atomically (through a temporary file).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    let fail = |source| ConfigError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(fail)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    }
    std::fs::rename(&tmp, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_configuration_round_trips_and_validates() {
        let config = ServiceConfig::generate("peer-a");
        config.validate().unwrap();
        let text = serde_json::to_string(&config).unwrap();
        let back: ServiceConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
        assert_eq!(back.cluster.secret.len(), 64);
    }

    #[test]
    fn environment_overrides_use_ipfs_cluster_names() {
        let mut config = ServiceConfig::default();
        let env = BTreeMap::from([
            ("CLUSTER_SECRET", "ab".repeat(32)),
            (
                "CLUSTER_CRDT_TRUSTEDPEERS",
                "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK".to_string(),
            ),
            ("CLUSTER_REPLICATIONFACTORMIN", "2".to_string()),
            ("CLUSTER_REPLICATIONFACTORMAX", "3".to_string()),
            ("CLUSTER_ROLE", "follower".to_string()),
            ("CLUSTER_METRICS_ENABLESTATS", "true".to_string()),
            (
                "CLUSTER_METRICS_PROMETHEUSENDPOINT",
                "/ip4/127.0.0.1/tcp/9888".to_string(),
            ),
        ]);
        assert!(!config.observations.metrics.enable_stats, "off by default");
        config.apply_env(|name| env.get(name).cloned()).unwrap();
        config.validate().unwrap();
        assert!(config.observations.metrics.enable_stats);
        assert_eq!(
            config.observations.metrics.prometheus_endpoint.to_string(),
            "/ip4/127.0.0.1/tcp/9888"
        );
        assert_eq!(config.cluster.secret, "ab".repeat(32));
        assert_eq!(config.cluster.role, Role::Follower);
        assert_eq!(config.cluster.replication_factor_min, 2);
        assert!(matches!(
            config.trust().unwrap(),
            pinfold_core::crdt::Trust::Peers(_)
        ));

        let error = config
            .apply_env(|name| (name == "CLUSTER_ROLE").then(|| "boss".to_string()))
            .unwrap_err();
        assert!(
            error.to_string().contains("full, relay or follower"),
            "{error}"
        );
    }

    /// Go writes one listen address as a string, several as a list; empty is off.
    #[test]
    fn the_ipfs_proxy_section_reads_go_s_forms_and_turns_off_when_empty() {
        let defaults = ServiceConfig::default().api.ipfsproxy;
        assert_eq!(
            defaults.listen_multiaddress,
            ["/ip4/127.0.0.1/tcp/9095".parse::<Multiaddr>().unwrap()]
        );
        assert_eq!(defaults.node_multiaddress, None, "the connector's daemon");
        let go = r#"{"api":{"ipfsproxy":{"listen_multiaddress":"/ip4/127.0.0.1/tcp/9195",
            "node_multiaddress":"/ip4/127.0.0.1/tcp/5101","extract_headers_ttl":"1m"}}}"#;
        let (config, ignored) = ServiceConfig::from_json(go).unwrap();
        assert!(ignored.is_empty(), "{ignored:?}");
        let proxy = &config.api.ipfsproxy;
        assert_eq!(
            proxy.listen_multiaddress[0].to_string(),
            "/ip4/127.0.0.1/tcp/9195"
        );
        assert_eq!(
            proxy.node_multiaddress.as_ref().unwrap().to_string(),
            "/ip4/127.0.0.1/tcp/5101"
        );
        assert_eq!(proxy.extract_headers_ttl.millis(), 60_000);
        assert_eq!(proxy.extract_headers_path, "/api/v0/version");
        for off in [r#""""#, "[]"] {
            let text = format!(r#"{{"api":{{"ipfsproxy":{{"listen_multiaddress":{off}}}}}}}"#);
            let (config, _) = ServiceConfig::from_json(&text).unwrap();
            assert!(config.api.ipfsproxy.listen_multiaddress.is_empty(), "{off}");
        }
        let mut config = ServiceConfig::default();
        config
            .apply_env(|name| (name == "CLUSTER_IPFSPROXY_LISTENMULTIADDRESS").then(String::new))
            .unwrap();
        assert!(config.api.ipfsproxy.listen_multiaddress.is_empty());
        assert!(ServiceConfig::default()
            .for_follower()
            .api
            .ipfsproxy
            .listen_multiaddress
            .is_empty());
    }

    #[test]
    fn relay_circuits_are_long_and_uncapped_unless_configured() {
        let defaults = ServiceConfig::default().relay;
        assert_eq!(defaults.max_circuit_duration.millis(), 3_600_000);
        assert_eq!(defaults.max_circuit_bytes, 0);
        let config: ServiceConfig = serde_json::from_str(
            r#"{"relay":{"max_circuit_duration":"2m","max_circuit_bytes":131072}}"#,
        )
        .unwrap();
        assert_eq!(config.relay.max_circuit_duration.millis(), 120_000);
        assert_eq!(config.relay.max_circuit_bytes, 131_072);
        assert_eq!(config.relay.max_reservations, defaults.max_reservations);
    }

    #[test]
    fn unknown_keys_are_named_and_bad_values_refused_with_their_name() {
        let (config, ignored) = ServiceConfig::from_json(
            r#"{"cluster":{"secert":"x","peername":"a"},"monitor":{"pubsubmon":{}},"datastore":{"pebble":{}}}"#,
        )
        .unwrap();
        assert_eq!(config.cluster.peername, "a");
        assert_eq!(ignored, ["cluster.secert", "monitor"]);
        // Kept for Go followers, and given to them in the follow template.
        assert_eq!(config.datastore, Some(serde_json::json!({"pebble": {}})));
        assert_eq!(
            ServiceConfig::default().for_follower().datastore,
            Some(serde_json::json!({"pebble": {}}))
        );
        let error = ServiceConfig::from_json(r#"{"cluster":{"peername":7}}"#).unwrap_err();
        assert!(error.to_string().contains("invalid type"), "{error}");
        let mut config = ServiceConfig::default();
        config.cluster.secret = "zz".into();
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("cluster.secret"));
        let mut config = ServiceConfig::default();
        config.cluster.replication_factor_min = 3;
        config.cluster.replication_factor_max = 2;
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("min <= max"));
        let (config, ignored) = ServiceConfig::from_json(
            r#"{"cluster":{"pin_only_on_trusted_peers":true,"pin_only_on_untrusted_peers":true}}"#,
        )
        .unwrap();
        assert!(ignored.is_empty(), "{ignored:?}");
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("cannot both be true"));
    }

    #[test]
    fn identities_round_trip_and_a_mismatched_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        let key = generate_identity(&path).unwrap();
        assert_eq!(
            load_identity(&path).unwrap().public().to_peer_id(),
            key.public().to_peer_id()
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let other = Keypair::generate_ed25519()
            .public()
            .to_peer_id()
            .to_string();
        let id = key.public().to_peer_id().to_string();
        std::fs::write(&path, text.replace(&id, &other)).unwrap();
        assert!(load_identity(&path)
            .unwrap_err()
            .to_string()
            .contains("does not match"));
    }
}
