#!/usr/bin/env python3
"""Re-reads an OCI image layout written by scripts/oci_image.py and verifies it.

    python3 scripts/check_oci_image.py --layout target/oci/consent-filter \
        --wasm target/wasm32-wasip1/release/consent_filter.wasm [--tag 0.1.0]
    python3 scripts/check_oci_image.py --registry http://127.0.0.1:5000/consent-filter:0.1.0 \
        --wasm target/wasm32-wasip1/release/consent_filter.wasm [--digest sha256:...]

Checks, failing on the first problem (exit 1):
- `oci-layout` says imageLayoutVersion 1.0.0;
- `index.json` is an image index (schemaVersion 2) naming exactly one manifest, tagged
  `--tag` when given (org.opencontainers.image.ref.name);
- every descriptor (manifest, config, layer): `sha256:` + 64 lowercase hex, the blob exists
  under blobs/sha256/, its size and SHA-256 match, its media type is the expected one;
- no blob in blobs/ that nothing references;
- the manifest: schemaVersion 2, OCI manifest media type, annotation
  `module.wasm.image/variant: compat`, exactly one layer;
- the config parses and its rootfs.diff_ids is the digest of the uncompressed layer;
- the layer is gzip of a tar holding exactly one member, the regular file `plugin.wasm`,
  whose bytes are exactly the `--wasm` file;
- the image is read the way Istio's and Envoy Gateway's pullers read an OCI manifest
  (last layer of type tar+gzip, the first tar entry whose base name is plugin.wasm), and
  that yields the same bytes.
With --registry the same image checks run on a pushed copy, read over the OCI
Distribution API (manifest by tag, blobs by digest), and the registry must serve a single
OCI manifest (not an index). Standard library only.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import urllib.error
import urllib.request

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
DIGEST_RE = re.compile(r"^sha256:([0-9a-f]{64})$")


class CheckError(Exception):
    pass


def need(cond: bool, message: str) -> None:
    if not cond:
        raise CheckError(message)


def read_json(data: bytes, what: str) -> dict:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckError(f"{what} is not JSON: {e}") from None
    need(isinstance(value, dict), f"{what} is not a JSON object")
    return value


class Source:
    """Where blobs come from; remembers which blobs a descriptor referenced."""

    def __init__(self) -> None:
        self.referenced: set[str] = set()

    def read(self, hex_digest: str, what: str) -> bytes:
        raise NotImplementedError

    def blob(self, desc: object, media_type: str, what: str) -> bytes:
        """Reads and verifies the blob a descriptor names."""
        need(isinstance(desc, dict), f"{what}: descriptor is not an object")
        assert isinstance(desc, dict)
        need(desc.get("mediaType") == media_type,
             f"{what}: media type {desc.get('mediaType')!r}, expected {media_type!r}")
        digest = desc.get("digest")
        m = DIGEST_RE.match(digest) if isinstance(digest, str) else None
        need(m is not None, f"{what}: digest {digest!r} is not sha256:<64 lowercase hex>")
        assert m is not None
        size = desc.get("size")
        need(isinstance(size, int) and not isinstance(size, bool) and size >= 0,
             f"{what}: size {size!r} is not a non-negative integer")
        data = self.read(m.group(1), what)
        need(len(data) == size, f"{what}: blob {digest} has {len(data)} bytes, descriptor says {size}")
        actual = hashlib.sha256(data).hexdigest()
        need(actual == m.group(1), f"{what}: blob content hashes to sha256:{actual}, not {digest}")
        self.referenced.add(m.group(1))
        return data


class Layout(Source):
    """An OCI image layout directory."""

    def __init__(self, root: str):
        super().__init__()
        self.root = root

    def read(self, hex_digest: str, what: str) -> bytes:
        path = os.path.join(self.root, "blobs", "sha256", hex_digest)
        need(os.path.isfile(path), f"{what}: blob sha256:{hex_digest} is missing ({path})")
        with open(path, "rb") as f:
            return f.read()

    def unreferenced(self) -> list[str]:
        blob_dir = os.path.join(self.root, "blobs", "sha256")
        return sorted(set(os.listdir(blob_dir)) - self.referenced)


class Registry(Source):
    """A registry speaking the OCI Distribution API over plain HTTP (a local test registry)."""

    def __init__(self, base: str, repo: str):
        super().__init__()
        self.base = base.rstrip("/")
        self.repo = repo

    def get(self, path: str, accept: str | None = None) -> tuple[bytes, dict[str, str]]:
        req = urllib.request.Request(f"{self.base}/v2/{self.repo}/{path}")
        if accept:
            req.add_header("Accept", accept)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (http only)
                return resp.read(), {k.lower(): v for k, v in resp.headers.items()}
        except urllib.error.URLError as e:
            raise CheckError(f"GET {req.full_url}: {e}") from None

    def read(self, hex_digest: str, what: str) -> bytes:
        return self.get(f"blobs/sha256:{hex_digest}")[0]


def wasm_like_istio(manifest: dict, source: Source) -> bytes:
    """Mirrors the OCI-manifest branch of the Istio / Envoy Gateway pullers (compat variant):
    the last layer must be tar+gzip; the first tar entry whose base name is plugin.wasm is
    the module. (Re-implemented from their documented behaviour, not their code.)"""
    layers = manifest["layers"]
    need(len(layers) > 0, "puller view: no layers")
    last = layers[-1]
    need(last.get("mediaType") == LAYER_TYPE, "puller view: last layer is not tar+gzip")
    data = source.blob(last, LAYER_TYPE, "puller view: layer")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r:") as tar:
        for member in tar:
            if os.path.basename(member.name) == "plugin.wasm":
                f = tar.extractfile(member)
                need(f is not None, "puller view: plugin.wasm is not a regular file")
                assert f is not None
                return f.read()
    raise CheckError("puller view: plugin.wasm not found in the layer")


def check_image(source: Source, manifest_bytes: bytes, wasm: bytes) -> None:
    """Checks one image manifest and everything it references."""
    manifest = read_json(manifest_bytes, "manifest")
    need(manifest.get("schemaVersion") == 2, "manifest: schemaVersion is not 2")
    need(manifest.get("mediaType") == MANIFEST_TYPE, "manifest: mediaType is not the OCI manifest type")
    need((manifest.get("annotations") or {}).get("module.wasm.image/variant") == "compat",
         "manifest: annotation module.wasm.image/variant is not 'compat'")
    layers = manifest.get("layers")
    need(isinstance(layers, list) and len(layers) == 1, "manifest: expected exactly one layer")
    assert isinstance(layers, list)

    config = read_json(source.blob(manifest.get("config"), CONFIG_TYPE, "config"), "config")
    layer = source.blob(layers[0], LAYER_TYPE, "layer")
    need(layer[:2] == b"\x1f\x8b", "layer: not gzip (no 1f 8b magic)")
    try:
        tar_bytes = gzip.decompress(layer)
    except (OSError, EOFError) as e:
        raise CheckError(f"layer: gzip does not decompress: {e}") from None
    rootfs = config.get("rootfs") or {}
    need(rootfs.get("diff_ids") == ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()],
         "config: rootfs.diff_ids is not the digest of the uncompressed layer")
    need(rootfs.get("type") == "layers", "config: rootfs.type is not 'layers'")

    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        members = tar.getmembers()
        need(len(members) == 1, f"layer: tar has {len(members)} members, expected 1")
        member = members[0]
        need(member.name == "plugin.wasm", f"layer: tar member is {member.name!r}, not 'plugin.wasm'")
        need(member.isreg(), "layer: plugin.wasm is not a regular file")
        f = tar.extractfile(member)
        assert f is not None
        module = f.read()
    need(module == wasm, "layer: plugin.wasm differs from the .wasm file given")
    need(wasm_like_istio(manifest, source) == wasm, "puller view: module differs")


def check_layout(root: str, wasm: bytes, tag: str | None) -> str:
    layout = Layout(root)
    with open(os.path.join(root, "oci-layout"), "rb") as f:
        oci_layout = read_json(f.read(), "oci-layout")
    need(oci_layout.get("imageLayoutVersion") == "1.0.0",
         f"oci-layout: imageLayoutVersion {oci_layout.get('imageLayoutVersion')!r}")

    with open(os.path.join(root, "index.json"), "rb") as f:
        index = read_json(f.read(), "index.json")
    need(index.get("schemaVersion") == 2, "index.json: schemaVersion is not 2")
    need(index.get("mediaType") == INDEX_TYPE, f"index.json: mediaType {index.get('mediaType')!r}")
    manifests = index.get("manifests")
    need(isinstance(manifests, list) and len(manifests) == 1,
         "index.json: expected exactly one manifest")
    assert isinstance(manifests, list)
    mdesc = manifests[0]
    if tag is not None:
        ref = (mdesc.get("annotations") or {}).get("org.opencontainers.image.ref.name")
        need(ref == tag, f"index.json: manifest tagged {ref!r}, expected {tag!r}")
    check_image(layout, layout.blob(mdesc, MANIFEST_TYPE, "manifest"), wasm)
    extra = layout.unreferenced()
    need(not extra, f"blobs/sha256 holds unreferenced blobs: {', '.join(extra)}")
    return mdesc["digest"]


def check_registry(url: str, wasm: bytes, expect_digest: str | None) -> str:
    """url: http://HOST:PORT/REPO:TAG. Pulls the way a registry client does: the manifest by
    tag (accepting index types too, to catch a push that wrapped the image in an index,
    which Istio would resolve by platform linux/amd64 and fail), then the blobs by digest."""
    m = re.match(r"^(https?://[^/]+)/(.+):([^:/]+)$", url)
    need(m is not None, f"registry reference {url!r} is not http://HOST:PORT/REPO:TAG")
    assert m is not None
    registry = Registry(m.group(1), m.group(2))
    accept = ", ".join([MANIFEST_TYPE, INDEX_TYPE,
                        "application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.docker.distribution.manifest.list.v2+json"])
    body, headers = registry.get(f"manifests/{m.group(3)}", accept)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    need(headers.get("content-type", "").split(";")[0].strip() == MANIFEST_TYPE,
         f"registry: manifest served as {headers.get('content-type')!r}, not a single OCI manifest")
    need(headers.get("docker-content-digest") in (None, digest),
         f"registry: Docker-Content-Digest {headers.get('docker-content-digest')} != {digest}")
    if expect_digest is not None:
        need(digest == expect_digest, f"registry: manifest {digest}, expected {expect_digest}")
    check_image(registry, body, wasm)
    return digest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--layout", help="OCI image layout directory")
    where.add_argument("--registry", help="http://HOST:PORT/REPO:TAG of a pushed copy")
    ap.add_argument("--wasm", required=True)
    ap.add_argument("--tag", default=None, help="(--layout) the tag index.json must carry")
    ap.add_argument("--digest", default=None, help="(--registry) the manifest digest expected")
    args = ap.parse_args()
    with open(args.wasm, "rb") as f:
        wasm = f.read()
    what = args.layout or args.registry
    try:
        if args.layout:
            digest = check_layout(args.layout, wasm, args.tag)
        else:
            digest = check_registry(args.registry, wasm, args.digest)
    except (CheckError, OSError) as e:
        print(f"BAD {what}: {e}", file=sys.stderr)
        return 1
    print(f"OK  {what}: manifest {digest}, one tar+gzip layer with plugin.wasm "
          f"= {args.wasm} ({len(wasm)} bytes); digests, sizes and media types verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
