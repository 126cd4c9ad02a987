"""The GitOps applier against a real git and a real bare repository on disk."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from pydantic import SecretStr

from sandboxd.adapters.gitops import Backoff, GitOpsApplier
from sandboxd.adapters.gitops.remote import parse_remote
from sandboxd.adapters.gitops.repository import Identity, _environment
from sandboxd.errors import ApplyRejected, ApplyUnavailable
from sandboxd.models import SandboxSpec
from sandboxd.render import RenderedSandbox, RenderRequest, files, render
from sandboxd.render.storage import RETAINED
from sandboxd.settings import RuntimeSettings
from sandboxd.settings.service import ApplierSettings
from support.git_http import GitHttpServer, serving
from support.sandboxes import kept_files, sample_sandbox
from support.spine import runtime_settings, spec

pytestmark = [pytest.mark.git, pytest.mark.anyio]

BRANCH = "main"
AUTHOR = "Sandbox Bot <bot@sandboxd.test>"
FOLDER = "sandbox/ceo-at-acme-com"

Factory = Callable[..., GitOpsApplier]


def git(repo: Path, *args: str) -> str:
    """Inspect the bare repository the way an operator would."""
    env = {**os.environ, "LC_ALL": "C", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo.parent)}
    done = subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, check=True, env=env)
    return done.stdout.decode()


def subjects(repo: Path) -> list[str]:
    return git(repo, "log", "--format=%s", BRANCH).splitlines()


def tree(repo: Path, folder: str = "") -> dict[str, bytes]:
    names = git(repo, "ls-tree", "-r", "--name-only", BRANCH, "--", *([folder] if folder else [])).splitlines()
    return {name: git(repo, "show", f"{BRANCH}:{name}").encode() for name in names}


def under(folder: str, content: dict[str, bytes]) -> dict[str, bytes]:
    return {f"{folder}/{name}": data for name, data in content.items()}


def push_by_hand(bare: Path, clone: Path) -> None:
    """A commit by someone else: a README next to the sandbox folders."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "p", "GIT_AUTHOR_EMAIL": "p@x"}
    env.update(GIT_COMMITTER_NAME="p", GIT_COMMITTER_EMAIL="p@x")
    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True, env=env)
    (clone / "README.md").write_text("hand-written\n")
    for args in (["add", "README.md"], ["commit", "-qm", "docs"], ["push", "-q", "origin", BRANCH]):
        subprocess.run(["git", "-C", str(clone), *args], check=True, env=env)


def git_init_bare(path: Path) -> None:
    subprocess.run(["git", "init", "-q", "--bare", "-b", BRANCH, str(path)], check=True)


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again on exit: nothing listens there


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    return tmp_path / "gitops.git"  # not created: the applier creates a missing local repository


@pytest.fixture
async def appliers(tmp_path: Path, bare: Path) -> AsyncIterator[Factory]:
    made: list[GitOpsApplier] = []

    def make(**overrides: object) -> GitOpsApplier:
        options: dict[str, object] = {
            "repo": str(bare),
            "branch": BRANCH,
            "author": AUTHOR,
            "cache_dir": tmp_path / "cache",
            "backoff": Backoff(attempts=20, base_s=0.01, cap_s=0.2),
            **overrides,
        }
        applier = GitOpsApplier(**options)  # type: ignore[arg-type]
        made.append(applier)
        return applier

    yield make
    for applier in made:
        await applier.aclose()


async def test_commits_the_rendered_files_under_sandbox_owner_uid(appliers: Factory, bare: Path) -> None:
    sandbox = sample_sandbox()
    result = await appliers().apply(sandbox, generation=3)

    assert result.changed
    assert result.ready_replicas is None
    assert tree(bare) == under(FOLDER, files(sandbox))
    resources = yaml.safe_load(tree(bare)[f"{FOLDER}/kustomization.yaml"])["resources"]
    assert sorted(resources) == sorted(set(files(sandbox)) - {"kustomization.yaml"})
    assert subjects(bare) == ["sandboxd: reconcile sandbox sandbox-ceo-at-acme-com generation 3"]
    assert git(bare, "log", "-1", "--format=%an <%ae>|%cn <%ce>", BRANCH).strip() == f"{AUTHOR}|{AUTHOR}"


