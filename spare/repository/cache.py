"""The local cache: where each chunk is stored, and which files the last snapshot saw.

It lives in SQLite (opened through :func:`spare.repository.database.connect`) so that lookups
stay out of RAM whatever the size of the tree, and it can be thrown away at any time: everything
in it is rebuilt from the bucket (index objects, pack trailers, the snapshot's manifest) when it
is missing or disagrees with the bucket.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from spare.repository.database import CacheDamaged, connect, remove_database
from spare.repository.objects import BlobRecord
from spare.repository.packs import PackInfo

log = logging.getLogger("spare")


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS packs(
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, transforms TEXT NOT NULL,
    size INTEGER NOT NULL, records INTEGER NOT NULL, blob_bytes INTEGER NOT NULL,
    indexed_in TEXT, known INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunk_copies(
    id BLOB NOT NULL, pack INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,
    size INTEGER NOT NULL, start INTEGER NOT NULL, PRIMARY KEY(id, pack)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunk_copies_by_pack ON chunk_copies(pack);
CREATE VIEW IF NOT EXISTS chunks AS
    SELECT c.id, p.name AS pack, c.offset, c.length, c.size, c.start
    FROM chunk_copies c JOIN packs p ON p.id = c.pack;
CREATE TABLE IF NOT EXISTS damaged(id BLOB NOT NULL, pack TEXT NOT NULL, PRIMARY KEY(id, pack))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS index_objects(name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS files(
    key BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, ino INTEGER,
    chunks BLOB, xattrs INTEGER) WITHOUT ROWID;
"""

#: What a run fills with the files it sees; it becomes ``files`` when the snapshot is committed.
_FILES_NEXT = """CREATE TABLE IF NOT EXISTS files_next(
    key BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, ino INTEGER,
    chunks BLOB, xattrs INTEGER) WITHOUT ROWID"""

#: A cache of another schema is removed and built again from the bucket. 3: chunk copies name
#: their pack by number (a third of the size at a million files). 4: small chunks share blobs.
#: 7: a pack's row keeps its blob records and bytes (5: the files table knows which files had
#: extended attributes).
SCHEMA_VERSION = "7"

#: A chunk may be stored in several packs (the manifest's two copies, a chunk stored anew because
#: its first copy is damaged, an interrupted run's pack). Its copies are used in this order:
#: those not known to be damaged first, then those this cache learned of first. A pack found in the
#: bucket later (a replayed one) is never preferred to one known before.
COPY_PREFERENCE = "(d.id IS NOT NULL), p.known"


def _walk_key(path: bytes) -> bytes:
    """``path`` as the files table sorts it: in the order of the walk (parents first, names
    sorted as bytes), as a separator below any byte a name can hold puts "a/b" before "a.b"."""
    return path.replace(b"/", b"\0")


#: Rows written at once into the tables that a create fills an entry at a time.
_BATCH = 4096

#: Files forgotten one by one when chunks are found damaged; beyond this many, all of them.
_FORGET_ONE_BY_ONE = 64


class KnownFile(NamedTuple):
    """A file as the last snapshot has it: its chunk ids, and whether it had extended
    attributes (setting or removing one changes a file's ctime, so an unchanged file that had
    none still has none)."""

    chunks: bytes
    xattrs: bool


@dataclass(frozen=True)
class ChunkLocation:
    pack: str
    transforms: tuple[str, ...]
    offset: int
    length: int
    size: int
    start: int


