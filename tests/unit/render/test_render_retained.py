"""Retained claims: every claim opts out of GitOps pruning, and a claim the sandbox no longer renders is carried.

``keep_claims`` is what the GitOps and directory appliers write when a repo leaves the spec or a sandbox is
created again after a retained delete: the claims the folder held stay, marked, listed in the kustomization.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from sandboxd.errors import RenderError
from sandboxd.render import KUSTOMIZATION, Manifest, RenderedSandbox, files
from sandboxd.render.retained import keep_claims, retire_claims
from sandboxd.render.storage import is_retained, retained_claim

CASES = ["minimal-stdio", "full", "http-mcp"]  # the golden cases (conftest)

Render = Callable[..., RenderedSandbox]
OPT_OUTS = {"kustomize.toolkit.fluxcd.io/prune": "disabled", "argocd.argoproj.io/sync-options": "Prune=false"}


def claims_of(rendered: RenderedSandbox) -> dict[str, dict[str, Any]]:
    return {m.filename: dict(m.body) for m in rendered.by_kind("PersistentVolumeClaim")}


def listed(rendered: RenderedSandbox) -> list[str]:
    return list(yaml.safe_load(files(rendered)[KUSTOMIZATION])["resources"])


@pytest.mark.parametrize("case", CASES)
def test_every_rendered_claim_opts_out_of_flux_and_argo_pruning(
    case: str, render_case: Callable[[str], RenderedSandbox]
) -> None:
    for body in claims_of(render_case(case)).values():
        assert OPT_OUTS.items() <= body["metadata"]["annotations"].items()
        assert not is_retained(body)


def test_a_claim_no_longer_rendered_is_carried_marked_and_listed(upstream: Render) -> None:
    before = upstream()
    after = upstream(repos=[{"giteaRepo": "acme/eventforge"}])

    kept = keep_claims(after, before.by_kind("PersistentVolumeClaim"))

    carried = claims_of(kept)["pvc-acme-internal-tools.yaml"]
    original = claims_of(before)["pvc-acme-internal-tools.yaml"]
    assert is_retained(carried)
    assert {**carried, "metadata": {}} == {**original, "metadata": {}}  # spec untouched: same volume, same size
    assert carried["metadata"]["labels"] == original["metadata"]["labels"]
    expected = listed(after)
    expected.insert(expected.index("pvc-acme-eventforge.yaml") + 1, "pvc-acme-internal-tools.yaml")
    assert listed(kept) == expected
    assert not is_retained(claims_of(kept)["pvc-acme-eventforge.yaml"])


def test_carrying_is_stable_so_a_steady_folder_is_not_rewritten(upstream: Render) -> None:
    after = upstream(repos=[])
    once = keep_claims(after, upstream().by_kind("PersistentVolumeClaim"))
    twice = keep_claims(after, once.by_kind("PersistentVolumeClaim"))
    assert files(twice) == files(once)
    assert retained_claim(retained_claim(claims_of(once)["pvc-acme-eventforge.yaml"])) == retained_claim(
        claims_of(once)["pvc-acme-eventforge.yaml"]
    )


def test_a_rendered_claim_wins_over_the_folder_copy(upstream: Render) -> None:
    rendered = upstream()
    old = retire_claims(rendered).by_kind("PersistentVolumeClaim")
    assert keep_claims(rendered, old) is rendered


def test_a_claim_written_before_the_opt_outs_gains_them() -> None:
    old = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "repo-x", "namespace": "ns"}}
    marked = retained_claim(old)
    assert marked["metadata"]["annotations"] == {**OPT_OUTS, "openova.io/sandbox-retained": "true"}
    assert "annotations" not in old["metadata"]  # the input is not changed


def test_a_taken_file_name_moves_the_carried_claim_aside(upstream: Render) -> None:
    rendered = upstream()
    stranger = Manifest(
        "pvc-acme-eventforge.yaml",
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "repo-old", "namespace": "ns"}},
    )
    kept = keep_claims(rendered, [stranger])
    assert claims_of(kept)["pvc-retained-repo-old.yaml"]["metadata"]["name"] == "repo-old"
    assert claims_of(kept)["pvc-acme-eventforge.yaml"] == claims_of(rendered)["pvc-acme-eventforge.yaml"]

    twice = Manifest("pvc-retained-repo-old.yaml", stranger.body)
    other = Manifest(
        "pvc-retained-repo-old.yaml", {**stranger.body, "metadata": {"name": "repo-old", "namespace": "b"}}
    )
    with pytest.raises(RenderError, match="repo-old"):
        keep_claims(kept, [twice, other])


def test_a_sandbox_without_claims_gets_the_carried_ones_before_its_workloads(upstream: Render) -> None:
    kept = keep_claims(upstream(repos=[]), upstream().by_kind("PersistentVolumeClaim"))
    kinds = [m.kind for m in kept.manifests]
    assert kinds.index("PersistentVolumeClaim") > kinds.index("Secret")
    assert kinds.index("PersistentVolumeClaim") < kinds.index("ConfigMap")
