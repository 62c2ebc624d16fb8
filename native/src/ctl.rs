//! `pinfold ctl`: ipfs-cluster-ctl's verbs and flags over a peer's REST API. Text output for
//! people (a progress line while `pin add --wait` waits, on a terminal only), `--enc json`
//! for scripts (one JSON value per result, as the API returns it).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use libp2p::Multiaddr;
use serde_json::Value;

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
    /// Every peer's status of one pin, or of all (`--filter` them).
    Status {
        cid: Option<String>,
        /// Only this peer's view.
        #[arg(long)]
        local: bool,
        /// Statuses to list, comma-separated (pinned, pin_error, queued, error, ...).
        #[arg(long)]
        filter: Option<String>,
    },
    /// Re-queue a pin in error on this peer.
    Recover { cid: String },
    /// Metrics and health.
    #[command(subcommand)]
    Health(HealthCommand),
}

#[derive(Subcommand, Debug)]
pub enum PeersCommand {
    /// Peers with a live ping metric.
    Ls,
}

#[derive(Subcommand, Debug)]
pub enum HealthCommand {
    /// The latest metrics of a name (freespace, ping, tag:group, pinqueue), or without
    /// one the names there are.
    Metrics { name: Option<String> },
    /// Metrics that expired lately: peers that may be down, newest first.
    Alerts,
}

#[derive(Subcommand, Debug)]
pub enum PinCommand {
    /// Pin a CID in the cluster.
    Add {
        cid: String,
        /// Replication factor (min and max).
        #[arg(short = 'r', long, allow_hyphen_values = true)]
        replication: Option<i32>,
        #[arg(long, allow_hyphen_values = true)]
        replication_min: Option<i32>,
        #[arg(long, allow_hyphen_values = true)]
        replication_max: Option<i32>,
        /// A name for the pin.
        #[arg(short = 'n', long)]
        name: Option<String>,
        /// recursive or direct.
        #[arg(long)]
        mode: Option<String>,
        /// Peers to allocate first, comma-separated.
        #[arg(long)]
        allocations: Option<String>,
        /// Metadata `key=value` (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        metadata: Vec<String>,
        /// Multiaddresses of peers that hold the content, comma-separated.
        #[arg(long)]
        origins: Option<String>,
        /// Wait until the pin is pinned on its allocations (at least replication-min).
        #[arg(short = 'w', long)]
        wait: bool,
        /// Give up waiting after this many seconds (0: never).
        #[arg(long, default_value_t = 0)]
        wait_timeout: u64,
    },
    /// Unpin a CID from the cluster.
    Rm { cid: String },
    /// The cluster's pins (or one).
    Ls { cid: Option<String> },
}

/// A client of one peer's API.
struct Api {
    base: String,
    http: reqwest::Client,
    auth: Option<(String, String)>,
}

/// The API's base URL from `--host`.
fn base_url(host: &str) -> Result<String> {
    if host.starts_with("http://") || host.starts_with("https://") {
        return Ok(host.trim_end_matches('/').to_owned());
    }
    let address: Multiaddr = host
        .parse()
        .with_context(|| format!("--host {host:?} is neither a multiaddress nor an http(s) URL"))?;
    let socket = crate::api::socket_addr(&address).map_err(|e| anyhow::anyhow!("--host: {e}"))?;
    Ok(format!("http://{socket}"))
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
        Ok(Self {
            base: base_url(&args.host)?,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(args.timeout.max(1)))
                .build()?,
            auth,
        })
    }

    /// Sends a request and returns the body, or the API's error as a message that says what
    /// to do.
    async fn call(&self, method: reqwest::Method, path: &str) -> Result<String> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() {
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
        let body = response.text().await?;
        if status.is_success() {
            return Ok(body);
        }
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(String::from))
            .unwrap_or(body);
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!("{status}: {message} (check --basic-auth)");
        }
        bail!("{status}: {message}")
    }

    async fn json(&self, method: reqwest::Method, path: &str) -> Result<Value> {
        let body = self.call(method, path).await?;
        serde_json::from_str(&body).with_context(|| format!("{path}: the answer is not JSON"))
    }

    /// A streamed list: one JSON value per line.
    async fn list(&self, path: &str) -> Result<Vec<Value>> {
        let body = self.call(reqwest::Method::GET, path).await?;
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("{path}: a line is not JSON")))
            .collect()
    }
}

fn query(pairs: &[(&str, String)]) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("valid");
    url.query_pairs_mut()
        .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
    match url.query() {
        Some(q) if !q.is_empty() => format!("?{q}"),
        _ => String::new(),
    }
}

