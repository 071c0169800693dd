#!/usr/bin/env python3
"""Live snapshot at scale: load time of a large snapshot by the fetcher, Envoy RSS with the
filter (2 workers) against the same Envoy without it, and header-only request cost with
1k versus N users (random user IDs per request), all on loopback in one run.
Writes bench/results-snapshot.md. Used by `make bench-snapshot`.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from harness import (cluster, fetcher, free_port, rss_mb, serve_snapshot, start_envoy,  # noqa: E402
                     stat, wait_ready, wasm_filter)
from harness import envoy_yaml as listener_yaml  # noqa: E402


PART_SIZE = 20_000


def snapshot(users):
    """The snapshot as parts of PART_SIZE records (part 0 at /snapshot, part i at
    /snapshot/parts/i), as the reference source serves it."""
    recs = []
    for i in range(users):
        g = {"service.improvement": {"policy_version": 1, "explicit": ["location.gps"]}}
        if i % 3 == 0:
            g["marketing.newsletters"] = {"policy_version": 1}
        recs.append({"subject": f"u-{i:07d}", "grants": g})
    n = max(1, -(-users // PART_SIZE))
    return [json.dumps({"version": 1, "subject_key": "plain", "parts": n, "part": p,
                        "records": recs[p * PART_SIZE:(p + 1) * PART_SIZE]},
                       separators=(",", ":")).encode() for p in range(n)]


def envoy_yaml(port, admin, source_port, wasm, with_filter):
    config = {"snapshot": {"source": "shared", "cluster": "consent_source", "refresh_ms": 5000,
                           "timeout_ms": 60000, "max_staleness_ms": 600000}}
    routes = """
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "ok" } }"""
    clusters = "  clusters:" + cluster("consent_source", source_port,
                                       "\n    per_connection_buffer_limit_bytes: 1073741824") + "\n"
    prefix = fetcher(wasm, config) if with_filter else ""
    filters = wasm_filter("consent", "consent", wasm, config) if with_filter else ""
    return prefix + listener_yaml(port, admin, routes, filters, clusters, stat_prefix="scale")


def start(envoy, yaml, work, name):
    return start_envoy(envoy, yaml, work, name, 2)


LUA = """
math.randomseed(os.time())
request = function()
  local id = string.format("u-%07d", math.random(0, USERS - 1))
  return wrk.format("GET", "/x", {["x-user-id"] = id, ["x-data-purpose"] = "service.improvement"})
end
"""


def wrk(port, users, work, duration):
    script = os.path.join(work, f"users{users}.lua")
    open(script, "w").write(LUA.replace("USERS", str(users)))
    out = subprocess.run(["wrk", "-t1", "-c8", f"-d{duration}s", "-s", script, f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--envoy", default=os.path.join(ROOT, ".venv/bin/envoy"))
    ap.add_argument("--wasm", default=os.path.join(ROOT, "target/wasm32-wasip1/release/consent_filter.wasm"))
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results-snapshot.md"))
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="consent-scale-")
    t0 = time.time()
    big = snapshot(a.users)
    small = snapshot(1000)
    size_mb = sum(len(p) for p in big) / 1e6
    print(f"snapshot of {a.users} users: {size_mb:.1f} MB in {len(big)} parts (generated in {time.time() - t0:.1f} s)", flush=True)
    src_big, src_small = serve_snapshot(big), serve_snapshot(small)
    ports = {k: (free_port(), free_port()) for k in ("big", "small", "plain")}
    procs = {
        "plain": start(a.envoy, envoy_yaml(*ports["plain"], src_big.server_port, a.wasm, False), work, "plain"),
        "small": start(a.envoy, envoy_yaml(*ports["small"], src_small.server_port, a.wasm, True), work, "small"),
    }
    try:
        for k in ("plain", "small"):
            wait_ready(ports[k][1], procs[k], k, work)
        t_start = time.time()
        procs["big"] = start(a.envoy, envoy_yaml(*ports["big"], src_big.server_port, a.wasm, True), work, "big")
        wait_ready(ports["big"][1], procs["big"], "big", work, 120)
        load = None
        while time.time() - t_start < 600:
            if stat(ports["big"][1], "consent_snapshot_users") == a.users:
                load = time.time() - t_start
                break
            if procs["big"].poll() is not None:
                sys.exit(f"envoy with {a.users} users exited: see {work}/big.log")
            failures = stat(ports["big"][1], "consent_snapshot_fetch_failures") or 0
            if failures >= 5:
                sys.exit(f"the fetcher could not load {a.users} users ({failures} failed fetches of "
                         f"{size_mb:.0f} MB): see {work}/big.log")
            time.sleep(0.2)
        if load is None:
            sys.exit(f"snapshot not loaded: see {work}/big.log")
        while stat(ports["small"][1], "consent_snapshot_users") != 1000:
            time.sleep(0.2)
        # Let the fetcher's transient memory settle, then read RSS.
        time.sleep(3)
        rss = {k: rss_mb(p.pid) for k, p in procs.items()}
        print(f"load of {a.users} users: {load:.1f} s from Envoy start; RSS MB: {rss}", flush=True)
        rps = {"small": [], "big": []}
        for _ in range(3):
            for k, users in (("small", 1000), ("big", a.users)):
                rps[k].append(wrk(ports[k][0], users, work, a.duration))
        med = {k: sorted(v)[1] for k, v in rps.items()}
        print(f"header-only req/s, random users: 1k {med['small']:.0f}, {a.users} {med['big']:.0f}", flush=True)
        # Each worker VM copies the buckets from its first request on (about 3 s for
        # 65,536 buckets): RSS again once the traffic has made every worker copy them.
        time.sleep(5)
        served = {k: rss_mb(p.pid) for k, p in procs.items()}
        print(f"RSS MB after traffic (each worker's copy filled): {served}", flush=True)
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait()
    lines = [
        "# Live snapshot at scale",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores; Envoy 1.40, 2 workers each.",
        f"Snapshot: {a.users} users, {size_mb:.1f} MB of JSON in {len(big)} parts of {PART_SIZE} records, served over loopback.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| full load (Envoy start to all {a.users} users published) | {load:.1f} s |",
        f"| RSS, Envoy without the filter | {rss['plain']:.0f} MB |",
        f"| RSS, with the filter and {a.users} users, loaded, before any request | {rss['big']:.0f} MB (+{rss['big'] - rss['plain']:.0f} MB) |",
        f"| RSS, with the filter and {a.users} users, after the traffic (each worker's own copy of the buckets) | {served['big']:.0f} MB (+{served['big'] - served['plain']:.0f} MB) |",
        f"| RSS, with the filter and 1,000 users (after the traffic) | {served['small']:.0f} MB |",
        f"| header-only req/s, 1,000 users (median of 3) | {med['small']:.0f} |",
        f"| header-only req/s, {a.users} users (median of 3) | {med['big']:.0f} ({med['big'] / med['small']:.2f}x) |",
    ]
    open(a.out, "w").write("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
