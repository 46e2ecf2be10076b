"""The scratch databases of one run, removed with it: :class:`RestorePlan` (what a restore made
and where each chunk goes) and :class:`ChunkSet` (the chunks a verify found good). They live in
SQLite so that a restore or a verify of any size stays out of RAM.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from spare.repository.cache import COPY_PREFERENCE
from spare.repository.database import connect
from spare.repository.objects import BlobRecord


class Inode(NamedTuple):
    """What restore records of an inode it made, and checks before it writes to or changes it.

    The device and inode number name the inode; the owner (restore's own user until the
    metadata pass) and the kind (``stat.S_IFMT``) keep an inode number that the file system
    gave again, to a file someone else made after removing restore's, from passing for it.
    """

    dev: int
    ino: int
    uid: int
    kind: int


#: One place a restored chunk goes: its blob in a pack, the file and offset it is written at, and
#: the inode restore made for that file (None if it made none).
Place = tuple[BlobRecord, bytes, int, Inode | None]


class RestorePlan:
    """A restore's scratch database: the inodes it made, the entries to finish last, and where
    each chunk goes.

    Shared by the threads that read packs (each reads its own pack's rows).
    """

    def __init__(self, path: Path) -> None:
        self.db = connect(path, check_same_thread=False)
        self.db.executescript(
            "CREATE TABLE places(pack TEXT, offset INTEGER, length INTEGER, size INTEGER,"
            " start INTEGER, id BLOB, path BLOB, at INTEGER);"
            "CREATE TABLE pack_transforms(pack TEXT PRIMARY KEY, transforms TEXT);"
            "CREATE TABLE late(seq INTEGER PRIMARY KEY, path BLOB, entry BLOB);"
            "CREATE TABLE unselected(path BLOB PRIMARY KEY, entry BLOB) WITHOUT ROWID;"
            "CREATE TABLE wanted(path BLOB, idx INTEGER, id BLOB);"
            "CREATE TABLE created(path BLOB PRIMARY KEY, dev INTEGER, ino INTEGER, uid INTEGER,"
            " kind INTEGER) WITHOUT ROWID;"
        )
        self.late_count = 0

    def close(self) -> None:
        self.db.close()

    def commit(self) -> None:
        self.db.commit()

    def locate(self, cache_path: Path) -> list[bytes]:
        """Locate every chunk wanted in one join with the local cache at ``cache_path`` (its
        first copy in the order of :meth:`Cache.locations`), and where it goes in its file.

        Returns the files with a chunk that no pack holds: they are damaged, and get their
        chunks up to that one.
        """
        db = self.db
        db.execute("ATTACH DATABASE ? AS cache", (str(cache_path),))
        db.executescript(
            f"""
            CREATE TEMP TABLE missing AS
                SELECT w.path, MIN(w.idx) AS idx FROM wanted w
                WHERE NOT EXISTS (SELECT 1 FROM cache.chunks c WHERE c.id = w.id)
                GROUP BY w.path;
            CREATE TEMP TABLE first_copy AS
                SELECT * FROM (
                    SELECT w.path, w.idx, w.id, c.pack, c.offset, c.length, c.size, c.start,
                           ROW_NUMBER() OVER (
                               PARTITION BY w.path, w.idx ORDER BY {COPY_PREFERENCE}) AS copy
                    FROM wanted w JOIN cache.chunks c ON c.id = w.id
                    JOIN cache.packs p ON p.name = c.pack
                    LEFT JOIN cache.damaged d ON d.id = c.id AND d.pack = c.pack)
                WHERE copy = 1;
            INSERT INTO places
                SELECT f.pack, f.offset, f.length, f.size, f.start, f.id, f.path,
                       SUM(f.size) OVER (PARTITION BY f.path ORDER BY f.idx) - f.size
                FROM first_copy f LEFT JOIN missing m ON m.path = f.path
                WHERE m.idx IS NULL OR f.idx < m.idx;
            INSERT INTO pack_transforms
                SELECT p.name, p.transforms FROM cache.packs p
                WHERE p.name IN (SELECT DISTINCT pack FROM places);
            DROP TABLE first_copy;
            """
        )
        damaged = [row[0] for row in db.execute("SELECT path FROM missing")]
        db.commit()
        db.execute("DETACH DATABASE cache")
        db.execute("CREATE INDEX places_by_pack ON places(pack, offset)")
        return damaged

    def add_created(self, path: bytes, inode: Inode) -> None:
        """Restore made ``inode`` at ``path``."""
        self.db.execute("INSERT INTO created VALUES(?, ?, ?, ?, ?)", (path, *inode))

    def created(self, path: bytes) -> Inode | None:
        """The inode restore made at ``path``, if it made one."""
        row = self.db.execute(
            "SELECT dev, ino, uid, kind FROM created WHERE path=?", (path,)
        ).fetchone()
        return Inode(*row) if row else None

    def add_late(self, path: bytes, line: bytes) -> None:
        """An entry whose metadata is applied after every content is written."""
        self.late_count += 1
        self.db.execute("INSERT INTO late VALUES(?, ?, ?)", (self.late_count, path, line))

    def late_entries(self) -> Iterator[tuple[bytes, Inode | None]]:
        """The late entries, last first (children before the directories that hold them), each
        with the inode restore made for it."""
        return (
            (line, Inode(*inode) if inode[0] is not None else None)
            for line, *inode in self.db.execute(
                "SELECT l.entry, c.dev, c.ino, c.uid, c.kind FROM late l "
                "LEFT JOIN created c ON c.path = l.path ORDER BY l.seq DESC"
            )
        )

    def add_unselected(self, path: bytes, line: bytes) -> None:
        """An entry that ``--include`` left out, in case a hardlink names it later."""
        self.db.execute("INSERT INTO unselected VALUES(?, ?)", (path, line))

    def unselected(self, path: bytes) -> bytes | None:
        row = self.db.execute("SELECT entry FROM unselected WHERE path=?", (path,)).fetchone()
        return row[0] if row else None

    def want(self, path: bytes, chunks: Iterable[bytes]) -> None:
        """The file ``path`` is made of ``chunks``, in order."""
        self.db.executemany(
            "INSERT INTO wanted VALUES(?, ?, ?)",
            ((path, index, chunk_id) for index, chunk_id in enumerate(chunks)),
        )

    def packs(self) -> list[tuple[str, tuple[str, ...]]]:
        """The packs to read (after :meth:`locate`), with their transforms."""
        return [
            (pack, tuple(transforms.split(",")))
            for pack, transforms in self.db.execute("SELECT pack, transforms FROM pack_transforms")
        ]

    def places(self, pack: str) -> list[Place]:
        """Where the chunks of ``pack`` go, by offset in the pack."""
        return [
            (
                BlobRecord(chunk_id, offset, length, size, start),
                path,
                at,
                Inode(*inode) if inode[0] is not None else None,
            )
            for offset, length, size, start, chunk_id, path, at, *inode in self.db.execute(
                "SELECT p.offset, p.length, p.size, p.start, p.id, p.path, p.at, c.dev, c.ino, "
                "c.uid, c.kind FROM places p LEFT JOIN created c ON c.path = p.path "
                "WHERE p.pack=? ORDER BY p.offset, p.start",
                (pack,),
            )
        ]


class ChunkSet:
    """A set of chunk ids on disk (verify's good chunks): as large as a repository gets."""

    def __init__(self, path: Path) -> None:
        self.db = connect(path, check_same_thread=False)
        self.db.execute("CREATE TABLE chunks(id BLOB PRIMARY KEY) WITHOUT ROWID")

    def close(self) -> None:
        self.db.close()

    def add(self, chunk_ids: Iterable[bytes]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO chunks VALUES(?)", ((c,) for c in chunk_ids))

    def __contains__(self, chunk_id: object) -> bool:
        row = self.db.execute("SELECT 1 FROM chunks WHERE id=?", (chunk_id,)).fetchone()
        return row is not None