fn print_json(out: &mut impl Write, value: &Value) -> Result<()> {
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// ipfs-cluster-ctl's text for a cluster-wide status.
fn print_status(out: &mut impl Write, info: &Value) -> Result<()> {
    let name = info["name"].as_str().unwrap_or_default();
    writeln!(
        out,
        "{}{}:",
        info["cid"].as_str().unwrap_or_default(),
        if name.is_empty() {
            String::new()
        } else {
            format!(" | {name}")
        }
    )?;
    let peers: BTreeMap<String, Value> = info["peer_map"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    for (id, view) in peers {
        let peer_name = view["peername"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or(&id);
        let status = view["status"]
            .as_str()
            .unwrap_or("undefined")
            .to_uppercase();
        let error = view["error"].as_str().unwrap_or_default();
        write!(
            out,
            "    > {peer_name:<16} : {status} | {} | Attempts: {} | Priority: {}",
            view["timestamp"].as_str().unwrap_or_default(),
            view["attempt_count"].as_u64().unwrap_or(0),
            view["priority_pin"].as_bool().unwrap_or(false),
        )?;
        if !error.is_empty() {
            write!(out, " | {error}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn print_pin(out: &mut impl Write, pin: &Value) -> Result<()> {
    let allocations = pin["allocations"]
        .as_array()
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| "everywhere".into());
    writeln!(
        out,
        "{} | {} | PIN | Repl. Factor: {}--{} | Allocations: [{allocations}] | {}",
        pin["cid"].as_str().unwrap_or_default(),
        pin["name"].as_str().unwrap_or_default(),
        pin["replication_factor_min"],
        pin["replication_factor_max"],
        pin["mode"].as_str().unwrap_or("recursive"),
    )?;
    Ok(())
}

/// How many of a status's peers are pinned, and how many must be: its allocations, or
/// every peer for a pin allocated everywhere.
fn pinned_progress(status: &Value, replication_min: i64) -> (usize, usize, Option<String>) {
    let peers = status["peer_map"].as_object().cloned().unwrap_or_default();
    let allocations: Vec<&str> = status["allocations"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let counted: Vec<(&String, &Value)> = peers
        .iter()
        .filter(|(id, _)| allocations.is_empty() || allocations.contains(&id.as_str()))
        .collect();
    let pinned = counted
        .iter()
        .filter(|(_, v)| v["status"] == "pinned")
        .count();
    let error = counted.iter().find_map(|(_, v)| {
        (v["status"] == "pin_error").then(|| v["error"].as_str().unwrap_or_default().to_owned())
    });
    let needed = if replication_min > 0 {
        (replication_min as usize).min(counted.len().max(1))
    } else {
        counted.len().max(1)
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
            let id = api.json(Method::GET, "/id").await?;
            if json {
                return print_json(out, &id);
            }
            writeln!(
                out,
                "{} | {} | Sees {} other peers",
                id["id"].as_str().unwrap_or_default(),
                id["peername"].as_str().unwrap_or_default(),
                id["cluster_peers"]
                    .as_array()
                    .map(|p| p.len().saturating_sub(1))
                    .unwrap_or(0)
            )?;
            writeln!(out, "  > Addresses:")?;
            for address in id["addresses"].as_array().into_iter().flatten() {
                writeln!(out, "    - {}", address.as_str().unwrap_or_default())?;
            }
            let ipfs = &id["ipfs"];
            match ipfs["error"].as_str().filter(|e| !e.is_empty()) {
                Some(error) => writeln!(out, "  > IPFS: ERROR: {error}")?,
                None => writeln!(out, "  > IPFS: {}", ipfs["id"].as_str().unwrap_or_default())?,
            }
        }
        CtlCommand::Version => {
            let version = api.json(Method::GET, "/version").await?;
            if json {
                return print_json(out, &version);
            }
            writeln!(out, "{}", version["version"].as_str().unwrap_or_default())?;
        }
        CtlCommand::Peers(PeersCommand::Ls) => {
            for peer in api.list("/peers").await? {
                if json {
                    print_json(out, &peer)?;
                } else {
                    writeln!(
                        out,
                        "{} | {}",
                        peer["id"].as_str().unwrap_or_default(),
                        peer["peername"].as_str().unwrap_or_default()
                    )?;
                }
            }
        }
        CtlCommand::Status { cid, local, filter } => {
            let mut options = Vec::new();
            if local {
                options.push(("local", "true".to_owned()));
            }
            let statuses = match cid {
                Some(cid) => {
                    if filter.is_some() {
                        bail!("--filter lists statuses of every pin: leave out the CID");
                    }
                    vec![
                        api.json(Method::GET, &format!("/pins/{cid}{}", query(&options)))
                            .await?,
                    ]
                }
                None => {
                    if let Some(filter) = filter {
                        options.push(("filter", filter));
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
        CtlCommand::Recover { cid } => {
            let status = api
                .json(Method::POST, &format!("/pins/{cid}/recover"))
                .await?;
            if json {
                print_json(out, &status)?;
            } else {
                print_status(out, &status)?;
            }
        }
        CtlCommand::Health(HealthCommand::Metrics { name: None }) => {
            let names = api.json(Method::GET, "/monitor/metrics").await?;
            if json {
                return print_json(out, &names);
            }
            for name in names.as_array().into_iter().flatten() {
                writeln!(out, "{}", name.as_str().unwrap_or_default())?;
            }
        }
        CtlCommand::Health(HealthCommand::Metrics { name: Some(name) }) => {
            let metrics = api
                .json(Method::GET, &format!("/monitor/metrics/{name}"))
                .await?;
            if json {
                return print_json(out, &metrics);
            }
            for metric in metrics.as_array().into_iter().flatten() {
                writeln!(
                    out,
                    "{} | {} | {} | expires {}",
                    metric["peer"].as_str().unwrap_or_default(),
                    metric["name"].as_str().unwrap_or_default(),
                    metric["value"].as_str().unwrap_or_default(),
                    metric["expire"]
                )?;
            }
        }
        CtlCommand::Health(HealthCommand::Alerts) => {
            let alerts = api.json(Method::GET, "/health/alerts").await?;
            if json {
                return print_json(out, &alerts);
            }
            for alert in alerts.as_array().into_iter().flatten() {
                writeln!(
                    out,
                    "{} | {} | expired, alert at {}",
                    alert["peer"].as_str().unwrap_or_default(),
                    alert["name"].as_str().unwrap_or_default(),
                    alert["triggered_at"].as_str().unwrap_or_default()
                )?;
            }
        }
        CtlCommand::Pin(PinCommand::Ls { cid }) => {
            let pins = match cid {
                Some(cid) => vec![
                    api.json(Method::GET, &format!("/allocations/{cid}"))
                        .await?,
                ],
                None => api.list("/allocations").await?,
            };
            for pin in &pins {
                if json {
                    print_json(out, pin)?;
                } else {
                    print_pin(out, pin)?;
                }
            }
        }
        CtlCommand::Pin(PinCommand::Rm { cid }) => {
            let pin = api.json(Method::DELETE, &format!("/pins/{cid}")).await?;
            if json {
                print_json(out, &pin)?;
            } else {
                writeln!(
                    out,
                    "{} unpinned from the cluster",
                    pin["cid"].as_str().unwrap_or(&cid)
                )?;
            }
        }
        CtlCommand::Pin(PinCommand::Add {
            cid,
            replication,
            replication_min,
            replication_max,
            name,
            mode,
            allocations,
            metadata,
            origins,
            wait,
            wait_timeout,
        }) => {
            let mut options = Vec::new();
            if let Some(r) = replication {
                options.push(("replication", r.to_string()));
            }
            if let Some(r) = replication_min {
                options.push(("replication-min", r.to_string()));
            }
            if let Some(r) = replication_max {
                options.push(("replication-max", r.to_string()));
            }
            for (key, value) in [
                ("name", name),
                ("mode", mode),
                ("user-allocations", allocations),
                ("origins", origins),
            ] {
                if let Some(value) = value {
                    options.push((key, value));
                }
            }
            let mut meta = Vec::new();
            for entry in &metadata {
                let Some((key, value)) = entry.split_once('=') else {
                    bail!("--metadata {entry:?}: write it as key=value");
                };
                meta.push((format!("meta-{key}"), value.to_owned()));
            }
            let mut pairs: Vec<(&str, String)> = options;
            pairs.extend(meta.iter().map(|(k, v)| (k.as_str(), v.clone())));
            let pin = api
                .json(Method::POST, &format!("/pins/{cid}{}", query(&pairs)))
                .await?;
            let cid = pin["cid"].as_str().unwrap_or(&cid).to_owned();
            if !wait {
                if json {
                    return print_json(out, &pin);
                }
                return print_pin(out, &pin);
            }
            let status = wait_pinned(
                &api,
                &cid,
                pin["replication_factor_min"].as_i64().unwrap_or(-1),
                wait_timeout,
            )
            .await?;
            if json {
                print_json(out, &status)?;
            } else {
                print_status(out, &status)?;
            }
        }
    }
    Ok(())
}

/// Polls the pin's cluster-wide status until enough allocated peers report it pinned;
/// shows a progress line on a terminal.
async fn wait_pinned(
    api: &Api,
    cid: &str,
    replication_min: i64,
    timeout_secs: u64,
) -> Result<Value> {
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let mut last_error: Option<String> = None;
    loop {
        let status = api
            .json(reqwest::Method::GET, &format!("/pins/{cid}"))
            .await?;
        let (pinned, needed, error) = pinned_progress(&status, replication_min);
        if terminal {
            eprint!(
                "\r\x1b[2Kwaiting for {cid}: pinned on {pinned}/{needed} peers ({}s)",
                started.elapsed().as_secs()
            );
        }
        if pinned >= needed {
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
                "a peer failed to pin {cid} (retried): {}",
                error.clone().unwrap_or_default()
            );
            last_error = error;
        }
        if timeout_secs > 0 && started.elapsed() >= Duration::from_secs(timeout_secs) {
            if terminal {
                eprintln!();
            }
            bail!(
                "{cid} is pinned on {pinned} of {needed} peers after {timeout_secs}s; `pinfold ctl status {cid}` shows where it stands"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
