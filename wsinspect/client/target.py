"""Where ``wsinspect connect`` goes: a ws:// or wss:// URL taken apart as RFC 6455 3 defines it, and the TLS context
for wss:// (certificates and names checked unless told otherwise)."""

from __future__ import annotations

import ipaddress
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wsinspect.views.palette import Piece
from wsinspect.views.safe import visible

if TYPE_CHECKING:
    import asyncio

DEFAULT_PORTS = {"ws": 80, "wss": 443}


class UsageError(ValueError):
    """A bad argument: one line, already safe to print."""


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed WebSocket URI: what RFC 6455 4.1 calls /host/, /port/, /resource name/ and /secure/."""

    secure: bool
    host: str  # a name (IDNA-encoded) or an IP address, without brackets
    port: int
    resource: str  # path and query, percent-encoded: the request target

    @property
    def scheme(self) -> str:
        return "wss" if self.secure else "ws"

    @property
    def authority(self) -> str:
        """The Host header's value: the port only when it is not the scheme's default (RFC 6455 4.1 item 4)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.resource}"


_PATH_SAFE = "/%:@!$&'()*+,;="  # RFC 3986 pchar and "/", and "%" so that existing escapes are kept
_QUERY_SAFE = _PATH_SAFE + "?"


def parse_url(text: str) -> Target:
    """A ws:// or wss:// URL; UsageError says what is wrong with anything else."""
    shown = visible(text)
    if any(not char.isprintable() or char.isspace() for char in text):
        raise UsageError(f"'{shown}': a URL holds no spaces or control characters (write a space as %20)")
    scheme, separator, rest = text.partition("://")
    scheme = scheme.lower()
    if scheme in ("http", "https") and separator:
        secure = "s" if scheme == "https" else ""
        raise UsageError(f"'{shown}' is an HTTP URL; the WebSocket URL of the same place is "
                         f"ws{secure}://{visible(rest)}")
    if scheme not in DEFAULT_PORTS or not separator:
        raise UsageError(f"'{shown}' is not a WebSocket URL: it starts with ws:// or wss:// (RFC 6455 3), e.g. "
                         "ws://127.0.0.1:8765/")
    if "#" in text:
        raise UsageError(f"'{shown}': RFC 6455 3: fragment identifiers MUST NOT be used on WebSocket URIs (a '#' "
                         "that belongs to the path or query is written %23)")
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as failure:
        raise UsageError(f"'{shown}': {visible(str(failure))} (a port is 1-65535; an IPv6 address is written "
                         "in brackets: ws://[::1]:8765/)") from None
    if parts.username is not None or parts.password is not None:
        raise UsageError(f"'{shown}': RFC 6455 3: a WebSocket URI names a host and a port, no user or password; "
                         "send credentials in a header instead: -H 'Authorization: ...'")
    host = parts.hostname or ""
    if not host:
        raise UsageError(f"'{shown}' names no host, e.g. ws://127.0.0.1:8765/")
    if port == 0:
        raise UsageError(f"'{shown}': port 0 is not a port to connect to (1-65535)")
    if "[" in parts.netloc:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UsageError(f"'{shown}': '{visible(host)}' in brackets is not an IPv6 address") from None
    elif not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise UsageError(f"'{shown}': '{visible(host)}' is not a valid host name") from None
    resource = urllib.parse.quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        resource += "?" + urllib.parse.quote(parts.query, safe=_QUERY_SAFE)
    return Target(secure=scheme == "wss", host=host, port=port or DEFAULT_PORTS[scheme], resource=resource)


def tls_context(*, cafile: str | None, insecure: bool) -> ssl.SSLContext:
    """Certificates and names are checked (RFC 6455 4.1 item 5 of the connection steps) unless ``--insecure``."""
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as failure:
        reason = getattr(failure, "strerror", None) or str(failure)
        raise UsageError(f"--cafile {visible(str(cafile))}: cannot load CA certificates from it "
                         f"({visible(reason)})") from None
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    # HTTP/1.1 is the only protocol a WebSocket opening handshake runs on (RFC 6455 4.1); a server that also speaks
    # HTTP/2 must not pick that.
    context.set_alpn_protocols(["http/1.1"])
    return context


def describe_tls(transport: asyncio.BaseTransport, insecure: bool) -> list[Piece]:
    """One line on the TLS session: version, cipher, and whose certificate was checked (names escaped: the
    certificate came from the server)."""
    tls = transport.get_extra_info("ssl_object")
    if not isinstance(tls, ssl.SSLObject):
        return []
    cipher = tls.cipher()
    line: list[Piece] = [("muted", f"TLS: {tls.version()}" + (f", {cipher[0]}" if cipher else ""))]
    if insecure:
        return [*line, ("warning", "; the certificate was NOT checked (--insecure)")]
    certificate = tls.getpeercert() or {}

    def common_name(field: str) -> str:
        names = certificate.get(field)
        for relative_name in names if isinstance(names, tuple) else ():
            for attribute in relative_name:  # (name, value) pairs
                if attribute[0] == "commonName":
                    return visible(str(attribute[1]))
        return "?"

    return [*line, ("ok", "; certificate checked: "), ("plain", f"{common_name('subject')}, issued by "
                                                                f"{common_name('issuer')}")]

