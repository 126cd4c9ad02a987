"""The scale-command outbox: publish a command, and keep the one that failed to publish for the next sweep.

Two kinds of callers hand it commands: the reconcile pass that applied a suspend or resume (through the
``reconcile.ports.CommandSink`` port this class implements) and the idle sweeper (idle and wake decisions). A
publish that fails (``BrokerUnavailable``) keeps the command (a newer command for the same sandbox replaces an
older one) and raises, so the caller logs it; ``resend``, at the start of each sweep, publishes again those
still current (their generation is the desired state's) and drops those a newer desired state superseded.
Commands carry deterministic ids, so a command published twice is one command.

Concurrency: one event loop; the reconcile passes (one per sandbox at a time, many sandboxes at once) and one
sweeper share an outbox, and nothing here is locked. A publish in flight may finish after a newer command for
the same sandbox was handed in, so keeping and forgetting compare generations: a kept command is replaced only
by one at least as new, and forgotten only once one at least as new was published.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from sandboxd.errors import SandboxdError
from sandboxd.models.activity import ScaleCommand
from sandboxd.naming import SandboxId
from sandboxd.reconcile.ports import CommandPublisher

#: How the caller runs one sandbox's step (the sweeper's ``_guarded``: a failure is logged, never raised).
Guard = Callable[[SandboxId, Awaitable[object]], Awaitable[None]]


class CommandOutbox:
    def __init__(self, publisher: CommandPublisher) -> None:
        self._publisher = publisher
        self._unsent: dict[SandboxId, ScaleCommand] = {}  # sandbox id -> the newest command that failed to publish
        self.failed = 0  # publishes that failed (each kept for the next sweep)

    @property
    def pending(self) -> int:
        """Commands waiting to be published again."""
        return len(self._unsent)

    async def send(self, command: ScaleCommand) -> None:
        """Publish ``command``; when that fails, keep it for ``resend`` and raise the ``SandboxdError``."""
        try:
            await self._publisher.publish(command)
        except SandboxdError:
            kept = self._unsent.get(command.sandbox_id)
            if kept is None or kept.generation <= command.generation:
                self._unsent[command.sandbox_id] = command
            self.failed += 1
            raise
        kept = self._unsent.get(command.sandbox_id)
        if kept is not None and kept.generation <= command.generation:
            del self._unsent[command.sandbox_id]

    def waiting_for(self) -> set[SandboxId]:
        """The sandboxes with a command to publish again (so the caller looks up only their generations)."""
        return set(self._unsent)

    async def resend(self, generations: Mapping[SandboxId, int], guard: Guard) -> None:
        """Publish again what failed to publish, if ``generations`` (sandbox id -> desired generation) says it
        is still current; a command a newer desired state superseded is dropped."""
        for sandbox_id, command in list(self._unsent.items()):
            if generations.get(sandbox_id) != command.generation:
                if self._unsent.get(sandbox_id) is command:
                    del self._unsent[sandbox_id]
                continue
            await guard(sandbox_id, self.send(command))
