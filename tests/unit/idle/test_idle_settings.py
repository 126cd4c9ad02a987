"""The idle lifecycle's settings: variable names, upstream defaults, bounds."""

from __future__ import annotations

import pytest

from sandboxd.errors import ConfigurationError
from sandboxd.settings import load
from sandboxd.settings.idle import IdleSettings, ScalerSettings


def test_defaults_follow_upstream() -> None:
    idle = load(IdleSettings)
    assert (idle.sweeper, idle.sweep_interval_s, idle.probe, idle.probe_timeout_s) == (True, 60.0, False, 5.0)
    scaler = load(ScalerSettings)
    assert (scaler.field_manager, scaler.metrics_port) == ("sandboxd-scaler", 8080)


def test_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOXD_IDLE_PROBE", "true")
    monkeypatch.setenv("SANDBOXD_IDLE_SWEEP_SECONDS", "15")
    monkeypatch.setenv("SANDBOXD_IDLE_PROBE_URL", "http://{sandbox_id}.sessions.local/idle")
    monkeypatch.setenv("SANDBOXD_SCALER_FIELD_MANAGER", "my-scaler")
    idle = load(IdleSettings)
    assert (idle.probe, idle.sweep_interval_s) == (True, 15.0)
    assert idle.probe_url == "http://{sandbox_id}.sessions.local/idle"
    assert load(ScalerSettings).field_manager == "my-scaler"


def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOXD_IDLE_PROBE_URL", "http://pty-server.{ns}/idle")
    with pytest.raises(ConfigurationError, match="SANDBOXD_IDLE_PROBE_URL"):
        load(IdleSettings)
    monkeypatch.delenv("SANDBOXD_IDLE_PROBE_URL")
    monkeypatch.setenv("SANDBOXD_IDLE_SWEEP_SECONDS", "0")
    with pytest.raises(ConfigurationError, match="SANDBOXD_IDLE_SWEEP_SECONDS"):
        load(IdleSettings)
