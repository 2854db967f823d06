"""Listening sockets for keiko's servers, bound before serving so errors name the config key."""

from __future__ import annotations

import os
import socket

from keiko.units import split_endpoint


def listen_socket(endpoint: str, key: str, backlog: int = 2048) -> socket.socket:
    """A non-blocking listening TCP socket on ``host:port`` (port 0 picks a free one).

    A failure raises RuntimeError naming the config ``key``, e.g.
    ``receivers.otlp.http.endpoint: cannot listen on 127.0.0.1:4318: Address already in use``.
    No SO_REUSEPORT: a second keiko on the same port must fail, not share it silently.
    """
    host, port = split_endpoint(endpoint)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as exc:
        # create_server appends "(while attempting to bind on address ...)": the key and
        # endpoint already say where
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise RuntimeError(f"{key}: cannot listen on {endpoint}: {why}") from None
    sock.setblocking(False)
    return sock
