#!/usr/bin/env python3
"""The demo gRPC backend: saitama.v1.ProfileService (envoy-config/grpc/saitama/v1/profile.proto)
served with grpcio over plaintext HTTP/2, behind Envoy and the consent filter.

- GetProfile returns a profile holding every data category of the shipped policy.
- UpdateProfile returns the profile it received, so a client sees what reached the backend
  (the response then passes the filter again).
- ListHistory streams N transactions, each with a merchant, an amount and a GPS position.

With --seen FILE every request message the backend received is appended to FILE as one
JSON line ({"method": ..., "metadata": {...}, "message": {...}}): the end-to-end tests read
what the backend saw from there. Used by `make run` (port 8083) and tests/e2e_grpc.rs.
"""
import argparse
import json
import os
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf import json_format

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.join(HERE, "..", "..", "envoy-config", "grpc")
sys.path.insert(0, PROTO_ROOT)
protos, services = grpc.protos_and_services("saitama/v1/profile.proto")


def demo_profile(user_id):
    """Invented personal data of every category (the JSON demo backend's profile)."""
    return protos.Profile(
        user_id=user_id,
        name="埼玉 花子",
        birth_date="1990-04-01",
        gender="female",
        address="埼玉県さいたま市浦和区高砂3-1-1",
        phone="048-000-0000",
        email="hanako@example.jp",
        device_id="dev-7f3a9c",
        os_info="iOS 18.1",
        gps=protos.Location(lat=35.8617, lng=139.6455),
        wifi_bssid="00:11:22:33:44:55",
        beacon_id="beacon-0042",
        device_model="iPhone15,2",
        history=[transaction(i) for i in range(3)],
        attributes={"language": "ja", "ward": "浦和区"},
        note="demo profile",
        usage_log=["2026-11-01 login", "2026-11-02 coupon"],
        cookie="ck-12345",
        inquiries="question about points",
        device=protos.Device(device_id="dev-7f3a9c", os_info="iOS 18.1", device_model="iPhone15,2"),
    )


def transaction(i):
    """One invented transaction."""
    return protos.Transaction(
        id=f"tx-{i:06d}",
        date=f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}",
        amount=100 + (i * 37) % 9000,
        merchant=f"merchant-{i % 97}",
        category="food",
        gps=protos.Location(lat=35.8 + (i % 100) * 0.0011, lng=139.6 + (i % 50) * 0.0013),
        points=i % 5,
    )


class Seen:
    """Appends what the backend received to a JSON-lines file (or nowhere)."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def record(self, method, context, message):
        if not self.path:
            return
        line = {
            "method": method,
            "metadata": {k: v for k, v in context.invocation_metadata() if not k.endswith("-bin")},
            "message": json_format.MessageToDict(message, preserving_proto_field_name=True),
        }
        with self.lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


def echo_decision(context):
    """Tells the client what the filter told the backend (x-backend-saw-decision)."""
    seen = dict(context.invocation_metadata()).get("x-consent-decision", "")
    context.send_initial_metadata((("x-backend-saw-decision", seen),))


class ProfileService(services.ProfileServiceServicer):
    """The demo service."""

    def __init__(self, seen):
        self.seen = seen

    def GetProfile(self, request, context):
        self.seen.record("GetProfile", context, request)
        echo_decision(context)
        return demo_profile(request.user_id or "u-demo")

    def UpdateProfile(self, request, context):
        self.seen.record("UpdateProfile", context, request)
        echo_decision(context)
        return request

    def ListHistory(self, request, context):
        self.seen.record("ListHistory", context, request)
        echo_decision(context)
        for i in range(max(0, min(request.limit or 3, 100_000))):
            yield transaction(i)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8083", help="address to serve on")
    parser.add_argument("--seen", help="append every received request to this JSON-lines file")
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    services.add_ProfileServiceServicer_to_server(ProfileService(Seen(args.seen)), server)
    port = server.add_insecure_port(args.listen)
    if port == 0:
        print(f"profile_service: cannot listen on {args.listen}", file=sys.stderr)
        return 1
    server.start()
    print(f"profile_service: serving saitama.v1.ProfileService on port {port}", flush=True)
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
