#!/usr/bin/env python3
"""Envoy CPU time per request, contender against contender, for profiling the filter's own
cost. Throughput on a shared 2-core machine swings by ±15%; CPU seconds the Envoy
process spent divided by the requests it served is steadier, and it is what a variant of the
filter (e.g. one with a step removed) changes.

  python3 bench/cpu_per_request.py empty-wasm,consent-1k             # the shipped filter
  WASM=/tmp/variant.wasm python3 bench/cpu_per_request.py empty-wasm,consent-1k
  python3 bench/cpu_per_request.py empty-wasm,consent-1k,consent-1k@/tmp/variant.wasm

Contenders are bench/compare.py's (plain, empty-wasm, consent-1k, consent-1m (BIG_USERS, default
1,000,000 people, random among them), lua, rbac, ...); 1 worker,
1k users, header-only requests (BODY=1k or BODY=64k: the JSON bodies of compare.py), ROUNDS interleaved rounds (default 5) of 3 s at 32
connections. Prints req/s and CPU µs per request per round and their medians.
"""
import os
import statistics
import sys
import tempfile
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as C  # noqa: E402
from harness import free_port, wait_ready  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def main():
    kinds = (sys.argv[1] if len(sys.argv) > 1 else "empty-wasm,consent-1k").split(",")
    rounds = int(os.environ.get("ROUNDS", "5"))
    a = types.SimpleNamespace(
        envoy=os.path.join(ROOT, ".venv/bin/envoy"),
        wasm=os.environ.get("WASM", os.path.join(ROOT, "target/wasm32-wasip1/release/consent_filter.wasm")),
        empty_wasm=os.path.join(ROOT, "target/wasm32-wasip1/release/empty_filter.wasm"),
        small_users=1000, big_users=1000, policy=os.path.join(ROOT, "envoy-config/policy/saitama-minna-app.json"))
    work = tempfile.mkdtemp(prefix="consent-cpu-")
    source = C.serve_snapshot(C.snapshot_parts(1000))
    big_users = int(os.environ.get("BIG_USERS", "1000000"))
    big = C.serve_snapshot(C.snapshot_parts(big_users)) if any(k.startswith("consent-1m") for k in kinds) else None
    files = {"h": os.path.join(work, "h.json")}
    with open(files["h"], "w") as f:
        f.write("ok")
    body = os.environ.get("BODY")  # "1k" or "64k": a JSON response the filter redacts
    if body:
        files[body] = os.path.join(work, f"{body}.json")
        with open(files[body], "w") as f:
            f.write(C.history(1024 if body == "1k" else 64 * 1024))
    lua = os.path.join(work, "consent.lua")
    with open(lua, "w") as f:
        f.write(C.lua_source(1000, a.policy))
    origin_ports = (free_port(), free_port())
    procs, ports, ports_admin = {}, {}, {}
    origin = C.start_envoy(a.envoy, C.origin_yaml(*origin_ports, files), work, "origin", 1)
    try:
        wait_ready(origin_ports[1], origin, "origin", work)
        extra = {"source_port": source.server_port, "small_port": source.server_port, "lua": lua}
        for k in kinds:
            port, admin = free_port(), free_port()
            ports_admin[k] = admin
            kind, _, variant = k.partition("@")
            build = types.SimpleNamespace(**{**vars(a), "wasm": variant or a.wasm})
            ex = dict(extra, source_port=big.server_port) if kind == "consent-1m" else extra
            yaml = C.contender_yaml(kind, port, admin, origin_ports[0], build, ex)
            name = f"contender{len(procs)}"
            procs[k], ports[k] = C.start_envoy(a.envoy, yaml, work, name, 1), port
            wait_ready(admin, procs[k], name, work)
        for k in kinds:
            if k.startswith("consent-"):
                want = big_users if k.startswith("consent-1m") else 1000
                C.wait_for(f"{k} snapshot", lambda p=ports_admin[k], w=want: C.stat(p, "consent_snapshot_users") == w,
                           300, [(k, procs[k])])
        time.sleep(2)
        scripts = {k: C.wrk_script(work, f"h-{i}", big_users if k.startswith("consent-1m") else 1000, f"/{body}" if body else C.HEADER_PATH,
                                  C.BODY_PURPOSE if body else C.HEADER_PURPOSE) for i, k in enumerate(kinds)}
        rps = {k: [] for k in kinds}
        cpu = {k: [] for k in kinds}
        for _ in range(rounds):
            for k in kinds:
                before = cpu_seconds(procs[k].pid)
                out = C.wrk(ports[k], scripts[k], 3, 32)
                r = out["rps"] if isinstance(out, dict) else out
                rps[k].append(r)
                cpu[k].append((cpu_seconds(procs[k].pid) - before) / (r * 3) * 1e6)
        for k in kinds:
            print(f"{k:12s} req/s {[round(x) for x in rps[k]]} median {statistics.median(rps[k]):.0f}; "
                  f"CPU µs/request {[round(x, 1) for x in cpu[k]]} median {statistics.median(cpu[k]):.1f}")
    finally:
        for p in list(procs.values()) + [origin]:
            p.terminate()


if __name__ == "__main__":
    main()
