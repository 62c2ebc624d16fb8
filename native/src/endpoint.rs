//! Multiaddresses as the endpoints the peer listens on and dials over plain TCP: its HTTP
//! APIs, its Prometheus endpoint, its IPFS daemon's RPC API.

use std::net::{IpAddr, SocketAddr};

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;

/// Why a multiaddress is not a TCP endpoint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{address}: {protocol} is not supported here")]
    Unsupported { address: String, protocol: String },
    #[error("{address} does not name {wanted} and a TCP port")]
    Incomplete {
        address: String,
        wanted: &'static str,
    },
}

impl EndpointError {
    fn unsupported(address: &Multiaddr, protocol: &Protocol<'_>) -> Self {
        Self::Unsupported {
            address: address.to_string(),
            protocol: protocol.to_string(),
        }
    }
}

/// The socket address of an `/ip4|ip6/.../tcp/N` multiaddress.
pub fn socket_addr(address: &Multiaddr) -> Result<SocketAddr, EndpointError> {
    let (mut ip, mut port) = (None, None);
    for protocol in address.iter() {
        match protocol {
            Protocol::Ip4(a) => ip = Some(IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(IpAddr::V6(a)),
            Protocol::Tcp(p) => port = Some(p),
            other => return Err(EndpointError::unsupported(address, &other)),
        }
    }
    match (ip, port) {
        (Some(ip), Some(port)) => Ok(SocketAddr::new(ip, port)),
        _ => Err(EndpointError::Incomplete {
            address: address.to_string(),
            wanted: "an IP address",
        }),
    }
}

/// `http://host:port` from a `/ip4|ip6|dns*/.../tcp/port[/http]` multiaddress.
pub fn http_url(address: &Multiaddr) -> Result<String, EndpointError> {
    let (mut host, mut port) = (None, None);
    for protocol in address.iter() {
        match protocol {
            Protocol::Ip4(ip) => host = Some(ip.to_string()),
            Protocol::Ip6(ip) => host = Some(format!("[{ip}]")),
            Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name) => {
                host = Some(name.to_string())
            }
            Protocol::Tcp(p) => port = Some(p),
            Protocol::Http => {}
            other => return Err(EndpointError::unsupported(address, &other)),
        }
    }
    match (host, port) {
        (Some(host), Some(port)) => Ok(format!("http://{host}:{port}")),
        _ => Err(EndpointError::Incomplete {
            address: address.to_string(),
            wanted: "a host",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_come_from_multiaddresses() {
        let parse = |a: &str| a.parse::<Multiaddr>().unwrap();
        assert_eq!(
            socket_addr(&parse("/ip4/127.0.0.1/tcp/9094")),
            Ok("127.0.0.1:9094".parse().unwrap())
        );
        assert_eq!(
            http_url(&parse("/ip6/::1/tcp/5001")).unwrap(),
            "http://[::1]:5001"
        );
        assert_eq!(
            http_url(&parse("/dns4/ipfs/tcp/5001/http")).unwrap(),
            "http://ipfs:5001"
        );
        assert!(matches!(
            http_url(&parse("/ip4/127.0.0.1/udp/5001")),
            Err(EndpointError::Unsupported { protocol, .. }) if protocol == "/udp/5001"
        ));
        assert!(matches!(
            socket_addr(&parse("/dns4/ipfs/tcp/5001")),
            Err(EndpointError::Unsupported { .. })
        ));
        assert_eq!(
            socket_addr(&parse("/ip4/127.0.0.1"))
                .unwrap_err()
                .to_string(),
            "/ip4/127.0.0.1 does not name an IP address and a TCP port"
        );
    }
}