async def test_no_commit_when_nothing_changed(appliers: Factory, bare: Path) -> None:
    applier = appliers()
    await applier.apply(sample_sandbox(), generation=1)

    again = await applier.apply(sample_sandbox(), generation=1)
    newer_generation_same_files = await applier.apply(sample_sandbox(), generation=2)
    fresh_clone = await appliers().apply(sample_sandbox(), generation=2)

    assert not again.changed
    assert not newer_generation_same_files.changed
    assert not fresh_clone.changed
    assert len(subjects(bare)) == 1


async def test_a_change_is_one_commit_and_removed_files_leave_the_tree(appliers: Factory, bare: Path) -> None:
    applier = appliers()
    await applier.apply(sample_sandbox(), generation=1)

    smaller = sample_sandbox(image="ghcr.io/example/pty-server:v2", without=("httproute.yaml",))
    result = await applier.apply(smaller, generation=2)

    assert result.changed
    assert [ref.kind for ref in result.pruned] == ["HTTPRoute"]
    assert tree(bare) == under(FOLDER, files(smaller))
    assert subjects(bare)[0] == "sandboxd: reconcile sandbox sandbox-ceo-at-acme-com generation 2"
    assert len(subjects(bare)) == 2


async def test_other_writers_commits_are_kept(appliers: Factory, bare: Path, tmp_path: Path) -> None:
    applier = appliers()
    await applier.apply(sample_sandbox("a-at-x-com"), generation=1)
    # Someone else pushes to the branch between two applies (a person, another tool).
    await anyio.to_thread.run_sync(push_by_hand, bare, tmp_path / "other")

    await applier.apply(sample_sandbox("b-at-x-com"), generation=1)

    assert "README.md" in tree(bare)
    assert tree(bare, "sandbox/b-at-x-com") == under("sandbox/b-at-x-com", files(sample_sandbox("b-at-x-com")))
    assert git(bare, "rev-list", "--merges", BRANCH) == ""


async def test_two_writers_on_different_sandboxes_lose_nothing(appliers: Factory, bare: Path) -> None:
    first, second = appliers(), appliers()
    owners = [f"user{i}-at-x-com" for i in range(12)]

    async with anyio.create_task_group() as tg:
        for index, owner in enumerate(owners):
            writer = first if index % 2 == 0 else second
            tg.start_soon(partial(writer.apply, sample_sandbox(owner), generation=1))

    final = tree(bare)
    for owner in owners:
        assert tree(bare, f"sandbox/{owner}") == under(f"sandbox/{owner}", files(sample_sandbox(owner)))
    assert len(final) == sum(len(files(sample_sandbox(o))) for o in owners)
    assert len(subjects(bare)) == len(owners)
    assert git(bare, "rev-list", "--merges", BRANCH) == ""


async def test_two_writers_on_the_same_sandbox_agree_on_one_commit(appliers: Factory, bare: Path) -> None:
    first, second = appliers(), appliers()
    sandbox = sample_sandbox()

    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(first.apply, sandbox, generation=1))
        tg.start_soon(partial(second.apply, sandbox, generation=1))

    assert tree(bare) == under(FOLDER, files(sandbox))
    assert len(subjects(bare)) == 1


async def test_two_writers_with_different_versions_of_one_sandbox_stay_linear(appliers: Factory, bare: Path) -> None:
    first, second = appliers(), appliers()
    old, new = sample_sandbox(), sample_sandbox(image="ghcr.io/example/pty-server:v2")

    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(first.apply, old, generation=1))
        tg.start_soon(partial(second.apply, new, generation=2))

    assert tree(bare) in (under(FOLDER, files(old)), under(FOLDER, files(new)))
    assert git(bare, "rev-list", "--merges", BRANCH) == ""
    # Whichever landed last, the next reconcile of the newest generation converges the folder.
    await first.apply(new, generation=2)
    assert tree(bare) == under(FOLDER, files(new))


