"""The ``tcp`` check: can a TCP connection to host:port be opened, and how long did it take."""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from typing import Any

from exporter import schema as s
from exporter.checks.base import CheckContext, MetricSpec, Result, Sample

NAME = "tcp"
OPTIONS = s.struct({
    "host": s.Field(s.string(what="a host name or IP address"), required=True),
    "port": s.Field(s.integer(1, 65535), required=True),
})
METRICS = (MetricSpec("sitewatch_tcp_connect_seconds", "Time to open the TCP connection in the latest run."),)

def target(options: dict[str, Any]) -> str:
    """What the check looks at, for people: host:port ([v6]:port)."""
    host = options["host"]
    return f"[{host}]:{options['port']}" if ":" in host else f"{host}:{options['port']}"


_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, getattr(errno, "WSAEHOSTUNREACH", -1)}


async def run(options: dict[str, Any], context: CheckContext) -> Result:
    host, port = options["host"], options["port"]
    target = f"{host}:{port}"
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        return Result.failed("dns", f"cannot resolve {host}: {err.strerror or err}")
    failure: Result | None = None
    for info in infos:  # a name may resolve to ::1 and 127.0.0.1 while the service listens on one only
        started = time.perf_counter()
        try:
            _, writer = await asyncio.open_connection(*info[4][:2])
        except ConnectionRefusedError:
            failure = failure or Result.failed(
                "refused", f"connection refused by {target}: nothing listens there, or a firewall rejects it")
            continue
        except OSError as err:
            reason = "unreachable" if err.errno in _UNREACHABLE else "connect"
            failure = failure or Result.failed(reason, f"cannot connect to {target}: {err.strerror or err}")
            continue
        break
    else:
        assert failure is not None
        return failure
    elapsed = time.perf_counter() - started
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return Result(True, figures=f"connected in {elapsed * 1000:.1f} ms",
                  samples=[Sample("sitewatch_tcp_connect_seconds", elapsed)])
