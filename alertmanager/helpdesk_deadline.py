"""A deadline for a whole HTTP request made with requests, however slowly the other end answers.

requests' timeouts bound each wait for the next bytes, not the exchange: a server that sends a byte every
few seconds (headers or body) passes every one of them and can hold the caller for hours. A request made
under a `Deadline`, with a session from `session()`, has its connections shut down when the deadline
passes or the caller cancels it: the read under way ends at once and the request fails, which
`Deadline.cut` tells apart from other failures. The session's connections are urllib3's own, told to
report to the deadline of the thread that uses them.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import requests
import urllib3.connection
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


def session() -> requests.Session:
    """An HTTP session whose requests a `Deadline` can cut."""
    http = requests.Session()
    adapter = _CuttableAdapter()
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


class _Watched(threading.local):
    """The connections the calling thread's request under a `Deadline` uses (None: no deadline)."""

    connections: list | None = None


_watched = _Watched()


class Deadline:
    """Cuts the connections of the calling thread's request once `seconds` have passed, or `cancel` is set.

    The connections are shut down under the HTTP library's feet: the read it is blocked in ends at once,
    and the request fails with a connection error, which `cut` tells apart."""

    def __init__(self, seconds: float, cancel: threading.Event | None):
        self.seconds = seconds
        self.cancel = cancel or threading.Event()
        self.cut = False
        self.cancelled = False
        self._connections: list = []
        self._done = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="request-deadline", daemon=True)

    def __enter__(self) -> "Deadline":
        _watched.connections = self._connections
        self._watcher.start()
        return self

    def __exit__(self, *exception) -> None:
        _watched.connections = None
        self._done.set()
        self._watcher.join()

    def _watch(self) -> None:
        ends = time.monotonic() + self.seconds
        while not self._done.wait(min(0.05, max(0.0, ends - time.monotonic()))):
            self.cancelled = self.cancel.is_set()
            if self.cancelled or time.monotonic() >= ends:
                self.cut = True
                for connection in list(self._connections):
                    sock = connection.sock
                    if sock is not None:
                        try:  # the plain socket's shutdown: a TLS one's would drop its state under the reader
                            socket.socket.shutdown(sock, socket.SHUT_RDWR)
                        except OSError:
                            pass
                return


class _Cuttable:
    """A connection that tells the calling thread's `Deadline` it is in use."""

    def connect(self) -> None:  # a TLS connection is made before its first request
        self._report()
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:  # a connection kept from an earlier request
        self._report()
        super().request(*args, **kwargs)

    def _report(self) -> None:
        connections = _watched.connections
        if connections is not None and self not in connections:
            connections.append(self)


class _HTTPConnection(_Cuttable, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Cuttable, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _CuttableAdapter(HTTPAdapter):
    """requests' adapter, with the pools of cuttable connections (through an HTTP proxy too)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):  # a SOCKS proxy's pools are its own: per-read timeouts only
            manager.pool_classes_by_scheme = _POOLS
        return manager
