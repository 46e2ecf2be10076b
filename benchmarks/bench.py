#!/usr/bin/env python3
"""Benchmark spare side by side with restic and borg.

Standard library only. Generates reproducible data sets, backs each one up with every selected
tool, backs it up again unchanged, restores it, checks the restored tree against the source and
prints the median of each measurement. See ``benchmarks/README.rst``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import hmac
import http.client
import itertools
import json
import os
import platform
import random
import shlex
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "spare-bench-password"
BACKUP_HOST = "spare-bench"
GENERATOR_VERSION = 1
KIB = 1024
MIB = 1024 * 1024
ALL_TOOLS = ("spare", "restic", "borg")
ALL_DATASETS = ("small-files", "large", "unchanged-rerun")
# restic's default is zstd in "auto" mode (skips what does not compress). The borg setting that
# matches spare's policy best is LZMA preset 0 behind borg's "auto" heuristic, which stores
# incompressible chunks uncompressed instead of pushing them through LZMA.
DEFAULT_BORG_COMPRESSION = "auto,lzma,0"
# Lower is better for every measurement; the ratios are spare / other.
METRICS = (
    ("backup_wall_s", "backup wall s"),
    ("backup_cpu_s", "backup CPU s"),
    ("backup_rss_mib", "backup peak RSS MiB"),
    ("rerun_wall_s", "unchanged rerun wall s"),
    ("rerun_cpu_s", "unchanged rerun CPU s"),
    ("rerun_rss_mib", "unchanged rerun RSS MiB"),
    ("repo_mib", "repository MiB (du)"),
    ("repo_apparent_mib", "repository MiB (bytes)"),
    ("repo_objects", "repository objects"),
    ("restore_wall_s", "restore wall s"),
    ("restore_cpu_s", "restore CPU s"),
    ("restore_rss_mib", "restore peak RSS MiB"),
    ("verify_wall_s", "verify wall s"),
    ("verify_cpu_s", "verify CPU s"),
    ("verify_rss_mib", "verify peak RSS MiB"),
)


def note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------------------------

_LETTERS = "etaoinshrdlcumwfgypbvkjxqz"
_LETTER_WEIGHTS = (
    12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8,
    2.4, 2.4, 2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.15, 0.15, 0.1, 0.07,
)  # fmt: skip


class TextGen:
    """Compressible, text-like bytes drawn from a seeded, Zipf-weighted vocabulary.

    Every call draws fresh words, so generated text does not repeat (no accidental dedup).
    """

    def __init__(self, rng: random.Random, words: int = 6000) -> None:
        self.rng = rng
        vocab: set[str] = set()
        while len(vocab) < words:
            length = min(1 + int(rng.expovariate(1 / 5)), 16)
            vocab.add("".join(rng.choices(_LETTERS, _LETTER_WEIGHTS, k=length)))
        ordered = sorted(vocab)
        rng.shuffle(ordered)
        tokens = [w + " " for w in ordered]
        # Punctuation and line breaks among the most frequent tokens.
        for rank, tok in ((1, "\n"), (3, ", "), (6, ". "), (40, "\n\n"), (80, "(x) ")):
            tokens.insert(rank, tok)
        weights = [1.0 / (i + 1) ** 1.05 for i in range(len(tokens))]
        self.tokens = tokens
        self.cum_weights = list(itertools.accumulate(weights))
        total = self.cum_weights[-1]
        self.mean_len = sum(len(t) * w for t, w in zip(tokens, weights, strict=True)) / total

    def bytes(self, n: int) -> bytes:
        if n <= 0:
            return b""
        parts: list[str] = []
        have = 0
        while have < n:
            k = int((n - have) / self.mean_len) + 8
            chunk = "".join(self.rng.choices(self.tokens, cum_weights=self.cum_weights, k=k))
            parts.append(chunk)
            have += len(chunk)
        return "".join(parts).encode("ascii")[:n]


def _random_dirs(rng: random.Random, count: int, max_depth: int) -> list[str]:
    dirs = [""]
    for i in range(count):
        parent = rng.choice(dirs)
        if parent.count("/") >= max_depth - 1:
            parent = ""
        dirs.append(f"{parent}/d{i:04d}" if parent else f"d{i:04d}")
    return dirs


def _set_times(root: Path, rng: random.Random) -> None:
    """Give every entry a fixed, seeded mtime (nanosecond precision) so data sets are identical."""
    base = 1_600_000_000
    entries: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        entries.extend(os.path.join(dirpath, name) for name in sorted(filenames) + links)
    for path in entries:
        t = base * 10**9 + rng.randrange(0, 10**8 * 10**9)
        os.utime(path, ns=(t, t), follow_symlinks=False)
    # Directories last, deepest first, since writing into a directory changes its mtime.
    dirs = [dp for dp, _, _ in os.walk(root)]
    for path in sorted(dirs, key=lambda p: p.count(os.sep), reverse=True):
        t = base * 10**9 + rng.randrange(0, 10**8 * 10**9)
        os.utime(path, ns=(t, t))


def gen_small_files(root: Path, files: int, rng: random.Random) -> None:
    """N files of 1-16 KiB (60 % text, 38 % random, 2 % duplicates) in nested directories."""
    text = TextGen(rng)
    dirs = _random_dirs(rng, max(1, files // 40), max_depth=5)
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for i in range(files):
        d = rng.choice(dirs)
        size = rng.randint(1 * KIB, 16 * KIB)
        r = rng.random()
        if written and r < 0.02:
            data, ext = rng.choice(written).read_bytes(), ".dup"
        elif r < 0.62:
            data, ext = text.bytes(size), ".txt"
        else:
            data, ext = rng.randbytes(size), ".bin"
        path = root / d / f"f{i:05d}{ext}"
        path.write_bytes(data)
        path.chmod(rng.choice((0o644,) * 8 + (0o600, 0o755)))
        written.append(path)
    # A few entries that a faithful restore must get right.
    (root / "empty.txt").write_bytes(b"")
    (root / "empty-dir").mkdir()
    (root / "spaces dir").mkdir()
    (root / "spaces dir" / "a file with spaces.txt").write_bytes(text.bytes(3000))
    (root / "unicode").mkdir()
    (root / "unicode" / "caf\u00e9 \u00fcn\u00efc\u00f8d\u00e9 \u2603.txt").write_bytes(
        text.bytes(2000)
    )
    (root / "links").mkdir()
    if written:
        target = os.path.relpath(rng.choice(written), root / "links")
        os.symlink(target, root / "links" / "to-file")
    os.symlink("no-such-file", root / "links" / "dangling")
    _set_times(root, rng)


def gen_large(root: Path, total: int, rng: random.Random) -> None:
    """A few large files: half compressible text, half random bytes."""
    text = TextGen(rng)
    root.mkdir(parents=True, exist_ok=True)
    half = total // 2
    big = half * 4 // 5
    specs = (
        ("text-0.txt", "text", big),
        ("random-0.bin", "random", big),
        ("text-1.txt", "text", half - big),
        ("random-1.bin", "random", total - half - big),
    )
    for name, kind, size in specs:
        with open(root / name, "wb") as f:
            left = size
            while left > 0:
                n = min(left, MIB)
                f.write(text.bytes(n) if kind == "text" else rng.randbytes(n))
                left -= n
    _set_times(root, rng)


def gen_rerun_tree(root: Path, files: int, rng: random.Random) -> None:
    """Many small files (100 B - 4 KiB, 70 % text) about 100 per directory, three levels deep."""
    text = TextGen(rng)
    dirs = _random_dirs(rng, max(1, files // 100), max_depth=3)
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(files):
        size = rng.randint(100, 4 * KIB)
        data = text.bytes(size) if rng.random() < 0.7 else rng.randbytes(size)
        (root / rng.choice(dirs) / f"f{i:06d}").write_bytes(data)
    _set_times(root, rng)


@dataclass
class Dataset:
    name: str
    root: Path
    params: dict
    files: int = 0
    dirs: int = 0
    bytes: int = 0
    manifest: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {
            "files": self.files,
            "dirs": self.dirs,
            "bytes": self.bytes,
            "mib": round(self.bytes / MIB, 2),
            "params": self.params,
        }


def dataset_params(name: str, args: argparse.Namespace) -> dict:
    if name == "small-files":
        n = args.small_files if args.small_files is not None else round(5000 * args.scale)
        return {"files": max(1, n)}
    if name == "large":
        mib = args.large_mib if args.large_mib is not None else 200 * args.scale
        return {"bytes": max(MIB, int(mib * MIB))}
    n = args.rerun_files if args.rerun_files is not None else round(50_000 * args.scale)
    return {"files": max(1, n)}


def prepare_dataset(name: str, datadir: Path, args: argparse.Namespace) -> Dataset:
    params = dataset_params(name, args)
    root = datadir / name
    stamp_path = datadir / f"{name}.stamp.json"
    stamp = {"generator": GENERATOR_VERSION, "seed": args.seed, "params": params}
    reuse = False
    if root.is_dir() and stamp_path.is_file():
        try:
            reuse = json.loads(stamp_path.read_text()) == stamp
        except ValueError:
            reuse = False
    if not reuse:
        if root.exists():
            shutil.rmtree(root)
        stamp_path.unlink(missing_ok=True)
        root.mkdir(parents=True)
        # One seed per data set, so selecting data sets does not change their content.
        seed = int.from_bytes(hashlib.sha256(f"{args.seed}:{name}".encode()).digest()[:8], "big")
        rng = random.Random(seed)
        t0 = time.perf_counter()
        if name == "small-files":
            gen_small_files(root, params["files"], rng)
        elif name == "large":
            gen_large(root, params["bytes"], rng)
        else:
            gen_rerun_tree(root, params["files"], rng)
        stamp_path.write_text(json.dumps(stamp))
        note(f"[{name}] generated in {time.perf_counter() - t0:.1f} s")
    else:
        note(f"[{name}] reusing {root}")
    ds = Dataset(name, root, params)
    ds.manifest = scan_tree(root)
    for entry in ds.manifest.values():
        if entry[0] == "file":
            ds.files += 1
            ds.bytes += entry[2]
        elif entry[0] == "dir":
            ds.dirs += 1
    return ds


# --------------------------------------------------------------------------------------------
# Tree comparison and disk usage
# --------------------------------------------------------------------------------------------

# relative path -> (kind, sha256 or link target, size, mode, mtime_ns)
Entry = tuple[str, str, int, int, int]


def scan_tree(root: Path) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in itertools.chain(dirnames, filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path), 0, 0, 0)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", "", 0, mode, st.st_mtime_ns)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    digest = hashlib.file_digest(f, "sha256").hexdigest()
                out[rel] = ("file", digest, st.st_size, mode, st.st_mtime_ns)
            else:
                out[rel] = ("other", "", 0, mode, st.st_mtime_ns)
    return out


def compare_trees(src: dict[str, Entry], dst: dict[str, Entry]) -> dict:
    """Paths, kinds, contents and link targets must match; modes and mtimes are reported."""
    missing = sorted(set(src) - set(dst))
    extra = sorted(set(dst) - set(src))
    differ: list[str] = []
    mode_diff: list[str] = []
    mtime_diff: list[str] = []
    for rel in sorted(set(src) & set(dst)):
        a, b = src[rel], dst[rel]
        if a[0] != b[0] or a[1] != b[1] or a[2] != b[2]:
            differ.append(rel)
            continue
        if a[0] in ("file", "dir") and a[3] != b[3]:
            mode_diff.append(rel)
        # File mtimes within a microsecond (a float timestamp is good to about 0.25 us).
        if a[0] == "file" and abs(a[4] - b[4]) > 1000:
            mtime_diff.append(rel)
    return {
        "correct": not (missing or extra or differ),
        "missing": len(missing),
        "extra": len(extra),
        "differ": len(differ),
        "mode_mismatch": len(mode_diff),
        "mtime_mismatch": len(mtime_diff),
        "examples": {
            k: v[:5]
            for k, v in (
                ("missing", missing),
                ("extra", extra),
                ("differ", differ),
                ("mode_mismatch", mode_diff),
                ("mtime_mismatch", mtime_diff),
            )
            if v
        },
    }


def disk_usage(root: Path) -> tuple[int, int, int]:
    """(bytes allocated like du, apparent bytes, regular files) under root."""
    disk = apparent = files = 0
    if not root.exists():
        return 0, 0, 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in itertools.chain(dirnames, filenames):
            st = os.lstat(os.path.join(dirpath, name))
            disk += st.st_blocks * 512
            if stat.S_ISREG(st.st_mode):
                apparent += st.st_size
                files += 1
    disk += os.lstat(root).st_blocks * 512
    return disk, apparent, files


# --------------------------------------------------------------------------------------------
# Minimal S3 client (SigV4, path-style) for repository sizes and clean-up in --s3 mode
# --------------------------------------------------------------------------------------------


def endpoint_url(endpoint: str) -> str:
    """SPARE_ENDPOINT as a URL: plain host or host:port means https."""
    if endpoint.startswith(("http://", "https://")):
        return endpoint.rstrip("/")
    return "https://" + endpoint.rstrip("/")


class S3Client:
    def __init__(self, url: str, access_key: str, secret_key: str, region: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == "https"
        self.netloc = parts.netloc
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region

    def request(
        self, method: str, bucket: str, key: str = "", query: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        quote = urllib.parse.quote
        path = "/" + quote(bucket, safe="")
        if key:
            path += "/" + quote(key, safe="/~")
        cq = "&".join(
            f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted((query or {}).items())
        )
        amz_date = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        payload_hash = hashlib.sha256(b"").hexdigest()
        headers = {
            "host": self.netloc,
            "x-amz-content-sha256": payload_hash,
            "x-amz-date": amz_date,
        }
        signed = ";".join(sorted(headers))
        canonical = "\n".join(
            [
                method,
                path,
                cq,
                "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
                signed,
                payload_hash,
            ]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        k = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.netloc, timeout=120)
        try:
            conn.request(method, path + ("?" + cq if cq else ""), headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def list_objects(self, bucket: str) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        token = ""
        while True:
            query = {"list-type": "2"}
            if token:
                query["continuation-token"] = token
            status, body = self.request("GET", bucket, query=query)
            if status == 404:
                return out
            if status != 200:
                raise OSError(f"S3 list {bucket}: HTTP {status}: {body[:200]!r}")
            xml = ET.fromstring(body)
            for item in xml.iterfind("{*}Contents"):
                out.append((item.findtext("{*}Key") or "", int(item.findtext("{*}Size") or 0)))
            token = xml.findtext("{*}NextContinuationToken") or ""
            if (xml.findtext("{*}IsTruncated") or "false") != "true" or not token:
                return out

    def remove_bucket(self, bucket: str) -> None:
        for key, _ in self.list_objects(bucket):
            self.request("DELETE", bucket, key)
        self.request("DELETE", bucket)


@dataclass
class S3Config:
    endpoint: str
    url: str
    access_key: str
    secret_key: str
    region: str

    def client(self) -> S3Client:
        return S3Client(self.url, self.access_key, self.secret_key, self.region)


# --------------------------------------------------------------------------------------------
# Running a measured child
# --------------------------------------------------------------------------------------------


@dataclass
class Proc:
    rc: int
    wall: float
    cpu: float
    rss_mib: float
    tail: str
    timed_out: bool = False


def _kill_group(pid: int, flag: list[bool]) -> None:
    flag.append(True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def log_tail(log: Path, start: int, lines: int = 6) -> str:
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode("utf-8", "replace")
    return "\n".join(text.strip().splitlines()[-lines:])


# Linux keeps a process's peak RSS across execve, and a child starts from its parent's at fork:
# measured directly, every tool would inherit this script's own size (tens of MiB once a large
# data set was generated). A small interpreter forks the tool instead and reports its rusage.
TRAMPOLINE = """
import json, os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump([usage.ru_maxrss, usage.ru_utime + usage.ru_stime], out)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(
    argv: list[str], *, env: dict[str, str], cwd: Path, log: Path, timeout: float
) -> Proc:
    """Run argv and return wall time, user+sys CPU and peak RSS (of argv's process only).

    The child runs in its own session with output appended to log; see TRAMPOLINE for why it is
    started through a small forking interpreter.
    """
    usage_file = log.with_suffix(".usage")
    with open(log, "ab") as out:
        out.write(f"\n$ (cd {shlex.quote(str(cwd))} && {shlex.join(argv)})\n".encode())
        out.flush()
        start_offset = out.tell()
        timed_out: list[bool] = []
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", TRAMPOLINE, str(usage_file), *argv],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timer = threading.Timer(timeout, _kill_group, (proc.pid, timed_out))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            _kill_group(proc.pid, timed_out)
            proc.wait()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
    try:
        maxrss_kib, cpu = json.loads(usage_file.read_text())
    except (OSError, ValueError):  # killed before it could report: fall back to its own figures
        maxrss_kib, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    return Proc(
        rc=rc,
        wall=wall,
        cpu=cpu,
        rss_mib=maxrss_kib / 1024,
        tail=log_tail(log, start_offset),
        timed_out=bool(timed_out),
    )


