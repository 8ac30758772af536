"""The WebSocket transport: websockets' own client, one attempt at a time.

:class:`WebSocketTransport` opens a link with ``websockets.asyncio.client.connect``
on the asyncio backend and ``websockets.trio.client.connect`` on trio (picked with
:func:`sniffio.current_async_library` when the attempt is entered).  It never uses
websockets' reconnecting ``async for`` loop (that loop resets its backoff on every
open and retries certificate failures): the lifecycle machine owns retrying.
websockets' keepalive pings are off (``ping_interval=None``); fsm_live runs its
own heartbeats through :meth:`WebSocketLink.ping` or the protocol adapter.
websockets' DEBUG logs go through :func:`~fsm_live.redaction.redacting_logger`:
handshake header values (cookies, tokens), the request's query string and frame
contents are replaced by placeholders before they reach the ``websockets.client`` logger.

Every failure is raised as :class:`~fsm_live.errors.TransportError`, translated by
:func:`fsm_live.transport.errors.translate`.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.lowlevel
import sniffio
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.uri import parse_uri

from fsm_live.redaction import redacting_logger
from fsm_live.transport import errors
from fsm_live.transport.base import ConnectOptions, Message

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    import websockets.asyncio.client
    import websockets.trio.client

__all__ = ("WebSocketLink", "WebSocketTransport")

_LOGGER = redacting_logger("websockets.client")

# Extra time allowed around websockets' own close_timeout before the cleanup of an
# attempt gives up waiting (websockets aborts the TCP connection at close_timeout).
_CLOSE_MARGIN = 1.0


class WebSocketTransport:
    """A :class:`~fsm_live.transport.base.Transport` on websockets' client.

    Stateless and shareable: each :meth:`connect` is one independent attempt.
    ``ConnectOptions.ssl`` None means websockets' default for ``wss://`` (a default
    context: certificate and hostname verification on); it is ignored for ``ws://``.
    websockets' proxy support stays as websockets configures it (the proxy
    environment variables).
    """

    def connect(self, url: str, options: ConnectOptions) -> AbstractAsyncContextManager[
        WebSocketLink
    ]:
        """One attempt; see :meth:`fsm_live.transport.base.Transport.connect`."""
        return _Attempt(url, options)


class WebSocketLink:
    """An open link over a websockets client connection (asyncio or trio).

    ``send``, ``receive`` and ``ping`` raise :class:`~fsm_live.errors.TransportError`
    with ``close_code`` once the link is closed.  Do not call ``receive`` from two
    tasks at once (websockets raises ``ConcurrencyError``, a caller's bug).
    """

    def __init__(
        self,
        ws: websockets.asyncio.client.ClientConnection | websockets.trio.client.ClientConnection,
        *,
        close_timeout: float,
    ) -> None:
        self._ws = ws
        self._close_timeout = close_timeout
        self._trio = not isinstance(ws, _asyncio_connection_type())
        self._closed_by_app = False

    def _error(self, exc: Exception) -> Exception:
        return errors.translate(exc, closed_by_app=self._closed_by_app)

    async def send(self, message: Message) -> None:
        """Send one message: ``str`` as a text frame, ``bytes`` as a binary frame."""
        if not isinstance(message, str | bytes):
            raise TypeError(f"a message is str or bytes, not {type(message).__name__}")
        try:
            await self._ws.send(message)
        except ConnectionClosed as exc:
            raise self._error(exc) from exc

    async def receive(self) -> Message:
        """The next whole message; raises TransportError once the link is closed."""
        try:
            return await self._ws.recv()
        except ConnectionClosed as exc:
            raise self._error(exc) from exc

    async def ping(self) -> None:
        """Send a ping and return when its pong arrives; raises TransportError on close."""
        try:
            if self._trio:
                ws_trio: Any = self._ws
                # ack_on_close: a close sets the event too, instead of leaving it unset.
                event = await ws_trio.ping(ack_on_close=True)
                await event.wait()
                if self._ws.protocol.state is not State.OPEN:
                    raise self._ws.protocol.close_exc
            else:
                ws_asyncio: Any = self._ws
                pong = await ws_asyncio.ping()
                await pong
        except ConnectionClosed as exc:
            raise self._error(exc) from exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake, abort after ``close_timeout``; raises no
        TransportError.  Raises ValueError for a code or reason that cannot be sent
        (e.g. 1005, 1006).  Cancellation is re-raised once the link is closed."""
        errors.check_close(code, reason)
        await self._close_shielded(code, reason)
        await anyio.lowlevel.checkpoint_if_cancelled()

    async def _close_shielded(self, code: int = 1000, reason: str = "") -> None:
        """Close, shielded from cancellation, so a cancelled caller leaves no
        half-closed socket behind (websockets' asyncio close does not abort the
        transport when cancelled).  websockets bounds the wait by close_timeout;
        the margin here is only a safety net."""
        if self._ws.protocol.state is State.OPEN:
            # Not when already closing: the code websockets failed the link with
            # (e.g. 1009) stays the fact to report, not 1006.
            self._closed_by_app = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(
            self._close_timeout + _CLOSE_MARGIN
        ):
            ws: Any = self._ws
            await (ws.aclose(code, reason) if self._trio else ws.close(code, reason))

    @property
    def close_code(self) -> int | None:
        """The close code once closed (1006 when dropped without a close frame), else None."""
        protocol = self._ws.protocol
        if protocol.state is not State.CLOSED:
            return None
        return errors.close_code_of(protocol.close_exc, closed_by_app=self._closed_by_app)


def _asyncio_connection_type() -> type[Any]:
    import websockets.asyncio.client

    return websockets.asyncio.client.ClientConnection


class _Attempt:
    """The async context manager of one attempt: dial, handshake, close on exit.

    On asyncio, websockets' connection runs its reader as an asyncio task of its
    own.  On trio, it runs its reader in a nursery that ``connect`` opens in the
    caller's task, so a cancellation of the caller's body would kill the reader and
    the closing handshake with it (the server would see 1006).  So on trio the
    connection is held by a task of this attempt's own task group, shielded once
    the handshake is done (not before: a cancelled dial stops at once), and the
    body's cancellation still gets a clean close with 1000.
    """

    def __init__(self, url: str, options: ConnectOptions) -> None:
        self._url = url
        self._options = options
        self._entered = False
        self._link: WebSocketLink | None = None
        self._asyncio_cm: Any = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._hold_scope: anyio.CancelScope | None = None
        self._release: anyio.Event | None = None

    def _kwargs(self, secure: bool) -> dict[str, Any]:
        options = self._options
        kwargs: dict[str, Any] = {
            "additional_headers": dict(options.headers),
            "user_agent_header": options.user_agent,
            "open_timeout": options.open_timeout,
            "close_timeout": options.close_timeout,
            "ping_interval": None,  # fsm_live runs its own heartbeats
            "max_size": options.max_size,
            "max_queue": options.max_queue,
            "compression": "deflate" if options.compression else None,
            "logger": _LOGGER,  # redacts headers and frames at DEBUG
        }
        if secure and options.ssl is not None:
            # None leaves websockets' default for wss://: verification on.
            kwargs["ssl"] = options.ssl
        return kwargs

    async def __aenter__(self) -> WebSocketLink:
        if self._entered:
            raise RuntimeError("an attempt can be entered only once")
        self._entered = True
        try:
            secure = parse_uri(self._url).secure
        except errors.TRANSLATABLE as exc:
            raise errors.translate(exc) from exc
        kwargs = self._kwargs(secure)
        if sniffio.current_async_library() == "trio":
            ws = await self._enter_trio(kwargs)
        else:
            ws = await self._enter_asyncio(kwargs)
        self._link = WebSocketLink(ws, close_timeout=self._options.close_timeout)
        return self._link

    async def _enter_asyncio(self, kwargs: dict[str, Any]) -> Any:
        import websockets.asyncio.client

        cm = websockets.asyncio.client.connect(self._url, **kwargs)
        try:
            ws = await cm.__aenter__()
        except errors.TRANSLATABLE as exc:
            raise errors.translate(exc) from exc
        self._asyncio_cm = cm
        return ws

    async def _enter_trio(self, kwargs: dict[str, Any]) -> Any:
        self._release = anyio.Event()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            ws = await task_group.start(self._hold_trio, kwargs)
        except BaseException:
            # The holding task has ended: leave the (empty) task group, then re-raise.
            await task_group.__aexit__(None, None, None)
            raise
        self._task_group = task_group
        return ws

    async def _hold_trio(
        self, kwargs: dict[str, Any], *, task_status: anyio.abc.TaskStatus[Any]
    ) -> None:
        import trio
        import websockets.trio.client

        catch: tuple[type[BaseException], ...] = (
            *errors.TRANSLATABLE, trio.BrokenResourceError,
        )
        opened = False
        with anyio.CancelScope() as self._hold_scope:
            try:
                async with websockets.trio.client.connect(self._url, **kwargs) as ws:
                    self._hold_scope.shield = True
                    opened = True
                    task_status.started(ws)
                    assert self._release is not None
                    await self._release.wait()
            except catch as exc:
                if opened:
                    return  # leaving an already closed connection: nothing to report
                raise errors.translate(exc) from exc

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._link is not None, "__aexit__ without a successful __aenter__"
        # Closing is cleanup: shielded from the caller's cancellation and bounded.
        await self._link._close_shielded()
        if self._asyncio_cm is not None:
            cm, self._asyncio_cm = self._asyncio_cm, None
            try:
                # With the connection closed, this only joins websockets' tasks.
                await cm.__aexit__(exc_type, exc, tb)
            except errors.TRANSLATABLE as error:
                raise errors.translate(error) from error
        if self._task_group is not None:
            task_group, self._task_group = self._task_group, None
            assert self._release is not None
            self._release.set()
            if self._hold_scope is not None:  # a safety net: leaving is immediate
                self._hold_scope.deadline = anyio.current_time() + _CLOSE_MARGIN
            # The body's exception is not passed in: it propagates by itself,
            # not wrapped in an exception group.
            await task_group.__aexit__(None, None, None)
