"""A loopback HTTP proxy that breaks requests between spare and the S3 server, on purpose.

spare is given the proxy's URL as its S3 endpoint; the proxy forwards each request to the real
server (moto) and hands the reply back, unless it injects a fault instead:

* ``reset-before``: the connection is reset once the request was read, before it is forwarded
  (the server never sees it);
* ``reset-after``: the request is forwarded and done by the server (a PUT stored), then the
  connection is reset instead of the reply (the client cannot tell that it worked);
* ``cut-request``: half the request's body is forwarded, with a Content-Length to match (and the
  Content-MD5 of the whole): a server that checks neither (moto) stores half an object and says
  200, as if the body had been cut on the way and the cut gone unnoticed;
* ``stall``: the request waits ``stall_seconds`` before it is forwarded;
* ``500`` and ``503``: an S3 error reply (``InternalError``, ``SlowDown``), not forwarded;
* ``truncate``: the reply's headers announce the whole body, half of it is sent, then the
  connection is closed;
* ``short``: the reply is cut to half its body with a Content-Length that matches, so that only
  its Content-Range (``bytes 0-99/1000``) tells the client it got less than it asked for.

Faults are drawn at random for a share of all requests (``rate``, with a seeded RNG so a failure
can be replayed), aimed at the first ``count`` requests of one kind (:class:`Aim`), or given to
every request for some seconds from the first of one kind on (:class:`Blip`: an outage). Every
request and the fault it got is recorded in :attr:`FaultProxy.log`, so a test can show that the
fault it is about did happen.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = (
    "reset-before",
    "reset-after",
    "cut-request",
    "stall",
    "500",
    "503",
    "truncate",
    "short",
)

#: The error replies given instead of forwarding: S3 code and message.
_INSTEAD = {
    "500": ("InternalError", "We encountered an internal error. Please try again."),
    "503": ("SlowDown", "Please reduce your request rate."),
}

#: Headers that describe one connection, not the message: never passed on.
_HOP_BY_HOP = {
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


@dataclass(frozen=True)
class Request:
    """What the proxy read from spare: enough to tell what kind of request it is."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = field(default=b"", repr=False)

    @property
    def key(self) -> str:
        """The object key (path-style addressing: ``/bucket/key?query``), or "" for a bucket."""
        path = self.path.split("?", 1)[0]
        return path.lstrip("/").partition("/")[2]


def pack_put(request: Request) -> bool:
    return request.method == "PUT" and request.key.startswith("packs/")


def lock_put(request: Request) -> bool:
    return request.method == "PUT" and request.key == "lock"


def lock_delete(request: Request) -> bool:
    """The lock's release: s3fs deletes objects with one ``POST ?delete`` naming their keys."""
    return (
        request.method == "POST"
        and "delete" in request.path.partition("?")[2]
        and b"<Key>lock</Key>" in request.body
    )


def ranged_pack_get(request: Request) -> bool:
    return (
        request.method == "GET"
        and request.key.startswith("packs/")
        and "range" in {name.lower() for name in request.headers}
    )


def _checksum(request: Request, body: bytes) -> bool | None:
    """Whether the request's Content-MD5 is its body's (None: it has none)."""
    sent = {name.lower(): value for name, value in request.headers.items()}.get("content-md5")
    if sent is None:
        return None
    return sent == base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()


@dataclass
class Aim:
    """Give the fault ``fault`` to the first ``count`` requests that ``matches`` and that it can
    apply to (``truncate`` needs a body in the reply, ``short`` a ranged one, ``cut-request`` a
    body in the request)."""

    matches: Callable[[Request], bool]
    fault: str
    count: int = 1
    hits: int = 0


@dataclass
class Blip:
    """From the first request that ``matches`` on, give ``fault`` to every request for
    ``seconds`` seconds: the network fails for a while, then comes back."""

    matches: Callable[[Request], bool]
    fault: str
    seconds: float
    #: When the blip ends (time.monotonic()), once a request started it.
    until: float | None = None


@dataclass
class Logged:
    """One request the proxy read: its body's size, whether its Content-MD5 header matched the
    body (None: it had none), and the fault it got (None for none)."""

    method: str
    key: str
    size: int
    checksum: bool | None
    fault: str | None
    aim: Aim | None = field(default=None, repr=False)


