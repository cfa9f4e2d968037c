"""The fuzz worker never looks a name up: it has no network but loopback,
and fuzzed host names must not become DNS queries. Installed in the worker
before any loop exists: getaddrinfo/getnameinfo and the socket methods that
take an address answer a non-numeric host with gaierror(EAI_NONAME), the same
on both loops, so the comparison between them holds.

The two workers run their calls at the same time, and Linux's abstract
Unix socket names ('\\0name') are shared by every process: bind() moves them
into a namespace of the worker's own (ABSTRACT_PREFIX after the NUL), which
the worker's answers leave out again (connect() and sendto() go there too)."""

import os
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


ABSTRACT_PREFIX = f'fuzz-worker-{os.getpid()}-'


def _own_abstract_name(address):
    if isinstance(address, str) and address.startswith('\0'):
        return '\0' + ABSTRACT_PREFIX + address[1:]
    if isinstance(address, bytes) and address.startswith(b'\0'):
        return b'\0' + ABSTRACT_PREFIX.encode() + address[1:]
    return address


def _check_address(address):
    if isinstance(address, tuple) and address and isinstance(address[0], (str, bytes)):
        if not _numeric(address[0]):
            _refuse(address[0])


class GuardedSocket(_RealSocket):
    """socket.socket, refusing non-numeric hosts in addresses and keeping
    abstract Unix names to this worker."""

    __slots__ = ()

    def _address(self, address):
        _check_address(address)
        return _own_abstract_name(address) if self.family == socket.AF_UNIX else address

    def connect(self, address):
        return super().connect(self._address(address))

    def connect_ex(self, address):
        return super().connect_ex(self._address(address))

    def bind(self, address):
        return super().bind(self._address(address))

    def sendto(self, data, *flags_and_address):
        if flags_and_address:
            flags_and_address = (*flags_and_address[:-1], self._address(flags_and_address[-1]))
        return super().sendto(data, *flags_and_address)


def install():
    socket.getaddrinfo = getaddrinfo
    socket.getnameinfo = getnameinfo
    socket.socket = GuardedSocket
    for name in ('gethostbyname', 'gethostbyname_ex', 'gethostbyaddr', 'getfqdn'):
        setattr(socket, name, _refuse)
