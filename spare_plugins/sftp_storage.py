"""``sftp://user@host[:port]/directory``: buckets as directories on an SSH server, through
fsspec's SFTP filesystem (paramiko; ``pip install 'spare[sftp]'``).

The client authenticates with the keys of ``~/.ssh`` or the ssh-agent, never a password prompt,
and trusts only a server whose host key ``~/.ssh/known_hosts`` (or ``/etc/ssh/ssh_known_hosts``)
holds: fsspec's default would accept any key on first use, and a backup sent to an impostor is
lost. The endpoint directory must exist; buckets are made in it.

Objects are written under a temporary name beside their key, then renamed into place: with
``posix-rename@openssh.com`` (replacing, atomically) for a put; with the plain SFTP rename for a
create, which OpenSSH's server performs as link(2) then unlink(2), so it fails when the key exists
and the lock is taken atomically. (On a server file system without hardlinks, OpenSSH falls back
to a check-then-rename; such a server is not for several concurrent spares.)
"""

from __future__ import annotations

import contextlib
import getpass
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from fsspec.utils import infer_storage_options

from spare.errors import (
    AccessDenied,
    BadEndpoint,
    MissingPlugin,
    ObjectExists,
    StorageError,
    StorageTransient,
    StorageUnreachable,
    UsageError,
)
from spare.hookspecs import hookimpl
from spare.registry import StorageRegistry
from spare.storage import ObjectInfo, Storage, StorageLocation
from spare_plugins.fsspec_storage import FsspecStorage

T = TypeVar("T")

#: Seconds to wait for the TCP connection, the SSH banner and the authentication.
CONNECT_TIMEOUT = 30

#: The files of trusted host keys, as OpenSSH's client reads them.
KNOWN_HOSTS = ("~/.ssh/known_hosts", "/etc/ssh/ssh_known_hosts")


