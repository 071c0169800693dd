#!/usr/bin/env python3
"""A bounded soak of the shipped demo setup: real Envoy (2 workers) with the consent filter,
the demo backend and the reference consent source, under a fixed request rate with body
redaction, while consents change every second (deltas and snapshot refreshes). Samples
Envoy's RSS; at the end checks that memory is flat after warm-up and that every answer was
an expected decision. Writes bench/results-soak.md. Run by `make soak` (not by `make test`).
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import free_port, rss_mb, start_envoy, wait_ready  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (method, path, headers, body, allowed statuses -> allowed reasons for non-200)
REQUESTS = [
    ("GET", "/echo?lat=35.86&page=2",
     {"x-user-id": "u-bob", "x-data-purpose": "service.improvement", "x-geo-position": "35.86,139.64"}, None),
    ("GET", "/echo", {"x-user-id": "u-bob", "x-data-purpose": "surveys"}, None),
    ("GET", "/users/u-alice/profile", {"x-user-id": "u-alice", "x-data-purpose": "marketing.newsletters"}, None),
    ("GET", "/users", {"x-user-id": "u-alice", "x-data-purpose": "marketing.newsletters"}, None),
    ("GET", "/history?n=200", {"x-user-id": "u-bob", "x-data-purpose": "service.improvement"}, None),
    ("POST", "/echo", {"x-user-id": "u-bob", "x-data-purpose": "service.improvement",
                       "content-type": "application/json"},
     json.dumps({"email": "b@example.jp", "gps": {"lat": 35.8617, "lng": 139.6455},
                 "items": [{"n": i, "note": "x" * 40} for i in range(40)]}).encode()),
    ("GET", "/echo", {"x-user-id": "u-carol", "x-data-purpose": "support.inquiries"}, None),
]
EXPECTED_REASONS = {"consent_missing", "use_stopped", "consent_withdrawn"}


def localise(yaml, ports, wasm):
    for old, new in [("10000", ports["listen"]), ("9901", ports["admin"]),
                     ("8081", ports["backend"]), ("8082", ports["source"])]:
        yaml = yaml.replace(f"port_value: {old}", f"port_value: {new}")
    yaml = yaml.replace("filename: target/wasm32-wasip1/release/consent_filter.wasm", f"filename: {wasm}")
    # The soak measures the filter, not log volume: decision logs sampled at 1%.
    return yaml.replace('"sample_rate": 1.0', '"sample_rate": 0.01')


class Load(threading.Thread):
    """One keep-alive connection sending REQUESTS round-robin at `rate` requests/s."""

    def __init__(self, port, rate, stop, offset):
        super().__init__(daemon=True)
        self.port, self.rate, self.stop, self.i = port, rate, stop, offset
        self.counts, self.unexpected, self.latencies = {}, [], []

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        period, next_at = 1.0 / self.rate, time.time()
        while not self.stop.is_set():
            kind = self.i % len(REQUESTS)
            method, path, headers, body = REQUESTS[kind]
            self.i += 1
            start = time.time()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status
            except OSError as e:
                status, data = 0, str(e).encode()
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self.latencies.append(time.time() - start)
            key = str(status)
            if status == 403:
                try:
                    reason = json.loads(data).get("reason", "?")
                except ValueError:
                    reason = "?"
                key = f"403 {reason}"
                if reason not in EXPECTED_REASONS:
                    self.unexpected.append(key)
            elif status != 200:
                self.unexpected.append(f"{status} {method} {path} after {time.time() - start:.1f}s: {data[:120]!r}")
            self.counts[key] = self.counts.get(key, 0) + 1
            next_at += period
            time.sleep(max(0.0, next_at - time.time()))


def churn(source_port, stop, changes):
    """Grants and withdraws a consent every second at the source: deltas keep flowing."""
    on = False
    while not stop.is_set():
        method = "DELETE" if on else "PUT"
        req = urllib.request.Request(
            f"http://127.0.0.1:{source_port}/users/u-dave/grants/surveys", method=method)
        try:
            urllib.request.urlopen(req, timeout=2).read()
            changes[0] += 1
        except OSError:
            pass
        on = not on
        stop.wait(1.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--envoy", default=os.path.join(ROOT, ".venv/bin/envoy"))
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--rate", type=int, default=400, help="requests per second in total")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results-soak.md"))
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="consent-soak-")
    ports = {k: free_port() for k in ("listen", "admin", "backend", "source")}
    wasm = os.path.join(ROOT, "target/wasm32-wasip1/release/consent_filter.wasm")
    procs = []
    try:
        procs.append(subprocess.Popen(
            [os.path.join(ROOT, "target/debug/demo-backend"), f"127.0.0.1:{ports['backend']}"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        # The demo config requires snapshots signed with the demo key: the source signs with it.
        signing = ["--signing-key", os.path.join(ROOT, "envoy-config/demo-signing/minisign.key")]
        procs.append(subprocess.Popen(
            [os.path.join(ROOT, "target/debug/consent-source"), "--listen", f"127.0.0.1:{ports['source']}",
             "--db", ":memory:", "--seed", os.path.join(ROOT, "envoy-config/demo-consents.json"),
             "--demo-allow-loopback"] + signing,
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with open(os.path.join(ROOT, "envoy-config/envoy-demo.yaml")) as f:
            text = f.read()
        yaml = localise(text, ports, wasm)
        envoy = start_envoy(args.envoy, yaml, work, "envoy", 2)
        procs.append(envoy)
        wait_ready(ports["admin"], envoy, "envoy", work)
        time.sleep(2)  # first snapshot

        stop = threading.Event()
        loads = [Load(ports["listen"], args.rate / args.connections, stop, i)
                 for i in range(args.connections)]
        changes = [0]
        churner = threading.Thread(target=churn, args=(ports["source"], stop, changes), daemon=True)
        for t in loads + [churner]:
            t.start()
        samples, start = [], time.time()
        while time.time() - start < args.seconds:
            time.sleep(5)
            samples.append((round(time.time() - start), rss_mb(envoy.pid)))
            print(f"  t={samples[-1][0]:4d}s rss={samples[-1][1]:.1f} MB", flush=True)
        stop.set()
        for t in loads:
            t.join(timeout=15)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()

    counts, unexpected, lat = {}, [], []
    for t in loads:
        for k, v in t.counts.items():
            counts[k] = counts.get(k, 0) + v
        unexpected += t.unexpected
        lat += t.latencies
    total = sum(counts.values())
    after = [r for (t, r) in samples if t >= args.warmup]
    first, last = (after[0], after[-1]) if after else (0.0, 0.0)
    growth = last - first
    lat.sort()
    p50 = lat[len(lat) // 2] * 1000 if lat else 0
    p99 = lat[int(len(lat) * 0.99)] * 1000 if lat else 0
    flat = abs(growth) <= max(5.0, 0.05 * first)
    with open("/proc/cpuinfo") as f:
        cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    lines = [
        "# Soak", "",
        f"`make soak` on {cpu}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"Envoy 1.40 (2 workers) with the shipped demo config (decision logs sampled at 1%), "
        f"{args.seconds} s at {args.rate} req/s over {args.connections} keep-alive connections, "
        f"{len(REQUESTS)} request kinds round-robin (headers and query stripping, a block, response "
        f"bodies incl. a multi-subject list and a 200-transaction history, a JSON request body), "
        f"one consent change at the source every second ({changes[0]} changes: deltas and refreshes).",
        "",
        f"- requests: {total} ({total / max(1, args.seconds):.0f}/s achieved); latency p50 {p50:.2f} ms, p99 {p99:.2f} ms",
        f"- answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())),
        f"- unexpected answers: {len(unexpected)}" + (f" (first: {unexpected[:3]})" if unexpected else ""),
        f"- Envoy RSS after {args.warmup} s warm-up: {first:.1f} MB, at the end: {last:.1f} MB "
        f"(change {growth:+.1f} MB): {'flat' if flat else 'GROWING'}",
        "", "| t (s) | RSS (MB) |", "|---|---|",
    ] + [f"| {t} | {r:.1f} |" for (t, r) in samples[:: max(1, len(samples) // 24)]]
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines[:8]))
    ok = not unexpected and flat and total > 0
    print("SOAK", "PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
