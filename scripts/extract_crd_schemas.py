#!/usr/bin/env python3
"""Extracts the openAPIV3Schema of chosen CRD kinds into deploy/schemas/ (one JSON file each).

    .venv/bin/python scripts/extract_crd_schemas.py --out deploy/schemas \
        --crds istio=/tmp/crds/istio-crds.yaml --crds eg-epp=/tmp/crds/eg-envoypatchpolicies.yaml ... \
        --kind extensions.istio.io/v1alpha1/WasmPlugin ...

Each output file `<group>_<version>_<kind lowercase>.json` is the CRD's
`spec.versions[name=<version>].schema.openAPIV3Schema`, unchanged (sorted keys, indent 1).
It is how deploy/schemas/ was made; the sources (repository, path, commit) are listed in
deploy/schemas/README.md. Needs PyYAML (the project venv after `make validate-deploy`).
Lines starting with `{{` (Helm template guards around a CRD bundle) are dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import yaml


def load_crds(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        text = "".join(line for line in f if not line.lstrip().startswith("{{"))
    return [d for d in yaml.safe_load_all(text) if d and d.get("kind") == "CustomResourceDefinition"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--crds", action="append", required=True, help="LABEL=PATH of a CRD YAML file")
    ap.add_argument("--kind", action="append", required=True, help="group/version/Kind")
    args = ap.parse_args()
    crds = []
    for item in args.crds:
        _, _, path = item.partition("=")
        crds.extend(load_crds(path))
    os.makedirs(args.out, exist_ok=True)
    status = 0
    for want in args.kind:
        group, version, kind = want.split("/")
        found = None
        for crd in crds:
            spec = crd["spec"]
            if spec["group"] == group and spec["names"]["kind"] == kind:
                for v in spec["versions"]:
                    if v["name"] == version:
                        found = (crd, v)
        if found is None:
            print(f"not found: {want}", file=sys.stderr)
            status = 1
            continue
        crd, v = found
        schema = v["schema"]["openAPIV3Schema"]
        name = f"{group}_{version}_{kind.lower()}.json"
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            json.dump(schema, f, indent=1, sort_keys=True, ensure_ascii=False)
            f.write("\n")
        print(f"{name}: {crd['metadata']['name']} {version} (served={v.get('served')}, "
              f"storage={v.get('storage')}, deprecated={v.get('deprecated', False)})")
    return status


if __name__ == "__main__":
    sys.exit(main())
