//! pinfold's native peer: what the `pinfold` binary runs on, as a library so that tests and
//! benchmarks drive the same code.
//!
//! - [`peer`]: the driver of core's node: the swarm, the IPFS connector's tasks, the
//!   peerstore, snapshot files and the Prometheus counters it feeds;
//! - [`api`]: the HTTP APIs the peer serves (REST, Pinning Services), their authentication
//!   and TLS;
//! - [`cli`]: the subcommands that are clients (`ctl`, `follow`) or work on a stopped peer
//!   (`service state`);
//! - [`ipfs`]: the Kubo RPC client; [`store`]: the durable pinset (redb); [`config`]:
//!   `service.json`; [`endpoint`]: multiaddresses as TCP endpoints; [`car`]: CAR files for `add --format car`; [`metrics`]: the Prometheus
//!   endpoint.

pub mod api;
pub mod car;
pub mod cli;
pub mod config;
pub mod endpoint;
pub mod ipfs;
pub mod metrics;
pub mod peer;
pub mod raft_store;
pub mod store;
