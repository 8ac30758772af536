"""The sans-I/O core: a connection's lifecycle as a pure state machine.

Nothing in this package sleeps, opens a socket, or imports anyio, websockets or
rich.  Events stamped with ``now`` go in; effects and the next deadline come out.
"""