@dataclass
class FaultProxy:
    """The proxy; :meth:`start` it, point spare at :attr:`url`, :meth:`stop` it afterwards."""

    upstream: str
    #: The port to listen on; 0 lets the kernel pick a free one.
    port: int = 0
    #: The share of requests given a random fault, and the faults drawn from.
    rate: float = 0.0
    faults: Sequence[str] = FAULTS
    seed: int = 0
    aims: list[Aim] = field(default_factory=list)
    blips: list[Blip] = field(default_factory=list)
    stall_seconds: float = 2.0
    #: Connections served at once; more wait to be accepted.
    max_connections: int = 32
    log: list[Logged] = field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = set(self.faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}")
        host, _, port = self.upstream.removeprefix("http://").partition(":")
        self._upstream = (host, int(port or 80))
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the proxy is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        # Port 0: the kernel picks a free one, which the server holds from now on.
        self._server = _Server(("127.0.0.1", self.port), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fault-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting; connections still open end with their client (their threads are
        daemons, and time out after a minute of silence)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def at_random(self, rate: float, seed: int, faults: Sequence[str] = FAULTS) -> None:
        """From now on, give a fault drawn from ``faults`` to a share ``rate`` of the requests."""
        if set(faults) - set(FAULTS):
            raise ValueError(f"unknown faults {sorted(set(faults) - set(FAULTS))}")
        with self._lock:
            self.rate, self.seed, self.faults = rate, seed, tuple(faults)
            self._rng = random.Random(seed)

    def aim(self, matches: Callable[[Request], bool], fault: str, count: int = 1) -> Aim:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        aim = Aim(matches, fault, count)
        with self._lock:
            self.aims.append(aim)
        return aim

    def blip(self, matches: Callable[[Request], bool], fault: str, seconds: float) -> Blip:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        blip = Blip(matches, fault, seconds)
        with self._lock:
            self.blips.append(blip)
        return blip

    def injected(self, fault: str | None = None) -> list[Logged]:
        """The requests that got a fault (``fault``, or any)."""
        with self._lock:
            return [
                entry
                for entry in self.log
                if entry.fault is not None and (fault is None or entry.fault == fault)
            ]

    def choose(self, request: Request, body: bytes) -> Logged:
        """The fault ``request`` gets (None for none), logged."""
        with self._lock:
            fault, aim = None, None
            now = time.monotonic()
            for blip in self.blips:
                if blip.until is None and blip.matches(request):
                    blip.until = now + blip.seconds
                if blip.until is not None and now < blip.until:
                    fault = blip.fault
            for candidate in [] if fault else self.aims:
                if candidate.hits < candidate.count and candidate.matches(request):
                    candidate.hits += 1
                    fault, aim = candidate.fault, candidate
                    break
            else:
                if not fault and self.rate and self._rng.random() < self.rate:
                    fault = self._rng.choice(list(self.faults))
            entry = Logged(request.method, request.key, len(body), _checksum(request, body), fault)
            entry.aim = aim
            self.log.append(entry)
            return entry

    def spare(self, entry: Logged) -> None:
        """The fault chosen for ``entry`` cannot apply (no body to cut): it goes through whole,
        and an aimed fault waits for the next request of its kind."""
        with self._lock:
            entry.fault = None
            if entry.aim is not None:
                entry.aim.hits -= 1
                entry.aim = None

    def forward(self, request: Request, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send ``request`` to the real server; its status, headers and whole body."""
        connection = http.client.HTTPConnection(*self._upstream, timeout=60)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            connection.request(request.method, request.path, body=body, headers=headers)
            reply = connection.getresponse()
            data = reply.read()
            return reply.status, reply.getheaders(), data
        finally:
            connection.close()


class _Server(ThreadingHTTPServer):
    """One thread per connection, at most ``max_connections`` of them at a time."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self._slots = threading.BoundedSemaphore(proxy.max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and "100 Continue" for botocore's large PUTs
    timeout = 60  # a client that went away without closing does not hold a thread for ever
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the proxy's log is FaultProxy.log

    def do_GET(self) -> None:
        self._serve()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def _serve(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        request = Request(self.command, self.path, dict(self.headers.items()), body)
        entry = proxy.choose(request, body)
        fault = entry.fault
        if fault == "reset-before":
            self._reset()
            return
        if fault in _INSTEAD:
            self._reply_error(int(fault), *_INSTEAD[fault])
            return
        if fault == "stall":
            time.sleep(proxy.stall_seconds)
        if fault == "cut-request":
            if len(body) < 2:
                proxy.spare(entry)
                fault = None
            else:
                body = body[: len(body) // 2]
        try:
            status, headers, data = proxy.forward(request, body)
        except OSError:
            self._reset()  # the server is gone: so is the connection
            return
        if fault in ("truncate", "short") and (
            len(data) < 2 or (fault == "short" and status != 206)
        ):
            proxy.spare(entry)
            fault = None
        if fault == "reset-after":
            self._reset()
        elif fault == "truncate":
            self._reply(status, headers, data, len(data), sent=len(data) // 2)
            self.close_connection = True
        elif fault == "short":
            self._reply(status, headers, data[: len(data) // 2], len(data) // 2)
        else:
            self._reply(status, headers, data, len(data))

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

    def _reply(
        self,
        status: int,
        headers: list[tuple[str, str]],
        data: bytes,
        length: int,
        sent: int | None = None,
    ) -> None:
        self.send_response_only(status)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        if self.command == "HEAD":
            # A HEAD's Content-Length is the object's size; it has no body to send.
            upstream = dict((k.lower(), v) for k, v in headers)
            self.send_header("Content-Length", upstream.get("content-length", "0"))
            self.end_headers()
            return
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(data[: len(data) if sent is None else sent])
        self.wfile.flush()

    def _reply_error(self, status: int, code: str, message: str) -> None:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            "<RequestId>fault-proxy</RequestId></Error>"
        ).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _reset(self) -> None:
        """Close the connection with a TCP RST rather than a FIN."""
        self.close_connection = True
        self.wfile.flush()
        # The file objects hold references to the socket: it closes only when they are closed.
        self.rfile.close()
        self.wfile.close()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.wfile = io.BytesIO()  # the base class flushes it after every request
