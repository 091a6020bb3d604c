"""A loopback TCP listener for the register simulators: accepts connections, serves each in a thread,
and stops cleanly, every socket and thread closed. A simulator adds only `_serve(conn)`, its protocol."""

from __future__ import annotations

import select
import socket
import threading


class LoopbackTcpServer:
    """The register on a loopback TCP port; `.url` is the `socket://` address a driver opens."""

    def __init__(self, host: str, port: int, name: str):
        self._name = name
        self._listener = socket.create_server((host, port))
        self.host, self.port = self._listener.getsockname()[:2]
        self.url = f"socket://{self.host}:{self.port}"
        self.connections = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self):
        thread = threading.Thread(target=self._accept, name=self._name, daemon=True)
        self._threads.append(thread)
        thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._threads[0].join(5) if self._threads else None  # the acceptor first: then no thread is added
        for thread in self._threads[1:]:
            thread.join(5)
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()
        self._listener.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._listener], [], [], 0.05)
            if not ready:
                continue
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(2.0)  # a driver that stops reading cannot block stop() for ever
            with self._lock:
                self._sockets.append(conn)
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), name=f"{self._name}-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError
