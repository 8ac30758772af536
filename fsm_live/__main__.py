"""``python -m fsm_live``: the ``fsm-live`` command line (see :mod:`fsm_live.cli`)."""

from __future__ import annotations

from fsm_live.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
