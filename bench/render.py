"""Render benchmark: ``make bench-render`` (python -m bench.render). Prints figures; asserts nothing.

1. ``render``: the full upstream fixture sandbox (2 repos, claude-code BYOS, opt-out, ring buffer, token
   revision, every optional platform Secret) into its ordered objects; median and p99 of N single renders.
2. ``files``: the same sandbox serialised to its GitOps folder (one YAML file per object plus the
   kustomization) with the renderer's own writer.
3. For reference, ``yaml.safe_dump`` of the same objects (PyYAML's emitter, C-accelerated when available).

Every timing is one call measured with ``perf_counter_ns`` after a warm-up; the process is single-threaded.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import yaml

from sandboxd.models import SandboxSpec
from sandboxd.render import RenderRequest, files, render
from sandboxd.settings import RuntimeSettings

WARM_UP = 200
#: Names of Secrets the pods reference (never values), so every optional secretKeyRef is rendered.
SECRET_NAMES = {
    "storage_s3_creds_secret_name": "sandbox-storage-s3",
    "keycloak_admin_token_secret_name": "keycloak-admin-token",
}
#: Any rotation marker: the pod template carries it.
REVISION = "7"


def settings(transport: str) -> RuntimeSettings:
    values: dict[str, Any] = {
        name: field.default for name, field in RuntimeSettings.model_fields.items() if not field.is_required()
    }
    values.update(
        pty_server_image="ghcr.io/openova-io/openova/sandbox-pty-server:bench",
        mcp_image="ghcr.io/openova-io/openova/sandbox-mcp-server:bench",
        newapi_url="https://newapi.omantel.omani.works/v1",
        sovereign_fqdn="omantel.omani.works",
        gitea_base_url="http://gitea-http.gitea.svc.cluster.local:3000",
        ring_buffer_bytes=1048576,
        mcp_transport=transport,
    )
    values.update(SECRET_NAMES)
    return RuntimeSettings(**values)


def full_request() -> RenderRequest:
    spec = SandboxSpec.model_validate(
        {
            "owner": {"email": "ceo@acme.com", "orgRef": {"slug": "acme"}},
            "quota": {"cpu": "4", "memory": "8Gi", "storage": "50Gi", "concurrentSessions": 3},
            "repos": [{"giteaRepo": "acme/eventforge"}, {"giteaRepo": "acme/internal-tools"}],
            "agentCatalogue": ["claude-code", "cursor-agent"],
            "previewDomain": "sb-emrah.rzk7.openova.io",
            "idleScaling": {"enabled": False, "timeoutMinutes": 45},
        }
    )
    return RenderRequest(sandbox_id="emrah", spec=spec, token_revision=REVISION)


def measure(action: Callable[[], object], count: int) -> list[float]:
    """Microseconds per call, ``count`` calls after a warm-up."""
    for _ in range(min(WARM_UP, count)):
        action()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(count):
        start = clock()
        action()
        samples.append((clock() - start) / 1000)
    return samples


def report(label: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"{label:<34} median {statistics.median(ordered):8.1f} µs   p99 {p99:8.1f} µs   (n={len(ordered)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--renders", type=int, default=5000, help="renders (and serialisations) to time")
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="MCP transport")
    args = parser.parse_args()

    runtime = settings(args.transport)
    request = full_request()
    rendered = render(request, runtime)
    folder = files(rendered)
    print(
        f"full sandbox, mcp {args.transport}: {len(rendered.manifests)} objects, {len(folder)} files, "
        f"{sum(len(c) for c in folder.values())} bytes of YAML"
    )
    report("render(request, settings)", measure(lambda: render(request, runtime), args.renders))
    report("files(rendered)  [render.yamlio]", measure(lambda: files(rendered), args.renders))
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    bodies = [dict(m.body) for m in rendered.manifests]

    def pyyaml() -> None:
        for body in bodies:
            yaml.dump(body, Dumper=dumper, sort_keys=False)

    report(f"yaml.dump [{dumper.__name__}] reference", measure(pyyaml, max(1, args.renders // 10)))


if __name__ == "__main__":
    main()
