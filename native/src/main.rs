//! The `pinfold` command.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use libp2p::Multiaddr;
use pinfold_core::codec::pubsub::{crdt_topic, DEFAULT_CLUSTER_NAME};
use pinfold_core::codec::secret::ClusterSecret;
use pinfold_native::api::auth::{Credentials, ErrorShape};
use pinfold_native::cli::state;
use pinfold_native::config::{
    generate_identity, load_identity, ConfigError, ServiceConfig, CONFIG_FILE, IDENTITY_FILE,
};
use pinfold_native::metrics::PeerMetrics;
use pinfold_native::peer::{Peer, PeerOptions};

/// mimalloc rather than the system's allocator: a sync allocates and frees a few small
/// buffers per pin, which glibc's malloc spends a quarter of the sync's time on
/// (consolidating and unlinking its free chunks). Its defaults keep freed memory a second
/// before giving it back and use transparent huge pages, so a peer's resident memory is
/// larger (see CHANGELOG.md for figures).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// pinfold: an IPFS Cluster for native hosts and the browser, wire compatible with Go
/// ipfs-cluster's CRDT clusters.
#[derive(Parser)]
#[command(name = "pinfold", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a cluster peer next to an IPFS daemon (ipfs-cluster-service's verbs).
    Service(ServiceArgs),
    /// Operate a cluster through a peer's REST API (ipfs-cluster-ctl's verbs).
    Ctl(Box<pinfold_native::cli::ctl::CtlArgs>),
    /// Follow clusters as a read-only peer that pins on the local IPFS daemon
    /// (ipfs-cluster-follow's verbs). Without a name, lists the followed clusters.
    Follow(FollowArgs),
    /// Print the version.
    Version,
    /// Create and check cluster secrets (the cluster's private-network key).
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Print the pubsub topic that carries a cluster's CRDT heads.
    Topic {
        /// The cluster name (`crdt.cluster_name`).
        #[arg(default_value = DEFAULT_CLUSTER_NAME)]
        cluster_name: String,
    },
}

#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = false,
    subcommand_precedence_over_arg = false
)]
struct FollowArgs {
    /// Where followed clusters' folders are.
    #[arg(long, env = "PINFOLD_FOLLOW_PATH", default_value_os_t = pinfold_native::cli::follow::default_dir())]
    dir: PathBuf,
    /// The followed cluster's name (its folder under --dir).
    name: Option<String>,
    #[command(subcommand)]
    command: Option<FollowCommand>,
}

#[derive(Subcommand)]
enum FollowCommand {
    /// Follow a cluster whose configuration template is at URL (http(s), or a DNSLink name
    /// read through --gateway), with a new identity.
    Init {
        url: String,
        /// The IPFS gateway DNSLink names are read through.
        #[arg(long, env = "IPFS_GATEWAY")]
        gateway: Option<String>,
    },
    /// Fetch the configuration and run the follower until SIGINT or SIGTERM: it syncs the
    /// pinset and pins what is allocated to it (and pins everywhere) on its IPFS daemon.
    Run {
        /// Follow from this URL first, when not followed yet.
        #[arg(long, value_name = "URL")]
        init: Option<String>,
        #[arg(long, env = "IPFS_GATEWAY")]
        gateway: Option<String>,
        /// Log level, as for `service daemon`.
        #[arg(long, short = 'l', env = "PINFOLD_LOG", default_value = "info")]
        log_level: String,
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// The cluster's pins with this follower's status of each (the follower must run).
    List,
    /// The follower's identity, source and, when it runs, where it stands.
    Info,
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Generate a new random secret.
    New {
        /// Write it as a libp2p swarm.key file instead of 64 hex characters.
        #[arg(long)]
        swarm_key: bool,
    },
    /// Check a secret (from the argument, CLUSTER_SECRET, or a swarm.key file) and print
    /// it in both forms.
    Check {
        /// The 64-hex-character secret.
        #[arg(
            env = "CLUSTER_SECRET",
            hide_env_values = true,
            conflicts_with = "file"
        )]
        secret: Option<String>,
        /// Read a swarm.key file instead.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ServiceArgs {
    /// The peer's folder: service.json, identity.json, the pinset and the peerstore.
    #[arg(long, short = 'c', env = "PINFOLD_PATH", default_value_os_t = default_folder(), global = true)]
    config: PathBuf,
    #[command(subcommand)]
    command: ServiceCommand,
}