async def test_retained_delete_commits_only_what_holds_data(appliers: Factory, bare: Path) -> None:
    applier = appliers()
    sandbox = sample_sandbox()
    await applier.apply(sandbox, generation=1)

    await applier.delete(sandbox, purge=False)
    await applier.delete(sandbox, purge=False)

    remaining = tree(bare, FOLDER)
    assert set(remaining) == {f"{FOLDER}/{name}" for name in kept_files(sandbox) | {"kustomization.yaml"}}
    resources = yaml.safe_load(remaining[f"{FOLDER}/kustomization.yaml"])["resources"]
    assert sorted(resources) == sorted(kept_files(sandbox))
    assert subjects(bare)[0] == "sandboxd: delete sandbox sandbox-ceo-at-acme-com, retaining its data"
    assert len(subjects(bare)) == 2


def real_sandbox(*repos: str) -> RenderedSandbox:
    """The real renderer's sandbox ``emrah`` of ceo@acme.com with ``repos`` (always the same folder)."""
    return render(
        RenderRequest(sandbox_id="emrah", spec=SandboxSpec.model_validate(spec("ceo@acme.com", repos=[*repos]))),
        runtime_settings(),
    )


def claim_in(bare: Path, name: str) -> dict[str, Any]:
    body = yaml.safe_load(tree(bare, FOLDER)[f"{FOLDER}/{name}"])
    assert body["kind"] == "PersistentVolumeClaim"
    return dict(body)


async def test_delete_then_create_with_other_repos_keeps_every_volume_in_the_tree(
    appliers: Factory, bare: Path
) -> None:
    # Issue 11, observed 8: a retained delete then a create for the same email used to drop the old claim's file.
    applier = appliers()
    await applier.apply(real_sandbox("acme/app"), generation=1)
    await applier.delete(real_sandbox("acme/app"), purge=False)
    assert claim_in(bare, "pvc-acme-app.yaml")["metadata"]["annotations"][RETAINED] == "true"

    result = await applier.apply(real_sandbox("acme/web"), generation=1)

    resources = yaml.safe_load(tree(bare)[f"{FOLDER}/kustomization.yaml"])["resources"]
    assert {"pvc-acme-app.yaml", "pvc-acme-web.yaml", "statefulset-pty-server.yaml"} <= set(resources)
    assert claim_in(bare, "pvc-acme-app.yaml")["metadata"]["annotations"][RETAINED] == "true"
    assert RETAINED not in claim_in(bare, "pvc-acme-web.yaml")["metadata"]["annotations"]
    assert not [ref for ref in result.pruned if ref.kind == "PersistentVolumeClaim"]


async def test_a_repo_that_leaves_the_spec_keeps_its_volume_in_the_tree(appliers: Factory, bare: Path) -> None:
    applier = appliers()
    await applier.apply(real_sandbox("acme/app", "acme/tools"), generation=1)

    result = await applier.apply(real_sandbox("acme/app"), generation=2)
    steady = await appliers().apply(real_sandbox("acme/app"), generation=3)  # a fresh clone agrees: no commit

    kept = claim_in(bare, "pvc-acme-tools.yaml")
    assert kept["metadata"]["annotations"] == {
        "openova.io/sandbox-repo": "acme/tools",
        "kustomize.toolkit.fluxcd.io/prune": "disabled",
        "argocd.argoproj.io/sync-options": "Prune=false",
        RETAINED: "true",
    }
    assert result.changed
    assert result.pruned == ()
    assert not steady.changed
    assert len(subjects(bare)) == 2


async def test_purge_removes_the_folder(appliers: Factory, bare: Path) -> None:
    applier = appliers()
    await applier.apply(sample_sandbox("a-at-x-com"), generation=1)
    await applier.apply(sample_sandbox("b-at-x-com"), generation=1)

    await applier.delete(sample_sandbox("a-at-x-com"), purge=True)
    await applier.delete(sample_sandbox("a-at-x-com"), purge=True)

    assert {name.split("/")[1] for name in tree(bare)} == {"b-at-x-com"}
    assert subjects(bare)[0] == "sandboxd: purge sandbox sandbox-a-at-x-com"
    assert len(subjects(bare)) == 3


