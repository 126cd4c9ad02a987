"""Lifecycle events: CloudEvents 1.0 structured JSON on ``sandbox.<verb>.<sandbox-id>``.

``create`` and ``update`` carry the whole spec (level-based, never a patch); ``delete`` says whether to purge
customer data (default: retain); ``suspend`` and ``resume`` carry an optional reason. The CloudEvents ``id`` is
also sent as ``Nats-Msg-Id`` so a re-published event is deduplicated by JetStream, and ``subject`` is the
sandbox id, which must agree with the NATS subject.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field, TypeAdapter

from sandboxd.models.base import Contract, Timestamp
from sandboxd.models.spec import SandboxSpec
from sandboxd.naming import SANDBOX_ID_PATTERN, SandboxId

TYPE_PREFIX: Final = "io.openova.sandbox."

#: A validated model's sandbox id is a ``naming.SandboxId``: parsing an event, a desired record or a report is
#: where a raw string becomes one.
SandboxIdField = Annotated[
    SandboxId,
    Field(
        min_length=1,
        max_length=63,
        pattern=SANDBOX_ID_PATTERN,
        description="The sandbox id: a DNS-1123 label, also the last token of the NATS subject.",
    ),
]


class Envelope(Contract):
    """The CloudEvents 1.0 context attributes every lifecycle event carries."""

    specversion: Literal["1.0"] = Field(description="CloudEvents version; required, always 1.0.")
    id: str = Field(min_length=1, max_length=256, description="Unique per event; sent as Nats-Msg-Id.")
    source: str = Field(min_length=1, max_length=1024, description="URI-reference of the publisher.")
    subject: SandboxIdField
    time: Timestamp | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    traceparent: str | None = Field(
        default=None, max_length=512, description="W3C trace context (distributed tracing ext)."
    )

    @property
    def verb(self) -> str:
        return str(getattr(self, "type")).removeprefix(TYPE_PREFIX)  # noqa: B009 - every subclass has type


class SpecData(Contract):
    spec: SandboxSpec


class DeleteData(Contract):
    purge: bool = Field(default=False, description="true deletes the namespace and PVCs; false keeps data.")


class ReasonData(Contract):
    reason: str | None = Field(default=None, max_length=1024)


class CreateEvent(Envelope):
    type: Literal["io.openova.sandbox.create"] = "io.openova.sandbox.create"
    data: SpecData


class UpdateEvent(Envelope):
    type: Literal["io.openova.sandbox.update"] = "io.openova.sandbox.update"
    data: SpecData


class DeleteEvent(Envelope):
    type: Literal["io.openova.sandbox.delete"] = "io.openova.sandbox.delete"
    data: DeleteData = Field(default_factory=DeleteData)


class SuspendEvent(Envelope):
    type: Literal["io.openova.sandbox.suspend"] = "io.openova.sandbox.suspend"
    data: ReasonData = Field(default_factory=ReasonData)


class ResumeEvent(Envelope):
    type: Literal["io.openova.sandbox.resume"] = "io.openova.sandbox.resume"
    data: ReasonData = Field(default_factory=ReasonData)


SandboxEvent = Annotated[
    CreateEvent | UpdateEvent | DeleteEvent | SuspendEvent | ResumeEvent,
    Field(discriminator="type"),
]
EVENT_ADAPTER: Final[TypeAdapter[SandboxEvent]] = TypeAdapter(SandboxEvent)
EVENT_CLASSES: Final[dict[str, type[Envelope]]] = {
    "create": CreateEvent,
    "update": UpdateEvent,
    "delete": DeleteEvent,
    "suspend": SuspendEvent,
    "resume": ResumeEvent,
}


def parse_event(raw: bytes | str) -> SandboxEvent:
    """Parse one event body; raises pydantic ``ValidationError`` (see ``models.base.describe``)."""
    return EVENT_ADAPTER.validate_json(raw, strict=True, by_name=False)
