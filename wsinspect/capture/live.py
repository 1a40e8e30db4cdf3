"""Live capture: an interface's packets, as they cross it, turned into the RawPackets a capture file gives.

``LiveCapture`` is a ``trace.PacketSource``, so ``CaptureTrace`` decodes a live interface exactly as it decodes a
file, and every view of ``read`` works on it unchanged.

How packets are taken off the wire, and why not scapy's ``sniff()``: ``sniff``/``AsyncSniffer`` build a scapy
``Packet`` per packet (all layers dissected: far more work than decoding WebSocket), and its ``L2ListenSocket``,
whose ``recv_raw`` does give raw bytes, reads at most 65,535 bytes a packet (a loopback packet is up to 65,549),
and sees every loopback packet twice (once leaving, once arriving). So this module opens the Linux packet socket
itself and reads straight into one reused buffer, with the kernel's nanosecond timestamp alongside; scapy does what
is worth not rewriting: libpcap's filter compiler (``compile_filter``), whose BPF program is attached to the socket
so the kernel drops unwanted packets before they are copied to us. Linux only (``AF_PACKET``).
"""

from __future__ import annotations

import contextlib
import ctypes
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

from wsinspect.capture.files import RawPacket

__all__ = ["ANY_INTERFACE", "Interface", "LiveCapture", "LiveCaptureError", "list_interfaces", "privilege_hint"]

ANY_INTERFACE = "any"  # as in tcpdump and tshark: every interface at once
# tcpdump's default snapshot length, and what scapy's pcapng writer declares: longer packets (only GSO on loopback
# makes them) are kept cut, with their length on the wire.
SNAPSHOT_BYTES = 262_144
# What the kernel holds for us while the decoder is busy (sniff -B); beyond it, drops. Four times tshark's default
# (dumpcap spools to a file as fast as packets come, and tshark decodes from that file: it can afford a small one).
KERNEL_BUFFER_MIB = 8
POLL_SECONDS = 0.2  # how long a wait lasts before a stop asked for by a signal is noticed
# After a stop is asked for, the packets the kernel already holds are still read (a conversation's last packets are
# often among them), for at most this long: traffic that never pauses must not keep a stopped capture going.
STOP_DRAIN_SECONDS = 1.0

