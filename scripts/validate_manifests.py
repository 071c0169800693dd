#!/usr/bin/env python3
"""Validates the deployment manifests under deploy/ (`make validate-deploy`).

    .venv/bin/python scripts/validate_manifests.py --deploy deploy --out target/deploy-validate \
        --envoy .venv/bin/envoy --wasm target/wasm32-wasip1/release/consent_filter.wasm

1. Every Kubernetes object in deploy/{consent-source,istio,envoy-gateway}/*.yaml against its
   published schema, strictly (unknown fields are errors, as with
   `kubectl apply --validate=strict`):
   - core kinds (Deployment, Service, ...) with the schemas bundled in the PyPI package
     kubernetes-validate (strict variant), for each Kubernetes version in --k8s-versions;
   - custom resources with the CRDs' openAPIV3Schema stored in deploy/schemas/ (see its
     README), read as JSON Schema: OpenAPI `nullable` becomes a null type, objects with
     `properties` and no `additionalProperties` / `x-kubernetes-preserve-unknown-fields` get
     `additionalProperties: false` (the API server prunes or, strictly, rejects unknown
     fields), and `metadata` is checked against Kubernetes' ObjectMeta. CEL rules
     (`x-kubernetes-validations`) cannot be evaluated here: they are counted, not checked.
2. Every plugin configuration embedded in a manifest (WasmPlugin pluginConfig,
   EnvoyExtensionPolicy wasm[].config, the EnvoyFilter's StringValue, the plain-Envoy
   configs) is written to <out>/configs/*.json with an index.txt, as the filter will receive
   it (a WasmPlugin's pluginConfig goes through a protobuf Struct and istiod's
   protomarshal.ToJSON, so its numbers are doubles written like Go's encoding/json does). The Rust test
   crates/consent-core/tests/deploy_configs.rs then compiles each with consent-core.
   Keys written `{"env": "NAME"}` are resolved with test values (<out>/configs/env.json), and
   every NAME must be declared for the VM that reads it: a WasmPlugin's `vmConfig.env`
   (HOST: in the istio-proxy container's env of the selected Deployment, from a Secret), an
   EnvoyExtensionPolicy's `env.hostKeys` (in the EnvoyProxy's container env, from a Secret,
   used by the Gateway), a vm_config's `environment_variables` (EnvoyFilter, plain Envoy).
3. Deployment rules the schemas cannot express: every config keys subjects with
   hmac_sha256, reads its secrets from the environment (never inline) and requires signed
   snapshots (`public_key`, `require_signature: true`); mesh/gateway configs use a shared snapshot
   with `fetcher: worker_lease`, no `caller.unidentified_party` / `dev_header`,
   `caller.identities` for every party of the shipped policy, `failure_mode: block`;
   failStrategy FAIL_CLOSE / failOpen false; the WasmPlugin's and the EnvoyFilter's configs
   are equal; `snapshot.cluster` names the consent-source Service (Istio outbound cluster
   name) or the cluster the EnvoyPatchPolicy adds; the EnvoyPatchPolicy's listener and filter
   names are the ones Envoy Gateway generates for this Gateway and EnvoyExtensionPolicy.
4. With --envoy: the Envoy fragments of the Kubernetes manifests (the Wasm filter as Istio
   and Envoy Gateway generate it from the WasmPlugin / EnvoyExtensionPolicy, the
   EnvoyFilter's extension config, the EnvoyPatchPolicy's cluster) go into a minimal Envoy config under
   <out>/envoy/ with the local .wasm and run through `envoy --mode validate`, so Envoy's own
   proto validation and the filter's on_configure see them.
Exit 1 on any failure, listing all of them.
"""

from __future__ import annotations

import argparse
import copy
import glob
import json
import math
import os
import re
import subprocess
import sys
from typing import Any, Iterator

import jsonschema
import kubernetes_validate
import referencing
import yaml
from importlib_resources import files

MANIFEST_DIRS = ("consent-source", "istio", "envoy-gateway")
POLICY_PARTIES = ("tsunagu", "felica-pocket-marketing", "saitama-city", "aeon-financial-service")
WASM_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
# The variables the manifests deliver the filter's secrets in (from Kubernetes Secrets).
SECRET_VARIABLES = ("CONSENT_SUBJECT_KEY_SECRET", "CONSENT_PSEUDONYMISATION_KEY")


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.cel_rules = 0
        self.cel_reached = 0

    def ok(self, msg: str) -> None:
        print(f"OK   {msg}")

    def bad(self, msg: str) -> None:
        print(f"BAD  {msg}")
        self.failures.append(msg)

    def check(self, cond: bool, ok_msg: str, bad_msg: str) -> None:
        if cond:
            self.ok(ok_msg)
        else:
            self.bad(bad_msg)


