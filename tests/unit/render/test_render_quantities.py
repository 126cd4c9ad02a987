"""Quantities and the quota split: exact parsing, canonical formatting, shares that always fit (G5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandboxd.render.quantities import (
    GI,
    KI,
    MI,
    format_bytes,
    format_cpu,
    parse_bytes,
    parse_cpu,
    share_bytes,
)


@pytest.mark.parametrize(
    ("text", "millicores"), [("2", 2000), ("1.5", 1500), ("0.25", 250), ("500m", 500), ("1.5m", 1), ("0", 0)]
)
def test_parse_cpu(text: str, millicores: int) -> None:
    assert parse_cpu(text) == millicores


@pytest.mark.parametrize(
    ("text", "count"),
    [("8Gi", 8 * GI), ("0.5Gi", 512 * MI), ("1536Mi", 1536 * MI), ("4Ki", 4 * KI), ("1000", 1000), ("1Ti", 1024 * GI)],
)
def test_parse_bytes(text: str, count: int) -> None:
    assert parse_bytes(text) == count


@pytest.mark.parametrize("text", ["1x", "", "-1", "1e3", "m", "1.m", "1Gi", " 1"])
def test_text_outside_the_cpu_grammar_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="is not a CPU amount"):
        parse_cpu(text)


@pytest.mark.parametrize("text", ["1x", "", "-1", "1G", "1e3", "Mi", "1.Mi", "500m", "1gi"])
def test_text_outside_the_size_grammar_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_bytes(text)


@pytest.mark.parametrize(("millicores", "text"), [(1333, "1333m"), (4000, "4"), (0, "0"), (1500, "1500m")])
def test_format_cpu(millicores: int, text: str) -> None:
    assert format_cpu(millicores) == text


@pytest.mark.parametrize(
    ("count", "text"),
    [(8 * GI, "8Gi"), (2730 * MI, "2730Mi"), (2796202 * KI, "2796202Ki"), (1000, "1000"), (0, "0"), (1024 * GI, "1Ti")],
)
def test_format_bytes(count: int, text: str) -> None:
    assert format_bytes(count) == text


def test_upstream_fixture_split() -> None:
    assert format_cpu(parse_cpu("4") // 3) == "1333m"
    assert format_bytes(share_bytes(parse_bytes("8Gi"), 3)) == "2730Mi"


@given(st.integers(min_value=0, max_value=2**50))
def test_bytes_round_trip(count: int) -> None:
    assert parse_bytes(format_bytes(count)) == count


@given(st.integers(min_value=0, max_value=10**9))
def test_cpu_round_trip(millicores: int) -> None:
    assert parse_cpu(format_cpu(millicores)) == millicores


@given(st.integers(min_value=0, max_value=2**45), st.integers(min_value=1, max_value=10))
def test_shares_never_exceed_the_total_and_lose_less_than_a_mebibyte(total: int, parts: int) -> None:
    share = share_bytes(total, parts)
    assert share * parts <= total
    assert total // parts - share < MI
    if share >= MI:
        assert share % MI == 0
