"""Small building blocks for settings: one environment variable per field, named exactly."""

from __future__ import annotations

import re
from typing import Any, Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_DIGEST: Final = re.compile(r"@sha256:[0-9a-f]{64}$")


def env(name: str, default: Any = ..., description: str = "", **kwargs: Any) -> Any:
    """A settings field read from the environment variable ``name`` (and settable by field name in code)."""
    return Field(default, validation_alias=name, description=description, **kwargs)


class Group(BaseSettings):
    """A small group of related settings; every field names its variable, unit and why its default."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="ignore",
        populate_by_name=True,
        case_sensitive=True,
    )


def pinned_image(value: str) -> str:
    """Refuse an image reference that is not pinned by digest or by an explicit tag other than ``latest``."""
    value = value.strip()
    if not value:
        raise ValueError("is empty; set an image pinned by digest (@sha256:...) or an explicit tag")
    if "@" in value:
        if _DIGEST.search(value):
            return value
        raise ValueError(f"{value!r} has a malformed digest; expected @sha256:<64 hex digits>")
    last = value.rsplit("/", 1)[-1]
    if ":" not in last:
        raise ValueError(f"{value!r} has no tag; pin it by digest (@sha256:...) or an explicit version tag")
    if not last.rsplit(":", 1)[1]:
        raise ValueError(f"{value!r} has an empty tag; pin it by digest (@sha256:...) or an explicit version tag")
    if last.rsplit(":", 1)[1] == "latest":
        raise ValueError(f"{value!r} uses :latest; pin it by digest (@sha256:...) or an explicit version tag")
    return value
