"""Requests whose replies come to one shared inbox: the KV stores' lean path to the JetStream API.

nats-py's ``Client.request`` costs about twice the CPU this path does (per request: a random token from
``secrets``, an ``asyncio.wait_for``, a done callback, the subject validated twice); the KV stores make four or
five requests per new sandbox. ``Replies`` keeps one wildcard subscription per connection (``<inbox>.*``, made
on first use), names each request by a counter, and waits on a plain future with one timer. A reply nobody waits
for any more (it came after its timeout) is dropped.

What it deliberately does not do: translate errors (the callers' ``errors.boundary`` does; what it raises is
nats-py's own: ``nats.errors.TimeoutError``, ``NoRespondersError`` and the publish's connection errors), retry,
or follow a reconnect itself: nats-py subscribes the inbox again when it reconnects, and a request whose reply
was lost meanwhile times out, as with ``Client.request``.

Concurrency: one event loop; the reply callback and the requests share the waiting map without locks.
"""

from __future__ import annotations

import asyncio
from weakref import WeakKeyDictionary, ref

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

#: The status header value of a "no responders" reply (nats-py's ``NO_RESPONDERS_STATUS``).
NO_RESPONDERS = "503"

_shared: WeakKeyDictionary[Client, Replies] = WeakKeyDictionary()


def replies_for(nc: Client) -> Replies:
    """The connection's one ``Replies`` (every store on a connection shares its inbox subscription)."""
    replies = _shared.get(nc)
    if replies is None:
        replies = _shared[nc] = Replies(nc)
    return replies


class Replies:
    def __init__(self, nc: Client) -> None:
        # Weakly: the map of every connection's ``Replies`` is keyed weakly by the connection, and a value that
        # held its key would keep every connection ever used (and its buffers) alive after it closed.
        self._client = ref(nc)
        self._prefix = ""
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._count = 0
        self._opening = asyncio.Lock()

    async def request(
        self, subject: str, payload: bytes, *, timeout: float, headers: dict[str, str] | None = None
    ) -> Msg:
        """Publish ``payload`` to ``subject`` and return the reply; ``nats.errors.TimeoutError`` after ``timeout``
        seconds, ``NoRespondersError`` when nothing listens on ``subject``."""
        prefix = self._prefix or await self._open()
        self._count += 1
        token = str(self._count)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        self._waiting[token] = future
        timer = loop.call_later(timeout, _expire, future)
        try:
            await self._nc.publish(subject, payload, reply=prefix + token, headers=headers)
            reply = await future
        finally:
            timer.cancel()
            del self._waiting[token]
        if not reply.data and reply.headers and reply.headers.get("Status") == NO_RESPONDERS:
            raise nats.errors.NoRespondersError
        return reply

    @property
    def _nc(self) -> Client:
        nc = self._client()
        if nc is None:  # only a request made after its connection was dropped: as nats-py says of a closed one
            raise nats.errors.ConnectionClosedError
        return nc

    async def _open(self) -> str:
        async with self._opening:
            if not self._prefix:
                prefix = f"{self._nc.new_inbox()}."
                await self._nc.subscribe(f"{prefix}*", cb=self._answer)
                self._prefix = prefix
        return self._prefix

    async def _answer(self, msg: Msg) -> None:
        future = self._waiting.get(msg.subject[len(self._prefix) :])
        if future is not None and not future.done():
            future.set_result(msg)


def _expire(future: asyncio.Future[Msg]) -> None:
    if not future.done():
        future.set_exception(nats.errors.TimeoutError())
