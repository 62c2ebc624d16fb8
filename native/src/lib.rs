//! pinfold's native peer: what the `pinfold` binary runs on, as a library so that tests and
//! benchmarks drive the same code.

pub mod api;
pub mod auth;
pub mod car;
pub mod circuits;
pub mod config;
pub mod ctl;
pub mod follow;
pub mod ipfs;
pub mod metrics;
pub mod peer;
pub mod peerstore;
pub mod pinsvc;
pub mod snapshots;
pub mod state;
pub mod store;
pub mod swarm;
pub mod tls;
