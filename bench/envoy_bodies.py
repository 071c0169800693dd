#!/usr/bin/env python3
"""Body throughput inside real Envoy: the consent filter on versus off, same run.

Topology (all on loopback): wrk -> Envoy under test (1 worker, filter on or off)
-> origin Envoy serving static JSON bodies with direct_response.
Both variants run interleaved (on, off, on, off, ...) so that machine noise hits both.
Writes bench/results-bodies.md. Used by `make bench`.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from harness import cluster, envoy_yaml, free_port, start_envoy, wait_ready, wasm_filter  # noqa: E402


def history(target):
    """A transaction history of about `target` bytes; one field in ten (a receipt
    email) is a category service.improvement may not touch."""
    txs, size, i = [], 0, 0
    while size < target:
        tx = {
            "id": f"tx-{i:07d}", "date": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "amount": 100 + (i * 37) % 9000, "merchant": f"merchant-{i % 97}",
            "category": "food", "gps": {"lat": round(35.8 + (i % 100) * 0.0011, 4),
                                        "lng": round(139.6 + (i % 50) * 0.0013, 4)},
            "points": i % 5, "channel": "app", "email": f"r{i}@example.jp",
        }
        size += len(json.dumps(tx, separators=(",", ":"))) + 1
        txs.append(tx)
        i += 1
    return json.dumps({"user_id": "u-bench", "transactions": txs}, separators=(",", ":"))


PLUGIN_CONFIG = {
    "consents": {"records": [{"subject": "u-bench", "grants": {
        "service.improvement": {"policy_version": 1, "explicit": ["location.gps"]}}}]},
}


def origin_yaml(port, admin, files, extra_routes=""):
    """Each body is served as JSON at /NAME and as text/plain at /NAME-text (which the
    filter decides on by headers only, leaving the body unread); `extra_routes` are more
    route YAML fragments, first."""
    routes = extra_routes + "".join(f"""
              - match: {{ path: "/{name}{suffix}" }}
                response_headers_to_add:
                - header: {{ key: content-type, value: {ctype} }}
                direct_response:
                  status: 200
                  body: {{ filename: "{path}" }}""" for name, path in files.items()
                     for suffix, ctype in (("", "application/json"), ("-text", "text/plain")))
    return envoy_yaml(port, admin, routes, route_extra="\n            max_direct_response_body_size_bytes: 4194304")


def proxy_yaml(port, admin, origin_port, wasm, with_filter, root_id="consent"):
    """A proxy to the origin, with the given wasm filter (or none)."""
    config = PLUGIN_CONFIG if root_id == "consent" else None
    filters = wasm_filter(root_id, root_id, wasm, config) if with_filter else ""
    routes = """
              - match: { prefix: "/" }
                route: { cluster: origin }"""
    clusters = "  clusters:" + cluster("origin", origin_port) + "\n"
    return envoy_yaml(port, admin, routes, filters, clusters)


HEADERS = {"x-user-id": "u-bench", "x-data-purpose": "service.improvement"}


def fetch(port, path):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/{path}", headers=HEADERS)
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, r.read()


def wrk(port, path, duration, connections):
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for k, v in HEADERS.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}/{path}"], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        sys.exit(f"wrk saw errors:\n{out}")
    return rps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--envoy", default=os.path.join(ROOT, ".venv/bin/envoy"))
    ap.add_argument("--wasm", default=os.path.join(ROOT, "target/wasm32-wasip1/release/consent_filter.wasm"))
    ap.add_argument("--empty-wasm", default=os.path.join(ROOT, "target/wasm32-wasip1/release/empty_filter.wasm"))
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results-bodies.md"))
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="consent-bench-")
    sizes = {"1k": 1024, "64k": 64 * 1024}
    files = {}
    bodies = {}
    for name, size in sizes.items():
        bodies[name] = history(size)
        files[name] = os.path.join(work, f"{name}.json")
        with open(files[name], "w") as f:
            f.write(bodies[name])
    ports = {k: (free_port(), free_port()) for k in ("origin", "on", "off", "empty")}
    origin = ports["origin"][0]
    procs = [
        (start_envoy(args.envoy, origin_yaml(*ports["origin"], files), work, "origin", 1), "origin"),
        (start_envoy(args.envoy, proxy_yaml(*ports["on"], origin, args.wasm, True), work, "on", 1), "on"),
        (start_envoy(args.envoy, proxy_yaml(*ports["off"], origin, args.wasm, False), work, "off", 1), "off"),
        (start_envoy(args.envoy, proxy_yaml(*ports["empty"], origin, args.empty_wasm, True, "empty"), work, "empty", 1), "empty"),
    ]
    try:
        for proc, name in procs:
            wait_ready(ports[name][1], proc, name, work)
        # The filter must really be enforcing, or the comparison means nothing.
        for name in sizes:
            status_on, body_on = fetch(ports["on"][0], name)
            status_off, body_off = fetch(ports["off"][0], name)
            assert status_on == status_off == 200, (status_on, status_off)
            assert b"@example.jp" in body_off and b"@example.jp" not in body_on, "filter not redacting"
            json.loads(body_on)
        rows = []
        cases = [("1k-text", "1k", "header-only decision (text/plain body, not read)")] + [
            (name, name, f"JSON body, {name}") for name in sizes]
        for path, name, label in cases:
            rps = {"on": [], "off": [], "empty": []}
            for _ in range(args.rounds):
                for variant in ("on", "off", "empty"):
                    rps[variant].append(wrk(ports[variant][0], path, args.duration, args.connections))
            on, off, empty = (statistics.median(rps[v]) for v in ("on", "off", "empty"))
            mb = len(bodies[name]) / 1e6
            rows.append((label, len(bodies[name]), off, empty, on, off * mb, on * mb, on / off, on / empty))
            print(f"{label}: off {off:.0f} req/s, empty wasm {empty:.0f}, consent {on:.0f} ({on * mb:.1f} MB/s vs {off * mb:.1f} off); on/off {on / off:.2f}, on/empty {on / empty:.2f}", flush=True)
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            proc.wait()
    lines = [
        "# Body throughput through one Envoy worker: consent filter on vs off",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores; "
        f"wrk 1 thread, {args.connections} connections, {args.rounds} interleaved rounds of {args.duration} s, medians.",
        "Response bodies are transaction histories; the filter removes one field in ten (receipt email)",
        "for purpose `service.improvement`. MB/s counts response body bytes from the origin.",
        "",
        "`off` is Envoy without a wasm filter, `empty` the same with a wasm filter that does nothing.",
        "",
        "| case | body bytes | off req/s | empty req/s | consent req/s | off MB/s | consent MB/s | consent/off | consent/empty |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, size, off, empty, on, off_mb, on_mb, r_off, r_empty in rows:
        lines.append(f"| {label} | {size} | {off:.0f} | {empty:.0f} | {on:.0f} | {off_mb:.1f} | {on_mb:.1f} | {r_off:.2f} | {r_empty:.2f} |")
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
