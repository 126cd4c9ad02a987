"""The shipped NATS authorization (deploy/nats/) on a real nats-server: each role can do its job, and nothing else.

The server runs ``deploy/nats/nats-server.conf`` as shipped. ``sandboxd init`` provisions the topology as the
admin; ``sandboxd run`` converges a sandbox with the reconciler's credentials; the publisher publishes the event
and reads the status; a console reads it with ``sandboxctl``; the scaler consumes scale commands and
dead-letters one it cannot read; the token writer mints, records and revokes a sandbox's token; the activity
reporter publishes activity; with the tenant bridge on, ``sandboxd
run`` turns a tenant request into a sandbox under the same reconciler role. Each of them is refused nothing the
job needs (the server logs no violation for its user), and refused what the role must not do: nats-py reports
the server's ``permissions violation`` to the error callback, and a request whose subject was refused never
gets an answer.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import nats.errors
import pytest
from nats.js import api
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from integration.cli.sandboxd_processes import SANDBOXCTL, SANDBOXD, ServiceProcess, clean_env, service_env
from integration.idle.rig import scaler_config, until
from integration.tokens.bridge import Bridge, serving
from integration.tokens.test_token_writer_kube import desired_state
from integration.tokens.test_tokens_process import RecordedSecrets
from integration.tokens.test_tokens_process import settings as tokens_settings
from sandboxd import naming
from sandboxd.adapters.jetstream.activity import JetStreamActivity
from sandboxd.adapters.jetstream.connection import connect
from sandboxd.adapters.jetstream.publishing import JetStreamDeadLetters, JetStreamEvents, publish_scale
from sandboxd.adapters.jetstream.stores import KvStore
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.app.scaler import ScalerProcess
from sandboxd.app.tokens import TokensProcess
from sandboxd.errors import BrokerUnavailable
from sandboxd.models.activity import ActivityReport
from sandboxd.models.desired import DesiredState
from sandboxd.models.spec import Expiry, ExpiryPolicy
from sandboxd.models.status import SandboxStatus
from sandboxd.reconcile import expiry, idle, scaling
from sandboxd.reconcile.idle import Action
from sandboxd.render.components import PTY_SERVER
from sandboxd.settings import TopologySettings
from support.spine import Client, event, spec, unique_id
from support.tenants import DEFAULTS, TENANT_STREAM_CONFIG, sandbox_of, tenant_request
from unit.idle.factories import T0, FakeStatefulSets, desired

from .roles import SecuredNats, Session, secured_nats

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredNats]:
    """The shipped configuration, its topology provisioned by ``sandboxd init`` run as the admin."""
    with secured_nats(tmp_path_factory.mktemp("nats-secured")) as server:
        env = clean_env(**server.env("admin"))
        done = subprocess.run([*SANDBOXD, "init"], env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert server.violations("admin") == []
        yield server


def client(session: Session) -> Client:
    return Client(session.nc, session.js)


# --- each role does its job ---------------------------------------------------------------------------------


async def test_publisher_creates_the_reconciler_converges_and_a_console_reads_it(
    secured: SecuredNats, tmp_path: Path
) -> None:
    sandbox_id, root, mark = unique_id("auth"), tmp_path / "rendered", secured.log_mark()
    env = {**service_env(secured.url, root), **secured.env("reconciler")}
    service = ServiceProcess(env, tmp_path / "sandboxd.log").start()
    try:
        async with secured.session("admin") as admin, secured.session("publisher", timeout=5.0) as publisher:
            await until(lambda: fetching(admin), timeout=30, what="sandboxd run to fetch")
            await client(publisher).create(sandbox_id, f"{sandbox_id}@acme.com", sessions=2)
            status = await client(publisher).wait_status(sandbox_id, lambda s: s.observed_generation == 1, timeout=30)
        assert status.replicas is not None and status.replicas.desired == 2
        shown = await sandboxctl("status", sandbox_id, "-o", "json", env=secured.env("console"))
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["sandboxId"] == sandbox_id
        listed = await sandboxctl("status", env=secured.env("console"))
        assert listed.returncode == 0 and sandbox_id in listed.stdout, listed.stderr
    finally:
        service.stop()
    log = service.output()
    assert "Traceback" not in log
    assert all(password not in log for password in secured.passwords.values())
    for role in ("reconciler", "publisher", "console"):
        assert secured.violations(role, since=mark) == [], role


async def test_the_tenant_bridge_in_sandboxd_run_turns_a_tenant_request_into_a_sandbox(
    secured: SecuredNats, tmp_path: Path
) -> None:
    """The bridge runs with the reconciler's credentials, binds once the tenant service has made its stream, and
    its create converges; the admin stands in for the tenant service (its stream, its request)."""
    email, mark = f"{unique_id('tenant')}@acme.com", secured.log_mark()
    sandbox_id = sandbox_of(email)
    env = {
        **service_env(secured.url, tmp_path / "rendered", SANDBOXD_TENANT_BRIDGE="true"),
        **secured.env("reconciler"),
    }
    service = ServiceProcess(env, tmp_path / "sandboxd.log").start()
    try:
        async with secured.session("admin") as admin, secured.session("publisher", timeout=5.0) as publisher:
            await until(lambda: fetching(admin), timeout=30, what="sandboxd run to fetch")
            await admin.js.add_stream(TENANT_STREAM_CONFIG)  # the same config again is not an error
            request = tenant_request(unique_id("evt"), owner_email=email, plan_id="sandbox-pro")
            await admin.js.publish(DEFAULTS.subject, request)
            status = await client(publisher).wait_status(sandbox_id, lambda s: s.observed_generation == 1, timeout=30)
        assert status.replicas is not None and status.replicas.desired == 3  # sandbox-pro's sessions
    finally:
        service.stop()
    log = service.output()
    assert "Traceback" not in log
    for role in ("reconciler", "admin", "publisher"):
        assert secured.violations(role, since=mark) == [], role


async def test_the_reconcilers_sweeper_publishes_the_delete_of_an_expired_sandbox(secured: SecuredNats) -> None:
    """Expiry runs in ``sandboxd run``: its delete goes out with the reconciler's credentials, through the same
    publisher the sweeper uses, and lands in SANDBOX_EVENTS."""
    sid, mark = unique_id("auth-exp"), secured.log_mark()
    record = desired(sid, sessions=1)
    spec_due = record.spec.model_copy(update={"expiry": Expiry(at=T0, policy=ExpiryPolicy.RETAIN)})
    delete = expiry.delete_event(record.model_copy(update={"spec": spec_due}), now=T0 + timedelta(minutes=1))
    async with secured.session("reconciler", timeout=5.0) as reconciler:
        await JetStreamEvents(reconciler.js).publish(delete)
    async with secured.session("admin") as admin:
        stored = await admin.js.get_last_msg(naming.EVENTS_STREAM, naming.event_subject("delete", sid))
    assert (stored.headers or {})["Nats-Msg-Id"] == delete.id
    assert secured.violations("reconciler", since=mark) == []


async def test_the_scaler_consumes_scale_commands_and_dead_letters_what_it_cannot_read(secured: SecuredNats) -> None:
    sid, mark = unique_id("auth-scale"), secured.log_mark()
    asleep = idle.desired_after(desired(sid, sessions=3), idle.Decision(Action.IDLE, "quiet"), now=T0)
    namespace = naming.namespace_for(asleep.owner_uid)
    target = FakeStatefulSets({(namespace, PTY_SERVER): 3})
    config = scaler_config(secured.url, kubeconfig="unused: the target is injected")
    config = dataclasses.replace(config, nats=secured.settings("scaler"))
    scaler, stop = ScalerProcess(config, target=target), anyio.Event()
    async with secured.session("reconciler") as reconciler, anyio.create_task_group() as tg:
        desired_store = KvStore(await reconciler.js.key_value(naming.DESIRED_BUCKET), DesiredState)
        await desired_store.put(naming.desired_key(sid), asleep, revision=None)
        tg.start_soon(scaler.run, stop)
        await publish_scale(reconciler.js, scaling.scale_command(asleep, Action.IDLE, now=T0))
        await until(lambda: target.replicas[(namespace, PTY_SERVER)] == 0, what="the scale-down")
        unreadable = unique_id("auth-bad")
        await reconciler.js.publish(naming.scale_subject(unreadable), b"not a scale command")
        async with secured.session("admin") as admin:
            await until(lambda: dead_letter_of(admin, naming.scale_subject(unreadable)), what="the dead letter")
        stop.set()
    assert secured.violations("scaler", since=mark) == []


async def test_the_token_writer_mints_records_status_and_revokes_under_its_own_role(secured: SecuredNats) -> None:
    """``sandboxd tokens`` lists and reads desired state and writes status as ``sandboxd-tokens``, nothing else."""
    sid, mark, secrets = unique_id("auth-tok"), secured.log_mark(), RecordedSecrets()
    async with (
        serving(Bridge()) as bridge,
        secured.session("reconciler") as reconciler,
        anyio.create_task_group() as tg,
    ):
        process = TokensProcess(
            tokens_settings(secured.settings("tokens"), bridge.url), clock=lambda: datetime.now(UTC), secrets=secrets
        )
        desired_store = KvStore(await reconciler.js.key_value(naming.DESIRED_BUCKET), DesiredState)
        status_store = KvStore(await reconciler.js.key_value(naming.STATUS_BUCKET), SandboxStatus)
        await desired_store.put(naming.desired_key(sid), desired_state(sid), revision=None)
        stop = anyio.Event()
        tg.start_soon(process.run, stop)

        async def token_recorded(present: bool) -> bool:
            record = await status_store.get(naming.status_key(sid))
            return record is not None and (record.value.token is not None) is present

        await until(lambda: token_recorded(True), timeout=30, what="the token recorded in status")
        await desired_store.delete(naming.desired_key(sid))
        await until(lambda: token_recorded(False), timeout=30, what="the revoked token cleared from status")
        # (the module's other sandboxes are in desired state too: only this one's calls are counted)
        mine = [seen for seen in bridge.seen if sid in seen.path or (seen.body or {}).get("sandbox_id") == sid]
        assert [seen.method for seen in mine] == ["POST", "DELETE"]
        assert process.health.ready
        stop.set()
    assert secured.violations("tokens", since=mark) == []


async def test_the_activity_reporter_publishes_activity(secured: SecuredNats) -> None:
    sid, mark = unique_id("auth-act"), secured.log_mark()
    report = ActivityReport(last_activity_at=T0, active_sessions=1)
    async with secured.session("activity") as reporter:
        await JetStreamActivity(reporter.js).publish(sid, report)
    async with secured.session("admin") as admin:
        stored = await admin.js.get_last_msg(naming.ACTIVITY_STREAM, naming.activity_subject(sid))
    assert ActivityReport.model_validate_json(stored.data or b"") == report
    assert secured.violations("activity", since=mark) == []


async def test_only_the_admin_reads_and_replays_dead_letters(secured: SecuredNats) -> None:
    sid, mark = unique_id("auth-dlq"), secured.log_mark()
    subject = naming.event_subject("create", sid)
    body = event("create", sid, {"spec": spec(f"{sid}@acme.com")}).to_json()
    async with secured.session("reconciler") as reconciler:  # the reconciler writes dead letters, never reads them
        await JetStreamDeadLetters(reconciler.js).send_stored(
            subject=subject,
            data=body,
            headers={},
            sequence=uuid.uuid4().int % 10**12,
            deliveries=1,
            reason="T",
            message="m",
        )
    listed = await sandboxctl("dlq", "list", "-o", "json", env=secured.env("admin"))
    assert listed.returncode == 0, listed.stderr
    sequence = next(d["sequence"] for d in json.loads(listed.stdout) if d["originalSubject"] == subject)
    replayed = await sandboxctl("dlq", "replay", str(sequence), env=secured.env("admin"))
    assert replayed.returncode == 0, replayed.stderr
    async with secured.session("admin") as admin:
        assert (await admin.js.get_last_msg(naming.EVENTS_STREAM, subject)).data is not None
    assert secured.violations("admin", since=mark) == []
    for role in ("publisher", "console"):
        refused = await sandboxctl("dlq", "list", env=secured.env(role))
        assert refused.returncode != 0, role
        assert secured.passwords[role] not in refused.stderr


async def test_a_role_that_may_not_read_desired_state_is_told_so_when_a_sandbox_has_no_status(
    secured: SecuredNats,
) -> None:
    """``sandboxctl`` looks for a sandbox with no status in the desired state; the publisher and the console may not
    read it (the server refuses, nothing answers): a second later the sandbox is not found, and the error says why."""
    unknown = unique_id("nostatus")
    for role, args in (("console", ("status", unknown)), ("publisher", ("delete", unknown))):
        started = anyio.current_time()
        done = await sandboxctl(*args, env=secured.env(role))
        assert done.returncode == 1, role
        assert "these credentials may not read the desired state" in done.stderr, done.stderr
        assert anyio.current_time() - started < 15, role  # the read gives up after DESIRED_WAIT_S, not 5 s per try
    async with secured.session("admin") as admin:
        events = await admin.js.stream_info(naming.EVENTS_STREAM, subjects_filter=f"sandbox.delete.{unknown}")
    assert not events.state.subjects  # nothing was published


async def test_the_reconciler_provisions_a_fresh_server_under_its_own_role(tmp_path: Path) -> None:
    with secured_nats(tmp_path / "nats") as fresh:
        async with fresh.session("reconciler", timeout=5.0) as reconciler:
            await ensure_topology(reconciler.js, TopologySettings())  # creates everything
            await ensure_topology(reconciler.js, TopologySettings(max_deliver=20))  # updates what differs
            info = await reconciler.js.consumer_info(naming.EVENTS_STREAM, naming.EVENTS_CONSUMER)
        assert info.config.max_deliver == 20
        assert fresh.violations("reconciler") == []


# --- and nothing else ---------------------------------------------------------------------------------------

Attempt = Callable[[Session], Awaitable[object]]


def publish(subject: str, data: bytes = b"{}") -> Attempt:
    return lambda s: s.js.publish(subject, data)


def stream_info(stream: str) -> Attempt:
    return lambda s: s.js.stream_info(stream)


def direct_get(bucket: str) -> Attempt:
    return lambda s: s.js.get_last_msg(f"KV_{bucket}", f"$KV.{bucket}.someone", direct=True)


DENIED: list[tuple[str, Attempt, str]] = [
    # a publisher: events only, never commands, desired state, dead letters or topology
    ("publisher", publish("sandbox.scale.victim"), "sandbox.scale.victim"),
    ("publisher", publish("$KV.sandbox-desired.victim"), "$KV.sandbox-desired.victim"),
    ("publisher", stream_info("KV_sandbox-desired"), "$JS.API.STREAM.INFO.KV_sandbox-desired"),
    ("publisher", publish("$KV.sandbox-status.victim"), "$KV.sandbox-status.victim"),
    ("publisher", publish("sandbox.dlq.sandbox.create.victim"), "sandbox.dlq.sandbox.create.victim"),
    ("publisher", lambda s: s.js.get_msg(naming.DLQ_STREAM, seq=1), f"$JS.API.STREAM.MSG.GET.{naming.DLQ_STREAM}"),
    ("publisher", stream_info(naming.DLQ_STREAM), f"$JS.API.STREAM.INFO.{naming.DLQ_STREAM}"),
    (
        "publisher",
        lambda s: s.js.add_stream(api.StreamConfig(name="STOLEN", subjects=["sandbox.dlq.>"])),
        "$JS.API.STREAM.CREATE.STOLEN",
    ),
    ("publisher", publish("sandbox.activity.victim"), "sandbox.activity.victim"),
    # a console: reads status, publishes nothing
    ("console", publish("sandbox.create.victim"), "sandbox.create.victim"),
    ("console", publish("sandbox.delete.victim"), "sandbox.delete.victim"),
    ("console", publish("$KV.sandbox-status.victim"), "$KV.sandbox-status.victim"),
    ("console", direct_get(naming.DESIRED_BUCKET), "$JS.API.DIRECT.GET.KV_sandbox-desired.$KV.sandbox-desired.someone"),
    # the activity reporter: activity only
    ("activity", publish("sandbox.create.victim"), "sandbox.create.victim"),
    ("activity", stream_info("KV_sandbox-status"), "$JS.API.STREAM.INFO.KV_sandbox-status"),
    ("activity", direct_get(naming.STATUS_BUCKET), "$JS.API.DIRECT.GET.KV_sandbox-status.$KV.sandbox-status.someone"),
    # the scaler: its own work queue, the desired state read-only
    ("scaler", publish("sandbox.create.victim"), "sandbox.create.victim"),
    ("scaler", publish("sandbox.scale.victim"), "sandbox.scale.victim"),
    ("scaler", publish("$KV.sandbox-desired.victim"), "$KV.sandbox-desired.victim"),
    ("scaler", publish("sandbox.dlq.sandbox.create.victim"), "sandbox.dlq.sandbox.create.victim"),
    # the token writer: desired state read-only, status, nothing of events, commands, owners or dead letters
    ("tokens", publish("sandbox.create.victim"), "sandbox.create.victim"),
    ("tokens", publish("sandbox.scale.victim"), "sandbox.scale.victim"),
    ("tokens", publish("$KV.sandbox-desired.victim"), "$KV.sandbox-desired.victim"),
    ("tokens", publish("sandbox.dlq.sandbox.create.victim"), "sandbox.dlq.sandbox.create.victim"),
    ("tokens", direct_get(naming.OWNERS_BUCKET), "$JS.API.DIRECT.GET.KV_sandbox-owners.$KV.sandbox-owners.someone"),
    ("tokens", stream_info(naming.EVENTS_STREAM), f"$JS.API.STREAM.INFO.{naming.EVENTS_STREAM}"),
    ("tokens", lambda s: s.js.get_msg(naming.DLQ_STREAM, seq=1), f"$JS.API.STREAM.MSG.GET.{naming.DLQ_STREAM}"),
    (
        "tokens",
        lambda s: s.js.purge_stream(f"KV_{naming.STATUS_BUCKET}"),
        f"$JS.API.STREAM.PURGE.KV_{naming.STATUS_BUCKET}",
    ),
    # the reconciler: publishes no event but the tenant bridge's creates and expiry's deletes, never deletes or
    # purges the audit log, and on the tenant service's stream only consumes through its own consumer
    ("reconciler", publish("sandbox.update.victim"), "sandbox.update.victim"),
    ("reconciler", publish("sandbox.suspend.victim"), "sandbox.suspend.victim"),
    ("reconciler", publish(DEFAULTS.subject), DEFAULTS.subject),
    ("reconciler", stream_info(DEFAULTS.stream), f"$JS.API.STREAM.INFO.{DEFAULTS.stream}"),
    (
        "reconciler",
        lambda s: s.js.get_msg(DEFAULTS.stream, seq=1),
        f"$JS.API.STREAM.MSG.GET.{DEFAULTS.stream}",
    ),
    (
        "reconciler",
        lambda s: s.js.add_consumer(DEFAULTS.stream, durable_name="other", filter_subject="catalyst.tenant.>"),
        f"$JS.API.CONSUMER.DURABLE.CREATE.{DEFAULTS.stream}.other",
    ),
    (
        "reconciler",
        lambda s: s.js.delete_stream(DEFAULTS.stream),
        f"$JS.API.STREAM.DELETE.{DEFAULTS.stream}",
    ),
    (
        "reconciler",
        lambda s: s.js.delete_stream(naming.EVENTS_STREAM),
        f"$JS.API.STREAM.DELETE.{naming.EVENTS_STREAM}",
    ),
    (
        "reconciler",
        lambda s: s.js.purge_stream(naming.EVENTS_STREAM),
        f"$JS.API.STREAM.PURGE.{naming.EVENTS_STREAM}",
    ),
]


@pytest.mark.parametrize(
    ("role", "attempt", "subject"), DENIED, ids=[f"{role}-{subject}" for role, _, subject in DENIED]
)
async def test_a_role_is_refused_what_it_must_not_do(
    secured: SecuredNats, role: str, attempt: Attempt, subject: str
) -> None:
    async with secured.session(role, timeout=1.0) as session:
        with pytest.raises(TimeoutError):  # the server drops a refused request: no answer ever comes
            await attempt(session)
        await session.refused("publish", subject)


LEADER_READS = [
    ("publisher", naming.STATUS_BUCKET),
    ("console", naming.STATUS_BUCKET),
    ("scaler", naming.DESIRED_BUCKET),
    ("tokens", naming.DESIRED_BUCKET),
    ("tokens", naming.STATUS_BUCKET),
    ("reconciler", naming.DESIRED_BUCKET),
    ("reconciler", naming.STATUS_BUCKET),
    ("reconciler", naming.OWNERS_BUCKET),
]


@pytest.mark.parametrize(("role", "bucket"), LEADER_READS, ids=[f"{r}-{b}" for r, b in LEADER_READS])
async def test_a_role_reads_its_buckets_from_the_leader_as_at_r3(secured: SecuredNats, role: str, bucket: str) -> None:
    """A bucket with more than one replica is read from its leader (``$JS.API.STREAM.MSG.GET``, not a direct get
    any replica answers): every role that reads a bucket may read it that way too, or at R3 it reads nothing."""
    async with secured.session(role, timeout=2.0) as session:
        kv = KeyValue(name=bucket, stream=f"KV_{bucket}", pre=f"$KV.{bucket}.", js=session.js, direct=False)
        with pytest.raises(KeyNotFoundError):  # an answer (no such key), not a refused request's silence
            await kv.get("nobody")


@pytest.mark.parametrize("role", ["publisher", "console", "activity", "scaler", "tokens", "reconciler"])
async def test_no_role_reads_the_dead_letters_or_the_events_as_they_pass(secured: SecuredNats, role: str) -> None:
    async with secured.session(role) as session:
        await session.nc.subscribe(naming.DLQ_SUBJECTS)
        await session.refused("subscription", naming.DLQ_SUBJECTS)
        await session.nc.subscribe("sandbox.>")
        await session.refused("subscription", "sandbox.>")


async def test_a_role_cannot_read_another_roles_replies(secured: SecuredNats) -> None:
    async with secured.session("console") as console:
        await console.nc.subscribe("_INBOX_publisher.>")
        await console.refused("subscription", "_INBOX_publisher.>")
        await console.nc.subscribe("_INBOX.>")
        await console.refused("subscription", "_INBOX.>")


async def test_a_role_without_its_inbox_prefix_gets_no_answers(secured: SecuredNats) -> None:
    """NATS_INBOX_PREFIX is part of each role's credentials: with the default one every reply is refused."""
    async with secured.session("console", inbox_prefix="_INBOX") as console:
        with pytest.raises(TimeoutError):
            await console.js.stream_info(f"KV_{naming.STATUS_BUCKET}")
        await console.refused("subscription", "_INBOX.", whole_subject=False)


@pytest.mark.parametrize("credentials", [{}, {"user": "sandbox-console", "password": "not-the-password"}])
async def test_anonymous_or_a_wrong_password_cannot_connect(secured: SecuredNats, credentials: dict[str, str]) -> None:
    settings = secured.settings("console", **{"user": None, "password": None, **credentials})
    with pytest.raises(BrokerUnavailable) as refused:
        await connect(settings, allow_reconnect=False)
    assert "not-the-password" not in str(refused.value)


# --- helpers ------------------------------------------------------------------------------------------------


async def fetching(admin: Session) -> bool:
    try:
        info = await admin.js.consumer_info(naming.EVENTS_STREAM, naming.EVENTS_CONSUMER)
    except nats.errors.Error:
        return False
    return (info.num_waiting or 0) >= 1


async def dead_letter_of(admin: Session, subject: str) -> bool:
    try:
        await admin.js.get_last_msg(naming.DLQ_STREAM, naming.dlq_subject(subject))
    except nats.js.errors.NotFoundError:
        return False
    return True


async def sandboxctl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    with anyio.fail_after(30):
        done = await anyio.run_process([*SANDBOXCTL, *args], env=clean_env(**env), check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())
