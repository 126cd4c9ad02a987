"""How the process logs: level and format (``telemetry.logs.configure`` takes these; it reads no variable itself).

Both are optional: the command picks the defaults (json for ``sandboxd run``, text for ``sandboxd dev`` and
``sandboxctl``; INFO). An unknown level or format is ignored rather than refused, so a typo in a logging
variable never stops the service from starting.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

LEVEL_VARIABLE = "SANDBOXD_LOG_LEVEL"
FORMAT_VARIABLE = "SANDBOXD_LOG_FORMAT"


class LogSettings(BaseSettings):
    """``SANDBOXD_LOG_LEVEL`` and ``SANDBOXD_LOG_FORMAT`` (documented in ``settings.reference``)."""

    model_config = SettingsConfigDict(env_prefix="SANDBOXD_LOG_", extra="ignore", frozen=True)

    level: str | None = None  # DEBUG, INFO, WARNING, ERROR (any case)
    format: str | None = None  # json or text
