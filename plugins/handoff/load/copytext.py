"""PostgreSQL ``COPY ... FROM STDIN`` text format: escaping values for the fast loaders.

Text format: one row per line, columns separated by a tab, ``\\N`` for NULL; inside a value, backslash, tab,
newline and carriage return must be written as ``\\\\``, ``\\t``, ``\\n``, ``\\r``. PostgreSQL text cannot hold
U+0000 at all, so callers decide what to do with it (quarantine, or replace it: ``scrub_nul``).
"""

from __future__ import annotations

NULL = "\\N"
NULL_B = b"\\N"

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def escape(value: str) -> str:
    """One text value, escaped for COPY text format (the value must not contain U+0000)."""
    return value.translate(_ESCAPES)


def escape_bytes(data: bytes) -> bytes:
    """UTF-8 bytes escaped for COPY text format. Fast on large buffers: a few C-level passes, no per-char Python.

    Newlines are escaped too; callers that escape a whole buffer of lines at once split on b"\\n" first.
    """
    data = escape_lines(data)
    if b"\n" in data:
        data = data.replace(b"\n", b"\\n")
    return data


def escape_lines(data: bytes) -> bytes:
    """Like ``escape_bytes`` but keeps newlines, so ``escape_lines(buf).split(b"\\n")`` lines up with
    ``buf.split(b"\\n")`` one to one."""
    if b"\\" in data:
        data = data.replace(b"\\", b"\\\\")
    if b"\t" in data:
        data = data.replace(b"\t", b"\\t")
    if b"\r" in data:
        data = data.replace(b"\r", b"\\r")
    return data


def scrub_nul(value: str) -> str:
    """Replace U+0000 (which PostgreSQL text cannot store) with U+FFFD."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def field(value: str | None) -> str:
    """A nullable text value as a COPY field (U+0000 replaced, specials escaped)."""
    if value is None:
        return NULL
    return escape(scrub_nul(value))


def row(values: list[str | None]) -> bytes:
    """A whole COPY text row (with the trailing newline) from nullable text values."""
    return ("\t".join(field(v) for v in values) + "\n").encode()
