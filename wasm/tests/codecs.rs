//! The bindings run under wasm32 (in Node through wasm-bindgen-test-runner) and give the
//! same answers as natively: the golden vectors of the core, checked again in wasm.

use pinfold_wasm::*;
use wasm_bindgen_test::*;

#[cfg(feature = "browser-tests")]
wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn topic_of_the_default_cluster() {
    assert_eq!(cluster_topic(None), "fzhnp2UwTBkgNabrJi1VanzwgN");
    assert_ne!(cluster_topic(Some("other".into())), cluster_topic(None));
}

#[wasm_bindgen_test]
fn secrets_are_normalised_from_either_form() {
    let hex = "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef";
    let lower = hex.to_lowercase();
    assert_eq!(normalize_cluster_secret(hex).ok().unwrap(), lower);
    let file = format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex}\n");
    assert_eq!(normalize_cluster_secret(&file).ok().unwrap(), lower);
    assert!(normalize_cluster_secret("abcd").is_err());
}

#[wasm_bindgen_test]
fn golden_pin_value_decodes_to_cluster_json() {
    // The golden state value of pinfold-core's pin_pb tests.
    let value = [
        "0a221220c3c4733ec8affd06cf9e9ff50ffc6bcd2ec85a6170004bb709669c31de94391a",
        "10011a26002408011220",
        "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
        "20013220080410061a04646f63734080f2d6ca0652060a016112013152060a0162120132",
        "38808bd2bb06",
    ]
    .concat();
    let bytes: Vec<u8> = (0..value.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&value[i..i + 2], 16).unwrap())
        .collect();
    let json = pin_json_from_state_value(&bytes).ok().unwrap();
    assert!(json.contains(r#""cid":"QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR""#));
    assert!(json.contains(r#""timestamp":"2025-01-01T00:00:00Z""#));
    assert!(pin_json_from_state_value(&[0xff]).is_err());
}

#[wasm_bindgen_test]
fn metrics_without_a_name_are_rejected() {
    assert!(metric_json_from_msgpack(&[0x80]).is_err());
}
