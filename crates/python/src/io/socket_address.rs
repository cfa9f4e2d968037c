//! IP socket addresses between the kernel's `sockaddr` and Python's form:
//! `(host, port)` for IPv4, `(host, port, flowinfo, scope_id)` for IPv6.
//!
//! The host is written by `inet_ntop`, as Python's socket module writes it,
//! so a tuple made here equals the one `getsockname()`, `getpeername()`,
//! `accept()` or `recvfrom()` returns (Rust's own formatting differs for
//! IPv4-compatible IPv6 addresses).
//!
//! Addresses are kept as [`SocketAddr`], a few bytes and no Python object,
//! and made into tuples when asked for: a stream transport's `sockname` and
//! `peername` are read by few programs, and two tuples of a `str` and an
//! `int` each would be about 290 bytes a connection.
//!
//! Other families (Unix sockets, ...) are left to Python's socket module,
//! which knows them all.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

/// The address a `sockaddr_storage` holds, if it is an IP one.
pub fn decode(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which
            // fits in (and is no more aligned than) a sockaddr_storage.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6, which
            // fits in (and is no more aligned than) a sockaddr_storage.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The address in a raw `sockaddr` (as `accept` returned it), if it is an
/// IP one.
pub fn decode_raw(raw: &[u8]) -> Option<SocketAddr> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = raw.len().min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: both regions are valid for `len` bytes and do not overlap
    // (`storage` is a local).
    unsafe {
        std::ptr::copy_nonoverlapping(
            raw.as_ptr(),
            (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
            len,
        )
    };
    let needed = match storage.ss_family as libc::c_int {
        libc::AF_INET => std::mem::size_of::<libc::sockaddr_in>(),
        libc::AF_INET6 => std::mem::size_of::<libc::sockaddr_in6>(),
        _ => return None,
    };
    if len < needed {
        return None;
    }
    decode(&storage)
}

/// The `sockaddr_storage` and length for an IP address.
pub fn encode(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage; we then fill the variant
    // matching the family we set, which fits in the storage.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        match addr {
            SocketAddr::V4(a) => {
                let sin = &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in);
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                (
                    storage,
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
            SocketAddr::V6(a) => {
                let sin6 = &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6);
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_flowinfo = a.flowinfo().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_scope_id = a.scope_id();
                (
                    storage,
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    }
}

/// The tuple Python's socket module makes for an IP address.
pub fn to_python<'py>(py: Python<'py>, addr: &SocketAddr) -> PyResult<Bound<'py, PyTuple>> {
    let host = PyString::new(py, &host_text(&addr.ip()));
    match addr {
        SocketAddr::V4(a) => PyTuple::new(
            py,
            [host.into_any(), a.port().into_pyobject(py)?.into_any()],
        ),
        SocketAddr::V6(a) => PyTuple::new(
            py,
            [
                host.into_any(),
                a.port().into_pyobject(py)?.into_any(),
                a.flowinfo().into_pyobject(py)?.into_any(),
                a.scope_id().into_pyobject(py)?.into_any(),
            ],
        ),
    }
}

/// The longest text `inet_ntop` writes, with its NUL (`<arpa/inet.h>`).
const INET6_ADDRSTRLEN: usize = 46;

// The C library's (POSIX); the libc crate does not declare it.
// SAFETY: the declaration matches <arpa/inet.h>: `const char *inet_ntop(int
// af, const void *src, char *dst, socklen_t size)`.
unsafe extern "C" {
    fn inet_ntop(
        af: libc::c_int,
        src: *const libc::c_void,
        dst: *mut libc::c_char,
        size: libc::socklen_t,
    ) -> *const libc::c_char;
}

