"""Connect, send, receive, watch the state, close: fsm_live in one screen."""

from __future__ import annotations

import anyio
from websockets.asyncio.server import ServerConnection, serve

import fsm_live


async def echo(websocket: ServerConnection) -> None:
    async for message in websocket:
        await websocket.send(message)


async def main() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        config = fsm_live.Config(heartbeat_interval=5, heartbeat_timeout=12)

        async with fsm_live.connect(
            f"ws://127.0.0.1:{port}/", protocol="json", config=config
        ) as conn:
            conn.on_transition(lambda r: print(f"{r.source} -> {r.dest} ({r.trigger})"))
            await conn.wait_connected()
            for n in range(3):
                await conn.send({"id": n, "text": f"hello {n}"})
            async for message in conn:
                print("received", message)
                if message["id"] == 2:
                    break
            stats = conn.stats()
            print(f"{stats.state}: {stats.messages_out} sent, {stats.messages_in} received")
        print("finally", conn.state)


if __name__ == "__main__":
    anyio.run(main)
