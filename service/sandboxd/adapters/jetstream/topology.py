"""Streams, KV buckets and the shared durable consumer, created or updated idempotently.

Runs at every start-up and as ``sandboxd init``. Only features nats-server 2.9 honours are used: one subject
filter per consumer, no per-message TTL, bucket-level ``max_age`` for expiry.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from sandboxd import naming
from sandboxd.settings import TopologySettings

log = logging.getLogger(__name__)

HOUR = 3600.0


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
            subjects=[
                f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{naming.EVENTS_STREAM}.{naming.EVENTS_CONSUMER}"
            ],
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


async def ensure_stream(js: JetStreamContext, config: api.StreamConfig) -> None:
    try:
        await js.stream_info(str(config.name))
    except NotFoundError:
        await js.add_stream(config)
        log.info("created stream %s", config.name)
        return
    await js.update_stream(config)


async def ensure_bucket(js: JetStreamContext, bucket: str, *, history: int, replicas: int) -> KeyValue:
    try:
        return await js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        log.info("creating KV bucket %s", bucket)
        return await js.create_key_value(
            bucket=bucket, history=history, replicas=replicas, storage=api.StorageType.FILE, direct=True
        )


async def ensure_topology(js: JetStreamContext, settings: TopologySettings) -> None:
    """Create or update every stream, bucket and consumer; safe to run from many replicas at once."""
    for config in stream_configs(settings):
        await ensure_stream(js, config)
    await ensure_bucket(js, naming.DESIRED_BUCKET, history=5, replicas=settings.replicas)
    await ensure_bucket(js, naming.STATUS_BUCKET, history=5, replicas=settings.replicas)
    await ensure_bucket(js, naming.OWNERS_BUCKET, history=1, replicas=settings.replicas)
    await js.add_consumer(naming.EVENTS_STREAM, config=consumer_config(settings))
    await js.add_consumer(naming.SCALE_STREAM, config=scale_consumer_config(settings))
    await js.add_consumer(naming.ADVISORY_STREAM, config=advisory_consumer_config())
