"""``import fsm_live`` where the platform lacks POSIX-only modules (issue 16).

``fcntl`` and ``termios`` exist on Linux and the BSDs only; the runtime reads a
socket's unacknowledged bytes with them where they exist
(:mod:`fsm_live._runtime.links`).  Elsewhere (Windows) importing fsm_live, its
public modules, and making a connection must still work.  A child interpreter
plays that platform: ``sys.modules[name] = None`` makes ``import name`` raise
ImportError, as it does where the module does not exist.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(60)

#: The modules users import (fsm_live's docstring names them), and the one with the
#: platform-only imports.
MODULES = (
    "fsm_live",
    "fsm_live.errors",
    "fsm_live.config",
    "fsm_live.connection",
    "fsm_live.credentials",
    "fsm_live.protocols",
    "fsm_live.lwp",
    "fsm_live.lwp.credentials",
    "fsm_live.lwp.token",
    "fsm_live.transport",
    "fsm_live.transport.memory",
    "fsm_live.core",
    "fsm_live.fleet",
    "fsm_live.testing",
    "fsm_live.fault_proxy",
    "fsm_live.diagram",
    "fsm_live.cli",
    "fsm_live._runtime.links",
)

SCRIPT = textwrap.dedent(
    """
    import importlib
    import sys

    for name in ("fcntl", "termios"):
        sys.modules[name] = None  # import name: ImportError, as on Windows

    for module in {modules!r}:
        importlib.import_module(module)
    import fsm_live

    for name in fsm_live.__all__:  # the lazy exports load their modules now
        getattr(fsm_live, name)
    conn = fsm_live.connect("ws://127.0.0.1:9/feed", protocol="json")
    assert conn.state == "DISCONNECTED", conn.state
    fsm_live.Fleet()  # a fleet, too
    from fsm_live._runtime import links

    assert links.fcntl is None and links.termios is None  # the fallback was taken
    assert sys.modules["fcntl"] is None and sys.modules["termios"] is None
    print("ok")
    """
)


def test_fsm_live_imports_and_connects_without_fcntl_and_termios() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(modules=MODULES)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"
