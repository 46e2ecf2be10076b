"""Tools: the spare, restic and borg adapters (environment, commands, repository size)."""

from __future__ import annotations

import argparse
import copy
import http.client
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .common import REPO_ROOT, note
from .s3 import S3Config
from .trees import ObjectStates, disk_usage, file_states

PASSWORD = "spare-bench-password"
BACKUP_HOST = "spare-bench"
ALL_TOOLS = ("spare", "restic", "borg")
#: The restic repository, initialised once in the work directory, that local runs copy.
RESTIC_TEMPLATE = "restic-template"
# restic's default is zstd in "auto" mode (skips what does not compress). borg gets LZMA preset 1
# behind its "auto" heuristic (which stores incompressible chunks uncompressed instead of pushing
# them through LZMA), the setting the performance targets compare spare's LZMA with.
DEFAULT_BORG_COMPRESSION = "auto,lzma,1"
#: spare configurations that can run as extra columns: variant -> extra `spare create` options.
SPARE_VARIANTS = {
    "default": (),
    "zstd": ("--compression", "zstd"),
    "jobs1": ("--jobs", "1"),
    "jobs2": ("--jobs", "2"),
}


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
    #: The benchmark's work directory (shared by every run).
    workdir: Path
    #: The label of the newest backup (borg restores that archive).
    last_label: str = "initial"


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
    #: The first part of the keys of the objects that hold file data (S3 request counts).
    pack_prefix = ""

    def __init__(self, args: argparse.Namespace, s3: S3Config | None) -> None:
        self.args = args
        self.s3 = s3
        self.version = ""

    @property
    def slug(self) -> str:
        """The name as it may appear in a path or a bucket name."""
        return self.name.replace("+", "-")

    def on_s3(self, s3: S3Config) -> Tool:
        """The same tool, probed already, backing up to ``s3``."""
        other = copy.copy(self)
        other.s3 = s3
        return other

    def cache_dirs(self, run: Run) -> list[Path]:
        """The directories of the tool's local state (sized after the first backup)."""
        return [run.cache]

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
            size = sum(s for _, s, _ in objects)
            return size, size, len(objects)
        return disk_usage(run.repo)

    def repo_states(self, run: Run) -> ObjectStates:
        """Every object of the repository with what tells that it was written anew."""
        if self.s3 is not None:
            return {k: (s, etag) for k, s, etag in self.s3.client().list_objects(run.bucket)}
        return file_states(run.repo)

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

    def probe_installed(self, program: str, version_arg: str) -> str | None:
        """probe() for a program on PATH whose `program version_arg` prints its version first."""
        exe = shutil.which(program)
        if not exe:
            return f"{program} is not installed"
        rc, out = self.probe_output([exe, version_arg])
        if rc != 0:
            return f"`{program} {version_arg}` exited {rc}"
        self.version = out.splitlines()[0] if out else "?"
        return None


