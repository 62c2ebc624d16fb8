//! The HTTP APIs a peer serves: ipfs-cluster's REST API ([`rest`]), the IPFS Pinning
//! Services API ([`pinsvc`]), the credentials both check ([`auth`]) and TLS ([`tls`]), and
//! the IPFS proxy API ([`ipfsproxy`]).

pub mod add;
pub mod auth;
pub mod ipfsproxy;
pub mod pinsvc;
pub mod rest;
pub mod tls;