#[derive(Subcommand)]
enum StateCommand {
    /// Write the pinset as newline-delimited pin JSON (the daemon must be stopped).
    Export {
        /// Write to this file instead of standard output.
        #[arg(long, short = 'f')]
        file: Option<PathBuf>,
    },
    /// Add the pins of a newline-delimited pin JSON file (or `-` for standard input) to
    /// the pinset, as this peer's writes (the daemon must be stopped). Pins already in the
    /// pinset take the imported options; no pin is removed.
    Import {
        #[arg(default_value = "-")]
        file: PathBuf,
    },
    /// Inspect the CRDT of a stopped peer.
    #[command(subcommand)]
    Crdt(CrdtCommand),
    /// Move the pinset store of a stopped peer aside (kept, renamed), as after damage: the
    /// peer syncs the pinset again from the other peers when it next starts.
    Cleanup {
        /// Do not ask for confirmation.
        #[arg(long, short)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum CrdtCommand {
    /// Heads, height and what the store holds.
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ServiceCommand {
    /// Write a new configuration (with a fresh secret unless CLUSTER_SECRET is set) and identity.
    Init(InitOptions),
    /// Export or import the pinset of a stopped peer.
    #[command(subcommand)]
    State(StateCommand),
    /// Run the peer until SIGINT or SIGTERM.
    Daemon {
        /// Peers to join (multiaddresses with /p2p/), comma-separated; they are also trusted
        /// unless --no-trust.
        #[arg(long, short = 'j', value_delimiter = ',')]
        bootstrap: Vec<Multiaddr>,
        /// Do not add the bootstrap peers to crdt.trusted_peers.
        #[arg(long)]
        no_trust: bool,
        /// Serve Prometheus metrics at observations.metrics.prometheus_endpoint
        /// (127.0.0.1:8888 by default), as enable_stats does.
        #[arg(long)]
        stats: bool,
        /// On shutdown, have another trusted pinfold peer re-allocate this peer's pins, as
        /// `cluster.leave_on_shutdown` does.
        #[arg(long, short = 'x')]
        leave: bool,
        /// Log level: error, warn, info, debug, trace, or a filter like `pinfold=debug,libp2p=info`.
        #[arg(long, short = 'l', env = "PINFOLD_LOG", default_value = "info")]
        log_level: String,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Consensus {
    Crdt,
    Raft,
}

/// Go ipfs-cluster's datastores, as `ipfs-cluster-service init --datastore` names them.
#[derive(Clone, Copy, ValueEnum)]
enum GoDatastore {
    Pebble,
    Badger,
    Badger3,
    Leveldb,
}

/// What `service init` writes beyond the defaults.
#[derive(clap::Args)]
struct InitOptions {
    /// The peer's name (default: the host name).
    #[arg(long)]
    peername: Option<String>,
    /// Overwrite an existing configuration and identity.
    #[arg(long, short)]
    force: bool,
    /// The consensus: crdt, or raft (a `consensus.raft` section; the --peers, or none to
    /// start alone or join through --bootstrap, are its `init_peerset`).
    #[arg(long, value_enum, default_value_t = Consensus::Crdt)]
    consensus: Consensus,
    /// The datastore named in the configuration for Go peers and followers given it
    /// (pinfold keeps its own pinset in redb whatever this says).
    #[arg(long, value_enum, default_value_t = GoDatastore::Pebble)]
    datastore: GoDatastore,
    /// Peers to start with (multiaddresses with /p2p/), comma-separated: written to the
    /// peerstore, and their peer ids made `consensus.crdt.trusted_peers` (with
    /// `--consensus raft`, `consensus.raft.init_peerset`).
    #[arg(long, value_delimiter = ',')]
    peers: Vec<Multiaddr>,
    /// Listen on free ports picked now instead of the defaults (swarm, REST API,
    /// Pinning Services API, IPFS proxy), so that several peers share a machine.
    #[arg(long)]
    randomports: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn default_folder() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".pinfold")
}

fn init(folder: &std::path::Path, options: InitOptions) -> Result<()> {
    let config_path = folder.join(CONFIG_FILE);
    let identity_path = folder.join(IDENTITY_FILE);
    for path in [&config_path, &identity_path] {
        if path.exists() && !options.force {
            return Err(ConfigError::Exists { path: path.clone() }.into());
        }
    }
    let peername = options.peername.unwrap_or_else(host_name);
    let mut config = ServiceConfig::generate(&peername);
    let datastore = options
        .datastore
        .to_possible_value()
        .expect("no variant is skipped");
    config.datastore = Some(serde_json::json!({ datastore.get_name(): {} }));
    if options.randomports {
        config
            .randomize_ports()
            .context("could not pick free ports for --randomports")?;
    }
    let mut starting_peers = Vec::with_capacity(options.peers.len());
    for address in &options.peers {
        match address.iter().last() {
            Some(libp2p::multiaddr::Protocol::P2p(peer)) => starting_peers.push((peer, address)),
            _ => anyhow::bail!("--peers {address}: the address has no /p2p/<peer id>"),
        }
    }
    let starting_ids: Vec<String> = starting_peers.iter().map(|(p, _)| p.to_string()).collect();
    if options.consensus == Consensus::Raft {
        config.consensus.raft = Some(pinfold_native::config::RaftSection {
            init_peerset: starting_ids,
            ..Default::default()
        });
    } else if !starting_ids.is_empty() {
        config.consensus.crdt.trusted_peers = starting_ids;
    }
    config.apply_env(|name| std::env::var(name).ok())?;
    config.validate()?;
    config.save(&config_path)?;
    let key = generate_identity(&identity_path)?;
    println!("configuration written to {}", config_path.display());
    println!("identity written to {}", identity_path.display());
    // As Go's init does, the peerstore holds the starting peers only (empty without any).
    let peerstore_path = folder.join(pinfold_native::config::PEERSTORE_FILE);
    let written = std::fs::write(&peerstore_path, "").and_then(|()| {
        let mut peerstore = pinfold_native::peer::peerstore::Peerstore::load(&peerstore_path)?;
        for (peer, address) in &starting_peers {
            let bare = address
                .iter()
                .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
                .collect();
            peerstore.add(*peer, bare);
        }
        peerstore.save()
    });
    written.with_context(|| format!("could not write {}", peerstore_path.display()))?;
    println!(
        "peerstore written to {} with {} entries",
        peerstore_path.display(),
        starting_peers.len()
    );
    println!("peer id: {}", key.public().to_peer_id());
    println!(
        "start it with: pinfold service --config {} daemon",
        folder.display()
    );
    Ok(())
}

fn init_logs(level: &str, format: LogFormat) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("--log-level {level:?} is not a level or filter"))?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("signal received");
}

fn daemon(
    folder: &std::path::Path,
    bootstrap: Vec<Multiaddr>,
    no_trust: bool,
    stats: bool,
    leave: bool,
) -> Result<()> {
    let config_path = folder.join(CONFIG_FILE);
    if !config_path.exists() {
        anyhow::bail!(
            "{} does not exist: run `pinfold service --config {} init` first",
            config_path.display(),
            folder.display()
        );
    }
    let mut config = ServiceConfig::load(&config_path)?;
    config.apply_env(|name| std::env::var(name).ok())?;
    config.observations.metrics.enable_stats |= stats;
    config.cluster.leave_on_shutdown |= leave;
    if !no_trust && !config.consensus.crdt.trusted_peers.iter().any(|p| p == "*") {
        for address in &bootstrap {
            if let Some(libp2p::multiaddr::Protocol::P2p(peer)) = address.iter().last() {
                config.consensus.crdt.trusted_peers.push(peer.to_string());
            }
        }
    }
    run_peer(folder, config, bootstrap)
}

/// The host's name, for peer names.
fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "pinfold".to_owned())
}

