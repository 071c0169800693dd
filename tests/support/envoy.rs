//! Paths (the repository, Envoy, the built filter, shipped configs), free ports, unique
//! tags, and the Envoy process itself.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use super::client::curl;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Envoy binary: `$ENVOY_BIN`, else the project venv's.
pub fn envoy_bin() -> PathBuf {
    let path = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/envoy"));
    assert!(
        path.exists(),
        "Envoy not found at {} — run `make test`, which installs it",
        path.display()
    );
    path
}

/// Which build of the filter the suite runs: `CONSENT_FILTER_BUILD=wasm` (the default: the
/// proxy-wasm filter) or `native` (the dynamic module of crates/consent-native, with the
/// demo config turned into envoy-config/envoy-native.yaml's shape by [`localise`]).
///
/// [`localise`]: super::config::localise
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// The proxy-wasm filter (`consent_filter.wasm`).
    Wasm,
    /// The native dynamic module (`libconsent_native.so`).
    Native,
}

/// The build under test, from `CONSENT_FILTER_BUILD`.
pub fn build() -> Build {
    match std::env::var("CONSENT_FILTER_BUILD").as_deref() {
        Err(_) | Ok("") | Ok("wasm") => Build::Wasm,
        Ok("native") => Build::Native,
        Ok(other) => panic!("CONSENT_FILTER_BUILD={other}: use wasm or native"),
    }
}

/// Envoy as a command; under the native build, with `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`
/// set to the built module's directory.
pub fn envoy_command() -> Command {
    let mut command = Command::new(envoy_bin());
    if build() == Build::Native {
        command.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", native_module_dir());
    }
    command
}

/// What the filter's `.wasm` is built from: a change to any of these makes it stale.
const WASM_SOURCES: [&str; 5] = [
    "src",
    "crates/consent-core/src",
    "crates/consent-core/Cargo.toml",
    "Cargo.toml",
    "Cargo.lock",
];

/// The newest modification time under `path` (a file or a directory tree), and its file.
fn newest(path: &Path) -> Option<(SystemTime, PathBuf)> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return Some((meta.modified().ok()?, path.to_path_buf()));
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|entry| newest(&entry.ok()?.path()))
        .max()
}

/// What the native module is built from.
const NATIVE_SOURCES: [&str; 6] = [
    "crates/consent-native/src",
    "crates/consent-native/Cargo.toml",
    "crates/consent-core/src",
    "crates/consent-core/Cargo.toml",
    "Cargo.toml",
    "Cargo.lock",
];

/// Why a built artifact cannot be used, if it cannot: missing, or older than one of
/// `sources`; `make` names the target that builds it.
fn build_problem(built: &Path, sources: &[&str], make: &str) -> Option<String> {
    let Ok(time) = std::fs::metadata(built).and_then(|m| m.modified()) else {
        return Some(format!(
            "{} is missing — run `make {make}` (or `make test`, which builds it first)",
            built.display()
        ));
    };
    let root = repo_root();
    let (changed, source) = sources
        .iter()
        .filter_map(|rel| newest(&root.join(rel)))
        .max()?;
    (changed > time).then(|| {
        format!(
            "{} is older than {}: it would test stale code — run `make {make}`, which rebuilds it",
            built.display(),
            source.strip_prefix(&root).unwrap_or(&source).display()
        )
    })
}

/// Why the built filter cannot be used, if it cannot: missing, or older than a source.
pub fn wasm_problem(wasm: &Path) -> Option<String> {
    build_problem(wasm, &WASM_SOURCES, "wasm")
}

/// Why the built native module cannot be used, if it cannot.
pub fn native_problem(so: &Path) -> Option<String> {
    build_problem(so, &NATIVE_SOURCES, "native")
}

/// The directory of the built native module (`target/release`), checked to hold a
/// `libconsent_native.so` newer than every source it is built from.
pub fn native_module_dir() -> PathBuf {
    static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let checked = CHECKED.get_or_init(|| {
        let dir = repo_root().join("target/release");
        match native_problem(&dir.join("libconsent_native.so")) {
            Some(problem) => Err(problem),
            None => Ok(dir),
        }
    });
    checked
        .clone()
        .unwrap_or_else(|problem| panic!("{problem}"))
}

/// The built filter, checked to be newer than every source it is built from.
pub fn wasm_path() -> PathBuf {
    static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let checked = CHECKED.get_or_init(|| {
        let path = repo_root().join("target/wasm32-wasip1/release/consent_filter.wasm");
        match wasm_problem(&path) {
            Some(problem) => Err(problem),
            None => Ok(path),
        }
    });
    checked
        .clone()
        .unwrap_or_else(|problem| panic!("{problem}"))
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Reads a shipped Envoy config.
pub fn shipped_config(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("envoy-config").join(name)).expect("config file")
}

