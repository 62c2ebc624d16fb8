//! `pinfold ctl`: ipfs-cluster-ctl's verbs and flags over a peer's REST API. Text output for
//! people (a progress line while `add` uploads and while `--wait` waits, on a terminal
//! only), `--enc json` for scripts (one JSON value per result, as the API returns it).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::peer::bandwidth::ProtocolBandwidth;
use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use libp2p::{Multiaddr, PeerId};
use pinfold_core::codec::metric::Metric;
use pinfold_core::go_duration::GoDuration;
use pinfold_core::monitor::Alert;
use pinfold_core::pin::{Pin, PinMode};
use pinfold_core::repo_gc::GlobalRepoGc;
use pinfold_core::rest::{AddedOutput, ConnectGraph, ErrorBody, Expiry, Id, PinOptions, Version};
use pinfold_core::tracker::{nanos_to_json, GlobalPinInfo, TrackerStatus};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Output encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Encoding {
    Text,
    Json,
}

/// Options every verb takes.
#[derive(clap::Args, Debug)]
pub struct CtlArgs {
    /// The peer's REST API: a multiaddress or an http(s) URL.
    #[arg(
        long,
        env = "CLUSTER_RESTAPI_HOST",
        default_value = "/ip4/127.0.0.1/tcp/9094",
        global = true
    )]
    pub host: String,
    /// `user:password` for the API's basic authentication.
    #[arg(
        long,
        env = "CLUSTER_CREDENTIALS",
        global = true,
        hide_env_values = true
    )]
    pub basic_auth: Option<String>,
    /// Output encoding.
    #[arg(long, value_enum, default_value_t = Encoding::Text, global = true)]
    pub enc: Encoding,
    /// Give up on a request after this many seconds.
    #[arg(long, default_value_t = 60, global = true)]
    pub timeout: u64,
    /// Use HTTPS with a multiaddress --host.
    #[arg(short = 's', long, global = true)]
    pub https: bool,
    /// Accept any certificate (a self-signed one, say) over HTTPS.
    #[arg(long, global = true)]
    pub no_check_certificate: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// The peer's identity, addresses and IPFS daemon.
    Id,
    /// The peer's version.
    Version,
    /// Cluster peers.
    #[command(subcommand)]
    Peers(PeersCommand),
    /// Add, remove and list pins.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Add files to IPFS through the peer's daemon and pin them in the cluster.
    Add(AddArgs),
    /// Every peer's status of some pins, or of all (`--filter` them).
    Status {
        cids: Vec<String>,
        /// Only this peer's view.
        #[arg(long)]
        local: bool,
        /// Statuses to list, comma-separated (pinned, pin_error, queued, error, ...).
        #[arg(long)]
        filter: Option<String>,
    },
    /// Re-queue a pin in error, or without a CID every pin in error, on every peer (or on
    /// this one with `--local`).
    Recover {
        cid: Option<String>,
        #[arg(long)]
        local: bool,
    },
    /// Metrics and health.
    #[command(subcommand)]
    Health(HealthCommand),
    /// Operations on the peers' IPFS daemons.
    #[command(subcommand)]
    Ipfs(IpfsCommand),
}