class SftpStorage(FsspecStorage):
    """One bucket as a directory on an SFTP server; every call goes through one SSH channel,
    one at a time.

    The connection is made by the first call, and made anew by the first call after it broke
    (the server restarted, a NAT forgot it): the core's retry wrapper tries a call that failed
    either way again, as it does a failed request to S3.
    """

    _fs: Any = None

    def __init__(self, connect: Callable[[], Any], endpoint: str, root: str) -> None:
        super().__init__(None, root, atomic_create=True, make_root=self._make_bucket)
        self._connect = connect
        self.endpoint = endpoint
        self._channel = threading.RLock()
        self._directories: set[str] = set()

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs = self._connect()
        return self._fs

    @fs.setter
    def fs(self, value: Any) -> None:
        self._fs = value

    def _call(self, what: str, call: Callable[[], T]) -> T:
        with self._channel:
            return super()._call(what, call)

    def _translate(self, exc: BaseException, what: str) -> StorageError:
        fs = self._fs
        if fs is None or (_connected(fs) and not _connection_error(exc)):
            return super()._translate(exc, what)
        self._fs = None  # the next call connects again
        with contextlib.suppress(Exception):
            fs.client.close()
        return StorageTransient(f"{what}: the SSH connection broke ({exc or type(exc).__name__})")

    def _make_bucket(self) -> None:
        if not self.fs.isdir(self.endpoint):
            raise BadEndpoint(
                f"the directory {self.endpoint} does not exist on the SSH server: create it, "
                "or check --endpoint"
            )
        self._ensure_directory(self.root)

    def _ensure_directory(self, path: str) -> None:
        """Make the directory ``path`` at or below the bucket's, and those above it."""
        if path in self._directories:
            return
        if path != self.root:
            self._ensure_directory(path.rsplit("/", 1)[0])
        if not self.fs.isdir(path):
            with contextlib.suppress(OSError):  # made meanwhile by another spare: fine
                self.fs.ftp.mkdir(path)
            if not self.fs.isdir(path):
                raise FileNotFoundError(f"cannot create the directory {path}")
        self._directories.add(path)

    def put(self, key: str, data: bytes) -> None:
        self._call(f"storing {key}", lambda: self._store(key, data, exclusive=False))

    def put_file(self, key: str, path: str) -> None:
        self._call(f"storing {key}", lambda: self._store(key, path, exclusive=False))

    def create(self, key: str, data: bytes) -> None:
        self._call(f"creating {key}", lambda: self._store(key, data, exclusive=True))

    def _store(self, key: str, content: bytes | str, *, exclusive: bool) -> None:
        path = self._path(key)
        self._ensure_directory(path.rsplit("/", 1)[0])
        temporary = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            if isinstance(content, str):
                self.fs.ftp.put(content, temporary)
            else:
                with self.fs.ftp.open(temporary, "wb") as remote:
                    remote.write(content)
            if exclusive:
                self.fs.ftp.rename(temporary, path)  # link(2) on OpenSSH: fails if taken
            else:
                self.fs.ftp.posix_rename(temporary, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                self.fs.ftp.remove(temporary)
            if exclusive and isinstance(exc, OSError) and self.fs.exists(path):
                raise ObjectExists(f"creating {key}: already exists") from exc
            raise

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._channel:
            return super().list(prefix)

    def close(self) -> None:
        with self._channel, contextlib.suppress(Exception):
            if self._fs is not None:
                self._fs.client.close()


def make_sftp(location: StorageLocation) -> Storage:
    try:
        from fsspec.implementations.sftp import SFTPFileSystem
        from paramiko import AuthenticationException, BadHostKeyException, SSHException
    except ImportError as exc:
        raise MissingPlugin(
            f"sftp:// needs paramiko, which is not installed ({exc}): pip install 'spare[sftp]'"
        ) from exc
    url = f"sftp://{location.url}"
    options = infer_storage_options(url)
    host, endpoint = options.get("host"), (options.get("path") or "").rstrip("/")
    if not host or not endpoint.startswith("/"):
        raise UsageError(f"bad endpoint {url!r}: give sftp://user@host[:port]/directory")
    user = options.get("username") or getpass.getuser()
    where = f"{user}@{host}:{options.get('port') or 22}"

    def connect() -> Any:
        try:
            return SFTPFileSystem(
                host,
                port=int(options.get("port") or 22),
                username=user,
                password=options.get("password"),
                host_key_policy=_known_hosts_only(),
                timeout=CONNECT_TIMEOUT,
                banner_timeout=CONNECT_TIMEOUT,
                auth_timeout=CONNECT_TIMEOUT,
                skip_instance_cache=True,
            )
        except BadHostKeyException as exc:
            raise BadEndpoint(
                f"the SSH host key of {where} is not the one known_hosts holds: the server was "
                "replaced, or someone is in between; check it before you trust it"
            ) from exc
        except AuthenticationException as exc:
            raise AccessDenied(
                f"the SSH server {where} refused the keys of ~/.ssh and the ssh-agent ({exc}): "
                "add this host's public key to the server's authorized_keys"
            ) from exc
        except _UnknownHost as exc:
            raise BadEndpoint(str(exc)) from exc
        except (OSError, SSHException, EOFError) as exc:
            raise StorageUnreachable(f"cannot reach the SSH server {where} ({exc})") from exc

    return SftpStorage(connect, endpoint, f"{endpoint}/{location.bucket}")


def _connected(fs: Any) -> bool:
    transport = fs.client.get_transport()
    return transport is not None and bool(transport.is_active())


def _connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an error of the SSH connection or its channel, not of one request (a
    request's error carries the server's errno, or paramiko's "Failure"). The channel may end
    before the transport's thread has noticed that the connection is gone."""
    from paramiko import SSHException

    return isinstance(exc, EOFError | ConnectionError | SSHException) or (
        isinstance(exc, OSError) and str(exc) == "Socket is closed"
    )


class _UnknownHost(Exception):
    pass


def _known_hosts_only() -> Any:
    """A paramiko host key policy that trusts the keys known_hosts holds and nothing else."""
    import paramiko

    class KnownHostsOnly(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            known = paramiko.HostKeys()
            for path in KNOWN_HOSTS:
                with contextlib.suppress(OSError):
                    known.load(os.path.expanduser(path))
            found = known.lookup(hostname)
            if found is None or key.get_name() not in found:
                raise _UnknownHost(
                    f"the SSH host key of {hostname} is not in ~/.ssh/known_hosts: connect once "
                    "with ssh to check and accept it, then run spare again"
                )
            if found[key.get_name()] != key:
                raise paramiko.BadHostKeyException(hostname, key, found[key.get_name()])

    return KnownHostsOnly()


@hookimpl
def spare_register_storages(registry: StorageRegistry) -> None:
    for protocol in ("sftp", "ssh"):
        registry.add_storage(protocol, make_sftp)
