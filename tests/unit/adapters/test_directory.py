"""The directory applier against a real temporary folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sandboxd.adapters.directory import DirectoryApplier
from sandboxd.errors import ApplyRejected
from sandboxd.models.status import ObjectRef
from sandboxd.render import files
from sandboxd.render.model import Manifest, RenderedSandbox
from support.sandboxes import kept_files, sample_sandbox

pytestmark = pytest.mark.anyio


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _resources(folder: Path) -> list[str]:
    return list(yaml.safe_load((folder / "kustomization.yaml").read_bytes())["resources"])


def _claim(folder: Path, name: str) -> dict[str, Any]:
    body = yaml.safe_load((folder / name).read_bytes())
    assert body["kind"] == "PersistentVolumeClaim"
    return dict(body)


#: What a kept claim the sandbox no longer renders carries: the retained mark and both prune opt-outs.
RETAINED_MARKS = {
    "kustomize.toolkit.fluxcd.io/prune": "disabled",
    "argocd.argoproj.io/sync-options": "Prune=false",
    "openova.io/sandbox-retained": "true",
}
CLAIM_TOOLS = ObjectRef(
    api_version="v1", kind="PersistentVolumeClaim", name="repo-acme-tools", namespace="sandbox-ceo-at-acme-com"
)


async def test_writes_the_rendered_files_under_sandbox_owner_uid(tmp_path: Path) -> None:
    sandbox = sample_sandbox()
    result = await DirectoryApplier(tmp_path).apply(sandbox, generation=1)

    folder = tmp_path / "sandbox" / "ceo-at-acme-com"
    assert _tree(folder) == files(sandbox)
    assert sorted(_resources(folder)) == sorted(set(_tree(folder)) - {"kustomization.yaml"})
    assert result.changed
    assert len(result.applied) == len(sandbox.manifests)
    assert result.ready_replicas is None
    assert result.pruned == ()


async def test_a_second_apply_of_the_same_input_writes_nothing(tmp_path: Path) -> None:
    applier = DirectoryApplier(tmp_path)
    await applier.apply(sample_sandbox(), generation=1)
    folder = tmp_path / "sandbox" / "ceo-at-acme-com"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    again = await applier.apply(sample_sandbox(), generation=2)

    assert not again.changed
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


async def test_rewrites_only_changed_files_and_removes_ones_no_longer_rendered(tmp_path: Path) -> None:
    applier = DirectoryApplier(tmp_path)
    await applier.apply(sample_sandbox(), generation=1)
    folder = tmp_path / "sandbox" / "ceo-at-acme-com"
    service_mtime = (folder / "service.yaml").stat().st_mtime_ns
    (folder / ".statefulset.yaml.abc.tmp").write_bytes(b"left by a crash")

    smaller = sample_sandbox(image="ghcr.io/example/pty-server:v2", without=("httproute.yaml",))
    result = await applier.apply(smaller, generation=2)

    assert result.changed
    assert _tree(folder) == files(smaller)
    assert (folder / "service.yaml").stat().st_mtime_ns == service_mtime
    assert result.pruned == (
        ObjectRef(
            api_version="gateway.networking.k8s.io/v1",
            kind="HTTPRoute",
            name="sessions",
            namespace="sandbox-ceo-at-acme-com",
        ),
    )


async def test_sandboxes_live_in_separate_folders(tmp_path: Path) -> None:
    applier = DirectoryApplier(tmp_path)
    await applier.apply(sample_sandbox("a-at-x-com"), generation=1)
    await applier.apply(sample_sandbox("b-at-x-com"), generation=1)
    await applier.delete(sample_sandbox("a-at-x-com"), purge=True)

    assert sorted(p.name for p in (tmp_path / "sandbox").iterdir()) == ["b-at-x-com"]


async def test_retained_delete_keeps_the_data_and_drops_access(tmp_path: Path) -> None:
    applier = DirectoryApplier(tmp_path)
    sandbox = sample_sandbox()
    await applier.apply(sandbox, generation=1)

    await applier.delete(sandbox, purge=False)

    folder = tmp_path / "sandbox" / "ceo-at-acme-com"
    assert set(_tree(folder)) == kept_files(sandbox) | {"kustomization.yaml"}
    assert sorted(_resources(folder)) == sorted(kept_files(sandbox))
    assert not {"serviceaccount.yaml", "role.yaml", "rolebinding.yaml"} & set(_tree(folder))
    assert _claim(folder, "pvc-repo-acme-tools.yaml")["metadata"]["annotations"] == RETAINED_MARKS


async def test_a_repo_that_leaves_the_spec_keeps_its_volume_marked_retained(tmp_path: Path) -> None:
    applier = DirectoryApplier(tmp_path)
    await applier.apply(sample_sandbox(repos=("acme-tools", "acme-web")), generation=1)
    folder = tmp_path / "sandbox" / "ceo-at-acme-com"

    result = await applier.apply(sample_sandbox(repos=("acme-web",)), generation=2)

    assert "pvc-repo-acme-tools.yaml" in _resources(folder)
    assert _claim(folder, "pvc-repo-acme-tools.yaml")["metadata"]["annotations"] == RETAINED_MARKS
    assert "annotations" not in _claim(folder, "pvc-repo-acme-web.yaml")["metadata"]
    assert result.pruned == ()
    assert CLAIM_TOOLS in result.applied
    again = await applier.apply(sample_sandbox(repos=("acme-web",)), generation=3)
    assert not again.changed  # the retained claim is stable: steady state writes nothing


async def test_delete_then_create_with_other_repos_keeps_every_volume(tmp_path: Path) -> None:
    applier = DirectoryApplier(tmp_path)
    await applier.apply(sample_sandbox(repos=("acme-tools",)), generation=1)
    await applier.delete(sample_sandbox(repos=("acme-tools",)), purge=False)

    await applier.apply(sample_sandbox(repos=("acme-web",)), generation=1)  # the same owner, created again

    folder = tmp_path / "sandbox" / "ceo-at-acme-com"
    resources = _resources(folder)
    assert {"pvc-repo-acme-tools.yaml", "pvc-repo-acme-web.yaml", "statefulset.yaml"} <= set(resources)
    assert resources.index("pvc-repo-acme-tools.yaml") < resources.index("statefulset.yaml")
    assert _claim(folder, "pvc-repo-acme-tools.yaml")["metadata"]["annotations"] == RETAINED_MARKS


async def test_a_repo_that_comes_back_is_rendered_again_unmarked(tmp_path: Path) -> None:
    applier = DirectoryApplier(tmp_path)
    await applier.apply(sample_sandbox(repos=("acme-tools",)), generation=1)
    await applier.apply(sample_sandbox(repos=()), generation=2)

    await applier.apply(sample_sandbox(repos=("acme-tools",)), generation=3)

    folder = tmp_path / "sandbox" / "ceo-at-acme-com"
    assert _tree(folder) == files(sample_sandbox(repos=("acme-tools",)))


async def test_purge_removes_retained_volumes_too(tmp_path: Path) -> None:
    applier = DirectoryApplier(tmp_path)
    await applier.apply(sample_sandbox(repos=("acme-tools",)), generation=1)
    await applier.apply(sample_sandbox(repos=("acme-web",)), generation=2)

    await applier.delete(sample_sandbox(repos=("acme-web",)), purge=True)

    assert not (tmp_path / "sandbox" / "ceo-at-acme-com").exists()


async def test_a_file_that_may_hold_a_volume_and_cannot_be_read_is_refused_not_dropped(tmp_path: Path) -> None:
    applier = DirectoryApplier(tmp_path)
    await applier.apply(sample_sandbox(), generation=1)
    folder = tmp_path / "sandbox" / "ceo-at-acme-com"
    (folder / "pvc-repo-acme-tools.yaml").write_bytes(b"kind: [PersistentVolumeClaim\n")

    with pytest.raises(ApplyRejected, match=r"pvc-repo-acme-tools\.yaml"):
        await applier.apply(sample_sandbox(repos=()), generation=2)

    assert (folder / "pvc-repo-acme-tools.yaml").read_bytes() == b"kind: [PersistentVolumeClaim\n"


async def test_purge_removes_the_folder_and_is_idempotent(tmp_path: Path) -> None:
    applier = DirectoryApplier(tmp_path)
    sandbox = sample_sandbox()
    await applier.apply(sandbox, generation=1)

    await applier.delete(sandbox, purge=True)
    await applier.delete(sandbox, purge=True)

    assert not (tmp_path / "sandbox" / "ceo-at-acme-com").exists()
    assert await applier.ready_replicas(sandbox) is None


async def test_a_file_name_outside_the_folder_is_rejected(tmp_path: Path) -> None:
    sandbox = sample_sandbox()
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": sandbox.namespace}}
    escaping = RenderedSandbox(
        sandbox_id=sandbox.sandbox_id,
        owner_uid=sandbox.owner_uid,
        namespace=sandbox.namespace,
        endpoint=sandbox.endpoint,
        replicas=1,
        manifests=(*sandbox.manifests, Manifest(filename="../escape.yaml", body=body)),
    )

    with pytest.raises(ApplyRejected, match="escape"):
        await DirectoryApplier(tmp_path).apply(escaping, generation=1)
    assert not (tmp_path / "sandbox" / "escape.yaml").exists()


async def test_a_secret_with_a_value_is_never_written(tmp_path: Path) -> None:
    applier = DirectoryApplier(tmp_path)
    await applier.apply(sample_sandbox(), generation=1)
    folder = tmp_path / "sandbox" / "ceo-at-acme-com"
    before = _tree(folder)

    with pytest.raises(ApplyRejected, match="secret values are never written") as refused:
        await applier.apply(sample_sandbox(secret_string_data={"token": "sk-canary-4711"}), generation=2)

    assert "sk-canary-4711" not in str(refused.value)
    assert _tree(folder) == before
    assert not any(b"sk-canary-4711" in data for data in _tree(folder).values())
