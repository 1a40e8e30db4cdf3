"""Live capture: an interface's packets, as they cross it, turned into the RawPackets a capture file gives.

``LiveCapture`` is a ``trace.PacketSource``, so ``CaptureTrace`` decodes a live interface exactly as it decodes a
file, and every view of ``read`` works on it unchanged.

How packets are taken off the wire, and why not scapy's ``sniff()``: ``sniff``/``AsyncSniffer`` build a scapy
``Packet`` per packet (all layers dissected: far more work than decoding WebSocket), and its ``L2ListenSocket``,
whose ``recv_raw`` does give raw bytes, reads at most 65,535 bytes a packet (a loopback packet is up to 65,549),
and sees every loopback packet twice (once leaving, once arriving). So this module opens the Linux packet socket
itself, as libpcap does, with a receive ring (``TPACKET_V3``): memory shared with the kernel, which fills it with
packets and their nanosecond timestamps in blocks, each handed over when full or after ``BLOCK_TIMEOUT_MS``; so no
system call is made per packet, only a wait per block (reading the socket costs a call or three per packet, about as
much CPU as decoding it). scapy does what is worth not rewriting: libpcap's filter compiler (``compile_filter``),
whose BPF program is attached to the socket so the kernel drops unwanted packets before they reach the ring. Linux
only (``AF_PACKET``).
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

from wsinspect.capture.files import RawPacket, Record, new_raw_packet

__all__ = ["ANY_INTERFACE", "Interface", "LiveCapture", "LiveCaptureError", "list_interfaces", "privilege_hint"]

ANY_INTERFACE = "any"  # as in tcpdump and tshark: every interface at once
# tcpdump's default snapshot length, and what scapy's pcapng writer declares: longer packets (only GSO on loopback
# makes them) are kept cut, with their length on the wire.
SNAPSHOT_BYTES = 262_144
# The receive ring, which holds packets for us while the decoder is busy (sniff -B); beyond it, drops. Four times
# tshark's default (dumpcap spools to a file as fast as packets come, and tshark decodes from that file: it can afford
# a small one).
KERNEL_BUFFER_MIB = 8
# The ring is cut in blocks, each handed to us whole: when full, or BLOCK_TIMEOUT_MS after its first packet (how late,
# at most, a packet of quiet traffic is shown). A block handed over part full still takes its whole size, so blocks
# are small enough that quiet traffic does not fill the ring with near-empty ones (-B 8: 64 blocks, 1.3 s of them),
# and large enough for a loopback packet (65,549 bytes; a longer one would be kept cut, with its length on the wire).
RING_BLOCK_BYTES = 128 * 1024
BLOCK_TIMEOUT_MS = 20
POLL_SECONDS = 0.2  # how long a wait lasts before a stop asked for by a signal is noticed
# After a stop is asked for, the packets the kernel already holds are still read (a conversation's last packets are
# often among them), for at most this long: traffic that never pauses must not keep a stopped capture going.
STOP_DRAIN_SECONDS = 1.0

_ETH_P_ALL = 0x0003
_SOL_PACKET = 263
_PACKET_STATISTICS = 6
_PACKET_IGNORE_OUTGOING = 23  # Linux 4.20+
_SO_ATTACH_FILTER = 26
_BPF_RET_CONSTANT = 0x06  # BPF_RET | BPF_K: return k, the bytes of the packet to keep (0: drop it)
_PACKET_RX_RING = 5
_PACKET_VERSION = 10
_TPACKET_V3 = 2
_TP_STATUS_USER = 1  # a block's status: the kernel has handed it to us (0: it is the kernel's again)
_RING_FRAME_BYTES = 2048  # TPACKET_V3 packs packets of any size in a block; the kernel checks a frame size all the same
_PACKET_OUTGOING = 4
_ARPHRD_ETHER = 1
_ARPHRD_LOOPBACK = 772
_ARPHRD_NONE = 0xFFFE  # tun devices, WireGuard: IP packets with no link-layer header
_LINKTYPE_ETHERNET = 1
_LINKTYPE_RAW = 101
_LINKTYPE_LINUX_SLL = 113
_DLT_EN10MB = 1
_DLT_RAW = 12  # libpcap's number for raw IP (LINKTYPE_RAW in files)
_SLL_HEADER = struct.Struct("!HHH8sH")  # packet type, ARPHRD type, address length, address, protocol
# struct tpacket_block_desc from its block_status on: block_status, num_pkts, offset_to_first_pkt, blk_len (the bytes
# of the block in use, from its start) (linux/if_packet.h)
_BLOCK_STATUS_OFFSET = 8
_BLOCK_HEADER = struct.Struct("=IIII")
_BLOCK_STATUS = struct.Struct("=I")
# struct tpacket3_hdr up to tp_mac: tp_next_offset, tp_sec, tp_nsec, tp_snaplen, tp_len, tp_status, tp_mac
_PACKET_HEADER = struct.Struct("=IIIIIIH")
_LINK_ADDRESS_OFFSET = 48  # struct sockaddr_ll, after the tpacket3_hdr (48 bytes, already 16-aligned)
_LINK_ADDRESS = struct.Struct("=H2siHBB8s")  # family, protocol (network order), ifindex, hatype, pkttype, halen, addr


class LiveCaptureError(Exception):
    """Capturing cannot start; the message is one line meant for a person."""


@dataclass(frozen=True, slots=True)
class Interface:
    number: int  # the kernel's interface index (0 for "any"); ``-i NUMBER`` picks it, as in tshark
    name: str
    loopback: bool


def list_interfaces() -> list[Interface]:
    """The interfaces one can capture on, in the kernel's order, then ``any``. Needs no privilege."""
    found = [Interface(index, name, _link_type_of(name) == _ARPHRD_LOOPBACK) for index, name in socket.if_nameindex()]
    return [*sorted(found, key=lambda interface: interface.number), Interface(0, ANY_INTERFACE, False)]


