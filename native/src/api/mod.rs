//! The HTTP APIs a peer serves: ipfs-cluster's REST API ([`rest`]), the IPFS Pinning
//! Services API ([`pinsvc`]), the credentials both check ([`auth`]) and TLS ([`tls`]).

pub mod add;
pub mod auth;
pub mod pinsvc;
pub mod rest;
pub mod tls;
