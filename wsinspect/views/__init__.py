"""Views render events; they never parse bytes again."""
