"""The scaler's use case and its settlement: what a command may do, what is acked, retried or dead-lettered."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from prometheus_client import generate_latest

from sandboxd.adapters.memory import MemoryStore
from sandboxd.app.scaler import ScaleWorker, scaler_telemetry
from sandboxd.errors import ApplyRejected, ApplyUnavailable, InvalidEvent, StoreConflict
from sandboxd.models.activity import ScaleCommand
from sandboxd.models.bounds import quote
from sandboxd.models.desired import DesiredState, Lifecycle
from sandboxd.reconcile import idle, scaling
from sandboxd.reconcile.idle import Action, Decision
from sandboxd.reconcile.ports import Delivery
from sandboxd.reconcile.scaling import ScaleOutcome, execute_scale
from sandboxd.runtime.disposition import Disposition
from sandboxd.runtime.retry import Backoff
from sandboxd.telemetry.testing import prometheus_sample
from unit.idle.factories import T0, FakeStatefulSets, desired, minutes
from unit.runtime.fakes import FakeDelivery

pytestmark = pytest.mark.anyio


async def stored(state: DesiredState) -> MemoryStore[DesiredState]:
    store: MemoryStore[DesiredState] = MemoryStore()
    await store.put(state.sandbox_id, state, revision=None)
    return store


def went_idle(state: DesiredState) -> DesiredState:
    return idle.desired_after(state, Decision(Action.IDLE, "x"), now=T0 + minutes(30))


NS = ("sandbox-ceo-at-acme-com", "pty-server")


async def test_an_idle_command_scales_to_zero_once() -> None:
    state = went_idle(desired(email="ceo@acme.com", sessions=3))
    store, target = await stored(state), FakeStatefulSets({NS: 3})
    command = scaling.scale_command(state, Action.IDLE, now=T0)
    result = await execute_scale(command, desired=store, target=target)
    assert (result.outcome, result.replicas, result.previous) == (ScaleOutcome.SCALED, 0, 3)
    assert target.replicas[NS] == 0
    again = await execute_scale(command, desired=store, target=target)  # upstream case 7: already 0
    assert again.outcome is ScaleOutcome.UNCHANGED and len(target.patches) == 1


async def test_an_older_command_is_skipped() -> None:
    state = went_idle(desired(email="ceo@acme.com", sessions=3))
    command = scaling.scale_command(state, Action.IDLE, now=T0)
    resumed = state.model_copy(update={"idle_since": None, "generation": state.generation + 1})
    store, target = await stored(resumed), FakeStatefulSets({NS: 3})
    result = await execute_scale(command, desired=store, target=target)
    assert result.outcome is ScaleOutcome.STALE and target.patches == []


async def test_a_command_ahead_of_the_desired_state_is_retried() -> None:
    state = desired(email="ceo@acme.com")
    command = scaling.scale_command(went_idle(state), Action.IDLE, now=T0)
    with pytest.raises(StoreConflict, match="behind the command"):
        await execute_scale(command, desired=await stored(state), target=FakeStatefulSets({NS: 2}))


async def test_a_command_for_an_earlier_sandbox_of_the_same_id_is_skipped() -> None:
    old = went_idle(desired(email="ceo@acme.com", generation=6))
    command = scaling.scale_command(old, Action.IDLE, now=T0 + minutes(30))
    recreated = desired(email="ceo@acme.com", generation=1, accepted_at=T0 + minutes(60))
    target = FakeStatefulSets({NS: 2})
    result = await execute_scale(command, desired=await stored(recreated), target=target)
    assert result.outcome is ScaleOutcome.STALE and target.patches == []


async def test_gone_sandboxes_and_statefulsets_are_not_scaled() -> None:
    """Upstream case 6 (not a sandbox's StatefulSet: untouched) and NotFound-is-success."""
    state = went_idle(desired(email="ceo@acme.com"))
    command = scaling.scale_command(state, Action.IDLE, now=T0)
    empty: MemoryStore[DesiredState] = MemoryStore()
    target = FakeStatefulSets({("kube-system", "pty-server"): 2})
    assert (await execute_scale(command, desired=empty, target=target)).outcome is ScaleOutcome.GONE
    deleted = state.model_copy(update={"lifecycle": Lifecycle.DELETED})
    assert (await execute_scale(command, desired=await stored(deleted), target=target)).outcome is ScaleOutcome.GONE
    assert (await execute_scale(command, desired=await stored(state), target=target)).outcome is ScaleOutcome.GONE
    assert target.replicas == {("kube-system", "pty-server"): 2} and target.patches == []


FOREIGN = [
    {"namespace": "kube-system"},  # a system namespace, same workload name
    {"stateful_set": "etcd"},  # another workload in the sandbox's own namespace
    {"namespace": "sandbox-someone-else-at-acme-com"},  # another sandbox's pty-server
]


@pytest.mark.parametrize("names", FOREIGN, ids=lambda names: "-".join(names.values()))
async def test_a_command_naming_anything_but_its_own_pty_server_is_refused(names: dict[str, str]) -> None:
    state = went_idle(desired(email="ceo@acme.com", sessions=2))
    others = {
        ("kube-system", "pty-server"): 2,
        (NS[0], "etcd"): 2,
        ("sandbox-someone-else-at-acme-com", "pty-server"): 2,
    }
    store, target = await stored(state), FakeStatefulSets({NS: 2, **others})
    command = scaling.scale_command(state, Action.IDLE, now=T0).model_copy(update=names)
    with pytest.raises(InvalidEvent, match="not the sandbox's pty-server") as refused:
        await execute_scale(command, desired=store, target=target)
    assert refused.value.reason == scaling.TARGET_REFUSED
    assert target.patches == [] and target.replicas == {NS: 2, **others}


async def test_a_command_for_an_unknown_sandbox_is_refused_when_it_names_no_sandbox_namespace() -> None:
    state = went_idle(desired(email="ceo@acme.com"))
    command = scaling.scale_command(state, Action.IDLE, now=T0).model_copy(update={"namespace": "kube-system"})
    target = FakeStatefulSets({("kube-system", "pty-server"): 2})
    with pytest.raises(InvalidEvent) as refused:
        await execute_scale(command, desired=MemoryStore(), target=target)
    assert refused.value.reason == scaling.TARGET_REFUSED and target.patches == []


async def test_a_resume_that_overtakes_the_patch_is_not_undone() -> None:
    """The reconcile of a resume applies N while an idle command's patch to 0 is in flight: the scaler sees
    the newer desired state after patching and puts N back, so the workload does not stay at zero."""
    state = went_idle(desired(email="ceo@acme.com", sessions=2))
    store, target = await stored(state), FakeStatefulSets({NS: 2})

    async def resume_meanwhile() -> None:
        current = await store.get(state.sandbox_id)
        assert current is not None
        resumed = state.model_copy(update={"idle_since": None, "generation": state.generation + 1})
        await store.put(state.sandbox_id, resumed, revision=current.revision)

    target.before_patch = resume_meanwhile
    result = await execute_scale(scaling.scale_command(state, Action.IDLE, now=T0), desired=store, target=target)
    assert result.outcome is ScaleOutcome.SCALED
    assert target.patches == [(*NS, 0), (*NS, 2)] and target.replicas[NS] == 2


# --- settlement -----------------------------------------------------------------------------------------------


@dataclass
class Letters:
    sent: list[tuple[str, str]] = field(default_factory=list)

    async def send(self, delivery: Delivery, *, reason: str, message: str) -> None:
        self.sent.append((reason, message))


def delivery_of(command: ScaleCommand, *, seq: int = 1, delivered: int = 1) -> FakeDelivery:
    return FakeDelivery(f"sandbox.scale.{command.sandbox_id}", command.to_json(), seq, delivered)


#: The scaler's metrics as ``sandboxd scaler`` builds them (OTel, read by Prometheus on a registry of its own).
TELEMETRY = scaler_telemetry()


def counter(name: str, **labels: str) -> float:
    text = generate_latest(TELEMETRY.registry).decode()
    return prometheus_sample(text, name, **labels) or 0.0


async def worker_for(state: DesiredState, target: FakeStatefulSets) -> tuple[ScaleWorker, Letters]:
    letters = Letters()
    disposition = Disposition(dead_letters=letters, backoff=Backoff(1.0, 10.0), max_deliver=5)
    worker = ScaleWorker(
        desired=await stored(state),
        target=target,
        disposition=disposition,
        concurrency=4,
        metrics=TELEMETRY.instruments,
    )
    return worker, letters


async def test_upstream_10_the_counter_goes_up_once_per_scale_down() -> None:
    state = went_idle(desired("sb-metric", email="metric-test@acme.com", sessions=2))
    namespace = "sandbox-metric-test-at-acme-com"
    target = FakeStatefulSets({(namespace, "pty-server"): 2})
    worker, _ = await worker_for(state, target)
    before = counter("sandbox_controller_idle_timeout_events_total", namespace=namespace)
    command = scaling.scale_command(state, Action.IDLE, now=T0)
    first, duplicate = delivery_of(command, seq=1), delivery_of(command, seq=2)
    await worker.handle([duplicate, first])
    assert first.settled == [("ack", None)] and duplicate.settled == [("ack", None)]
    assert counter("sandbox_controller_idle_timeout_events_total", namespace=namespace) == before + 1
    assert target.replicas[(namespace, "pty-server")] == 0


async def test_wakes_are_counted() -> None:
    asleep = went_idle(desired("sb-wake", email="wake@acme.com", sessions=3))
    awake = idle.desired_after(asleep, Decision(Action.WAKE, "y"), now=T0 + minutes(40))
    namespace = "sandbox-wake-at-acme-com"
    target = FakeStatefulSets({(namespace, "pty-server"): 0})
    worker, _ = await worker_for(awake, target)
    labels = {"namespace": namespace, "reason": "Active"}
    before = counter("sandbox_controller_idle_wake_events_total", **labels)
    await worker.handle([delivery_of(scaling.scale_command(awake, Action.WAKE, now=T0))])
    assert target.replicas[(namespace, "pty-server")] == 3
    assert counter("sandbox_controller_idle_wake_events_total", **labels) == before + 1


async def test_transient_failures_nak_with_backoff_and_permanent_ones_dead_letter() -> None:
    state = went_idle(desired(email="ceo@acme.com"))
    command = scaling.scale_command(state, Action.IDLE, now=T0)
    target = FakeStatefulSets({NS: 2}, fail=ApplyUnavailable("apiserver: HTTP 503"))
    worker, letters = await worker_for(state, target)
    transient = delivery_of(command, delivered=2)
    await worker.handle([transient])
    [(kind, delay)] = transient.settled
    assert kind == "nak" and delay is not None and 1.0 <= delay <= 2.0
    last = delivery_of(command, delivered=4)  # the last delivery the consumer allows: dead-letter it
    await worker.handle([last])
    assert last.settled == [("term", None)] and letters.sent[-1][0] == "ApplyUnavailable"
    target.fail = ApplyRejected('statefulsets.apps "pty-server" is forbidden')
    permanent = delivery_of(command)
    await worker.handle([permanent])
    assert permanent.settled == [("term", None)]
    assert letters.sent[-1] == ("ApplyRejected", 'statefulsets.apps "pty-server" is forbidden')


async def test_malformed_commands_are_dead_lettered() -> None:
    state = desired(email="ceo@acme.com")
    worker, letters = await worker_for(state, FakeStatefulSets({NS: 2}))
    garbage = FakeDelivery("sandbox.scale.sb-1", b'{"commandId": ""}')
    elsewhere = delivery_of(scaling.scale_command(state, Action.IDLE, now=T0))
    elsewhere.subject = "sandbox.scale.sb-other"
    far = delivery_of(scaling.scale_command(state, Action.IDLE, now=T0))
    far.subject = "sandbox.scale." + "x" * 4000  # quoted at most 200 characters, then …
    await worker.handle([garbage, elsewhere, far])
    assert garbage.settled == elsewhere.settled == far.settled == [("term", None)]
    assert [reason for reason, _ in letters.sent] == ["InvalidEvent"] * 3
    assert "arrived on 'sandbox.scale.sb-other'" in letters.sent[1][1]
    assert letters.sent[2][1].endswith(f"arrived on {quote(far.subject)}") and len(letters.sent[2][1]) < 300


async def test_a_refused_target_is_dead_lettered_and_counted() -> None:
    state = went_idle(desired(email="ceo@acme.com", sessions=2))
    target = FakeStatefulSets({NS: 2, ("kube-system", "pty-server"): 2})
    worker, letters = await worker_for(state, target)
    before = counter("sandboxd_scale_commands_total", reason="Idle", outcome="refused")
    command = scaling.scale_command(state, Action.IDLE, now=T0).model_copy(update={"namespace": "kube-system"})
    forged = delivery_of(command)
    await worker.handle([forged])
    assert forged.settled == [("term", None)]
    [(reason, message)] = letters.sent
    assert reason == scaling.TARGET_REFUSED and "'kube-system'/'pty-server'" in message
    assert counter("sandboxd_scale_commands_total", reason="Idle", outcome="refused") == before + 1
    assert target.patches == []


async def test_a_reason_outside_the_contract_is_malformed() -> None:
    """``reason`` is a metric label: free text would let a publisher mint label values without bound."""
    state = went_idle(desired(email="ceo@acme.com"))
    worker, letters = await worker_for(state, FakeStatefulSets({NS: 2}))
    body = scaling.scale_command(state, Action.IDLE, now=T0).model_dump(mode="json", by_alias=True)
    odd = FakeDelivery(f"sandbox.scale.{state.sandbox_id}", json.dumps({**body, "reason": "x" * 40}).encode())
    await worker.handle([odd])
    assert odd.settled == [("term", None)] and [r for r, _ in letters.sent] == ["InvalidEvent"]