def drop_caches() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        note(f"--drop-caches: cannot drop the page cache ({exc}); continuing with a warm cache")


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    dataset: str
    rep: int
    base: Path
    repo: Path
    cache: Path
    restore: Path
    log: Path
    bucket: str
    source: Path


def fresh_env(run: Run) -> dict[str, str]:
    """The caller's environment without any backup tool's settings, caches kept in the run dir."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SPARE_", "RESTIC_", "BORG_", "AWS_", "GOMAXPROCS"))
    }
    env["XDG_CACHE_HOME"] = str(run.base / "xdg-cache")
    env["XDG_CONFIG_HOME"] = str(run.base / "xdg-config")
    return env


class Tool:
    name = ""
    warn_codes: frozenset[int] = frozenset()

    def __init__(self, args: argparse.Namespace, s3: S3Config | None) -> None:
        self.args = args
        self.s3 = s3
        self.version = ""

    def probe(self) -> str | None:
        """Return None if usable (and set self.version), else why not."""
        raise NotImplementedError

    def env(self, run: Run) -> dict[str, str]:
        raise NotImplementedError

    def init_cmd(self, run: Run) -> tuple[list[str], Path] | None:
        return None

    def backup_cmd(self, run: Run, src: Path, label: str) -> tuple[list[str], Path]:
        raise NotImplementedError

    def restore_cmd(self, run: Run, target: Path) -> tuple[list[str], Path]:
        raise NotImplementedError

    def verify_cmd(self, run: Run) -> tuple[list[str], Path]:
        raise NotImplementedError

    def prepare(self, run: Run) -> None:
        pass

    def usage(self, run: Run) -> tuple[int, int, int]:
        if self.s3 is not None:
            objects = self.s3.client().list_objects(run.bucket)
            size = sum(s for _, s in objects)
            return size, size, len(objects)
        return disk_usage(run.repo)

    def cleanup(self, run: Run) -> None:
        if self.s3 is not None:
            try:
                self.s3.client().remove_bucket(run.bucket)
            except (OSError, http.client.HTTPException, ET.ParseError) as exc:
                note(f"{self.name}: could not remove bucket {run.bucket}: {exc}")

    def probe_output(self, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
        try:
            p = subprocess.run(
                argv,
                env=env,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 127, str(exc)
        return p.returncode, (p.stdout + p.stderr).strip()


class Spare(Tool):
    name = "spare"
    warn_codes = frozenset({3})

    def command(self) -> list[str]:
        if self.args.spare_cmd:
            return shlex.split(self.args.spare_cmd)
        return [sys.executable, "-m", "spare"]

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPARE_")}
        if not self.args.spare_cmd:
            # Run the working tree, installed or not.
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
            )
        return env

    def probe(self) -> str | None:
        rc, out = self.probe_output([*self.command(), "--version"], self.base_env())
        if rc != 0:
            last = out.splitlines()[-1] if out else ""
            return f"`{shlex.join(self.command())} --version` exited {rc}: {last}"
        self.version = out.splitlines()[-1] if out else "?"
        return None

    def env(self, run: Run) -> dict[str, str]:
        env = fresh_env(run)
        if not self.args.spare_cmd:
            env["PYTHONPATH"] = self.base_env()["PYTHONPATH"]
        env["SPARE_PASSWORD"] = PASSWORD
        env["SPARE_CACHE_DIR"] = str(run.cache)
        if self.s3 is not None:
            env["SPARE_ENDPOINT"] = self.s3.endpoint
            env["SPARE_ACCESS_KEY"] = self.s3.access_key
            env["SPARE_SECRET_KEY"] = self.s3.secret_key
        else:
            env["SPARE_ENDPOINT"] = "file://" + str(run.repo)
        env["SPARE_BUCKET"] = run.bucket
        return env

    def prepare(self, run: Run) -> None:
        if self.s3 is None:
            run.repo.mkdir(parents=True)

    def backup_cmd(self, run: Run, src: Path, label: str) -> tuple[list[str], Path]:
        return [*self.command(), "create", "--bucket", run.bucket, "--path", str(src)], run.base

    def restore_cmd(self, run: Run, target: Path) -> tuple[list[str], Path]:
        return [*self.command(), "restore", "--bucket", run.bucket, "--path", str(target)], run.base

    def verify_cmd(self, run: Run) -> tuple[list[str], Path]:
        return [
            *self.command(),
            "verify",
            "--bucket",
            run.bucket,
            "--path",
            str(run.source),
        ], run.base

    def usage(self, run: Run) -> tuple[int, int, int]:
        if self.s3 is None:
            return disk_usage(run.repo / run.bucket)
        return super().usage(run)


class Restic(Tool):
    name = "restic"
    warn_codes = frozenset({3})  # 3: snapshot written but some source files could not be read

    def probe(self) -> str | None:
        exe = shutil.which("restic")
        if not exe:
            return "restic is not installed"
        rc, out = self.probe_output([exe, "version"])
        if rc != 0:
            return f"`restic version` exited {rc}"
        self.version = out.splitlines()[0] if out else "?"
        return None

    def env(self, run: Run) -> dict[str, str]:
        env = fresh_env(run)
        env["RESTIC_PASSWORD"] = PASSWORD
        env["RESTIC_CACHE_DIR"] = str(run.cache)
        if self.args.gomaxprocs:
            env["GOMAXPROCS"] = str(self.args.gomaxprocs)
        if self.s3 is not None:
            env["RESTIC_REPOSITORY"] = f"s3:{self.s3.url}/{run.bucket}"
            env["AWS_ACCESS_KEY_ID"] = self.s3.access_key
            env["AWS_SECRET_ACCESS_KEY"] = self.s3.secret_key
            env["AWS_DEFAULT_REGION"] = self.s3.region
        else:
            env["RESTIC_REPOSITORY"] = str(run.repo)
        return env

    def init_cmd(self, run: Run) -> tuple[list[str], Path] | None:
        return ["restic", "init", "--repository-version", "2"], run.base

    def backup_cmd(self, run: Run, src: Path, label: str) -> tuple[list[str], Path]:
        # "." from inside the tree: the snapshot holds the tree's content at its root.
        return ["restic", "backup", "--host", BACKUP_HOST, "--compression", "auto", "."], src

    def restore_cmd(self, run: Run, target: Path) -> tuple[list[str], Path]:
        return ["restic", "restore", "latest", "--target", str(target)], run.base

    def verify_cmd(self, run: Run) -> tuple[list[str], Path]:
        return ["restic", "check", "--read-data"], run.base


class Borg(Tool):
    name = "borg"
    warn_codes = frozenset({1})  # 1: warning (e.g. a file changed or vanished)

    def probe(self) -> str | None:
        if self.s3 is not None:
            return "borg has no S3 backend (skipped in --s3 mode)"
        exe = shutil.which("borg")
        if not exe:
            return "borg is not installed"
        rc, out = self.probe_output([exe, "--version"])
        if rc != 0:
            return f"`borg --version` exited {rc}"
        self.version = out.splitlines()[0] if out else "?"
        return None

    def env(self, run: Run) -> dict[str, str]:
        env = fresh_env(run)
        borg_home = run.base / "borg-home"
        env.update(
            BORG_PASSPHRASE=PASSWORD,
            BORG_REPO=str(run.repo),
            BORG_BASE_DIR=str(borg_home),
            BORG_CACHE_DIR=str(run.cache),
            BORG_CONFIG_DIR=str(borg_home / "config"),
            BORG_SECURITY_DIR=str(borg_home / "security"),
            BORG_KEYS_DIR=str(borg_home / "keys"),
            BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
            BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
        )
        return env

    def init_cmd(self, run: Run) -> tuple[list[str], Path] | None:
        return ["borg", "init", "--encryption=repokey-blake2"], run.base

    def backup_cmd(self, run: Run, src: Path, label: str) -> tuple[list[str], Path]:
        compression = self.args.borg_compression
        return ["borg", "create", "--compression", compression, f"::{label}", "."], src

    def restore_cmd(self, run: Run, target: Path) -> tuple[list[str], Path]:
        # The newest archive, like restic's "latest" and spare's only snapshot.
        return ["borg", "extract", "::rerun"], target

    def verify_cmd(self, run: Run) -> tuple[list[str], Path]:
        return ["borg", "check", "--verify-data"], run.base


TOOL_CLASSES: dict[str, type[Tool]] = {"spare": Spare, "restic": Restic, "borg": Borg}


# --------------------------------------------------------------------------------------------
# One measured run: init, backup, unchanged rerun, restore, compare
# --------------------------------------------------------------------------------------------


def new_run(tool: Tool, workdir: Path, ds: Dataset, rep: int, token: str) -> Run:
    base = workdir / "runs" / ds.name / tool.name / f"rep{rep + 1}"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    # S3 bucket names: 3-63 lowercase letters, digits and hyphens.
    bucket = f"bench-{tool.name}-{ds.name}-{rep + 1}-{token}"[:63] if tool.s3 else "bench"
    return Run(
        dataset=ds.name,
        rep=rep + 1,
        base=base,
        repo=base / "repo",
        cache=base / "cache",
        restore=base / "restore",
        log=base / "log.txt",
        bucket=bucket,
        source=ds.root,
    )


def measure(
    tool: Tool, ds: Dataset, rep: int, workdir: Path, args: argparse.Namespace, token: str
) -> dict:
    run = new_run(tool, workdir, ds, rep, token)
    result: dict = {"rep": rep + 1, "warnings": [], "errors": [], "log": str(run.log)}
    env = tool.env(run)

    def step(phase: str, cmd: tuple[list[str], Path], timed: bool = True) -> bool:
        argv, cwd = cmd
        if timed and args.drop_caches:
            drop_caches()
        p = run_measured(argv, env=env, cwd=cwd, log=run.log, timeout=args.timeout)
        result[f"{phase}_exit"] = p.rc
        if p.timed_out:
            result["errors"].append(f"{phase}: killed after {args.timeout:g} s\n{p.tail}")
            return False
        if p.rc != 0 and p.rc not in tool.warn_codes:
            result["errors"].append(f"{phase}: exit {p.rc}: {p.tail}")
            return False
        if p.rc != 0:
            result["warnings"].append(f"{phase}: exit {p.rc} (warnings): {p.tail}")
        # Only commands that did their job count in the medians.
        result[f"{phase}_wall_s"] = round(p.wall, 4)
        result[f"{phase}_cpu_s"] = round(p.cpu, 4)
        result[f"{phase}_rss_mib"] = round(p.rss_mib, 1)
        return True

    try:
        tool.prepare(run)
        init = tool.init_cmd(run)
        if init is not None and not step("init", init, timed=False):
            return result
        if not step("backup", tool.backup_cmd(run, ds.root, "initial")):
            return result
        disk, apparent, objects = tool.usage(run)
        result.update(
            repo_mib=round(disk / MIB, 3),
            repo_apparent_mib=round(apparent / MIB, 3),
            repo_objects=objects,
        )
        if not step("rerun", tool.backup_cmd(run, ds.root, "rerun")):
            return result
        disk, apparent, objects = tool.usage(run)
        result.update(
            repo_after_rerun_mib=round(disk / MIB, 3),
            repo_after_rerun_objects=objects,
        )
        run.restore.mkdir()
        if not step("restore", tool.restore_cmd(run, run.restore)):
            return result
        check = compare_trees(ds.manifest, scan_tree(run.restore))
        result["check"] = check
        if not check["correct"]:
            result["errors"].append(
                "restored tree differs from the source: "
                + json.dumps({k: check[k] for k in ("missing", "extra", "differ", "examples")})
            )
        if args.verify:
            step("verify", tool.verify_cmd(run))
    except Exception as exc:  # one broken run must not end the whole benchmark
        result["errors"].append(f"{type(exc).__name__}: {exc}")
    finally:
        failed = bool(result["errors"])
        if not args.keep and not failed:
            tool.cleanup(run)
            shutil.rmtree(run.base, ignore_errors=True)
        elif tool.s3 is not None and not args.keep:
            tool.cleanup(run)
    return result


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def median_of(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
    return statistics.median(values) if values else None


def summarize(runs: list[dict]) -> dict:
    med = {key: median_of(runs, key) for key, _ in METRICS}
    checked = [r for r in runs if "check" in r]
    correct = sum(1 for r in checked if r["check"]["correct"])
    return {
        "median": med,
        "runs_ok": sum(1 for r in runs if not r["errors"]),
        "runs": len(runs),
        "correct": len(checked) == len(runs) and correct == len(runs) and bool(runs),
        "restores_correct": correct,
        "restores_checked": len(checked),
        "mode_mismatch": max((r["check"]["mode_mismatch"] for r in checked), default=0),
        "mtime_mismatch": max((r["check"]["mtime_mismatch"] for r in checked), default=0),
        "runs_detail": runs,
    }


def fmt(v: float | None, integer: bool = False) -> str:
    if v is None:
        return "-"
    if integer:
        return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"
    if isinstance(v, int) or (float(v).is_integer() and abs(v) >= 100):
        return f"{int(v)}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def render_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(
    datasets: list[Dataset], tools: list[Tool], summary: dict, ratios: dict, meta: dict
) -> str:
    names = [t.name for t in tools]
    others = [n for n in names if n != "spare"] if "spare" in names else []
    out = [
        f"spare benchmark  {meta['started']}  host {meta['host']}  {meta['cpus']} CPUs  "
        f"python {meta['python']}  mode {meta['mode']}",
        "tools: " + ", ".join(f"{t.name} ({t.version})" for t in tools),
        f"repeat {meta['repeat']} (median shown), scale {meta['scale']}, seed {meta['seed']}, "
        f"borg compression {meta['borg_compression']}, restic compression auto",
        "lower is better everywhere; a ratio below 1 means spare is faster or smaller",
    ]
    for ds in datasets:
        out.append("")
        out.append(f"== {ds.name}: {ds.files} files, {ds.dirs} dirs, {ds.bytes / MIB:.1f} MiB")
        header = ["metric", *names] + [f"spare/{o}" for o in others]
        rows = [header]
        res = summary[ds.name]
        for key, label in METRICS:
            if all(res[n]["median"][key] is None for n in names):
                continue
            integer = key == "repo_objects"
            row = [label] + [fmt(res[n]["median"][key], integer) for n in names]
            row += [fmt(ratios[ds.name][f"spare/{o}"].get(key)) for o in others]
            rows.append(row)
        row = ["restore correct"]
        for n in names:
            s = res[n]
            row.append(("yes" if s["correct"] else "NO") + f" {s['restores_correct']}/{s['runs']}")
        rows.append(row + [""] * len(others))
        row = ["restored mode/mtime diffs"]
        for n in names:
            if res[n]["restores_checked"]:
                row.append(f"{res[n]['mode_mismatch']}/{res[n]['mtime_mismatch']}")
            else:
                row.append("-")
        rows.append(row + [""] * len(others))
        out.append(render_table(rows))
        for n in names:
            for r in res[n]["runs_detail"]:
                for w in r["warnings"]:
                    out.append(f"  note: {n} rep {r['rep']}: {w.splitlines()[0]}")
                for e in r["errors"]:
                    first = e.splitlines()
                    out.append(f"  ERROR: {n} rep {r['rep']}: {' | '.join(first[:4])}")
                    out.append(f"         log: {r['log']}")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_list(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"unknown {what}: {', '.join(bad) or value!r} (choose from {', '.join(allowed)})"
        )
    return items


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark spare side by side with restic and borg (see README.rst).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--workdir",
        type=Path,
        help="where data sets, repositories and caches go "
        "(default: a new temporary directory, removed at the end)",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiplies every data set's size (0.05 for a quick run)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per tool and data set, each with a fresh repository",
    )
    p.add_argument(
        "--tools",
        default=",".join(ALL_TOOLS),
        type=lambda v: parse_list(v, ALL_TOOLS, "tool"),
        help="comma-separated",
    )
    p.add_argument(
        "--datasets",
        default=",".join(ALL_DATASETS),
        type=lambda v: parse_list(v, ALL_DATASETS, "data set"),
        help="comma-separated",
    )
    p.add_argument(
        "--json",
        default=str(REPO_ROOT / "benchmarks" / "results" / "latest.json"),
        help="write the results here as JSON ('' for none)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the data set generator")
    p.add_argument("--small-files", type=int, help="files in small-files (default 5000 x scale)")
    p.add_argument("--large-mib", type=float, help="MiB in large (default 200 x scale)")
    p.add_argument(
        "--rerun-files", type=int, help="files in unchanged-rerun (default 50000 x scale)"
    )
    p.add_argument(
        "--s3",
        action="store_true",
        help="back up to the S3 endpoint in SPARE_ENDPOINT, SPARE_ACCESS_KEY and "
        "SPARE_SECRET_KEY instead of local directories (spare and restic; not borg)",
    )
    p.add_argument(
        "--s3-region",
        default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        help="region used to sign requests in --s3 mode",
    )
    p.add_argument(
        "--spare-cmd",
        default="",
        help="command that runs spare (default: this interpreter -m spare, with the "
        "working tree on PYTHONPATH)",
    )
    p.add_argument(
        "--borg-compression", default=DEFAULT_BORG_COMPRESSION, help="borg --compression value"
    )
    p.add_argument(
        "--gomaxprocs",
        type=int,
        default=0,
        help="GOMAXPROCS for restic (0: leave restic to use every core)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="also time a full check after the restore: spare verify, restic check "
        "--read-data, borg check --verify-data",
    )
    p.add_argument("--timeout", type=float, default=3600, help="seconds allowed per command")
    p.add_argument(
        "--drop-caches",
        action="store_true",
        help="drop the page cache before each timed command (root only)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep repositories, caches, restores and logs of every run",
    )
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.scale <= 0:
        p.error("--scale must be positive")
    return args


def s3_config(args: argparse.Namespace) -> S3Config:
    missing = [
        v
        for v in ("SPARE_ENDPOINT", "SPARE_ACCESS_KEY", "SPARE_SECRET_KEY")
        if not os.environ.get(v)
    ]
    if missing:
        raise SystemExit(f"--s3 needs {', '.join(missing)} in the environment")
    endpoint = os.environ["SPARE_ENDPOINT"]
    if endpoint.startswith("file://"):
        raise SystemExit("--s3 needs an S3 endpoint in SPARE_ENDPOINT, not file://")
    return S3Config(
        endpoint=endpoint,
        url=endpoint_url(endpoint),
        access_key=os.environ["SPARE_ACCESS_KEY"],
        secret_key=os.environ["SPARE_SECRET_KEY"],
        region=args.s3_region,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    s3 = s3_config(args) if args.s3 else None
    temp = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="spare-bench-")) if temp else args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    token = f"{int(time.time()):x}{os.getpid():x}"[-12:]

    tools: list[Tool] = []
    skipped: dict[str, str] = {}
    for name in args.tools:
        tool = TOOL_CLASSES[name](args, s3)
        why = tool.probe()
        if why:
            skipped[name] = why
            note(f"note: skipping {name}: {why}")
        else:
            tools.append(tool)
    if not tools:
        note("no tool to benchmark")
        return 2

    try:
        datasets = [prepare_dataset(n, workdir / "data", args) for n in args.datasets]
        results: dict[str, dict[str, list[dict]]] = {ds.name: {} for ds in datasets}
        for ds in datasets:
            note(f"[{ds.name}] {ds.files} files, {ds.bytes / MIB:.1f} MiB")
            for rep in range(args.repeat):
                for tool in tools:
                    r = measure(tool, ds, rep, workdir, args, token)
                    results[ds.name].setdefault(tool.name, []).append(r)
                    state = "ok" if not r["errors"] else "FAILED"
                    if r["warnings"] and not r["errors"]:
                        state = "ok with warnings"
                    note(
                        f"[{ds.name}] {tool.name} {rep + 1}/{args.repeat}: "
                        + " ".join(
                            f"{ph} {r[ph + '_wall_s']:.2f}s"
                            for ph in ("backup", "rerun", "restore", "verify")
                            if ph + "_wall_s" in r
                        )
                        + f" {state}"
                    )
    finally:
        if temp and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    summary = {
        ds.name: {t.name: summarize(results[ds.name][t.name]) for t in tools} for ds in datasets
    }
    ratios: dict[str, dict[str, dict[str, float | None]]] = {}
    for ds in datasets:
        ratios[ds.name] = {}
        if "spare" not in summary[ds.name]:
            continue
        mine = summary[ds.name]["spare"]["median"]
        for t in tools:
            if t.name != "spare":
                theirs = summary[ds.name][t.name]["median"]
                ratios[ds.name][f"spare/{t.name}"] = {
                    k: ratio(mine[k], theirs[k]) for k, _ in METRICS
                }
    meta = {
        "started": started,
        "finished": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "mode": "s3 " + s3.url if s3 else "local directories",
        "workdir": str(workdir) + (" (removed)" if temp and not args.keep else ""),
        "repeat": args.repeat,
        "scale": args.scale,
        "seed": args.seed,
        "borg_compression": args.borg_compression,
        "restic_compression": "auto",
        "restic_gomaxprocs": args.gomaxprocs or None,
        "drop_caches": args.drop_caches,
        "tools": {t.name: t.version for t in tools},
        "skipped": skipped,
        "argv": sys.argv[1:] if argv is None else argv,
    }
    print(report(datasets, tools, summary, ratios, meta))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    if args.json:
        doc = {
            "meta": meta,
            "datasets": {ds.name: ds.summary() for ds in datasets},
            "results": summary,
            "ratios": ratios,
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        note(f"results written to {path}")
    failed = any(
        not s["correct"] or s["runs_ok"] != s["runs"] for d in summary.values() for s in d.values()
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
