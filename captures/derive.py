#!/usr/bin/env python3
"""Make the captures of shapes that record.py's scenarios do not produce: what a capture edge meets in the field.

* ``one-sided.pcapng`` -- real peers (websockets client and server on loopback), but the capture filter keeps one
  direction of each connection, as a capture filter or asymmetric routing does: connection 0 (port 47201) with
  ``tcp dst port 47201`` (client to server only), connection 1 (port 47202) with ``tcp src port 47202`` (server to
  client only). Needs root (dumpcap on ``lo``); recorded with record.py's own servers, clients and dumpcap driver.
* ``retransmit-conflict.pcapng`` -- derived from ``echo.pcapng``: real TCP stacks do not retransmit different bytes
  for the same sequence range, so the copy is made here. The client's segment carrying the "hello" text frame is
  duplicated right after itself with the frame's text swapped to "HELLO" (same length, same mask, valid UTF-8), IP
  and TCP checksums recomputed by scapy. The first copy is the one a reader should use (as Wireshark does), so the
  file still decodes to the echo scenario, plus one capture notice.

Examples:
    sudo python captures/derive.py                 # both
    python captures/derive.py retransmit-conflict  # no root needed for the derived one
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from captures.scenarios import (  # noqa: E402
    Connection,
    Event,
    Ping,
    Pong,
    Scenario,
    binary,
    close_pair,
    echo,
    text,
)

log = logging.getLogger("derive")

# -- one-sided ----------------------------------------------------------------------------------------------------

ONE_SIDED_CLIENT_PORT = 47201  # only the client's packets are captured
ONE_SIDED_SERVER_PORT = 47202  # only the server's packets are captured
ONE_SIDED_FILTER = f"tcp dst port {ONE_SIDED_CLIENT_PORT} or tcp src port {ONE_SIDED_SERVER_PORT}"


def _one_sided_events() -> tuple[Event, ...]:
    return (
        *echo(text("c2s", "only one side of this is in the capture")),
        *echo(binary("c2s", bytes(range(40)))),
        Ping("c2s", b"are you there"),
        Pong("s2c", b"are you there"),
        *echo(text("c2s", "héllo ✓")),
        text("s2c", "the server speaks unasked"),
        *close_pair("c2s", 1000, "done"),
    )


ONE_SIDED = Scenario(
    "one-sided",
    "Two echo connections; the capture filter keeps client-to-server packets of the first (port 47201) and "
    "server-to-client packets of the second (port 47202).",
    tuple(
        Connection(
            name=f"one-sided-{index}",
            server_port=port,
            client="websockets",
            server="websockets",
            path=f"/one-sided/{index}",
            events=_one_sided_events(),
        )
        for index, port in enumerate((ONE_SIDED_CLIENT_PORT, ONE_SIDED_SERVER_PORT))
    ),
    tcp_streams=2,
    peers="websockets client <-> websockets server",
    what_to_look_at="stream 0 has only client frames, stream 1 only server frames",
)


async def record_one_sided(outdir: Path) -> Path:
    """Run the scenario's real peers under dumpcap with a capture filter that keeps one direction per connection."""
    from captures import record  # needs websockets and websocket-client: only imported to record

    out = outdir / "one-sided.pcapng"
    record.ports_free(ONE_SIDED)
    dump = record.Dumpcap(ONE_SIDED.ports, out)
    dump.filter = ONE_SIDED_FILTER
    try:
        async with record.Servers(ONE_SIDED) as servers:
            await dump.start()
            for connection in ONE_SIDED.connections:
                await record.websockets_client(connection, servers)
                await asyncio.sleep(0.1)  # keep connections apart in time
            servers.raise_errors()
        await dump.stop()
    finally:
        dump.kill()
    streams = record.tshark_streams(out)
    record.check(streams == ONE_SIDED.tcp_streams, f"{out.name}: tshark sees {streams} TCP streams, expected 2")
    log.info("%s: OK, %d bytes", out.name, out.stat().st_size)
    return out


# -- retransmit-conflict ------------------------------------------------------------------------------------------

CONFLICT_SOURCE = "echo.pcapng"
CONFLICT_ORIGINAL_TEXT = "hello"
CONFLICT_ALTERED_TEXT = "HELLO"


@dataclass(frozen=True)
class ConflictCopy:
    """Where the altered copy went: frame numbers (1-based) in the derived file."""

    original_frame: int
    copy_frame: int


def _swap_masked_text(payload: bytes, old: str, new: str) -> bytes | None:
    """`payload` (one whole masked client text frame carrying `old`) carrying `new` instead, else None."""
    encoded_old, encoded_new = old.encode(), new.encode()
    if len(payload) != 6 + len(encoded_old) or payload[0] != 0x81 or payload[1] != 0x80 | len(encoded_old):
        return None
    mask = payload[2:6]
    if bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload[6:])) != encoded_old:
        return None
    return payload[:6] + bytes(byte ^ mask[i % 4] for i, byte in enumerate(encoded_new))


def derive_retransmit_conflict(source: Path, out: Path) -> ConflictCopy:
    """Copy `source` to `out` with one conflicting retransmission of the client's "hello" frame after the original."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import RawPcapNgWriter

    from wsinspect.capture import CaptureFile

    writer = RawPcapNgWriter(str(out))
    copy: ConflictCopy | None = None
    written = 0
    with CaptureFile(source) as capture:
        for record in capture:
            data = record.data
            packets = [data]
            if copy is None:
                frame = Ether(data)
                if TCP in frame and Raw in frame:
                    altered = _swap_masked_text(bytes(frame[Raw].load), CONFLICT_ORIGINAL_TEXT, CONFLICT_ALTERED_TEXT)
                    if altered is not None:
                        frame[Raw].load = altered
                        del frame[IP].chksum  # scapy recomputes deleted checksums when building
                        del frame[TCP].chksum
                        packets.append(bytes(frame))
                        copy = ConflictCopy(written + 1, written + 2)
            for packet in packets:
                if written == 0:
                    writer.linktype = record.linktype
                    writer.write_header(None)
                # Same time as the original (µs resolution: scapy's writer); the copy follows it at once.
                writer.write_packet(packet, sec=record.time, wirelen=record.wire_length + len(packet) - len(data))
                written += 1
    writer.close()
    if copy is None:
        raise RuntimeError(f"{source}: no client segment carrying one masked {CONFLICT_ORIGINAL_TEXT!r} text frame")
    out.chmod(0o644)
    log.info("%s: altered copy of frame %d written as frame %d", out.name, copy.original_frame, copy.copy_frame)
    return copy


CAPTURES = ("one-sided", "retransmit-conflict")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"captures to make: {', '.join(CAPTURES)} (default: all)")
    parser.add_argument("--outdir", type=Path, default=HERE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    unknown = set(args.names) - set(CAPTURES)
    if unknown:
        parser.error(f"unknown capture(s): {', '.join(sorted(unknown))}")
    names = args.names or CAPTURES
    if "one-sided" in names:
        if shutil.which("dumpcap") is None or os.geteuid() != 0:
            parser.error("recording one-sided.pcapng needs dumpcap and root")
        asyncio.run(record_one_sided(args.outdir))
    if "retransmit-conflict" in names:
        derive_retransmit_conflict(HERE / CONFLICT_SOURCE, args.outdir / "retransmit-conflict.pcapng")
    return 0


if __name__ == "__main__":
    sys.exit(main())
