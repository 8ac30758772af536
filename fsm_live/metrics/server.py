"""Serving a registry over HTTP, from the event loop the connections already run on.

:func:`serve_metrics` binds the listening socket at once (a port in use is an
OSError before anything connects) and returns a :class:`MetricsServer`;
``async with server:`` serves it on the running event loop (asyncio or trio)
until the block is left.  Each scrape is answered by prometheus-client's own
WSGI application (``make_wsgi_app``: the text or OpenMetrics format by
``Accept``, gzip by ``Accept-Encoding``, ``name[]`` filters) behind an anyio
listener: no thread, no task while idle, one task per connection being answered.

A scraper is a peer like any other, so everything it can make the server hold
is bounded (prometheus-client's ``start_http_server`` spent a thread per
connection with no timeout: 1,500 slow partial requests held 1,502 threads, and
its listen backlog of 5 made 733 of 1,000 concurrent scrapes time out):

* at most ``max_connections`` connections are held at once (default
  :data:`MAX_CONNECTIONS`): a connection arriving at the bound closes the one that
  has waited longest for its request, so slow clients cannot lock scrapers out (a
  scraper sends its request at once and is answered within milliseconds); should
  every connection held be taking its answer, the new one is closed instead.
  Connections not yet accepted wait in a listen backlog of :data:`BACKLOG`
  (capped by the system's ``somaxconn``);
* each connection has ``timeout`` seconds (default :data:`TIMEOUT`, Prometheus'
  own default scrape timeout) to send its request head and take the answer, then
  it is closed;
* a request head is at most :data:`MAX_REQUEST_HEAD` bytes (431 beyond); one
  request per connection (``Connection: close``).

It binds ``127.0.0.1`` unless told otherwise: metrics name hosts and states, so
exposing them on every interface is a choice to make on purpose.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self
from urllib.parse import unquote

import anyio
import anyio.abc

from fsm_live.errors import UsageError
from fsm_live.metrics.collector import require_prometheus

if TYPE_CHECKING:  # the `metrics` extra; imported at run time after require_prometheus()
    from prometheus_client.registry import CollectorRegistry

__all__ = (
    "BACKLOG",
    "DEFAULT_HOST",
    "MAX_CONNECTIONS",
    "MAX_REQUEST_HEAD",
    "TIMEOUT",
    "MetricsServer",
    "new_registry",
    "serve_metrics",
)

#: Where :func:`serve_metrics` binds unless told otherwise.
DEFAULT_HOST: Final = "127.0.0.1"
#: Connections held at once, by default (each costs a task and a socket).
MAX_CONNECTIONS: Final = 256
#: Seconds a connection has for its request head and the answer, by default
#: (Prometheus' default ``scrape_timeout``).
TIMEOUT: Final = 10.0
#: The largest request head read, in bytes (a scrape's is about 200).
MAX_REQUEST_HEAD: Final = 8192
#: Connections the system queues while every slot is busy.
BACKLOG: Final = 1024
#: How long the accept loop rests when the process is out of file descriptors.
_ACCEPT_RETRY: Final = 0.1

logger = logging.getLogger("fsm_live")

_WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def new_registry() -> CollectorRegistry:
    """A fresh registry holding prometheus-client's process collector (``process_*``:
    memory, CPU, open files), ready for a :class:`ConnectionCollector` or a
    :class:`FleetCollector`.  Raises :class:`~fsm_live.errors.MissingExtra` without
    prometheus-client."""
    require_prometheus()  # the `metrics` extra: a one-line MissingExtra without it
    from prometheus_client import ProcessCollector
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


class MetricsServer:
    """A metrics endpoint bound to ``host`` and ``port`` (the bound one, also for port
    0), serving ``registry`` at ``url`` while entered with ``async with`` on an event
    loop; :meth:`close` releases the port (idempotent; leaving the block does too).

    ``connections`` is the number of connections held now.  Raises
    :class:`~fsm_live.errors.UsageError` when entered twice, after :meth:`close`, or
    with a plain ``with``.
    """

    def __init__(
        self,
        sock: socket.socket,
        registry: CollectorRegistry,
        *,
        timeout: float = TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        from prometheus_client import make_wsgi_app

        self._socket: socket.socket | None = sock
        self._app: _WsgiApp = make_wsgi_app(registry)
        self._stack: contextlib.AsyncExitStack | None = None
        self._entered = False
        self.registry = registry
        self.host: str = sock.getsockname()[0]
        self.port: int = sock.getsockname()[1]
        self.timeout = timeout
        self.max_connections = max_connections
        # The connections reading their request, oldest first (a dict as an ordered
        # set), each by the cancel scope that closes it at its deadline or when it
        # is evicted; and how many more are taking their answer.
        self._reading: dict[anyio.CancelScope, None] = {}
        self._answering = 0

    @property
    def connections(self) -> int:
        """Connections held now (reading a request or taking an answer)."""
        return len(self._reading) + self._answering

    @property
    def url(self) -> str:
        """``http://HOST:PORT/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Release the port (a server being served stops at the end of its block)."""
        if self._socket is not None and self._stack is None:
            self._socket.close()
        self._socket = None

    def __enter__(self) -> Self:
        raise UsageError("a MetricsServer runs on the event loop: use `async with`")

    def __exit__(self, *exc_info: object) -> None:  # (``with`` needs it to call __enter__)
        return None

    async def __aenter__(self) -> Self:
        if self._entered or self._socket is None:
            raise UsageError("a MetricsServer can be entered only once, before close()")
        self._entered = True
        async with contextlib.AsyncExitStack() as stack:
            listener = await anyio.abc.SocketListener.from_socket(self._socket)
            await stack.enter_async_context(listener)  # closes the socket at the end
            task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(task_group.cancel_scope.cancel)  # runs first: the accept loop
            task_group.start_soon(self._accept, listener)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stack, self._stack, self._socket = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    # -- serving -------------------------------------------------------------------------

    async def _accept(self, listener: anyio.abc.SocketListener) -> None:
        """Accept every connection; at the bound, evict the one waiting longest for
        its request (or, if all are taking answers, close the new one)."""
        reading = self._reading
        async with anyio.create_task_group() as task_group:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:  # out of file descriptors: rest, then try again
                    logger.warning("metrics endpoint: accept failed (%s)", exc.strerror or exc)
                    await anyio.sleep(_ACCEPT_RETRY)
                    continue
                if self.connections >= self.max_connections:
                    if not reading:
                        await anyio.aclose_forcefully(stream)
                        continue
                    oldest = next(iter(reading))
                    del reading[oldest]
                    oldest.cancel()
                scope = anyio.CancelScope(deadline=anyio.current_time() + self.timeout)
                reading[scope] = None
                task_group.start_soon(self._answer, stream, scope)

    async def _answer(self, stream: anyio.abc.SocketStream, scope: anyio.CancelScope) -> None:
        """Read one request head and answer it, unless ``scope`` is cancelled first
        (its deadline passed, or the connection was evicted); then close."""
        answering = False
        try:
            with scope:
                head = await _read_head(stream)
                if self._reading.pop(scope, 0) is None:  # not evicted meanwhile
                    answering = True
                    self._answering += 1
                    await stream.send(self._respond(head))
        except (OSError, anyio.BrokenResourceError, anyio.EndOfStream):
            pass  # the scraper went away: nothing to answer
        finally:
            self._reading.pop(scope, None)
            if answering:
                self._answering -= 1
            await anyio.aclose_forcefully(stream)

    def _respond(self, head: bytes | None) -> bytes:
        """The whole HTTP answer to a request head (None: too long)."""
        if head is None:
            return _answer("431 Request Header Fields Too Large", [], b"")
        environ = _environ(head)
        if environ is None:
            return _answer("400 Bad Request", [], b"")
        answered: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
            answered[:] = [status, headers]

        body = b"".join(self._app(environ, start_response))
        return _answer(answered[0], answered[1], body)


