"""The messaging client's profile, in one room.

* :mod:`~fsm_live.lwp.protocol`: the ``lwp`` adapter (registration, heartbeats
  acked by mid, sync pushes and their acks);
* :mod:`~fsm_live.lwp.credentials`: cookie credentials with token and cookie
  refresh and an escalation hook, and reading an account's cookies;
* :mod:`~fsm_live.lwp.token`: the access token fetched with one HTTP GET;
* :mod:`~fsm_live.lwp.server`, :mod:`~fsm_live.lwp.memory`: a local lwp server
  (``fsm-live serve``) on real sockets or on the in-memory network, sharing the
  session logic of :mod:`~fsm_live.lwp.service`, with faults from
  :mod:`~fsm_live.lwp.faults` on a schedule or on demand.

See docs/protocol.md and docs/credentials.md.
"""

from __future__ import annotations

from fsm_live.lwp.credentials import CookieCredentials, lwp_credentials
from fsm_live.lwp.protocol import LwpCredentials, LwpProtocol

__all__ = ("CookieCredentials", "LwpCredentials", "LwpProtocol", "lwp_credentials")
