"""The YAML writer: reads back to the same data, quotes whatever a reader would type, never aliases."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sandboxd.render import to_yaml
from sandboxd.render.yamlio import quote

scalars = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63) | st.text()
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=24,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(), documents, max_size=6))
def test_any_document_reads_back_equal(data: dict[str, Any]) -> None:
    assert yaml.safe_load(to_yaml(data)) == (data or {})


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_any_string_reads_back_as_that_string(text: str) -> None:
    assert yaml.safe_load(to_yaml({"value": text})) == {"value": text}
    assert yaml.safe_load(to_yaml([text])) == [text]


@pytest.mark.parametrize(
    "text",
    [
        "true",
        "True",
        "TRUE",
        "false",
        "yes",
        "No",
        "on",
        "OFF",
        "y",
        "N",
        "null",
        "Null",
        "~",
        "",
        "30",
        "7681",
        "-1",
        "+1",
        "1.0",
        ".5",
        "1e3",
        "0x1f",
        "0o17",
        "1_000",
        "12:30",
        "2024-01-01",
        ".inf",
        ".nan",
        "5Gi",
        "100m",
        " x",
        "x ",
        "a: b",
        "a:",
        "#x",
        "a #b",
        "-",
        "- x",
        "@x",
        "*x",
        "&x",
        "!x",
        "%x",
        "|",
        ">",
        "'",
        '"',
        "{",
        "[",
        "?",
        "=",
        "<<",
        "a,b",
        "a\tb",
        "line\n",
        "\u2028",
    ],
)
def test_strings_a_reader_would_type_or_misparse_are_double_quoted(text: str) -> None:
    written = quote(text)
    assert written.startswith('"'), written
    assert yaml.safe_load(f"v: {written}\n") == {"v": text}


@pytest.mark.parametrize(
    "text",
    ["pty-server", "/sessions/ceo-at-acme-com/", "http://a.b:80/x", "ceo@acme.com", "openova.io/sandbox", "_x"],
)
def test_ordinary_names_paths_and_urls_stay_plain(text: str) -> None:
    assert quote(text) == text


def test_layout_is_block_style_with_indented_sequences() -> None:
    data = {"a": {"b": [{"c": 1, "d": [True, None]}, "x"], "e": {}, "f": []}, "g": "two\nlines\n"}
    assert to_yaml(data) == (
        "a:\n"
        "  b:\n"
        "    - c: 1\n"
        "      d:\n"
        "        - true\n"
        "        - null\n"
        "    - x\n"
        "  e: {}\n"
        "  f: []\n"
        "g: |\n"
        "  two\n"
        "  lines\n"
    )


def test_multiline_text_without_a_final_newline_uses_strip_chomping() -> None:
    assert to_yaml({"g": "a\n b"}) == "g: |-\n  a\n   b\n"
    assert yaml.safe_load(to_yaml({"g": "a\n b"})) == {"g": "a\n b"}


def test_multiline_text_that_a_block_cannot_hold_is_quoted() -> None:
    for text in ("trailing \nspace", " leading\nspace", "two\n\n", "\nfirst empty", "bell\x07\n"):
        written = to_yaml({"g": text})
        assert written.startswith('g: "'), written
        assert yaml.safe_load(written) == {"g": text}


def test_shared_objects_are_written_twice_never_aliased() -> None:
    shared = {"k": ["v"]}
    written = to_yaml({"a": shared, "b": shared, "c": [shared, shared]})
    assert "&" not in written
    assert "*" not in written
    assert yaml.safe_load(written) == {"a": shared, "b": shared, "c": [shared, shared]}


def test_key_order_is_kept() -> None:
    assert to_yaml({"z": 1, "a": 2, "m": 3}) == "z: 1\na: 2\nm: 3\n"


def test_floats_and_non_string_keys_are_refused() -> None:
    with pytest.raises(TypeError, match="float"):
        to_yaml({"cpu": 0.5})
    with pytest.raises(TypeError, match="keys must be strings"):
        to_yaml({1: "x"})


def test_empty_and_scalar_documents() -> None:
    assert to_yaml({}) == "{}\n"
    assert to_yaml([]) == "[]\n"
    assert to_yaml("7") == '"7"\n'
    assert yaml.safe_load(to_yaml("a\nb\n")) == "a\nb\n"
