"""What the standard ``OTEL_*`` variables say: whether and where to export over OTLP/HTTP, and the resource.

Read from ``os.environ`` when a provider is built (the OTLP exporters read their headers, timeouts and
certificates from the same variables themselves). Only OTLP over HTTP/protobuf is installed; another
``OTEL_EXPORTER_OTLP_PROTOCOL`` gets a warning and HTTP.
"""

from __future__ import annotations

import logging
import os
from typing import Final

from opentelemetry.sdk.resources import Resource

from sandboxd import __version__

log = logging.getLogger(__name__)

SERVICE_NAME: Final = "sandboxd"


def flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() == "true"


def otlp_endpoint(signal: str) -> str | None:
    """The OTLP/HTTP URL for ``signal`` (``traces`` or ``metrics``), or None: nothing is exported.

    ``OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`` is used as given; ``OTEL_EXPORTER_OTLP_ENDPOINT`` is a base URL
    that gets ``/v1/<signal>`` appended, as the OTLP exporter specification says. ``OTEL_SDK_DISABLED=true``
    or ``OTEL_<SIGNAL>_EXPORTER=none`` turn the signal's export off.
    """
    if flag("OTEL_SDK_DISABLED") or os.environ.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip() == "none":
        return None
    specific = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "").strip()
    if specific:
        return specific
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if base:
        return f"{base.rstrip('/')}/v1/{signal}"
    return None


def check_protocol(signal: str) -> None:
    protocol = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    if protocol and protocol.strip() != "http/protobuf":
        log.warning("OTLP protocol %s is not available here; exporting %s over http/protobuf", protocol, signal)


def resource() -> Resource:
    """``service.name`` from ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES``, else ``sandboxd``."""
    detected = Resource.create({"service.version": __version__})
    if str(detected.attributes.get("service.name", "")).startswith("unknown_service"):
        detected = detected.merge(Resource({"service.name": SERVICE_NAME}))
    return detected
