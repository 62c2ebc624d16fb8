//! `pinfold follow`: ipfs-cluster-follow's model. Each followed cluster has a folder under
//! the follow directory (`~/.pinfold-follow/<name>/` by default) holding the follower's
//! identity, where its configuration comes from (`follow.json`), the last configuration
//! fetched (`template.json`), its pinset and, while it runs, the address of its REST API
//! (`api-address`, on loopback).
//!
//! The configuration is a template a trusted peer serves (`GET /follow/template.json`,
//! with `api.restapi.serve_follow_template` on) or any web server: a pinfold
//! `service.json`, run as a follower (see [`ServiceConfig::for_follower`]). A source that
//! is not an http(s) URL is a DNSLink name, read through an IPFS gateway as
//! ipfs-cluster-follow does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{generate_identity, load_identity, ServiceConfig, IDENTITY_FILE};

/// Where a followed cluster's configuration comes from.
pub const SOURCE_FILE: &str = "follow.json";
/// The configuration last fetched, used when the source cannot be reached.
pub const TEMPLATE_FILE: &str = "template.json";
/// The running peer's REST API address (written by the daemon of any peer).
pub const API_ADDRESS_FILE: &str = "api-address";
/// The gateway DNSLink names are read through when none is given.
pub const DEFAULT_GATEWAY: &str = "http://127.0.0.1:8080";
/// Longest wait for a configuration template.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize)]
struct Source {
    source: String,
}

/// `~/.pinfold-follow`.
pub fn default_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".pinfold-follow")
}

/// The URL of a source: an http(s) URL as it is, a DNSLink name through `gateway`.
pub fn source_url(source: &str, gateway: Option<&str>) -> String {
    if source.starts_with("http://") || source.starts_with("https://") {
        return source.to_owned();
    }
    let gateway = gateway.unwrap_or(DEFAULT_GATEWAY).trim_end_matches('/');
    format!("{gateway}/ipns/{}", source.trim_start_matches("/ipns/"))
}

/// A followed cluster's folder, checking that the name makes a folder name.
pub fn folder(dir: &Path, name: &str) -> Result<PathBuf> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if !valid {
        bail!("{name:?} is not a usable cluster name: use letters, digits, '-', '_' and '.'");
    }
    Ok(dir.join(name))
}

/// Stores where `name`'s configuration comes from and gives the follower an identity.
pub fn init(dir: &Path, name: &str, source: &str, gateway: Option<&str>) -> Result<PathBuf> {
    let folder = folder(dir, name)?;
    if folder.join(SOURCE_FILE).exists() {
        bail!(
            "{name} is already followed (from {}): remove {} to start over",
            read_source(&folder)?,
            folder.display()
        );
    }
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("could not create {}", folder.display()))?;
    let url = source_url(source, gateway);
    let text = serde_json::to_string_pretty(&Source { source: url }).expect("serializes");
    std::fs::write(folder.join(SOURCE_FILE), text)?;
    if !folder.join(IDENTITY_FILE).exists() {
        generate_identity(&folder.join(IDENTITY_FILE))?;
    }
    Ok(folder)
}

fn read_source(folder: &Path) -> Result<String> {
    let path = folder.join(SOURCE_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("could not read {}", path.display()))?;
    let source: Source = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a follow source file", path.display()))?;
    Ok(source.source)
}

/// The configuration a follower of the cluster in `folder` runs with: the template
/// fetched from its source (kept for next time), or the one kept from last time when the
/// source cannot be reached.
pub async fn configuration(folder: &Path, peername: &str) -> Result<ServiceConfig> {
    let name = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !folder.join(SOURCE_FILE).exists() {
        bail!(
            "{name} is not followed yet: run `pinfold follow {name} init <url>` (or `run --init <url>`)"
        );
    }
    let url = read_source(folder)?;
    let kept = folder.join(TEMPLATE_FILE);
    let template = match fetch(&url).await {
        Ok(template) => {
            template.save(&kept)?;
            template
        }
        Err(error) if kept.exists() => {
            tracing::warn!(%url, error = %format!("{error:#}"), "could not fetch the cluster's configuration; running with the one fetched last time");
            ServiceConfig::load(&kept)?
        }
        Err(error) => return Err(error),
    };
    let mut config = template.for_follower();
    config.cluster.peername = peername.to_owned();
    Ok(config)
}

async fn fetch(url: &str) -> Result<ServiceConfig> {
    let client = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build()?;
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("could not fetch the cluster's configuration from {url}"))?;
    let status = response.status();
    if !status.is_success() && url.contains("/ipns/") {
        bail!("{url} answered {status}: the gateway could not resolve or fetch that name (a DNSLink name needs a TXT record `dnslink=/ipfs/<CID of the template>` at _dnslink.<name>)");
    }
    if !status.is_success() {
        bail!("{url} answered {status}: is it the cluster's follow template? (ask the cluster's operators for its URL)");
    }
    let text = response.text().await?;
    let (config, ignored) = ServiceConfig::from_json(&text)
        .with_context(|| format!("{url} is not a service.json template"))?;
    crate::config::warn_ignored(url, &ignored);
    config
        .validate()
        .with_context(|| format!("the configuration from {url} cannot be run"))?;
    Ok(config)
}

