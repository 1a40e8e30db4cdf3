"""Many clients each part-way through a large frame, against a real ``wsinspect serve``: what they make the server
hold together is bounded by --max-memory (finding 2 of the 2026-11-30 review: 150 clients each 2 MB into a frame
grew the server from 28 MB to 322 MB). The clients whose frames would take the budget past its limit are closed
with 1013 (try again later) and a log line that names the flag; a good client is served while the rest still hold
their frames open."""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import time
from collections.abc import Callable

from hostile_support import MASK, MIB, PeakMemory, close_code, good_client_is_served, raw_client, read_frames, rss
from serve_support import Server

CLIENTS = 80
CLAIMED = 2_000_000  # under the default --max-frame (2M): each frame alone is allowed
SENT = 1_000_000  # how far into its frame each client goes (unbounded, the clients would hold 80 MB together)
BUDGET = 8 * MIB
# RSS beyond baseline + budget that the attack may cause at its peak: what is being read and decoded at the moment
# (a read of up to 256 KiB per connection), frames under 64 KiB that are never let go, allocator slack.
SLACK = 24 * MIB


def part_of_a_big_frame(port: int) -> socket.socket:
    sock, _ = raw_client(port)
    sock.settimeout(5)
    header = struct.pack("!BBQ", 0x82, 0x80 | 127, CLAIMED) + MASK
    # Closed with 1013 while still sending: the close frame may still be read (or lost to the reset).
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(header + bytes(SENT))
    return sock


def over_budget_lines(server: Server) -> list[str]:
    """The log lines (kept under --quiet) saying which client was closed for the budget, and naming the flag."""
    return re.findall(r"#\d+ closed with 1013 \(try again later\): [^#]*--max-memory \(8,388,608 bytes\)",
                      server.stdout.replace("\n", " "))


def test_clients_part_way_through_big_frames_share_one_memory_budget(serve: Callable[..., Server]) -> None:
    server = serve("--quiet", "--max-memory", "8M")
    good_client_is_served(server, "warm-up")
    base = rss(server.pid)
    with PeakMemory(server.pid) as memory:
        clients = [part_of_a_big_frame(server.port) for _ in range(CLIENTS)]
        good_client_is_served(server)  # while the others still hold their frames open
    codes = [close_code(read_frames(sock, timeout=0.5)) for sock in clients]
    for sock in clients:
        sock.close()
    growth = memory.peak - base
    print(f"\n{CLIENTS} clients each {SENT:,} bytes into a {CLAIMED:,}-byte frame, --max-memory 8M: baseline "
          f"{base / MIB:.1f} MiB, peak {memory.peak / MIB:.1f} MiB (+{growth / MIB:.1f} MiB); close codes read: "
          f"{codes.count(1013)} x 1013")
    assert growth <= BUDGET + SLACK, f"the server grew by {growth / MIB:.1f} MiB"
    # Each frame that no longer fits closes its client: 8 MiB hold about 8 of them, so most clients are closed.
    deadline = time.monotonic() + 10
    while len(closed := over_budget_lines(server)) < CLIENTS - 16 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(closed) >= CLIENTS - 16, server.stdout[-2000:]
    assert set(codes) <= {1013, None}, codes  # None: the reset came before the close frame could be read
    assert codes.count(1013) > 0, codes
    good_client_is_served(server, "after the storm")
