//! End-to-end harness: real Envoy (from the project venv) with the built `.wasm`,
//! the demo backend in-process as the real upstream, and curl as the client.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use consent_tools::demo_backend::SnapshotState;

/// Marker after the block scalar that holds the plugin configuration in the shipped YAML.
const PLUGIN_CONFIG_MARKER: &str = "# consent-filter plugin configuration";

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

/// The built filter.
pub fn wasm_path() -> PathBuf {
    let path = repo_root().join("target/wasm32-wasip1/release/consent_filter.wasm");
    assert!(
        path.exists(),
        "{} is missing — run `make test`, which builds it first",
        path.display()
    );
    path
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

/// Points a shipped config at test ports and the built `.wasm` (the consent source at
/// `source`, which may be the backend's port when it plays the source).
pub fn localise(yaml: &str, listen: u16, admin: u16, backend: u16, source: u16) -> String {
    let wasm = wasm_path();
    let out = yaml
        .replace("port_value: 10000", &format!("port_value: {listen}"))
        .replace("port_value: 9901", &format!("port_value: {admin}"))
        .replace("port_value: 8081", &format!("port_value: {backend}"))
        .replace("port_value: 8082", &format!("port_value: {source}"))
        .replace(
            "filename: target/wasm32-wasip1/release/consent_filter.wasm",
            &format!("filename: {}", wasm.display()),
        );
    assert_ne!(out, yaml, "ports or wasm path not found in the config");
    out
}

/// Replaces the plugin configuration block (the JSON after the marker) with `json`.
pub fn with_plugin_config(yaml: &str, json: &str) -> String {
    let lines: Vec<&str> = yaml.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains(PLUGIN_CONFIG_MARKER))
        .expect("plugin configuration marker");
    let indent = |l: &str| l.len() - l.trim_start().len();
    let body_indent = indent(lines[start + 1]);
    let end = (start + 1..lines.len())
        .find(|&i| !lines[i].trim().is_empty() && indent(lines[i]) < body_indent)
        .unwrap_or(lines.len());
    let mut out: Vec<String> = lines[..=start].iter().map(|s| s.to_string()).collect();
    for l in json.lines() {
        out.push(format!("{}{}", " ".repeat(body_indent), l));
    }
    out.extend(lines[end..].iter().map(|s| s.to_string()));
    out.join("\n") + "\n"
}

/// Removes the consent filter from the HTTP filter chain (for control experiments).
pub fn without_filter(yaml: &str) -> String {
    let lines: Vec<&str> = yaml.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == "- name: consent")
        .unwrap();
    let end = lines
        .iter()
        .skip(start + 1)
        .position(|l| l.trim_start().starts_with("- name: "))
        .map(|i| i + start + 1)
        .unwrap();
    let mut out: Vec<&str> = lines[..start].to_vec();
    out.extend(&lines[end..]);
    out.join("\n") + "\n"
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