# ---- schemas --------------------------------------------------------------------------------

def strict_openapi(node: Any, report: Report) -> Any:
    """OpenAPI v3 structural schema (CRD) -> JSON Schema with strict unknown-field handling."""
    if isinstance(node, list):
        return [strict_openapi(n, report) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k == "properties":
            out[k] = {name: strict_openapi(s, report) for name, s in v.items()}
        elif k == "x-kubernetes-validations":
            report.cel_rules += len(v)
            out[k] = v
        else:
            out[k] = strict_openapi(v, report)
    if out.get("nullable") is True and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


class Schemas:
    def __init__(self, schema_dir: str, report: Report):
        self.crds: dict[tuple[str, str], Any] = {}
        for path in sorted(glob.glob(os.path.join(schema_dir, "*.json"))):
            group, version, kind = os.path.basename(path)[: -len(".json")].split("_")
            with open(path, encoding="utf-8") as f:
                schema = strict_openapi(json.load(f), report)
            # apiVersion / kind are implicit in every object (some CRDs do not list them);
            # metadata: Kubernetes' ObjectMeta (strict), as the API server checks it.
            props = schema.setdefault("properties", {})
            props["apiVersion"] = {"type": "string", "enum": [f"{group}/{version}"]}
            # (file names hold the kind in lower case; the API matches kinds exactly, the
            # lookup below already required the same kind ignoring case)
            props["kind"] = {"type": "string", "pattern": f"^(?i:{re.escape(kind)})$"}
            props["metadata"] = {
                "$ref": "https://kubernetes.io/api/_definitions.json"
                "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
            }
            schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
            self.crds[(f"{group}/{version}", kind.lower())] = schema
        latest = kubernetes_validate.utils.latest_version()
        defs_path = files("kubernetes_validate").joinpath(
            f"kubernetes-json-schema/v{latest}-local-strict/_definitions.json"
        )
        with defs_path.open(encoding="utf-8") as f:
            defs = json.load(f)
        self.registry = referencing.Registry().with_resource(
            "https://kubernetes.io/api/_definitions.json",
            referencing.Resource.from_contents(defs),
        )

    def crd(self, api_version: str, kind: str) -> Any | None:
        return self.crds.get((api_version, kind.lower()))


def validate_object(doc: dict, where: str, schemas: Schemas, k8s_versions: list[str], report: Report) -> None:
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    name = (doc.get("metadata") or {}).get("name")
    label = f"{where}: {kind} {name}"
    crd = schemas.crd(api_version, kind) if isinstance(kind, str) else None
    if crd is not None:
        report.cel_reached += sum(1 for _ in reached_cel_rules(crd, doc))
        validator = jsonschema.Draft7Validator(crd, registry=schemas.registry)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            for e in errors[:10]:
                path = "/".join(str(p) for p in e.absolute_path) or "(root)"
                report.bad(f"{label}: {path}: {e.message[:300]}")
        else:
            report.ok(f"{label}: schema of {api_version} {kind} (deploy/schemas, strict)")
        return
    for version in k8s_versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            report.bad(f"{label}: no schema for {api_version} {kind} (neither a core kind "
                       f"nor a CRD in deploy/schemas)")
            return
        except kubernetes_validate.ValidationError as e:
            path = "/".join(str(p) for p in e.absolute_path) or "(root)"
            report.bad(f"{label}: Kubernetes {version}: {path}: {e.message[:300]}")
            return
    report.ok(f"{label}: Kubernetes {', '.join(k8s_versions)} schema (kubernetes-validate, strict)")


def reached_cel_rules(schema: Any, doc: Any, path: str = "") -> Iterator[tuple[str, str, str]]:
    """The CEL rules (x-kubernetes-validations) of the schema nodes a document reaches."""
    if not isinstance(schema, dict):
        return
    for rule in schema.get("x-kubernetes-validations", []):
        yield path or "/", rule.get("rule", ""), rule.get("message", "")
    if isinstance(doc, dict):
        for k, v in doc.items():
            sub = schema.get("properties", {}).get(k)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub is not None:
                yield from reached_cel_rules(sub, v, f"{path}/{k}")
    elif isinstance(doc, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(doc):
            yield from reached_cel_rules(schema["items"], v, f"{path}[{i}]")


# ---- plugin configurations ------------------------------------------------------------------

def go_protojson_struct(value: Any) -> str:
    """JSON as Istio hands a WasmPlugin's pluginConfig (a protobuf Struct, marshalled by
    istiod's protomarshal.ToJSON, i.e. golang/protobuf jsonpb) to the filter: every number is a
    double, written as Go's encoding/json writes float64 (integral values without a fraction,
    exponent only from 1e21 or below 1e-6)."""
    def conv(v: Any) -> Any:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, (int, float)):
            return GoNumber(float(v))
        if isinstance(v, list):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        raise TypeError(f"not JSON: {type(v)}")

    class Enc(json.JSONEncoder):
        def iterencode(self, o: Any, _one_shot: bool = False) -> Iterator[str]:
            yield from _encode(o)

    def _encode(o: Any) -> Iterator[str]:
        if isinstance(o, GoNumber):
            yield o.text()
        elif isinstance(o, dict):
            yield "{"
            for i, (k, v) in enumerate(o.items()):
                if i:
                    yield ","
                yield json.dumps(k, ensure_ascii=False)
                yield ":"
                yield from _encode(v)
            yield "}"
        elif isinstance(o, list):
            yield "["
            for i, v in enumerate(o):
                if i:
                    yield ","
                yield from _encode(v)
            yield "]"
        else:
            yield json.dumps(o, ensure_ascii=False)

    return "".join(Enc().iterencode(conv(value)))


class GoNumber:
    def __init__(self, f: float):
        if math.isnan(f) or math.isinf(f):
            raise ValueError("NaN/Inf cannot be in a Struct")
        self.f = f

    def text(self) -> str:
        a = abs(self.f)
        if a != 0 and (a < 1e-6 or a >= 1e21):
            return repr(self.f)  # exponent form; not used by our configs
        if self.f.is_integer():
            return str(int(self.f))
        return repr(self.f)


class Configs:
    def __init__(self, out_dir: str):
        self.dir = os.path.join(out_dir, "configs")
        os.makedirs(self.dir, exist_ok=True)
        for old in glob.glob(os.path.join(self.dir, "*")):
            os.remove(old)
        self.entries: list[tuple[str, str]] = []  # (file name, origin)
        self.parsed: dict[str, dict] = {}
        self.env: dict[str, str] = {}  # variable -> the test value configs resolve it to

    def add(self, key: str, origin: str, text: str) -> dict:
        fname = re.sub(r"[^A-Za-z0-9_.-]+", "_", key) + ".json"
        with open(os.path.join(self.dir, fname), "w", encoding="utf-8") as f:
            f.write(text)
        self.entries.append((fname, origin))
        doc = json.loads(text)
        self.parsed[key] = doc
        return doc

    def write_index(self) -> None:
        with open(os.path.join(self.dir, "index.txt"), "w", encoding="utf-8") as f:
            for fname, origin in self.entries:
                f.write(f"{fname}\t{origin}\n")
        with open(os.path.join(self.dir, "env.json"), "w", encoding="utf-8") as f:
            json.dump(self.env, f, indent=1, sort_keys=True)


# ---- keys from the environment --------------------------------------------------------------

def test_value(name: str) -> str:
    """What validation resolves a secret variable to: test-only, long enough for any key."""
    return f"validate-only-{name.lower()}-0123456789abcdef"


def env_refs(node: Any) -> list[str]:
    """Every variable a configuration reads through `{"env": "NAME"}`."""
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            return [node["env"]]
        return [n for v in node.values() for n in env_refs(v)]
    if isinstance(node, list):
        return [n for v in node for n in env_refs(v)]
    return []


def key_rules(cfg: dict, label: str, declared: dict[str, str], configs: Configs, report: Report) -> None:
    """Subjects keyed by HMAC, secrets from the VM's environment (declared for this VM), and
    signed snapshots required. `declared`: variable -> its test value (inline VM values as
    they are)."""
    snap = cfg.get("snapshot") or {}
    report.check(snap.get("subject_key") == "hmac_sha256", f"{label}: snapshot.subject_key hmac_sha256",
                 f"{label}: snapshot.subject_key must be hmac_sha256 (raw user IDs must not reach the sidecars)")
    for field, value in (("snapshot.subject_key_secret", snap.get("subject_key_secret")),
                         ("pseudonymisation_key", cfg.get("pseudonymisation_key")),
                         ("decision_log.subject_key_secret", (cfg.get("decision_log") or {}).get("subject_key_secret"))):
        if value is None and field != "snapshot.subject_key_secret":
            continue
        report.check(isinstance(value, dict) and "env" in value, f"{label}: {field} from the environment",
                     f"{label}: {field} must be {{\"env\": \"NAME\"}} (a key from a Secret), not inline")
    report.check(isinstance(snap.get("public_key"), (str, dict)) and snap.get("require_signature") is True,
                 f"{label}: signed snapshots required (public_key, require_signature: true)",
                 f"{label}: snapshot.public_key and \"require_signature\": true are required")
    for name in env_refs(cfg):
        report.check(name in declared, f"{label}: variable {name} is declared for the VM",
                     f"{label}: {{\"env\": \"{name}\"}} is not in the VM's environment "
                     f"(declared: {sorted(declared) or 'none'})")
        if name in declared:
            configs.env[name] = declared[name]


def secret_env(container: dict | None) -> dict[str, dict]:
    """A container's env entries that come from a Secret: name -> secretKeyRef."""
    out = {}
    for e in (container or {}).get("env", []) or []:
        ref = ((e.get("valueFrom") or {}).get("secretKeyRef")) or None
        if ref and ref.get("name") and ref.get("key"):
            out[e["name"]] = ref
    return out


def vm_env(vm_config: dict) -> dict[str, str]:
    """A vm_config's environment_variables: host keys get test values, key_values as given."""
    ev = vm_config.get("environment_variables") or {}
    out = {k: test_value(k) for k in ev.get("host_env_keys", [])}
    out.update(ev.get("key_values") or {})
    return out


def wasmplugin_env(spec: dict, docs: list[tuple[str, dict]], label: str, report: Report) -> dict[str, str]:
    """A WasmPlugin's vmConfig.env; each HOST variable must be in the istio-proxy container env
    of a Deployment the plugin selects, from a Secret."""
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    proxies = []
    for _, d in find(docs, "Deployment"):
        labels = (((d.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
        if selector and all(labels.get(k) == v for k, v in selector.items()):
            containers = d["spec"]["template"]["spec"].get("containers", [])
            proxies += [c for c in containers if c.get("name") == "istio-proxy"]
    from_secret = {k: v for c in proxies for k, v in secret_env(c).items()}
    out = {}
    for e in (spec.get("vmConfig") or {}).get("env", []):
        if e.get("valueFrom", "INLINE") == "HOST":
            report.check(e["name"] in from_secret,
                         f"{label}: {e['name']} (HOST) comes from Secret {from_secret.get(e['name'], {}).get('name')} in the istio-proxy container",
                         f"{label}: {e['name']} (valueFrom HOST) is not set from a Secret on the istio-proxy "
                         f"container of a Deployment matching {selector}")
            out[e["name"]] = test_value(e["name"])
        else:
            out[e["name"]] = e.get("value", "")
    return out


def eg_env(w: dict, docs: list[tuple[str, dict]], gateways: list[dict], label: str, report: Report) -> dict[str, str]:
    """An EnvoyExtensionPolicy wasm entry's env.hostKeys; each must be in the container env of
    the EnvoyProxy a Gateway uses, from a Secret."""
    proxies = {}
    for gw in gateways:
        ref = ((gw.get("spec") or {}).get("infrastructure") or {}).get("parametersRef") or {}
        if ref.get("kind") == "EnvoyProxy":
            for _, p in find(docs, "EnvoyProxy", ref.get("name")):
                if p["metadata"].get("namespace") == gw["metadata"].get("namespace"):
                    container = (((p["spec"].get("provider") or {}).get("kubernetes") or {})
                                 .get("envoyDeployment") or {}).get("container")
                    proxies.update(secret_env(container))
    out = {}
    for key in (w.get("env") or {}).get("hostKeys", []):
        report.check(key in proxies,
                     f"{label}: {key} (hostKeys) comes from Secret {proxies.get(key, {}).get('name')} in the EnvoyProxy container",
                     f"{label}: env.hostKeys {key} is not set from a Secret in the container env of the "
                     f"EnvoyProxy the Gateway's infrastructure.parametersRef names")
        out[key] = test_value(key)
    return out


def mesh_rules(cfg: dict, label: str, report: Report) -> None:
    """Rules for configurations running inside Istio / Envoy Gateway (no bootstrap fetcher,
    callers identified by certificate)."""
    snap = cfg.get("snapshot") or {}
    caller = cfg.get("caller") or {}
    report.check(snap.get("source") == "shared", f"{label}: snapshot.source shared",
                 f"{label}: snapshot.source must be `shared`")
    report.check(snap.get("fetcher") == "worker_lease", f"{label}: snapshot.fetcher worker_lease",
                 f"{label}: snapshot.fetcher must be `worker_lease` (no bootstrap extension here)")
    report.check(snap.get("failure_mode", "block") == "block", f"{label}: failure_mode block",
                 f"{label}: snapshot.failure_mode must be `block`")
    report.check("unidentified_party" not in caller, f"{label}: no caller.unidentified_party",
                 f"{label}: caller.unidentified_party must not be set behind mTLS")
    report.check("dev_header" not in caller, f"{label}: no caller.dev_header",
                 f"{label}: caller.dev_header is for development only")
    missing = [p for p in POLICY_PARTIES if p not in (caller.get("identities") or {})]
    report.check(not missing, f"{label}: caller.identities names every party",
                 f"{label}: caller.identities lacks {missing}")


# ---- the checks per platform ----------------------------------------------------------------

def load_docs(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def find(docs: list[tuple[str, dict]], kind: str, name: str | None = None) -> list[tuple[str, dict]]:
    return [(w, d) for w, d in docs if d.get("kind") == kind
            and (name is None or (d.get("metadata") or {}).get("name") == name)]


def check_istio(docs: list[tuple[str, dict]], configs: Configs, report: Report) -> None:
    services = find(docs, "Service", "consent-source")
    expected_cluster = None
    if services:
        svc = services[0][1]
        port = next((p["port"] for p in svc["spec"]["ports"] if p.get("name") == "http"), None)
        ns = svc["metadata"]["namespace"]
        expected_cluster = f"outbound|{port}||consent-source.{ns}.svc.cluster.local"
    plugin_cfg = None
    for where, d in find(docs, "WasmPlugin"):
        spec, name = d["spec"], d["metadata"]["name"]
        label = f"{where}: WasmPlugin {name}"
        text = go_protojson_struct(spec.get("pluginConfig") or {})
        plugin_cfg = configs.add(f"istio.wasmplugin.{name}", label, text)
        report.check(spec.get("failStrategy") == "FAIL_CLOSE", f"{label}: failStrategy FAIL_CLOSE",
                     f"{label}: failStrategy must be FAIL_CLOSE")
        report.check(spec.get("phase") == "STATS", f"{label}: phase STATS (after authn and authz)",
                     f"{label}: phase must be STATS")
        report.check(str(spec.get("url", "")).startswith("oci://"), f"{label}: oci:// image",
                     f"{label}: url must be an oci:// image")
        mesh_rules(plugin_cfg, label, report)
        key_rules(plugin_cfg, label, wasmplugin_env(spec, docs, label, report), configs, report)
        cluster = (plugin_cfg.get("snapshot") or {}).get("cluster")
        report.check(cluster == expected_cluster, f"{label}: snapshot.cluster {cluster}",
                     f"{label}: snapshot.cluster {cluster!r} is not the consent-source Service's "
                     f"outbound cluster {expected_cluster!r}")
    for where, d in find(docs, "EnvoyFilter"):
        name = d["metadata"]["name"]
        label = f"{where}: EnvoyFilter {name}"
        ext = [p for p in d["spec"]["configPatches"] if p.get("applyTo") == "EXTENSION_CONFIG"]
        flt = [p for p in d["spec"]["configPatches"] if p.get("applyTo") == "HTTP_FILTER"]
        if len(ext) != 1 or len(flt) != 1:
            report.bad(f"{label}: expected one EXTENSION_CONFIG and one HTTP_FILTER patch")
            continue
        value = ext[0]["patch"]["value"]
        pc = value["typed_config"]["config"]
        cfg = configs.add(f"istio.envoyfilter.{name}", label, pc["configuration"]["value"])
        report.check(pc.get("allow_on_headers_stop_iteration") is True,
                     f"{label}: allow_on_headers_stop_iteration", f"{label}: needs allow_on_headers_stop_iteration")
        report.check(pc.get("failure_policy") == "FAIL_CLOSED", f"{label}: FAIL_CLOSED",
                     f"{label}: failure_policy must be FAIL_CLOSED")
        sha = pc["vm_config"]["code"]["remote"].get("sha256", "")
        report.check(bool(re.fullmatch(r"[0-9a-f]{64}", sha)), f"{label}: sha256 is 64 hex",
                     f"{label}: remote.sha256 must be 64 lowercase hex (Envoy requires it)")
        filter_name = flt[0]["patch"]["value"].get("name")
        report.check(filter_name == value.get("name"), f"{label}: HTTP filter refers to {filter_name}",
                     f"{label}: HTTP_FILTER name {filter_name!r} != extension config {value.get('name')!r}")
        mesh_rules(cfg, label, report)
        key_rules(cfg, label, vm_env(pc["vm_config"]), configs, report)
        if plugin_cfg is not None:
            # The WasmPlugin cannot hold headers (no allow_on_headers_stop_iteration), the
            # EnvoyFilter variant can: body.hold_headers is the one difference allowed.
            def without_hold(c):
                c = json.loads(json.dumps(c))
                if isinstance(c.get("body"), dict):
                    c["body"].pop("hold_headers", None)
                return c
            report.check(without_hold(cfg) == without_hold(plugin_cfg),
                         f"{label}: configuration equals the WasmPlugin's (but body.hold_headers)",
                         f"{label}: configuration differs from the WasmPlugin's pluginConfig")


def check_envoy_gateway(docs: list[tuple[str, dict]], configs: Configs, report: Report) -> None:
    patch_clusters: dict[str, dict] = {}
    listener_patches: list[dict] = []
    for _, d in find(docs, "EnvoyPatchPolicy"):
        for p in d["spec"].get("jsonPatches", []):
            op = p["operation"]
            if p["type"].endswith("config.cluster.v3.Cluster") and op["op"] == "add" and not op.get("path"):
                patch_clusters[op["value"]["name"]] = op["value"]
            if p["type"].endswith("config.listener.v3.Listener"):
                listener_patches.append(p)
    gateways = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for _, d in find(docs, "Gateway")}
    for where, d in find(docs, "EnvoyExtensionPolicy"):
        ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
        for i, w in enumerate(d["spec"].get("wasm", [])):
            label = f"{where}: EnvoyExtensionPolicy {name} wasm[{i}]"
            # Envoy Gateway passes the config's JSON text unchanged (StringValue).
            cfg = configs.add(f"envoy-gateway.{name}.wasm{i}", label, json.dumps(w.get("config") or {}))
            report.check(w.get("failOpen") is False, f"{label}: failOpen false",
                         f"{label}: failOpen must be false")
            report.check(w["code"]["type"] == "Image", f"{label}: code type Image",
                         f"{label}: code.type must be Image")
            mesh_rules(cfg, label, report)
            key_rules(cfg, label, eg_env(w, docs, list(gateways.values()), label, report), configs, report)
            cluster = (cfg.get("snapshot") or {}).get("cluster")
            report.check(cluster in patch_clusters, f"{label}: snapshot.cluster {cluster} is added by the EnvoyPatchPolicy",
                         f"{label}: snapshot.cluster {cluster!r} is not a cluster the EnvoyPatchPolicy adds")
            # The generated filter name and the listener it sits on.
            filter_name = f"envoy.filters.http.wasm/envoyextensionpolicy/{ns}/{name}/wasm/{i}"
            want_listeners = set()
            for ref in d["spec"].get("targetRefs", []):
                if ref["kind"] == "HTTPRoute":
                    for _, r in find(docs, "HTTPRoute", ref["name"]):
                        for parent in r["spec"].get("parentRefs", []):
                            gw = gateways.get((parent.get("namespace", r["metadata"]["namespace"]), parent["name"]))
                            for lis in (gw or {}).get("spec", {}).get("listeners", []):
                                if parent.get("sectionName") in (None, lis["name"]):
                                    want_listeners.add(f"{gw['metadata']['namespace']}/{gw['metadata']['name']}/{lis['name']}")
            patched = [p for p in listener_patches
                       if filter_name in p["operation"].get("jsonPath", "")
                       and p["operation"].get("path") == "allow_on_headers_stop_iteration"
                       and p["operation"].get("value") is True]
            report.check(
                bool(want_listeners) and want_listeners <= {p["name"] for p in patched},
                f"{label}: allow_on_headers_stop_iteration patched on {sorted(want_listeners)} ({filter_name})",
                f"{label}: no EnvoyPatchPolicy sets allow_on_headers_stop_iteration on {filter_name} "
                f"in listener(s) {sorted(want_listeners)}")
    services = find(docs, "Service", "consent-source")
    for cname, c in patch_clusters.items():
        sa = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        ok = any(sa["address"] == f"consent-source.{s['metadata']['namespace']}.svc.cluster.local"
                 and sa["port_value"] in [p["port"] for p in s["spec"]["ports"]] for _, s in services)
        report.check(ok, f"EnvoyPatchPolicy cluster {cname} -> {sa['address']}:{sa['port_value']} (the Service)",
                     f"EnvoyPatchPolicy cluster {cname} does not point at the consent-source Service")


def check_plain_envoy(deploy: str, configs: Configs, report: Report) -> None:
    for path in sorted(glob.glob(os.path.join(deploy, "envoy", "*.yaml"))):
        doc = load_docs(path)[0]
        label = os.path.relpath(path)
        seen = []
        for ext in doc.get("bootstrap_extensions", []):
            c = ext["typed_config"]["config"]
            seen.append(("bootstrap " + c["root_id"], c["configuration"]["value"], vm_env(c["vm_config"])))
        hcms = [f for lis in doc["static_resources"]["listeners"] for fc in lis["filter_chains"]
                for f in fc["filters"] if f["name"] == "envoy.filters.network.http_connection_manager"]
        for hcm in hcms:
            for hf in hcm["typed_config"]["http_filters"]:
                tc = hf.get("typed_config") or {}
                if tc.get("@type") == WASM_FILTER_TYPE:
                    seen.append(("filter " + tc["config"]["root_id"], tc["config"]["configuration"]["value"],
                                 vm_env(tc["config"]["vm_config"])))
                    report.check(tc["config"].get("allow_on_headers_stop_iteration") is True,
                                 f"{label}: filter has allow_on_headers_stop_iteration",
                                 f"{label}: filter needs allow_on_headers_stop_iteration")
        for i, (what, text, env) in enumerate(seen):
            cfg = configs.add(f"envoy.{os.path.basename(path)[:-5]}.{i}", f"{label}: {what}", text)
            key_rules(cfg, f"{label}: {what}", env, configs, report)
        texts = {t for _, t, _ in seen}
        report.check(len(texts) == 1, f"{label}: fetcher and filter share one configuration",
                     f"{label}: fetcher and filter configurations differ")


# ---- Envoy fragments ------------------------------------------------------------------------

def envoy_fragments(docs: list[tuple[str, dict]], out_dir: str, envoy: str, wasm: str, report: Report) -> None:
    frag_dir = os.path.join(out_dir, "envoy")
    os.makedirs(frag_dir, exist_ok=True)
    wasm_abs = os.path.abspath(wasm)
    jobs: list[tuple[str, dict]] = []
    for where, d in find(docs, "EnvoyFilter"):
        for p in d["spec"]["configPatches"]:
            if p.get("applyTo") != "EXTENSION_CONFIG":
                continue
            tc = copy.deepcopy(p["patch"]["value"]["typed_config"])
            # What the istio-agent does: remote (oci://) code -> a local file.
            tc["config"]["vm_config"]["code"] = {"local": {"filename": wasm_abs}}
            jobs.append((f"{where}: EnvoyFilter {d['metadata']['name']} extension config",
                         minimal_envoy(http_filter={"name": "consent", "typed_config": tc})))
    for where, d in find(docs, "WasmPlugin"):
        # The filter as Istio generates it (pilot/pkg/model/extensions.go): configuration =
        # the pluginConfig Struct as JSON, root_id = pluginName, failure_policy from
        # failStrategy, no vm_id, no allow_on_headers_stop_iteration.
        spec = d["spec"]
        policy = {"FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN",
                  "FAIL_RELOAD": "FAIL_RELOAD"}.get(spec.get("failStrategy", ""), "FAIL_CLOSED")
        # vmConfig.env: HOST -> host_env_keys, INLINE -> key_values (pkg/wasm/convert.go).
        env = (spec.get("vmConfig") or {}).get("env", [])
        env_vars = {"host_env_keys": [e["name"] for e in env if e.get("valueFrom") == "HOST"],
                    "key_values": {e["name"]: e.get("value", "") for e in env if e.get("valueFrom") != "HOST"}}
        tc = {"@type": WASM_FILTER_TYPE, "config": {
            "name": f"{d['metadata']['namespace']}.{d['metadata']['name']}",
            "root_id": spec.get("pluginName", ""),
            "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": wasm_abs}},
                          "environment_variables": env_vars},
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                              "value": go_protojson_struct(spec.get("pluginConfig") or {})},
            "failure_policy": policy}}
        jobs.append((f"{where}: WasmPlugin {d['metadata']['name']} as generated",
                     minimal_envoy(http_filter={"name": "consent", "typed_config": tc})))
    for where, d in find(docs, "EnvoyPatchPolicy"):
        for p in d["spec"].get("jsonPatches", []):
            if p["type"].endswith("config.cluster.v3.Cluster"):
                jobs.append((f"{where}: EnvoyPatchPolicy {d['metadata']['name']} cluster {p['name']}",
                             minimal_envoy(cluster=p["operation"]["value"])))
    for where, d in find(docs, "EnvoyExtensionPolicy"):
        for i, w in enumerate(d["spec"].get("wasm", [])):
            # The filter as Envoy Gateway generates it, plus the patched flag.
            vm_id = f"envoyextensionpolicy/{d['metadata']['namespace']}/{d['metadata']['name']}/wasm/{i}"
            tc = {"@type": WASM_FILTER_TYPE, "config": {
                "name": w.get("name", "consent"), "root_id": w.get("rootID", ""),
                "vm_config": {"vm_id": vm_id, "runtime": "envoy.wasm.runtime.v8",
                              "code": {"local": {"filename": wasm_abs}},
                              "environment_variables": {"host_env_keys": (w.get("env") or {}).get("hostKeys", [])}},
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": json.dumps(w.get("config") or {})},
                "fail_open": bool(w.get("failOpen")),
                "allow_on_headers_stop_iteration": True}}
            jobs.append((f"{where}: EnvoyExtensionPolicy {d['metadata']['name']} wasm[{i}] as generated",
                         minimal_envoy(http_filter={"name": "consent", "typed_config": tc})))
    for n, (label, cfg) in enumerate(jobs):
        path = os.path.join(frag_dir, f"fragment-{n}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=1)
        # The secrets as the proxy container would have them (test values).
        host_env = {**os.environ, **{k: test_value(k) for k in SECRET_VARIABLES}}
        r = subprocess.run([envoy, "--mode", "validate", "-c", path, "--log-level", "error"],
                           capture_output=True, text=True, timeout=120, env=host_env)
        if r.returncode == 0:
            report.ok(f"{label}: envoy --mode validate ({os.path.relpath(path)})")
        else:
            lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
            # The filter's own line names the field; else Envoy's last word.
            why = [ln.split("] ", 3)[-1] for ln in lines if "configuration rejected" in ln] or lines[-1:]
            report.bad(f"{label}: envoy --mode validate failed ({os.path.relpath(path)}): "
                       + " | ".join(why))


def minimal_envoy(http_filter: dict | None = None, cluster: dict | None = None) -> dict:
    filters = ([http_filter] if http_filter else []) + [{
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
    clusters = [cluster] if cluster else []
    # A cluster the snapshot settings may name (validate does not resolve names).
    for name in ("consent_source", "outbound|8082||consent-source.consent-system.svc.cluster.local"):
        if not any(c["name"] == name for c in clusters):
            clusters.append({"name": name, "connect_timeout": "1s", "type": "STATIC",
                             "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                                 {"endpoint": {"address": {"socket_address": {
                                     "address": "127.0.0.1", "port_value": 9}}}}]}]}})
    return {"static_resources": {
        "listeners": [{"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 9}},
                       "filter_chains": [{"filters": [{
                           "name": "envoy.filters.network.http_connection_manager",
                           "typed_config": {
                               "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                        "http_connection_manager.v3.HttpConnectionManager",
                               "stat_prefix": "validate",
                               "route_config": {"name": "r", "virtual_hosts": [{
                                   "name": "v", "domains": ["*"], "routes": [{
                                       "match": {"prefix": "/"}, "route": {"cluster": "consent_source"}}]}]},
                               "http_filters": filters}}]}]}],
        "clusters": clusters}}


