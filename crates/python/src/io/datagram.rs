//! `DatagramCore`: the native engine of a datagram (UDP, Unix datagram)
//! transport; the Python side is `ferroloop.transports.DatagramTransport`.
//!
//! One datagram is delivered per readiness report, as asyncio delivers one
//! per iteration; after a successful read the transport is queued again, so
//! datagrams that arrived together are not stranded by the edge-triggered
//! registration. Sending tries the socket at once and buffers (whole
//! datagrams) only what would block. Addresses of IPv4 and IPv6 peers are
//! converted natively; other families and host names go through Python's
//! socket methods.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use ferroloop_engine::FlowControl;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use pyo3::PyTraverseError;

use crate::errors::os_error;
use crate::ffi::gil_cell::GilCell;
use crate::io::buffers::WriteData;
use crate::io::datagram_addresses::PeerAddresses;
use crate::io::sys_io::Io;
use crate::io::transport_core::{transport_methods, KindState, NativeTransport, TransportState};
use crate::io::{Ready, Watcher};
use crate::loop_core::LoopCore;

pub struct DatagramState {
    shared: TransportState,
    datagram_received: Option<Py<PyAny>>,
    /// Datagrams waiting for the socket: (data, address or None).
    buffer: VecDeque<(Py<PyBytes>, Py<PyAny>)>,
    buffer_size: usize,
    peers: PeerAddresses,
}

impl KindState for DatagramState {
    type Released = (
        Option<Py<PyAny>>,
        VecDeque<(Py<PyBytes>, Py<PyAny>)>,
        PeerAddresses,
    );

    fn shared(&self) -> &TransportState {
        &self.shared
    }

    fn shared_mut(&mut self) -> &mut TransportState {
        &mut self.shared
    }

    fn buffered_size(&self) -> usize {
        self.buffer_size
    }

    fn drop_buffer(&mut self) -> Self::Released {
        self.buffer_size = 0;
        (
            None,
            std::mem::take(&mut self.buffer),
            PeerAddresses::default(),
        )
    }

    fn release_own(&mut self) -> Self::Released {
        self.buffer_size = 0;
        (
            self.datagram_received.take(),
            std::mem::take(&mut self.buffer),
            std::mem::take(&mut self.peers),
        )
    }

    fn traverse_own(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.datagram_received)?;
        for (data, addr) in &self.buffer {
            visit.call(data)?;
            visit.call(addr)?;
        }
        self.peers.traverse(visit)
    }
}

#[pyclass(module = "ferroloop._ferroloop", name = "DatagramCore", frozen)]
pub struct DatagramCore {
    fd: RawFd,
    loop_: Py<LoopCore>,
    sock: Py<PyAny>,
    /// The peer given as `remote_addr`, if any: `sendto()` refuses others.
    address: Option<Py<PyAny>>,
    /// The socket has a peer (`getpeername()` answers): sends use `send()`.
    connected: bool,
    /// The socket's addresses are IPv4 or IPv6 ones, which are read and
    /// written natively; other families go through Python's socket.
    ip_addresses: bool,
    /// 3.13 sends empty datagrams and counts 8 header bytes per buffered one;
    /// earlier versions drop empty writes and count payload only.
    send_empty: bool,
    header_size: usize,
    state: GilCell<DatagramState>,
}

mod raw {
    //! `recvfrom`/`sendto` with IP addresses, via std's socket address types.
    use std::net::SocketAddr;
    use std::os::fd::RawFd;

    use crate::io::socket_address;
    use crate::io::sys_io::Io;

    pub enum From {
        Ip(SocketAddr),
        /// A family this module does not decode: Python must read the datagram.
        Other,
    }

