"""Shared plumbing of the bench scripts: ports, Envoy configurations, starting Envoy and
waiting for it, reading its stats and RSS, and a static consent source serving a snapshot
in parts. Imported by compare.py, envoy_bodies.py, snapshot_scale.py and the rest (not run
on its own).
"""
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- Envoy configurations ---------------------------------------------------------------

def envoy_yaml(port, admin, routes, http_filters="", clusters="", route_extra="", stat_prefix="bench"):
    """One listener with an HTTP connection manager: `routes` and `http_filters` are YAML
    fragments (the router is appended), `clusters` an optional clusters block."""
    return f"""
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:
  - address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {stat_prefix}
          route_config:{route_extra}
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:{routes}
          http_filters:{http_filters}
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
{clusters}"""


def wasm_filter(name, root_id, wasm, config, raw=None):
    """An HTTP wasm filter (V8, failing closed) with `config` as its JSON configuration, or
    the string `raw`, or an empty one."""
    value = raw if raw is not None else json.dumps(config) if config is not None else ""
    return f"""
          - name: {name}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                root_id: {root_id}
                vm_config: {{ vm_id: {root_id}, runtime: envoy.wasm.runtime.v8, code: {{ local: {{ filename: "{wasm}" }} }} }}
                failure_policy: FAIL_CLOSED
                allow_on_headers_stop_iteration: true
                configuration: {{ "@type": type.googleapis.com/google.protobuf.StringValue, value: '{value}' }}"""


def native_filter(name, config, module="consent_native", filter_name="consent"):
    """The consent filter as the native dynamic module (crates/consent-native), with `config`
    as its JSON configuration; Envoy finds the module in $ENVOY_DYNAMIC_MODULES_SEARCH_PATH.
    Another `module` and `filter_name` load a floor (crates/empty-native)."""
    return f"""
          - name: {name}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config: {{ name: {module}, do_not_close: true }}
              filter_name: {filter_name}
              filter_config: {{ "@type": type.googleapis.com/google.protobuf.StringValue, value: '{json.dumps(config)}' }}"""


def fetcher(wasm, config):
    """The bootstrap singleton that fetches the live snapshot (root id consent_fetcher, in
    the filter's VM `consent`), with `config` as its JSON configuration."""
    return f"""
bootstrap_extensions:
- name: envoy.bootstrap.wasm
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.wasm.v3.WasmService
    singleton: true
    config:
      root_id: consent_fetcher
      vm_config: {{ vm_id: consent, runtime: envoy.wasm.runtime.v8, code: {{ local: {{ filename: "{wasm}" }} }} }}
      configuration: {{ "@type": type.googleapis.com/google.protobuf.StringValue, value: '{json.dumps(config)}' }}
"""


def cluster(name, port, extra=""):
    """A static cluster of one loopback endpoint; `extra` is more YAML for the cluster."""
    return f"""
  - name: {name}
    connect_timeout: 1s
    type: STATIC{extra}
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}"""


# ---- running Envoy ------------------------------------------------------------------------

def start_envoy(envoy, yaml, workdir, name, concurrency, log_levels=(), env=None):
    """Writes `yaml` to WORKDIR/NAME.yaml and starts Envoy on it, logging to WORKDIR/NAME.log;
    `env` adds variables to its environment."""
    path = os.path.join(workdir, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(yaml)
    log = open(os.path.join(workdir, f"{name}.log"), "w")
    cmd = [envoy, "-c", path, "--concurrency", str(concurrency), "--disable-hot-restart",
           "-l", "warning"]
    if log_levels:
        cmd += ["--component-log-level", ",".join(log_levels)]
    return subprocess.Popen(cmd, stdout=log, stderr=log, env={**os.environ, **env} if env else None)


def wait_ready(admin, proc, name, workdir, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited: see {workdir}/{name}.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"{name} not ready")


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def stat(admin, name):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?filter={name}", timeout=2) as r:
            m = re.search(rf"{name}: (\d+)", r.read().decode())
            return int(m.group(1)) if m else None
    except OSError:
        return None


# ---- consent source -----------------------------------------------------------------------

def serve_snapshot(parts):
    """A static consent source: /snapshot (part 0), /snapshot/parts/i, ETag "v1" and 304 on
    a match, so the fetcher's refreshes cost nothing once the snapshot is loaded. The
    server's `counts` says how many full and not-modified answers part 0 got."""
    counts = {"full": 0, "not_modified": 0}

    class H(http.server.BaseHTTPRequestHandler):
        def handle(self):
            try:
                super().handle()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the fetcher gave up on this transfer; it says so in Envoy's log

        def do_GET(self):
            part = 0 if self.path == "/snapshot" else None
            if self.path.startswith("/snapshot/parts/"):
                part = int(self.path.rsplit("/", 1)[1])
            if part == 0 and self.headers.get("if-none-match") == '"v1"':
                counts["not_modified"] += 1
                self.send_response(304)
                self.send_header("etag", '"v1"')
                self.send_header("content-length", "0")
                self.end_headers()
            elif part is not None and part < len(parts):
                counts["full"] += part == 0
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(parts[part])))
                self.send_header("etag", '"v1"')
                self.end_headers()
                self.wfile.write(parts[part])
            else:
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.counts = counts
    return srv
