"""permessage-deflate (RFC 7692): negotiated parameters, and one inflater/deflater per direction.

A compressed message is the raw DEFLATE stream of the message with its final 4 bytes (00 00 ff ff, an empty stored
block ending a sync flush) taken off (RFC 7692 7.2.1). With context takeover (the default) each direction's
compressor keeps its LZ77 window from one message to the next, so the inflater for a direction must see every
compressed message of that direction in order; "no_context_takeover" resets it per message.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from wsinspect.core.handshake import Extension, Finding, ascii_number, finding

EXTENSION_NAME = "permessage-deflate"
TAIL = b"\x00\x00\xff\xff"
MAX_WINDOW_BITS = 15
MIN_WINDOW_BITS = 8
_BOOLEAN_PARAMS = ("server_no_context_takeover", "client_no_context_takeover")
_WINDOW_PARAMS = ("server_max_window_bits", "client_max_window_bits")


def window_bits(value: str | None) -> int | None:
    """A max_window_bits value if it is one, else None; never raises.

    RFC 7692 7.1.2.1: "a decimal integer value without leading zeroes between 8 to 15, inclusive".
    """
    bits = ascii_number(value, 2) if value is not None and not value.startswith("0") else None
    return bits if bits is not None and MIN_WINDOW_BITS <= bits <= MAX_WINDOW_BITS else None


@dataclass(frozen=True, slots=True)
class DeflateParams:
    """What the server's response agreed to (RFC 7692 7.1)."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = MAX_WINDOW_BITS
    client_max_window_bits: int = MAX_WINDOW_BITS

    def no_context_takeover(self, sender_is_client: bool) -> bool:
        return self.client_no_context_takeover if sender_is_client else self.server_no_context_takeover

    def max_window_bits(self, sender_is_client: bool) -> int:
        return self.client_max_window_bits if sender_is_client else self.server_max_window_bits

    def response_value(self) -> str:
        """The Sec-WebSocket-Extensions value a server sends to agree to these parameters."""
        parts = [EXTENSION_NAME]
        parts += [name for name in _BOOLEAN_PARAMS if getattr(self, name)]
        parts += [f"{name}={getattr(self, name)}" for name in _WINDOW_PARAMS if getattr(self, name) != MAX_WINDOW_BITS]
        return "; ".join(parts)


def params_from_response(extension: Extension, offer: Extension | None) -> tuple[DeflateParams, list[Finding]]:
    """Read the parameters of an accepted permessage-deflate; report the ones RFC 7692 7.1 forbids."""
    findings: list[Finding] = []
    values: dict[str, bool | int] = {}
    seen: set[str] = set()
    offered = {key for key, _ in offer.params} if offer is not None else set()
    for key, value in extension.params:
        if key in seen:
            findings.append(finding("response.deflate-params", f"Parameter {key} appears twice."))
            continue
        seen.add(key)
        if key in _BOOLEAN_PARAMS:
            if value is not None:
                findings.append(finding("response.deflate-params", f"{key} takes no value.", key, f"{key}={value}"))
            values[key] = True
        elif key in _WINDOW_PARAMS:
            bits = window_bits(value)
            if bits is None:
                findings.append(finding("response.deflate-params", f"{key} must be a number from 8 to 15.",
                                         "8..15", value))
                continue
            if key == "client_max_window_bits" and offer is not None and key not in offered:
                findings.append(finding("response.deflate-params", "The server sent client_max_window_bits, "
                                         "which the client did not offer."))
            values[key] = bits
        else:
            findings.append(finding("response.deflate-params", f"Unknown parameter {key!r}.", None, key))
    return DeflateParams(**values), findings  # type: ignore[arg-type]


# The window the server uses, and asks the client to use, when the offer leaves it free: RFC 7692 7.1.2.1 and
# 7.1.2.2 let a server choose a smaller window than offered. 4 KiB compresses chat-sized messages nearly as well as
# 32 KiB, costs an eighth of the memory per connection and is faster (the websockets library makes the same choice).
PREFERRED_SERVER_WINDOW_BITS = 12
COMPRESSION_MEMORY_LEVEL = 5


def negotiate(offers: list[Extension]) -> DeflateParams | None:
    """Server side: accept the first permessage-deflate offer we can honour (RFC 7692 5, 7.1), or None."""
    for offer in offers:
        if offer.name != EXTENSION_NAME:
            continue
        params: dict[str, bool | int] = {}
        acceptable = True
        seen: set[str] = set()
        for key, value in offer.params:
            if key in seen:
                acceptable = False
            seen.add(key)
            if key in _BOOLEAN_PARAMS:
                acceptable &= value is None
                params[key] = True
            elif key == "server_max_window_bits":
                bits = window_bits(value)
                acceptable &= bits is not None
                if bits is not None:
                    params[key] = bits
            elif key == "client_max_window_bits":
                if value is None:
                    # The client lets us limit its window (RFC 7692 7.1.2.2): ask for ours, which is cheaper for it.
                    params[key] = PREFERRED_SERVER_WINDOW_BITS
                    continue
                bits = window_bits(value)
                acceptable &= bits is not None
                if bits is not None:
                    params[key] = bits
            else:
                acceptable = False
        if acceptable:
            offered_window = int(params.get("server_max_window_bits", MAX_WINDOW_BITS))
            params["server_max_window_bits"] = min(offered_window, PREFERRED_SERVER_WINDOW_BITS)
            return DeflateParams(**params)  # type: ignore[arg-type]
    return None


