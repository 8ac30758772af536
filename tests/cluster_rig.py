"""Workers of ``fsm-live fleet --coordinator`` as an operator runs them, for the cluster's
slow tests and its trials (bench/cluster_trials.py).

A :class:`Rig` starts one etcd (:class:`fsm_live.testing.etcd.EtcdServer`), the
recording lwp server (``python -m fsm_live.testing.recorder``) in its own
process, a fleet file of N ``lwp`` accounts (each its own ``unb`` cookie, so the
server names sessions by account), and workers, each ``python -m fsm_live fleet
FILE --coordinator etcd://... --worker-id ID`` in its own process.  Optionally
(root only) each worker lives in a network namespace of its own, on a bridge
with etcd and the server in a third one: :class:`Netns`.

Everything is bounded: every wait has a deadline, every process is killed and
every namespace deleted at the end, whatever happened.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from fsm_live.testing.etcd import EtcdServer, find_etcd, free_port

ROOT = Path(__file__).resolve().parent.parent


def cluster_available() -> str | None:
    """Why the real-etcd tests cannot run here (None: they can)."""
    if find_etcd() is None:
        return "no etcd binary (Debian: apt-get install etcd-server; .ci/packages.txt)"
    try:
        import aetcd  # noqa: F401
    except ImportError:
        return "aetcd is not installed (pip install 'fsm_live[cluster]')"
    return None


def netns_available() -> str | None:
    """Why the partition tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"no {tool} (Debian: iproute2, iptables; .ci/packages.txt)"
    return cluster_available()


#: Short settings for trials in the test suite (FSM_LIVE_CLUSTER_* of each worker).
FAST = {
    "lease_ttl": "2",
    "keepalive_interval": "0.5",
    "fence_margin": "0.5",
    "handover_delay": "0.5",
}
WORKERS = ["w1", "w2", "w3"]


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=20)


class Netns:
    """A bridge namespace ``{tag}hub`` (10.231.N.1: etcd and the server) and one
    namespace per worker (10.231.N.(10+i)), linked by veth pairs.  Only addresses
    inside namespaces made here; :meth:`close` deletes them all."""

    def __init__(self, tag: str, workers: list[str], subnet: int = 231) -> None:
        self.tag = tag
        self.hub = f"{tag}hub"
        self.hub_ip = f"10.{subnet}.0.1"
        self.ips: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self._made: list[str] = []
        try:
            run("ip", "netns", "add", self.hub)
            self._made.append(self.hub)
            self._in(self.hub, "ip", "link", "set", "lo", "up")
            self._in(self.hub, "ip", "link", "add", "br0", "type", "bridge")
            self._in(self.hub, "ip", "link", "set", "br0", "up")
            self._in(self.hub, "ip", "addr", "add", f"{self.hub_ip}/24", "dev", "br0")
            for index, worker in enumerate(workers):
                self.add(worker, f"10.{subnet}.0.{10 + index}")
        except BaseException:
            self.close()
            raise

    def _in(self, namespace: str, *command: str) -> None:
        run("ip", "netns", "exec", namespace, *command)

    def add(self, worker: str, ip: str) -> None:
        name = f"{self.tag}{len(self.names)}"
        run("ip", "netns", "add", name)
        self._made.append(name)
        here, there = f"{name}a", f"{name}b"
        run("ip", "link", "add", here, "type", "veth", "peer", "name", there)
        run("ip", "link", "set", here, "netns", name)
        run("ip", "link", "set", there, "netns", self.hub)
        self._in(self.hub, "ip", "link", "set", there, "master", "br0")
        self._in(self.hub, "ip", "link", "set", there, "up")
        self._in(name, "ip", "link", "set", "lo", "up")
        self._in(name, "ip", "addr", "add", f"{ip}/24", "dev", here)
        self._in(name, "ip", "link", "set", here, "up")
        self.ips[worker], self.names[worker] = ip, name

    def prefix(self, worker: str | None) -> list[str]:
        """The command prefix that runs a program in ``worker``'s namespace (None: the hub)."""
        return ["ip", "netns", "exec", self.hub if worker is None else self.names[worker]]

    def cut_from(self, worker: str, address: str, port: int) -> None:
        """Drop every packet between ``worker`` and ``address:port`` (TCP, both ways,
        silently: no reset); the rest of ``address`` stays reachable."""
        name = self.names[worker]
        self._in(
            name,
            "iptables",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            address,
            "--dport",
            str(port),
            "-j",
            "DROP",
        )
        self._in(
            name,
            "iptables",
            "-A",
            "INPUT",
            "-p",
            "tcp",
            "-s",
            address,
            "--sport",
            str(port),
            "-j",
            "DROP",
        )

    def heal(self, worker: str) -> None:
        name = self.names[worker]
        self._in(name, "iptables", "-F")
        self._in(name, "ip", "link", "set", f"{name}a", "up")

    def isolate(self, worker: str) -> None:
        """Take ``worker``'s only link down: cut from everything."""
        name = self.names[worker]
        self._in(name, "ip", "link", "set", f"{name}a", "down")

    def close(self) -> None:
        for name in reversed(self._made):
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                run("ip", "netns", "delete", name)
        self._made.clear()


