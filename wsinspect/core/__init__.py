"""The sans-I/O protocol core: bytes in (per direction), events out. No sockets, files, clocks or printing."""