#[derive(Subcommand, Debug)]
pub enum IpfsCommand {
    /// Collect the garbage of every peer's IPFS daemon repository (`ipfs repo gc`), or only
    /// this peer's with `--local`, and list the blocks each removed.
    Gc {
        #[arg(long)]
        local: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum PeersCommand {
    /// Peers with a live ping metric.
    Ls,
    /// Add a peer to the cluster: under Raft consensus it becomes a Raft peer once the
    /// cluster commits it (start it with `--bootstrap` to one of the peers, and it asks
    /// this itself); under CRDT consensus peers join by bootstrapping.
    Add { peer: String },
    /// Remove a peer: its pins are re-allocated to the other peers. A peer that still runs
    /// comes back with its next ping; stop it first.
    Rm { peer: String },
}

#[derive(Subcommand, Debug)]
pub enum HealthCommand {
    /// The latest metrics of a name (freespace, ping, tag:group, pinqueue), or without
    /// one the names there are.
    Metrics { name: Option<String> },
    /// Metrics that expired lately: peers that may be down, newest first.
    Alerts,
    /// Bytes sent and received by each libp2p protocol, and their rates.
    Bandwidth,
    /// The cluster's connectivity graph in Graphviz dot (`dot -Tsvg`), or the API's JSON
    /// with `--enc json`.
    Graph {
        /// Write it to this file instead of standard output.
        #[arg(short = 'f', long)]
        file: Option<std::path::PathBuf>,
        /// Also show IPFS peers that are not a cluster peer's daemon.
        #[arg(long)]
        all_ipfs_peers: bool,
    },
}

/// Pin options `pin add` and `add` share.
#[derive(clap::Args, Debug, Default)]
pub struct PinFlags {
    /// Replication factor (min and max).
    #[arg(long, allow_hyphen_values = true)]
    replication: Option<i32>,
    #[arg(long, visible_alias = "rmin", allow_hyphen_values = true)]
    replication_min: Option<i32>,
    #[arg(long, visible_alias = "rmax", allow_hyphen_values = true)]
    replication_max: Option<i32>,
    /// A name for the pin.
    #[arg(short = 'n', long)]
    name: Option<String>,
    /// Peers to allocate first, comma-separated.
    #[arg(long, value_delimiter = ',')]
    allocations: Vec<PeerId>,
    /// Metadata `key=value` (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = metadata_entry)]
    metadata: Vec<(String, String)>,
    /// Unpin it from the cluster after this long (`1h`, `30m`, `720h`).
    #[arg(long)]
    expire_in: Option<GoDuration>,
    /// Wait until the pin is pinned on its allocations (at least replication-min).
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    wait_timeout: u64,
}

impl PinFlags {
    /// The pin options the flags give.
    fn options(&self) -> PinOptions {
        PinOptions {
            name: self.name.clone(),
            replication_min: self.replication.or(self.replication_min),
            replication_max: self.replication.or(self.replication_max),
            user_allocations: self.allocations.clone(),
            expire: self.expire_in.map(Expiry::In),
            metadata: self.metadata.iter().cloned().collect(),
            ..PinOptions::default()
        }
    }
}

/// A `--metadata` entry: `key=value`.
fn metadata_entry(entry: &str) -> std::result::Result<(String, String), String> {
    entry
        .split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{entry:?}: write it as key=value"))
}

/// `add`'s files and options.
#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// Files (and with -r, directories) to add.
    #[arg(required = true)]
    paths: Vec<std::path::PathBuf>,
    /// Add directories with everything in them.
    #[arg(short = 'r', long)]
    recursive: bool,
    /// Print only the CIDs, one per line.
    #[arg(short, long)]
    quiet: bool,
    /// Print only the root's CID.
    #[arg(short = 'Q', long)]
    quieter: bool,
    /// Print the outputs once all are in (one JSON array with `--enc json`), not as the
    /// peer adds them.
    #[arg(long)]
    no_stream: bool,
    /// Put the blocks on the peer's own IPFS daemon only (it is then one of the
    /// allocations); the pin is allocated as usual.
    #[arg(long)]
    local: bool,
    /// Wrap the files in a directory.
    #[arg(short = 'w', long)]
    wrap_with_directory: bool,
    /// Add only to IPFS, without pinning in the cluster.
    #[arg(long)]
    no_pin: bool,
    /// CID version (0 or 1).
    #[arg(long)]
    cid_version: Option<u8>,
    /// Leaves as raw blocks.
    #[arg(long)]
    raw_leaves: bool,
    /// Have the peer's IPFS daemon reference the files where they are instead of copying
    /// them into its blockstore (Kubo's filestore, which must be enabled); the files must
    /// be on the daemon's host, under its repository's parent folder. Implies raw leaves.
    #[arg(long)]
    nocopy: bool,
    /// Spread the DAG over the cluster in shards, each on peers allocated for it alone
    /// (the replication factors apply to each shard).
    #[arg(long)]
    shard: bool,
    /// The most bytes of blocks in one shard (default 100 MiB).
    #[arg(long, requires = "shard")]
    shard_size: Option<u64>,
    /// The daemon's chunker (`size-262144`, `rabin`).
    #[arg(long)]
    chunker: Option<String>,
    /// The hash function (`sha2-256`, `blake2b-256`).
    #[arg(long)]
    hash: Option<String>,
    /// DAG layout: balanced or trickle.
    #[arg(long)]
    layout: Option<String>,
    /// What the files are: unixfs (files to chunk), or car (a CAR file with one root, whose
    /// DAG is imported as it is).
    #[arg(long)]
    format: Option<String>,
    #[command(flatten)]
    pin: PinFlags,
}

#[derive(Subcommand, Debug)]
pub enum PinCommand {
    /// Pin a CID, or an /ipfs, /ipns or /ipld path, in the cluster.
    #[command(mut_arg("replication", |a| a.short('r')), mut_arg("wait", |a| a.short('w')))]
    Add {
        cid: String,
        /// recursive or direct.
        #[arg(long)]
        mode: Option<PinMode>,
        /// Multiaddresses of peers that hold the content, comma-separated.
        #[arg(long, value_delimiter = ',')]
        origins: Vec<Multiaddr>,
        #[command(flatten)]
        flags: PinFlags,
    },
    /// Unpin a CID (or a path) from the cluster.
    Rm {
        cid: String,
        /// Wait until every peer's daemon has it unpinned.
        #[arg(short = 'w', long)]
        wait: bool,
        /// Give up waiting after this many seconds (0: never).
        #[arg(long, default_value_t = 0)]
        wait_timeout: u64,
    },
    /// Pin `to` with the options and allocations of the pin `from` (which stays pinned).
    Update {
        from: String,
        to: String,
        /// A new name (else `from`'s).
        #[arg(short = 'n', long)]
        name: Option<String>,
        /// Unpin it from the cluster after this long.
        #[arg(long)]
        expire_in: Option<GoDuration>,
        #[arg(short = 'w', long)]
        wait: bool,
        #[arg(long, default_value_t = 0)]
        wait_timeout: u64,
    },
    /// The cluster's pins (or one).
    Ls {
        cid: Option<String>,
        /// The pin types listed, comma-separated: pin, meta-pin, clusterdag-pin,
        /// shard-pin or all.
        #[arg(long, default_value = "all")]
        filter: String,
    },
}

/// The API path of a pin: `/pins/<cid>`, or `/pins/ipfs/...` for a path.
fn pin_path(target: &str) -> String {
    let target = target.trim_end_matches('/');
    if ["/ipfs/", "/ipns/", "/ipld/"]
        .iter()
        .any(|p| target.starts_with(p))
    {
        format!("/pins{target}")
    } else {
        format!("/pins/{target}")
    }
}

/// A client of one peer's API.
struct Api {
    base: String,
    http: reqwest::Client,
    /// For uploads, which take as long as they take: no overall timeout.
    upload: reqwest::Client,
    auth: Option<(String, String)>,
}

/// The API's base URL from `--host`.
fn base_url(host: &str, https: bool) -> Result<String> {
    if host.starts_with("http://") || host.starts_with("https://") {
        return Ok(host.trim_end_matches('/').to_owned());
    }
    let address: Multiaddr = host
        .parse()
        .with_context(|| format!("--host {host:?} is neither a multiaddress nor an http(s) URL"))?;
    let socket =
        crate::endpoint::socket_addr(&address).map_err(|e| anyhow::anyhow!("--host: {e}"))?;
    Ok(format!(
        "{}://{socket}",
        if https { "https" } else { "http" }
    ))
}

impl Api {
    fn new(args: &CtlArgs) -> Result<Self> {
        let auth = match &args.basic_auth {
            Some(text) => match text.split_once(':') {
                Some((user, password)) => Some((user.to_owned(), password.to_owned())),
                None => bail!("--basic-auth takes user:password"),
            },
            None => None,
        };
        let client =
            || reqwest::Client::builder().danger_accept_invalid_certs(args.no_check_certificate);
        Ok(Self {
            base: base_url(&args.host, args.https)?,
            http: client()
                .timeout(Duration::from_secs(args.timeout.max(1)))
                .build()?,
            upload: client().build()?,
            auth,
        })
    }

