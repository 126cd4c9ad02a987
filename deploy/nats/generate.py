"""Write deploy/nats/: the JetStream streams, consumers and KV buckets ``sandboxd init`` creates, as files.

The definitions come from ``sandboxd.adapters.jetstream.topology`` with the default ``TopologySettings``
(replicas 1), so the files cannot say something the service does not do; tests/integration/deploy fails when
they drift. Regenerate after changing the topology::

    .venv/bin/python deploy/nats/generate.py

What it deliberately does not do: talk to a server (``provision.sh`` or ``sandboxd init`` does).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sandboxd import naming
from sandboxd.adapters.jetstream import topology
from sandboxd.settings import TopologySettings

HERE = Path(__file__).resolve().parent

#: The buckets ``topology.ensure_topology`` creates and their history, as ``nats kv add`` takes them.
BUCKETS: dict[str, dict[str, Any]] = {
    naming.DESIRED_BUCKET: {"history": 5, "description": "Desired state per sandbox (CAS on the stream sequence)."},
    naming.STATUS_BUCKET: {
        "history": 5,
        "description": "Status projection per sandbox; consoles read and watch it.",
        # Deleted and Rejected records expire (per-message TTL); the server leaves a delete marker this long.
        "marker_ttl_seconds": topology.STATUS_MARKER_TTL_S,
    },
    naming.OWNERS_BUCKET: {"history": 1, "description": "owner-uid -> sandbox id claims (no silent merges)."},
}


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def files(settings: TopologySettings | None = None) -> dict[str, str]:
    """Relative path -> content of every generated file."""
    settings = settings or TopologySettings()
    out: dict[str, str] = {}
    for stream_config in topology.stream_configs(settings):
        out[f"streams/{stream_config.name}.json"] = _json(stream_config.as_dict())
    consumers = (
        (naming.EVENTS_STREAM, topology.consumer_config(settings)),
        (naming.SCALE_STREAM, topology.scale_consumer_config(settings)),
        (naming.ADVISORY_STREAM, topology.advisory_consumer_config()),
    )
    for stream, consumer_config in consumers:
        out[f"consumers/{stream}.{consumer_config.durable_name}.json"] = _json(consumer_config.as_dict())
    buckets = {
        name: {**spec, "replicas": settings.replicas, "storage": "file", "direct": True}
        for name, spec in BUCKETS.items()
    }
    out["buckets.json"] = _json(buckets)
    return out


def main() -> int:
    wanted = files()
    for folder in ("streams", "consumers"):
        for stale in (HERE / folder).glob("*.json"):
            if f"{folder}/{stale.name}" not in wanted:
                stale.unlink()
    for relative, content in wanted.items():
        path = HERE / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    print(f"wrote {len(wanted)} files under {HERE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