_ETH_P_ALL = 0x0003
_SOL_PACKET = 263
_PACKET_STATISTICS = 6
_PACKET_IGNORE_OUTGOING = 23  # Linux 4.20+
_SO_TIMESTAMPNS = 35
_SO_ATTACH_FILTER = 26
_SO_RCVBUFFORCE = 33
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
_TIMESPEC = struct.Struct("qq")


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
    file (pcapng, or pcap for ``.pcap``) as it is captured. ``buffer_mib`` is the kernel's buffer for packets not yet
    read. ``packets`` counts the packets read; ``dropped`` is what the kernel had to throw away because we read too
    slowly (known after closing).
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
        every = interface.name == ANY_INTERFACE
        try:
            # Protocol 0: nothing is received until bind, so no packet gets in before the filter is attached. "any"
            # is not an interface to bind to: its socket receives from the start, and what came first is drained.
            self._socket = socket.socket(socket.AF_PACKET, kind, socket.htons(_ETH_P_ALL) if every else 0)
        except PermissionError:
            raise LiveCaptureError(privilege_hint()) from None
        except OSError as error:
            raise LiveCaptureError(f"cannot open a packet socket: {error.strerror or error}") from None
        self._recorder: Any = None
        try:
            if program is not None:
                self._attach(program)
            self._socket.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            try:  # root may raise the buffer past net.core.rmem_max; otherwise the kernel caps it there
                self._socket.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, buffer_mib << 20)
            except OSError:
                self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_mib << 20)
            if arphrd == _ARPHRD_LOOPBACK:
                # Every loopback packet passes twice, leaving and arriving: the kernel keeps only the second copy
                # (as libpcap asks it to), which halves the reads and the buffer they take. An older kernel refuses:
                # the reading loop then skips the first copies itself.
                with contextlib.suppress(OSError):
                    self._socket.setsockopt(_SOL_PACKET, _PACKET_IGNORE_OUTGOING, 1)
            if every:
                self._drain()
            else:
                self._socket.bind((interface.name, _ETH_P_ALL))
        except OSError as error:
            self._socket.close()
            if isinstance(error, PermissionError):
                raise LiveCaptureError(privilege_hint()) from None
            raise LiveCaptureError(f"cannot capture on {interface.name}: {error.strerror or error}") from None
        except BaseException:
            self._socket.close()
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
            fprog = _SockFprog(program.bf_len, ctypes.cast(program.bf_insns, ctypes.c_void_p).value)
            self._socket.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, bytes(fprog))
        finally:
            free_filter(program)

    def _drain(self) -> None:
        """Throw away what was received before the filter was attached."""
        self._socket.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                self._socket.recv(1)

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
            self._socket.close()
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None

    def stop(self) -> None:
        """End the capture once the packets already captured are read (what SIGINT and SIGTERM do)."""
        self._stop_requested = True

    def __iter__(self) -> Iterator[RawPacket]:
        self.catch_signals()
        try:
            yield from self._packets()
        finally:
            self._restore_signals()

    def _packets(self) -> Iterator[RawPacket]:
        sock = self._socket
        sock.setblocking(False)
        buffer = bytearray(SNAPSHOT_BYTES)
        cooked = self.linktype == _LINKTYPE_LINUX_SLL
        header = _SLL_HEADER.size if cooked else 0
        into = [memoryview(buffer)[header:]]
        room = len(buffer) - header
        ancillary = socket.CMSG_SPACE(_TIMESPEC.size)
        deadline = None if self.duration is None else time.monotonic() + self.duration
        count = self.count
        receive = sock.recvmsg_into
        drain_until: float | None = None  # set when a stop is asked for
        while count is None or self.packets < count:
            if self._stop_requested:
                if drain_until is None:
                    drain_until = time.monotonic() + STOP_DRAIN_SECONDS
                elif time.monotonic() >= drain_until:
                    break
            try:
                # MSG_TRUNC: the packet's whole length is returned even when the buffer holds less of it.
                length, control, _, address = receive(into, ancillary, socket.MSG_TRUNC)
            except BlockingIOError:
                if self._stop_requested:
                    break  # everything captured before the stop has been read
                self.before_waiting()
                if self._recorder is not None:
                    self._record(None)
                wait = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - time.monotonic())
                if wait <= 0:
                    break
                select.select([sock], [], [], wait)
                continue
            _, protocol, packet_type, arphrd, link_address = address
            if packet_type == _PACKET_OUTGOING and arphrd == _ARPHRD_LOOPBACK:
                continue  # seen again arriving, as libpcap knows: one copy, not a retransmission
            stamp = time.time()
            for level, kind, data in control:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
                    seconds, nanoseconds = _TIMESPEC.unpack_from(data)
                    stamp = seconds + nanoseconds / 1e9
            if cooked:
                _SLL_HEADER.pack_into(buffer, 0, packet_type, arphrd, len(link_address), link_address, protocol)
            self.packets += 1
            packet = RawPacket(self.packets, stamp, self.linktype, bytes(buffer[: header + min(length, room)]),
                               header + length)
            if self._recorder is not None:
                self._record(packet)
            yield packet
            if deadline is not None and time.monotonic() >= deadline:
                break

    def _record(self, packet: RawPacket | None) -> None:
        """Write a packet to the --record file (None: flush it); a failed write (a full disk) ends the recording,
        not the capture."""
        try:
            if packet is None:
                self._recorder.flush()
            elif self._recorder_is_pcap:
                # scapy's pcap writer keeps only the whole seconds of a float: it is given the microseconds apart.
                seconds, microseconds = divmod(round(packet.time * 1_000_000), 1_000_000)
                self._recorder.write_packet(packet.data, sec=seconds, usec=microseconds, wirelen=packet.wire_length)
            else:
                self._recorder.write_packet(packet.data, sec=packet.time, wirelen=packet.wire_length)
        except OSError as error:
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
