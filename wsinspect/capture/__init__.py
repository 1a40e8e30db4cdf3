"""Capture edge: pcap/pcapng files to per-connection, per-direction reassembled TCP byte streams.

Knows nothing about WebSocket. `read_flows(path)` is the one-call entry; the pieces are
CaptureFile (records), decode_tcp (headers) and TcpReassembler (streams).
"""

from wsinspect.capture.files import CaptureError, CaptureFile, RawPacket
from wsinspect.capture.packets import TcpSegment, decode_tcp
from wsinspect.capture.reassembly import (
    Direction,
    FlowClosed,
    FlowData,
    FlowGap,
    FlowItem,
    FlowNotice,
    FlowOpened,
    FlowReader,
    TcpReassembler,
    read_flows,
)

__all__ = [
    "CaptureError",
    "CaptureFile",
    "Direction",
    "FlowClosed",
    "FlowData",
    "FlowGap",
    "FlowItem",
    "FlowNotice",
    "FlowOpened",
    "FlowReader",
    "RawPacket",
    "TcpReassembler",
    "TcpSegment",
    "decode_tcp",
    "read_flows",
]
