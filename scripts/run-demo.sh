#!/usr/bin/env bash
# Starts the demo backend, the demo gRPC service, the consent source and real Envoy with
# the consent filter, in the foreground. Ctrl-C stops them all. Used by `make run`, and by
# `make run-native` with ENVOY_CONFIG=envoy-config/envoy-native.yaml (the native module,
# found on ENVOY_DYNAMIC_MODULES_SEARCH_PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
ENVOY="${ENVOY:-.venv/bin/envoy}"
ENVOY_CONFIG="${ENVOY_CONFIG:-envoy-config/envoy-demo.yaml}"

pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

target/debug/demo-backend 127.0.0.1:8081 &
pids+=($!)

# The demo gRPC service (saitama.v1.ProfileService, grpcio in .venv), behind Envoy's
# /saitama.v1.ProfileService/ route.
.venv/bin/python scripts/grpc/profile_service.py --listen 127.0.0.1:8083 &
pids+=($!)

# The reference consent source, with its SQLite database under .run/ (seeded on first start).
# --demo-allow-loopback: the demo's curl lines and Envoy's fetcher call it from this machine
# without a token (it says so loudly at start). Everywhere else the source needs --config
# with tokens or client identities; see README, "Reference consent source".
# The demo's ledger key (a demo value, not a secret) turns on the provision ledger and the
# disclosure report: http://127.0.0.1:8082/users/u-alice/disclosure?format=html
# It signs what it serves with the demo's (DEMO ONLY) key, whose public key the demo config
# trusts (snapshot.public_key, require_signature).
mkdir -p .run
CONSENT_LEDGER_SUBJECT_KEY=demo-ledger-key-not-a-secret \
target/debug/consent-source --listen 127.0.0.1:8082 --db .run/consent-source.sqlite \
  --seed envoy-config/demo-consents.json --demo-allow-loopback \
  --signing-key envoy-config/demo-signing/minisign.key &
pids+=($!)

cat <<'MSG'
---------------------------------------------------------------------------
Envoy with the consent filter: http://127.0.0.1:10000   admin: http://127.0.0.1:9901
Consent source (SQLite, .run/consent-source.sqlite):  http://127.0.0.1:8082
gRPC demo service (saitama.v1.ProfileService) behind Envoy, backend on :8083:
  .venv/bin/python scripts/grpc/profile_client.py --user u-bob --purpose service.improvement get
Demo users: u-alice (newsletters, service improvement + GPS), u-bob (nothing),
            u-carol (asked to stop use). Try the curl lines in README.md.
Ctrl-C stops everything.
---------------------------------------------------------------------------
MSG

"$ENVOY" -c "$ENVOY_CONFIG" --concurrency 2 --disable-hot-restart \
  --log-level warning --component-log-level wasm:info,dynamic_modules:info &
pids+=($!)
wait -n "${pids[@]}"
