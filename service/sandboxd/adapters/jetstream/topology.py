"""Streams, KV buckets and the shared durable consumer, created or updated idempotently and race-free.

Runs at every start-up and as ``sandboxd init``. The oldest server supported is nats-server 2.11: the status
bucket relies on per-message TTL (``allow_msg_ttl``) so a Deleted record expires on its own, and on subject
delete markers so a console watching the bucket sees it go. A server that silently ignores those fields (2.10
and older) is refused with a message that says so. Otherwise one subject filter per consumer.

Many replicas may run it at once, on a fresh server or cluster. Every step is "make it so", never "create":

- a stream is looked up, created when missing, and updated to this config when it exists. A create that
  loses the race to another replica ("stream name already in use", error 10058) updates instead;
- a KV bucket is a stream ``KV_<bucket>``: created when missing (the same race rule), and its replica count
  moved to ``SANDBOXD_STREAM_REPLICAS`` like the streams' (so ``init`` at R3 after R1 moves the buckets too);
  the status bucket also gets per-message TTL and delete markers (a bucket made by an older release is updated);
- a durable consumer is created or updated in one request; a create that races another replica's
  ("consumer already exists", 10013/10105/10148) is asked once more, which then updates;
- a step JetStream cannot answer right now (a fresh cluster electing its meta leader, a leader change) is
  retried with a growing pause for up to ``patience_s``, then raises ``BrokerUnavailable``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Final, TypeVar

import anyio
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from sandboxd import naming
from sandboxd.adapters.jetstream.errors import boundary
from sandboxd.errors import BrokerRefused, BrokerUnavailable
from sandboxd.settings import TopologySettings

T = TypeVar("T")

#: "stream name already in use with a different configuration": another replica created it first.
STREAM_NAME_IN_USE: Final = 10058
#: "no suitable peers for placement": a cluster still forming (its peers not yet known to the meta leader), or
#: more replicas asked for than the cluster has servers. Retried for the step's patience, then named.
NO_PLACEMENT: Final = 10005
#: "consumer name already in use" (10013), "consumer already exists" (10105, 10148).
CONSUMER_EXISTS: Final = frozenset({10013, 10105, 10148})
#: How long a step waits for JetStream to answer (a fresh cluster elects its leaders within seconds), s.
PATIENCE_S: Final = 60.0

log = logging.getLogger(__name__)

HOUR = 3600.0
#: How long the marker the server leaves when a status record expires stays (watchers see it as a delete), s.
#: The server raises any shorter per-message TTL to this, so it never exceeds the status retention.
STATUS_MARKER_TTL_S: Final = 15 * 60.0


def status_marker_ttl_s(settings: TopologySettings) -> float:
    """The status bucket's delete-marker TTL: ``STATUS_MARKER_TTL_S``, or the retention when that is shorter."""
    return min(STATUS_MARKER_TTL_S, settings.status_retention_s)