async def test_a_secret_with_a_value_is_never_committed(appliers: Factory, bare: Path) -> None:
    applier = appliers()
    await applier.apply(sample_sandbox(), generation=1)
    leaking = sample_sandbox(secret_string_data={"token": "sk-live-do-not-commit"})

    with pytest.raises(ApplyRejected) as refused:
        await applier.apply(leaking, generation=2)

    assert "sk-live-do-not-commit" not in str(refused.value)
    assert "token" in str(refused.value)
    assert len(subjects(bare)) == 1
    assert b"sk-live-do-not-commit" not in b"".join(tree(bare).values())


async def test_credentials_never_appear_in_errors(appliers: Factory) -> None:
    password = "pa55-w0rd-xyzzy"
    url = f"http://sandboxd:{password}@127.0.0.1:{refused_port()}/gitops.git"

    with pytest.raises(ApplyUnavailable) as failed:
        await appliers(repo=url).apply(sample_sandbox(), generation=1)

    texts = [str(failed.value), repr(failed.value), str(failed.value.__cause__), repr(failed.value.__cause__)]
    assert "127.0.0.1" in texts[0]
    assert all(password not in text for text in texts)


async def test_credentials_from_settings_stay_out_of_errors(appliers: Factory, tmp_path: Path) -> None:
    password = "t0ken-from-settings"
    settings = ApplierSettings(
        gitops_repo=f"https://127.0.0.1:{refused_port()}/gitops.git",
        gitops_username="sandboxd",
        gitops_password=SecretStr(password),
        gitops_author=AUTHOR,
    )
    applier = GitOpsApplier.from_settings(settings, cache_dir=tmp_path / "cache")
    try:
        with pytest.raises(ApplyUnavailable) as failed:
            await applier.apply(sample_sandbox(), generation=1)
    finally:
        await applier.aclose()

    assert password not in str(failed.value)
    assert password not in repr(applier.remote)


async def test_git_receives_credentials_only_through_its_environment(tmp_path: Path) -> None:
    remote = parse_remote("https://sandboxd:s3cret@git.example/org/gitops.git")
    env = dict(_environment(remote, Identity.parse(AUTHOR)))

    done = await anyio.run_process(
        ["git", "credential", "fill"], input=b"protocol=https\nhost=git.example\n\n", env=env, cwd=tmp_path
    )

    assert remote.url == "https://git.example/org/gitops.git"
    assert "username=sandboxd\npassword=s3cret\n" in done.stdout.decode()
    assert all("s3cret" not in value for key, value in env.items() if key.startswith("GIT_"))


async def test_pushes_to_an_http_remote_with_basic_auth(tmp_path: Path) -> None:
    password = "h77p-s3cret"
    root = tmp_path / "srv"
    await anyio.to_thread.run_sync(lambda: git_init_bare(root / "gitops.git"))
    with serving(GitHttpServer(root=root, username="sandboxd", password=password)) as server:
        settings = ApplierSettings(
            gitops_repo=server.url("gitops.git"),
            gitops_username="sandboxd",
            gitops_password=SecretStr(password),
            gitops_author=AUTHOR,
        )
        applier = GitOpsApplier.from_settings(settings, cache_dir=tmp_path / "cache")
        try:
            first = await applier.apply(sample_sandbox(), generation=1)
            second = await applier.apply(sample_sandbox(), generation=1)
            clone_files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
            assert all(password.encode() not in p.read_bytes() for p in clone_files)
        finally:
            await applier.aclose()

    assert (first.changed, second.changed) == (True, False)
    assert tree(root / "gitops.git") == under(FOLDER, files(sample_sandbox()))
    assert any(header.startswith("Basic ") for header in server.authorizations)


