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

use std::net::SocketAddr;

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::PyTraverseError;

use crate::io::socket_address;

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
        let tuple = socket_address::to_python(py, &addr)?.unbind();
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
