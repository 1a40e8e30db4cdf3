"""``wsinspect proxy``: a relay between WebSocket clients and one upstream server that decodes what it relays."""
