"""``cli.terminal.printable``: what a terminal may be shown of publisher-chosen text."""

from __future__ import annotations

from sandboxd.cli.terminal import printable


def test_printable_turns_c0_c1_del_and_bidi_controls_into_question_marks() -> None:
    bidi = "".join(chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)])
    assert printable(f"a\x00\x07\x1b\x7f\x80\x9f{bidi}z") == "a" + "?" * (6 + len(bidi)) + "z"
    assert printable("two\nlines\x1b", lines=True) == "two\nlines?"
    assert printable("plain café ✓") == "plain café ✓"
