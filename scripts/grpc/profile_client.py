#!/usr/bin/env python3
"""A real gRPC client for the demo ProfileService behind Envoy (grpcio, plaintext HTTP/2).

    profile_client.py [--target 127.0.0.1:10000] --user U --purpose P get
    profile_client.py ... update [--json '{"email": "...", "gps": {"lat": .., "lng": ..}}']
    profile_client.py ... history [--limit N]
    profile_client.py ... get --compress        (gzip-compressed request message)
    profile_client.py ... raw --method /pkg.Service/Method --hex 3a03...
                                                 (any method, the request message as hex bytes)

Prints one JSON object: the gRPC status code and details, the decision header of a block
reply (`decision`), the decision header the backend received (`backend_saw_decision`, which
the demo service echoes), and the response message(s) as proto JSON. Exit code 0 when the call
succeeded, 3 when it ended with a non-OK gRPC status (the status is still printed).
"""
import argparse
import json
import os
import sys

import grpc
from google.protobuf import json_format

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "envoy-config", "grpc"))
protos, services = grpc.protos_and_services("saitama/v1/profile.proto")

DEFAULT_UPDATE = {
    "user_id": "u-bob",
    "name": "埼玉 太郎",
    "email": "taro@example.jp",
    "phone": "048-111-1111",
    "gps": {"lat": 35.8617, "lng": 139.6455},
    "device_id": "dev-9999",
    "note": "hello",
}


def as_dict(message):
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:10000")
    parser.add_argument("--user", help="x-user-id metadata")
    parser.add_argument("--purpose", help="x-data-purpose metadata")
    parser.add_argument("--header", action="append", default=[], help="extra metadata NAME=VALUE")
    parser.add_argument("--compress", action="store_true", help="gzip the request messages")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("call", choices=["get", "update", "history", "raw"])
    parser.add_argument("--method", help="raw: the method path, /package.Service/Method")
    parser.add_argument("--hex", default="", help="raw: the request message bytes, in hex")
    parser.add_argument("--json", help="update: the Profile to send, as proto JSON")
    parser.add_argument("--limit", type=int, default=3, help="history: transactions to stream")
    args = parser.parse_args()

    metadata = []
    if args.user:
        metadata.append(("x-user-id", args.user))
    if args.purpose:
        metadata.append(("x-data-purpose", args.purpose))
    for item in args.header:
        name, _, value = item.partition("=")
        metadata.append((name.lower(), value))
    compression = grpc.Compression.Gzip if args.compress else None

    out = {"code": "OK", "details": "", "decision": None, "backend_saw_decision": None,
           "messages": []}
    with grpc.insecure_channel(args.target) as channel:
        stub = services.ProfileServiceStub(channel)
        try:
            if args.call == "get":
                reply, call = stub.GetProfile.with_call(
                    protos.ProfileRequest(user_id=args.user or ""), metadata=metadata,
                    timeout=args.timeout, compression=compression)
                out["messages"].append(as_dict(reply))
            elif args.call == "update":
                profile = json_format.ParseDict(
                    json.loads(args.json) if args.json else DEFAULT_UPDATE, protos.Profile())
                reply, call = stub.UpdateProfile.with_call(
                    profile, metadata=metadata, timeout=args.timeout, compression=compression)
                out["messages"].append(as_dict(reply))
            elif args.call == "raw":
                method = channel.unary_unary(
                    args.method, request_serializer=None, response_deserializer=None)
                reply, call = method.with_call(
                    bytes.fromhex(args.hex), metadata=metadata, timeout=args.timeout,
                    compression=compression)
                out["messages"].append({"raw_hex": reply.hex()})
            else:
                call = stub.ListHistory(
                    protos.HistoryRequest(user_id=args.user or "", limit=args.limit),
                    metadata=metadata, timeout=args.timeout, compression=compression)
                for tx in call:
                    out["messages"].append(as_dict(tx))
            headers = dict(call.initial_metadata() or ())
            out["decision"] = headers.get("x-consent-decision")
            out["backend_saw_decision"] = headers.get("x-backend-saw-decision")
        except grpc.RpcError as err:
            out["code"] = err.code().name
            out["details"] = err.details() or ""
            meta = dict((err.initial_metadata() or ()) + (err.trailing_metadata() or ()))
            out["decision"] = meta.get("x-consent-decision")
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0 if out["code"] == "OK" else 3


if __name__ == "__main__":
    sys.exit(main())
