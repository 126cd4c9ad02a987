"""contracts/ agrees with the models and with sandboxd.naming.

- the committed JSON Schemas are exactly what ``sandboxd.contracts_export`` generates (drift);
- every example validates against its JSON Schema *and* its pydantic model, every invalid example is refused
  by both, with the expected words in the model's message;
- the AsyncAPI document names what ``sandboxd.naming`` names, and every reference in it points at a file
  (and a place in that file) that exists, with examples that fit the message they illustrate.

Examples are named ``<schema stem>.<variant>.json``: the stem says which message they are.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import TypeAdapter, ValidationError

from sandboxd import contracts_export, naming
from sandboxd.adapters.jetstream import headers as dead
from sandboxd.adapters.jetstream import publishing, topology
from sandboxd.models import describe, parse_event
from sandboxd.models.events import TYPE_PREFIX
from sandboxd.settings import TenantBridgeSettings, TopologySettings

CONTRACTS = Path(__file__).resolve().parents[3] / "contracts"
SCHEMA_DIR = CONTRACTS / "schemas"
EXAMPLE_DIR = CONTRACTS / "examples"
INVALID_DIR = EXAMPLE_DIR / "invalid"
ASYNCAPI = CONTRACTS / "asyncapi.yaml"

#: The tenant bridge's defaults: the one channel and consumer on a stream sandboxd does not own.
TENANTS = TenantBridgeSettings()
VALID_EXAMPLES = sorted(EXAMPLE_DIR.glob("*.json"))
INVALID_EXAMPLES = sorted(INVALID_DIR.glob("*.json"))
UNION = "sandbox-event"
#: Schemas that are not a message on a subject of their own, and why.
NOT_MESSAGES = {
    UNION: "any lifecycle event; each verb's message references its own schema",
    "sandbox-spec": "carried inside create/update events and the desired state",
}


def stem_of(path: Path) -> str:
    return path.name.split(".", 1)[0]


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def schema_validator(stem: str) -> Draft202012Validator:
    schema = load_json(SCHEMA_DIR / f"{stem}{contracts_export.SUFFIX}")
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def model_for(stem: str) -> TypeAdapter[Any]:
    target = contracts_export.SCHEMAS[stem][1]
    return target if isinstance(target, TypeAdapter) else TypeAdapter(target)


def schema_errors(stem: str, message: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in schema_validator(stem).iter_errors(message)]


def is_event(stem: str) -> bool:
    return stem.endswith("-event") and stem != UNION


# --- drift --------------------------------------------------------------------------------------------------


def test_committed_schemas_are_what_the_models_generate() -> None:
    fresh = contracts_export.render_all()
    committed = {p.name: p.read_text(encoding="utf-8") for p in SCHEMA_DIR.glob(f"*{contracts_export.SUFFIX}")}
    assert sorted(committed) == sorted(fresh), "contracts/schemas lists other messages: run `make contracts`"
    drifted = sorted(name for name, text in fresh.items() if committed[name] != text)
    assert not drifted, f"{drifted} differ from the pydantic models: run `make contracts` and commit the result"


def test_export_writes_byte_stable_files_and_removes_stale_ones(tmp_path: Path) -> None:
    (tmp_path / "gone.schema.json").write_text("{}\n")
    (tmp_path / "notes.txt").write_text("not a schema\n")
    assert contracts_export.main([str(tmp_path)]) == 0
    assert contracts_export.write(tmp_path) == [], "a second run must change nothing"
    written = {p.name: p.read_bytes() for p in tmp_path.glob("*.schema.json")}
    assert written == {p.name: p.read_bytes() for p in SCHEMA_DIR.glob("*.schema.json")}
    assert (tmp_path / "notes.txt").exists()
    assert all(text.endswith(b"}\n") for text in written.values())


def test_export_refuses_a_missing_directory_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert contracts_export.main([]) == 2
    assert "usage" in capsys.readouterr().err


@pytest.mark.parametrize("stem", sorted(contracts_export.SCHEMAS))
def test_every_schema_is_draft_2020_12_with_id_and_title(stem: str) -> None:
    schema = load_json(SCHEMA_DIR / f"{stem}{contracts_export.SUFFIX}")
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/{stem}{contracts_export.SUFFIX}")
    assert schema["title"] == contracts_export.SCHEMAS[stem][0]


# --- examples -----------------------------------------------------------------------------------------------


def test_every_message_has_a_valid_example_and_every_example_a_schema() -> None:
    stems = {stem_of(p) for p in VALID_EXAMPLES}
    assert stems <= set(contracts_export.SCHEMAS), "an example is named after no schema"
    assert set(contracts_export.SCHEMAS) - stems == {UNION}, "a message has no example"
    assert {stem_of(p) for p in INVALID_EXAMPLES} <= set(contracts_export.SCHEMAS)


@pytest.mark.parametrize("path", VALID_EXAMPLES, ids=lambda p: p.name)
def test_valid_example_passes_its_schema_and_its_model(path: Path) -> None:
    stem, message = stem_of(path), load_json(path)
    assert schema_errors(stem, message) == []
    model_for(stem).validate_json(path.read_bytes())
    if is_event(stem):
        assert schema_errors(UNION, message) == []
        event = parse_event(path.read_bytes())
        assert f"sandbox-{event.verb}-event" == stem
        assert parse_event(event.to_json()) == event, "an event survives its own wire form"


@pytest.mark.parametrize("path", INVALID_EXAMPLES, ids=lambda p: p.name)
def test_invalid_example_is_refused_by_its_schema_and_its_model(path: Path) -> None:
    stem, case = stem_of(path), load_json(path)
    assert case["description"] and case["expectedError"]
    raw = json.dumps(case["message"])
    assert schema_errors(stem, case["message"]), "the JSON Schema accepted an invalid example"
    with pytest.raises(ValidationError) as refused:
        model_for(stem).validate_json(raw)
    assert case["expectedError"] in describe(refused.value)
    if is_event(stem) or stem == UNION:
        assert schema_errors(UNION, case["message"])
        with pytest.raises(ValidationError) as refused_as_any_event:
            parse_event(raw)
        assert case["expectedError"] in describe(refused_as_any_event.value)


# --- the AsyncAPI document ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    document = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def pointer(document: Any, fragment: str) -> Any:
    """Follow a JSON pointer such as ``/components/messages/x`` (``~1`` is ``/``)."""
    node = document
    for token in filter(None, fragment.split("/")):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def resolve(document: dict[str, Any], node: Any) -> Any:
    """A node with its ``$ref`` followed: into this document, or into a file next to it."""
    while isinstance(node, dict) and "$ref" in node:
        location, _, fragment = node["$ref"].partition("#")
        node = pointer(load_json(CONTRACTS / location) if location else document, fragment)
    return node


def messages(asyncapi: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(asyncapi["components"]["messages"])


def test_asyncapi_is_version_3(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["info"]["title"] and asyncapi["info"]["version"]


def test_every_reference_points_at_something_that_exists(asyncapi: dict[str, Any]) -> None:
    for ref in refs(asyncapi):
        location, _, fragment = ref.partition("#")
        if location:
            assert (CONTRACTS / location).is_file(), f"{ref}: no such file"
        try:
            resolve(asyncapi, {"$ref": ref})
        except (KeyError, IndexError, TypeError) as missing:
            raise AssertionError(f"{ref}: nothing at {fragment!r}") from missing


def test_every_schema_and_example_is_referenced(asyncapi: dict[str, Any]) -> None:
    referenced = {Path(ref.partition("#")[0]).name for ref in refs(asyncapi)}
    for stem in set(contracts_export.SCHEMAS) - set(NOT_MESSAGES):
        assert f"{stem}{contracts_export.SUFFIX}" in referenced, f"no message has the payload {stem}"
    for path in VALID_EXAMPLES:
        if stem_of(path) in NOT_MESSAGES:
            continue
        assert path.name in referenced, f"{path.name} is not an example of any message"


def test_every_message_has_examples_that_fit_its_payload_and_headers(asyncapi: dict[str, Any]) -> None:
    for name, message in messages(asyncapi).items():
        assert message.get("examples"), f"message {name} has no example"
        payload_schema = resolve(asyncapi, message["payload"])
        headers_schema = resolve(asyncapi, message.get("headers", {"type": "object"}))
        for example in message["examples"]:
            payload = resolve(asyncapi, example["payload"])
            headers = example.get("headers", {})
            where = f"{name}/{example['name']}"
            assert not list(Draft202012Validator(payload_schema).iter_errors(payload)), where
            assert not list(Draft202012Validator(headers_schema).iter_errors(headers)), where
            if "Nats-Msg-Id" in headers and name != "deadLetter":
                expected = payload.get("id", payload.get("commandId"))
                assert headers["Nats-Msg-Id"] == expected, f"{where}: Nats-Msg-Id must be the message's own id"


def test_event_messages_are_named_after_their_cloudevents_type(asyncapi: dict[str, Any]) -> None:
    for verb in naming.VERBS:
        message = messages(asyncapi)[f"sandbox{verb.capitalize()}"]
        assert message["name"] == f"{TYPE_PREFIX}{verb}"
        assert message["payload"]["$ref"].endswith(f"sandbox-{verb}-event{contracts_export.SUFFIX}")
        assert "Nats-Msg-Id" in resolve(asyncapi, message["headers"])["properties"]
        assert "traceparent" in resolve(asyncapi, message["headers"])["properties"]


# --- names: the AsyncAPI document and sandboxd.naming agree -------------------------------------------------

STREAMS = {
    naming.EVENTS_STREAM,
    naming.DLQ_STREAM,
    naming.ACTIVITY_STREAM,
    naming.SCALE_STREAM,
    naming.ADVISORY_STREAM,
}
BUCKETS = {naming.DESIRED_BUCKET, naming.STATUS_BUCKET, naming.OWNERS_BUCKET}
SUBJECT_FILTERS = {*naming.EVENT_SUBJECTS, naming.ACTIVITY_SUBJECTS, naming.SCALE_SUBJECTS, naming.DLQ_SUBJECTS}


def test_asyncapi_text_mentions_every_stream_bucket_consumer_and_subject() -> None:
    text = ASYNCAPI.read_text(encoding="utf-8")
    names = STREAMS | BUCKETS | SUBJECT_FILTERS | {naming.EVENTS_CONSUMER, naming.SCALE_CONSUMER}
    missing = sorted(name for name in names if name not in text)
    assert not missing, f"contracts/asyncapi.yaml does not mention {missing}"


def test_streams_consumers_and_buckets_are_naming_s(asyncapi: dict[str, Any]) -> None:
    jetstream = asyncapi["x-jetstream"]
    streams = jetstream["streams"]
    assert set(streams) == STREAMS
    assert streams[naming.EVENTS_STREAM]["subjects"] == list(naming.EVENT_SUBJECTS)
    assert streams[naming.ACTIVITY_STREAM]["subjects"] == [naming.ACTIVITY_SUBJECTS]
    assert streams[naming.SCALE_STREAM]["subjects"] == [naming.SCALE_SUBJECTS]
    assert streams[naming.DLQ_STREAM]["subjects"] == [naming.DLQ_SUBJECTS]
    assert streams[naming.EVENTS_STREAM]["retention"] == "limits"
    assert streams[naming.SCALE_STREAM]["retention"] == "workqueue"
    advisory = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{naming.EVENTS_STREAM}.{naming.EVENTS_CONSUMER}"
    assert advisory in streams[naming.ADVISORY_STREAM]["subjects"]

    consumers = jetstream["consumers"]
    assert consumers[naming.EVENTS_CONSUMER]["stream"] == naming.EVENTS_STREAM
    assert consumers[naming.SCALE_CONSUMER]["stream"] == naming.SCALE_STREAM
    assert consumers[TENANTS.consumer]["stream"] == TENANTS.stream
    assert TENANTS.stream in jetstream["externalStreams"], "the tenant stream is the tenant service's, not ours"

    assert set(jetstream["keyValue"]) == BUCKETS
    for bucket in jetstream["keyValue"].values():
        assert resolve(asyncapi, {"$ref": bucket["value"]})["payload"]


def subject_matches(filter_: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    want, have = filter_.split("."), subject.split(".")
    for i, part in enumerate(want):
        if part == ">":
            return len(have) > i
        if i >= len(have) or part not in ("*", have[i]):
            return False
    return len(want) == len(have)


def test_subject_matching_follows_nats() -> None:
    assert subject_matches("sandbox.create.*", "sandbox.create.x")
    assert not subject_matches("sandbox.create.*", "sandbox.create.x.y")
    assert subject_matches("sandbox.dlq.>", "sandbox.dlq.sandbox.create.x")
    assert not subject_matches("sandbox.dlq.>", "sandbox.dlq")


def concrete(address: str) -> str:
    """An address with every ``{parameter}`` filled by a sample value."""
    samples = {"{sandboxId}": "sandbox-ceo-at-acme-com", "{ownerUid}": "ceo-at-acme-com"}
    samples["{originalSubject}"] = naming.event_subject("create", samples["{sandboxId}"])
    for parameter, value in samples.items():
        address = address.replace(parameter, value)
    return address


def test_channel_addresses_are_built_by_naming(asyncapi: dict[str, Any]) -> None:
    addresses = {channel["address"] for channel in asyncapi["channels"].values()}
    expected = {naming.event_subject(verb, "{sandboxId}") for verb in naming.VERBS}
    expected |= {
        naming.activity_subject("{sandboxId}"),
        naming.scale_subject("{sandboxId}"),
        naming.dlq_subject("{originalSubject}"),
        f"$KV.{naming.DESIRED_BUCKET}.{naming.desired_key('{sandboxId}')}",
        f"$KV.{naming.STATUS_BUCKET}.{naming.status_key('{sandboxId}')}",
        f"$KV.{naming.OWNERS_BUCKET}.{naming.owner_key('{ownerUid}')}",
        TENANTS.subject,  # consumed from the tenant service's stream by the tenant bridge
    }
    assert addresses == expected


def test_every_channel_lands_in_its_stream_or_bucket(asyncapi: dict[str, Any]) -> None:
    streams = asyncapi["x-jetstream"]["streams"]
    for name, channel in asyncapi["channels"].items():
        subject = concrete(channel["address"])
        if "x-jetstream-stream" in channel:
            filters = streams[channel["x-jetstream-stream"]]["subjects"]
            assert any(subject_matches(f, subject) for f in filters), f"{name}: {subject} is in no filter"
        elif "x-jetstream-external-stream" in channel:
            filters = asyncapi["x-jetstream"]["externalStreams"][channel["x-jetstream-external-stream"]]["subjects"]
            assert any(subject_matches(f, subject) for f in filters), f"{name}: {subject} is in no filter"
        else:
            bucket = channel["x-jetstream-kv-bucket"]
            assert subject_matches(f"$KV.{bucket}.>", subject), name
        for parameter in channel.get("parameters", {}):
            assert f"{{{parameter}}}" in channel["address"], f"{name}: unused parameter {parameter}"


def test_every_operation_uses_a_channel_message(asyncapi: dict[str, Any]) -> None:
    used = set()
    for name, operation in asyncapi["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"{channel_ref}/messages/"), name
            used.add(message["$ref"])
        if operation.get("x-jetstream-consumer"):
            assert operation["x-jetstream-consumer"] in asyncapi["x-jetstream"]["consumers"]
    assert len(used) == len(asyncapi["channels"]), "a channel has no operation"


# --- the document describes what the service actually creates and writes ------------------------------------


def test_streams_are_the_ones_the_topology_creates(asyncapi: dict[str, Any]) -> None:
    documented = asyncapi["x-jetstream"]["streams"]
    created = {config.name: config for config in topology.stream_configs(TopologySettings())}
    assert set(documented) == set(created)
    for name, config in created.items():
        assert documented[name]["subjects"] == config.subjects, name
        assert config.retention is not None
        assert documented[name]["retention"] == config.retention.value, name
        if config.max_msgs_per_subject not in (None, -1):
            assert documented[name]["maxMsgsPerSubject"] == config.max_msgs_per_subject, name


@dataclass(frozen=True)
class _Delivery:
    """Just enough of ``reconcile.ports.Delivery`` for the dead-letter publisher."""

    subject: str
    data: bytes
    stream_sequence: int
    headers: dict[str, str]
    num_delivered: int = 1
    published_at: datetime = field(default_factory=lambda: datetime(2026, 5, 21, tzinfo=UTC))

    async def ack(self) -> None: ...

    async def nak(self, delay: float | None = None) -> None: ...

    async def term(self) -> None: ...

    async def in_progress(self) -> None: ...


class _RecordingJetStream:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []
        self._nc = SimpleNamespace(max_payload=1024 * 1024)  # what JetStreamDeadLetters reads the limit from

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> SimpleNamespace:
        self.published.append((subject, payload, headers))
        return SimpleNamespace(seq=1, duplicate=False)


def test_dead_letters_carry_the_documented_headers_on_the_documented_subject(asyncapi: dict[str, Any]) -> None:
    case = load_json(INVALID_DIR / "sandbox-create-event.too-many-sessions.json")
    body = json.dumps(case["message"]).encode()
    subject = naming.event_subject("create", case["message"]["subject"])
    delivery = _Delivery(
        subject=subject,
        data=body,
        stream_sequence=43,
        headers={
            "Nats-Msg-Id": case["message"]["id"],
            "Nats-Expected-Stream": naming.EVENTS_STREAM,
            "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
            "X-Publisher": "tenant-service",
            "Sandboxd-Dead-Reason": "forged by the publisher",
        },
    )
    js = _RecordingJetStream()
    dead_letters = publishing.JetStreamDeadLetters(cast(Any, js))
    asyncio.run(dead_letters.send(delivery, reason="InvalidEvent", message=case["expectedError"]))

    [(dlq_subject, payload, headers)] = js.published
    channel = asyncapi["channels"]["sandboxDeadLetter"]
    assert subject_matches(channel["address"].replace("{originalSubject}", ">"), dlq_subject)
    assert payload == body, "the original body, byte for byte"
    schema = resolve(asyncapi, asyncapi["components"]["messages"]["deadLetter"]["headers"])
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(headers)]
    assert errors == [], "the dead-letter headers differ from contracts/asyncapi.yaml"
    assert headers[dead.H_REASON] == "InvalidEvent"
    assert headers["X-Publisher"] == "tenant-service", "the publisher's own headers are kept"
    assert headers[dead.H_ORIGINAL_ID] == case["message"]["id"]
    assert "Nats-Expected-Stream" not in headers, "Nats-* headers would change how JetStream stores the copy"
