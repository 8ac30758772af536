"""Prometheus metrics: the collectors read in virtual time (in-memory network), an endpoint
scraped over HTTP on 127.0.0.1 and parsed with prometheus-client's parser, and
``fsm-live connect --metrics-port`` in a child process against a loopback server.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from collections.abc import Iterable
from typing import Any

import anyio
import pytest
from servers import websocket_server
from trio.testing import MockClock

from fsm_live.cli import main
from fsm_live.config import Config
from fsm_live.connection import connect
from fsm_live.core.backoff import FixedDelay
from fsm_live.counters import COUNT_NAMES, metric_name
from fsm_live.fleet import Fleet
from fsm_live.metrics.histogram import RttHistogram
from fsm_live.metrics.snapshot import Figures
from fsm_live.spec import Spec
from fsm_live.transport.memory import MemoryNetwork, MemoryTransport, echo

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from fsm_live.metrics import (  # noqa: E402
    ConnectionCollector,
    FleetCollector,
    new_registry,
    serve_metrics,
)

pytestmark = pytest.mark.timeout(30)

OK = "ws://ok.test/"
DOWN = "ws://down.test/"
FAMILIES = {
    "fsm_live_connections",
    "fsm_live_transitions",
    "fsm_live_failures",
    "fsm_live_reconnect_attempts",
    "fsm_live_heartbeat_rtt_seconds",
    "fsm_live_send_buffer_frames",
    "fsm_live_tasks",
    # one per count, named by its declaration (as the parser names counters: no _total)
    *(metric_name(name).removesuffix("_total") for name in COUNT_NAMES),
}
assert {"fsm_live_messages_received", "fsm_live_messages_sent"} < FAMILIES  # names kept
CONFIG = Config(heartbeat_interval=1, heartbeat_timeout=3, backoff=FixedDelay(2))
STATES = set(Spec.default().states)


def parse(text: str) -> dict[str, Any]:
    """Family name -> family, as prometheus-client's parser reads the exposition."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(family: Any, name: str | None = None) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in family.samples
        if name is None or s.name == name
    }


def value(family: Any, name: str | None = None, **labels: str) -> float:
    return samples(family, name)[tuple(sorted(labels.items()))]


def total(family: Any, name: str | None = None, **labels: str) -> float:
    """The sum of the samples with these labels (and any others: per connection)."""
    return sum(
        s.value
        for s in family.samples
        if (name is None or s.name == name) and labels.items() <= s.labels.items()
    )


def scrape_registry(registry: Any) -> dict[str, Any]:
    return parse(prometheus_client.generate_latest(registry).decode())


@pytest.fixture
def virtual() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


def run_virtual(function: Any) -> None:
    anyio.run(function, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)})


# -- pure parts -------------------------------------------------------------------------------


def test_the_histogram_is_cumulative_with_inf_last() -> None:
    histogram = RttHistogram((0.01, 0.1, 1.0))
    for rtt in (0.005, 0.01, 0.05, 2.0):
        histogram.observe(rtt)
    assert histogram.cumulative() == [("0.01", 2), ("0.1", 3), ("1.0", 3), ("+Inf", 4)]
    assert histogram.sum == pytest.approx(2.065)
    with pytest.raises(ValueError, match="increasing"):
        RttHistogram((1.0, 0.5))


def test_every_state_is_listed_even_at_zero() -> None:
    figures = Figures.empty(["A", "B"])
    assert figures.states == {"A": 0, "B": 0}


# -- collectors ---------------------------------------------------------------------------------


def test_without_a_collector_nothing_watches_the_acks() -> None:
    conn = connect(OK, transport=MemoryTransport(MemoryNetwork()))
    assert conn._engine.on_heartbeat_ack is None  # one `is None` per ack, nothing else


