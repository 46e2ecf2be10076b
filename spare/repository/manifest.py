"""The manifest: every entry of the tree with its metadata and chunk list, one JSON line each.

Entries come in walk order (depth first, names sorted bytewise), so the manifest is written and
read as a stream and never held in memory whole. Paths are relative to the backed-up directory
(``.`` is the directory itself) and may be any bytes: they are carried through JSON as
``surrogateescape``-decoded UTF-8. The manifest is stored in chunks like file content, so an
unchanged tree produces the same manifest chunks and uploads nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from spare.errors import RepositoryDamaged

FILE = "f"
DIRECTORY = "d"
SYMLINK = "l"
FIFO = "p"
CHAR_DEVICE = "c"
BLOCK_DEVICE = "b"
TYPES = (FILE, DIRECTORY, SYMLINK, FIFO, CHAR_DEVICE, BLOCK_DEVICE)

ID_BYTES = 32


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


_ID_MAX = 2**32 - 1
_SIZE_MAX = 2**64 - 1
_TIME_MAX = 2**63 - 1


def _int(value: Any, high: int, low: int = 0) -> int:
    """A number of the manifest, as spare writes it: an integer within its field's range."""
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{str(value)[:30]} is not an integer from {low} to {high}")
    return value


def _name(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError("a user or group name is not a string")
    return value


#: One encoder for every line: json.dumps with non-default options builds one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


@dataclass
class Entry:
    path: bytes
    type: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    user: str | None = None
    group: str | None = None
    size: int = 0
    chunks: list[bytes] = field(default_factory=list)
    #: The target of a symlink.
    target: bytes | None = None
    #: For the second and later names of a hardlinked file: the first name.
    link: bytes | None = None
    rdev: int = 0
    #: Extended attributes kept by spare.xattrs: name -> value.
    xattrs: dict[str, bytes] = field(default_factory=dict)

    def to_line(self) -> bytes:
        data: dict[str, Any] = {
            "p": _text(self.path),
            "t": self.type,
            "m": self.mode,
            "u": self.uid,
            "g": self.gid,
            "mt": self.mtime_ns,
        }
        if self.user is not None:
            data["U"] = self.user
        if self.group is not None:
            data["G"] = self.group
        if self.size:
            data["s"] = self.size
        if self.chunks:
            data["c"] = b"".join(self.chunks).hex()
        if self.target is not None:
            data["l"] = _text(self.target)
        if self.link is not None:
            data["h"] = _text(self.link)
        if self.rdev:
            data["r"] = self.rdev
        if self.xattrs:
            data["x"] = {name: value.hex() for name, value in sorted(self.xattrs.items())}
        return _ENCODER.encode(data).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> Entry:
        try:
            data = json.loads(line)
            raw_chunks = bytes.fromhex(data.get("c", ""))
            entry = cls(
                path=_raw(data["p"]),
                type=data["t"],
                mode=_int(data["m"], 0o7777),
                uid=_int(data["u"], _ID_MAX),
                gid=_int(data["g"], _ID_MAX),
                mtime_ns=_int(data["mt"], _TIME_MAX, -_TIME_MAX),
                user=_name(data.get("U")),
                group=_name(data.get("G")),
                size=_int(data.get("s", 0), _SIZE_MAX),
                chunks=[raw_chunks[i : i + ID_BYTES] for i in range(0, len(raw_chunks), ID_BYTES)],
                target=_raw(data["l"]) if "l" in data else None,
                link=_raw(data["h"]) if "h" in data else None,
                rdev=_int(data.get("r", 0), _SIZE_MAX),
                xattrs={name: bytes.fromhex(value) for name, value in data.get("x", {}).items()},
            )
        except (ValueError, KeyError, TypeError, UnicodeError, AttributeError) as exc:
            raise RepositoryDamaged(f"the manifest has a malformed entry ({exc})") from exc
        if entry.type not in TYPES:
            raise RepositoryDamaged(f"the manifest has an entry of unknown type {entry.type!r}")
        return entry


class ManifestWriter:
    """Writes entries to a temporary file, to be chunked and stored once the walk is done."""

    def __init__(self, tmpdir: str) -> None:
        self.file = tempfile.TemporaryFile(dir=tmpdir, prefix="manifest-")  # noqa: SIM115
        self.entries = 0

    def write(self, entry: Entry) -> None:
        self.file.write(entry.to_line())
        self.entries += 1

    def finish(self) -> Any:
        """The file, rewound, for the chunker; the caller closes it."""
        self.file.flush()
        self.file.seek(0)
        return self.file

    def close(self) -> None:
        self.file.close()


@dataclass
class LostPart:
    """A stretch of the manifest that could not be read: the entries between two paths."""

    #: The path of the last entry read before it (None: it starts at the beginning).
    after: bytes | None
    #: The path of the first entry read after it (None: it runs to the end).
    before: bytes | None
    reason: str

    def describe(self) -> str:
        after = "the start" if self.after is None else os.fsdecode(self.after)
        before = "the end" if self.before is None else os.fsdecode(self.before)
        return f"the entries after {after} and before {before} ({self.reason})"


class ManifestLines:
    """The encoded entries stored in ``chunk_ids``, one line each, fetched one chunk at a time.

    With ``resilient``, a chunk that cannot be read costs only the entries in it: reading goes on
    at the first whole line after it, and :attr:`lost` says which stretch is missing.
    """

    def __init__(
        self,
        chunk_ids: Iterable[bytes],
        read_chunk: Callable[[bytes], bytes],
        *,
        resilient: bool = False,
    ) -> None:
        self.chunk_ids = chunk_ids
        self.read_chunk = read_chunk
        self.resilient = resilient
        self.lost: list[LostPart] = []

    def __iter__(self) -> Iterator[bytes]:
        rest = b""
        previous: bytes | None = None
        gap: LostPart | None = None  # the stretch lost, until the next entry is read
        skipping = False  # looking for the start of the next whole entry
        for chunk_id in self.chunk_ids:
            try:
                data = self.read_chunk(chunk_id)
            except RepositoryDamaged as exc:
                if not self.resilient:
                    raise
                if gap is None:
                    gap = LostPart(_path_of(previous), None, str(exc))
                    self.lost.append(gap)
                rest, skipping = b"", True
                continue
            if skipping:
                start = data.find(b"\n")
                if start < 0:
                    continue  # all of it belongs to an entry that was cut
                data, skipping = data[start + 1 :], False
            lines = (rest + data).split(b"\n")
            rest = lines.pop()
            for line in lines:
                if gap is not None:
                    gap.before, gap = _path_of(line), None
                previous = line
                yield line
        if rest and not skipping:
            if not self.resilient:
                raise RepositoryDamaged("the manifest ends in the middle of an entry")
            self.lost.append(LostPart(_path_of(previous), None, "it ends in the middle of one"))


def _path_of(line: bytes | None) -> bytes | None:
    return None if line is None else Entry.from_line(line).path


def read_manifest(
    chunk_ids: Iterable[bytes], read_chunk: Callable[[bytes], bytes]
) -> Iterator[Entry]:
    """Yield the entries stored in ``chunk_ids``, fetching one chunk at a time."""
    for line in ManifestLines(chunk_ids, read_chunk):
        yield Entry.from_line(line)
