"""wsinspect: see and understand the WebSocket protocol (RFC 6455, RFC 7692)."""

__version__ = "0.1.0"
