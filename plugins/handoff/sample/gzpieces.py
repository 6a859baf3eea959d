"""Single-member gzip files assembled from pieces compressed in parallel (the way pigz does it).

A worker deflates its share of a file with a fresh compressor and ends it with a sync flush, so the piece is a
run of complete, byte-aligned deflate blocks that refer to nothing before them. Pieces concatenate into one
valid deflate stream; the writer adds the gzip header, a final empty block and the trailer, combining the
pieces' CRC-32s with zlib's crc32_combine algorithm (which the Python zlib module does not expose). The
result is an ordinary one-member .gz file that any reader accepts, with mtime 0 and no file name in the
header so that identical content gives identical bytes.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import BinaryIO

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"  # deflate, no flags, mtime 0, fastest, OS unknown
FINAL_EMPTY_BLOCK = b"\x03\x00"
_POLY = 0xEDB88320


def _multmodp(a: int, b: int) -> int:
    """a(x) * b(x) modulo the CRC-32 polynomial (reflected bit order), as in zlib's crc32.c."""
    m = 1 << 31
    p = 0
    while True:
        if a & m:
            p ^= b
            if (a & (m - 1)) == 0:
                break
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return p


def _x2n_table() -> list[int]:
    table = [0] * 32
    p = 1 << 30  # x^1
    table[0] = p
    for n in range(1, 32):
        p = _multmodp(p, p)
        table[n] = p
    return table


_X2N = _x2n_table()


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of A+B from crc32(A), crc32(B) and len(B)."""
    p = 1 << 31  # x^0
    k = 3
    n = len2
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return _multmodp(p, crc1) ^ crc2


Piece = tuple[bytes, int, int, int]  # (deflated bytes, crc32 of the raw bytes, raw length, records)


def deflate_piece(raw: bytes, records: int = 0, level: int = 1) -> Piece:
    comp = zlib.compressobj(level, zlib.DEFLATED, -15, 9)
    body = comp.compress(raw) + comp.flush(zlib.Z_SYNC_FLUSH)
    return body, zlib.crc32(raw), len(raw), records


class PieceWriter:
    """One gzip file written from pieces in order. Use as a context manager or call close()."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: BinaryIO = path.open("wb")
        self._fh.write(GZIP_HEADER)
        self._crc = 0
        self._size = 0
        self.records = 0

    def add(self, piece: Piece) -> None:
        body, crc, size, records = piece
        if size:
            self._fh.write(body)
            self._crc = crc32_combine(self._crc, crc, size)
            self._size += size
        self.records += records

    def write_raw(self, raw: bytes, records: int = 0) -> None:
        self.add(deflate_piece(raw, records))

    def close(self) -> None:
        if self._fh.closed:
            return
        self._fh.write(FINAL_EMPTY_BLOCK)
        self._fh.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        self._fh.close()

    def __enter__(self) -> PieceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
