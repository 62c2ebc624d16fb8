//! The `pinfold` binary as a user runs it.

use assert_cmd::Command;
use predicates::prelude::*;

fn pinfold() -> Command {
    let mut cmd = Command::cargo_bin("pinfold").unwrap();
    cmd.env_remove("CLUSTER_SECRET");
    cmd
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
