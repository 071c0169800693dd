#!/usr/bin/env bash
# Test certificates for deploy/envoy/envoy-sidecar.yaml (`make deploy-certs`): a CA, the
# sidecar's server certificate and client certificates for callers, with SPIFFE URI SANs in
# the shipped policy's trust domain (spiffe://minna-app.example/ns/<party>/...). For
# `envoy --mode validate` (which reads and parses every certificate file) and local tests
# only: a real sidecar mounts certificates issued by the mesh's CA.
# Usage: scripts/deploy_test_certs.sh [OUT_DIR]   (default target/deploy-tls; idempotent)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/deploy-tls}"
if [ -s "$out/ca.pem" ] && [ -s "$out/server.pem" ] && [ -s "$out/outsider.pem" ]; then
  exit 0
fi
mkdir -p "$out"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/O=minna-app.example/CN=consent-filter test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$out/ca-key.pem" -out "$out/ca.pem" 2>/dev/null

# name  URI SAN  extended key usage
issue() {
  local name="$1" uri="$2" eku="$3"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/O=minna-app.example/CN=$name" -keyout "$out/$name-key.pem" -out "$tmp/$name.csr" 2>/dev/null
  printf 'subjectAltName=URI:%s\nextendedKeyUsage=%s\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' \
    "$uri" "$eku" > "$tmp/$name.ext"
  openssl x509 -req -in "$tmp/$name.csr" -CA "$out/ca.pem" -CAkey "$out/ca-key.pem" \
    -CAcreateserial -CAserial "$tmp/ca.srl" -days 825 -extfile "$tmp/$name.ext" -out "$out/$name.pem" 2>/dev/null
}

# The sidecar of the application (server side of the mTLS listener, client of the source).
issue server "spiffe://minna-app.example/ns/minna-app/sa/minna-app-api" "serverAuth,clientAuth"
# Callers: the operator's backend, a joint user, and a service no party claims.
issue tsunagu "spiffe://minna-app.example/ns/tsunagu/sa/bff" clientAuth
issue saitama-city "spiffe://minna-app.example/ns/saitama-city/sa/portal" clientAuth
issue outsider "spiffe://minna-app.example/ns/adtech/sa/collector" clientAuth
chmod 600 "$out"/*-key.pem
echo "test certificates in $out"
