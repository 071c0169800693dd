//! Replays every committed fuzz input on the stable toolchain: the seeds in
//! `fuzz/corpus/<target>/` and the crashes `make fuzz` found, kept in
//! `fuzz/regressions/<target>/`, each through the fuzz target's own code
//! (`fuzz/harness.rs`), so that a fixed crash stays fixed without nightly or cargo-fuzz.
//!
//! A regression input whose bug is not fixed yet is listed in `KNOWN` below with the
//! reason; it is replayed by the ignored test `known_fuzz_findings_are_fixed`
//! (`cargo test -p consent-core --test fuzz_regressions -- --ignored`).
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

#[path = "../../../fuzz/harness.rs"]
mod harness;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Regression inputs of bugs not fixed yet: (target, file name, what goes wrong).
const KNOWN: &[(&str, &str, &str)] = &[];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Every file under `fuzz/<kind>/<target>/`, skipping dotfiles and READMEs.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && !name.eq_ignore_ascii_case("README.md")
        })
        .collect();
    files.sort();
    files
}

fn is_known(target: &str, file: &Path) -> bool {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    KNOWN.iter().any(|(t, f, _)| *t == target && *f == name)
}

/// Runs inputs and returns the ones that panicked, with the message.
fn replay(target: &str, files: &[PathBuf]) -> Vec<String> {
    let mut failures = Vec::new();
    for file in files {
        let data = std::fs::read(file).unwrap();
        let result = catch_unwind(AssertUnwindSafe(|| harness::run(target, &data)));
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_default();
            failures.push(format!("{target}: {}: {message}", file.display()));
        }
    }
    failures
}

#[test]
fn every_seed_and_fixed_regression_runs_clean() {
    let mut ran = 0;
    let mut failures = Vec::new();
    for target in harness::TARGETS {
        let seeds = inputs("corpus", target);
        assert!(
            !seeds.is_empty(),
            "no seeds in {}",
            fuzz_dir().join("corpus").join(target).display()
        );
        let regressions: Vec<PathBuf> = inputs("regressions", target)
            .into_iter()
            .filter(|f| !is_known(target, f))
            .collect();
        ran += seeds.len() + regressions.len();
        failures.extend(replay(target, &seeds));
        failures.extend(replay(target, &regressions));
    }
    println!("replayed {ran} fuzz inputs");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
#[ignore = "replays fuzz findings not fixed yet (KNOWN)"]
fn known_fuzz_findings_are_fixed() {
    let mut failures = Vec::new();
    for (target, file, why) in KNOWN {
        let path = fuzz_dir().join("regressions").join(target).join(file);
        let found = replay(target, &[path]);
        if !found.is_empty() {
            failures.push(format!("{why}: {found:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
