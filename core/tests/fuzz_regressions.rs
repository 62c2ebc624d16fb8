//! Replays every input kept under `core/fuzz/regressions/<target>/` (seeds and past
//! findings of the cargo-fuzz targets) through the same entry points the fuzzers call.

use std::path::Path;

use pinfold_core::fuzzing::TARGETS;

#[test]
fn regression_inputs_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut replayed = 0;
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("regression folder {} is missing: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&input));
            assert!(outcome.is_ok(), "{name}: {} panics", path.display());
            replayed += 1;
        }
    }
    assert!(
        replayed >= TARGETS.len(),
        "expected seed inputs for every target, found {replayed}"
    );
}