    pub fn recv_from(fd: RawFd, buf: &mut [u8]) -> std::io::Result<(Io, From)> {
        loop {
            // SAFETY: zeroed sockaddr_storage is valid; recvfrom writes at
            // most `len` bytes of address and `buf.len()` bytes of data into
            // the buffers we own.
            let (ret, storage, _len) = unsafe {
                let mut storage: libc::sockaddr_storage = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                let ret = crate::io::sys_io::kernel::recvfrom(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut storage as *mut libc::sockaddr_storage).cast(),
                    &mut len,
                );
                (ret, storage, len)
            };
            if ret < 0 {
                let err = std::io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return Ok((Io::WouldBlock, From::Other)),
                    _ => return Err(err),
                }
            }
            let from = match socket_address::decode(&storage) {
                Some(addr) => From::Ip(addr),
                None => From::Other,
            };
            return Ok((Io::Done(ret as usize), from));
        }
    }

    pub fn send_to(fd: RawFd, data: &[u8], addr: Option<&SocketAddr>) -> std::io::Result<Io> {
        let (storage, len) = match addr {
            Some(a) => socket_address::encode(a),
            // SAFETY: an all-zero sockaddr_storage is a valid value; with
            // length 0 it is ignored (a plain send on a connected socket).
            None => (unsafe { std::mem::zeroed() }, 0),
        };
        loop {
            // SAFETY: `data` is readable for its length; `storage` holds a
            // sockaddr of `len` bytes (or is ignored with len 0).
            let ret = unsafe {
                crate::io::sys_io::kernel::sendto(
                    fd,
                    data.as_ptr().cast(),
                    data.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    if len == 0 {
                        std::ptr::null()
                    } else {
                        (&storage as *const libc::sockaddr_storage).cast()
                    },
                    len,
                )
            };
            if ret < 0 {
                let err = std::io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return Ok(Io::WouldBlock),
                    _ => return Err(err),
                }
            }
            return Ok(Io::Done(ret as usize));
        }
    }
}

/// The protocol's `datagram_received`, bound once; `None` for an object
/// without one (asyncio's `set_protocol` takes any object): it is then looked
/// up at each datagram, and its absence is an error of that call.
fn bound_datagram_received(protocol: &Bound<'_, PyAny>) -> Option<Py<PyAny>> {
    protocol
        .getattr(pyo3::intern!(protocol.py(), "datagram_received"))
        .ok()
        .map(Bound::unbind)
}

/// How one send attempt ended.
enum Sent {
    Done,
    WouldBlock,
    Failed(PyErr),
}

