"""Address resolution helpers: recognising addresses that need no lookup
(so no thread is involved), and ordering results for connecting."""

import itertools
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


def ipaddr_info(host, port, family, type, proto, flowinfo=0, scopeid=0):
    """The single getaddrinfo() entry for an already-resolved (host, port),
    or None when a real lookup is needed (asyncio's ``_ipaddr_info``)."""
    if host is None or proto not in {0, socket.IPPROTO_TCP, socket.IPPROTO_UDP}:
        return None
    if type == socket.SOCK_STREAM:
        proto = socket.IPPROTO_TCP
    elif type == socket.SOCK_DGRAM:
        proto = socket.IPPROTO_UDP
    else:
        return None
    port = _port_number(port)
    if port is None:
        return None
    if isinstance(host, bytes):
        host = host.decode('idna')
    if '%' in host:
        # inet_pton does not take an IPv6 zone index ('::1%lo').
        return None
    families = [socket.AF_INET, socket.AF_INET6] if family == socket.AF_UNSPEC else [family]
    for af in families:
        try:
            socket.inet_pton(af, host)
        except OSError:
            continue
        if af == socket.AF_INET6:
            return af, type, proto, '', (host, port, flowinfo, scopeid)
        return af, type, proto, '', (host, port)
    return None


def interleave_addrinfos(addrinfos, first_address_family_count=1):
    """Reorders addresses to alternate between families (RFC 8305), after
    ``first_address_family_count`` of the first family."""
    by_family = {}
    for info in addrinfos:
        by_family.setdefault(info[0], []).append(info)
    groups = list(by_family.values())
    reordered = []
    if first_address_family_count > 1:
        reordered.extend(groups[0][:first_address_family_count - 1])
        del groups[0][:first_address_family_count - 1]
    reordered.extend(info for info in itertools.chain.from_iterable(
        itertools.zip_longest(*groups)) if info is not None)
    return reordered
