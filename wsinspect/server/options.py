"""``wsinspect serve``'s option values: argument types, and the addresses a class can open.

Kept apart from ``run.py`` so the command line can check values without importing asyncio and the decoder.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import shutil
import socket
import subprocess
import sys

from wsinspect.server.misbehave import Misbehaviour, help_text
from wsinspect.views.safe import visible

#: Defaults of the limits and timeouts, shown by --help and the README (Limits and guarantees).
DEFAULT_MAX_QUEUE = "1M"
DEFAULT_MAX_FRAGMENTS = 65536  # see ServerConfig.max_fragments
DEFAULT_MAX_HEADERS = 100
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_READ_CHUNK = "16k"
DEFAULT_TURN_FRAMES = 256
#: What the unfinished frames and messages of all connections may hold together (--max-memory): 32 clients each
#: half-way through a frame at the default --max-frame (2M), as the proxy's default.
DEFAULT_MAX_MEMORY = "64M"
IP_COMMAND_TIMEOUT = 2.0  # seconds `ip -j addr` may take before the stdlib's answer is used instead


class MisbehaveAction(argparse.Action):
    """--misbehave KIND; ``--misbehave help`` lists the kinds with what each breaks, and exits as --help does."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        if values == "help":
            sys.stdout.write(help_text())
            parser.exit(0)
        try:
            kind = Misbehaviour(values)
        except ValueError:
            names = ", ".join(kind.value for kind in Misbehaviour)
            parser.error(f"argument --misbehave: not a kind: {visible(str(values))!r} (one of {names}; "
                         "--misbehave help says what each does)")
        setattr(namespace, self.dest, kind)


def _from_ip_command() -> list[str]:
    """Interface addresses from iproute2's JSON output (Linux), or nothing."""
    ip = shutil.which("ip")
    if ip is None:
        return []
    try:
        listing = subprocess.run([ip, "-j", "addr"], capture_output=True, text=True, timeout=IP_COMMAND_TIMEOUT,
                                 check=False).stdout
        interfaces = json.loads(listing)
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    found = []
    for interface in interfaces if isinstance(interfaces, list) else []:
        for info in interface.get("addr_info", []) if isinstance(interface, dict) else []:
            if isinstance(info, dict) and isinstance(info.get("local"), str):
                found.append(info["local"])
    return found


def _from_host_name() -> list[str]:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return [str(info[4][0]) for info in infos]


def reachable_addresses(host: str) -> list[str]:
    """The addresses others can open when listening on ``host`` (0.0.0.0 or ::): this machine's interface
    addresses (both families for ::, which Linux makes dual-stack), without link-local ones (they need a zone to be
    opened), loopback last."""
    families = (4, 6) if ":" in host else (4,)
    seen: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
    for text in _from_ip_command() + _from_host_name():
        try:
            address = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            continue
        if address.version in families and not address.is_link_local and not address.is_unspecified:
            seen.setdefault(str(address), address)
    ordered = sorted(seen.values(), key=lambda a: (a.is_loopback, a.version, int(a)))
    if not any(a.is_loopback for a in ordered):
        ordered.append(ipaddress.ip_address("127.0.0.1"))
    return [str(a) for a in ordered]
