"""A TCP relay on a free loopback port, for a server that is down for a while or whose
connections break: what the network does to a nightly run, done to a real server's traffic."""

from __future__ import annotations

import contextlib
import socket
import threading

from support.harness import free_port


class TcpRelay:
    """Carries connections to ``target`` once :meth:`listen` is called (until then, connections
    are refused, as by a server that is down); :meth:`cut` breaks those it carries."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.accepted = 0
        self._server: socket.socket | None = None
        self._carried: list[socket.socket] = []
        self._lock = threading.Lock()

    def listen(self, after: float = 0.0) -> None:
        """Start accepting connections, ``after`` seconds from now."""
        timer = threading.Timer(after, self._listen)
        timer.daemon = True
        timer.start()

    def _listen(self) -> None:
        server = socket.create_server(("127.0.0.1", self.port))
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self.accepted += 1
                self._carried += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def cut(self) -> int:
        """Break every connection carried now; returns how many there were."""
        with self._lock:
            carried, self._carried = self._carried, []
        for sock in carried:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        return len(carried) // 2

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
