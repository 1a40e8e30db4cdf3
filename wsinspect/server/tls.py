"""TLS on a listening socket (``serve`` and ``proxy`` with ``--certfile``/``--keyfile``): the stdlib's ``ssl``, with
a bad certificate or key reported in one line before anything listens."""

from __future__ import annotations

import re
import ssl

from wsinspect.client.target import UsageError
from wsinspect.views.safe import visible


def listening_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    """The server side's TLS context, or None for plain TCP. ``keyfile`` may be left out when the private key is in
    ``certfile`` (one PEM file holding both, as ``load_cert_chain`` allows). Raises UsageError, already escaped."""
    if certfile is None:
        if keyfile is not None:
            raise UsageError("--keyfile needs --certfile (the certificate it is the key of)")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as failure:  # before OSError: SSLError is one
        what = f"--certfile {visible(certfile)}" + (f" --keyfile {visible(keyfile)}" if keyfile else "")
        # OpenSSL's reason ("KEY_VALUES_MISMATCH"), or for a file that is not PEM at all its message without the
        # C source position.
        detail = failure.reason or re.sub(r"\s*\(_ssl\.c:\d+\)$", "", failure.strerror or str(failure))
        raise UsageError(f"{what}: not a PEM certificate chain and its private key ({visible(detail)})") from None
    except OSError as failure:
        raise UsageError(f"cannot read --certfile/--keyfile {visible(failure.filename or certfile)}: "
                         f"{visible(failure.strerror or str(failure))}") from None
    # A WebSocket opening handshake runs on HTTP/1.1 only (RFC 6455 4.1): a browser that offers h2 must not get it.
    context.set_alpn_protocols(["http/1.1"])
    return context
