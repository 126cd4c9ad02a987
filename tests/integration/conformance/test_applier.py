"""The ``Applier`` port's contract (``reconcile.ports.Applier``), held by ``MemoryApplier`` and the file applier.

What the reconciler relies on: every method is idempotent, ``ApplyResult.applied`` names every rendered object,
``changed`` says whether anything moved (the status's generation note depends on it), and a sandbox deleted
(retained or purged) can be applied again.
"""

from __future__ import annotations

import pytest

from sandboxd.reconcile.ports import Applier
from support.sandboxes import sample_sandbox

pytestmark = pytest.mark.anyio


async def test_apply_names_every_object_and_says_whether_anything_changed(applier: Applier) -> None:
    sandbox = sample_sandbox()
    first = await applier.apply(sandbox, generation=1)
    assert first.changed
    assert {(r.kind, r.name, r.namespace) for r in first.applied} == {
        (m.kind, m.name, m.namespace) for m in sandbox.manifests
    }
    again = await applier.apply(sandbox, generation=1)
    assert not again.changed and again.applied == first.applied
    moved = await applier.apply(sample_sandbox(image="ghcr.io/example/pty-server:v2"), generation=2)
    assert moved.changed


@pytest.mark.parametrize("purge", [False, True])
async def test_a_delete_is_idempotent_and_the_sandbox_can_come_back(applier: Applier, purge: bool) -> None:
    sandbox = sample_sandbox()
    await applier.apply(sandbox, generation=1)
    await applier.delete(sandbox, purge=purge)
    await applier.delete(sandbox, purge=purge)
    back = await applier.apply(sandbox, generation=2)
    assert back.changed
    await applier.aclose()
