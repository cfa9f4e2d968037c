//! The addresses of datagram peers, between Python's form (an `(ip, port)`
//! or `(ip, port, flowinfo, scope_id)` tuple, as `socket.recvfrom` returns
//! and `sendto` takes) and the kernel's.
//!
//! Formatting an address for each datagram received and parsing it again for
//! each reply cost a fifth of a UDP echo. A transport talks to few peers at a
//! time, so it keeps the tuples of its recent peers: a datagram from a known
//! peer gets that peer's tuple (tuples are immutable; asyncio's fresh tuple
//! would be equal to it), and a reply to that same tuple object is sent to
//! the address it stands for without parsing.

use std::net::{IpAddr, SocketAddr};

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::PyTraverseError;

/// How many peers a transport remembers.
const REMEMBERED_PEERS: usize = 16;

/// The recent peers of one transport, with the tuples made for them.
#[derive(Default)]
pub struct PeerAddresses {
    peers: Vec<(SocketAddr, Py<PyTuple>)>,
    /// The entry the next new peer replaces once the list is full.
    next: usize,
}

impl PeerAddresses {
    /// The tuple for a peer a datagram came from, and the entry it evicted
    /// (to be dropped once the caller's borrow is over).
    pub fn tuple_for(
        &mut self,
        py: Python<'_>,
        addr: SocketAddr,
    ) -> PyResult<(Py<PyTuple>, Option<Py<PyTuple>>)> {
        if let Some((_, tuple)) = self.peers.iter().find(|(known, _)| *known == addr) {
            return Ok((tuple.clone_ref(py), None));
        }
        let tuple = address_tuple(py, addr)?.unbind();
        let entry = (addr, tuple.clone_ref(py));
        let evicted = if self.peers.len() < REMEMBERED_PEERS {
            self.peers.push(entry);
            None
        } else {
            let slot = self.next;
            self.next = (slot + 1) % REMEMBERED_PEERS;
            Some(std::mem::replace(&mut self.peers[slot], entry).1)
        };
        Ok((tuple, evicted))
    }

    /// The address a tuple made here stands for (`None` for any other
    /// object, even an equal tuple: those are parsed).
    pub fn sockaddr_of(&self, tuple: &Bound<'_, PyAny>) -> Option<SocketAddr> {
        self.peers
            .iter()
            .find(|(_, known)| known.as_ptr() == tuple.as_ptr())
            .map(|(addr, _)| *addr)
    }

    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for (_, tuple) in &self.peers {
            visit.call(tuple)?;
        }
        Ok(())
    }
}

/// `sockaddr` for an (ip, port[, flowinfo, scope_id]) tuple with a numeric
/// host; `None` sends the address through Python instead.
pub fn numeric_sockaddr(addr: &Bound<'_, PyAny>) -> Option<SocketAddr> {
    let tuple = addr.cast::<PyTuple>().ok()?;
    let host: String = tuple.get_item(0).ok()?.extract().ok()?;
    let port: u16 = tuple.get_item(1).ok()?.extract().ok()?;
    let ip: IpAddr = host.parse().ok()?;
    match (ip, tuple.len()) {
        (IpAddr::V4(_), 2) => Some(SocketAddr::new(ip, port)),
        (IpAddr::V6(v6), 2) => Some(SocketAddr::V6(std::net::SocketAddrV6::new(v6, port, 0, 0))),
        (IpAddr::V6(v6), 4) => {
            let flow: u32 = tuple.get_item(2).ok()?.extract().ok()?;
            let scope: u32 = tuple.get_item(3).ok()?.extract().ok()?;
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                v6, port, flow, scope,
            )))
        }
        _ => None,
    }
}

/// The address tuple Python's `recvfrom` would return for an IP peer.
fn address_tuple<'py>(py: Python<'py>, addr: SocketAddr) -> PyResult<Bound<'py, PyTuple>> {
    match addr {
        SocketAddr::V4(a) => PyTuple::new(
            py,
            [
                a.ip().to_string().into_pyobject(py)?.into_any(),
                a.port().into_pyobject(py)?.into_any(),
            ],
        ),
        SocketAddr::V6(a) => PyTuple::new(
            py,
            [
                a.ip().to_string().into_pyobject(py)?.into_any(),
                a.port().into_pyobject(py)?.into_any(),
                a.flowinfo().into_pyobject(py)?.into_any(),
                a.scope_id().into_pyobject(py)?.into_any(),
            ],
        ),
    }
}
