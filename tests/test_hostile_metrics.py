"""A hostile scraper (docs/security.md, kind 8 of issue 17): the metrics endpoint runs
on the event loop, with a bound on connections and a timeout on each.

prometheus-client's ``start_http_server`` spent a thread per connection with no
timeout (1,500 slow partial requests held 1,502 threads) and listened with a
backlog of 5 (733 of 1,000 concurrent scrapes timed out).
"""

from __future__ import annotations

import gzip
import threading

import anyio
import pytest

from fsm_live.errors import UsageError
from fsm_live.metrics import new_registry, serve_metrics
from fsm_live.metrics.server import DEFAULT_HOST, MAX_REQUEST_HEAD

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
DEADLINE = 40.0


async def _exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` and read the answer until the server closes."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(request)
        chunks = []
        while True:
            try:
                chunks.append(await stream.receive())
            except anyio.EndOfStream:
                return b"".join(chunks)


def _threads() -> list[str]:
    """The process's threads, but the one trio's guest mode (anyio's pytest runner on
    trio) waits for I/O in."""
    return [t.name for t in threading.enumerate() if not t.name.startswith("Trio thread")]


def _get(path: str = "/metrics", *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: test", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def test_8_slow_partial_requests_hold_no_thread_and_lock_no_scraper_out() -> None:
    """Bound: at most ``max_connections`` connections are held, none on a thread of
    its own; at the bound the one held longest is closed to make room.  200 slow
    partial requests, then a real scrape: it is answered at once, and the slow
    connections beyond the bound were closed."""
    registry = new_registry()
    with anyio.fail_after(DEADLINE):
        async with serve_metrics(registry, 0, max_connections=32) as server:
            threads = _threads()
            slow = []
            for _ in range(200):
                stream = await anyio.connect_tcp("127.0.0.1", server.port)
                await stream.send(b"GET /metr")  # and nothing more
                slow.append(stream)
            answer = await _exchange(server.port, _get())
            assert _threads() == threads
            assert server.connections <= 32
            # The oldest 169 (at least) were closed to make room for newer ones:
            for stream in slow[:169]:
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await stream.receive()
            for stream in slow:
                await stream.aclose()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"process_cpu_seconds_total" in answer


async def test_8_a_connection_is_closed_after_the_timeout() -> None:
    """Bound: a connection that has not sent its whole request within ``timeout``
    seconds is closed (the whole exchange shares the one deadline)."""
    registry = new_registry()
    with anyio.fail_after(DEADLINE):
        async with serve_metrics(registry, 0, timeout=0.2) as server:
            async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
                await stream.send(b"GET /metrics HTTP/1.1\r\n")  # the head never ends
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await stream.receive()
            assert server.connections == 0


async def test_8_a_thousand_concurrent_scrapes_are_all_answered() -> None:
    registry = new_registry()
    answers: list[bytes] = []

    async def scrape(port: int) -> None:
        answers.append(await _exchange(port, _get()))

    with anyio.fail_after(DEADLINE):
        async with serve_metrics(registry, 0) as server, anyio.create_task_group() as tg:
            for _ in range(1000):
                tg.start_soon(scrape, server.port)
    assert len(answers) == 1000
    assert all(answer.startswith(b"HTTP/1.1 200 OK\r\n") for answer in answers)


async def test_8_a_request_head_past_the_bound_or_not_http_is_refused() -> None:
    registry = new_registry()
    with anyio.fail_after(DEADLINE):
        async with serve_metrics(registry, 0) as server:
            huge = _get("/metrics", "X-Padding: " + "p" * MAX_REQUEST_HEAD)
            too_long = await _exchange(server.port, huge)
            garbage = await _exchange(server.port, b"\x16\x03\x01 hello\r\n\r\n")
            head = await _exchange(server.port, _get().replace(b"GET", b"HEAD", 1))
    assert too_long.startswith(b"HTTP/1.1 431 ")
    assert garbage.startswith(b"HTTP/1.1 400 ")
    assert head.startswith(b"HTTP/1.1 405 ")


async def test_8_prometheus_clients_own_application_answers() -> None:
    """Content negotiation and compression are prometheus-client's (``make_wsgi_app``)."""
    registry = new_registry()
    with anyio.fail_after(DEADLINE):
        async with serve_metrics(registry, 0) as server:
            assert server.host == DEFAULT_HOST == "127.0.0.1"
            assert server.url == f"http://127.0.0.1:{server.port}/metrics"
            open_metrics = await _exchange(
                server.port, _get("/metrics", "Accept: application/openmetrics-text")
            )
            zipped = await _exchange(server.port, _get("/metrics", "Accept-Encoding: gzip"))
    assert b"Content-Type: application/openmetrics-text" in open_metrics
    assert open_metrics.rstrip().endswith(b"# EOF")
    head, _, body = zipped.partition(b"\r\n\r\n")
    assert b"Content-Encoding: gzip" in head
    assert b"process_cpu_seconds_total" in gzip.decompress(body)


async def test_8_the_server_is_served_on_the_loop_once() -> None:
    server = serve_metrics(new_registry(), 0)
    with pytest.raises(UsageError, match="async with"), server:
        pass
    async with server:
        pass
    with pytest.raises(UsageError, match="only once"):
        async with server:
            pass
    server.close()  # idempotent
    with pytest.raises(OSError, match="connection attempts failed"):  # the port was released
        await anyio.connect_tcp("127.0.0.1", server.port)
