"""The reference echo server for bench/serve_bench.py: the ``websockets`` library's own asyncio server.

    python bench/websockets_echo.py --port 8765 [--no-compression]

Every message goes back as it came (text as text, binary as binary). permessage-deflate is the library's default
(on) unless --no-compression. Stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from websockets.asyncio.server import ServerConnection, serve


async def echo(websocket: ServerConnection) -> None:
    async for message in websocket:
        await websocket.send(message)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--no-compression", action="store_true")
    args = parser.parse_args()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Library defaults throughout (max_size 1 MiB, like wsinspect serve's --max-message).
    async with serve(echo, args.host, args.port, compression=None if args.no_compression else "deflate"):
        print(f"websockets echo on ws://{args.host}:{args.port}/", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