def privilege_hint() -> str:
    """What to do when packet sockets are refused: the exact command for this Python."""
    python = os.path.realpath(sys.executable)
    return (f"capturing needs root or the CAP_NET_RAW capability: run as root, or give this Python the capability "
            f"with: sudo setcap cap_net_raw,cap_net_admin+eip {python}")


def _link_type_of(name: str) -> int | None:
    """The interface's ARPHRD type, from sysfs (readable by anyone)."""
    try:
        with open(f"/sys/class/net/{name}/type") as file:
            return int(file.read().strip())
    except (OSError, ValueError):
        return None


def _resolve(name: str) -> Interface:
    interfaces = list_interfaces()
    for interface in interfaces:
        if interface.name == name:
            return interface
    if name.isdigit():  # tshark -i 2: the number -D printed
        for interface in interfaces:
            if interface.number == int(name) and interface.name != ANY_INTERFACE:
                return interface
    names = ", ".join(interface.name for interface in interfaces)
    raise LiveCaptureError(f"no interface {name!r}; the interfaces are: {names} (wsinspect sniff -D lists them)")


def _compile_filter(expression: str, dlt: int) -> Any:
    """libpcap's compiler, through scapy (ctypes); a dead handle, so no privilege is needed to check a filter."""
    try:
        from scapy.arch.common import compile_filter
        from scapy.error import Scapy_Exception
    except ImportError as error:  # pragma: no cover - scapy is a dependency
        raise LiveCaptureError(f"cannot compile a capture filter: {error}") from None
    try:
        return compile_filter(expression, linktype=dlt)
    except ImportError:
        raise LiveCaptureError("compiling a capture filter needs libpcap (Debian: apt install libpcap0.8)") from None
    except Scapy_Exception as error:
        # scapy says "Failed to compile filter expression 'X' (libpcap's reason)": the reason is what tells.
        reason = str(error).partition(f"{expression!r} (")[2].removesuffix(")") or str(error)
        raise LiveCaptureError(f"-f {expression!r} is not a filter libpcap can compile: {reason}") from None


