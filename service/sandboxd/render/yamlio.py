"""Byte-stable YAML for rendered objects: a small block-style emitter with one quoting rule.

The same data always gives the same bytes, whatever the PyYAML version: mappings keep the key order they were
built with, sequences are indented under their key, and a string is written plain only when every YAML 1.1 and
1.2 reader (PyYAML, Go's yaml.v2/v3, kubectl) reads it back as that same string. Anything else is
double-quoted: numbers-as-text (``"7681"``, ``"1.0"``, ``"5Gi"``), booleans-as-text (``"true"``, ``"on"``,
``"y"``), empty strings, and text with spaces, indicators or escapes. Multi-line text that needs no escaping
becomes a ``|`` block scalar (the ``mcp.json`` file in the MCP ConfigMap).

What it deliberately does not do: anchors and aliases, flow style beyond the empty ``{}`` and ``[]``, tags,
comments, multiple documents, or floats (quantities are strings here; a float is a ``TypeError``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

#: Plain-safe text: starts with a letter, ``_`` or ``/`` (never a digit, sign, dot or indicator, so it is
#: never a number, date or special value), then only ``[A-Za-z0-9_./@-]``, with ``:`` allowed only between
#: two such characters (``http://x`` is plain, ``a:`` and ``a: b`` are not). No spaces, ``#`` or quotes.
_PLAIN: Final = re.compile(r"[A-Za-z_/](?:[A-Za-z0-9_./@-]|:(?=[A-Za-z0-9_./@-]))*")
#: Words some YAML reader resolves to a boolean or null (YAML 1.1 includes y/n and on/off).
_RESERVED: Final = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null"})
#: Characters a YAML stream may carry raw inside double quotes; everything else is escaped.
_NEEDS_ESCAPE: Final = re.compile('["\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]')
#: Characters that forbid a ``|`` block scalar (they need escapes, or are line breaks to YAML 1.1).
_NOT_LITERAL: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")
_SHORT_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\x00": "\\0"}
_INDENT: Final = "  "


def to_yaml(obj: Any) -> str:
    """One YAML document for ``obj`` (a mapping, a sequence or a scalar), ending in a newline."""
    lines: list[str] = []
    if isinstance(obj, Mapping) and obj:
        _mapping(obj, "", lines)
    elif isinstance(obj, list | tuple) and obj:
        _sequence(obj, "", lines)
    elif isinstance(obj, str) and _is_literal(obj):
        _entry("", obj, "", lines)
        lines[0] = lines[0].lstrip()
    else:
        lines.append(_scalar(obj))
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=4096)
def quote(text: str) -> str:
    """``text`` as written in the output: plain when that is safe, otherwise double-quoted.

    Memoised: rendered objects repeat the same keys and values (``name``, ``value``, label keys) many times.
    """
    if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED:
        return text
    if _NEEDS_ESCAPE.search(text) is None:
        return f'"{text}"'
    return '"' + _NEEDS_ESCAPE.sub(_escape, text) + '"'


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, Mapping | list | tuple) and not value:
        return "{}" if isinstance(value, Mapping) else "[]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as YAML; render it as a string")


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"mapping keys must be strings, got {type(key).__name__} {key!r}")
    return quote(key)


def _is_literal(text: str) -> bool:
    """Whether ``text`` can be a ``|`` / ``|-`` block scalar that reads back byte for byte."""
    if "\n" not in text or text.endswith("\n\n") or text[:1] in (" ", "\n"):
        return False
    if _NOT_LITERAL.search(text) is not None:
        return False
    return not any(line.endswith((" ", "\t")) for line in text.split("\n"))


def _mapping(mapping: Mapping[Any, Any], pad: str, out: list[str]) -> None:
    for key, value in mapping.items():
        _entry(f"{pad}{quote(key) if type(key) is str else _key(key)}:", value, pad, out)


def _sequence(items: Sequence[Any], pad: str, out: list[str]) -> None:
    inner = pad + _INDENT
    for item in items:
        if isinstance(item, dict | Mapping | list | tuple) and item:
            # The first line of a nested block shares the "- " line: "- name: x" / "- - a".
            start = len(out)
            if isinstance(item, dict | Mapping):
                _mapping(item, inner, out)
            else:
                _sequence(item, inner, out)
            out[start] = f"{pad}- {out[start][len(inner) :]}"
        else:
            _entry(f"{pad}-", item, pad, out)


def _entry(head: str, value: Any, pad: str, out: list[str]) -> None:
    """``head`` (``key:`` or ``-``) followed by ``value``, nested blocks indented one step past ``pad``."""
    if type(value) is str and "\n" not in value:  # the common case first: a one-line string
        out.append(f"{head} {quote(value)}")
    elif isinstance(value, dict | Mapping) and value:
        out.append(head)
        _mapping(value, pad + _INDENT, out)
    elif isinstance(value, list | tuple) and value:
        out.append(head)
        _sequence(value, pad + _INDENT, out)
    elif isinstance(value, str) and "\n" in value and _is_literal(value):
        inner = pad + _INDENT
        out.append(head + (" |" if value.endswith("\n") else " |-"))
        out.extend(inner + line if line else "" for line in value.removesuffix("\n").split("\n"))
    else:
        out.append(f"{head} {_scalar(value)}")