/// The base URL of the REST API of the peer running in `folder`, if one answers.
pub async fn running_api(folder: &Path) -> Option<String> {
    let address = std::fs::read_to_string(folder.join(API_ADDRESS_FILE)).ok()?;
    let base = format!("http://{}", address.trim());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let answer = client.get(format!("{base}/version")).send().await.ok()?;
    answer.status().is_success().then_some(base)
}

/// A followed cluster, for the list of them.
pub struct Followed {
    pub name: String,
    pub source: String,
    /// Its running follower's REST API.
    pub api: Option<String>,
}

/// The clusters followed under `dir`, by name.
pub async fn followed(dir: &Path) -> Result<Vec<Followed>> {
    let mut all = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(all),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", dir.display())),
    };
    for entry in entries {
        let folder = entry?.path();
        if !folder.join(SOURCE_FILE).exists() {
            continue;
        }
        all.push(Followed {
            name: folder
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            source: read_source(&folder)?,
            api: running_api(&folder).await,
        });
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

async fn get_json(base: &str, route: &str) -> Result<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let response = client.get(format!("{base}{route}")).send().await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("{route}: {status}: {text}");
    }
    Ok(text)
}

fn not_running(name: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "the follower of {name} is not running: start it with `pinfold follow {name} run`"
    )
}

/// `follow NAME list`: the cluster's pins with this follower's status of each.
pub async fn list(dir: &Path, name: &str, out: &mut impl std::io::Write) -> Result<()> {
    let folder = folder(dir, name)?;
    let api = running_api(&folder)
        .await
        .ok_or_else(|| not_running(name))?;
    let body = get_json(&api, "/pins?local=true").await?;
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let info: Value = serde_json::from_str(line)?;
        let status = info["peer_map"]
            .as_object()
            .and_then(|m| m.values().next())
            .and_then(|v| v["status"].as_str())
            .unwrap_or("undefined")
            .to_uppercase();
        writeln!(
            out,
            "{} | {} | {status}",
            info["cid"].as_str().unwrap_or_default(),
            info["name"].as_str().unwrap_or_default()
        )?;
    }
    Ok(())
}

/// `follow NAME info`: where the follower stands.
pub async fn info(dir: &Path, name: &str, out: &mut impl std::io::Write) -> Result<()> {
    let folder = folder(dir, name)?;
    if !folder.join(SOURCE_FILE).exists() {
        bail!("{name} is not followed: run `pinfold follow {name} init <url>`");
    }
    let peer = load_identity(&folder.join(IDENTITY_FILE))?
        .public()
        .to_peer_id();
    writeln!(out, "{name}:")?;
    writeln!(out, "  folder: {}", folder.display())?;
    writeln!(out, "  configuration from: {}", read_source(&folder)?)?;
    writeln!(out, "  peer id: {peer}")?;
    let Some(api) = running_api(&folder).await else {
        writeln!(
            out,
            "  running: no (start it with `pinfold follow {name} run`)"
        )?;
        return Ok(());
    };
    writeln!(out, "  running: yes, REST API at {api}")?;
    let peers = get_json(&api, "/peers").await?;
    writeln!(
        out,
        "  cluster peers seen: {}",
        peers.lines().filter(|l| !l.trim().is_empty()).count()
    )?;
    let crdt: Value = serde_json::from_str(&get_json(&api, "/state/crdt").await?)?;
    writeln!(
        out,
        "  pinset: height {}, {} heads, {}",
        crdt["height"],
        crdt["heads"].as_array().map(Vec::len).unwrap_or(0),
        if crdt["synced"] == true {
            "synced".to_owned()
        } else {
            format!("syncing ({} blocks to fetch)", crdt["pending"])
        }
    )?;
    let pins = get_json(&api, "/allocations").await?;
    writeln!(
        out,
        "  pins: {}",
        pins.lines().filter(|l| !l.trim().is_empty()).count()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_urls_or_dnslink_names() {
        assert_eq!(
            source_url("http://10.0.0.1:9094/follow/template.json", None),
            "http://10.0.0.1:9094/follow/template.json"
        );
        assert_eq!(
            source_url("cluster.example.org", None),
            "http://127.0.0.1:8080/ipns/cluster.example.org"
        );
        assert_eq!(
            source_url("/ipns/cluster.example.org", Some("http://gw:8081/")),
            "http://gw:8081/ipns/cluster.example.org"
        );
    }

    #[test]
    fn names_must_make_folder_names() {
        let dir = Path::new("/f");
        assert_eq!(
            folder(dir, "my-cluster").unwrap(),
            Path::new("/f/my-cluster")
        );
        for bad in ["", "..", ".hidden", "a/b", "sp ace"] {
            assert!(folder(dir, bad).is_err(), "{bad:?}");
        }
    }
}