class InflateError(Exception):
    pass


class ContextMissing(InflateError):
    """The message refers back (an LZ77 distance) into earlier data of this direction that was never seen."""


class TooBig(Exception):
    pass


# zlib's words for a back-reference further back than the data the inflater holds (inflate.c).
_TOO_FAR_BACK = "invalid distance too far back"


class MessageInflater:
    """Inflates the messages one direction sends, fragment by fragment, with a bound on the inflated size.

    With context takeover every message continues one DEFLATE stream whose LZ77 window is the data of the earlier
    messages (RFC 7692 7.2.2). When the earlier data is unknown (a capture that starts mid-connection, bytes lost,
    or a message that could not be inflated) the inflater starts again with an empty window: each message still
    begins on a block boundary (the previous one ended with a sync flush), so a message that refers back only into
    what was inflated since is inflated exactly, and one that refers further back makes zlib stop with "invalid
    distance too far back" (never a wrong byte: zlib checks every distance against the window it holds), which
    ``ContextMissing`` reports. Each success refills the window, so later messages usually succeed.

    The zlib object (about 7 KiB of state plus the window) is made on the first compressed message, not per
    connection, and dropped after each message without context takeover. Its window is the one the sender agreed
    to (``window_bits``, RFC 7692 7.1.2): 4 KiB instead of 32 KiB for the common 12-bit offer, on every
    connection that stays open; a back-reference beyond it is the sender's error (reported as such).
    """

    __slots__ = ("_inflater", "context_known", "no_context_takeover", "window_bits")

    def __init__(self, *, no_context_takeover: bool, context_known: bool = True,
                 window_bits: int = MAX_WINDOW_BITS) -> None:
        self.no_context_takeover = no_context_takeover
        # zlib's deflate cannot make a 256-byte window and silently uses 512 (see MessageDeflater), so a peer on
        # zlib that agreed to 8 bits sends 9-bit distances: accept them.
        self.window_bits = max(window_bits, MIN_WINDOW_BITS + 1)
        self._inflater: zlib._Decompress | None = None
        # False while earlier messages of this direction are missing from what this inflater has seen.
        self.context_known = context_known or no_context_takeover

    def forget_context(self) -> None:
        """Earlier data of this direction is missing (a gap, a message not inflated): start from an empty window."""
        self._inflater = None
        self.context_known = self.no_context_takeover

    def start(self) -> None:
        if self.no_context_takeover or self._inflater is None:
            self._inflater = zlib.decompressobj(-self.window_bits)

    def inflate(self, data: bytes, limit: int, final: bool) -> bytes:
        """Inflate one fragment; ``final`` adds the stripped tail. Raises TooBig past ``limit`` bytes out,
        ContextMissing for a reference into data never seen, InflateError for data that is not DEFLATE."""
        inflater = self._inflater
        assert inflater is not None, "start() begins every compressed message"
        if final:
            data += TAIL
        try:
            out = inflater.decompress(data, limit + 1)
        except zlib.error as error:
            context_was_known = self.context_known
            self.forget_context()
            if not context_was_known and _TOO_FAR_BACK in str(error):
                raise ContextMissing(str(error)) from error
            raise InflateError(str(error)) from error
        if len(out) > limit or inflater.unconsumed_tail:
            self.forget_context()
            raise TooBig
        if inflater.eof:
            # RFC 7692 7.2.3.4: a sender may end a message with a final block (BFINAL=1). That ends zlib's stream,
            # so the next message starts a new one: a fresh inflater whose window is what this one just produced
            # (a zlib sender must reset after a final block, so it cannot refer further back).
            after = inflater.unused_data
            self._inflater = zlib.decompressobj(-self.window_bits, zdict=out[-(1 << self.window_bits):]) \
                if out else zlib.decompressobj(-self.window_bits)
            if not _only_empty_blocks(after):
                extra = len(after) - (len(TAIL) if final else 0)
                raise InflateError(f"{extra} bytes that are not empty DEFLATE blocks follow the final block")
        if final and self.no_context_takeover:
            self._inflater = None  # the next message starts afresh: no window to keep while the connection idles
        return out


def _only_empty_blocks(data: bytes) -> bool:
    """Bytes after a final block that carry nothing: RFC 7692 7.2.3.4's example ends "Hello" in a BFINAL block and
    adds one 0x00, the header of an empty stored block that the receiver's appended 00 00 ff ff completes."""
    if not data:
        return True
    probe = zlib.decompressobj(-MAX_WINDOW_BITS)
    try:
        return probe.decompress(data, 1) == b"" and not probe.unconsumed_tail
    except zlib.error:
        return False


class MessageDeflater:
    """Compresses the messages one direction sends (used by the server)."""

    def __init__(self, *, no_context_takeover: bool, max_window_bits: int) -> None:
        self.no_context_takeover = no_context_takeover
        # zlib cannot deflate with a 256-byte window (it silently uses 512), so for 8 we send uncompressed,
        # which RFC 7692 6.1 allows for any message.
        self.enabled = max_window_bits > MIN_WINDOW_BITS
        self.window_bits = max_window_bits
        self._deflater = self._new()

    def _new(self) -> zlib._Compress:
        return zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -max(self.window_bits, 9),
                                COMPRESSION_MEMORY_LEVEL)

    def compress(self, data: bytes) -> bytes:
        if self.no_context_takeover:
            self._deflater = self._new()
        out = self._deflater.compress(data) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4] if out.endswith(TAIL) else out
