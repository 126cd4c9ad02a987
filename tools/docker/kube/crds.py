"""docker-compose.yml `kube` profile, the `kube-crds` one-shot: server-side apply every Gateway API CRD in /crds
(baked into the kube-apiserver image from tools/kube/build.sh's copy) with the admin token of /pki, then wait until
each is Established, so the reconciler's first HTTPRoute finds its kind. Standard library only (the image's python3).
"""

from __future__ import annotations

import json
import re
import ssl
import sys
import time
import urllib.request
from pathlib import Path

SERVER = "https://kube-apiserver:6443"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def call(method: str, path: str, body: bytes | None = None, content_type: str = "application/json") -> dict:
    token = Path("/pki/tokens.csv").read_text().split(",", 1)[0]
    request = urllib.request.Request(SERVER + path, data=body, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", content_type)
    context = ssl.create_default_context(cafile="/pki/ca.crt")
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        return json.loads(response.read())


def established(name: str) -> bool:
    conditions = call("GET", f"{CRDS}/{name}").get("status", {}).get("conditions", [])
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def main() -> int:
    names = []
    for path in sorted(Path("/crds").glob("*.yaml")):
        text = path.read_text()
        if not re.search(r"^kind: CustomResourceDefinition$", text, flags=re.MULTILINE):
            continue  # the Gateway API's own ValidatingAdmissionPolicy is not needed here
        name = re.search(r"^  name: (\S+)$", text, flags=re.MULTILINE)
        if name is None:
            continue
        query = "?fieldManager=sandboxd-compose&force=true"
        call("PATCH", f"{CRDS}/{name.group(1)}{query}", text.encode(), "application/apply-patch+yaml")
        names.append(name.group(1))
    deadline = time.monotonic() + 120
    while not all(established(name) for name in names):
        if time.monotonic() > deadline:
            print("kube-crds: not established after 120 s", file=sys.stderr)
            return 1
        time.sleep(1)
    print(f"kube-crds: {len(names)} CRDs established")
    return 0


if __name__ == "__main__":
    sys.exit(main())
