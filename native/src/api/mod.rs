//! The HTTP APIs a peer serves: ipfs-cluster's REST API ([`rest`]) with its adders
//! ([`add`], `sharded_add`), the IPFS Pinning Services API ([`pinsvc`]), the credentials
//! both check ([`auth`]) and TLS ([`tls`]), and the IPFS proxy API ([`ipfsproxy`]).

pub mod add;
pub mod auth;
mod block_fanout;
pub mod ipfsproxy;
pub mod pinsvc;
pub mod rest;
mod sharded_add;
pub mod tls;
