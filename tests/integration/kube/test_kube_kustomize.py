"""The GitOps folder (``render.files``) builds with the real ``kustomize`` and applies cleanly (server dry run).

What Flux or ``kubectl apply -k`` would do with a sandbox's folder: ``kustomize build`` must accept the
``kustomization.yaml`` and emit exactly the rendered objects, and every one of them must pass the API server's
validation and admission, via server-side apply with ``dryRun=All`` (nothing is stored). The Namespace is created
for real first: a dry-run Namespace does not exist for the dry runs of the objects inside it.

The tree the GitOps applier commits keeps every claim until a purge (a repo that left the spec, a retained delete,
a create with other repos): what ``kustomize build`` emits from it still holds them, with the prune opt-outs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from sandboxd.adapters.gitops import GitOpsApplier
from sandboxd.adapters.kubernetes import KubernetesApplier
from sandboxd.adapters.kubernetes.resources import resource_of
from sandboxd.naming import gitops_folder
from sandboxd.render import files
from sandboxd.render.model import Manifest
from sandboxd.render.storage import PRUNE_OPT_OUTS, RETAINED
from support.kubeapi import KubeHarnessError, find_kube_bin

from .cluster import Cluster, sandbox

pytestmark = [pytest.mark.kube, pytest.mark.anyio]


def kustomize_binary() -> Path:
    try:
        binary = find_kube_bin() / "kustomize"
    except KubeHarnessError as exc:
        pytest.skip(f"no kube harness binaries: {exc}")
    if not binary.exists():
        pytest.skip(f"{binary} is not built (tools/kube/build.sh builds it next to kube-apiserver)")
    return binary


def kind_and_name(obj: Mapping[str, Any]) -> tuple[str, str]:
    return (obj["kind"], obj["metadata"]["name"])


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_kustomize_build_applies_cleanly_with_a_server_dry_run(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str], tmp_path: Path, transport: str
) -> None:
    rendered = sandbox(new_id(), repos=["acme/app", "acme/tools"], mcp_transport=transport)
    folder = tmp_path / "sandbox" / rendered.owner_uid
    folder.mkdir(parents=True)
    for name, content in files(rendered).items():
        (folder / name).write_bytes(content)

    built = await anyio.run_process([str(kustomize_binary()), "build", str(folder)])

    objects = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    assert sorted(map(kind_and_name, objects)) == sorted(kind_and_name(m.body) for m in rendered.manifests)
    namespace = next(obj for obj in objects if obj["kind"] == "Namespace")
    await cluster.call(
        "PATCH",
        f"/api/v1/namespaces/{rendered.namespace}",
        namespace,
        content_type="application/apply-patch+yaml",
        fieldManager="kustomize-test",
    )
    for obj in objects:
        manifest = Manifest("built.yaml", obj)
        path = resource_of(manifest).item(manifest.name, manifest.namespace)
        answer = await applier.transport.apply(path, obj, field_manager="kustomize-test", dry_run=True)
        assert answer["metadata"]["name"] == manifest.name
    for manifest in rendered.manifests:
        if manifest.kind != "Namespace":
            assert await cluster.read(resource_of(manifest).item(manifest.name, manifest.namespace)) is None


async def test_retained_claims_stay_in_the_built_gitops_tree_until_a_purge(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str], tmp_path: Path
) -> None:
    sandbox_id = new_id()
    bare = tmp_path / "gitops.git"
    gitops = GitOpsApplier(repo=str(bare), cache_dir=tmp_path / "cache")
    try:
        await gitops.apply(sandbox(sandbox_id, repos=["acme/app", "acme/tools"]), generation=1)
        await gitops.apply(sandbox(sandbox_id, repos=["acme/app"]), generation=2)  # acme/tools leaves the spec
        await gitops.delete(sandbox(sandbox_id, repos=["acme/app"]), purge=False)
        latest = sandbox(sandbox_id, repos=["acme/web"])  # created again for the same owner, other repos
        await gitops.apply(latest, generation=1)

        checkout = tmp_path / "checkout"
        await anyio.run_process(["git", "clone", "--quiet", str(bare), str(checkout)])
        built = await anyio.run_process(
            [str(kustomize_binary()), "build", str(checkout / gitops_folder(latest.owner_uid))]
        )

        objects = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
        claims = {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "PersistentVolumeClaim"}
        assert sorted(claims) == ["repo-acme-app", "repo-acme-tools", "repo-acme-web"]
        for name, claim in claims.items():
            annotations = claim["metadata"]["annotations"]
            assert PRUNE_OPT_OUTS.items() <= annotations.items()
            assert (annotations.get(RETAINED) == "true") == (name != "repo-acme-web")
        assert {"StatefulSet", "Role", "Service"} <= {obj["kind"] for obj in objects}  # the sandbox runs again

        namespace = next(obj for obj in objects if obj["kind"] == "Namespace")
        await cluster.call(
            "PATCH",
            f"/api/v1/namespaces/{latest.namespace}",
            namespace,
            content_type="application/apply-patch+yaml",
            fieldManager="kustomize-test",
        )
        for claim in claims.values():  # the marked claims are valid objects
            manifest = Manifest("built.yaml", claim)
            path = resource_of(manifest).item(manifest.name, manifest.namespace)
            await applier.transport.apply(path, claim, field_manager="kustomize-test", dry_run=True)

        await gitops.delete(latest, purge=True)
        purged = tmp_path / "purged"
        await anyio.run_process(["git", "clone", "--quiet", str(bare), str(purged)])
        assert not (purged / gitops_folder(latest.owner_uid)).exists()
    finally:
        await gitops.aclose()
