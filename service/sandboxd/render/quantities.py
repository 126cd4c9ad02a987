"""Kubernetes resource quantities as the spec writes them: parse to whole units, format back canonically.

CPU is counted in millicores (``"2"``, ``"1.5"``, ``"500m"``) and memory or storage in bytes (``"8Gi"``,
``"0.5Gi"``, ``"1536Mi"``, ``"1000"``), exactly the two grammars ``sandboxd.models.spec`` accepts. The
formatter prints the shortest exact form: whole cores or ``<n>m``; the largest binary suffix that divides the
value (``"4Gi"``, ``"2730Mi"``, ``"2796202Ki"``) or plain bytes.

What it deliberately does not do: the full Kubernetes quantity grammar (decimal ``k``/``M``/``G`` suffixes,
exponents, negative numbers). Anything outside the two spec grammars is a ``ValueError``; callers turn it into
their own error with the field name.
"""

from __future__ import annotations

import re
from typing import Final

_CPU: Final = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m?)$")
_BYTES: Final = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti)?$")

KI: Final = 1024
MI: Final = KI**2
GI: Final = KI**3
TI: Final = KI**4
_BINARY: Final = {"Ki": KI, "Mi": MI, "Gi": GI, "Ti": TI}
#: Largest first, so the formatter picks the shortest exact spelling.
_SUFFIXES: Final = (("Ti", TI), ("Gi", GI), ("Mi", MI), ("Ki", KI))


def parse_cpu(text: str) -> int:
    """``"1.5"`` → 1500 millicores; ``"250m"`` → 250. Fractions of a millicore are rounded down."""
    match = _CPU.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a CPU amount such as 500m or 2")
    number, milli = match.groups()
    return _scaled(number, 1 if milli else 1000)


def parse_bytes(text: str) -> int:
    """``"8Gi"`` → 8589934592; ``"0.5Gi"`` → 536870912. Fractions of a byte are rounded down."""
    match = _BYTES.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size such as 512Mi or 8Gi")
    number, suffix = match.groups()
    return _scaled(number, _BINARY[suffix] if suffix else 1)


def _scaled(number: str, scale: int) -> int:
    """``number`` (digits, maybe a ``.`` and more digits) times ``scale``, rounded down, in exact integers.

    ``"1.5"`` is 15 / 10, so ``"1.5"`` × 1000 is 15 × 1000 // 10: the same answer as ``Fraction`` at a
    fraction of its cost, and never a float.
    """
    whole, _, decimals = number.partition(".")
    divisor: int = 10 ** len(decimals)  # typed: mypy reads int ** int as Any (a negative power is a float)
    return int(whole + decimals) * scale // divisor


def format_cpu(millicores: int) -> str:
    """1333 → ``"1333m"``; 4000 → ``"4"``."""
    if millicores < 0:
        raise ValueError(f"negative CPU amount {millicores}m")
    if millicores % 1000 == 0:
        return str(millicores // 1000)
    return f"{millicores}m"


def format_bytes(count: int) -> str:
    """2863136768 → ``"2730Mi"``; 8589934592 → ``"8Gi"``; 1000 → ``"1000"``."""
    if count < 0:
        raise ValueError(f"negative size {count}")
    for suffix, unit in _SUFFIXES:
        if count and count % unit == 0:
            return f"{count // unit}{suffix}"
    return str(count)


def share_bytes(total: int, parts: int) -> int:
    """An equal share of ``total`` bytes, rounded down to a whole Mi when it is at least one Mi.

    Whole mebibytes keep the per-pod limits readable ("2730Mi" rather than "2796202Ki") and the rounding is
    always down, so ``parts`` shares never exceed the total.
    """
    share = total // parts
    for unit in (MI, KI):
        if share >= unit:
            return share - share % unit
    return share