impl DatagramCore {
    /// The address tuple of a peer a datagram came from.
    fn peer_tuple<'py>(&self, py: Python<'py>, addr: SocketAddr) -> PyResult<Bound<'py, PyTuple>> {
        let (tuple, evicted) = self.state.borrow_mut(py)?.peers.tuple_for(py, addr)?;
        drop(evicted);
        Ok(tuple.into_bound(py))
    }

    /// The `sockaddr` to send to for `addr`, if it can be sent natively.
    fn peer_sockaddr(&self, py: Python<'_>, addr: &Bound<'_, PyAny>) -> Option<SocketAddr> {
        let known = self.state.borrow(py).ok()?.peers.sockaddr_of(addr);
        known.or_else(|| crate::io::socket_address::from_numeric_tuple(addr))
    }

    pub fn on_ready(slf: &Bound<'_, DatagramCore>, readable: bool, writable: bool) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        // Writable is reported with every event of the edge-triggered
        // registration: only a waiting datagram makes it work.
        if writable && !this.state.borrow(py)?.buffer.is_empty() {
            this.in_write_context(py, || this.sendto_ready(py))?;
        }
        if readable {
            this.in_read_context(py, || DatagramCore::read_ready(slf))?;
        }
        Ok(())
    }

    fn read_ready(slf: &Bound<'_, DatagramCore>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (received, protocol) = {
            let st = this.state.borrow(py)?;
            if st.shared.life.is_lost() || st.shared.life.is_closing() {
                return Ok(());
            }
            match &st.shared.protocol {
                Some(p) => (
                    st.datagram_received.as_ref().map(|cb| cb.clone_ref(py)),
                    p.clone_ref(py),
                ),
                None => return Ok(()),
            }
        };
        let core = this.loop_.bind(py).get();
        let datagram = if this.ip_addresses {
            let mut buf = core.take_recv_buffer(py)?;
            let result = raw::recv_from(this.fd, &mut buf);
            let datagram = match result {
                Ok((Io::WouldBlock, _)) => Ok(None),
                Ok((Io::Done(n), from)) => {
                    let address = match from {
                        raw::From::Ip(addr) => this.peer_tuple(py, addr)?.into_any(),
                        raw::From::Other => py.None().into_bound(py),
                    };
                    Ok(Some((PyBytes::new(py, &buf[..n]).into_any(), address)))
                }
                Err(err) => Err(os_error(err)),
            };
            core.return_recv_buffer(py, buf)?;
            datagram
        } else {
            // Unix datagram sockets and other families: Python's socket
            // knows their addresses.
            match this.sock.bind(py).call_method1(
                pyo3::intern!(py, "recvfrom"),
                (crate::loop_core::RECV_BUFFER_SIZE,),
            ) {
                Ok(pair) => {
                    let pair = pair.cast_into::<PyTuple>()?;
                    Ok(Some((pair.get_item(0)?, pair.get_item(1)?)))
                }
                Err(err) if err.is_instance_of::<pyo3::exceptions::PyBlockingIOError>(py) => {
                    Ok(None)
                }
                Err(err) => Err(err),
            }
        };
        let delivered = match datagram {
            Ok(None) => return Ok(()),
            Ok(Some((data, address))) => match &received {
                Some(method) => method.bind(py).call1((data, address)),
                None => protocol
                    .bind(py)
                    .call_method1(pyo3::intern!(py, "datagram_received"), (data, address)),
            },
            Err(err) => {
                return this.io_error(py, &protocol, err, "Fatal read error on datagram transport")
            }
        };
        // More datagrams may be waiting, and no edge will announce them.
        let me = slf.clone().unbind();
        core.push_ready(
            py,
            Ready::Datagram {
                transport: me,
                readable: true,
                writable: false,
            },
        )?;
        // An exception from datagram_received leaves asyncio's reader handle
        // (it is not a fatal error of the transport): the loop reports it.
        delivered.map(drop)
    }

    /// A send from `sendto()` failed: asyncio's rule for datagram errors.
    fn fail_write(&self, py: Python<'_>, err: PyErr) -> PyResult<()> {
        let protocol = self.protocol_object(py)?;
        match protocol {
            Some(p) => self.io_error(py, &p, err, "Fatal write error on datagram transport"),
            None => Ok(()),
        }
    }

    /// asyncio's rule for datagram errors: an OSError goes to the protocol's
    /// `error_received`, anything else is fatal.
    fn io_error(
        &self,
        py: Python<'_>,
        protocol: &Py<PyAny>,
        err: PyErr,
        fatal_message: &'static str,
    ) -> PyResult<()> {
        if err.is_instance_of::<PyOSError>(py) {
            protocol
                .bind(py)
                .call_method1(pyo3::intern!(py, "error_received"), (err.into_value(py),))?;
            return Ok(());
        }
        self.fatal_error(py, err, fatal_message)
    }

    /// One send of `data` to `addr` (None: the connected peer).
    fn send_one(&self, py: Python<'_>, data: &[u8], addr: &Bound<'_, PyAny>) -> Sent {
        // Connected (it has a peer): a plain send, whatever `addr` says, as
        // asyncio does. Otherwise to a numeric IP address natively; anything
        // else (a Unix path, a host name, None, which asyncio passes on to
        // sendto() and so fails as it does) through Python's socket.
        let target = if self.connected {
            Some(None)
        } else if self.ip_addresses {
            self.peer_sockaddr(py, addr).map(Some)
        } else {
            None
        };
        match target {
            Some(native) => match raw::send_to(self.fd, data, native.as_ref()) {
                Ok(Io::Done(_)) => Sent::Done,
                Ok(Io::WouldBlock) => Sent::WouldBlock,
                Err(err) => Sent::Failed(os_error(err)),
            },
            None => match self
                .sock
                .bind(py)
                .call_method1(pyo3::intern!(py, "sendto"), (PyBytes::new(py, data), addr))
            {
                Ok(_) => Sent::Done,
                Err(err) if err.is_instance_of::<pyo3::exceptions::PyBlockingIOError>(py) => {
                    Sent::WouldBlock
                }
                Err(err) => Sent::Failed(err),
            },
        }
    }

    fn sendto_ready(&self, py: Python<'_>) -> PyResult<()> {
        loop {
            let front = {
                let st = self.state.borrow(py)?;
                if st.shared.life.is_lost() {
                    return Ok(());
                }
                st.buffer
                    .front()
                    .map(|(d, a)| (d.clone_ref(py), a.clone_ref(py)))
            };
            let Some((data, addr)) = front else { break };
            match self.send_one(py, data.as_bytes(py), addr.bind(py)) {
                Sent::WouldBlock => return Ok(()),
                Sent::Done => {
                    let popped = {
                        let mut st = self.state.borrow_mut(py)?;
                        st.buffer_size -= data.as_bytes(py).len() + self.header_size;
                        st.buffer.pop_front()
                    };
                    drop(popped);
                }
                Sent::Failed(err) => {
                    let popped = {
                        let mut st = self.state.borrow_mut(py)?;
                        st.buffer_size -= data.as_bytes(py).len() + self.header_size;
                        st.buffer.pop_front()
                    };
                    drop(popped);
                    let protocol = self.protocol_object(py)?;
                    if let Some(protocol) = protocol {
                        return self.io_error(
                            py,
                            &protocol,
                            err,
                            "Fatal write error on datagram transport",
                        );
                    }
                    return Ok(());
                }
            }
        }
        self.flow_notify(py, FlowControl::after_drain)?;
        let (empty, closing, writer_context) = {
            let mut st = self.state.borrow_mut(py)?;
            let empty = st.buffer.is_empty();
            // Drained: asyncio removes its writer (and its context).
            let writer_context = if empty {
                st.shared.write_context.take()
            } else {
                None
            };
            (empty, st.shared.life.is_closing(), writer_context)
        };
        drop(writer_context);
        if empty && closing {
            self.call_connection_lost_now(py, py.None())?;
        }
        Ok(())
    }
}

