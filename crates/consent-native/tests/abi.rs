//! The hand-written bindings against the Envoy binary they are for: every callback declared
//! in `src/abi.rs` is a symbol Envoy exports (`nm -D --defined-only`), and every hook this
//! crate exports is a name Envoy looks up (`strings`: Envoy resolves hooks with `dlsym` by
//! name). When the module is built (`target/release/libconsent_native.so`), its own dynamic
//! symbols are checked too: what it exports, and every Envoy symbol it needs.
//!
//! This checks names only; the signatures are checked by running the module in real Envoy
//! (the end-to-end suite with `CONSENT_FILTER_BUILD=native`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn repo_root() -> PathBuf {
    crate_dir().join("../..")
}

/// The Envoy executable itself: `$ENVOY_BIN`, else the project venv's; the venv's `envoy`
/// is a Python launcher, so the binary it runs (`envoy/_bin/envoy` in the venv's
/// site-packages) is used instead.
fn envoy_binary() -> PathBuf {
    let launcher = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/envoy"));
    let head = std::fs::read(&launcher).unwrap_or_else(|e| {
        panic!(
            "Envoy not found at {} ({e}) — run `make envoy`",
            launcher.display()
        )
    });
    if !head.starts_with(b"#!") {
        return launcher;
    }
    let venv = launcher.parent().and_then(Path::parent).unwrap();
    let lib = venv.join("lib");
    for entry in std::fs::read_dir(&lib).unwrap() {
        let candidate = entry.unwrap().path().join("site-packages/envoy/_bin/envoy");
        if candidate.exists() {
            return candidate;
        }
    }
    panic!("no envoy/_bin/envoy under {}", lib.display());
}

fn run(program: &str, args: &[&str], file: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (binutils): {e}"));
    assert!(out.status.success(), "{program} {} failed", file.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names of `nm -D` output lines (the last field), filtered by `keep`.
fn nm_names(text: &str, keep: impl Fn(&str) -> bool) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|n| keep(n))
        .map(str::to_string)
        .collect()
}

/// Identifiers starting with `prefix` that follow `marker` in a source file.
fn declared(source: &str, marker: &str, prefix: &str) -> BTreeSet<String> {
    source
        .split(marker)
        .skip(1)
        .filter_map(|rest| {
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            name.starts_with(prefix).then_some(name)
        })
        .collect()
}

fn source(file: &str) -> String {
    std::fs::read_to_string(crate_dir().join("src").join(file)).unwrap()
}

#[test]
fn every_declared_callback_is_exported_by_envoy() {
    let envoy = envoy_binary();
    let exported = nm_names(&run("nm", &["-D", "--defined-only"], &envoy), |n| {
        n.starts_with("envoy_dynamic_module_callback_")
    });
    assert!(
        exported.len() > 100,
        "{} exports only {} callbacks: not an Envoy with dynamic modules?",
        envoy.display(),
        exported.len()
    );
    let declared = declared(
        &source("abi.rs"),
        "pub fn ",
        "envoy_dynamic_module_callback_",
    );
    assert!(declared.len() >= 20, "{declared:?}");
    let missing: Vec<_> = declared.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "not exported by {}: {missing:?}",
        envoy.display()
    );
    // The list the module keeps for itself is exactly what it declares.
    let listed: BTreeSet<String> = consent_native::abi::CALLBACKS
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(listed, declared);
}

#[test]
fn every_exported_hook_is_one_envoy_looks_up() {
    let envoy = envoy_binary();
    let names: BTreeSet<String> = run("strings", &["-n", "20"], &envoy)
        .lines()
        .filter(|l| l.starts_with("envoy_dynamic_module_on_") && !l.contains(' '))
        .map(str::to_string)
        .collect();
    assert!(names.contains("envoy_dynamic_module_on_program_init"));
    let hooks = declared(
        &source("hooks.rs"),
        "extern \"C\" fn ",
        "envoy_dynamic_module_on_",
    );
    assert!(hooks.len() >= 15, "{hooks:?}");
    let unknown: Vec<_> = hooks.difference(&names).collect();
    assert!(
        unknown.is_empty(),
        "Envoy never looks these up: {unknown:?}"
    );
    // Every HTTP filter hook Envoy knows of is exported (it refuses a module missing one it
    // requires; the optional ones are exported too, as no-ops).
    let http: BTreeSet<_> = names
        .iter()
        .filter(|n| {
            n.starts_with("envoy_dynamic_module_on_http_filter_")
                && !n.contains("per_route")
                && !n.contains("local_reply")
                && !n.contains("config_http_stream")
        })
        .cloned()
        .collect();
    let absent: Vec<_> = http.difference(&hooks).collect();
    assert!(
        absent.is_empty(),
        "HTTP filter hooks not exported: {absent:?}"
    );
}

#[test]
fn the_built_module_exports_the_hooks_and_needs_only_envoy_callbacks() {
    let so = repo_root().join("target/release/libconsent_native.so");
    if !so.exists() {
        panic!(
            "{} is missing — run `cargo build --release -p consent-native`",
            so.display()
        );
    }
    let exported = nm_names(&run("nm", &["-D", "--defined-only"], &so), |n| {
        n.starts_with("envoy_dynamic_module_")
    });
    let hooks = declared(
        &source("hooks.rs"),
        "extern \"C\" fn ",
        "envoy_dynamic_module_on_",
    );
    assert_eq!(
        exported, hooks,
        "the .so exports exactly the hooks of hooks.rs"
    );
    let needed = nm_names(&run("nm", &["-D", "--undefined-only"], &so), |n| {
        n.starts_with("envoy_")
    });
    let envoy = nm_names(
        &run("nm", &["-D", "--defined-only"], &envoy_binary()),
        |n| n.starts_with("envoy_"),
    );
    let unresolved: Vec<_> = needed.difference(&envoy).collect();
    assert!(
        unresolved.is_empty(),
        "Envoy does not provide {unresolved:?}"
    );
}
