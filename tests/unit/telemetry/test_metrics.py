"""Metrics: the instruments, what Prometheus reads from them, and the cardinality guards."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from sandboxd.telemetry.metrics import PhaseTally, bounded, noop_instruments
from sandboxd.telemetry.scaling import ScalerTelemetry
from sandboxd.telemetry.testing import Captured, capture, prometheus_sample


@pytest.fixture
def captured() -> Captured:
    return capture()


def prometheus(captured: Captured) -> str:
    return generate_latest(captured.telemetry.registry).decode()


def test_every_recording_reaches_prometheus_with_its_attributes(captured: Captured) -> None:
    metrics = captured.telemetry.instruments
    metrics.reconciled(0.042, "done")
    metrics.reconciled(1.5, "retry")
    metrics.retried("ApplyUnavailable")
    metrics.dead_lettered("InvalidEvent")
    metrics.watch_settlements(lambda: {"ack": 5, "nak": 1, "term": 0, "dead_letter": 0})
    metrics.apply_failed("ApplyRejected")
    metrics.watch_idle(idled=lambda: 4, woken=lambda: 2)
    text = prometheus(captured)
    assert prometheus_sample(text, "sandboxd_reconcile_duration_seconds_bucket", result="done", le="0.05") == 1
    assert prometheus_sample(text, "sandboxd_reconcile_duration_seconds_bucket", result="done", le="0.025") == 0
    assert prometheus_sample(text, "sandboxd_reconcile_duration_seconds_count", result="retry") == 1
    assert prometheus_sample(text, "sandboxd_retries_total", reason="ApplyUnavailable") == 1
    assert prometheus_sample(text, "sandboxd_dead_letters_total", reason="InvalidEvent") == 1
    assert prometheus_sample(text, "sandboxd_deliveries_settled_total", action="ack") == 5
    assert prometheus_sample(text, "sandboxd_deliveries_settled_total", action="nak") == 1
    assert prometheus_sample(text, "sandboxd_deliveries_settled_total", action="dead_letter") is None
    assert prometheus_sample(text, "sandboxd_apply_errors_total", reason="ApplyRejected") == 1
    assert prometheus_sample(text, "sandboxd_idle_scale_downs_total") == 4
    assert prometheus_sample(text, "sandboxd_idle_wakes_total") == 2
    assert prometheus_sample(text, "target_info", service_name="sandboxd") == 1


def test_gauges_read_the_queue_the_consumer_figures_and_the_phases(captured: Captured) -> None:
    metrics = captured.telemetry.instruments
    text = prometheus(captured)
    # Nothing registered, nothing sampled yet: every gauge reads 0 (not "no data"), every phase too.
    assert prometheus_sample(text, "sandboxd_queue_depth") == 0
    assert prometheus_sample(text, "sandboxd_consumer_lag") == 0
    assert prometheus_sample(text, "sandboxd_sandboxes", phase="Deleted") == 0
    assert prometheus_sample(text, "sandboxd_deliveries_settled_total", action="term") == 0
    assert prometheus_sample(text, "sandboxd_dead_letters_total") == 0
    metrics.watch_queue(depth=lambda: 3, held=lambda: 7)
    metrics.consumer.update(pending=12, ack_pending=4, redelivered=1)
    metrics.phases.observe("sb-1", "Ready")
    metrics.phases.observe("sb-2", "Ready")
    metrics.phases.observe("sb-3", "Failed")
    text = prometheus(captured)
    assert prometheus_sample(text, "sandboxd_queue_depth") == 3
    assert prometheus_sample(text, "sandboxd_queue_held") == 7
    assert prometheus_sample(text, "sandboxd_consumer_lag") == 12
    assert prometheus_sample(text, "sandboxd_consumer_ack_pending") == 4
    assert prometheus_sample(text, "sandboxd_sandboxes", phase="Ready") == 2
    assert prometheus_sample(text, "sandboxd_sandboxes", phase="Failed") == 1
    assert "sb-1" not in text and "sb-3" not in text  # never a sandbox id in a metric


def test_metric_names_are_seen_by_an_otlp_style_reader_too(captured: Captured) -> None:
    captured.telemetry.instruments.reconciled(0.1, "done")
    captured.telemetry.instruments.dead_lettered("InvalidEvent")
    assert {"sandboxd.reconcile.duration", "sandboxd.dead_letters"} <= captured.metric_names()


def test_phase_tally_moves_a_sandbox_between_phases_and_keeps_zeros() -> None:
    tally = PhaseTally()
    tally.observe("sb-1", "Provisioning")
    tally.observe("sb-1", "Provisioning")
    assert tally.counts() == {"Provisioning": 1}
    tally.observe("sb-1", "Ready")
    assert tally.counts() == {"Provisioning": 0, "Ready": 1}
    tally.observe("sb-1", None)
    assert tally.counts() == {"Provisioning": 0, "Ready": 0}


def test_reasons_outside_the_vocabulary_are_folded_into_other() -> None:
    assert bounded("ApplyRejected") == "ApplyRejected"
    assert bounded("sandbox sb-1 failed: quota") == "Other"
    assert bounded("x" * 65) == "Other"
    assert bounded("") == "Other"


def test_noop_instruments_accept_everything() -> None:
    metrics = noop_instruments()
    metrics.reconciled(0.1, "done")
    metrics.dead_lettered("InvalidEvent")
    metrics.watch_queue(depth=lambda: 1, held=lambda: 1)


def test_the_scalers_series_are_at_zero_before_its_first_command() -> None:
    telemetry = ScalerTelemetry.from_environment(reasons=["Idle", "Active"], outcomes=["scaled", "refused"])
    text = generate_latest(telemetry.registry).decode()
    assert prometheus_sample(text, "sandboxd_scale_commands_total", reason="Active", outcome="refused") == 0
    assert prometheus_sample(text, "sandbox_controller_idle_timeout_events_total") == 0
    assert prometheus_sample(text, "sandbox_controller_idle_wake_events_total") == 0
    assert prometheus_sample(text, "sandboxd_scaler_loop_errors_total") == 0
    namespace = "sandbox-a-at-acme-com"
    telemetry.instruments.idled(namespace)
    text = generate_latest(telemetry.registry).decode()
    assert prometheus_sample(text, "sandbox_controller_idle_timeout_events_total", namespace=namespace) == 1
    telemetry.shutdown()


def test_token_outcomes_are_at_zero_from_start_up_and_count_each_outcome(captured: Captured) -> None:
    text = prometheus(captured)
    for outcome in ("minted", "rotated", "failed", "revoked"):
        assert prometheus_sample(text, "sandboxd_tokens_total", outcome=outcome) == 0
    metrics = captured.telemetry.instruments
    metrics.token_event("minted")
    metrics.token_event("failed")
    metrics.token_event("failed")
    text = prometheus(captured)
    assert prometheus_sample(text, "sandboxd_tokens_total", outcome="minted") == 1
    assert prometheus_sample(text, "sandboxd_tokens_total", outcome="failed") == 2
    assert prometheus_sample(text, "sandboxd_tokens_total", outcome="rotated") == 0