# ---- main -----------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deploy", default="deploy")
    ap.add_argument("--out", default="target/deploy-validate")
    ap.add_argument("--k8s-versions", default="1.31,1.37",
                    help="Kubernetes versions whose core schemas to check (comma-separated)")
    ap.add_argument("--envoy", default=None, help="envoy binary for the fragment check")
    ap.add_argument("--wasm", default="target/wasm32-wasip1/release/consent_filter.wasm")
    ap.add_argument("--list-cel", action="store_true",
                    help="only print the CEL rules each custom resource reaches (for review)")
    args = ap.parse_args()
    report = Report()
    schemas = Schemas(os.path.join(args.deploy, "schemas"), report)
    if args.list_cel:
        for sub in MANIFEST_DIRS:
            for path in sorted(glob.glob(os.path.join(args.deploy, sub, "*.yaml"))):
                for d in load_docs(path):
                    crd = schemas.crd(d.get("apiVersion"), d.get("kind", ""))
                    for where, rule, message in reached_cel_rules(crd, d) if crd else ():
                        print(f"{os.path.relpath(path)}: {d['kind']} {d['metadata']['name']} {where}\n"
                              f"    rule:    {' '.join(rule.split())}\n    message: {message}")
        return 0
    configs = Configs(args.out)
    k8s_versions = args.k8s_versions.split(",")

    platform_docs: dict[str, list[tuple[str, dict]]] = {}
    for sub in MANIFEST_DIRS:
        for path in sorted(glob.glob(os.path.join(args.deploy, sub, "*.yaml"))):
            for i, d in enumerate(load_docs(path)):
                where = f"{os.path.relpath(path)}#{i}"
                if not isinstance(d, dict) or not {"apiVersion", "kind", "metadata"} <= d.keys():
                    report.bad(f"{where}: not a Kubernetes object (apiVersion, kind, metadata)")
                    continue
                validate_object(d, where, schemas, k8s_versions, report)
                platform_docs.setdefault(sub, []).append((where, d))
    shared = platform_docs.get("consent-source", [])
    check_istio(platform_docs.get("istio", []) + shared, configs, report)
    check_envoy_gateway(platform_docs.get("envoy-gateway", []) + shared, configs, report)
    check_plain_envoy(args.deploy, configs, report)
    configs.write_index()
    report.ok(f"{len(configs.entries)} plugin configurations written to {configs.dir} "
              f"(compiled by crates/consent-core/tests/deploy_configs.rs)")
    if args.envoy:
        all_docs = [x for docs in platform_docs.values() for x in docs]
        envoy_fragments(all_docs, args.out, args.envoy, args.wasm, report)
    print(f"note: the {report.cel_reached} CEL rules (x-kubernetes-validations) the custom resources "
          f"reach (of {report.cel_rules} in deploy/schemas) are not evaluated here; the API server "
          f"checks them on apply (list them with --list-cel)")
    if report.failures:
        print(f"\n{len(report.failures)} problem(s) in deploy/")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
