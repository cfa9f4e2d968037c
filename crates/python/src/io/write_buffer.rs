//! The write buffer of a transport: what `write()` could not send at once,
//! sent later with one vectored call for many writes.
//!
//! `bytes` are immutable, so they are kept by reference, not copied; other
//! buffers (`bytearray`, `memoryview`) may change after `write()` returns
//! and are copied, as asyncio copies them.

use std::collections::VecDeque;
use std::io::IoSlice;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// At most this many chunks go into one `sendmsg` (IOV_MAX is 1024; more
/// rarely helps and costs stack).
const MAX_IOVECS: usize = 64;

enum ChunkData {
    Shared(Py<PyBytes>),
    Owned(Vec<u8>),
}

struct Chunk {
    data: ChunkData,
    /// Bytes of `data` already sent.
    sent: usize,
}

impl Chunk {
    fn bytes<'a>(&'a self, py: Python<'a>) -> &'a [u8] {
        let all = match &self.data {
            ChunkData::Shared(b) => b.as_bytes(py),
            ChunkData::Owned(v) => v.as_slice(),
        };
        &all[self.sent..]
    }
}

#[derive(Default)]
pub struct WriteBuffer {
    chunks: VecDeque<Chunk>,
    len: usize,
}

impl WriteBuffer {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps `bytes[sent..]` by reference.
    pub fn push_shared(&mut self, py: Python<'_>, bytes: Py<PyBytes>, sent: usize) {
        let remaining = bytes.as_bytes(py).len() - sent;
        if remaining > 0 {
            self.len += remaining;
            self.chunks.push_back(Chunk {
                data: ChunkData::Shared(bytes),
                sent,
            });
        }
    }

    /// Copies `data`.
    pub fn push_copy(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.len += data.len();
            self.chunks.push_back(Chunk {
                data: ChunkData::Owned(data.to_vec()),
                sent: 0,
            });
        }
    }

    /// Up to [`MAX_IOVECS`] slices from the front, for one vectored send.
    pub fn slices<'a>(&'a self, py: Python<'a>) -> Vec<IoSlice<'a>> {
        self.chunks
            .iter()
            .take(MAX_IOVECS)
            .map(|c| IoSlice::new(c.bytes(py)))
            .collect()
    }

    /// Drops `n` sent bytes from the front. Returns the chunks released, for
    /// the caller to drop outside its borrows.
    pub fn consume(&mut self, py: Python<'_>, mut n: usize) -> Vec<Py<PyBytes>> {
        let mut released = Vec::new();
        self.len -= n;
        while n > 0 {
            let front = self
                .chunks
                .front_mut()
                .expect("consumed bytes were buffered");
            let available = front.bytes(py).len();
            if n < available {
                front.sent += n;
                break;
            }
            n -= available;
            if let Some(Chunk {
                data: ChunkData::Shared(b),
                ..
            }) = self.chunks.pop_front()
            {
                released.push(b);
            }
        }
        released
    }

    /// Empties the buffer, returning the shared chunks to drop later.
    pub fn clear(&mut self) -> Vec<Py<PyBytes>> {
        self.len = 0;
        self.chunks
            .drain(..)
            .filter_map(|c| match c.data {
                ChunkData::Shared(b) => Some(b),
                ChunkData::Owned(_) => None,
            })
            .collect()
    }

    pub fn traverse(&self, visit: &pyo3::gc::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        for chunk in &self.chunks {
            if let ChunkData::Shared(b) = &chunk.data {
                visit.call(b)?;
            }
        }
        Ok(())
    }
}
