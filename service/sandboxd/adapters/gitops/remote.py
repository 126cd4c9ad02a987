"""Where the GitOps repository lives and how to authenticate to it, with the credentials kept out of sight.

``SANDBOXD_GITOPS_REPO`` is either a folder on this machine (a bare repository, or a path where one is created)
or a remote URL. HTTP(S) credentials come from ``SANDBOXD_GITOPS_USERNAME``/``_PASSWORD`` or from the URL's
``user:password@``; either way they are taken out of the URL here, so git's argv, its ``.git/config`` and every
message quote only the bare URL. git receives them through the environment of its process only
(``sandboxd.adapters.gitops.repository``). SSH URLs are left to the environment (keys, ``GIT_SSH_COMMAND``).

Pure: parsing and redaction, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import SecretStr

#: ``user@host:path``: git's scp-like SSH syntax.
_SCP_LIKE: Final = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:")
REDACTED: Final = "***"


@dataclass(frozen=True, slots=True)
class Remote:
    """The repository location git is given, and the credentials it must never be given in argv."""

    #: A path or a URL without a password: safe to pass as an argument and to show in messages.
    url: str
    #: Set when the repository is a folder on this machine (created as a bare repository when missing).
    local_path: Path | None = None
    username: str | None = None
    password: SecretStr | None = None

    @property
    def has_credentials(self) -> bool:
        return self.password is not None or self.username is not None

    def redact(self, text: str) -> str:
        """``text`` with the password (raw or percent-encoded) replaced by ``***``."""
        if self.password is None:
            return text
        secret = self.password.get_secret_value()
        if not secret:
            return text
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            text = text.replace(form, REDACTED)
        return text


def parse_remote(location: str, *, username: str | None = None, password: SecretStr | None = None) -> Remote:
    """A ``Remote`` for ``SANDBOXD_GITOPS_REPO``; explicit credentials win over ones written in the URL."""
    location = location.strip()
    if not location:
        raise ValueError("the GitOps repository location is empty")
    if "://" not in location and not _SCP_LIKE.match(location):
        path = Path(location).expanduser().resolve()
        return Remote(url=str(path), local_path=path)
    parts = urlsplit(location)
    if parts.scheme == "file":
        path = Path(unquote(parts.path)).resolve()
        return Remote(url=str(path), local_path=path)
    if parts.scheme not in ("http", "https") or "://" not in location:
        return _without_password(location, parts.password)
    url_username = unquote(parts.username) if parts.username else None
    url_password = SecretStr(unquote(parts.password)) if parts.password is not None else None
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return Remote(
        url=bare,
        username=username if username is not None else url_username,
        password=password if password is not None else url_password,
    )


def _without_password(location: str, url_password: str | None) -> Remote:
    """SSH and other URLs: git never asks these for a password, so one written in the URL is only dropped."""
    if url_password is None:
        return Remote(url=location)
    return Remote(url=location.replace(f":{url_password}@", "@", 1), password=SecretStr(unquote(url_password)))
