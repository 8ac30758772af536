"""What an lwp server does, free of any transport: shared by the socket and in-memory servers.

:class:`LwpService` holds everything :class:`~fsm_live.lwp.server.LwpServer`
(websockets on a port) and :class:`~fsm_live.lwp.memory.MemoryLwpServer`
(on a :class:`~fsm_live.transport.memory.MemoryNetwork`) have in common; they only
move frames and carry out the faults that need their transport (closing,
dropping, refusing).  The service's contract:

* **tokens**: :meth:`LwpService.issue_token` for a user id (the ``unb`` cookie),
  :meth:`LwpService.token_answer` for the ``GET /token`` endpoint (a Cookie
  header in, an HTTP status and a JSON body out), :meth:`LwpService.token_source`
  for in-process credentials.  At most :data:`MAX_TOKENS` are remembered.
* **handshakes**: :meth:`LwpService.take_reject` says whether the next
  handshake is answered with an HTTP error (a pending ``reject`` fault);
  :meth:`LwpService.count_handshake` counts an accepted one.
* **sessions**: :meth:`LwpService.serve` runs one connection, given how to
  receive and send a frame: ``/reg`` is answered 200 when its ``token`` was
  issued and not revoked and its ``did`` ends with ``-<unb>`` of that token's
  user (else 401); ``/!`` (heartbeat) and every other request get code 200
  echoing their mid (401 for a request before registration); once registered,
  the connection gets a ``/s/sync`` push every ``push_interval`` seconds with
  ``items_per_push`` base64 JSON items, every ``duplicate_every``-th one
  re-sending an item of the previous push; the client's acks (code-200 replies
  echoing a push's mid) are recorded.
* **faults**: :meth:`LwpService.fire` counts and reports a fault and arms what
  is the service's part of it (``reject``, ``refuse-reg``, ``blackhole``: while
  it lasts every frame is read and dropped and nothing is pushed).

Everything it remembers is bounded; nothing it logs holds a token or a cookie.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import math
import secrets
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

import anyio
import attrs

from fsm_live.credentials import Secret, parse_cookies
from fsm_live.errors import ConfigError
from fsm_live.lwp.faults import BlackHole, Fault, RefuseRegistration, Reject
from fsm_live.lwp.protocol import new_mid

__all__ = (
    "MAX_RECORDED",
    "MAX_TOKENS",
    "FaultEvent",
    "LwpServerStats",
    "LwpService",
    "LwpSession",
)

logger = logging.getLogger("fsm_live.lwp.server")

#: Tokens remembered (oldest forgotten first); acks and requests recorded.
MAX_TOKENS: Final = 1024
MAX_RECORDED: Final = 256
#: Pushes per connection whose ack is still expected.
_MAX_PENDING_PUSHES: Final = 64
_SAMPLE_TEXTS: Final = (
    "hello from the lwp server",
    "is the item still available?",
    "yes, it is",
    "can you ship it tomorrow?",
    "sure, tracking number follows",
    "thanks!",
)


@attrs.frozen
class FaultEvent:
    """A fault fired (``ended`` False) or a timed fault ended (``ended`` True).

    ``at`` is seconds since the server started.
    """

    at: float
    fault: Fault
    ended: bool = False

    def __str__(self) -> str:
        return f"{self.fault} over" if self.ended else str(self.fault)


@attrs.frozen(kw_only=True)
class LwpServerStats:
    """What the server has seen so far (a snapshot)."""

    handshakes: int
    handshakes_rejected: int
    tokens_issued: int
    registrations: int
    registrations_rejected: int
    heartbeats_acked: int
    requests: int
    pushes_sent: int
    items_sent: int
    duplicates_sent: int
    acks_received: int
    connections_open: int
    #: The mids of the latest acknowledged pushes (at most MAX_RECORDED), oldest first.
    acked_mids: tuple[str, ...]
    #: The paths of the latest other requests (at most MAX_RECORDED), oldest first.
    request_paths: tuple[str, ...]


@attrs.define(eq=False)  # hashed by identity: sessions live in a set
class LwpSession:
    """One accepted connection, as the service sees it."""

    registered: bool = False
    pushes: int = 0
    previous_item: dict[str, str] | None = None
    pending: OrderedDict[str, None] = attrs.Factory(OrderedDict)


@attrs.define
class _Counts:
    handshakes: int = 0
    handshakes_rejected: int = 0
    tokens_issued: int = 0
    registrations: int = 0
    registrations_rejected: int = 0
    heartbeats_acked: int = 0
    requests: int = 0
    pushes_sent: int = 0
    items_sent: int = 0
    duplicates_sent: int = 0
    acks_received: int = 0


class LwpService:
    """The lwp server's logic; one per server.  See the module docstring.

    Args:
        push_interval: Seconds between sync pushes to each registered
            connection; None sends none.
        items_per_push: New items in every push (>= 1).
        duplicate_every: Every n-th push also re-sends an item of the previous
            one; 0 never.

    Raises :class:`ConfigError` for values outside those ranges.
    """

    def __init__(
        self,
        *,
        push_interval: float | None = 1.0,
        items_per_push: int = 3,
        duplicate_every: int = 2,
    ) -> None:
        if push_interval is not None and not 0 < push_interval < math.inf:
            raise ConfigError("push_interval", f"must be a positive number, got {push_interval!r}")
        if items_per_push < 1 or duplicate_every < 0:
            raise ConfigError(
                "items_per_push", "items_per_push must be >= 1 and duplicate_every >= 0"
            )
        self.push_interval = push_interval
        self._items_per_push = items_per_push
        self._duplicate_every = duplicate_every
        self._tokens: OrderedDict[str, str] = OrderedDict()  # token -> user id (unb)
        self._sessions: set[LwpSession] = set()
        self._counts = _Counts()
        self._acked: deque[str] = deque(maxlen=MAX_RECORDED)
        self._request_paths: deque[str] = deque(maxlen=MAX_RECORDED)
        self._message_ids = itertools.count(1)
        self._silent_until = -math.inf
        self._reject: Reject | None = None
        self._rejects_left = 0
        self._refusals_left = 0
        self._observers: list[Callable[[FaultEvent], None]] = []
        self._started_at = 0.0
        self._changed = anyio.Event()

    # -- time ----------------------------------------------------------------------------

    def start(self) -> None:
        """The server starts now: fault times and schedule offsets count from here."""
        self._started_at = anyio.current_time()

    @property
    def started_at(self) -> float:
        """``anyio.current_time()`` at :meth:`start`."""
        return self._started_at

    def now(self) -> float:
        """Seconds since :meth:`start`."""
        return anyio.current_time() - self._started_at

    # -- tokens --------------------------------------------------------------------------

    def issue_token(self, user_id: str | Secret, *, value: Secret | None = None) -> Secret:
        """A new access token for ``user_id`` (the ``unb`` cookie), valid until revoked
        or until MAX_TOKENS newer ones were issued.  ``value`` is the token to accept
        (default: a random one); tests give canary values."""
        user = user_id.reveal() if isinstance(user_id, Secret) else user_id
        token = secrets.token_urlsafe(18) if value is None else value.reveal()
        self._tokens[token] = user
        while len(self._tokens) > MAX_TOKENS:
            self._tokens.popitem(last=False)
        self._counts.tokens_issued += 1
        self.note_change()
        return Secret(token)

    def revoke_token(self, token: str | Secret) -> bool:
        """Forget ``token``: registrations with it get 401.  True if it was valid."""
        value = token.reveal() if isinstance(token, Secret) else token
        return self._tokens.pop(value, None) is not None

    def revoke_all_tokens(self) -> None:
        """Forget every issued token."""
        self._tokens.clear()

    async def token_source(self, cookies: Mapping[str, Secret]) -> Secret:
        """A :data:`~fsm_live.credentials.TokenSource` that issues tokens in-process.

        Raises :class:`ConfigError` when ``cookies`` lack ``unb`` (naming the cookies
        found, never their values).
        """
        if "unb" not in cookies:
            raise ConfigError(
                "cookies",
                f"the 'unb' cookie is required (found: {', '.join(sorted(cookies)) or 'none'})",
            )
        return self.issue_token(cookies["unb"])

    def token_answer(self, cookie_headers: Iterable[str]) -> tuple[int, dict[str, str]]:
        """The ``GET /token`` answer to a request with these Cookie headers: 200 and
        ``{"token": ...}``, 401 without a ``unb`` cookie, 400 for a malformed header."""
        try:
            cookies = parse_cookies("; ".join(cookie_headers))
        except ConfigError as error:
            return 400, {"error": str(error)}
        if "unb" not in cookies:
            return 401, {"error": "the 'unb' cookie is required"}
        return 200, {"token": self.issue_token(cookies["unb"]).reveal()}

    # -- handshakes ----------------------------------------------------------------------

    def take_reject(self) -> Reject | None:
        """The answer to a handshake that reached the server: the pending ``reject``
        fault (one of its count used up, the handshake counted as rejected), or None
        (nothing counted: call :meth:`count_handshake` once it is accepted)."""
        reject = self._reject
        if reject is None or self._rejects_left <= 0:
            return None
        self._rejects_left -= 1
        self._counts.handshakes += 1
        self._counts.handshakes_rejected += 1
        self.note_change()
        return reject

    def count_handshake(self) -> None:
        """Count an accepted WebSocket handshake."""
        self._counts.handshakes += 1
        self.note_change()

    # -- sessions ------------------------------------------------------------------------

    async def serve(
        self,
        receive: Callable[[], Awaitable[str | bytes]],
        send: Callable[[str], Awaitable[None]],
        closed: type[Exception],
    ) -> None:
        """Run one connection: answer its frames and push to it, until ``receive`` or
        ``send`` raises ``closed`` (the transport's "the link is closed"), then return.
        Any other exception propagates."""
        session = LwpSession()
        self._sessions.add(session)
        self.note_change()
        try:
            async with anyio.create_task_group() as task_group:
                if self.push_interval is not None:
                    task_group.start_soon(
                        self._push_loop, session, send, closed, self.push_interval
                    )
                with contextlib.suppress(closed):
                    while True:
                        reply = self.answer(session, await receive())
                        if reply is not None:
                            await send(reply)
                task_group.cancel_scope.cancel()
        finally:
            self._sessions.discard(session)
            self.note_change()

    def answer(self, session: LwpSession, frame: str | bytes) -> str | None:
        """Take one frame of ``session``; return the reply to send, if any."""
        if self.silent():
            return None  # half-open: read and drop everything
        try:
            value = json.loads(frame)
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        headers = value.get("headers")
        mid = headers.get("mid") if isinstance(headers, dict) else None
        if "code" in value:  # the client's reply: an ack of one of our pushes
            if isinstance(mid, str) and mid in session.pending:
                del session.pending[mid]
                self._acked.append(mid)
                self._counts.acks_received += 1
                self.note_change()
            return None
        path = value.get("lwp")
        if not isinstance(mid, str) or not isinstance(path, str):
            return None
        if path == "/reg":
            code = self._register(session, value["headers"])
        elif path == "/!":
            self._counts.heartbeats_acked += 1
            code = 200
        else:
            self._counts.requests += 1
            self._request_paths.append(path)
            code = 200 if session.registered else 401
        self.note_change()
        return json.dumps({"code": code, "headers": {"mid": mid}}, separators=(",", ":"))

    def _register(self, session: LwpSession, headers: dict[str, Any]) -> int:
        user = self._tokens.get(str(headers.get("token")))
        did = headers.get("did")
        valid = user is not None and isinstance(did, str) and did.endswith(f"-{user}")
        if self._refusals_left > 0:
            self._refusals_left -= 1
            valid = False
        if not valid:
            self._counts.registrations_rejected += 1
            return 401
        session.registered = True
        self._counts.registrations += 1
        return 200

    async def _push_loop(
        self,
        session: LwpSession,
        send: Callable[[str], Awaitable[None]],
        closed: type[Exception],
        interval: float,
    ) -> None:
        # Pushes keep their own rhythm (sleep_until), whatever the client does.
        next_at = anyio.current_time() + interval
        with contextlib.suppress(closed):
            while True:
                await anyio.sleep_until(next_at)
                next_at += interval
                if session.registered and not self.silent():
                    await send(self._next_push(session))

    def _next_push(self, session: LwpSession) -> str:
        session.pushes += 1
        items = []
        for _ in range(self._items_per_push):
            number = next(self._message_ids)
            items.append(
                {"messageId": f"msg-{number}", "text": _SAMPLE_TEXTS[number % len(_SAMPLE_TEXTS)]}
            )
        duplicate = (
            self._duplicate_every
            and session.previous_item is not None
            and session.pushes % self._duplicate_every == 0
        )
        if duplicate and session.previous_item is not None:
            items.insert(0, session.previous_item)
            self._counts.duplicates_sent += 1
        session.previous_item = items[-1]
        mid = new_mid()
        session.pending[mid] = None
        while len(session.pending) > _MAX_PENDING_PUSHES:
            session.pending.popitem(last=False)
        self._counts.pushes_sent += 1
        self._counts.items_sent += len(items)
        self.note_change()
        return json.dumps(
            {
                "lwp": "/s/sync",
                "headers": {"mid": mid, "sid": secrets.token_hex(4)},
                "body": {
                    "syncPushPackage": {
                        "data": [{"data": _b64_json(item), "objectType": 40000} for item in items]
                    }
                },
            },
            separators=(",", ":"),
        )

    # -- faults --------------------------------------------------------------------------

    def on_fault(self, callback: Callable[[FaultEvent], None]) -> None:
        """Call ``callback(event)`` when a fault fires and when a timed fault ends."""
        self._observers.append(callback)

    def fire(self, fault: Fault) -> None:
        """Count and report ``fault``, and arm the service's part of it: a ``reject``
        or ``refuse-reg`` (replacing the one still pending) or a ``blackhole``'s
        silence.  The server carries out the rest (and reports a timed fault's end
        with :meth:`report_end`)."""
        self._report(FaultEvent(self.now(), fault))
        if isinstance(fault, BlackHole):
            self._silent_until = max(self._silent_until, anyio.current_time() + fault.duration)
        elif isinstance(fault, Reject):
            self._reject, self._rejects_left = fault, fault.count
        elif isinstance(fault, RefuseRegistration):
            self._refusals_left = fault.count
        self.note_change()

    def report_end(self, fault: Fault) -> None:
        """A timed fault (blackhole, restart) is over."""
        self._report(FaultEvent(self.now(), fault, ended=True))

    def _report(self, event: FaultEvent) -> None:
        logger.info("fault %s at %.3f s", event, event.at)
        for callback in self._observers:
            callback(event)

    def silent(self) -> bool:
        """True while a ``blackhole`` fault lasts."""
        return anyio.current_time() < self._silent_until

    @property
    def silent_until(self) -> float:
        """When the latest ``blackhole`` ends (``anyio.current_time()``; -inf if none)."""
        return self._silent_until

    # -- observation ---------------------------------------------------------------------

    def stats(self) -> LwpServerStats:
        """A snapshot of what the server has seen."""
        return LwpServerStats(
            **attrs.asdict(self._counts),
            connections_open=len(self._sessions),
            acked_mids=tuple(self._acked),
            request_paths=tuple(self._request_paths),
        )

    async def wait_until(self, predicate: Callable[[LwpServerStats], bool]) -> LwpServerStats:
        """Wait until ``predicate(self.stats())`` holds; return that snapshot."""
        while not predicate(stats := self.stats()):
            await self._changed.wait()
        return stats

    def note_change(self) -> None:
        """Wake :meth:`wait_until` callers: something they may wait for changed."""
        self._changed.set()
        self._changed = anyio.Event()


def _b64_json(value: object) -> str:
    return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()
