"""The lwp protocol against the project's own server: credentials, send, request, receive.

Run ``fsm-live serve --port 8765`` and ``python docs/examples/lwp.py ws://127.0.0.1:8765/``,
or with no argument: the example then starts the same server (``LwpServer``) itself.
"""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack

import anyio

import fsm_live
from fsm_live.credentials import Secret
from fsm_live.lwp.credentials import lwp_credentials
from fsm_live.lwp.server import LwpServer


async def main(url: str | None) -> None:
    async with AsyncExitStack() as stack:
        if url is None:  # what `fsm-live serve` runs
            server = await stack.enter_async_context(LwpServer())
            url = f"ws://127.0.0.1:{server.port}/"
        # Cookies as a browser has them; unb is the user id.  The access token comes
        # from the server's GET /token (token_url_for(url)), the device id is made up.
        credentials = lwp_credentials(Secret("unb=2206600001; cna=example"), url=url)
        async with fsm_live.connect(url, protocol="lwp", credentials=credentials) as conn:
            await conn.wait_connected()
            print("state", conn.state)
            await conn.send({"lwp": "/r/MessageSend/sendByReceiverScope", "body": [{"text": "hi"}]})
            ack = await conn.request({"lwp": "/r/Conversation/listTop", "body": []}, timeout=10)
            print("request acknowledged with code", ack["code"])
            async for message in conn:  # the server's sync pushes, one item each
                print("received", message)
                break
        print("finally", conn.state)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else None)
