#!/usr/bin/env python3
"""Runs deploy/envoy/envoy-sidecar.yaml in real Envoy and sends mTLS requests through it
(`make deploy-smoke`).

What is the shipped file and what is changed for the run: the file is loaded as it is, then
only the addresses move to free loopback ports (listener, admin, the local app = the demo
backend) and the `consent_source` cluster is replaced by a plain-HTTP one pointing at a local
reference consent source (seeded with envoy-config/demo-consents.json), because the shipped
cluster expects the source behind a TLS proxy at a cluster DNS name. Everything else (the
mTLS listener, the filter chain, the bootstrap fetcher, the plugin configuration) is the
shipped config. Certificates: target/deploy-tls (scripts/deploy_test_certs.sh).

Checks: a caller without a certificate is refused at the TLS handshake; the operator's
certificate gets a decision naming party=tsunagu; a joint user asking for a non-joint-use
purpose is blocked (joint_use_only); a caller no party claims is a third party and is
blocked without the person's consent to provision (third_party_consent_missing); a JSON
request body is redacted (so the body path works with this config).

Then, for the Kubernetes manifests: the Wasm filter as Istio generates it from
deploy/istio/wasmplugin.yaml and as Envoy Gateway generates it from
deploy/envoy-gateway/envoy-extension-policy.yaml (same fields, vm_id and configuration
encoding as scripts/validate_manifests.py uses), in an Envoy with NO bootstrap extension, a
plaintext listener and the cluster name the configuration names (`outbound|8082||...` /
`consent_source`) pointing at the local source: the `worker_lease` fetcher must load the
snapshot (a request for u-carol, who asked to stop use, is blocked with `use_stopped`, not
`snapshot_unavailable`; the fetcher's gauge consent_snapshot_version is set).
Needs PyYAML (the project venv); the binaries target/debug/demo-backend and
target/debug/consent-source.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import yaml

TLS = "target/deploy-tls"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def static_cluster(name: str, port: int) -> dict:
    return {"name": name, "connect_timeout": "1s", "type": "STATIC",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


def request(port: int, cert: str | None, method: str, path: str, headers: dict[str, str],
            body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    ctx = ssl.create_default_context(cafile=os.path.join(TLS, "ca.pem"))
    ctx.check_hostname = False  # the sidecar's certificate names a SPIFFE ID, not a host
    if cert:
        ctx.load_cert_chain(os.path.join(TLS, f"{cert}.pem"), os.path.join(TLS, f"{cert}-key.pem"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import validate_manifests as vm  # noqa: E402 (same directory)

# The manifests key subjects with HMAC under CONSENT_SUBJECT_KEY_SECRET and require signed
# snapshots. The source gets the same (test-only) subject key and signs with the demo key.
TEST_ENV = {k: vm.test_value(k) for k in vm.SECRET_VARIABLES}


class Run:
    """The demo backend and a seeded consent source on free ports; Envoys started on top."""

    def __init__(self, tmp: str):
        self.tmp = tmp
        self.app, self.source = free_port(), free_port()
        self.procs: list[subprocess.Popen] = []
        self.failures: list[str] = []
        self.passed = 0
        self.spawn(["target/debug/demo-backend", f"127.0.0.1:{self.app}"])
        signing = ["--signing-key", "envoy-config/demo-signing/minisign.key"]
        self.spawn(["target/debug/consent-source", "--listen", f"127.0.0.1:{self.source}",
                    "--db", os.path.join(tmp, "cs.sqlite"), "--seed", "envoy-config/demo-consents.json",
                    "--subject-key-secret", TEST_ENV["CONSENT_SUBJECT_KEY_SECRET"],
                    # local test: the Envoys fetch from loopback without a token
                    "--demo-allow-loopback"] + signing)

    def spawn(self, argv: list[str], log: str | None = None, env: dict | None = None) -> subprocess.Popen:
        out = open(os.path.join(self.tmp, log), "w") if log else subprocess.DEVNULL
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                             env={**os.environ, **env} if env else None)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()

    def close(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)

    def check(self, cond: bool, what: str) -> None:
        print(("OK   " if cond else "BAD  ") + what)
        if cond:
            self.passed += 1
        else:
            self.failures.append(what)

    def envoy(self, envoy: str, cfg: dict, name: str) -> subprocess.Popen:
        path = os.path.join(self.tmp, f"{name}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(cfg, f)
        # The filter's keys as the proxy container would have them (test-only values).
        return self.spawn([envoy, "-c", path, "--concurrency", "2", "--disable-hot-restart",
                           "--log-level", "warning"], log=f"{name}.log", env=TEST_ENV)

    def log_tail(self, name: str) -> str:
        with open(os.path.join(self.tmp, f"{name}.log"), encoding="utf-8") as f:
            return "".join(f.readlines()[-20:])


def sidecar(run: Run, envoy: str, config: str) -> None:
    with open(config, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    listen, admin = free_port(), free_port()
    cfg["admin"]["address"]["socket_address"]["port_value"] = admin
    lis = cfg["static_resources"]["listeners"][0]
    lis["address"]["socket_address"].update(address="127.0.0.1", port_value=listen)
    for ext in cfg.get("bootstrap_extensions", []):
        value = ext["typed_config"]["config"]["configuration"]
        value["value"] = value["value"]
    for f in [f for fc in lis["filter_chains"] for f in fc["filters"]]:
        for hf in f.get("typed_config", {}).get("http_filters", []):
            conf = (hf.get("typed_config") or {}).get("config") or {}
            if "configuration" in conf:
                conf["configuration"]["value"] = conf["configuration"]["value"]
    cfg["static_resources"]["clusters"] = [
        static_cluster("local_app", run.app) if c["name"] == "local_app"
        else static_cluster("consent_source", run.source) if c["name"] == "consent_source" else c
        for c in cfg["static_resources"]["clusters"]]
    before = len(run.failures)
    proc = run.envoy(envoy, cfg, "sidecar")
    try:
        alice_news = {"x-user-id": "u-alice", "x-data-purpose": "marketing.newsletters"}
        # Wait for the listener and the first snapshot (the fetcher retries every 200 ms).
        deadline = time.time() + 30
        status, decision = 0, ""
        while time.time() < deadline:
            try:
                status, headers, body = request(listen, "tsunagu", "GET", "/echo", alice_news)
                # Passed requests: the decision header is on the request the app saw
                # (the demo backend echoes it); blocked ones: on the reply.
                decision = headers.get("x-consent-decision", "")
                if status == 200:
                    decision = json.loads(body)["headers"].get("x-consent-decision", [""])[0]
                if "snapshot_unavailable" not in decision:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        run.check(status == 200 and "party=tsunagu" in decision and "reason=consent_granted" in decision,
                  f"{config}: operator certificate (spiffe://minna-app.example/ns/tsunagu/...): "
                  f"{status} {decision[:60]}")

        try:
            request(listen, None, "GET", "/echo", alice_news)
            run.check(False, f"{config}: no client certificate: the request got through")
        except (ssl.SSLError, ConnectionError, OSError) as e:
            run.check(True, f"{config}: no client certificate: refused at the handshake ({type(e).__name__})")

        status, _, body = request(listen, "saitama-city", "GET", "/echo", alice_news)
        reason = json.loads(body or b"{}").get("reason")
        run.check(status == 403 and reason == "joint_use_only",
                  f"{config}: joint user (saitama-city) asking for marketing.newsletters: {status} {reason}")

        status, _, body = request(listen, "outsider", "GET", "/echo", alice_news)
        reason = json.loads(body or b"{}").get("reason")
        run.check(status == 403 and reason == "third_party_consent_missing",
                  f"{config}: caller no party claims (ns/adtech): {status} {reason}")

        payload = json.dumps({"email": "b@example.jp", "note": "hi"}).encode()
        status, _, body = request(
            listen, "tsunagu", "POST", "/echo",
            {"x-user-id": "u-bob", "x-data-purpose": "service.improvement",
             "content-type": "application/json"}, payload)
        seen = json.loads(body or b"{}").get("body") if status == 200 else None
        run.check(status == 200 and seen == {"note": "hi"},
                  f"{config}: JSON request body for service.improvement: {status}, backend saw {seen}")
    finally:
        run.stop(proc)
    if len(run.failures) > before:
        print("--- envoy log (tail)\n" + run.log_tail("sidecar"))


def platform_filters(deploy: str, wasm: str) -> list[tuple[str, dict, str]]:
    """(label, Wasm filter typed_config, snapshot cluster name) as Istio / Envoy Gateway
    generate them from the manifests (see scripts/validate_manifests.py)."""
    out = []
    with open(os.path.join(deploy, "istio", "wasmplugin.yaml"), encoding="utf-8") as f:
        wp = next(d for d in yaml.safe_load_all(f) if d and d.get("kind") == "WasmPlugin")
    cfg_text = vm.go_protojson_struct(wp["spec"]["pluginConfig"])
    host_keys = [e["name"] for e in (wp["spec"].get("vmConfig") or {}).get("env", [])
                 if e.get("valueFrom") == "HOST"]
    out.append(("Istio WasmPlugin (no vm_id; + allow_on_headers_stop_iteration as envoyfilter-ecds.yaml sets)",
                {"@type": vm.WASM_FILTER_TYPE, "config": {
                    "name": "minna-app.consent-filter", "root_id": wp["spec"]["pluginName"],
                    "vm_config": {"runtime": "envoy.wasm.runtime.v8",
                                  "code": {"local": {"filename": os.path.abspath(wasm)}},
                                  "environment_variables": {"host_env_keys": host_keys}},
                    "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                      "value": cfg_text},
                    "failure_policy": "FAIL_CLOSED", "allow_on_headers_stop_iteration": True}},
                json.loads(cfg_text)["snapshot"]["cluster"]))
    with open(os.path.join(deploy, "envoy-gateway", "envoy-extension-policy.yaml"), encoding="utf-8") as f:
        eep = next(d for d in yaml.safe_load_all(f) if d and d.get("kind") == "EnvoyExtensionPolicy")
    w = eep["spec"]["wasm"][0]
    vm_id = f"envoyextensionpolicy/{eep['metadata']['namespace']}/{eep['metadata']['name']}/wasm/0"
    out.append((f"Envoy Gateway EnvoyExtensionPolicy (vm_id {vm_id}; + the EnvoyPatchPolicy's flag)",
                {"@type": vm.WASM_FILTER_TYPE, "config": {
                    "name": w["name"], "root_id": w["rootID"],
                    "vm_config": {"vm_id": vm_id, "runtime": "envoy.wasm.runtime.v8",
                                  "code": {"local": {"filename": os.path.abspath(wasm)}},
                                  "environment_variables": {
                                      "host_env_keys": (w.get("env") or {}).get("hostKeys", [])}},
                    "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                      "value": json.dumps(w["config"])},
                    "fail_open": False, "allow_on_headers_stop_iteration": True}},
                w["config"]["snapshot"]["cluster"]))
    return out


def platform(run: Run, envoy: str, label: str, typed_config: dict, cluster: str, n: int) -> None:
    listen, admin = free_port(), free_port()
    cfg = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                           "filter_chains": [{"filters": [{
                               "name": "envoy.filters.network.http_connection_manager",
                               "typed_config": {
                                   "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                            "http_connection_manager.v3.HttpConnectionManager",
                                   "stat_prefix": "p",
                                   "route_config": {"name": "r", "virtual_hosts": [{
                                       "name": "v", "domains": ["*"], "routes": [{
                                           "match": {"prefix": "/"}, "route": {"cluster": "local_app"}}]}]},
                                   "http_filters": [
                                       {"name": "consent", "typed_config": typed_config},
                                       {"name": "envoy.filters.http.router", "typed_config": {
                                           "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}],
            "clusters": [static_cluster("local_app", run.app), static_cluster(cluster, run.source)]}}
    name = f"platform{n}"
    proc = run.envoy(envoy, cfg, name)
    try:
        carol = {"x-user-id": "u-carol", "x-data-purpose": "marketing.newsletters"}
        deadline = time.time() + 30
        status, reason = 0, None
        while time.time() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", listen, timeout=10)
                conn.request("GET", "/echo", headers=carol)
                resp = conn.getresponse()
                status, body = resp.status, resp.read()
                conn.close()
                reason = json.loads(body or b"{}").get("reason") if status != 200 else "pass"
                if reason != "snapshot_unavailable":
                    break
            except OSError:
                pass
            time.sleep(0.2)
        run.check(status == 403 and reason == "use_stopped",
                  f"{label}: worker_lease fetcher loaded the snapshot via cluster {cluster!r} "
                  f"(u-carol: {status} {reason})")
        conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
        conn.request("GET", "/stats?filter=consent_snapshot_version")
        stats = conn.getresponse().read().decode()
        conn.close()
        m = re.search(r"consent_snapshot_version: (\d+)", stats)
        run.check(m is not None and int(m.group(1)) >= 1,
                  f"{label}: gauge {stats.strip()[:80]!r} (a version was published)")
    finally:
        run.stop(proc)
    if run.failures:
        print("--- envoy log (tail)\n" + run.log_tail(name))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--envoy", default=".venv/bin/envoy")
    ap.add_argument("--config", default="deploy/envoy/envoy-sidecar.yaml")
    ap.add_argument("--deploy", default="deploy")
    ap.add_argument("--wasm", default="target/wasm32-wasip1/release/consent_filter.wasm")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(tmp)
        try:
            sidecar(run, args.envoy, args.config)
            for n, (label, tc, cluster) in enumerate(platform_filters(args.deploy, args.wasm)):
                platform(run, args.envoy, label, tc, cluster, n)
        finally:
            run.close()
    print(f"{run.passed} passed, {len(run.failures)} failed")
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