class Recorder:
    """``python -m fsm_live.testing.recorder`` in its own process."""

    def __init__(self, host: str, prefix: list[str], push_interval: float = 0.5) -> None:
        port = free_port() if not prefix else 18765
        self.process = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "fsm_live.testing.recorder",
                "--host",
                host,
                "--port",
                str(port),
                "--push-interval",
                str(push_interval),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("port "), line
        self.url = f"ws://{host}:{int(line.split()[1])}/"

    def report(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("report\n")
        self.process.stdin.flush()
        return dict(json.loads(self.process.stdout.readline()))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()


def write_fleet(directory: Path, url: str, accounts: int) -> Path:
    """A fleet file of ``accounts`` lwp accounts ``a000``... against ``url``."""
    cookies = directory / "cookies"
    cookies.mkdir(exist_ok=True)
    lines = ["[defaults]", "close_timeout = 2", ""]
    for index in range(accounts):
        key = f"a{index:03d}"
        (cookies / key).write_text(f"unb={key}\n")
        lines += [
            f"[accounts.{key}]",
            f'url = "{url}"',
            'protocol = "lwp"',
            f'cookies_file = "cookies/{key}"',
            "",
        ]
    path = directory / "fleet.toml"
    path.write_text("\n".join(lines))
    return path


class Rig:
    """etcd, the recorder and workers (see the module docstring); a context manager."""

    def __init__(
        self,
        directory: Path,
        *,
        accounts: int,
        workers: list[str],
        settings: Mapping[str, str] | None = None,
        netns: str | None = None,
    ) -> None:
        self.directory = directory
        self.accounts = accounts
        self.names = workers
        self.settings = dict(settings or {})
        self.net: Netns | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._stack = contextlib.ExitStack()
        try:
            if netns is not None:
                self.net = self._stack.enter_context(contextlib.closing(Netns(netns, workers)))
                host, prefix = self.net.hub_ip, self.net.prefix(None)
                self.etcd = self._stack.enter_context(EtcdServer(host=host, netns=self.net.hub))
            else:
                host, prefix = "127.0.0.1", []
                self.etcd = self._stack.enter_context(EtcdServer())
            self.recorder = Recorder(host, prefix)
            self._stack.callback(self.recorder.close)
            self._stack.callback(self.kill_all)
            self.fleet_file = write_fleet(directory, self.recorder.url, accounts)
            for name in workers:
                self.start(name)
        except BaseException:
            self._stack.close()
            raise

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def start(self, name: str) -> None:
        old = self.workers.get(name)
        if old is not None:
            old.wait(30)  # a worker started again: its previous process is reaped first
        env = {
            **os.environ,
            **{f"FSM_LIVE_CLUSTER_{k.upper()}": v for k, v in self.settings.items()},
        }
        prefix = [] if self.net is None else self.net.prefix(name)
        log = open(self.directory / f"{name}.log", "ab")  # noqa: SIM115
        self.workers[name] = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "fsm_live",
                "fleet",
                str(self.fleet_file),
                "--coordinator",
                self.etcd.url,
                "--worker-id",
                name,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.directory,
        )
        log.close()

    def signal(self, name: str, signum: signal.Signals) -> None:
        self.workers[name].send_signal(signum)

    def wait_exit(self, name: str, timeout: float) -> int:
        return self.workers[name].wait(timeout)

    def kill_all(self) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                with contextlib.suppress(OSError):
                    process.send_signal(signal.SIGCONT)
                process.kill()
                process.wait()

    def wait_until(self, done: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """Poll the recorder's report every 0.1 s until ``done(report)``; the last report
        (AssertionError with it after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            report = self.recorder.report()
            if done(report):
                return report
            if time.monotonic() > deadline:
                raise AssertionError(f"not reached in {timeout} s: {summary(report)}")
            time.sleep(0.1)

    def one_each(self, report: dict[str, Any]) -> bool:
        """Every account has exactly one open session."""
        open_ = report["open"]
        return len(open_) == self.accounts and all(n == 1 for n in open_.values())

    def wait_one_each(self, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait_until(self.one_each, timeout)


def summary(report: dict[str, Any]) -> str:
    open_ = report["open"]
    return (
        f"{report['sessions']} sessions, {len(open_)} accounts seen, "
        f"{sum(1 for n in open_.values() if n == 1)} with one open, "
        f"{sum(1 for n in open_.values() if n > 1)} with more, "
        f"{report['stale_frames']} stale frames"
    )


def gaps(report: dict[str, Any], after: float) -> list[float]:
    """For each account whose session changed after ``after`` (time.monotonic()): the
    time from the old session's close to the new one's open (the longest per account)."""
    by_account: dict[str, list[dict[str, Any]]] = {}
    for session in report["all"]:
        by_account.setdefault(session["account"], []).append(session)
    found = []
    for sessions in by_account.values():
        worst = None
        for older, newer in itertools.pairwise(sessions):
            if newer["opened"] > after and older["closed"] is not None:
                gap = newer["opened"] - older["closed"]
                worst = gap if worst is None else max(worst, gap)
        if worst is not None:
            found.append(worst)
    return found


@contextlib.contextmanager
def rig(directory: Path, **options: Any) -> Iterator[Rig]:
    with Rig(directory, **options) as made:
        yield made


def takeover(report: dict[str, Any], since: float, until: float | None = None) -> float | None:
    opened = [
        s["opened"] - since
        for s in report["all"]
        if s["opened"] > since and (until is None or s["opened"] < until)
    ]
    return max(opened) if opened else None


def trial(rig: Rig, kind: str, worker: str, ttl: int) -> dict[str, Any]:
    before = rig.recorder.report()
    at = time.monotonic()
    healed = None
    if kind == "kill":
        rig.signal(worker, signal.SIGKILL)
        time.sleep(0.5)
        rig.wait_one_each(60)
    else:
        assert kind in ("stop", "partition", "isolate")
        if kind == "stop":
            rig.signal(worker, signal.SIGSTOP)
        elif kind == "partition":
            assert rig.net is not None
            rig.net.cut_from(worker, rig.net.hub_ip, rig.etcd.port)
        else:
            assert rig.net is not None
            rig.net.isolate(worker)
        time.sleep(ttl + 3)
        during = rig.recorder.report()
        healed = time.monotonic()
        if kind == "stop":
            rig.signal(worker, signal.SIGCONT)
        else:
            assert rig.net is not None
            rig.net.heal(worker)
        del during
    time.sleep(1)
    report = rig.wait_one_each(90)
    took = takeover(report, at, healed)
    if kind == "kill":
        rig.start(worker)
    time.sleep(ttl + 2)  # the worker back, its share moved back to it (revoke before assign)
    report = rig.wait_one_each(90)
    return {
        "kind": kind,
        "worker": worker,
        "takeover": took,
        "stale_frames": report["stale_frames"] - before["stale_frames"],
        "sessions": report["sessions"] - before["sessions"],
    }
