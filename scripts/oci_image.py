#!/usr/bin/env python3
"""Packs the consent filter's .wasm as an OCI image layout that Istio and Envoy Gateway pull.

    python3 scripts/oci_image.py --wasm target/wasm32-wasip1/release/consent_filter.wasm \
        --out target/oci/consent-filter --tag 0.1.0

Writes an OCI image layout directory (image-spec v1.1 "image layout": `oci-layout`,
`index.json`, `blobs/sha256/<hex>`) holding one image in the Wasm image spec's *compat*
variant:

- manifest `application/vnd.oci.image.manifest.v1+json`, annotated
  `module.wasm.image/variant: compat`;
- config `application/vnd.oci.image.config.v1+json` (os `wasip1`, architecture `wasm` unless
  --platform says otherwise; `rootfs.diff_ids` = the digest of the uncompressed layer);
- exactly one layer `application/vnd.oci.image.layer.v1.tar+gzip`: a tar holding one
  regular file, `plugin.wasm`, byte for byte the built module.

Why this variant: Istio's agent (istio/istio `pkg/wasm/imagefetcher.go`) and Envoy Gateway
(envoyproxy/gateway `internal/wasm/imagefetcher.go`) both try, for an OCI manifest, first the
compat layout (last layer of type `application/vnd.oci.image.layer.v1.tar+gzip`, a tar.gz in
which a file whose base name is `plugin.wasm` is the module), then the *oci* artifact variant
(exactly two layers, one `application/vnd.module.wasm.content.layer.v1+wasm`). The compat
variant uses only standard media types, so every registry accepts it and `skopeo` /
`crane` / `docker` can copy it.

The output is reproducible: fixed tar metadata (mtime 0, uid/gid 0, mode 0644), gzip with
mtime 0 and no file name, JSON with sorted keys. The same .wasm gives the same digests.
Standard library only. `scripts/check_oci_image.py` re-reads and verifies the layout.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_FILE_NAME = "plugin.wasm"
VARIANT_ANNOTATION = "module.wasm.image/variant"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


def canonical_json(value: object) -> bytes:
    """JSON with sorted keys and no insignificant white space (stable digests)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def layer_tar(wasm: bytes) -> bytes:
    """A tar with the single regular file `plugin.wasm`, with fixed metadata."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name=WASM_FILE_NAME)
        info.size = len(wasm)
        info.mtime = 0
        info.mode = 0o644
        info.uid = 0
        info.gid = 0
        info.uname = ""
        info.gname = ""
        info.type = tarfile.REGTYPE
        tar.addfile(info, io.BytesIO(wasm))
    return buf.getvalue()


def descriptor(media_type: str, data: bytes, annotations: dict[str, str] | None = None) -> dict:
    d: dict = {"mediaType": media_type, "digest": "sha256:" + sha256_hex(data), "size": len(data)}
    if annotations:
        d["annotations"] = annotations
    return d


def build(wasm: bytes, tag: str, title: str, version: str, source: str | None,
          platform: str = "wasip1/wasm") -> dict[str, bytes]:
    """Returns every blob by digest hex, plus the index and layout files under fixed keys."""
    if wasm[:4] != b"\0asm":
        raise ValueError("the input is not a WebAssembly module (no \\0asm magic)")
    tar_bytes = layer_tar(wasm)
    layer = gzip.compress(tar_bytes, compresslevel=9, mtime=0)
    os_name, _, arch = platform.partition("/")
    config = {
        "architecture": arch,
        "os": os_name,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha256_hex(tar_bytes)]},
    }
    config_bytes = canonical_json(config)
    annotations = {
        VARIANT_ANNOTATION: "compat",
        "org.opencontainers.image.title": title,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.description": "consent-filter: proxy-wasm consent enforcement "
        "filter for Envoy (Wasm image spec, compat variant: one tar+gzip layer with plugin.wasm)",
    }
    if source:
        annotations["org.opencontainers.image.source"] = source
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": descriptor(CONFIG_TYPE, config_bytes),
        "layers": [descriptor(LAYER_TYPE, layer)],
        "annotations": annotations,
    }
    manifest_bytes = canonical_json(manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [
            descriptor(MANIFEST_TYPE, manifest_bytes, {REF_NAME_ANNOTATION: tag}),
        ],
    }
    blobs = {sha256_hex(b): b for b in (layer, config_bytes, manifest_bytes)}
    return {
        "blobs": blobs,  # type: ignore[dict-item]
        "index.json": canonical_json(index),
        "oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
        "manifest_digest": ("sha256:" + sha256_hex(manifest_bytes)).encode(),
    }


def write_layout(out: str, built: dict) -> None:
    if os.path.exists(out):
        if not os.path.isfile(os.path.join(out, "oci-layout")):
            raise SystemExit(f"refusing to replace {out}: it exists and is not an OCI layout")
        shutil.rmtree(out)
    blob_dir = os.path.join(out, "blobs", "sha256")
    os.makedirs(blob_dir)
    for hex_digest, data in built["blobs"].items():
        with open(os.path.join(blob_dir, hex_digest), "wb") as f:
            f.write(data)
    for name in ("oci-layout", "index.json"):
        with open(os.path.join(out, name), "wb") as f:
            f.write(built[name])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wasm", required=True, help="the built .wasm module")
    ap.add_argument("--out", required=True, help="OCI layout directory to (re)create")
    ap.add_argument("--tag", required=True, help="tag recorded as org.opencontainers.image.ref.name")
    ap.add_argument("--title", default="consent-filter")
    ap.add_argument("--source", default=None, help="org.opencontainers.image.source annotation")
    ap.add_argument("--platform", default="wasip1/wasm",
                    help="os/architecture in the image config (default wasip1/wasm, what the module "
                    "is; Istio and Envoy Gateway ignore it; a container runtime that mounts the "
                    "image, e.g. as a Kubernetes image volume, may want linux/amd64)")
    args = ap.parse_args()
    with open(args.wasm, "rb") as f:
        wasm = f.read()
    try:
        if args.platform.count("/") != 1:
            raise ValueError("--platform takes os/architecture")
        built = build(wasm, args.tag, args.title, args.tag, args.source, args.platform)
    except ValueError as e:
        print(f"oci_image: {e}", file=sys.stderr)
        return 1
    write_layout(args.out, built)
    digest = built["manifest_digest"].decode()
    print(f"OCI image layout {args.out} (tag {args.tag})")
    print(f"  manifest digest {digest}")
    print(f"  module {len(wasm)} bytes, sha256 {sha256_hex(wasm)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