def test_a_connection_collector_reads_stats_at_scrape_time() -> None:
    async def run() -> None:
        network = MemoryNetwork()
        conn = connect(OK, transport=MemoryTransport(network), config=CONFIG, protocol="json")
        registry = new_registry()
        registry.register(ConnectionCollector(conn))
        with anyio.fail_after(120):
            async with network.serve(OK, echo), conn:
                await conn.wait_connected()
                for i in range(3):
                    await conn.send({"id": str(i), "text": "hi"})
                await anyio.sleep(5)
                families = scrape_registry(registry)
                stats = conn.stats()
        assert set(families) >= FAMILIES
        assert any(name.startswith("process_") for name in families)
        connections = families["fsm_live_connections"]
        assert {dict(k)["state"] for k in samples(connections)} == STATES
        assert value(connections, state="CONNECTED") == 1
        assert sum(samples(connections).values()) == 1
        assert (
            value(
                families["fsm_live_transitions"],
                "fsm_live_transitions_total",
                source="DISCONNECTED",
                dest="CONNECTING",
                trigger="start",
            )
            == 1
        )
        assert value(families["fsm_live_messages_sent"], "fsm_live_messages_sent_total") == 3
        assert (
            value(families["fsm_live_messages_received"], "fsm_live_messages_received_total")
            == stats.messages_in
        )
        rtt = families["fsm_live_heartbeat_rtt_seconds"]
        acked = value(rtt, "fsm_live_heartbeat_rtt_seconds_count")
        assert acked == stats.heartbeats_acked >= 4
        assert value(rtt, "fsm_live_heartbeat_rtt_seconds_bucket", le="+Inf") == acked
        assert value(families["fsm_live_tasks"]) == stats.tasks_alive

    run_virtual(run)


def test_a_fleet_collector_adds_members_up_and_keeps_counting_the_gone() -> None:
    async def run() -> None:
        network = MemoryNetwork()
        transport = MemoryTransport(network)
        with anyio.fail_after(600):
            async with network.serve(OK, echo), Fleet(close_timeout=2) as fleet:
                totals = FleetCollector(fleet)
                labelled = FleetCollector(fleet, per_connection=True)
                registry, per_member = new_registry(), new_registry()
                registry.register(totals)
                per_member.register(labelled)
                for i in range(3):
                    await fleet.add(f"ok{i}", OK, config=CONFIG, transport=transport)
                await fleet.add("down", DOWN, config=CONFIG, transport=transport)
                await anyio.sleep(9)
                families = scrape_registry(registry)
                failures_before = fleet["down"].stats().failures["network"]
                await fleet.remove("down")
                after = scrape_registry(registry)
                labelled_families = scrape_registry(per_member)
        connections = families["fsm_live_connections"]
        assert value(connections, state="CONNECTED") == 3
        assert sum(samples(connections).values()) == 4
        failures = value(
            families["fsm_live_failures"], "fsm_live_failures_total", error_class="network"
        )
        assert failures == failures_before >= 3
        assert (
            value(families["fsm_live_reconnect_attempts"], "fsm_live_reconnect_attempts_total") >= 3
        )
        assert (
            value(
                families["fsm_live_heartbeat_rtt_seconds"], "fsm_live_heartbeat_rtt_seconds_count"
            )
            >= 3 * 8
        )
        # The removed member's counters stay in the totals (counters never go down).
        assert (
            value(after["fsm_live_failures"], "fsm_live_failures_total", error_class="network")
            >= failures
        )
        assert sum(samples(after["fsm_live_connections"]).values()) == 3
        # Per connection: a series per member, labelled with its key.
        keys = {dict(k)["connection"] for k in samples(labelled_families["fsm_live_tasks"])}
        assert keys == {"ok0", "ok1", "ok2"}

    run_virtual(run)


# -- over HTTP ------------------------------------------------------------------------------------


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return str(response.read().decode())


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_an_endpoint_scraped_over_http(anyio_backend: str) -> None:
    network = MemoryNetwork()
    conn = connect(OK, transport=MemoryTransport(network), config=CONFIG)
    with anyio.fail_after(20):
        async with network.serve(OK, echo), conn:
            await conn.wait_connected()
            registry = new_registry()
            registry.register(ConnectionCollector(conn))  # on the loop: scrapes come to it
            async with serve_metrics(registry, 0) as server:
                assert server.url == f"http://127.0.0.1:{server.port}/metrics"
                text = await anyio.to_thread.run_sync(_get, server.url)
    families = parse(text)
    assert set(families) >= FAMILIES
    assert value(families["fsm_live_connections"], state="CONNECTED") == 1


def _env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("FSM_LIVE_")}


async def _read_line(stream: Any, starts: str) -> str:
    buffer = b""
    while True:
        buffer += await stream.receive()
        for line in buffer.decode(errors="replace").splitlines():
            if line.startswith(starts):
                return line


