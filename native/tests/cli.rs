//! The `pinfold` binary as a user runs it.

use assert_cmd::Command;
use predicates::prelude::*;

fn pinfold() -> Command {
    let mut cmd = Command::cargo_bin("pinfold").unwrap();
    cmd.env_remove("CLUSTER_SECRET");
    cmd
}

/// `pinfold service --config <dir>`, to which the test adds the subcommand.
fn service(dir: &std::path::Path) -> Command {
    let mut cmd = pinfold();
    cmd.args(["service", "--config"]).arg(dir);
    cmd
}

/// `pinfold service --config <dir> init --peername p`, which must succeed.
fn init_peer(dir: &std::path::Path) {
    service(dir)
        .args(["init", "--peername", "p"])
        .assert()
        .success();
}

#[test]
fn prints_version_and_help() {
    pinfold()
        .arg("--version")
        .assert()
        .success()
        .stdout(format!("pinfold {}\n", env!("CARGO_PKG_VERSION")));
    pinfold()
        .arg("version")
        .assert()
        .success()
        .stdout(format!("pinfold {}\n", env!("CARGO_PKG_VERSION")));
    pinfold().arg("--help").assert().success().stdout(
        predicate::str::contains("Usage: pinfold <COMMAND>")
            .and(predicate::str::contains("secret")),
    );
}

#[test]
fn topic_of_the_default_cluster() {
    pinfold()
        .arg("topic")
        .assert()
        .success()
        .stdout("fzhnp2UwTBkgNabrJi1VanzwgN\n");
}

#[test]
fn new_secret_checks_out_in_both_forms() {
    let out = pinfold().args(["secret", "new"]).output().unwrap();
    assert!(out.status.success());
    let hex = String::from_utf8(out.stdout).unwrap();
    assert_eq!(hex.trim().len(), 64);
    pinfold()
        .args(["secret", "check", hex.trim()])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "cluster.secret: {}",
            hex.trim()
        )));

    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("swarm.key");
    let out = pinfold()
        .args(["secret", "new", "--swarm-key"])
        .output()
        .unwrap();
    std::fs::write(&key_file, &out.stdout).unwrap();
    pinfold()
        .args(["secret", "check", "--file"])
        .arg(&key_file)
        .assert()
        .success()
        .stdout(predicate::str::starts_with(
            "ok: a valid 32-byte cluster secret",
        ));
}