async def _read_head(stream: anyio.abc.SocketStream) -> bytes | None:
    """The request head up to its blank line; None past :data:`MAX_REQUEST_HEAD`."""
    head = b""
    while b"\r\n\r\n" not in head:
        if len(head) > MAX_REQUEST_HEAD:
            return None
        head += await stream.receive(MAX_REQUEST_HEAD)
    head = head.partition(b"\r\n\r\n")[0]
    return head if len(head) <= MAX_REQUEST_HEAD else None


def _environ(head: bytes) -> dict[str, Any] | None:
    """The WSGI environ prometheus-client's application reads, or None if the
    request line is not ``METHOD TARGET HTTP/x.y``."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    method, target, _ = parts
    path, _, query = target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": unquote(path),
        "QUERY_STRING": query,
    }
    for line in lines[1:]:
        name, separator, value = line.partition(":")
        if separator and name.strip().lower() in ("accept", "accept-encoding"):
            environ[f"HTTP_{name.strip().upper().replace('-', '_')}"] = value.strip()
    return environ


def _answer(status: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers)]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


def serve_metrics(
    registry: CollectorRegistry,
    port: int,
    host: str = DEFAULT_HOST,
    *,
    timeout: float = TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
) -> MetricsServer:
    """Bind ``host:port`` (port 0: any free port) for ``registry``'s metrics; serve
    them with ``async with`` on the event loop (see :class:`MetricsServer`).

    ``timeout``: seconds each connection has for its request and the answer;
    ``max_connections``: connections answered at once.  Raises
    :class:`~fsm_live.errors.MissingExtra` without prometheus-client and OSError
    when the address cannot be bound (in use, not a local address, no such host).
    """
    require_prometheus()  # the `metrics` extra: a one-line MissingExtra without it
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.create_server(address, family=family, backlog=BACKLOG)
    try:
        return MetricsServer(sock, registry, timeout=timeout, max_connections=max_connections)
    except BaseException:
        sock.close()
        raise
