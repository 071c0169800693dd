//! A real Prometheus (Debian's `prometheus` package, `/usr/bin/prometheus`, or
//! `$PROMETHEUS_BIN`) run by the test itself: a temp config and storage dir, loopback on a
//! free port, scraping Envoy admin ports' `/stats/prometheus` every second, optionally with
//! rule files; queried through its HTTP API with curl. Never the Debian service.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::client::curl;
use super::envoy::{free_port, leashed, tag};

/// The Prometheus binary: `$PROMETHEUS_BIN`, else Debian's.
pub fn prometheus_bin() -> PathBuf {
    let path = std::env::var_os("PROMETHEUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
    assert!(
        path.exists(),
        "Prometheus not found at {} — run `make prometheus` (apt-get install prometheus), \
         which `make test` does",
        path.display()
    );
    path
}

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Its labels, `__name__` included when the expression kept it.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// A label's value ("" when absent).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// A running Prometheus, stopped on drop.
pub struct Prometheus {
    child: Child,
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    /// Its log (stderr).
    pub log: PathBuf,
    /// The scraped targets, as Prometheus labels them (`instance`).
    pub instances: Vec<String>,
    dir: PathBuf,
}

/// The prefix Envoy's `/stats/prometheus` gives the native module's stats
/// (`dynamicmodulescustom.` becomes `envoy_dynamicmodulescustom_`; the wasm filter's
/// `wasmcustom.` is dropped). The scrape config renames them back to the wasm filter's
/// `consent_*` names with `metric_relabel_configs`, as README "Native build" tells operators
/// to, so the shipped alerts and dashboard serve both builds (a no-op for the wasm filter).
pub const NATIVE_PREFIX: &str = "envoy_dynamicmodulescustom_";

impl Prometheus {
    /// Starts Prometheus scraping `/stats/prometheus` on each Envoy admin port in `admins`
    /// every second (rules evaluated every second too), with `rule_files` loaded; waits
    /// until it is ready and every target has been scraped successfully.
    pub fn start(admins: &[u16], rule_files: &[PathBuf]) -> Prometheus {
        let dir = std::env::temp_dir().join(tag("consent-prometheus"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let instances: Vec<String> = admins.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let targets: Vec<String> = instances.iter().map(|i| format!("'{i}'")).collect();
        let rules: Vec<String> = rule_files
            .iter()
            .map(|p| format!("- '{}'", p.display()))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:{}\n\
             scrape_configs:\n- job_name: envoy\n  metrics_path: /stats/prometheus\n  \
             static_configs:\n  - targets: [{}]\n  \
             metric_relabel_configs:\n  - source_labels: [__name__]\n    \
             regex: {NATIVE_PREFIX}(consent_.*)\n    target_label: __name__\n    \
             replacement: $1\n",
            if rules.is_empty() {
                " []".to_string()
            } else {
                format!("\n{}", rules.join("\n"))
            },
            targets.join(", ")
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let log = dir.join("prometheus.log");
        let child = leashed(&prometheus_bin())
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start prometheus: {e}"));
        let mut prometheus = Prometheus {
            child,
            port,
            log,
            instances,
            dir,
        };
        prometheus.wait_ready();
        prometheus
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited with {status}:\n{}", self.log_text());
            }
            if curl(&[&self.url("/-/ready")]).status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready in 30 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let want = self.instances.len() as f64;
        let scraped = wait_for(Duration::from_secs(20), || {
            self.query("sum(up{job=\"envoy\"})")
                .ok()
                .and_then(|v| v.first().map(|s| s.value))
                == Some(want)
        });
        assert!(
            scraped,
            "targets not up: {}\n{}",
            self.api("/api/v1/targets"),
            self.log_text()
        );
    }

    /// A URL on its HTTP API.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` on the API, parsed (the `{"status": ..., "data": ...}` envelope whole).
    pub fn api(&self, path: &str) -> serde_json::Value {
        let r = curl(&[&self.url(path)]);
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {} {}", r.status, r.text()))
    }

    /// `GET /api/v1/query?query=expr` at the current time: the instant vector, or
    /// Prometheus's error (a parse error, a non-vector result) as text.
    pub fn query(&self, expr: &str) -> Result<Vec<Sample>, String> {
        let r = curl(&[
            "-G",
            "--data-urlencode",
            &format!("query={expr}"),
            &self.url("/api/v1/query"),
        ]);
        let body: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|e| format!("HTTP {}: not JSON ({e}): {}", r.status, r.text()))?;
        if body["status"] != "success" {
            return Err(format!(
                "HTTP {}: {}: {}",
                r.status, body["errorType"], body["error"]
            ));
        }
        let data = &body["data"];
        if data["resultType"] != "vector" {
            return Err(format!("not an instant vector: {data}"));
        }
        data["result"]
            .as_array()
            .ok_or_else(|| format!("no result: {data}"))?
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let value = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .ok_or_else(|| format!("no value in {s}"))?;
                Ok(Sample { labels, value })
            })
            .collect()
    }

    /// The value of `expr` when it is a single sample; None when it is empty or an error.
    pub fn value(&self, expr: &str) -> Option<f64> {
        match self.query(expr) {
            Ok(v) if v.len() == 1 => v.first().map(|s| s.value),
            _ => None,
        }
    }

    /// Waits until `expr` is a single sample satisfying `ok`; returns its last value.
    pub fn wait_value(&self, expr: &str, limit: Duration, ok: impl Fn(f64) -> bool) -> Option<f64> {
        let mut last = None;
        let held = wait_for(limit, || {
            last = self.value(expr);
            last.is_some_and(&ok)
        });
        held.then_some(last).flatten()
    }

    /// The active alerts (pending or firing) by name, with their state.
    pub fn alerts(&self) -> Vec<(String, String, BTreeMap<String, String>)> {
        let body = self.api("/api/v1/alerts");
        body["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|a| {
                let labels: BTreeMap<String, String> = a["labels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    labels.get("alertname").cloned().unwrap_or_default(),
                    a["state"].as_str().unwrap_or("").to_string(),
                    labels,
                )
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every `consent_*` metric name in `expr` (quoted label values such as
/// `reason="consent_missing"` left out).
pub fn consent_metric_names(expr: &str) -> Vec<String> {
    let mut unquoted = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in expr.chars() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, _, '"') => {
                quoted = !quoted;
                unquoted.push(' ');
            }
            (true, false, _) => {}
            (false, _, c) => unquoted.push(c),
        }
    }
    let mut names = Vec::new();
    for word in unquoted.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
        if word.starts_with("consent_") && !names.iter().any(|n| n == word) {
            names.push(word.to_string());
        }
    }
    names
}

/// Polls `check` every 200 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
