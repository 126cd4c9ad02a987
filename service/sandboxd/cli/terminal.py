"""What a terminal may be shown of a value someone else chose: every character it would act on becomes ``?``.

An event's id, a status message, a dead letter's body, an error's text are publisher-chosen; printed raw, an
escape sequence (``ESC [31m``), a backspace or a bidirectional override (U+202E) would recolour, rewrite or
reorder what the reader sees. ``printable`` is the one place that decides what reaches a terminal: C0 and C1
controls, DEL, the bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) and every other
character Python does not call printable (formats, separators, unassigned) turn into ``?``.

What it deliberately does not touch: JSON and YAML output (``-o json|yaml``), which keep every value as stored
so a script reads the record itself (JSON escapes the C0 controls anyway).
"""

from __future__ import annotations


def printable(text: str, *, lines: bool = False) -> str:
    """``text`` with every character a terminal would act on as ``?``; ``lines``: keep its line breaks (text
    the CLI laid out on several lines itself, e.g. a describe or a table)."""
    if lines:
        return "\n".join(printable(line) for line in text.split("\n"))
    return "".join(c if c.isprintable() else "?" for c in text)
