//! The `pinfold` command.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use pinfold_core::codec::pubsub::{crdt_topic, DEFAULT_CLUSTER_NAME};
use pinfold_core::codec::secret::ClusterSecret;

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

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    match cli.command {
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