#[test]
fn bad_secrets_are_explained() {
    pinfold()
        .args(["secret", "check", "abcd"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "must be 32 bytes (64 hexadecimal characters)",
        ));
    pinfold()
        .args(["secret", "check"])
        .env("CLUSTER_SECRET", "zz".repeat(32))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "invalid character 'z' at position 0",
        ));
    pinfold()
        .args(["secret", "check"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no secret given"));
}

#[test]
fn state_export_and_import_move_pins_between_stopped_peers() {
    let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [&from, &to] {
        init_peer(dir.path());
    }
    // Pins in ipfs-cluster's JSON, as `ipfs-cluster-service state export` writes them.
    let pins = concat!(
        r#"{"cid":"bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi","name":"one","replication_factor_min":2,"replication_factor_max":3,"allocations":[],"metadata":{"team":"ops"}}"#,
        "\n\n",
        r#"{"cid":"QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR","name":"two"}"#,
        "\n"
    );
    service(from.path())
        .args(["state", "import"])
        .write_stdin(pins)
        .assert()
        .success()
        .stderr(predicate::str::contains("imported 2 pins"));
    let export = service(from.path())
        .args(["state", "export"])
        .output()
        .unwrap();
    assert!(export.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(export.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let one = lines.iter().find(|p| p["name"] == "one").unwrap();
    assert_eq!(one["replication_factor_min"], 2);
    assert_eq!(one["metadata"]["team"], "ops");

    // The import is one delta: one head at height 1, one block, two keys.
    let info = service(from.path())
        .args(["state", "crdt", "info", "--json"])
        .output()
        .unwrap();
    assert!(info.status.success(), "{info:?}");
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["height"], 1, "{info}");
    assert_eq!(info["heads"].as_array().unwrap().len(), 1, "{info}");
    assert_eq!(info["blocks"], 1, "{info}");
    assert_eq!(info["keys"], 2, "{info}");
    assert_eq!(info["pending"], 0, "{info}");
    assert!(info["snapshot"].is_null(), "{info}");
    let keys_table = info["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "keys")
        .unwrap_or_else(|| panic!("no keys table in {info}"));
    assert_eq!(keys_table["entries"], 2, "{info}");
    assert!(
        keys_table["page_bytes"].as_u64() >= keys_table["stored_bytes"].as_u64(),
        "{info}"
    );
    service(from.path())
        .args(["state", "crdt", "info"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("height: 1")
                .and(predicate::str::contains("heads: 1"))
                .and(predicate::str::contains("snapshot: none yet"))
                .and(predicate::str::contains("  - keys: 2 entries, ")),
        );

    // The export imports into another peer unchanged.
    let file = from.path().join("export.ndjson");
    service(from.path())
        .args(["state", "export", "--file"])
        .arg(&file)
        .assert()
        .success()
        .stderr(predicate::str::contains("exported 2 pins"));
    service(to.path())
        .args(["state", "import"])
        .arg(&file)
        .assert()
        .success();
    let again = service(to.path())
        .args(["state", "export"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(again.stdout).unwrap().lines().count(), 2);

    // A bad line names itself and writes nothing.
    service(to.path())
        .args(["state", "import"])
        .write_stdin(
            "{\"cid\":\"bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi\"}\nnot json\n",
        )
        .assert()
        .failure()
        .stderr(predicate::str::contains("line 2 is not a pin"));
    // So does one in a file, which is read twice: checked, then imported.
    let bad = to.path().join("bad.ndjson");
    std::fs::write(
        &bad,
        "{\"cid\":\"bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e\"}\n\n{\"cid\": 7}\n",
    )
    .unwrap();
    service(to.path())
        .args(["state", "import"])
        .arg(&bad)
        .assert()
        .failure()
        .stderr(predicate::str::contains("line 3 is not a pin"));
    let after = service(to.path())
        .args(["state", "export"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(after.stdout).unwrap().lines().count(), 2);
}

#[test]
fn a_dashboard_folder_without_a_build_is_refused_with_what_to_do() {
    let (dir, empty) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    init_peer(dir.path());
    service(dir.path())
        .arg("daemon")
        .env("CLUSTER_RESTAPI_DASHBOARDDIR", empty.path())
        .timeout(std::time::Duration::from_secs(30))
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("api.restapi.dashboard_dir")
                .and(predicate::str::contains("holds no index.html"))
                .and(predicate::str::contains("scripts/build-web")),
        );
}

/// `init` as Go's `ipfs-cluster-service init` takes it: free ports, starting peers in the
/// peerstore and trusted, the datastore named for Go followers, Raft's initial peers.
#[test]
fn init_takes_go_s_options() {
    let dir = tempfile::tempdir().unwrap();
    let peer = "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK";
    let start = format!("/ip4/127.0.0.1/tcp/9096/p2p/{peer}");
    service(dir.path())
        .args(["init", "--randomports", "--datastore", "badger3", "--peers"])
        .arg(&start)
        .assert()
        .success()
        .stdout(predicate::str::contains("with 1 entries"));
    let text = std::fs::read_to_string(dir.path().join("service.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut ports = Vec::new();
    let listen = config["cluster"]["listen_multiaddress"].as_array().unwrap();
    for address in listen
        .iter()
        .chain([&config["api"]["restapi"]["http_listen_multiaddress"]])
        .chain([&config["api"]["pinsvcapi"]["http_listen_multiaddress"]])
        .chain(
            config["api"]["ipfsproxy"]["listen_multiaddress"]
                .as_array()
                .unwrap(),
        )
    {
        let address = address.as_str().unwrap();
        let port: u16 = address.split('/').nth(4).unwrap().parse().unwrap();
        assert!(![9094, 9095, 9096, 9097, 9098].contains(&port), "{address}");
        ports.push(port);
    }
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(
        ports.len(),
        listen.len() + 3,
        "no two addresses share a port"
    );
    assert_eq!(config["datastore"], serde_json::json!({ "badger3": {} }));
    assert_eq!(
        config["consensus"]["crdt"]["trusted_peers"],
        serde_json::json!([peer])
    );
    let peerstore = std::fs::read_to_string(dir.path().join("peerstore")).unwrap();
    assert_eq!(peerstore.trim(), start);

    service(dir.path())
        .args(["init", "--force", "--consensus", "raft", "--peers"])
        .arg(&start)
        .assert()
        .success();
    let text = std::fs::read_to_string(dir.path().join("service.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    let raft = &config["consensus"]["raft"];
    assert_eq!(raft["init_peerset"], serde_json::json!([peer]));
    assert_eq!(raft["network_timeout"], "10s");
    assert_eq!(raft["snapshot_threshold"], 8192);
    service(dir.path())
        .args(["init", "--force", "--peers", "/ip4/127.0.0.1/tcp/9096"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("has no /p2p/<peer id>"));
}