impl Envoy {
    /// Writes `yaml` to a temp dir and starts Envoy with it; waits until it is ready.
    pub fn start(yaml: &str, port: u16, admin: u16) -> Result<Envoy, String> {
        let dir = std::env::temp_dir().join(tag("consent-e2e"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("envoy.yaml");
        std::fs::write(&config, yaml).unwrap();
        let log = dir.join("envoy.log");
        // A small shell keeps Envoy on a leash: it stops Envoy when asked (TERM) and when
        // the test process is gone, since fixtures kept in statics are never dropped.
        let leash = r#"trap 'kill $pid 2>/dev/null; exit 0' TERM
"$@" & pid=$!
while kill -0 "$PPID" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 0.5; done
kill $pid 2>/dev/null
wait $pid"#;
        let child = Command::new("sh")
            .args(["-c", leash, "envoy-leash"])
            .arg(envoy_bin())
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", "2", "--disable-hot-restart", "-l", "info"])
            // Flush logs within 50 ms, so tests can read what Envoy just wrote.
            .args(["--file-flush-interval-msec", "50"])
            .arg("--log-path")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
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
        let dir = std::env::temp_dir().join(tag("consent-e2e-bad"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("envoy.yaml");
        std::fs::write(&config, yaml).unwrap();
        let mut child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", "1", "--disable-hot-restart", "-l", "info"])
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

/// A response as curl saw it.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code (0 when the connection failed).
    pub status: u16,
    /// Headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs curl with `args` (plus `-s -i`) and parses the final response.
pub fn curl(args: &[&str]) -> Response {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "20", "-H", "Expect:"])
        .args(args)
        .output()
        .expect("curl must be installed (make test installs it)");
    parse_response(&out.stdout)
}

fn parse_response(raw: &[u8]) -> Response {
    let mut rest = raw;
    loop {
        let Some(split) = find(rest, b"\r\n\r\n") else {
            return Response {
                status: 0,
                headers: Vec::new(),
                body: Vec::new(),
            };
        };
        let head = String::from_utf8_lossy(&rest[..split]).into_owned();
        let body = &rest[split + 4..];
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if (100..200).contains(&status) {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        return Response {
            status,
            headers,
            body: body.to_vec(),
        };
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Shorthand for a header argument pair.
pub fn h(name: &str, value: &str) -> [String; 2] {
    ["-H".to_string(), format!("{name}: {value}")]
}

/// Whether a path exists relative to the repo.
pub fn repo_has(rel: &str) -> bool {
    Path::new(&repo_root().join(rel)).exists()
}

/// The demo backend, the consent source and an Envoy in front of them.
pub struct Fixture {
    /// The real upstream.
    pub backend: consent_tools::demo_backend::DemoBackend,
    /// Envoy with the filter.
    pub envoy: Envoy,
    /// The reference consent source, when the fixture runs one.
    pub source: Option<consent_source::Source>,
    /// Client certificate every request presents by default (mTLS listeners only).
    pub client_tls: Option<ClientTls>,
}

impl Fixture {
    /// A URL on the consent source's API.
    pub fn source_url(&self, path: &str) -> String {
        let port = self.source.as_ref().and_then(|s| s.port()).unwrap_or(0);
        format!("http://127.0.0.1:{port}{path}")
    }
}

/// The demo backend and Envoy with the shipped demo config, started once per test binary.
pub fn shipped_demo() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| start_demo(|yaml| yaml.to_string()))
}

/// The demo consent snapshot the shipped consent source is seeded with.
pub fn demo_consents() -> String {
    std::fs::read_to_string(repo_root().join("envoy-config/demo-consents.json"))
        .expect("demo consents")
}

/// Starts the demo backend, the reference consent source (in memory, seeded with the demo
/// consents) and Envoy with the shipped demo config edited by `edit`; waits until a
/// snapshot is in use.
pub fn start_demo(edit: impl Fn(&str) -> String) -> Fixture {
    start_demo_parts(edit, consent_source::store::DEFAULT_PART_SIZE)
}

/// The reference consent source in memory, seeded with the demo consents, and its port.
pub fn start_source(part_size: usize) -> (consent_source::Source, u16) {
    let seed = consent_core::live::FullSnapshotDoc::from_json(demo_consents().as_bytes())
        .expect("demo consents parse");
    let source = consent_source::Source::start_with_parts(
        "127.0.0.1:0",
        Path::new(":memory:"),
        Some(&seed),
        consent_core::live::SubjectKeying::Plain,
        part_size,
    )
    .expect("consent source");
    let port = source.port().expect("source port");
    (source, port)
}

/// The shipped policy as version 2, with `purpose`'s terms changed in it (§11).
pub fn policy_v2_changing(purpose: &str) -> String {
    let mut doc: serde_json::Value =
        serde_json::from_str(consent_core::DEFAULT_POLICY_JSON).expect("shipped policy");
    doc["version"] = serde_json::json!(2);
    for p in doc["purposes"].as_array_mut().expect("purposes") {
        if p["id"] == purpose {
            p["changed_in"] = serde_json::json!(2);
        }
    }
    doc.to_string()
}

/// [`start_demo`] with the consent source serving its snapshot in parts of `part_size`.
pub fn start_demo_parts(edit: impl Fn(&str) -> String, part_size: usize) -> Fixture {
    let (source, source_port) = start_source(part_size);
    launch(
        edit,
        SnapshotState::Fail(503),
        Some(source),
        source_port,
        true,
        None,
    )
}

/// [`start_demo`] with the listener turned into an mTLS listener that requires a client
/// certificate from `pki`'s CA; requests present `default_client` unless they name another.
pub fn start_demo_mtls(
    edit: impl Fn(&str) -> String,
    pki: &TestPki,
    default_client: ClientTls,
) -> Fixture {
    let (source, source_port) = start_source(consent_source::store::DEFAULT_PART_SIZE);
    let tls = pki.server_transport_socket();
    let with_tls = |yaml: &str| {
        edit(yaml).replacen(
            "    filter_chains:\n    - filters:",
            &format!("    filter_chains:\n    - {tls}\n      filters:"),
            1,
        )
    };
    launch(
        with_tls,
        SnapshotState::Fail(503),
        Some(source),
        source_port,
        true,
        Some(default_client),
    )
}

/// Like [`start_demo`], but the demo backend plays the consent source in `state` (full
/// snapshots only, so faults can be staged); `wait_for_snapshot` waits until requests are
/// no longer decided as `snapshot_unavailable`.
pub fn start_demo_with(
    edit: impl Fn(&str) -> String,
    state: SnapshotState,
    wait_for_snapshot: bool,
) -> Fixture {
    let without_deltas = |yaml: &str| edit(yaml).replace("\"deltas_path\": \"/deltas\",", "");
    launch(without_deltas, state, None, 0, wait_for_snapshot, None)
}

fn launch(
    edit: impl Fn(&str) -> String,
    state: SnapshotState,
    source: Option<consent_source::Source>,
    source_port: u16,
    wait_for_snapshot: bool,
    client_tls: Option<ClientTls>,
) -> Fixture {
    let backend =
        consent_tools::demo_backend::DemoBackend::start_with_snapshot("127.0.0.1:0", state)
            .expect("backend");
    let backend_port = backend.addr().expect("backend addr").port();
    let source_port = if source.is_some() {
        source_port
    } else {
        backend_port
    };
    let (port, admin) = (free_port(), free_port());
    let yaml = localise(
        &edit(&shipped_config("envoy-demo.yaml")),
        port,
        admin,
        backend_port,
        source_port,
    );
    let envoy = Envoy::start(&yaml, port, admin).unwrap_or_else(|e| panic!("{e}"));
    let fixture = Fixture {
        backend,
        envoy,
        source,
        client_tls,
    };
    if wait_for_snapshot {
        let published = wait_until(Duration::from_secs(15), || {
            let (r, _) = send(
                &fixture,
                Req::get("/probe").who("u-alice", "support.inquiries"),
            );
            r.status != 0 && !r.text().contains("snapshot_unavailable")
        });
        assert!(published, "no consent snapshot in use after 15 s");
    }
    fixture
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A request to send through Envoy with curl.
#[derive(Debug, Clone, Default)]
pub struct Req {
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    http2: bool,
    chunked: bool,
    client: Option<ClientTls>,
}

impl Req {
    /// A GET of `path`.
    pub fn get(path: &str) -> Req {
        Req {
            path: path.to_string(),
            ..Req::default()
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds the identity headers.
    pub fn who(self, user: &str, purpose: &str) -> Req {
        self.header("x-user-id", user)
            .header("x-data-purpose", purpose)
    }

    /// Makes it a POST of `body` (no content type is added).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = Some(body.into());
        self
    }

    /// Sends the body without any content type (curl would add a form type otherwise).
    pub fn without_content_type(self) -> Req {
        self.header("content-type", "")
    }

    /// Makes it a POST of a JSON body.
    pub fn json(self, body: impl Into<Vec<u8>>) -> Req {
        self.header("content-type", "application/json").body(body)
    }

    /// Uses HTTP/2 (cleartext, prior knowledge).
    pub fn http2(mut self) -> Req {
        self.http2 = true;
        self
    }

    /// Sends the body with chunked transfer encoding (HTTP/1.1).
    pub fn chunked(mut self) -> Req {
        self.chunked = true;
        self
    }

    /// Presents `client`'s certificate (mTLS fixtures).
    pub fn with_client(mut self, client: &ClientTls) -> Req {
        self.client = Some(client.clone());
        self
    }
}

/// A client certificate and key, with the CA that signed the server's certificate.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// CA certificate (PEM).
    pub ca: PathBuf,
    /// Client certificate (PEM).
    pub cert: PathBuf,
    /// Client key (PEM).
    pub key: PathBuf,
}

/// A throwaway CA made with the `openssl` command, issuing a server certificate for
/// 127.0.0.1 and client certificates with the URI SAN a test asks for.
pub struct TestPki {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (installed by make deps)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestPki {
    /// A new CA and server certificate in a fresh temporary directory.
    pub fn new() -> TestPki {
        let dir = std::env::temp_dir().join(tag("pki"));
        std::fs::create_dir_all(&dir).unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                "/CN=consent-test-ca",
                "-days",
                "2",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        let pki = TestPki { dir };
        pki.issue("server", "IP:127.0.0.1,DNS:localhost");
        pki
    }

    fn issue(&self, name: &str, san: &str) -> ClientTls {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        let ext = format!("subjectAltName={san}");
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                &ext,
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-copy_extensions",
                "copy",
            ],
        );
        ClientTls {
            ca: self.dir.join("ca.crt"),
            cert: self.dir.join(crt),
            key: self.dir.join(key),
        }
    }

    /// A client certificate whose URI SAN is `uri` (e.g. a SPIFFE ID).
    pub fn client(&self, name: &str, uri: &str) -> ClientTls {
        self.issue(name, &format!("URI:{uri}"))
    }

    /// The listener's `transport_socket` (flow YAML): TLS with a required client
    /// certificate signed by this CA.
    pub fn server_transport_socket(&self) -> String {
        let f = |n: &str| self.dir.join(n).display().to_string();
        format!(
            "transport_socket: {{ name: envoy.transport_sockets.tls, typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext, require_client_certificate: true, common_tls_context: {{ tls_certificates: [{{ certificate_chain: {{ filename: \"{}\" }}, private_key: {{ filename: \"{}\" }} }}], validation_context: {{ trusted_ca: {{ filename: \"{}\" }} }} }} }} }}",
            f("server.crt"),
            f("server.key"),
            f("ca.crt")
        )
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `req` through the fixture's Envoy; returns the response and what the backend saw
/// of it (None when it never reached the backend).
pub fn send(f: &Fixture, req: Req) -> (Response, Option<consent_tools::demo_backend::SeenRequest>) {
    let t = tag("req");
    let mut args: Vec<String> = vec!["-H".into(), format!("x-request-tag: {t}")];
    for (n, v) in &req.headers {
        args.push("-H".into());
        // `Name:` with nothing after it tells curl to send no such header at all.
        args.push(if v.is_empty() {
            format!("{n}:")
        } else {
            format!("{n}: {v}")
        });
    }
    let mut body_file = None;
    if let Some(body) = &req.body {
        let path = std::env::temp_dir().join(format!("{t}.body"));
        std::fs::write(&path, body).unwrap();
        args.push("--data-binary".into());
        args.push(format!("@{}", path.display()));
        body_file = Some(path);
    }
    if req.chunked {
        args.push("-H".into());
        args.push("transfer-encoding: chunked".into());
    }
    let client = req.client.as_ref().or(f.client_tls.as_ref());
    args.push(match (req.http2, client.is_some()) {
        (true, false) => "--http2-prior-knowledge".into(),
        (true, true) => "--http2".into(),
        (false, _) => "--http1.1".into(),
    });
    match client {
        Some(tls) => {
            for (flag, path) in [
                ("--cacert", &tls.ca),
                ("--cert", &tls.cert),
                ("--key", &tls.key),
            ] {
                args.push(flag.into());
                args.push(path.display().to_string());
            }
            args.push(f.envoy.url(&req.path).replacen("http://", "https://", 1));
        }
        None => args.push(f.envoy.url(&req.path)),
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let response = curl(&refs);
    if let Some(path) = body_file {
        let _ = std::fs::remove_file(path);
    }
    (response, f.backend.seen_with_tag(&t))
}

/// The demo config without the bootstrap singleton: the filter's workers fetch under a lease.
pub fn worker_lease(yaml: &str) -> String {
    let yaml = yaml.replace(
        "\"failure_mode\": \"block\"",
        "\"failure_mode\": \"block\",\n              \"fetcher\": \"worker_lease\"",
    );
    let lines: Vec<&str> = yaml.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("bootstrap_extensions:"))
        .unwrap();
    let end = lines.iter().position(|l| l.starts_with("admin:")).unwrap();
    let anchor = lines
        .iter()
        .position(|l| l.contains("configuration: &consent_plugin_configuration"))
        .unwrap();
    // The anchored configuration block, re-indented for the filter.
    let block_end = (anchor + 1..end)
        .find(|&i| {
            let l = lines[i];
            !l.trim().is_empty() && l.len() - l.trim_start().len() <= 6
        })
        .unwrap_or(end);
    let block: Vec<String> = lines[anchor + 1..block_end]
        .iter()
        .map(|l| format!("          {l}"))
        .collect();
    let mut out: Vec<String> = lines[..start].iter().map(|s| s.to_string()).collect();
    for l in &lines[end..] {
        if l.trim_start() == "configuration: *consent_plugin_configuration" {
            out.push(l.replace("*consent_plugin_configuration", ""));
            out.extend(block.iter().cloned());
        } else {
            out.push(l.to_string());
        }
    }
    out.join("\n") + "\n"
}

/// The demo backend (not playing a consent source), and its port.
pub fn start_backend() -> (consent_tools::demo_backend::DemoBackend, u16) {
    let backend = consent_tools::demo_backend::DemoBackend::start_with_snapshot(
        "127.0.0.1:0",
        SnapshotState::Fail(503),
    )
    .expect("backend");
    let port = backend.addr().expect("backend addr").port();
    (backend, port)
}

/// Requests for alice's support inquiries (an answer no reload or restart changes) sent in a
/// loop on another thread; every answer is kept with its time (the body when not 200).
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(Instant, u16, String)>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Starts sending to `url`.
    pub fn start(url: String) -> Load {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (Arc::clone(&stop), Arc::clone(&seen));
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let r = curl(&[
                    "-H",
                    "x-user-id: u-alice",
                    "-H",
                    "x-data-purpose: support.inquiries",
                    &url,
                ]);
                let body = if r.status == 200 {
                    String::new()
                } else {
                    String::from_utf8_lossy(&r.body).into_owned()
                };
                v.lock()
                    .expect("load")
                    .push((Instant::now(), r.status, body));
            }
        });
        Load {
            stop,
            seen,
            handle: Some(handle),
        }
    }

    /// Stops the loop; every answer with its time.
    pub fn finish(mut self) -> Vec<(Instant, u16, String)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        std::mem::take(&mut *self.seen.lock().expect("load"))
    }
}
