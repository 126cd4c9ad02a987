"""Probing pty-server's ``GET /idle`` for a sandbox's activity (upstream's idle-scaler probe).

``HttpProber.probe`` answers an ``ActivityReport`` or ``None``: anything but a 200 with a body holding
``lastActivityAt`` and ``activeSessions`` (other fields are ignored, as upstream's decoder did), a timeout, or
a connection failure is ``None``, never an error and never activity. The URL comes from a template (default
``http://pty-server.{namespace}.svc.cluster.local:7681/idle``); one aiohttp session, opened by the first probe
and closed by ``aclose``, is shared by all probes and bounds how many are in flight.

What it does not do: decide anything, or remember earlier answers (``reconcile.activity.ActivityBook`` does).
"""

from __future__ import annotations

import json
import logging
from types import TracebackType

import aiohttp
from pydantic import ValidationError

from sandboxd.models.activity import ActivityReport

log = logging.getLogger(__name__)

REPORT_FIELDS = ("lastActivityAt", "activeSessions")
MAX_BODY = 64 * 1024  # pty-server answers a few dozen bytes; more is not an answer


def probe_url(template: str, *, sandbox_id: str, namespace: str, owner_uid: str) -> str:
    return template.format(namespace=namespace, sandbox_id=sandbox_id, owner_uid=owner_uid)


def parse_report(body: bytes) -> ActivityReport | None:
    """The two fields of pty-server's answer as a report; ``None`` if they are missing or invalid."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or any(name not in data for name in REPORT_FIELDS):
        return None
    try:
        return ActivityReport.model_validate({name: data[name] for name in REPORT_FIELDS})
    except ValidationError:
        return None


class HttpProber:
    """``reconcile.ports.Prober`` over HTTP; ``aclose`` (or ``async with``) releases its connections."""

    def __init__(self, *, url_template: str, timeout_s: float = 5.0, concurrency: int = 32) -> None:
        self._template = url_template
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpProber:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._concurrency)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def probe(self, *, sandbox_id: str, namespace: str, owner_uid: str) -> ActivityReport | None:
        url = probe_url(self._template, sandbox_id=sandbox_id, namespace=namespace, owner_uid=owner_uid)
        session = self._open()
        try:
            async with session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    log.debug("probe %s: HTTP %d", url, response.status)
                    return None
                body = await response.content.read(MAX_BODY)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.debug("probe %s failed: %s", url, exc.__class__.__name__)
            return None
        report = parse_report(body)
        if report is None:
            log.debug("probe %s: the answer is not {lastActivityAt, activeSessions}", url)
        return report
