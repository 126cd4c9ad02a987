"""``sandboxd.client``: the typed async Python client a platform service integrates with (docs/client.md).

A consumer of the JetStream adapter, below the CLI (``sandboxctl`` is built on it) and beside ``app``:

- ``sandboxes``: ``SandboxClient`` — create/update/delete/suspend/resume with idempotent event ids,
  get/list/watch the status projection, ``wait_for`` a condition;
- ``conditions``: what to wait for (``settled(published)``, ``AVAILABLE``, ``SUSPENDED``, ``DELETED``, ...);
- ``events``: events built and validated before they are sent, ``event_id_for``, ``Published``;
- ``projection``: reading the status bucket (get, list, watch);
- ``errors``: ``NotFound``, ``AlreadyExists``, ``SandboxFailed``, ``WaitTimedOut`` (in the ``sandboxd.errors`` tree).
"""

from sandboxd.client.conditions import AVAILABLE, DELETED, READY, SUSPENDED, Condition, phase, settled
from sandboxd.client.errors import AlreadyExists, NotFound, SandboxFailed, StatusUnreadable, WaitTimedOut
from sandboxd.client.events import Published, event_id_for
from sandboxd.client.projection import Change
from sandboxd.client.sandboxes import SandboxClient

__all__ = [
    "AVAILABLE",
    "DELETED",
    "READY",
    "SUSPENDED",
    "AlreadyExists",
    "Change",
    "Condition",
    "NotFound",
    "Published",
    "SandboxClient",
    "SandboxFailed",
    "StatusUnreadable",
    "WaitTimedOut",
    "event_id_for",
    "phase",
    "settled",
]