/// `inet_ntop`'s text for an IP address, as Python's socket module uses it.
fn host_text(ip: &IpAddr) -> String {
    let mut buf = [0 as libc::c_char; INET6_ADDRSTRLEN];
    let (family, octets): (libc::c_int, [u8; 16]) = match ip {
        IpAddr::V4(v4) => {
            let mut octets = [0; 16];
            octets[..4].copy_from_slice(&v4.octets());
            (libc::AF_INET, octets)
        }
        IpAddr::V6(v6) => (libc::AF_INET6, v6.octets()),
    };
    // SAFETY: `octets` holds an in_addr (its first 4 bytes) or an in6_addr,
    // in network order as inet_ntop reads them; `buf` is writable for its
    // length, which is passed, and INET6_ADDRSTRLEN fits either family.
    let written = unsafe {
        inet_ntop(
            family,
            octets.as_ptr().cast(),
            buf.as_mut_ptr(),
            buf.len() as libc::socklen_t,
        )
    };
    if written.is_null() {
        // Only a too-small buffer fails, and ours fits every address.
        return ip.to_string();
    }
    // SAFETY: inet_ntop succeeded, so `buf` holds a NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// The address for an `(ip, port[, flowinfo, scope_id])` tuple with a
/// numeric host; `None` for anything else (Python's socket then parses it).
pub fn from_numeric_tuple(addr: &Bound<'_, PyAny>) -> Option<SocketAddr> {
    let tuple = addr.cast::<PyTuple>().ok()?;
    let host: String = tuple.get_item(0).ok()?.extract().ok()?;
    let port: u16 = tuple.get_item(1).ok()?.extract().ok()?;
    let ip: IpAddr = host.parse().ok()?;
    match (ip, tuple.len()) {
        (IpAddr::V4(_), 2) => Some(SocketAddr::new(ip, port)),
        (IpAddr::V6(v6), 2) => Some(SocketAddr::V6(SocketAddrV6::new(v6, port, 0, 0))),
        (IpAddr::V6(v6), 4) => {
            let flow: u32 = tuple.get_item(2).ok()?.extract().ok()?;
            let scope: u32 = tuple.get_item(3).ok()?.extract().ok()?;
            Some(SocketAddr::V6(SocketAddrV6::new(v6, port, flow, scope)))
        }
        _ => None,
    }
}

/// A connected IP socket's own address and its peer's, read once and kept
/// as compact as the family allows: an IPv4 pair in 16 bytes, an IPv6 one
/// (56 bytes) behind a pointer.
pub enum ConnectionAddresses {
    Unknown,
    V4 {
        local: Option<SocketAddrV4>,
        peer: Option<SocketAddrV4>,
    },
    Other(Box<[Option<SocketAddr>; 2]>),
}

impl ConnectionAddresses {
    /// Reads the addresses of socket `fd`: its own, and its peer's from
    /// `accepted_from` (the raw address `accept` returned) if given, else
    /// from the socket.
    pub fn read(fd: RawFd, accepted_from: Option<&[u8]>) -> ConnectionAddresses {
        let local = of_socket(fd, End::Local);
        let peer = accepted_from
            .and_then(decode_raw)
            .or_else(|| of_socket(fd, End::Peer));
        match (local, peer) {
            (None, None) => ConnectionAddresses::Unknown,
            (Some(SocketAddr::V4(l)), Some(SocketAddr::V4(p))) => ConnectionAddresses::V4 {
                local: Some(l),
                peer: Some(p),
            },
            (Some(SocketAddr::V4(l)), None) => ConnectionAddresses::V4 {
                local: Some(l),
                peer: None,
            },
            (None, Some(SocketAddr::V4(p))) => ConnectionAddresses::V4 {
                local: None,
                peer: Some(p),
            },
            (local, peer) => ConnectionAddresses::Other(Box::new([local, peer])),
        }
    }

    pub fn get(&self, end: End) -> Option<SocketAddr> {
        match (self, end) {
            (ConnectionAddresses::Unknown, _) => None,
            (ConnectionAddresses::V4 { local, .. }, End::Local) => local.map(SocketAddr::V4),
            (ConnectionAddresses::V4 { peer, .. }, End::Peer) => peer.map(SocketAddr::V4),
            (ConnectionAddresses::Other(pair), End::Local) => pair[0],
            (ConnectionAddresses::Other(pair), End::Peer) => pair[1],
        }
    }
}

/// Which end of a connected socket.
#[derive(Clone, Copy)]
pub enum End {
    /// `getsockname()`
    Local,
    /// `getpeername()`
    Peer,
}

/// The IP address of one end of socket `fd`; `None` if the call fails (a
/// socket not connected, a descriptor closed) or the family is not IP.
pub fn of_socket(fd: RawFd, end: End) -> Option<SocketAddr> {
    // SAFETY: all-zero is a valid sockaddr_storage; the call writes at most
    // `len` bytes into it, and it is decoded only after success.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let target = (&mut storage as *mut libc::sockaddr_storage).cast();
        let ret = match end {
            End::Local => libc::getsockname(fd, target, &mut len),
            End::Peer => libc::getpeername(fd, target, &mut len),
        };
        if ret < 0 {
            return None;
        }
        decode(&storage)
    }
}
