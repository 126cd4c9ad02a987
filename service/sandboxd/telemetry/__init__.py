"""Telemetry: traces, metrics and logs, with no knowledge of NATS, Kubernetes or HTTP.

- ``tracing``: the tracer provider from ``OTEL_*``, W3C trace context in NATS headers, the span shapes;
- ``metrics``: the ``Instruments`` the runtime records, the meter provider (Prometheus, OTLP);
- ``logs``: JSON or text lines with the sandbox and trace of the context, secrets redacted;
- ``providers``: ``Telemetry``, one process's tracer, instruments and Prometheus registry;
- ``environment``: what the standard ``OTEL_*`` variables say;
- ``testing``: in-memory exporters for tests.

It sits above ``render`` and below ``reconcile``: the use case and the runtime record into it; the app serves
``/metrics`` from its registry (``app.http``).
"""
