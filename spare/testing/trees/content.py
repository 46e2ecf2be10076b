"""What goes into the test trees: contents, names and mtimes that show any loss or truncation."""

from __future__ import annotations

import hashlib
import unicodedata

MiB = 1024 * 1024

# mtimes: every digit of the nanoseconds set, so that truncation to seconds, microseconds or
# float precision shows.
BASE_MTIME_NS = 1_234_567_890_123_456_789  # 2009
PRE_1970_NS = -14_182_940_123_456_789  # 1969-07-20, a negative time_t
YEAR_1971_NS = 45_792_000_987_654_321  # 1971-06-15, before 1972
Y2038_NS = 2_147_483_648_000_000_001  # one second after the signed 32-bit time_t ends
YEAR_2099_NS = 4_102_444_799_987_654_321  # 2099-12-31T23:59:59.987654321

# Names a Linux file name may be: any bytes but "/" and NUL, up to 255 of them.
NFC = unicodedata.normalize("NFC", "café").encode()
NFD = unicodedata.normalize("NFD", "café").encode()
WEIRD_NAMES: tuple[bytes, ...] = (
    b"non-utf8-\xff\xfe\x80",
    b"latin1-caf\xe9",
    b"new\nline",
    b"tab\there",
    b"carriage\rreturn",
    b"back\\slash",
    b"\"double\"-'single'-`back`",
    b"-leading-dash",
    b"--help",
    b" leading space",
    b"trailing space ",
    b"*?[glob]{chars}",
    b"$(echo pwned);|&<>",
    b"~",
    b"...",
    b".hidden",
    b"\x01\x1b[31mcontrol",
    NFC,
    NFD,
    "🦀📦 emoji".encode(),
    "日本語のファイル".encode(),
    b"n" * 255,
    ("é" * 127 + "x").encode(),  # 255 bytes of two-byte characters
)
WEIRD_DIR = b"dir\nwith \xff newline"
WEIRD_DIR_FILE = b"file\twith tab"


def odd_mtime_ns(index: int) -> int:
    """A distinct mtime per entry, none of them a round number of anything."""
    return BASE_MTIME_NS + index * 1_000_003_007


def compressible_text(size: int) -> bytes:
    """Text that looks like a log file (compresses well, but not trivially)."""
    lines = []
    total = 0
    index = 0
    while total < size:
        line = (
            f"2026-11-26T04:{index % 60:02d}:{(index * 7) % 60:02d} host app[{index % 977}]: "
            f"request {index} served in {(index * 37) % 1000} ms, status {200 + index % 5}\n"
        )
        lines.append(line)
        total += len(line)
        index += 1
    return "".join(lines).encode()[:size]


def pattern_bytes(seed: int, size: int) -> bytes:
    """Deterministic, incompressible bytes (the SHA-256 counter stream of ``seed``)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d:%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:size])