    /// Sends a request and returns the response, or the API's error as a message that says
    /// what to do.
    async fn send(&self, request: reqwest::RequestBuilder, url: &str) -> Result<reqwest::Response> {
        let request = match &self.auth {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        };
        let response = request.send().await.map_err(|e| {
            let mut causes = Vec::new();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                causes.push(cause.to_string());
                source = cause.source();
            }
            let chain = causes.join(": ");
            if chain.to_lowercase().contains("certificate") {
                anyhow::anyhow!(
                    "{}: the API's TLS certificate was refused ({chain}); for a self-signed one pass --no-check-certificate",
                    self.base
                )
            } else if e.is_connect() {
                anyhow::anyhow!(
                    "could not reach the pinfold API at {}: is `pinfold service daemon` running there? (set --host)",
                    self.base
                )
            } else if e.is_timeout() {
                anyhow::anyhow!("{url}: no answer within the timeout (raise --timeout)")
            } else {
                anyhow::anyhow!("{url}: {e}")
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await?;
        let message = serde_json::from_str::<ErrorBody>(&body)
            .map(|e| e.message)
            .unwrap_or(body);
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!("{status}: {message} (check --basic-auth)");
        }
        bail!("{status}: {message}")
    }

    /// POSTs `body` as JSON; the answer read as a `T`.
    async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let request = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let answer = self.send(request, &url).await?.text().await?;
        serde_json::from_str(&answer).with_context(|| format!("{path}: unexpected answer"))
    }

    async fn call(&self, method: reqwest::Method, path: &str) -> Result<String> {
        let url = format!("{}{path}", self.base);
        let response = self.send(self.http.request(method, &url), &url).await?;
        Ok(response.text().await?)
    }

    /// The answer read as a `T`.
    async fn json<T: DeserializeOwned>(&self, method: reqwest::Method, path: &str) -> Result<T> {
        let body = self.call(method, path).await?;
        serde_json::from_str(&body).with_context(|| format!("{path}: unexpected answer"))
    }

    /// A streamed list: one JSON value per line.
    async fn list<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>> {
        self.list_of(reqwest::Method::GET, path).await
    }

    async fn list_of<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<Vec<T>> {
        let body = self.call(method, path).await?;
        parse_lines(path, &body)
    }
}

fn parse_lines<T: DeserializeOwned>(path: &str, body: &str) -> Result<Vec<T>> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("{path}: unexpected line {l}")))
        .collect()
}

fn query<K: AsRef<str>>(pairs: &[(K, String)]) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("valid");
    url.query_pairs_mut()
        .extend_pairs(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_str())));
    match url.query() {
        Some(q) if !q.is_empty() => format!("?{q}"),
        _ => String::new(),
    }
}