class Spare(Tool):
    warn_codes = frozenset({3})
    pack_prefix = "packs"

    def __init__(
        self, args: argparse.Namespace, s3: S3Config | None, variant: str = "default"
    ) -> None:
        super().__init__(args, s3)
        self.variant = variant
        self.name = "spare" if variant == "default" else f"spare-{variant}"
        if variant == "zstd":
            self.name = "spare+zstd"

    def command(self) -> list[str]:
        if self.args.spare_cmd:
            return shlex.split(self.args.spare_cmd)
        return [self.args.spare_python or sys.executable, "-m", "spare"]

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPARE_")}
        if not self.args.spare_cmd:
            # Run the working tree, installed or not.
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
            )
        return env

    #: Outputs of the commands every variant's probe runs, by argv.
    _probed: dict[tuple[str, ...], tuple[int, str]] = {}

    def probe_once(self, *args: str) -> tuple[int, str]:
        argv = (*self.command(), *args)
        if argv not in Spare._probed:
            Spare._probed[argv] = self.probe_output(list(argv), self.base_env())
        return Spare._probed[argv]

    def probe(self) -> str | None:
        rc, out = self.probe_once("--version")
        if rc != 0:
            last = out.splitlines()[-1] if out else ""
            return f"`{shlex.join(self.command())} --version` exited {rc}: {last}"
        self.version = out.splitlines()[-1] if out else "?"
        if self.variant.startswith("jobs"):
            rc, out = self.probe_once("create", "--help")
            if "--jobs" not in out:
                return "not available: `spare create` has no --jobs option yet"
        if self.variant not in ("default", "zstd"):
            return None
        rc, out = self.probe_create()
        last = out.splitlines()[-1] if out else ""
        if rc != 0 and self.variant == "default":
            hint = ""
            if "ModuleNotFoundError" in out and not self.args.spare_cmd:
                hint = " (run spare with an interpreter that has its dependencies: --spare-python)"
            return f"a first `spare create` exited {rc}: {last}{hint}"
        if rc != 0 and "transform" in out and "zstd" in out:
            # Only an unknown transform means "not available"; any other failure shows in the
            # variant's runs.
            return "not available: " + last
        return None

    def probe_create(self) -> tuple[int, str]:
        """Back up a one-file tree into a scratch directory with this variant's options."""
        with tempfile.TemporaryDirectory(prefix="spare-bench-probe-") as tmp:
            tree = Path(tmp, "tree")
            tree.mkdir()
            (tree / "file").write_text("probe\n")
            env = self.base_env()
            env.update(
                SPARE_PASSWORD=PASSWORD,
                SPARE_ENDPOINT="file://" + tmp + "/repo",
                SPARE_CACHE_DIR=tmp + "/cache",
                XDG_CACHE_HOME=tmp + "/xdg-cache",
                XDG_CONFIG_HOME=tmp + "/xdg-config",
            )
            Path(tmp, "repo").mkdir()
            argv = [*self.command(), "create", "--bucket", "probe", "--path", str(tree)]
            return self.probe_output([*argv, *SPARE_VARIANTS[self.variant]], env)

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
        argv = [*self.command(), "create", "--bucket", run.bucket, "--path", str(src)]
        return [*argv, *SPARE_VARIANTS[self.variant]], run.base

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
    pack_prefix = "data"

    def probe(self) -> str | None:
        return self.probe_installed("restic", "version")

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

    def init_template(self, workdir: Path) -> subprocess.Popen[bytes] | None:
        """Start ``restic init`` of the repository that local runs copy, unless it is there.

        restic init calibrates its key derivation for about 3 s, which no measurement includes:
        it is done once per work directory (in the background while the data sets are made),
        and each run starts from a copy (with its own, empty cache).
        """
        template = workdir / RESTIC_TEMPLATE
        if self.s3 is not None or (template / "config").is_file():
            return None
        shutil.rmtree(template, ignore_errors=True)
        home = workdir / f"{RESTIC_TEMPLATE}-home"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RESTIC_", "AWS_", "GOMAXPROCS"))
        }
        env.update(
            RESTIC_PASSWORD=PASSWORD,
            RESTIC_REPOSITORY=str(template),
            RESTIC_CACHE_DIR=str(home / "cache"),
            XDG_CACHE_HOME=str(home / "xdg-cache"),
            XDG_CONFIG_HOME=str(home / "xdg-config"),
        )
        with open(workdir / f"{RESTIC_TEMPLATE}.log", "wb") as log:
            return subprocess.Popen(
                ["restic", "init", "--repository-version", "2"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def prepare(self, run: Run) -> None:
        if self.s3 is not None:
            return
        proc = self.init_template(run.workdir)
        if proc is not None:
            proc.wait()
        template = run.workdir / RESTIC_TEMPLATE
        if (template / "config").is_file():  # else init_cmd initialises this run's repository
            shutil.copytree(template, run.repo)

    def init_cmd(self, run: Run) -> tuple[list[str], Path] | None:
        if self.s3 is None and (run.repo / "config").is_file():
            return None  # copied from the template
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
        return self.probe_installed("borg", "--version")

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
        return ["borg", "extract", f"::{run.last_label}"], target

    def cache_dirs(self, run: Run) -> list[Path]:
        # borg keeps the chunks cache in BORG_CACHE_DIR and what it knows of each repository
        # (manifest timestamp, nonce) in BORG_SECURITY_DIR.
        return [run.cache, run.base / "borg-home" / "security"]

    def verify_cmd(self, run: Run) -> tuple[list[str], Path]:
        return ["borg", "check", "--verify-data"], run.base


TOOL_CLASSES: dict[str, type[Tool]] = {"spare": Spare, "restic": Restic, "borg": Borg}
