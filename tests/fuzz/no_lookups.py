"""The fuzz worker never looks a name up: it has no network but loopback,
and fuzzed host names must not become DNS queries. Installed in the worker
before any loop exists: getaddrinfo/getnameinfo and the socket methods that
take an address answer a non-numeric host with gaierror(EAI_NONAME), the same
on both loops, so the comparison between them holds."""

import socket

_real_getaddrinfo = socket.getaddrinfo
_real_getnameinfo = socket.getnameinfo
_RealSocket = socket.socket


def _numeric(host):
    if host is None or host in ('', b'', '<broadcast>'):
        return True
    if isinstance(host, bytes):
        try:
            host = host.decode('ascii')
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str):
        return True             # not a name: the real call raises TypeError
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except (OSError, ValueError):
            pass
    return False


def _refuse(host):
    raise socket.gaierror(socket.EAI_NONAME, f'no name lookups in the fuzz worker: {host!r}')


def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    if not _numeric(host):
        _refuse(host)
    if isinstance(flags, int):
        flags &= ~socket.AI_CANONNAME
    return _real_getaddrinfo(host, port, family, type, proto, flags)


def getnameinfo(sockaddr, flags):
    if isinstance(flags, int):
        flags |= socket.NI_NUMERICHOST
    return _real_getnameinfo(sockaddr, flags)


def _check_address(address):
    if isinstance(address, tuple) and address and isinstance(address[0], (str, bytes)):
        if not _numeric(address[0]):
            _refuse(address[0])


class GuardedSocket(_RealSocket):
    """socket.socket, refusing non-numeric hosts in addresses."""

    __slots__ = ()

    def connect(self, address):
        _check_address(address)
        return super().connect(address)

    def connect_ex(self, address):
        _check_address(address)
        return super().connect_ex(address)

    def bind(self, address):
        _check_address(address)
        return super().bind(address)

    def sendto(self, data, *flags_and_address):
        _check_address(flags_and_address[-1] if flags_and_address else None)
        return super().sendto(data, *flags_and_address)


def install():
    socket.getaddrinfo = getaddrinfo
    socket.getnameinfo = getnameinfo
    socket.socket = GuardedSocket
    for name in ('gethostbyname', 'gethostbyname_ex', 'gethostbyaddr', 'getfqdn'):
        setattr(socket, name, _refuse)