/// `pinfold follow ...`.
fn follow(args: FollowArgs, out: &mut impl Write) -> Result<()> {
    use pinfold_native::cli::follow;
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let Some(name) = args.name else {
        if args.command.is_some() {
            anyhow::bail!("name the cluster: pinfold follow <name> <command>");
        }
        let clusters = runtime()?.block_on(follow::followed(&args.dir))?;
        if clusters.is_empty() {
            writeln!(
                out,
                "no cluster followed in {}: start with `pinfold follow <name> init <url>`",
                args.dir.display()
            )?;
        }
        for cluster in clusters {
            let state = match &cluster.api {
                Some(api) => format!("running ({api})"),
                None => "stopped".to_owned(),
            };
            writeln!(out, "{} | {} | {state}", cluster.name, cluster.source)?;
        }
        return Ok(());
    };
    match args.command.unwrap_or(FollowCommand::Info) {
        FollowCommand::Init { url, gateway } => {
            let folder = follow::init(&args.dir, &name, &url, gateway.as_deref())?;
            writeln!(
                out,
                "{name} followed from {}; its folder is {}",
                follow::source_url(&url, gateway.as_deref()),
                folder.display()
            )?;
            writeln!(out, "start it with: pinfold follow {name} run")?;
        }
        FollowCommand::Run {
            init,
            gateway,
            log_level,
            log_format,
        } => {
            init_logs(&log_level, log_format)?;
            let folder = follow::folder(&args.dir, &name)?;
            if let Some(url) = init {
                if !folder.join(follow::SOURCE_FILE).exists() {
                    follow::init(&args.dir, &name, &url, gateway.as_deref())?;
                }
            }
            let mut config = runtime()?.block_on(follow::configuration(&folder, &host_name()))?;
            config.apply_env(|name| std::env::var(name).ok())?;
            tracing::info!(cluster = %name, "following");
            run_peer(&folder, config, Vec::new())?;
        }
        FollowCommand::List => runtime()?.block_on(follow::list(&args.dir, &name, out))?,
        FollowCommand::Info => runtime()?.block_on(follow::info(&args.dir, &name, out))?,
    }
    Ok(())
}

