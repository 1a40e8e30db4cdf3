"""permessage-deflate (RFC 7692): negotiated parameters, and one inflater/deflater per direction.

A compressed message is the raw DEFLATE stream of the message with its final 4 bytes (00 00 ff ff, an empty stored
block ending a sync flush) taken off (RFC 7692 7.2.1). With context takeover (the default) each direction's
compressor keeps its LZ77 window from one message to the next, so the inflater for a direction must see every
compressed message of that direction in order; "no_context_takeover" resets it per message.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from wsinspect.core.handshake import Extension, Finding, finding

EXTENSION_NAME = "permessage-deflate"
TAIL = b"\x00\x00\xff\xff"
MAX_WINDOW_BITS = 15
MIN_WINDOW_BITS = 8
_BOOLEAN_PARAMS = ("server_no_context_takeover", "client_no_context_takeover")
_WINDOW_PARAMS = ("server_max_window_bits", "client_max_window_bits")


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
            if value is None or not value.isdigit() or not MIN_WINDOW_BITS <= int(value) <= MAX_WINDOW_BITS:
                findings.append(finding("response.deflate-params", f"{key} must be a number from 8 to 15.",
                                         "8..15", value))
                continue
            if key == "client_max_window_bits" and offer is not None and key not in offered:
                findings.append(finding("response.deflate-params", "The server sent client_max_window_bits, "
                                         "which the client did not offer."))
            values[key] = int(value)
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
                acceptable &= value is not None and value.isdigit() and 8 <= int(value) <= 15
                if acceptable:
                    params[key] = int(value or 15)
            elif key == "client_max_window_bits":
                if value is None:
                    # The client lets us limit its window (RFC 7692 7.1.2.2): ask for ours, which is cheaper for it.
                    params[key] = PREFERRED_SERVER_WINDOW_BITS
                    continue
                acceptable &= value.isdigit() and 8 <= int(value) <= 15
                if acceptable:
                    params[key] = int(value)
            else:
                acceptable = False
        if acceptable:
            offered_window = int(params.get("server_max_window_bits", MAX_WINDOW_BITS))
            params["server_max_window_bits"] = min(offered_window, PREFERRED_SERVER_WINDOW_BITS)
            return DeflateParams(**params)  # type: ignore[arg-type]
    return None


class InflateError(Exception):
    pass


class TooBig(Exception):
    pass


class MessageInflater:
    """Inflates the messages one direction sends, fragment by fragment, with a bound on the inflated size."""

    def __init__(self, *, no_context_takeover: bool) -> None:
        self.no_context_takeover = no_context_takeover
        # Decoding with the largest window is always correct: the sender's window can only be smaller.
        self._inflater = zlib.decompressobj(-MAX_WINDOW_BITS)
        self.context_lost = False  # a message of this direction was missed, so later ones can't be inflated

    def start(self) -> None:
        if self.no_context_takeover:
            self._inflater = zlib.decompressobj(-MAX_WINDOW_BITS)

    def inflate(self, data: bytes, limit: int, final: bool) -> bytes:
        """Inflate one fragment; ``final`` adds the stripped tail. Raises TooBig past ``limit`` bytes out."""
        if final:
            data += TAIL
        try:
            out = self._inflater.decompress(data, limit + 1)
        except zlib.error as error:
            self.context_lost = not self.no_context_takeover
            raise InflateError(str(error)) from error
        if len(out) > limit or self._inflater.unconsumed_tail:
            self.context_lost = not self.no_context_takeover
            raise TooBig
        return out


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
