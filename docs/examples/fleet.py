"""Connections by key in one Fleet: add, wait, replace, remove, read the figures, close."""

from __future__ import annotations

from collections import Counter

import anyio
from websockets.asyncio.server import ServerConnection, serve

import fsm_live


async def echo(websocket: ServerConnection) -> None:
    async for message in websocket:
        await websocket.send(message)


async def main() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        config = fsm_live.Config(heartbeat_interval=5, heartbeat_timeout=12)
        transitions: Counter[str] = Counter()

        async with fsm_live.Fleet(close_timeout=5) as fleet:
            fleet.on_transition(lambda key, record: transitions.update([key]))
            for key in ("alice", "bob", "carol"):
                await fleet.add(key, url, protocol="json", config=config)
            while fleet.count("CONNECTED") < len(fleet):
                await fleet.wait_changed()
            print("connected:", fleet.keys())

            bob = await fleet.replace("bob", url, protocol="ping", config=config)
            await bob.wait_connected()
            await fleet.remove("alice")
            print("members:", fleet.keys(), "- bob is the new one:", fleet["bob"] is bob)

            stats = fleet.stats()
            print("states:", {name: n for name, n in stats.states.items() if n})
            print("transitions so far:", stats.transitions_total, "- connects now:", stats.connects)
        # Leaving the block closed every member at once; they stay readable.
        print("after close:", {name: n for name, n in fleet.stats().states.items() if n})
        print("transitions by key:", dict(sorted(transitions.items())))


if __name__ == "__main__":
    anyio.run(main)