def stream_configs(settings: TopologySettings) -> list[api.StreamConfig]:
    replicas = settings.replicas
    return [
        api.StreamConfig(
            name=naming.EVENTS_STREAM,
            description="Sandbox lifecycle events: the audit log (limits retention).",
            subjects=list(naming.EVENT_SUBJECTS),
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=settings.events_max_age_s,
            duplicate_window=settings.duplicate_window_s,
            num_replicas=replicas,
        ),
        api.StreamConfig(
            name=naming.DLQ_STREAM,
            description="Events that could not be processed, with the reason in headers.",
            subjects=[naming.DLQ_SUBJECTS],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=settings.dlq_max_age_s,
            duplicate_window=min(settings.duplicate_window_s, settings.dlq_max_age_s),
            num_replicas=replicas,
        ),
        api.StreamConfig(
            name=naming.ADVISORY_STREAM,
            description="Max-deliveries advisories of the reconciler consumer, kept for the DLQ mover.",
            subjects=[f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{naming.EVENTS_STREAM}.{naming.EVENTS_CONSUMER}"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=7 * 24 * HOUR,
            num_replicas=replicas,
        ),
        api.StreamConfig(
            name=naming.ACTIVITY_STREAM,
            description="Latest activity report per sandbox (newest wins).",
            subjects=[naming.ACTIVITY_SUBJECTS],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_msgs_per_subject=1,
            max_age=7 * 24 * HOUR,
            num_replicas=replicas,
        ),
        api.StreamConfig(
            name=naming.SCALE_STREAM,
            description="Idle-scale commands for the sibling scaler (work queue; commandId dedupes).",
            subjects=[naming.SCALE_SUBJECTS],
            retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE,
            max_age=24 * HOUR,
            duplicate_window=min(settings.duplicate_window_s, 24 * HOUR),
            num_replicas=replicas,
        ),
    ]


def consumer_config(settings: TopologySettings) -> api.ConsumerConfig:
    return api.ConsumerConfig(
        durable_name=naming.EVENTS_CONSUMER,
        description="sandboxd reconcilers: one durable shared by every replica.",
        deliver_policy=api.DeliverPolicy.ALL,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait_s,
        max_deliver=settings.max_deliver,
        max_ack_pending=settings.max_ack_pending,
        max_waiting=512,
    )


def advisory_consumer_config() -> api.ConsumerConfig:
    return api.ConsumerConfig(
        durable_name=naming.ADVISORY_CONSUMER,
        description="sandboxd: dead-letters the events the reconciler consumer gave up on (max deliveries).",
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_deliver=20,
        max_ack_pending=64,
    )


def scale_consumer_config(settings: TopologySettings) -> api.ConsumerConfig:
    return api.ConsumerConfig(
        durable_name=naming.SCALE_CONSUMER,
        description="sandboxd scaler: executes idle-scale commands.",
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait_s,
        max_deliver=settings.max_deliver,
        max_ack_pending=256,
    )


async def _patiently(step: Callable[[], Awaitable[T]], *, what: str, patience_s: float) -> T:
    deadline, pause = time.monotonic() + patience_s, 0.2
    while True:
        try:
            with boundary(what):
                return await step()
        except BrokerUnavailable as exc:
            if time.monotonic() + pause > deadline:
                raise
            log.info("%s; retrying in %.1fs", exc.message, pause)
        except BrokerRefused as exc:
            if not _no_placement(exc):
                raise
            if time.monotonic() + pause > deadline:
                raise BrokerRefused(
                    f"{exc.message}; does SANDBOXD_STREAM_REPLICAS ask for more replicas than the cluster has servers?"
                ) from exc
            log.info("%s (a cluster still forming?); retrying in %.1fs", exc.message, pause)
        await anyio.sleep(pause)
        pause = min(pause * 2, 5.0)


def _no_placement(error: BrokerRefused) -> bool:
    cause = error.__cause__
    return isinstance(cause, APIError) and cause.err_code == NO_PLACEMENT


async def ensure_stream(js: JetStreamContext, config: api.StreamConfig) -> None:
    name = str(config.name)
    try:
        await js.stream_info(name)
    except NotFoundError:
        try:
            await js.add_stream(config)
        except APIError as exc:
            if exc.err_code != STREAM_NAME_IN_USE:
                raise
            log.info("stream %s was created by another replica meanwhile; updating it", name)
        else:
            log.info("created stream %s", name)
            return
    await js.update_stream(config)


async def ensure_bucket(
    js: JetStreamContext, bucket: str, *, history: int, replicas: int, marker_ttl_s: float | None = None
) -> KeyValue:
    """The bucket, created when missing; ``marker_ttl_s`` makes its records able to expire (per-message TTL)."""
    try:
        kv = await js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        try:
            log.info("creating KV bucket %s", bucket)
            kv = await js.create_key_value(
                bucket=bucket, history=history, replicas=replicas, storage=api.StorageType.FILE, direct=True
            )
        except APIError as exc:
            if exc.err_code != STREAM_NAME_IN_USE:
                raise
            log.info("KV bucket %s was created by another replica meanwhile", bucket)
            kv = await js.key_value(bucket)
    await _conform(js, f"KV_{bucket}", replicas=replicas, marker_ttl_s=marker_ttl_s)
    return kv


async def _conform(js: JetStreamContext, stream: str, *, replicas: int, marker_ttl_s: float | None) -> None:
    """A bucket's stream to ``replicas`` copies (and per-message TTL with delete markers when asked), keeping
    the rest of its config (history, limits) as it is."""
    config = (await js.stream_info(stream)).config
    wants_ttl = marker_ttl_s is not None
    ttl_ok = not wants_ttl or (config.allow_msg_ttl and config.subject_delete_marker_ttl == marker_ttl_s)
    if config.num_replicas == replicas and ttl_ok:
        return
    log.info("updating %s: %d replicas%s", stream, replicas, ", per-message TTL" if wants_ttl else "")
    config.num_replicas = replicas
    if wants_ttl:
        config.allow_msg_ttl = True
        config.subject_delete_marker_ttl = marker_ttl_s
    updated = (await js.update_stream(config)).config
    if wants_ttl and not updated.allow_msg_ttl:
        raise BrokerRefused(
            f"this nats-server ignores per-message TTL on {stream}; sandboxd needs nats-server 2.11 or later"
        )


async def ensure_consumer(js: JetStreamContext, stream: str, config: api.ConsumerConfig) -> None:
    try:
        await js.add_consumer(stream, config=config)
    except APIError as exc:
        if exc.err_code not in CONSUMER_EXISTS:
            raise
        log.info("consumer %s/%s was created by another replica meanwhile; updating it", stream, config.durable_name)
        await js.add_consumer(stream, config=config)


async def ensure_topology(js: JetStreamContext, settings: TopologySettings, *, patience_s: float = PATIENCE_S) -> None:
    """Create or update every stream, bucket and consumer; safe to run from many replicas at once."""
    replicas = settings.replicas

    for config in stream_configs(settings):
        await _patiently(partial(ensure_stream, js, config), what=f"stream {config.name}", patience_s=patience_s)
    for bucket, history in ((naming.DESIRED_BUCKET, 5), (naming.STATUS_BUCKET, 5), (naming.OWNERS_BUCKET, 1)):
        marker_ttl_s = status_marker_ttl_s(settings) if bucket == naming.STATUS_BUCKET else None
        ensure = partial(ensure_bucket, js, bucket, history=history, replicas=replicas, marker_ttl_s=marker_ttl_s)
        await _patiently(ensure, what=f"KV bucket {bucket}", patience_s=patience_s)
    consumers = (
        (naming.EVENTS_STREAM, consumer_config(settings)),
        (naming.SCALE_STREAM, scale_consumer_config(settings)),
        (naming.ADVISORY_STREAM, advisory_consumer_config()),
    )
    for stream, consumer in consumers:
        what = f"consumer {stream}/{consumer.durable_name}"
        await _patiently(partial(ensure_consumer, js, stream, consumer), what=what, patience_s=patience_s)