async def test_wrong_http_credentials_are_a_rejection_without_the_password(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    await anyio.to_thread.run_sync(lambda: git_init_bare(root / "gitops.git"))
    wrong = "not-the-password"
    with serving(GitHttpServer(root=root, username="sandboxd", password="right")) as server:
        url = server.url("gitops.git").replace("http://", f"http://sandboxd:{wrong}@")
        applier = GitOpsApplier(repo=url, author=AUTHOR, cache_dir=tmp_path / "cache")
        try:
            with pytest.raises(ApplyRejected) as refused:
                await applier.apply(sample_sandbox(), generation=1)
        finally:
            await applier.aclose()

    assert "Authentication failed" in str(refused.value)
    assert wrong not in str(refused.value)
    assert wrong not in str(refused.value.__cause__)


async def test_a_real_rendered_sandbox_round_trips(appliers: Factory, bare: Path) -> None:
    spec = SandboxSpec.model_validate(
        {
            "owner": {"email": "ceo@acme.com", "orgRef": {"slug": "acme"}},
            "quota": {"cpu": "4", "memory": "8Gi", "storage": "50Gi", "concurrentSessions": 2},
            "repos": [{"giteaRepo": "acme/eventforge"}],
            "agentCatalogue": ["claude-code"],
        }
    )
    settings = RuntimeSettings(
        pty_server_image="ghcr.io/example/pty-server:v1",
        mcp_image="ghcr.io/example/mcp-server:v1",
        newapi_url="https://llm.example/v1",
        sovereign_fqdn="example.org",
    )
    sandbox = render(RenderRequest(sandbox_id="emrah", spec=spec), settings)
    applier = appliers()

    result = await applier.apply(sandbox, generation=1)
    await applier.delete(sandbox, purge=False)

    assert result.changed
    kept = {m.kind for m in sandbox.manifests if f"{FOLDER}/{m.filename}" in tree(bare)}
    assert "Namespace" in kept
    assert "PersistentVolumeClaim" in kept
    assert not {"StatefulSet", "Secret", "Service"} & kept


async def test_a_checked_out_branch_of_a_plain_repository_is_a_rejection(appliers: Factory, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    await anyio.run_process(["git", "init", "-q", "-b", BRANCH, str(plain)])
    await anyio.run_process(
        [
            "git",
            "-C",
            str(plain),
            "-c",
            "user.name=p",
            "-c",
            "user.email=p@x",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ]
    )

    with pytest.raises(ApplyRejected, match="checked out"):
        await appliers(repo=str(plain)).apply(sample_sandbox(), generation=1)


async def test_a_folder_that_is_no_repository_is_rejected(appliers: Factory, tmp_path: Path) -> None:
    folder = tmp_path / "not-a-repo"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello\n")

    with pytest.raises(ApplyRejected, match="not-a-repo"):
        await appliers(repo=str(folder)).apply(sample_sandbox(), generation=1)


async def test_a_clone_left_broken_by_a_failure_is_replaced(appliers: Factory, bare: Path, tmp_path: Path) -> None:
    applier = appliers()
    await applier.apply(sample_sandbox(), generation=1)
    clone = next((tmp_path / "cache").glob("clone-*"))
    (clone / ".git" / "index.lock").write_bytes(b"")  # what a git killed mid-way leaves behind

    with pytest.raises(ApplyUnavailable, match=r"index\.lock"):
        await applier.apply(sample_sandbox(image="ghcr.io/example/pty-server:v2"), generation=2)
    result = await applier.apply(sample_sandbox(image="ghcr.io/example/pty-server:v2"), generation=2)

    assert result.changed
    assert subjects(bare)[0].endswith("generation 2")
    assert not clone.exists()


async def test_aclose_removes_the_working_clone(appliers: Factory, tmp_path: Path) -> None:
    applier = appliers()
    await applier.apply(sample_sandbox(), generation=1)
    assert any((tmp_path / "cache").iterdir())

    await applier.aclose()

    assert not any((tmp_path / "cache").iterdir())