#[pymethods]
impl DatagramCore {
    /// `DatagramCore(loop, sock, protocol, transport, address, connected,
    /// send_empty, header_size)`.
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        r#loop: &Bound<'_, PyAny>,
        sock: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        transport: Py<PyAny>,
        address: Option<Py<PyAny>>,
        connected: bool,
        send_empty: bool,
        header_size: usize,
    ) -> PyResult<Self> {
        let py = sock.py();
        let fd: RawFd = sock.call_method0(pyo3::intern!(py, "fileno"))?.extract()?;
        let family: i32 = sock.getattr(pyo3::intern!(py, "family"))?.extract()?;
        Ok(DatagramCore {
            fd,
            ip_addresses: family == libc::AF_INET || family == libc::AF_INET6,
            loop_: r#loop.cast::<LoopCore>()?.clone().unbind(),
            sock: sock.clone().unbind(),
            address,
            connected,
            send_empty,
            header_size,
            state: GilCell::new(DatagramState {
                shared: TransportState::new(transport, Some(protocol.clone().unbind())),
                datagram_received: bound_datagram_received(protocol),
                buffer: VecDeque::new(),
                buffer_size: 0,
                peers: PeerAddresses::default(),
            }),
        })
    }

    #[pyo3(signature = (data, addr=None))]
    fn sendto(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        addr: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let data = WriteData::extract(data)?;
        if data.is_empty() && !self.send_empty {
            return Ok(());
        }
        let mut addr = addr.unwrap_or_else(|| py.None().into_bound(py));
        if let Some(peer) = &self.address {
            if !addr.is_none() && !addr.eq(peer.bind(py))? {
                return Err(PyValueError::new_err(format!(
                    "Invalid address: must be None or {}",
                    peer.bind(py).str()?
                )));
            }
            addr = peer.bind(py).clone();
        }
        let (buffer_empty, lost) = {
            let st = self.state.borrow(py)?;
            (st.buffer.is_empty(), st.shared.life.is_lost())
        };
        if lost && self.address.is_some() {
            let warn = self.state.borrow_mut(py)?.shared.life.write_after_loss();
            if warn {
                crate::python_helpers::log_warning(py, "socket.send() raised exception.")?;
            }
            return Ok(());
        }
        let bytes = match data.bytes(py) {
            Ok(bytes) => bytes,
            Err(err) => return self.fail_write(py, err),
        };
        if buffer_empty {
            match self.send_one(py, bytes, &addr) {
                Sent::Done => return Ok(()),
                Sent::WouldBlock => {}
                Sent::Failed(err) => return self.fail_write(py, err),
            }
        }
        let owned = PyBytes::new(py, bytes).unbind();
        if buffer_empty {
            // Where asyncio adds its writer, whose handle copies the context.
            let context = crate::context::copy_current(py)?;
            let previous = self
                .state
                .borrow_mut(py)?
                .shared
                .write_context
                .replace(context);
            drop(previous);
        }
        {
            let mut st = self.state.borrow_mut(py)?;
            st.buffer_size += bytes.len() + self.header_size;
            st.buffer.push_back((owned, addr.unbind()));
        }
        self.flow_notify(py, FlowControl::after_growth)
    }
}

transport_methods!(DatagramCore);

impl NativeTransport for DatagramCore {
    type State = DatagramState;

    fn state(&self) -> &GilCell<DatagramState> {
        &self.state
    }

    fn event_loop(&self) -> &Py<LoopCore> {
        &self.loop_
    }

    fn traverse_fixed(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.sock)?;
        visit.call(&self.address)
    }

    fn watch(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::watch_socket(slf, slf.get().fd, Watcher::Datagram)
    }

    fn unwatch(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::unwatch_socket(
            slf,
            slf.get().fd,
            |w| matches!(w, Watcher::Datagram(t) if t.is(slf)),
        )
    }

    fn set_protocol(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = protocol.py();
        let received = bound_datagram_received(protocol);
        let previous = {
            let mut st = self.state.borrow_mut(py)?;
            (
                st.shared.protocol.replace(protocol.clone().unbind()),
                std::mem::replace(&mut st.datagram_received, received),
            )
        };
        drop(previous);
        Ok(())
    }
}