/// Whether a path exists relative to the repo.
pub fn repo_has(rel: &str) -> bool {
    Path::new(&repo_root().join(rel)).exists()
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique tag to find one request at the backend.
pub fn tag(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A running Envoy, killed on drop.
pub struct Envoy {
    child: Child,
    /// Listener port.
    pub port: u16,
    /// Admin port.
    pub admin: u16,
    /// Envoy's log file.
    pub log: PathBuf,
    dir: PathBuf,
}

/// A command running `program` on a leash: a small shell stops it when asked (TERM) and
/// when the test process is gone, since fixtures kept in statics are never dropped.
pub fn leashed(program: &Path) -> Command {
    let leash = r#"trap 'kill $pid 2>/dev/null; exit 0' TERM
"$@" & pid=$!
while kill -0 "$PPID" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 0.5; done
kill $pid 2>/dev/null
wait $pid"#;
    let mut command = Command::new("sh");
    command.args(["-c", leash, "leash"]).arg(program);
    if build() == Build::Native {
        command.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", native_module_dir());
    }
    command
}

impl Envoy {
    /// Writes `yaml` to a temp dir and starts Envoy with it; waits until it is ready.
    pub fn start(yaml: &str, port: u16, admin: u16) -> Result<Envoy, String> {
        Self::start_with_env(yaml, port, admin, &[])
    }

    /// [`Envoy::start`] with `env` added to Envoy's environment (what
    /// `vm_config.environment_variables.host_env_keys` hands the Wasm VM); its stdout (the
    /// access log) and stderr are kept next to the log ([`Envoy::all_output`]).
    pub fn start_with_env(
        yaml: &str,
        port: u16,
        admin: u16,
        env: &[(&str, &str)],
    ) -> Result<Envoy, String> {
        Self::start_with_args(yaml, port, admin, env, &[])
    }

    /// [`Envoy::start_with_env`] with more command-line arguments (e.g. `--drain-time-s 1`,
    /// so that a listener replaced by LDS is gone, its filter's root contexts with it, in a
    /// second).
    pub fn start_with_args(
        yaml: &str,
        port: u16,
        admin: u16,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Result<Envoy, String> {
        let dir = std::env::temp_dir().join(tag("consent-e2e"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("envoy.yaml");
        std::fs::write(&config, yaml).unwrap();
        let log = dir.join("envoy.log");
        let out = |name: &str| std::fs::File::create(dir.join(name)).map(Stdio::from);
        let child = leashed(&envoy_bin())
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", "2", "--disable-hot-restart", "-l", "info"])
            // Flush logs within 50 ms, so tests can read what Envoy just wrote.
            .args(["--file-flush-interval-msec", "50"])
            .args(args)
            .arg("--log-path")
            .arg(&log)
            .envs(env.iter().copied())
            .stdout(out("stdout.log").map_err(|e| e.to_string())?)
            .stderr(out("stderr.log").map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot start envoy: {e}"))?;
        let mut envoy = Envoy {
            child,
            port,
            admin,
            log,
            dir,
        };
        envoy.wait_ready()?;
        Ok(envoy)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("envoy exited with {status}:\n{}", self.log_text()));
            }
            let r = curl(&[&format!("http://127.0.0.1:{}/ready", self.admin)]);
            if r.status == 200 {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("envoy not ready in time:\n{}", self.log_text()))
    }

    /// Waits for Envoy to exit by itself (for configs it must reject).
    pub fn wait_exit(yaml: &str, admin: u16) -> (Option<i32>, String) {
        Self::wait_exit_with_env(yaml, admin, &[])
    }

    /// [`Envoy::wait_exit`] with `env` added to Envoy's environment.
    pub fn wait_exit_with_env(
        yaml: &str,
        admin: u16,
        env: &[(&str, &str)],
    ) -> (Option<i32>, String) {
        let dir = std::env::temp_dir().join(tag("consent-e2e-bad"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("envoy.yaml");
        std::fs::write(&config, yaml).unwrap();
        let mut child = envoy_command()
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", "1", "--disable-hot-restart", "-l", "info"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let code = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            if curl(&[&format!("http://127.0.0.1:{admin}/ready")]).status == 200 {
                let _ = child.kill();
                let _ = child.wait();
                break Some(0);
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut err = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = stderr.read_to_string(&mut err);
        }
        (code, err)
    }

    /// Envoy's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Everything Envoy wrote so far: its log, stdout (the access log) and stderr.
    pub fn all_output(&self) -> String {
        let mut all = self.log_text();
        for name in ["stdout.log", "stderr.log"] {
            all.push_str(&std::fs::read_to_string(self.dir.join(name)).unwrap_or_default());
        }
        all
    }

    /// A URL on the listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