class Cache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self._open()
        except CacheDamaged as exc:
            # Found on opening: nothing was read from it yet, so start afresh at once.
            self.db.close()
            log.warning("%s", exc.message.split(";")[0] + "; rebuilding it from the bucket")
            self._open()

    def _open(self) -> None:
        # Rows of the live and files_next tables, written a batch at a time.
        self._live_rows: list[tuple[bytes, int]] = []
        self._file_rows: list[tuple[bytes, int, int, int, int, bytes, int]] = []
        # The files of the last snapshot, read in the walk's order (see start_files).
        self._known: sqlite3.Cursor | None = None
        self._next_known: tuple[Any, ...] | None = None
        self.files_matched = 0
        self.db = connect(self.path, isolation_level=None, check_same_thread=False)
        # Pages freed by a run (the files of the previous one) go back to the file system. Set
        # before anything is written, as only a new database takes it.
        self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        # Small page caches: create's memory budget is 100 MiB, and the OS caches the file anyway.
        self.db.execute("PRAGMA cache_size=-2048")
        self.db.execute("PRAGMA temp_store=FILE")
        self.db.execute("PRAGMA temp.cache_size=-1024")
        if self.get_meta("schema") not in (None, SCHEMA_VERSION):
            self.db.close()
            remove_database(self.path)
            self._open()
            return
        self.db.executescript(SCHEMA + _FILES_NEXT)
        self.set_meta("schema", SCHEMA_VERSION)

    def close(self) -> None:
        self._stop_lookups()
        if not self.db.in_transaction:
            # What the run freed (the previous run's files, pruned packs) goes back to the
            # file system. The pragma frees one page per step: executescript steps to the end.
            self.db.executescript("PRAGMA incremental_vacuum;")
        self.db.close()

    def begin(self) -> None:
        self.db.execute("BEGIN")

    def commit(self) -> None:
        if self.db.in_transaction:
            self.db.execute("COMMIT")

    # -- meta -------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))

    # -- chunks and packs -------------------------------------------------------------------
    def has_chunk(self, chunk_id: bytes) -> bool:
        """Whether a copy of the chunk is stored that is not known to be damaged."""
        return self.good_copies(chunk_id, 1) > 0

    def good_copies(self, chunk_id: bytes, enough: int = 2) -> int:
        """How many copies of the chunk not known to be damaged are stored, up to ``enough``."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM chunks c WHERE c.id=? AND NOT EXISTS "
            "(SELECT 1 FROM damaged d WHERE d.id=c.id AND d.pack=c.pack) LIMIT ?)",
            (chunk_id, enough),
        ).fetchone()
        return int(row[0])

    def locations(self, chunk_id: bytes) -> list[ChunkLocation]:
        """Every stored copy of the chunk, in the order they are to be used."""
        return [
            ChunkLocation(pack, tuple(transforms.split(",")), offset, length, size, start)
            for pack, transforms, offset, length, size, start in self.db.execute(
                "SELECT c.pack, p.transforms, c.offset, c.length, c.size, c.start FROM chunks c "
                "JOIN packs p ON p.name = c.pack "
                "LEFT JOIN damaged d ON d.id = c.id AND d.pack = c.pack "
                f"WHERE c.id=? ORDER BY {COPY_PREFERENCE}",
                (chunk_id,),
            )
        ]

    def add_pack(self, pack: PackInfo, indexed_in: str | None) -> None:
        """Know ``pack`` and where its chunks are: copies of chunks known elsewhere come after
        those (see :meth:`locations`), so that a pack found in the bucket later never takes a
        chunk away from a known pack, and the prune cannot be led to delete that one."""
        blob_bytes = sum(length for _, length in {(b.offset, b.length) for b in pack.blobs})
        self.db.execute(
            "INSERT INTO packs(name, transforms, size, records, blob_bytes, indexed_in, known) "
            "VALUES(?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(known), 0) + 1 FROM packs)) "
            "ON CONFLICT(name) DO UPDATE SET transforms=excluded.transforms, size=excluded.size, "
            "records=excluded.records, blob_bytes=excluded.blob_bytes, "
            "indexed_in=excluded.indexed_in",
            (
                pack.name,
                ",".join(pack.transforms),
                pack.size,
                len(pack.blobs),
                blob_bytes,
                indexed_in,
            ),
        )
        (number,) = self.db.execute("SELECT id FROM packs WHERE name=?", (pack.name,)).fetchone()
        self.db.executemany(
            "INSERT OR REPLACE INTO chunk_copies(id, pack, offset, length, size, start) "
            "VALUES(?,?,?,?,?,?)",
            ((b.chunk_id, number, b.offset, b.length, b.size, b.start) for b in pack.blobs),
        )

    def remove_packs(self, names: Iterable[str]) -> None:
        for name in names:
            self.db.execute(
                "DELETE FROM chunk_copies WHERE pack=(SELECT id FROM packs WHERE name=?)", (name,)
            )
            self.db.execute("DELETE FROM damaged WHERE pack=?", (name,))
            self.db.execute("DELETE FROM packs WHERE name=?", (name,))

    def forget_packs(self, names: Iterable[str]) -> None:
        """Forget packs that are gone from the bucket (or changed), the index objects that name
        them (so that the next create writes an index naming only packs that are there), and
        the files table (so that every file is read again and what they held is stored anew)."""
        names = list(names)
        for index in {self.pack_indexed_in(name) for name in names} - {None}:
            assert index is not None
            self.remove_index(index)
        self.remove_packs(names)
        self.forget_files()

    def pack_names(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT name FROM packs")}

    def pack_sizes(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT name, size FROM packs"))

    def unindexed_packs(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM packs WHERE indexed_in IS NULL")]

    def pack_info(self, name: str) -> PackInfo:
        row = self.db.execute("SELECT transforms, size FROM packs WHERE name=?", (name,)).fetchone()
        blobs = tuple(
            BlobRecord(*r)
            for r in self.db.execute(
                "SELECT id, offset, length, size, start FROM chunks WHERE pack=? "
                "ORDER BY offset, start",
                (name,),
            )
        )
        return PackInfo(name, tuple(row[0].split(",")), row[1], blobs)

    def packs_indexed_in(self, index: str) -> list[str]:
        return [
            r[0] for r in self.db.execute("SELECT name FROM packs WHERE indexed_in=?", (index,))
        ]

    def pack_indexed_in(self, name: str) -> str | None:
        row = self.db.execute("SELECT indexed_in FROM packs WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    def set_indexed(self, packs: Iterable[str], index: str | None) -> None:
        self.db.executemany(
            "UPDATE packs SET indexed_in=? WHERE name=?", ((index, name) for name in packs)
        )

    # -- damage found (by verify, restore, create's check, the prune) -------------------------
    def mark_damaged(self, found: Iterable[tuple[bytes, str]]) -> int:
        """Remember that the copies ``(chunk id, pack)`` are damaged; returns how many are new.

        Those copies are used last from now on; a chunk left without a good copy is stored anew
        by the next create, which reads again every file that uses it, and the prune then
        repacks or deletes the damaged pack. Marks survive a rebuild of the index tables.
        """
        new = [
            (chunk_id, pack)
            for chunk_id, pack in found
            if self.db.execute(
                "INSERT OR IGNORE INTO damaged(id, pack) VALUES(?, ?)", (chunk_id, pack)
            ).rowcount
        ]
        if len(new) > _FORGET_ONE_BY_ONE:
            self.forget_files()
        else:
            for chunk_id, _ in new:
                # instr() finds the id anywhere in the file's chunk list; a match that straddles
                # two ids would only make create read one more file.
                self.db.execute("DELETE FROM files WHERE instr(chunks, ?) > 0", (chunk_id,))
        return len(new)

    def damaged_packs(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT DISTINCT pack FROM damaged")}

    # -- index objects ----------------------------------------------------------------------
    def index_names(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT name FROM index_objects")}

    def add_index(self, name: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO index_objects(name) VALUES(?)", (name,))

    def remove_index(self, name: str) -> None:
        self.db.execute("DELETE FROM index_objects WHERE name=?", (name,))
        self.db.execute("UPDATE packs SET indexed_in=NULL WHERE indexed_in=?", (name,))

    def index_sizes(self) -> dict[str, int]:
        """Blob records per index object."""
        return dict(
            self.db.execute(
                "SELECT i.name, COALESCE(SUM(p.records), 0) FROM index_objects i LEFT JOIN packs p "
                "ON p.indexed_in = i.name GROUP BY i.name"
            )
        )

    def clear_index(self) -> None:
        """Forget every pack and index object (damage marks stay: they name copies, wherever
        they are listed)."""
        for table in ("chunk_copies", "packs", "index_objects"):
            self.db.execute(f"DELETE FROM {table}")

    # -- live chunks (what the new snapshot references) --------------------------------------
    def start_live(self) -> None:
        self._live_rows.clear()
        self.db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS live(id BLOB PRIMARY KEY, copies INTEGER NOT NULL) "
            "WITHOUT ROWID"
        )
        self.db.execute("DELETE FROM live")

    def add_live(self, chunk_ids: Iterable[bytes], copies: int = 1) -> None:
        """The new snapshot needs ``chunk_ids``, each in ``copies`` packs."""
        self._live_rows += ((c, copies) for c in chunk_ids)
        if len(self._live_rows) >= _BATCH:
            self._write_live()

    def _write_live(self) -> None:
        self.db.executemany(
            "INSERT INTO live(id, copies) VALUES(?, ?) "
            "ON CONFLICT(id) DO UPDATE SET copies=MAX(copies, excluded.copies)",
            self._live_rows,
        )
        self._live_rows.clear()

    def hold_live(self) -> None:
        """Choose the copies that the prune keeps: of each live chunk, as many as it needs, in
        the order of :meth:`locations`. Called again after marking damage or dropping packs."""
        self._write_live()
        # Statement by statement: a script would commit the prune's transaction first.
        self.db.execute("DROP TABLE IF EXISTS temp.held")
        self.db.execute(
            f"""
            CREATE TEMP TABLE held AS SELECT id, pack, offset, length, size, start FROM (
                SELECT c.id, c.pack, c.offset, c.length, c.size, c.start, l.copies,
                       ROW_NUMBER() OVER (PARTITION BY c.id ORDER BY {COPY_PREFERENCE}) AS copy
                FROM live l JOIN chunks c ON c.id = l.id JOIN packs p ON p.name = c.pack
                LEFT JOIN damaged d ON d.id = c.id AND d.pack = c.pack)
            WHERE copy <= copies
            """
        )
        self.db.execute("CREATE INDEX temp.held_by_pack ON held(pack, offset)")

    def pack_usage(self) -> list[tuple[str, int, int]]:
        """(pack, bytes of the copies it holds for the snapshot, all bytes) for every pack,
        after :meth:`hold_live`."""
        return self.db.execute(
            "SELECT p.name, (SELECT COALESCE(SUM(length), 0) FROM "
            "(SELECT DISTINCT h.offset, h.length FROM held h WHERE h.pack = p.name)), "
            "p.blob_bytes FROM packs p"
        ).fetchall()

    def live_blobs(self, pack: str) -> list[BlobRecord]:
        """The copies ``pack`` holds for the snapshot, after :meth:`hold_live`."""
        return [
            BlobRecord(*r)
            for r in self.db.execute(
                "SELECT id, offset, length, size, start FROM held WHERE pack=? "
                "ORDER BY offset, start",
                (pack,),
            )
        ]

    def copies_elsewhere(self, packs: Iterable[str]) -> dict[str, list[BlobRecord]]:
        """For the live chunks that ``packs`` hold copies of but the prune keeps elsewhere:
        the kept copies, by pack. Those are read before ``packs`` are deleted."""
        packs = list(packs)
        if not packs:
            return {}  # an unchanged tree's run: the query would still join every copy
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS doomed(pack TEXT PRIMARY KEY)")
        self.db.execute("DELETE FROM doomed")
        self.db.executemany("INSERT OR IGNORE INTO doomed VALUES(?)", ((p,) for p in packs))
        found: dict[str, list[BlobRecord]] = {}
        for pack, *record in self.db.execute(
            "SELECT DISTINCT h.pack, h.id, h.offset, h.length, h.size, h.start FROM chunks c "
            "JOIN doomed x ON x.pack = c.pack JOIN held h ON h.id = c.id "
            "WHERE h.pack NOT IN (SELECT pack FROM doomed) ORDER BY h.pack, h.offset, h.start"
        ):
            found.setdefault(pack, []).append(BlobRecord(*record))
        return found

    # -- files seen by the last snapshot ------------------------------------------------------
    def start_files(self) -> None:
        """Start a walk: :meth:`lookup_file` then reads the files of the last snapshot in one
        pass, in the walk's order, instead of one query per file."""
        self._file_rows.clear()
        self.db.execute("DELETE FROM files_next")
        self.start_lookups()

    def start_lookups(self) -> None:
        """Start looking files up, from the first in the walk's order, writing nothing (what a
        dry run does); :attr:`files_matched` counts the paths found in the last snapshot."""
        self._stop_lookups()
        self.files_matched = 0

    def lookup_file(
        self, path: bytes, size: int, mtime_ns: int, ctime_ns: int, ino: int
    ) -> KnownFile | None:
        """What the last snapshot holds of ``path``, if it is unchanged since. Paths must come
        in the walk's order (one out of order is only read again)."""
        key = _walk_key(path)
        if self._known is None:
            self._known = self.db.execute(
                "SELECT key, size, mtime_ns, ctime_ns, ino, chunks, xattrs FROM files ORDER BY key"
            )
            self._next_known = self._known.fetchone()
        row = self._next_known
        while row is not None and row[0] < key:
            row = self._known.fetchone()
        self._next_known = row
        if row is not None and row[0] == key:
            self.files_matched += 1
            if row[1:5] == (size, mtime_ns, ctime_ns, ino):
                return KnownFile(bytes(row[5]), bool(row[6]))
        return None

    def known_files(self) -> int:
        """How many files the last snapshot holds, as this cache knows it."""
        return int(self.db.execute("SELECT count(*) FROM files").fetchone()[0])

    def remember_file(
        self,
        path: bytes,
        size: int,
        mtime_ns: int,
        ctime_ns: int,
        ino: int,
        chunks: bytes,
        xattrs: bool = True,
    ) -> None:
        """``xattrs``: whether the file has extended attributes (an ACL, a capability...)."""
        self._file_rows.append(
            (_walk_key(path), size, mtime_ns, ctime_ns, ino, chunks, int(xattrs))
        )
        if len(self._file_rows) >= _BATCH:
            self._write_files()

    def _write_files(self) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO files_next VALUES(?,?,?,?,?,?,?)", self._file_rows
        )
        self._file_rows.clear()

    def commit_files(self, snapshot: str) -> None:
        """The files seen by this run become those of ``snapshot``."""
        self._stop_lookups()
        self._write_files()
        self.db.executescript(
            "BEGIN; DROP TABLE files; ALTER TABLE files_next RENAME TO files;"
            f"{_FILES_NEXT}; COMMIT;"
        )
        self.set_meta("files_snapshot", snapshot)

    def _stop_lookups(self) -> None:
        if self._known is not None:
            self._known.close()
        self._known, self._next_known = None, None

    def forget_files(self) -> None:
        self._stop_lookups()
        self.db.execute("DELETE FROM files")
        self.db.execute("DELETE FROM meta WHERE key='files_snapshot'")
