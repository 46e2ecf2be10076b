"""The --s3 moto mode: moto's S3 server on a free loopback port, and a proxy in front of it that
counts every request the tools make, so that spare and restic are counted the same way.

The tools are given the proxy's URL; the proxy forwards each request to moto unchanged (Host
header included, so signatures still match) and hands the reply back. It counts requests by kind
(PUT, GET of an object, HEAD, LIST, POST, DELETE), the bytes of PUT bodies, and the bytes of GET
replies by the first part of the object key (``packs`` for spare, ``data`` for restic). The
benchmark's own listing and clean-up go to moto directly and are not counted.
"""

from __future__ import annotations

import copy
import http.client
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .s3 import S3Config

#: Headers that describe one connection, not the message: never passed on.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "content-length",
    }
)
REQUEST_KINDS = ("PUT", "GET", "HEAD", "LIST", "POST", "DELETE")


#: Query parameters of a bucket GET that lists objects; other bucket GETs (?location,
#: ?versioning, ...) read a setting and count as GET.
_LIST_PARAMS = frozenset(
    {"list-type", "prefix", "delimiter", "marker", "continuation-token", "max-keys", "start-after"}
)


def classify(method: str, path: str) -> tuple[str, str]:
    """The kind of a path-style request (LIST: a GET of a bucket that lists it) and the first
    part of its object key ("" for a bucket or a key without "/")."""
    path, _, query = path.partition("?")
    key = path.lstrip("/").partition("/")[2]
    kind = method
    if method == "GET" and not key:
        params = {p.partition("=")[0] for p in query.split("&") if p}
        kind = "LIST" if not params or params & _LIST_PARAMS else "GET"
    return kind, key.partition("/")[0] if "/" in key else ""


class RequestCounter:
    """Requests by kind, PUT body bytes, GET reply bytes by key prefix; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Any] = {
            "requests": dict.fromkeys(REQUEST_KINDS, 0),
            "put_bytes": 0,
            "get_bytes": 0,
            "get_bytes_by_prefix": {},
        }

    def add(self, kind: str, prefix: str, sent: int, received: int) -> None:
        with self._lock:
            c = self._counts
            c["requests"][kind] = c["requests"].get(kind, 0) + 1
            if kind == "PUT":
                c["put_bytes"] += sent
            if kind == "GET":
                c["get_bytes"] += received
                by = c["get_bytes_by_prefix"]
                by[prefix] = by.get(prefix, 0) + received

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._counts)


def counts_since(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What was counted between two snapshots."""
    prefixes = set(before["get_bytes_by_prefix"]) | set(after["get_bytes_by_prefix"])
    return {
        "requests": {
            k: after["requests"].get(k, 0) - before["requests"].get(k, 0) for k in after["requests"]
        },
        "put_bytes": after["put_bytes"] - before["put_bytes"],
        "get_bytes": after["get_bytes"] - before["get_bytes"],
        "get_bytes_by_prefix": {
            p: after["get_bytes_by_prefix"].get(p, 0) - before["get_bytes_by_prefix"].get(p, 0)
            for p in sorted(prefixes)
        },
    }


class CountingProxy:
    """A threaded loopback HTTP proxy to ``upstream`` (``host``, ``port``) that counts."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.counter = RequestCounter()
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="counting-proxy", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, proxy: CountingProxy) -> None:
        self.proxy = proxy
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and "100 Continue" for botocore's large PUTs
    timeout = 300  # a client that went away without closing does not hold a thread for ever
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._forward()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def _forward(self) -> None:
        body = self._read_body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(*self.server.proxy.upstream, timeout=600)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            reply = conn.getresponse()
            data = reply.read()
            status, reply_headers = reply.status, reply.getheaders()
        except OSError:
            self.close_connection = True  # moto is gone: so is this connection
            return
        finally:
            conn.close()
        kind, prefix = classify(self.command, self.path)
        self.server.proxy.counter.add(kind, prefix, len(body), len(data))
        self.send_response_only(status)
        for name, value in reply_headers:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        if self.command == "HEAD":
            # A HEAD's Content-Length is the object's size; it has no body to send.
            upstream = {k.lower(): v for k, v in reply_headers}
            self.send_header("Content-Length", upstream.get("content-length", "0"))
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def moto_available(python: str) -> str | None:
    """None if ``python`` can import moto's server, else why not."""
    code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('moto') is None)"
    try:
        p = subprocess.run([python, "-c", code], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {python}: {exc}"
    return None if p.returncode == 0 else f"moto is not installed for {python}"


class MotoServer:
    """``python -m moto.server`` on a free loopback port, started early and waited for later."""

    def __init__(self, python: str, log: Path) -> None:
        self.port = free_port()
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self.proxy: CountingProxy | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"moto_server exited with code {self.proc.returncode}; see {self.log}"
                )
            try:
                with urllib.request.urlopen(self.url, timeout=1):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto_server did not answer within {timeout:g} s; see {self.log}")

    def config(self, region: str) -> S3Config:
        """Settings for the tools: the counting proxy's URL, moto's for the benchmark's own
        requests, and any key (moto does not check them)."""
        self.wait_ready()
        if self.proxy is None:
            self.proxy = CountingProxy(("127.0.0.1", self.port))
        return S3Config(
            endpoint=self.proxy.url,
            url=self.proxy.url,
            access_key="bench-access-key",
            secret_key="bench-secret-key",
            region=region,
            admin_url=self.url,
            counter=self.proxy.counter,
        )

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
