"""Recognising a getaddrinfo() call that needs no name service, so the loop
answers it without a thread. (Turning an IP literal into the one entry
``_ensure_resolved`` needs, and ordering results for Happy Eyeballs, are
asyncio's own ``_ipaddr_info`` and ``_interleave_addrinfos``.)"""

import socket


def _port_number(port):
    """The port as an int, or None for a service name that needs a lookup."""
    if port is None or port == b'' or port == '':
        return 0
    try:
        return int(port)
    except (TypeError, ValueError):
        return None


def _is_ip_literal(host):
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except (OSError, TypeError, ValueError):
            pass
    return False


def is_numeric(host, port):
    """True when getaddrinfo(host, port) needs no name service: the host is
    absent or an IP literal, and the port is a number."""
    if _port_number(port) is None:
        return False
    if host is None:
        return True
    if isinstance(host, bytes):
        try:
            host = host.decode('idna')
        except UnicodeError:
            return False
    return isinstance(host, str) and '%' not in host and _is_ip_literal(host)