async def _serve_and_scrape(argv: list[str], command: str, connected: int) -> dict[str, Any]:
    """Run ``fsm-live ARGV`` until a scrape shows ``connected`` members CONNECTED with
    heartbeat acks; then SIGTERM it (exit 0) and check the endpoint went with it."""
    process = await anyio.open_process([sys.executable, "-m", "fsm_live", *argv], env=_env())
    async with process:
        assert process.stderr is not None
        line = await _read_line(process.stderr, f"fsm-live {command}: metrics on ")
        url = line.rpartition(" ")[2]
        assert url.startswith("http://127.0.0.1:")
        while True:  # until connected with acks to show (the collector is registered
            # once the event loop runs: process_* alone until then)
            families = parse(await anyio.to_thread.run_sync(_get, url))
            rtt = families.get("fsm_live_heartbeat_rtt_seconds")
            if (
                rtt
                and total(rtt, "fsm_live_heartbeat_rtt_seconds_count") >= 2
                and total(families["fsm_live_connections"], state="CONNECTED") == connected
            ):
                break
            await anyio.sleep(0.1)
        process.terminate()  # SIGTERM: it closes cleanly, exit 0
        assert await process.wait() == 0
    assert set(families) >= FAMILIES
    assert any(name.startswith("process_") for name in families)
    with pytest.raises(OSError, match="refused"):  # the endpoint went with the command
        _get(url)
    return families


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_connect_serves_metrics_while_it_runs(anyio_backend: str) -> None:
    with anyio.fail_after(25):
        async with websocket_server() as server:
            families = await _serve_and_scrape(
                [
                    "connect",
                    server.url,
                    "--metrics-port",
                    "0",
                    "--duration",
                    "20",
                    "--heartbeat-interval",
                    "0.2",
                ],
                "connect",
                1,
            )
    assert (
        value(
            families["fsm_live_transitions"],
            "fsm_live_transitions_total",
            source="CONNECTING",
            dest="CONNECTED",
            trigger="opened",
        )
        == 1
    )


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_fleet_serves_metrics_per_connection(anyio_backend: str, tmp_path: Any) -> None:
    with anyio.fail_after(25):
        async with websocket_server() as server:
            path = tmp_path / "fleet.toml"
            path.write_text(
                "[defaults]\nheartbeat_interval = 0.2\nheartbeat_timeout = 1\n"
                + "".join(f'[accounts.a{i}]\nurl = "{server.url}"\n' for i in range(3)),
                encoding="utf-8",
            )
            families = await _serve_and_scrape(
                [
                    "fleet",
                    str(path),
                    "--metrics-port",
                    "0",
                    "--duration",
                    "20",
                    "--metrics-per-connection",
                ],
                "fleet",
                3,
            )
    keys = {dict(k)["connection"] for k in samples(families["fsm_live_tasks"])}
    assert keys == {"a0", "a1", "a2"}


def _one_line(code: int, err: str) -> str:
    assert code == 2
    [line] = err.splitlines()
    return line


def test_metrics_port_without_prometheus_client_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("prometheus_client", "prometheus_client.core"):
        monkeypatch.setitem(sys.modules, name, None)
    code = main(["connect", "ws://127.0.0.1:9/", "--metrics-port", "0"])
    line = _one_line(code, capsys.readouterr().err)
    assert line == (
        "fsm-live connect: error: --metrics-port: metrics need prometheus-client: "
        "pip install 'fsm_live[metrics]'"
    )


def test_a_metrics_port_in_use_is_one_line(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet_file = tmp_path / "fleet.toml"
    fleet_file.write_text('[accounts.a]\nurl = "ws://127.0.0.1:9/"\n', encoding="utf-8")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["fleet", str(fleet_file), "--metrics-port", str(port)])
    line = _one_line(code, capsys.readouterr().err)
    assert line.startswith(
        f"fsm-live fleet: error: --metrics-port {port} --metrics-host 127.0.0.1: cannot listen: "
    )


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_a_bad_metrics_port_is_a_usage_error(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["connect", "ws://127.0.0.1:9/", "--metrics-port", port])
    assert exited.value.code == 2
    assert "--metrics-port" in capsys.readouterr().err


def _names(families: Iterable[Any]) -> set[str]:
    return {family.name for family in families}


def test_describe_lists_the_families_without_reading() -> None:
    conn = connect(OK, transport=MemoryTransport(MemoryNetwork()))
    described = _names(ConnectionCollector(conn).describe())
    assert described == FAMILIES  # counters without their _total, as the parser names them