/// An API's TLS configuration, when it has a certificate and a key (relative to `folder`).
fn tls_config(
    folder: &std::path::Path,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    section: &str,
) -> Result<Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(
            pinfold_native::api::tls::server_config(&folder.join(cert), &folder.join(key))
                .with_context(|| format!("{section}.ssl_cert_file/ssl_key_file"))?,
        )),
        _ => Ok(None),
    }
}

/// The dashboard folder of `api.restapi.dashboard_dir` (relative to `folder`), checked to
/// hold a built dashboard.
fn dashboard_dir(folder: &std::path::Path, dir: &Option<PathBuf>) -> Result<Option<PathBuf>> {
    let Some(dir) = dir else {
        return Ok(None);
    };
    let dir = folder.join(dir);
    anyhow::ensure!(
        dir.join("index.html").is_file(),
        "api.restapi.dashboard_dir: {} holds no index.html; build the dashboard with scripts/build-web (it writes web/dist)",
        dir.display()
    );
    Ok(Some(dir))
}

/// Serves the IPFS proxy API on each of its addresses, in front of `daemon`.
async fn ipfs_proxy(
    config: &pinfold_native::config::IpfsProxySection,
    daemon: &Multiaddr,
    peer: &pinfold_native::peer::PeerHandle,
) -> Result<Vec<tokio::task::JoinHandle<std::io::Result<()>>>> {
    if config.listen_multiaddress.is_empty() {
        return Ok(Vec::new());
    }
    let daemon_url = pinfold_native::endpoint::http_url(daemon)
        .map_err(|e| anyhow::anyhow!("api.ipfsproxy.node_multiaddress: {e}"))?;
    let proxy = std::sync::Arc::new(pinfold_native::api::ipfsproxy::Proxy::new(
        peer.clone(),
        daemon_url.clone(),
        config,
    )?);
    let mut servers = Vec::new();
    for address in &config.listen_multiaddress {
        let socket = pinfold_native::endpoint::socket_addr(address)
            .map_err(|e| anyhow::anyhow!("api.ipfsproxy.listen_multiaddress: {e}"))?;
        let listener = tokio::net::TcpListener::bind(socket).await.with_context(|| {
            format!("could not listen for the IPFS proxy API on {socket} (set api.ipfsproxy.listen_multiaddress, or [] to turn it off)")
        })?;
        tracing::info!(address = %socket, daemon = %daemon_url, "IPFS proxy API listening");
        servers.push(tokio::spawn(pinfold_native::api::ipfsproxy::serve(
            listener,
            proxy.clone(),
        )));
    }
    Ok(servers)
}

