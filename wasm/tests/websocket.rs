//! The WebSocket transport's addresses, checked under wasm32.
#![cfg(target_arch = "wasm32")]

use libp2p::Multiaddr;
use pinfold_wasm::websocket::websocket_url;
use wasm_bindgen_test::*;

#[cfg(feature = "browser-tests")]
wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn urls_of_websocket_addresses() {
    let cases = [
        ("/ip4/127.0.0.1/tcp/4001/ws", Some("ws://127.0.0.1:4001/")),
        ("/ip6/::1/tcp/4001/ws", Some("ws://[::1]:4001/")),
        (
            "/dns4/relay.example/tcp/443/wss",
            Some("wss://relay.example:443/"),
        ),
        (
            "/dns/relay.example/tcp/443/tls/ws",
            Some("wss://relay.example:443/"),
        ),
        (
            "/ip4/127.0.0.1/tcp/4001/ws/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo",
            Some("ws://127.0.0.1:4001/"),
        ),
        ("/ip4/127.0.0.1/tcp/4001", None),
        ("/ip4/127.0.0.1/udp/4001/webrtc-direct", None),
        ("/ip4/127.0.0.1/tcp/4001/ws/ws", None),
        ("/ip4/127.0.0.1/tcp/4001/ws/p2p-circuit", None),
    ];
    for (addr, url) in cases {
        let addr: Multiaddr = addr.parse().unwrap();
        assert_eq!(websocket_url(&addr).as_deref(), url, "{addr}");
    }
}
