"""A throwaway etcd for tests: Debian's ``etcd-server`` (or any ``etcd`` on PATH) in a
temporary directory, on free ports, stopped and removed at the end.

::

    with EtcdServer() as etcd:
        coordinator = EtcdCoordinator(etcd.endpoint, worker_id="w1")

One member, no TLS, data in a fresh directory; ``host`` may be an address inside a
network namespace when ``netns`` names it (the process then runs under
``ip netns exec``, as root).  Starting waits until the client port answers (about
a second on a 2-core machine); :class:`EtcdUnavailable` if ``etcd`` is missing or
does not come up within ``start_timeout``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from fsm_live.errors import FsmLiveError

__all__ = ("EtcdNotFound", "EtcdServer", "free_port")

#: Where Debian's etcd-server puts the binary, besides PATH.
_CANDIDATES: Final = ("etcd", "/usr/bin/etcd", "/usr/local/bin/etcd")


class EtcdNotFound(FsmLiveError, RuntimeError):
    """No ``etcd`` binary, or it did not start."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_etcd() -> str | None:
    """The etcd binary's path, or None."""
    for candidate in _CANDIDATES:
        found = shutil.which(candidate)
        if found is not None:
            return found
    return None


class EtcdServer:
    """One etcd member in its own temporary directory; a context manager."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        netns: str | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        self.host = host
        self.port = port or free_port(host if netns is None else "127.0.0.1")
        self.peer_port = free_port(host if netns is None else "127.0.0.1")
        self.netns = netns
        self.start_timeout = start_timeout
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """``HOST:PORT`` for :class:`~fsm_live.cluster.EtcdCoordinator`."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``etcd://HOST:PORT`` for ``fsm-live fleet --coordinator``."""
        return f"etcd://{self.endpoint}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        binary = find_etcd()
        if binary is None:
            raise EtcdNotFound("no etcd binary on PATH (Debian: apt-get install etcd-server)")
        self._dir = tempfile.TemporaryDirectory(prefix="fsm_live-etcd-")
        data = Path(self._dir.name)
        client = f"http://{self.host}:{self.port}"
        peer = f"http://{self.host}:{self.peer_port}"
        command = [
            binary,
            "--name=test",
            f"--data-dir={data / 'data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=test={peer}",
        ]
        if self.netns is not None:
            command = ["ip", "netns", "exec", self.netns, *command]
        with open(data / "etcd.log", "wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                output = (data / "etcd.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise EtcdNotFound(f"etcd exited with {self._process.returncode}: {output}")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise EtcdNotFound(f"etcd did not answer on {self.endpoint} within {self.start_timeout} s")

    def _answers(self) -> bool:
        """Whether etcd's health endpoint says so (through the namespace if any)."""
        if self.netns is not None:
            probe = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.netns,
                    "etcdctl",
                    f"--endpoints={self.endpoint}",
                    "--dial-timeout=1s",
                    "endpoint",
                    "health",
                ],
                capture_output=True,
                check=False,
                env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
            )
            return probe.returncode == 0
        with (
            contextlib.suppress(OSError),
            socket.create_connection((self.host, self.port), timeout=0.5) as sock,
        ):
            sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            return b'"health":"true"' in sock.recv(4096)
        return False

    def stop(self) -> None:
        """Stop etcd (SIGTERM, then SIGKILL after 5 s) and remove its directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