/// Runs a peer from `folder` (its identity, pinset and peerstore) with `config` until
/// SIGINT or SIGTERM.
fn run_peer(
    folder: &std::path::Path,
    config: ServiceConfig,
    bootstrap: Vec<Multiaddr>,
) -> Result<()> {
    let key = load_identity(&folder.join(IDENTITY_FILE))?;
    let api_address = config.api.restapi.http_listen_multiaddress.clone();
    let restapi = config.api.restapi.clone();
    let mut api_config = config.clone();
    api_config.api.restapi.dashboard_dir = dashboard_dir(folder, &restapi.dashboard_dir)?;
    let tls = tls_config(
        folder,
        &restapi.ssl_cert_file,
        &restapi.ssl_key_file,
        "api.restapi",
    )?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let pinsvcapi = config.api.pinsvcapi.clone();
    let ipfsproxy = config.api.ipfsproxy.clone();
    let proxied_daemon = ipfsproxy
        .node_multiaddress
        .clone()
        .unwrap_or_else(|| config.ipfs_connector.ipfshttp.node_multiaddress.clone());
    let metrics_config = config.observations.metrics.clone();
    let credentials = Credentials::new(
        restapi.basic_auth_credentials.clone().unwrap_or_default(),
        ErrorShape::Cluster,
    );
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let (metrics, prometheus) = if metrics_config.enable_stats {
            let socket = pinfold_native::endpoint::socket_addr(&metrics_config.prometheus_endpoint)
                .map_err(|e| anyhow::anyhow!("observations.metrics.prometheus_endpoint: {e}"))?;
            let listener = pinfold_native::metrics::listen(socket).await?;
            let (metrics, registry) = PeerMetrics::new();
            let server = tokio::spawn(pinfold_native::metrics::serve(listener, registry));
            (Some(metrics), Some(server))
        } else {
            (None, None)
        };
        let (peer, handle) = Peer::start(PeerOptions {
            dir: folder.to_owned(),
            config,
            key,
            bootstrap,
            metrics,
        })
        .await?;
        tracing::info!(peer = %peer.local_peer_id(), "pinfold peer started");
        let socket = pinfold_native::endpoint::socket_addr(&api_address)
            .map_err(|e| anyhow::anyhow!("api.restapi.http_listen_multiaddress: {e}"))?;
        let listener = tokio::net::TcpListener::bind(socket)
            .await
            .with_context(|| format!("could not listen for the REST API on {socket}"))?;
        let bound = listener.local_addr()?;
        tracing::info!(address = %bound, scheme, "REST API listening");
        if api_config.api.restapi.dashboard_dir.is_some() {
            tracing::info!(
                "dashboard at {scheme}://{bound}{}",
                pinfold_native::api::rest::DASHBOARD_PATH
            );
        }
        let address_file = folder.join(pinfold_native::cli::follow::API_ADDRESS_FILE);
        std::fs::write(&address_file, bound.to_string())
            .with_context(|| format!("could not write {}", address_file.display()))?;
        let pinning_service = match &pinsvcapi.http_listen_multiaddress {
            Some(address) => {
                let socket = pinfold_native::endpoint::socket_addr(address)
                    .map_err(|e| anyhow::anyhow!("api.pinsvcapi.http_listen_multiaddress: {e}"))?;
                let listener = tokio::net::TcpListener::bind(socket).await.with_context(|| {
                    format!("could not listen for the Pinning Services API on {socket} (set api.pinsvcapi.http_listen_multiaddress, or null to turn it off)")
                })?;
                tracing::info!(address = %socket, "Pinning Services API listening");
                let credentials = Credentials::new(
                    pinsvcapi.basic_auth_credentials.clone().unwrap_or_default(),
                    ErrorShape::PinningService,
                );
                let tls = tls_config(
                    folder,
                    &pinsvcapi.ssl_cert_file,
                    &pinsvcapi.ssl_key_file,
                    "api.pinsvcapi",
                )?;
                Some(tokio::spawn(pinfold_native::api::pinsvc::serve(
                    listener,
                    handle.clone(),
                    credentials,
                    tls,
                )))
            }
            None => None,
        };
        let proxies = ipfs_proxy(&ipfsproxy, &proxied_daemon, &handle).await?;
        let api = tokio::spawn(async move {
            pinfold_native::api::rest::serve(listener, handle, credentials, &api_config, tls).await
        });
        let result = peer.run(shutdown_signal()).await;
        let _ = std::fs::remove_file(&address_file);
        api.abort();
        if let Some(server) = pinning_service {
            server.abort();
        }
        for server in proxies {
            server.abort();
        }
        if let Some(server) = prometheus {
            server.abort();
        }
        tracing::info!("stopped");
        result
    })
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The chain of causes, without a backtrace even when RUST_BACKTRACE is set.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Service(ServiceArgs { config, command }) => match command {
            ServiceCommand::Init(options) => init(&config, options)?,
            ServiceCommand::State(command) => {
                let runtime = tokio::runtime::Builder::new_current_thread().build()?;
                match command {
                    StateCommand::Export { file: Some(path) } => {
                        let file = std::fs::File::create(&path)
                            .with_context(|| format!("could not create {}", path.display()))?;
                        let mut writer = std::io::BufWriter::new(file);
                        let count = runtime.block_on(state::export(&config, &mut writer))?;
                        eprintln!("exported {count} pins to {}", path.display());
                    }
                    StateCommand::Export { file: None } => {
                        let count = runtime.block_on(state::export(&config, &mut out))?;
                        eprintln!("exported {count} pins");
                    }
                    StateCommand::Import { file } => {
                        let source = if file.as_os_str() == "-" {
                            state::ImportSource::Stream(Box::new(std::io::stdin().lock()))
                        } else {
                            state::ImportSource::File(file)
                        };
                        let imported = runtime.block_on(state::import(&config, source))?;
                        if let Some(compaction) = imported.compaction {
                            eprintln!(
                                "compacted the pinset store from {} to {} bytes on disk in {:.1} s",
                                compaction.before_bytes,
                                compaction.after_bytes,
                                compaction.took.as_secs_f64()
                            );
                        }
                        eprintln!(
                            "imported {} pins; other peers take them when the daemon runs \
                             (under CRDT if they trust this peer; under Raft they start the new \
                             cluster's pinset)",
                            imported.pins
                        );
                    }
                    StateCommand::Cleanup { force } => {
                        if !force && !state::confirm_cleanup(&config)? {
                            anyhow::bail!("nothing done");
                        }
                        match state::cleanup(&config)? {
                            Some(moved) => eprintln!(
                                "moved the pinset store to {}; the peer syncs the pinset again from the other peers when it next starts",
                                moved.display()
                            ),
                            None => eprintln!("{} holds no pinset store: nothing to do", config.display()),
                        }
                    }
                    StateCommand::Crdt(CrdtCommand::Info { json }) => {
                        let info = runtime.block_on(state::crdt_info(&config))?;
                        if json {
                            writeln!(out, "{}", serde_json::to_string_pretty(&info)?)?;
                        } else {
                            writeln!(out, "height: {}", info.height)?;
                            writeln!(out, "heads: {}", info.heads.len())?;
                            for (cid, height) in &info.heads {
                                writeln!(out, "  - {cid} (height {height})")?;
                            }
                            writeln!(
                                out,
                                "blocks: {} stored, {} merged, {} pending",
                                info.blocks, info.processed, info.pending
                            )?;
                            writeln!(out, "keys: {}", info.keys)?;
                            match &info.snapshot {
                                Some(s) => writeln!(
                                    out,
                                    "snapshot: {} (height {}, {} keys, made {})",
                                    s.root,
                                    s.height,
                                    s.keys,
                                    pinfold_core::pin::UnixTime(s.created_ms / 1000)
                                        .to_rfc3339()
                                        .unwrap_or_default()
                                )?,
                                None => writeln!(out, "snapshot: none yet")?,
                            }
                            writeln!(out, "tables:")?;
                            for table in &info.tables {
                                writeln!(
                                    out,
                                    "  - {}: {} entries, {} bytes in {} bytes of pages",
                                    table.table,
                                    table.entries,
                                    table.stored_bytes,
                                    table.page_bytes
                                )?;
                            }
                        }
                    }
                }
            }
            ServiceCommand::Daemon {
                bootstrap,
                no_trust,
                stats,
                leave,
                log_level,
                log_format,
            } => {
                init_logs(&log_level, log_format)?;
                daemon(&config, bootstrap, no_trust, stats, leave)?;
            }
        },
        Command::Follow(args) => follow(args, &mut out)?,
        Command::Ctl(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(pinfold_native::cli::ctl::run(*args, &mut out))?,
        Command::Version => writeln!(out, "pinfold {}", env!("CARGO_PKG_VERSION"))?,
        Command::Topic { cluster_name } => writeln!(out, "{}", crdt_topic(&cluster_name))?,
        Command::Secret(SecretCommand::New { swarm_key }) => {
            let secret = ClusterSecret::generate(&mut rand::rngs::OsRng);
            if swarm_key {
                write!(out, "{}", secret.to_key_file())?;
            } else {
                writeln!(out, "{}", secret.to_hex())?;
            }
        }
        Command::Secret(SecretCommand::Check { secret, file }) => {
            let secret = match (secret, file) {
                (_, Some(path)) => {
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("could not read {}", path.display()))?;
                    ClusterSecret::from_key_file(&bytes)
                        .with_context(|| format!("{} is not a usable swarm key", path.display()))?
                }
                (Some(hex), None) => ClusterSecret::from_hex(&hex)?,
                (None, None) => anyhow::bail!(
                    "no secret given: pass it as an argument, in CLUSTER_SECRET, or with --file swarm.key"
                ),
            };
            writeln!(out, "ok: a valid 32-byte cluster secret")?;
            writeln!(out, "cluster.secret: {}", secret.to_hex())?;
            write!(out, "swarm.key:\n{}", secret.to_key_file())?;
        }
    }
    Ok(())
}
