"""The runtime: what runs a connection's lifecycle (private; see docs/architecture.md).

One :class:`~fsm_live._runtime.engine.Engine` per connection owns its links and
reacts to events (bytes received, a timer due, an application call); it feeds
websockets' Sans-I/O ``ClientProtocol`` and the lifecycle core, and carries out
what both return.  The modules around it: the byte links it drives (``links``:
an ``asyncio.Protocol``, or tasks over an anyio byte stream), its timer
(``timers``), the work that must await (``jobs``), the application's side
(``inbox``, ``outbox``) and the bookkeeping (``dedup``, ``stats``, ``trace``).
"""
