"""The directory applier against a real temporary folder."""

from __future__ import annotations

from pathlib import Path

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


async def test_retained_delete_keeps_namespace_quota_volumes_and_rbac(tmp_path: Path) -> None:
    applier = DirectoryApplier(tmp_path)
    sandbox = sample_sandbox()
    await applier.apply(sandbox, generation=1)

    await applier.delete(sandbox, purge=False)

    folder = tmp_path / "sandbox" / "ceo-at-acme-com"
    assert set(_tree(folder)) == kept_files(sandbox) | {"kustomization.yaml"}
    assert sorted(_resources(folder)) == sorted(kept_files(sandbox))


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