fn print_json(out: &mut impl Write, value: &impl Serialize) -> Result<()> {
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// ipfs-cluster-ctl's text for a cluster-wide status.
fn print_status(out: &mut impl Write, info: &GlobalPinInfo) -> Result<()> {
    if info.name.is_empty() {
        writeln!(out, "{}:", info.cid)?;
    } else {
        writeln!(out, "{} | {}:", info.cid, info.name)?;
    }
    for (id, view) in &info.peer_map {
        let peer_name = Some(view.peer_name.as_str())
            .filter(|n| !n.is_empty())
            .unwrap_or(id);
        write!(
            out,
            "    > {peer_name:<16} : {} | {} | Attempts: {} | Priority: {}",
            view.status.as_str().to_uppercase(),
            nanos_to_json(view.timestamp),
            view.attempt_count,
            view.priority_pin,
        )?;
        if !view.error.is_empty() {
            write!(out, " | {}", view.error)?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn print_pin(out: &mut impl Write, pin: &Pin) -> Result<()> {
    let allocations = if pin.allocations.is_empty() {
        "everywhere".to_owned()
    } else {
        pin.allocations
            .iter()
            .map(PeerId::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    // The type and depth as ipfs-cluster-ctl writes them: `SHARD-PIN`, `Recursive-1`.
    let mut pin_type = pin.pin_type.as_str().to_uppercase();
    if pin.max_depth == 0 {
        pin_type.push_str("-DIRECT");
    }
    let depth = match pin.max_depth {
        0 => "Direct".to_owned(),
        depth if depth < 0 => "Recursive".to_owned(),
        depth => format!("Recursive-{depth}"),
    };
    writeln!(
        out,
        "{} | {} | {pin_type} | Repl. Factor: {}--{} | Allocations: [{allocations}] | {depth}",
        pin.cid, pin.name, pin.replication_factor_min, pin.replication_factor_max,
    )?;
    Ok(())
}

/// How many of a status's peers are pinned, and how many must be: the pin's allocations
/// (as the write answered them: peers' views may lag), or every peer for a pin allocated
/// everywhere, at least its replication-min.
fn pinned_progress(status: &GlobalPinInfo, pin: &Pin) -> (usize, usize, Option<String>) {
    let counted: Vec<_> = status
        .peer_map
        .iter()
        .filter(|(id, _)| {
            pin.allocations.is_empty() || pin.allocations.iter().any(|a| a.to_base58() == **id)
        })
        .map(|(_, view)| view)
        .collect();
    let pinned = counted
        .iter()
        .filter(|v| v.status == TrackerStatus::Pinned)
        .count();
    let error = counted
        .iter()
        .find(|v| v.status == TrackerStatus::PinError)
        .map(|v| v.error.clone());
    let needed = match usize::try_from(pin.replication_factor_min) {
        Ok(min) if min > 0 => min.min(counted.len().max(1)),
        _ => counted.len().max(1),
    };
    (pinned, needed, error)
}

/// Runs one verb, writing its results to `out`.
pub async fn run(args: CtlArgs, out: &mut impl Write) -> Result<()> {
    let api = Api::new(&args)?;
    let json = args.enc == Encoding::Json;
    use reqwest::Method;
    match args.command {
        CtlCommand::Id => {
            let id: Id = api.json(Method::GET, "/id").await?;
            if json {
                return print_json(out, &id);
            }
            writeln!(
                out,
                "{} | {} | Sees {} other peers",
                id.id,
                id.peername,
                id.cluster_peers.len().saturating_sub(1)
            )?;
            writeln!(out, "  > Addresses:")?;
            for address in &id.addresses {
                writeln!(out, "    - {address}")?;
            }
            if id.ipfs.error.is_empty() {
                writeln!(out, "  > IPFS: {}", id.ipfs.id)?;
            } else {
                writeln!(out, "  > IPFS: ERROR: {}", id.ipfs.error)?;
            }
        }
        CtlCommand::Version => {
            let version: Version = api.json(Method::GET, "/version").await?;
            if json {
                return print_json(out, &version);
            }
            writeln!(out, "{}", version.version)?;
        }
        CtlCommand::Peers(PeersCommand::Ls) => {
            for peer in api.list::<Id>("/peers").await? {
                if json {
                    print_json(out, &peer)?;
                } else {
                    writeln!(out, "{} | {}", peer.id, peer.peername)?;
                }
            }
        }
        CtlCommand::Status {
            cids,
            local,
            filter,
        } => {
            let mut options = Vec::new();
            if local {
                options.push(("local", "true".to_owned()));
            }
            if let Some(filter) = filter {
                options.push(("filter", filter));
            }
            let statuses: Vec<GlobalPinInfo> = match cids.as_slice() {
                [cid] if options.iter().all(|(k, _)| *k != "filter") => vec![
                    api.json(Method::GET, &format!("/pins/{cid}{}", query(&options)))
                        .await?,
                ],
                _ => {
                    if !cids.is_empty() {
                        options.push(("cids", cids.join(",")));
                    }
                    api.list(&format!("/pins{}", query(&options))).await?
                }
            };
            for status in &statuses {
                if json {
                    print_json(out, status)?;
                } else {
                    print_status(out, status)?;
                }
            }
        }
        CtlCommand::Recover { cid, local } => {
            let options = if local {
                vec![("local", "true".to_owned())]
            } else {
                Vec::new()
            };
            let statuses: Vec<GlobalPinInfo> = match cid {
                Some(cid) => vec![
                    api.json(
                        Method::POST,
                        &format!("/pins/{cid}/recover{}", query(&options)),
                    )
                    .await?,
                ],
                None => {
                    api.list_of(Method::POST, &format!("/pins/recover{}", query(&options)))
                        .await?
                }
            };
            if statuses.is_empty() && !json {
                writeln!(out, "no pin is in error: nothing to recover")?;
            }
            for status in &statuses {
                if json {
                    print_json(out, status)?;
                } else {
                    print_status(out, status)?;
                }
            }
        }
        CtlCommand::Peers(PeersCommand::Add { peer }) => {
            let added: Id = api
                .post_json("/peers", &serde_json::json!({ "peer_id": peer }))
                .await?;
            if json {
                return print_json(out, &added);
            }
            writeln!(out, "{} | {}", added.id, added.peername)?;
        }
        CtlCommand::Peers(PeersCommand::Rm { peer }) => {
            api.call(Method::DELETE, &format!("/peers/{peer}")).await?;
            if !json {
                writeln!(
                    out,
                    "{peer} removed: its pins were re-allocated to the other peers"
                )?;
            }
        }
        CtlCommand::Health(HealthCommand::Graph {
            file,
            all_ipfs_peers,
        }) => {
            let graph: ConnectGraph = api.json(Method::GET, "/health/graph").await?;
            if json {
                return print_json(out, &graph);
            }
            let dot = dot_graph(&graph, all_ipfs_peers);
            match file {
                Some(path) => {
                    std::fs::write(&path, dot)
                        .with_context(|| format!("could not write {}", path.display()))?;
                    writeln!(
                        out,
                        "wrote {} (render it with: dot -Tsvg {} -o cluster.svg)",
                        path.display(),
                        path.display()
                    )?;
                }
                None => write!(out, "{dot}")?,
            }
        }
        CtlCommand::Add(add) => return run_add(&api, add, json, out).await,
        CtlCommand::Ipfs(IpfsCommand::Gc { local }) => {
            let url = format!(
                "{}/ipfs/gc{}",
                api.base,
                if local { "?local=true" } else { "" }
            );
            let started = Instant::now();
            // A collection takes as long as the largest repository needs: no overall timeout.
            let waiting = std::io::stderr().is_terminal().then(|| {
                tokio::spawn(async move {
                    loop {
                        eprint!(
                            "\r\x1b[2Kcollecting garbage on {} ({}s)",
                            if local {
                                "this peer's IPFS daemon"
                            } else {
                                "every peer's IPFS daemon"
                            },
                            started.elapsed().as_secs()
                        );
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                })
            });
            let answer = api.send(api.upload.post(&url), &url).await;
            if let Some(task) = waiting {
                task.abort();
                eprintln!();
            }
            let body = answer?.text().await.context("the answer was cut short")?;
            let gc: GlobalRepoGc = serde_json::from_str(&body)
                .with_context(|| format!("{url}: the answer is not a GlobalRepoGC"))?;
            if json {
                return print_json(out, &gc);
            }
            write!(out, "{}", gc.to_text())?;
        }
        CtlCommand::Health(HealthCommand::Metrics { name: None }) => {
            let names: Vec<String> = api.json(Method::GET, "/monitor/metrics").await?;
            if json {
                return print_json(out, &names);
            }
            for name in names {
                writeln!(out, "{name}")?;
            }
        }
        CtlCommand::Health(HealthCommand::Metrics { name: Some(name) }) => {
            let metrics: Vec<Metric> = api
                .json(Method::GET, &format!("/monitor/metrics/{name}"))
                .await?;
            if json {
                return print_json(out, &metrics);
            }
            for metric in metrics {
                writeln!(
                    out,
                    "{} | {} | {} | expires {}",
                    metric.peer,
                    metric.name,
                    metric.value,
                    nanos_to_json(Some(metric.expire))
                )?;
            }
        }
        CtlCommand::Health(HealthCommand::Bandwidth) => {
            let by_protocol: std::collections::BTreeMap<String, ProtocolBandwidth> =
                api.json(Method::GET, "/health/bandwidth").await?;
            if json {
                return print_json(out, &by_protocol);
            }
            for (protocol, figures) in &by_protocol {
                writeln!(
                    out,
                    "{protocol:>25}: In: {:>7}. Out: {:>7}. RateIn: {:.2}B/s. RateOut: {:.2}B/s",
                    si_bytes(figures.total_in),
                    si_bytes(figures.total_out),
                    figures.rate_in,
                    figures.rate_out
                )?;
            }
        }
        CtlCommand::Health(HealthCommand::Alerts) => {
            let alerts: Vec<Alert> = api.json(Method::GET, "/health/alerts").await?;
            if json {
                return print_json(out, &alerts);
            }
            for alert in alerts {
                writeln!(
                    out,
                    "{} | {} | expired, alert at {}",
                    alert.metric.peer,
                    alert.metric.name,
                    nanos_to_json(Some(alert.triggered_at))
                )?;
            }
        }
        CtlCommand::Pin(PinCommand::Ls { cid, filter }) => {
            let pins: Vec<Pin> = match cid {
                Some(cid) => vec![
                    api.json(Method::GET, &format!("/allocations/{cid}"))
                        .await?,
                ],
                None => {
                    let filter = [("filter".to_owned(), filter)];
                    api.list(&format!("/allocations{}", query(&filter))).await?
                }
            };
            for pin in &pins {
                if json {
                    print_json(out, pin)?;
                } else {
                    print_pin(out, pin)?;
                }
            }
        }
        CtlCommand::Pin(PinCommand::Rm {
            cid,
            wait,
            wait_timeout,
        }) => {
            let pin: Pin = api.json(Method::DELETE, &pin_path(&cid)).await?;
            if wait {
                let status = wait_for(&api, &pin, Awaited::Unpinned, wait_timeout).await?;
                if json {
                    print_json(out, &status)?;
                } else {
                    print_status(out, &status)?;
                }
            } else if json {
                print_json(out, &pin)?;
            } else {
                writeln!(out, "{} unpinned from the cluster", pin.cid)?;
            }
        }
        CtlCommand::Pin(PinCommand::Add {
            cid,
            mode,
            origins,
            flags,
        }) => {
            let options = PinOptions {
                mode,
                origins,
                ..flags.options()
            };
            let pin = api
                .json(
                    Method::POST,
                    &format!("{}{}", pin_path(&cid), query(&options.to_query())),
                )
                .await?;
            finish_pin(&api, &pin, flags.wait, flags.wait_timeout, json, out).await?;
        }
        CtlCommand::Pin(PinCommand::Update {
            from,
            to,
            name,
            expire_in,
            wait,
            wait_timeout,
        }) => {
            let from = from
                .parse()
                .with_context(|| format!("{from:?} is not a CID"))?;
            let options = PinOptions {
                pin_update: Some(from),
                name,
                expire: expire_in.map(Expiry::In),
                ..PinOptions::default()
            };
            let pin = api
                .json(
                    Method::POST,
                    &format!("/pins/{to}{}", query(&options.to_query())),
                )
                .await?;
            finish_pin(&api, &pin, wait, wait_timeout, json, out).await?;
        }
    }
    Ok(())
}

/// Prints a pin just made, or with `wait` its status once pinned.
async fn finish_pin(
    api: &Api,
    pin: &Pin,
    wait: bool,
    wait_timeout: u64,
    json: bool,
    out: &mut impl Write,
) -> Result<()> {
    if !wait {
        return if json {
            print_json(out, pin)
        } else {
            print_pin(out, pin)
        };
    }
    let status = wait_for(api, pin, Awaited::Pinned, wait_timeout).await?;
    if json {
        print_json(out, &status)
    } else {
        print_status(out, &status)
    }
}

/// The connectivity graph in Graphviz dot: cluster peers as boxes (trusted ones bold),
/// their IPFS daemons as ellipses, cluster links solid, daemon links dashed.
fn dot_graph(graph: &ConnectGraph, all_ipfs_peers: bool) -> String {
    use std::fmt::Write as _;
    let cluster_daemons: std::collections::BTreeSet<&String> =
        graph.cluster_to_ipfs.values().collect();
    let short = |id: &str| {
        let start = id.char_indices().rev().nth(5).map_or(0, |(i, _)| i);
        id[start..].to_owned()
    };
    let mut dot = String::from("digraph cluster {\n  rankdir=LR;\n");
    for peer in graph.cluster_links.keys() {
        let name = graph
            .id_to_peername
            .get(peer)
            .filter(|n| !n.is_empty())
            .unwrap_or(peer);
        let trusted = graph
            .cluster_trust_links
            .get(peer)
            .copied()
            .unwrap_or(false);
        let _ = writeln!(
            dot,
            "  \"{peer}\" [label=\"{name}\\n…{}\" shape=box{}];",
            short(peer),
            if trusted { " style=bold" } else { "" }
        );
    }
    for (peer, to) in &graph.cluster_links {
        for other in to {
            let _ = writeln!(dot, "  \"{peer}\" -> \"{other}\";");
        }
    }
    for (peer, daemon) in &graph.cluster_to_ipfs {
        let _ = writeln!(
            dot,
            "  \"{daemon}\" [label=\"IPFS …{}\" shape=ellipse];",
            short(daemon)
        );
        let _ = writeln!(
            dot,
            "  \"{peer}\" -> \"{daemon}\" [style=dotted arrowhead=none];"
        );
    }
    for (daemon, to) in &graph.ipfs_links {
        for other in to {
            if all_ipfs_peers || cluster_daemons.contains(other) {
                let _ = writeln!(dot, "  \"{daemon}\" -> \"{other}\" [style=dashed];");
            }
        }
    }
    dot.push_str("}\n");
    dot
}

/// One part of an `add` upload: a directory, or a file read as it is sent.
enum Upload {
    Directory(String),
    File(String, std::path::PathBuf, u64),
}

/// The parts of an upload of `paths`, directories walked in name order.
fn upload_parts(paths: &[std::path::PathBuf], recursive: bool) -> Result<Vec<Upload>> {
    fn walk(
        path: &std::path::Path,
        name: String,
        recursive: bool,
        parts: &mut Vec<Upload>,
    ) -> Result<()> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        if meta.is_dir() {
            if !recursive {
                bail!(
                    "{} is a directory: add it with -r (--recursive)",
                    path.display()
                );
            }
            parts.push(Upload::Directory(name.clone()));
            let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<std::io::Result<_>>()?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let child = format!("{name}/{}", entry.file_name().to_string_lossy());
                walk(&entry.path(), child, recursive, parts)?;
            }
        } else {
            parts.push(Upload::File(name, path.to_owned(), meta.len()));
        }
        Ok(())
    }
    let mut parts = Vec::new();
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        walk(path, name, recursive, &mut parts)?;
    }
    Ok(parts)
}

/// The `abspath-encoded` header of a file's part, as Kubo's own client sends it: where
/// the daemon finds the file to reference it (`nocopy`).
fn abspath_header(path: &std::path::Path) -> Result<reqwest::header::HeaderMap> {
    let absolute = std::fs::canonicalize(path)
        .with_context(|| format!("could not resolve {}", path.display()))?;
    let value = percent_encoded(&absolute.to_string_lossy());
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("abspath-encoded", value.parse()?);
    Ok(headers)
}

/// A part name or path as the daemons read it: percent-encoded, `/` included.
fn percent_encoded(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A file's bytes as a stream that counts what it sent into `sent`.
fn counted_file(
    path: std::path::PathBuf,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> reqwest::Body {
    use tokio::io::AsyncReadExt;
    let chunks = futures::stream::unfold(None, move |file: Option<tokio::fs::File>| {
        let (path, sent) = (path.clone(), sent.clone());
        async move {
            let mut file = match file {
                Some(file) => file,
                None => match tokio::fs::File::open(&path).await {
                    Ok(file) => file,
                    Err(e) => return Some((Err(e), None)),
                },
            };
            let mut buffer = vec![0u8; 256 * 1024];
            match file.read(&mut buffer).await {
                Ok(0) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    sent.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    Some((Ok(buffer), Some(file)))
                }
                Err(e) => Some((Err(e), None)),
            }
        }
    });
    reqwest::Body::wrap_stream(chunks)
}

/// `add`: uploads the files to the peer, which adds them through its daemon and pins the
/// root; prints each CID added (only the CIDs with `--quiet`, only the root's with
/// `--quieter`).
async fn run_add(api: &Api, add: AddArgs, json: bool, out: &mut impl Write) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let parts = upload_parts(&add.paths, add.recursive)?;
    let total: u64 = parts
        .iter()
        .map(|p| match p {
            Upload::File(_, _, size) => *size,
            Upload::Directory(_) => 0,
        })
        .sum();
    let sent = Arc::new(AtomicU64::new(0));
    let mut form = reqwest::multipart::Form::new().percent_encode_noop();
    for part in parts {
        form = match part {
            Upload::Directory(name) => form.part(
                "file",
                reqwest::multipart::Part::bytes(Vec::new())
                    .file_name(percent_encoded(&name))
                    .mime_str("application/x-directory")?,
            ),
            Upload::File(name, path, size) => {
                let mut file_part = reqwest::multipart::Part::stream_with_length(
                    counted_file(path.clone(), sent.clone()),
                    size,
                )
                .file_name(percent_encoded(&name))
                .mime_str("application/octet-stream")?;
                if add.nocopy {
                    file_part = file_part.headers(abspath_header(&path)?);
                }
                form.part("file", file_part)
            }
        };
    }
    let mut pairs = add.pin.options().to_query();
    let mut flag = |key: &str, on: bool| {
        if on {
            pairs.push((key.to_owned(), "true".to_owned()));
        }
    };
    flag("wrap-with-directory", add.wrap_with_directory);
    flag("no-pin", add.no_pin);
    flag("local", add.local);
    flag("raw-leaves", add.raw_leaves || add.nocopy);
    flag("nocopy", add.nocopy);
    flag("shard", add.shard);
    pairs.extend(
        add.shard_size
            .map(|n| ("shard-size".to_owned(), n.to_string())),
    );
    pairs.extend(
        add.cid_version
            .map(|v| ("cid-version".to_owned(), v.to_string())),
    );
    pairs.extend(add.chunker.map(|c| ("chunker".to_owned(), c)));
    pairs.extend(add.hash.map(|h| ("hash".to_owned(), h)));
    pairs.extend(add.layout.map(|l| ("layout".to_owned(), l)));
    pairs.extend(add.format.map(|f| ("format".to_owned(), f)));
    if add.no_stream {
        pairs.push(("stream-channels".to_owned(), "false".to_owned()));
    }
    let url = format!("{}/add{}", api.base, query(&pairs));
    let request = api.upload.post(&url).multipart(form);
    let terminal = std::io::stderr().is_terminal();
    let progress = terminal.then(|| {
        let sent = sent.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                let done = sent.load(Ordering::Relaxed);
                let percent = (done * 100).checked_div(total).unwrap_or(100);
                eprint!(
                    "\r\x1b[2Kadding: {} of {} sent ({percent}%, {}s)",
                    human_bytes(done),
                    human_bytes(total),
                    started.elapsed().as_secs()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    });
    let answer = match api.send(request, &url).await {
        Ok(response) => response
            .text()
            .await
            .context("the add answer was cut short"),
        Err(error) => Err(error),
    };
    if let Some(task) = progress {
        task.abort();
        eprintln!();
    }
    let answer = answer?;
    let outputs: Vec<AddedOutput> = if add.no_stream {
        serde_json::from_str(&answer)
            .with_context(|| format!("/add answered what is not a list of outputs: {answer}"))?
    } else {
        parse_lines("/add", &answer)?
    };
    let Some(root) = outputs.last() else {
        bail!("the peer added nothing: were the files empty?");
    };
    let shown: Vec<&AddedOutput> = if add.quieter {
        vec![root]
    } else {
        outputs.iter().collect()
    };
    if json && add.no_stream {
        print_json(out, &shown)?;
    }
    for output in shown.iter().filter(|_| !(json && add.no_stream)) {
        if json {
            print_json(out, output)?;
        } else if add.quiet || add.quieter {
            writeln!(out, "{}", output.cid)?;
        } else {
            writeln!(out, "added {} {}", output.cid, output.name)?;
        }
    }
    if add.no_pin {
        return Ok(());
    }
    // A failure after the upload ends the answer with a trailer this client cannot read,
    // so the pin itself is checked.
    let cid = &root.cid;
    let pin: Pin = match api
        .json(reqwest::Method::GET, &format!("/allocations/{cid}"))
        .await
    {
        Ok(pin) => pin,
        Err(error) => bail!("{cid} was added to IPFS but is not pinned in the cluster ({error}); pin it with `pinfold ctl pin add {cid}`"),
    };
    if add.pin.wait {
        let status = wait_for(api, &pin, Awaited::Pinned, add.pin.wait_timeout).await?;
        if json {
            print_json(out, &status)?;
        } else {
            print_status(out, &status)?;
        }
    }
    Ok(())
}

/// Bytes in SI units as ipfs-cluster-ctl writes them (go-humanize's `Bytes`): `512 B`,
/// `1.5 kB`, `42 MB`.
fn si_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 10 {
        return format!("{bytes} B");
    }
    let exponent = ((bytes as f64).ln() / 1000f64.ln()).floor() as usize;
    let exponent = exponent.min(UNITS.len() - 1);
    let value = (bytes as f64 / 1000f64.powi(exponent as i32) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exponent])
    } else {
        format!("{value:.0} {}", UNITS[exponent])
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// How far an unpin has gone: the peers that report it unpinned, the peers that answered,
/// and a peer's error if one failed to unpin it.
fn unpinned_progress(status: &GlobalPinInfo) -> (usize, usize, Option<String>) {
    let answered: Vec<_> = status
        .peer_map
        .values()
        .filter(|v| v.status != TrackerStatus::ClusterError)
        .collect();
    let unpinned = answered
        .iter()
        .filter(|v| v.status == TrackerStatus::Unpinned)
        .count();
    let error = answered
        .iter()
        .find(|v| v.status == TrackerStatus::UnpinError)
        .map(|v| v.error.clone());
    (unpinned, answered.len(), error)
}

/// What a `--wait` waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Awaited {
    /// Pinned on enough of the pin's allocations (replication-min, else all).
    Pinned,
    /// Unpinned on every peer that answers.
    Unpinned,
}

/// Polls the pin's cluster-wide status until it is `awaited`; shows a progress line on
/// a terminal, and each new error of a peer (which retries) on standard error.
async fn wait_for(
    api: &Api,
    pin: &Pin,
    awaited: Awaited,
    timeout_secs: u64,
) -> Result<GlobalPinInfo> {
    let cid = pin.cid;
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let (done_word, failed_verb) = match awaited {
        Awaited::Pinned => ("pinned", "pin"),
        Awaited::Unpinned => ("unpinned", "unpin"),
    };
    let mut last_error: Option<String> = None;
    loop {
        let status: GlobalPinInfo = api
            .json(reqwest::Method::GET, &format!("/pins/{cid}"))
            .await?;
        let (done, needed, error) = match awaited {
            Awaited::Pinned => pinned_progress(&status, pin),
            Awaited::Unpinned => unpinned_progress(&status),
        };
        if terminal {
            eprint!(
                "\r\x1b[2Kwaiting for {cid}: {done_word} on {done}/{needed} peers ({}s)",
                started.elapsed().as_secs()
            );
        }
        if done >= needed {
            if terminal {
                eprintln!();
            }
            return Ok(status);
        }
        if error.is_some() && error != last_error {
            if terminal {
                eprintln!();
            }
            eprintln!(
                "a peer failed to {failed_verb} {cid} (retried): {}",
                error.clone().unwrap_or_default()
            );
            last_error = error;
        }
        if timeout_secs > 0 && started.elapsed() >= Duration::from_secs(timeout_secs) {
            if terminal {
                eprintln!();
            }
            bail!(
                "{cid} is {done_word} on {done} of {needed} peers after {timeout_secs}s; `pinfold ctl status {cid}` shows where it stands"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_ipfs_cluster_ctl_writes_them() {
        for (bytes, text) in [
            (0, "0 B"),
            (9, "9 B"),
            (10, "10 B"),
            (1_500, "1.5 kB"),
            (999_999, "1000 kB"),
            (42_000_000, "42 MB"),
        ] {
            assert_eq!(si_bytes(bytes), text, "{bytes}");
        }
    }
}
