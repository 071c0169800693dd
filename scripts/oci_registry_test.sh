#!/usr/bin/env bash
# Pushes the OCI image layout to a throwaway local registry and pulls it back the way a
# registry client does (`make oci-registry-test`):
#   Debian's docker-registry (CNCF distribution 2.8) on a free loopback port, storage under
#   target/oci/registry; `skopeo copy oci:... docker://...` (the documented push command);
#   `skopeo inspect docker://...`; scripts/check_oci_image.py --registry (manifest by tag,
#   blobs by digest, same checks as for the layout). The registry is stopped by its PID.
# Usage: scripts/oci_registry_test.sh LAYOUT_DIR TAG WASM
set -euo pipefail
cd "$(dirname "$0")/.."
layout="$1"; tag="$2"; wasm="$3"

work=target/oci/registry
rm -rf "$work"; mkdir -p "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
cat > "$work/config.yml" <<EOF
version: 0.1
log: { level: warn }
storage: { filesystem: { rootdirectory: $(pwd)/$work/data } }
http: { addr: 127.0.0.1:$port }
EOF

docker-registry serve "$work/config.yml" > "$work/registry.log" 2>&1 &
reg_pid=$!
cleanup() { kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 50); do python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "http://127.0.0.1:$port/v2/" 2>/dev/null && break; sleep 0.1; done

ref="127.0.0.1:$port/consent-filter/consent-filter:$tag"
digest=$(skopeo inspect --format '{{.Digest}}' "oci:$layout:$tag")
skopeo copy --quiet --dest-tls-verify=false "oci:$layout:$tag" "docker://$ref"
pushed=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$ref")
echo "pushed $ref: $pushed (layout: $digest)"
[ "$pushed" = "$digest" ] || { echo "BAD the registry holds another manifest digest"; exit 1; }
python3 scripts/check_oci_image.py --registry "http://$ref" --wasm "$wasm" --digest "$digest"