class _SockFprog(ctypes.Structure):  # struct sock_fprog (linux/filter.h)
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class LiveCapture:
    """The packets of one interface (or ``any``), as RawPackets numbered from 1, until asked to stop.

    Stops after ``count`` packets, after ``duration`` seconds, or at the first SIGINT/SIGTERM, once the packets
    already captured are read (a second SIGINT interrupts at once). ``before_waiting`` is called each time no packet
    is waiting, so what was shown so far can be written out. With ``record``, every packet is also written to that
    file (pcapng, or pcap for ``.pcap``) as it is captured. ``buffer_mib`` is the size of the receive ring, which
    holds the packets not yet read. ``packets`` counts the packets read; ``dropped`` is what the kernel had to throw
    away because we read too slowly (known after closing).
    """

    size = 0  # a live source has no size: no progress bar
    position = 0
    truncated = False
    problem: str | None = None

    def __init__(self, name: str, *, capture_filter: str | None, count: int | None = None,
                 duration: float | None = None, record: str | None = None,
                 buffer_mib: int = KERNEL_BUFFER_MIB) -> None:
        interface = _resolve(name)
        self.interface = interface.name
        self.capture_filter = capture_filter
        self.count = count
        self.duration = duration
        self.tls_key_logs: list[bytes] = []  # live packets carry no key logs; the trace asks all the same
        self.before_waiting: Callable[[], None] = _nothing
        self.dropped = 0
        self.packets = 0
        self._stop_requested = False
        self._previous_handlers: dict[int, Any] = {}
        # Ethernet-like devices (loopback included) give their link header as it is; devices with none give IP; every
        # other kind, and "any" (whose interfaces differ), give the packet from its IP header, and a Linux cooked
        # header (SLL) is written in front, as libpcap does.
        arphrd = None if interface.name == ANY_INTERFACE else _link_type_of(interface.name)
        if arphrd in (_ARPHRD_ETHER, _ARPHRD_LOOPBACK):
            kind, self.linktype, dlt = socket.SOCK_RAW, _LINKTYPE_ETHERNET, _DLT_EN10MB
        elif arphrd == _ARPHRD_NONE:
            kind, self.linktype, dlt = socket.SOCK_RAW, _LINKTYPE_RAW, _DLT_RAW
        else:
            # The kernel's filter sees these from the IP header, so the filter is compiled for raw IP.
            kind, self.linktype, dlt = socket.SOCK_DGRAM, _LINKTYPE_LINUX_SLL, _DLT_RAW
        program = _compile_filter(capture_filter, dlt) if capture_filter else None
        try:
            # Protocol 0: nothing is received until bind, so no packet gets in before the filter is attached.
            self._socket = socket.socket(socket.AF_PACKET, kind, 0)
        except PermissionError:
            raise LiveCaptureError(privilege_hint()) from None
        except OSError as error:
            raise LiveCaptureError(f"cannot open a packet socket: {error.strerror or error}") from None
        self._recorder: Any = None
        self._ring: mmap.mmap | None = None
        # Every loopback packet passes twice, leaving and arriving: one copy is kept (as libpcap does), the arriving
        # one, which the kernel can keep for us on lo (Linux 4.20+), halving the ring the copies take; on "any" (and
        # an older kernel) the reading loop skips the leaving copies of loopback packets itself.
        self._skip_leaving_loopback = arphrd != _ARPHRD_LOOPBACK
        try:
            if program is not None:
                self._attach(program)
            if arphrd == _ARPHRD_LOOPBACK:
                try:
                    self._socket.setsockopt(_SOL_PACKET, _PACKET_IGNORE_OUTGOING, 1)
                except OSError:
                    self._skip_leaving_loopback = True
            self._ring = self._map_ring(buffer_mib << 20)
            self._bind(interface)
        except OSError as error:
            self.close()
            if isinstance(error, PermissionError):
                raise LiveCaptureError(privilege_hint()) from None
            raise LiveCaptureError(f"cannot capture on {interface.name}: {error.strerror or error}") from None
        except BaseException:
            self.close()
            raise
        self.record = record
        self._recorder_is_pcap = record is not None and record.endswith(".pcap")
        self.record_problem: str | None = None  # why writing the --record file stopped, if it did
        if record is not None:
            try:
                self._recorder = _open_recorder(record, self.linktype)
            except OSError as error:
                self._socket.close()
                raise LiveCaptureError(f"--record {record}: cannot write: {error.strerror or error}") from None

    def _attach(self, program: Any) -> None:
        from scapy.arch.common import free_filter

        try:
            # What the program returns is how many bytes of a packet the kernel keeps: scapy compiles for a snapshot
            # of 65,535 bytes, one loopback packet short (65,549), so each "keep" is raised to SNAPSHOT_BYTES.
            for index in range(program.bf_len):
                instruction = program.bf_insns[index]
                if instruction.code == _BPF_RET_CONSTANT and instruction.k:
                    instruction.k = SNAPSHOT_BYTES
            fprog = _SockFprog(program.bf_len, ctypes.cast(program.bf_insns, ctypes.c_void_p).value)
            self._socket.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, bytes(fprog))
        finally:
            free_filter(program)

    def _map_ring(self, size: int) -> mmap.mmap:
        """The receive ring: ``size`` bytes (at least two blocks) that the kernel fills and we read in place."""
        blocks = max(2, size // RING_BLOCK_BYTES)
        frames = blocks * (RING_BLOCK_BYTES // _RING_FRAME_BYTES)
        self._socket.setsockopt(_SOL_PACKET, _PACKET_VERSION, _TPACKET_V3)
        request = struct.pack("=7I", RING_BLOCK_BYTES, blocks, _RING_FRAME_BYTES, frames, BLOCK_TIMEOUT_MS, 0, 0)
        self._socket.setsockopt(_SOL_PACKET, _PACKET_RX_RING, request)
        self._blocks = blocks
        return mmap.mmap(self._socket.fileno(), blocks * RING_BLOCK_BYTES, mmap.MAP_SHARED,
                         mmap.PROT_READ | mmap.PROT_WRITE)

    def _bind(self, interface: Interface) -> None:
        """Start receiving: from the interface, or from every one for "any" (an interface index of 0, which
        Python's socket.bind has no way to say: it looks names up)."""
        if interface.name != ANY_INTERFACE:
            self._socket.bind((interface.name, _ETH_P_ALL))
            return
        libc = ctypes.CDLL(None, use_errno=True)
        address = _LINK_ADDRESS.pack(socket.AF_PACKET, struct.pack("!H", _ETH_P_ALL), 0, 0, 0, 0, bytes(8))
        if libc.bind(self._socket.fileno(), address, len(address)) != 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number))

    def __enter__(self) -> LiveCapture:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Read the kernel's drop count, close the socket and the record file. Safe to call twice."""
        self._restore_signals()
        if self._socket.fileno() >= 0:
            with contextlib.suppress(OSError):
                _, dropped = struct.unpack("II", self._socket.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8))
                self.dropped += dropped
            if self._ring is not None:
                self._ring.close()
                self._ring = None
            self._socket.close()
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None

    def stop(self) -> None:
        """End the capture once the packets already captured are read (what SIGINT and SIGTERM do)."""
        self._stop_requested = True

    def __iter__(self) -> Iterator[RawPacket]:
        new_packet = new_raw_packet
        for batch in self.record_batches():
            for number, stamp, linktype, buffer, start, end, wire_length in batch:
                yield new_packet(number, stamp, linktype, buffer[start:end], wire_length)

    def record_batches(self) -> Iterator[list[Record]]:
        """Like iterating, but the packets as ``Record`` tuples, a list per block of the ring, as
        ``CaptureFile.record_batches`` gives a file's: a block's bytes are copied out once (and the block handed back
        to the kernel at once), each record a slice of them, so no RawPacket is made nor its bytes copied."""
        self.catch_signals()
        try:
            yield from self._batches()
        finally:
            self._restore_signals()

    def _batches(self) -> Iterator[list[Record]]:
        ring = self._ring
        assert ring is not None, "the capture is closed"
        sock = self._socket
        cooked = self.linktype == _LINKTYPE_LINUX_SLL
        header = _SLL_HEADER.size if cooked else 0
        read_addresses = cooked or self._skip_leaving_loopback
        linktype = self.linktype
        unpack_block = _BLOCK_HEADER.unpack_from
        unpack_packet = _PACKET_HEADER.unpack_from
        unpack_address = _LINK_ADDRESS.unpack_from
        pack_cooked = _SLL_HEADER.pack
        release = _BLOCK_STATUS.pack_into
        deadline = None if self.duration is None else time.monotonic() + self.duration
        count = self.count
        block = 0
        drain_until: float | None = None  # set when a stop is asked for
        waited_after_stop = False
        while count is None or self.packets < count:
            if self._stop_requested:
                if drain_until is None:
                    drain_until = time.monotonic() + STOP_DRAIN_SECONDS
                elif time.monotonic() >= drain_until:
                    break
            base = block * RING_BLOCK_BYTES
            status, packets_in_block, offset, used = unpack_block(ring, base + _BLOCK_STATUS_OFFSET)
            if not status & _TP_STATUS_USER:
                if self._stop_requested:
                    if waited_after_stop:
                        break  # everything captured before the stop has been read
                    waited_after_stop = True  # a block still filling is handed over within BLOCK_TIMEOUT_MS
                self.before_waiting()
                if self._recorder is not None:
                    self._flush_record()
                wait = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - time.monotonic())
                if self._stop_requested:
                    wait = min(wait, 2 * BLOCK_TIMEOUT_MS / 1000)
                if wait <= 0:
                    break
                select.select([sock], [], [], wait)
                continue
            waited_after_stop = False
            data = ring[base:base + (used if offset <= used <= RING_BLOCK_BYTES else RING_BLOCK_BYTES)]
            release(ring, base + _BLOCK_STATUS_OFFSET, 0)  # the kernel may fill it again while we decode
            block = (block + 1) % self._blocks
            batch: list[Record] = []
            number = self.packets
            for _ in range(packets_in_block):
                if number == count:
                    break  # -c N: the packets after the Nth are not wanted
                next_offset, seconds, nanoseconds, kept, length, _, link_start = unpack_packet(data, offset)
                start = offset + link_start
                if read_addresses:
                    _, protocol, _, arphrd, packet_type, address_length, link_address = unpack_address(
                        data, offset + _LINK_ADDRESS_OFFSET)
                    offset += next_offset
                    if packet_type == _PACKET_OUTGOING and arphrd == _ARPHRD_LOOPBACK:
                        continue  # seen again arriving, as libpcap knows: one copy, not a retransmission
                    number += 1
                    if cooked:
                        packet = pack_cooked(packet_type, arphrd, address_length, link_address,
                                             int.from_bytes(protocol, "big")) + data[start:start + kept]
                        batch.append((number, seconds + nanoseconds / 1e9, linktype, packet, 0, len(packet),
                                      header + length))
                        continue
                else:
                    offset += next_offset
                    number += 1
                batch.append((number, seconds + nanoseconds / 1e9, linktype, data, start, start + kept, length))
            self.packets = number
            if batch:
                if self._recorder is not None:
                    for _, stamp, _, buffer, start, end, wire_length in batch:
                        self._record(buffer[start:end], stamp, wire_length)
                        if self._recorder is None:
                            break  # the writing failed: record_problem says why
                yield batch
            if deadline is not None and time.monotonic() >= deadline:
                break

    def _record(self, data: bytes, stamp: float, wire_length: int) -> None:
        """Write a packet to the --record file; a failed write (a full disk) ends the recording, not the capture."""
        try:
            if self._recorder_is_pcap:
                # scapy's pcap writer keeps only the whole seconds of a float: it is given the microseconds apart.
                seconds, microseconds = divmod(round(stamp * 1_000_000), 1_000_000)
                self._recorder.write_packet(data, sec=seconds, usec=microseconds, wirelen=wire_length)
            else:
                self._recorder.write_packet(data, sec=stamp, wirelen=wire_length)
        except OSError as error:
            self._stop_recording(error)

    def _flush_record(self) -> None:
        try:
            self._recorder.flush()
        except OSError as error:
            self._stop_recording(error)

    def _stop_recording(self, error: OSError) -> None:
        self.record_problem = f"writing stopped after {self.packets} packets: {error.strerror or error}"
        with contextlib.suppress(OSError):
            self._recorder.close()
        self._recorder = None

    def catch_signals(self) -> None:
        """The first SIGINT or SIGTERM ends the capture cleanly (the trace then closes what is open and the summary
        is printed); a second SIGINT interrupts at once, in case what follows is stuck. Called by the command before
        it says it is capturing (a Ctrl-C from then on is a clean stop), and again, to no effect, by iterating."""
        if self._previous_handlers:
            return

        def stop(number: int, frame: FrameType | None) -> None:
            self.stop()
            signal.signal(signal.SIGINT, signal.default_int_handler)

        for number in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: the caller stops it with stop()
                previous = signal.getsignal(number)
                if previous is not signal.SIG_IGN:  # ignored by whoever started us (a background job): keep it so
                    self._previous_handlers[number] = previous
                    signal.signal(number, stop)

    def _restore_signals(self) -> None:
        for number, previous in self._previous_handlers.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(number, previous)
        self._previous_handlers.clear()


def _nothing() -> None:
    return None


def _open_recorder(path: str, linktype: int) -> Any:
    """scapy's raw writer: pcap for a ``.pcap`` name, else pcapng (as ``serve --record`` chooses)."""
    from scapy.utils import RawPcapNgWriter, RawPcapWriter

    writer: Any
    if path.endswith(".pcap"):
        writer = RawPcapWriter(path, linktype=linktype, snaplen=SNAPSHOT_BYTES)
    else:
        writer = RawPcapNgWriter(path)
        writer.linktype = linktype
    writer.write_header(None)
    return writer
